//! The KFTC flow over HTTP against the embedded sandbox, on both databases.

use serde_json::{json, Value};

use crate::support::{count, error_code, spawn, Backend, Spawn};
use crate::{all_backends, both_backends};

both_backends!(every_page_of_a_long_history, dead_grant_needs_reauth_then_reconnect, upstream_errors_map_to_ours, input_is_validated);
// The flows that touch shared state (OAuth states, refresh locks, bank_tran_id counters) also
// run with Redis.
all_backends!(connect_read_and_disconnect, refresh_on_expiry_and_after_rejection, state_attacks_store_nothing);

fn balance_path(f: &str) -> String {
    format!("/api/v1/oauth/kftc/balance/{f}")
}

async fn connect_read_and_disconnect(backend: Backend) {
    let app = spawn(backend).await;
    let (token, _) = app.register("kim@example.com").await;
    assert_eq!(app.status_of(&token, "kftc").await["connected"], false);
    app.connect_kftc(&token, "kim").await;

    let s = app.status_of(&token, "kftc").await;
    assert_eq!(s["connected"], true);
    assert_eq!(s["status"], "active");
    assert_eq!(s["scope"], json!(["inquiry", "login"]));
    assert!(s["expires_at"].as_str().is_some());

    let accounts = app.accounts(&token).await;
    assert!((2..=4).contains(&accounts.len()), "{accounts:?}");
    let mut saw_negative = false;
    for a in &accounts {
        assert_eq!(a["fintech_use_num"].as_str().unwrap().len(), 24);
        assert_eq!(a["bank_code"].as_str().unwrap().len(), 3);
        let r = app.get(&balance_path(a["fintech_use_num"].as_str().unwrap()), Some(&token)).await;
        assert_eq!(r.status(), 200);
        let b: Value = r.json().await.unwrap();
        assert_eq!(b["currency"], "KRW");
        assert!(b["balance"].is_i64(), "{b}");
        saw_negative |= b["balance"].as_i64().unwrap() < 0;
    }
    assert!(saw_negative, "kim's overdraft account is negative");

    // The browser-facing token route gives a masked token only.
    let t: Value = app.get("/api/v1/oauth/kftc/token", Some(&token)).await.json().await.unwrap();
    assert!(t.get("access_token").is_none());
    assert!(t["token_masked"].as_str().unwrap().contains('…'));

    // Connect, token fetch and reads are audited for the user.
    let audit: Value = app.get("/api/v1/oauth/audit", Some(&token)).await.json().await.unwrap();
    let actions: Vec<&str> = audit["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert!(actions.contains(&"authorize") && actions.contains(&"callback"), "{actions:?}");

    let r = app.client.delete(app.url("/api/v1/oauth/kftc/disconnect")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["unlink"]["ok"], true, "{body}");
    assert_eq!(count(&app.sandbox_stats("kftc").await, &["calls", "/v2.0/user/unlink"]), 1);
    assert_eq!(app.status_of(&token, "kftc").await["connected"], false);
    let r = app.get(&balance_path(accounts[0]["fintech_use_num"].as_str().unwrap()), Some(&token)).await;
    assert_eq!(error_code(r, 404).await, "not_found");
    let r = app.client.delete(app.url("/api/v1/oauth/kftc/disconnect")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(error_code(r, 404).await, "not_found");
}

async fn every_page_of_a_long_history(backend: Backend) {
    let app = spawn(backend).await;
    let (token, _) = app.register("pages@example.com").await;
    app.connect_kftc(&token, "kim").await;
    let accounts = app.accounts(&token).await;
    let today = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Seoul).date_naive();
    let from = (today - chrono::Duration::days(89)).format("%Y%m%d").to_string();
    let to = today.format("%Y-%m-%d").to_string();

    // The account with the longest history: page through it 30 at a time (KFTC pages are 25).
    let mut best: (usize, Vec<Value>) = (0, vec![]);
    for a in &accounts {
        let fin = a["fintech_use_num"].as_str().unwrap();
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut body = json!({"fintech_use_num": fin, "from_date": from, "to_date": to, "limit": 30});
            if let Some(c) = &cursor {
                body["cursor"] = json!(c);
            }
            let r = app.post_json("/api/v1/oauth/kftc/transactions", &body, Some(&token)).await;
            assert_eq!(r.status(), 200);
            let v: Value = r.json().await.unwrap();
            let txs = v["transactions"].as_array().unwrap();
            assert!(txs.len() <= 30);
            all.extend(txs.iter().cloned());
            pages += 1;
            match v["next_cursor"].as_str() {
                Some(c) => {
                    assert_eq!(txs.len(), 30, "only the last page is short");
                    cursor = Some(c.to_string());
                }
                None => break,
            }
            assert!(pages < 50, "paging does not end");
        }
        if all.len() > best.0 {
            best = (all.len(), all);
        }
    }
    let (n, all) = best;
    assert!(n > 100, "the long account has more than 100 transactions in 90 days, got {n}");
    // Newest first, no duplicates, every field typed.
    let ats: Vec<&str> = all.iter().map(|t| t["at"].as_str().unwrap()).collect();
    let parsed: Vec<_> = ats.iter().map(|a| chrono::DateTime::parse_from_rfc3339(a).unwrap()).collect();
    assert!(parsed.windows(2).all(|w| w[0] >= w[1]), "sorted newest first");
    assert!(ats.iter().all(|a| a.ends_with("+09:00")), "KST timestamps");
    for t in &all {
        assert!(["in", "out", "other"].contains(&t["direction"].as_str().unwrap()));
        assert!(t["amount"].as_i64().unwrap() >= 0);
    }
    let mut keys: Vec<String> = all.iter().map(|t| format!("{}|{}|{}", t["at"], t["amount"], t["balance_after"])).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n, "no transaction twice");
    // Every KFTC page used a new bank_tran_id: the sandbox refuses duplicates, and none failed.
    let stats = app.sandbox_stats("kftc").await;
    assert!(count(&stats, &["calls", "/v2.0/account/transaction_list/fin_num"]) >= (n as i64) / 25);
}

