//! Security: the embedded sandbox (simulated providers with an unauthenticated control API) is
//! mounted only when no provider is real; a provider that is neither configured nor simulated is
//! disabled, never silently simulated; plain-http provider bases to other machines are refused.

use serde_json::{json, Value};

use crate::both_backends;
use crate::support::{error_code, spawn, Backend, Spawn, TestApp};

both_backends!(a_real_kftc_turns_the_sandbox_off_and_disables_toss, a_real_toss_disables_kftc);

/// A server whose KFTC is "real": another server's simulator, reached over loopback like any
/// configured provider.
async fn with_real_kftc(backend: Backend, sim: &TestApp) -> TestApp {
    Spawn::new(backend).kftc_at(&sim.url("/sandbox/kftc")).start().await
}

/// The review's attack: anonymous calls to the control API of a production-like server.
async fn control_api_is_unreachable(app: &TestApp) {
    let posts: [(&str, Value); 8] = [
        ("/sandbox/kftc/_sandbox/reset", json!({})),
        ("/sandbox/kftc/_sandbox/faults", json!({"error_rate": 1.0})),
        ("/sandbox/kftc/_sandbox/expire-tokens", json!({})),
        ("/sandbox/kftc/_sandbox/clock", json!({"advance_seconds": 86400})),
        ("/sandbox/toss/_sandbox/reset", json!({})),
        ("/sandbox/toss/_sandbox/requests/any-tx", json!({"action": "approve"})),
        ("/sandbox/kakao/_sandbox/reset", json!({})),
        ("/sandbox/naver/_sandbox/expire-tokens", json!({})),
    ];
    for (path, body) in posts {
        let r = app.post_json(path, &body, None).await;
        assert_eq!(error_code(r, 404).await, "not_found", "POST {path}");
    }
    for path in [
        "/sandbox/kftc/_sandbox/users",
        "/sandbox/kftc/_sandbox/stats",
        "/sandbox/toss/_sandbox/requests",
        "/sandbox/kftc/oauth/2.0/authorize",
        "/sandbox/",
        "/sandbox/kakao/oauth/authorize",
        "/sandbox/naver/.well-known/openid-configuration",
    ] {
        let r = app.get(path, None).await;
        assert_eq!(error_code(r, 404).await, "not_found", "GET {path}");
    }
}

