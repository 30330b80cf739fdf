//! Kakao `GET|POST /oauth/authorize` (K2), `POST /oauth/token` (K3) and
//! `GET /oauth/logout` (K5, logout with Kakao account).

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{OriginalUri, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Map, Value};

use super::{AccessToken, AuthCode, KakaoAuthError, KakaoSim, KakaoState, Link, RefreshToken, DEFAULT_ITEMS, KNOWN_ITEMS};
use crate::config::AutoConsent;
use crate::oidc::{self, append_query, found, parse_pairs, single, wants_html, Pairs};
use crate::social::{self, Person};

/// Errors shown on Kakao's own page (the redirect URI is not trusted yet, K2.2): HTML 400 for a
/// browser, the token-error JSON for a script.
fn show(headers: &HeaderMap, err: KakaoAuthError) -> Response {
    if wants_html(headers) {
        (StatusCode::BAD_REQUEST, Html(social::error_page("Kakao", &err.code, &err.description))).into_response()
    } else {
        err.into_response()
    }
}

fn page_error(code: &str, error: &'static str, description: impl Into<String>) -> KakaoAuthError {
    KakaoAuthError::new(StatusCode::BAD_REQUEST, error, code, description)
}

/// `302` to the callback with `error`, `error_description` and `state` (K2.2).
fn redirect_error(redirect_uri: &str, state: Option<&str>, error: &str, description: &str) -> Response {
    let mut params = vec![("error", error), ("error_description", description)];
    if let Some(s) = state {
        params.push(("state", s));
    }
    found(&append_query(redirect_uri, &params))
}

/// Consent items from `scope`: the docs separate them with commas, the official SDK with
/// spaces; both are accepted (K2.1 [C]/[O], D7).
pub(crate) fn split_items(s: &str) -> BTreeSet<String> {
    s.split([',', ' ', '+']).map(str::trim).filter(|x| !x.is_empty()).map(str::to_string).collect()
}

fn declined(person: &Person, item: &str) -> bool {
    match item {
        "account_email" => !person.shares("email"),
        "phone_number" => !person.shares("phone"),
        "birthday" | "birthyear" => !person.shares("birthday"),
        _ => false,
    }
}

pub async fn authorize_get(State(sim): State<Arc<KakaoSim>>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    authorize(&sim, &headers, parse_pairs(q.as_deref().unwrap_or("")))
}

/// The consent page posts here (the GET parameters plus `sandbox_*`).
pub async fn authorize_post(State(sim): State<Arc<KakaoSim>>, headers: HeaderMap, RawQuery(q): RawQuery, body: Bytes) -> Response {
    let mut pairs = parse_pairs(q.as_deref().unwrap_or(""));
    match (&mut pairs, std::str::from_utf8(&body).ok().and_then(parse_pairs)) {
        (Some(p), Some(b)) => p.extend(b),
        _ => pairs = None,
    }
    authorize(&sim, &headers, pairs)
}