async fn refresh_on_expiry_and_after_rejection(backend: Backend) {
    let app = Spawn::new(backend).var("QETTA_REFRESH_MARGIN_SECS", "3600").start().await;
    let (token, _) = app.register("refresh@example.com").await;
    app.connect_kftc(&token, "lee").await;
    let fin = app.accounts(&token).await[0]["fintech_use_num"].as_str().unwrap().to_string();

    // The provider rejects the token (O0003) although its stored expiry is far ahead:
    // one refresh, then the call succeeds.
    app.sandbox_control("kftc", "expire-tokens", json!({})).await;
    assert_eq!(app.get(&balance_path(&fin), Some(&token)).await.status(), 200);
    let stats = app.sandbox_stats("kftc").await;
    assert_eq!(count(&stats, &["tokens", "issued", "refresh_token"]), 1);
    let s = app.status_of(&token, "kftc").await;
    assert!(s["last_refreshed_at"].as_str().is_some());

    // Natural expiry: move our clock to within the margin of expiry; the token is refreshed
    // before it is used.
    app.clock.advance(7_775_999 - 1800);
    assert_eq!(app.get(&balance_path(&fin), Some(&token)).await.status(), 200);
    let stats = app.sandbox_stats("kftc").await;
    assert_eq!(count(&stats, &["tokens", "issued", "refresh_token"]), 2);
    // And not again while it is fresh.
    assert_eq!(app.get(&balance_path(&fin), Some(&token)).await.status(), 200);
    assert_eq!(count(&app.sandbox_stats("kftc").await, &["tokens", "issued", "refresh_token"]), 2);

    // The background refresher refreshes what expires within its lookahead.
    app.clock.advance(7_775_999 - 86_400);
    let report = qetta::tokens::refresher::run_once(&app.state.tokens, &app.state.refresher_stats).await.unwrap();
    assert_eq!((report.claimed, report.refreshed), (1, 1), "{report:?}");
    assert_eq!(count(&app.sandbox_stats("kftc").await, &["tokens", "issued", "refresh_token"]), 3);
    let report = qetta::tokens::refresher::run_once(&app.state.tokens, &app.state.refresher_stats).await.unwrap();
    assert_eq!(report.claimed, 0);
}

async fn dead_grant_needs_reauth_then_reconnect(backend: Backend) {
    let app = spawn(backend).await;
    let (token, _) = app.register("dead@example.com").await;
    app.connect_kftc(&token, "park").await;
    let fin = app.accounts(&token).await[0]["fintech_use_num"].as_str().unwrap().to_string();

    // 101 days later on both clocks: the access token and the refresh token (+10 days) expired.
    app.sandbox_control("kftc", "clock", json!({"advance_seconds": 101 * 86_400})).await;
    app.clock.advance(101 * 86_400);
    let r = app.get(&balance_path(&fin), Some(&token)).await;
    assert_eq!(error_code(r, 409).await, "reauth_required");
    assert_eq!(app.status_of(&token, "kftc").await["status"], "needs_reauth");
    assert_eq!(count(&app.sandbox_stats("kftc").await, &["tokens", "refused", "refresh_token"]), 1);
    // A second call does not try again: the grant is dead.
    let r = app.get(&balance_path(&fin), Some(&token)).await;
    assert_eq!(error_code(r, 409).await, "reauth_required");
    assert_eq!(count(&app.sandbox_stats("kftc").await, &["tokens", "refused", "refresh_token"]), 1);

    // Re-consent: auth_type 1, then active again.
    let browser = app.browser();
    let r = browser.get(app.url("/api/v1/oauth/kftc/authorize")).bearer_auth(&token).send().await.unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["auth_type"], 1);
    let callback = app.kftc_consent(&browser, v["authorize_url"].as_str().unwrap(), "park", "approve").await;
    let cb = app.kftc_callback(&browser, &callback).await;
    assert!(cb.ok, "{cb:?}");
    assert_eq!(app.status_of(&token, "kftc").await["status"], "active");
    assert_eq!(app.get(&balance_path(&fin), Some(&token)).await.status(), 200);
}

