//! The generic OAuth 2.0 / OpenID Connect client against an independent, certified OpenID
//! Provider: panva's `oidc-provider` (Node.js), run on loopback from
//! `crates/qetta/tests/peers/oidc-provider` (install: `npm ci --prefix crates/qetta/tests/peers/oidc-provider`).
//! The sign-in and consent pages are the provider's development interactions, driven over HTTP
//! with a cookie jar, as a browser would.
//!
//! Without `node` or the installed package the tests print `skipped: …`, except under CI
//! (`CI=true` or `QETTA_TEST_REQUIRE_SERVICES`), where they fail.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use qetta::providers::oauth2::{
    CallbackParams, IdTokenError, OAuthClient, OAuthError, OAuthRefresher, OAuthSettings, PendingAuthorization, Revocation, TokenHint,
};
use qetta::providers::upstream::{http_client, BreakerPolicy};
use qetta::tokens::{RefreshError, Refresher};
use secrecy::{ExposeSecret, SecretString};
use tokio::process::{Child, Command};

const RS_CLIENT: (&str, &str) = ("qetta-rs", "peer secret: with/special+chars");
const ES_CLIENT: (&str, &str) = ("qetta-es", "peer-secret-es-0123456789");

/// Skipped outside CI, failed under it.
fn unavailable<T>(what: &str) -> Option<T> {
    crate::support::unavailable(&format!("the certified OpenID Provider test needs {what} (npm ci --prefix crates/qetta/tests/peers/oidc-provider)"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port").local_addr().unwrap().port()
}

/// The provider process (killed when dropped).
struct Peer {
    _child: Child,
    issuer: String,
    redirect: String,
}

impl Peer {
    async fn start() -> Option<Peer> {
        // Nothing listens there: the test reads the redirect's Location, as the connection core's
        // callback route would receive it.
        Self::start_for(&format!("http://127.0.0.1:{}/callback", free_port())).await
    }

    /// The provider with `redirect` as its confidential clients' redirect URI.
    async fn start_for(redirect: &str) -> Option<Peer> {
        let redirect = redirect.to_string();
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/oidc-provider");
        let node = std::env::var("QETTA_NODE").unwrap_or_else(|_| "node".into());
        let version = std::process::Command::new(&node).arg("--version").output();
        if !version.is_ok_and(|o| o.status.success()) {
            return unavailable("node");
        }
        if !dir.join("node_modules/oidc-provider/package.json").is_file() {
            return unavailable("the oidc-provider package");
        }
        let port = free_port();
        // The provider's start-up warnings (development adapter and interactions, by design here)
        // and any server_error go to a log file rather than the test output.
        let log_path = std::env::temp_dir().join(format!("qetta-oidc-peer-{port}.log"));
        let log = std::fs::File::create(&log_path).expect("peer log file");
        let child = Command::new(&node)
            .arg("server.mjs")
            .current_dir(&dir)
            .env("OIDC_PEER_PORT", port.to_string())
            .env("OIDC_PEER_REDIRECT", &redirect)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("start the OpenID Provider");
        let issuer = format!("http://127.0.0.1:{port}");
        let probe = reqwest::Client::new();
        // Generous: node loads the package and makes an RSA key first, which took over 30 s once
        // on a 2-core machine busy with a release build beside the test run.
        let ready = Instant::now() + Duration::from_secs(90);
        loop {
            let ok = probe.get(format!("{issuer}/.well-known/openid-configuration")).send().await.is_ok_and(|r| r.status().is_success());
            if ok {
                break;
            }
            assert!(Instant::now() < ready, "the OpenID Provider did not start on port {port}; see {}", log_path.display());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Some(Peer { _child: child, issuer, redirect })
    }

    fn client(&self, (id, secret): (&str, &str), f: impl FnOnce(&mut OAuthSettings)) -> OAuthClient {
        let mut s = OAuthSettings::discovered("oidc-peer", &self.issuer, id, Some(SecretString::from(secret)), &self.redirect);
        s.scopes = vec!["openid".into(), "profile".into(), "email".into()];
        f(&mut s);
        OAuthClient::new(s, http_client(Duration::from_secs(10)), Duration::from_secs(10), BreakerPolicy::default()).expect("valid settings")
    }
}

/// A browser: cookies kept, redirects read rather than followed.
fn browser() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// How the user answers the provider's pages.
#[derive(Clone, Copy)]
enum User<'a> {
    SignsInAndConsents(&'a str),
    Aborts,
}

/// Follows the authorize URL through the provider's sign-in and consent pages until it
/// redirects to our redirect URI; returns that redirect's query.
async fn drive(authorize_url: &str, redirect: &str, user: User<'_>) -> CallbackParams {
    let url = drive_to(authorize_url, redirect, user).await;
    serde_urlencoded::from_str(url.query().unwrap_or("")).expect("callback query")
}

/// [`drive`], answering the whole redirect URL.
async fn drive_to(authorize_url: &str, redirect: &str, user: User<'_>) -> reqwest::Url {
    let browser = browser();
    let mut url = reqwest::Url::parse(authorize_url).unwrap();
    let mut response = browser.get(url.clone()).send().await.expect("authorize");
    for _ in 0..12 {
        if response.status().is_redirection() {
            let location = response.headers()["location"].to_str().unwrap().to_string();
            let next = url.join(&location).unwrap();
            if next.as_str().starts_with(redirect) {
                return next;
            }
            url = next;
            response = browser.get(url.clone()).send().await.expect("follow");
            continue;
        }
        let status = response.status();
        let page = response.text().await.unwrap();
        assert!(status.is_success(), "{status} at {url}: {page}");
        assert!(url.path().starts_with("/interaction/"), "unexpected page {url}: {page}");
        response = match user {
            User::Aborts => browser.get(format!("{}/abort", url.as_str().trim_end_matches('/'))).send().await.unwrap(),
            User::SignsInAndConsents(login) if page.contains(r#"name="prompt" value="login""#) => {
                browser.post(url.clone()).form(&[("prompt", "login"), ("login", login), ("password", "anything")]).send().await.unwrap()
            }
            User::SignsInAndConsents(_) if page.contains(r#"name="prompt" value="consent""#) => {
                browser.post(url.clone()).form(&[("prompt", "consent")]).send().await.unwrap()
            }
            User::SignsInAndConsents(_) => panic!("an interaction page the test does not know: {page}"),
        };
    }
    panic!("no redirect to {redirect} after 12 steps");
}

/// A completed authorization: the callback and what was stored with the state.
async fn authorize(peer: &Peer, client: &OAuthClient, login: &str) -> (CallbackParams, PendingAuthorization) {
    let req = client.authorize(&[]).await.expect("authorize URL");
    let params = drive(&req.url, &peer.redirect, User::SignsInAndConsents(login)).await;
    (params, req.pending)
}

fn refresh_token(t: &qetta::providers::oauth2::TokenSet) -> SecretString {
    t.grant.refresh_token.clone().expect("a refresh token")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certified_op_code_flow_refresh_rotation_userinfo_and_revocation() {
    let Some(peer) = Peer::start().await else { return };
    let client = peer.client(RS_CLIENT, |_| {});

    // Discovery: the issuer matches, PKCE S256 and the RFC 9207 iss parameter are advertised.
    let p = client.provider().await.expect("discovery");
    assert!(p.pkce_s256, "S256 advertised");
    assert!(p.iss_parameter_required, "authorization_response_iss_parameter_supported");
    assert_eq!(p.revocation_url.as_deref(), Some(format!("{}/token/revocation", peer.issuer).as_str()));

    // Authorize URL → sign-in → consent → callback with code, state and iss.
    let (params, pending) = authorize(&peer, &client, "alice").await;
    assert_eq!(params.iss.as_deref(), Some(peer.issuer.as_str()));
    assert!(pending.code_verifier.is_some() && pending.nonce.is_some());
    let code = client.callback(&params, &pending).await.expect("callback accepted");

    // Code exchange with PKCE (the OP requires it) and client_secret_basic; ID token validated.
    let tokens = client.exchange_code(&code, &pending).await.expect("code exchange");
    let claims = tokens.claims.as_ref().expect("validated ID token");
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.nonce.as_deref(), pending.nonce.as_deref());
    assert!(tokens.refresh_rotated && tokens.grant.refresh_token.is_some());
    assert_eq!(tokens.grant.token_type, "Bearer");
    assert!(tokens.grant.expires_in.is_some_and(|e| e > 0 && e <= 600));
    assert!(tokens.grant.scope.split(' ').any(|s| s == "openid"), "{}", tokens.grant.scope);
    assert_eq!(client.jwks_fetch_count().await, 1);

    // UserInfo: the same subject as the ID token, with a label.
    let me = client.user_info(&tokens.grant.access_token, Some(&claims.sub)).await.expect("userinfo");
    assert_eq!(me.subject, "alice");
    assert_eq!(me.label.as_deref(), Some("Peer User alice"));

    // Refresh with rotation: each refresh returns a new refresh token.
    let rt0 = refresh_token(&tokens);
    let r1 = client.refresh(&rt0, &tokens.grant.scope).await.expect("first refresh");
    assert!(r1.refresh_rotated);
    let rt1 = refresh_token(&r1);
    assert_ne!(rt1.expose_secret(), rt0.expose_secret());
    let r2 = client.refresh(&rt1, &r1.grant.scope).await.expect("second refresh with the rotated token");
    let rt2 = refresh_token(&r2);
    client.user_info(&r2.grant.access_token, Some("alice")).await.expect("the refreshed access token works");
    if let Some(c) = &r2.claims {
        assert_eq!(c.sub, "alice", "a refreshed ID token names the same user");
    }

    // The rotated-out refresh token is refused: through the token manager's trait, a dead grant.
    let refresher = OAuthRefresher(std::sync::Arc::new(peer.client(RS_CLIENT, |_| {})));
    match refresher.refresh(&rt0, "openid").await {
        Err(RefreshError::GrantDead { provider_code }) => assert_eq!(provider_code, "invalid_grant"),
        Err(e) => panic!("expected a dead grant, got {e:?}"),
        Ok(_) => panic!("a rotated-out refresh token was accepted"),
    }
    // The OP treats that reuse as theft and revokes the whole grant: the newest token dies too.
    assert!(matches!(client.refresh(&rt2, "openid").await, Err(OAuthError::InvalidGrant { .. })));

    // Revocation (RFC 7009) of an access token: it stops working. This OP also revokes the
    // grant's refresh token with it (RFC 7009 §2.1 allows either), which the refresh reports as
    // a dead grant.
    let (params, pending) = authorize(&peer, &client, "bob").await;
    let code = client.callback(&params, &pending).await.unwrap();
    let tokens = client.exchange_code(&code, &pending).await.unwrap();
    client.user_info(&tokens.grant.access_token, None).await.expect("works before revocation");
    assert_eq!(client.revoke(&tokens.grant.access_token, TokenHint::AccessToken).await.unwrap(), Revocation::Revoked);
    let e = client.user_info(&tokens.grant.access_token, None).await.unwrap_err();
    assert!(matches!(e, OAuthError::InvalidToken { .. }), "revoked access token: {e:?}");
    assert!(matches!(refresher.refresh(&refresh_token(&tokens), "openid").await, Err(RefreshError::GrantDead { .. })));

    // Revocation of a refresh token (what a disconnect does): refresh refused, and the grant's
    // access token dies with it.
    let (params, pending) = authorize(&peer, &client, "carol").await;
    let code = client.callback(&params, &pending).await.unwrap();
    let tokens = client.exchange_code(&code, &pending).await.unwrap();
    let rt = refresh_token(&tokens);
    assert_eq!(client.revoke(&rt, TokenHint::RefreshToken).await.unwrap(), Revocation::Revoked);
    assert!(matches!(refresher.refresh(&rt, "openid").await, Err(RefreshError::GrantDead { .. })), "revoked refresh token");
    assert!(matches!(client.user_info(&tokens.grant.access_token, None).await, Err(OAuthError::InvalidToken { .. })));
    // Revoking again (an unknown token now) is still 200 (RFC 7009 §2.2).
    assert_eq!(client.revoke(&rt, TokenHint::RefreshToken).await.unwrap(), Revocation::Revoked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certified_op_es256_id_tokens_and_client_secret_post() {
    let Some(peer) = Peer::start().await else { return };
    let client = peer.client(ES_CLIENT, |s| s.client_auth = qetta::providers::oauth2::ClientAuth::ClientSecretPost);
    let (params, pending) = authorize(&peer, &client, "chul-soo").await;
    let code = client.callback(&params, &pending).await.unwrap();
    let tokens = client.exchange_code(&code, &pending).await.expect("exchange with client_secret_post");
    let raw = tokens.id_token.as_ref().unwrap().expose_secret().to_string();
    let header: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(raw.split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!(header["alg"], "ES256");
    assert_eq!(tokens.claims.unwrap().sub, "chul-soo");
    // A wrong client secret: the OP refuses the exchange, mapped to the typed client error.
    let wrong = peer.client(("qetta-es", "not-the-secret"), |s| s.client_auth = qetta::providers::oauth2::ClientAuth::ClientSecretPost);
    let (params, pending) = authorize(&peer, &wrong, "chul-soo").await;
    let code = wrong.callback(&params, &pending).await.unwrap();
    let e = wrong.exchange_code(&code, &pending).await.err().expect("wrong secret refused");
    assert!(matches!(e, OAuthError::InvalidClient { .. }), "{e:?}");
    assert!(!format!("{e} {e:?}").contains("not-the-secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certified_op_refusals() {
    let Some(peer) = Peer::start().await else { return };
    let client = peer.client(RS_CLIENT, |_| {});

    // The user cancels: access_denied, typed (after the iss check).
    let req = client.authorize(&[]).await.unwrap();
    let params = drive(&req.url, &peer.redirect, User::Aborts).await;
    let e = client.callback(&params, &req.pending).await.unwrap_err();
    assert!(matches!(&e, OAuthError::Authorization { error, .. } if error == "access_denied"), "{e:?}");

    // A callback naming another issuer (mix-up), or lacking the advertised iss, is refused; so
    // is one with another state.
    let (params, pending) = authorize(&peer, &client, "alice").await;
    let mut mixed = CallbackParams { code: params.code.clone(), state: params.state.clone(), iss: Some("http://127.0.0.1:1".into()), ..Default::default() };
    assert!(matches!(client.callback(&mixed, &pending).await, Err(OAuthError::IssuerMismatch)));
    mixed.iss = None;
    assert!(matches!(client.callback(&mixed, &pending).await, Err(OAuthError::MissingIssuer)));
    mixed.iss = params.iss.clone();
    mixed.state = Some("someone-elses-state".into());
    assert!(matches!(client.callback(&mixed, &pending).await, Err(OAuthError::StateMismatch)));

    // A wrong PKCE verifier: the OP refuses the code (typed invalid_grant).
    let code = client.callback(&params, &pending).await.unwrap();
    let wrong_verifier = PendingAuthorization { code_verifier: Some(SecretString::from("x".repeat(64))), ..pending.clone() };
    let e = client.exchange_code(&code, &wrong_verifier).await.err().expect("wrong verifier refused");
    assert!(matches!(e, OAuthError::InvalidGrant { .. }), "{e:?}");

    // A wrong nonce: the OP issues tokens, our client refuses the ID token.
    let (params, pending) = authorize(&peer, &client, "alice").await;
    let code = client.callback(&params, &pending).await.unwrap();
    let other_nonce = PendingAuthorization { nonce: Some("not-the-nonce-we-sent".into()), ..pending.clone() };
    let e = client.exchange_code(&code, &other_nonce).await.err().expect("wrong nonce refused");
    assert!(matches!(e, OAuthError::IdToken(IdTokenError::Nonce)), "{e:?}");
    // The same code replayed: refused by the OP, mapped to the typed error.
    let e = client.exchange_code(&code, &pending).await.err().expect("replayed code refused");
    assert!(matches!(e, OAuthError::InvalidGrant { .. }), "{e:?}");
    assert_eq!(e.provider_code().as_deref(), Some("invalid_grant"));

    // A genuine ID token, then forgeries of it.
    let (params, pending) = authorize(&peer, &client, "alice").await;
    let code = client.callback(&params, &pending).await.unwrap();
    let tokens = client.exchange_code(&code, &pending).await.unwrap();
    let genuine = tokens.id_token.unwrap().expose_secret().to_string();
    let nonce = pending.nonce.as_deref();
    client.validate_id_token(&genuine, nonce).await.expect("the genuine one");
    let parts: Vec<&str> = genuine.split('.').collect();
    let header: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let mut payload: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    payload["sub"] = "mallory".into();
    let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).unwrap());
    // 1. The payload swapped under the OP's signature.
    let swapped = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
    assert!(matches!(client.validate_id_token(&swapped, nonce).await, Err(OAuthError::IdToken(IdTokenError::Signature))));
    // 2. Signed by our own key under the OP's kid.
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    h.kid = header["kid"].as_str().map(str::to_string);
    let own = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    let pem = rsa::pkcs1::EncodeRsaPrivateKey::to_pkcs1_pem(&own, rsa::pkcs8::LineEnding::LF).unwrap();
    let resigned = jsonwebtoken::encode(&h, &payload, &jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap()).unwrap();
    assert!(matches!(client.validate_id_token(&resigned, nonce).await, Err(OAuthError::IdToken(IdTokenError::Signature))));
    // 3. alg none, and 4. HS256 keyed with the client secret: refused by algorithm.
    let none = format!("{}.{forged_payload}.", URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#));
    assert!(matches!(client.validate_id_token(&none, nonce).await, Err(OAuthError::IdToken(IdTokenError::Algorithm(a))) if a == "none"));
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &payload,
        &jsonwebtoken::EncodingKey::from_secret(RS_CLIENT.1.as_bytes()),
    )
    .unwrap();
    assert!(matches!(client.validate_id_token(&hs, nonce).await, Err(OAuthError::IdToken(IdTokenError::Algorithm(_)))));
    // 5. A kid the OP never published: one rate-limited JWKS refetch, then refused.
    let fetches = client.jwks_fetch_count().await;
    let mut h = h.clone();
    h.kid = Some("not-a-peer-key".into());
    let unknown = jsonwebtoken::encode(&h, &payload, &jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap()).unwrap();
    assert!(matches!(client.validate_id_token(&unknown, nonce).await, Err(OAuthError::IdToken(IdTokenError::UnknownKey { .. }))));
    assert!(client.jwks_fetch_count().await <= fetches + 1);
    // 6. The genuine token for another client: wrong audience.
    let other = peer.client(ES_CLIENT, |s| s.client_auth = qetta::providers::oauth2::ClientAuth::ClientSecretPost);
    assert!(matches!(other.validate_id_token(&genuine, nonce).await, Err(OAuthError::IdToken(IdTokenError::Audience))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certified_op_through_the_token_manager() {
    use qetta::config::{Config, Sources};
    use qetta::store::{users, Db};
    use qetta::tokens::{TokenError, TokenManager};
    use qetta::vault::{KeyRing, Vault};
    use std::sync::Arc;

    let Some(peer) = Peer::start().await else { return };
    let client = Arc::new(peer.client(RS_CLIENT, |_| {}));
    let (params, pending) = authorize(&peer, &client, "dana").await;
    let code = client.callback(&params, &pending).await.unwrap();
    let tokens = client.exchange_code(&code, &pending).await.unwrap();
    let sub = tokens.claims.as_ref().unwrap().sub.clone();

    // The service's token manager on SQLite, with the generic client as the provider's refresher.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let config = Config::from_sources(&Sources::from_pairs([
        ("QETTA_DATA_DIR", dir.path().display().to_string()),
        ("DATABASE_URL", url.clone()),
        ("JWT_SECRET", crate::support::JWT_SECRET.to_string()),
        ("QETTA_ENCRYPTION_KEYS", crate::support::ENCRYPTION_KEYS.to_string()),
        ("QETTA_REFRESH_MARGIN_SECS", "900".to_string()),
    ]))
    .unwrap();
    let db = Db::connect(&url, config.database_kind).await.unwrap();
    db.migrate().await.unwrap();
    let now = chrono::Utc::now().timestamp();
    let user = users::create(&db, "dana@example.com", "not-a-hash", now).await.unwrap();
    let vault = Vault::new(KeyRing::parse(crate::support::ENCRYPTION_KEYS).unwrap());
    let mut manager = TokenManager::new(db, vault, Arc::new(qetta::clock::SystemClock), config.tokens.clone());
    manager.register("oidc-peer", Arc::new(OAuthRefresher(client.clone())));
    let link = qetta::tokens::Link {
        user_id: &user.id,
        provider: "oidc-peer",
        account_id: &sub,
        account_display: None,
        label: None,
        metadata: None,
        grant: &tokens.grant,
    };
    let entry = qetta::store::audit::NewEntry::user_action(Some(&user.id), "oidc-peer", None, "callback", "connected", None, serde_json::json!({}));
    let linked = manager.link(&link, entry).await.unwrap();
    assert!(linked.created);

    // The OP's access tokens live 600 s, within the 900 s margin: the first use refreshes.
    let first = manager.access_token(linked.connection).await.expect("refreshed through the OP");
    assert_ne!(first.token.expose_secret(), tokens.grant.access_token.expose_secret());
    client.user_info(&first.token, Some(&sub)).await.expect("the refreshed token works");
    // Rejected by a resource: refreshed again, which only works with the rotated refresh token the
    // manager stored.
    let second = manager.after_rejection(&first).await.expect("second refresh with the stored, rotated refresh token");
    assert!(second.version > first.version);
    assert_eq!(second.provider_user_id.as_deref(), Some(sub.as_str()));
    let third = manager.after_rejection(&second).await.expect("third refresh");
    // The grant is revoked at the OP (this OP revokes the refresh token with the access token):
    // the next refresh finds it dead and the connection needs consent again.
    client.revoke(&third.token, TokenHint::AccessToken).await.unwrap();
    match manager.after_rejection(&third).await {
        Err(TokenError::ReauthRequired) => {}
        Err(e) => panic!("expected re-consent, got {e:?}"),
        Ok(_) => panic!("a revoked grant refreshed"),
    }
}

/// Through the service: authorize, launch, the OP's pages as `login`; the browser (holding the
/// binding cookie) and the URL the OP sends it back to.
async fn connect_via(app: &crate::support::TestApp, token: &str, issuer: &str, callback: &str, login: &str) -> (reqwest::Client, reqwest::Url) {
    let browser = app.browser();
    let launch = app.authorize_at(&browser, token, "acme", serde_json::json!({"label": "work"})).await;
    let r = browser.get(&launch).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let at_op = r.headers()["location"].to_str().unwrap().to_string();
    assert!(at_op.starts_with(issuer) && at_op.contains("code_challenge_method=S256") && at_op.contains("nonce="), "{at_op}");
    let back = drive_to(&at_op, callback, User::SignsInAndConsents(login)).await;
    (browser, back)
}

/// The service itself, with the certified OP as a provider of its TOML catalogue (the README's
/// "adding a provider" example): connect through the service's routes (PKCE, state, iss, nonce
/// and the ID token checked by the service), refresh twice with rotation, the proxy, a forged
/// state refused, and the disconnect revoking the grant at the OP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_connects_a_catalogue_provider_backed_by_the_certified_op() {
    let port = free_port();
    let callback = format!("http://127.0.0.1:{port}/api/v1/oauth/acme/callback");
    let Some(peer) = Peer::start_for(&callback).await else { return };
    let files = tempfile::tempdir().unwrap();
    let secret_file = files.path().join("acme-secret");
    std::fs::write(&secret_file, format!("{}\n", RS_CLIENT.1)).unwrap();
    let catalogue = files.path().join("providers.toml");
    std::fs::write(
        &catalogue,
        format!(
            "[providers.acme]\ndisplay_name = \"Acme ID\"\nissuer = \"{issuer}\"\napi_base = \"{issuer}\"\nclient_id = \"{id}\"\n\
             client_secret_file = \"{secret}\"\nclient_auth = \"client_secret_basic\"\nscopes = [\"openid\", \"profile\", \"email\"]\npkce = true\n",
            issuer = peer.issuer,
            id = RS_CLIENT.0,
            secret = secret_file.display()
        ),
    )
    .unwrap();
    let service_key = "backend-service-key-for-tests-0123456789";
    let app = crate::support::Spawn::new(crate::support::Backend::Sqlite)
        .var("PORT", &port.to_string())
        .var("QETTA_PROVIDERS_FILE", &catalogue.display().to_string())
        .var("QETTA_SERVICE_KEY", service_key)
        .start()
        .await;
    let (token, _) = app.register("alice@example.com").await;

    // A configured provider turns the sandbox off: the catalogue says what is usable here.
    let providers: serde_json::Value = app.get("/api/v1/providers", Some(&token)).await.json().await.unwrap();
    let acme = providers["providers"].as_array().unwrap().iter().find(|p| p["name"] == "acme").expect("acme listed").clone();
    assert_eq!((acme["kind"].as_str(), acme["configured"].as_bool(), acme["sandbox"].as_bool()), (Some("oidc"), Some(true), Some(false)), "{acme}");

    // A forged state is refused before the code is looked at; nothing is stored.
    let (browser, back) = connect_via(&app, &token, &peer.issuer, &callback, "alice").await;
    let forged: String = back.as_str().replace("state=", "state=x");
    let r = app.callback_at(&browser, &forged).await;
    assert!(!r.ok && r.code.starts_with("state_"), "{r:?}");
    assert!(app.connections(&token).await.is_empty());

    let (browser, back) = connect_via(&app, &token, &peer.issuer, &callback, "alice").await;
    let done = app.callback_at(&browser, back.as_str()).await;
    assert!(done.ok && done.code == "connected", "{done:?}");
    let list = app.connections(&token).await;
    assert_eq!(list.len(), 1);
    let id = list[0]["id"].as_str().unwrap().to_string();
    assert_eq!((list[0]["provider"].as_str(), list[0]["label"].as_str()), (Some("acme"), Some("work")));

    // Refresh twice: the OP rotates refresh tokens, so the second works only with the stored one.
    let backend = |m: reqwest::Method, path: String| app.client.request(m, app.url(&path)).bearer_auth(&token).header("x-qetta-service-key", service_key);
    for _ in 0..2 {
        let r = backend(reqwest::Method::POST, format!("/api/v1/connections/{id}/refresh")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    }
    // The proxy: the OP's UserInfo (`/me`) with the connection's token.
    let me = app.get(&format!("/api/v1/connections/{id}/proxy/me"), Some(&token)).await;
    assert_eq!(me.status(), 200);
    assert_eq!(me.json::<serde_json::Value>().await.unwrap()["sub"], "alice");

    // Disconnect: RFC 7009 at the OP, after which the stored grant is dead there.
    let conn = qetta::store::connections::get_by_id(&app.state.db, &id).await.unwrap().unwrap();
    let stored_refresh = app.state.vault.open_string(conn.refresh_token.as_deref().unwrap(), qetta::tokens::aad(&conn, "refresh_token")).unwrap();
    let gone: serde_json::Value =
        app.client.delete(app.url(&format!("/api/v1/connections/{id}"))).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!((gone["revocation"]["ok"].as_bool(), gone["revocation"]["method"].as_str()), (Some(true), Some("rfc7009")), "{gone}");
    let client = peer.client(RS_CLIENT, |_| {});
    assert!(matches!(client.refresh(&stored_refresh, "openid").await, Err(OAuthError::InvalidGrant { .. })), "the revoked grant is refused by the OP");
    assert!(app.connections(&token).await.is_empty());
}
