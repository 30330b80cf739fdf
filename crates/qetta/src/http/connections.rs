//! The connection core over HTTP: the provider catalogue, a user's connections, the browser
//! flow of every provider (authorize → launch → callback, see `oauth_flow`), tokens, refresh,
//! the proxy. Handlers parse, call [`crate::connections::ConnectionService`] and shape the answer.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::json::ApiJson;
use crate::app::AppState;
use crate::auth::AuthUser;
use crate::connections::{Actor, ConnectionError, Listed, StartRequest};
use crate::error::{ApiError, ErrorBody};
use crate::http::oauth_flow::{ConfirmForm, Flow};
use crate::http::openapi::{ConnectableProviderPath, ConnectionPath};
use crate::http::rfc3339;
use crate::mask::mask_token;
use crate::providers::provider::{Callback, ConnectError};
use crate::store::audit;
use crate::store::connections::Connection;

/// `GET /api/v1/providers`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ProvidersBody {
    pub providers: Vec<Listed>,
}

/// The provider catalogue: name, display name, kind, configured, sandbox
#[utoipa::path(get, path = "/api/v1/providers", tag = "connections", security(("bearer" = []), ("bearer" = [], "serviceKey" = [])), responses((status = 200, description = "OK", body = ProvidersBody)))]
pub async fn providers(State(state): State<AppState>, _user: AuthUser) -> Json<ProvidersBody> {
    Json(ProvidersBody { providers: state.connections.catalogue().listing().to_vec() })
}

/// A connection as the API shows it (never a token).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Connection)]
pub struct ConnectionView {
    pub id: String,
    pub provider: String,
    #[schema(max_length = 64)]
    pub label: Option<String>,
    /// `active`, `needs_reauth`, `consent_expired`, `revoked`.
    #[schema(value_type = ConnectionStatus)]
    pub status: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<String>,
    pub connected_at: String,
    pub last_refreshed_at: Option<String>,
    /// The provider account, masked (a nickname, an email, a bank account).
    pub account: Option<String>,
}

impl From<&Connection> for ConnectionView {
    fn from(c: &Connection) -> Self {
        let mut scopes: Vec<String> = c.scope.as_deref().unwrap_or("").split_whitespace().map(str::to_string).collect();
        scopes.sort_unstable();
        Self {
            id: c.id.clone(),
            provider: c.provider.clone(),
            label: c.label.clone(),
            status: c.status.clone(),
            scopes,
            expires_at: c.expires_at.map(rfc3339),
            connected_at: rfc3339(c.created_at),
            last_refreshed_at: c.last_refreshed_at.map(rfc3339),
            account: c.account_display.clone(),
        }
    }
}

/// A connection's state (documentation of the strings the store keeps).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "snake_case")]
pub enum ConnectionStatus {
    Active,
    NeedsReauth,
    ConsentExpired,
    Revoked,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ConnectionsBody {
    pub connections: Vec<ConnectionView>,
}

/// Your connections (several per provider), never a token
#[utoipa::path(get, path = "/api/v1/connections", tag = "connections", security(("bearer" = []), ("bearer" = [], "serviceKey" = [])), responses((status = 200, description = "OK", body = ConnectionsBody)))]
pub async fn list(State(state): State<AppState>, user: AuthUser) -> Result<Json<ConnectionsBody>, ApiError> {
    let rows = state.connections.list(&user.id).await?;
    Ok(Json(ConnectionsBody { connections: rows.iter().map(ConnectionView::from).collect() }))
}

/// One of your connections
#[utoipa::path(get, path = "/api/v1/connections/{id}", tag = "connections", params(ConnectionPath), security(("bearer" = []), ("bearer" = [], "serviceKey" = [])), responses(
    (status = 200, description = "OK", body = ConnectionView),
    (status = 404, description = "connection_not_found", body = ErrorBody),
))]
pub async fn get(State(state): State<AppState>, user: AuthUser, Path(id): Path<String>) -> Result<Json<ConnectionView>, ApiError> {
    let c = state.connections.get(&user.id, &id).await?;
    Ok(Json(ConnectionView::from(&c)))
}

