//! Transaction sync (KFTC): the sync stores each sandbox transaction once under a stable
//! fingerprint, the change feed walks them exactly once before and after a day of new ones, one
//! `transactions.updated` event reaches a loopback receiver per run with changes, refusals
//! (another user's connection, a forged cursor, a non-KFTC connection, a bad count), and the
//! background pass syncs a due connection.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use qetta::clock::Clock;
use serde_json::{json, Value};

use crate::support::{error_code, Backend, Spawn, TestApp};

crate::both_backends!(
    sync_then_walk_the_feed_before_and_after_a_new_day,
    sync_routes_refuse_what_is_not_yours,
    the_background_pass_syncs_due_connections,
    concurrent_syncs_of_one_connection_store_each_transaction_once,
);

const SERVICE_KEY: &str = "sync-tests-service-key-0123456789abcdef0";

fn spawn_sync(backend: Backend) -> Spawn {
    Spawn::new(backend)
        .var("QETTA_SERVICE_KEY", SERVICE_KEY)
        .var("QETTA_WEBHOOK_ALLOW_PRIVATE", "true")
        // The background job is driven by the tests (`run_once`), never by time.
        .var("QETTA_SYNC_ENABLED", "false")
        .var("QETTA_RATE_LIMIT_API_PER_IP", "1000000")
        .var("QETTA_RATE_LIMIT_API_PER_USER", "1000000")
}

