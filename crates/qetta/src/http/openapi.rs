//! The OpenAPI 3.1 document of the public API, generated from the code with `utoipa` and served
//! at `GET /api/v1/openapi.json` (rendered by `/docs`, fuzzed by `.ci/api-fuzz`).
//!
//! Where each part comes from:
//! - every operation: the `#[utoipa::path(...)]` attribute on its handler (method, path, summary
//!   and description from the doc comment or `summary =`/`description =`, parameters, request
//!   body, responses by status, security), listed in [`ApiDoc`]'s `paths(...)`;
//! - every body: `#[derive(ToSchema)]` on the request and response structs the handlers parse and
//!   answer (field docs become descriptions; limits such as `pattern`, `max_length` are
//!   `#[schema(...)]`/`#[param(...)]` attributes next to the field);
//! - the error body: [`crate::error::ErrorBody`], the very type `ApiError` answers with; the
//!   reusable error responses are the `ToResponse` types in [`responses`];
//! - what the router's layers add to every operation (the request timeout's 408, the per-IP rate
//!   limit's 429, the body limit's 413, the JWT check's 401, the `default` error body): [`Layers`],
//!   a `Modify` step, so that no handler has to repeat them.
//!
//! Adding a route: write the handler with typed bodies (`ToSchema` on them), put
//! `#[utoipa::path(...)]` on it, add it to `paths(...)` below and to the README's API table. The
//! test `tests/it/openapi.rs` fails when a route of the router, a README row and the document
//! disagree.

use std::sync::OnceLock;

use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{Schema, SchemaType, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{RefOr, Required, Response};
use utoipa::{IntoParams, OpenApi};

use crate::error::{ErrorBody, ErrorDetail};

/// The reusable responses (`#/components/responses/...`). Their bodies are [`ErrorBody`].
pub mod responses {
    use crate::error::ErrorBody;

    /// An error (see the `code` for which).
    #[derive(utoipa::ToResponse)]
    #[allow(dead_code)]
    pub struct Error(ErrorBody);

    /// busy: every password-hashing slot stayed taken for QETTA_HASH_QUEUE_WAIT_MS (default 2 s);
    /// retry after Retry-After
    #[derive(utoipa::ToResponse)]
    #[response(headers(("Retry-After" = u64, description = "Seconds to wait before trying again")))]
    #[allow(dead_code)]
    pub struct Busy(ErrorBody);

    /// too_many_attempts (QETTA_LOGIN_MAX_FAILURES per email and window, 4× per client IP;
    /// counted before the password is checked) or rate_limited (QETTA_RATE_LIMIT_AUTH_PER_IP per
    /// minute)
    #[derive(utoipa::ToResponse)]
    #[response(headers(("Retry-After" = u64, description = "Seconds to wait before trying again")))]
    #[allow(dead_code)]
    pub struct TooManyAttempts(ErrorBody);

    /// rate_limited: more than QETTA_RATE_LIMIT_API_PER_IP requests from this address (or
    /// QETTA_RATE_LIMIT_API_PER_USER for this user) in a minute; retry after Retry-After
    #[derive(utoipa::ToResponse)]
    #[response(headers(("Retry-After" = u64, description = "Seconds to wait before trying again")))]
    #[allow(dead_code)]
    pub struct RateLimited(ErrorBody);

    /// The provider is failing and calls to it are paused by the circuit breaker (code
    /// `upstream_unavailable`); retry after `Retry-After` seconds.
    #[derive(utoipa::ToResponse)]
    #[response(headers(("Retry-After" = u64, description = "Seconds until calls to the provider are tried again")))]
    #[allow(dead_code)]
    pub struct UpstreamUnavailable(ErrorBody);

    /// The provider did not answer before the request's deadline, retries included (code
    /// `upstream_timeout`).
    #[derive(utoipa::ToResponse)]
    #[allow(dead_code)]
    pub struct UpstreamTimeout(ErrorBody);

    /// The request as a whole took longer than QETTA_REQUEST_TIMEOUT_SECS (code
    /// `request_timeout`).
    #[derive(utoipa::ToResponse)]
    #[allow(dead_code)]
    pub struct RequestTimeout(ErrorBody);

    /// payload_too_large: the body is over QETTA_BODY_LIMIT_BYTES
    #[derive(utoipa::ToResponse)]
    #[allow(dead_code)]
    pub struct PayloadTooLarge(ErrorBody);

    /// unauthorized: no valid JWT (missing, malformed, expired, not yet valid, a lifetime above
    /// QETTA_JWT_TTL_SECS, a deleted account) or a wrong x-qetta-service-key
    #[derive(utoipa::ToResponse)]
    #[allow(dead_code)]
    pub struct Unauthorized(ErrorBody);
}

/// `{connection_id}` of the path: one of the caller's connections.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct ConnectionPath {
    /// a connection id (another user's answers 404 connection_not_found)
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub id: String,
}

