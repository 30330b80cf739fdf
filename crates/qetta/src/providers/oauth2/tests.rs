//! The client against a scripted provider on loopback: JWKS rotation, the authorize URL, callback
//! checks, client authentication, deviations, refresh outcomes and the no-retry rule. (The
//! certified OpenID Provider test is `tests/it/oidc_peer.rs`.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use super::id_token::tests::{rsa_key, sign, TestKey};
use super::*;
use crate::providers::upstream::{http_client, BreakerPolicy};
use crate::tokens::{RefreshError, Refresher};

#[derive(Default)]
struct Mock {
    base: Mutex<String>,
    keys: Mutex<Vec<Value>>,
    jwks_hits: AtomicU64,
    token_hits: AtomicU64,
    /// Status and body the token endpoint answers next.
    token_answer: Mutex<(u16, Value)>,
    token_delay: Mutex<Duration>,
    last_form: Mutex<String>,
    last_auth: Mutex<Option<String>>,
    iss_param: Mutex<bool>,
}

async fn discovery(State(m): State<Arc<Mock>>) -> Json<Value> {
    let b = m.base.lock().unwrap().clone();
    Json(json!({
        "issuer": b,
        "authorization_endpoint": format!("{b}/authorize"),
        "token_endpoint": format!("{b}/token"),
        "jwks_uri": format!("{b}/jwks"),
        "userinfo_endpoint": format!("{b}/userinfo"),
        "revocation_endpoint": format!("{b}/revoke"),
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        "response_types_supported": ["code"],
        "authorization_response_iss_parameter_supported": *m.iss_param.lock().unwrap(),
    }))
}

async fn jwks(State(m): State<Arc<Mock>>) -> Json<Value> {
    m.jwks_hits.fetch_add(1, Ordering::SeqCst);
    Json(json!({"keys": m.keys.lock().unwrap().clone()}))
}

async fn token(State(m): State<Arc<Mock>>, headers: HeaderMap, body: String) -> impl IntoResponse {
    m.token_hits.fetch_add(1, Ordering::SeqCst);
    *m.last_form.lock().unwrap() = body;
    *m.last_auth.lock().unwrap() = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
    let delay = *m.token_delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    let (status, body) = m.token_answer.lock().unwrap().clone();
    (StatusCode::from_u16(status).unwrap(), Json(body))
}

async fn revoke() -> impl IntoResponse {
    // Naver answers an empty 200 (N6).
    (StatusCode::OK, "")
}

