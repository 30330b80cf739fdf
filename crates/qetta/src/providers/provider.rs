//! What every provider a user connects in the browser implements: the [`Provider`] trait of the
//! connection core (`crate::connections`). KFTC (`kftc::connect`) and the generic OAuth 2.0 /
//! OpenID Connect client (`oauth2::connect`, Kakao and Naver included) are its implementations;
//! Toss, a client-credentials provider with identity verification on top, is in the catalogue
//! but has no per-user grant (see `crate::toss_service`).

use std::sync::Arc;

use async_trait::async_trait;
use secrecy::SecretString;
use serde::Serialize;
use serde_json::Value;

use crate::tokens::{Grant, Refresher};

/// How a provider is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// KFTC OpenBanking: authorization code with the bank consent (SPEC A5).
    Kftc,
    /// A generic OAuth 2.0 provider (authorization code, PKCE).
    Oauth2,
    /// OAuth 2.0 with OpenID Connect (ID tokens validated).
    Oidc,
    /// Client credentials: one service token, no per-user connection (Toss).
    ClientCredentials,
}

/// A provider as the catalogue lists it.
#[derive(Debug, Clone)]
pub struct ProviderInfo {
    /// The name in routes (`kftc`, `kakao`, `acme`): letters, digits, `-`, `_`.
    pub name: String,
    pub display_name: String,
    /// The Korean name, for the confirmation page (the display name when none is known).
    pub display_name_ko: String,
    pub kind: ProviderKind,
    /// Served by the embedded sandbox.
    pub sandbox: bool,
    /// What the proxy may call (`None`: the provider has no proxy).
    pub api_base: Option<String>,
    /// The scopes asked for when the caller names none.
    pub default_scopes: Vec<String>,
    /// The scopes a caller may ask for (a subset of these).
    pub allowed_scopes: Vec<String>,
}

/// What the caller of `authorize` asked for.
pub struct AuthorizeParams<'a> {
    /// The scopes to ask for instead of the default ones (already checked against
    /// [`ProviderInfo::allowed_scopes`]).
    pub scopes: Option<&'a [String]>,
    /// Renewing the consent of an existing connection (KFTC: `auth_type=1`, SPEC A5.1).
    pub reconsent: bool,
    /// Adding accounts to the consent of an existing connection (KFTC `authorize_account`,
    /// SPEC A5.2); providers without such a page refuse it.
    pub add_accounts: bool,
}

/// A started authorization: the provider's consent page for the browser, and what the callback
/// will need, kept with the state until then.
pub struct Authorization {
    /// The `state` in `url` (unguessable, single use).
    pub state: String,
    /// Where the browser consents (on the embedded sandbox: the address browsers use).
    pub url: String,
    /// The PKCE verifier (sealed with the vault when stored).
    pub code_verifier: Option<SecretString>,
    /// The OIDC nonce.
    pub nonce: Option<String>,
    /// The provider's own extra (KFTC: `auth_type`), kept with the state.
    pub extra: Value,
}

/// A consent page of the embedded sandbox as browsers reach it: the service calls the simulator
/// over loopback, browsers at the public URL. `prefix` is `(loopback prefix, public prefix)`;
/// any other URL (a real provider's) is returned as it is.
pub fn for_browser(url: String, prefix: Option<&(String, String)>) -> String {
    match prefix {
        Some((inner, public)) if url.starts_with(inner.as_str()) => format!("{public}{}", &url[inner.len()..]),
        _ => url,
    }
}

/// The state's flow data handed back to the provider at the callback.
pub struct PendingFlow {
    pub state: String,
    pub code_verifier: Option<SecretString>,
    pub nonce: Option<String>,
    pub extra: Value,
}

/// The query the provider sent the browser back with. Each provider reads its own fields.
#[derive(Default)]
pub struct Callback {
    pub code: Option<SecretString>,
    pub state: Option<String>,
    /// RFC 9207.
    pub iss: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
    /// KFTC's error callback (SPEC A5.3: its format is unconfirmed, both spellings are read).
    pub rsp_code: Option<String>,
    pub rsp_message: Option<String>,
    /// KFTC: the scope granted.
    pub scope: Option<String>,
}

/// A completed consent: the grant and the provider account it belongs to.
pub struct Linked {
    pub grant: Grant,
    /// The provider's stable id of the account (KFTC `user_seq_no`, OIDC `sub`): connecting it
    /// again updates the same connection.
    pub account_id: String,
    /// The account as shown to the user, masked (a nickname, a masked email, "2 bank accounts").
    pub account_display: Option<String>,
    /// What the provider said about the account that the connection keeps (KFTC: its bank
    /// accounts, without holder names), as the connection's metadata.
    pub metadata: Option<Value>,
}

/// What a revocation at the provider did; recorded in the audit entry of the disconnect.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Revoked {
    pub ok: bool,
    /// `rfc7009`, `kakao_unlink`, `kftc_unlink`, `not_supported`…
    pub method: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub provider_code: Option<String>,
}

impl Revoked {
    pub fn ok(method: &str) -> Self {
        Self { ok: true, method: method.into(), error: None, provider_code: None }
    }
    pub fn failed(method: &str, error: impl std::fmt::Display, provider_code: Option<String>) -> Self {
        Self { ok: false, method: method.into(), error: Some(error.to_string()), provider_code }
    }
}

/// The tokens of a connection being removed, opened for the revocation.
pub struct RevokeTokens<'a> {
    pub access_token: Option<&'a SecretString>,
    pub refresh_token: Option<&'a SecretString>,
    pub account_id: Option<&'a str>,
}

/// Why connecting failed; turned into the callback page's code and message in one place
/// (`impl From<ConnectError> for ApiError`).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The user declined at the provider, or the provider refused the authorization.
    #[error("{message}")]
    Denied { provider_code: String, message: String },
    /// The callback does not fit the flow (another issuer, a missing code).
    #[error("{0}")]
    Callback(String),
    #[error(transparent)]
    Kftc(#[from] super::kftc::KftcError),
    #[error(transparent)]
    OAuth(#[from] super::oauth2::OAuthError),
}

/// A provider whose users connect their account in the browser (authorization code).
#[async_trait]
pub trait Provider: Send + Sync {
    fn info(&self) -> &ProviderInfo;

    /// The consent page for a new flow.
    async fn authorize(&self, params: &AuthorizeParams<'_>) -> Result<Authorization, ConnectError>;

    /// The callback: checks what the provider sent back against the flow, exchanges the code
    /// (never retried once it may have reached the provider) and finds out whose account it is.
    async fn complete(&self, callback: &Callback, pending: &PendingFlow) -> Result<Linked, ConnectError>;

    /// The refresh call the token manager uses for this provider's connections.
    fn refresher(&self) -> Arc<dyn Refresher>;

    /// Best effort: ends the grant at the provider (RFC 7009, or its own unlink).
    async fn revoke(&self, tokens: &RevokeTokens<'_>) -> Revoked;

    /// The user deletes their Qetta account: leave the provider altogether where it has a call
    /// for it (KFTC `user/close`, SPEC A7); elsewhere the same as [`Provider::revoke`].
    async fn leave(&self, tokens: &RevokeTokens<'_>) -> Revoked {
        self.revoke(tokens).await
    }
}
