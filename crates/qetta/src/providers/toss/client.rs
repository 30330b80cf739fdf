//! HTTP client for Toss Certification: access token, verification request, status and result.
//!
//! Every `cert.toss.im` answer is the envelope `{resultType, success, error}` (SPEC B1), and
//! failures come with a non-2xx status *and* that envelope, so the body is parsed on any status
//! and the outcome is decided by `resultType`. Errors never carry response bodies: they can hold
//! tokens or personal data.
//!
//! # Security Warning
//!
//! Configure the `reqwest::Client` you pass in with timeouts and without redirects: a redirected
//! POST would carry the bearer token or the client secret to another host.

use std::fmt;

use chrono::{DateTime, FixedOffset};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use tracing::Instrument as _;

use super::crypto::{CryptoError, TossPublicKey, TossSession};

const REQUEST_PATH: &str = "/api/v2/sign/user/auth/id/request";
const STATUS_PATH: &str = "/api/v2/sign/user/auth/id/status";
const RESULT_PATH: &str = "/api/v2/sign/user/auth/id/result";

/// Everything that can go wrong talking to Toss, shaped for the service to map to its own
/// responses. No variant holds a response body, a token or personal data.
#[derive(Debug, thiserror::Error)]
pub enum TossError {
    /// The access token was refused (HTTP 401 or `CE1000`): issue a new token and retry once.
    #[error("Toss rejected the access token")]
    InvalidToken,
    /// `CE3100`: Toss knows no request with this txId.
    #[error("Toss has no such verification request (CE3100)")]
    NotFound,
    /// `CE3102`: the user has not finished in the Toss app yet.
    #[error("the verification is not completed yet (CE3102)")]
    NotCompleted,
    /// `CE3103`: the verification expired; start again from the request.
    #[error("the verification expired (CE3103)")]
    Expired,
    /// `CE3101`: more than two successful result calls, or too late after completion.
    #[error("the result query limit for this verification was exceeded (CE3101)")]
    ResultLimit,
    /// Any other FAIL envelope. `code` is Toss's `CE####` code, `reason` its (Korean) message.
    #[error("Toss answered {code}: {reason}")]
    Provider { code: String, reason: String },
    /// The token endpoint refused the client credentials. Its error format is undocumented
    /// (SPEC B2/E8), so only the status and a well-formed OAuth `error` code are kept.
    #[error("Toss token endpoint answered HTTP {status} (error: {})", .error.as_deref().unwrap_or("none"))]
    TokenRejected { status: u16, error: Option<String> },
    /// A non-2xx answer without a parsable envelope (a proxy or gateway page, for example).
    #[error("Toss answered HTTP {status} without a result envelope")]
    Http { status: u16 },
    #[error("timed out waiting for Toss")]
    Timeout,
    #[error("could not reach Toss")]
    Network(#[source] reqwest::Error),
    /// A success answer that is not the documented JSON. The payload names the response, never
    /// its content (serde messages can quote values).
    #[error("could not decode the Toss {0}")]
    Decode(&'static str),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// An access token from `POST /token`. Reuse it until it expires (no refresh token exists).
#[derive(Debug)]
pub struct TossAccessToken {
    pub access_token: SecretString,
    pub scope: String,
    pub token_type: String,
    /// Lifetime in seconds: one year with test credentials, shorter in production (SPEC B2).
    pub expires_in: u64,
}

/// The person a `USER_PERSONAL` request is for. The caller normalises the values: `phone` as
/// digits only (`01011112222`), `birthday` as `YYYYMMDD`.
pub struct TossUser {
    pub name: String,
    pub phone: String,
    pub birthday: String,
}

impl fmt::Debug for TossUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TossUser { .. }")
    }
}

/// Toss's answer to a verification request.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthRequest {
    /// Identifies the verification in the status and result calls.
    pub tx_id: String,
    pub requested_dt: DateTime<FixedOffset>,
    /// Opens the Toss app's authentication screen. `None` for `USER_NONE`, and for Apps-in-Toss
    /// mini-apps, where Toss literally sends the string `"null"` (pitfall 22).
    #[serde(default, deserialize_with = "null_like")]
    pub app_scheme: Option<String>,
    /// Android Chrome-Intent form of the scheme.
    #[serde(default, deserialize_with = "null_like")]
    pub android_app_uri: Option<String>,
    /// iOS Universal Link form of the scheme.
    #[serde(default, deserialize_with = "null_like")]
    pub ios_app_uri: Option<String>,
}

/// Progress of a verification. `Completed` is not proof: only the result call decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TossAuthStatus {
    Requested,
    InProgress,
    Completed,
    Expired,
    /// A status this client does not know; treat as "still pending" or ask for the result.
    #[serde(other)]
    Unknown,
}

