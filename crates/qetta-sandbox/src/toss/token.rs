//! `POST /token` — client-credentials token of Toss Certification (SPEC B2).
//!
//! The error format of the real token endpoint is unknown (SPEC B2, E8); we answer like a
//! standard OAuth 2.0 server: `{"error": "...", "error_description": "..."}` with 400, or 401
//! for bad client credentials.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use chrono::Duration;
use rsa::pkcs1v15::SigningKey;
use rsa::signature::{SignatureEncoding, Signer};
use serde_json::json;
use sha2::Sha256;

use super::{TossSim, TossToken};
use crate::config::{TOSS_TEST_CLIENT_ID, TOSS_TEST_CLIENT_SECRET};

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (status, Json(json!({ "error": error, "error_description": description }))).into_response()
}

pub async fn token(State(sim): State<Arc<TossSim>>, headers: HeaderMap, body: Bytes) -> Response {
    let resp = issue(&sim, &headers, &body);
    if resp.status().is_success() {
        sim.stats.issued("client_credentials");
    } else {
        sim.stats.refused("client_credentials");
    }
    resp
}

fn issue(sim: &TossSim, headers: &HeaderMap, body: &[u8]) -> Response {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
    let pairs: Option<Vec<(String, String)>> = if is_form { std::str::from_utf8(body).ok().and_then(|s| serde_urlencoded::from_str(s).ok()) } else { None };
    let Some(pairs) = pairs else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "form-encoded body required");
    };
    let get = |k: &str| pairs.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty());
    let (Some(grant_type), Some(client_id), Some(client_secret), Some(scope)) = (get("grant_type"), get("client_id"), get("client_secret"), get("scope"))
    else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "grant_type, client_id, client_secret and scope are required");
    };
    if grant_type != "client_credentials" {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "only client_credentials is supported");
    }
    let known = (client_id == sim.config.client_id && client_secret == sim.config.client_secret)
        || (client_id == TOSS_TEST_CLIENT_ID && client_secret == TOSS_TEST_CLIENT_SECRET);
    if !known {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication failed");
    }
    if scope != "ca" {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", "scope must be ca");
    }
    let now = sim.clock.now();
    let exp = now + Duration::seconds(sim.config.token_ttl_secs);
    let access_token = jwt(sim, client_id, now.timestamp(), exp.timestamp());
    let mut st = sim.state();
    if st.tokens.len() > 100_000 {
        // Keep memory bounded under load tests.
        st.tokens.retain(|_, t| t.expires_at > now && !t.force_expired);
    }
    st.tokens.insert(access_token.clone(), TossToken { expires_at: exp, force_expired: false });
    drop(st);
    Json(json!({
        "access_token": access_token,
        "scope": "ca",
        "token_type": "Bearer",
        "expires_in": sim.config.token_ttl_secs,
    }))
    .into_response()
}

/// RS256 JWT shaped like Toss's (SPEC B2), signed with the sandbox key.
fn jwt(sim: &TossSim, client_id: &str, iat: i64, exp: i64) -> String {
    let header = B64URL.encode(br#"{"kid":"cert","alg":"RS256"}"#);
    let claims = json!({
        "sub": client_id,
        "aud": client_id,
        "nbf": iat,
        "scope": ["ca"],
        "iss": "https://cert.toss.im",
        "exp": exp,
        "iat": iat,
        "jti": uuid::Uuid::new_v4().to_string(),
    });
    let input = format!("{header}.{}", B64URL.encode(claims.to_string()));
    let key = SigningKey::<Sha256>::new(sim.keys.private_key().clone());
    let sig = key.sign(input.as_bytes()).to_bytes();
    format!("{input}.{}", B64URL.encode(sig))
}

/// Bearer check of the API calls: unknown, expired or force-expired → 401 CE1000.
pub(crate) fn authenticate(sim: &TossSim, headers: &HeaderMap) -> Result<(), super::TossError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' ').filter(|(s, _)| s.eq_ignore_ascii_case("bearer")).map(|(_, t)| t.trim()))
        .filter(|t| !t.is_empty())
        .ok_or_else(super::TossError::invalid_token)?;
    let now = sim.clock.now();
    let st = sim.state();
    match st.tokens.get(token) {
        Some(t) if !t.force_expired && t.expires_at > now => Ok(()),
        _ => Err(super::TossError::invalid_token()),
    }
}
