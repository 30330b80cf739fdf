//! The connection core: a connection is (user, provider, provider account) with an id, a label,
//! a state (`active`, `needs_reauth`, `consent_expired`, `revoked`) and its encrypted tokens.
//! [`ConnectionService`] sits between the HTTP layer and the providers: it starts and finishes
//! browser flows for every [`Provider`] of the [`Catalogue`], lists, renames and removes
//! connections (revoking at the provider first), and hands out fresh tokens through the one
//! [`TokenManager`] (refresh once across replicas).
//!
//! A user may hold several connections to one provider (two Kakao accounts, a personal and a
//! business bank consent); connecting the same provider account again (same KFTC `user_seq_no`,
//! same `sub`) updates that connection instead of creating a duplicate.

pub mod catalogue;
pub mod flow_data;
pub mod proxy;

use std::sync::Arc;

use secrecy::SecretString;
use serde_json::{json, Value};

use crate::clock::Clock;
use crate::events::{self, Event};
use crate::providers::provider::{AuthorizeParams, Callback, ConnectError, Provider, ProviderInfo, RevokeTokens, Revoked};
use crate::store::connections::{self, Connection};
use crate::store::oauth_states::OAuthState;
use crate::store::{audit, users, Db, StoreError};
use crate::tokens::{aad, AccessToken, Link, TokenError, TokenManager};
use crate::vault::{Vault, VaultError};
pub use catalogue::{Catalogue, Listed};
pub use flow_data::FlowData;

/// Longest label, in characters.
pub const MAX_LABEL_CHARS: usize = 64;
/// Most scopes one authorize may ask for.
const MAX_SCOPES: usize = 32;

/// Everything the connection service refuses or fails at; made into HTTP in one place
/// (`impl From<ConnectionError> for ApiError` in `crate::error`).
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("There is no provider {0:?} on this server.")]
    UnknownProvider(String),
    /// Known but neither configured nor simulated here.
    #[error("{0} is not configured on this server.")]
    NotConfigured(String),
    /// In the catalogue, but not connected in the browser (Toss: client credentials).
    #[error("{0} has no user connection; use its own routes.")]
    NotConnectable(String),
    #[error("No such connection.")]
    NotFound,
    #[error("{0}")]
    NotSupported(String),
    #[error("{0}")]
    InvalidLabel(String),
    #[error("{0}")]
    InvalidScopes(String),
    /// The flow's stored data is unreadable (written by an older version, or altered).
    #[error("This connection attempt cannot be completed; start again.")]
    FlowInvalid,
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("a stored value cannot be decrypted: {0}")]
    Vault(#[from] VaultError),
    /// The audit entry of an operation that is never unaudited could not be written.
    #[error("the audit log cannot be written")]
    AuditUnavailable,
}

/// What `authorize` asked for.
#[derive(Default)]
pub struct StartRequest {
    pub label: Option<String>,
    pub scopes: Option<Vec<String>>,
    /// Renew the consent of this connection of the caller's.
    pub connection_id: Option<String>,
    /// Add accounts to that connection's consent (KFTC only).
    pub add_accounts: bool,
}

/// A started flow: the state to store (with its flow data) and the consent page.
pub struct Started {
    pub state: String,
    pub flow_data: FlowData,
    /// The connection whose consent is renewed.
    pub reconsent: Option<String>,
}

/// A finished flow.
pub struct Connected {
    pub connection: Connection,
    pub created: bool,
}

/// Who asks for an operation, for its audit entry.
pub struct Actor {
    /// `user:ID`, `backend`, `admin:ID`.
    pub name: String,
    pub ip: Option<String>,
}

/// A removed connection.
pub struct Disconnected {
    pub connection: Connection,
    pub revoked: Revoked,
}

pub struct ConnectionService {
    catalogue: Catalogue,
    tokens: Arc<TokenManager>,
    db: Db,
    vault: Vault,
    clock: Arc<dyn Clock>,
}

/// A label as given: trimmed, at most [`MAX_LABEL_CHARS`], no control characters; empty = none.
pub fn clean_label(label: Option<&str>) -> Result<Option<String>, ConnectionError> {
    let Some(l) = label.map(str::trim).filter(|l| !l.is_empty()) else { return Ok(None) };
    if l.chars().count() > MAX_LABEL_CHARS {
        return Err(ConnectionError::InvalidLabel(format!("label may have at most {MAX_LABEL_CHARS} characters.")));
    }
    if l.chars().any(|c| c.is_control() || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')) {
        return Err(ConnectionError::InvalidLabel("label may not contain control or invisible characters.".into()));
    }
    Ok(Some(l.to_string()))
}