/// Toss's answer to a status call.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthStatus {
    pub tx_id: String,
    pub status: TossAuthStatus,
    pub requested_dt: DateTime<FixedOffset>,
}

/// A completed verification with its personal data already decrypted.
pub struct AuthResult {
    pub tx_id: String,
    /// Base64 DER PKCS#7 SignedData of the user's signature; store it with `tx_id`.
    pub signature: String,
    pub completed_dt: DateTime<FixedOffset>,
    pub requested_dt: DateTime<FixedOffset>,
    pub personal_data: PersonalData,
}

impl fmt::Debug for AuthResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The signature embeds the user's certificate, so only its size is shown.
        f.debug_struct("AuthResult")
            .field("tx_id", &self.tx_id)
            .field("signature_len", &self.signature.len())
            .field("completed_dt", &self.completed_dt)
            .field("requested_dt", &self.requested_dt)
            .field("personal_data", &self.personal_data)
            .finish()
    }
}

/// The verified person. `Debug` prints no values.
///
/// With test credentials Toss returns a fixed fictional person (김토스, 19930324, FEMALE,
/// LOCAL) whoever authenticates (pitfall 20).
pub struct PersonalData {
    /// Connecting information, 88 characters.
    pub ci: String,
    pub name: String,
    /// Digits only. Not in the current docs' field table, so it may be absent (SPEC E12).
    pub phone: Option<String>,
    /// `YYYYMMDD`.
    pub birthday: String,
    /// `MALE` or `FEMALE`.
    pub gender: String,
    /// `LOCAL` or `FOREIGNER`.
    pub nationality: String,
    /// Duplication information.
    pub di: String,
    /// `ADULT` or `MINOR`. A newer field: kept optional so an older-format answer still decodes.
    pub age_group: Option<String>,
    /// Reserved for a re-issued CI after a CI leak; documented as always `null`.
    pub ci2: Option<String>,
}

impl fmt::Debug for PersonalData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PersonalData { [REDACTED] }")
    }
}

/// A Toss Certification client for one partner (client id, secret and Toss RSA key).
///
/// It holds no token: the caller obtains one with [`issue_token`](Self::issue_token), stores
/// and reuses it, and passes it to each call.
pub struct TossClient {
    http: reqwest::Client,
    oauth_base: String,
    api_base: String,
    client_id: String,
    client_secret: SecretString,
    public_key: TossPublicKey,
}