enum Decision {
    Approve(&'static Person),
    Deny,
}

fn authorize(sim: &KakaoSim, headers: &HeaderMap, pairs: Option<Pairs>) -> Response {
    let Some(pairs) = pairs else {
        return show(headers, page_error("KOE001", "invalid_request", "malformed request"));
    };
    let get = |k: &str| single(&pairs, k);
    // Client and redirect URI first: until both are trusted nothing is redirected (K2.2).
    let client_id = match get("client_id") {
        Ok(Some(c)) => c,
        Ok(None) => return show(headers, page_error("KOE101", "invalid_client", "client_id is required")),
        Err(d) => return show(headers, page_error("KOE001", "invalid_request", format!("duplicated parameter {}", d.0))),
    };
    if client_id != sim.config.client_id {
        // K2.2/K-TS: wrong app key → KOE101.
        return show(headers, page_error("KOE101", "invalid_client", format!("invalid client_id: {client_id}")));
    }
    let redirect_uri = match get("redirect_uri") {
        Ok(Some(r)) if sim.config.redirect_uris.iter().any(|u| u == r) => r.to_string(),
        Ok(_) => return show(headers, page_error("KOE006", "misconfigured", "redirect_uri is not registered")),
        Err(d) => return show(headers, page_error("KOE001", "invalid_request", format!("duplicated parameter {}", d.0))),
    };
    let state = get("state").ok().flatten().map(str::to_string);
    // K2.1: response_type `token` → KOE202, other values → KOE201. Presentation (page vs
    // redirect) is not documented [U]; like the other KOE codes they are shown on the page.
    match get("response_type") {
        Ok(Some("code")) => {}
        Ok(Some("token")) => {
            return show(headers, page_error("KOE202", "invalid_request", "implicit grant is not supported"));
        }
        Ok(Some(other)) => {
            return show(headers, page_error("KOE201", "invalid_request", format!("Unsupported response type: {other}")));
        }
        Ok(None) => return show(headers, page_error("KOE201", "invalid_request", "Unsupported response type: ")),
        Err(d) => return show(headers, page_error("KOE001", "invalid_request", format!("duplicated parameter {}", d.0))),
    }
    let state_ref = state.as_deref();
    let redirect = |error: &str, description: &str| redirect_error(&redirect_uri, state_ref, error, description);
    for key in ["scope", "prompt", "nonce", "code_challenge", "code_challenge_method", "login_hint"] {
        if let Err(d) = get(key) {
            return redirect("invalid_request", &format!("duplicated parameter {}", d.0));
        }
    }
    // PKCE (K2.1, D16): S256 only. `plain` or a missing method is refused [U: error text].
    let challenge = get("code_challenge").ok().flatten();
    let method = get("code_challenge_method").ok().flatten();
    let challenge = match (challenge, method) {
        (None, None) => None,
        (Some(c), Some("S256")) if oidc::valid_challenge(c) => Some(c.to_string()),
        (Some(_), Some("S256")) => return redirect("invalid_request", "invalid code_challenge"),
        (Some(_), _) => return redirect("invalid_request", "code_challenge_method must be S256"),
        (None, Some(_)) => return redirect("invalid_request", "code_challenge is required with code_challenge_method"),
    };
    // Additional consent items (K2.1). Unknown items: the facts give no code; OAuth
    // `invalid_scope` on the callback [U].
    let scope_param = get("scope").ok().flatten();
    let requested = scope_param.map(split_items).unwrap_or_default();
    if let Some(bad) = requested.iter().find(|i| !KNOWN_ITEMS.contains(&i.as_str())) {
        return redirect("invalid_scope", &format!("invalid scope: {bad}"));
    }
    let prompts: BTreeSet<String> = get("prompt").ok().flatten().map(split_items).unwrap_or_default();
    if let Some(bad) = prompts.iter().find(|p| !["login", "none", "create", "select_account"].contains(&p.as_str())) {
        return redirect("invalid_request", &format!("invalid prompt: {bad}"));
    }
    let nonce = get("nonce").ok().flatten().map(str::to_string);

    // The person acting, and what they do.
    let sandbox_user = get("sandbox_user").ok().flatten();
    let decision = if prompts.contains("none") {
        // K2.2: no UI; a person who has not consented yet → consent_required. The sandbox has
        // no browser session: the person is `sandbox_user`, else the auto-consent user.
        let who = sandbox_user.or(sim.config.auto_consent_user.as_deref());
        match social::resolve(who) {
            Some(p) if sim.state().links.contains_key(p.id) => Decision::Approve(p),
            Some(_) => return redirect("consent_required", "user consent required."),
            None => return show(headers, page_error("KOE001", "invalid_request", "unknown sandbox_user")),
        }
    } else if let Some(choice) = get("sandbox_consent").ok().flatten() {
        match choice {
            "approve" => match social::resolve(sandbox_user) {
                Some(p) => Decision::Approve(p),
                None => return show(headers, page_error("KOE001", "invalid_request", "unknown sandbox_user")),
            },
            "deny" => Decision::Deny,
            _ => return show(headers, page_error("KOE001", "invalid_request", "sandbox_consent must be approve or deny")),
        }
    } else if let Some(auto) = sim.config.auto_consent {
        match auto {
            AutoConsent::Approve => match social::resolve(sim.config.auto_consent_user.as_deref()) {
                Some(p) => Decision::Approve(p),
                None => return show(headers, page_error("KOE001", "invalid_request", "unknown QETTA_SANDBOX_USER")),
            },
            AutoConsent::Deny => Decision::Deny,
        }
    } else {
        let mut items: Vec<String> = DEFAULT_ITEMS.iter().map(|s| s.to_string()).collect();
        items.extend(requested.iter().filter(|i| !DEFAULT_ITEMS.contains(&i.as_str())).cloned());
        return Html(social::consent_page("Kakao", "authorize", &pairs, &items)).into_response();
    };

    let person = match decision {
        // K2.2 [C]: cancel → error=access_denied&error_description=User denied access (+state).
        Decision::Deny => return redirect("access_denied", "User denied access"),
        Decision::Approve(p) => p,
    };
    let now = sim.clock.now();
    // K3.3/K2.1: with OIDC on, a login without `scope` (the app's items, openid included)
    // issues an ID token; an additional-consent request issues one only with `openid` in it.
    // With OIDC off `openid` is ignored [U].
    let id_token = sim.config.oidc && (scope_param.is_none() || requested.contains("openid"));
    let mut st = sim.state();
    let link = st.links.entry(person.id.to_string()).or_insert_with(|| Link { connected_at: now, scopes: BTreeSet::new() });
    for item in DEFAULT_ITEMS.iter().map(|s| s.to_string()).chain(requested.iter().cloned()) {
        if item == "openid" || declined(person, &item) {
            continue;
        }
        link.scopes.insert(item);
    }
    if sim.config.oidc && (id_token || link.scopes.contains("openid")) {
        link.scopes.insert("openid".to_string());
    }
    let scopes = link.scopes.clone();
    let code = oidc::random_alnum(86);
    st.prune(now);
    st.codes.insert(
        code.clone(),
        AuthCode {
            client_id: client_id.to_string(),
            redirect_uri: redirect_uri.clone(),
            user: person.id.to_string(),
            scopes,
            challenge,
            nonce,
            id_token,
            auth_time: now.timestamp(),
            expires_at: now + Duration::seconds(sim.config.code_ttl_secs),
            used: false,
        },
    );
    drop(st);
    // K2.2: `?code=…&state=…`, state only when sent.
    let mut params = vec![("code", code.as_str())];
    if let Some(s) = state.as_deref() {
        params.push(("state", s));
    }
    found(&append_query(&redirect_uri, &params))
}

// ---------------------------------------------------------------------------------------------
// Token endpoint

pub async fn token(State(sim): State<Arc<KakaoSim>>, headers: HeaderMap, OriginalUri(original): OriginalUri, uri: Uri, body: Bytes) -> Response {
    let pairs = oidc::form_pairs(&headers, &body);
    let label = pairs
        .as_ref()
        .and_then(|p| p.iter().find(|(k, _)| k == "grant_type").map(|(_, v)| v.as_str()))
        .map(|g| if g == "authorization_code" || g == "refresh_token" { g } else { "unsupported" })
        .unwrap_or("unsupported")
        .to_string();
    let issuer = sim.config.issuer.clone().unwrap_or_else(|| oidc::base_url(&headers, &original, &uri));
    let result = match pairs {
        None => Err(KakaoAuthError::invalid_request("parameters must be form-encoded in the body")),
        Some(p) => issue(&sim, &p, &issuer),
    };
    match result {
        Ok(v) => {
            sim.stats.issued(&label);
            oidc::no_store_json(StatusCode::OK, v)
        }
        Err(e) => {
            sim.stats.refused(&label);
            e.into_response()
        }
    }
}

fn required<'a>(p: &'a Pairs, key: &str) -> Result<&'a str, KakaoAuthError> {
    single(p, key)
        .map_err(|d| KakaoAuthError::invalid_request(format!("duplicated parameter {}", d.0)))?
        .ok_or_else(|| KakaoAuthError::invalid_request(format!("{key} is required")))
}