impl ConnectionService {
    pub fn new(catalogue: Catalogue, tokens: Arc<TokenManager>, db: Db, vault: Vault, clock: Arc<dyn Clock>) -> Self {
        Self { catalogue, tokens, db, vault, clock }
    }

    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// The connectable provider `name`, or why not.
    pub fn provider(&self, name: &str) -> Result<&Arc<dyn Provider>, ConnectionError> {
        if let Some(p) = self.catalogue.get(name) {
            return Ok(p);
        }
        match self.catalogue.entry(name) {
            Some(l) if l.kind == crate::providers::ProviderKind::ClientCredentials => Err(ConnectionError::NotConnectable(l.display_name.clone())),
            Some(l) => Err(ConnectionError::NotConfigured(l.name.clone())),
            None => Err(ConnectionError::UnknownProvider(name.chars().take(40).collect())),
        }
    }

    pub async fn list(&self, user_id: &str) -> Result<Vec<Connection>, ConnectionError> {
        Ok(connections::list_for_user(&self.db, user_id).await?)
    }

    /// The caller's connection `id`: another user's is "not found", like one that does not exist.
    pub async fn get(&self, user_id: &str, id: &str) -> Result<Connection, ConnectionError> {
        if id.len() > 64 {
            return Err(ConnectionError::NotFound);
        }
        connections::get_for_user(&self.db, user_id, id).await?.ok_or(ConnectionError::NotFound)
    }

    /// For the provider's own routes (`/api/v1/oauth/kftc/*`): the connection named by
    /// `?connection_id=` (it must be the caller's and that provider's), else the caller's default
    /// one (the newest whose grant stands).
    pub async fn pick(&self, user_id: &str, provider: &str, connection_id: Option<&str>) -> Result<Connection, ConnectionError> {
        match connection_id {
            Some(id) => match self.get(user_id, id).await {
                Ok(c) if c.provider == provider => Ok(c),
                Ok(_) | Err(ConnectionError::NotFound) => Err(ConnectionError::NotFound),
                Err(e) => Err(e),
            },
            None => connections::default_for(&self.db, user_id, provider).await?.ok_or(ConnectionError::Token(TokenError::NotConnected)),
        }
    }

    pub async fn rename(&self, user_id: &str, id: &str, label: Option<&str>) -> Result<Connection, ConnectionError> {
        let label = clean_label(label)?;
        let now = self.clock.now();
        let mut w = self.db.begin_write().await?;
        let work = async {
            if !connections::set_label(&mut *w.tx, user_id, id, label.as_deref(), now).await? {
                return Ok(None);
            }
            let c = connections::read_by_id(&mut *w.tx, id, false).await?.ok_or(StoreError::NotFound)?;
            events::enqueue_in(&mut w, &Event::updated(&c, &["label"]), now).await?;
            Ok(Some(c))
        }
        .await;
        let c = w.finish(work).await?.ok_or(ConnectionError::NotFound)?;
        self.tokens.webhooks().wake();
        Ok(c)
    }

    /// The provider says the connection's grant or consent is gone (`status`: needs_reauth,
    /// consent_expired): recorded with its event, once (a connection already in that state
    /// raises nothing).
    pub async fn mark_status(&self, c: &Connection, status: &str) -> Result<(), ConnectionError> {
        let now = self.clock.now();
        let mut w = self.db.begin_write().await?;
        let work = async {
            if connections::change_status(&mut *w.tx, &c.id, status, now).await? {
                events::enqueue_in(&mut w, &Event::needs_reauth(c, status), now).await?;
            }
            Ok(())
        }
        .await;
        w.finish(work).await?;
        self.tokens.webhooks().wake();
        Ok(())
    }

    /// The KFTC accounts of a connection changed (read again, one removed): stored with its event.
    pub async fn set_accounts(&self, c: &Connection, metadata: &Value) -> Result<Connection, ConnectionError> {
        let now = self.clock.now();
        let mut w = self.db.begin_write().await?;
        let work = async {
            connections::set_metadata(&mut *w.tx, &c.id, metadata, now).await?;
            let c = connections::read_by_id(&mut *w.tx, &c.id, false).await?.ok_or(StoreError::NotFound)?;
            events::enqueue_in(&mut w, &Event::updated(&c, &["accounts"]), now).await?;
            Ok(c)
        }
        .await;
        let c = w.finish(work).await?;
        self.tokens.webhooks().wake();
        Ok(c)
    }

