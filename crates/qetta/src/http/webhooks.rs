//! `/api/v1/webhooks`: the app's webhook endpoints, managed by its backend with the service key
//! alone ([`AppBackend`]). The signing secret is answered once, at creation (and at rotation);
//! it is stored sealed by the vault, bound to the endpoint's row.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::json::{not_null, ApiJson};
use super::rfc3339;
use crate::app::AppState;
use crate::auth::AppBackend;
use crate::error::{ApiError, ErrorBody};
use crate::events::delivery::secret_aad;
use crate::events::url_guard::{self, UrlError};
use crate::events::{signing, Event, EVENT_TYPES};
use crate::http::openapi::EndpointPath;
use crate::store::audit::NewEntry;
use crate::store::webhooks::{self as store, Delivery, Endpoint};

/// Endpoints one app may have.
pub const MAX_ENDPOINTS: i64 = 50;
const MAX_DESCRIPTION: usize = 256;
/// How long deliveries are also signed with the secret a rotation replaced.
pub const ROTATION_OVERLAP_SECS: i64 = 86400;

impl From<UrlError> for ApiError {
    fn from(e: UrlError) -> Self {
        ApiError::invalid(e.code(), format!("{e}; webhook endpoints must be public https:// URLs."))
    }
}

/// The event types (documentation of [`EVENT_TYPES`]; the handler checks the strings).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub enum EventType {
    #[schema(rename = "connection.created")]
    ConnectionCreated,
    #[schema(rename = "connection.updated")]
    ConnectionUpdated,
    #[schema(rename = "connection.needs_reauth")]
    ConnectionNeedsReauth,
    #[schema(rename = "connection.disconnected")]
    ConnectionDisconnected,
    #[schema(rename = "verification.completed")]
    VerificationCompleted,
    #[schema(rename = "transactions.updated")]
    TransactionsUpdated,
    #[schema(rename = "webhook.test")]
    WebhookTest,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEndpoint {
    /// https:// to a public address (no credentials); refused with 422 webhook_url_forbidden, webhook_url_unresolvable or invalid_webhook_url
    #[schema(min_length = 1, max_length = 2048, format = "uri", pattern = "^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[!-~]*)?$")]
    url: String,
    /// event types to receive; empty or absent: all
    #[serde(default, deserialize_with = "not_null")]
    #[schema(nullable = false, value_type = Option<Vec<EventType>>)]
    events: Option<Vec<String>>,
    #[serde(default, deserialize_with = "not_null")]
    #[schema(nullable = false, max_length = 256)]
    description: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointPatch {
    /// https:// to a public address (no credentials); refused with 422 webhook_url_forbidden, webhook_url_unresolvable or invalid_webhook_url
    #[serde(default, deserialize_with = "not_null")]
    #[schema(min_length = 1, max_length = 2048, format = "uri", pattern = "^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[!-~]*)?$")]
    #[schema(nullable = false)]
    url: Option<String>,
    /// event types to receive; empty: all
    #[serde(default, deserialize_with = "not_null")]
    #[schema(nullable = false, value_type = Option<Vec<EventType>>)]
    events: Option<Vec<String>>,
    #[serde(default, deserialize_with = "not_null")]
    #[schema(nullable = false, max_length = 256)]
    description: Option<String>,
    #[serde(default, deserialize_with = "not_null")]
    #[schema(nullable = false)]
    enabled: Option<bool>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = WebhookEndpoint)]
pub struct EndpointView {
    id: String,
    url: String,
    /// empty: every event type
    #[schema(value_type = Vec<EventType>)]
    events: Vec<String>,
    description: Option<String>,
    enabled: bool,
    /// gone (the endpoint answered 410) or failing (three days of failures)
    disabled_reason: Option<String>,
    created_at: String,
    updated_at: String,
    /// whsec_…: only in the answer to the creation
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    secret: Option<String>,
}

/// `GET /api/v1/webhooks`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EndpointList {
    endpoints: Vec<EndpointView>,
}

