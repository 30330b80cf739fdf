//! KFTC round 2 through the service's HTTP API against the embedded sandbox: consent expiry,
//! the codes we did not map before, duplicate ids, SPEC A1 content types, refresh with and
//! without rotation, an old paging cursor, odd bank answers, HTML and truncated bodies, and the
//! client's account-management calls (account/list, account/cancel, user/close,
//! authorize_account) that the connection routes are built on.

use chrono::{Duration, FixedOffset, Utc};
use serde_json::{json, Value};

use crate::both_backends;
use crate::support::{count, error_code, spawn, Backend, Spawn, TestApp};

both_backends!(
    consent_expiry_answers_consent_expired_until_renewed,
    codes_without_a_mapping_before_get_their_own,
    a0008_is_retried_once_with_a_new_id,
    requests_carry_the_spec_a1_charset,
    refresh_works_whether_or_not_kftc_rotates,
    an_old_cursor_is_cursor_expired,
    odd_bank_answers_are_read,
    html_and_truncated_answers_are_upstream_invalid,
    account_management_calls_against_the_sandbox,
);

fn day(offset_days: i64) -> String {
    (Utc::now().with_timezone(&FixedOffset::east_opt(9 * 3600).unwrap()).date_naive() + Duration::days(offset_days)).format("%Y%m%d").to_string()
}

fn balance_path(f: &str) -> String {
    format!("/api/v1/oauth/kftc/balance/{f}")
}

async fn connected(app: &TestApp, email: &str, who: &str) -> (String, String, String) {
    let (token, user_id) = app.register(email).await;
    app.connect_kftc(&token, who).await;
    let fin = app.accounts(&token).await[0]["fintech_use_num"].as_str().unwrap().to_string();
    (token, user_id, fin)
}

async fn transactions(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    app.post_json("/api/v1/oauth/kftc/transactions", &body, Some(token)).await
}

async fn error_body(r: reqwest::Response, status: u16) -> Value {
    assert_eq!(r.status().as_u16(), status);
    r.json::<Value>().await.unwrap()["error"].clone()
}

async fn consent_expiry_answers_consent_expired_until_renewed(backend: Backend) {
    let app = spawn(backend).await;
    let (token, _, fin) = connected(&app, "expiry@example.com", "kim").await;
    assert_eq!(app.get(&balance_path(&fin), Some(&token)).await.status(), 200);

    let kftc_calls = |stats: &Value| stats["calls"].as_object().map(|m| m.values().filter_map(Value::as_i64).sum::<i64>()).unwrap_or(0);
    for (code, provider) in [(None, "A0316"), (Some("A0334"), "A0334"), (Some("468"), "A0002/468")] {
        let body = code.map_or(json!({}), |c| json!({"code": c}));
        app.sandbox_control("kftc", "expire-consent", body).await;
        let e = error_body(app.get(&balance_path(&fin), Some(&token)).await, 409).await;
        assert_eq!((e["code"].as_str(), e["provider_code"].as_str()), (Some("consent_expired"), Some(provider)), "{e}");
        // The connection says so, and its calls stop reaching KFTC until the user renews.
        let list: Value = app.get("/api/v1/connections", Some(&token)).await.json().await.unwrap();
        let c = list["connections"].as_array().unwrap().iter().find(|c| c["provider"] == "kftc").unwrap().clone();
        assert_eq!(c["status"], "consent_expired", "{c}");
        let before = kftc_calls(&app.sandbox_stats("kftc").await);
        let r = transactions(&app, &token, json!({"fintech_use_num": fin, "from_date": day(-30), "to_date": day(0)})).await;
        assert_eq!(error_body(r, 409).await["code"], "consent_expired");
        assert_eq!(error_body(app.get(&balance_path(&fin), Some(&token)).await, 409).await["code"], "consent_expired");
        assert_eq!(kftc_calls(&app.sandbox_stats("kftc").await), before, "no call to KFTC for an expired consent");
        // Not a refresh problem: no token call was spent on it.
        assert_eq!(count(&app.sandbox_stats("kftc").await, &["tokens", "issued", "refresh_token"]), 0);
        // The user consents again (auth_type 1): the same connection, the same accounts.
        app.connect_kftc(&token, "kim").await;
        let list: Value = app.get("/api/v1/connections", Some(&token)).await.json().await.unwrap();
        let kftc: Vec<&Value> = list["connections"].as_array().unwrap().iter().filter(|c| c["provider"] == "kftc").collect();
        assert_eq!(kftc.len(), 1, "no duplicate: {list}");
        assert_eq!((kftc[0]["id"].clone(), kftc[0]["status"].clone()), (c["id"].clone(), json!("active")));
        assert_eq!(app.accounts(&token).await[0]["fintech_use_num"], fin.as_str());
        assert_eq!(app.get(&balance_path(&fin), Some(&token)).await.status(), 200);
    }
}