async fn state_attacks_store_nothing(backend: Backend) {
    let app = spawn(backend).await;
    let (alice, _) = app.register("alice@example.com").await;
    let (mallory, _) = app.register("mallory@example.com").await;
    let token_calls = |stats: &Value| count(stats, &["calls", "/oauth/2.0/token"]);

    // Missing and altered state.
    let browser = app.browser();
    let launch = app.kftc_authorize(&browser, &alice).await;
    let callback = app.kftc_consent(&browser, &launch, "kim", "approve").await;
    let no_state = callback.split('&').filter(|p| !p.starts_with("state=")).collect::<Vec<_>>().join("&");
    let cb = app.kftc_callback(&browser, &no_state).await;
    assert_eq!((cb.status, cb.code.as_str()), (400, "state_missing"));
    let altered = callback.replace("state=", "state=X");
    let cb = app.kftc_callback(&browser, &altered).await;
    assert_eq!((cb.status, cb.code.as_str()), (404, "state_unknown"));

    // Another browser (no binding cookie) is refused, and the state is then spent.
    let other_browser = app.browser();
    let cb = app.kftc_callback(&other_browser, &callback).await;
    assert_eq!((cb.status, cb.code.as_str()), (403, "state_browser_mismatch"));
    // Replay, even in the right browser.
    let cb = app.kftc_callback(&browser, &callback).await;
    assert_eq!((cb.status, cb.code.as_str()), (409, "state_replayed"));

    // Mallory's state delivered into Alice's browser: bound to Mallory's browser, refused.
    let mallory_browser = app.browser();
    let m_launch = app.kftc_authorize(&mallory_browser, &mallory).await;
    let m_callback = app.kftc_consent(&mallory_browser, &m_launch, "lee", "approve").await;
    let alice_browser = app.browser();
    let a_launch = app.kftc_authorize(&alice_browser, &alice).await;
    let _ = app.kftc_consent(&alice_browser, &a_launch, "kim", "approve").await;
    let cb = app.kftc_callback(&alice_browser, &m_callback).await;
    assert_eq!((cb.status, cb.code.as_str()), (403, "state_browser_mismatch"));

    // A launch link opened twice (e.g. forwarded to someone) binds only the first browser.
    let browser = app.browser();
    let launch = app.kftc_authorize(&browser, &alice).await;
    assert_eq!(browser.get(&launch).send().await.unwrap().status(), 303);
    let r = app.browser().get(&launch).send().await.unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(crate::support::data_attr(&r.text().await.unwrap(), "code"), "state_already_used");

    // Expired: 11 minutes later.
    let browser = app.browser();
    let launch = app.kftc_authorize(&browser, &alice).await;
    let callback = app.kftc_consent(&browser, &launch, "kim", "approve").await;
    app.clock.advance(11 * 60);
    let cb = app.kftc_callback(&browser, &callback).await;
    assert_eq!((cb.status, cb.code.as_str()), (400, "state_expired"));

    // The user cancels on the consent page.
    let browser = app.browser();
    let launch = app.kftc_authorize(&browser, &alice).await;
    let callback = app.kftc_consent(&browser, &launch, "kim", "deny").await;
    let cb = app.kftc_callback(&browser, &callback).await;
    assert!(!cb.ok);
    assert_eq!(cb.code, "consent_denied");

    // Nothing was stored, and no code was ever sent to KFTC.
    for t in [&alice, &mallory] {
        assert_eq!(app.status_of(t, "kftc").await["connected"], false);
    }
    assert_eq!(token_calls(&app.sandbox_stats("kftc").await), 0);
    // The error pages carry a strict CSP and the request id.
    assert!(cb.body.contains("request id:"));
}

async fn upstream_errors_map_to_ours(backend: Backend) {
    let app = Spawn::new(backend).var("QETTA_UPSTREAM_TIMEOUT_MS", "400").start().await;
    let (token, _) = app.register("errors@example.com").await;
    app.connect_kftc(&token, "choi").await;
    let fin = app.accounts(&token).await[0]["fintech_use_num"].as_str().unwrap().to_string();

    let cases = [
        (json!({"error_rate": 1.0, "error": "O0013"}), 429, "upstream_rate_limited", None),
        (json!({"error_rate": 1.0, "error": "A0002:412"}), 502, "bank_error", Some("A0002/412")),
        (json!({"error_rate": 1.0, "error": "A0004"}), 502, "upstream_error", Some("A0004")),
        (json!({"error_rate": 1.0, "error": "O0002"}), 409, "reauth_required", None),
    ];
    for (fault, status, code, provider_code) in cases {
        app.sandbox_control("kftc", "faults", fault.clone()).await;
        let r = app.get(&balance_path(&fin), Some(&token)).await;
        assert_eq!(r.status().as_u16(), status, "{fault}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{fault}: {body}");
        if let Some(pc) = provider_code {
            assert_eq!(body["error"]["provider_code"], pc);
        }
    }
    app.sandbox_control("kftc", "faults", json!({})).await;
    assert_eq!(app.status_of(&token, "kftc").await["status"], "needs_reauth", "O0002 marked the connection");
}