/// A loopback webhook receiver that records every body and answers 200.
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let hits: Arc<Mutex<Vec<Value>>> = Arc::default();
    let h = hits.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(move |body: String| {
        let h = h.clone();
        async move {
            h.lock().unwrap().push(serde_json::from_str(&body).unwrap_or(Value::Null));
            "ok"
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hooks"), hits)
}

async fn wait_hits(hits: &Arc<Mutex<Vec<Value>>>, n: usize) -> Vec<Value> {
    for _ in 0..200 {
        if hits.lock().unwrap().len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    hits.lock().unwrap().clone()
}

impl TestApp {
    async fn kftc_connection_id(&self, token: &str) -> String {
        self.connections(token).await.into_iter().find(|c| c["provider"] == "kftc").unwrap()["id"].as_str().unwrap().to_string()
    }

    async fn sync_now(&self, token: &str, id: &str) -> Value {
        let r = self.client.post(self.url(&format!("/api/v1/connections/{id}/sync"))).bearer_auth(token).send().await.unwrap();
        assert_eq!(r.status(), 200, "sync");
        r.json().await.unwrap()
    }

    async fn feed_page(&self, token: &str, id: &str, cursor: Option<&str>, count: i64) -> reqwest::Response {
        let mut url = format!("/api/v1/connections/{id}/transactions/sync?count={count}");
        if let Some(c) = cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        self.get(&url, Some(token)).await
    }

    /// Follows `next_cursor` from `cursor` until `has_more` is false: (added, modified, last cursor).
    async fn walk(&self, token: &str, id: &str, cursor: Option<String>, count: i64) -> (Vec<Value>, Vec<Value>, String) {
        let (mut added, mut modified) = (Vec::new(), Vec::new());
        let mut cursor = cursor;
        for _ in 0..10_000 {
            let r = self.feed_page(token, id, cursor.as_deref(), count).await;
            assert_eq!(r.status(), 200);
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["removed"], json!([]), "KFTC never removes");
            let a = v["added"].as_array().unwrap();
            let m = v["modified"].as_array().unwrap();
            assert!(a.len() + m.len() <= count as usize);
            added.extend(a.iter().cloned());
            modified.extend(m.iter().cloned());
            cursor = Some(v["next_cursor"].as_str().unwrap().to_string());
            if !v["has_more"].as_bool().unwrap() {
                return (added, modified, cursor.unwrap());
            }
        }
        panic!("the feed never ended");
    }
}

fn ids(v: &[Value]) -> Vec<String> {
    v.iter().map(|t| t["transaction_id"].as_str().unwrap().to_string()).collect()
}

fn unique(v: &[String]) -> HashSet<String> {
    let set: HashSet<String> = v.iter().cloned().collect();
    assert_eq!(set.len(), v.len(), "a transaction came twice");
    set
}

async fn sync_then_walk_the_feed_before_and_after_a_new_day(backend: Backend) {
    let app = spawn_sync(backend).start().await;
    let (url, hits) = receiver().await;
    let r = app
        .client
        .post(app.url("/api/v1/webhooks"))
        .header("x-qetta-service-key", SERVICE_KEY)
        .json(&json!({"url": url, "events": ["transactions.updated"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let (token, user_id) = app.register("sync@example.com").await;
    app.connect_kftc(&token, "kim").await;
    let id = app.kftc_connection_id(&token).await;
    let accounts = app.accounts(&token).await.len() as i64;

    let first = app.sync_now(&token, &id).await;
    assert_eq!(first["connection_id"], json!(id));
    assert_eq!(first["accounts"], json!(accounts));
    assert_eq!(first["modified"], json!(0));
    let n1 = first["added"].as_i64().unwrap();
    assert!(n1 > 20, "90 days of sandbox history: {first}");

    // The walk from no cursor, in small pages, gives every stored transaction once.
    let (added, modified, cursor1) = app.walk(&token, &id, None, 7).await;
    assert!(modified.is_empty());
    let before = unique(&ids(&added));
    assert_eq!(before.len() as i64, n1);
    let t = &added[0];
    for field in ["fintech_use_num", "at", "date", "direction", "amount", "description", "kind", "branch"] {
        assert!(!t[field].is_null(), "{field} in {t}");
    }
    // On demand at most once a minute per connection.
    let r = app.client.post(app.url(&format!("/api/v1/connections/{id}/sync"))).bearer_auth(&token).send().await.unwrap();
    assert!(r.headers().get("retry-after").is_some());
    assert_eq!(error_code(r, 429).await, "sync_too_soon");
    app.clock.advance(61);
    // Re-fetching the same days finds the same fingerprints: nothing new, no event.
    let again = app.sync_now(&token, &id).await;
    assert_eq!((again["added"].as_i64(), again["modified"].as_i64()), (Some(0), Some(0)), "{again}");
    let (a, m, cursor1b) = app.walk(&token, &id, Some(cursor1.clone()), 100).await;
    assert!(a.is_empty() && m.is_empty());
    assert_eq!(cursor1b, cursor1, "an empty page keeps the cursor");

    // A day later (both clocks), yesterday's transactions appear, once.
    app.sandbox_control("kftc", "clock", json!({"advance_seconds": 86_400})).await;
    app.clock.advance(86_400);
    let second = app.sync_now(&token, &id).await;
    let n2 = second["added"].as_i64().unwrap();
    let (added2, modified2, cursor2) = app.walk(&token, &id, Some(cursor1.clone()), 5).await;
    let new = unique(&ids(&added2));
    assert_eq!(new.len() as i64, n2, "{second}");
    assert!(new.is_disjoint(&before), "a transaction already seen came back as added");
    // Modified ones (the sandbox recomputes balances backwards) are ones the client has.
    assert!(ids(&modified2).iter().all(|i| before.contains(i)));
    assert_eq!(modified2.len() as i64, second["modified"].as_i64().unwrap());
    let yesterday = chrono::DateTime::from_timestamp(app.clock.now() + 9 * 3600 - 86_400, 0).unwrap().format("%Y-%m-%d").to_string();
    assert!(added2.iter().all(|t| t["date"].as_str().unwrap() >= yesterday.as_str()), "{added2:?}");
    eprintln!("sync measured: first run {n1} added; a day later {n2} added, {} modified", modified2.len());
    // A third sync on the same day changes nothing.
    app.clock.advance(61);
    let third = app.sync_now(&token, &id).await;
    assert_eq!((third["added"].as_i64(), third["modified"].as_i64()), (Some(0), Some(0)));
    let (a, m, _) = app.walk(&token, &id, Some(cursor2), 100).await;
    assert!(a.is_empty() && m.is_empty());

    // From scratch: exactly the stored transactions, each once.
    let (all, m, _) = app.walk(&token, &id, None, 500).await;
    assert!(m.is_empty());
    let all = unique(&ids(&all));
    assert_eq!(all, before.union(&new).cloned().collect::<HashSet<_>>());

    // One event per run that changed something, with the counts (none for the runs without).
    let got = wait_hits(&hits, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = if hits.lock().unwrap().len() > got.len() { hits.lock().unwrap().clone() } else { got };
    let changed_runs = 1 + i64::from(n2 + second["modified"].as_i64().unwrap() > 0);
    assert_eq!(got.len() as i64, changed_runs, "{got:?}");
    assert_eq!(got[0]["type"], "transactions.updated");
    assert_eq!(got[0]["data"], json!({"connection_id": id, "user_id": user_id, "provider": "kftc", "accounts": accounts, "new_transactions": n1}));
    if changed_runs == 2 {
        assert_eq!(got[1]["data"]["new_transactions"], json!(n2));
    }
    // No personal field in the payloads.
    let text = serde_json::to_string(&got).unwrap();
    assert!(!text.contains(added[0]["description"].as_str().unwrap()));
}

async fn sync_routes_refuse_what_is_not_yours(backend: Backend) {
    let app = spawn_sync(backend).start().await;
    let (token, _) = app.register("owner@example.com").await;
    app.connect_kftc(&token, "kim").await;
    let id = app.kftc_connection_id(&token).await;
    app.sync_now(&token, &id).await;
    let (_, _, cursor) = app.walk(&token, &id, None, 500).await;

    // Another user: 404 on both routes, even with the owner's cursor.
    let (other, _) = app.register("other@example.com").await;
    let r = app.client.post(app.url(&format!("/api/v1/connections/{id}/sync"))).bearer_auth(&other).send().await.unwrap();
    assert_eq!(error_code(r, 404).await, "connection_not_found");
    assert_eq!(error_code(app.feed_page(&other, &id, Some(&cursor), 10).await, 404).await, "connection_not_found");
    assert_eq!(error_code(app.feed_page(&other, &id, None, 10).await, 404).await, "connection_not_found");
    // No token at all.
    assert_eq!(app.get(&format!("/api/v1/connections/{id}/transactions/sync"), None).await.status(), 401);

    // Forged cursors: a changed payload with the old tag, garbage, a made-up tag.
    let (payload, tag) = cursor.split_once('.').unwrap();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let forged = format!("{}.{tag}", b64.encode(br#"{"s":0}"#));
    assert_ne!(payload, b64.encode(br#"{"s":0}"#));
    for bad in [forged.as_str(), "abc", "e30.AAAAAAAAAAAAAAAAAAAAAA"] {
        assert_eq!(error_code(app.feed_page(&token, &id, Some(bad), 10).await, 400).await, "invalid_cursor", "{bad}");
    }
    for count in [0, 501, -1] {
        assert_eq!(error_code(app.feed_page(&token, &id, None, count).await, 422).await, "invalid_count");
    }
    let r = app.get(&format!("/api/v1/connections/{id}/transactions/sync?count=ten"), Some(&token)).await;
    assert_eq!(error_code(r, 400).await, "invalid_query");

    // A non-KFTC connection: 400 not_supported.
    assert!(app.connect(&token, "kakao", "kim", json!({})).await.ok);
    let kakao = app.connections(&token).await.into_iter().find(|c| c["provider"] == "kakao").unwrap()["id"].as_str().unwrap().to_string();
    let r = app.client.post(app.url(&format!("/api/v1/connections/{kakao}/sync"))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(error_code(r, 400).await, "not_supported");
    assert_eq!(error_code(app.feed_page(&token, &kakao, None, 10).await, 400).await, "not_supported");
}

async fn the_background_pass_syncs_due_connections(backend: Backend) {
    let app = spawn_sync(backend).start().await;
    let (token, _) = app.register("job@example.com").await;
    app.connect_kftc(&token, "kim").await;
    let id = app.kftc_connection_id(&token).await;

    // A new connection is due at once.
    let r = qetta::sync::job::run_once(&app.state).await.unwrap();
    assert_eq!((r.claimed, r.synced, r.failed), (1, 1, 0), "{r:?}");
    assert!(r.added > 20);
    let first_added = r.added;
    let (all, _, _) = app.walk(&token, &id, None, 500).await;
    assert_eq!(all.len() as i64, r.added);
    // Not due again before the interval (default 3600 s).
    assert_eq!(qetta::sync::job::run_once(&app.state).await.unwrap().claimed, 0);
    app.clock.advance(3_500);
    assert_eq!(qetta::sync::job::run_once(&app.state).await.unwrap().claimed, 0);
    app.clock.advance(200);
    let r = qetta::sync::job::run_once(&app.state).await.unwrap();
    assert_eq!((r.claimed, r.synced, r.added), (1, 1, 0), "{r:?}");

    // A connection that is not active is not claimed.
    app.clock.advance(3_601);
    qetta::store::connections::change_status(app.state.db.pool(), &id, "needs_reauth", app.clock.now()).await.unwrap();
    assert_eq!(qetta::sync::job::run_once(&app.state).await.unwrap().claimed, 0);

    // (The app's own vault does not hold the new key: the rotation comes last.)
    // Key rotation reseals the stored memo and branch fields too.
    let new_key = qetta::vault::KeyRing::generate_entry("synckey");
    let vault = qetta::vault::Vault::new(qetta::vault::KeyRing::parse(&format!("{new_key},{}", crate::support::ENCRYPTION_KEYS)).unwrap());
    let report = qetta::keys::rotate(&app.state.db, &vault, 7).await.unwrap();
    assert_eq!(report.remaining, 0, "{report:?}");
    assert!(report.resealed as i64 >= first_added);
    assert!(qetta::store::transactions::not_on_key(&app.state.db, "synckey", 10).await.unwrap().is_empty());
    assert_eq!(qetta::store::transactions::key_ids_in_use(&app.state.db).await.unwrap(), vec!["synckey".to_string()]);
}

async fn concurrent_syncs_of_one_connection_store_each_transaction_once(backend: Backend) {
    let app = spawn_sync(backend).start().await;
    let (token, _) = app.register("race@example.com").await;
    app.connect_kftc(&token, "kim").await;
    let id = app.kftc_connection_id(&token).await;
    let conn = qetta::store::connections::get_by_id(&app.state.db, &id).await.unwrap().unwrap();
    // Like an on-demand sync racing the background one (on another replica, for PostgreSQL).
    let (a, b, c) = tokio::join!(
        qetta::sync::sync_connection(&app.state, &conn),
        qetta::sync::sync_connection(&app.state, &conn),
        qetta::sync::sync_connection(&app.state, &conn)
    );
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    let (all, modified, _) = app.walk(&token, &id, None, 500).await;
    assert!(modified.is_empty());
    let all = unique(&ids(&all));
    assert_eq!(a.added + b.added + c.added, all.len() as i64, "{a:?} {b:?} {c:?}");
    assert_eq!(a.modified + b.modified + c.modified, 0);
}