/// `PATCH /api/v1/connections/{id}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchBody {
    /// your name for the connection (trimmed; empty or null: none); no control or invisible characters
    #[schema(max_length = 64, pattern = r"^[^\u0000-\u001F\u007F-\u009F\u200B-\u200F\u202A-\u202E\u2066-\u2069\uFEFF]*$")]
    label: Option<String>,
}

/// Rename a connection
#[utoipa::path(patch, path = "/api/v1/connections/{id}", tag = "connections", params(ConnectionPath), security(("bearer" = []), ("bearer" = [], "serviceKey" = [])), request_body = PatchBody, responses(
    (status = 200, description = "OK", body = ConnectionView),
    (status = 404, description = "connection_not_found", body = ErrorBody),
    (status = 422, description = "invalid_label, invalid_body", body = ErrorBody),
))]
pub async fn patch(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PatchBody>,
) -> Result<Json<ConnectionView>, ApiError> {
    let c = state.connections.rename(&user.id, &id, body.label.as_deref()).await?;
    Ok(Json(ConnectionView::from(&c)))
}

/// `DELETE /api/v1/connections/{id}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DisconnectedBody {
    pub disconnected: bool,
    pub id: String,
    pub provider: String,
    /// What the provider was told (`{"ok", "method", "error"?, "provider_code"?}`).
    pub revocation: crate::providers::provider::Revoked,
}

/// Disconnect: revoked at the provider where it can (RFC 7009, or its own unlink), then the tokens forgotten (with an audit entry, or refused with 503 audit_unavailable)
#[utoipa::path(delete, path = "/api/v1/connections/{id}", tag = "connections", params(ConnectionPath), security(("bearer" = []), ("bearer" = [], "serviceKey" = [])), responses(
    (status = 200, description = "OK", body = DisconnectedBody),
    (status = 404, description = "connection_not_found", body = ErrorBody),
    (status = 503, description = "audit_unavailable", body = ErrorBody),
))]
pub async fn delete(
    State(state): State<AppState>,
    user: AuthUser,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
) -> Result<Json<DisconnectedBody>, ApiError> {
    let c = state.connections.get(&user.id, &id).await?;
    let done = state.connections.disconnect(c, &actor(&user, peer)).await?;
    Ok(Json(DisconnectedBody { disconnected: true, id: done.connection.id, provider: done.connection.provider, revocation: done.revoked }))
}

fn actor(user: &AuthUser, peer: SocketAddr) -> Actor {
    Actor { name: if user.is_backend { "backend".into() } else { format!("user:{}", user.id) }, ip: Some(peer.ip().to_string()) }
}

/// `GET /api/v1/connections/{id}/token`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenBody {
    pub id: String,
    pub provider: String,
    pub status: String,
    pub scopes: Vec<String>,
    pub token_type: Option<String>,
    pub expires_at: Option<String>,
    pub token_masked: String,
    /// only with x-qetta-service-key (the app's backend), and audited
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub access_token: Option<String>,
}

/// The connection's token, refreshed first when due: masked; the raw access_token with the service key (audited)
#[utoipa::path(get, path = "/api/v1/connections/{id}/token", tag = "connections", params(ConnectionPath), security(("bearer" = []), ("bearer" = [], "serviceKey" = [])), responses(
    (status = 200, description = "OK", body = TokenBody),
    (status = 404, description = "connection_not_found", body = ErrorBody),
    (status = 409, description = "needs_reauth and the like: the grant no longer stands", body = ErrorBody),
    (status = 503, response = crate::http::openapi::responses::UpstreamUnavailable),
    (status = 504, response = crate::http::openapi::responses::UpstreamTimeout),
))]
pub async fn token(
    State(state): State<AppState>,
    user: AuthUser,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
) -> Result<Json<TokenBody>, ApiError> {
    let c = state.connections.get(&user.id, &id).await?;
    let t = state.connections.access_token(c).await?;
    let c = state.connections.get(&user.id, &id).await?;
    let view = ConnectionView::from(&c);
    let mut body = TokenBody {
        id: c.id.clone(),
        provider: c.provider.clone(),
        status: c.status.clone(),
        scopes: view.scopes,
        token_type: c.token_type.clone(),
        expires_at: t.expires_at.map(rfc3339),
        token_masked: mask_token(t.token.expose_secret()),
        access_token: None,
    };
    if user.is_backend {
        // Never unaudited: no entry, no raw token.
        let entry =
            audit::NewEntry::user_action(Some(&user.id), &c.provider, Some(&c.id), "token_fetch", "raw_token_returned", Some(peer.ip().to_string()), json!({}));
        crate::audit::require(&state.db, entry, state.clock.now()).await?;
        body.access_token = Some(t.token.expose_secret().to_string());
    }
    Ok(Json(body))
}

