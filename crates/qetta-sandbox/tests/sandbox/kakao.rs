//! Kakao Login simulator (docs/oauth-providers.md Part K): authorize, token, rotation, user info,
//! token info / logout / unlink, OIDC, errors, faults and control.

use qetta_sandbox::config::DEFAULT_KAKAO_REDIRECT_URI as CB;
use qetta_sandbox::config::{DEFAULT_KAKAO_ADMIN_KEY, DEFAULT_KAKAO_CLIENT_ID as CID, DEFAULT_KAKAO_CLIENT_SECRET as SECRET};
use reqwest::Response;
use serde_json::{json, Value};

use crate::common::*;

const KSTATE: &str = "kakao-state-123";

impl TestSandbox {
    fn k(&self, path: &str) -> String {
        format!("{}{}", self.kakao, path)
    }

    async fn k_authorize(&self, extra: &[(&str, &str)]) -> Response {
        let mut q: Vec<(&str, &str)> = vec![("client_id", CID), ("redirect_uri", CB), ("response_type", "code"), ("state", KSTATE)];
        for (k, v) in extra {
            q.retain(|(key, _)| key != k);
            if !v.is_empty() {
                q.push((k, v));
            }
        }
        self.http.get(self.k("/oauth/authorize")).query(&q).send().await.unwrap()
    }

    /// Approve as `user` with the script parameters; returns the callback query.
    async fn k_consent(&self, user: &str, extra: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
        let mut e: Vec<(&str, &str)> = vec![("sandbox_user", user), ("sandbox_consent", "approve")];
        e.extend_from_slice(extra);
        let r = self.k_authorize(&e).await;
        assert_eq!(r.status(), 302);
        let loc = location(&r);
        assert!(loc.starts_with(CB), "{loc}");
        query_of(&loc)
    }

