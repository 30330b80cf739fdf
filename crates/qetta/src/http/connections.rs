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
use crate::error::ApiError;
use crate::http::oauth_flow::{ConfirmForm, Flow};
use crate::http::rfc3339;
use crate::mask::mask_token;
use crate::providers::provider::{Callback, ConnectError};
use crate::store::audit;
use crate::store::connections::Connection;

/// `GET /api/v1/providers`.
#[derive(Serialize)]
pub struct ProvidersBody {
    pub providers: Vec<Listed>,
}

pub async fn providers(State(state): State<AppState>, _user: AuthUser) -> Json<ProvidersBody> {
    Json(ProvidersBody { providers: state.connections.catalogue().listing().to_vec() })
}

/// A connection as the API shows it (never a token).
#[derive(Serialize)]
pub struct ConnectionView {
    pub id: String,
    pub provider: String,
    pub label: Option<String>,
    /// `active`, `needs_reauth`, `consent_expired`, `revoked`.
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

#[derive(Serialize)]
pub struct ConnectionsBody {
    pub connections: Vec<ConnectionView>,
}

pub async fn list(State(state): State<AppState>, user: AuthUser) -> Result<Json<ConnectionsBody>, ApiError> {
    let rows = state.connections.list(&user.id).await?;
    Ok(Json(ConnectionsBody { connections: rows.iter().map(ConnectionView::from).collect() }))
}

pub async fn get(State(state): State<AppState>, user: AuthUser, Path(id): Path<String>) -> Result<Json<ConnectionView>, ApiError> {
    let c = state.connections.get(&user.id, &id).await?;
    Ok(Json(ConnectionView::from(&c)))
}

/// `PATCH /api/v1/connections/{id}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchBody {
    /// `null` or `""` clears it.
    label: Option<String>,
}

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
#[derive(Serialize)]
pub struct DisconnectedBody {
    pub disconnected: bool,
    pub id: String,
    pub provider: String,
    /// What the provider was told (`{"ok", "method", "error"?, "provider_code"?}`).
    pub revocation: crate::providers::provider::Revoked,
}

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
#[derive(Serialize)]
pub struct TokenBody {
    pub id: String,
    pub provider: String,
    pub status: String,
    pub scopes: Vec<String>,
    pub token_type: Option<String>,
    pub expires_at: Option<String>,
    pub token_masked: String,
    /// Only with the service key (the app's backend), and audited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
}

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

/// `POST /api/v1/connections/{id}/refresh`: the app's backend (service key) only, since every
/// call reaches the provider.
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
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeBody {
    #[serde(default)]
    label: Option<String>,
    #[serde(default, deserialize_with = "super::json::not_null")]
    scopes: Option<Vec<String>>,
    /// Renew the consent of this connection (it must be the caller's, of this provider).
    #[serde(default, deserialize_with = "super::json::not_null")]
    connection_id: Option<String>,
}

#[derive(Serialize)]
pub struct AuthorizeAnswer {
    /// The launch link on this service: open it in the user's browser.
    pub authorize_url: String,
    pub expires_at: String,
    /// KFTC only: `0` first consent, `1` renewal (SPEC A5.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_type: Option<u8>,
}

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

#[derive(Deserialize)]
pub struct LaunchQuery {
    state: Option<String>,
}

/// `GET /api/v1/oauth/{provider}/launch`: straight to the consent page for the browser that
/// started the flow; a confirmation page naming the Qetta account for any other.
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

/// `POST /api/v1/oauth/{provider}/launch`: the confirmation page's form.
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
#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    scope: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    // KFTC's error callback (SPEC A5.3 / E2: format unconfirmed; both spellings accepted).
    rsp_code: Option<String>,
    rsp_message: Option<String>,
}

/// `GET /api/v1/oauth/{provider}/callback`: the state and the browser binding before anything
/// else, then the provider's answer; reports to the opener window.
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

/// `ANY /api/v1/connections/{id}/proxy/{*path}`: the provider's API with the connection's token.
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