    /// Starts a browser flow for `user_id` at `provider`.
    pub async fn start(&self, user_id: &str, provider: &str, req: StartRequest) -> Result<Started, ConnectionError> {
        let p = self.provider(provider)?;
        let info = p.info();
        let label = clean_label(req.label.as_deref())?;
        let scopes = match &req.scopes {
            Some(s) => Some(check_scopes(info, s)?),
            None => None,
        };
        let reconsent = match &req.connection_id {
            Some(id) => {
                let c = self.get(user_id, id).await?;
                if c.provider != provider {
                    return Err(ConnectionError::NotFound);
                }
                Some(c.id)
            }
            None => None,
        };
        // A JWT minted by the app's backend may name a user this service has not seen yet.
        users::ensure_external(&self.db, user_id, self.clock.now()).await?;
        if req.add_accounts && (info.kind != crate::providers::ProviderKind::Kftc || reconsent.is_none()) {
            return Err(ConnectionError::NotSupported("Accounts are added to an existing KFTC connection only.".into()));
        }
        let authorization = p.authorize(&AuthorizeParams { scopes: scopes.as_deref(), reconsent: reconsent.is_some(), add_accounts: req.add_accounts }).await?;
        let flow_data = FlowData::new(&self.vault, provider, &authorization, label, reconsent.clone());
        Ok(Started { state: authorization.state, flow_data, reconsent })
    }

    /// Finishes the flow of `pending` (its state already consumed and its browser checked by the
    /// HTTP layer): the provider checks the callback and exchanges the code, then the grant is
    /// stored on the connection of that provider account, with its audit entry.
    pub async fn finish(&self, pending: &OAuthState, callback: &Callback, ip: Option<String>) -> Result<Connected, ConnectionError> {
        let p = self.provider(&pending.provider)?;
        let data = FlowData::parse(pending.flow_data.as_deref()).ok_or(ConnectionError::FlowInvalid)?;
        let flow = data.pending(&self.vault, &pending.state, &pending.provider).map_err(|_| ConnectionError::FlowInvalid)?;
        let linked = p.complete(callback, &flow).await?;
        let entry = audit::NewEntry::user_action(
            Some(&pending.user_id),
            &pending.provider,
            None,
            "callback",
            "connected",
            ip,
            json!({"scope": linked.grant.scope, "reconsent": data.connection_id.is_some()}),
        );
        let done = self
            .tokens
            .link(
                &Link {
                    user_id: &pending.user_id,
                    provider: &pending.provider,
                    account_id: &linked.account_id,
                    account_display: linked.account_display.as_deref(),
                    label: data.label.as_deref(),
                    metadata: linked.metadata.as_ref(),
                    grant: &linked.grant,
                },
                entry,
            )
            .await?;
        Ok(Connected { connection: done.connection, created: done.created })
    }

    /// A usable access token of the caller's connection (refreshed first when due).
    pub async fn access_token(&self, connection: Connection) -> Result<AccessToken, ConnectionError> {
        Ok(self.tokens.access_token(connection).await?)
    }

    /// The provider refused `rejected`: refresh unless someone already has.
    pub async fn after_rejection(&self, rejected: &AccessToken) -> Result<AccessToken, ConnectionError> {
        Ok(self.tokens.after_rejection(rejected).await?)
    }

    /// Refreshes now (`POST /connections/{id}/refresh`).
    pub async fn refresh(&self, connection: Connection) -> Result<Connection, ConnectionError> {
        let t = self.tokens.refresh_now(connection).await?;
        connections::get_by_id(&self.db, &t.connection_id).await?.ok_or(ConnectionError::NotFound)
    }

