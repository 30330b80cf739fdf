//! The control API (`<base>/_sandbox/...`) of both simulators and the embedded mounting.

use std::time::Instant;

use serde_json::{json, Value};

use crate::common::*;

async fn get_json(sb: &TestSandbox, url: String) -> Value {
    sb.http.get(url).send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn stats_count_calls_and_tokens() {
    let sb = start().await;
    let t = sb.login("kim", "login inquiry").await;
    let f = sb.fintech("kim", 0).await;
    sb.balance(&t.access, &f).await;
    sb.balance(&t.access, &f).await;
    sb.refresh(&t.refresh, "login inquiry").await;
    sb.refresh(&t.refresh, "login inquiry").await; // spent → refused
    sb.token_form(&[("grant_type", "client_credentials"), ("client_id", CLIENT_ID), ("client_secret", CLIENT_SECRET), ("scope", "oob")]).await;
    let stats = get_json(&sb, sb.kftc_url("/_sandbox/stats")).await;
    assert_eq!(stats["calls"]["/v2.0/account/balance/fin_num"], 2);
    assert_eq!(stats["calls"]["/oauth/2.0/token"], 4);
    assert_eq!(stats["calls"]["/oauth/2.0/authorize"], 1);
    assert!(stats["calls"].get("/_sandbox/users").is_none(), "control calls are not counted");
    assert_eq!(stats["tokens"]["issued"]["authorization_code"], 1);
    assert_eq!(stats["tokens"]["issued"]["refresh_token"], 1);
    assert_eq!(stats["tokens"]["issued"]["client_credentials"], 1);
    assert_eq!(stats["tokens"]["refused"]["refresh_token"], 1);

    let token = sb.toss_token().await;
    sb.toss_request(&token).await;
    let stats = get_json(&sb, sb.toss_url("/_sandbox/stats")).await;
    assert_eq!(stats["calls"]["/token"], 1);
    assert_eq!(stats["calls"]["/api/v2/sign/user/auth/id/request"], 1);
    assert_eq!(stats["tokens"]["issued"]["client_credentials"], 1);
    assert_eq!(stats["tokens"]["refused"], json!({}));
}

#[tokio::test]
async fn kftc_faults_by_control_call() {
    let sb = start().await;
    let t = sb.login("kim", "login inquiry").await;
    let f = sb.fintech("kim", 0).await;
    for (error, code) in [("A0007", "A0007"), ("A0017", "A0017")] {
        let r = sb.control(&sb.kftc, "faults", json!({"error_rate": 1.0, "error": error})).await;
        assert_eq!(r.status(), 200);
        let b = sb.balance(&t.access, &f).await;
        assert_eq!(b["rsp_code"], code);
        assert!(b["api_tran_id"].is_string() && b["bank_tran_id"].is_string());
    }
    sb.control(&sb.kftc, "faults", json!({"error_rate": 1.0, "error": "O0013"})).await;
    let b = sb.balance(&t.access, &f).await;
    assert_eq!(b, json!({"rsp_code": "O0013", "rsp_message": "호출 횟수 초과"}));
    sb.control(&sb.kftc, "faults", json!({"error_rate": 1.0, "error": "A0002:412"})).await;
    let b = sb.balance(&t.access, &f).await;
    assert_eq!((b["rsp_code"].as_str(), b["bank_rsp_code"].as_str()), (Some("A0002"), Some("412")));
    sb.control(&sb.kftc, "faults", json!({"error_rate": 1.0, "error": "http_503"})).await;
    let r = sb.http.get(sb.kftc_url("/v2.0/user/me")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    // Token endpoint too.
    let r = sb.http.post(sb.kftc_url("/oauth/2.0/token")).form(&[("grant_type", "x")]).send().await.unwrap();
    assert_eq!(r.status(), 503);
    // The consent page and the control API are never faulted.
    let page = sb.authorize(&sb.authorize_params("login")).await;
    assert_eq!(page.status(), 200);
    let view = get_json(&sb, sb.kftc_url("/_sandbox/faults")).await;
    assert_eq!(view, json!({"latency_ms": 0, "error_rate": 1.0, "error": "http_503"}));
    // Invalid settings are refused, an empty object clears.
    for bad in [json!({"error_rate": 2.0}), json!({"error": "CE0001"}), json!({"error": "http_404"}), json!({"nope": 1})] {
        assert_eq!(sb.control(&sb.kftc, "faults", bad).await.status(), 400);
    }
    assert_eq!(sb.control(&sb.kftc, "faults", json!({})).await.status(), 200);
    assert_eq!(sb.balance(&t.access, &f).await["rsp_code"], "A0000");
}

#[tokio::test]
async fn partial_error_rate_and_latency() {
    let sb = start().await;
    let t = sb.login("kim", "login").await;
    let q = [("user_seq_no", t.user_seq_no.clone())];
    sb.control(&sb.kftc, "faults", json!({"error_rate": 0.5, "error": "http_500"})).await;
    let mut failures = 0;
    for _ in 0..60 {
        let r = sb.http.get(sb.kftc_url("/v2.0/user/me")).bearer_auth(&t.access).query(&q).send().await.unwrap();
        if r.status() == 500 {
            failures += 1;
        }
    }
    assert!((10..=50).contains(&failures), "{failures} of 60 failed");
    sb.control(&sb.kftc, "faults", json!({"latency_ms": 150})).await;
    let start = Instant::now();
    assert_eq!(sb.kftc_get("/v2.0/user/me", &t.access, &q).await["rsp_code"], "A0000");
    assert!(start.elapsed().as_millis() >= 150);
}

#[tokio::test]
async fn faults_from_configuration() {
    let sb = start_with(&[("QETTA_SANDBOX_ERROR_RATE", "1"), ("QETTA_SANDBOX_KFTC_ERROR", "O0013"), ("QETTA_SANDBOX_TOSS_ERROR", "CE0001")]).await;
    let body = sb.token_form(&[("grant_type", "client_credentials")]).await;
    assert_eq!(body["rsp_code"], "O0013");
    let r = sb.http.post(sb.toss_url("/token")).form(&[("grant_type", "client_credentials")]).send().await.unwrap();
    assert_eq!(r.status(), 500);
    let v: Value = r.json().await.unwrap();
    assert_eq!((v["resultType"].as_str(), error_code(&v)), (Some("FAIL"), "CE0001"));
    // Reset returns to the configured faults, not to none.
    sb.control(&sb.toss, "faults", json!({})).await;
    sb.control(&sb.toss, "reset", json!({})).await;
    let r = sb.http.post(sb.toss_url("/token")).form(&[("grant_type", "client_credentials")]).send().await.unwrap();
    assert_eq!(r.status(), 500);
}

#[tokio::test]
async fn toss_faults_by_control_call() {
    let sb = start().await;
    let token = sb.toss_token().await;
    sb.control(&sb.toss, "faults", json!({"error_rate": 1.0, "error": "CE0001"})).await;
    let (status, v) = sb.toss_post("/api/v2/sign/user/auth/id/status", &token, json!({"txId": "x"})).await;
    assert_eq!((status, error_code(&v)), (500, "CE0001"));
    sb.control(&sb.toss, "faults", json!({"error_rate": 1.0, "error": "http_502"})).await;
    let r = sb.http.post(sb.toss_url("/api/v2/sign/user/auth/id/status")).bearer_auth(&token).json(&json!({})).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(sb.control(&sb.toss, "faults", json!({"error": "A0007"})).await.status(), 400);
    // KFTC is unaffected by Toss faults.
    assert!(sb.login("kim", "login").await.access.len() > 10);
    sb.control(&sb.toss, "faults", json!({})).await;
    let (status, _) = sb.toss_post("/api/v2/sign/user/auth/id/status", &token, json!({"txId": "x"})).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn expire_tokens_forces_o0003_and_ce1000() {
    let sb = start().await;
    let t = sb.login("kim", "login").await;
    let q = [("user_seq_no", t.user_seq_no.clone())];
    let toss = sb.toss_token().await;
    let r: Value = sb.control(&sb.kftc, "expire-tokens", json!({})).await.json().await.unwrap();
    assert_eq!(r["expired"], 1);
    assert_eq!(sb.kftc_get("/v2.0/user/me", &t.access, &q).await["rsp_code"], "O0003");
    // The refresh token still works and its new access token is fine.
    let fresh = sb.refresh(&t.refresh, "login").await;
    assert_eq!(sb.kftc_get("/v2.0/user/me", fresh["access_token"].as_str().unwrap(), &q).await["rsp_code"], "A0000");
    sb.control(&sb.toss, "expire-tokens", json!({})).await;
    let (status, v) = sb.toss_post("/api/v2/sign/user/auth/id/status", &toss, json!({"txId": "x"})).await;
    assert_eq!((status, error_code(&v)), (401, "CE1000"));
    let again = sb.toss_token().await;
    let (status, _) = sb.toss_post("/api/v2/sign/user/auth/id/status", &again, json!({"txId": "x"})).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn reset_returns_to_the_initial_state() {
    let sb = start().await;
    let before = sb.users().await;
    let t = sb.login("kim", "login").await;
    let toss = sb.toss_token().await;
    sb.advance(100).await;
    sb.control(&sb.kftc, "faults", json!({"latency_ms": 1})).await;
    assert_eq!(sb.control(&sb.kftc, "reset", json!({})).await.status(), 200);
    let stats = get_json(&sb, sb.kftc_url("/_sandbox/stats")).await;
    assert_eq!(stats["calls"], json!({}));
    assert_eq!(sb.kftc_get("/v2.0/user/me", &t.access, &[("user_seq_no", t.user_seq_no.clone())]).await["rsp_code"], "O0002");
    assert_eq!(get_json(&sb, sb.kftc_url("/_sandbox/faults")).await["latency_ms"], 0);
    assert_eq!(get_json(&sb, sb.kftc_url("/_sandbox/clock")).await["offset_seconds"], 0);
    let mut after = sb.users().await;
    let mut before = before;
    for u in after["users"].as_array_mut().unwrap().iter_mut().chain(before["users"].as_array_mut().unwrap().iter_mut()) {
        u["linked"] = json!(null);
    }
    assert_eq!(before, after);
    // Toss reset drops its tokens.
    sb.control(&sb.toss, "reset", json!({})).await;
    let (status, _) = sb.toss_post("/api/v2/sign/user/auth/id/status", &toss, json!({"txId": "x"})).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn clock_and_users_endpoints() {
    let sb = start().await;
    let c = get_json(&sb, sb.toss_url("/_sandbox/clock")).await;
    assert_eq!(c["offset_seconds"], 0);
    let r: Value = sb.control(&sb.toss, "clock", json!({"advance_seconds": 90})).await.json().await.unwrap();
    assert_eq!(r["offset_seconds"], 90);
    assert!(r["now"].as_str().unwrap().ends_with("+09:00"));
    // One clock for both simulators, and the library handle sees it too.
    assert_eq!(get_json(&sb, sb.kftc_url("/_sandbox/clock")).await["offset_seconds"], 90);
    assert_eq!(sb.sandbox.clock().offset().as_secs(), 90);
    assert_eq!(sb.control(&sb.kftc, "clock", json!({"advance_seconds": -5})).await.status(), 400);
    assert_eq!(sb.control(&sb.kftc, "clock", json!({"advance": 5})).await.status(), 400);

    let users = sb.users().await;
    assert_eq!(users["client_use_code"], sb.sandbox.kftc_client_use_code());
    let list = users["users"].as_array().unwrap();
    assert!(list.len() >= 3);
    for u in list {
        assert_eq!(u["user_seq_no"].as_str().unwrap().len(), 10);
        let accounts = u["accounts"].as_array().unwrap();
        assert!((2..=4).contains(&accounts.len()));
        for a in accounts {
            assert_eq!(a["fintech_use_num"].as_str().unwrap().len(), 24);
        }
    }
    let person = get_json(&sb, sb.toss_url("/_sandbox/users")).await;
    assert_eq!(person["person"]["name"], "김토스");
}

/// Mounted like `qetta serve` does: nested under /sandbox/kftc and /sandbox/toss.
#[tokio::test]
async fn works_nested_under_another_prefix() {
    let sandbox = qetta_sandbox::Sandbox::new(qetta_sandbox::SandboxConfig::default());
    let app = axum::Router::new().nest("/sandbox/kftc", sandbox.kftc_router()).nest("/sandbox/toss", sandbox.toss_router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let base = format!("http://{addr}/sandbox");
    let page = http
        .get(format!("{base}/kftc/oauth/2.0/authorize"))
        .query(&[("response_type", "code"), ("client_id", CLIENT_ID), ("redirect_uri", REDIRECT_URI), ("scope", "login"), ("state", STATE), ("auth_type", "0")])
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    // The page's relative stylesheet resolves under the prefix.
    let css_url = reqwest::Url::parse(&format!("{base}/kftc/oauth/2.0/authorize")).unwrap().join("../../_sandbox/assets/sandbox.css").unwrap();
    assert_eq!(http.get(css_url).send().await.unwrap().status(), 200);
    // The Toss app link carries the prefix.
    let token: Value = http
        .post(format!("{base}/toss/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", qetta_sandbox::config::TOSS_TEST_CLIENT_ID),
            ("client_secret", qetta_sandbox::config::TOSS_TEST_CLIENT_SECRET),
            ("scope", "ca"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let v: Value = http
        .post(format!("{base}/toss/api/v2/sign/user/auth/request"))
        .bearer_auth(token["access_token"].as_str().unwrap())
        .json(&json!({"requestType": "USER_NONE"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = v["success"]["authUrl"].as_str().unwrap();
    assert!(url.starts_with(&format!("{base}/toss/_sandbox/app/")), "{url}");
    assert_eq!(http.get(url).send().await.unwrap().status(), 200);
    let stats: Value = http.get(format!("{base}/kftc/_sandbox/stats")).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats["calls"]["/oauth/2.0/authorize"], 1);
}

/// Odd input never panics: every request gets an answer in the provider's format.
#[tokio::test]
async fn odd_input_gets_provider_errors_not_panics() {
    let sb = start().await;
    let t = sb.login("kim", "login inquiry").await;
    let odd = ["", "한국어한국어한국어한", "%", "\u{0}", &"9".repeat(5000), "M202600001U한국어", "00000000한국어한국"];
    for v in odd {
        for path in ["/v2.0/account/balance/fin_num", "/v2.0/account/transaction_list/fin_num", "/v2.0/user/me", "/v2.0/account/list"] {
            let q: Vec<(&str, String)> = [
                "bank_tran_id",
                "fintech_use_num",
                "tran_dtime",
                "inquiry_type",
                "inquiry_base",
                "from_date",
                "to_date",
                "sort_order",
                "befor_inquiry_trace_info",
                "user_seq_no",
                "include_cancel_yn",
            ]
            .iter()
            .map(|k| (*k, v.to_string()))
            .collect();
            let body = sb.kftc_get(path, &t.access, &q).await;
            assert!(body["rsp_code"].as_str().unwrap().starts_with('A'), "{path} {body}");
        }
        let r = sb.http.get(sb.kftc_url("/oauth/2.0/authorize")).query(&[("client_id", v), ("redirect_uri", v)]).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let body = sb.token_form(&[("grant_type", v), ("code", v)]).await;
        assert_eq!(body["rsp_code"], "O0001");
    }
    // Raw, non-UTF-8 query and body bytes.
    let r = sb.http.get(format!("{}?state=%FF%FE&client_id=%C3", sb.kftc_url("/oauth/2.0/authorize"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = sb
        .http
        .post(sb.kftc_url("/oauth/2.0/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![0xff, 0xfe, b'=', 0x00])
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["rsp_code"], "O0001");
    let r = sb.http.post(sb.kftc_url("/v2.0/account/cancel")).bearer_auth(&t.access).body(vec![0xff, 0x00]).send().await.unwrap();
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["rsp_code"], "A0004");
    let token = sb.toss_token().await;
    for body in [json!({"txId": 5}), json!({"txId": "한", "sessionKey": "v1$한$한"}), json!(null), json!("x")] {
        for path in ["/api/v2/sign/user/auth/id/request", "/api/v2/sign/user/auth/id/status", "/api/v2/sign/user/auth/id/result"] {
            let (status, v) = sb.toss_post(path, &token, body.clone()).await;
            assert_eq!(status, 400, "{path} {body}");
            assert_eq!(v["resultType"], "FAIL");
        }
    }
    let r = sb.http.post(sb.toss_url("/api/v2/sign/user/auth/id/result")).bearer_auth(&token).body(vec![0xff]).send().await.unwrap();
    assert_eq!(r.status(), 400);
    // Still alive.
    assert_eq!(sb.kftc_get("/v2.0/user/me", &t.access, &[("user_seq_no", t.user_seq_no.clone())]).await["rsp_code"], "A0000");
}