async fn codes_without_a_mapping_before_get_their_own(backend: Backend) {
    let app = spawn(backend).await;
    let (token, _, fin) = connected(&app, "codes@example.com", "lee").await;
    for (fault, status, code, provider) in [
        ("O0011", 409, "scope_not_granted", "O0011"),
        ("A0002:551", 409, "account_not_registered", "A0002/551"),
        ("A0002:556", 409, "account_not_registered", "A0002/556"),
        ("A0003", 502, "upstream_error", "A0003"),
        ("A0021", 502, "upstream_error", "A0021"),
    ] {
        app.sandbox_control("kftc", "faults", json!({"error_rate": 1.0, "error": fault})).await;
        let r = app.get(&balance_path(&fin), Some(&token)).await;
        let rid = r.headers().get("x-request-id").unwrap().to_str().unwrap().to_string();
        let e = error_body(r, status).await;
        assert_eq!((e["code"].as_str(), e["provider_code"].as_str()), (Some(code), Some(provider)), "{fault}: {e}");
        assert_eq!(e["request_id"].as_str(), Some(rid.as_str()));
    }
    // A0018 (no history) on the transaction list is an empty list.
    app.sandbox_control("kftc", "faults", json!({"error_rate": 1.0, "error": "A0018"})).await;
    let r = transactions(&app, &token, json!({"fintech_use_num": fin, "from_date": day(-30), "to_date": day(0)})).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["transactions"], json!([]));
    assert!(v["next_cursor"].is_null());
    app.sandbox_control("kftc", "faults", json!({})).await;
    assert_eq!(app.get(&balance_path(&fin), Some(&token)).await.status(), 200);
}

async fn a0008_is_retried_once_with_a_new_id(backend: Backend) {
    let app = spawn(backend).await;
    let (token, _, fin) = connected(&app, "a0008@example.com", "park").await;
    let calls = |stats: &Value| count(stats, &["calls", "/v2.0/account/balance/fin_num"]);
    let before = calls(&app.sandbox_stats("kftc").await);
    app.sandbox_control("kftc", "faults", json!({"error_rate": 1.0, "error": "A0008"})).await;
    let e = error_body(app.get(&balance_path(&fin), Some(&token)).await, 502).await;
    assert_eq!(e["provider_code"], "A0008");
    assert_eq!(calls(&app.sandbox_stats("kftc").await) - before, 2, "exactly one retry");
    // Half of the calls refused as duplicates: the retry gets through.
    app.sandbox_control("kftc", "faults", json!({"error_rate": 0.5, "error": "A0008"})).await;
    let mut ok = 0;
    for _ in 0..10 {
        ok += (app.get(&balance_path(&fin), Some(&token)).await.status() == 200) as i32;
    }
    assert!(ok >= 6, "only {ok} of 10 got through");
}

async fn requests_carry_the_spec_a1_charset(backend: Backend) {
    // A sandbox that refuses form and JSON bodies without `charset=UTF-8`: code exchange (form),
    // refresh (form), reads, and unlink (JSON) all pass.
    let app = Spawn::new(backend).var("QETTA_SANDBOX_KFTC_REQUIRE_CHARSET", "true").start().await;
    let (token, _, fin) = connected(&app, "charset@example.com", "choi").await;
    app.sandbox_control("kftc", "expire-tokens", json!({})).await;
    assert_eq!(app.get(&balance_path(&fin), Some(&token)).await.status(), 200);
    assert_eq!(count(&app.sandbox_stats("kftc").await, &["tokens", "issued", "refresh_token"]), 1);
    let r = app.client.delete(app.url("/api/v1/oauth/kftc/disconnect")).bearer_auth(&token).send().await.unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["unlink"]["ok"], true, "{body}");
}

