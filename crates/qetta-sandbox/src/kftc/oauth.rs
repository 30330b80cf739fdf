//! `GET|POST /oauth/2.0/authorize` (SPEC A5) and `POST /oauth/2.0/token` (SPEC A6), plus the
//! bearer-token check every `/v2.0` API uses.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::codes::KftcError;
use super::consent_page;
use super::{AccessToken, AuthCode, KftcSim, RefreshToken, Registration, REGISTERED_SCOPES};
use crate::config::AutoConsent;

/// Parameters of an authorize request, in order, duplicates kept.
pub(crate) type Pairs = Vec<(String, String)>;

fn parse_pairs(s: &str) -> Option<Pairs> {
    serde_urlencoded::from_str(s).ok()
}

fn single<'a>(pairs: &'a Pairs, key: &str) -> Result<Option<&'a str>, KftcError> {
    let mut it = pairs.iter().filter(|(k, _)| k == key);
    let first = it.next().map(|(_, v)| v.as_str());
    if it.next().is_some() {
        return Err(KftcError::o0001("3000103")); // duplicated parameter
    }
    Ok(first.filter(|v| !v.is_empty()))
}

pub(crate) fn scope_set(s: &str) -> BTreeSet<String> {
    s.split([' ', '+', ',']).filter(|x| !x.is_empty()).map(str::to_string).collect()
}

/// KFTC answers scopes space-separated, possibly reordered (SPEC A4); we sort them.
pub(crate) fn scope_string(s: &BTreeSet<String>) -> String {
    s.iter().cloned().collect::<Vec<_>>().join(" ")
}

/// A validated authorize request.
pub(crate) struct AuthorizeRequest {
    pub pairs: Pairs,
    pub redirect_uri: String,
    pub scopes: BTreeSet<String>,
    pub state: String,
    pub client_info: Option<String>,
    pub auth_type: String,
    /// `/oauth/2.0/authorize_account` (SPEC A5.2): add accounts for an already linked user.
    pub account_add: bool,
}

/// Errors before the redirect_uri is trusted are shown, not redirected (SPEC A5.3: KFTC shows its
/// own error page for a bad client_id / redirect_uri).
enum AuthorizeFailure {
    Show(KftcError),
    Redirect { redirect_uri: String, state: Option<String>, client_info: Option<String>, err: KftcError, oauth_error: &'static str },
}

#[allow(clippy::result_large_err)]
fn validate(sim: &KftcSim, pairs: Pairs) -> Result<AuthorizeRequest, AuthorizeFailure> {
    let show = AuthorizeFailure::Show;
    let client_id = single(&pairs, "client_id").map_err(show)?.ok_or(show(KftcError::o0001("3000103")))?;
    if client_id != sim.config.client_id {
        return Err(show(KftcError::o0001("3000201")));
    }
    let redirect_uri = single(&pairs, "redirect_uri").map_err(show)?.ok_or(show(KftcError::o0001("3000103")))?;
    if !sim.config.redirect_uris.iter().any(|u| u == redirect_uri) {
        return Err(show(KftcError::o0001("3000114")));
    }
    let redirect_uri = redirect_uri.to_string();
    let state = single(&pairs, "state").ok().flatten().map(str::to_string);
    let client_info = single(&pairs, "client_info").ok().flatten().map(str::to_string);
    let redirect = |err: KftcError, oauth_error: &'static str| AuthorizeFailure::Redirect {
        redirect_uri: redirect_uri.clone(),
        state: state.clone(),
        client_info: client_info.clone(),
        err,
        oauth_error,
    };
    for key in ["response_type", "scope", "state", "auth_type", "client_info"] {
        single(&pairs, key).map_err(|e| redirect(e, "invalid_request"))?;
    }
    match single(&pairs, "response_type").ok().flatten() {
        Some("code") => {}
        None => return Err(redirect(KftcError::o0001("3000103"), "invalid_request")),
        Some(_) => return Err(redirect(KftcError::o0001("3000116"), "unsupported_response_type")),
    }
    let scope = single(&pairs, "scope").ok().flatten().unwrap_or("");
    let scopes = scope_set(scope);
    if scopes.is_empty() {
        return Err(redirect(KftcError::o0001("3000103"), "invalid_request"));
    }
    if scopes.iter().any(|s| !REGISTERED_SCOPES.contains(&s.as_str())) {
        return Err(redirect(KftcError::o0001("3000115"), "invalid_scope"));
    }
    let Some(state_val) = state.clone() else {
        return Err(redirect(KftcError::o0001("3000103"), "invalid_request"));
    };
    let auth_type = match single(&pairs, "auth_type").ok().flatten() {
        Some(t @ ("0" | "1" | "2")) => t.to_string(),
        _ => return Err(redirect(KftcError::o0001("3000103"), "invalid_request")),
    };
    Ok(AuthorizeRequest { pairs, redirect_uri, scopes, state: state_val, client_info, auth_type, account_add: false })
}