/// `DELETE /api/v1/webhooks/{id}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EndpointDeleted {
    deleted: bool,
    id: String,
}

/// `POST /api/v1/webhooks/{id}/rotate-secret`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RotatedSecret {
    id: String,
    /// whsec_…: shown only here
    secret: String,
    previous_secret_valid_until: String,
}

/// `POST /api/v1/webhooks/{id}/test`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TestQueued {
    event_id: String,
    /// `webhook.test`.
    #[serde(rename = "type")]
    event_type: &'static str,
}

/// A delivery of an event to an endpoint.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = WebhookDelivery)]
pub struct DeliveryView {
    id: String,
    /// also the webhook-id header
    event_id: String,
    #[schema(value_type = EventType)]
    event_type: String,
    /// `pending`, `delivered` or `failed`.
    status: String,
    attempts: i64,
    last_status_code: Option<i64>,
    last_error: Option<String>,
    next_attempt_at: Option<String>,
    last_attempt_at: Option<String>,
    delivered_at: Option<String>,
    created_at: String,
    /// pass as before= to page on
    cursor: i64,
}

/// `GET /api/v1/webhooks/{id}/deliveries`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeliveryList {
    deliveries: Vec<DeliveryView>,
}

fn view(e: &Endpoint) -> EndpointView {
    EndpointView {
        id: e.id.clone(),
        url: e.url.clone(),
        events: e.event_types(),
        description: e.description.clone(),
        enabled: e.enabled == 1,
        disabled_reason: e.disabled_reason.clone(),
        created_at: rfc3339(e.created_at),
        updated_at: rfc3339(e.updated_at),
        secret: None,
    }
}

fn check_events(events: Option<Vec<String>>) -> Result<String, ApiError> {
    let mut events = events.unwrap_or_default();
    if let Some(bad) = events.iter().find(|t| !EVENT_TYPES.contains(&t.as_str())) {
        return Err(ApiError::invalid("invalid_event_type", format!("{bad:?} is not an event type; the types are {}.", EVENT_TYPES.join(", "))));
    }
    events.sort();
    events.dedup();
    Ok(serde_json::to_string(&events).expect("strings serialise"))
}

fn check_description(d: Option<String>) -> Result<Option<String>, ApiError> {
    match d.map(|d| d.trim().to_string()).filter(|d| !d.is_empty()) {
        Some(d) if d.chars().count() > MAX_DESCRIPTION || d.chars().any(char::is_control) => {
            Err(ApiError::invalid("invalid_description", format!("description: at most {MAX_DESCRIPTION} characters, no control characters.")))
        }
        other => Ok(other),
    }
}

fn valid_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

async fn endpoint(state: &AppState, id: &str) -> Result<Endpoint, ApiError> {
    let not_found = || ApiError::NotFoundCode { code: "webhook_endpoint_not_found", message: "No such webhook endpoint.".into() };
    if !valid_id(id, "ep_") {
        return Err(not_found());
    }
    store::get_endpoint(&state.db, id).await?.ok_or_else(not_found)
}

fn entry(outcome: &str, endpoint_id: &str, peer: &SocketAddr, detail: Value) -> NewEntry {
    let mut detail = detail;
    detail["endpoint_id"] = json!(endpoint_id);
    NewEntry {
        actor: "service".into(),
        action: "webhook_endpoint".into(),
        outcome: outcome.into(),
        ip: Some(peer.ip().to_string()),
        detail,
        ..Default::default()
    }
}