fn optional<'a>(p: &'a Pairs, key: &str) -> Result<Option<&'a str>, KakaoAuthError> {
    single(p, key).map_err(|d| KakaoAuthError::invalid_request(format!("duplicated parameter {}", d.0)))
}

fn issue(sim: &KakaoSim, p: &Pairs, issuer: &str) -> Result<Value, KakaoAuthError> {
    let grant_type = required(p, "grant_type")?;
    let client_id = optional(p, "client_id")?;
    let client_secret = optional(p, "client_secret")?;
    if !matches!(grant_type, "authorization_code" | "refresh_token") {
        // K3 grant_types_supported; the KOE code is not documented [U].
        return Err(KakaoAuthError::new(StatusCode::BAD_REQUEST, "unsupported_grant_type", "KOE001", format!("unsupported grant_type: {grant_type}")));
    }
    // K3.5: wrong app key → KOE101 (status U, we use 401 like KOE010).
    match client_id {
        Some(c) if c == sim.config.client_id => {}
        Some(c) => return Err(KakaoAuthError::new(StatusCode::UNAUTHORIZED, "invalid_client", "KOE101", format!("invalid client_id: {c}"))),
        None => return Err(KakaoAuthError::new(StatusCode::UNAUTHORIZED, "invalid_client", "KOE101", "client_id is required")),
    }
    // K3/D8: client_secret_post only; when the secret is ON it is required (KOE010, 401 [O]).
    if sim.config.client_secret_enabled && client_secret != Some(sim.config.client_secret.as_str()) {
        return Err(KakaoAuthError::new(StatusCode::UNAUTHORIZED, "invalid_client", "KOE010", "Bad client credentials"));
    }
    let now = sim.clock.now();
    let mut st = sim.state();
    // KOE237 (K3.5, E2): token-issuance rate limit, when configured. Status/error [U]: 400
    // invalid_request with the observed text.
    if let Some(limit) = sim.config.token_rate_limit_per_minute {
        while st.issued.front().is_some_and(|t| *t <= now - Duration::seconds(60)) {
            st.issued.pop_front();
        }
        if st.issued.len() >= limit as usize {
            return Err(KakaoAuthError::new(StatusCode::BAD_REQUEST, "invalid_request", "KOE237", "token request rate limit exceeded"));
        }
    }
    let out = match grant_type {
        "authorization_code" => exchange_code(sim, &mut st, p, now, issuer)?,
        _ => refresh(sim, &mut st, p, now, issuer)?,
    };
    if sim.config.token_rate_limit_per_minute.is_some() {
        st.issued.push_back(now);
    }
    Ok(out)
}