impl fmt::Debug for TossClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TossClient")
            .field("oauth_base", &self.oauth_base)
            .field("api_base", &self.api_base)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl TossClient {
    /// Creates a client.
    ///
    /// `oauth_base` is `https://oauth2.cert.toss.im` and `api_base` `https://cert.toss.im` in
    /// both environments (the credentials choose the environment); a trailing `/` is ignored.
    /// `rsa_public_key_spki_b64` is [`TOSS_PRODUCTION_PUBLIC_KEY`](super::crypto::TOSS_PRODUCTION_PUBLIC_KEY)
    /// against Toss, or the sandbox's own key.
    pub fn new(
        http: reqwest::Client,
        oauth_base: String,
        api_base: String,
        client_id: String,
        client_secret: SecretString,
        rsa_public_key_spki_b64: &str,
    ) -> Result<Self, TossError> {
        Ok(Self {
            http,
            oauth_base: oauth_base.trim_end_matches('/').to_owned(),
            api_base: api_base.trim_end_matches('/').to_owned(),
            client_id,
            client_secret,
            public_key: TossPublicKey::from_spki_base64(rsa_public_key_spki_b64)?,
        })
    }

    /// Issues an access token with the client-credentials grant (`scope=ca`).
    pub async fn issue_token(&self) -> Result<TossAccessToken, TossError> {
        let started = std::time::Instant::now();
        let span = crate::observability::upstream_span("toss", "/token");
        let result = self.issue_token_once().instrument(span.clone()).await;
        crate::observability::upstream_call(&span, "toss", "/token", &outcome(&result), started.elapsed());
        result
    }

    async fn issue_token_once(&self) -> Result<TossAccessToken, TossError> {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose_secret()),
            ("scope", "ca"),
        ];
        let request = crate::observability::traceparent(self.http.post(format!("{}/token", self.oauth_base)));
        let response = request.form(&form).send().await.map_err(transport)?;
        let status = response.status();
        let body = response.bytes().await.map_err(transport)?;
        if status != StatusCode::OK {
            return Err(TossError::TokenRejected { status: status.as_u16(), error: oauth_error_code(&body) });
        }
        let token: WireToken = serde_json::from_slice(&body).map_err(|_| TossError::Decode("token response"))?;
        Ok(TossAccessToken {
            access_token: SecretString::from(token.access_token),
            scope: token.scope,
            token_type: token.token_type,
            expires_in: token.expires_in,
        })
    }

    /// Starts a `USER_PERSONAL` verification: Toss checks the typed-in name, phone and birthday
    /// against the person who authenticates in the app.
    ///
    /// `request_url` is the partner app scheme Toss returns to. The trigger is always
    /// `APP_SCHEME` (the current docs); the legacy `PUSH` trigger is not offered.
    pub async fn request_user_personal(&self, token: &SecretString, request_url: &str, user: &TossUser) -> Result<AuthRequest, TossError> {
        let session = TossSession::generate(&self.public_key)?;
        let body = PersonalRequestBody {
            request_type: "USER_PERSONAL",
            request_url,
            trigger_type: "APP_SCHEME",
            user_name: session.encrypt(&user.name)?,
            user_phone: session.encrypt(&user.phone)?,
            user_birthday: session.encrypt(&user.birthday)?,
            session_key: session.session_key(),
        };
        self.call(token, REQUEST_PATH, &body, "request response").await
    }

    /// Starts a `USER_NONE` (one-touch) verification, where the user needs to type nothing.
    pub async fn request_user_none(&self, token: &SecretString, request_url: &str) -> Result<AuthRequest, TossError> {
        let body = NoneRequestBody { request_type: "USER_NONE", request_url };
        self.call(token, REQUEST_PATH, &body, "request response").await
    }

    /// Asks how far the user has got. Polling is optional; only [`result`](Self::result) is
    /// authoritative.
    pub async fn status(&self, token: &SecretString, tx_id: &str) -> Result<AuthStatus, TossError> {
        self.call(token, STATUS_PATH, &TxIdBody { tx_id }, "status response").await
    }

    /// Fetches and decrypts the result of a completed verification.
    ///
    /// Uses a new session, never the request's (pitfall 14). Toss allows two successful result
    /// calls per txId, within 60 minutes of completion.
    pub async fn result(&self, token: &SecretString, tx_id: &str) -> Result<AuthResult, TossError> {
        let session = TossSession::generate(&self.public_key)?;
        let body = ResultBody { tx_id, session_key: session.session_key() };
        let wire: WireResult = self.call(token, RESULT_PATH, &body, "result response").await?;
        let data = wire.personal_data;
        // Every field must carry this result call's version and session id. SPEC B6's official
        // example shows `di` with another session id; SPEC reads it as a copy/paste artefact of
        // the docs [U] and says real responses use the result request's session for every field,
        // and the official SDK's decrypt() refuses any other id (SPEC B8.1) while it works
        // against Toss. So a field with a foreign session id fails the whole result
        // (`SessionMismatch` → 502 `upstream_invalid`, nothing stored): reading one field with
        // a session it was not made for cannot give the right plaintext, and a result mixing
        // sessions may mix two people's data.
        let optional = |value: Option<String>| value.map(|v| session.decrypt(&v)).transpose();
        Ok(AuthResult {
            tx_id: wire.tx_id,
            signature: wire.signature,
            completed_dt: wire.completed_dt,
            requested_dt: wire.requested_dt,
            personal_data: PersonalData {
                ci: session.decrypt(&data.ci)?,
                name: session.decrypt(&data.name)?,
                phone: optional(data.phone)?,
                birthday: session.decrypt(&data.birthday)?,
                gender: session.decrypt(&data.gender)?,
                nationality: session.decrypt(&data.nationality)?,
                di: session.decrypt(&data.di)?,
                age_group: optional(data.age_group)?,
                ci2: optional(data.ci2)?,
            },
        })
    }

    /// POSTs `body` as JSON with the bearer token and unwraps the result envelope.
    async fn call<B: Serialize, T: DeserializeOwned>(&self, token: &SecretString, path: &str, body: &B, what: &'static str) -> Result<T, TossError> {
        let started = std::time::Instant::now();
        let span = crate::observability::upstream_span("toss", path);
        let result = self.call_once(token, path, body, what).instrument(span.clone()).await;
        crate::observability::upstream_call(&span, "toss", path, &outcome(&result), started.elapsed());
        result
    }

    async fn call_once<B: Serialize, T: DeserializeOwned>(&self, token: &SecretString, path: &str, body: &B, what: &'static str) -> Result<T, TossError> {
        let request = crate::observability::traceparent(self.http.post(format!("{}{path}", self.api_base)));
        let response = request.bearer_auth(token.expose_secret()).json(body).send().await.map_err(transport)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(transport)?;

        let Ok(envelope) = serde_json::from_slice::<Envelope>(&bytes) else {
            return Err(match status {
                StatusCode::UNAUTHORIZED => TossError::InvalidToken,
                s if s.is_success() => TossError::Decode(what),
                s => TossError::Http { status: s.as_u16() },
            });
        };
        match envelope.result_type.as_str() {
            "SUCCESS" => {
                let success = envelope.success.ok_or(TossError::Decode(what))?;
                serde_json::from_value(success).map_err(|_| TossError::Decode(what))
            }
            "FAIL" => Err(failure(status, envelope.error)),
            _ if status.is_success() => Err(TossError::Decode(what)),
            _ => Err(TossError::Http { status: status.as_u16() }),
        }
    }
}

