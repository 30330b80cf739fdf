//! A generic OAuth 2.0 / OpenID Connect client: any provider by configuration, Kakao and Naver
//! included through presets and profile hooks (`docs/oauth-providers.md`, parts K, N, D, G).
//!
//! What it guarantees:
//! - the authorization-code grant only, with PKCE S256 whenever the provider does not say it
//!   lacks it (never `plain`), a fresh unguessable `state`, and a `nonce` with OIDC;
//! - discovery fetched once, its `issuer` equal to the configured one; endpoints https (plain
//!   http only to loopback);
//! - callbacks checked for the RFC 9207 `iss` (a present one must match; required when
//!   advertised) before the provider's `error` is believed;
//! - token calls never retried once they may have reached the provider (only connect failures
//!   are), `invalid_grant` on refresh reported as a dead grant, 5xx and time-outs as transient;
//! - ID tokens verified by JWKS (RS256/ES256; `none` and HS* refused), `iss`, `aud`, `azp`,
//!   `exp`, `iat`, `nonce`; an unknown `kid` refetches the JWKS once, rate-limited;
//! - the documented deviations absorbed (errors on HTTP 200, `expires_in` as a string, a
//!   missing `token_type`, comma-separated scopes, refreshes without a new refresh token);
//! - secrets (client secret, tokens, codes, verifiers) are `SecretString`s, never logged nor put
//!   in errors.
//!
//! [`OAuthProvider`] makes it a provider of the connection core (`crate::connections`), which
//! keeps the pending authorization with the state and registers [`OAuthRefresher`] with the token
//! manager.

pub mod client;
pub mod connect;
pub mod discovery;
pub mod error;
pub mod id_token;
pub mod jwks;
pub mod pkce;
pub mod settings;
pub mod token;
pub mod userinfo;

mod transport;

pub use client::{refresh_error, AuthorizationRequest, CallbackParams, OAuthClient, OAuthRefresher, PendingAuthorization, Revocation, TokenHint, TokenSet};
pub use connect::OAuthProvider;
pub use discovery::{ProviderMetadata, ResolvedProvider};
pub use error::{IdTokenError, OAuthError};
pub use id_token::IdTokenClaims;
pub use settings::{ClientAuth, Endpoints, OAuthSettings, ProfileKind, SettingsError};
pub use userinfo::UserInfo;

#[cfg(test)]
mod tests;