    async fn k_token(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let r = self.http.post(self.k("/oauth/token")).form(form).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn k_exchange(&self, code: &str, extra: &[(&str, &str)]) -> (u16, Value) {
        let mut f = vec![("grant_type", "authorization_code"), ("client_id", CID), ("client_secret", SECRET), ("redirect_uri", CB), ("code", code)];
        for (k, v) in extra {
            f.retain(|(key, _)| key != k);
            if !v.is_empty() {
                f.push((k, v));
            }
        }
        self.k_token(&f).await
    }

    async fn k_login(&self, user: &str) -> Value {
        let cb = self.k_consent(user, &[]).await;
        let (s, t) = self.k_exchange(&cb["code"], &[]).await;
        assert_eq!(s, 200, "{t}");
        t
    }

    async fn k_refresh(&self, rt: &str) -> (u16, Value) {
        self.k_token(&[("grant_type", "refresh_token"), ("client_id", CID), ("client_secret", SECRET), ("refresh_token", rt)]).await
    }

    async fn k_me(&self, at: &str) -> (u16, Value) {
        let r = self.http.get(self.k("/v2/user/me")).bearer_auth(at).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

fn koe(status: u16, body: &Value) -> (u16, &str, &str) {
    (status, body["error"].as_str().unwrap_or(""), body["error_code"].as_str().unwrap_or(""))
}

#[tokio::test]
async fn code_flow_without_pkce() {
    let sb = start().await;
    let cb = sb.k_consent("kim", &[]).await;
    assert_eq!(cb["state"], KSTATE);
    assert_eq!(cb.len(), 2, "only code and state (no iss, K2.2): {cb:?}");
    let r = sb
        .http
        .post(sb.k("/oauth/token"))
        .form(&[("grant_type", "authorization_code"), ("client_id", CID), ("client_secret", SECRET), ("redirect_uri", CB), ("code", &cb["code"])])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["token_type"], "bearer", "K3.3 lowercase");
    assert_eq!(t["expires_in"], 21599, "K3.4 integer, REST key 6 h");
    assert_eq!(t["refresh_token_expires_in"], 5183999);
    assert_eq!(t["scope"], "account_email openid profile_image profile_nickname", "space-separated");
    assert!(t["id_token"].is_string(), "OIDC on by default");
    // K4: user info, the id a Long above 2^53, written exactly.
    let r = sb.http.get(sb.k("/v2/user/me")).bearer_auth(t["access_token"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let id = sb.sandbox.kakao_user_id("kim");
    assert!(id > (1u64 << 53));
    assert!(text.contains(&format!("\"id\":{id}")), "{text}");
    let me: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(me["id"].as_u64(), Some(id));
    assert!(me["connected_at"].as_str().unwrap().ends_with('Z'));
    let a = &me["kakao_account"];
    assert_eq!(a["email"], "minjun.kim@example.com");
    assert_eq!((a["is_email_valid"].clone(), a["is_email_verified"].clone(), a["email_needs_agreement"].clone()), (json!(true), json!(true), json!(false)));
    assert_eq!(a["profile"]["nickname"], "민준");
    assert!(a["profile"]["profile_image_url"].as_str().unwrap().starts_with("http://"), "secure_resource defaults to false");
    assert_eq!(me["properties"]["nickname"], "민준");
    // Items not consented: absent, with needs_agreement true.
    assert!(a.get("phone_number").is_none() && a["phone_number_needs_agreement"] == true);
    assert!(a.get("gender").is_none() && a["gender_needs_agreement"] == true);
    // POST works too, with property_keys and secure_resource.
    let r = sb
        .http
        .post(sb.k("/v2/user/me"))
        .bearer_auth(t["access_token"].as_str().unwrap())
        .form(&[("property_keys", r#"["kakao_account.email"]"#), ("secure_resource", "true")])
        .send()
        .await
        .unwrap();
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["kakao_account"]["email"], "minjun.kim@example.com");
    assert!(me["kakao_account"].get("profile").is_none() && me.get("properties").is_none(), "{me}");
    let r = sb.http.post(sb.k("/v2/user/me")).bearer_auth(t["access_token"].as_str().unwrap()).form(&[("property_keys", "nope")]).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], -2);
}

#[tokio::test]
async fn code_flow_with_pkce_and_wrong_verifier() {
    let sb = start().await;
    let (verifier, challenge) = pkce_pair();
    let pk = [("code_challenge", challenge.as_str()), ("code_challenge_method", "S256")];
    // No verifier → refused (E4: invalid_grant).
    let cb = sb.k_consent("lee", &pk).await;
    let (s, b) = sb.k_exchange(&cb["code"], &[]).await;
    assert_eq!(koe(s, &b), (400, "invalid_grant", "KOE320"), "{b}");
    // Wrong verifier → refused, and the code is spent.
    let cb = sb.k_consent("lee", &pk).await;
    let (wrong, _) = pkce_pair();
    let (s, b) = sb.k_exchange(&cb["code"], &[("code_verifier", &wrong)]).await;
    assert_eq!(koe(s, &b), (400, "invalid_grant", "KOE320"), "{b}");
    let (s, _) = sb.k_exchange(&cb["code"], &[("code_verifier", &verifier)]).await;
    assert_eq!(s, 400, "a failed attempt spends the code");
    // Right verifier.
    let cb = sb.k_consent("lee", &pk).await;
    let (s, t) = sb.k_exchange(&cb["code"], &[("code_verifier", &verifier)]).await;
    assert_eq!(s, 200, "{t}");
    // S256 only (D16): plain, a missing method or a malformed challenge go back as errors.
    for extra in [
        vec![("code_challenge", challenge.as_str()), ("code_challenge_method", "plain")],
        vec![("code_challenge", challenge.as_str())],
        vec![("code_challenge", "short"), ("code_challenge_method", "S256")],
        vec![("code_challenge_method", "S256")],
    ] {
        let mut e = extra.clone();
        e.push(("sandbox_consent", "approve"));
        let r = sb.k_authorize(&e).await;
        assert_eq!(r.status(), 302);
        let q = query_of(&location(&r));
        assert_eq!(q["error"], "invalid_request", "{extra:?}");
        assert_eq!(q["state"], KSTATE);
        assert!(!q.contains_key("code"));
    }
}

#[tokio::test]
async fn code_is_single_use_short_lived_and_bound_to_the_redirect_uri() {
    let sb = start().await;
    let cb = sb.k_consent("kim", &[]).await;
    assert_eq!(sb.k_exchange(&cb["code"], &[]).await.0, 200);
    let (s, b) = sb.k_exchange(&cb["code"], &[]).await;
    // K3.5: exact shape, real text.
    assert_eq!(s, 400);
    assert_eq!(
        b,
        json!({"error": "invalid_grant", "error_description": format!("authorization code not found for code={}", cb["code"]), "error_code": "KOE320"})
    );
    // Expired after 10 minutes (E1).
    let cb = sb.k_consent("kim", &[]).await;
    sb.advance(601).await;
    assert_eq!(koe(sb.k_exchange(&cb["code"], &[]).await.0, &sb.k_exchange(&cb["code"], &[]).await.1), (400, "invalid_grant", "KOE320"));
    // Wrong or missing redirect_uri → KOE303.
    for bad in ["http://localhost:8080/api/v1/oauth/kakao/callback/", ""] {
        let cb = sb.k_consent("kim", &[]).await;
        let (s, b) = sb.k_exchange(&cb["code"], &[("redirect_uri", bad)]).await;
        assert_eq!(koe(s, &b), (400, "invalid_grant", "KOE303"), "{bad:?} {b}");
    }
    // Unknown code.
    let (s, b) = sb.k_exchange("nope", &[]).await;
    assert_eq!(koe(s, &b), (400, "invalid_grant", "KOE320"));
}

#[tokio::test]
async fn client_authentication_errors() {
    let sb = start().await;
    let cb = sb.k_consent("kim", &[]).await;
    for (extra, expected) in [
        (vec![("client_secret", "wrong")], (401, "invalid_client", "KOE010")),
        (vec![("client_secret", "")], (401, "invalid_client", "KOE010")),
        (vec![("client_id", "someone-else")], (401, "invalid_client", "KOE101")),
    ] {
        let (s, b) = sb.k_exchange(&cb["code"], &extra).await;
        assert_eq!(koe(s, &b), expected, "{extra:?} {b}");
    }
    let (_, b) = sb.k_exchange(&cb["code"], &[("client_secret", "wrong")]).await;
    assert_eq!(b, json!({"error": "invalid_client", "error_description": "Bad client credentials", "error_code": "KOE010"}));
    // Client-auth failures do not spend the code.
    assert_eq!(sb.k_exchange(&cb["code"], &[]).await.0, 200);
    // HTTP Basic is not a Kakao method (client_secret_post only, D8).
    let cb = sb.k_consent("kim", &[]).await;
    let r = sb
        .http
        .post(sb.k("/oauth/token"))
        .basic_auth(CID, Some(SECRET))
        .form(&[("grant_type", "authorization_code"), ("redirect_uri", CB), ("code", &cb["code"])])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Missing parameters, unsupported grants, JSON bodies.
    let (s, b) = sb.k_token(&[("client_id", CID)]).await;
    assert_eq!(koe(s, &b), (400, "invalid_request", "KOE001"));
    let (s, b) = sb.k_token(&[("grant_type", "client_credentials"), ("client_id", CID), ("client_secret", SECRET)]).await;
    assert_eq!((s, b["error"].as_str()), (400, Some("unsupported_grant_type")));
    let r = sb.http.post(sb.k("/oauth/token")).json(&json!({"grant_type": "authorization_code"})).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = sb.http.get(sb.k("/oauth/token")).send().await.unwrap();
    assert_eq!(r.status(), 405);

    // Client secret switched off: no secret needed.
    let sb = start_with(&[("QETTA_SANDBOX_KAKAO_CLIENT_SECRET_ENABLED", "off")]).await;
    let cb = sb.k_consent("kim", &[]).await;
    let (s, _) = sb.k_exchange(&cb["code"], &[("client_secret", "")]).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn refresh_rotates_only_in_the_last_month() {
    let sb = start().await;
    let t = sb.k_login("kim").await;
    let rt = t["refresh_token"].as_str().unwrap().to_string();
    // Plenty of time left: new AT, no refresh_token / refresh_token_expires_in, no scope (K3.4).
    let (s, r1) = sb.k_refresh(&rt).await;
    assert_eq!(s, 200, "{r1}");
    assert!(r1.get("refresh_token").is_none() && r1.get("refresh_token_expires_in").is_none(), "{r1}");
    assert!(r1.get("scope").is_none());
    assert_eq!((r1["token_type"].as_str(), r1["expires_in"].as_i64()), (Some("bearer"), Some(21599)));
    assert_ne!(r1["access_token"], t["access_token"]);
    assert!(r1["id_token"].is_string(), "an RT issued with an ID token brings one");
    assert_eq!(sb.k_me(r1["access_token"].as_str().unwrap()).await.0, 200);
    // The old RT stays valid.
    sb.advance(30 * 86_400 - 10).await; // 5183999 − 2591990 = 2592009 s left: ≥ 30 days
    let (s, r2) = sb.k_refresh(&rt).await;
    assert_eq!(s, 200);
    assert!(r2.get("refresh_token").is_none(), "still ≥ 1 month left: {r2}");
    // Less than a month left: a new RT, the old one dies.
    sb.advance(20).await;
    let (s, r3) = sb.k_refresh(&rt).await;
    assert_eq!(s, 200);
    let new_rt = r3["refresh_token"].as_str().expect("rotated").to_string();
    assert_eq!(r3["refresh_token_expires_in"], 5183999);
    assert_ne!(new_rt, rt);
    let (s, b) = sb.k_refresh(&rt).await;
    assert_eq!(b, json!({"error": "invalid_grant", "error_description": "expired_or_invalid_refresh_token", "error_code": "KOE322"}));
    assert_eq!(s, 400);
    let (s, r4) = sb.k_refresh(&new_rt).await;
    assert_eq!(s, 200);
    assert!(r4.get("refresh_token").is_none(), "the new RT has two months again");
    // Expired RT.
    sb.advance(5_184_000).await;
    assert_eq!(koe(sb.k_refresh(&new_rt).await.0, &sb.k_refresh(&new_rt).await.1), (400, "invalid_grant", "KOE322"));
    // Missing RT → KOE319.
    let (s, b) = sb.k_token(&[("grant_type", "refresh_token"), ("client_id", CID), ("client_secret", SECRET)]).await;
    assert_eq!(koe(s, &b), (400, "invalid_grant", "KOE319"));
    let stats = sb.get_json_url(&sb.k("/_sandbox/stats")).await.1;
    assert_eq!(stats["tokens"]["issued"]["refresh_token"], 4);
    assert_eq!(stats["tokens"]["refused"]["refresh_token"], 4);
}

#[tokio::test]
async fn user_info_with_valid_expired_and_unknown_tokens() {
    let sb = start().await;
    let t = sb.k_login("kim").await;
    let at = t["access_token"].as_str().unwrap();
    assert_eq!(sb.k_me(at).await.0, 200);
    // Unknown token.
    let r = sb.http.get(sb.k("/v2/user/me")).bearer_auth("unknown-token-0123456789").send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer error=invalid_token");
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"msg": "this access token does not exist", "code": -401}));
    // No header.
    let r = sb.http.get(sb.k("/v2/user/me")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // Expired after 6 h by the sandbox clock.
    sb.advance(21_599).await;
    let (s, b) = sb.k_me(at).await;
    assert_eq!((s, b), (401, json!({"msg": "this access token is already expired", "code": -401})));
    // expire-tokens: every AT expired, refresh still works.
    let t = sb.k_login("park").await;
    let r = sb.control(&sb.kakao, "expire-tokens", json!({})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(sb.k_me(t["access_token"].as_str().unwrap()).await.1["code"], -401);
    let (s, r) = sb.k_refresh(t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(s, 200);
    assert_eq!(sb.k_me(r["access_token"].as_str().unwrap()).await.0, 200);
    // choi declines email and phone: absent, needs_agreement true.
    let t = sb.k_login("choi").await;
    let me = sb.k_me(t["access_token"].as_str().unwrap()).await.1;
    assert!(me["kakao_account"].get("email").is_none() && me["kakao_account"]["email_needs_agreement"] == true, "{me}");
    // Additional consent adds items.
    let cb = sb.k_consent("kim", &[("scope", "gender,age_range,phone_number")]).await;
    let (_, t) = sb.k_exchange(&cb["code"], &[]).await;
    let me = sb.k_me(t["access_token"].as_str().unwrap()).await.1;
    assert_eq!(me["kakao_account"]["gender"], "male");
    assert_eq!(me["kakao_account"]["phone_number"], "+82 10-1234-5678");
    assert!(me["kakao_account"]["age_range"].as_str().unwrap().contains('~'));
    assert!(t.get("id_token").is_none(), "additional consent without openid: no ID token (K2.1)");
}

#[tokio::test]
async fn token_info_logout_and_unlink() {
    let sb = start().await;
    let t = sb.k_login("kim").await;
    let at = t["access_token"].as_str().unwrap();
    let id = sb.sandbox.kakao_user_id("kim");
    let (s, info) = sb.get_json_bearer(&sb.k("/v1/user/access_token_info"), at).await;
    assert_eq!(s, 200);
    assert_eq!(info["id"].as_u64(), Some(id));
    assert_eq!(info["app_id"], 1234567);
    assert!((21_590..=21_599).contains(&info["expires_in"].as_i64().unwrap()));
    let (s, b) = sb.get_json_bearer(&sb.k("/v1/user/access_token_info"), "not a token!").await;
    assert_eq!((s, b["code"].as_i64()), (400, Some(-2)));
    // Logout: that session's AT and RT die; another session survives.
    let other = sb.k_login("kim").await;
    let r = sb.http.post(sb.k("/v1/user/logout")).bearer_auth(at).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["id"].as_u64(), Some(id));
    assert_eq!(sb.k_me(at).await.0, 401);
    assert_eq!(sb.k_refresh(t["refresh_token"].as_str().unwrap()).await.0, 400);
    assert_eq!(sb.k_me(other["access_token"].as_str().unwrap()).await.0, 200);
    // Admin key with target_id.
    let r = sb
        .http
        .get(sb.k("/v2/user/me"))
        .header("authorization", format!("KakaoAK {DEFAULT_KAKAO_ADMIN_KEY}"))
        .query(&[("target_id_type", "user_id"), ("target_id", &id.to_string())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Unlink: every token dies, prompt=none now needs consent.
    let r = sb.http.post(sb.k("/v1/user/unlink")).bearer_auth(other["access_token"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["id"].as_u64(), Some(id));
    assert_eq!(sb.k_me(other["access_token"].as_str().unwrap()).await.0, 401);
    assert_eq!(sb.k_refresh(other["refresh_token"].as_str().unwrap()).await.1["error_code"], "KOE322");
    let users = sb.get_json_url(&sb.k("/_sandbox/users")).await.1;
    assert_eq!(users["users"][0]["linked"], false);
    let r = sb.k_authorize(&[("prompt", "none"), ("sandbox_user", "kim")]).await;
    let q = query_of(&location(&r));
    assert_eq!((q["error"].as_str(), q["error_description"].as_str()), ("consent_required", "user consent required."));
    // Linked again: prompt=none answers silently.
    sb.k_login("kim").await;
    let r = sb.k_authorize(&[("prompt", "none"), ("sandbox_user", "kim")]).await;
    assert!(query_of(&location(&r)).contains_key("code"));
    // Logout with Kakao account.
    let r = sb
        .http
        .get(sb.k("/oauth/logout"))
        .query(&[("client_id", CID), ("logout_redirect_uri", "http://localhost:8080/"), ("state", "s1")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), "http://localhost:8080/?state=s1");
    let r = sb.http.get(sb.k("/oauth/logout")).query(&[("client_id", CID), ("logout_redirect_uri", "http://evil/")]).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error_code"], "KOE007");
}

#[tokio::test]
async fn oidc_discovery_jwks_and_id_token() {
    let sb = start().await;
    let (s, d) = sb.get_json_url(&sb.k("/.well-known/openid-configuration")).await;
    assert_eq!(s, 200);
    let iss = sb.kakao.clone();
    assert_eq!(
        d,
        json!({
            "issuer": iss,
            "authorization_endpoint": format!("{iss}/oauth/authorize"),
            "token_endpoint": format!("{iss}/oauth/token"),
            "userinfo_endpoint": format!("{iss}/v1/oidc/userinfo"),
            "jwks_uri": format!("{iss}/.well-known/jwks.json"),
            "token_endpoint_auth_methods_supported": ["client_secret_post"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "request_uri_parameter_supported": false,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["iss", "aud", "sub", "auth_time", "exp", "iat", "nonce", "nickname", "picture", "email"],
        })
    );
    let jwks = sb.get_json_url(d["jwks_uri"].as_str().unwrap()).await.1;
    let (verifier, challenge) = pkce_pair();
    let cb = sb.k_consent("kim", &[("nonce", "n-0S6_WzA2Mj"), ("code_challenge", &challenge), ("code_challenge_method", "S256")]).await;
    let (_, t) = sb.k_exchange(&cb["code"], &[("code_verifier", &verifier)]).await;
    let idt = t["id_token"].as_str().unwrap();
    let c = verify_id_token(&jwks, idt, &iss, CID).expect("verifies");
    assert_eq!(c["sub"], sb.sandbox.kakao_user_id("kim").to_string(), "sub is a string");
    assert_eq!(c["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 21599, "IDT shares the AT lifetime");
    assert!(c["auth_time"].as_i64().unwrap() <= c["iat"].as_i64().unwrap());
    assert_eq!((c["nickname"].as_str(), c["email"].as_str()), (Some("민준"), Some("minjun.kim@example.com")));
    assert!(c.get("email_verified").is_none() && c.get("at_hash").is_none(), "K6: {c}");
    // Wrong audience or issuer fail like they would in a client.
    assert!(verify_id_token(&jwks, idt, &iss, "other-app").is_err());
    assert!(verify_id_token(&jwks, idt, "https://kauth.kakao.com", CID).is_err());
    // lee's email is not verified: no email claim.
    let t2 = sb.k_login("lee").await;
    let c2 = verify_id_token(&jwks, t2["id_token"].as_str().unwrap(), &iss, CID).unwrap();
    assert!(c2.get("email").is_none() && c2.get("nonce").is_none(), "{c2}");
    // Debug tokeninfo endpoint.
    let r = sb.http.post(sb.k("/oauth/tokeninfo")).form(&[("id_token", idt)]).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["sub"], c["sub"]);
    let r = sb.http.post(sb.k("/oauth/tokeninfo")).form(&[("id_token", "a.b.c")]).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error_code"], "KOE400");
    // OIDC userinfo: flat, sub string, gender as in the doc sample.
    let (s, u) = sb.get_json_bearer(&sb.k("/v1/oidc/userinfo"), t["access_token"].as_str().unwrap()).await;
    assert_eq!(s, 200);
    assert_eq!((u["sub"].clone(), u["email_verified"].clone()), (c["sub"].clone(), json!(true)));
    // Key rotation: new kid, the old key stays published until retired.
    let old_kid = jwks["keys"][0]["kid"].as_str().unwrap().to_string();
    let r: Value = sb.control(&sb.kakao, "rotate-keys", json!({})).await.json().await.unwrap();
    assert_eq!(r["previous_kid"], old_kid.as_str());
    let jwks2 = sb.get_json_url(&sb.k("/.well-known/jwks.json")).await.1;
    assert_eq!(jwks2["keys"].as_array().unwrap().len(), 2);
    assert!(verify_id_token(&jwks2, idt, &iss, CID).is_ok(), "old token, old key still there");
    let t3 = sb.k_login("park").await;
    let idt3 = t3["id_token"].as_str().unwrap();
    assert!(verify_id_token(&jwks, idt3, &iss, CID).unwrap_err().contains("not in JWKS"), "a client must refetch on unknown kid");
    assert!(verify_id_token(&jwks2, idt3, &iss, CID).is_ok());
    sb.control(&sb.kakao, "rotate-keys", json!({"keep_previous": false})).await;
    let jwks3 = sb.get_json_url(&sb.k("/.well-known/jwks.json")).await.1;
    assert_eq!(jwks3["keys"].as_array().unwrap().len(), 1);
    assert!(verify_id_token(&jwks3, idt, &iss, CID).is_err());
    assert_eq!(sb.control(&sb.kakao, "rotate-keys", json!({"nope": 1})).await.status(), 400);
}

#[tokio::test]
async fn oidc_switched_off_and_fixed_issuer() {
    let sb = start_with(&[("QETTA_SANDBOX_KAKAO_OIDC", "off")]).await;
    let t = sb.k_login("kim").await;
    assert!(t.get("id_token").is_none());
    assert!(!t["scope"].as_str().unwrap().contains("openid"));
    let (s, u) = sb.get_json_bearer(&sb.k("/v1/oidc/userinfo"), t["access_token"].as_str().unwrap()).await;
    assert_eq!((s, u["code"].as_i64()), (403, Some(-402)));
    let sb = start_with(&[("QETTA_SANDBOX_KAKAO_ISSUER", "https://kauth.kakao.com")]).await;
    let d = sb.get_json_url(&sb.k("/.well-known/openid-configuration")).await.1;
    assert_eq!(d["issuer"], "https://kauth.kakao.com");
    let jwks = sb.get_json_url(&sb.k("/.well-known/jwks.json")).await.1;
    let t = sb.k_login("kim").await;
    assert!(verify_id_token(&jwks, t["id_token"].as_str().unwrap(), "https://kauth.kakao.com", CID).is_ok());
}

#[tokio::test]
async fn authorize_errors_consent_page_and_denial() {
    let sb = start().await;
    // Not redirected before client and redirect URI are trusted (K2.2).
    for (extra, code) in [
        (vec![("client_id", "wrong")], "KOE101"),
        (vec![("client_id", "")], "KOE101"),
        (vec![("redirect_uri", "http://evil.example/cb")], "KOE006"),
        (vec![("redirect_uri", "")], "KOE006"),
        (vec![("response_type", "token")], "KOE202"),
        (vec![("response_type", "id_token")], "KOE201"),
    ] {
        let r = sb.k_authorize(&extra).await;
        assert_eq!(r.status(), 400, "{extra:?}");
        assert_eq!(r.json::<Value>().await.unwrap()["error_code"], code, "{extra:?}");
    }
    let r = sb.http.get(sb.k("/oauth/authorize")).header("accept", "text/html").query(&[("client_id", "wrong")]).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("KOE101"));
    // Unknown consent item or prompt → error on the callback.
    let r = sb.k_authorize(&[("scope", "account_email,bank_password"), ("sandbox_consent", "approve")]).await;
    assert_eq!(query_of(&location(&r))["error"], "invalid_scope");
    let r = sb.k_authorize(&[("prompt", "sometimes")]).await;
    assert_eq!(query_of(&location(&r))["error"], "invalid_request");
    // The user cancels (K2.2 exact text).
    let r = sb.k_authorize(&[("sandbox_consent", "deny")]).await;
    let q = query_of(&location(&r));
    assert_eq!((q["error"].as_str(), q["error_description"].as_str(), q["state"].as_str()), ("access_denied", "User denied access", KSTATE));
    // Without state, none comes back.
    let r = sb.k_authorize(&[("state", ""), ("sandbox_consent", "approve"), ("sandbox_user", "kim")]).await;
    assert!(!query_of(&location(&r)).contains_key("state"));
    // The page: all people, relative links, and its form posts approve.
    let r = sb.k_authorize(&[("scope", "gender")]).await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    for needle in ["김민준", "최유진", "action=\"authorize\"", "../_sandbox/assets/sandbox.css", "gender", KSTATE] {
        assert!(html.contains(needle), "missing {needle}");
    }
    assert!(!html.contains("<script") && !html.contains("href=\"/"));
    let css = reqwest::Url::parse(&sb.k("/oauth/authorize")).unwrap().join("../_sandbox/assets/sandbox.css").unwrap();
    assert_eq!(sb.http.get(css).send().await.unwrap().status(), 200);
    let form =
        [("client_id", CID), ("redirect_uri", CB), ("response_type", "code"), ("state", KSTATE), ("sandbox_consent", "approve"), ("sandbox_user", "park")];
    let r = sb.http.post(sb.k("/oauth/authorize")).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let (_, t) = sb.k_exchange(&query_of(&location(&r))["code"], &[]).await;
    assert_eq!(sb.k_me(t["access_token"].as_str().unwrap()).await.1["id"].as_u64(), Some(sb.sandbox.kakao_user_id("park")));
    // Auto-consent.
    let sb = start_with(&[("QETTA_SANDBOX_AUTO_CONSENT", "approve"), ("QETTA_SANDBOX_USER", "lee")]).await;
    let r = sb.k_authorize(&[]).await;
    let (_, t) = sb.k_exchange(&query_of(&location(&r))["code"], &[]).await;
    assert_eq!(sb.k_me(t["access_token"].as_str().unwrap()).await.1["id"].as_u64(), Some(sb.sandbox.kakao_user_id("lee")));
}

#[tokio::test]
async fn faults_stats_rate_limit_and_control() {
    let sb = start().await;
    let t = sb.k_login("kim").await;
    let at = t["access_token"].as_str().unwrap().to_string();
    sb.control(&sb.kakao, "faults", json!({"error_rate": 1.0, "error": "KOE237"})).await;
    let (s, b) = sb.k_refresh(t["refresh_token"].as_str().unwrap()).await;
    assert_eq!((s, b), (400, json!({"error": "invalid_request", "error_description": "token request rate limit exceeded", "error_code": "KOE237"})));
    sb.control(&sb.kakao, "faults", json!({"error_rate": 1.0, "error": "-9798"})).await;
    let (s, b) = sb.k_me(&at).await;
    assert_eq!((s, b["code"].as_i64()), (503, Some(-9798)));
    sb.control(&sb.kakao, "faults", json!({"error_rate": 1.0, "error": "http_502"})).await;
    assert_eq!(sb.k_me(&at).await.0, 502);
    // Pages and control calls are never faulted.
    assert_eq!(sb.k_authorize(&[]).await.status(), 200);
    for bad in [json!({"error": "A0007"}), json!({"error": "-5"}), json!({"error_rate": 3})] {
        assert_eq!(sb.control(&sb.kakao, "faults", bad).await.status(), 400);
    }
    assert_eq!(sb.get_json_url(&sb.k("/_sandbox/faults")).await.1, json!({"latency_ms": 0, "error_rate": 1.0, "error": "http_502"}));
    sb.control(&sb.kakao, "faults", json!({})).await;
    assert_eq!(sb.k_me(&at).await.0, 200);
    let stats = sb.get_json_url(&sb.k("/_sandbox/stats")).await.1;
    assert_eq!(stats["calls"]["/v2/user/me"], 3);
    assert_eq!(stats["calls"]["/oauth/authorize"], 2);
    assert_eq!(stats["tokens"]["issued"]["authorization_code"], 1);
    // Users, clock, reset.
    let users = sb.get_json_url(&sb.k("/_sandbox/users")).await.1;
    assert_eq!(users["users"].as_array().unwrap().len(), 4);
    assert_eq!(users["users"][0]["kakao_id_string"], sb.sandbox.kakao_user_id("kim").to_string());
    let r = sb.control(&sb.kakao, "reset", json!({})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(sb.k_me(&at).await.0, 401, "tokens gone after reset");
    assert_eq!(sb.get_json_url(&sb.k("/_sandbox/stats")).await.1["calls"].as_object().unwrap().len(), 1);
    // KOE237 by configuration: 2 tokens per minute.
    let sb = start_with(&[("QETTA_SANDBOX_KAKAO_TOKEN_RATE_LIMIT", "2")]).await;
    sb.k_login("kim").await;
    sb.k_login("lee").await;
    let cb = sb.k_consent("park", &[]).await;
    let (s, b) = sb.k_exchange(&cb["code"], &[]).await;
    assert_eq!(koe(s, &b), (400, "invalid_request", "KOE237"));
    sb.advance(61).await;
    sb.k_login("park").await;
}

#[tokio::test]
async fn odd_input_never_panics() {
    let sb = start().await;
    let t = sb.k_login("kim").await;
    let at = t["access_token"].as_str().unwrap();
    let long = "9".repeat(5000);
    let odd = ["", "한국어", "%", "\u{0}", long.as_str(), "a b", "\"><script>", "-1", "18446744073709551616"];
    for v in odd {
        let r = sb.http.get(sb.k("/oauth/authorize")).query(&[("client_id", v), ("redirect_uri", v), ("state", v)]).send().await.unwrap();
        assert_eq!(r.status(), 400, "{v:?}");
        let r = sb.k_authorize(&[("scope", v), ("prompt", v), ("nonce", v), ("code_challenge", v), ("sandbox_user", v), ("sandbox_consent", v)]).await;
        assert!(r.status() == 302 || r.status() == 400 || r.status() == 200, "{v:?} {}", r.status());
        let (s, b) = sb.k_token(&[("grant_type", v), ("code", v), ("client_id", v), ("refresh_token", v)]).await;
        assert!((400..500).contains(&s) && b["error_code"].as_str().unwrap().starts_with("KOE"), "{v:?} {b}");
        let (s, b) = sb.k_exchange(v, &[("code_verifier", v), ("redirect_uri", v)]).await;
        assert!((400..500).contains(&s) && b["error"].is_string(), "{v:?} {b}");
        let r = sb.http.post(sb.k("/v2/user/me")).bearer_auth(at).form(&[("property_keys", v), ("secure_resource", v)]).send().await.unwrap();
        assert!(r.status() == 200 || r.status() == 400, "{v:?}");
        let r = sb
            .http
            .get(sb.k("/v2/user/me"))
            .query(&[("target_id", v), ("target_id_type", v)])
            .header("authorization", format!("KakaoAK {DEFAULT_KAKAO_ADMIN_KEY}"))
            .send()
            .await
            .unwrap();
        assert!(r.json::<Value>().await.unwrap()["code"].as_i64().unwrap() < 0);
    }
    // Raw bytes.
    let r = sb.http.get(format!("{}?client_id=%FF%FE&state=%C3", sb.k("/oauth/authorize"))).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r =
        sb.http.post(sb.k("/oauth/token")).header("content-type", "application/x-www-form-urlencoded").body(vec![0xff, 0xfe, b'=', 0]).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error_code"], "KOE001");
    let r = sb
        .http
        .post(sb.k("/v1/user/unlink"))
        .bearer_auth(at)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![0xff])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = sb.http.get(sb.k("/v2/user/me")).header("authorization", "Bearer").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = sb.http.get(sb.k("/v2/user/me")).header("host", "\"><x").bearer_auth(at).send().await.unwrap();
    assert!(r.status().as_u16() < 500);
    // Still alive.
    assert_eq!(sb.k_me(at).await.0, 200);
}

/// Mounted like `qetta serve` does it: under /sandbox/kakao the discovery URLs carry the prefix.
#[tokio::test]
async fn works_nested_under_another_prefix() {
    let sandbox = qetta_sandbox::Sandbox::new(qetta_sandbox::SandboxConfig::default());
    let app = axum::Router::new().nest("/sandbox/kakao", sandbox.kakao_router()).nest("/sandbox/naver", sandbox.naver_router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    for p in ["kakao", "naver"] {
        let d: Value = reqwest::get(format!("http://{addr}/sandbox/{p}/.well-known/openid-configuration")).await.unwrap().json().await.unwrap();
        assert_eq!(d["issuer"], format!("http://{addr}/sandbox/{p}"));
        let jwks: Value = reqwest::get(d["jwks_uri"].as_str().unwrap()).await.unwrap().json().await.unwrap();
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    }
}