async fn start() -> (Arc<Mock>, String) {
    let mock = Arc::new(Mock::default());
    *mock.token_answer.lock().unwrap() = (200, json!({"access_token": "at-1", "token_type": "bearer", "expires_in": "3600"}));
    let app = Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/token", post(token))
        .route("/revoke", post(revoke))
        .with_state(mock.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    *mock.base.lock().unwrap() = base.clone();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (mock, base)
}

fn client(base: &str, f: impl FnOnce(&mut OAuthSettings)) -> OAuthClient {
    let mut s = OAuthSettings::discovered("mock", base, "client-1", Some(SecretString::from("s3cret: &+/")), "http://127.0.0.1:9/cb");
    s.jwks_refetch_interval = Duration::from_millis(300);
    f(&mut s);
    OAuthClient::new(s, http_client(Duration::from_secs(5)), Duration::from_millis(500), BreakerPolicy::default()).unwrap()
}

fn id_token(key: &TestKey, base: &str, nonce: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    sign(key, &json!({"iss": base, "sub": "u-1", "aud": "client-1", "exp": now + 300, "iat": now, "nonce": nonce}))
}

#[tokio::test]
async fn jwks_rotation_refetches_once_and_rate_limited() {
    let (mock, base) = start().await;
    let k1 = rsa_key("k1");
    let k2 = rsa_key("k2");
    let k3 = rsa_key("k3");
    *mock.keys.lock().unwrap() = vec![k1.jwk.clone()];
    let c = client(&base, |_| {});
    c.validate_id_token(&id_token(&k1, &base, "n"), Some("n")).await.expect("k1");
    c.validate_id_token(&id_token(&k1, &base, "n"), Some("n")).await.expect("k1 cached");
    assert_eq!(mock.jwks_hits.load(Ordering::SeqCst), 1, "cached");
    // The provider rotates to k2 (k1 withdrawn): an unknown kid refetches once.
    tokio::time::sleep(Duration::from_millis(350)).await;
    *mock.keys.lock().unwrap() = vec![k2.jwk.clone()];
    c.validate_id_token(&id_token(&k2, &base, "n"), Some("n")).await.expect("k2 after a refetch");
    assert_eq!(mock.jwks_hits.load(Ordering::SeqCst), 2);
    assert_eq!(c.jwks_fetch_count().await, 2);
    // A kid nobody publishes right after: refused without another fetch (rate limit).
    let e = c.validate_id_token(&id_token(&k3, &base, "n"), Some("n")).await.unwrap_err();
    assert!(matches!(e, OAuthError::IdToken(IdTokenError::UnknownKey { .. })), "{e:?}");
    assert_eq!(mock.jwks_hits.load(Ordering::SeqCst), 2);
    // The withdrawn k1 no longer verifies.
    let e = c.validate_id_token(&id_token(&k1, &base, "n"), Some("n")).await.unwrap_err();
    assert!(matches!(e, OAuthError::IdToken(IdTokenError::UnknownKey { .. })), "{e:?}");
    // After the interval, one more fetch, still unknown; then none again.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(c.validate_id_token(&id_token(&k3, &base, "n"), Some("n")).await.is_err());
    assert!(c.validate_id_token(&id_token(&k3, &base, "n"), Some("n")).await.is_err());
    assert_eq!(mock.jwks_hits.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_jwks_with_odd_keys_still_serves_the_good_one() {
    let (mock, base) = start().await;
    let k1 = rsa_key("k1");
    *mock.keys.lock().unwrap() = vec![
        json!({"kty": "oct", "kid": "k1", "k": "c2VjcmV0"}),
        json!({"kty": "weird", "kid": "x"}),
        json!({"kty": "RSA", "kid": "k1", "use": "enc", "n": k1.jwk["n"], "e": "AQAB"}),
        k1.jwk.clone(),
    ];
    let c = client(&base, |_| {});
    c.validate_id_token(&id_token(&k1, &base, "n"), Some("n")).await.expect("the RS256 signing key is found among the others");
}

#[tokio::test]
async fn authorize_url_carries_pkce_state_nonce_and_exact_redirect() {
    let (_mock, base) = start().await;
    let c = client(&base, |s| s.scopes = vec!["openid".into(), "profile".into()]);
    let req = c.authorize(&[("prompt", "login")]).await.unwrap();
    let url = reqwest::Url::parse(&req.url).unwrap();
    assert!(req.url.starts_with(&format!("{base}/authorize?")));
    let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], "client-1");
    assert_eq!(q["redirect_uri"], "http://127.0.0.1:9/cb");
    assert_eq!(q["scope"], "openid profile");
    assert_eq!(q["state"], req.pending.state);
    assert_eq!(q["nonce"], req.pending.nonce.clone().unwrap());
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["code_challenge"], pkce::challenge_s256(req.pending.code_verifier.as_ref().unwrap()));
    assert_eq!(q["prompt"], "login");
    assert!(!req.url.contains(req.pending.code_verifier.as_ref().unwrap().expose_secret()), "the verifier never leaves");
    assert!(c.authorize(&[("redirect_uri", "https://evil.example")]).await.is_err());
    // Kakao's comma separator (D7), no PKCE when configured off, no nonce without OIDC.
    let c = client(&base, |s| {
        s.oidc = false;
        s.pkce = false;
        s.scopes = vec!["account_email".into(), "gender".into()];
        s.scope_separator = ",".into();
    });
    let req = c.authorize(&[]).await.unwrap();
    let q: std::collections::HashMap<String, String> = reqwest::Url::parse(&req.url).unwrap().query_pairs().into_owned().collect();
    assert_eq!(q["scope"], "account_email,gender");
    assert!(!q.contains_key("code_challenge") && !q.contains_key("nonce"));
    assert!(req.pending.code_verifier.is_none() && req.pending.nonce.is_none());
}

