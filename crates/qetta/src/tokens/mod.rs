//! The token manager: the one way to get a usable access token for a user's connection.
//!
//! A token that expires within the margin, or that the provider just rejected, is refreshed
//! first, and a refresh happens once however many callers and replicas want it:
//!
//! 1. callers in this process queue on a per-connection [`locks::LocalFlights`] lock;
//! 2. the winner takes the connection's **refresh lease** in the database (one short `UPDATE`;
//!    no pooled connection or row lock is held while the provider is called), renews it every
//!    third of its life (3 s) while it works; another replica may take it over 2 s after it
//!    ended, so a crashed holder blocks the others for at most 5 s; waiters poll the row and
//!    never wait longer than `lock_wait`;
//! 3. after the lease it **re-reads the row**: if someone else already refreshed (the version
//!    moved, or the token is fresh again) it uses that instead of spending the refresh token;
//! 4. the new grant is committed together with its audit entry (with the version as fencing
//!    token) before anyone uses it. Once the provider has answered, the grant is never dropped:
//!    the write is retried with backoff for `grant_retry` (10 minutes by default) in a task of
//!    its own that keeps the lease alive, so a storage outage loses no connection;
//! 5. a refused grant marks the connection `needs_reauth`; any other failure keeps the tokens and
//!    sets a backoff, during which callers get an immediate answer instead of queueing. Both are
//!    fenced by the version, so they never override a newer grant.

pub mod locks;
pub mod refresher;
pub mod single_flight;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};

use crate::clock::Clock;
use crate::config::TokenSettings;
use crate::store::connections::{self, Connection, TokenWrite};
use crate::store::leases::{self, CONNECTION_REFRESH};
use crate::store::WriteTx;
use crate::store::{audit, Db, StoreError};
use crate::vault::{Aad, Vault, VaultError};
use locks::LocalFlights;
use single_flight::{Heartbeat, LeaseTimes};

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
    /// KFTC's inquiry consent ran out (SPEC A14): renewed by the user's re-consent.
    #[error("the bank consent has expired")]
    ConsentExpired,
    #[error("refreshing the token keeps failing; next attempt in {retry_after_secs} s")]
    Backoff { retry_after_secs: i64, provider_code: Option<String> },
    #[error("refresh failed: {message}")]
    Upstream { message: String, provider_code: Option<String> },
    #[error("the provider did not answer in time")]
    Timeout,
    #[error("another replica is refreshing this connection; try again")]
    Busy,
    /// The provider granted new tokens but storage is failing; they are being retried.
    #[error("storage is unavailable; the new tokens are kept and retried")]
    StorageUnavailable,
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
            TokenError::ConsentExpired => ApiError::conflict(
                "consent_expired",
                "Your consent to share this bank data has expired: renew it by connecting again (the same connection comes back).",
            ),
            TokenError::Backoff { retry_after_secs, .. } => ApiError::TooManyRequests {
                code: "refresh_backoff",
                message: "The provider keeps failing to refresh this connection; try again later.".into(),
                retry_after_secs: retry_after_secs.max(1) as u64,
            },
            TokenError::Upstream { message, provider_code } => ApiError::Upstream { code: "upstream_error", message, provider_code },
            TokenError::Timeout => ApiError::UpstreamTimeout { message: "The provider did not answer in time.".into() },
            TokenError::Busy => ApiError::Unavailable("The connection is being refreshed; try again.".into()),
            TokenError::StorageUnavailable => ApiError::Unavailable("Storage is unavailable; try again in a few seconds.".into()),
            TokenError::Store(e) => e.into(),
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

/// A completed consent to store ([`TokenManager::link`]).
pub struct Link<'a> {
    pub user_id: &'a str,
    pub provider: &'a str,
    /// The provider account (KFTC user_seq_no, OIDC `sub`).
    pub account_id: &'a str,
    pub account_display: Option<&'a str>,
    /// The label the user gave in this flow (`None` keeps an existing connection's).
    pub label: Option<&'a str>,
    /// Replaces the connection's metadata (`None` keeps it).
    pub metadata: Option<&'a serde_json::Value>,
    pub grant: &'a Grant,
}

/// What [`TokenManager::link`] stored.
pub struct Linked {
    pub connection: Connection,
    /// A new connection (not a re-consent of an existing one).
    pub created: bool,
}

