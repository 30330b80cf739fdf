//! Startup: turns a validated [`Config`] into a running service, and the shared [`AppState`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;

use crate::auth::JwtKeys;
use crate::clock::Clock;
use crate::config::Config;
use crate::keys::{self, KeyError};
use crate::local_secrets;
use crate::providers::kftc::client::KftcRefresher;
use crate::providers::kftc::tran_id::TranIds;
use crate::providers::kftc::{KftcClient, KftcEndpoints};
use crate::providers::toss::{TossClient, TOSS_PRODUCTION_PUBLIC_KEY};
use crate::providers::upstream;
use crate::redis_conn::Redis;
use crate::shared_state::SharedState;
use crate::store::{Db, StoreError};
use crate::tokens::locks::RedisLock;
use crate::tokens::refresher::RefresherStats;
use crate::tokens::TokenManager;
use crate::toss_service::TossService;
use crate::vault::Vault;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Db,
    pub jwt: JwtKeys,
    pub clock: Arc<dyn Clock>,
    pub shared: Arc<SharedState>,
    pub vault: Vault,
    pub tokens: Arc<TokenManager>,
    pub kftc: Arc<KftcClient>,
    pub kftc_settings: Arc<KftcResolved>,
    pub toss: Arc<TossService>,
    pub refresher_stats: Arc<RefresherStats>,
    pub sandbox: Option<qetta_sandbox::Sandbox>,
}

/// KFTC settings after defaults (sandbox registration, own callback URL) are applied.
pub struct KftcResolved {
    pub scope: String,
    pub redirect_uri: String,
    /// Where browsers are sent for consent (differs from the API base for the embedded sandbox,
    /// which the service itself calls over loopback).
    pub authorize_base: String,
    pub api_base: String,
    pub sandbox: bool,
}

/// Why the service could not start. Each message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create the data directory {path}: {source} (set QETTA_DATA_DIR to a writable directory)")]
    DataDir { path: String, source: std::io::Error },
    #[error("cannot connect to the database at {url}: {source} (check DATABASE_URL)")]
    DatabaseConnect { url: String, source: StoreError },
    #[error("database migration failed: {0}")]
    Migrate(StoreError),
    #[error("cannot listen on {addr}: {source} (set HOST and PORT)")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("encryption keys: {0}")]
    Keys(#[from] KeyError),
    #[error("cannot connect to Redis at {url}: {source} (check REDIS_URL)")]
    Redis { url: String, source: redis::RedisError },
    #[error("sandbox: {0}")]
    Sandbox(String),
    #[error("toss: {0}")]
    Toss(String),
}

/// Notes for the startup banner: which parts run on embedded defaults.
#[derive(Debug, Default, Clone)]
pub struct Banner {
    pub notes: Vec<String>,
    pub warnings: Vec<String>,
}

pub struct App {
    listener: TcpListener,
    state: AppState,
    pub banner: Banner,
}

/// Connects to the database (creating the SQLite data directory first) and runs migrations.
pub async fn open_database(config: &Config) -> Result<Db, StartError> {
    if config.database_is_default {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir { path: config.data_dir.display().to_string(), source })?;
    }
    let db = Db::connect(config.database_url.expose_secret(), config.database_kind)
        .await
        .map_err(|source| StartError::DatabaseConnect { url: config.database_url_for_display(), source })?;
    db.migrate().await.map_err(StartError::Migrate)?;
    Ok(db)
}

/// Connects to Redis when `REDIS_URL` is set: every call bounded by `QETTA_REDIS_TIMEOUT_MS`,
/// reconnects at most a second apart (see [`crate::redis_conn`]). Redis must answer at start;
/// later outages are served by the fallbacks.
pub async fn open_redis(config: &Config) -> Result<Option<Redis>, StartError> {
    let Some(url) = &config.redis_url else { return Ok(None) };
    let shown = crate::config::redact_url(url.expose_secret());
    let redis = Redis::connect(url.expose_secret(), config.redis_timeout, std::time::Duration::from_secs(5))
        .await
        .map_err(|source| StartError::Redis { url: shown, source })?;
    Ok(Some(redis))
}

