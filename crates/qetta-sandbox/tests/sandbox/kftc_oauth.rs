//! KFTC authorize + token endpoint rules (SPEC A5, A6, A14.1–A14.4).

use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn authorize_rejects_bad_client_and_redirect_without_redirecting() {
    let sb = start().await;
    let cases: &[(&str, Option<&str>, &str)] = &[
        ("client_id", None, "[3000103]"),
        ("client_id", Some("someone-else"), "[3000201]"),
        ("redirect_uri", Some("http://localhost:8080/api/v1/oauth/kftc/callback/"), "[3000114]"),
        ("redirect_uri", None, "[3000103]"),
    ];
    for (key, value, detail) in cases {
        let mut p: Vec<(&str, String)> = sb.authorize_params("login inquiry").into_iter().filter(|(k, _)| k != key).collect();
        if let Some(v) = value {
            p.push((key, v.to_string()));
        }
        let resp = sb.authorize(&p).await;
        assert_eq!(resp.status(), 200, "{key}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["rsp_code"], "O0001", "{key}");
        assert!(body["rsp_message"].as_str().unwrap().contains(detail), "{key}: {body}");
    }
    // A browser gets an error page instead.
    let mut p = sb.authorize_params("login");
    p[1].1 = "wrong".into();
    let resp = sb.http.get(sb.kftc_url("/oauth/2.0/authorize")).header("accept", "text/html").query(&p).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let html = resp.text().await.unwrap();
    assert!(html.contains("3000201") && html.contains("<!DOCTYPE html>"));
}

#[tokio::test]
async fn authorize_parameter_errors_redirect_with_codes() {
    let sb = start().await;
    let cases: &[(&str, Option<&str>, &str, &str)] = &[
        ("response_type", Some("token"), "[3000116]", "unsupported_response_type"),
        ("scope", Some("login oob"), "[3000115]", "invalid_scope"),
        ("scope", Some("login sa"), "[3000115]", "invalid_scope"),
        ("scope", None, "[3000103]", "invalid_request"),
        ("auth_type", Some("3"), "[3000103]", "invalid_request"),
        ("auth_type", None, "[3000103]", "invalid_request"),
        ("state", None, "[3000103]", "invalid_request"),
    ];
    for (key, value, detail, oauth_error) in cases {
        let mut p: Vec<(&str, String)> = sb.authorize_params("login").into_iter().filter(|(k, _)| k != key).collect();
        if let Some(v) = value {
            p.push((key, v.to_string()));
        }
        p.push(("client_info", "ci-echo".into()));
        let resp = sb.authorize(&p).await;
        assert_eq!(resp.status(), 302, "{key}");
        let q = query_of(&location(&resp));
        assert_eq!(q["rsp_code"], "O0001", "{key}");
        assert!(q["rsp_message"].contains(detail), "{key} {q:?}");
        assert_eq!(q["error"], *oauth_error);
        assert!(!q.contains_key("code"));
        assert_eq!(q["client_info"], "ci-echo");
        if *key != "state" {
            assert_eq!(q["state"], STATE);
        }
    }
}

#[tokio::test]
async fn consent_page_is_served_with_relative_links() {
    let sb = start().await;
    let resp = sb.authorize(&sb.authorize_params("login inquiry")).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = resp.text().await.unwrap();
    for needle in ["김민준", "Kim Minjun", "action=\"authorize\"", "../../_sandbox/assets/sandbox.css", "sandbox_account", STATE] {
        assert!(html.contains(needle), "missing {needle}");
    }
    assert!(!html.contains("<script"));
    assert!(!html.contains("style="));
    assert!(!html.contains("href=\"/") && !html.contains("action=\"/"));
    let css = sb.http.get(sb.kftc_url("/_sandbox/assets/sandbox.css")).send().await.unwrap();
    assert_eq!(css.status(), 200);
    assert!(css.headers()["content-type"].to_str().unwrap().starts_with("text/css"));
}

#[tokio::test]
async fn consent_form_post_approves_chosen_accounts_or_denies() {
    let sb = start().await;
    let kim_first = sb.fintech("kim", 0).await;
    let mut form: Vec<(&str, String)> = sb.authorize_params("login inquiry");
    form.push(("client_info", "hello world".into()));
    form.push(("sandbox_consent", "approve".into()));
    form.push(("sandbox_user", "kim".into()));
    form.push(("sandbox_account", kim_first.clone()));
    let resp = sb.http.post(sb.kftc_url("/oauth/2.0/authorize")).form(&form).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    let q = query_of(&location(&resp));
    assert_eq!(q["state"], STATE);
    assert_eq!(q["scope"], "inquiry login");
    assert_eq!(q["client_info"], "hello world");
    assert_eq!(q["code"].len(), 30);
    let tok = sb.exchange(&q["code"]).await;
    let me = sb.kftc_get("/v2.0/user/me", tok["access_token"].as_str().unwrap(), &[("user_seq_no", tok["user_seq_no"].as_str().unwrap().into())]).await;
    assert_eq!(me["res_cnt"], "1", "{me}");
    assert_eq!(me["res_list"][0]["fintech_use_num"], kim_first.as_str());

    let mut deny: Vec<(&str, String)> = sb.authorize_params("login");
    deny.push(("sandbox_consent", "deny".into()));
    let resp = sb.http.post(sb.kftc_url("/oauth/2.0/authorize")).form(&deny).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    let q = query_of(&location(&resp));
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], STATE);
    assert!(!q.contains_key("code"));

    // Unknown sandbox user: not a redirect.
    let mut p = sb.authorize_params("login");
    p.push(("sandbox_consent", "approve".into()));
    p.push(("sandbox_user", "nobody".into()));
    let body: serde_json::Value = sb.authorize(&p).await.json().await.unwrap();
    assert_eq!(body["rsp_code"], "O0001");
}