fn append_query(uri: &str, params: &[(&str, &str)]) -> String {
    let q = serde_urlencoded::to_string(params).unwrap_or_default();
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}{q}")
}

/// `302 Found` to the client's callback (SPEC A14.1).
fn found(location: &str) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, location.to_string())]).into_response()
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("text/html"))
}

fn render_failure(headers: &HeaderMap, failure: AuthorizeFailure) -> Response {
    match failure {
        AuthorizeFailure::Show(err) => {
            if wants_html(headers) {
                (StatusCode::BAD_REQUEST, Html(consent_page::error_page(&err))).into_response()
            } else {
                // Scripts get the KFTC JSON error shape (HTTP 200 like every KFTC error).
                Json(json!({ "rsp_code": err.code(), "rsp_message": err.rsp_message() })).into_response()
            }
        }
        AuthorizeFailure::Redirect { redirect_uri, state, client_info, err, oauth_error } => {
            // SPEC A5.3/E2: the error-callback format is not confirmed; we send both the OAuth
            // names (`error`, `error_description`) and the KFTC ones (`rsp_code`, `rsp_message`).
            let msg = err.rsp_message();
            let mut params: Vec<(&str, &str)> = vec![("error", oauth_error), ("error_description", &msg), ("rsp_code", err.code()), ("rsp_message", &msg)];
            if let Some(s) = state.as_deref() {
                params.push(("state", s));
            }
            if let Some(c) = client_info.as_deref() {
                params.push(("client_info", c));
            }
            found(&append_query(&redirect_uri, &params)).into_response()
        }
    }
}

/// The user's decision, from the consent page, the `sandbox_consent` script parameters or
/// `QETTA_SANDBOX_AUTO_CONSENT`.
enum Decision {
    Approve { user_id: String, accounts: Option<Vec<String>> },
    Deny,
}

pub async fn authorize_get(State(sim): State<Arc<KftcSim>>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let pairs = parse_pairs(q.as_deref().unwrap_or(""));
    authorize(&sim, &headers, pairs, false)
}

/// The consent page posts its form here (same parameters as the GET plus `sandbox_*`).
pub async fn authorize_post(State(sim): State<Arc<KftcSim>>, headers: HeaderMap, RawQuery(q): RawQuery, body: Bytes) -> Response {
    authorize(&sim, &headers, post_pairs(q, &body), false)
}

/// `GET /oauth/2.0/authorize_account` (SPEC A5.2): same parameters and callback as /authorize.
pub async fn authorize_account_get(State(sim): State<Arc<KftcSim>>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let pairs = parse_pairs(q.as_deref().unwrap_or(""));
    authorize(&sim, &headers, pairs, true)
}

pub async fn authorize_account_post(State(sim): State<Arc<KftcSim>>, headers: HeaderMap, RawQuery(q): RawQuery, body: Bytes) -> Response {
    authorize(&sim, &headers, post_pairs(q, &body), true)
}

fn post_pairs(q: Option<String>, body: &Bytes) -> Option<Pairs> {
    let mut pairs = parse_pairs(q.as_deref().unwrap_or(""))?;
    pairs.extend(std::str::from_utf8(body).ok().and_then(parse_pairs)?);
    Some(pairs)
}

