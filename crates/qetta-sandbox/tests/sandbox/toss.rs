//! Toss Certification: token, request/status/result with real crypto, CE codes, limits,
//! expiry, auto-complete and the simulated app.

use qetta_sandbox::toss::crypto::Session;
use serde_json::{json, Value};

use crate::common::*;

async fn token_resp(sb: &TestSandbox, form: &[(&str, &str)]) -> (u16, Value) {
    let r = sb.http.post(sb.toss_url("/token")).form(form).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn token_accepts_test_and_configured_credentials() {
    let sb = start_with(&[("TOSS_CLIENT_ID", "qetta-toss"), ("TOSS_CLIENT_SECRET", "qetta-secret")]).await;
    let test_id = qetta_sandbox::config::TOSS_TEST_CLIENT_ID;
    let test_secret = qetta_sandbox::config::TOSS_TEST_CLIENT_SECRET;
    for (id, secret) in [(test_id, test_secret), ("qetta-toss", "qetta-secret")] {
        let (status, body) = token_resp(&sb, &[("grant_type", "client_credentials"), ("client_id", id), ("client_secret", secret), ("scope", "ca")]).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["scope"], "ca");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 31_536_000);
        let jwt = body["access_token"].as_str().unwrap();
        assert!(jwt.starts_with("eyJraWQiOiJjZXJ0IiwiYWxnIjoiUlMyNTYifQ."), "{jwt}");
    }
    let (status, body) = token_resp(&sb, &[("grant_type", "client_credentials"), ("client_id", test_id), ("client_secret", "x"), ("scope", "ca")]).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")));
    let (status, body) =
        token_resp(&sb, &[("grant_type", "client_credentials"), ("client_id", test_id), ("client_secret", test_secret), ("scope", "oob")]).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_scope")));
    let (status, _) = token_resp(&sb, &[("grant_type", "password"), ("client_id", test_id), ("client_secret", test_secret), ("scope", "ca")]).await;
    assert_eq!(status, 400);
    let r = sb.http.post(sb.toss_url("/token")).json(&json!({"grant_type": "client_credentials"})).send().await.unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn bad_or_expired_tokens_get_401_ce1000() {
    let sb = start_with(&[("QETTA_SANDBOX_TOSS_TOKEN_TTL", "3600")]).await;
    let body = sb.personal_request(true);
    let r = sb.http.post(sb.toss_url("/api/v2/sign/user/auth/id/request")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["resultType"], "FAIL");
    assert_eq!(error_code(&v), "CE1000");
    assert_eq!(v["success"], Value::Null);
    assert_eq!(v["error"]["errorType"], 0);
    let (status, v) = sb.toss_post("/api/v2/sign/user/auth/id/status", "forged", json!({"txId": "x"})).await;
    assert_eq!((status, error_code(&v)), (401, "CE1000"));
    let token = sb.toss_token().await;
    assert_eq!(sb.toss_post("/api/v2/sign/user/auth/id/request", &token, body.clone()).await.0, 200);
    sb.advance(3600).await;
    let (status, v) = sb.toss_post("/api/v2/sign/user/auth/id/request", &token, body).await;
    assert_eq!((status, error_code(&v)), (401, "CE1000"));
}

