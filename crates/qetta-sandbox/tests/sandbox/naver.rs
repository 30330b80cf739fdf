//! Naver Login simulator (docs/oauth-providers.md Part N): classic and OIDC paths, errors on HTTP
//! 200, string `expires_in`, refresh without rotation, revocation, profile envelope, faults.

use std::collections::HashMap;

use qetta_sandbox::config::{DEFAULT_NAVER_CLIENT_ID as CID, DEFAULT_NAVER_CLIENT_SECRET as SECRET, DEFAULT_NAVER_REDIRECT_URI as CB};
use reqwest::Response;
use serde_json::{json, Value};

use crate::common::*;

const NSTATE: &str = "naver-state-9f8e";

impl TestSandbox {
    fn n(&self, path: &str) -> String {
        format!("{}{}", self.naver, path)
    }

    async fn n_authorize(&self, path: &str, extra: &[(&str, &str)]) -> Response {
        let mut q: Vec<(&str, &str)> = vec![("response_type", "code"), ("client_id", CID), ("redirect_uri", CB), ("state", NSTATE)];
        for (k, v) in extra {
            q.retain(|(key, _)| key != k);
            if !v.is_empty() {
                q.push((k, v));
            }
        }
        self.http.get(self.n(path)).query(&q).send().await.unwrap()
    }

    async fn n_consent(&self, path: &str, user: &str, extra: &[(&str, &str)]) -> HashMap<String, String> {
        let mut e: Vec<(&str, &str)> = vec![("sandbox_user", user), ("sandbox_consent", "approve")];
        e.extend_from_slice(extra);
        let r = self.n_authorize(path, &e).await;
        assert_eq!(r.status(), 302);
        let loc = location(&r);
        assert!(loc.starts_with(CB), "{loc}");
        query_of(&loc)
    }

    /// Classic token endpoint with GET and every parameter in the query string (like the docs).
    async fn n_token_get(&self, q: &[(&str, &str)]) -> (u16, Value) {
        let r = self.http.get(self.n("/oauth2.0/token")).query(q).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn n_token_post(&self, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let r = self.http.post(self.n(path)).form(form).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn n_exchange(&self, code: &str) -> (u16, Value) {
        self.n_token_get(&[("grant_type", "authorization_code"), ("client_id", CID), ("client_secret", SECRET), ("code", code), ("state", NSTATE)]).await
    }

    async fn n_login(&self, user: &str) -> Value {
        let cb = self.n_consent("/oauth2.0/authorize", user, &[]).await;
        let (s, t) = self.n_exchange(&cb["code"]).await;
        assert_eq!(s, 200);
        assert!(t["access_token"].is_string(), "{t}");
        t
    }

    async fn n_refresh(&self, rt: &str) -> (u16, Value) {
        self.n_token_get(&[("grant_type", "refresh_token"), ("client_id", CID), ("client_secret", SECRET), ("refresh_token", rt)]).await
    }

    async fn n_me(&self, at: &str) -> (u16, Value) {
        self.get_json_bearer(&self.n("/v1/nid/me"), at).await
    }
}

#[tokio::test]
async fn classic_code_flow_with_get_and_post() {
    let sb = start().await;
    let cb = sb.n_consent("/oauth2.0/authorize", "kim", &[]).await;
    assert_eq!((cb["state"].as_str(), cb.len()), (NSTATE, 2), "{cb:?}");
    let (s, t) = sb.n_exchange(&cb["code"]).await;
    assert_eq!(s, 200);
    // N3: string expires_in (D2), lowercase bearer, a refresh token.
    assert_eq!(t["expires_in"], "3600");
    assert_eq!(t["token_type"], "bearer");
    assert!(t["refresh_token"].as_str().unwrap().bytes().all(|b| b.is_ascii_alphanumeric()));
    let at = t["access_token"].as_str().unwrap();
    assert!(at.len() <= 256 && at.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)));
    assert!(at.ends_with("=="), "tokens carry base64 padding: clients must URL-encode them");
    assert!(t.get("id_token").is_none(), "classic path: no ID token");
    // N5 profile envelope.
    let (s, me) = sb.n_me(at).await;
    assert_eq!(s, 200);
    assert_eq!((me["resultcode"].as_str(), me["message"].as_str()), (Some("00"), Some("success")));
    let r = &me["response"];
    assert_eq!(r["id"], sb.sandbox.naver_user_id("kim"));
    assert_eq!(r["id"].as_str().unwrap().len(), 43);
    assert_eq!((r["gender"].as_str(), r["mobile"].as_str(), r["birthday"].as_str()), (Some("M"), Some("010-1234-5678"), Some("04-15")));
    assert_eq!(r["email"], "minjun.kim@example.com");
    assert!(r["age"].as_str().unwrap().contains('-'));
    assert!(r.get("sub").is_none());
    // POST form works on the classic endpoint too; so does POST to /v1/nid/me.
    let cb = sb.n_consent("/oauth2.0/authorize", "choi", &[]).await;
    let (s, t) = sb
        .n_token_post(
            "/oauth2.0/token",
            &[
                ("grant_type", "authorization_code"),
                ("client_id", CID),
                ("client_secret", SECRET),
                ("code", &cb["code"]),
                ("state", NSTATE),
                ("redirect_uri", CB),
            ],
        )
        .await;
    assert_eq!(s, 200, "{t}");
    let r = sb.http.post(sb.n("/v1/nid/me")).bearer_auth(t["access_token"].as_str().unwrap()).send().await.unwrap();
    let me: Value = r.json().await.unwrap();
    // choi declines email, phone and birthday: those fields are missing.
    let resp = me["response"].as_object().unwrap();
    assert!(!resp.contains_key("email") && !resp.contains_key("mobile") && !resp.contains_key("birthday"), "{me}");
    assert_eq!(resp["id"], sb.sandbox.naver_user_id("choi").as_str());
    // verify with info=true.
    let (s, v) = sb.get_json_bearer(&format!("{}?info=true", sb.n("/v1/nid/verify")), t["access_token"].as_str().unwrap()).await;
    assert_eq!(s, 200);
    assert_eq!(v["response"]["token"], t["access_token"]);
    assert!(!v["response"]["allowed_profile"].as_str().unwrap().contains("email"));
    assert!(v["response"].get("client_id").is_none());
}