async fn refresh_works_whether_or_not_kftc_rotates(backend: Backend) {
    for rotation in ["true", "false"] {
        let app = Spawn::new(backend).var("QETTA_SANDBOX_KFTC_REFRESH_ROTATION", rotation).start().await;
        let (token, user_id, fin) = connected(&app, "rotation@example.com", "kim").await;
        let stored = || async {
            let c = qetta::store::connections::default_for(&app.state.db, &user_id, "kftc").await.unwrap().unwrap();
            (c.refresh_token.clone(), c.refresh_expires_at)
        };
        let (first_refresh, first_expiry) = stored().await;
        for n in 1..=3 {
            app.sandbox_control("kftc", "expire-tokens", json!({})).await;
            assert_eq!(app.get(&balance_path(&fin), Some(&token)).await.status(), 200, "rotation={rotation}, refresh {n}");
            assert_eq!(count(&app.sandbox_stats("kftc").await, &["tokens", "issued", "refresh_token"]), n, "rotation={rotation}");
        }
        let (refresh, expiry) = stored().await;
        if rotation == "true" {
            assert_ne!(refresh, first_refresh, "a rotated refresh token is stored");
        } else {
            // The same refresh token came back: the stored one (and its expiry) stay.
            assert_eq!((refresh, expiry), (first_refresh, first_expiry));
        }
        assert_eq!(app.status_of(&token, "kftc").await["status"], "active");
    }
}

async fn an_old_cursor_is_cursor_expired(backend: Backend) {
    let app = Spawn::new(backend).var("QETTA_SANDBOX_KFTC_TRACE_TTL", "60").start().await;
    let (token, _, fin) = connected(&app, "cursor@example.com", "kim").await;
    let query = json!({"fintech_use_num": fin, "from_date": day(-90), "to_date": day(0), "limit": 25});
    let v: Value = transactions(&app, &token, query.clone()).await.json().await.unwrap();
    let cursor = v["next_cursor"].as_str().expect("more than one page").to_string();
    let mut next = query.clone();
    next["cursor"] = json!(cursor);
    assert_eq!(transactions(&app, &token, next.clone()).await.status(), 200, "fresh: fine");
    app.sandbox_control("kftc", "clock", json!({"advance_seconds": 61})).await;
    let r = transactions(&app, &token, next).await;
    assert_eq!(error_code(r, 410).await, "cursor_expired");
    // Starting again works, and the connection is untouched.
    assert_eq!(transactions(&app, &token, query).await.status(), 200);
    assert_eq!(app.status_of(&token, "kftc").await["status"], "active");
}

async fn odd_bank_answers_are_read(backend: Backend) {
    let app = spawn(backend).await;
    app.sandbox_control("kftc", "quirks", json!({"odd_rows": true, "empty_after_balance": true, "nulls": true, "no_history_a0018": true})).await;
    // user/me with nulls at connect time.
    let (token, _, fin) = connected(&app, "quirks@example.com", "kim").await;
    let r = transactions(&app, &token, json!({"fintech_use_num": fin, "from_date": day(-90), "to_date": day(0), "limit": 100})).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let txs = v["transactions"].as_array().unwrap();
    assert_eq!(txs.len(), 100);
    let other: Vec<&Value> = txs.iter().filter(|t| t["direction"] == "other").collect();
    assert!(!other.is_empty() && other.iter().all(|t| t["amount"] == 0), "기타 rows: {other:?}");
    assert!(txs.iter().all(|t| t["balance_after"].is_null()), "empty after_balance_amt is no balance");
    assert!(txs.iter().all(|t| t["branch"] == ""), "null branch_name reads as empty");
    assert!(txs.iter().filter(|t| t["direction"] == "out").count() > 10, "지급 and 출금 rows are out");
    assert_eq!(app.get(&balance_path(&fin), Some(&token)).await.status(), 200);
    let r = transactions(&app, &token, json!({"fintech_use_num": fin, "from_date": day(0), "to_date": day(0)})).await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["transactions"], json!([]), "A0018 is an empty period: {v}");
}

