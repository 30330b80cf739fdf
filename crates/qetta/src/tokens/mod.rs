//! The token manager: the one way to get a usable access token for a user's connection.
//!
//! A token that expires within the margin, or that the provider just rejected, is refreshed
//! first, and a refresh happens once however many callers and replicas want it:
//!
//! 1. callers in this process queue on a per-connection [`locks::LocalFlights`] lock;
//! 2. the winner takes the cross-replica lock (Redis when configured and answering; on PostgreSQL
//!    also its row lock, which alone serves without Redis;
//!    SQLite is one process);
//! 3. after every lock it **re-reads the row**: if someone else already refreshed (the version
//!    moved, or the token is fresh again) it uses that instead of spending the refresh token;
//! 4. the new grant is committed (with the version as fencing token) before anyone uses it; a
//!    rotated refresh token is written in the same statement as the access token, and a grant
//!    without a refresh token keeps the stored one;
//! 5. a refused grant marks the connection `needs_reauth`; any other failure keeps the tokens and
//!    sets a backoff, during which callers get an immediate answer instead of queueing.

pub mod locks;
pub mod refresher;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};

use crate::clock::Clock;
use crate::config::{DatabaseKind, TokenSettings};
use crate::store::connections::{self, Connection, TokenWrite};
use crate::store::{audit, Db, StoreError};
use crate::vault::{Aad, Vault, VaultError};
use locks::{LocalFlights, RedisLock};

/// What a provider's token endpoint granted.
pub struct Grant {
    pub access_token: SecretString,
    pub refresh_token: Option<SecretString>,
    pub token_type: String,
    /// Space-separated, as granted.
    pub scope: String,
    pub expires_in: Option<i64>,
    /// Lifetime of the refresh token, when the provider says or we know it.
    pub refresh_expires_in: Option<i64>,
}

/// Why a refresh did not produce a grant.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// The provider refused the refresh token: the user must consent again.
    #[error("the provider refused the grant ({provider_code})")]
    GrantDead { provider_code: String },
    /// Anything else (5xx, rate limit, network): keep the tokens and try later.
    #[error("refresh failed: {message}")]
    Transient { message: String, provider_code: Option<String> },
    #[error("the provider did not answer in time")]
    Timeout,
}