// `POST /api/v1/connections/{id}/refresh`: the app's backend (service key) only, since every
// call reaches the provider.
/// Refresh now (the app's backend: x-qetta-service-key; 403 otherwise)
#[utoipa::path(post, path = "/api/v1/connections/{id}/refresh", tag = "connections", params(ConnectionPath), security(("bearer" = [], "serviceKey" = [])), responses(
    (status = 200, description = "OK", body = ConnectionView),
    (status = 403, description = "forbidden: without the service key", body = ErrorBody),
    (status = 404, description = "connection_not_found", body = ErrorBody),
    (status = 503, response = crate::http::openapi::responses::UpstreamUnavailable),
    (status = 504, response = crate::http::openapi::responses::UpstreamTimeout),
))]
pub async fn refresh(State(state): State<AppState>, user: AuthUser, Path(id): Path<String>) -> Result<Json<ConnectionView>, ApiError> {
    if !user.is_backend {
        return Err(ApiError::Forbidden("Refreshing on demand needs the service key (x-qetta-service-key): it is for the app's backend.".into()));
    }
    let c = state.connections.get(&user.id, &id).await?;
    let c = state.connections.refresh(c).await?;
    Ok(Json(ConnectionView::from(&c)))
}

// ---------------------------------------------------------------------------------------------
// The browser flow: authorize (JWT) → launch (→ confirm) → callback

/// `POST /api/v1/connections/{provider}/authorize`.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeBody {
    /// your name for the connection (trimmed; empty or null: none); no control or invisible characters
    #[serde(default)]
    #[schema(max_length = 64, pattern = r"^[^\u0000-\u001F\u007F-\u009F\u200B-\u200F\u202A-\u202E\u2066-\u2069\uFEFF]*$")]
    label: Option<String>,
    /// instead of the provider's configured scopes; each must be one it offers here (422 invalid_scopes)
    #[serde(default, deserialize_with = "super::json::not_null")]
    #[schema(nullable = false, min_items = 1, max_items = 32)]
    scopes: Option<Vec<String>>,
    /// renew the consent of this connection of yours (of this provider)
    #[serde(default, deserialize_with = "super::json::not_null")]
    #[schema(nullable = false, pattern = "^[A-Za-z0-9_-]{1,64}$")]
    connection_id: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AuthorizeAnswer {
    /// The launch link on this service: open it in the user's browser.
    pub authorize_url: String,
    pub expires_at: String,
    /// KFTC only: `0` first consent, `1` renewal.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, minimum = 0, maximum = 1)]
    pub auth_type: Option<u8>,
}