#[tokio::test]
async fn auto_consent_answers_at_once() {
    let sb = start_with(&[("QETTA_SANDBOX_AUTO_CONSENT", "approve"), ("QETTA_SANDBOX_USER", "lee")]).await;
    let resp = sb.authorize(&sb.authorize_params("login inquiry")).await;
    assert_eq!(resp.status(), 302);
    let q = query_of(&location(&resp));
    let tok = sb.exchange(&q["code"]).await;
    let users = sb.users().await;
    let lee = users["users"].as_array().unwrap().iter().find(|u| u["id"] == "lee").unwrap();
    assert_eq!(tok["user_seq_no"], lee["user_seq_no"]);

    let sb = start_with(&[("QETTA_SANDBOX_AUTO_CONSENT", "approve")]).await;
    let q = query_of(&location(&sb.authorize(&sb.authorize_params("login")).await));
    let tok = sb.exchange(&q["code"]).await;
    let users = sb.users().await;
    assert_eq!(tok["user_seq_no"], users["users"][0]["user_seq_no"], "default is the first user");

    let sb = start_with(&[("QETTA_SANDBOX_AUTO_CONSENT", "deny")]).await;
    let q = query_of(&location(&sb.authorize(&sb.authorize_params("login")).await));
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], STATE);
}

#[tokio::test]
async fn several_redirect_uris_can_be_registered() {
    let sb = start_with(&[("KFTC_REDIRECT_URI", "http://a.example/cb,http://b.example/cb")]).await;
    let mut p = sb.authorize_params("login");
    p[2].1 = "http://b.example/cb".into();
    p.push(("sandbox_consent", "approve".into()));
    let resp = sb.authorize(&p).await;
    assert_eq!(resp.status(), 302);
    assert!(location(&resp).starts_with("http://b.example/cb?code="));
    p[2].1 = REDIRECT_URI.into();
    let body: serde_json::Value = sb.authorize(&p).await.json().await.unwrap();
    assert!(body["rsp_message"].as_str().unwrap().contains("3000114"));
}

