//! What can go wrong, classified by what the caller must do about it. No HTTP status of ours is
//! decided here (the HTTP layer maps these later), and no secret (token, code, client secret,
//! code verifier) ever appears in a message: only provider error codes and their descriptions,
//! which are the provider's own words about the request.

use super::settings::SettingsError;

/// Why an ID token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenError {
    #[error("the ID token is not a signed JWT")]
    Malformed,
    /// `none`, HS*, or an algorithm the provider does not advertise.
    #[error("the ID token's algorithm {0:?} is not accepted")]
    Algorithm(String),
    #[error("no key of the provider's JWKS matches the ID token (kid {kid:?})")]
    UnknownKey { kid: Option<String> },
    #[error("the ID token's signature does not verify")]
    Signature,
    #[error("the ID token was issued by another issuer")]
    Issuer,
    #[error("the ID token is not meant for this client (aud)")]
    Audience,
    #[error("the ID token's authorized party (azp) is not this client")]
    AuthorizedParty,
    #[error("the ID token has expired")]
    Expired,
    #[error("the ID token's iat is in the future or after its exp")]
    IssuedAt,
    #[error("the ID token's nonce does not match the one sent")]
    Nonce,
    /// `at_hash` does not match the access token issued with the ID token.
    #[error("the ID token's at_hash does not match the access token")]
    AccessTokenHash,
    #[error("the ID token lacks the {0} claim")]
    MissingClaim(&'static str),
    #[error("the provider's JWKS could not be used: {0}")]
    Jwks(String),
}

/// A failed OAuth 2.0 / OpenID Connect operation.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// The provider's settings are invalid (names the key).
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// Discovery failed or the metadata contradicts the settings (issuer mismatch, an endpoint
    /// over plain http, the configured client authentication not supported…).
    #[error("discovery: {0}")]
    Discovery(String),
    /// The operation needs an endpoint the provider does not have (e.g. userinfo, JWKS).
    #[error("the provider has no {0} endpoint")]
    NoEndpoint(&'static str),

    // ---- the authorization response (callback) ----
    /// The callback's `state` is not the one stored for this flow.
    #[error("the callback's state does not match")]
    StateMismatch,
    /// RFC 9207: the callback's `iss` names another issuer (mix-up attack or misrouting).
    #[error("the callback's iss parameter names another issuer")]
    IssuerMismatch,
    /// RFC 9207: the provider advertises the `iss` parameter but the callback lacks it.
    #[error("the callback lacks the iss parameter the provider advertises")]
    MissingIssuer,
    /// The provider returned `error` to the callback (e.g. `access_denied` when the user
    /// cancelled).
    #[error("the provider refused the authorization: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Authorization { error: String, description: Option<String> },
    #[error("the callback carries neither a code nor an error")]
    MissingCode,

    // ---- token endpoint ----
    /// `invalid_grant`: the code was used, expired or never issued, or the refresh token is
    /// dead (revoked, rotated out, expired). On refresh: the user must consent again.
    #[error("the provider refused the grant (invalid_grant{})", provider_code.as_deref().map(|c| format!(", {c}")).unwrap_or_default())]
    InvalidGrant { description: Option<String>, provider_code: Option<String> },
    /// `invalid_client` / `unauthorized_client`: our registration or secret is wrong.
    #[error("the provider refused our client credentials ({error})")]
    InvalidClient { error: String, description: Option<String> },
    /// Any other OAuth error body (`invalid_request`, `invalid_scope`, `server_error`,
    /// `temporarily_unavailable`, …), on any HTTP status (Naver answers them with 200, D1).
    #[error("the provider answered {error}{}", description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Provider { error: String, description: Option<String>, provider_code: Option<String>, status: u16 },

    // ---- resources ----
    /// The access token was refused by a resource (userinfo): refresh, then retry once.
    #[error("the provider refused the access token")]
    InvalidToken { provider_code: Option<String> },

    #[error(transparent)]
    IdToken(#[from] IdTokenError),

    // ---- transport ----
    #[error("the provider did not answer in time")]
    Timeout,
    #[error("the provider could not be reached")]
    Network,
    #[error("the provider answered HTTP {status}")]
    Http { status: u16 },
    #[error("the provider sent a response we cannot read: {0}")]
    Decode(String),
    #[error("the provider is failing; calls are paused for {retry_after_secs} s")]
    CircuitOpen { retry_after_secs: u64 },
}

impl OAuthError {
    /// The provider's own code (`KOE320`, `invalid_grant`, …), for error bodies and audit.
    pub fn provider_code(&self) -> Option<String> {
        match self {
            Self::InvalidGrant { provider_code, .. } => Some(provider_code.clone().unwrap_or_else(|| "invalid_grant".into())),
            Self::InvalidClient { error, .. } | Self::Authorization { error, .. } => Some(error.clone()),
            Self::Provider { error, provider_code, .. } => Some(provider_code.clone().unwrap_or_else(|| error.clone())),
            Self::InvalidToken { provider_code } => provider_code.clone(),
            _ => None,
        }
    }

    /// Trouble on the provider's side or on the way there: worth trying again later, and counted
    /// against the circuit breaker.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Timeout | Self::Network | Self::CircuitOpen { .. } => true,
            Self::Http { status } => *status >= 500 || *status == 429,
            Self::Provider { error, status, .. } => {
                *status >= 500 || *status == 429 || error == "server_error" || error == "temporarily_unavailable" || error == "slow_down"
            }
            _ => false,
        }
    }

    /// Counts against the circuit breaker (the provider failing, not refusing a request).
    pub(crate) fn is_upstream_failure(&self) -> bool {
        !matches!(self, Self::CircuitOpen { .. }) && self.is_transient()
    }
}

/// Shortens provider-supplied text kept in errors (it is shown and logged).
pub(crate) fn clip(s: &str) -> String {
    const MAX: usize = 200;
    let s = s.trim();
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push('…');
        out
    }
}