#[tokio::test]
async fn token_errors_come_on_http_200() {
    let sb = start().await;
    let cb = sb.n_consent("/oauth2.0/authorize", "kim", &[]).await;
    assert_eq!(sb.n_exchange(&cb["code"]).await.0, 200);
    // Code replay (N3 [O] exact body, HTTP 200, D1).
    let (s, b) = sb.n_exchange(&cb["code"]).await;
    assert_eq!((s, b), (200, json!({"error": "invalid_request", "error_description": "no valid data in session"})));
    // Expired code.
    let cb = sb.n_consent("/oauth2.0/authorize", "kim", &[]).await;
    sb.advance(601).await;
    assert_eq!(sb.n_exchange(&cb["code"]).await.1["error_description"], "no valid data in session");
    // state missing / wrong (D9, enforced by default).
    for state in ["", "other"] {
        let cb = sb.n_consent("/oauth2.0/authorize", "kim", &[]).await;
        let mut q = vec![("grant_type", "authorization_code"), ("client_id", CID), ("client_secret", SECRET), ("code", cb["code"].as_str())];
        if !state.is_empty() {
            q.push(("state", state));
        }
        let (s, b) = sb.n_token_get(&q).await;
        assert_eq!((s, b["error"].as_str()), (200, Some("invalid_request")), "{state:?} {b}");
        assert!(b.get("access_token").is_none());
    }
    // Wrong redirect_uri, when sent.
    let cb = sb.n_consent("/oauth2.0/authorize", "kim", &[]).await;
    let (s, b) = sb
        .n_token_get(&[
            ("grant_type", "authorization_code"),
            ("client_id", CID),
            ("client_secret", SECRET),
            ("code", &cb["code"]),
            ("state", NSTATE),
            ("redirect_uri", "http://evil.example/cb"),
        ])
        .await;
    assert_eq!((s, b["error"].as_str()), (200, Some("invalid_request")));
    // Bad client credentials: 200 on the classic endpoint.
    let (s, b) = sb.n_token_get(&[("grant_type", "refresh_token"), ("client_id", CID), ("client_secret", "x"), ("refresh_token", "y")]).await;
    assert_eq!((s, b["error"].as_str()), (200, Some("invalid_client")));
    // Unknown grant, no grant.
    let (s, b) = sb.n_token_get(&[("grant_type", "password"), ("client_id", CID), ("client_secret", SECRET)]).await;
    assert_eq!((s, b["error"].as_str()), (200, Some("unsupported_grant_type")));
    let (s, b) = sb.n_token_get(&[]).await;
    assert_eq!((s, b["error"].as_str()), (200, Some("invalid_request")));
    // HTTP Basic is refused by default (E8) and accepted when switched on.
    let cb = sb.n_consent("/oauth2.0/authorize", "kim", &[]).await;
    let r = sb
        .http
        .post(sb.n("/oauth2.0/token"))
        .basic_auth(CID, Some(SECRET))
        .form(&[("grant_type", "authorization_code"), ("code", &cb["code"]), ("state", NSTATE)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");
    let sb = start_with(&[("QETTA_SANDBOX_NAVER_ACCEPT_BASIC", "on"), ("QETTA_SANDBOX_NAVER_REQUIRE_STATE", "off")]).await;
    let cb = sb.n_consent("/oauth2.0/authorize", "kim", &[]).await;
    let r = sb
        .http
        .post(sb.n("/oauth2.0/token"))
        .basic_auth(CID, Some(SECRET))
        .form(&[("grant_type", "authorization_code"), ("code", &cb["code"])])
        .send()
        .await
        .unwrap();
    assert!(r.json::<Value>().await.unwrap()["access_token"].is_string(), "Basic + no state accepted when configured");
}

#[tokio::test]
async fn refresh_never_rotates() {
    let sb = start().await;
    let t = sb.n_login("lee").await;
    let rt = t["refresh_token"].as_str().unwrap();
    for _ in 0..3 {
        let (s, r) = sb.n_refresh(rt).await;
        assert_eq!(s, 200);
        let keys: Vec<&String> = r.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["access_token", "expires_in", "token_type"], "N3: no refresh_token on refresh");
        assert_eq!(r["expires_in"], "3600");
        assert_eq!(sb.n_me(r["access_token"].as_str().unwrap()).await.0, 200);
    }
    let (s, b) = sb.n_refresh("unknown").await;
    assert_eq!((s, b["error"].as_str()), (200, Some("invalid_request")));
    // Expired access token → 024 on HTTP 401; the RT still works.
    sb.advance(3600).await;
    let (s, b) = sb.n_me(t["access_token"].as_str().unwrap()).await;
    assert_eq!((s, b), (401, json!({"message": "Authentication failed (인증 실패하였습니다.)", "resultcode": "024"})));
    assert_eq!(sb.n_refresh(rt).await.0, 200);
    // No Authorization header → 028.
    let r = sb.http.get(sb.n("/v1/nid/me")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"message": "Authentication header not exists", "resultcode": "028"}));
    // E13: 024 on HTTP 200 when configured.
    let sb = start_with(&[("QETTA_SANDBOX_NAVER_AUTH_FAILED_STATUS", "200")]).await;
    let (s, b) = sb.n_me("nope").await;
    assert_eq!((s, b["resultcode"].as_str()), (200, Some("024")));
}