both_backends!(duplicate_ids_and_timeouts);

async fn duplicate_ids_and_timeouts(backend: Backend) {
    let app = Spawn::new(backend).var("QETTA_UPSTREAM_TIMEOUT_MS", "300").start().await;
    let (token, _) = app.register("timeouts@example.com").await;
    app.connect_kftc(&token, "kim").await;
    let fin = app.accounts(&token).await[0]["fintech_use_num"].as_str().unwrap().to_string();
    let calls = |stats: &Value| count(stats, &["calls", "/v2.0/account/balance/fin_num"]);

    // A0326 (bank_tran_id already used today): a new id and exactly one retry.
    let before = calls(&app.sandbox_stats("kftc").await);
    app.sandbox_control("kftc", "faults", json!({"error_rate": 1.0, "error": "A0326"})).await;
    let r = app.get(&balance_path(&fin), Some(&token)).await;
    assert_eq!(r.status(), 502);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["provider_code"], "A0326");
    assert_eq!(calls(&app.sandbox_stats("kftc").await) - before, 2, "one retry with a new id");

    // The provider does not answer in time: retried (read-only), then 504.
    app.sandbox_control("kftc", "faults", json!({"latency_ms": 1500})).await;
    let r = app.get(&balance_path(&fin), Some(&token)).await;
    assert_eq!(error_code(r, 504).await, "upstream_timeout");
    app.sandbox_control("kftc", "faults", json!({})).await;
    assert_eq!(app.get(&balance_path(&fin), Some(&token)).await.status(), 200, "the connection is unharmed");
}

async fn input_is_validated(backend: Backend) {
    let app = spawn(backend).await;
    let (token, _) = app.register("input@example.com").await;
    let (other, _) = app.register("other@example.com").await;
    // Not connected yet.
    let r = app.get("/api/v1/oauth/kftc/accounts", Some(&token)).await;
    assert_eq!(error_code(r, 404).await, "not_found");
    app.connect_kftc(&token, "kim").await;
    app.connect_kftc(&other, "lee").await;
    let mine = app.accounts(&token).await[0]["fintech_use_num"].as_str().unwrap().to_string();
    let theirs = app.accounts(&other).await[0]["fintech_use_num"].as_str().unwrap().to_string();
    let before = count(&app.sandbox_stats("kftc").await, &["calls", "/v2.0/account/balance/fin_num"]);

    let r = app.get(&balance_path(&theirs), Some(&token)).await;
    assert_eq!(error_code(r, 404).await, "not_found");
    let r = app.get(&balance_path("short"), Some(&token)).await;
    assert_eq!(error_code(r, 422).await, "invalid_fintech_use_num");
    assert_eq!(count(&app.sandbox_stats("kftc").await, &["calls", "/v2.0/account/balance/fin_num"]), before, "nothing sent upstream");

    let tx = |body: Value| {
        let app = &app;
        let token = token.clone();
        async move { app.post_json("/api/v1/oauth/kftc/transactions", &body, Some(&token)).await }
    };
    for (body, code) in [
        (json!({"fintech_use_num": mine, "from_date": "2026-13-01", "to_date": "20261101"}), "invalid_date"),
        (json!({"fintech_use_num": mine, "from_date": "20261101", "to_date": "20261001"}), "invalid_range"),
        (json!({"fintech_use_num": mine, "from_date": "20240101", "to_date": "20251001"}), "range_too_long"),
        (json!({"fintech_use_num": mine, "from_date": "20261001", "to_date": "20261101", "limit": 0}), "invalid_limit"),
        (json!({"fintech_use_num": mine, "from_date": "20261001", "to_date": "20261101", "limit": 101}), "invalid_limit"),
        (json!({"fintech_use_num": mine, "from_date": "20261001", "to_date": "20261101", "inquiry_type": "X"}), "invalid_inquiry_type"),
        (json!({"fintech_use_num": mine, "from_date": "20261001"}), "invalid_body"),
    ] {
        let r = tx(body.clone()).await;
        assert_eq!(error_code(r, 422).await, code, "{body}");
    }
    let r = tx(json!({"fintech_use_num": theirs, "from_date": "20261001", "to_date": "20261101"})).await;
    assert_eq!(error_code(r, 404).await, "not_found");

    // Forged cursors: garbage, a well-formed cursor of the old unsigned shape (any trace value an
    // attacker likes), a real cursor with its payload altered, and one with a made-up MAC.
    let calls = |s: Value| count(&s, &["calls", "/v2.0/account/transaction_list/fin_num"]);
    let today = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Seoul).date_naive();
    let (from, to) = ((today - chrono::Duration::days(89)).format("%Y%m%d").to_string(), today.format("%Y%m%d").to_string());
    let page: Value = tx(json!({"fintech_use_num": mine, "from_date": from, "to_date": to, "limit": 1})).await.json().await.unwrap();
    let real = page["next_cursor"].as_str().expect("a long history has a next page").to_string();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (payload, tag) = real.split_once('.').unwrap();
    let mut json_payload: Value = serde_json::from_slice(&base64::Engine::decode(&b64, payload).unwrap()).unwrap();
    json_payload["t"] = json!("ATTACKER-CONTROLLED-TRACE");
    let altered = format!("{}.{tag}", base64::Engine::encode(&b64, serde_json::to_vec(&json_payload).unwrap()));
    let unsigned = base64::Engine::encode(&b64, serde_json::to_vec(&json_payload).unwrap());
    let before = calls(app.sandbox_stats("kftc").await);
    for forged in ["garbage".to_string(), unsigned, altered, format!("{payload}.AAAAAAAAAAAAAAAAAAAAAA")] {
        let r = tx(json!({"fintech_use_num": mine, "from_date": from, "to_date": to, "limit": 1, "cursor": forged})).await;
        assert_eq!(error_code(r, 400).await, "invalid_cursor", "{forged}");
    }
    assert_eq!(calls(app.sandbox_stats("kftc").await), before, "no forged cursor reached KFTC");
    // The real cursor still works for its owner.
    let r = tx(json!({"fintech_use_num": mine, "from_date": from, "to_date": to, "limit": 1, "cursor": real})).await;
    assert_eq!(r.status(), 200);
}