async fn html_and_truncated_answers_are_upstream_invalid(backend: Backend) {
    let app = spawn(backend).await;
    let (token, _, fin) = connected(&app, "html@example.com", "lee").await;
    for fault in ["html_200", "truncated"] {
        app.sandbox_control("kftc", "faults", json!({"error_rate": 1.0, "error": fault})).await;
        let r = app.get(&balance_path(&fin), Some(&token)).await;
        let text = r.text().await.unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["error"]["code"], "upstream_invalid", "{fault}: {text}");
        assert!(!text.contains("점검") && !text.contains("api_tran_id"), "{text}");
    }
    app.sandbox_control("kftc", "faults", json!({})).await;
    assert_eq!(app.get(&balance_path(&fin), Some(&token)).await.status(), 200);
}

async fn account_management_calls_against_the_sandbox(backend: Backend) {
    use qetta::providers::kftc::client::{CancelOutcome, CancelScope};
    let app = spawn(backend).await;
    let (token, user_id, _) = connected(&app, "manage@example.com", "park").await;
    let accounts = app.accounts(&token).await;
    let (f0, f1) = (accounts[0]["fintech_use_num"].as_str().unwrap().to_string(), accounts[1]["fintech_use_num"].as_str().unwrap().to_string());
    let kftc = app.state.kftc().unwrap().clone();
    let conn = qetta::store::connections::default_for(&app.state.db, &user_id, "kftc").await.unwrap().unwrap();
    let seq = conn.provider_user_id.clone().unwrap();
    let at = app.state.tokens.access_token(conn).await.unwrap();

    // account/list (SPEC A9).
    let list = kftc.account_list(&at.token, &seq, false).await.unwrap();
    assert_eq!(list.res_list.len(), accounts.len());
    assert!(list.res_list.iter().all(|a| a.account_state == "01"));

    // account/cancel (SPEC A7): cancelled, then "already cancelled" (bank 551) is success too.
    assert_eq!(kftc.cancel_account(&at.token, &f0, CancelScope::Inquiry).await.unwrap(), CancelOutcome::Cancelled);
    assert_eq!(kftc.cancel_account(&at.token, &f0, CancelScope::Inquiry).await.unwrap(), CancelOutcome::AlreadyCancelled);
    // Never agreed for transfers: bank 556, also "already cancelled".
    assert_eq!(kftc.cancel_account(&at.token, &f1, CancelScope::Transfer).await.unwrap(), CancelOutcome::AlreadyCancelled);
    let e = error_body(app.get(&balance_path(&f0), Some(&token)).await, 409).await;
    assert_eq!((e["code"].as_str(), e["provider_code"].as_str()), (Some("account_not_registered"), Some("A0002/551")));
    let all = kftc.account_list(&at.token, &seq, true).await.unwrap();
    assert!(all.res_list.iter().any(|a| a.fintech_use_num == f0 && a.account_state == "09"));
    assert_eq!(kftc.account_list(&at.token, &seq, false).await.unwrap().res_list.len(), accounts.len() - 1);
    assert_eq!(count(&app.sandbox_stats("kftc").await, &["calls", "/v2.0/account/cancel"]), 3);

    // authorize_account (SPEC A5.2): the account-add page with the same parameters; the
    // sandbox registers f0 again through it.
    let url = kftc.authorize_account_url("s".repeat(32).as_str(), "login inquiry", 1);
    assert!(url.contains("/oauth/2.0/authorize_account?") && url.contains("auth_type=0"), "{url}");
    let r = app.client.get(format!("{url}&sandbox_user=park&sandbox_consent=approve&sandbox_account={f0}")).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(location.contains("code=") && location.contains(&format!("state={}", "s".repeat(32))), "{location}");
    assert_eq!(app.get(&balance_path(&f0), Some(&token)).await.status(), 200, "registered again");

    // user/close (SPEC A7): the link ends; our token is refused afterwards.
    kftc.close_user(&at.token, &seq).await.unwrap();
    assert_eq!(count(&app.sandbox_stats("kftc").await, &["calls", "/v2.0/user/close"]), 1);
    let again = kftc.close_user(&at.token, &seq).await.unwrap_err();
    assert_eq!(again.provider_code().as_deref(), Some("O0002"));
}