/// Start connecting an account at a provider: {authorize_url, expires_at}
///
/// Stores a single-use state (10 minutes) with the flow's data (PKCE S256 verifier sealed, OIDC nonce) and answers the launch URL on this service (`GET /api/v1/oauth/{provider}/launch`); the provider returns the browser to `GET /api/v1/oauth/{provider}/callback`, the one redirect URI to register. Sets the initiator cookie `qetta_{provider}_init` like KFTC's authorize. Connecting an account you already connected (same provider account) updates that connection.
#[utoipa::path(post, path = "/api/v1/connections/{provider}/authorize", tag = "connections", params(ConnectableProviderPath), security(("bearer" = []), ("bearer" = [], "serviceKey" = [])),
    request_body(content = Option<AuthorizeBody>), responses(
    (status = 200, description = "OK", body = AuthorizeAnswer, headers(("Set-Cookie" = String, description = "qetta_{provider}_init=<secret>; HttpOnly; SameSite=Lax"))),
    (status = 400, description = "provider_not_connectable (Toss)", body = ErrorBody),
    (status = 404, description = "provider_unknown, connection_not_found", body = ErrorBody),
    (status = 422, description = "invalid_label, invalid_scopes, invalid_body", body = ErrorBody),
    (status = 503, response = crate::http::openapi::responses::UpstreamUnavailable),
    (status = 504, response = crate::http::openapi::responses::UpstreamTimeout),
))]
pub async fn authorize(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(provider): Path<String>,
    body: Option<ApiJson<AuthorizeBody>>,
) -> Result<Response, ApiError> {
    let body = body.map(|ApiJson(b)| b).unwrap_or_default();
    let (answer, started) = start_flow(
        &state,
        &user,
        &headers,
        peer,
        &provider,
        StartRequest { label: body.label, scopes: body.scopes, connection_id: body.connection_id, add_accounts: false },
    )
    .await?;
    let mut resp = Json(answer).into_response();
    started.attach(&mut resp);
    Ok(resp)
}

/// Starts a flow (also for the provider's own `GET /api/v1/oauth/kftc/authorize`).
pub async fn start_flow(
    state: &AppState,
    user: &AuthUser,
    headers: &HeaderMap,
    peer: SocketAddr,
    provider: &str,
    req: StartRequest,
) -> Result<(AuthorizeAnswer, crate::http::oauth_flow::Started), ApiError> {
    let started = state.connections.start(&user.id, provider, req).await?;
    let info = state.connections.provider(provider)?.info().clone();
    let auth_type = started.flow_data.extra.get("auth_type").and_then(|v| v.as_u64()).map(|v| v as u8);
    let flow = Flow::of(&info);
    let launched = flow.start(state, headers, &user.id, started.state.clone(), started.flow_data.to_json()).await?;
    let entry = audit::NewEntry::user_action(
        Some(&user.id),
        provider,
        started.reconsent.as_deref(),
        "authorize",
        "started",
        Some(peer.ip().to_string()),
        json!({"auth_type": auth_type, "reconsent": started.reconsent.is_some()}),
    );
    crate::audit::record(&state.db, entry, state.clock.now()).await;
    Ok((AuthorizeAnswer { authorize_url: launched.launch_url.clone(), expires_at: rfc3339(launched.expires_at), auth_type }, launched))
}

/// The flow of a connectable provider, or the JSON error (unknown, disabled, not connectable).
fn flow_of(state: &AppState, provider: &str) -> Result<Flow, ApiError> {
    Ok(Flow::of(state.connections.provider(provider)?.info()))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LaunchQuery {
    /// from authorize (unknown: 404 state_unknown)
    #[param(required = true, nullable = false, pattern = "^[A-Za-z0-9_-]{32,64}$")]
    state: Option<String>,
}

// `GET /api/v1/oauth/{provider}/launch`: straight to the consent page for the browser that
// started the flow; a confirmation page naming the Qetta account for any other.
/// Opens a provider connection in the browser: straight to the provider for the browser that started it, a confirmation page for any other
///
/// With the initiator cookie set by authorize in this browser: binds the state to the browser (cookie qetta_{provider}_bind) and redirects (303) to the provider's consent page. Without it: a confirmation page (200, HTML) naming the Qetta account being connected (masked email, or masked user id for users minted by the app's backend), with a form that POSTs here; nothing is bound. It sets the CSRF cookie qetta_{provider}_csrf (HttpOnly, SameSite=Strict).
#[utoipa::path(get, path = "/api/v1/oauth/{provider}/launch", tag = "connections", security(()), params(ConnectableProviderPath, LaunchQuery), responses(
    (status = 200, description = "the confirmation page (HTML), for a browser that did not start the flow", content_type = "text/html", body = String),
    (status = 303, description = "to the provider's consent page (this browser started the flow)"),
    (status = 400, description = "HTML refusal page: state_invalid, state_unknown, state_expired (a malformed query string: the JSON error body); JSON provider_not_connectable for Toss", content((String = "text/html"), (ErrorBody = "application/json"))),
    (status = 404, description = "HTML refusal page: state_unknown (no such link); JSON provider_unknown for a provider that does not exist", content((String = "text/html"), (ErrorBody = "application/json"))),
    (status = 409, description = "HTML refusal page: state_already_used (bound to a browser, cancelled or completed)", content_type = "text/html", body = String),
    (status = 503, description = "provider_not_configured: the provider is disabled on this server", body = ErrorBody),
))]
pub async fn launch(
    State(state): State<AppState>,
    headers: HeaderMap,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(provider): Path<String>,
    Query(q): Query<LaunchQuery>,
) -> Response {
    match flow_of(&state, &provider) {
        Ok(flow) => flow.launch(&state, &headers, q.state.as_deref(), Some(peer.ip().to_string())).await,
        Err(e) => e.into_response(),
    }
}