impl App {
    pub async fn build(config: Config, clock: Arc<dyn Clock>) -> Result<Self, StartError> {
        let mut banner = Banner::default();
        let data_dir_err = |source| StartError::DataDir { path: config.data_dir.display().to_string(), source };
        let db = open_database(&config).await?;
        if config.database_is_default {
            banner.notes.push(format!("database: embedded SQLite at {}", config.data_dir.join("qetta.db").display()));
        } else {
            banner.notes.push(format!("database: {}", config.database_url_for_display()));
        }

        let jwt_secret = match &config.jwt_secret {
            Some(s) => s.expose_secret().to_string(),
            None => {
                std::fs::create_dir_all(&config.data_dir).map_err(data_dir_err)?;
                let (secret, _) = local_secrets::load_or_create(&config.data_dir, "jwt_secret").map_err(data_dir_err)?;
                banner.warnings.push(format!(
                    "JWT_SECRET is not set: using a generated secret kept in {}. Set JWT_SECRET (32+ characters) in production, the same on every replica.",
                    config.data_dir.join("jwt_secret").display()
                ));
                secret
            }
        };
        let jwt = JwtKeys::new(jwt_secret.as_bytes(), &config.jwt_issuer, &config.jwt_audience, config.jwt_ttl.as_secs() as i64);

        let (ring, generated) = keys::load_ring(&config)?;
        if generated {
            banner.warnings.push(format!(
                "QETTA_ENCRYPTION_KEYS is not set: tokens are encrypted with a generated key kept in {}. Back it up, or set QETTA_ENCRYPTION_KEYS (see `qetta keys generate`).",
                config.data_dir.join("encryption_keys").display()
            ));
        }
        keys::verify_against_store(&db, &ring).await?;
        let vault = Vault::new(ring);

        let redis = open_redis(&config).await?;
        banner.notes.push(match &redis {
            Some(_) => "shared state: Redis".to_string(),
            None => "shared state: database and in-process (set REDIS_URL to share rate limits across replicas)".to_string(),
        });

        let addr = SocketAddr::new(config.host, config.port);
        let listener = TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })?;
        let bound = listener.local_addr().map_err(|source| StartError::Bind { addr, source })?;
        // With PORT=0 the public URL follows the port the OS chose.
        let mut config = config;
        if config.sources.get("QETTA_PUBLIC_URL").is_none() {
            let host = if config.host.is_unspecified() { "127.0.0.1".to_string() } else if config.host.is_ipv6() { format!("[{}]", config.host) } else { config.host.to_string() };
            config.public_url = format!("http://{host}:{}", bound.port());
        }
        let loopback = format!("http://127.0.0.1:{}", bound.port());
        let own_callback = format!("{}/api/v1/oauth/kftc/callback", config.public_url);

        // The embedded sandbox serves every provider whose API base is not configured.
        let needs_sandbox = config.kftc.api_base.is_none() || config.toss.api_base.is_none();
        let (sandbox, sandbox_config) = if needs_sandbox {
            let mut sc = qetta_sandbox::SandboxConfig::from_lookup(|k| config.sources.get(k)).map_err(|e| StartError::Sandbox(e.to_string()))?;
            if config.kftc.redirect_uri.is_none() {
                sc.kftc.redirect_uris = vec![own_callback.clone()];
            }
            (Some(qetta_sandbox::Sandbox::new(sc.clone())), Some(sc))
        } else {
            (None, None)
        };

        let http = upstream::http_client(config.tokens.upstream_timeout);
        let (kftc_endpoints, client_use_code, kftc_resolved) = match (&config.kftc.api_base, sandbox.as_ref().zip(sandbox_config.as_ref())) {
            (Some(base), _) => (
                KftcEndpoints {
                    base: base.clone(),
                    client_id: config.kftc.client_id.clone().expect("checked by config"),
                    client_secret: config.kftc.client_secret.clone().expect("checked by config"),
                    redirect_uri: config.kftc.redirect_uri.clone().unwrap_or_else(|| own_callback.clone()),
                },
                config.kftc.client_use_code.clone().expect("checked by config"),
                KftcResolved {
                    scope: config.kftc.scope.clone(),
                    redirect_uri: config.kftc.redirect_uri.clone().unwrap_or_else(|| own_callback.clone()),
                    authorize_base: base.clone(),
                    api_base: base.clone(),
                    sandbox: false,
                },
            ),
            (None, Some((sb, sc))) => {
                let redirect_uri = config.kftc.redirect_uri.clone().unwrap_or_else(|| own_callback.clone());
                (
                    KftcEndpoints {
                        base: format!("{loopback}/sandbox/kftc"),
                        client_id: sc.kftc.client_id.clone(),
                        client_secret: SecretString::from(sc.kftc.client_secret.clone()),
                        redirect_uri: redirect_uri.clone(),
                    },
                    sb.kftc_client_use_code(),
                    KftcResolved {
                        scope: config.kftc.scope.clone(),
                        redirect_uri,
                        authorize_base: format!("{}/sandbox/kftc", config.public_url),
                        api_base: format!("{loopback}/sandbox/kftc"),
                        sandbox: true,
                    },
                )
            }
            (None, None) => unreachable!("the sandbox runs when KFTC_API_BASE is unset"),
        };
        banner.notes.push(if kftc_resolved.sandbox {
            format!("kftc: embedded sandbox at {}/sandbox/kftc", config.public_url)
        } else {
            format!("kftc: {}", kftc_resolved.api_base)
        });
        if config.toss.api_base.is_none() {
            banner.notes.push(format!("toss: embedded sandbox at {}/sandbox/toss", config.public_url));
        }

        let tran_ids = match &redis {
            Some(r) => TranIds::with_legacy_redis(client_use_code, db.clone(), r.clone(), &config.redis_prefix),
            None => TranIds::with_database(client_use_code, db.clone()),
        };
        let kftc = Arc::new(KftcClient::new(http.clone(), kftc_endpoints, tran_ids, config.tokens.upstream_timeout, config.breaker));

        let redis_lock = redis.as_ref().map(|r| RedisLock::new(r.clone(), crate::tokens::lock_ttl(&config.tokens), &config.redis_prefix));

        // Toss: the configured hosts and key, or the embedded sandbox with its registration and key.
        let (toss_client, toss_sandbox) = match (&config.toss.oauth_base, &config.toss.api_base, sandbox.as_ref().zip(sandbox_config.as_ref())) {
            (Some(oauth), Some(api), _) => (
                TossClient::new(
                    http.clone(),
                    oauth.clone(),
                    api.clone(),
                    config.toss.client_id.clone().expect("checked by config"),
                    config.toss.client_secret.clone().expect("checked by config"),
                    config.toss.rsa_public_key.as_deref().unwrap_or(TOSS_PRODUCTION_PUBLIC_KEY),
                ),
                false,
            ),
            (_, None, Some((sb, sc))) => (
                TossClient::new(
                    http.clone(),
                    format!("{loopback}/sandbox/toss"),
                    format!("{loopback}/sandbox/toss"),
                    sc.toss.client_id.clone(),
                    SecretString::from(sc.toss.client_secret.clone()),
                    &config.toss.rsa_public_key.clone().unwrap_or_else(|| sb.toss_public_key_base64()),
                ),
                true,
            ),
            _ => unreachable!("the sandbox runs when TOSS_API_BASE is unset, and config requires both Toss bases or neither"),
        };
        let toss_client = toss_client.map_err(|e| StartError::Toss(format!("TOSS_RSA_PUBLIC_KEY: {e}")))?;
        let toss = Arc::new(TossService::new(
            toss_client,
            db.clone(),
            vault.clone(),
            clock.clone(),
            config.tokens.clone(),
            config.toss.request_url.clone(),
            redis_lock.clone(),
            toss_sandbox,
            config.breaker,
        ));

        let mut manager = TokenManager::new(db.clone(), vault.clone(), clock.clone(), config.tokens.clone(), redis_lock);
        manager.register("kftc", Arc::new(KftcRefresher(kftc.clone())));

        let state = AppState {
            shared: Arc::new(SharedState::new(db.clone(), redis, &config.redis_prefix)),
            config: Arc::new(config),
            db,
            jwt,
            clock,
            vault,
            tokens: Arc::new(manager),
            kftc,
            kftc_settings: Arc::new(kftc_resolved),
            toss,
            refresher_stats: Arc::new(RefresherStats::default()),
            sandbox,
        };
        Ok(Self { listener, state, banner })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then finishes the requests in flight.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let router = crate::http::router(self.state.clone());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let refresher = self.state.config.tokens.refresher_enabled.then(|| {
            tokio::spawn(crate::tokens::refresher::run(self.state.tokens.clone(), self.state.refresher_stats.clone(), stop_rx))
        });
        let result = axum::serve(self.listener, router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(shutdown)
            .await;
        let _ = stop_tx.send(true);
        if let Some(task) = refresher {
            let _ = task.await;
        }
        self.state.db.close().await;
        result
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