#[tokio::test]
async fn legacy_delete_revokes_then_refresh_is_refused() {
    let sb = start().await;
    let t = sb.n_login("kim").await;
    let at = t["access_token"].as_str().unwrap();
    let q = [("grant_type", "delete"), ("client_id", CID), ("client_secret", SECRET), ("access_token", at), ("service_provider", "NAVER")];
    // reqwest URL-encodes the token's + / = (N3: clients must).
    let (s, b) = sb.n_token_get(&q).await;
    assert_eq!((s, b), (200, json!({"access_token": at, "result": "success"})));
    let (s, b) = sb.n_refresh(t["refresh_token"].as_str().unwrap()).await;
    assert_eq!((s, b["error"].as_str()), (200, Some("invalid_request")));
    assert_eq!(sb.n_me(at).await.1["resultcode"], "024");
    // `success` even for an unknown token (D11).
    let (_, b) = sb
        .n_token_get(&[("grant_type", "delete"), ("client_id", CID), ("client_secret", SECRET), ("access_token", "bogus"), ("service_provider", "NAVER")])
        .await;
    assert_eq!(b["result"], "success");
    let users = sb.get_json_url(&sb.n("/_sandbox/users")).await.1;
    assert_eq!(users["users"][0]["linked"], false);
    let stats = sb.get_json_url(&sb.n("/_sandbox/stats")).await.1;
    assert_eq!(stats["tokens"]["issued"]["delete"], 2);
}