    /// Removes a connection: the provider is asked to end the grant (best effort: the local
    /// tokens go whatever it answers, and a second revocation is harmless), then the row goes
    /// together with its audit entry, or not at all.
    pub async fn disconnect(&self, connection: Connection, actor: &Actor) -> Result<Disconnected, ConnectionError> {
        let revoked = self.revoke(&connection).await;
        let entry = crate::audit::stamp(audit::NewEntry {
            actor: actor.name.clone(),
            user_id: Some(connection.user_id.clone()),
            provider: Some(connection.provider.clone()),
            connection_id: Some(connection.id.clone()),
            action: "disconnect".into(),
            outcome: "ok".into(),
            request_id: Some(crate::http::request_id::current()).filter(|r| !r.is_empty()),
            ip: actor.ip.clone(),
            detail: json!({ "unlink": revoked }),
        });
        let now = self.clock.now();
        let done = async {
            let mut w = self.db.begin_write().await?;
            let work = async {
                connections::delete_by_id(&mut *w.tx, &connection.id).await?;
                audit::append_in(&mut w, &entry, now).await?;
                events::enqueue_in(&mut w, &Event::disconnected(&connection), now).await
            }
            .await;
            w.finish(work).await
        }
        .await;
        if let Err(e) = done {
            tracing::error!(error = %e, connection_id = %connection.id, "disconnect not recorded: refused");
            return Err(ConnectionError::AuditUnavailable);
        }
        self.tokens.webhooks().wake();
        Ok(Disconnected { connection, revoked })
    }

    /// Asks the provider to end the connection's grant; what happened, for the audit log.
    pub async fn revoke(&self, c: &Connection) -> Revoked {
        self.end_at_provider(c, false).await
    }

    /// `leaving`: the user deletes their account ([`Provider::leave`]); else a disconnect.
    async fn end_at_provider(&self, c: &Connection, leaving: bool) -> Revoked {
        let Some(p) = self.catalogue.get(&c.provider) else {
            // Disconnecting works while the provider is disabled: the local tokens go all the same.
            return Revoked::failed("none", format!("{} is not configured on this server", c.provider), None);
        };
        let open = |blob: &Option<Vec<u8>>, field: &str| -> Result<Option<SecretString>, VaultError> {
            blob.as_deref().map(|b| self.vault.open_string(b, aad(c, field))).transpose()
        };
        let (access, refresh) = match (open(&c.access_token, "access_token"), open(&c.refresh_token, "refresh_token")) {
            (Ok(a), Ok(r)) => (a, r),
            (Err(e), _) | (_, Err(e)) => return Revoked::failed("none", e, None),
        };
        let tokens = RevokeTokens { access_token: access.as_ref(), refresh_token: refresh.as_ref(), account_id: c.provider_user_id.as_deref() };
        if leaving {
            p.leave(&tokens).await
        } else {
            p.revoke(&tokens).await
        }
    }

    /// Account deletion: the user leaves every provider of theirs (KFTC `user/close`, the others
    /// a revocation), and every connection is removed; the audit trail stays.
    pub async fn remove_all(&self, user_id: &str) -> Result<Vec<Value>, ConnectionError> {
        let mut removed = Vec::new();
        for c in connections::list_for_user(&self.db, user_id).await? {
            let revoked = self.end_at_provider(&c, true).await;
            let now = self.clock.now();
            let mut w = self.db.begin_write().await?;
            let work = async {
                connections::delete_by_id(&mut *w.tx, &c.id).await?;
                events::enqueue_in(&mut w, &Event::disconnected(&c), now).await.map(|_| ())
            }
            .await;
            w.finish(work).await?;
            self.tokens.webhooks().wake();
            removed.push(json!({"provider": c.provider, "connection_id": c.id, "unlink": revoked}));
        }
        Ok(removed)
    }

    pub fn tokens(&self) -> &Arc<TokenManager> {
        &self.tokens
    }
}

/// The scopes a caller asked for: known to the provider, each once, not too many.
fn check_scopes(info: &ProviderInfo, asked: &[String]) -> Result<Vec<String>, ConnectionError> {
    if asked.is_empty() || asked.len() > MAX_SCOPES {
        return Err(ConnectionError::InvalidScopes(format!("scopes must list 1 to {MAX_SCOPES} scopes.")));
    }
    let mut out: Vec<String> = Vec::new();
    for s in asked {
        if !info.allowed_scopes.iter().any(|a| a == s) {
            let allowed = info.allowed_scopes.join(", ");
            return Err(ConnectionError::InvalidScopes(format!("{} does not offer the scope {:?} here; allowed: {allowed}.", info.display_name, clip(s))));
        }
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    Ok(out)
}

fn clip(s: &str) -> String {
    s.chars().take(40).collect()
}