/// Add a webhook endpoint; the answer carries its signing secret, shown only here
#[utoipa::path(post, path = "/api/v1/webhooks", tag = "webhooks", security(("serviceKey" = [])), request_body = NewEndpoint, responses(
    (status = 201, description = "Created", body = EndpointView),
    (status = 409, description = "too_many_endpoints (at most 50)", body = ErrorBody),
    (status = 422, description = "webhook_url_forbidden, webhook_url_unresolvable, invalid_webhook_url, invalid_event_type, invalid_description, invalid_body", body = ErrorBody),
))]
pub async fn create(
    State(state): State<AppState>,
    _backend: AppBackend,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(body): ApiJson<NewEndpoint>,
) -> Result<(StatusCode, Json<EndpointView>), ApiError> {
    let events = check_events(body.events)?;
    let description = check_description(body.description)?;
    let url = url_guard::check(&body.url, state.config.webhooks.allow_private).await?;
    if store::count_endpoints(&state.db).await? >= MAX_ENDPOINTS {
        return Err(ApiError::conflict("too_many_endpoints", format!("At most {MAX_ENDPOINTS} webhook endpoints; delete one first.")));
    }
    let now = state.clock.now();
    let id = format!("ep_{}", uuid::Uuid::new_v4().simple());
    let secret = signing::new_secret();
    let e = Endpoint {
        secret: state.vault.seal(secret.expose_secret().as_bytes(), secret_aad(&id, "secret")),
        id,
        url: url.to_string(),
        description,
        events,
        previous_secret: None,
        previous_secret_until: None,
        key_id: state.vault.active_key_id().to_string(),
        enabled: 1,
        disabled_reason: None,
        failing_since: None,
        created_at: now,
        updated_at: now,
    };
    store::insert_endpoint(&state.db, &e).await?;
    crate::audit::record(&state.db, entry("created", &e.id, &peer, json!({"events": e.event_types()})), now).await;
    let mut v = view(&e);
    v.secret = Some(secret.expose_secret().to_string());
    Ok((StatusCode::CREATED, Json(v)))
}

/// The app's webhook endpoints (service key only)
#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks", security(("serviceKey" = [])), responses((status = 200, description = "OK", body = EndpointList)))]
pub async fn list(State(state): State<AppState>, _backend: AppBackend) -> Result<Json<EndpointList>, ApiError> {
    let endpoints: Vec<EndpointView> = store::list_endpoints(&state.db).await?.iter().map(view).collect();
    Ok(Json(EndpointList { endpoints }))
}

/// One webhook endpoint
#[utoipa::path(get, path = "/api/v1/webhooks/{id}", tag = "webhooks", security(("serviceKey" = [])), params(EndpointPath), responses((status = 200, description = "OK", body = EndpointView), (status = 404, description = "webhook_endpoint_not_found", body = ErrorBody),))]
pub async fn get(State(state): State<AppState>, _backend: AppBackend, Path(id): Path<String>) -> Result<Json<EndpointView>, ApiError> {
    Ok(Json(view(&endpoint(&state, &id).await?)))
}

/// Change an endpoint's url, events, description or enabled (enabling again resumes waiting deliveries)
#[utoipa::path(patch, path = "/api/v1/webhooks/{id}", tag = "webhooks", security(("serviceKey" = [])), params(EndpointPath), request_body = EndpointPatch, responses(
    (status = 200, description = "OK", body = EndpointView), (status = 404, description = "webhook_endpoint_not_found", body = ErrorBody),
    (status = 422, description = "webhook_url_forbidden, webhook_url_unresolvable, invalid_webhook_url, invalid_event_type, invalid_description, invalid_body", body = ErrorBody),
))]
pub async fn update(
    State(state): State<AppState>,
    _backend: AppBackend,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<EndpointPatch>,
) -> Result<Json<EndpointView>, ApiError> {
    let mut e = endpoint(&state, &id).await?;
    if let Some(u) = body.url {
        e.url = url_guard::check(&u, state.config.webhooks.allow_private).await?.to_string();
    }
    if body.events.is_some() {
        e.events = check_events(body.events)?;
    }
    if body.description.is_some() {
        e.description = check_description(body.description)?;
    }
    if let Some(on) = body.enabled {
        e.enabled = i64::from(on);
    }
    let now = state.clock.now();
    if !store::update_endpoint(&state.db, &e, now).await? {
        return Err(ApiError::NotFoundCode { code: "webhook_endpoint_not_found", message: "No such webhook endpoint.".into() });
    }
    crate::audit::record(&state.db, entry("updated", &e.id, &peer, json!({"enabled": e.enabled == 1, "events": e.event_types()})), now).await;
    state.webhooks.wake();
    Ok(Json(view(&endpoint(&state, &id).await?)))
}

