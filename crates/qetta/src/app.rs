//! Startup: turns a validated [`Config`] into a running service, and the shared [`AppState`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;

use crate::auth::{Hasher, JwtKeys};
use crate::clock::Clock;
use crate::config::Config;
use crate::connections::{Catalogue, ConnectionService, Listed};
use crate::error::ApiError;
use crate::keys::{self, KeyError};
use crate::local_secrets;
use crate::providers::kftc::tran_id::TranIds;
use crate::providers::kftc::KftcProvider;
use crate::providers::kftc::{KftcClient, KftcEndpoints};
use crate::providers::oauth2::{OAuthClient, OAuthProvider, OAuthSettings};
use crate::providers::toss::{TossClient, TOSS_PRODUCTION_PUBLIC_KEY};
use crate::providers::upstream;
use crate::providers::{ProviderInfo, ProviderKind};
use crate::redis_conn::Redis;
use crate::shared_state::SharedState;
use crate::store::{Db, StoreError};
use crate::tokens::refresher::RefresherStats;
use crate::tokens::TokenManager;
use crate::toss_service::TossService;
use crate::vault::Vault;

/// What every handler can reach. Cheap to clone: one shared [`AppParts`] (axum clones the state
/// for every extractor and middleware of every request).
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl std::ops::Deref for AppState {
    type Target = AppParts;
    fn deref(&self) -> &AppParts {
        &self.0
    }
}

pub struct AppParts {
    pub config: Arc<Config>,
    pub db: Db,
    pub jwt: JwtKeys,
    /// Every password hash runs through this bound.
    pub hasher: Hasher,
    pub clock: Arc<dyn Clock>,
    pub shared: Arc<SharedState>,
    pub vault: Vault,
    pub tokens: Arc<TokenManager>,
    /// `None`: KFTC is not configured while another provider is real, so it is disabled.
    pub kftc_client: Option<Arc<KftcClient>>,
    pub kftc_settings: Arc<KftcResolved>,
    /// `None`: Toss is not configured while another provider is real, so it is disabled.
    pub toss_service: Option<Arc<TossService>>,
    pub refresher_stats: Arc<RefresherStats>,
    pub sandbox: Option<qetta_sandbox::Sandbox>,
    /// Wakes this replica's webhook delivery worker (after an event is enqueued).
    pub webhooks: Arc<crate::events::Webhooks>,
    /// The connection core: the provider catalogue and every user's connections.
    pub connections: Arc<ConnectionService>,
    /// The one upstream HTTP client (no redirects, rustls, pooled), for the proxy.
    pub http: reqwest::Client,
}

impl AppParts {
    /// The KFTC client, or the error every KFTC route answers when KFTC is disabled.
    pub fn kftc(&self) -> Result<&Arc<KftcClient>, ApiError> {
        self.kftc_client.as_ref().ok_or_else(|| not_configured("kftc"))
    }

    /// The Toss service, or the error every Toss route answers when Toss is disabled.
    pub fn toss(&self) -> Result<&Arc<TossService>, ApiError> {
        self.toss_service.as_ref().ok_or_else(|| not_configured("toss"))
    }

    /// Whether `provider` can be used on this server.
    pub fn provider_configured(&self, provider: &str) -> bool {
        self.connections.catalogue().is_configured(provider)
    }
}

/// A provider that is neither configured nor simulated (another provider is real, so the
/// embedded sandbox is off).
pub fn not_configured(provider: &str) -> ApiError {
    let (name, vars) = match provider {
        "kftc" => ("KFTC OpenBanking", "KFTC_API_BASE, KFTC_CLIENT_ID, KFTC_CLIENT_SECRET and KFTC_CLIENT_USE_CODE"),
        "toss" => ("Toss Certification", "TOSS_OAUTH_BASE, TOSS_API_BASE, TOSS_CLIENT_ID and TOSS_CLIENT_SECRET"),
        "kakao" => ("Kakao Login", "KAKAO_CLIENT_ID and KAKAO_CLIENT_SECRET"),
        "naver" => ("Naver Login", "NAVER_CLIENT_ID and NAVER_CLIENT_SECRET"),
        _ => ("This provider", "its settings"),
    };
    ApiError::ProviderNotConfigured(format!("{name} is not configured on this server (its operator sets {vars})."))
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
    /// Authenticates the transaction cursors we hand out (derived from the JWT secret, so every
    /// replica accepts every other's cursors).
    pub cursor_key: [u8; 32],
}

