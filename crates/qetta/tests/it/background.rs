//! Background work at scale, on every database: refreshes that outnumber the database pool, and
//! the refresher draining many due connections back to back within its concurrency.

use std::time::Duration;

use secrecy::SecretString;
use serde_json::{json, Value};

use crate::both_backends;
use crate::support::{count, Backend, Spawn, TestApp};

both_backends!(refreshes_outnumbering_the_pool_complete_once_each, the_refresher_drains_due_connections_back_to_back_within_its_concurrency);

/// `n` KFTC connections of one user, with real grants of the embedded sandbox (so that they
/// refresh), stored through the token manager as a completed consent would store them.
pub async fn seed_connections(app: &TestApp, n: usize) -> String {
    let (_, user_id) = app.register(&format!("many-{}@example.com", uuid::Uuid::new_v4().simple())).await;
    let r = app.post_json("/sandbox/kftc/_sandbox/grants", &json!({"count": n}), None).await;
    assert_eq!(r.status(), 200);
    let grants: Value = r.json().await.unwrap();
    for (i, g) in grants["grants"].as_array().unwrap().iter().enumerate() {
        let grant = qetta::tokens::Grant {
            access_token: SecretString::from(g["access_token"].as_str().unwrap().to_string()),
            refresh_token: Some(SecretString::from(g["refresh_token"].as_str().unwrap().to_string())),
            token_type: "Bearer".into(),
            scope: g["scope"].as_str().unwrap().to_string(),
            expires_in: g["expires_in"].as_i64(),
            refresh_expires_in: None,
        };
        let account = format!("seeded-{i}");
        let link = qetta::tokens::Link {
            user_id: &user_id,
            provider: "kftc",
            account_id: &account,
            account_display: None,
            label: None,
            metadata: None,
            grant: &grant,
        };
        let entry = qetta::store::audit::NewEntry::user_action(Some(&user_id), "kftc", None, "connect", "ok", None, json!({}));
        app.state.tokens.link(&link, entry).await.unwrap();
    }
    user_id
}

/// 48 connections expire at once and the provider takes 2 s per refresh; the refresher (48 at
/// once) and two on-demand callers per connection all want them. The pool has 8 (SQLite) or 16
/// (PostgreSQL) connections: a refresh that held one across the provider call would leave the
/// others waiting for more than the pool's 5 s acquire timeout. Every caller gets a token, and
/// each connection is refreshed upstream exactly once.
async fn refreshes_outnumbering_the_pool_complete_once_each(backend: Backend) {
    const N: usize = 48;
    let app = Spawn::new(backend).var("QETTA_REFRESHER_ENABLED", "false").var("QETTA_REFRESHER_CONCURRENCY", &N.to_string()).start().await;
    seed_connections(&app, N).await;
    app.sandbox_control("kftc", "faults", json!({"latency_ms": 2000})).await;
    // Past every access token's expiry (90 days).
    app.clock.advance(7_776_000);
    let rows: Vec<(String,)> = sqlx::query_as("SELECT id FROM connections").fetch_all(app.state.db.pool()).await.unwrap();
    assert_eq!(rows.len(), N);

    let started = std::time::Instant::now();
    let refresher = qetta::tokens::refresher::run_once(&app.state.tokens, &app.state.refresher_stats);
    let on_demand = futures::future::join_all(rows.iter().flat_map(|(id,)| [id.clone(), id.clone()]).map(|id| {
        let tokens = app.state.tokens.clone();
        async move {
            let row = qetta::store::connections::get_by_id(tokens.db(), &id).await.unwrap().unwrap();
            tokens.access_token(row).await.map(|t| t.version).map_err(|e| e.to_string())
        }
    }));
    let (report, answers) = tokio::join!(refresher, on_demand);
    let report = report.unwrap();
    assert_eq!(report.failed, 0, "{report:?}");
    for a in &answers {
        assert!(matches!(a, Ok(2)), "every on-demand caller gets the refreshed token: {a:?}");
    }
    let stats = app.sandbox_stats("kftc").await;
    assert_eq!(count(&stats, &["tokens", "issued", "refresh_token"]), N as i64, "one upstream refresh per connection: {stats}");
    assert_eq!(count(&stats, &["tokens", "refused", "refresh_token"]), 0, "no spent refresh token sent: {stats}");
    assert!(count(&stats, &["in_flight", "/oauth/2.0/token", "max"]) > 16, "the refreshes overlapped beyond the pool size: {stats}");
    // Overlapping, not one after another (48 × 2 s).
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    let (refreshes,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM audit_log WHERE action = 'refresh' AND outcome = 'ok'").fetch_one(app.state.db.pool()).await.unwrap();
    assert_eq!(refreshes, N as i64, "each refresh audited once");
}

/// 200 connections come due at once while the refresher sleeps (interval: an hour). Moving the
/// clock wakes it; its passes then run back to back (batches of 25) until nothing is due, with
/// at most 8 refreshes at the provider at any moment, and each connection refreshed once.
async fn the_refresher_drains_due_connections_back_to_back_within_its_concurrency(backend: Backend) {
    const N: i64 = 200;
    let app = Spawn::new(backend)
        .var("QETTA_REFRESHER_ENABLED", "true")
        .var("QETTA_REFRESHER_INTERVAL_SECS", "3600")
        .var("QETTA_REFRESHER_CONCURRENCY", "8")
        .var("QETTA_REFRESHER_BATCH", "25")
        .start()
        .await;
    seed_connections(&app, N as usize).await;
    app.sandbox_control("kftc", "faults", json!({"latency_ms": 20})).await;
    assert_eq!(count(&app.sandbox_stats("kftc").await, &["tokens", "issued", "refresh_token"]), 0, "nothing is due yet");

    // An hour before the tokens' expiry: all due within the lookahead.
    app.clock.advance(7_776_000 - 3600);
    let started = std::time::Instant::now();
    // Until every new grant is stored (the provider counts it a moment before).
    loop {
        let (left,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM connections WHERE last_refreshed_at IS NULL").fetch_one(app.state.db.pool()).await.unwrap();
        if left == 0 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the refresher did not drain: {left} left");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = app.sandbox_stats("kftc").await;
    assert_eq!(count(&stats, &["tokens", "issued", "refresh_token"]), N, "{stats}");
    assert_eq!(count(&stats, &["tokens", "refused", "refresh_token"]), 0, "{stats}");
    let max = count(&stats, &["in_flight", "/oauth/2.0/token", "max"]);
    assert!((2..=8).contains(&max), "upstream concurrency {max} stays within the limit of 8 (and is used): {stats}");
    // Refreshed tokens are not due again (nor in the hours before their new expiry): nothing is
    // claimed, nothing refreshed twice.
    let again = qetta::tokens::refresher::run_once(&app.state.tokens, &app.state.refresher_stats).await.unwrap();
    assert_eq!(again.claimed, 0, "{again:?}");
    assert_eq!(count(&app.sandbox_stats("kftc").await, &["tokens", "issued", "refresh_token"]), N);
}