fn new_session(st: &mut KakaoState) -> u64 {
    st.next_session += 1;
    st.next_session
}

fn exchange_code(sim: &KakaoSim, st: &mut KakaoState, p: &Pairs, now: DateTime<Utc>, issuer: &str) -> Result<Value, KakaoAuthError> {
    let code = required(p, "code")?;
    let redirect_uri = optional(p, "redirect_uri")?;
    let verifier = optional(p, "code_verifier")?;
    let not_found = || {
        // K3.5 [O]: real text `authorization code not found for code=…`.
        KakaoAuthError::new(StatusCode::BAD_REQUEST, "invalid_grant", "KOE320", format!("authorization code not found for code={code}"))
    };
    let Some(grant) = st.codes.get_mut(code) else { return Err(not_found()) };
    if grant.used || grant.expires_at <= now || grant.client_id != sim.config.client_id {
        return Err(not_found());
    }
    // Any exchange attempt spends the code (single use, K2.2 / RFC 6749 §4.1.2), also a failed
    // one: a client must never retry with the same code [U: Kakao's exact behaviour].
    grant.used = true;
    let grant = grant.clone();
    // K3.1/K7: exact redirect_uri. E5: whether Kakao accepts a missing one is unknown; we refuse.
    if redirect_uri != Some(grant.redirect_uri.as_str()) {
        return Err(KakaoAuthError::new(StatusCode::BAD_REQUEST, "invalid_grant", "KOE303", "Redirect URI mismatch."));
    }
    // E4 [U]: PKCE failures answer invalid_grant; the KOE code is undocumented, we reuse KOE320.
    if let Some(challenge) = &grant.challenge {
        match verifier {
            None => return Err(KakaoAuthError::new(StatusCode::BAD_REQUEST, "invalid_grant", "KOE320", "code_verifier is required")),
            Some(v) if !oidc::pkce_matches(challenge, v) => {
                return Err(KakaoAuthError::new(StatusCode::BAD_REQUEST, "invalid_grant", "KOE320", "invalid code_verifier"))
            }
            Some(_) => {}
        }
    }
    // A verifier without a challenge at authorize is ignored [U].
    if !st.links.contains_key(&grant.user) {
        // Unlinked between authorize and exchange.
        return Err(KakaoAuthError::new(StatusCode::BAD_REQUEST, "invalid_grant", "KOE320", format!("authorization code not found for code={code}")));
    }
    let session = new_session(st);
    let access = oidc::random_alnum(54);
    let refresh = oidc::random_alnum(54);
    let exp = now + Duration::seconds(sim.config.access_token_ttl_secs);
    let rexp = now + Duration::seconds(sim.config.refresh_token_ttl_secs);
    st.prune(now);
    st.access.insert(
        access.clone(),
        AccessToken { user: grant.user.clone(), scopes: grant.scopes.clone(), expires_at: exp, force_expired: false, revoked: false, session },
    );
    st.refresh.insert(
        refresh.clone(),
        RefreshToken {
            user: grant.user.clone(),
            client_id: grant.client_id.clone(),
            scopes: grant.scopes.clone(),
            expires_at: rexp,
            revoked: false,
            id_token: grant.id_token,
            auth_time: grant.auth_time,
            session,
        },
    );
    // K3.3: integer expires_in, lowercase bearer, space-separated scope.
    let mut out = json!({
        "token_type": "bearer",
        "access_token": access,
        "expires_in": sim.config.access_token_ttl_secs,
        "refresh_token": refresh,
        "refresh_token_expires_in": sim.config.refresh_token_ttl_secs,
        "scope": grant.scopes.iter().cloned().collect::<Vec<_>>().join(" "),
    });
    if grant.id_token && sim.config.oidc {
        out["id_token"] = json!(id_token(sim, issuer, &grant.user, &grant.scopes, grant.auth_time, grant.nonce.as_deref(), now));
    }
    Ok(out)
}