fn authorize(sim: &KftcSim, headers: &HeaderMap, pairs: Option<Pairs>, account_add: bool) -> Response {
    let Some(pairs) = pairs else {
        return render_failure(headers, AuthorizeFailure::Show(KftcError::o0001("3000103")));
    };
    let mut req = match validate(sim, pairs) {
        Ok(r) => r,
        Err(f) => return render_failure(headers, f),
    };
    req.account_add = account_add;
    let fail = |err: KftcError| AuthorizeFailure::Redirect {
        redirect_uri: req.redirect_uri.clone(),
        state: Some(req.state.clone()),
        client_info: req.client_info.clone(),
        err,
        oauth_error: "invalid_request",
    };

    // auth_type=2 (인증생략) needs the Kftc-Bfop headers of an already linked user (SPEC A5.1).
    let decision = if req.auth_type == "2" {
        match bfop_user(sim, headers) {
            Some(user_id) => Decision::Approve { user_id, accounts: None },
            None => return render_failure(headers, fail(KftcError::o0001("3000103"))),
        }
    } else if let Some(choice) = single(&req.pairs, "sandbox_consent").ok().flatten() {
        match choice {
            "approve" => {
                let user = single(&req.pairs, "sandbox_user").ok().flatten().map(str::to_string);
                let user_id = match resolve_user(sim, user.as_deref()) {
                    Some(u) => u,
                    None => return render_failure(headers, AuthorizeFailure::Show(KftcError::o0001("3000103"))),
                };
                let accounts: Vec<String> = req
                    .pairs
                    .iter()
                    .filter(|(k, _)| k == "sandbox_account" || k == "sandbox_accounts")
                    .flat_map(|(_, v)| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect::<Vec<_>>())
                    .collect();
                Decision::Approve { user_id, accounts: (!accounts.is_empty()).then_some(accounts) }
            }
            "deny" => Decision::Deny,
            _ => return render_failure(headers, AuthorizeFailure::Show(KftcError::o0001("3000103"))),
        }
    } else if let Some(auto) = sim.config.auto_consent {
        match auto {
            AutoConsent::Approve => match resolve_user(sim, sim.config.auto_consent_user.as_deref()) {
                Some(user_id) => Decision::Approve { user_id, accounts: None },
                None => return render_failure(headers, AuthorizeFailure::Show(KftcError::o0001("3000103"))),
            },
            AutoConsent::Deny => Decision::Deny,
        }
    } else {
        let st = sim.state();
        let html = consent_page::consent_page(&req, &st.users);
        return Html(html).into_response();
    };

    match decision {
        Decision::Deny => {
            // SPEC E2: format not confirmed; OAuth-style `error=access_denied` plus state.
            let mut params: Vec<(&str, &str)> =
                vec![("error", "access_denied"), ("error_description", "사용자가 동의를 취소했습니다 (user denied consent)"), ("state", &req.state)];
            if let Some(c) = req.client_info.as_deref() {
                params.push(("client_info", c));
            }
            found(&append_query(&req.redirect_uri, &params)).into_response()
        }
        Decision::Approve { user_id, accounts } => {
            let code = random_alnum(30);
            let now = sim.clock.now();
            {
                let mut st = sim.state();
                // SPEC A5.2: the account-add flow is for an already registered user. What KFTC
                // answers otherwise is not documented [U]; we send A0337 (해당 사용자 없음).
                if req.account_add && !st.links.contains_key(&user_id) {
                    drop(st);
                    return render_failure(headers, fail(KftcError::business("A0337")));
                }
                register_accounts(&mut st, &user_id, accounts.as_deref(), &req.scopes, now);
                st.codes.insert(
                    code.clone(),
                    AuthCode {
                        user_id,
                        scopes: req.scopes.clone(),
                        redirect_uri: req.redirect_uri.clone(),
                        expires_at: now + Duration::seconds(sim.config.code_ttl_secs),
                        used: false,
                    },
                );
            }
            let scope = scope_string(&req.scopes);
            let params: Vec<(&str, &str)> =
                vec![("code", &code), ("scope", &scope), ("client_info", req.client_info.as_deref().unwrap_or("")), ("state", &req.state)];
            found(&append_query(&req.redirect_uri, &params)).into_response()
        }
    }
}

