//! Security hardening that is not tied to one route: transport headers, files at rest.

use crate::support::{Backend, Spawn};

#[tokio::test]
async fn https_deployments_get_hsts_and_secure_cookies() {
    let app = Spawn::new(Backend::Sqlite).var("QETTA_PUBLIC_URL", "https://connect.example.test").start().await;
    for path in ["/health", "/oauth", "/api/v1/nothing"] {
        let r = app.get(path, None).await;
        let hsts = r.headers().get("strict-transport-security").map(|v| v.to_str().unwrap().to_string());
        assert_eq!(hsts.as_deref(), Some("max-age=31536000; includeSubDomains"), "{path}");
    }
    // The page that clears the browser-binding cookie clears it as Secure too.
    let r = app.get("/api/v1/oauth/kftc/callback?state=unknown-state&code=x", None).await;
    let cookie = r.headers().get("set-cookie").expect("clearing cookie").to_str().unwrap().to_string();
    assert!(cookie.contains("Max-Age=0") && cookie.contains("; Secure"), "{cookie}");

    // Plain-http deployments (development) send no HSTS.
    let plain = Spawn::new(Backend::Sqlite).start().await;
    assert!(plain.get("/health", None).await.headers().get("strict-transport-security").is_none());
}

#[cfg(unix)]
#[tokio::test]
async fn the_embedded_data_dir_and_database_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("fresh/data");
    let sources = qetta::config::Sources::from_pairs([("PORT", "0"), ("QETTA_ADMIN_ADDR", "127.0.0.1:0"), ("QETTA_DATA_DIR", data.to_str().unwrap())]);
    let config = qetta::config::Config::from_sources(&sources).unwrap();
    let app = qetta::app::App::build(config, qetta::clock::OffsetClock::new()).await.unwrap();
    // Writes happened (migrations), so SQLite's WAL files exist.
    qetta::store::users::create(&app.state().db, "perm@example.com", "!", 0).await.unwrap();
    let mode = |name: &str| std::fs::metadata(data.join(name)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(""), 0o700, "data dir");
    for f in ["qetta.db", "qetta.db-wal", "qetta.db-shm", "jwt_secret", "encryption_keys"] {
        if data.join(f).exists() {
            assert_eq!(mode(f), 0o600, "{f}");
        } else {
            assert!(f.ends_with("-shm"), "{f} should exist");
        }
    }
}

#[tokio::test]
async fn metrics_are_served_on_the_admin_listener_only() {
    let app = Spawn::new(Backend::Sqlite).start().await;
    let r = app.get("/metrics", None).await;
    assert_eq!(r.status(), 404, "not on the public port");
    let text = app.metrics().await;
    assert!(text.contains("qetta_refresher_passes_total"), "{text}");
    for path in ["/health", "/ready"] {
        assert_eq!(app.client.get(format!("{}{path}", app.admin_base)).send().await.unwrap().status(), 200, "{path}");
        assert_eq!(app.get(path, None).await.status(), 200, "{path} on the public port too");
    }
    let r = app.client.get(format!("{}/api/v1/oauth/status", app.admin_base)).send().await.unwrap();
    assert_eq!(crate::support::error_code(r, 404).await, "not_found", "the API is not on the admin listener");
}