#[tokio::test]
async fn user_personal_round_trip_with_real_crypto() {
    let sb = start().await;
    let token = sb.toss_token().await;
    let (status, body) = sb.toss_post("/api/v2/sign/user/auth/id/request", &token, sb.personal_request(true)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["resultType"], "SUCCESS");
    let s = &body["success"];
    let tx_id = s["txId"].as_str().unwrap().to_string();
    assert_eq!(tx_id.len(), 36);
    assert!(s["requestedDt"].as_str().unwrap().ends_with("+09:00"));
    for k in ["appScheme", "androidAppUri", "iosAppUri"] {
        assert!(s[k].as_str().unwrap().ends_with(&format!("/toss/_sandbox/app/{tx_id}")), "{k}: {s}");
    }
    assert_eq!(sb.toss_status(&token, &tx_id).await, "REQUESTED");
    // Result before completion → 400 CE3102.
    let (_, key) = sb.toss_session();
    let (status, v) = sb.toss_post("/api/v2/sign/user/auth/id/result", &token, json!({"txId": tx_id, "sessionKey": key})).await;
    assert_eq!((status, error_code(&v)), (400, "CE3102"));
    // The user opens the app, then approves.
    assert_eq!(sb.toss_action(&tx_id, "open").await.status(), 200);
    assert_eq!(sb.toss_status(&token, &tx_id).await, "IN_PROGRESS");
    assert_eq!(sb.toss_action(&tx_id, "approve").await.status(), 200);
    assert_eq!(sb.toss_status(&token, &tx_id).await, "COMPLETED");
    // Result with a new session (version echoed, here an SDK-style one).
    for _ in 0..2 {
        let session = Session::generate("v1_0.0.14");
        let key = session.seal_for(&sb.sandbox.toss_public_key_base64()).unwrap();
        let (status, v) = sb.toss_post("/api/v2/sign/user/auth/id/result", &token, json!({"txId": tx_id, "sessionKey": key})).await;
        assert_eq!(status, 200, "{v}");
        let s = &v["success"];
        assert_eq!(s["status"], "COMPLETED");
        assert_eq!(s["txId"], tx_id.as_str());
        for k in ["userIdentifier", "userCiToken", "randomValue"] {
            assert_eq!(s[k], Value::Null);
        }
        assert!(s["signature"].is_string());
        assert!(s["completedDt"].as_str().unwrap().ends_with("+09:00"));
        let pd = &s["personalData"];
        let prefix = format!("v1_0.0.14${}$", session.session_id);
        let dec = |k: &str| {
            let v = pd[k].as_str().unwrap_or_else(|| panic!("{k}"));
            assert!(v.starts_with(&prefix), "{k}: {v}");
            session.decrypt(v).unwrap()
        };
        assert_eq!(dec("name"), "김토스");
        assert_eq!(dec("birthday"), "19930324");
        assert_eq!(dec("gender"), "FEMALE");
        assert_eq!(dec("nationality"), "LOCAL");
        assert_eq!(dec("ageGroup"), "ADULT");
        assert!(dec("ci").starts_with("CI0110000000001") && dec("ci").len() == 88);
        assert!(dec("di").starts_with("DI0110000000001") && dec("di").len() == 88);
        assert_eq!(pd["ci2"], Value::Null);
        assert_eq!(pd["ciUpdate"], Value::Null);
    }
    // Third successful result → CE3101.
    let (_, key) = sb.toss_session();
    let (status, v) = sb.toss_post("/api/v2/sign/user/auth/id/result", &token, json!({"txId": tx_id, "sessionKey": key})).await;
    assert_eq!((status, error_code(&v)), (400, "CE3101"));
}

#[tokio::test]
async fn result_refuses_the_request_session_key() {
    let sb = start().await;
    let token = sb.toss_token().await;
    let req = sb.personal_request(true);
    let request_key = req["sessionKey"].clone();
    let (_, body) = sb.toss_post("/api/v2/sign/user/auth/id/request", &token, req).await;
    let tx_id = body["success"]["txId"].as_str().unwrap().to_string();
    sb.toss_action(&tx_id, "approve").await;
    let (status, v) = sb.toss_post("/api/v2/sign/user/auth/id/result", &token, json!({"txId": tx_id, "sessionKey": request_key})).await;
    assert_eq!((status, error_code(&v)), (400, "CE3001"));
    // That failure does not use up one of the two results.
    for _ in 0..2 {
        let (_, key) = sb.toss_session();
        let (status, _) = sb.toss_post("/api/v2/sign/user/auth/id/result", &token, json!({"txId": tx_id, "sessionKey": key})).await;
        assert_eq!(status, 200);
    }
}

