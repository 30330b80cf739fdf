//! KFTC behaviours of a connection that lives for years, and the bank answers clients rarely see:
//! consent expiry and re-consent (SPEC A13/A14), adding accounts (A5.2), user/close (A7),
//! refresh-token rotation on and off (A6), trace-info expiry (A11.3), bank quirks (A11.2,
//! A11.3), HTML and truncated answers, and the SPEC A1 content types.

use chrono::{Duration, FixedOffset, Utc};
use serde_json::{json, Value};

use crate::common::*;
use crate::kftc_accounts::tx_query;

const TXN: &str = "/v2.0/account/transaction_list/fin_num";

fn days_ago(n: i64) -> String {
    (Utc::now().with_timezone(&FixedOffset::east_opt(9 * 3600).unwrap()).date_naive() - Duration::days(n)).format("%Y%m%d").to_string()
}

/// Consent as `user` through `path` (authorize or authorize_account) with `auth_type`, only for
/// `accounts` when given; returns the callback query.
async fn consent_at(sb: &TestSandbox, path: &str, user: &str, auth_type: &str, accounts: &[String]) -> std::collections::HashMap<String, String> {
    let mut p: Vec<(&str, String)> = sb.authorize_params("login inquiry").into_iter().filter(|(k, _)| *k != "auth_type").collect();
    p.push(("auth_type", auth_type.into()));
    p.push(("sandbox_user", user.into()));
    p.push(("sandbox_consent", "approve".into()));
    for a in accounts {
        p.push(("sandbox_account", a.clone()));
    }
    let resp = sb.http.get(sb.kftc_url(path)).query(&p).send().await.unwrap();
    assert_eq!(resp.status(), 302, "{path} redirects");
    query_of(&location(&resp))
}

async fn user_me(sb: &TestSandbox, t: &Tokens) -> Value {
    sb.kftc_get("/v2.0/user/me", &t.access, &[("user_seq_no", t.user_seq_no.clone())]).await
}