#[tokio::test]
async fn revoke_endpoint() {
    let sb = start().await;
    let t = sb.n_login("park").await;
    // By refresh token: the pair dies (cascade), HTTP 200 with an empty body.
    let r = sb
        .http
        .post(sb.n("/oauth2.0/revoke"))
        .form(&[("client_id", CID), ("client_secret", SECRET), ("token", t["refresh_token"].as_str().unwrap()), ("token_type_hint", "refresh_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().is_empty());
    assert_eq!(sb.n_me(t["access_token"].as_str().unwrap()).await.0, 401);
    assert_eq!(sb.n_refresh(t["refresh_token"].as_str().unwrap()).await.1["error"], "invalid_request");
    // By access token (default hint); again: still 200.
    let t = sb.n_login("park").await;
    for _ in 0..2 {
        let r = sb
            .http
            .post(sb.n("/oauth2.0/revoke"))
            .form(&[("client_id", CID), ("client_secret", SECRET), ("token", t["access_token"].as_str().unwrap())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(sb.n_refresh(t["refresh_token"].as_str().unwrap()).await.1["error"], "invalid_request");
    // Errors.
    let r = sb.http.post(sb.n("/oauth2.0/revoke")).form(&[("client_id", CID), ("client_secret", "bad"), ("token", "x")]).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"error": "unauthorized_client", "error_description": "Client authentication failed."}));
    let r = sb.http.post(sb.n("/oauth2.0/revoke")).form(&[("client_id", CID), ("client_secret", SECRET)]).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.json::<Value>().await.unwrap()["error"].clone()), (400, json!("invalid_request")));
    let r = sb.http.get(sb.n("/oauth2.0/revoke")).send().await.unwrap();
    assert_eq!(r.status(), 405);
}

#[tokio::test]
async fn authorize_errors_and_denial() {
    let sb = start().await;
    for (extra, error) in [
        (vec![("client_id", "nope")], "unauthorized_client"),
        (vec![("redirect_uri", "http://evil/cb")], "invalid_request"),
        (vec![("redirect_uri", "")], "invalid_request"),
    ] {
        let r = sb.n_authorize("/oauth2.0/authorize", &extra).await;
        assert_eq!(r.status(), 400, "{extra:?}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"], error);
    }
    // After the callback is trusted: `?state=&error=&error_description=` (N2).
    let r = sb.n_authorize("/oauth2.0/authorize", &[("response_type", "token")]).await;
    let q = query_of(&location(&r));
    assert_eq!((q["error"].as_str(), q["state"].as_str()), ("unsupported_response_type", NSTATE));
    let r = sb.n_authorize("/oauth2.0/authorize", &[("state", "")]).await;
    let q = query_of(&location(&r));
    assert_eq!(q["error"], "invalid_request");
    assert!(!q.contains_key("state"));
    let r = sb.n_authorize("/oauth2.0/authorize", &[("auth_type", "sometimes")]).await;
    assert_eq!(query_of(&location(&r))["error"], "invalid_request");
    // Cancel (E9).
    let r = sb.n_authorize("/oauth2.0/authorize", &[("sandbox_consent", "deny")]).await;
    let loc = location(&r);
    assert!(loc.starts_with(&format!("{CB}?state={NSTATE}&error=access_denied")), "{loc}");
    // autologin without a logged-in person.
    let r = sb.n_authorize("/oauth2.0/authorize", &[("auth_type", "autologin")]).await;
    assert_eq!(query_of(&location(&r))["error_description"], "user not logged in.");
    let r = sb.n_authorize("/oauth2.0/authorize", &[("auth_type", "autologin"), ("sandbox_user", "park")]).await;
    assert_eq!(query_of(&location(&r))["error_description"], "need user consent.");
    sb.n_login("park").await;
    let r = sb.n_authorize("/oauth2.0/authorize", &[("auth_type", "autologin"), ("sandbox_user", "park")]).await;
    assert!(query_of(&location(&r)).contains_key("code"), "silent login once consented");
    // Consent page, and its form.
    let r = sb.n_authorize("/oauth2.0/authorize", &[]).await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("이서연") && html.contains("action=\"authorize\"") && html.contains("../_sandbox/assets/sandbox.css"));
    let css = reqwest::Url::parse(&sb.n("/oauth2/authorize")).unwrap().join("../_sandbox/assets/sandbox.css").unwrap();
    assert_eq!(sb.http.get(css).send().await.unwrap().status(), 200);
    let form =
        [("response_type", "code"), ("client_id", CID), ("redirect_uri", CB), ("state", NSTATE), ("sandbox_consent", "approve"), ("sandbox_user", "lee")];
    let r = sb.http.post(sb.n("/oauth2.0/authorize")).form(&form).send().await.unwrap();
    let (_, t) = sb.n_exchange(&query_of(&location(&r))["code"]).await;
    assert_eq!(sb.n_me(t["access_token"].as_str().unwrap()).await.1["response"]["id"], sb.sandbox.naver_user_id("lee"));
}