fn refresh(sim: &KakaoSim, st: &mut KakaoState, p: &Pairs, now: DateTime<Utc>, issuer: &str) -> Result<Value, KakaoAuthError> {
    // K3.5: refresh without refresh_token → KOE319 (status U, we use 400).
    let token = match optional(p, "refresh_token")? {
        Some(t) => t.to_string(),
        None => return Err(KakaoAuthError::new(StatusCode::BAD_REQUEST, "invalid_grant", "KOE319", "refresh_token is required")),
    };
    let invalid = || KakaoAuthError::new(StatusCode::BAD_REQUEST, "invalid_grant", "KOE322", "expired_or_invalid_refresh_token");
    let rt = match st.refresh.get(&token) {
        Some(rt) if !rt.revoked && rt.expires_at > now && rt.client_id == sim.config.client_id => rt.clone(),
        _ => return Err(invalid()),
    };
    let exp = now + Duration::seconds(sim.config.access_token_ttl_secs);
    let access = oidc::random_alnum(54);
    st.prune(now);
    st.access.insert(
        access.clone(),
        AccessToken { user: rt.user.clone(), scopes: rt.scopes.clone(), expires_at: exp, force_expired: false, revoked: false, session: rt.session },
    );
    let mut out = Map::new();
    out.insert("token_type".into(), json!("bearer"));
    out.insert("access_token".into(), json!(access));
    out.insert("expires_in".into(), json!(sim.config.access_token_ttl_secs));
    // K3.4 [C]: a new refresh token only when the one used has less than 1 month left; then the
    // old one is invalid. Otherwise both refresh fields are absent and the old RT stays valid.
    let remaining = rt.expires_at - now;
    if remaining < Duration::seconds(sim.config.refresh_rotation_window_secs) {
        let new_rt = oidc::random_alnum(54);
        if let Some(old) = st.refresh.get_mut(&token) {
            old.revoked = true;
        }
        st.refresh
            .insert(new_rt.clone(), RefreshToken { expires_at: now + Duration::seconds(sim.config.refresh_token_ttl_secs), revoked: false, ..rt.clone() });
        out.insert("refresh_token".into(), json!(new_rt));
        out.insert("refresh_token_expires_in".into(), json!(sim.config.refresh_token_ttl_secs));
    }
    // `scope` is not in the refresh-response table (K3.3 [O: SDK keeps the old scopes]): absent.
    if rt.id_token && sim.config.oidc {
        out.insert("id_token".into(), json!(id_token(sim, issuer, &rt.user, &rt.scopes, rt.auth_time, None, now)));
    }
    Ok(Value::Object(out))
}

