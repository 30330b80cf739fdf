//! Naver authorize (N2 classic, N4 OIDC), token (N3 classic GET|POST, N4 OIDC POST, including
//! the legacy `grant_type=delete`) and revocation (`POST /oauth2.0/revoke`, N6).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{OriginalUri, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use serde_json::{json, Value};

use super::{AccessToken, AuthCode, NaverOAuthError, NaverSim, NaverState, RefreshToken};
use crate::config::AutoConsent;
use crate::oidc::{self, append_query, found, parse_pairs, single, wants_html, Pairs};
use crate::social::{self, Person};

/// Errors before the client and callback URL are trusted are shown, not redirected (the
/// facts are silent for Naver [U]; like Kakao and RFC 6749 §4.1.2.1).
fn show(headers: &HeaderMap, error: &'static str, description: &str) -> Response {
    if wants_html(headers) {
        (StatusCode::BAD_REQUEST, Html(social::error_page("Naver", error, description))).into_response()
    } else {
        NaverOAuthError::new(StatusCode::BAD_REQUEST, error, description).response(true)
    }
}

/// N2: failure callback `?state=…&error=…&error_description=…`.
fn redirect_error(redirect_uri: &str, state: Option<&str>, error: &str, description: &str) -> Response {
    let mut params = Vec::new();
    if let Some(s) = state {
        params.push(("state", s));
    }
    params.push(("error", error));
    params.push(("error_description", description));
    found(&append_query(redirect_uri, &params))
}

fn with_body(q: Option<String>, body: &Bytes) -> Option<Pairs> {
    let mut pairs = parse_pairs(q.as_deref().unwrap_or(""))?;
    if !body.is_empty() {
        pairs.extend(std::str::from_utf8(body).ok().and_then(parse_pairs)?);
    }
    Some(pairs)
}

pub async fn authorize_get(State(sim): State<Arc<NaverSim>>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    authorize(&sim, &headers, parse_pairs(q.as_deref().unwrap_or("")), false)
}

pub async fn authorize_post(State(sim): State<Arc<NaverSim>>, headers: HeaderMap, RawQuery(q): RawQuery, body: Bytes) -> Response {
    authorize(&sim, &headers, with_body(q, &body), false)
}

pub async fn authorize_oidc_get(State(sim): State<Arc<NaverSim>>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    authorize(&sim, &headers, parse_pairs(q.as_deref().unwrap_or("")), true)
}

pub async fn authorize_oidc_post(State(sim): State<Arc<NaverSim>>, headers: HeaderMap, RawQuery(q): RawQuery, body: Bytes) -> Response {
    authorize(&sim, &headers, with_body(q, &body), true)
}

