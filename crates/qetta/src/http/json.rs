//! `ApiJson<T>`: axum's `Json` with our error bodies (400 for malformed JSON, 422 for JSON of the
//! wrong shape, 415 for a missing content type).

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            // Over `QETTA_BODY_LIMIT_BYTES` (declared by Content-Length or found while reading).
            Err(r) if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::PayloadTooLarge("The request body is too large.".into())),
            Err(JsonRejection::JsonSyntaxError(_)) => Err(ApiError::bad_request("malformed_json", "The request body is not valid JSON.")),
            Err(JsonRejection::JsonDataError(e)) => Err(ApiError::invalid("invalid_body", describe_data_error(&e.body_text()))),
            Err(JsonRejection::MissingJsonContentType(_)) => {
                Err(ApiError::bad_request("unsupported_media_type", "Send the body as JSON with Content-Type: application/json."))
            }
            Err(JsonRejection::BytesRejection(_)) => Err(ApiError::bad_request("unreadable_body", "The request body could not be read (it may be too large).")),
            Err(_) => Err(ApiError::bad_request("malformed_json", "The request body is not valid JSON.")),
        }
    }
}

/// serde's message without axum's prefix, e.g. "missing field `email` at line 1 column 2".
fn describe_data_error(text: &str) -> String {
    let detail = text.split_once(": ").map(|(_, d)| d).unwrap_or(text);
    format!("The request body has the wrong shape: {detail}.")
}

/// `Option<ApiJson<T>>`: `None` for a request without a body (no content type, no length).
impl<T, S> axum::extract::OptionalFromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, Self::Rejection> {
        let headers = req.headers();
        let no_type = !headers.contains_key(axum::http::header::CONTENT_TYPE);
        let no_length = headers.get(axum::http::header::CONTENT_LENGTH).is_none_or(|l| l.as_bytes() == b"0");
        let chunked = headers.contains_key(axum::http::header::TRANSFER_ENCODING);
        if no_type && no_length && !chunked {
            return Ok(None);
        }
        <Self as FromRequest<S>>::from_request(req, state).await.map(Some)
    }
}

/// For optional body fields that may be left out but not sent as `null` (as the OpenAPI document
/// says): `#[serde(default, deserialize_with = "crate::http::json::not_null")]`.
pub fn not_null<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}