fn fintechs(me: &Value) -> Vec<String> {
    me["res_list"].as_array().unwrap().iter().map(|a| a["fintech_use_num"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn consent_expires_after_its_lifetime_and_re_consent_renews_it() {
    let sb = start_with(&[("QETTA_SANDBOX_KFTC_CONSENT_TTL", "3600")]).await;
    let t = sb.login("kim", "login inquiry").await;
    let f = sb.fintech("kim", 0).await;
    let before = fintechs(&user_me(&sb, &t).await);
    assert_eq!(sb.balance(&t.access, &f).await["rsp_code"], "A0000");
    sb.advance(3599).await;
    assert_eq!(sb.balance(&t.access, &f).await["rsp_code"], "A0000", "not yet");
    sb.advance(1).await;
    let b = sb.balance(&t.access, &f).await;
    assert_eq!(b["rsp_code"], "A0316", "{b}");
    assert_eq!(b["rsp_message"], "제3자정보제공동의 만료");
    let from = days_ago(30);
    let to = days_ago(0);
    let q = tx_query(&sb, &f, &from, &to, "A", "D", None);
    assert_eq!(sb.kftc_get(TXN, &t.access, &q).await["rsp_code"], "A0316", "the transaction list too");
    // The login scope keeps working: the user and the accounts are still there.
    assert_eq!(fintechs(&user_me(&sb, &t).await), before);

    // Re-authentication (auth_type 1, SPEC A13): same user_seq_no, same accounts, inquiries work.
    let cb = consent_at(&sb, "/oauth/2.0/authorize", "kim", "1", &[]).await;
    let body = sb.exchange(&cb["code"]).await;
    assert_eq!(body["user_seq_no"], t.user_seq_no.as_str());
    let t2 = Tokens {
        access: body["access_token"].as_str().unwrap().into(),
        refresh: body["refresh_token"].as_str().unwrap().into(),
        user_seq_no: t.user_seq_no.clone(),
        body: body.clone(),
    };
    assert_eq!(fintechs(&user_me(&sb, &t2).await), before, "no duplicate, nothing lost");
    assert_eq!(sb.balance(&t2.access, &f).await["rsp_code"], "A0000");
    // The old access token too: the consent belongs to the account, not to a token.
    assert_eq!(sb.balance(&t.access, &f).await["rsp_code"], "A0000");
}

#[tokio::test]
async fn expire_consent_control_call_answers_each_spec_code() {
    let sb = start().await;
    let kim = sb.login("kim", "login inquiry").await;
    let lee = sb.login("lee", "login inquiry").await;
    let (fk, fl) = (sb.fintech("kim", 0).await, sb.fintech("lee", 0).await);

    let r = sb.control(&sb.kftc, "expire-consent", json!({"user": "kim"})).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "A0316");
    assert!(v["expired"].as_u64().unwrap() >= 2, "{v}");
    assert_eq!(sb.balance(&kim.access, &fk).await["rsp_code"], "A0316");
    assert_eq!(sb.balance(&lee.access, &fl).await["rsp_code"], "A0000", "only kim's");

    sb.control(&sb.kftc, "expire-consent", json!({"code": "A0334"})).await;
    assert_eq!(sb.balance(&kim.access, &fk).await["rsp_code"], "A0334");
    assert_eq!(sb.balance(&lee.access, &fl).await["rsp_code"], "A0334");

    sb.control(&sb.kftc, "expire-consent", json!({"code": "468"})).await;
    let b = sb.balance(&kim.access, &fk).await;
    assert_eq!((b["rsp_code"].as_str(), b["bank_rsp_code"].as_str()), (Some("A0002"), Some("468")), "{b}");
    assert_eq!(b["bank_rsp_message"], "제3자정보제공동의 만료");

    // One account only.
    let sb2 = start().await;
    let t = sb2.login("park", "login inquiry").await;
    let (p0, p1) = (sb2.fintech("park", 0).await, sb2.fintech("park", 1).await);
    let r: Value = sb2.control(&sb2.kftc, "expire-consent", json!({"user": "park", "fintech_use_num": p0})).await.json().await.unwrap();
    assert_eq!(r["expired"], 1);
    assert_eq!(sb2.balance(&t.access, &p0).await["rsp_code"], "A0316");
    assert_eq!(sb2.balance(&t.access, &p1).await["rsp_code"], "A0000");

    // Refusals: unknown user, unknown code, unknown field.
    assert_eq!(sb.control(&sb.kftc, "expire-consent", json!({"user": "nobody"})).await.status(), 400);
    assert_eq!(sb.control(&sb.kftc, "expire-consent", json!({"code": "A0004"})).await.status(), 400);
    assert_eq!(sb.control(&sb.kftc, "expire-consent", json!({"users": "kim"})).await.status(), 400);
}

#[tokio::test]
async fn consent_expired_code_is_configurable() {
    let sb = start_with(&[("QETTA_SANDBOX_KFTC_CONSENT_EXPIRED_CODE", "468")]).await;
    let t = sb.login("choi", "login inquiry").await;
    let f = sb.fintech("choi", 0).await;
    sb.control(&sb.kftc, "expire-consent", json!({})).await;
    assert_eq!(sb.balance(&t.access, &f).await["bank_rsp_code"], "468");
    assert!(qetta_sandbox::SandboxConfig::from_lookup(|k| (k == "QETTA_SANDBOX_KFTC_CONSENT_EXPIRED_CODE").then(|| "A0999".to_string())).is_err());
}

#[tokio::test]
async fn authorize_account_adds_accounts_to_an_existing_consent() {
    let sb = start().await;
    let (f0, f1) = (sb.fintech("park", 0).await, sb.fintech("park", 1).await);
    let cb = consent_at(&sb, "/oauth/2.0/authorize", "park", "0", std::slice::from_ref(&f0)).await;
    let body = sb.exchange(&cb["code"]).await;
    let t = Tokens {
        access: body["access_token"].as_str().unwrap().into(),
        refresh: String::new(),
        user_seq_no: body["user_seq_no"].as_str().unwrap().into(),
        body: body.clone(),
    };
    assert_eq!(fintechs(&user_me(&sb, &t).await), vec![f0.clone()]);
    assert_eq!(sb.balance(&t.access, &f1).await["bank_rsp_code"], "556", "not registered yet");

    // SPEC A5.2: the account-add flow, same callback format.
    let cb = consent_at(&sb, "/oauth/2.0/authorize_account", "park", "0", std::slice::from_ref(&f1)).await;
    assert_eq!(cb["state"], STATE);
    let body2 = sb.exchange(&cb["code"]).await;
    assert_eq!(body2["user_seq_no"], t.user_seq_no.as_str());
    assert_eq!(fintechs(&user_me(&sb, &t).await), vec![f0.clone(), f1.clone()]);
    assert_eq!(sb.balance(&t.access, &f1).await["rsp_code"], "A0000");

    // The consent page of the account-add flow posts back to authorize_account.
    let mut p = sb.authorize_params("login inquiry");
    p.retain(|(k, _)| *k != "auth_type");
    p.push(("auth_type", "0".into()));
    let page = sb.http.get(sb.kftc_url("/oauth/2.0/authorize_account")).query(&p).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("action=\"authorize_account\""), "{page}");

    // Not for a user who never consented: an error callback (A0337), no code.
    let cb = consent_at(&sb, "/oauth/2.0/authorize_account", "choi", "0", &[]).await;
    assert_eq!(cb.get("rsp_code").map(String::as_str), Some("A0337"), "{cb:?}");
    assert!(!cb.contains_key("code"));
}

#[tokio::test]
async fn user_close_ends_the_link_and_every_token() {
    let sb = start().await;
    let t = sb.login("lee", "login inquiry").await;
    let code = sb.sandbox.kftc_client_use_code();
    let r = sb.kftc_post("/v2.0/user/close", &t.access, json!({"client_use_code": code, "user_seq_no": "1234567890"})).await;
    assert_eq!(r["rsp_code"], "A0313", "another user_seq_no");
    let r = sb.kftc_post("/v2.0/user/close", &t.access, json!({"client_use_code": "M000000000", "user_seq_no": t.user_seq_no})).await;
    assert_eq!(r["rsp_code"], "A0004");
    let r = sb.kftc_post("/v2.0/user/close", &t.access, json!({"client_use_code": code, "user_seq_no": t.user_seq_no})).await;
    assert_eq!(r["rsp_code"], "A0000", "{r}");
    assert_eq!(user_me(&sb, &t).await["rsp_code"], "O0002");
    assert_eq!(sb.refresh(&t.refresh, "login inquiry").await["rsp_code"], "O0014");
    let users = sb.users().await;
    assert_eq!(users["users"].as_array().unwrap().iter().find(|u| u["id"] == "lee").unwrap()["linked"], false);
}

#[tokio::test]
async fn refresh_rotation_can_be_switched_off() {
    // Rotating (default): the old refresh token is spent.
    let sb = start().await;
    let t = sb.login("kim", "login inquiry").await;
    let r1 = sb.refresh(&t.refresh, "login inquiry").await;
    assert_ne!(r1["refresh_token"], t.refresh.as_str());
    assert_eq!(sb.refresh(&t.refresh, "login inquiry").await["rsp_code"], "O0014");

    // Not rotating: the same refresh token comes back and keeps working; new access tokens work.
    let sb = start_with(&[("QETTA_SANDBOX_KFTC_REFRESH_ROTATION", "false")]).await;
    let t = sb.login("kim", "login inquiry").await;
    let f = sb.fintech("kim", 0).await;
    for _ in 0..3 {
        let r = sb.refresh(&t.refresh, "login inquiry").await;
        assert_eq!(r["refresh_token"], t.refresh.as_str(), "{r}");
        assert_eq!(sb.balance(r["access_token"].as_str().unwrap(), &f).await["rsp_code"], "A0000");
    }
    // It keeps its expiry: past it the token is refused as expired.
    sb.advance(qetta_sandbox::config::DEFAULT_KFTC_ACCESS_TOKEN_TTL_SECS + qetta_sandbox::config::KFTC_REFRESH_EXTRA_SECS).await;
    assert_eq!(sb.refresh(&t.refresh, "login inquiry").await["rsp_code"], "O0015");
}

#[tokio::test]
async fn trace_info_expires_after_its_lifetime() {
    let sb = start_with(&[("QETTA_SANDBOX_KFTC_TRACE_TTL", "60"), ("QETTA_SANDBOX_KFTC_CONSENT_TTL", "99999999")]).await;
    let t = sb.login("kim", "login inquiry").await;
    let f = sb.fintech("kim", 0).await;
    let (from, to) = (days_ago(90), days_ago(0));
    let first = sb.kftc_get(TXN, &t.access, &tx_query(&sb, &f, &from, &to, "A", "D", None)).await;
    assert_eq!(first["next_page_yn"], "Y");
    let trace = first["befor_inquiry_trace_info"].as_str().unwrap().to_string();
    assert_eq!(trace.len(), 20);
    sb.advance(59).await;
    let second = sb.kftc_get(TXN, &t.access, &tx_query(&sb, &f, &from, &to, "A", "D", Some(&trace))).await;
    assert_eq!(second["rsp_code"], "A0000", "{second}");
    assert_ne!(second["res_list"][0], first["res_list"][0]);
    // Sent again later: refused.
    sb.advance(1).await;
    let late = sb.kftc_get(TXN, &t.access, &tx_query(&sb, &f, &from, &to, "A", "D", Some(&trace))).await;
    assert_eq!(late["rsp_code"], "A0004", "{late}");
    assert!(late["rsp_message"].as_str().unwrap().contains("befor_inquiry_trace_info"));
    // A value this sandbox never handed out.
    let forged = sb.kftc_get(TXN, &t.access, &tx_query(&sb, &f, &from, &to, "A", "D", Some("00000025ABCDEF012345"))).await;
    assert_eq!(forged["rsp_code"], "A0004");
}

#[tokio::test]
async fn quirks_produce_the_rows_and_fields_real_banks_send() {
    let sb = start().await;
    let t = sb.login("kim", "login inquiry").await;
    let f = sb.fintech("kim", 0).await;
    let (from, to) = (days_ago(90), days_ago(0));
    let page = sb.kftc_get(TXN, &t.access, &tx_query(&sb, &f, &from, &to, "A", "D", None)).await;
    let rows = page["res_list"].as_array().unwrap();
    assert!(rows.iter().all(|r| r["inout_type"] == "입금" || r["inout_type"] == "출금"), "plain by default");

    let r = sb.control(&sb.kftc, "quirks", json!({"odd_rows": true, "empty_after_balance": true, "nulls": true, "no_history_a0018": true})).await;
    assert_eq!(r.status(), 200);
    let page = sb.kftc_get(TXN, &t.access, &tx_query(&sb, &f, &from, &to, "A", "D", None)).await;
    assert_eq!(page["rsp_code"], "A0000");
    let rows = page["res_list"].as_array().unwrap();
    assert!(rows.iter().any(|r| r["inout_type"] == "지급"), "{page}");
    let other: Vec<&Value> = rows.iter().filter(|r| r["inout_type"] == "기타").collect();
    assert!(!other.is_empty() && other.iter().all(|r| r["tran_amt"] == "0"));
    assert!(rows.iter().all(|r| r["after_balance_amt"] == "" && r["branch_name"].is_null()));
    assert!(page["savings_bank_name"].is_null());
    assert!(sb.balance(&t.access, &f).await["savings_bank_name"].is_null());
    let me = user_me(&sb, &t).await;
    assert!(me["res_list"][0]["savings_bank_name"].is_null(), "{me}");
    // No rows in the period: A0018 instead of an empty page.
    let future = days_ago(-30);
    let empty = sb.kftc_get(TXN, &t.access, &tx_query(&sb, &f, &future, &future, "A", "D", None)).await;
    assert_eq!(empty["rsp_code"], "A0018", "{empty}");

    let got: Value = sb.http.get(sb.kftc_url("/_sandbox/quirks")).send().await.unwrap().json().await.unwrap();
    assert_eq!(got["nulls"], true);
    assert_eq!(sb.control(&sb.kftc, "quirks", json!({"weird": true})).await.status(), 400);
    sb.control(&sb.kftc, "quirks", json!({})).await;
    let page = sb.kftc_get(TXN, &t.access, &tx_query(&sb, &f, &from, &to, "A", "D", None)).await;
    assert!(page["res_list"][0]["after_balance_amt"].as_str().is_some_and(|s| !s.is_empty()));

    // Also from configuration.
    let sb = start_with(&[("QETTA_SANDBOX_KFTC_QUIRKS", "no_history_a0018")]).await;
    let t = sb.login("kim", "login inquiry").await;
    let f = sb.fintech("kim", 0).await;
    assert_eq!(sb.kftc_get(TXN, &t.access, &tx_query(&sb, &f, &future, &future, "A", "D", None)).await["rsp_code"], "A0018");
    assert!(qetta_sandbox::SandboxConfig::from_lookup(|k| (k == "QETTA_SANDBOX_KFTC_QUIRKS").then(|| "nope".to_string())).is_err());
}

#[tokio::test]
async fn html_pages_and_truncated_bodies_under_fault_injection() {
    let sb = start().await;
    let t = sb.login("kim", "login inquiry").await;
    let f = sb.fintech("kim", 0).await;
    let q = [("bank_tran_id", sb.bank_tran_id()), ("fintech_use_num", f.clone()), ("tran_dtime", "20260101120000".to_string())];

    sb.control(&sb.kftc, "faults", json!({"error_rate": 1.0, "error": "html_200"})).await;
    let r = sb.http.get(sb.kftc_url("/v2.0/account/balance/fin_num")).bearer_auth(&t.access).query(&q).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(r.text().await.unwrap().starts_with("<!DOCTYPE html>"));

    sb.control(&sb.kftc, "faults", json!({"error_rate": 1.0, "error": "truncated"})).await;
    let q = [("bank_tran_id", sb.bank_tran_id()), ("fintech_use_num", f.clone()), ("tran_dtime", "20260101120000".to_string())];
    let r = sb.http.get(sb.kftc_url("/v2.0/account/balance/fin_num")).bearer_auth(&t.access).query(&q).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let bytes = r.bytes().await.unwrap();
    assert!(bytes.starts_with(b"{") && bytes.len() > 20);
    assert!(serde_json::from_slice::<Value>(&bytes).is_err(), "cut off");

    sb.control(&sb.kftc, "faults", json!({})).await;
    assert_eq!(sb.balance(&t.access, &f).await["rsp_code"], "A0000");
}

#[tokio::test]
async fn content_types_follow_spec_a1() {
    let form = [("grant_type", "client_credentials"), ("client_id", CLIENT_ID), ("client_secret", CLIENT_SECRET), ("scope", "oob")];
    let body = serde_urlencoded::to_string(form).unwrap();
    let post = |sb: &TestSandbox, ct: &'static str| sb.http.post(sb.kftc_url("/oauth/2.0/token")).header("content-type", ct).body(body.clone()).send();
    let sb = start().await;
    let ok: Value = post(&sb, "application/x-www-form-urlencoded").await.unwrap().json().await.unwrap();
    assert!(ok["access_token"].is_string(), "no charset accepted by default: {ok}");
    let bad: Value = post(&sb, "application/x-www-form-urlencoded; charset=EUC-KR").await.unwrap().json().await.unwrap();
    assert_eq!(bad["rsp_code"], "O0001", "another charset is refused");

    let sb = start_with(&[("QETTA_SANDBOX_KFTC_REQUIRE_CHARSET", "true")]).await;
    let bad: Value = post(&sb, "application/x-www-form-urlencoded").await.unwrap().json().await.unwrap();
    assert_eq!(bad["rsp_message"], "인증 파라미터 오류([3000103])");
    let ok: Value = post(&sb, "application/x-www-form-urlencoded; charset=UTF-8").await.unwrap().json().await.unwrap();
    assert!(ok["access_token"].is_string(), "{ok}");
    let ok: Value = post(&sb, "application/x-www-form-urlencoded;charset=utf-8").await.unwrap().json().await.unwrap();
    assert!(ok["access_token"].is_string(), "{ok}");

    // JSON bodies: application/json; charset=UTF-8.
    let cb = sb.consent("kim", "login inquiry").await;
    let tok = sb
        .http
        .post(sb.kftc_url("/oauth/2.0/token"))
        .header("content-type", "application/x-www-form-urlencoded; charset=UTF-8")
        .body(
            serde_urlencoded::to_string([
                ("grant_type", "authorization_code"),
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
                ("redirect_uri", REDIRECT_URI),
                ("code", cb["code"].as_str()),
            ])
            .unwrap(),
        )
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let access = tok["access_token"].as_str().unwrap();
    let unlink = serde_json::to_string(&json!({"client_use_code": sb.sandbox.kftc_client_use_code(), "user_seq_no": tok["user_seq_no"]})).unwrap();
    let send = |ct: &'static str| sb.http.post(sb.kftc_url("/v2.0/user/unlink")).bearer_auth(access).header("content-type", ct).body(unlink.clone()).send();
    let r: Value = send("application/json").await.unwrap().json().await.unwrap();
    assert_eq!(r["rsp_code"], "A0004", "{r}");
    let r: Value = send("application/json; charset=UTF-8").await.unwrap().json().await.unwrap();
    assert_eq!(r["rsp_code"], "A0000", "{r}");
}