fn resolve_user(sim: &KftcSim, id: Option<&str>) -> Option<String> {
    let st = sim.state();
    match id {
        Some(id) => st.users.iter().find(|u| u.id == id || u.user_seq_no == id).map(|u| u.id.clone()),
        None => st.users.first().map(|u| u.id.clone()),
    }
}

/// `Kftc-Bfop-UserSeqNo` + `Kftc-Bfop-UserCI` + a valid login `Kftc-Bfop-AccessToken` of the
/// same, already linked user.
fn bfop_user(sim: &KftcSim, headers: &HeaderMap) -> Option<String> {
    let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty());
    let (seq, ci, token) = (h("Kftc-Bfop-UserSeqNo")?, h("Kftc-Bfop-UserCI")?, h("Kftc-Bfop-AccessToken")?);
    let now = sim.clock.now();
    let st = sim.state();
    let t = st.access.get(token)?;
    if t.revoked || t.force_expired || t.expires_at <= now || !t.scopes.contains("login") {
        return None;
    }
    let user = st.user(t.user_id.as_deref()?)?;
    (user.user_seq_no == seq && user.user_ci == ci && st.links.contains_key(&user.id)).then(|| user.id.clone())
}

fn register_accounts(st: &mut super::KftcState, user_id: &str, only: Option<&[String]>, scopes: &BTreeSet<String>, now: DateTime<Utc>) {
    let Some(user) = st.user(user_id) else { return };
    let chosen: Vec<String> = user
        .accounts
        .iter()
        .filter(|a| match only {
            None => true,
            Some(o) => o.iter().any(|f| f == &a.fintech_use_num),
        })
        .map(|a| a.fintech_use_num.clone())
        .collect();
    // Consenting to none of one's own accounts registers them all (the page always sends some).
    let chosen = if chosen.is_empty() { user.accounts.iter().map(|a| a.fintech_use_num.clone()).collect() } else { chosen };
    let regs = st.links.entry(user_id.to_string()).or_default();
    for f in chosen {
        let reg = match regs.iter_mut().find(|r| r.fintech_use_num == f) {
            Some(r) => r,
            None => {
                regs.push(Registration {
                    fintech_use_num: f.clone(),
                    registered_at: now,
                    inquiry_agreed_at: None,
                    transfer_agreed_at: None,
                    inquiry_cancelled: false,
                    transfer_cancelled: false,
                    consent_expired: false,
                });
                let last = regs.len() - 1;
                &mut regs[last]
            }
        };
        // A new consent (any auth_type; SPEC A13 names re-authentication, auth_type 1) renews the
        // inquiry consent of the chosen accounts: same user_seq_no, same fintech_use_nums.
        if scopes.contains("inquiry") {
            reg.inquiry_agreed_at = Some(now);
            reg.inquiry_cancelled = false;
            reg.consent_expired = false;
        }
        if scopes.contains("transfer") {
            reg.transfer_agreed_at = Some(now);
            reg.transfer_cancelled = false;
        }
    }
}

pub(crate) fn random_alnum(n: usize) -> String {
    rand::thread_rng().sample_iter(&Alphanumeric).take(n).map(char::from).collect()
}

// ---------------------------------------------------------------------------------------------
// Token endpoint

fn token_error(err: KftcError) -> Response {
    Json(json!({ "rsp_code": err.code(), "rsp_message": err.rsp_message() })).into_response()
}

