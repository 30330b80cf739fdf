//! What a started browser flow keeps with its `state` until the callback (the state's
//! `flow_data`, JSON): the provider's consent page, the PKCE verifier sealed with the vault (bound
//! to the state and provider), the OIDC nonce, the provider's own extra, and what the caller asked
//! for (label, the connection being re-consented).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::providers::provider::{Authorization, PendingFlow};
use crate::vault::{Aad, Vault, VaultError};

#[derive(Serialize, Deserialize, Default)]
pub struct FlowData {
    /// The provider's consent page for this state.
    pub url: String,
    /// The sealed PKCE verifier, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verifier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub extra: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The connection whose consent is renewed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<String>,
}

fn verifier_aad<'a>(state: &'a str, provider: &'a str) -> Aad<'a> {
    Aad { row: state, scope: provider, field: "code_verifier" }
}

impl FlowData {
    pub fn new(vault: &Vault, provider: &str, a: &Authorization, label: Option<String>, connection_id: Option<String>) -> Self {
        let verifier = a.code_verifier.as_ref().map(|v| STANDARD.encode(vault.seal_str(v.expose_secret(), verifier_aad(&a.state, provider))));
        Self { url: a.url.clone(), verifier, nonce: a.nonce.clone(), extra: a.extra.clone(), label, connection_id }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("flow data serialises")
    }

    /// The flow data of a stored state (`None` for a state written by an older version, which
    /// held KFTC's auth_type only: it has no consent URL to go on with).
    pub fn parse(raw: Option<&str>) -> Option<Self> {
        raw.and_then(|r| serde_json::from_str::<Self>(r).ok()).filter(|d| !d.url.is_empty())
    }

    /// What the provider needs back at the callback.
    pub fn pending(&self, vault: &Vault, state: &str, provider: &str) -> Result<PendingFlow, VaultError> {
        let code_verifier = match &self.verifier {
            Some(b64) => {
                let sealed = STANDARD.decode(b64).map_err(|_| VaultError::Malformed)?;
                Some(vault.open_string(&sealed, verifier_aad(state, provider))?)
            }
            None => None,
        };
        Ok(PendingFlow { state: state.to_string(), code_verifier, nonce: self.nonce.clone(), extra: self.extra.clone() })
    }
}
