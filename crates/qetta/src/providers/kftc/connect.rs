//! KFTC OpenBanking as a [`Provider`] of the connection core: the consent page (SPEC A5.1), the
//! code exchange (A5.3), the user's accounts after every consent (`user/me`, A8), refresh (A6)
//! and unlink on disconnect.

use std::sync::Arc;

use async_trait::async_trait;
use rand::distributions::{Alphanumeric, DistString};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::client::{KftcClient, KftcRefresher};
use super::model::AccountItem;
use crate::providers::provider::{
    for_browser, Authorization, AuthorizeParams, Callback, ConnectError, Linked, PendingFlow, Provider, ProviderInfo, RevokeTokens, Revoked,
};
use crate::tokens::Refresher;

/// Longest authorization code we pass on (KFTC's are far shorter; SPEC A5.3 gives no length).
const MAX_CODE_LEN: usize = 512;

/// What we keep of an account (no holder name: not needed, and personal).
#[derive(Serialize, Deserialize, Clone, Debug, utoipa::ToSchema)]
pub struct StoredAccount {
    pub fintech_use_num: String,
    pub bank_code: String,
    pub bank_name: String,
    pub account_num_masked: String,
    pub alias: String,
    pub account_type: String,
    pub inquiry_agreed: bool,
}

impl StoredAccount {
    /// The accounts of a `user/me` answer that can be used (a fintech number, not closed: `09`).
    pub fn from_items(items: &[AccountItem]) -> Vec<Self> {
        items
            .iter()
            .filter(|a| !a.fintech_use_num.is_empty() && a.account_state != "09")
            .map(|a| Self {
                fintech_use_num: a.fintech_use_num.clone(),
                bank_code: a.bank_code_std.clone(),
                bank_name: if a.savings_bank_name.is_empty() { a.bank_name.clone() } else { a.savings_bank_name.clone() },
                account_num_masked: a.account_num_masked.clone(),
                alias: a.account_alias.clone(),
                account_type: a.account_type.clone(),
                inquiry_agreed: a.inquiry_agree_yn != "N",
            })
            .collect()
    }

    /// The accounts kept in a connection's metadata.
    /// Read on every account route: typed, straight from the text (no `Value` in between). Other
    /// keys are ignored; unreadable metadata holds no accounts.
    pub fn from_metadata(metadata: &str) -> Vec<Self> {
        #[derive(Deserialize)]
        struct Metadata {
            #[serde(default)]
            accounts: Vec<StoredAccount>,
        }
        serde_json::from_str::<Metadata>(metadata).map(|m| m.accounts).unwrap_or_default()
    }

    /// The metadata of a connection holding `accounts`.
    pub fn metadata(accounts: &[Self]) -> Value {
        json!({ "accounts": accounts })
    }
}

/// How the connection names itself: the first account (bank and masked number) and how many more.
fn display(accounts: &[StoredAccount]) -> Option<String> {
    let first = accounts.first()?;
    let more = if accounts.len() > 1 { format!(" +{}", accounts.len() - 1) } else { String::new() };
    Some(format!("{} {}{more}", first.bank_name, first.account_num_masked).trim().to_string())
}

pub struct KftcProvider {
    client: Arc<KftcClient>,
    info: ProviderInfo,
    /// The scopes asked at consent (`KFTC_SCOPE`).
    scope: String,
    /// The embedded sandbox is called over loopback but browsers reach it at the public URL:
    /// `(loopback prefix, public prefix)` of the consent page.
    browser_prefix: Option<(String, String)>,
}

impl KftcProvider {
    pub fn new(client: Arc<KftcClient>, info: ProviderInfo, scope: String, browser_prefix: Option<(String, String)>) -> Self {
        Self { client, info, scope, browser_prefix }
    }

    pub fn client(&self) -> &Arc<KftcClient> {
        &self.client
    }
}

#[async_trait]
impl Provider for KftcProvider {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    async fn authorize(&self, params: &AuthorizeParams<'_>) -> Result<Authorization, ConnectError> {
        // KFTC's state is 32 characters (SPEC A5.1).
        let state = Alphanumeric.sample_string(&mut rand::rngs::OsRng, 32);
        // auth_type 0: first consent (the user signs in and agrees), 1: renewing the consent of a
        // user KFTC knows (SPEC A5.1).
        let auth_type: u8 = if params.reconsent { 1 } else { 0 };
        let scope = params.scopes.map(|s| s.join(" ")).unwrap_or_else(|| self.scope.clone());
        let url = if params.add_accounts {
            // Accounts added to the consent KFTC already holds for the user (SPEC A5.2).
            self.client.authorize_account_url(&state, &scope, 0)
        } else {
            self.client.authorize_url(&state, &scope, auth_type)
        };
        let url = for_browser(url, self.browser_prefix.as_ref());
        Ok(Authorization { state, url, code_verifier: None, nonce: None, extra: json!({ "auth_type": auth_type }) })
    }

    async fn complete(&self, callback: &Callback, _pending: &PendingFlow) -> Result<Linked, ConnectError> {
        let Some(code) = callback.code.as_ref().filter(|c| !c.expose_secret().is_empty()) else {
            // The error callback (SPEC A5.3 / E2: its format is unconfirmed; both spellings read).
            let provider_code = callback.rsp_code.clone().or(callback.error.clone()).unwrap_or_else(|| "unknown".into());
            let reason = callback.rsp_message.clone().or(callback.error_description.clone()).unwrap_or_default();
            let message =
                if reason.is_empty() { "The bank connection was cancelled.".to_string() } else { format!("The bank connection was not completed: {reason}") };
            return Err(ConnectError::Denied { provider_code, message });
        };
        if code.expose_secret().len() > MAX_CODE_LEN {
            return Err(ConnectError::Callback("The bank returned an invalid authorization code. Start again.".into()));
        }
        let granted = self.client.exchange_code(code.expose_secret()).await?;
        let accounts = match self.client.user_me(&granted.grant.access_token, &granted.user_seq_no).await {
            Ok(me) => StoredAccount::from_items(&me.res_list),
            Err(e) => {
                // The connection stands; the list is read again at the next consent.
                tracing::warn!(error = %e, "user/me failed after connect");
                Vec::new()
            }
        };
        Ok(Linked {
            grant: granted.grant,
            account_id: granted.user_seq_no,
            account_display: display(&accounts),
            metadata: Some(StoredAccount::metadata(&accounts)),
        })
    }

    fn refresher(&self) -> Arc<dyn Refresher> {
        Arc::new(KftcRefresher(self.client.clone()))
    }

    async fn revoke(&self, tokens: &RevokeTokens<'_>) -> Revoked {
        match (tokens.access_token, tokens.account_id) {
            (Some(token), Some(seq)) => match self.client.unlink(token, seq).await {
                Ok(()) => Revoked::ok("kftc_unlink"),
                Err(e) => Revoked::failed("kftc_unlink", &e, e.provider_code()),
            },
            _ => Revoked::failed("kftc_unlink", "no token to unlink with", None),
        }
    }

    /// `user/close` (SPEC A7): the user leaves the service altogether, every consent of theirs
    /// with this 이용기관 ends (unlink only removes the link).
    async fn leave(&self, tokens: &RevokeTokens<'_>) -> Revoked {
        match (tokens.access_token, tokens.account_id) {
            (Some(token), Some(seq)) => match self.client.close_user(token, seq).await {
                Ok(()) => Revoked::ok("kftc_user_close"),
                Err(e) => Revoked::failed("kftc_user_close", &e, e.provider_code()),
            },
            _ => Revoked::failed("kftc_user_close", "no token to close with", None),
        }
    }
}