#[tokio::test]
async fn callback_checks_state_iss_and_errors() {
    let (mock, base) = start().await;
    *mock.iss_param.lock().unwrap() = true;
    let c = client(&base, |_| {});
    let pending = c.authorize(&[]).await.unwrap().pending;
    let params = |state: &str, iss: Option<&str>, error: Option<&str>| CallbackParams {
        code: Some(SecretString::from("the-code")),
        state: Some(state.into()),
        iss: iss.map(str::to_string),
        error: error.map(str::to_string),
        error_description: error.map(|_| "User denied access".into()),
    };
    let code = c.callback(&params(&pending.state, Some(&base), None), &pending).await.unwrap();
    assert_eq!(code.expose_secret(), "the-code");
    assert!(matches!(c.callback(&params("other", Some(&base), None), &pending).await, Err(OAuthError::StateMismatch)));
    assert!(matches!(c.callback(&params(&pending.state, Some("https://evil.example"), None), &pending).await, Err(OAuthError::IssuerMismatch)));
    assert!(matches!(c.callback(&params(&pending.state, None, None), &pending).await, Err(OAuthError::MissingIssuer)));
    // A mixed-up error response is refused on its iss before its error is believed.
    assert!(matches!(
        c.callback(&params(&pending.state, Some("https://evil.example"), Some("access_denied")), &pending).await,
        Err(OAuthError::IssuerMismatch)
    ));
    let e = c.callback(&params(&pending.state, Some(&base), Some("access_denied")), &pending).await.unwrap_err();
    assert!(matches!(&e, OAuthError::Authorization { error, .. } if error == "access_denied"), "{e:?}");
    assert_eq!(e.provider_code().as_deref(), Some("access_denied"));
    let no_code = CallbackParams { state: Some(pending.state.clone()), iss: Some(base.clone()), ..Default::default() };
    assert!(matches!(c.callback(&no_code, &pending).await, Err(OAuthError::MissingCode)));
    // Not advertised (Kakao, Naver: D13): a missing iss is fine, a wrong one is still refused.
    *mock.iss_param.lock().unwrap() = false;
    let c = client(&base, |_| {});
    let pending = c.authorize(&[]).await.unwrap().pending;
    c.callback(&params(&pending.state, None, None), &pending).await.expect("no iss, not advertised");
    assert!(matches!(c.callback(&params(&pending.state, Some("https://evil.example"), None), &pending).await, Err(OAuthError::IssuerMismatch)));
}

#[tokio::test]
async fn code_exchange_authenticates_and_validates_the_id_token() {
    let (mock, base) = start().await;
    let key = rsa_key("k1");
    *mock.keys.lock().unwrap() = vec![key.jwk.clone()];
    let c = client(&base, |_| {});
    let pending = c.authorize(&[]).await.unwrap().pending;
    let nonce = pending.nonce.clone().unwrap();
    *mock.token_answer.lock().unwrap() =
        (200, json!({"access_token": "at-1", "refresh_token": "rt-1", "token_type": "Bearer", "expires_in": 3600, "id_token": id_token(&key, &base, &nonce)}));
    let set = c.exchange_code(&SecretString::from("code-1"), &pending).await.unwrap();
    assert_eq!(set.claims.as_ref().unwrap().sub, "u-1");
    assert_eq!(set.grant.scope, "openid", "no scope in the answer: as requested");
    assert!(set.refresh_rotated);
    // client_secret_basic, form-urlencoded before base64 (RFC 6749 §2.3.1).
    let auth = mock.last_auth.lock().unwrap().clone().unwrap();
    let decoded = String::from_utf8(STANDARD.decode(auth.strip_prefix("Basic ").unwrap()).unwrap()).unwrap();
    assert_eq!(decoded, "client-1:s3cret%3A+%26%2B%2F");
    let form: std::collections::HashMap<String, String> = serde_urlencoded::from_str(&mock.last_form.lock().unwrap()).unwrap();
    assert_eq!(form["grant_type"], "authorization_code");
    assert_eq!(form["code"], "code-1");
    assert_eq!(form["redirect_uri"], "http://127.0.0.1:9/cb");
    assert_eq!(form["code_verifier"], pending.code_verifier.as_ref().unwrap().expose_secret());
    assert!(!form.contains_key("client_secret") && !form.contains_key("state"));
    // An ID token with another nonce, or none at all, is refused.
    *mock.token_answer.lock().unwrap() = (200, json!({"access_token": "at-1", "token_type": "Bearer", "id_token": id_token(&key, &base, "replayed")}));
    assert!(matches!(c.exchange_code(&SecretString::from("code-2"), &pending).await, Err(OAuthError::IdToken(IdTokenError::Nonce))));
    *mock.token_answer.lock().unwrap() = (200, json!({"access_token": "at-1", "token_type": "Bearer"}));
    assert!(matches!(c.exchange_code(&SecretString::from("code-3"), &pending).await, Err(OAuthError::Decode(_))));
    // client_secret_post and Naver's state at the token endpoint (D8, D9).
    let c = client(&base, |s| {
        s.client_auth = ClientAuth::ClientSecretPost;
        s.state_in_token_request = true;
        s.oidc = false;
        s.scopes = vec!["read".into()];
    });
    let pending = c.authorize(&[]).await.unwrap().pending;
    *mock.token_answer.lock().unwrap() =
        (200, json!({"access_token": "at-1", "refresh_token": "rt", "token_type": "bearer", "expires_in": "3600", "scope": "read,write"}));
    let set = c.exchange_code(&SecretString::from("code-4"), &pending).await.unwrap();
    assert_eq!((set.grant.expires_in, set.grant.scope.as_str(), set.grant.token_type.as_str()), (Some(3600), "read write", "Bearer"));
    assert!(mock.last_auth.lock().unwrap().is_none());
    let form: std::collections::HashMap<String, String> = serde_urlencoded::from_str(&mock.last_form.lock().unwrap()).unwrap();
    assert_eq!((form["client_id"].as_str(), form["client_secret"].as_str(), form["state"].as_str()), ("client-1", "s3cret: &+/", pending.state.as_str()));
}