#[tokio::test]
async fn authorization_code_exchange_and_single_use() {
    let sb = start().await;
    let cb = sb.consent("kim", "login inquiry transfer").await;
    let tok = sb.exchange(&cb["code"]).await;
    assert_eq!(tok["token_type"], "Bearer");
    assert_eq!(tok["expires_in"], 7_775_999);
    assert_eq!(tok["scope"], "inquiry login transfer");
    let seq = tok["user_seq_no"].as_str().unwrap();
    assert_eq!(seq.len(), 10);
    assert!(seq.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(tok["access_token"].as_str().unwrap().split('.').count(), 3, "JWT-shaped");
    assert!(tok["refresh_token"].is_string());
    // Single use.
    let again = sb.exchange(&cb["code"]).await;
    assert_eq!(again["rsp_code"], "O0001");
    assert!(again["rsp_message"].as_str().unwrap().contains("[3002110]"));
    // Same person, same user_seq_no; another person, another one.
    let second = sb.login("kim", "login").await;
    assert_eq!(second.user_seq_no, seq);
    let lee = sb.login("lee", "login").await;
    assert_ne!(lee.user_seq_no, seq);
}

#[tokio::test]
async fn authorization_code_expires_after_ten_minutes() {
    let sb = start().await;
    let cb = sb.consent("kim", "login").await;
    sb.advance(601).await;
    let tok = sb.exchange(&cb["code"]).await;
    assert_eq!(tok["rsp_code"], "O0001");
    assert!(tok["rsp_message"].as_str().unwrap().contains("[3002110]"));
    // Just inside the window still works.
    let cb = sb.consent("kim", "login").await;
    sb.advance(590).await;
    assert!(sb.exchange(&cb["code"]).await["access_token"].is_string());
}

#[tokio::test]
async fn token_endpoint_checks_method_body_and_credentials() {
    let sb = start().await;
    let cb = sb.consent("kim", "login").await;
    // GET → O0010.
    let body: serde_json::Value = sb.http.get(sb.kftc_url("/oauth/2.0/token")).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["rsp_code"], "O0010");
    let body: serde_json::Value = sb.http.post(sb.kftc_url("/v2.0/user/me")).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["rsp_code"], "O0010");
    // JSON body → missing parameters.
    let body: serde_json::Value = sb
        .http
        .post(sb.kftc_url("/oauth/2.0/token"))
        .json(&json!({"grant_type": "authorization_code", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                      "redirect_uri": REDIRECT_URI, "code": cb["code"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["rsp_code"], "O0001");
    assert!(body["rsp_message"].as_str().unwrap().contains("[3000103]"));
    // Wrong secret.
    let body = sb
        .token_form(&[
            ("grant_type", "authorization_code"),
            ("client_id", CLIENT_ID),
            ("client_secret", "nope"),
            ("redirect_uri", REDIRECT_URI),
            ("code", &cb["code"]),
        ])
        .await;
    assert!(body["rsp_message"].as_str().unwrap().contains("[3000201]"));
    // Wrong redirect_uri.
    let body = sb
        .token_form(&[
            ("grant_type", "authorization_code"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("redirect_uri", "http://elsewhere/cb"),
            ("code", &cb["code"]),
        ])
        .await;
    assert!(body["rsp_message"].as_str().unwrap().contains("[3000114]"));
    // Missing code, unknown grant type, duplicated parameter.
    for form in [
        vec![("grant_type", "authorization_code"), ("client_id", CLIENT_ID), ("client_secret", CLIENT_SECRET), ("redirect_uri", REDIRECT_URI)],
        vec![("grant_type", "password"), ("client_id", CLIENT_ID), ("client_secret", CLIENT_SECRET)],
        vec![
            ("grant_type", "client_credentials"),
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("scope", "oob"),
        ],
    ] {
        let body = sb.token_form(&form).await;
        assert!(body["rsp_message"].as_str().unwrap().contains("[3000103]"), "{form:?} {body}");
    }
    // The code survived all the failed attempts.
    assert!(sb.exchange(&cb["code"]).await["access_token"].is_string());
}

#[tokio::test]
async fn refresh_tokens_rotate_and_spent_or_expired_ones_are_refused() {
    let sb = start().await;
    let t = sb.login("kim", "login inquiry").await;
    let r1 = sb.refresh(&t.refresh, "login inquiry").await;
    assert_eq!(r1["token_type"], "Bearer");
    assert_eq!(r1["user_seq_no"], t.user_seq_no.as_str());
    assert_ne!(r1["refresh_token"], t.refresh.as_str());
    // Spent → O0014.
    let again = sb.refresh(&t.refresh, "login inquiry").await;
    assert_eq!(again["rsp_code"], "O0014");
    // Unknown → O0014.
    assert_eq!(sb.refresh("garbage", "login inquiry").await["rsp_code"], "O0014");
    // A wider scope than granted is refused; a missing scope is a missing parameter.
    let r1_refresh = r1["refresh_token"].as_str().unwrap();
    assert!(sb.refresh(r1_refresh, "login inquiry transfer").await["rsp_message"].as_str().unwrap().contains("[3000115]"));
    let body =
        sb.token_form(&[("grant_type", "refresh_token"), ("client_id", CLIENT_ID), ("client_secret", CLIENT_SECRET), ("refresh_token", r1_refresh)]).await;
    assert!(body["rsp_message"].as_str().unwrap().contains("[3000103]"));
    // The rotated one works, with a narrower scope too.
    let r2 = sb.refresh(r1_refresh, "inquiry").await;
    assert_eq!(r2["scope"], "inquiry");
    // Expired: refresh tokens live 7775999 + 864000 s.
    sb.advance(7_775_999 + 864_000 + 1).await;
    let expired = sb.refresh(r2["refresh_token"].as_str().unwrap(), "inquiry").await;
    assert_eq!(expired["rsp_code"], "O0015");
}

#[tokio::test]
async fn token_lifetimes_are_configurable() {
    let sb = start_with(&[("QETTA_SANDBOX_KFTC_ACCESS_TOKEN_TTL", "60"), ("QETTA_SANDBOX_KFTC_REFRESH_TOKEN_TTL", "120")]).await;
    let t = sb.login("kim", "login").await;
    assert_eq!(t.body["expires_in"], 60);
    let q = [("user_seq_no", t.user_seq_no.clone())];
    assert_eq!(sb.kftc_get("/v2.0/user/me", &t.access, &q).await["rsp_code"], "A0000");
    sb.advance(61).await;
    assert_eq!(sb.kftc_get("/v2.0/user/me", &t.access, &q).await["rsp_code"], "O0003");
    let r = sb.refresh(&t.refresh, "login").await;
    assert!(r["access_token"].is_string(), "{r}");
    sb.advance(121).await;
    assert_eq!(sb.refresh(r["refresh_token"].as_str().unwrap(), "login").await["rsp_code"], "O0015");
}

#[tokio::test]
async fn client_credentials_gives_an_oob_token() {
    let sb = start().await;
    let form = |scope: &'static str| vec![("grant_type", "client_credentials"), ("client_id", CLIENT_ID), ("client_secret", CLIENT_SECRET), ("scope", scope)];
    let body = sb.token_form(&form("oob")).await;
    assert_eq!(body["scope"], "oob");
    assert_eq!(body["client_use_code"], qetta_sandbox::config::DEFAULT_KFTC_CLIENT_USE_CODE);
    assert_eq!(body["expires_in"], 7_775_999);
    assert!(body.get("refresh_token").is_none() && body.get("user_seq_no").is_none());
    // An oob token cannot call inquiry or login APIs.
    let oob = body["access_token"].as_str().unwrap();
    let fintech = sb.fintech("kim", 0).await;
    assert_eq!(sb.balance(oob, &fintech).await["rsp_code"], "O0011");
    assert_eq!(sb.kftc_get("/v2.0/user/me", oob, &[("user_seq_no", "1100000000".into())]).await["rsp_code"], "O0011");
    assert_eq!(sb.token_form(&form("sa")).await["rsp_code"], "O0011");
    assert!(sb.token_form(&form("inquiry")).await["rsp_message"].as_str().unwrap().contains("[3000103]"));
}

#[tokio::test]
async fn bearer_token_errors() {
    let sb = start().await;
    let t = sb.login("kim", "login").await;
    let url = sb.kftc_url("/v2.0/user/me");
    let q = [("user_seq_no", t.user_seq_no.clone())];
    let no_header: serde_json::Value = sb.http.get(&url).query(&q).send().await.unwrap().json().await.unwrap();
    assert_eq!(no_header, json!({"rsp_code": "O0001", "rsp_message": "인증 파라미터 오류([992])"}));
    let no_space: serde_json::Value =
        sb.http.get(&url).query(&q).header("authorization", format!("Bearer{}", t.access)).send().await.unwrap().json().await.unwrap();
    assert_eq!(no_space["rsp_code"], "O0001");
    assert_eq!(sb.kftc_get("/v2.0/user/me", "not-a-token", &q).await["rsp_code"], "O0002");
    // login-only token on an inquiry API.
    let fintech = sb.fintech("kim", 0).await;
    assert_eq!(sb.balance(&t.access, &fintech).await["rsp_code"], "O0011");
    // Expiry by the clock.
    sb.advance(7_775_999).await;
    assert_eq!(sb.kftc_get("/v2.0/user/me", &t.access, &q).await["rsp_code"], "O0003");
}

#[tokio::test]
async fn auth_type_2_skips_the_page_with_bfop_headers() {
    let sb = start().await;
    let t = sb.login("park", "login inquiry").await;
    let users = sb.users().await;
    let park = users["users"].as_array().unwrap().iter().find(|u| u["id"] == "park").unwrap().clone();
    let mut p = sb.authorize_params("login inquiry");
    p[5].1 = "2".into();
    let resp = sb
        .http
        .get(sb.kftc_url("/oauth/2.0/authorize"))
        .query(&p)
        .header("Kftc-Bfop-UserSeqNo", t.user_seq_no.as_str())
        .header("Kftc-Bfop-UserCI", park["user_ci"].as_str().unwrap())
        .header("Kftc-Bfop-AccessToken", t.access.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    let q = query_of(&location(&resp));
    let tok = sb.exchange(&q["code"]).await;
    assert_eq!(tok["user_seq_no"], t.user_seq_no.as_str());
    // Without the headers: error callback.
    let q = query_of(&location(&sb.authorize(&p).await));
    assert_eq!(q["rsp_code"], "O0001");
}
