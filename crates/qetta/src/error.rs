//! The one place where errors become HTTP responses.
//!
//! Every layer has its own error type; each converts into [`ApiError`], and only [`ApiError`]
//! knows about status codes. Every error body has the same shape:
//! `{"error": {"code": "...", "message": "...", "request_id": "...", "provider_code"?: "..."}}`.
//! Internal details (database errors, upstream bodies) are logged, never sent.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::http::request_id;

/// Every error body: `{"error": {...}}` (the `ErrorBody` schema of the OpenAPI document).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// The `error` object of [`ErrorBody`].
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable (`invalid_body`, `connection_not_found`, `upstream_timeout`…).
    pub code: String,
    /// For people; may change between versions.
    pub message: String,
    /// The request's `x-request-id`.
    pub request_id: String,
    /// The provider's own error code, when the provider's answer caused the error.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub provider_code: Option<String>,
}

impl ErrorDetail {
    /// The error object for the current request.
    pub fn new(code: &str, message: &str, provider_code: Option<&str>) -> Self {
        Self { code: code.into(), message: message.into(), request_id: request_id::current(), provider_code: provider_code.map(str::to_string) }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request could not be parsed at all (malformed JSON, bad query string).
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    /// Refused with a specific code (a failed CSRF or origin check, a flow opened in the wrong
    /// browser).
    #[error("{message}")]
    Refused { code: &'static str, message: String },
    #[error("{0}")]
    NotFound(String),
    /// 404 with a code more precise than `not_found`.
    #[error("{message}")]
    NotFoundCode { code: &'static str, message: String },
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// 409 caused by the provider's answer (e.g. `consent_expired`), with its code.
    #[error("{message}")]
    ProviderConflict { code: &'static str, message: String, provider_code: Option<String> },
    /// 410: something we handed out earlier (e.g. a paging cursor) cannot be used any more.
    #[error("{message}")]
    Gone { code: &'static str, message: String },
    /// Well-formed input with invalid values.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// The body is over the configured limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{message}")]
    TooManyRequests { code: &'static str, message: String, retry_after_secs: u64 },
    /// The provider answered with an error or an unusable response.
    #[error("{message}")]
    Upstream { code: &'static str, message: String, provider_code: Option<String> },
    #[error("{message}")]
    UpstreamTimeout { message: String },
    /// The provider is failing and our circuit breaker pauses calls to it: 503 with `Retry-After`.
    #[error("{message}")]
    UpstreamUnavailable { message: String, retry_after_secs: u64 },
    #[error("{0}")]
    Unavailable(String),
    /// A sensitive operation was refused because its audit entry could not be written.
    #[error("The audit log cannot be written right now, so this operation is refused; try again shortly.")]
    AuditUnavailable,
    /// The provider is disabled on this server (neither configured nor simulated).
    #[error("{0}")]
    ProviderNotConfigured(String),
    /// Overloaded for a moment (e.g. every password-hashing slot taken): 503 `busy` with `Retry-After`.
    #[error("{message}")]
    Busy { message: String, retry_after_secs: u64 },
    /// Anything unexpected: logged in full, answered as an opaque 500.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid { code, message: message.into() }
    }
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest { code, message: message.into() }
    }
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict { code, message: message.into() }
    }
    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        Self::Internal(e.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::Refused { .. } => StatusCode::FORBIDDEN,
            Self::NotFound(_) | Self::NotFoundCode { .. } => StatusCode::NOT_FOUND,
            Self::Conflict { .. } | Self::ProviderConflict { .. } => StatusCode::CONFLICT,
            Self::Gone { .. } => StatusCode::GONE,
            Self::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Upstream { .. } => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Unavailable(_) | Self::ProviderNotConfigured(_) | Self::AuditUnavailable | Self::Busy { .. } | Self::UpstreamUnavailable { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. }
            | Self::NotFoundCode { code, .. }
            | Self::Conflict { code, .. }
            | Self::ProviderConflict { code, .. }
            | Self::Gone { code, .. }
            | Self::Refused { code, .. }
            | Self::Invalid { code, .. }
            | Self::TooManyRequests { code, .. }
            | Self::Upstream { code, .. } => code,
            Self::Unauthorized(_) => "unauthorized",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::UpstreamTimeout { .. } => "upstream_timeout",
            Self::UpstreamUnavailable { .. } => "upstream_unavailable",
            Self::Unavailable(_) => "unavailable",
            Self::ProviderNotConfigured(_) => "provider_not_configured",
            Self::AuditUnavailable => "audit_unavailable",
            Self::Busy { .. } => "busy",
            Self::Internal(_) => "internal_error",
        }
    }
}

impl From<crate::auth::hashing::HashError> for ApiError {
    fn from(e: crate::auth::hashing::HashError) -> Self {
        match e {
            crate::auth::hashing::HashError::Busy => {
                Self::Busy { message: "The service is busy checking other passwords; try again in a moment.".into(), retry_after_secs: 1 }
            }
            other => Self::internal(other),
        }
    }
}

impl From<crate::auth::password::CredentialError> for ApiError {
    fn from(e: crate::auth::password::CredentialError) -> Self {
        use crate::auth::password::CredentialError;
        let code = match e {
            CredentialError::BadEmail | CredentialError::InvisibleCharacters | CredentialError::ReservedDomain => "invalid_email",
            CredentialError::TooShort | CredentialError::TooLong | CredentialError::TooWeak | CredentialError::Common => "weak_password",
        };
        Self::invalid(code, e.to_string())
    }
}

impl From<crate::auth::jwt::JwtError> for ApiError {
    fn from(e: crate::auth::jwt::JwtError) -> Self {
        use crate::auth::jwt::JwtError;
        Self::Unauthorized(
            match e {
                JwtError::Expired => "Your session has expired; sign in again.",
                JwtError::NotYetValid => "The token is not valid yet.",
                JwtError::LifetimeTooLong => "The token's lifetime (exp - iat) is longer than this service allows.",
                JwtError::Invalid => "The token is not valid.",
            }
            .into(),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let Self::Internal(e) = &self {
            tracing::error!(error.cause_chain = ?e, "internal error");
        } else if status.is_server_error() {
            tracing::warn!(code = self.code(), message = %self, "request failed upstream");
        }
        let provider_code = match &self {
            Self::Upstream { provider_code, .. } | Self::ProviderConflict { provider_code, .. } => provider_code.clone(),
            _ => None,
        };
        let retry_after = match &self {
            Self::TooManyRequests { retry_after_secs, .. } | Self::Busy { retry_after_secs, .. } | Self::UpstreamUnavailable { retry_after_secs, .. } => {
                Some(*retry_after_secs)
            }
            _ => None,
        };
        let mut response = error_response(status, self.code(), &self.to_string(), provider_code.as_deref());
        if let Some(secs) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response
    }
}

impl From<crate::http::oauth_flow::FlowError> for ApiError {
    fn from(e: crate::http::oauth_flow::FlowError) -> Self {
        use crate::http::oauth_flow::FlowError as F;
        let message = e.to_string();
        match e {
            F::StateMissing | F::StateInvalid | F::StateExpired | F::ActionInvalid => Self::BadRequest { code: e.code(), message },
            // A well-formed link whose state this service does not know: nothing there.
            F::StateUnknown => Self::NotFoundCode { code: e.code(), message },
            F::CrossSite | F::CsrfInvalid | F::BrowserMismatch => Self::Refused { code: e.code(), message },
            F::StateAlreadyUsed | F::StateReplayed => Self::Conflict { code: e.code(), message },
        }
    }
}

/// Builds the standard JSON error body for the current request.
pub fn error_response(status: StatusCode, code: &str, message: &str, provider_code: Option<&str>) -> Response {
    (status, axum::Json(ErrorBody { error: ErrorDetail::new(code, message, provider_code) })).into_response()
}

/// The code and message for a response that a layer below our handlers produced without a body
/// (unknown route, wrong method, body too large, timeout, …).
pub fn default_for_status(status: StatusCode) -> (&'static str, &'static str) {
    match status.as_u16() {
        400 => ("bad_request", "The request could not be understood."),
        401 => ("unauthorized", "Authentication is required."),
        403 => ("forbidden", "You may not do this."),
        404 => ("not_found", "No such resource."),
        405 => ("method_not_allowed", "This method is not allowed on this resource."),
        408 => ("request_timeout", "The request took too long."),
        413 => ("payload_too_large", "The request body is too large."),
        415 => ("unsupported_media_type", "Send the body as application/json."),
        429 => ("rate_limited", "Too many requests; slow down."),
        503 => ("unavailable", "The service is not ready."),
        504 => ("upstream_timeout", "The request took too long."),
        s if s >= 500 => ("internal_error", "Something went wrong on our side."),
        _ => ("error", "The request failed."),
    }
}

impl From<crate::providers::oauth2::OAuthError> for ApiError {
    fn from(e: crate::providers::oauth2::OAuthError) -> Self {
        use crate::providers::oauth2::OAuthError as O;
        let provider_code = e.provider_code();
        match e {
            O::StateMismatch => Self::bad_request("state_mismatch", "The callback's state does not belong to this sign-in. Start again."),
            O::IssuerMismatch => {
                Self::bad_request("issuer_mismatch", "The callback names another identity provider than the one this sign-in went to. Start again.")
            }
            O::MissingIssuer => Self::bad_request("issuer_missing", "The callback lacks the issuer this provider always sends. Start again."),
            O::MissingCode => Self::bad_request("code_missing", "The provider returned neither an authorization code nor an error. Start again."),
            O::Authorization { error, .. } => {
                Self::Upstream { code: "consent_denied", message: format!("The provider refused the authorization ({error})."), provider_code }
            }
            O::InvalidGrant { .. } => Self::bad_request("code_rejected", "The provider did not accept the authorization code (used or expired). Start again."),
            O::IdToken(inner) => {
                tracing::warn!(error = %inner, "an ID token was refused");
                Self::Upstream { code: "id_token_invalid", message: "The provider's ID token is not valid for this sign-in.".into(), provider_code: None }
            }
            O::Timeout => Self::UpstreamTimeout { message: "The provider did not answer in time.".into() },
            O::CircuitOpen { retry_after_secs } => {
                Self::UpstreamUnavailable { message: "The provider is failing right now; calls are paused briefly.".into(), retry_after_secs }
            }
            O::Settings(_) | O::Discovery(_) | O::NoEndpoint(_) | O::InvalidClient { .. } => {
                tracing::error!(error = %e, "provider configuration problem");
                Self::Upstream {
                    code: "provider_misconfigured",
                    message: "The provider refused this service's configuration; the operator must check it.".into(),
                    provider_code,
                }
            }
            other => Self::Upstream { code: "upstream_error", message: format!("The provider call failed: {other}"), provider_code },
        }
    }
}

impl From<crate::providers::ConnectError> for ApiError {
    fn from(e: crate::providers::ConnectError) -> Self {
        use crate::providers::ConnectError as C;
        match e {
            C::Denied { provider_code, message } => Self::Upstream { code: "consent_denied", message, provider_code: Some(provider_code) },
            C::Callback(message) => Self::BadRequest { code: "callback_invalid", message },
            C::Kftc(k) => k.into(),
            C::OAuth(o) => o.into(),
        }
    }
}

impl From<crate::connections::ConnectionError> for ApiError {
    fn from(e: crate::connections::ConnectionError) -> Self {
        use crate::connections::ConnectionError as C;
        let message = e.to_string();
        match e {
            C::UnknownProvider(_) => Self::NotFoundCode { code: "provider_unknown", message },
            C::NotConfigured(p) => crate::app::not_configured(&p),
            C::NotConnectable(_) => Self::BadRequest { code: "provider_not_connectable", message },
            C::NotFound => Self::NotFoundCode { code: "connection_not_found", message },
            C::NotSupported(_) => Self::BadRequest { code: "not_supported", message },
            C::InvalidLabel(_) => Self::Invalid { code: "invalid_label", message },
            C::InvalidScopes(_) => Self::Invalid { code: "invalid_scopes", message },
            C::FlowInvalid => Self::BadRequest { code: "state_invalid", message },
            C::Connect(c) => c.into(),
            C::Token(t) => t.into(),
            C::Store(s) => s.into(),
            C::AuditUnavailable => Self::AuditUnavailable,
            C::Vault(v) => Self::internal(v),
        }
    }
}

impl From<crate::connections::proxy::ProxyError> for ApiError {
    fn from(e: crate::connections::proxy::ProxyError) -> Self {
        use crate::connections::proxy::ProxyError as P;
        let message = e.to_string();
        match e {
            P::NoApi => Self::BadRequest { code: "proxy_not_available", message },
            P::BadPath(_) => Self::BadRequest { code: "invalid_proxy_path", message },
            P::Timeout => Self::UpstreamTimeout { message },
            P::Unreachable => Self::Upstream { code: "upstream_unreachable", message, provider_code: None },
            P::Connection(c) => c.into(),
        }
    }
}