/// `{id}` of the KFTC account routes under `/api/v1/connections/{id}/...`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct KftcConnectionPath {
    /// your KFTC connection (another provider's: 400 not_supported)
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub id: String,
}

/// `{provider}` of the browser flow's paths: a provider that users connect accounts at.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct ConnectableProviderPath {
    /// a provider of the catalogue (`GET /api/v1/providers`) that users connect accounts at: kftc, kakao, naver, or one of QETTA_PROVIDERS_FILE; not toss (one service token, no per-user connection: 400 provider_not_connectable)
    #[param(pattern = "^(?!toss$)[a-z0-9_-]{1,32}$")]
    pub provider: String,
}

/// `{id}` of a webhook endpoint.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct EndpointPath {
    /// endpoint id
    #[param(pattern = "^ep_[0-9a-f]{32}$")]
    pub id: String,
}

/// `{id}` of any user's connection (admin routes).
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct AdminConnectionPath {
    /// any user's connection id (unknown: 404 connection_not_found)
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub id: String,
}

/// `{tx_id}` of a Toss verification.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub struct TxIdPath {
    /// from the start call
    #[param(pattern = "^[A-Za-z0-9-]{1,64}$")]
    pub tx_id: String,
}

const DESCRIPTION: &str = "KFTC OpenBanking and Toss Certification connections. Every error body is {\"error\": {\"code\", \"message\", \"request_id\", \"provider_code\"?}}. Send Authorization: Bearer <JWT>; the app's backend may add x-qetta-service-key to receive raw provider tokens. JWTs (HS256) are refused before nbf, after exp, with iat in the future, with a lifetime exp - iat above QETTA_JWT_TTL_SECS, and for deleted accounts (401). A wrong x-qetta-service-key answers 401 and is audited; after 10 per client IP and minute, 429 too_many_attempts with Retry-After. A provider that is failing answers 503 `upstream_unavailable` with Retry-After while its circuit breaker is open; a provider that does not answer in time 504 `upstream_timeout`; a request that exceeds the request timeout 408 `request_timeout`. Admin routes take the JWT of a user who is an administrator now (the `admin` role of the bearer scheme).";

#[derive(OpenApi)]
#[openapi(
    info(title = "Qetta Connect", description = DESCRIPTION),
    servers((url = "/")),
    security(("bearer" = [])),
    modifiers(&Layers),
    tags(
        (name = "ops", description = "Liveness, readiness and this document"),
        (name = "auth", description = "Local accounts and sessions (JWT)"),
        (name = "oauth", description = "Every provider's state for the caller, and the caller's audit trail"),
        (name = "connections", description = "The connection core: every provider, several connections per user"),
        (name = "kftc", description = "KFTC OpenBanking: accounts, balances, transactions, transaction sync"),
        (name = "toss", description = "Toss Certification: the shared service token and identity verifications"),
        (name = "webhooks", description = "Webhook endpoints of the app's backend (service key only)"),
        (name = "admin", description = "The admin dashboard's routes (an administrator's JWT)"),
    ),
    paths(
        crate::http::health::health,
        crate::http::health::ready,
        openapi_json,
        crate::http::auth_routes::register,
        crate::http::auth_routes::login,
        crate::http::auth_routes::delete_me,
        crate::http::oauth_status::status,
        crate::http::audit_routes::list,
        crate::http::kftc::authorize,
        crate::http::kftc::token,
        crate::http::kftc::accounts,
        crate::http::kftc::balance,
        crate::http::kftc::transactions,
        crate::http::kftc::disconnect,
        crate::http::toss::token,
        crate::http::toss::test,
        crate::http::toss::create_verification,
        crate::http::toss::get_verification,
        crate::http::toss::fetch_result_route,
        crate::http::toss::disconnect,
        crate::http::connections::launch,
        crate::http::connections::launch_confirm,
        crate::http::connections::callback,
        crate::http::connections::providers,
        crate::http::connections::list,
        crate::http::connections::authorize,
        crate::http::connections::get,
        crate::http::connections::patch,
        crate::http::connections::delete,
        crate::http::connections::token,
        crate::http::connections::refresh,
        crate::http::connections::proxy,
        crate::http::admin_routes::stats,
        crate::http::admin_routes::search,
        crate::http::admin_routes::user,
        crate::http::admin_routes::refresh_connection,
        crate::http::admin_routes::disconnect_connection,
        crate::http::kftc::refresh_accounts,
        crate::http::kftc::add_accounts,
        crate::http::kftc::remove_account,
        crate::http::webhooks::list,
        crate::http::webhooks::create,
        crate::http::webhooks::get,
        crate::http::webhooks::update,
        crate::http::webhooks::delete,
        crate::http::webhooks::rotate_secret,
        crate::http::webhooks::test,
        crate::http::webhooks::deliveries,
        crate::http::webhooks::retry,
        crate::http::sync::sync_now,
        crate::http::sync::feed,
    ),
    components(
        // Schemas named only by a parameter's `value_type` (bodies register theirs themselves).
        schemas(ErrorBody, ErrorDetail, crate::http::webhooks::DeliveryStatus),
        responses(
            responses::Error,
            responses::Busy,
            responses::TooManyAttempts,
            responses::RateLimited,
            responses::UpstreamUnavailable,
            responses::UpstreamTimeout,
            responses::RequestTimeout,
            responses::PayloadTooLarge,
            responses::Unauthorized,
        ),
    ),
)]
pub struct ApiDoc;