/// Why a connection that is not active gives no token.
fn not_active(row: &Connection) -> TokenError {
    match row.status.as_str() {
        connections::STATUS_CONSENT_EXPIRED => TokenError::ConsentExpired,
        _ => TokenError::ReauthRequired,
    }
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

#[derive(Clone)]
pub struct TokenManager {
    db: Db,
    vault: Vault,
    clock: Arc<dyn Clock>,
    settings: TokenSettings,
    flights: Arc<LocalFlights>,
    refreshers: HashMap<String, Arc<dyn Refresher>>,
    /// Names this process in lease owners.
    instance: String,
    /// Connections whose new tokens this process holds while storage does not take them.
    unstored: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    /// Wakes this replica's webhook worker after a connection event is committed.
    webhooks: Arc<crate::events::Webhooks>,
}

impl TokenManager {
    pub fn new(db: Db, vault: Vault, clock: Arc<dyn Clock>, settings: TokenSettings) -> Self {
        let instance = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        Self {
            db,
            vault,
            clock,
            settings,
            flights: Arc::default(),
            refreshers: HashMap::new(),
            instance,
            unstored: Arc::default(),
            webhooks: crate::events::Webhooks::new(),
        }
    }

    /// The same manager (the same single flights, grants in hand and refreshers) on the database
    /// handle for background work ([`Db::background`]): the background refresher's.
    pub fn for_background(&self) -> TokenManager {
        TokenManager { db: self.db.background(), ..self.clone() }
    }

    pub fn register(&mut self, provider: &str, refresher: Arc<dyn Refresher>) {
        self.refreshers.insert(provider.to_string(), refresher);
    }

    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// The handle that wakes this replica's webhook worker.
    pub fn webhooks(&self) -> &Arc<crate::events::Webhooks> {
        &self.webhooks
    }

    /// Stores the grant of a completed consent on the user's connection to that provider account:
    /// the existing one (re-consent: same id, label kept unless a new one is given), or a new one.
    /// The connection's audit `entry` (its `connection_id` filled in here) commits in the same
    /// transaction, or nothing does.
    pub async fn link(&self, link: &Link<'_>, entry: audit::NewEntry) -> Result<Linked, TokenError> {
        let now = self.clock.now();
        let metadata = link.metadata.map(|m| m.to_string());
        for _ in 0..5 {
            let existing = connections::find_account(self.db.pool(), link.user_id, link.provider, link.account_id).await?;
            let mut w = self.db.begin_write().await?;
            let work = async {
                let (id, created) = match &existing {
                    Some(row) => {
                        let write = self.sealed(&row.id, &row.provider, link.grant, now);
                        if !connections::write_tokens(&mut *w.tx, &row.id, row.version, &write, Some(link.account_id), false, now).await? {
                            return Ok(None);
                        }
                        connections::update_link(&mut *w.tx, &row.id, link.account_display, link.label, metadata.as_deref(), now).await?;
                        (row.id.clone(), false)
                    }
                    None => {
                        let id = uuid::Uuid::new_v4().to_string();
                        let write = self.sealed(&id, link.provider, link.grant, now);
                        let new = connections::NewConnection {
                            id: &id,
                            user_id: link.user_id,
                            provider: link.provider,
                            provider_user_id: link.account_id,
                            account_display: link.account_display,
                            label: link.label,
                            metadata: metadata.as_deref().unwrap_or("{}"),
                            tokens: &write,
                        };
                        if !connections::insert(&mut *w.tx, &new, now).await? {
                            return Ok(None);
                        }
                        (id, true)
                    }
                };
                let row = connections::read_by_id(&mut *w.tx, &id, false).await?.ok_or(StoreError::NotFound)?;
                let mut entry = entry.clone();
                entry.connection_id = Some(id);
                audit::append_in(&mut w, &entry, now).await?;
                crate::events::enqueue_in(&mut w, &crate::events::Event::linked(&row, created), now).await?;
                Ok(Some(Linked { connection: row, created }))
            }
            .await;
            if let Some(done) = w.finish(work).await? {
                self.webhooks.wake();
                return Ok(done);
            }
            // A concurrent connect of the same account, or a refresh of it, moved first: again
            // against what is stored now. A deleted account never gets a connection.
            if crate::store::users::is_deleted(&self.db, link.user_id).await? {
                return Err(StoreError::NotFound.into());
            }
        }
        Err(TokenError::Busy)
    }

    fn sealed(&self, id: &str, provider: &str, grant: &Grant, now: i64) -> TokenWrite {
        let aad = |field| Aad { row: id, scope: provider, field };
        TokenWrite {
            access_token: self.vault.seal_str(grant.access_token.expose_secret(), aad("access_token")),
            refresh_token: grant.refresh_token.as_ref().map(|r| self.vault.seal_str(r.expose_secret(), aad("refresh_token"))),
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

    /// What the background refresher refreshes at `now`.
    pub fn due_ahead(&self, now: i64) -> connections::Due {
        connections::Due { before: now + self.settings.refresher_lookahead_secs, margin_before: now + self.settings.refresh_margin_secs }
    }

    fn is_expired(row: &Connection, now: i64) -> bool {
        row.expires_at.is_some_and(|e| e <= now)
    }

    /// Whether the row as it is now satisfies `reason` without a refresh.
    fn satisfied(&self, row: &Connection, reason: Reason, now: i64) -> bool {
        match reason {
            Reason::Due => !self.is_due(row, now),
            Reason::Ahead => !self.due_ahead(now).wants(row, now),
            Reason::Rejected { version } => row.version != version && !Self::is_expired(row, now),
        }
    }

    /// A usable access token for `connection` (as read by the caller), refreshed first when due.
    pub async fn access_token(&self, connection: Connection) -> Result<AccessToken, TokenError> {
        self.ensure_fresh(connection, Reason::Due).await
    }

    /// Refreshes the connection now (unless a refresh landed since `connection` was read), for
    /// `POST /connections/{id}/refresh` and operators.
    pub async fn refresh_now(&self, connection: Connection) -> Result<AccessToken, TokenError> {
        let version = connection.version;
        self.ensure_fresh(connection, Reason::Rejected { version }).await
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
            return Some(Err(not_active(row)));
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
        let (_local, waited) = self.flights.acquire_noting(&row.id).await;
        // Nobody in this process refreshed while we waited for the lock: the caller's row is as
        // good as a re-read here (the row is read again under the lease anyway, before any
        // provider call), which saves a round trip per refresh.
        let id = row.id.clone();
        let mut known = (!waited).then_some(row);
        let owner = format!("{}:{}", self.instance, uuid::Uuid::new_v4().simple());
        let deadline = tokio::time::Instant::now() + self.wait_budget();
        let mut pause = Duration::from_millis(10);
        loop {
            // Someone (in this process or another) may have refreshed while we waited.
            let row = match known.take() {
                Some(row) => row,
                None => connections::get_by_id(&self.db, &id).await?.ok_or(TokenError::NotConnected)?,
            };
            if let Some(answer) = self.answer_without_refresh(&row, reason) {
                return answer;
            }
            // This process still holds new tokens for it that storage has not taken yet: wait for
            // those rather than spend the refresh token they replace.
            if self.unstored.lock().expect("unstored grants").contains(&id) {
                return Err(TokenError::StorageUnavailable);
            }
            // A lease left behind by another holder that did not release it (it died, or its
            // storage failed while it held new tokens).
            let takeover = leases::owner(&self.db, CONNECTION_REFRESH, &id).await?.is_some();
            let times = LeaseTimes { lease: self.settings.refresh_lease, grace: self.settings.lease_grace };
            if single_flight::try_claim(&self.db, CONNECTION_REFRESH, &id, &owner, times).await? {
                return self.refresh_under_lease(&id, reason, &owner, takeover).await;
            }
            if tokio::time::Instant::now() + pause > deadline {
                return Err(TokenError::Busy);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// How long a caller may wait for a refresh (another replica's, or its own grant's write):
    /// `lock_wait`, and never past the request's deadline.
    fn wait_budget(&self) -> Duration {
        crate::providers::upstream::remaining().map_or(self.settings.lock_wait, |left| left.min(self.settings.lock_wait))
    }

    fn heartbeat(&self, id: &str, owner: &str) -> Heartbeat {
        Heartbeat::start(&self.db, CONNECTION_REFRESH, id, owner, self.settings.refresh_lease)
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

    /// Runs with the connection's refresh lease held by `owner`.
    async fn refresh_under_lease(&self, id: &str, reason: Reason, owner: &str, takeover: bool) -> Result<AccessToken, TokenError> {
        let heartbeat = self.heartbeat(id, owner);
        let result = self.refresh_leased(id, reason, owner, heartbeat, takeover).await;
        if !matches!(result, Err(TokenError::StorageUnavailable)) {
            // Every write path already released it; this covers the early returns.
            if let Err(e) = leases::release(self.db.pool(), CONNECTION_REFRESH, id, owner).await {
                tracing::debug!(connection_id = %id, error = %e, "could not release a refresh lease (it expires)");
            }
        }
        result
    }

    async fn refresh_leased(&self, id: &str, reason: Reason, owner: &str, heartbeat: Heartbeat, takeover: bool) -> Result<AccessToken, TokenError> {
        // Re-read under the lease: never act on what we read before it.
        let row = connections::get_by_id(&self.db, id).await?.ok_or(TokenError::NotConnected)?;
        let now = self.clock.now();
        if row.status != connections::STATUS_ACTIVE {
            return Err(not_active(&row));
        }
        if self.satisfied(&row, reason, now) {
            return self.usable(&row);
        }
        let in_backoff = row.refresh_failures > 0 && row.next_refresh_at.is_some_and(|n| n > now);
        if in_backoff {
            self.check_backoff(&row, now)?;
            return self.usable(&row);
        }

        let refresher = self
            .refreshers
            .get(row.provider.as_str())
            .cloned()
            .ok_or_else(|| TokenError::Upstream { message: format!("no refresher for provider {}", row.provider), provider_code: None })?;
        let Some(refresh_blob) = row.refresh_token.as_deref() else {
            self.mark_dead(&row, owner, "no refresh token stored").await?;
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
            Ok(grant) => self.keep_grant(row, grant, reason, owner, heartbeat).await,
            Err(RefreshError::GrantDead { provider_code }) => {
                // After taking over a lease its holder left behind, a refused refresh token may
                // just have been spent by that holder, whose new tokens are landing now (its
                // storage came back): give them the grace to arrive before calling the grant dead.
                if takeover {
                    if let Some(fresh) = self.newer_row(&row, self.settings.lease_grace).await? {
                        tracing::info!(connection_id = %row.id, "a refresh token refused after a lease takeover: the previous holder's grant arrived");
                        return self.usable(&fresh);
                    }
                }
                if !self.mark_dead(&row, owner, &provider_code).await? {
                    // A newer grant was stored meanwhile (only after a lost lease): use it.
                    let fresh = connections::get_by_id(&self.db, id).await?.ok_or(TokenError::NotConnected)?;
                    return self.usable(&fresh);
                }
                Err(TokenError::ReauthRequired)
            }
            Err(e) => {
                let wait = self.backoff_secs(row.refresh_failures);
                let (message, provider_code, timeout) = match e {
                    RefreshError::Transient { message, provider_code } => (message, provider_code, false),
                    RefreshError::Timeout => ("timeout".to_string(), None, true),
                    RefreshError::GrantDead { .. } => unreachable!("handled above"),
                };
                let entry = self.entry(&row, "refresh", "failed", serde_json::json!({"error": message, "provider_code": provider_code, "retry_in": wait}));
                let mut w = self.db.begin_write().await?;
                let work = async {
                    if connections::record_refresh_failure(&mut *w.tx, &row.id, row.version, now + wait, now).await? {
                        audit::append_in(&mut w, &entry, now).await?;
                    }
                    leases::release(&mut *w.tx, CONNECTION_REFRESH, &row.id, owner).await
                }
                .await;
                w.finish(work).await?;
                tracing::warn!(connection_id = %row.id, provider = %row.provider, error = %message, retry_in = wait, "token refresh failed");
                if timeout {
                    Err(TokenError::Timeout)
                } else {
                    Err(TokenError::Upstream { message: format!("The provider could not refresh the token: {message}"), provider_code })
                }
            }
        }
    }

    /// The provider granted new tokens: store them with their audit entry, retrying until storage
    /// takes them (or `grant_retry` runs out), in a task of its own that keeps the lease alive,
    /// so that neither a storage outage nor a caller that gives up loses the grant. The caller
    /// waits at most `lock_wait` for the write.
    async fn keep_grant(&self, row: Connection, grant: Grant, reason: Reason, owner: &str, heartbeat: Heartbeat) -> Result<AccessToken, TokenError> {
        let now = self.clock.now();
        let write = self.sealed(&row.id, &row.provider, &grant, now);
        let entry = self.entry(&row, "refresh", "ok", serde_json::json!({"reason": format!("{reason:?}"), "expires_in": grant.expires_in}));
        let token = AccessToken {
            connection_id: row.id.clone(),
            token: grant.access_token,
            version: row.version + 1,
            expires_at: write.expires_at,
            scope: Some(write.scope.clone()),
            provider_user_id: row.provider_user_id.clone(),
        };
        let (db, id, owner, version, retry_for) = (self.db.clone(), row.id.clone(), owner.to_string(), row.version, self.settings.grant_retry);
        let unstored = self.unstored.clone();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let _heartbeat = heartbeat;
            let give_up = tokio::time::Instant::now() + retry_for;
            let mut attempt = 0u32;
            let outcome = loop {
                let tried = async {
                    let mut w: WriteTx = db.begin_write().await?;
                    let work = async {
                        let written = connections::write_tokens(&mut *w.tx, &id, version, &write, None, true, now).await?;
                        if written {
                            audit::append_in(&mut w, &entry, now).await?;
                        }
                        leases::release(&mut *w.tx, CONNECTION_REFRESH, &id, &owner).await?;
                        Ok::<bool, StoreError>(written)
                    }
                    .await;
                    w.finish(work).await
                }
                .await;
                match tried {
                    Ok(written) => break Ok(written),
                    Err(e) if tokio::time::Instant::now() < give_up => {
                        attempt += 1;
                        if attempt == 1 {
                            unstored.lock().expect("unstored grants").insert(id.clone());
                        }
                        if attempt == 1 || attempt.is_multiple_of(20) {
                            tracing::warn!(connection_id = %id, error = %e, attempt, "could not store refreshed tokens; keeping them and retrying");
                        }
                        // Well inside the lease's grace, so that the grant lands before anyone
                        // else may take the lease once storage is back.
                        tokio::time::sleep(crate::providers::upstream::backoff(attempt).min(Duration::from_millis(500))).await;
                    }
                    Err(e) => break Err(e),
                }
            };
            unstored.lock().expect("unstored grants").remove(&id);
            match &outcome {
                Ok(true) if attempt > 0 => tracing::info!(connection_id = %id, attempts = attempt + 1, "refreshed tokens stored after a storage outage"),
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(connection_id = %id, error = %e, "refreshed tokens could not be stored in time and are lost; the connection will need consent again")
                }
            }
            let _ = done_tx.send(outcome);
        });
        match tokio::time::timeout(self.wait_budget(), done_rx).await {
            Ok(Ok(Ok(true))) => {
                tracing::info!(connection_id = %row.id, provider = %row.provider, "token refreshed");
                Ok(token)
            }
            Ok(Ok(Ok(false))) => {
                // Only possible when a lease expired mid-refresh: the newer row wins.
                tracing::warn!(connection_id = %row.id, "refresh lost a race after its lease expired; using the newer row");
                let fresh = connections::get_by_id(&self.db, &row.id).await?.ok_or(TokenError::NotConnected)?;
                self.usable(&fresh)
            }
            Ok(Ok(Err(e))) => Err(e.into()),
            // Still retrying (storage is down), or the task ended abnormally.
            Ok(Err(_)) | Err(_) => Err(TokenError::StorageUnavailable),
        }
    }

    /// Polls `row`'s connection for up to `within` for a newer version.
    async fn newer_row(&self, row: &Connection, within: Duration) -> Result<Option<Connection>, TokenError> {
        let until = tokio::time::Instant::now() + within;
        loop {
            let now = connections::get_by_id(&self.db, &row.id).await?.ok_or(TokenError::NotConnected)?;
            if now.version != row.version {
                return Ok(Some(now));
            }
            if tokio::time::Instant::now() >= until {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Marks the row at its read version `needs_reauth`, with its audit entry; `false` when a
    /// newer grant was stored meanwhile.
    async fn mark_dead(&self, row: &Connection, owner: &str, provider_code: &str) -> Result<bool, TokenError> {
        let now = self.clock.now();
        let entry = self.entry(row, "refresh", "needs_reauth", serde_json::json!({"provider_code": provider_code}));
        let mut w = self.db.begin_write().await?;
        let work = async {
            let marked = connections::mark_needs_reauth(&mut *w.tx, &row.id, row.version, connections::STATUS_NEEDS_REAUTH, now).await?;
            if marked {
                audit::append_in(&mut w, &entry, now).await?;
                crate::events::enqueue_in(&mut w, &crate::events::Event::needs_reauth(row, connections::STATUS_NEEDS_REAUTH), now).await?;
            }
            leases::release(&mut *w.tx, CONNECTION_REFRESH, &row.id, owner).await?;
            Ok(marked)
        }
        .await;
        let marked = w.finish(work).await?;
        if marked {
            self.webhooks.wake();
            tracing::warn!(connection_id = %row.id, provider = %row.provider, provider_code, "grant refused: connection needs consent again");
        }
        Ok(marked)
    }

    fn entry(&self, row: &Connection, action: &str, outcome: &str, detail: serde_json::Value) -> audit::NewEntry {
        audit::NewEntry {
            actor: "system:token-manager".into(),
            user_id: Some(row.user_id.clone()),
            provider: Some(row.provider.clone()),
            connection_id: Some(row.id.clone()),
            action: action.into(),
            outcome: outcome.into(),
            request_id: Some(crate::http::request_id::current()).filter(|r| !r.is_empty()),
            ip: None,
            detail,
        }
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