enum Decision {
    Approve(&'static Person),
    Deny,
}

fn authorize(sim: &NaverSim, headers: &HeaderMap, pairs: Option<Pairs>, oidc_path: bool) -> Response {
    let Some(pairs) = pairs else { return show(headers, "invalid_request", "malformed request") };
    let get = |k: &str| single(&pairs, k);
    for key in ["client_id", "redirect_uri", "response_type", "state", "scope", "code_challenge", "code_challenge_method", "auth_type", "nonce"] {
        if let Err(d) = get(key) {
            return show(headers, "invalid_request", &format!("duplicated parameter {}", d.0));
        }
    }
    let client_id = get("client_id").ok().flatten();
    if client_id != Some(sim.config.client_id.as_str()) {
        return show(headers, "unauthorized_client", "invalid client_id");
    }
    // E14 [U]: exact match against the registered callback URLs.
    let redirect_uri = match get("redirect_uri").ok().flatten() {
        Some(r) if sim.config.redirect_uris.iter().any(|u| u == r) => r.to_string(),
        _ => return show(headers, "invalid_request", "redirect_uri is not registered"),
    };
    let state = get("state").ok().flatten().map(str::to_string);
    let redirect = |error: &str, description: &str| redirect_error(&redirect_uri, state.as_deref(), error, description);
    if get("response_type").ok().flatten() != Some("code") {
        return redirect("unsupported_response_type", "response_type must be code");
    }
    // N2/N4: state is required (its error text is not documented [U]).
    let Some(state_value) = state.clone() else {
        return redirect("invalid_request", "state is required");
    };
    if oidc_path {
        // N4: scope required and must contain openid; scopes_supported openid, profile.
        let scopes: Vec<&str> = get("scope").ok().flatten().unwrap_or("").split([' ', ',', '+']).filter(|s| !s.is_empty()).collect();
        if !scopes.contains(&"openid") {
            return redirect("invalid_scope", "scope must contain openid");
        }
        if let Some(bad) = scopes.iter().find(|s| !["openid", "profile"].contains(*s)) {
            return redirect("invalid_scope", &format!("unsupported scope: {bad}"));
        }
    }
    // PKCE (N4, D16): S256 only. E12 [U]: the classic path is not documented to honour it; the
    // sandbox honours a challenge on both paths (a correct client is unaffected).
    let challenge = match (get("code_challenge").ok().flatten(), get("code_challenge_method").ok().flatten()) {
        (None, None) => None,
        (Some(c), Some("S256")) if oidc::valid_challenge(c) => Some(c.to_string()),
        (Some(_), Some("S256")) => return redirect("invalid_request", "invalid code_challenge"),
        (Some(_), _) => return redirect("invalid_request", "code_challenge_method must be S256"),
        (None, Some(_)) => return redirect("invalid_request", "code_challenge is required with code_challenge_method"),
    };
    let auth_type = get("auth_type").ok().flatten();
    if let Some(a) = auth_type {
        if !["reprompt", "reauthenticate", "autologin"].contains(&a) {
            return redirect("invalid_request", &format!("invalid auth_type: {a}"));
        }
    }
    // E10 [U]: `nonce` is not documented; the sandbox echoes it into the ID token when sent.
    let nonce = get("nonce").ok().flatten().map(str::to_string);

    let sandbox_user = get("sandbox_user").ok().flatten();
    let decision = if let Some(choice) = get("sandbox_consent").ok().flatten() {
        match choice {
            "approve" => match social::resolve(sandbox_user) {
                Some(p) => Decision::Approve(p),
                None => return show(headers, "invalid_request", "unknown sandbox_user"),
            },
            "deny" => Decision::Deny,
            _ => return show(headers, "invalid_request", "sandbox_consent must be approve or deny"),
        }
    } else if auth_type == Some("autologin") {
        // N2 [C]: silent login; without a logged-in person → `user not logged in.`, without
        // earlier consent → `need user consent.`. The sandbox has no browser session: the
        // logged-in person is `sandbox_user`, else the auto-consent user.
        let who = match (sandbox_user, sim.config.auto_consent) {
            (Some(u), _) => social::person(u),
            (None, Some(AutoConsent::Approve)) => social::resolve(sim.config.auto_consent_user.as_deref()),
            (None, _) => None,
        };
        match who {
            Some(p) if sim.state().links.contains_key(p.id) => Decision::Approve(p),
            Some(_) => return redirect("access_denied", "need user consent."),
            None => return redirect("access_denied", "user not logged in."),
        }
    } else if let Some(auto) = sim.config.auto_consent {
        match auto {
            AutoConsent::Approve => match social::resolve(sim.config.auto_consent_user.as_deref()) {
                Some(p) => Decision::Approve(p),
                None => return show(headers, "invalid_request", "unknown QETTA_SANDBOX_USER"),
            },
            AutoConsent::Deny => Decision::Deny,
        }
    } else {
        let items: Vec<String> =
            ["name", "email", "nickname", "profile_image", "gender", "age", "birthday", "birthyear", "mobile"].iter().map(|s| s.to_string()).collect();
        return Html(social::consent_page("Naver", "authorize", &pairs, &items)).into_response();
    };
    let person = match decision {
        // E9 [U]: the cancel callback is not documented; OAuth `access_denied`.
        Decision::Deny => return redirect("access_denied", "Canceled By User"),
        Decision::Approve(p) => p,
    };
    let now = sim.clock.now();
    let code = oidc::random_alnum(18);
    let mut st = sim.state();
    st.links.entry(person.id.to_string()).or_insert(now);
    st.prune(now);
    st.codes.insert(
        code.clone(),
        AuthCode {
            client_id: sim.config.client_id.clone(),
            redirect_uri: redirect_uri.clone(),
            state: state_value.clone(),
            user: person.id.to_string(),
            challenge,
            nonce,
            oidc: oidc_path,
            auth_time: now.timestamp(),
            expires_at: now + Duration::seconds(sim.config.code_ttl_secs),
            used: false,
        },
    );
    drop(st);
    // N2: `?code=…&state=…`.
    found(&append_query(&redirect_uri, &[("code", &code), ("state", &state_value)]))
}

// ---------------------------------------------------------------------------------------------
// Token endpoints

/// `GET|POST /oauth2.0/token`: parameters in the query string and/or a form body (N3).
pub async fn token_classic(
    State(sim): State<Arc<NaverSim>>,
    headers: HeaderMap,
    OriginalUri(original): OriginalUri,
    uri: Uri,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    token(&sim, &headers, &original, &uri, q, &body, false)
}

/// `POST /oauth2/token` (N4): form body (the doc sample also shows a query string: accepted).
pub async fn token_oidc(
    State(sim): State<Arc<NaverSim>>,
    headers: HeaderMap,
    OriginalUri(original): OriginalUri,
    uri: Uri,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    token(&sim, &headers, &original, &uri, q, &body, true)
}

fn request_pairs(headers: &HeaderMap, q: Option<String>, body: &Bytes) -> Option<Pairs> {
    let mut pairs = parse_pairs(q.as_deref().unwrap_or(""))?;
    if !body.is_empty() {
        pairs.extend(oidc::form_pairs(headers, body)?);
    }
    Some(pairs)
}

fn token(sim: &NaverSim, headers: &HeaderMap, original: &Uri, uri: &Uri, q: Option<String>, body: &Bytes, oidc_path: bool) -> Response {
    let pairs = request_pairs(headers, q, body);
    let label = pairs
        .as_ref()
        .and_then(|p| p.iter().find(|(k, _)| k == "grant_type").map(|(_, v)| v.as_str()))
        .map(|g| if matches!(g, "authorization_code" | "refresh_token" | "delete") { g } else { "unsupported" })
        .unwrap_or("unsupported")
        .to_string();
    let base = oidc::base_url(headers, original, uri);
    let issuer = sim.config.issuer.clone().unwrap_or(base);
    let result = match pairs {
        None => Err(NaverOAuthError::invalid_request("malformed request")),
        Some(p) => issue(sim, headers, &p, oidc_path, &issuer),
    };
    match result {
        Ok(v) => {
            sim.stats.issued(&label);
            oidc::no_store_json(StatusCode::OK, v)
        }
        Err(e) => {
            sim.stats.refused(&label);
            e.response(oidc_path)
        }
    }
}

fn opt<'a>(p: &'a Pairs, key: &str) -> Result<Option<&'a str>, NaverOAuthError> {
    single(p, key).map_err(|d| NaverOAuthError::invalid_request(format!("duplicated parameter {}", d.0)))
}