pub async fn token(State(sim): State<Arc<KftcSim>>, headers: HeaderMap, body: Bytes) -> Response {
    let is_form = content_type_ok(&headers, "application/x-www-form-urlencoded", sim.config.require_charset);
    let pairs = if is_form { std::str::from_utf8(&body).ok().and_then(parse_pairs) } else { None };
    let grant_label = pairs
        .as_ref()
        .and_then(|p| p.iter().find(|(k, _)| k == "grant_type").map(|(_, v)| v.as_str()))
        .map(|g| match g {
            "authorization_code" | "refresh_token" | "client_credentials" => g.to_string(),
            _ => "unsupported".to_string(),
        })
        .unwrap_or_else(|| "unsupported".to_string());
    let result = match pairs {
        // Form body only (SPEC A6): JSON or query parameters count as missing parameters.
        None => Err(KftcError::o0001("3000103")),
        Some(p) => issue(&sim, &p),
    };
    match result {
        Ok(body) => {
            sim.stats.issued(&grant_label);
            Json(body).into_response()
        }
        Err(e) => {
            sim.stats.refused(&grant_label);
            token_error(e)
        }
    }
}

/// SPEC A1: token requests are `application/x-www-form-urlencoded; charset=UTF-8`, JSON bodies
/// `application/json; charset=UTF-8` [C]. A charset other than UTF-8 is refused (the body would
/// be misread); a missing one only with `require_charset`.
pub(crate) fn content_type_ok(headers: &HeaderMap, mime: &str, require_charset: bool) -> bool {
    let Some(v) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let mut parts = v.split(';').map(str::trim);
    if !parts.next().is_some_and(|m| m.eq_ignore_ascii_case(mime)) {
        return false;
    }
    let charset = parts.filter_map(|p| p.split_once('=')).find(|(k, _)| k.trim().eq_ignore_ascii_case("charset")).map(|(_, v)| v.trim().trim_matches('"'));
    match charset {
        Some(c) => c.eq_ignore_ascii_case("utf-8"),
        None => !require_charset,
    }
}

fn issue(sim: &KftcSim, p: &Pairs) -> Result<Value, KftcError> {
    let grant_type = single(p, "grant_type")?.ok_or(KftcError::o0001("3000103"))?;
    let client_id = single(p, "client_id")?.ok_or(KftcError::o0001("3000103"))?;
    let client_secret = single(p, "client_secret")?.ok_or(KftcError::o0001("3000103"))?;
    if client_id != sim.config.client_id || client_secret != sim.config.client_secret {
        return Err(KftcError::o0001("3000201"));
    }
    let now = sim.clock.now();
    match grant_type {
        "authorization_code" => {
            let code = single(p, "code")?.ok_or(KftcError::o0001("3000103"))?;
            let redirect_uri = single(p, "redirect_uri")?.ok_or(KftcError::o0001("3000103"))?;
            let mut st = sim.state();
            let Some(grant) = st.codes.get_mut(code) else {
                return Err(KftcError::o0001("3002110"));
            };
            if grant.used || grant.expires_at <= now {
                // Code reuse or session expired (SPEC A6.5 [3002110]).
                return Err(KftcError::o0001("3002110"));
            }
            if grant.redirect_uri != redirect_uri {
                return Err(KftcError::o0001("3000114"));
            }
            grant.used = true;
            let (user_id, scopes) = (grant.user_id.clone(), grant.scopes.clone());
            Ok(issue_user_tokens(sim, &mut st, &user_id, scopes, now))
        }
        "refresh_token" => {
            let refresh = single(p, "refresh_token")?.ok_or(KftcError::o0001("3000103"))?;
            let scope = single(p, "scope")?.ok_or(KftcError::o0001("3000103"))?;
            let requested = scope_set(scope);
            let mut st = sim.state();
            let Some(rt) = st.refresh.get_mut(refresh) else {
                return Err(KftcError::gateway("O0014"));
            };
            if rt.spent || rt.revoked {
                return Err(KftcError::gateway("O0014"));
            }
            if rt.expires_at <= now {
                return Err(KftcError::gateway("O0015"));
            }
            // The scope must be (a subset of) the original grant's.
            if requested.is_empty() || !requested.is_subset(&rt.scopes) {
                return Err(KftcError::o0001("3000115"));
            }
            let user_id = rt.user_id.clone();
            if sim.config.refresh_rotation {
                rt.spent = true; // rotation: a refresh token works once
                Ok(issue_user_tokens(sim, &mut st, &user_id, requested, now))
            } else {
                // No rotation: the same refresh token is answered again and keeps its expiry.
                let kept = refresh.to_string();
                let mut body = issue_user_tokens(sim, &mut st, &user_id, requested, now);
                if let Some(fresh) = body["refresh_token"].as_str().map(str::to_string) {
                    st.refresh.remove(&fresh);
                }
                body["refresh_token"] = json!(kept);
                Ok(body)
            }
        }
        "client_credentials" => {
            let scope = single(p, "scope")?.ok_or(KftcError::o0001("3000103"))?;
            match scope {
                "oob" => {}
                "sa" => return Err(KftcError::gateway("O0011")),
                _ => return Err(KftcError::o0001("3000103")),
            }
            let scopes: BTreeSet<String> = ["oob".to_string()].into();
            let exp = now + Duration::seconds(sim.config.access_token_ttl_secs);
            let access = jwt(sim, &sim.config.client_use_code, &scopes, exp);
            let mut st = sim.state();
            prune(&mut st, now);
            st.access.insert(access.clone(), AccessToken { user_id: None, scopes, expires_at: exp, force_expired: false, revoked: false });
            Ok(json!({
                "access_token": access,
                "token_type": "Bearer",
                "expires_in": sim.config.access_token_ttl_secs,
                "scope": "oob",
                "client_use_code": sim.config.client_use_code,
            }))
        }
        _ => Err(KftcError::o0001("3000103")),
    }
}

