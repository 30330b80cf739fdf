//! Naver openapi `/v1/nid/me` (N5) and `/v1/nid/verify` (N6), and the OIDC documents (N4).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{OriginalUri, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::NaverSim;
use crate::oidc::{self, parse_pairs};
use crate::social;

/// N5 errors: `{"resultcode", "message"}`.
fn envelope_error(status: StatusCode, code: &str, message: &str) -> Response {
    // Field order of the observed 024 body: message first.
    let mut m = Map::new();
    m.insert("message".into(), json!(message));
    m.insert("resultcode".into(), json!(code));
    (status, Json(Value::Object(m))).into_response()
}

struct Caller {
    user: String,
    token: String,
}

/// Bearer check: no Authorization header → 401 `028`; unknown, revoked or expired → `024` with
/// HTTP 401 (or 200 when `QETTA_SANDBOX_NAVER_AUTH_FAILED_STATUS=200`, E13).
#[allow(clippy::result_large_err)]
fn authenticate(sim: &NaverSim, headers: &HeaderMap) -> Result<Caller, Response> {
    if !headers.contains_key(axum::http::header::AUTHORIZATION) {
        return Err(envelope_error(StatusCode::UNAUTHORIZED, "028", "Authentication header not exists"));
    }
    let failed = || {
        let status = StatusCode::from_u16(sim.config.auth_failed_status).unwrap_or(StatusCode::UNAUTHORIZED);
        // N5 [O]: the real body.
        envelope_error(status, "024", "Authentication failed (인증 실패하였습니다.)")
    };
    let token = oidc::bearer(headers).ok_or_else(failed)?;
    let now = sim.clock.now();
    let st = sim.state();
    match st.access.get(&token) {
        Some(t) if !t.revoked && !t.force_expired && t.expires_at > now => Ok(Caller { user: t.user.clone(), token }),
        _ => Err(failed()),
    }
}

/// `GET|POST /v1/nid/me` (N5): `{"resultcode":"00","message":"success","response":{…}}`; any
/// field but `id` may be missing (declined items are left out).
pub async fn me(State(sim): State<Arc<NaverSim>>, headers: HeaderMap) -> Response {
    let caller = match authenticate(&sim, &headers) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let Some(p) = social::person(&caller.user) else {
        return envelope_error(StatusCode::NOT_FOUND, "404", "not found");
    };
    let today = sim.clock.now_kst();
    let age = p.age(chrono::Datelike::year(&today), &today.format("%m%d").to_string());
    let bucket = if age >= 60 { "60-".to_string() } else { format!("{}-{}", age / 10 * 10, age / 10 * 10 + 9) };
    let mut r = Map::new();
    r.insert("id".into(), json!(sim.user_id(p.id)));
    r.insert("nickname".into(), json!(p.nickname));
    r.insert("name".into(), json!(p.name));
    if p.shares("email") {
        r.insert("email".into(), json!(p.email));
    }
    r.insert("gender".into(), json!(if p.gender == "female" { "F" } else { "M" }));
    r.insert("age".into(), json!(bucket));
    if p.shares("birthday") {
        r.insert("birthday".into(), json!(format!("{}-{}", &p.birthday[..2], &p.birthday[2..])));
        r.insert("birthyear".into(), json!(p.birthyear));
    }
    r.insert("profile_image".into(), json!(format!("https://img.naver-sandbox.invalid/{}/profile.png", sim.user_id(p.id))));
    if p.shares("phone") {
        r.insert("mobile".into(), json!(p.naver_mobile()));
    }
    Json(json!({ "resultcode": "00", "message": "success", "response": Value::Object(r) })).into_response()
}

/// `GET|POST /v1/nid/verify` (N6): `resultcode`/`message`; with `info=true` also
/// `response.token`, `response.expire_date`, `response.allowed_profile`. No client id (it
/// cannot prove the token was issued to you). The `expire_date` format is not given [U]:
/// `yyyy-MM-dd HH:mm:ss` KST.
pub async fn verify(State(sim): State<Arc<NaverSim>>, headers: HeaderMap, RawQuery(q): RawQuery, body: Bytes) -> Response {
    let caller = match authenticate(&sim, &headers) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let mut pairs = parse_pairs(q.as_deref().unwrap_or("")).unwrap_or_default();
    if let Some(b) = oidc::form_pairs(&headers, &body) {
        pairs.extend(b);
    }
    let info = pairs.iter().any(|(k, v)| k == "info" && v == "true");
    if !info {
        return Json(json!({ "resultcode": "00", "message": "success" })).into_response();
    }
    let st = sim.state();
    let expires = st.access.get(&caller.token).map(|t| t.expires_at).unwrap_or_else(|| sim.clock.now());
    drop(st);
    let p = social::person(&caller.user);
    let mut allowed = vec!["id", "nickname", "name", "gender", "age", "profile_image"];
    if p.is_some_and(|p| p.shares("email")) {
        allowed.push("email");
    }
    if p.is_some_and(|p| p.shares("birthday")) {
        allowed.extend(["birthday", "birthyear"]);
    }
    if p.is_some_and(|p| p.shares("phone")) {
        allowed.push("mobile");
    }
    Json(json!({
        "resultcode": "00",
        "message": "success",
        "response": {
            "token": caller.token,
            "expire_date": expires.with_timezone(&crate::clock::kst()).format("%Y-%m-%d %H:%M:%S").to_string(),
            "allowed_profile": allowed.join(","),
        }
    }))
    .into_response()
}

/// `GET /.well-known/openid-configuration` (N4, the observed document) with the sandbox's URLs.
/// `grant_types_supported` is `["authorization_code"]` as observed, although the token endpoint
/// also refreshes (E11).
pub async fn discovery(State(sim): State<Arc<NaverSim>>, headers: HeaderMap, OriginalUri(original): OriginalUri, uri: Uri) -> Response {
    let base = oidc::base_url(&headers, &original, &uri);
    let issuer = sim.config.issuer.clone().unwrap_or_else(|| base.clone());
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{base}/oauth2/authorize"),
        "token_endpoint": format!("{base}/oauth2/token"),
        "jwks_uri": format!("{base}/oauth2/jwks"),
        // D12: Naver's userinfo endpoint is the non-OIDC profile API (envelope, no `sub`).
        "userinfo_endpoint": format!("{base}/v1/nid/me"),
        "response_types_supported": ["code"],
        "scopes_supported": ["openid", "profile"],
        "grant_types_supported": ["authorization_code"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "none"],
        "code_challenge_methods_supported": ["S256"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }))
    .into_response()
}

/// `GET /oauth2/jwks` (N4).
pub async fn jwks(State(sim): State<Arc<NaverSim>>) -> Response {
    Json(sim.keys.jwks()).into_response()
}
