//! The generic OAuth 2.0 / OpenID Connect client as a [`Provider`] of the connection core
//! (Kakao, Naver and every provider of the TOML catalogue).

use std::sync::Arc;

use async_trait::async_trait;
use secrecy::ExposeSecret;

use super::client::{CallbackParams, OAuthClient, OAuthRefresher, PendingAuthorization, Revocation, TokenHint};
use super::error::OAuthError;
use crate::mask::mask_display;
use crate::providers::provider::{
    for_browser, Authorization, AuthorizeParams, Callback, ConnectError, Linked, PendingFlow, Provider, ProviderInfo, RevokeTokens, Revoked,
};
use crate::tokens::Refresher;

pub struct OAuthProvider {
    client: Arc<OAuthClient>,
    info: ProviderInfo,
    /// The embedded sandbox is called over loopback but browsers reach it at the public URL:
    /// `(loopback prefix, public prefix)` of the consent page.
    browser_prefix: Option<(String, String)>,
}

impl OAuthProvider {
    pub fn new(client: Arc<OAuthClient>, info: ProviderInfo, browser_prefix: Option<(String, String)>) -> Self {
        Self { client, info, browser_prefix }
    }

    pub fn client(&self) -> &Arc<OAuthClient> {
        &self.client
    }
}

#[async_trait]
impl Provider for OAuthProvider {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    async fn authorize(&self, params: &AuthorizeParams<'_>) -> Result<Authorization, ConnectError> {
        if params.add_accounts {
            return Err(ConnectError::Callback(format!("{} has no page for adding accounts to a connection.", self.info.display_name)));
        }
        let request = self.client.authorize_with_scopes(params.scopes, &[]).await?;
        let url = for_browser(request.url, self.browser_prefix.as_ref());
        let p = request.pending;
        Ok(Authorization { state: p.state, url, code_verifier: p.code_verifier, nonce: p.nonce, extra: serde_json::Value::Null })
    }

    async fn complete(&self, callback: &Callback, pending: &PendingFlow) -> Result<Linked, ConnectError> {
        let params = CallbackParams {
            code: callback.code.clone(),
            state: callback.state.clone(),
            iss: callback.iss.clone(),
            error: callback.error.clone(),
            error_description: callback.error_description.clone(),
        };
        let pending = PendingAuthorization { state: pending.state.clone(), code_verifier: pending.code_verifier.clone(), nonce: pending.nonce.clone() };
        let code = match self.client.callback(&params, &pending).await {
            Ok(code) => code,
            Err(OAuthError::Authorization { error, description }) => {
                let message = match error.as_str() {
                    "access_denied" => format!("The connection to {} was cancelled.", self.info.display_name),
                    _ => format!("{} refused the connection ({error}).", self.info.display_name),
                };
                tracing::info!(provider = %self.info.name, error, description = description.as_deref().unwrap_or(""), "authorization refused at the provider");
                return Err(ConnectError::Denied { provider_code: error, message });
            }
            Err(e) => return Err(e.into()),
        };
        let tokens = self.client.exchange_code(&code, &pending).await?;
        let sub = tokens.claims.as_ref().map(|c| c.sub.clone());
        // The profile names the account (and, without OpenID Connect, is the only source of its
        // id). With an ID token it is best effort: its `sub` already identifies the account.
        let has_userinfo = self.client.provider().await.map(|p| p.userinfo_url.is_some()).unwrap_or(false);
        let profile = if has_userinfo {
            match self.client.user_info(&tokens.grant.access_token, sub.as_deref()).await {
                Ok(p) => Some(p),
                Err(e) if sub.is_some() && !matches!(e, OAuthError::IdToken(_)) => {
                    tracing::warn!(provider = %self.info.name, error = %e, "the profile could not be read after connecting; the ID token names the account");
                    None
                }
                Err(e) => return Err(e.into()),
            }
        } else {
            None
        };
        let account_id = match (sub, &profile) {
            (Some(sub), _) => sub,
            (None, Some(p)) => p.subject.clone(),
            (None, None) => return Err(OAuthError::NoEndpoint("userinfo").into()),
        };
        let label = profile
            .as_ref()
            .and_then(|p| p.label.clone())
            .or_else(|| tokens.claims.as_ref().and_then(|c| c.email.clone().or(c.nickname.clone()).or(c.name.clone())));
        Ok(Linked { grant: tokens.grant, account_id, account_display: label.as_deref().map(mask_display).filter(|d| !d.is_empty()), metadata: None })
    }

    fn refresher(&self) -> Arc<dyn Refresher> {
        Arc::new(OAuthRefresher(self.client.clone()))
    }

    async fn revoke(&self, tokens: &RevokeTokens<'_>) -> Revoked {
        // The provider's own unlink ends the whole grant where there is one (Kakao).
        if let Some(access) = tokens.access_token {
            match self.client.unlink(access).await {
                Ok(Revocation::Revoked) => return Revoked::ok("unlink"),
                Ok(Revocation::NotSupported) => {}
                Err(e) => return Revoked::failed("unlink", &e, e.provider_code()),
            }
        }
        // RFC 7009: revoking the refresh token ends the grant (§2.1); the access token too, for
        // providers that keep it alive until it expires.
        let mut outcome = Revoked { ok: true, method: "not_supported".into(), error: None, provider_code: None };
        for (token, hint) in [(tokens.refresh_token, TokenHint::RefreshToken), (tokens.access_token, TokenHint::AccessToken)] {
            let Some(token) = token.filter(|t| !t.expose_secret().is_empty()) else { continue };
            match self.client.revoke(token, hint).await {
                Ok(Revocation::Revoked) => outcome.method = "rfc7009".into(),
                Ok(Revocation::NotSupported) => return outcome,
                Err(e) => return Revoked::failed("rfc7009", &e, e.provider_code()),
            }
        }
        outcome
    }
}