fn issue_user_tokens(sim: &KftcSim, st: &mut super::KftcState, user_id: &str, scopes: BTreeSet<String>, now: DateTime<Utc>) -> Value {
    let user_seq_no = st.user(user_id).map(|u| u.user_seq_no.clone()).unwrap_or_default();
    let exp = now + Duration::seconds(sim.config.access_token_ttl_secs);
    let rexp = now + Duration::seconds(sim.config.refresh_token_ttl_secs);
    let access = jwt(sim, &user_seq_no, &scopes, exp);
    let refresh = jwt(sim, &user_seq_no, &scopes, rexp);
    prune(st, now);
    st.access.insert(
        access.clone(),
        AccessToken { user_id: Some(user_id.to_string()), scopes: scopes.clone(), expires_at: exp, force_expired: false, revoked: false },
    );
    st.refresh.insert(refresh.clone(), RefreshToken { user_id: user_id.to_string(), scopes: scopes.clone(), expires_at: rexp, spent: false, revoked: false });
    json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": sim.config.access_token_ttl_secs,
        "refresh_token": refresh,
        "scope": scope_string(&scopes),
        "user_seq_no": user_seq_no,
    })
}

/// Keep memory bounded under load tests: drop long-dead entries once the maps grow large.
fn prune(st: &mut super::KftcState, now: DateTime<Utc>) {
    const LIMIT: usize = 200_000;
    if st.access.len() > LIMIT {
        st.access.retain(|_, t| t.expires_at > now && !t.revoked);
    }
    if st.refresh.len() > LIMIT {
        st.refresh.retain(|_, t| t.expires_at > now && !t.spent && !t.revoked);
    }
    if st.codes.len() > LIMIT {
        st.codes.retain(|_, c| c.expires_at > now && !c.used);
    }
}