/// Behind a reverse proxy every connection comes from the proxy: without trusted proxies, one
/// attacker's failed sign-ins would lock every user out. With them, each client is counted on its
/// own; and a client that is not a trusted proxy cannot dodge its limit with the header.
#[tokio::test]
async fn behind_a_trusted_proxy_each_client_has_its_own_limits() {
    let login = |app: &crate::support::TestApp, email: &str, password: &str, client: &str| {
        let req =
            app.client.post(app.url("/api/v1/auth/login")).header("x-forwarded-for", client).json(&serde_json::json!({"email": email, "password": password}));
        async move { req.send().await.unwrap().status().as_u16() }
    };
    for trusted in [true, false] {
        let mut spawn = Spawn::new(Backend::Sqlite).var("QETTA_LOGIN_MAX_FAILURES", "2");
        if trusted {
            spawn = spawn.var("QETTA_TRUSTED_PROXIES", "127.0.0.1/32");
        }
        let app = spawn.start().await;
        app.register("victim@example.com").await;
        // The attacker: wrong passwords for many emails, 4× the per-email allowance per address.
        for i in 0..8 {
            assert_eq!(login(&app, &format!("nobody{i}@example.com"), "wrong horse 7", "203.0.113.5").await, 401);
        }
        assert_eq!(login(&app, "nobody9@example.com", "wrong horse 7", "203.0.113.5").await, 429, "the attacker's address is throttled");
        let victim = login(&app, "victim@example.com", "correct horse 7", "198.51.100.20").await;
        if trusted {
            assert_eq!(victim, 200, "another client behind the same proxy signs in");
        } else {
            assert_eq!(victim, 429, "without trusted proxies the header is ignored (it cannot be used to dodge the limit)");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_time_requests_by_route_and_provider_calls_by_endpoint() {
    // No background refresher: the queue of due connections below stays as the clock makes it.
    let app = Spawn::new(Backend::Sqlite).var("QETTA_REFRESHER_ENABLED", "false").start().await;
    let (token, _) = app.register("metrics@example.com").await;
    app.connect_kftc(&token, "kim").await;
    let fin = app.accounts(&token).await[0]["fintech_use_num"].as_str().unwrap().to_string();
    assert_eq!(app.get(&format!("/api/v1/oauth/kftc/balance/{fin}"), Some(&token)).await.status(), 200);
    assert_eq!(app.get("/api/v1/nothing-here", None).await.status(), 404);
    let text = app.metrics().await;
    for needle in [
        // The route template, never the account number.
        "qetta_http_request_duration_seconds_bucket{route=\"/api/v1/oauth/kftc/balance/{fintech_use_num}\",method=\"GET\",status=\"200\",le=\"0.001\"}",
        "qetta_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"}",
        "qetta_upstream_request_duration_seconds_count{provider=\"kftc\",endpoint=\"/v2.0/account/balance/fin_num\",outcome=\"ok\"}",
        "qetta_upstream_request_duration_seconds_count{provider=\"kftc\",endpoint=\"/oauth/2.0/token\",outcome=\"ok\"}",
        "qetta_db_pool_connections{state=\"idle\"}",
        "\nqetta_db_pool_max_connections 8\n",
        "\nqetta_db_pool_acquire_wait_seconds ",
        "\nqetta_db_pool_acquire_duration_seconds_count ",
        // KFTC tokens live 90 days: nothing is due within the 3-day lookahead yet.
        "\nqetta_refresher_due_connections 0\n",
        "\nqetta_webhook_queue_depth 0\n",
        "\nqetta_webhook_oldest_pending_age_seconds 0\n",
    ] {
        assert!(text.contains(needle), "{needle} in:\n{text}");
    }
    assert!(!text.contains(&fin), "no account number in a label");
    // 88 days on, the connection expires within the lookahead: it waits in the refresher's queue.
    app.clock.advance(88 * 86_400);
    let text = app.metrics().await;
    assert!(text.contains("\nqetta_refresher_due_connections 1\n"), "{text}");
}

crate::both_backends!(the_database_pools_are_in_the_metrics);

/// The request path's pool, and on PostgreSQL the background work's own pool, in the metrics.
async fn the_database_pools_are_in_the_metrics(backend: Backend) {
    let app = Spawn::new(backend).start().await;
    let text = app.metrics().await;
    if backend.is_postgres() {
        assert!(text.contains("\nqetta_db_pool_max_connections 16\n"), "{text}");
        assert!(text.contains("# HELP qetta_db_background_pool_connections") && text.contains("its limit is 8."), "{text}");
        assert!(text.contains("\nqetta_db_background_pool_connections{state=\"idle\"} "), "{text}");
    } else {
        assert!(text.contains("\nqetta_db_pool_max_connections 8\n"), "{text}");
        assert!(!text.contains("qetta_db_background_pool_connections"), "SQLite has one pool: {text}");
    }
}