/// Delete an endpoint and its deliveries
#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "webhooks", security(("serviceKey" = [])), params(EndpointPath), responses((status = 200, description = "OK", body = EndpointDeleted), (status = 404, description = "webhook_endpoint_not_found", body = ErrorBody),))]
pub async fn delete(
    State(state): State<AppState>,
    _backend: AppBackend,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
) -> Result<Json<EndpointDeleted>, ApiError> {
    let e = endpoint(&state, &id).await?;
    store::delete_endpoint(&state.db, &e.id).await?;
    crate::audit::record(&state.db, entry("deleted", &e.id, &peer, json!({})), state.clock.now()).await;
    Ok(Json(EndpointDeleted { deleted: true, id: e.id }))
}

// A new secret; for [`ROTATION_OVERLAP_SECS`] deliveries are signed with both.
/// A new signing secret; for 24 hours deliveries carry signatures by the old and the new one
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/rotate-secret", tag = "webhooks", security(("serviceKey" = [])), params(EndpointPath), responses(
    (status = 200, description = "OK", body = RotatedSecret), (status = 404, description = "webhook_endpoint_not_found", body = ErrorBody),
    (status = 503, description = "audit_unavailable", body = ErrorBody),
))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    _backend: AppBackend,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
) -> Result<Json<RotatedSecret>, ApiError> {
    let e = endpoint(&state, &id).await?;
    let now = state.clock.now();
    let current = state.vault.open_string(&e.secret, secret_aad(&e.id, "secret")).map_err(ApiError::internal)?;
    let secret = signing::new_secret();
    let until = now + ROTATION_OVERLAP_SECS;
    crate::audit::require(&state.db, entry("secret_rotated", &e.id, &peer, json!({"previous_valid_until": rfc3339(until)})), now).await?;
    let sealed = state.vault.seal(secret.expose_secret().as_bytes(), secret_aad(&e.id, "secret"));
    let previous = state.vault.seal(current.expose_secret().as_bytes(), secret_aad(&e.id, "previous_secret"));
    store::set_secrets(&state.db, &e.id, &sealed, Some(&previous), Some(until), state.vault.active_key_id(), now).await?;
    Ok(Json(RotatedSecret { id: e.id, secret: secret.expose_secret().to_string(), previous_secret_valid_until: rfc3339(until) }))
}

// Sends a `webhook.test` event to this endpoint only.
/// Send a webhook.test event to this endpoint
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/test", tag = "webhooks", security(("serviceKey" = [])), params(EndpointPath), responses(
    (status = 202, description = "Queued", body = TestQueued), (status = 404, description = "webhook_endpoint_not_found", body = ErrorBody),
    (status = 409, description = "webhook_endpoint_disabled", body = ErrorBody),
))]
pub async fn test(State(state): State<AppState>, _backend: AppBackend, Path(id): Path<String>) -> Result<(StatusCode, Json<TestQueued>), ApiError> {
    let e = endpoint(&state, &id).await?;
    if e.enabled != 1 {
        return Err(ApiError::conflict("webhook_endpoint_disabled", "The endpoint is disabled; enable it first (PATCH with enabled: true)."));
    }
    let event_id = crate::events::enqueue(&state.db, &state.webhooks, &Event::WebhookTest { endpoint_id: e.id.clone() }, state.clock.now()).await?;
    Ok((StatusCode::ACCEPTED, Json(TestQueued { event_id, event_type: "webhook.test" })))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct DeliveryQuery {
    #[param(value_type = Option<DeliveryStatus>)]
    status: Option<String>,
    /// 1-200 (default 50)
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
    /// a delivery's cursor to page from
    before: Option<i64>,
}

/// `status` of [`DeliveryQuery`] (documentation: the handler checks the strings).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
#[schema(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Failed,
    Pending,
    Delivered,
}