#[tokio::test]
async fn user_none_and_legacy_paths() {
    let sb = start().await;
    let token = sb.toss_token().await;
    let (status, body) = sb.toss_post("/api/v2/sign/user/auth/id/request", &token, json!({"requestType": "USER_NONE", "requestUrl": "intoss://qetta"})).await;
    assert_eq!(status, 200, "{body}");
    let s = body["success"].as_object().unwrap();
    let mut keys: Vec<&str> = s.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["requestedDt", "txId"]);
    let tx_id = s["txId"].as_str().unwrap().to_string();
    sb.toss_action(&tx_id, "approve").await;
    let (_, key) = sb.toss_session();
    let (status, v) = sb.toss_post("/api/v2/sign/user/auth/id/result", &token, json!({"txId": tx_id, "sessionKey": key})).await;
    assert_eq!(status, 200, "{v}");
    // requestUrl is required on the current path.
    let (status, v) = sb.toss_post("/api/v2/sign/user/auth/id/request", &token, json!({"requestType": "USER_NONE"})).await;
    assert_eq!((status, error_code(&v)), (400, "CE3000"));
    // Legacy family: no requestUrl needed; USER_NONE carries authUrl.
    let (status, body) = sb.toss_post("/api/v2/sign/user/auth/request", &token, json!({"requestType": "USER_NONE"})).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["success"]["authUrl"].as_str().unwrap().contains("/_sandbox/app/"));
    let legacy_tx = body["success"]["txId"].as_str().unwrap().to_string();
    let (status, body) = sb.toss_post("/api/v2/sign/user/auth/request", &token, sb.personal_request(false)).await;
    assert_eq!(status, 200, "{body}");
    let (_, v) = sb.toss_post("/api/v2/sign/user/auth/status", &token, json!({"txId": legacy_tx})).await;
    assert_eq!(v["success"]["status"], "REQUESTED");
    sb.toss_action(&legacy_tx, "approve").await;
    let (_, key) = sb.toss_session();
    let (status, _) = sb.toss_post("/api/v2/sign/user/auth/result", &token, json!({"txId": legacy_tx, "sessionKey": key})).await;
    assert_eq!(status, 200);
    // Certificate validation always succeeds.
    let (status, v) = sb.toss_post("/api/v1/certificate/validate", &token, json!({"certificate": "-----BEGIN CERTIFICATE-----"})).await;
    assert_eq!(status, 200);
    assert_eq!(v["success"], json!({"valid": true, "enabled": true}));
}

#[tokio::test]
async fn ce_codes_for_bad_requests() {
    let sb = start().await;
    let token = sb.toss_token().await;
    let post = |body: Value| {
        let sb = &sb;
        let token = token.clone();
        async move { sb.toss_post("/api/v2/sign/user/auth/id/request", &token, body).await }
    };
    // Unknown txId.
    for path in ["/api/v2/sign/user/auth/id/status", "/api/v2/sign/user/auth/id/result"] {
        let (_, key) = sb.toss_session();
        let (status, v) = sb.toss_post(path, &token, json!({"txId": "00000000-0000-0000-0000-000000000000", "sessionKey": key})).await;
        assert_eq!((status, error_code(&v)), (400, "CE3100"), "{path}");
    }
    // Missing / invalid fields → CE3000.
    let mut no_name = sb.personal_request(true);
    no_name.as_object_mut().unwrap().remove("userName");
    let mut bad_type = sb.personal_request(true);
    bad_type["requestType"] = json!("USER_SOMETHING");
    let mut bad_trigger = sb.personal_request(true);
    bad_trigger["triggerType"] = json!("SMS");
    for body in [no_name, bad_type, bad_trigger, json!([1, 2]), json!({})] {
        let (status, v) = post(body.clone()).await;
        assert_eq!((status, error_code(&v)), (400, "CE3000"), "{body}");
    }
    let r = sb.http.post(sb.toss_url("/api/v2/sign/user/auth/id/request")).bearer_auth(&token).body("{{{").send().await.unwrap();
    assert_eq!(r.status(), 400);
    // Crypto failures → CE3001: a field from another session, a session key for another RSA key,
    // garbage session key.
    let mut mixed = sb.personal_request(true);
    let (other, _) = sb.toss_session();
    mixed["userName"] = json!(other.encrypt("홍길동"));
    let mut foreign = sb.personal_request(true);
    foreign["sessionKey"] = json!(format!("v1$x${}", "A".repeat(344)));
    let mut garbage = sb.personal_request(true);
    garbage["sessionKey"] = json!("nonsense");
    for body in [mixed, foreign, garbage] {
        let (status, v) = post(body).await;
        assert_eq!((status, error_code(&v)), (400, "CE3001"));
    }
    // Decrypted values that are not valid → CE3002.
    for (field, value) in [("userPhone", "1234"), ("userBirthday", "19931340"), ("userBirthday", "1993-03-24")] {
        let (s, key) = sb.toss_session();
        let mut body = json!({
            "requestType": "USER_PERSONAL", "triggerType": "PUSH", "requestUrl": "intoss://qetta",
            "userName": s.encrypt("홍길동"), "userPhone": s.encrypt("01012345678"), "userBirthday": s.encrypt("19900101"),
            "sessionKey": key,
        });
        body[field] = json!(s.encrypt(value));
        let (status, v) = post(body).await;
        assert_eq!((status, error_code(&v)), (400, "CE3002"), "{field}={value}");
    }
}