both_backends!(failing_refresh_backs_off_and_answers_fast);

async fn failing_refresh_backs_off_and_answers_fast(backend: Backend) {
    let app = Spawn::new(backend).var("QETTA_UPSTREAM_TIMEOUT_MS", "2000").start().await;
    let (token, _) = app.register("backoff@example.com").await;
    app.connect_kftc(&token, "lee").await;
    let fin = app.accounts(&token).await[0]["fintech_use_num"].as_str().unwrap().to_string();
    let token_calls = |s: &Value| count(s, &["calls", "/oauth/2.0/token"]);

    // The token expired (our clock) and KFTC fails every call.
    app.clock.advance(7_775_999 + 60);
    app.sandbox_control("kftc", "faults", json!({"error_rate": 1.0, "error": "http_503"})).await;
    let before = token_calls(&app.sandbox_stats("kftc").await);
    let r = app.get(&balance_path(&fin), Some(&token)).await;
    assert_eq!(r.status(), 502);
    assert_eq!(token_calls(&app.sandbox_stats("kftc").await), before + 1);

    // While backing off: an immediate answer, no call upstream, the tokens kept.
    for _ in 0..3 {
        let r = app.get(&balance_path(&fin), Some(&token)).await;
        assert!(r.headers().contains_key("retry-after"));
        assert_eq!(error_code(r, 429).await, "refresh_backoff");
    }
    assert_eq!(token_calls(&app.sandbox_stats("kftc").await), before + 1, "no refresh attempt during the backoff");
    assert_eq!(app.status_of(&token, "kftc").await["status"], "active");

    // After the backoff, KFTC healthy again: refreshed and served.
    app.sandbox_control("kftc", "faults", json!({})).await;
    app.clock.advance(120);
    assert_eq!(app.get(&balance_path(&fin), Some(&token)).await.status(), 200);
    assert_eq!(count(&app.sandbox_stats("kftc").await, &["tokens", "issued", "refresh_token"]), 1);
}

both_backends!(spent_refresh_token_needs_reauth);

/// Someone else (another deployment with a copy of the database, say) spent the refresh token:
/// KFTC answers O0014 to ours, and the connection asks for consent again.
async fn spent_refresh_token_needs_reauth(backend: Backend) {
    let app = spawn(backend).await;
    let (token, user_id) = app.register("spent@example.com").await;
    app.connect_kftc(&token, "choi").await;
    let fin = app.accounts(&token).await[0]["fintech_use_num"].as_str().unwrap().to_string();
    let conn = qetta::store::connections::default_for(&app.state.db, &user_id, "kftc").await.unwrap().unwrap();
    let refresh = app.state.vault.open_string(conn.refresh_token.as_deref().unwrap(), qetta::tokens::aad(&conn, "refresh_token")).unwrap();
    let r = app
        .client
        .post(app.url("/sandbox/kftc/oauth/2.0/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", qetta_sandbox::config::DEFAULT_KFTC_CLIENT_ID),
            ("client_secret", qetta_sandbox::config::DEFAULT_KFTC_CLIENT_SECRET),
            ("refresh_token", secrecy::ExposeSecret::expose_secret(&refresh)),
            ("scope", "login inquiry"),
        ])
        .send()
        .await
        .unwrap();
    let rotated: Value = r.json().await.unwrap();
    assert!(rotated["access_token"].is_string(), "{rotated}");

    app.clock.advance(7_775_999);
    let r = app.get(&balance_path(&fin), Some(&token)).await;
    assert_eq!(error_code(r, 409).await, "reauth_required");
    assert_eq!(app.status_of(&token, "kftc").await["status"], "needs_reauth");
    let audit: Value = app.get("/api/v1/oauth/audit", Some(&token)).await.json().await.unwrap();
    assert!(audit.to_string().contains("O0014"), "the refusal is audited with KFTC's code: {audit}");
}

