//! Two independent readings of docs/oauth-providers.md checked against each other: the generic OAuth 2.0
//! / OpenID Connect client (Kakao and Naver presets, re-pointed from the real hosts to the embedded
//! sandbox) against the sandbox's Kakao and Naver simulators. Neither shares a type with the other.

use qetta::providers::oauth2::{CallbackParams, OAuthClient, OAuthSettings};
use qetta::providers::upstream::{http_client, BreakerPolicy};
use secrecy::SecretString;
use std::time::Duration;

use crate::support::{spawn, Backend, TestApp};

/// Follows the simulator's authorize page for `sandbox_user` (its scripted consent) and returns
/// the callback parameters.
async fn consent(app: &TestApp, authorize_url: &str, user: &str) -> CallbackParams {
    let r = app.client.get(format!("{authorize_url}&sandbox_user={user}&sandbox_consent=approve")).send().await.unwrap();
    assert!(r.status().is_redirection(), "consent redirects: {} {}", r.status(), r.text().await.unwrap_or_default());
    let location = reqwest::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let query: std::collections::HashMap<String, String> = location.query_pairs().into_owned().collect();
    CallbackParams {
        code: query.get("code").cloned().map(SecretString::from),
        state: query.get("state").cloned(),
        iss: query.get("iss").cloned(),
        error: query.get("error").cloned(),
        error_description: query.get("error_description").cloned(),
    }
}

fn client(settings: OAuthSettings) -> OAuthClient {
    OAuthClient::new(settings, http_client(Duration::from_secs(5)), Duration::from_secs(5), BreakerPolicy::default()).expect("valid settings")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generic_client_and_the_kakao_simulator_agree() {
    let app = spawn(Backend::Sqlite).await;
    let base = app.url("/sandbox/kakao");
    let mut settings = OAuthSettings::kakao(
        qetta_sandbox::config::DEFAULT_KAKAO_CLIENT_ID,
        Some(SecretString::from(qetta_sandbox::config::DEFAULT_KAKAO_CLIENT_SECRET)),
        qetta_sandbox::config::DEFAULT_KAKAO_REDIRECT_URI,
    );
    settings.issuer = Some(base.clone());
    settings.endpoints.userinfo_url = Some(format!("{base}/v2/user/me"));
    let kakao = client(settings);

    let request = kakao.authorize(&[]).await.expect("discovery and an authorize URL");
    assert!(request.url.starts_with(&format!("{base}/oauth/authorize?")) && request.url.contains("code_challenge_method=S256"), "{}", request.url);
    let params = consent(&app, &request.url, "kim").await;
    let code = kakao.callback(&params, &request.pending).await.expect("state and iss accepted");
    let tokens = kakao.exchange_code(&code, &request.pending).await.expect("code exchange with PKCE");
    let claims = tokens.claims.as_ref().expect("a validated ID token");
    assert!(tokens.grant.refresh_token.is_some());
    let me = kakao.user_info(&tokens.grant.access_token, Some(&claims.sub)).await.expect("the Kakao profile");
    assert_eq!(me.subject, claims.sub, "the profile's id is the ID token's subject");

    // Far from expiry Kakao answers no new refresh token (K3.4): the old one stays.
    let refreshed = kakao.refresh(tokens.grant.refresh_token.as_ref().unwrap(), "").await.expect("refresh");
    assert!(!refreshed.refresh_rotated);
    assert!(refreshed.grant.refresh_token.is_some(), "the old refresh token is kept");

    // The same code a second time is refused, and reported as a dead grant.
    let again = kakao.exchange_code(&code, &request.pending).await.err().expect("a spent code");
    assert!(again.to_string().contains("KOE320") || format!("{again:?}").contains("InvalidGrant"), "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generic_client_and_the_naver_simulator_agree() {
    let app = spawn(Backend::Sqlite).await;
    let base = app.url("/sandbox/naver");
    let mut settings = OAuthSettings::naver(
        qetta_sandbox::config::DEFAULT_NAVER_CLIENT_ID,
        SecretString::from(qetta_sandbox::config::DEFAULT_NAVER_CLIENT_SECRET),
        qetta_sandbox::config::DEFAULT_NAVER_REDIRECT_URI,
    );
    settings.issuer = Some(base.clone());
    settings.endpoints.revocation_url = Some(format!("{base}/oauth2.0/revoke"));
    settings.endpoints.userinfo_url = Some(format!("{base}/v1/nid/me"));
    let naver = client(settings);

    let request = naver.authorize(&[]).await.expect("discovery and an authorize URL");
    let params = consent(&app, &request.url, "lee").await;
    let code = naver.callback(&params, &request.pending).await.expect("state accepted");
    let tokens = naver.exchange_code(&code, &request.pending).await.expect("code exchange (state repeated, D9)");
    let claims = tokens.claims.as_ref().expect("a validated ID token");
    let me = naver.user_info(&tokens.grant.access_token, Some(&claims.sub)).await.expect("the Naver profile envelope");
    assert!(!me.subject.is_empty());
    assert!(tokens.grant.expires_in.is_some_and(|e| e > 0), "expires_in read from a string (D2)");
    let refreshed = naver.refresh(tokens.grant.refresh_token.as_ref().unwrap(), "").await.expect("refresh");
    assert!(!refreshed.refresh_rotated, "Naver never rotates");
}