#[tokio::test]
async fn requests_expire_and_results_have_a_window() {
    let sb = start().await;
    let token = sb.toss_token().await;
    let tx = sb.toss_request(&token).await;
    sb.advance(600).await; // default request TTL
    assert_eq!(sb.toss_status(&token, &tx).await, "EXPIRED");
    let (_, key) = sb.toss_session();
    let (status, v) = sb.toss_post("/api/v2/sign/user/auth/id/result", &token, json!({"txId": tx, "sessionKey": key})).await;
    assert_eq!((status, error_code(&v)), (400, "CE3103"));
    assert_eq!(sb.toss_action(&tx, "approve").await.status(), 409);

    // Completed, then fetched too late → CE3101.
    let tx = sb.toss_request(&token).await;
    sb.toss_action(&tx, "approve").await;
    sb.advance(3601).await;
    let (_, key) = sb.toss_session();
    let (status, v) = sb.toss_post("/api/v2/sign/user/auth/id/result", &token, json!({"txId": tx, "sessionKey": key})).await;
    assert_eq!((status, error_code(&v)), (400, "CE3101"));

    // Declined → reads as EXPIRED.
    let tx = sb.toss_request(&token).await;
    assert_eq!(sb.toss_action(&tx, "decline").await.status(), 200);
    assert_eq!(sb.toss_status(&token, &tx).await, "EXPIRED");
    assert_eq!(sb.toss_action(&tx, "bogus").await.status(), 400);
    assert_eq!(sb.toss_action("nope", "approve").await.status(), 404);
}

#[tokio::test]
async fn auto_complete_after_a_delay_on_the_sandbox_clock() {
    let sb = start_with(&[("QETTA_SANDBOX_TOSS_AUTO_COMPLETE", "30"), ("QETTA_SANDBOX_TOSS_REQUEST_TTL", "300")]).await;
    let token = sb.toss_token().await;
    let tx = sb.toss_request(&token).await;
    assert_eq!(sb.toss_status(&token, &tx).await, "REQUESTED");
    sb.advance(29).await;
    assert_eq!(sb.toss_status(&token, &tx).await, "REQUESTED");
    sb.advance(1).await;
    assert_eq!(sb.toss_status(&token, &tx).await, "COMPLETED");
    let (_, key) = sb.toss_session();
    let (status, v) = sb.toss_post("/api/v2/sign/user/auth/id/result", &token, json!({"txId": tx, "sessionKey": key})).await;
    assert_eq!(status, 200, "{v}");
    // Immediate completion with 0.
    let sb = start_with(&[("QETTA_SANDBOX_TOSS_AUTO_COMPLETE", "0")]).await;
    let token = sb.toss_token().await;
    let tx = sb.toss_request(&token).await;
    assert_eq!(sb.toss_status(&token, &tx).await, "COMPLETED");
}

#[tokio::test]
async fn the_simulated_app_page_approves() {
    let sb = start().await;
    let token = sb.toss_token().await;
    let tx = sb.toss_request(&token).await;
    let list = sb.http.get(sb.toss_url("/_sandbox/app")).send().await.unwrap().text().await.unwrap();
    assert!(list.contains(&format!("href=\"app/{tx}\"")));
    assert!(list.contains("href=\"assets/sandbox.css\""));
    let page = sb.http.get(sb.toss_url(&format!("/_sandbox/app/{tx}"))).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("홍길동") && html.contains("01012345678") && html.contains("19900101"));
    assert!(html.contains("<form method=\"post\">") && html.contains("../assets/sandbox.css"));
    assert!(!html.contains("<script") && !html.contains("style=") && !html.contains("href=\"/"));
    assert_eq!(sb.toss_status(&token, &tx).await, "IN_PROGRESS");
    let r = sb.http.post(sb.toss_url(&format!("/_sandbox/app/{tx}"))).form(&[("decision", "approve")]).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(sb.toss_status(&token, &tx).await, "COMPLETED");
    let missing = sb.http.get(sb.toss_url("/_sandbox/app/unknown")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let listed: Value = sb.http.get(sb.toss_url("/_sandbox/requests")).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["requests"][0]["txId"], tx.as_str());
    assert_eq!(listed["requests"][0]["status"], "COMPLETED");
}