/// What the router's layers answer on every operation, added here once instead of on each
/// handler, plus the security schemes.
struct Layers;

impl utoipa::Modify for Layers {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()));
        components.add_security_scheme(
            "serviceKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                crate::auth::extract::SERVICE_KEY_HEADER,
                "The app's backend only (QETTA_SERVICE_KEY); never from a browser",
            ))),
        );
        let global_bearer = doc.security.as_ref().is_some_and(|s| !s.is_empty());
        for (path, item) in doc.paths.paths.iter_mut() {
            if !path.starts_with("/api/v1/") {
                // `/health`, `/ready`: only the error body of the layers (e.g. 405).
                for op in [&mut item.get].into_iter().flatten() {
                    normalize(op);
                    op.responses.responses.entry("default".into()).or_insert_with(|| reference("Error"));
                }
                continue;
            }
            let browser_flow = path.starts_with("/api/v1/oauth/{provider}/");
            let ops = [&mut item.get, &mut item.put, &mut item.post, &mut item.patch, &mut item.delete];
            for op in ops.into_iter().flatten() {
                add_layer_responses(op, browser_flow, global_bearer);
            }
        }
    }
}

fn reference(name: &str) -> RefOr<Response> {
    RefOr::Ref(utoipa::openapi::Ref::from_response_name(name))
}

fn normalize(op: &mut Operation) {
    // The handler names are not unique across modules (`token`, `authorize`…); the operations
    // are told apart by method and path.
    op.operation_id = None;
    // `security(())` reads as `[{}]`: written as `[]`, "no authentication".
    if op.security.as_ref().is_some_and(|reqs| reqs.iter().all(|r| r == &SecurityRequirement::default())) {
        op.security = Some(Vec::new());
    }
    // An `Option<ApiJson<T>>` body (`request_body(content = Option<T>)`) may be left out, but
    // when sent it is a `T`, never `null`: not required, schema `T`.
    if let Some(body) = op.request_body.as_mut() {
        for content in body.content.values_mut() {
            if let Some(RefOr::T(Schema::OneOf(one))) = &content.schema {
                let not_null: Vec<_> =
                    one.items.iter().filter(|s| !matches!(s, RefOr::T(Schema::Object(o)) if o.schema_type == SchemaType::Type(Type::Null))).cloned().collect();
                if not_null.len() == 1 && one.items.len() == 2 {
                    content.schema = not_null.into_iter().next();
                    body.required = Some(Required::False);
                }
            }
        }
    }
}

fn add_layer_responses(op: &mut Operation, browser_flow: bool, global_bearer: bool) {
    normalize(op);
    let authenticated = match &op.security {
        Some(reqs) => !reqs.is_empty() && reqs.iter().all(|r| r != &SecurityRequirement::default()),
        None => global_bearer,
    };
    let has_body = op.request_body.is_some();
    let auth_route = op.tags.as_ref().is_some_and(|t| t.iter().any(|t| t == "auth"));
    let responses = &mut op.responses.responses;
    let mut add = |status: &str, name: &str| {
        responses.entry(status.to_string()).or_insert_with(|| reference(name));
    };
    // `TimeoutLayer` (QETTA_REQUEST_TIMEOUT_SECS), outside every handler.
    add("408", "RequestTimeout");
    // `rate_limit::per_ip` (and `per_user` in the auth extractor).
    add("429", if auth_route { "TooManyAttempts" } else { "RateLimited" });
    if has_body {
        // `DefaultBodyLimit` (QETTA_BODY_LIMIT_BYTES).
        add("413", "PayloadTooLarge");
    }
    if authenticated {
        add("401", "Unauthorized");
    }
    if !browser_flow {
        add("default", "Error");
    }
}

/// This document
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "ops", security(()), responses((status = 200, description = "This document (OpenAPI 3.1)", body = Object)))]
pub async fn openapi_json() -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], document())
}

/// The document as JSON, serialised once.
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| ApiDoc::openapi().to_pretty_json().expect("the OpenAPI document serialises"))
}