// ---------------------------------------------------------------------------------------------
// Forced account linking through the launch link: a link opened in a browser that did not start
// the flow shows a confirmation page naming the Qetta account, never the provider straight away.

all_backends!(foreign_launch_link_shows_confirmation, confirmation_refuses_forgeries, confirmed_link_completes_once);

const LAUNCH: &str = "/api/v1/oauth/kftc/launch";

/// The value of the hidden form field `name` on the confirmation page.
fn form_field(body: &str, name: &str) -> String {
    let key = format!("name=\"{name}\" value=\"");
    body.split_once(&key).and_then(|(_, rest)| rest.split_once('"')).map(|(v, _)| v.to_string()).unwrap_or_default()
}

fn state_of(launch: &str) -> String {
    launch.split_once("state=").map(|(_, s)| s.to_string()).unwrap()
}

/// Opens `launch` in `browser`; asserts the confirmation page; returns (state, csrf token, body).
async fn confirmation_page(browser: &reqwest::Client, launch: &str) -> (String, String, String) {
    let r = browser.get(launch).send().await.unwrap();
    assert_eq!(r.status(), 200, "a confirmation page, not a redirect");
    assert!(r.headers().get("location").is_none());
    let body = r.text().await.unwrap();
    assert!(body.contains("id=\"launch-confirm\""), "{body}");
    (form_field(&body, "state"), form_field(&body, "csrf_token"), body)
}

/// A refusal page: its status and code.
async fn refusal(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    assert!(r.headers().get("location").is_none(), "refused, not redirected");
    (status, crate::support::data_attr(&r.text().await.unwrap(), "code"))
}

async fn binding_of(app: &crate::support::TestApp, state: &str) -> Option<String> {
    app.state.shared.peek_state(state).await.unwrap().unwrap().browser_binding
}

async fn foreign_launch_link_shows_confirmation(backend: Backend) {
    let app = spawn(backend).await;
    let (mallory, _) = app.register("mallory.attacker@example.com").await;
    let (_victim, _) = app.register("victim@example.com").await;

    // Mallory makes a link for her own account (no cookie jar) and sends it to the victim.
    let launch = app.kftc_authorize_backend(&mallory).await;
    let victim = app.browser();
    let r = victim.get(&launch).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && !csp.contains("script-src") && !csp.contains("unsafe-inline"), "{csp}");
    assert!(csp.contains("form-action 'self'"), "{csp}");
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["x-frame-options"], "DENY");
    let csrf_cookie = h.get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).find(|c| c.starts_with("qetta_kftc_csrf=")).expect("CSRF cookie");
    assert!(csrf_cookie.contains("HttpOnly") && csrf_cookie.contains("SameSite=Strict") && csrf_cookie.contains("Path=/api/v1/oauth/kftc"), "{csrf_cookie}");
    assert!(!h.get_all("set-cookie").iter().any(|c| c.to_str().unwrap().starts_with("qetta_kftc_bind=")), "nothing bound");
    let body = r.text().await.unwrap();
    // It names Mallory's account, masked; never the full address; never the provider's page.
    assert!(body.contains("ma***@ex*****.com"), "{body}");
    assert!(!body.contains("mallory") && !body.contains("attacker"), "{body}");
    assert!(!body.contains("/sandbox/kftc/oauth/2.0/authorize"), "{body}");
    assert!(!body.contains("<script"), "no script on the confirmation page");
    assert!(body.contains(&format!("action=\"{}\"", app.url(LAUNCH))), "{body}");
    assert!(body.contains("취소") && body.contains("Cancel"), "both languages");
    let state = state_of(&launch);
    assert_eq!(form_field(&body, "state"), state);
    assert_eq!(binding_of(&app, &state).await, None, "nothing bound");

    // A second browser can still open it and also gets the confirmation page.
    let (_, _, body) = confirmation_page(&app.browser(), &launch).await;
    assert!(body.contains("ma***@ex*****.com"));
    assert_eq!(binding_of(&app, &state).await, None);

    // The same browser that called authorize (the /oauth page's case) goes straight through.
    let mallory_browser = app.browser();
    let own = app.kftc_authorize(&mallory_browser, &mallory).await;
    let r = mallory_browser.get(&own).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert!(r.headers()["location"].to_str().unwrap().contains("/sandbox/kftc/oauth/2.0/authorize?"));
    assert!(binding_of(&app, &state_of(&own)).await.is_some());
    // Its initiator cookie does not open Mallory's other, cookie-less link.
    let (_, _, _) = confirmation_page(&mallory_browser, &app.kftc_authorize_backend(&mallory).await).await;

    // A user minted by the app's backend has no real email: the page shows the masked user id.
    let minted = app.state.jwt.issue("app-user-4242", None, app.state.clock.now()).0;
    let launch = app.kftc_authorize_backend(&minted).await;
    let (_, _, body) = confirmation_page(&app.browser(), &launch).await;
    assert!(body.contains("app***42") && body.contains("App user ID"), "{body}");
    assert!(!body.contains("app-user-4242") && !body.contains("external.invalid"), "{body}");

    // Showing the page is audited for the account's owner.
    let audit: Value = app.get("/api/v1/oauth/audit", Some(&mallory)).await.json().await.unwrap();
    let launches: Vec<&str> = audit["entries"].as_array().unwrap().iter().filter(|e| e["action"] == "launch").map(|e| e["outcome"].as_str().unwrap()).collect();
    assert!(launches.contains(&"confirmation_shown") && launches.contains(&"bound"), "{launches:?}");
    // The address of whoever opened Mallory's link is not shown to Mallory.
    for e in audit["entries"].as_array().unwrap().iter().filter(|e| e["outcome"] == "confirmation_shown") {
        assert!(e["ip"].is_null(), "{e}");
    }
}