#[tokio::test]
async fn refresh_outcomes_for_the_token_manager() {
    let (mock, base) = start().await;
    let c = Arc::new(client(&base, |s| {
        s.oidc = false;
        s.scopes = vec!["read".into()];
    }));
    let refresher = OAuthRefresher(c.clone());
    let old = SecretString::from("rt-old");
    // No new refresh token (Naver always, Kakao outside the last month: D6): the old one is kept.
    *mock.token_answer.lock().unwrap() = (200, json!({"access_token": "at-2", "token_type": "bearer", "expires_in": "3600"}));
    let set = c.refresh(&old, "read write").await.unwrap();
    assert!(!set.refresh_rotated);
    assert_eq!(set.grant.refresh_token.as_ref().unwrap().expose_secret(), "rt-old");
    assert_eq!((set.grant.scope.as_str(), set.grant.refresh_expires_in), ("read write", None));
    let form: std::collections::HashMap<String, String> = serde_urlencoded::from_str(&mock.last_form.lock().unwrap()).unwrap();
    assert_eq!((form["grant_type"].as_str(), form["refresh_token"].as_str()), ("refresh_token", "rt-old"));
    // Rotated (Kakao in the last month, K3.4).
    *mock.token_answer.lock().unwrap() =
        (200, json!({"access_token": "at-3", "refresh_token": "rt-new", "refresh_token_expires_in": 5183999, "expires_in": 21599}));
    let g = refresher.refresh(&old, "read").await.unwrap();
    assert_eq!((g.refresh_token.unwrap().expose_secret(), g.refresh_expires_in), ("rt-new", Some(5183999)));
    // invalid_grant, also on HTTP 200 (D1): the grant is dead, with Kakao's code when given.
    *mock.token_answer.lock().unwrap() =
        (400, json!({"error": "invalid_grant", "error_description": "expired_or_invalid_refresh_token", "error_code": "KOE322"}));
    assert!(matches!(refresher.refresh(&old, "read").await, Err(RefreshError::GrantDead { provider_code }) if provider_code == "KOE322"));
    *mock.token_answer.lock().unwrap() = (200, json!({"error": "invalid_grant"}));
    assert!(matches!(refresher.refresh(&old, "read").await, Err(RefreshError::GrantDead { provider_code }) if provider_code == "invalid_grant"));
    // 5xx: transient, and not retried (the request reached the provider).
    let before = mock.token_hits.load(Ordering::SeqCst);
    *mock.token_answer.lock().unwrap() = (503, json!({"error": "temporarily_unavailable"}));
    assert!(matches!(refresher.refresh(&old, "read").await, Err(RefreshError::Transient { .. })));
    *mock.token_answer.lock().unwrap() = (500, json!("oops"));
    assert!(matches!(refresher.refresh(&old, "read").await, Err(RefreshError::Transient { .. })));
    assert_eq!(mock.token_hits.load(Ordering::SeqCst), before + 2, "one attempt each");
    // invalid_client is our configuration, not the user's grant: transient for the manager.
    *mock.token_answer.lock().unwrap() = (401, json!({"error": "invalid_client", "error_code": "KOE010"}));
    assert!(matches!(refresher.refresh(&old, "read").await, Err(RefreshError::Transient { .. })));
    // A provider slower than the call time-out: Timeout, one attempt.
    let before = mock.token_hits.load(Ordering::SeqCst);
    *mock.token_delay.lock().unwrap() = Duration::from_millis(800);
    assert!(matches!(refresher.refresh(&old, "read").await, Err(RefreshError::Timeout)));
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(mock.token_hits.load(Ordering::SeqCst), before + 1, "a timed-out token call is not retried");
    // Nothing secret in the messages.
    *mock.token_delay.lock().unwrap() = Duration::ZERO;
    *mock.token_answer.lock().unwrap() = (200, json!({"access_token": "at-SECRET", "token_type": "mac"}));
    let e = refresher.refresh(&old, "read").await.err().unwrap();
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains("SECRET") && !shown.contains("rt-old") && !shown.contains("s3cret"), "{shown}");
}