/// Client authentication: `client_id` + `client_secret` parameters (N3, D8). HTTP Basic only
/// when `QETTA_SANDBOX_NAVER_ACCEPT_BASIC` is on (E8 [U]). Returns whether a secret was given.
fn client_auth(sim: &NaverSim, headers: &HeaderMap, p: &Pairs, oidc_path: bool, allow_none: bool) -> Result<(), NaverOAuthError> {
    let mut id = opt(p, "client_id")?.map(str::to_string);
    let mut secret = opt(p, "client_secret")?.map(str::to_string);
    if id.is_none() && secret.is_none() && sim.config.accept_basic {
        if let Some((i, s)) = oidc::basic_credentials(headers) {
            id = Some(i);
            secret = Some(s);
        }
    }
    // N3 [O]: bad client credentials → 401 invalid_client (probed on the OIDC path); on the
    // classic path HTTP 200 like its other errors [U].
    let bad = || NaverOAuthError::new(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication failed");
    if id.as_deref() != Some(sim.config.client_id.as_str()) {
        return Err(bad());
    }
    match secret {
        Some(s) if s == sim.config.client_secret => Ok(()),
        // N4 discovery lists auth method `none`: a public client may omit the secret on the
        // OIDC path when its code was issued with PKCE [U].
        None if oidc_path && allow_none => Ok(()),
        _ => Err(bad()),
    }
}

fn issue(sim: &NaverSim, headers: &HeaderMap, p: &Pairs, oidc_path: bool, issuer: &str) -> Result<Value, NaverOAuthError> {
    let grant_type = opt(p, "grant_type")?.ok_or_else(|| NaverOAuthError::invalid_request("grant_type is required"))?;
    let now = sim.clock.now();
    match grant_type {
        "authorization_code" => {
            let code = opt(p, "code")?.map(str::to_string);
            let pkce_code = {
                let st = sim.state();
                code.as_ref().and_then(|c| st.codes.get(c)).is_some_and(|c| c.challenge.is_some())
            };
            client_auth(sim, headers, p, oidc_path, pkce_code)?;
            let code = code.ok_or_else(|| NaverOAuthError::invalid_request("code is required"))?;
            exchange(sim, p, &code, now, oidc_path, issuer)
        }
        "refresh_token" => {
            client_auth(sim, headers, p, oidc_path, false)?;
            refresh(sim, p, now)
        }
        "delete" if !oidc_path => {
            client_auth(sim, headers, p, false, false)?;
            delete(sim, p)
        }
        // Not in the documented list (N3) [U].
        other => Err(NaverOAuthError::new(StatusCode::BAD_REQUEST, "unsupported_grant_type", format!("unsupported grant_type: {other}"))),
    }
}

/// N3 [O]: a reused, expired or unknown code → `invalid_request` "no valid data in session".
fn no_session() -> NaverOAuthError {
    NaverOAuthError::invalid_request("no valid data in session")
}

fn exchange(sim: &NaverSim, p: &Pairs, code: &str, now: DateTime<Utc>, oidc_path: bool, issuer: &str) -> Result<Value, NaverOAuthError> {
    let state = opt(p, "state")?;
    let redirect_uri = opt(p, "redirect_uri")?;
    let verifier = opt(p, "code_verifier")?;
    let mut st = sim.state();
    let grant = match st.codes.get_mut(code) {
        Some(g) if !g.used && g.expires_at > now && g.client_id == sim.config.client_id && g.oidc == oidc_path => g,
        _ => return Err(no_session()),
    };
    // N2 [C]: single use; every attempt spends the code.
    grant.used = true;
    let grant = grant.clone();
    // D9/E7 [U]: `state` is a documented required token parameter; the sandbox enforces it
    // (and that it is the authorize request's) unless QETTA_SANDBOX_NAVER_REQUIRE_STATE=off.
    if sim.config.require_state && state != Some(grant.state.as_str()) {
        return Err(NaverOAuthError::invalid_request(if state.is_none() { "state is required" } else { "state mismatch" }));
    }
    // E7 [U]: redirect_uri is not in the parameter table; when sent it must be the exact one.
    if redirect_uri.is_some_and(|r| r != grant.redirect_uri) {
        return Err(NaverOAuthError::invalid_request("redirect_uri mismatch"));
    }
    if let Some(challenge) = &grant.challenge {
        match verifier {
            Some(v) if oidc::pkce_matches(challenge, v) => {}
            // The error for a PKCE failure is not documented [U].
            Some(_) => return Err(NaverOAuthError::new(StatusCode::BAD_REQUEST, "invalid_grant", "code_verifier mismatch")),
            None => return Err(NaverOAuthError::new(StatusCode::BAD_REQUEST, "invalid_grant", "code_verifier is required")),
        }
    }
    if !st.links.contains_key(&grant.user) {
        return Err(no_session());
    }
    let (access, refresh) = (access_token(), oidc::random_alnum(86));
    st.prune(now);
    insert_pair(sim, &mut st, &grant.user, &access, &refresh, now);
    drop(st);
    // N3: `expires_in` is a JSON string (D2), token_type lowercase bearer.
    let mut out = json!({
        "access_token": access,
        "refresh_token": refresh,
        "token_type": "bearer",
        "expires_in": sim.config.access_token_ttl_secs.to_string(),
    });
    if oidc_path {
        out["id_token"] = json!(id_token(sim, issuer, &grant, now));
    }
    Ok(out)
}

/// N3: AT ≤ 256 characters of `[A-Za-z0-9+/=]`: standard base64 of random bytes, so tokens carry
/// `+`, `/` and `=` and clients must URL-encode them.
fn access_token() -> String {
    let mut b = [0u8; 61]; // 61 bytes → 84 characters ending in `==`
    rand::thread_rng().fill_bytes(&mut b);
    B64.encode(b)
}

fn insert_pair(sim: &NaverSim, st: &mut NaverState, user: &str, access: &str, refresh: &str, now: DateTime<Utc>) {
    st.access.insert(
        access.to_string(),
        AccessToken { user: user.to_string(), expires_at: now + Duration::seconds(sim.config.access_token_ttl_secs), force_expired: false, revoked: false },
    );
    if !st.refresh.contains_key(refresh) {
        st.refresh.insert(
            refresh.to_string(),
            RefreshToken {
                user: user.to_string(),
                client_id: sim.config.client_id.clone(),
                expires_at: now + Duration::seconds(sim.config.refresh_token_ttl_secs),
                revoked: false,
            },
        );
    }
}

/// N4/E10: `iss`, `aud` = client_id, `sub` (pairwise id), `iat`, `exp`, `auth_time`, and `nonce`
/// when sent [U]. No email, email_verified or at_hash (unconfirmed).
fn id_token(sim: &NaverSim, issuer: &str, grant: &AuthCode, now: DateTime<Utc>) -> String {
    let iat = now.timestamp();
    let mut claims = json!({
        "iss": issuer,
        "aud": sim.config.client_id,
        "sub": sim.user_id(&grant.user),
        "iat": iat,
        "exp": iat + sim.config.access_token_ttl_secs,
        "auth_time": grant.auth_time,
    });
    if let Some(n) = &grant.nonce {
        claims["nonce"] = json!(n);
    }
    sim.keys.sign(&claims)
}

/// N3: a new access token, **no** new refresh token (no rotation). E6 [U]: the error for an
/// unknown, revoked or expired refresh token is not documented; `invalid_request`.
/// E11 [U]: also accepted on the OIDC path (doc table yes, discovery no); no ID token then.
fn refresh(sim: &NaverSim, p: &Pairs, now: DateTime<Utc>) -> Result<Value, NaverOAuthError> {
    let token = opt(p, "refresh_token")?.ok_or_else(|| NaverOAuthError::invalid_request("refresh_token is required"))?;
    let mut st = sim.state();
    let user = match st.refresh.get(token) {
        Some(rt) if !rt.revoked && rt.expires_at > now && rt.client_id == sim.config.client_id => rt.user.clone(),
        _ => return Err(NaverOAuthError::invalid_request("invalid refresh token")),
    };
    let access = access_token();
    st.prune(now);
    insert_pair(sim, &mut st, &user, &access, token, now);
    Ok(json!({
        "access_token": access,
        "token_type": "bearer",
        "expires_in": sim.config.access_token_ttl_secs.to_string(),
    }))
}

/// Legacy `grant_type=delete` (N3, D11): `{"access_token": <the token>, "result": "success"}`,
/// even for an unknown token. A known token's person is unlinked (N6 effect).
fn delete(sim: &NaverSim, p: &Pairs) -> Result<Value, NaverOAuthError> {
    let token = opt(p, "access_token")?.ok_or_else(|| NaverOAuthError::invalid_request("access_token is required"))?;
    let mut st = sim.state();
    if let Some(user) = st.access.get(token).map(|t| t.user.clone()) {
        st.unlink(&user);
    }
    Ok(json!({ "access_token": token, "result": "success" }))
}

/// `POST /oauth2.0/revoke` (N6, RFC 7009): form `client_id`, `client_secret`, `token`,
/// `token_type_hint` (`access_token` default | `refresh_token`). 200 with an empty body on
/// success and for unknown tokens; 400 `invalid_request`; 401 `unauthorized_client`.
pub async fn revoke(State(sim): State<Arc<NaverSim>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(p) = oidc::form_pairs(&headers, &body) else {
        return NaverOAuthError::invalid_request("form-encoded body required").response(true);
    };
    let get = |k: &str| single(&p, k);
    let (Ok(id), Ok(secret), Ok(token), Ok(hint)) = (get("client_id"), get("client_secret"), get("token"), get("token_type_hint")) else {
        return NaverOAuthError::invalid_request("duplicated parameter").response(true);
    };
    let mut creds = (id.map(str::to_string), secret.map(str::to_string));
    if creds.0.is_none() && creds.1.is_none() && sim.config.accept_basic {
        if let Some((i, s)) = oidc::basic_credentials(&headers) {
            creds = (Some(i), Some(s));
        }
    }
    if creds.0.as_deref() != Some(sim.config.client_id.as_str()) || creds.1.as_deref() != Some(sim.config.client_secret.as_str()) {
        return NaverOAuthError::new(StatusCode::UNAUTHORIZED, "unauthorized_client", "Client authentication failed.").response(true);
    }
    let Some(token) = token else {
        return NaverOAuthError::invalid_request("token is required").response(true);
    };
    let hint = hint.unwrap_or("access_token");
    if !matches!(hint, "access_token" | "refresh_token") {
        return NaverOAuthError::invalid_request("unsupported token_type_hint").response(true);
    }
    let mut st = sim.state();
    // The hint only says where to look first (RFC 7009 §2.1).
    let user = if hint == "access_token" {
        st.access.get(token).map(|t| t.user.clone()).or_else(|| st.refresh.get(token).map(|t| t.user.clone()))
    } else {
        st.refresh.get(token).map(|t| t.user.clone()).or_else(|| st.access.get(token).map(|t| t.user.clone()))
    };
    if let Some(user) = user {
        st.unlink(&user);
    }
    drop(st);
    (StatusCode::OK, [(axum::http::header::CACHE_CONTROL, "no-store")]).into_response()
}