async fn confirmation_refuses_forgeries(backend: Backend) {
    let app = spawn(backend).await;
    let (mallory, _) = app.register("mallory@example.com").await;
    let launch = app.kftc_authorize_backend(&mallory).await;
    let victim = app.browser();
    let (state, token, _) = confirmation_page(&victim, &launch).await;
    assert_eq!(state, state_of(&launch));
    assert_eq!(token.len(), 43, "{token}");
    let url = app.url(LAUNCH);
    let post = |browser: &reqwest::Client, form: Vec<(&'static str, String)>| browser.post(&url).form(&form);

    // Without the token, with a wrong one, with a token of another link.
    let r = post(&victim, vec![("state", state.clone()), ("action", "confirm".into())]).send().await.unwrap();
    assert_eq!(refusal(r).await, (403, "csrf_invalid".into()));
    let wrong = format!("{}A", &token[..42]);
    let wrong = if wrong == token { format!("{}B", &token[..42]) } else { wrong };
    let r = post(&victim, vec![("state", state.clone()), ("csrf_token", wrong), ("action", "confirm".into())]).send().await.unwrap();
    assert_eq!(refusal(r).await, (403, "csrf_invalid".into()));
    let other_launch = app.kftc_authorize_backend(&mallory).await;
    let (_, other_token, _) = confirmation_page(&victim, &other_launch).await;
    assert_ne!(other_token, token);
    let r = post(&victim, vec![("state", state.clone()), ("csrf_token", other_token), ("action", "confirm".into())]).send().await.unwrap();
    assert_eq!(refusal(r).await, (403, "csrf_invalid".into()));

    // The right token from another browser (Mallory read it off her own copy of the page, or
    // posts from her site where the Strict cookie is not sent): no CSRF cookie there.
    let r = post(&app.browser(), vec![("state", state.clone()), ("csrf_token", token.clone()), ("action", "confirm".into())]).send().await.unwrap();
    assert_eq!(refusal(r).await, (403, "csrf_invalid".into()));

    // The right token and cookie, but the browser says the form came from another site.
    let form = vec![("state", state.clone()), ("csrf_token", token.clone()), ("action", "confirm".into())];
    let r = post(&victim, form.clone()).header("origin", "https://evil.example").send().await.unwrap();
    assert_eq!(refusal(r).await, (403, "cross_site_refused".into()));
    let r = post(&victim, form.clone()).header("sec-fetch-site", "cross-site").send().await.unwrap();
    assert_eq!(refusal(r).await, (403, "cross_site_refused".into()));
    let r = post(&victim, form.clone()).header("origin", "null").send().await.unwrap();
    assert_eq!(refusal(r).await, (403, "cross_site_refused".into()));

    // Malformed forms.
    let r = post(&victim, vec![("state", "short".into()), ("csrf_token", token.clone()), ("action", "confirm".into())]).send().await.unwrap();
    assert_eq!(refusal(r).await, (400, "state_invalid".into()));
    let r = post(&victim, vec![("state", state.clone()), ("csrf_token", token.clone()), ("action", "maybe".into())]).send().await.unwrap();
    assert_eq!(refusal(r).await, (400, "action_invalid".into()));
    let r = victim.post(&url).header("content-type", "application/json").body("{}").send().await.unwrap();
    assert_eq!(refusal(r).await, (400, "state_invalid".into()));
    // A state the service never issued (the token cannot be right for it either).
    let r = post(&victim, vec![("state", "Q".repeat(32)), ("csrf_token", token.clone()), ("action", "confirm".into())]).send().await.unwrap();
    assert_eq!(refusal(r).await, (403, "csrf_invalid".into()));

    // After all that, nothing is bound and the victim could still look at the page.
    assert_eq!(binding_of(&app, &state).await, None);
    assert!(app.state.shared.peek_state(&state).await.unwrap().unwrap().consumed_at.is_none());
    let _ = confirmation_page(&victim, &launch).await;

    // Unknown and expired states on the launch page, and an expired one at confirmation.
    let (code_unknown, code_invalid) = (
        refusal(victim.get(app.url(&format!("{LAUNCH}?state={}", "Q".repeat(32)))).send().await.unwrap()).await,
        refusal(victim.get(app.url(&format!("{LAUNCH}?state=abc"))).send().await.unwrap()).await,
    );
    assert_eq!(code_unknown, (404, "state_unknown".into()));
    assert_eq!(code_invalid, (400, "state_invalid".into()));
    app.clock.advance(11 * 60);
    assert_eq!(refusal(victim.get(&launch).send().await.unwrap()).await, (400, "state_expired".into()));
    let r = post(&victim, form).send().await.unwrap();
    assert_eq!(refusal(r).await, (400, "state_expired".into()));
    assert_eq!(binding_of(&app, &state).await, None);
    assert_eq!(count(&app.sandbox_stats("kftc").await, &["calls", "/oauth/2.0/token"]), 0);
}

async fn confirmed_link_completes_once(backend: Backend) {
    let app = spawn(backend).await;
    let (mina, _) = app.register("mina@example.com").await;
    let url = app.url(LAUNCH);

    // The app's backend made the link; Mina opens it in her browser and confirms.
    let launch = app.kftc_authorize_backend(&mina).await;
    let browser = app.browser();
    let (state, token, body) = confirmation_page(&browser, &launch).await;
    assert!(body.contains("mi***@ex*****.com"), "{body}");
    let form = [("state", state.clone()), ("csrf_token", token.clone()), ("action", "confirm".to_string())];
    // A browser sends its own Origin and Sec-Fetch-Site: accepted.
    let r = browser.post(&url).form(&form).header("origin", app.base.as_str()).header("sec-fetch-site", "same-origin").send().await.unwrap();
    assert_eq!(r.status(), 303);
    let consent = r.headers()["location"].to_str().unwrap().to_string();
    assert!(consent.contains("/sandbox/kftc/oauth/2.0/authorize?") && consent.contains(&state), "{consent}");
    assert!(r.headers().get_all("set-cookie").iter().any(|c| c.to_str().unwrap().starts_with("qetta_kftc_bind=")));
    assert!(binding_of(&app, &state).await.is_some());

    // A second confirmation (a double click, or a copy of the form) and a second browser: refused.
    let r = browser.post(&url).form(&form).send().await.unwrap();
    assert_eq!(refusal(r).await, (409, "state_already_used".into()));
    assert_eq!(refusal(app.browser().get(&launch).send().await.unwrap()).await, (409, "state_already_used".into()));

    // The flow completes in the confirming browser.
    let r = browser.get(format!("{consent}&sandbox_user=kim&sandbox_consent=approve")).send().await.unwrap();
    let callback = r.headers()["location"].to_str().unwrap().to_string();
    let cb = app.kftc_callback(&browser, &callback).await;
    assert!(cb.ok, "{cb:?}");
    assert_eq!(app.status_of(&mina, "kftc").await["connected"], true);
    // Afterwards the link is dead everywhere.
    assert_eq!(refusal(browser.post(&url).form(&form).send().await.unwrap()).await, (409, "state_already_used".into()));
    assert_eq!(refusal(app.browser().get(&launch).send().await.unwrap()).await, (409, "state_already_used".into()));
    let audit: Value = app.get("/api/v1/oauth/audit", Some(&mina)).await.json().await.unwrap();
    assert!(audit["entries"].as_array().unwrap().iter().any(|e| e["action"] == "launch" && e["outcome"] == "confirmed"), "{audit}");

    // Cancelling spends the link: nobody can use it afterwards.
    let launch = app.kftc_authorize_backend(&mina).await;
    let browser = app.browser();
    let (state, token, _) = confirmation_page(&browser, &launch).await;
    let r = browser.post(&url).form(&[("state", state.clone()), ("csrf_token", token.clone()), ("action", "cancel".to_string())]).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert_eq!(crate::support::data_attr(&body, "code"), "launch_cancelled");
    assert_eq!(crate::support::data_attr(&body, "ok"), "false");
    let r = browser.post(&url).form(&[("state", state.clone()), ("csrf_token", token), ("action", "confirm".to_string())]).send().await.unwrap();
    assert_eq!(refusal(r).await, (409, "state_already_used".into()));
    assert_eq!(refusal(app.browser().get(&launch).send().await.unwrap()).await, (409, "state_already_used".into()));
    assert_eq!(binding_of(&app, &state).await, None);
}
