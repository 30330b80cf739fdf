//! Secrets stay secret: full flows with tracing at TRACE level, then no token, client secret,
//! key or personal datum may appear in the logs, the database file, or any browser response.

use serde_json::{json, Value};

use crate::procs;
use crate::support::{ENCRYPTION_KEYS, JWT_SECRET};

const SERVICE_KEY: &str = "backend-service-key-backend-service-key";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_secret_in_trace_logs_database_or_browser_responses() {
    let dir = tempfile::tempdir().unwrap();
    let port = procs::free_port();
    let callback = format!("http://127.0.0.1:{port}/api/v1/oauth/kftc/callback");
    let sb = procs::sandbox(dir.path(), &[("KFTC_REDIRECT_URI".into(), callback.clone())]).await;
    let db_path = dir.path().join("secrets.db");
    let replica = procs::replica(
        dir.path(),
        "replica",
        port,
        &format!("sqlite://{}?mode=rwc", db_path.display()),
        &format!("{}/kftc", sb.base),
        &[("RUST_LOG".into(), "trace".into()), ("KFTC_REDIRECT_URI".into(), callback), ("QETTA_SERVICE_KEY".into(), SERVICE_KEY.into())],
    )
    .await;
    let base = replica.base.clone();
    let client = reqwest::Client::new();
    let mut browser_bodies = Vec::new();

    let token = procs::register(&base, "secret.keeper@example.com").await;
    procs::connect(&base, &token, "kim").await;
    for path in ["/api/v1/oauth/status", "/api/v1/oauth/kftc/accounts", "/api/v1/oauth/kftc/token", "/api/v1/oauth/audit"] {
        browser_bodies.push(client.get(format!("{base}{path}")).bearer_auth(&token).send().await.unwrap().text().await.unwrap());
    }
    let accounts: Value = serde_json::from_str(&browser_bodies[1]).unwrap();
    let fin = accounts["accounts"][0]["fintech_use_num"].as_str().unwrap().to_string();
    // A forced refresh, a balance and a page of transactions.
    client.post(format!("{}/kftc/_sandbox/expire-tokens", sb.base)).json(&json!({})).send().await.unwrap();
    browser_bodies.push(client.get(format!("{base}/api/v1/oauth/kftc/balance/{fin}")).bearer_auth(&token).send().await.unwrap().text().await.unwrap());
    let today = chrono::Utc::now().format("%Y%m%d").to_string();
    browser_bodies.push(
        client
            .post(format!("{base}/api/v1/oauth/kftc/transactions"))
            .bearer_auth(&token)
            .json(&json!({"fintech_use_num": fin, "from_date": "20260901", "to_date": today, "limit": 5}))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    // The backend's raw-token fetch: the one place a token may leave (not a browser response).
    let raw: Value = client
        .get(format!("{base}/api/v1/oauth/kftc/token"))
        .bearer_auth(&token)
        .header("x-qetta-service-key", SERVICE_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = raw["access_token"].as_str().unwrap().to_string();

    // The refresh token, read from the database with the test key.
    let db = qetta::store::Db::connect(&format!("sqlite://{}", db_path.display()), qetta::config::DatabaseKind::Sqlite).await.unwrap();
    let conn = sqlx::query_as::<_, qetta::store::connections::Connection>(
        "SELECT id, user_id, provider, access_token, refresh_token, key_id, token_type, scope, expires_at, refresh_expires_at, provider_user_id, status, metadata, version, created_at, updated_at, last_refreshed_at, refresh_failures, next_refresh_at, label, account_display FROM connections",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    let vault = qetta::vault::Vault::new(qetta::vault::KeyRing::parse(ENCRYPTION_KEYS).unwrap());
    let refresh = vault.open_string(conn.refresh_token.as_deref().unwrap(), qetta::tokens::aad(&conn, "refresh_token")).unwrap();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(db.pool()).await.unwrap();
    db.close().await;

    let r = client.delete(format!("{base}/api/v1/oauth/kftc/disconnect")).bearer_auth(&token).send().await.unwrap();
    browser_bodies.push(r.text().await.unwrap());

    // Toss: the shared token, a test call, and a full identity verification (the sandbox's
    // fictitious person, SPEC B2.1, plus what we typed).
    let toss_token: Value = client
        .get(format!("{base}/api/v1/oauth/toss/token"))
        .bearer_auth(&token)
        .header("x-qetta-service-key", SERVICE_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let toss_access = toss_token["access_token"].as_str().expect("raw Toss token for the backend").to_string();
    browser_bodies.push(client.get(format!("{base}/api/v1/oauth/toss/token")).bearer_auth(&token).send().await.unwrap().text().await.unwrap());
    browser_bodies.push(client.post(format!("{base}/api/v1/oauth/toss/test")).bearer_auth(&token).send().await.unwrap().text().await.unwrap());
    let v: Value = client
        .post(format!("{base}/api/v1/oauth/toss/verifications"))
        .bearer_auth(&token)
        .json(&json!({"request_type": "USER_PERSONAL", "name": "홍길동", "phone": "01098765432", "birthday": "19880512"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tx_id = v["tx_id"].as_str().expect("a verification started").to_string();
    browser_bodies.push(v.to_string());
    let r = client.post(format!("{}/toss/_sandbox/requests/{tx_id}", sb.base)).json(&json!({"action": "approve"})).send().await.unwrap();
    assert!(r.status().is_success());
    let done = client.get(format!("{base}/api/v1/oauth/toss/verifications/{tx_id}")).bearer_auth(&token).send().await.unwrap().text().await.unwrap();
    assert!(done.contains("COMPLETED"), "{done}");
    browser_bodies.push(done);
    for path in ["/api/v1/oauth/status", "/api/v1/oauth/audit"] {
        browser_bodies.push(client.get(format!("{base}{path}")).bearer_auth(&token).send().await.unwrap().text().await.unwrap());
    }

    let log = replica.log_text();
    assert!(log.contains("TRACE") || log.contains("trace"), "tracing ran at TRACE level");
    let key_b64 = ENCRYPTION_KEYS.split_once(':').unwrap().1;
    let secrets: Vec<(&str, String)> = vec![
        ("access token", access.clone()),
        ("refresh token", secrecy::ExposeSecret::expose_secret(&refresh).to_string()),
        ("KFTC client secret", qetta_sandbox::config::DEFAULT_KFTC_CLIENT_SECRET.to_string()),
        ("JWT secret", JWT_SECRET.to_string()),
        ("encryption key", key_b64.to_string()),
        ("service key", SERVICE_KEY.to_string()),
        ("password", "correct horse 7".to_string()),
        ("Toss access token", toss_access.clone()),
        ("Toss client secret", qetta_sandbox::config::TOSS_TEST_CLIENT_SECRET.to_string()),
        ("verified name", "김토스".to_string()),
        ("CI", "CI0110000000001".to_string()),
        ("DI", "DI0110000000001".to_string()),
        ("verified birthday", "19930324".to_string()),
        ("typed name", "홍길동".to_string()),
        ("typed phone", "01098765432".to_string()),
        ("typed birthday", "19880512".to_string()),
    ];
    let mut db_bytes = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let p = entry.unwrap().path();
        if p.file_name().unwrap().to_string_lossy().starts_with("secrets.db") {
            db_bytes.extend(std::fs::read(&p).unwrap());
        }
    }
    for (what, secret) in &secrets {
        assert!(!log.contains(secret.as_str()), "{what} appears in the TRACE log");
        for body in &browser_bodies {
            assert!(!body.contains(secret.as_str()), "{what} appears in a browser response: {body}");
        }
        assert!(!db_bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "{what} appears in the database file");
    }
}