/// A key for `purpose` derived from the JWT secret (HMAC-SHA256), so that one configured secret
/// serves several uses without reusing the same key for two.
fn derive_key(secret: &str, purpose: &str) -> [u8; 32] {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(purpose.as_bytes());
    mac.finalize().into_bytes().into()
}

/// Why the service could not start. Each message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create the data directory {path}: {source} (set QETTA_DATA_DIR to a writable directory)")]
    DataDir { path: String, source: std::io::Error },
    #[error("cannot connect to the database at {url}: {cause} (check DATABASE_URL; QETTA_DB_CONNECT_WAIT_SECS sets how long a database that is starting is waited for)")]
    DatabaseConnect { url: String, cause: String },
    #[error("database migration failed: {0}")]
    Migrate(StoreError),
    #[error("cannot write the administrators of QETTA_ADMIN_EMAILS to the database: {0}")]
    Admins(StoreError),
    #[error("cannot listen on {addr}: {source} (set HOST and PORT)")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot listen on {addr} for the admin listener: {source} (set QETTA_ADMIN_ADDR, or off)")]
    AdminBind { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("cannot connect to Redis at {url}: {source} (check REDIS_URL)")]
    Redis { url: String, source: redis::RedisError },
    #[error("sandbox: {0}")]
    Sandbox(String),
    #[error("toss: {0}")]
    Toss(String),
    /// A provider of the catalogue cannot be set up (names the provider and the setting).
    #[error("provider {name}: {problem}")]
    Provider { name: String, problem: String },
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// Notes for the startup banner: which parts run on embedded defaults.
#[derive(Debug, Default, Clone)]
pub struct Banner {
    pub notes: Vec<String>,
    pub warnings: Vec<String>,
}

pub struct App {
    listener: TcpListener,
    /// `/metrics`, `/health`, `/ready` for operators, off the public port.
    admin_listener: Option<TcpListener>,
    state: AppState,
    pub banner: Banner,
}

/// Connects to the database without migrating (waiting `QETTA_DB_CONNECT_WAIT_SECS` for one that
/// is starting); the error names the root cause once.
pub async fn connect_database(config: &Config) -> Result<Db, StartError> {
    let db = Db::connect_waiting(config.database_url.expose_secret(), config.database_kind, config.database_connect_wait).await;
    db.map_err(|e| start_error(config, e))
}

/// The database, read-only (`qetta audit verify`).
pub async fn connect_database_read_only(config: &Config) -> Result<Db, StartError> {
    Db::connect_read_only(config.database_url.expose_secret(), config.database_kind).await.map_err(|e| start_error(config, e))
}

fn start_error(config: &Config, e: StoreError) -> StartError {
    let cause = match &e {
        StoreError::Database(inner) => crate::store::root_cause(inner),
        other => other.to_string(),
    };
    StartError::DatabaseConnect { url: config.database_url_for_display(), cause }
}

