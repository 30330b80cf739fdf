//! Startup: turns a validated [`Config`] into a running service, and the shared [`AppState`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use secrecy::ExposeSecret;
use tokio::net::TcpListener;

use crate::auth::throttle::LoginThrottle;
use crate::auth::JwtKeys;
use crate::clock::Clock;
use crate::config::Config;
use crate::local_secrets;
use crate::store::{Db, StoreError};

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Db,
    pub jwt: JwtKeys,
    pub clock: Arc<dyn Clock>,
    pub login_throttle: Arc<LoginThrottle>,
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
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|source| StartError::DataDir { path: config.data_dir.display().to_string(), source })?;
    }
    let db = Db::connect(config.database_url.expose_secret(), config.database_kind)
        .await
        .map_err(|source| StartError::DatabaseConnect { url: config.database_url_for_display(), source })?;
    db.migrate().await.map_err(StartError::Migrate)?;
    Ok(db)
}

impl App {
    pub async fn build(config: Config, clock: Arc<dyn Clock>) -> Result<Self, StartError> {
        let mut banner = Banner::default();
        let db = open_database(&config).await?;
        if config.database_is_default {
            banner.notes.push(format!("database: embedded SQLite at {}", config.data_dir.join("qetta.db").display()));
        } else {
            banner.notes.push(format!("database: {}", config.database_url_for_display()));
        }

        let jwt_secret = match &config.jwt_secret {
            Some(s) => s.expose_secret().to_string(),
            None => {
                std::fs::create_dir_all(&config.data_dir)
                    .map_err(|source| StartError::DataDir { path: config.data_dir.display().to_string(), source })?;
                let (secret, _) = local_secrets::load_or_create(&config.data_dir, "jwt_secret")
                    .map_err(|source| StartError::DataDir { path: config.data_dir.display().to_string(), source })?;
                banner.warnings.push(format!(
                    "JWT_SECRET is not set: using a generated secret kept in {}. Set JWT_SECRET (32+ characters) in production, the same on every replica.",
                    config.data_dir.join("jwt_secret").display()
                ));
                secret
            }
        };
        let jwt = JwtKeys::new(jwt_secret.as_bytes(), &config.jwt_issuer, &config.jwt_audience, config.jwt_ttl.as_secs() as i64);

        let addr = SocketAddr::new(config.host, config.port);
        let listener = TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })?;

        let state = AppState {
            login_throttle: Arc::new(LoginThrottle::new(config.login_max_failures, config.login_lockout)),
            config: Arc::new(config),
            db,
            jwt,
            clock,
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
        axum::serve(self.listener, router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(shutdown)
            .await?;
        self.state.db.close().await;
        Ok(())
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