#[tokio::test]
async fn oidc_path_with_pkce_discovery_jwks_and_id_token() {
    let sb = start().await;
    let (s, d) = sb.get_json_url(&sb.n("/.well-known/openid-configuration")).await;
    assert_eq!(s, 200);
    let iss = sb.naver.clone();
    assert_eq!(
        d,
        json!({
            "issuer": iss,
            "authorization_endpoint": format!("{iss}/oauth2/authorize"),
            "token_endpoint": format!("{iss}/oauth2/token"),
            "jwks_uri": format!("{iss}/oauth2/jwks"),
            "userinfo_endpoint": format!("{iss}/v1/nid/me"),
            "response_types_supported": ["code"],
            "scopes_supported": ["openid", "profile"],
            "grant_types_supported": ["authorization_code"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "none"],
            "code_challenge_methods_supported": ["S256"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
        })
    );
    assert_eq!(sb.http.get(sb.n("/.well-known/jwks.json")).send().await.unwrap().status(), 404, "N4 [O]");
    let jwks = sb.get_json_url(d["jwks_uri"].as_str().unwrap()).await.1;
    let (verifier, challenge) = pkce_pair();
    let pk = [("scope", "openid profile"), ("code_challenge", challenge.as_str()), ("code_challenge_method", "S256"), ("nonce", "abc123")];
    let form = |code: &str, v: &str| {
        vec![
            ("grant_type", "authorization_code".to_string()),
            ("client_id", CID.to_string()),
            ("client_secret", SECRET.to_string()),
            ("code", code.to_string()),
            ("state", NSTATE.to_string()),
            ("code_verifier", v.to_string()),
        ]
    };
    // Wrong verifier: refused with a 4xx on the OIDC path.
    let cb = sb.n_consent("/oauth2/authorize", "kim", &pk).await;
    let (wrong, _) = pkce_pair();
    let r = sb.http.post(sb.n("/oauth2/token")).form(&form(&cb["code"], &wrong)).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    // Right verifier.
    let cb = sb.n_consent("/oauth2/authorize", "kim", &pk).await;
    let r = sb.http.post(sb.n("/oauth2/token")).form(&form(&cb["code"], &verifier)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["expires_in"], "3600");
    let c = verify_id_token(&jwks, t["id_token"].as_str().unwrap(), &iss, CID).expect("verifies");
    assert_eq!(c["sub"], sb.sandbox.naver_user_id("kim"), "sub = the pairwise profile id");
    assert_eq!(c["nonce"], "abc123");
    assert!(c.get("email").is_none());
    // The access token works on the profile API (the discovery userinfo endpoint).
    assert_eq!(sb.n_me(t["access_token"].as_str().unwrap()).await.1["resultcode"], "00");
    // A public client (auth method `none`) with PKCE may omit the secret.
    let cb = sb.n_consent("/oauth2/authorize", "lee", &pk).await;
    let mut f = form(&cb["code"], &verifier);
    f.retain(|(k, _)| *k != "client_secret");
    let r = sb.http.post(sb.n("/oauth2/token")).form(&f).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // Refresh on the OIDC path (E11): new AT, no RT, no ID token.
    let (s, r) = sb
        .n_token_post(
            "/oauth2/token",
            &[("grant_type", "refresh_token"), ("client_id", CID), ("client_secret", SECRET), ("refresh_token", t["refresh_token"].as_str().unwrap())],
        )
        .await;
    assert_eq!(s, 200);
    assert!(r.get("refresh_token").is_none() && r.get("id_token").is_none());
    // Errors on the OIDC path use HTTP statuses: bad client → 401 invalid_client.
    let (s, b) =
        sb.n_token_post("/oauth2/token", &[("grant_type", "refresh_token"), ("client_id", "dummy"), ("client_secret", "dummy"), ("refresh_token", "x")]).await;
    assert_eq!((s, b["error"].as_str()), (401, Some("invalid_client")));
    let (s, b) = sb
        .n_token_post(
            "/oauth2/token",
            &[("grant_type", "authorization_code"), ("client_id", CID), ("client_secret", SECRET), ("code", &cb["code"]), ("state", NSTATE)],
        )
        .await;
    assert_eq!((s, b["error_description"].as_str()), (400, Some("no valid data in session")));
    assert_eq!(sb.http.get(sb.n("/oauth2/token")).send().await.unwrap().status(), 405);
    // A classic code cannot be exchanged on the OIDC path.
    let cb = sb.n_consent("/oauth2.0/authorize", "kim", &[]).await;
    let (s, _) = sb
        .n_token_post(
            "/oauth2/token",
            &[("grant_type", "authorization_code"), ("client_id", CID), ("client_secret", SECRET), ("code", &cb["code"]), ("state", NSTATE)],
        )
        .await;
    assert_eq!(s, 400);
    // openid is required on the OIDC authorize.
    for scope in ["", "profile", "openid email"] {
        let r = sb.n_authorize("/oauth2/authorize", &[("scope", scope)]).await;
        assert_eq!(query_of(&location(&r))["error"], "invalid_scope", "{scope:?}");
    }
    // Key rotation.
    let r: Value = sb.control(&sb.naver, "rotate-keys", json!({})).await.json().await.unwrap();
    assert_ne!(r["kid"], r["previous_kid"]);
    assert_eq!(sb.get_json_url(&sb.n("/oauth2/jwks")).await.1["keys"].as_array().unwrap().len(), 2);
    // OIDC switched off: the path and the documents are gone.
    let sb = start_with(&[("QETTA_SANDBOX_NAVER_OIDC", "off")]).await;
    for path in ["/.well-known/openid-configuration", "/oauth2/jwks", "/oauth2/authorize"] {
        assert_eq!(sb.http.get(sb.n(path)).send().await.unwrap().status(), 404, "{path}");
    }
    assert_eq!(sb.http.post(sb.n("/oauth2/token")).send().await.unwrap().status(), 404);
    sb.n_login("kim").await;
}

#[tokio::test]
async fn faults_stats_and_control() {
    let sb = start().await;
    let t = sb.n_login("kim").await;
    let at = t["access_token"].as_str().unwrap().to_string();
    sb.control(&sb.naver, "faults", json!({"error_rate": 1.0, "error": "server_error"})).await;
    let (s, b) = sb.n_refresh(t["refresh_token"].as_str().unwrap()).await;
    assert_eq!((s, b["error"].as_str()), (200, Some("server_error")), "classic endpoint: HTTP 200");
    let (s, b) = sb.n_me(&at).await;
    assert_eq!((s, b["resultcode"].as_str()), (500, Some("500")));
    sb.control(&sb.naver, "faults", json!({"error_rate": 1.0, "error": "temporarily_unavailable"})).await;
    let (s, _) = sb.n_token_post("/oauth2/token", &[("grant_type", "refresh_token")]).await;
    assert_eq!(s, 503);
    sb.control(&sb.naver, "faults", json!({"error_rate": 1.0, "error": "http_500"})).await;
    assert_eq!(sb.n_me(&at).await.0, 500);
    assert_eq!(sb.n_authorize("/oauth2.0/authorize", &[]).await.status(), 200, "pages are not faulted");
    assert_eq!(sb.control(&sb.naver, "faults", json!({"error": "KOE237"})).await.status(), 400);
    sb.control(&sb.naver, "faults", json!({})).await;
    assert_eq!(sb.n_me(&at).await.0, 200);
    let stats = sb.get_json_url(&sb.n("/_sandbox/stats")).await.1;
    assert_eq!(stats["calls"]["/v1/nid/me"], 3);
    assert_eq!(stats["calls"]["/oauth2.0/token"], 2);
    assert_eq!(stats["tokens"]["issued"]["authorization_code"], 1);
    // expire-tokens, clock, users, reset.
    sb.control(&sb.naver, "expire-tokens", json!({})).await;
    assert_eq!(sb.n_me(&at).await.1["resultcode"], "024");
    let users = sb.get_json_url(&sb.n("/_sandbox/users")).await.1;
    assert_eq!(users["users"].as_array().unwrap().len(), 4);
    assert_eq!(users["users"][0]["naver_id"], sb.sandbox.naver_user_id("kim"));
    sb.control(&sb.naver, "reset", json!({})).await;
    assert_eq!(sb.n_refresh(t["refresh_token"].as_str().unwrap()).await.1["error"], "invalid_request");
}

#[tokio::test]
async fn odd_input_never_panics() {
    let sb = start().await;
    let t = sb.n_login("kim").await;
    let at = t["access_token"].as_str().unwrap();
    let long = "9".repeat(5000);
    let odd = ["", "한국어", "%", "\u{0}", long.as_str(), "a b", "\"><script>", "+/="];
    for v in odd {
        for path in ["/oauth2.0/authorize", "/oauth2/authorize"] {
            let r = sb.http.get(sb.n(path)).query(&[("client_id", v), ("redirect_uri", v), ("state", v)]).send().await.unwrap();
            assert_eq!(r.status(), 400, "{v:?}");
            let r =
                sb.n_authorize(path, &[("scope", v), ("auth_type", v), ("code_challenge", v), ("sandbox_user", v), ("sandbox_consent", v), ("state", v)]).await;
            assert!([200, 302, 400].contains(&r.status().as_u16()), "{v:?} {}", r.status());
        }
        let (s, b) = sb.n_token_get(&[("grant_type", v), ("code", v), ("client_id", v), ("refresh_token", v), ("state", v)]).await;
        assert_eq!(s, 200);
        assert!(b["error"].is_string(), "{b}");
        let (s, b) = sb
            .n_token_get(&[
                ("grant_type", "authorization_code"),
                ("client_id", CID),
                ("client_secret", SECRET),
                ("code", v),
                ("state", v),
                ("code_verifier", v),
            ])
            .await;
        assert_eq!(s, 200);
        assert!(b["error"].is_string(), "{b}");
        let (s, b) = sb.n_token_post("/oauth2/token", &[("grant_type", v), ("client_id", CID), ("client_secret", SECRET), ("code", v)]).await;
        assert!((400..500).contains(&s) && b["error"].is_string(), "{v:?} {s} {b}");
        let r = sb
            .http
            .post(sb.n("/oauth2.0/revoke"))
            .form(&[("client_id", CID), ("client_secret", SECRET), ("token", v), ("token_type_hint", v)])
            .send()
            .await
            .unwrap();
        assert!(r.status() == 200 || r.status() == 400, "{v:?}");
        let r = sb.http.get(sb.n("/v1/nid/me")).header("authorization", format!("Bearer {}", v.replace('\u{0}', ""))).send().await.unwrap();
        assert!(r.status() == 401, "{v:?}");
    }
    let r = sb.http.get(format!("{}?client_id=%FF&grant_type=%C3", sb.n("/oauth2.0/token"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.json::<Value>().await.unwrap()["error"].is_string());
    let r = sb.http.post(sb.n("/oauth2.0/token")).header("content-type", "application/x-www-form-urlencoded").body(vec![0xff, 0xfe]).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.json::<Value>().await.unwrap()["error"].clone()), (200, json!("invalid_request")));
    let r = sb.http.post(sb.n("/oauth2.0/token")).json(&json!({"grant_type": "authorization_code"})).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    assert_eq!(sb.n_me(at).await.0, 200);
}