/// Connects to the database (creating the SQLite data directory first) and runs migrations.
pub async fn open_database(config: &Config) -> Result<Db, StartError> {
    let data_dir_err = |source| StartError::DataDir { path: config.data_dir.display().to_string(), source };
    if config.database_is_default {
        local_secrets::create_private_dir(&config.data_dir).map_err(data_dir_err)?;
    }
    if let Some(path) = config.sqlite_path() {
        local_secrets::private_sqlite_file(&path).map_err(|source| StartError::DataDir { path: path.display().to_string(), source })?;
    }
    let db = connect_database(config).await?;
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
        config.check_serve_rules()?;
        let mut banner = Banner::default();
        for (name, closest) in config.sources.unknown_variables() {
            banner.warnings.push(crate::operator::unknown_warning(&name, closest));
        }
        let data_dir_err = |source| StartError::DataDir { path: config.data_dir.display().to_string(), source };
        let db = open_database(&config).await?;
        // QETTA_ADMIN_EMAILS into the admins table (see `admin`).
        banner.warnings.extend(crate::admin::sync_configured(&db, &config.admin_emails, clock.now()).await.map_err(StartError::Admins)?);
        if config.database_is_default {
            banner.notes.push(format!("database: embedded SQLite at {}", config.data_dir.join("qetta.db").display()));
        } else {
            banner.notes.push(format!("database: {}", config.database_url_for_display()));
        }

        let jwt_secret = match &config.jwt_secret {
            Some(s) => s.expose_secret().to_string(),
            None => {
                local_secrets::create_private_dir(&config.data_dir).map_err(data_dir_err)?;
                let (secret, _) = local_secrets::load_or_create(&config.data_dir, "jwt_secret").map_err(data_dir_err)?;
                banner.warnings.push(format!(
                    "JWT_SECRET is not set: using a generated secret kept in {}. Set JWT_SECRET (32+ characters) in production, the same on every replica.",
                    config.data_dir.join("jwt_secret").display()
                ));
                secret
            }
        };
        let cursor_key = derive_key(&jwt_secret, "qetta-connect transactions cursor v1");
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

        if config.webhooks.allow_private {
            banner.warnings.push("QETTA_WEBHOOK_ALLOW_PRIVATE=true: webhooks may target loopback and private networks (development only).".into());
        }
        let redis = open_redis(&config).await?;
        banner.notes.push(match &redis {
            Some(_) => "shared state: Redis".to_string(),
            None => "shared state: database and in-process (set REDIS_URL to share rate limits across replicas)".to_string(),
        });

        let addr = SocketAddr::new(config.host, config.port);
        let listener = TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })?;
        let bound = listener.local_addr().map_err(|source| StartError::Bind { addr, source })?;
        let admin_listener = match config.admin_addr {
            Some(addr) => Some(TcpListener::bind(addr).await.map_err(|source| StartError::AdminBind { addr, source })?),
            None => None,
        };
        if let Some(a) = admin_listener.as_ref().and_then(|l| l.local_addr().ok()) {
            banner.notes.push(format!("admin: http://{a}/metrics, /health, /ready"));
        }
        // With PORT=0 the public URL follows the port the OS chose.
        let mut config = config;
        if config.sources.get("QETTA_PUBLIC_URL").is_none() {
            let host = if config.host.is_unspecified() {
                "127.0.0.1".to_string()
            } else if config.host.is_ipv6() {
                format!("[{}]", config.host)
            } else {
                config.host.to_string()
            };
            config.public_url = format!("http://{host}:{}", bound.port());
        }
        let loopback = format!("http://127.0.0.1:{}", bound.port());
        let own_callback = callback_of(&config.public_url, "kftc");

        // The embedded sandbox runs only when no provider is real (or on purpose, which config
        // allows only then): its control API must never sit beside a real provider. A provider
        // that is neither configured nor simulated is disabled.
        let (sandbox, sandbox_config) = if config.sandbox_mounted() {
            let mut sc = qetta_sandbox::SandboxConfig::from_lookup(|k| config.sources.get(k)).map_err(|e| StartError::Sandbox(e.to_string()))?;
            if config.kftc.redirect_uri.is_none() {
                sc.kftc.redirect_uris = vec![own_callback.clone()];
            }
            // The simulated Kakao and Naver also know this service's own callbacks.
            sc.kakao.redirect_uris.push(callback_of(&config.public_url, "kakao"));
            sc.naver.redirect_uris.push(callback_of(&config.public_url, "naver"));
            (Some(qetta_sandbox::Sandbox::new(sc.clone())), Some(sc))
        } else {
            (None, None)
        };

        let http = upstream::http_client(config.tokens.upstream_timeout);
        let disabled_kftc = || KftcResolved {
            scope: config.kftc.scope.clone(),
            redirect_uri: config.kftc.redirect_uri.clone().unwrap_or_else(|| own_callback.clone()),
            authorize_base: String::new(),
            api_base: String::new(),
            sandbox: false,
            cursor_key,
        };
        let kftc_parts = match (&config.kftc.api_base, sandbox.as_ref().zip(sandbox_config.as_ref())) {
            (Some(base), _) => Some((
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
                    cursor_key,
                },
            )),
            (None, Some((sb, sc))) => {
                let redirect_uri = config.kftc.redirect_uri.clone().unwrap_or_else(|| own_callback.clone());
                Some((
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
                        cursor_key,
                    },
                ))
            }
            (None, None) => None,
        };
        let (kftc, kftc_resolved) = match kftc_parts {
            Some((endpoints, client_use_code, resolved)) => {
                banner.notes.push(if resolved.sandbox {
                    format!("kftc: embedded sandbox at {}/sandbox/kftc", config.public_url)
                } else {
                    format!("kftc: {}", resolved.api_base)
                });
                let tran_ids = match &redis {
                    Some(r) => TranIds::with_legacy_redis(client_use_code, db.clone(), r.clone(), &config.redis_prefix),
                    None => TranIds::with_database(client_use_code, db.clone()),
                };
                (Some(Arc::new(KftcClient::new(http.clone(), endpoints, tran_ids, config.tokens.upstream_timeout, config.breaker))), resolved)
            }
            None => {
                banner.warnings.push("kftc: not configured, disabled (set KFTC_API_BASE and its credentials to enable it)".into());
                (None, disabled_kftc())
            }
        };
        if sandbox.is_some() {
            banner.notes.push(format!("toss: embedded sandbox at {}/sandbox/toss", config.public_url));
            banner.notes.push(format!("kakao, naver: embedded sandbox at {0}/sandbox/kakao, {0}/sandbox/naver", config.public_url));
            banner.warnings.push(format!(
                "SANDBOX MODE: simulated banks, Toss, Kakao and Naver, with an unauthenticated control API, are served at {}/sandbox/. Never use this with real users; configure the providers for production.",
                config.public_url
            ));
        }

        // Toss: the configured hosts and key, or the embedded sandbox with its registration and key.
        let toss_parts = match (&config.toss.oauth_base, &config.toss.api_base, sandbox.as_ref().zip(sandbox_config.as_ref())) {
            (Some(oauth), Some(api), _) => Some((
                TossClient::new(
                    http.clone(),
                    oauth.clone(),
                    api.clone(),
                    config.toss.client_id.clone().expect("checked by config"),
                    config.toss.client_secret.clone().expect("checked by config"),
                    config.toss.rsa_public_key.as_deref().unwrap_or(TOSS_PRODUCTION_PUBLIC_KEY),
                ),
                false,
            )),
            (_, None, Some((sb, sc))) => Some((
                TossClient::new(
                    http.clone(),
                    format!("{loopback}/sandbox/toss"),
                    format!("{loopback}/sandbox/toss"),
                    sc.toss.client_id.clone(),
                    SecretString::from(sc.toss.client_secret.clone()),
                    &config.toss.rsa_public_key.clone().unwrap_or_else(|| sb.toss_public_key_base64()),
                ),
                true,
            )),
            // Config requires both Toss bases or neither.
            _ => None,
        };
        let toss = match toss_parts {
            Some((client, toss_sandbox)) => {
                if !toss_sandbox {
                    banner.notes.push(format!("toss: {}", config.toss.api_base.as_deref().unwrap_or_default()));
                }
                let client = client.map_err(|e| StartError::Toss(format!("TOSS_RSA_PUBLIC_KEY: {e}")))?;
                Some(Arc::new(TossService::new(
                    client,
                    db.clone(),
                    vault.clone(),
                    clock.clone(),
                    config.tokens.clone(),
                    config.toss.request_url.clone(),
                    toss_sandbox,
                    config.breaker,
                )))
            }
            None => {
                banner.warnings.push("toss: not configured, disabled (set TOSS_OAUTH_BASE, TOSS_API_BASE and the credentials to enable it)".into());
                None
            }
        };

        let mut manager = TokenManager::new(db.clone(), vault.clone(), clock.clone(), config.tokens.clone());
        let catalogue = build_catalogue(&config, &http, &loopback, kftc.as_ref(), &kftc_resolved, toss.is_some(), sandbox_config.as_ref(), &mut banner)?;
        for p in catalogue.providers() {
            manager.register(&p.info().name, p.refresher());
        }
        let tokens = Arc::new(manager);
        let webhooks = tokens.webhooks().clone();
        let connections = Arc::new(ConnectionService::new(catalogue, tokens.clone(), db.clone(), vault.clone(), clock.clone()));

        let state = AppState(Arc::new(AppParts {
            shared: Arc::new(SharedState::new(db.clone(), redis, &config.redis_prefix)),
            hasher: Hasher::new(config.hash_concurrency, config.hash_queue_wait),
            config: Arc::new(config),
            db,
            jwt,
            clock,
            vault,
            tokens,
            connections,
            http: http.clone(),
            kftc_client: kftc,
            kftc_settings: Arc::new(kftc_resolved),
            toss_service: toss,
            refresher_stats: Arc::new(RefresherStats::default()),
            sandbox,
            webhooks,
        }));
        Ok(Self { listener, admin_listener, state, banner })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Where the admin listener listens, when it is on.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then finishes the requests in flight.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let router = crate::http::router(self.state.clone());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let refresher =
            self.state.config.tokens.refresher_enabled.then(|| {
                tokio::spawn(crate::tokens::refresher::run(Arc::new(self.state.tokens.for_background()), self.state.refresher_stats.clone(), stop_rx))
            });
        let sync = self.state.config.sync.enabled.then(|| tokio::spawn(crate::sync::job::run(self.state.clone(), stop_tx.subscribe())));
        let s = &self.state;
        let worker = crate::events::delivery::Worker::new(s.db.background(), s.vault.clone(), s.clock.clone(), s.config.webhooks.clone(), s.webhooks.clone());
        let webhooks = tokio::spawn(crate::events::delivery::run(worker, stop_tx.subscribe()));
        // The admin listener stops with the public one.
        let admin = self.admin_listener.map(|l| {
            let router = crate::http::admin_router(self.state.clone());
            let mut stop = stop_tx.subscribe();
            tokio::spawn(async move {
                let stopped = async move {
                    let _ = stop.changed().await;
                };
                if let Err(e) = axum::serve(l, router).with_graceful_shutdown(stopped).await {
                    tracing::error!(error = %e, "the admin listener stopped");
                }
            })
        });
        let result = axum::serve(self.listener, router.into_make_service_with_connect_info::<SocketAddr>()).with_graceful_shutdown(shutdown).await;
        let _ = stop_tx.send(true);
        if let Some(task) = admin {
            let _ = task.await;
        }
        if let Some(task) = refresher {
            let _ = task.await;
        }
        if let Some(task) = sync {
            let _ = task.await;
        }
        let _ = webhooks.await;
        self.state.db.close().await;
        result
    }
}

