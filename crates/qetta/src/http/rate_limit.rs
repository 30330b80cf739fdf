//! Rate limits per client IP and route group (middleware) and per user (in the auth
//! extractor); counters are shared across replicas when Redis is set. Over the limit: 429 with
//! `Retry-After`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::error::ApiError;

const WINDOW_SECS: i64 = 60;

fn group(path: &str) -> Option<&'static str> {
    if path.starts_with("/api/v1/auth/") {
        Some("auth")
    } else if path.starts_with("/api/v1/") {
        Some("api")
    } else {
        None
    }
}

pub async fn per_ip(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(group) = group(req.uri().path()) else { return next.run(req).await };
    let limit = match group {
        "auth" => state.config.rate_limits.auth_per_ip_per_min,
        _ => state.config.rate_limits.api_per_ip_per_min,
    };
    let ip = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string()).unwrap_or_default();
    match state.shared.hit(&format!("ip:{ip}:{group}"), WINDOW_SECS, state.clock.now()).await {
        Ok((n, reset_in)) if n > limit => ApiError::TooManyRequests {
            code: "rate_limited",
            message: format!("Too many requests from your address; at most {limit} per minute."),
            retry_after_secs: reset_in as u64,
        }
        .into_response(),
        Ok(_) => next.run(req).await,
        // Counting failed (Redis down): serve rather than fail closed, and say so.
        Err(e) => {
            tracing::warn!(error = %e, "rate-limit counter unavailable");
            next.run(req).await
        }
    }
}

/// Called by the auth extractor once the user is known.
pub async fn per_user(state: &AppState, user_id: &str) -> Result<(), ApiError> {
    let limit = state.config.rate_limits.api_per_user_per_min;
    match state.shared.hit(&format!("user:{user_id}"), WINDOW_SECS, state.clock.now()).await {
        Ok((n, reset_in)) if n > limit => Err(ApiError::TooManyRequests {
            code: "rate_limited",
            message: format!("Too many requests; at most {limit} per minute."),
            retry_after_secs: reset_in as u64,
        }),
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::warn!(error = %e, "rate-limit counter unavailable");
            Ok(())
        }
    }
}