/// Confirms (or cancels) a provider connection from the confirmation page
///
/// The confirmation page's form. Refused when Sec-Fetch-Site or Origin (when sent) name another site, or when csrf_token does not match this browser's qetta_{provider}_csrf cookie and the state. action=confirm binds this browser (once per state) and redirects to the provider; action=cancel spends the state.
#[utoipa::path(post, path = "/api/v1/oauth/{provider}/launch", tag = "connections", security(()), params(ConnectableProviderPath),
    request_body(content = ConfirmForm, content_type = "application/x-www-form-urlencoded"), responses(
    (status = 200, description = "cancelled (HTML result page, code launch_cancelled)", content_type = "text/html", body = String),
    (status = 303, description = "to the provider's consent page, this browser bound (cookie qetta_{provider}_bind)"),
    (status = 400, description = "HTML refusal page: state_invalid, state_unknown, state_expired, action_invalid; JSON provider_not_connectable for Toss", content((String = "text/html"), (ErrorBody = "application/json"))),
    (status = 403, description = "HTML refusal page: csrf_invalid, cross_site_refused", content_type = "text/html", body = String),
    (status = 404, description = "HTML refusal page: state_unknown (no such link); JSON provider_unknown for a provider that does not exist", content((String = "text/html"), (ErrorBody = "application/json"))),
    (status = 409, description = "HTML refusal page: state_already_used", content_type = "text/html", body = String),
    (status = 503, description = "provider_not_configured: the provider is disabled on this server", body = ErrorBody),
))]
pub async fn launch_confirm(
    State(state): State<AppState>,
    headers: HeaderMap,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(provider): Path<String>,
    form: Result<Form<ConfirmForm>, FormRejection>,
) -> Response {
    match flow_of(&state, &provider) {
        Ok(flow) => flow.confirm(&state, &headers, form, Some(peer.ip().to_string())).await,
        Err(e) => e.into_response(),
    }
}

/// What a provider sends the browser back with (each provider reads its own fields).
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    /// authorization code
    #[param(max_length = 512)]
    code: Option<String>,
    /// the state (unknown: 404 state_unknown)
    #[param(required = true, nullable = false, min_length = 1, max_length = 128)]
    state: Option<String>,
    /// RFC 9207: must be the provider's issuer when present
    iss: Option<String>,
    /// granted scopes
    scope: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    // KFTC's error callback (format unconfirmed; both spellings accepted).
    /// KFTC's error callback
    rsp_code: Option<String>,
    rsp_message: Option<String>,
}