fn delivery_view(d: &Delivery) -> DeliveryView {
    DeliveryView {
        id: d.id.clone(),
        event_id: d.event_id.clone(),
        event_type: d.event_type.clone(),
        status: d.status.clone(),
        attempts: d.attempts,
        last_status_code: d.last_status_code,
        last_error: d.last_error.clone(),
        next_attempt_at: (d.status == store::PENDING).then(|| rfc3339(d.next_attempt_at)),
        last_attempt_at: d.last_attempt_at.map(rfc3339),
        delivered_at: d.delivered_at.map(rfc3339),
        created_at: rfc3339(d.created_at),
        cursor: d.seq,
    }
}

// Newest first; `before` (a delivery's `cursor`) pages on.
/// Deliveries to this endpoint, newest first
#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", tag = "webhooks", security(("serviceKey" = [])), params(EndpointPath, DeliveryQuery), responses(
    (status = 200, description = "OK", body = DeliveryList), (status = 404, description = "webhook_endpoint_not_found", body = ErrorBody),
    (status = 400, description = "invalid_query", body = ErrorBody),
    (status = 422, description = "invalid_status, invalid_limit", body = ErrorBody),
))]
pub async fn deliveries(
    State(state): State<AppState>,
    _backend: AppBackend,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<DeliveryList>, ApiError> {
    let q: DeliveryQuery = serde_urlencoded::from_str(q.as_deref().unwrap_or(""))
        .map_err(|_| ApiError::bad_request("invalid_query", "Query parameters: status (failed, pending or delivered), limit (1-200), before (a cursor)."))?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s @ (store::FAILED | store::PENDING | store::DELIVERED)) => Some(s),
        Some(_) => return Err(ApiError::invalid("invalid_status", "status must be failed, pending or delivered.")),
    };
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::invalid("invalid_limit", "limit must be between 1 and 200."));
    }
    let e = endpoint(&state, &id).await?;
    let rows = store::list_deliveries(&state.db, &e.id, status, q.before, limit).await?;
    Ok(Json(DeliveryList { deliveries: rows.iter().map(delivery_view).collect() }))
}

/// `{id}` and `{delivery_id}` of a delivery.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct DeliveryPath {
    /// endpoint id
    #[param(pattern = "^ep_[0-9a-f]{32}$")]
    id: String,
    /// delivery id
    #[param(pattern = "^dlv_[0-9a-f]{32}$")]
    delivery_id: String,
}

// Sends a failed (or waiting) delivery again now.
/// Send a failed or waiting delivery again now (409 already_delivered for a delivered one)
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/deliveries/{delivery_id}/retry", tag = "webhooks", security(("serviceKey" = [])), params(DeliveryPath), responses(
    (status = 202, description = "Queued", body = DeliveryView),
    (status = 404, description = "webhook_endpoint_not_found, webhook_delivery_not_found", body = ErrorBody),
    (status = 409, description = "already_delivered", body = ErrorBody),
))]
pub async fn retry(
    State(state): State<AppState>,
    _backend: AppBackend,
    Path((id, delivery_id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<DeliveryView>), ApiError> {
    let e = endpoint(&state, &id).await?;
    let not_found = || ApiError::NotFoundCode { code: "webhook_delivery_not_found", message: "No such delivery for this endpoint.".into() };
    if !valid_id(&delivery_id, "dlv_") {
        return Err(not_found());
    }
    let d = store::get_delivery(&state.db, &e.id, &delivery_id).await?.ok_or_else(not_found)?;
    if d.status == store::DELIVERED {
        return Err(ApiError::conflict("already_delivered", "This delivery succeeded already."));
    }
    store::retry_delivery(&state.db, &e.id, &d.id, state.clock.now()).await?;
    state.webhooks.wake();
    let d = store::get_delivery(&state.db, &e.id, &delivery_id).await?.ok_or_else(not_found)?;
    Ok((StatusCode::ACCEPTED, Json(delivery_view(&d))))
}