/// An HS256 JWT shaped like KFTC's (SPEC A6.3). Opaque to clients.
fn jwt(sim: &KftcSim, aud: &str, scopes: &BTreeSet<String>, exp: DateTime<Utc>) -> String {
    let header = B64URL.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = json!({
        "aud": aud,
        "scope": scopes.iter().collect::<Vec<_>>(),
        "iss": "https://www.openbanking.or.kr",
        "exp": exp.timestamp(),
        "jti": uuid::Uuid::new_v4().to_string(),
    });
    let payload = B64URL.encode(claims.to_string());
    let signing_input = format!("{header}.{payload}");
    let sig = B64URL.encode(hmac_sha256(&sim.jwt_key, signing_input.as_bytes()));
    format!("{signing_input}.{sig}")
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(msg);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

// ---------------------------------------------------------------------------------------------
// Bearer tokens on the business APIs

/// Who is calling a `/v2.0` API.
pub(crate) struct Caller {
    pub user_id: Option<String>,
}

/// Check `Authorization: Bearer <token>` and the required scope (SPEC A14.4):
/// missing → O0001 [992], unknown/revoked → O0002, expired → O0003, wrong scope → O0011.
pub(crate) fn authenticate(sim: &KftcSim, headers: &HeaderMap, scope: &str) -> Result<Caller, KftcError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' ').filter(|(s, _)| s.eq_ignore_ascii_case("bearer")).map(|(_, t)| t.trim()))
        .filter(|t| !t.is_empty())
        .ok_or(KftcError::o0001("992"))?;
    let now = sim.clock.now();
    let st = sim.state();
    let t = st.access.get(token).ok_or(KftcError::gateway("O0002"))?;
    if t.revoked {
        return Err(KftcError::gateway("O0002"));
    }
    if t.force_expired || t.expires_at <= now {
        return Err(KftcError::gateway("O0003"));
    }
    if !t.scopes.contains(scope) {
        return Err(KftcError::gateway("O0011"));
    }
    Ok(Caller { user_id: t.user_id.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(hex::encode(mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn scopes_parse_and_sort() {
        let s = scope_set("transfer login  inquiry");
        assert_eq!(scope_string(&s), "inquiry login transfer");
    }

    #[test]
    fn duplicated_parameters_are_refused() {
        let p: Pairs = vec![("code".into(), "a".into()), ("code".into(), "b".into())];
        assert_eq!(single(&p, "code"), Err(KftcError::o0001("3000103")));
    }
}

/// Body of `POST /_sandbox/grants`: `count` user grants for sandbox `user` (default the first
/// user) with `scope` (default `login inquiry`).
#[derive(serde::Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct SeedGrants {
    user: Option<String>,
    count: Option<usize>,
    scope: Option<String>,
}

/// The most grants one `POST /_sandbox/grants` issues.
const MAX_SEEDED_GRANTS: usize = 20_000;

/// `POST /_sandbox/grants`: issues user grants (access and refresh tokens, as a completed consent
/// would) without a consent, for benchmarks and tests that need many connections at once.
/// They are not counted in `tokens.issued`, so the stats count only what a client asked for.
pub(crate) async fn seed_grants(State(sim): State<Arc<KftcSim>>, body: Bytes) -> Response {
    let req: SeedGrants = if body.iter().all(u8::is_ascii_whitespace) {
        SeedGrants::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return crate::control::bad_request(format!("invalid JSON body: {e}")),
        }
    };
    let count = req.count.unwrap_or(1);
    if !(1..=MAX_SEEDED_GRANTS).contains(&count) {
        return crate::control::bad_request(format!("count must be between 1 and {MAX_SEEDED_GRANTS}"));
    }
    let scopes = scope_set(req.scope.as_deref().unwrap_or("login inquiry"));
    if scopes.is_empty() || !scopes.iter().all(|s| REGISTERED_SCOPES.contains(&s.as_str())) {
        return crate::control::bad_request(format!("scope must be made of {}", REGISTERED_SCOPES.join(", ")));
    }
    let now = sim.clock.now();
    let mut st = sim.state();
    let user_id = match req.user.as_deref() {
        None => st.users.first().map(|u| u.id.clone()).unwrap_or_default(),
        Some(u) => match st.users.iter().find(|x| x.id == u || x.user_seq_no == u) {
            Some(x) => x.id.clone(),
            None => return crate::control::bad_request(format!("no sandbox user {u:?}")),
        },
    };
    let grants: Vec<Value> = (0..count).map(|_| issue_user_tokens(&sim, &mut st, &user_id, scopes.clone(), now)).collect();
    Json(json!({ "grants": grants })).into_response()
}