async fn a_real_kftc_turns_the_sandbox_off_and_disables_toss(backend: Backend) {
    let sim = spawn(Backend::Sqlite).await;
    let app = with_real_kftc(backend, &sim).await;
    assert!(app.state.sandbox.is_none(), "no embedded sandbox beside a real provider");
    control_api_is_unreachable(&app).await;

    let (token, _) = app.register("minsu@example.com").await;
    assert_eq!(app.status_of(&token, "kftc").await["configured"], true);
    let toss = app.status_of(&token, "toss").await;
    assert_eq!((toss["configured"].clone(), toss["status"].clone(), toss["connected"].clone()), (json!(false), json!("not_configured"), json!(false)));

    // Every Toss route answers a clear 503 before doing anything; nothing reaches a simulator.
    let before = sim.sandbox_stats("toss").await;
    let r = app.post_json("/api/v1/oauth/toss/test", &json!({}), Some(&token)).await;
    assert_eq!(error_code(r, 503).await, "provider_not_configured");
    let r = app.post_json("/api/v1/oauth/toss/verifications", &json!({"request_type": "USER_NONE"}), Some(&token)).await;
    assert_eq!(error_code(r, 503).await, "provider_not_configured");
    let r = app.get("/api/v1/oauth/toss/token", Some(&token)).await;
    assert_eq!(error_code(r, 503).await, "provider_not_configured");
    assert_eq!(sim.sandbox_stats("toss").await["calls"], before["calls"], "a disabled provider is never called");
    // Forgetting local data still works (nothing to forget here).
    let r = app.client.delete(app.url("/api/v1/oauth/toss/disconnect")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(error_code(r, 404).await, "not_found");

    // KFTC itself works: authorize hands out a launch link.
    let r = app.get("/api/v1/oauth/kftc/authorize", Some(&token)).await;
    assert_eq!(r.status(), 200);

    let metrics = app.metrics().await;
    // (The latency histograms are process-wide in tests; the breaker gauges are this server's.)
    assert!(
        metrics.contains("qetta_upstream_circuit_open{provider=\"kftc\"}") && !metrics.contains("qetta_upstream_circuit_open{provider=\"toss\"}"),
        "{metrics}"
    );
}

async fn a_real_toss_disables_kftc(backend: Backend) {
    let sim = spawn(Backend::Sqlite).await;
    let key = sim.state.sandbox.as_ref().expect("simulator").toss_public_key_base64();
    let app = Spawn::new(backend)
        .var("TOSS_OAUTH_BASE", &sim.url("/sandbox/toss"))
        .var("TOSS_API_BASE", &sim.url("/sandbox/toss"))
        .var("TOSS_CLIENT_ID", qetta_sandbox::config::TOSS_TEST_CLIENT_ID)
        .var("TOSS_CLIENT_SECRET", qetta_sandbox::config::TOSS_TEST_CLIENT_SECRET)
        .var("TOSS_RSA_PUBLIC_KEY", &key)
        .start()
        .await;
    assert!(app.state.sandbox.is_none());
    control_api_is_unreachable(&app).await;

    let (token, _) = app.register("minsu@example.com").await;
    let kftc = app.status_of(&token, "kftc").await;
    assert_eq!((kftc["configured"].clone(), kftc["status"].clone()), (json!(false), json!("not_configured")));
    for path in ["/api/v1/oauth/kftc/authorize", "/api/v1/oauth/kftc/accounts", "/api/v1/oauth/kftc/token", "/api/v1/oauth/kftc/launch?state=x"] {
        let r = app.get(path, Some(&token)).await;
        assert_eq!(error_code(r, 503).await, "provider_not_configured", "{path}");
    }
    // No OAuth state was created by the refused authorize.
    let states: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM oauth_states").fetch_one(app.state.db.pool()).await.unwrap();
    assert_eq!(states, 0);
    let r = app.client.delete(app.url("/api/v1/oauth/kftc/disconnect")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(error_code(r, 404).await, "not_found");

    // Toss works against the configured (real) one.
    let r = app.post_json("/api/v1/oauth/toss/test", &json!({}), Some(&token)).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["ok"], true, "{v}");
}

#[tokio::test]
async fn off_disables_every_provider_and_the_sandbox() {
    let app = Spawn::new(Backend::Sqlite).var("QETTA_SANDBOX", "off").start().await;
    assert!(app.state.sandbox.is_none());
    control_api_is_unreachable(&app).await;
    let (token, _) = app.register("minsu@example.com").await;
    for p in ["kftc", "toss"] {
        assert_eq!(app.status_of(&token, p).await["status"], "not_configured", "{p}");
    }
}

#[tokio::test]
async fn the_sandbox_on_a_public_address_needs_saying_so() {
    use qetta::config::{Config, Sources};
    let dir = tempfile::tempdir().unwrap();
    let base = |extra: &[(&str, &str)]| {
        let mut s =
            Sources::from_pairs([("PORT", "0"), ("QETTA_ADMIN_ADDR", "127.0.0.1:0"), ("QETTA_DATA_DIR", dir.path().to_str().unwrap()), ("HOST", "0.0.0.0")]);
        for (k, v) in extra {
            s.set(k, *v);
        }
        Config::from_sources(&s).unwrap()
    };
    let refused = qetta::app::App::build(base(&[]), qetta::clock::OffsetClock::new()).await.err().expect("refused");
    let msg = refused.to_string();
    assert!(msg.starts_with("HOST") && msg.contains("QETTA_SANDBOX=on"), "{msg}");

    let app = qetta::app::App::build(base(&[("QETTA_SANDBOX", "on")]), qetta::clock::OffsetClock::new()).await.expect("explicit sandbox starts");
    assert!(app.state().sandbox.is_some());
    assert!(app.banner.warnings.iter().any(|w| w.starts_with("SANDBOX MODE")), "{:?}", app.banner.warnings);
}

#[test]
fn the_binary_refuses_plain_http_provider_bases() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_qetta"))
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("QETTA_ADMIN_ADDR", "127.0.0.1:0")
        .args(["serve"])
        .env("PORT", "0")
        .env("KFTC_API_BASE", "http://openapi.openbanking.or.kr")
        .env("KFTC_CLIENT_ID", "id")
        .env("KFTC_CLIENT_SECRET", "secret-that-must-not-show")
        .env("KFTC_CLIENT_USE_CODE", "M202600001")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("KFTC_API_BASE") && err.contains("https"), "{err}");
    assert!(!err.contains("secret-that-must-not-show"));
}

/// Sandbox mode mounts the Kakao and Naver simulators beside KFTC and Toss; their OIDC
/// discovery documents name the embedded base as issuer.
#[tokio::test]
async fn the_embedded_sandbox_serves_kakao_and_naver() {
    let app = spawn(Backend::Sqlite).await;
    assert!(app.state.sandbox.is_some());
    for (path, suffix) in
        [("/sandbox/kakao/.well-known/openid-configuration", "/sandbox/kakao"), ("/sandbox/naver/.well-known/openid-configuration", "/sandbox/naver")]
    {
        let r = app.get(path, None).await;
        assert_eq!(r.status(), 200, "{path}");
        let v: Value = r.json().await.unwrap();
        assert!(v["issuer"].as_str().unwrap_or("").ends_with(suffix), "{v}");
        assert!(v["jwks_uri"].as_str().unwrap_or("").starts_with(v["issuer"].as_str().unwrap_or("-")), "{v}");
    }
    for path in ["/sandbox/kakao/_sandbox/users", "/sandbox/naver/_sandbox/users"] {
        assert_eq!(app.get(path, None).await.status(), 200, "{path}");
    }
}