#[tokio::test]
async fn revocation_and_a_provider_without_it() {
    let (_mock, base) = start().await;
    let c = client(&base, |_| {});
    assert_eq!(c.revoke(&SecretString::from("rt"), TokenHint::RefreshToken).await.unwrap(), Revocation::Revoked);
    // Configured without an endpoint and without discovery (Kakao has none, D11).
    let c = client(&base, |s| {
        s.discovery = false;
        s.oidc = false;
        s.scopes = vec!["read".into()];
        s.endpoints.authorize_url = Some(format!("{base}/authorize"));
        s.endpoints.token_url = Some(format!("{base}/token"));
    });
    assert_eq!(c.revoke(&SecretString::from("rt"), TokenHint::RefreshToken).await.unwrap(), Revocation::NotSupported);
    assert!(matches!(c.user_info(&SecretString::from("at"), None).await, Err(OAuthError::NoEndpoint("userinfo"))));
}

#[tokio::test]
async fn discovery_must_name_the_configured_issuer() {
    let (_mock, base) = start().await;
    // The document says http://127.0.0.1:PORT; configured with a trailing slash, it is another
    // issuer.
    let c = client(&format!("{base}/"), |_| {});
    let e = c.authorize(&[]).await.err().unwrap();
    assert!(matches!(&e, OAuthError::Discovery(m) if m.contains("names issuer")), "{e:?}");
}

#[tokio::test]
async fn a_token_call_that_reached_the_provider_is_not_retried_a_read_is() {
    // A provider that accepts the connection and hangs up without answering.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicU64::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut buf).await;
                drop(socket);
            });
        }
    });
    let c = client(&base, |s| {
        s.discovery = false;
        s.oidc = false;
        s.scopes = vec!["read".into()];
        s.endpoints.authorize_url = Some(format!("{base}/authorize"));
        s.endpoints.token_url = Some(format!("{base}/token"));
        s.endpoints.userinfo_url = Some(format!("{base}/me"));
    });
    assert!(matches!(c.refresh(&SecretString::from("rt"), "read").await, Err(OAuthError::Network)));
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "the refresh token may have been spent: one attempt");
    assert!(matches!(
        c.exchange_code(&SecretString::from("code"), &PendingAuthorization { state: "s".into(), code_verifier: None, nonce: None }).await,
        Err(OAuthError::Network)
    ));
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "the code may have been spent: one attempt");
    // A read is retried (3 attempts in all).
    assert!(matches!(c.user_info(&SecretString::from("at"), None).await, Err(OAuthError::Network)));
    assert_eq!(accepted.load(Ordering::SeqCst), 5);
    // Nothing listening at all (the connection is never made): retried, then Network.
    let closed = format!("http://127.0.0.1:{}", {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    });
    let c = client(&closed, |s| {
        s.discovery = false;
        s.oidc = false;
        s.scopes = vec!["read".into()];
        s.endpoints.authorize_url = Some(format!("{closed}/authorize"));
        s.endpoints.token_url = Some(format!("{closed}/token"));
    });
    assert!(matches!(c.refresh(&SecretString::from("rt"), "read").await, Err(OAuthError::Network)));
}