/// Resolves on Ctrl-C or SIGTERM. The handlers are installed when this is called, not when the
/// future is first polled: call it before listening, so that a SIGTERM arriving right after the
/// port opens drains the service instead of killing it.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let (interrupt, terminate) = {
        use tokio::signal::unix::{signal, SignalKind};
        (signal(SignalKind::interrupt()).ok(), signal(SignalKind::terminate()).ok())
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = wait(interrupt) => {},
                _ = wait(terminate) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down: finishing requests in flight");
    }
}

/// This service's callback for `provider` (the redirect URI to register with it).
pub fn callback_of(public_url: &str, provider: &str) -> String {
    format!("{public_url}/api/v1/oauth/{provider}/callback")
}

/// The provider catalogue: KFTC, Toss, Kakao, Naver (each configured, simulated by the embedded
/// sandbox, or listed as disabled) and the providers of `QETTA_PROVIDERS_FILE`.
#[allow(clippy::too_many_arguments)]
fn build_catalogue(
    config: &Config,
    http: &reqwest::Client,
    loopback: &str,
    kftc: Option<&Arc<KftcClient>>,
    kftc_resolved: &KftcResolved,
    toss_enabled: bool,
    sandbox: Option<&qetta_sandbox::SandboxConfig>,
    banner: &mut Banner,
) -> Result<Catalogue, StartError> {
    let mut catalogue = Catalogue::default();
    let disabled =
        |name: &str, display_name: &str, kind| Listed { name: name.into(), display_name: display_name.into(), kind, configured: false, sandbox: false };
    let kftc_scopes: Vec<String> = kftc_resolved.scope.split_whitespace().map(str::to_string).collect();
    match kftc {
        Some(client) => {
            let info = ProviderInfo {
                name: "kftc".into(),
                display_name: "KFTC Open Banking (your bank accounts)".into(),
                display_name_ko: "금융결제원 오픈뱅킹(은행 계좌)".into(),
                kind: ProviderKind::Kftc,
                sandbox: kftc_resolved.sandbox,
                // KFTC's APIs need a bank_tran_id per call: they have their own routes, no proxy.
                api_base: None,
                default_scopes: kftc_scopes.clone(),
                // The user-grant scopes SPEC A4 confirms.
                allowed_scopes: ["login", "inquiry", "transfer"].iter().map(|s| s.to_string()).collect(),
            };
            let prefix = kftc_resolved.sandbox.then(|| (kftc_resolved.api_base.clone(), kftc_resolved.authorize_base.clone()));
            catalogue.add(Arc::new(KftcProvider::new(client.clone(), info, kftc_resolved.scope.clone(), prefix)));
        }
        None => catalogue.list(disabled("kftc", "KFTC Open Banking (your bank accounts)", ProviderKind::Kftc)),
    }
    catalogue.list(Listed {
        name: "toss".into(),
        display_name: "Toss Certification (identity verification)".into(),
        kind: ProviderKind::ClientCredentials,
        configured: toss_enabled,
        sandbox: toss_enabled && sandbox.is_some(),
    });

    let oauth = |name: &str, display: &str, display_ko: &str, mut settings: OAuthSettings, api_base: Option<String>, simulated: Option<String>| {
        if settings.redirect_uri.is_empty() {
            settings.redirect_uri = callback_of(&config.public_url, name);
        }
        let kind = if settings.oidc { ProviderKind::Oidc } else { ProviderKind::Oauth2 };
        let scopes = settings.scopes.clone();
        let client = OAuthClient::new(settings, http.clone(), config.tokens.upstream_timeout, config.breaker)
            .map_err(|e| StartError::Provider { name: name.into(), problem: e.to_string() })?;
        let info = ProviderInfo {
            name: name.into(),
            display_name: display.into(),
            display_name_ko: display_ko.into(),
            kind,
            sandbox: simulated.is_some(),
            api_base,
            default_scopes: scopes.clone(),
            allowed_scopes: scopes,
        };
        let prefix = simulated.map(|inner| {
            let public = inner.replacen(loopback, &config.public_url, 1);
            (inner, public)
        });
        Ok::<_, StartError>(Arc::new(OAuthProvider::new(Arc::new(client), info, prefix)))
    };

    // Kakao: configured, or the sandbox's simulator (over loopback, like KFTC's).
    let kakao = match (&config.providers.kakao, sandbox) {
        (Some(k), _) => Some(oauth("kakao", &k.display_name, "카카오 로그인", k.settings.clone(), k.api_base.clone(), None)?),
        (None, Some(sc)) => {
            let base = format!("{loopback}/sandbox/kakao");
            let secret = sc.kakao.client_secret_enabled.then(|| SecretString::from(sc.kakao.client_secret.clone()));
            let mut s = OAuthSettings::kakao(&sc.kakao.client_id, secret, "");
            s.issuer = Some(base.clone());
            s.endpoints.userinfo_url = Some(format!("{base}/v2/user/me"));
            s.endpoints.unlink_url = Some(format!("{base}/v1/user/unlink"));
            Some(oauth("kakao", "Kakao", "카카오 로그인", s, Some(base.clone()), Some(base))?)
        }
        (None, None) => None,
    };
    match kakao {
        Some(p) => catalogue.add(p),
        None => catalogue.list(disabled("kakao", "Kakao", ProviderKind::Oidc)),
    }
    let naver = match (&config.providers.naver, sandbox) {
        (Some(n), _) => Some(oauth("naver", &n.display_name, "네이버 로그인", n.settings.clone(), n.api_base.clone(), None)?),
        (None, Some(sc)) => {
            let base = format!("{loopback}/sandbox/naver");
            let mut s = OAuthSettings::naver(&sc.naver.client_id, SecretString::from(sc.naver.client_secret.clone()), "");
            s.issuer = Some(base.clone());
            s.endpoints.revocation_url = Some(format!("{base}/oauth2.0/revoke"));
            s.endpoints.userinfo_url = Some(format!("{base}/v1/nid/me"));
            Some(oauth("naver", "Naver", "네이버 로그인", s, Some(base.clone()), Some(base))?)
        }
        (None, None) => None,
    };
    match naver {
        Some(p) => catalogue.add(p),
        None => catalogue.list(disabled("naver", "Naver", ProviderKind::Oidc)),
    }
    for (name, c) in &config.providers.custom {
        catalogue.add(oauth(name, &c.display_name, &c.display_name, c.settings.clone(), c.api_base.clone(), None)?);
        banner.notes.push(format!(
            "{name}: {} (from {})",
            c.settings.issuer.as_deref().or(c.settings.endpoints.authorize_url.as_deref()).unwrap_or(""),
            c.source
        ));
    }
    Ok(catalogue)
}
