//! Rate limits per client IP and route group (in [`super::layers::edge`]) and per user (in the auth
//! extractor); counters are shared across replicas when Redis is set. Over the limit: 429 with
//! `Retry-After`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request};
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

/// The per-IP counter a request counts against (`None`: its route group has no limit).
pub struct IpBucket {
    group: &'static str,
    key: String,
}

impl IpBucket {
    pub fn of(req: &Request) -> Option<Self> {
        let group = group(req.uri().path())?;
        let ip = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string()).unwrap_or_default();
        Some(Self { group, key: format!("ip:{ip}:{group}") })
    }
}

/// Counts the request against its per-IP limit: `Some(429)` when the caller is over it.
pub async fn check_ip(state: &AppState, bucket: IpBucket) -> Option<Response> {
    let limit = match bucket.group {
        "auth" => state.config.rate_limits.auth_per_ip_per_min,
        _ => state.config.rate_limits.api_per_ip_per_min,
    };
    match state.shared.hit(&bucket.key, WINDOW_SECS, state.clock.now()).await {
        Ok((n, reset_in)) if n > limit => Some(
            ApiError::TooManyRequests {
                code: "rate_limited",
                message: format!("Too many requests from your address; at most {limit} per minute."),
                retry_after_secs: reset_in as u64,
            }
            .into_response(),
        ),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, "rate-limit counter unavailable");
            None
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
