//! The token core across real processes: refresh exactly once among replicas, a replica killed
//! mid-refresh, key rotation under load, no plaintext tokens at rest.

use std::sync::Arc;

use secrecy::ExposeSecret;
use serde_json::{json, Value};

use crate::procs::{self, Proc};
use crate::support::{count, fresh_database, redis_url, spawn, Backend, Spawn, ENCRYPTION_KEYS};

async fn sandbox_stats(sb: &Proc) -> Value {
    reqwest::get(format!("{}/kftc/_sandbox/stats", sb.base)).await.unwrap().json().await.unwrap()
}

async fn sandbox_post(sb: &Proc, what: &str, body: Value) {
    let r = reqwest::Client::new().post(format!("{}/kftc/_sandbox/{what}", sb.base)).json(&body).send().await.unwrap();
    assert!(r.status().is_success());
}

/// One PostgreSQL, one standalone sandbox, three `qetta serve` processes.
struct Cluster {
    _dir: tempfile::TempDir,
    sandbox: Proc,
    replicas: Vec<Proc>,
    database_url: String,
}

async fn cluster(with_redis: bool, n: usize, extra: &[(String, String)]) -> Option<Cluster> {
    crate::support::postgres_admin_url().await?;
    let redis = if with_redis { Some(redis_url().await?) } else { None };
    let dir = tempfile::tempdir().unwrap();
    let database_url = fresh_database(Backend::Postgres, dir.path()).await;
    let ports: Vec<u16> = (0..n).map(|_| procs::free_port()).collect();
    let callback = format!("http://127.0.0.1:{}/api/v1/oauth/kftc/callback", ports[0]);
    let sandbox = procs::sandbox(dir.path(), &[("KFTC_REDIRECT_URI".into(), callback.clone())]).await;
    // Toss too is the shared standalone sandbox, as real replicas share the real Toss.
    let toss_key = qetta_sandbox::Sandbox::new(qetta_sandbox::SandboxConfig::default()).toss_public_key_base64();
    let mut env: Vec<(String, String)> = vec![
        ("KFTC_REDIRECT_URI".into(), callback),
        ("TOSS_OAUTH_BASE".into(), format!("{}/toss", sandbox.base)),
        ("TOSS_API_BASE".into(), format!("{}/toss", sandbox.base)),
        ("TOSS_CLIENT_ID".into(), qetta_sandbox::config::TOSS_TEST_CLIENT_ID.into()),
        ("TOSS_CLIENT_SECRET".into(), qetta_sandbox::config::TOSS_TEST_CLIENT_SECRET.into()),
        ("TOSS_RSA_PUBLIC_KEY".into(), toss_key),
    ];
    if let Some(r) = redis {
        env.push(("REDIS_URL".into(), r));
        env.push(("QETTA_REDIS_PREFIX".into(), format!("qetta-test-{}", uuid::Uuid::new_v4().simple())));
    }
    env.extend(extra.iter().cloned());
    let mut replicas = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        replicas.push(procs::replica(dir.path(), &format!("replica{i}"), *port, &database_url, &format!("{}/kftc", sandbox.base), &env).await);
    }
    Some(Cluster { _dir: dir, sandbox, replicas, database_url })
}

async fn expire_in_database(database_url: &str) {
    let pool = sqlx::PgPool::connect(database_url).await.unwrap();
    sqlx::query("UPDATE connections SET expires_at = $1").bind(chrono::Utc::now().timestamp() - 1).execute(&pool).await.unwrap();
    pool.close().await;
}

/// 200 concurrent balance requests spread over the replicas; all must succeed.
async fn burst(c: &Cluster, token: &str, fin: &str) {
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let url = format!("{}/api/v1/oauth/kftc/balance/{fin}", c.replicas[i % c.replicas.len()].base);
        let (client, token) = (client.clone(), token.to_string());
        tasks.push(tokio::spawn(async move {
            let r = client.get(url).bearer_auth(token).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }));
    }
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
}