/// K6: `iss`, `aud` = the app key, `sub` = the user id as a string, `iat`, `exp` (= AT
/// lifetime), `auth_time`, `nonce` when sent, and `nickname` / `picture` / `email` per consent
/// (email only when valid and verified). No `email_verified`, no `at_hash`.
fn id_token(sim: &KakaoSim, issuer: &str, user: &str, scopes: &BTreeSet<String>, auth_time: i64, nonce: Option<&str>, now: DateTime<Utc>) -> String {
    let iat = now.timestamp();
    let mut claims = json!({
        "iss": issuer,
        "aud": sim.config.client_id,
        "sub": sim.user_id(user).to_string(),
        "iat": iat,
        "exp": iat + sim.config.access_token_ttl_secs,
        "auth_time": auth_time,
    });
    if let Some(n) = nonce {
        claims["nonce"] = json!(n);
    }
    if let Some(p) = social::person(user) {
        if scopes.contains("profile_nickname") {
            claims["nickname"] = json!(p.nickname);
        }
        if scopes.contains("profile_image") {
            claims["picture"] = json!(super::api::image_url(sim, p, false, true));
        }
        if scopes.contains("account_email") && p.email_verified {
            claims["email"] = json!(p.email);
        }
    }
    sim.keys.sign(&claims)
}

// ---------------------------------------------------------------------------------------------
// Logout with Kakao account (K5)

/// `GET /oauth/logout?client_id&logout_redirect_uri[&state]` → 302 to the registered logout
/// redirect URI with `state`; unregistered → KOE007 on Kakao's page.
pub async fn logout_with_account(State(sim): State<Arc<KakaoSim>>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let Some(pairs) = parse_pairs(q.as_deref().unwrap_or("")) else {
        return show(&headers, page_error("KOE001", "invalid_request", "malformed request"));
    };
    match single(&pairs, "client_id") {
        Ok(Some(c)) if c == sim.config.client_id => {}
        _ => return show(&headers, page_error("KOE101", "invalid_client", "invalid client_id")),
    }
    let uri = match single(&pairs, "logout_redirect_uri") {
        Ok(Some(u)) if sim.config.logout_redirect_uris.iter().any(|r| r == u) => u.to_string(),
        _ => return show(&headers, page_error("KOE007", "misconfigured", "logout_redirect_uri is not registered")),
    };
    let state = single(&pairs, "state").ok().flatten();
    let mut params = Vec::new();
    if let Some(s) = state {
        params.push(("state", s));
    }
    if params.is_empty() {
        found(&uri)
    } else {
        found(&append_query(&uri, &params))
    }
}
