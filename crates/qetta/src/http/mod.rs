//! The HTTP surface: the router and its middleware. One file per route group.

pub mod admin_routes;
pub mod audit_routes;
pub mod auth_routes;
pub mod client_ip;
pub mod connections;
pub mod health;
pub mod json;
pub mod kftc;
pub mod layers;
pub mod metrics;
pub mod oauth_flow;
pub mod oauth_status;
pub mod openapi;
pub mod rate_limit;
pub mod request_id;
pub mod sync;
pub mod toss;
pub mod webhooks;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::routing::{any, delete, get, post};
use axum::Router;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::app::AppState;
use crate::error::ApiError;

/// RFC 3339 (UTC) for a Unix time in seconds.
pub fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Every route of a disabled provider (neither configured nor simulated) answers 503
/// `provider_not_configured` before any work, except `disconnect`, which only forgets local data.
async fn provider_gate(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = req.uri().path();
    let path = path.strip_prefix("/api/v1").unwrap_or(path);
    if let Some(rest) = path.strip_prefix("/oauth/") {
        let (provider, tail) = rest.split_once('/').unwrap_or((rest, ""));
        let known = state.connections.catalogue().entry(provider).is_some();
        if known && tail != "disconnect" && !state.provider_configured(provider) {
            return crate::app::not_configured(provider).into_response();
        }
    }
    next.run(req).await
}

/// The admin listener's routes (`QETTA_ADMIN_ADDR`): Prometheus metrics and the probes, for
/// operators and orchestrators, off the public port.
pub fn admin_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics::metrics))
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .fallback(|| async { ApiError::NotFound("No such route on the admin listener: /metrics, /health, /ready.".into()) })
        .layer(axum::middleware::from_fn(layers::json_errors))
        .layer(axum::middleware::from_fn(request_id::middleware))
        .with_state(state)
}

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/auth/register", post(auth_routes::register))
        .route("/auth/login", post(auth_routes::login))
        .route("/auth/me", delete(auth_routes::delete_me))
        .route("/openapi.json", get(openapi::openapi_json))
        .route("/oauth/status", get(oauth_status::status))
        .route("/oauth/audit", get(audit_routes::list))
        .route("/oauth/kftc/authorize", get(kftc::authorize))
        .route("/oauth/kftc/token", get(kftc::token))
        .route("/oauth/kftc/accounts", get(kftc::accounts))
        .route("/oauth/kftc/balance/{fintech_use_num}", get(kftc::balance))
        .route("/oauth/kftc/transactions", post(kftc::transactions))
        .route("/oauth/kftc/disconnect", delete(kftc::disconnect))
        .route("/oauth/toss/token", get(toss::token))
        .route("/oauth/toss/test", post(toss::test))
        .route("/oauth/toss/verifications", post(toss::create_verification))
        .route("/oauth/toss/verifications/{tx_id}", get(toss::get_verification))
        .route("/oauth/toss/verifications/{tx_id}/result", post(toss::fetch_result_route))
        .route("/oauth/toss/disconnect", delete(toss::disconnect))
        .route("/webhooks", get(webhooks::list).post(webhooks::create))
        .route("/webhooks/{id}", get(webhooks::get).patch(webhooks::update).delete(webhooks::delete))
        .route("/webhooks/{id}/rotate-secret", post(webhooks::rotate_secret))
        .route("/webhooks/{id}/test", post(webhooks::test))
        .route("/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .route("/webhooks/{id}/deliveries/{delivery_id}/retry", post(webhooks::retry))
        // Every provider's browser flow (KFTC's included): one redirect URI per provider.
        .route("/oauth/{provider}/launch", get(connections::launch).post(connections::launch_confirm))
        .route("/oauth/{provider}/callback", get(connections::callback))
        .route("/providers", get(connections::providers))
        .route("/connections", get(connections::list))
        // `{id}` is the provider's name on `authorize` (one parameter name per path segment).
        .route("/connections/{id}/authorize", post(connections::authorize))
        .route("/connections/{id}", get(connections::get).patch(connections::patch).delete(connections::delete))
        .route("/connections/{id}/token", get(connections::token))
        .route("/connections/{id}/refresh", post(connections::refresh))
        .route("/connections/{id}/proxy/{*path}", any(connections::proxy))
        .route("/connections/{id}/accounts/refresh", post(kftc::refresh_accounts))
        .route("/connections/{id}/sync", post(sync::sync_now))
        .route("/connections/{id}/transactions/sync", get(sync::feed))
        .route("/connections/{id}/accounts/authorize", post(kftc::add_accounts))
        .route("/connections/{id}/accounts/{fintech_use_num}", delete(kftc::remove_account))
        .route("/admin/stats", get(admin_routes::stats))
        .route("/admin/users", get(admin_routes::search))
        .route("/admin/users/{user_id}", get(admin_routes::user))
        .route("/admin/connections/{id}/refresh", post(admin_routes::refresh_connection))
        .route("/admin/connections/{id}", delete(admin_routes::disconnect_connection))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), provider_gate));

    let mut app = Router::new().route("/health", get(health::health)).route("/ready", get(health::ready)).nest("/api/v1", api);
    if let Some(sb) = &state.sandbox {
        app = app
            .nest_service("/sandbox/kftc", sb.kftc_router())
            .nest_service("/sandbox/toss", sb.toss_router())
            .nest_service("/sandbox/kakao", sb.kakao_router())
            .nest_service("/sandbox/naver", sb.naver_router());
    }
    let mut app = app
        .merge(crate::web::routes())
        .fallback(|| async { ApiError::NotFound("No such route.".into()) })
        .method_not_allowed_fallback(|| async { StatusCode::METHOD_NOT_ALLOWED })
        .layer(DefaultBodyLimit::max(state.config.body_limit_bytes))
        // Client address, security headers, metrics, JSON error bodies, time-out, provider-call
        // deadline, per-IP rate limit: one layer (see `layers`).
        .layer(axum::middleware::from_fn_with_state(state.clone(), layers::edge));

    if !state.config.cors_origins.is_empty() {
        let origins: Vec<HeaderValue> = state.config.cors_origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
        app = app.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE, Method::OPTIONS])
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, HeaderName::from_static(request_id::HEADER)])
                .expose_headers([HeaderName::from_static(request_id::HEADER), header::RETRY_AFTER])
                .max_age(std::time::Duration::from_secs(600)),
        );
    }
    // Outermost: every line logged below carries the request id.
    app.layer(axum::middleware::from_fn(request_id::middleware)).with_state(state)
}