async fn refresh_once_across_three_processes(with_redis: bool) {
    let Some(c) = cluster(with_redis, 3, &[]).await else { return };
    let token = procs::register(&c.replicas[0].base, "replicas@example.com").await;
    procs::connect(&c.replicas[0].base, &token, "kim").await;
    let accounts: Value = reqwest::Client::new()
        .get(format!("{}/api/v1/oauth/kftc/accounts", c.replicas[1].base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let fin = accounts["accounts"][0]["fintech_use_num"].as_str().unwrap().to_string();

    // The access token has just expired (by its stored expiry).
    expire_in_database(&c.database_url).await;
    burst(&c, &token, &fin).await;
    assert_eq!(count(&sandbox_stats(&c.sandbox).await, &["tokens", "issued", "refresh_token"]), 1, "exactly one upstream refresh");

    // The provider rejects the token although its stored expiry is ahead (O0003).
    sandbox_post(&c.sandbox, "expire-tokens", json!({})).await;
    burst(&c, &token, &fin).await;
    let stats = sandbox_stats(&c.sandbox).await;
    assert_eq!(count(&stats, &["tokens", "issued", "refresh_token"]), 2, "exactly one more refresh: {stats}");
    assert_eq!(count(&stats, &["tokens", "refused", "refresh_token"]), 0, "no spent refresh token was ever sent: {stats}");

    // The shared Toss service token: 200 concurrent requests on three processes, one token call.
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let path = if i % 2 == 0 { "/api/v1/oauth/toss/token" } else { "/api/v1/oauth/toss/test" };
        let req = if i % 2 == 0 { client.get(format!("{}{path}", c.replicas[i % 3].base)) } else { client.post(format!("{}{path}", c.replicas[i % 3].base)) };
        let req = req.bearer_auth(&token);
        tasks.push(tokio::spawn(async move { req.send().await.unwrap().status().as_u16() }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let toss: Value = reqwest::get(format!("{}/toss/_sandbox/stats", c.sandbox.base)).await.unwrap().json().await.unwrap();
    assert_eq!(count(&toss, &["tokens", "issued", "client_credentials"]), 1, "one Toss token for all: {toss}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refresh_once_across_three_processes_postgres() {
    refresh_once_across_three_processes(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refresh_once_across_three_processes_postgres_redis() {
    refresh_once_across_three_processes(true).await
}

/// A replica killed while its refresh is in flight leaves valid tokens or `needs_reauth`,
/// never an undecryptable or half-written row.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_mid_refresh_leaves_a_usable_or_reauth_row() {
    let Some(mut c) = cluster(false, 2, &[]).await else { return };
    let token = procs::register(&c.replicas[0].base, "killed@example.com").await;
    procs::connect(&c.replicas[0].base, &token, "lee").await;
    let client = reqwest::Client::new();
    let accounts: Value =
        client.get(format!("{}/api/v1/oauth/kftc/accounts", c.replicas[0].base)).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    let fin = accounts["accounts"][0]["fintech_use_num"].as_str().unwrap().to_string();

    expire_in_database(&c.database_url).await;
    sandbox_post(&c.sandbox, "faults", json!({"latency_ms": 3000})).await;
    let before = count(&sandbox_stats(&c.sandbox).await, &["calls", "/oauth/2.0/token"]);
    let url = format!("{}/api/v1/oauth/kftc/balance/{fin}", c.replicas[0].base);
    let (client2, token2) = (client.clone(), token.clone());
    let inflight = tokio::spawn(async move { client2.get(url).bearer_auth(token2).send().await });
    // Kill as soon as the refresh call has reached the provider.
    let started = std::time::Instant::now();
    while count(&sandbox_stats(&c.sandbox).await, &["calls", "/oauth/2.0/token"]) == before {
        assert!(started.elapsed().as_secs() < 20, "the refresh never started");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    c.replicas[0].kill();
    let _ = inflight.await;
    sandbox_post(&c.sandbox, "faults", json!({})).await;

    // The surviving replica: the row opens, and the connection either works or asks for consent.
    let r = client.get(format!("{}/api/v1/oauth/kftc/balance/{fin}", c.replicas[1].base)).bearer_auth(&token).send().await.unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    assert!(status == 200 || (status == 409 && body["error"]["code"] == "reauth_required"), "{status} {body}");
    let st: Value = client.get(format!("{}/api/v1/oauth/status", c.replicas[1].base)).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    let kftc = &st["providers"][0];
    assert!(kftc["status"] == "active" || kftc["status"] == "needs_reauth", "{st}");
    let t = client.get(format!("{}/api/v1/oauth/kftc/token", c.replicas[1].base)).bearer_auth(&token).send().await.unwrap();
    assert_ne!(t.status().as_u16(), 500, "the stored tokens decrypt");
}

/// `qetta keys rotate` while refreshes write the same rows: nothing lost, nothing left on the
/// old key, and the service then starts with the new key alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn key_rotation_under_load_loses_nothing() {
    if crate::support::postgres_admin_url().await.is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(Backend::Postgres, dir.path()).await;
    // One provider sandbox outlives the service restarts (an embedded one would not).
    let ports: Vec<u16> = (0..3).map(|_| procs::free_port()).collect();
    let callbacks: Vec<String> = ports.iter().map(|p| format!("http://127.0.0.1:{p}/api/v1/oauth/kftc/callback")).collect();
    let sb = procs::sandbox(dir.path(), &[("KFTC_REDIRECT_URI".into(), callbacks.join(","))]).await;
    let kftc_base = format!("{}/kftc", sb.base);
    let start = |i: usize, keys: String| {
        let (url, kftc_base, callback) = (url.clone(), kftc_base.clone(), callbacks[i].clone());
        let port = ports[i].to_string();
        async move {
            Spawn::new(Backend::Postgres)
                .var("DATABASE_URL", &url)
                .var("PORT", &port)
                .var("QETTA_ENCRYPTION_KEYS", &keys)
                .var("KFTC_API_BASE", &kftc_base)
                .var("KFTC_REDIRECT_URI", &callback)
                .var("KFTC_CLIENT_ID", qetta_sandbox::config::DEFAULT_KFTC_CLIENT_ID)
                .var("KFTC_CLIENT_SECRET", qetta_sandbox::config::DEFAULT_KFTC_CLIENT_SECRET)
                .var("KFTC_CLIENT_USE_CODE", qetta_sandbox::config::DEFAULT_KFTC_CLIENT_USE_CODE)
                .var("QETTA_RATE_LIMIT_API_PER_USER", "100000")
                .start()
                .await
        }
    };
    let old_only = start(0, ENCRYPTION_KEYS.to_string()).await;
    let mut users = Vec::new();
    for (i, who) in ["kim", "lee", "park", "choi"].iter().enumerate() {
        let (token, _) = old_only.register(&format!("rot{i}@example.com")).await;
        procs::connect(&old_only.base, &token, who).await;
        let fin = old_only.accounts(&token).await[0]["fintech_use_num"].as_str().unwrap().to_string();
        users.push((token, fin));
    }
    drop(old_only);

    let new_key = qetta::vault::KeyRing::generate_entry("new");
    let app = Arc::new(start(1, format!("{new_key},{ENCRYPTION_KEYS}")).await);
    // Every token is rejected once: refreshes write the rows while the rotation runs.
    sandbox_post(&sb, "expire-tokens", json!({})).await;
    let mut load = Vec::new();
    for round in 0..5 {
        for (token, fin) in users.clone() {
            let app = app.clone();
            load.push(tokio::spawn(async move {
                let r = app.get(&format!("/api/v1/oauth/kftc/balance/{fin}"), Some(&token)).await;
                assert_eq!(r.status(), 200, "round {round}");
            }));
        }
    }
    let report = qetta::keys::rotate(&app.state.db, &app.state.vault, 1).await.unwrap();
    for t in load {
        t.await.unwrap();
    }
    let again = qetta::keys::rotate(&app.state.db, &app.state.vault, 10).await.unwrap();
    assert_eq!(again.remaining, 0, "{report:?} then {again:?}");
    assert!(qetta::store::connections::ids_not_on_key(&app.state.db, "new", 100).await.unwrap().is_empty());
    assert_eq!(count(&sandbox_stats(&sb).await, &["tokens", "issued", "refresh_token"]), 4, "one refresh per connection");
    let app = Arc::try_unwrap(app).ok().expect("no other holders");
    drop(app);

    // The new key alone is enough now.
    let new_only = start(2, new_key.clone()).await;
    for (token, fin) in &users {
        assert_eq!(new_only.get(&format!("/api/v1/oauth/kftc/balance/{fin}"), Some(token)).await.status(), 200);
    }
    drop(new_only);
    // And a key ring without the key the data needs is refused at start.
    let config = qetta::config::Config::from_sources(&qetta::config::Sources::from_pairs([
        ("PORT", "0".to_string()),
        ("QETTA_ADMIN_ADDR", "127.0.0.1:0".to_string()),
        ("DATABASE_URL", url.clone()),
        ("JWT_SECRET", crate::support::JWT_SECRET.to_string()),
        ("QETTA_ENCRYPTION_KEYS", qetta::vault::KeyRing::generate_entry("new")),
    ]))
    .unwrap();
    let err = qetta::app::App::build(config, Arc::new(qetta::clock::SystemClock)).await.err().expect("wrong key refused").to_string();
    assert!(err.contains("not the key that encrypted"), "{err}");
}

/// The SQLite file holds no plaintext token: only ciphertexts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_file_contains_no_plaintext_token() {
    let app = Spawn::new(Backend::Sqlite).var("QETTA_SERVICE_KEY", "backend-service-key-backend-service-key").start().await;
    let (token, _) = app.register("plain@example.com").await;
    app.connect_kftc(&token, "kim").await;
    // Refresh once, so rotated tokens are written too.
    app.sandbox_control("kftc", "expire-tokens", json!({})).await;
    let fin = app.accounts(&token).await[0]["fintech_use_num"].as_str().unwrap().to_string();
    assert_eq!(app.get(&format!("/api/v1/oauth/kftc/balance/{fin}"), Some(&token)).await.status(), 200);

    let raw: Value = app
        .client
        .get(app.url("/api/v1/oauth/kftc/token"))
        .bearer_auth(&token)
        .header("x-qetta-service-key", "backend-service-key-backend-service-key")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = raw["access_token"].as_str().expect("the backend gets the raw token").to_string();
    let conn = qetta::store::connections::list_for_user(&app.state.db, &raw_user(&app, &token).await).await.unwrap().remove(0);
    let refresh = app.state.vault.open_string(conn.refresh_token.as_deref().unwrap(), qetta::tokens::aad(&conn, "refresh_token")).unwrap();
    // Checkpoint the WAL so the main file holds everything too, then read every file.
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(app.state.db.pool()).await.unwrap();
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(app.dir.path()).unwrap() {
        let p = entry.unwrap().path();
        if p.file_name().unwrap().to_string_lossy().starts_with("test.db") {
            bytes.extend(std::fs::read(&p).unwrap());
        }
    }
    assert!(bytes.len() > 4096);
    for secret in [access.as_str(), refresh.expose_secret()] {
        assert!(secret.len() > 20);
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "a token is stored in plaintext");
        // Not even a recognisable part of it.
        let middle = &secret[secret.len() / 2 - 8..secret.len() / 2 + 8];
        assert!(!bytes.windows(16).any(|w| w == middle.as_bytes()));
    }
}

async fn raw_user(app: &crate::support::TestApp, token: &str) -> String {
    app.state.jwt.verify(token).unwrap().sub
}

/// The backend fetch of a raw token needs the configured service key, and is audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_tokens_only_with_the_service_key() {
    let app = Spawn::new(Backend::Sqlite).var("QETTA_SERVICE_KEY", "backend-service-key-backend-service-key").start().await;
    let (token, _) = app.register("svc@example.com").await;
    app.connect_kftc(&token, "kim").await;
    let plain: Value = app.get("/api/v1/oauth/kftc/token", Some(&token)).await.json().await.unwrap();
    assert!(plain.get("access_token").is_none());
    let r = app.client.get(app.url("/api/v1/oauth/kftc/token")).bearer_auth(&token).header("x-qetta-service-key", "wrong").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let audit: Value = app.get("/api/v1/oauth/audit", Some(&token)).await.json().await.unwrap();
    assert!(!audit.to_string().contains("raw_token_returned"));
    let r = app
        .client
        .get(app.url("/api/v1/oauth/kftc/token"))
        .bearer_auth(&token)
        .header("x-qetta-service-key", "backend-service-key-backend-service-key")
        .send()
        .await
        .unwrap();
    assert!(r.json::<Value>().await.unwrap()["access_token"].is_string());
    let audit: Value = app.get("/api/v1/oauth/audit", Some(&token)).await.json().await.unwrap();
    assert!(audit.to_string().contains("raw_token_returned"));

    // Without a configured service key no header unlocks raw tokens.
    let app2 = spawn(Backend::Sqlite).await;
    let (t2, _) = app2.register("svc2@example.com").await;
    app2.connect_kftc(&t2, "lee").await;
    let r = app2
        .client
        .get(app2.url("/api/v1/oauth/kftc/token"))
        .bearer_auth(&t2)
        .header("x-qetta-service-key", "backend-service-key-backend-service-key")
        .send()
        .await
        .unwrap();
    assert!(r.json::<Value>().await.unwrap().get("access_token").is_none());
}

/// Two replicas' background refreshers run at the same moment on one PostgreSQL: `FOR UPDATE
/// SKIP LOCKED` claims hand each due connection to exactly one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_refreshers_share_the_due_connections_without_overlap() {
    if crate::support::postgres_admin_url().await.is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(Backend::Postgres, dir.path()).await;
    let ports: Vec<u16> = (0..2).map(|_| procs::free_port()).collect();
    let callbacks: Vec<String> = ports.iter().map(|p| format!("http://127.0.0.1:{p}/api/v1/oauth/kftc/callback")).collect();
    let sb = procs::sandbox(dir.path(), &[("KFTC_REDIRECT_URI".into(), callbacks.join(","))]).await;
    let mut apps = Vec::new();
    for i in 0..2 {
        apps.push(
            Spawn::new(Backend::Postgres)
                .var("DATABASE_URL", &url)
                .var("PORT", &ports[i].to_string())
                .var("KFTC_API_BASE", &format!("{}/kftc", sb.base))
                .var("KFTC_REDIRECT_URI", &callbacks[i])
                .var("KFTC_CLIENT_ID", qetta_sandbox::config::DEFAULT_KFTC_CLIENT_ID)
                .var("KFTC_CLIENT_SECRET", qetta_sandbox::config::DEFAULT_KFTC_CLIENT_SECRET)
                .var("KFTC_CLIENT_USE_CODE", qetta_sandbox::config::DEFAULT_KFTC_CLIENT_USE_CODE)
                .var("QETTA_REFRESHER_ENABLED", "false")
                .var("QETTA_REFRESHER_BATCH", "3")
                .start()
                .await,
        );
    }
    for i in 0..8 {
        let (token, _) = apps[0].register(&format!("claims{i}@example.com")).await;
        procs::connect(&apps[0].base, &token, ["kim", "lee", "park", "choi"][i % 4]).await;
    }
    // A day before expiry on both replicas' clocks: all eight are due (lookahead 3 days).
    for a in &apps {
        a.clock.advance(7_775_999 - 86_400);
    }
    let mut claimed = 0;
    let mut refreshed = 0;
    for _ in 0..3 {
        let (r0, r1) = tokio::join!(
            qetta::tokens::refresher::run_once(&apps[0].state.tokens, &apps[0].state.refresher_stats),
            qetta::tokens::refresher::run_once(&apps[1].state.tokens, &apps[1].state.refresher_stats)
        );
        for r in [r0.unwrap(), r1.unwrap()] {
            assert!(r.largest_batch <= 3, "batches are bounded: {r:?}");
            claimed += r.claimed;
            refreshed += r.refreshed;
        }
    }
    assert_eq!((claimed, refreshed), (8, 8), "each connection claimed and refreshed once");
    assert_eq!(count(&sandbox_stats(&sb).await, &["tokens", "issued", "refresh_token"]), 8);
}