/// A short label of a call's result for metrics: `ok`, or the error's kind.
fn outcome<T>(result: &Result<T, TossError>) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(TossError::InvalidToken) => "invalid_token".into(),
        Err(TossError::NotFound) => "not_found".into(),
        Err(TossError::NotCompleted) => "not_completed".into(),
        Err(TossError::Expired) => "expired".into(),
        Err(TossError::ResultLimit) => "result_limit".into(),
        Err(TossError::Provider { code, .. }) => code.clone(),
        Err(TossError::TokenRejected { status, .. }) => format!("token_rejected_{status}"),
        Err(TossError::Http { status }) => format!("http_{status}"),
        Err(TossError::Timeout) => "timeout".into(),
        Err(TossError::Network(_)) => "network".into(),
        Err(TossError::Decode(_)) => "decode".into(),
        Err(_) => "error".into(),
    }
}

/// Maps a FAIL envelope to an error. HTTP 401 always means the token, whatever the code says.
fn failure(status: StatusCode, error: Option<WireError>) -> TossError {
    if status == StatusCode::UNAUTHORIZED {
        return TossError::InvalidToken;
    }
    let Some(WireError { error_code: Some(code), reason }) = error else {
        return if status.is_success() { TossError::Decode("error envelope") } else { TossError::Http { status: status.as_u16() } };
    };
    // CE3101 and CE3103 come from a third-party mapping only (SPEC B9 [U]); CE1001 is left as a
    // generic failure because its meaning is unknown.
    match code.as_str() {
        "CE1000" => TossError::InvalidToken,
        "CE3100" => TossError::NotFound,
        "CE3101" => TossError::ResultLimit,
        "CE3102" => TossError::NotCompleted,
        "CE3103" => TossError::Expired,
        _ => TossError::Provider { code, reason: reason.unwrap_or_default() },
    }
}

fn transport(err: reqwest::Error) -> TossError {
    if err.is_timeout() {
        TossError::Timeout
    } else {
        TossError::Network(err)
    }
}

/// The OAuth `error` code of a token-endpoint failure, if the body has one that looks like an
/// OAuth code (`invalid_client`). Anything else is dropped rather than risk keeping a secret.
fn oauth_error_code(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct OAuthError {
        error: Option<String>,
    }
    let code = serde_json::from_slice::<OAuthError>(body).ok()?.error?;
    let well_formed = !code.is_empty() && code.len() <= 64 && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    well_formed.then_some(code)
}

/// Reads an optional string where Toss may send JSON `null`, `"null"` or `""` for "no value".
fn null_like<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let value = Option::<String>::deserialize(deserializer)?;
    Ok(value.filter(|v| !v.is_empty() && !v.eq_ignore_ascii_case("null")))
}

#[derive(Deserialize)]
struct WireToken {
    access_token: String,
    scope: String,
    token_type: String,
    expires_in: u64,
}

/// The result envelope; `success` stays raw so that a malformed payload is a `Decode` error
/// rather than a missing envelope.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    result_type: String,
    #[serde(default)]
    success: Option<serde_json::Value>,
    #[serde(default)]
    error: Option<WireError>,
}

/// The used part of `error`; `errorType` (always 0 in the docs), `data` and `title` are ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireError {
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PersonalRequestBody<'a> {
    request_type: &'static str,
    request_url: &'a str,
    trigger_type: &'static str,
    user_name: String,
    user_phone: String,
    user_birthday: String,
    session_key: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NoneRequestBody<'a> {
    request_type: &'static str,
    request_url: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TxIdBody<'a> {
    tx_id: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResultBody<'a> {
    tx_id: &'a str,
    session_key: &'a str,
}

/// `status`, `userIdentifier`, `userCiToken` and `randomValue` are ignored (documented unused).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireResult {
    tx_id: String,
    signature: String,
    completed_dt: DateTime<FixedOffset>,
    requested_dt: DateTime<FixedOffset>,
    personal_data: WirePersonalData,
}

/// Encrypted personal data. `ciUpdate` (always `null`, meaning undocumented) and the optional
/// address/email fields one library reports are ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePersonalData {
    ci: String,
    name: String,
    #[serde(default, deserialize_with = "null_like")]
    phone: Option<String>,
    birthday: String,
    gender: String,
    nationality: String,
    di: String,
    #[serde(default, deserialize_with = "null_like")]
    age_group: Option<String>,
    #[serde(default, deserialize_with = "null_like")]
    ci2: Option<String>,
}