/// Where the provider returns the user: the state and browser binding checked first, then the provider's answer (RFC 9207 iss, the code exchanged with PKCE, the ID token validated)
///
/// Reports to the opener window.
#[utoipa::path(get, path = "/api/v1/oauth/{provider}/callback", tag = "connections", security(()), params(ConnectableProviderPath, CallbackQuery), responses(
    (status = 200, description = "An HTML result page (data-ok, data-code: connected, reconnected, consent_denied) that reports to the opener window", content_type = "text/html", body = String),
    (status = 400, description = "HTML refusal page: state_missing, state_unknown, state_expired; issuer_mismatch, issuer_missing, code_rejected, callback_invalid", content((String = "text/html"), (ErrorBody = "application/json"))),
    (status = 403, description = "HTML refusal page: state_browser_mismatch (not the browser bound at launch)", content_type = "text/html", body = String),
    (status = 404, description = "HTML page: state_unknown; JSON provider_unknown", content((String = "text/html"), (ErrorBody = "application/json"))),
    (status = 409, description = "HTML refusal page: state_replayed", content_type = "text/html", body = String),
    (status = 502, description = "HTML page: the provider failed (upstream_error, id_token_invalid, provider_misconfigured…)", content_type = "text/html", body = String),
    (status = 503, description = "provider_not_configured: the provider is disabled on this server", body = ErrorBody),
    (status = 504, description = "HTML page: upstream_timeout", content_type = "text/html", body = String),
))]
pub async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(provider): Path<String>,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let ip = Some(peer.ip().to_string());
    let flow = match flow_of(&state, &provider) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let pending = match flow.take_callback_state(&state, &headers, q.state.as_deref(), ip.clone()).await {
        Ok(p) => p,
        Err(refusal) => return refusal,
    };
    let callback = Callback {
        code: q.code.map(SecretString::from),
        state: q.state,
        iss: q.iss,
        error: q.error,
        error_description: q.error_description,
        rsp_code: q.rsp_code,
        rsp_message: q.rsp_message,
        scope: q.scope,
    };
    let page = |status, ok, code: &str, message: &str| flow.page(status, ok, code, message, None, true);
    match state.connections.finish(&pending, &callback, ip.clone()).await {
        Ok(done) => {
            let what = done.connection.account_display.as_deref().map(|a| format!(" ({a})")).unwrap_or_default();
            let message = match (provider.as_str(), crate::providers::kftc::StoredAccount::from_metadata(&done.connection.metadata).len()) {
                ("kftc", n) => format!("Connected: {n} bank account(s)."),
                _ => format!("Connected: {}{what}.", flow.name_en),
            };
            page(StatusCode::OK, true, if done.created { "connected" } else { "reconnected" }, &message)
        }
        Err(ConnectionError::Connect(ConnectError::Denied { provider_code, message })) => {
            flow.audit(&state, &pending.user_id, "callback", "denied", ip, json!({"provider_code": provider_code})).await;
            page(StatusCode::OK, false, "consent_denied", &message)
        }
        Err(e) => {
            let api = ApiError::from(e);
            flow.audit(&state, &pending.user_id, "callback", "failed", ip, json!({"error": api.code()})).await;
            page(api.status(), false, api.code(), &api.to_string())
        }
    }
}

/// `{id}` and `{path}` of the proxy.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct ProxyPath {
    /// a connection id (another user's answers 404 connection_not_found)
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    id: String,
    /// the path under the provider's api_base (may contain /; `..`, `.`, backslashes and encoded separators are refused: 400 invalid_proxy_path)
    #[param(pattern = "^[A-Za-z0-9_.~-][A-Za-z0-9_.~/-]{0,200}$")]
    path: String,
}

// `ANY /api/v1/connections/{id}/proxy/{*path}`: the provider's API with the connection's token.
/// Call the provider's API (api_base + path) with the connection's access token
///
/// The token is refreshed when due and once more after a 401. The caller's Authorization, cookies and service key never go upstream; redirects are not followed; the provider's cookies are not passed back. Answers whatever the provider answers (streamed).
#[utoipa::path(method(get, post, put, patch, delete), path = "/api/v1/connections/{id}/proxy/{path}", tag = "connections", params(ProxyPath), security(("bearer" = []), ("bearer" = [], "serviceKey" = [])), responses(
    (status = "default", description = "the provider's answer, or an error body (connection_not_found, proxy_not_available, invalid_proxy_path, upstream_unreachable…)"),
))]
#[allow(clippy::too_many_arguments)]
pub async fn proxy(
    State(state): State<AppState>,
    user: AuthUser,
    Path((id, path)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let c = state.connections.get(&user.id, &id).await?;
    let answer = state.connections.proxy(&state.http, state.config.tokens.upstream_timeout, c, method, &path, uri.query(), &headers, body).await?;
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let headers = crate::connections::proxy::returned(answer.headers());
    let mut resp = Response::new(axum::body::Body::from_stream(answer.bytes_stream()));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    Ok(resp)
}
