//! Kakao kapi endpoints (K4 user info, K5 token info / logout / unlink, K6 OIDC userinfo) and
//! the kauth OIDC documents (discovery, JWKS, `/oauth/tokeninfo`).

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{OriginalUri, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::SecondsFormat;
use serde_json::{json, Map, Value};

use super::{KakaoApiError, KakaoAuthError, KakaoSim};
use crate::oidc::{self, parse_pairs, Pairs};
use crate::social::{self, Person};

/// Profile image URLs (K4): `http` unless `secure_resource=true` (the documented default is
/// false). `.invalid` host: nothing is served there.
pub(crate) fn image_url(sim: &KakaoSim, p: &Person, thumbnail: bool, secure: bool) -> String {
    let scheme = if secure { "https" } else { "http" };
    let kind = if thumbnail { "thumb" } else { "profile" };
    format!("{scheme}://img.kakao-sandbox.invalid/{}/{kind}.jpg", sim.user_id(p.id))
}

/// Who is calling a kapi API.
pub(crate) struct Caller {
    pub user: String,
    pub scopes: BTreeSet<String>,
    /// The bearer token (None for an admin-key call).
    pub token: Option<String>,
}

/// Query + form-body parameters.
fn params(headers: &HeaderMap, query: Option<&str>, body: &Bytes) -> Result<Pairs, KakaoApiError> {
    let mut p = parse_pairs(query.unwrap_or("")).ok_or_else(|| KakaoApiError::new(-2, "invalid parameter"))?;
    if !body.is_empty() {
        p.extend(oidc::form_pairs(headers, body).ok_or_else(|| KakaoApiError::new(-2, "invalid parameter"))?);
    }
    Ok(p)
}

/// Bearer AT, or (K1) `KakaoAK <admin key>` with `target_id_type=user_id&target_id=<id>`.
/// Missing or unknown token → −401 `this access token does not exist`; expired →
/// −401 `this access token is already expired` (K4). Missing header: the facts give no code,
/// −401 too [U].
pub(crate) fn authenticate(sim: &KakaoSim, headers: &HeaderMap, p: &Pairs) -> Result<Caller, KakaoApiError> {
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    if let Some((scheme, key)) = auth.split_once(' ') {
        if scheme == "KakaoAK" {
            if key.trim() != sim.config.admin_key {
                return Err(KakaoApiError::new(-401, "wrong appKey(admin key) type"));
            }
            let get = |k: &str| oidc::single(p, k).ok().flatten();
            if get("target_id_type") != Some("user_id") {
                return Err(KakaoApiError::new(-2, "target_id_type must be user_id"));
            }
            let id = get("target_id").and_then(|v| v.parse::<u64>().ok()).ok_or_else(|| KakaoApiError::new(-2, "invalid target_id"))?;
            let person = sim.person_by_id(id).ok_or_else(|| KakaoApiError::new(-101, "the user is not linked to the app"))?;
            let st = sim.state();
            let link = st.links.get(person.id).ok_or_else(|| KakaoApiError::new(-101, "the user is not linked to the app"))?;
            return Ok(Caller { user: person.id.to_string(), scopes: link.scopes.clone(), token: None });
        }
    }
    let token = oidc::bearer(headers).ok_or_else(KakaoApiError::not_exist)?;
    let now = sim.clock.now();
    let st = sim.state();
    let t = st.access.get(&token).ok_or_else(KakaoApiError::not_exist)?;
    if t.revoked {
        return Err(KakaoApiError::not_exist());
    }
    if t.force_expired || t.expires_at <= now {
        return Err(KakaoApiError::expired());
    }
    Ok(Caller { user: t.user.clone(), scopes: t.scopes.clone(), token: Some(token) })
}

fn kakao_account(sim: &KakaoSim, p: &Person, scopes: &BTreeSet<String>, secure: bool) -> Value {
    let has = |s: &str| scopes.contains(s);
    let mut a = Map::new();
    // K4: every item carries `*_needs_agreement`; values the user did not consent to are absent.
    let nick = has("profile_nickname");
    let img = has("profile_image");
    a.insert("profile_nickname_needs_agreement".into(), json!(!nick));
    a.insert("profile_image_needs_agreement".into(), json!(!img));
    if nick || img {
        let mut profile = Map::new();
        if nick {
            profile.insert("nickname".into(), json!(p.nickname));
        }
        if img {
            profile.insert("thumbnail_image_url".into(), json!(image_url(sim, p, true, secure)));
            profile.insert("profile_image_url".into(), json!(image_url(sim, p, false, secure)));
            profile.insert("is_default_image".into(), json!(false));
        }
        a.insert("profile".into(), Value::Object(profile));
    }
    a.insert("name_needs_agreement".into(), json!(!has("name")));
    if has("name") {
        a.insert("name".into(), json!(p.name));
    }
    a.insert("email_needs_agreement".into(), json!(!has("account_email")));
    if has("account_email") {
        a.insert("is_email_valid".into(), json!(true));
        a.insert("is_email_verified".into(), json!(p.email_verified));
        a.insert("email".into(), json!(p.email));
    }
    let today = crate::clock::SandboxClock::now_kst(&sim.clock);
    a.insert("age_range_needs_agreement".into(), json!(!has("age_range")));
    if has("age_range") {
        let age = p.age(chrono::Datelike::year(&today), &today.format("%m%d").to_string());
        let range = match age {
            0..=9 => "1~9".to_string(),
            10..=14 => "10~14".to_string(),
            15..=19 => "15~19".to_string(),
            90.. => "90~".to_string(),
            n => format!("{0}~{1}", n / 10 * 10, n / 10 * 10 + 9),
        };
        a.insert("age_range".into(), json!(range));
    }
    a.insert("birthyear_needs_agreement".into(), json!(!has("birthyear")));
    if has("birthyear") {
        a.insert("birthyear".into(), json!(p.birthyear));
    }
    a.insert("birthday_needs_agreement".into(), json!(!has("birthday")));
    if has("birthday") {
        a.insert("birthday".into(), json!(p.birthday));
        a.insert("birthday_type".into(), json!("SOLAR"));
    }
    a.insert("gender_needs_agreement".into(), json!(!has("gender")));
    if has("gender") {
        a.insert("gender".into(), json!(p.gender));
    }
    a.insert("phone_number_needs_agreement".into(), json!(!has("phone_number")));
    if has("phone_number") {
        a.insert("phone_number".into(), json!(p.kakao_phone()));
    }
    Value::Object(a)
}

/// `GET|POST /v2/user/me` (K4).
pub async fn user_me(State(sim): State<Arc<KakaoSim>>, headers: HeaderMap, RawQuery(q): RawQuery, body: Bytes) -> Response {
    match user_me_inner(&sim, &headers, q.as_deref(), &body) {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

fn user_me_inner(sim: &KakaoSim, headers: &HeaderMap, q: Option<&str>, body: &Bytes) -> Result<Value, KakaoApiError> {
    let p = params(headers, q, body)?;
    let caller = authenticate(sim, headers, &p)?;
    let get = |k: &str| oidc::single(&p, k).map_err(|d| KakaoApiError::new(-2, format!("duplicated parameter {}", d.0)));
    let secure = match get("secure_resource")? {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(KakaoApiError::new(-2, "secure_resource must be true or false")),
    };
    // K4: property_keys is a JSON array string such as ["kakao_account.email"].
    let keys: Option<Vec<String>> = match get("property_keys")? {
        None => None,
        Some(s) => Some(serde_json::from_str(s).map_err(|_| KakaoApiError::new(-2, "property_keys must be a JSON array of strings"))?),
    };
    let person = social::person(&caller.user).ok_or_else(|| KakaoApiError::new(-103, "the account does not exist"))?;
    let st = sim.state();
    let link = st.links.get(&caller.user).ok_or_else(|| KakaoApiError::new(-101, "the user is not linked to the app"))?;
    let connected_at = link.connected_at.to_rfc3339_opts(SecondsFormat::Secs, true);
    drop(st);
    let mut account = kakao_account(sim, person, &caller.scopes, secure);
    let mut properties = Map::new();
    if caller.scopes.contains("profile_nickname") {
        properties.insert("nickname".into(), json!(person.nickname));
    }
    if caller.scopes.contains("profile_image") {
        properties.insert("profile_image".into(), json!(image_url(sim, person, false, secure)));
        properties.insert("thumbnail_image".into(), json!(image_url(sim, person, true, secure)));
    }
    if let Some(keys) = keys {
        let wanted = |prefix: &str, k: &str| keys.iter().any(|w| w == &format!("{prefix}.{k}") || w == prefix);
        if let Value::Object(a) = &mut account {
            a.retain(|k, _| {
                let base = k.strip_suffix("_needs_agreement").unwrap_or(k);
                let base = match base {
                    "profile_nickname" | "profile_image" => "profile",
                    "is_email_valid" | "is_email_verified" => "email",
                    "birthday_type" => "birthday",
                    b => b,
                };
                wanted("kakao_account", base)
            });
        }
        properties.retain(|k, _| wanted("properties", k));
    }
    // K4: `id` is a Long (serde_json writes the exact integer; clients must not read a double).
    let mut out = json!({ "id": sim.user_id(person.id), "connected_at": connected_at });
    if !properties.is_empty() {
        out["properties"] = Value::Object(properties);
    }
    out["kakao_account"] = account;
    Ok(out)
}

/// `GET /v1/user/access_token_info` (K5): `{"id", "expires_in", "app_id"}`; a token that is not
/// token-shaped → −2 (400), unknown/expired → −401.
pub async fn access_token_info(State(sim): State<Arc<KakaoSim>>, headers: HeaderMap) -> Response {
    if let Some(t) = oidc::bearer(&headers) {
        let shaped = (20..=200).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !shaped {
            return KakaoApiError::new(-2, "invalid token format").into_response();
        }
    }
    let caller = match authenticate(&sim, &headers, &Vec::new()) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let now = sim.clock.now();
    let st = sim.state();
    let remaining = caller.token.as_ref().and_then(|t| st.access.get(t)).map(|t| (t.expires_at - now).num_seconds().max(0)).unwrap_or(0);
    drop(st);
    Json(json!({ "id": sim.user_id(&caller.user), "expires_in": remaining, "app_id": sim.config.app_id })).into_response()
}

/// `POST /v1/user/logout` (K5) → `{"id"}`. With a bearer token: that login session's tokens
/// (the AT and its RT) are revoked (doc: the AT; intro: the user's AT and RT — [U], we revoke
/// the session). With the admin key: all of the user's tokens.
pub async fn logout(State(sim): State<Arc<KakaoSim>>, headers: HeaderMap, RawQuery(q): RawQuery, body: Bytes) -> Response {
    let p = match params(&headers, q.as_deref(), &body) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let caller = match authenticate(&sim, &headers, &p) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let mut st = sim.state();
    match caller.token.as_ref().and_then(|t| st.access.get(t)).map(|t| t.session) {
        Some(session) => st.revoke_session(session),
        None => st.revoke_user(&caller.user),
    }
    drop(st);
    Json(json!({ "id": sim.user_id(&caller.user) })).into_response()
}

/// `POST /v1/user/unlink` (K5) → `{"id"}`: consent removed, every AT/RT of the user revoked.
pub async fn unlink(State(sim): State<Arc<KakaoSim>>, headers: HeaderMap, RawQuery(q): RawQuery, body: Bytes) -> Response {
    let p = match params(&headers, q.as_deref(), &body) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let caller = match authenticate(&sim, &headers, &p) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let mut st = sim.state();
    st.links.remove(&caller.user);
    st.revoke_user(&caller.user);
    drop(st);
    Json(json!({ "id": sim.user_id(&caller.user) })).into_response()
}

/// `GET|POST /v1/oidc/userinfo` (K6): flat claims, `sub` a string. Needs a token of an OIDC
/// login; otherwise −402 with `required_scopes: ["openid"]` [U].
pub async fn oidc_userinfo(State(sim): State<Arc<KakaoSim>>, headers: HeaderMap) -> Response {
    let caller = match authenticate(&sim, &headers, &Vec::new()) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    if !caller.scopes.contains("openid") {
        let mut e = KakaoApiError::new(-402, "insufficient scopes");
        e.extra = Some(json!({ "required_scopes": ["openid"], "api_type": "OIDC_USER_INFO" }));
        return e.into_response();
    }
    let Some(p) = social::person(&caller.user) else {
        return KakaoApiError::new(-103, "the account does not exist").into_response();
    };
    let has = |s: &str| caller.scopes.contains(s);
    let mut out = json!({ "sub": sim.user_id(p.id).to_string() });
    if has("profile_nickname") {
        out["nickname"] = json!(p.nickname);
    }
    if has("profile_image") {
        out["picture"] = json!(image_url(&sim, p, false, true));
    }
    if has("account_email") {
        out["email"] = json!(p.email);
        out["email_verified"] = json!(p.email_verified);
    }
    if has("name") {
        out["name"] = json!(p.name);
    }
    if has("gender") {
        // K6 doc inconsistency: table female/male, sample "MALE". We answer like the sample, so
        // clients must compare case-insensitively.
        out["gender"] = json!(p.gender.to_ascii_uppercase());
    }
    match (has("birthyear"), has("birthday")) {
        (true, true) => out["birthdate"] = json!(format!("{}-{}-{}", p.birthyear, &p.birthday[..2], &p.birthday[2..])),
        (false, true) => out["birthdate"] = json!(format!("0000-{}-{}", &p.birthday[..2], &p.birthday[2..])),
        (true, false) => out["birthdate"] = json!(p.birthyear),
        _ => {}
    }
    if has("phone_number") {
        out["phone_number"] = json!(p.kakao_phone());
        out["phone_number_verified"] = json!(true);
    }
    Json(out).into_response()
}

fn issuer(sim: &KakaoSim, headers: &HeaderMap, original: &Uri, uri: &Uri) -> String {
    sim.config.issuer.clone().unwrap_or_else(|| oidc::base_url(headers, original, uri))
}

/// `GET /.well-known/openid-configuration` (K6): exactly the documented fields, with the
/// sandbox's own URLs. The document is host-level at Kakao, so it is served whatever the app's
/// OIDC switch says.
pub async fn discovery(State(sim): State<Arc<KakaoSim>>, headers: HeaderMap, OriginalUri(original): OriginalUri, uri: Uri) -> Response {
    let base = oidc::base_url(&headers, &original, &uri);
    let iss = issuer(&sim, &headers, &original, &uri);
    Json(json!({
        "issuer": iss,
        "authorization_endpoint": format!("{base}/oauth/authorize"),
        "token_endpoint": format!("{base}/oauth/token"),
        "userinfo_endpoint": format!("{base}/v1/oidc/userinfo"),
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "token_endpoint_auth_methods_supported": ["client_secret_post"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "request_uri_parameter_supported": false,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ["iss", "aud", "sub", "auth_time", "exp", "iat", "nonce", "nickname", "picture", "email"],
    }))
    .into_response()
}

/// `GET /.well-known/jwks.json` (K6).
pub async fn jwks(State(sim): State<Arc<KakaoSim>>) -> Response {
    Json(sim.jwks()).into_response()
}

/// `POST /oauth/tokeninfo` form `id_token=` (K6, debug only): the payload of a valid ID token;
/// otherwise 400 `invalid_token` / KOE400.
pub async fn id_token_info(State(sim): State<Arc<KakaoSim>>, headers: HeaderMap, body: Bytes) -> Response {
    let invalid = |d: &str| KakaoAuthError::new(StatusCode::BAD_REQUEST, "invalid_token", "KOE400", d).into_response();
    let Some(p) = oidc::form_pairs(&headers, &body) else { return invalid("id_token is required") };
    let Ok(Some(token)) = oidc::single(&p, "id_token") else { return invalid("id_token is required") };
    let Some(claims) = sim.keys.verify(token) else { return invalid("invalid id_token") };
    let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
    if exp <= sim.clock.now().timestamp() {
        return invalid("id_token expired");
    }
    if claims.get("aud").and_then(Value::as_str) != Some(sim.config.client_id.as_str()) {
        return invalid("invalid audience");
    }
    Json(claims).into_response()
}