/// A provider's refresh call.
#[async_trait]
pub trait Refresher: Send + Sync {
    async fn refresh(&self, refresh_token: &SecretString, scope: &str) -> Result<Grant, RefreshError>;
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("not connected")]
    NotConnected,
    #[error("the connection needs the user's consent again")]
    ReauthRequired,
    #[error("refreshing the token keeps failing; next attempt in {retry_after_secs} s")]
    Backoff { retry_after_secs: i64, provider_code: Option<String> },
    #[error("refresh failed: {message}")]
    Upstream { message: String, provider_code: Option<String> },
    #[error("the provider did not answer in time")]
    Timeout,
    #[error("another replica is refreshing this connection; try again")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored token cannot be decrypted: {0}")]
    Vault(#[from] VaultError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

impl From<TokenError> for crate::error::ApiError {
    fn from(e: TokenError) -> Self {
        use crate::error::ApiError;
        match e {
            TokenError::NotConnected => ApiError::NotFound("This provider is not connected; connect it first.".into()),
            TokenError::ReauthRequired => ApiError::conflict("reauth_required", "The connection needs your consent again: reconnect it."),
            TokenError::Backoff { retry_after_secs, .. } => ApiError::TooManyRequests {
                code: "refresh_backoff",
                message: "The provider keeps failing to refresh this connection; try again later.".into(),
                retry_after_secs: retry_after_secs.max(1) as u64,
            },
            TokenError::Upstream { message, provider_code } => ApiError::Upstream { code: "upstream_error", message, provider_code },
            TokenError::Timeout => ApiError::UpstreamTimeout { message: "The provider did not answer in time.".into() },
            TokenError::Busy => ApiError::Unavailable("The connection is being refreshed; try again.".into()),
            other => ApiError::internal(other),
        }
    }
}

/// A usable access token. Never logged: the token is a `SecretString`.
pub struct AccessToken {
    pub connection_id: String,
    pub token: SecretString,
    pub version: i64,
    pub expires_at: Option<i64>,
    pub scope: Option<String>,
    pub provider_user_id: Option<String>,
}

/// Why a refresh is wanted.
#[derive(Clone, Copy, Debug)]
enum Reason {
    /// Expiring within the margin (or already expired).
    Due,
    /// Expiring within the background refresher's lookahead.
    Ahead,
    /// The provider rejected the token at `version`, whatever its stored expiry says.
    Rejected { version: i64 },
}

/// The associated data of a connection's token field.
pub fn aad<'a>(c: &'a Connection, field: &'a str) -> Aad<'a> {
    Aad { row: &c.id, scope: &c.provider, field }
}

pub struct TokenManager {
    db: Db,
    vault: Vault,
    clock: Arc<dyn Clock>,
    settings: TokenSettings,
    flights: LocalFlights,
    redis_lock: Option<RedisLock>,
    refreshers: HashMap<&'static str, Arc<dyn Refresher>>,
}

impl TokenManager {
    pub fn new(db: Db, vault: Vault, clock: Arc<dyn Clock>, settings: TokenSettings, redis_lock: Option<RedisLock>) -> Self {
        Self { db, vault, clock, settings, flights: LocalFlights::default(), redis_lock, refreshers: HashMap::new() }
    }

    pub fn register(&mut self, provider: &'static str, refresher: Arc<dyn Refresher>) {
        self.refreshers.insert(provider, refresher);
    }

    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// Stores a fresh grant from the authorization-code exchange (connect or re-consent).
    pub async fn store_grant(&self, user_id: &str, provider: &str, grant: &Grant, provider_user_id: Option<&str>) -> Result<Connection, TokenError> {
        let now = self.clock.now();
        loop {
            let row = connections::ensure(&self.db, user_id, provider, now).await?;
            let write = self.sealed(&row, grant, now);
            if connections::write_tokens(self.db.pool(), &row.id, row.version, &write, provider_user_id, false, now).await? {
                return Ok(connections::get_by_id(&self.db, &row.id).await?.ok_or(StoreError::NotFound)?);
            }
            // A concurrent write moved the version: seal again against the new row state.
        }
    }

    fn sealed(&self, row: &Connection, grant: &Grant, now: i64) -> TokenWrite {
        TokenWrite {
            access_token: self.vault.seal_str(grant.access_token.expose_secret(), aad(row, "access_token")),
            refresh_token: grant.refresh_token.as_ref().map(|r| self.vault.seal_str(r.expose_secret(), aad(row, "refresh_token"))),
            key_id: self.vault.active_key_id().to_string(),
            token_type: grant.token_type.clone(),
            scope: grant.scope.clone(),
            expires_at: grant.expires_in.map(|s| now + s),
            refresh_expires_at: grant.refresh_expires_in.map(|s| now + s),
        }
    }

    fn usable(&self, row: &Connection) -> Result<AccessToken, TokenError> {
        let blob = row.access_token.as_deref().ok_or(TokenError::ReauthRequired)?;
        Ok(AccessToken {
            connection_id: row.id.clone(),
            token: self.vault.open_string(blob, aad(row, "access_token"))?,
            version: row.version,
            expires_at: row.expires_at,
            scope: row.scope.clone(),
            provider_user_id: row.provider_user_id.clone(),
        })
    }

    fn is_due(&self, row: &Connection, now: i64) -> bool {
        row.expires_at.is_some_and(|e| e - self.settings.refresh_margin_secs <= now)
    }

    fn is_expired(row: &Connection, now: i64) -> bool {
        row.expires_at.is_some_and(|e| e <= now)
    }

    /// Whether the row as it is now satisfies `reason` without a refresh.
    fn satisfied(&self, row: &Connection, reason: Reason, now: i64) -> bool {
        match reason {
            Reason::Due => !self.is_due(row, now),
            Reason::Ahead => row.expires_at.is_none_or(|e| e - self.settings.refresher_lookahead_secs > now),
            Reason::Rejected { version } => row.version != version && !Self::is_expired(row, now),
        }
    }

    /// A usable access token for the user's connection to `provider`.
    pub async fn access_token(&self, user_id: &str, provider: &str) -> Result<AccessToken, TokenError> {
        let row = connections::get(&self.db, user_id, provider).await?.ok_or(TokenError::NotConnected)?;
        self.ensure_fresh(row, Reason::Due).await
    }

    /// The provider rejected `rejected` (e.g. KFTC O0003): refresh unless someone already has.
    pub async fn after_rejection(&self, rejected: &AccessToken) -> Result<AccessToken, TokenError> {
        let row = connections::get_by_id(&self.db, &rejected.connection_id).await?.ok_or(TokenError::NotConnected)?;
        self.ensure_fresh(row, Reason::Rejected { version: rejected.version }).await
    }

    /// For the background refresher: refresh if the token expires within the refresher's
    /// lookahead; returns whether this call refreshed it.
    pub async fn refresh_if_due_ahead(&self, connection_id: &str) -> Result<bool, TokenError> {
        let row = connections::get_by_id(&self.db, connection_id).await?.ok_or(TokenError::NotConnected)?;
        let version = row.version;
        let got = self.ensure_fresh(row, Reason::Ahead).await?;
        Ok(got.version != version)
    }

    /// What the row allows without a refresh: an answer (a usable token, or an error such as a
    /// dead grant or an expired token in backoff), or `None` when a refresh is needed.
    fn answer_without_refresh(&self, row: &Connection, reason: Reason) -> Option<Result<AccessToken, TokenError>> {
        let now = self.clock.now();
        if row.status != connections::STATUS_ACTIVE {
            return Some(Err(TokenError::ReauthRequired));
        }
        if self.satisfied(row, reason, now) {
            return Some(self.usable(row));
        }
        self.check_backoff(row, now).err().map(Err)
    }

    async fn ensure_fresh(&self, row: Connection, reason: Reason) -> Result<AccessToken, TokenError> {
        if let Some(answer) = self.answer_without_refresh(&row, reason) {
            return answer;
        }
        let _local = self.flights.acquire(&row.id).await;
        // Someone in this process may have refreshed while we queued.
        let row = connections::get_by_id(&self.db, &row.id).await?.ok_or(TokenError::NotConnected)?;
        if let Some(answer) = self.answer_without_refresh(&row, reason) {
            return answer;
        }

        // Within a request, waiting for another replica's refresh ends at the request's deadline.
        let wait = crate::providers::upstream::remaining().map_or(self.settings.upstream_timeout * 3, |left| left.min(self.settings.upstream_timeout * 3));
        let guard = match &self.redis_lock {
            Some(lock) => match lock.acquire(&format!("refresh:{}", row.id), wait).await {
                Ok(g) => Some(g),
                Err(locks::LockError::Timeout) => return Err(TokenError::Busy),
                Err(locks::LockError::Redis(e)) => {
                    tracing::warn!(error = %e, connection_id = %row.id, "Redis unavailable: refresh lock taken in the database instead");
                    None
                }
            },
            None => None,
        };
        // On PostgreSQL the row lock is taken whether or not the Redis lock is held, so that this
        // replica and one that fell back to the database exclude each other.
        let result = if self.db.kind() == DatabaseKind::Postgres {
            let mut tx = self.db.pool().begin().await.map_err(StoreError::from)?;
            let result = self.refresh_under_lock(&row.id, reason, Some(&mut tx)).await;
            tx.commit().await.map_err(StoreError::from)?;
            result
        } else {
            self.refresh_under_lock(&row.id, reason, None).await
        };
        if let Some(g) = guard {
            g.release().await;
        }
        result
    }

    fn check_backoff(&self, row: &Connection, now: i64) -> Result<(), TokenError> {
        match row.next_refresh_at {
            Some(next) if row.refresh_failures > 0 && next > now => {
                // Still-valid tokens are better than an error while we back off.
                if !Self::is_expired(row, now) {
                    return Ok(());
                }
                Err(TokenError::Backoff { retry_after_secs: next - now, provider_code: None })
            }
            _ => Ok(()),
        }
    }

    fn backoff_secs(&self, failures: i64) -> i64 {
        let exp = self.settings.backoff_base_secs.saturating_mul(1i64 << failures.clamp(0, 20));
        let capped = exp.min(self.settings.backoff_max_secs);
        // ±20 % jitter so that replicas and connections do not retry in step.
        let jitter = rand::thread_rng().gen_range(0.8..1.2);
        ((capped as f64) * jitter).round().max(1.0) as i64
    }

    /// Runs with the cross-replica lock held (a row lock inside `tx` on PostgreSQL).
    async fn refresh_under_lock(&self, id: &str, reason: Reason, tx: Option<&mut sqlx::Transaction<'static, sqlx::Any>>) -> Result<AccessToken, TokenError> {
        // Re-read under the lock: never act on what we read before it.
        let (row, tx) = match tx {
            Some(tx) => (connections::read_by_id(&mut **tx, id, true).await?, Some(tx)),
            None => (connections::get_by_id(&self.db, id).await?, None),
        };
        let row = row.ok_or(TokenError::NotConnected)?;
        let now = self.clock.now();
        if row.status != connections::STATUS_ACTIVE {
            return Err(TokenError::ReauthRequired);
        }
        if self.satisfied(&row, reason, now) {
            return self.usable(&row);
        }
        let in_backoff = row.refresh_failures > 0 && row.next_refresh_at.is_some_and(|n| n > now);
        if in_backoff {
            self.check_backoff(&row, now)?;
            return self.usable(&row);
        }

        let refresher = self.refreshers.get(row.provider.as_str()).cloned().ok_or_else(|| TokenError::Upstream {
            message: format!("no refresher for provider {}", row.provider),
            provider_code: None,
        })?;
        let Some(refresh_blob) = row.refresh_token.as_deref() else {
            self.mark_dead(&row, tx, "no refresh token stored").await?;
            return Err(TokenError::ReauthRequired);
        };
        let refresh_token = self.vault.open_string(refresh_blob, aad(&row, "refresh_token"))?;
        let scope = row.scope.clone().unwrap_or_default();

        let outcome = match tokio::time::timeout(self.settings.upstream_timeout, refresher.refresh(&refresh_token, &scope)).await {
            Ok(r) => r,
            Err(_) => Err(RefreshError::Timeout),
        };
        drop(refresh_token);
        match outcome {
            Ok(grant) => {
                let write = self.sealed(&row, &grant, now);
                let written = match tx {
                    Some(tx) => connections::write_tokens(&mut **tx, &row.id, row.version, &write, None, true, now).await?,
                    None => connections::write_tokens(self.db.pool(), &row.id, row.version, &write, None, true, now).await?,
                };
                if !written {
                    // Only possible when a lock expired mid-refresh: the newer row wins.
                    tracing::warn!(connection_id = %row.id, "refresh lost a race after its lock expired; using the newer row");
                    let fresh = connections::get_by_id(&self.db, &row.id).await?.ok_or(TokenError::NotConnected)?;
                    return self.usable(&fresh);
                }
                self.audit(&row, "refresh", "ok", serde_json::json!({"reason": format!("{reason:?}"), "expires_in": grant.expires_in})).await;
                tracing::info!(connection_id = %row.id, provider = %row.provider, "token refreshed");
                Ok(AccessToken {
                    connection_id: row.id.clone(),
                    token: grant.access_token,
                    version: row.version + 1,
                    expires_at: write.expires_at,
                    scope: Some(write.scope),
                    provider_user_id: row.provider_user_id.clone(),
                })
            }
            Err(RefreshError::GrantDead { provider_code }) => {
                self.mark_dead(&row, tx, &provider_code).await?;
                Err(TokenError::ReauthRequired)
            }
            Err(e) => {
                let wait = self.backoff_secs(row.refresh_failures);
                match tx {
                    Some(tx) => connections::record_refresh_failure(&mut **tx, &row.id, now + wait, now).await?,
                    None => connections::record_refresh_failure(self.db.pool(), &row.id, now + wait, now).await?,
                }
                let (message, provider_code, timeout) = match e {
                    RefreshError::Transient { message, provider_code } => (message, provider_code, false),
                    RefreshError::Timeout => ("timeout".to_string(), None, true),
                    RefreshError::GrantDead { .. } => unreachable!("handled above"),
                };
                self.audit(&row, "refresh", "failed", serde_json::json!({"error": message, "provider_code": provider_code, "retry_in": wait})).await;
                tracing::warn!(connection_id = %row.id, provider = %row.provider, error = %message, retry_in = wait, "token refresh failed");
                if timeout {
                    Err(TokenError::Timeout)
                } else {
                    Err(TokenError::Upstream { message: format!("The provider could not refresh the token: {message}"), provider_code })
                }
            }
        }
    }

    async fn mark_dead(&self, row: &Connection, tx: Option<&mut sqlx::Transaction<'static, sqlx::Any>>, provider_code: &str) -> Result<(), TokenError> {
        let now = self.clock.now();
        match tx {
            Some(tx) => connections::mark_needs_reauth(&mut **tx, &row.id, now).await?,
            None => connections::mark_needs_reauth(self.db.pool(), &row.id, now).await?,
        }
        self.audit(row, "refresh", "needs_reauth", serde_json::json!({"provider_code": provider_code})).await;
        tracing::warn!(connection_id = %row.id, provider = %row.provider, provider_code, "grant refused: connection needs consent again");
        Ok(())
    }

    async fn audit(&self, row: &Connection, action: &str, outcome: &str, detail: serde_json::Value) {
        let entry = audit::NewEntry {
            actor: "system:token-manager".into(),
            user_id: Some(row.user_id.clone()),
            provider: Some(row.provider.clone()),
            connection_id: Some(row.id.clone()),
            action: action.into(),
            outcome: outcome.into(),
            request_id: None,
            ip: None,
            detail,
        };
        crate::audit::record(&self.db, entry, self.clock.now()).await;
    }

    pub fn settings(&self) -> &TokenSettings {
        &self.settings
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }
}

/// How long a cross-replica refresh lock lives if its holder dies.
pub fn lock_ttl(settings: &TokenSettings) -> Duration {
    settings.upstream_timeout * 2 + Duration::from_secs(5)
}
