//! Configuration: read once at start from the environment, an optional `.env` file and an optional
//! TOML file, validated, and turned into typed settings.
//!
//! Precedence (highest first): process environment, `.env` in the working directory, the TOML file
//! named by `QETTA_CONFIG` (or `./qetta.toml` when it exists). TOML keys are the same names as the
//! environment variables (`PORT = 8080`, `DATABASE_URL = "postgres://…"`).
//!
//! A bad value stops the process with a [`ConfigError`] naming the variable and what is expected.
//! Secrets are [`SecretString`]s and this module implements no `Debug` that prints them.

pub mod providers;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

/// A configuration problem, reported at start before anything listens.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{var}: {problem}")]
    Invalid { var: &'static str, problem: String },
    #[error("cannot read the configuration file {path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("configuration file {path} is not valid TOML: {message}")]
    Toml { path: String, message: String },
}

impl ConfigError {
    pub fn invalid(var: &'static str, problem: impl Into<String>) -> Self {
        Self::Invalid { var, problem: problem.into() }
    }
}

/// Where a configuration value came from (`qetta config show`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Environment,
    DotEnv,
    Toml(String),
    /// Read from the file named by `<VAR>_FILE`.
    File(String),
    /// Set by the program itself (tests).
    Given,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Environment => f.write_str("environment"),
            Origin::DotEnv => f.write_str(".env"),
            Origin::Toml(p) => write!(f, "{p}"),
            Origin::File(p) => write!(f, "file {p}"),
            Origin::Given => f.write_str("given"),
        }
    }
}

/// Secrets that may also be given as the content of a file named by `<VAR>_FILE` (Docker and
/// Kubernetes secrets). `QETTA_ENCRYPTION_KEYS_FILE` has its own format (one key a line).
pub const SECRET_FILE_VARIABLES: [(&str, &str); 8] = [
    ("JWT_SECRET", "JWT_SECRET_FILE"),
    ("QETTA_SERVICE_KEY", "QETTA_SERVICE_KEY_FILE"),
    ("KFTC_CLIENT_SECRET", "KFTC_CLIENT_SECRET_FILE"),
    ("TOSS_CLIENT_SECRET", "TOSS_CLIENT_SECRET_FILE"),
    ("KAKAO_CLIENT_SECRET", "KAKAO_CLIENT_SECRET_FILE"),
    ("NAVER_CLIENT_SECRET", "NAVER_CLIENT_SECRET_FILE"),
    ("DATABASE_URL", "DATABASE_URL_FILE"),
    ("REDIS_URL", "REDIS_URL_FILE"),
];

/// The merged view of every configuration source: variable name → value.
#[derive(Clone, Default)]
pub struct Sources {
    values: HashMap<String, (String, Origin)>,
}

impl Sources {
    /// Process environment over `.env` over the TOML file.
    pub fn load() -> Result<Self, ConfigError> {
        let mut values = HashMap::new();
        let toml_path = std::env::var("QETTA_CONFIG").ok().map(PathBuf::from).or_else(|| {
            let default = PathBuf::from("qetta.toml");
            default.exists().then_some(default)
        });
        if let Some(path) = toml_path {
            let origin = Origin::Toml(path.display().to_string());
            values.extend(read_toml(&path)?.into_iter().map(|(k, v)| (k, (v, origin.clone()))));
        }
        if let Ok(iter) = dotenvy::from_path_iter(".env") {
            for (k, v) in iter.flatten() {
                values.insert(k, (v, Origin::DotEnv));
            }
        }
        values.extend(std::env::vars().map(|(k, v)| (k, (v, Origin::Environment))));
        Ok(Self { values })
    }

    /// Only the given pairs (tests).
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self { values: pairs.into_iter().map(|(k, v)| (k.into(), (v.into(), Origin::Given))).collect() }
    }

    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.values.insert(key.to_string(), (value.into(), Origin::Given));
    }

    /// The value of `key`, with empty strings treated as unset.
    pub fn get(&self, key: &str) -> Option<String> {
        self.values.get(key).map(|(v, _)| v.trim().to_string()).filter(|v| !v.is_empty())
    }

    /// Where the value of `key` came from (`None`: unset, the default applies).
    pub fn origin(&self, key: &str) -> Option<&Origin> {
        self.get(key).and(self.values.get(key).map(|(_, o)| o))
    }

    /// Reads every `<VAR>_FILE` of [`SECRET_FILE_VARIABLES`] into `<VAR>` (trailing newlines
    /// dropped). Setting both is an error: which one wins would be a guess.
    pub fn with_secret_files(&self) -> Result<Self, ConfigError> {
        let mut out = self.clone();
        for (var, file_var) in SECRET_FILE_VARIABLES {
            let Some(path) = self.get(file_var) else { continue };
            if self.get(var).is_some() {
                return Err(ConfigError::invalid(file_var, format!("set either it or {var}, not both")));
            }
            let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::invalid(file_var, format!("cannot read {path}: {e}")))?;
            out.values.insert(var.to_string(), (text.trim_end_matches(['\n', '\r']).to_string(), Origin::File(path)));
        }
        Ok(out)
    }

    /// Variables that look like ours (`QETTA_…`, or a provider prefix) but that nothing reads,
    /// with the closest known name: a typo would otherwise be ignored silently.
    pub fn unknown_variables(&self) -> Vec<(String, Option<&'static str>)> {
        let mut out: Vec<(String, Option<&'static str>)> = self
            .values
            .keys()
            .filter(|k| ["QETTA_", "KFTC_", "TOSS_", "KAKAO_", "NAVER_"].iter().any(|p| k.starts_with(p)))
            .filter(|k| !KNOWN_VARIABLES.contains(&k.as_str()) && !KNOWN_PREFIXES.iter().any(|p| k.starts_with(p)))
            .map(|k| (k.clone(), closest_known(k)))
            .collect();
        out.sort();
        out
    }
}

/// Every variable this program reads (a test keeps it in step with the code).
pub const KNOWN_VARIABLES: &[&str] = &[
    "HOST",
    "PORT",
    "QETTA_ADMIN_ADDR",
    "QETTA_ADMIN_EMAILS",
    "QETTA_TRUSTED_PROXIES",
    "QETTA_DATA_DIR",
    "DATABASE_URL",
    "DATABASE_URL_FILE",
    "QETTA_DB_CONNECT_WAIT_SECS",
    "REDIS_URL",
    "REDIS_URL_FILE",
    "QETTA_REDIS_PREFIX",
    "QETTA_REDIS_TIMEOUT_MS",
    "JWT_SECRET",
    "JWT_SECRET_FILE",
    "QETTA_JWT_ISSUER",
    "QETTA_JWT_AUDIENCE",
    "QETTA_JWT_TTL_SECS",
    "QETTA_SERVICE_KEY",
    "QETTA_SERVICE_KEY_FILE",
    "CORS_ORIGINS",
    "QETTA_PUBLIC_URL",
    "QETTA_REQUEST_TIMEOUT_SECS",
    "QETTA_BODY_LIMIT_BYTES",
    "QETTA_LOGIN_MAX_FAILURES",
    "QETTA_LOGIN_LOCKOUT_SECS",
    "QETTA_HASH_CONCURRENCY",
    "QETTA_HASH_QUEUE_WAIT_MS",
    "QETTA_LOG_FORMAT",
    // OpenTelemetry's standard names (traces over OTLP/HTTP; off without the endpoint).
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_SERVICE_NAME",
    "QETTA_ENCRYPTION_KEYS",
    "QETTA_ENCRYPTION_KEYS_FILE",
    "QETTA_REFRESH_MARGIN_SECS",
    "QETTA_REFRESHER_ENABLED",
    "QETTA_REFRESHER_INTERVAL_SECS",
    "QETTA_REFRESHER_LOOKAHEAD_SECS",
    "QETTA_REFRESHER_BATCH",
    "QETTA_REFRESHER_CONCURRENCY",
    "QETTA_REFRESH_BACKOFF_SECS",
    "QETTA_REFRESH_BACKOFF_MAX_SECS",
    "QETTA_UPSTREAM_TIMEOUT_MS",
    "QETTA_GRANT_RETRY_SECS",
    "QETTA_BREAKER_WINDOW_SECS",
    "QETTA_BREAKER_MIN_CALLS",
    "QETTA_BREAKER_FAILURE_RATIO",
    "QETTA_BREAKER_OPEN_MS",
    "QETTA_RATE_LIMIT_AUTH_PER_IP",
    "QETTA_RATE_LIMIT_API_PER_IP",
    "QETTA_RATE_LIMIT_API_PER_USER",
    "QETTA_SANDBOX",
    "QETTA_CONFIG",
    "QETTA_WEBHOOK_RETRY_SCHEDULE",
    "QETTA_WEBHOOK_ALLOW_PRIVATE",
    "QETTA_SYNC_ENABLED",
    "QETTA_SYNC_INTERVAL_SECS",
    "QETTA_WEBHOOK_CONCURRENCY",
    "KFTC_API_BASE",
    "KFTC_CLIENT_ID",
    "KFTC_CLIENT_SECRET",
    "KFTC_CLIENT_SECRET_FILE",
    "KFTC_CLIENT_USE_CODE",
    "KFTC_REDIRECT_URI",
    "KFTC_SCOPE",
    "TOSS_OAUTH_BASE",
    "TOSS_API_BASE",
    "TOSS_CLIENT_ID",
    "TOSS_CLIENT_SECRET",
    "TOSS_CLIENT_SECRET_FILE",
    "TOSS_RSA_PUBLIC_KEY",
    "TOSS_REQUEST_URL",
    "KAKAO_CLIENT_ID",
    "KAKAO_CLIENT_SECRET",
    "KAKAO_CLIENT_SECRET_FILE",
    "KAKAO_REDIRECT_URI",
    "NAVER_CLIENT_ID",
    "NAVER_CLIENT_SECRET",
    "NAVER_CLIENT_SECRET_FILE",
    "NAVER_REDIRECT_URI",
    "QETTA_PROVIDERS_FILE",
    // Read by the embedded sandbox's Kakao simulator (its registration), not by the service.
    "KAKAO_ADMIN_KEY",
    "KAKAO_LOGOUT_REDIRECT_URI",
];

/// Families read elsewhere: the sandbox's own settings, and the test harness's.
const KNOWN_PREFIXES: &[&str] = &["QETTA_SANDBOX_", "QETTA_TEST_", "QETTA_CHROM"];

/// The known variable nearest to `name` by edit distance, when it is near enough to be a typo.
fn closest_known(name: &str) -> Option<&'static str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut prev = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let cur = row[j + 1];
                row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
                prev = cur;
            }
        }
        row[b.len()]
    }
    KNOWN_VARIABLES.iter().map(|k| (distance(name, k), *k)).filter(|(d, k)| *d <= (k.len() / 3).max(2)).min().map(|(_, k)| k)
}

fn read_toml(path: &Path) -> Result<HashMap<String, String>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::File { path: path.display().to_string(), source })?;
    let table: toml::Table =
        text.parse().map_err(|e: toml::de::Error| ConfigError::Toml { path: path.display().to_string(), message: e.message().to_string() })?;
    let mut out = HashMap::new();
    for (k, v) in table {
        let s = match v {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => items
                .into_iter()
                .map(|i| match i {
                    toml::Value::String(s) => s,
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
            _ => {
                return Err(ConfigError::Toml {
                    path: path.display().to_string(),
                    message: format!("key {k}: tables are not supported, use flat KEY = value lines"),
                })
            }
        };
        out.insert(k, s);
    }
    Ok(out)
}

/// How traces are exported (the OpenTelemetry SDK's standard variables, read from the same
/// sources as ours, so `.env` and `qetta.toml` work too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtelSettings {
    /// Where spans are POSTed: `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces` (the OTLP/HTTP rule).
    pub traces_endpoint: String,
    pub protocol: OtlpProtocol,
    /// `OTEL_SERVICE_NAME`, default `qetta`.
    pub service_name: String,
}

/// `OTEL_EXPORTER_OTLP_PROTOCOL`: the HTTP encodings only (no gRPC stack is built in).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// `http/protobuf` (the OTLP default).
    HttpProtobuf,
    /// `http/json`.
    HttpJson,
}

impl OtelSettings {
    fn from_sources(src: &Sources) -> Result<Option<Self>, ConfigError> {
        let Some(endpoint) = src.get("OTEL_EXPORTER_OTLP_ENDPOINT") else { return Ok(None) };
        match url::Url::parse(&endpoint) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() && u.query().is_none() => {}
            _ => {
                return Err(ConfigError::invalid(
                    "OTEL_EXPORTER_OTLP_ENDPOINT",
                    format!("expected the collector's base URL, like http://127.0.0.1:4318, got {endpoint:?}"),
                ))
            }
        }
        let protocol = match src.get("OTEL_EXPORTER_OTLP_PROTOCOL").as_deref() {
            None | Some("http/protobuf") => OtlpProtocol::HttpProtobuf,
            Some("http/json") => OtlpProtocol::HttpJson,
            Some("grpc") => {
                return Err(ConfigError::invalid("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc is not built in; use http/protobuf (the collector's port 4318)"))
            }
            Some(other) => return Err(ConfigError::invalid("OTEL_EXPORTER_OTLP_PROTOCOL", format!("expected http/protobuf or http/json, got {other:?}"))),
        };
        Ok(Some(Self {
            traces_endpoint: format!("{}/v1/traces", endpoint.trim_end_matches('/')),
            protocol,
            service_name: src.get("OTEL_SERVICE_NAME").unwrap_or_else(|| "qetta".into()),
        }))
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Whether the embedded provider sandbox (simulated KFTC and Toss, with their `_sandbox/*`
/// control API) is mounted on the main port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SandboxMode {
    /// Mounted only when no provider is configured at all (the zero-configuration demo).
    Auto,
    /// Mounted on purpose (also allowed on a non-loopback `HOST`); no provider may be configured.
    On,
    /// Never mounted: providers that are not configured are disabled.
    Off,
}

/// Which database the service stores its data in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatabaseKind {
    Sqlite,
    Postgres,
}

/// The validated configuration of `qetta serve` and `qetta migrate`.
#[derive(Clone)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    /// Reverse proxies whose `X-Forwarded-For` names the client (`QETTA_TRUSTED_PROXIES`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The admin listener (`/metrics`, `/health`, `/ready`); `None`: off (`QETTA_ADMIN_ADDR=off`).
    pub admin_addr: Option<std::net::SocketAddr>,
    /// Administrators of `/admin` named by `QETTA_ADMIN_EMAILS` (normalised like login emails);
    /// written to the `admins` table at every start (see `admin::sync_configured`).
    pub admin_emails: Vec<String>,
    pub data_dir: PathBuf,
    pub database_url: SecretString,
    pub database_kind: DatabaseKind,
    /// How long a database that is not up yet is waited for at start (`QETTA_DB_CONNECT_WAIT_SECS`).
    pub database_connect_wait: Duration,
    /// `true` when `DATABASE_URL` was not set and the embedded SQLite default is used.
    pub database_is_default: bool,
    pub redis_url: Option<SecretString>,
    /// Namespace of every key this service writes to Redis.
    pub redis_prefix: String,
    /// Longest wait for one Redis call (`QETTA_REDIS_TIMEOUT_MS`); past it the fallback answers.
    pub redis_timeout: Duration,
    /// `None`: generate one and keep it under `data_dir` (embedded mode).
    pub jwt_secret: Option<SecretString>,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub jwt_ttl: Duration,
    pub cors_origins: Vec<String>,
    /// The address browsers use to reach this service (default `http://HOST:PORT`).
    pub public_url: String,
    pub service_key: Option<SecretString>,
    pub request_timeout: Duration,
    pub body_limit_bytes: usize,
    pub log_format: LogFormat,
    /// OpenTelemetry traces (`OTEL_EXPORTER_OTLP_ENDPOINT`); `None`: off.
    pub otel: Option<OtelSettings>,
    pub login_max_failures: u32,
    pub login_lockout: Duration,
    /// Password hashes computed at once (`QETTA_HASH_CONCURRENCY`, default: the number of cores).
    pub hash_concurrency: usize,
    /// How long a sign-in waits for a hashing slot before 503 `busy` (`QETTA_HASH_QUEUE_WAIT_MS`).
    pub hash_queue_wait: Duration,
    /// `id:base64,…` (first is active); `None`: a generated key file under `data_dir` (embedded).
    pub encryption_keys: Option<SecretString>,
    pub tokens: TokenSettings,
    /// When the provider circuit breakers open (`QETTA_BREAKER_*`).
    pub breaker: crate::providers::upstream::BreakerPolicy,
    pub rate_limits: RateLimits,
    pub kftc: KftcSettings,
    pub toss: TossSettings,
    /// Kakao, Naver and the providers of `QETTA_PROVIDERS_FILE`.
    pub providers: providers::ProvidersConfig,
    pub sandbox_mode: SandboxMode,
    /// Webhook delivery (`QETTA_WEBHOOK_*`).
    pub webhooks: WebhookSettings,
    /// The background transaction sync (`sync`).
    pub sync: SyncSettings,
    /// Every variable, for the sandbox, which reads its own settings from the same sources.
    pub sources: Sources,
}

/// How webhooks are delivered.
#[derive(Clone, Debug)]
pub struct WebhookSettings {
    /// Waits after the first, second, … failed attempt (`QETTA_WEBHOOK_RETRY_SCHEDULE`); a delivery
    /// that failed once more than it has entries is given up.
    pub retry_schedule: Vec<Duration>,
    /// Endpoints may be on loopback or private networks, and plain http to loopback
    /// (`QETTA_WEBHOOK_ALLOW_PRIVATE`; development and tests only).
    pub allow_private: bool,
    /// Deliveries in flight at once per replica (`QETTA_WEBHOOK_CONCURRENCY`).
    pub concurrency: usize,
}

pub const DEFAULT_WEBHOOK_RETRY_SCHEDULE: &str = "5s,5m,30m,2h,5h,10h,10h,10h";

/// `5s,5m,30m,2h,…` (units s, m, h, d).
fn parse_schedule(text: &str) -> Result<Vec<Duration>, String> {
    let mut out = Vec::new();
    for item in text.split(',').map(str::trim) {
        let (num, unit) = item.split_at(item.find(|c: char| !c.is_ascii_digit()).unwrap_or(item.len()));
        let n: u64 = num.parse().map_err(|_| format!("{item:?} is not a duration like 30s, 5m, 2h or 1d"))?;
        let secs = match unit {
            "s" => n,
            "m" => n * 60,
            "h" => n * 3600,
            "d" => n * 86400,
            _ => return Err(format!("{item:?} is not a duration like 30s, 5m, 2h or 1d")),
        };
        if !(1..=7 * 86400).contains(&secs) {
            return Err(format!("{item:?}: each wait must be between 1s and 7d"));
        }
        out.push(Duration::from_secs(secs));
    }
    if out.is_empty() || out.len() > 30 {
        return Err("expected 1 to 30 comma-separated waits, e.g. 5s,5m,30m,2h".into());
    }
    Ok(out)
}

/// How often every KFTC connection's transactions are fetched in the background.
#[derive(Clone, Debug)]
pub struct SyncSettings {
    pub enabled: bool,
    pub interval: Duration,
}

fn sync_settings(src: &Sources) -> Result<SyncSettings, ConfigError> {
    let secs = parse_or(src, "QETTA_SYNC_INTERVAL_SECS", 3600u64, "a number of seconds")?;
    // KFTC enforces usage-plan call limits (SPEC A12, A13: O0008, O0009, O0013) whose numbers it does not
    // publish [U]; more often than once a minute per connection is never useful.
    if !(60..=7 * 86400).contains(&secs) {
        return Err(ConfigError::invalid("QETTA_SYNC_INTERVAL_SECS", "must be between 60 and 604800 seconds"));
    }
    Ok(SyncSettings { enabled: parse_or(src, "QETTA_SYNC_ENABLED", true, "true or false")?, interval: Duration::from_secs(secs) })
}

fn webhook_settings(src: &Sources) -> Result<WebhookSettings, ConfigError> {
    let schedule = src.get("QETTA_WEBHOOK_RETRY_SCHEDULE").unwrap_or_else(|| DEFAULT_WEBHOOK_RETRY_SCHEDULE.into());
    let concurrency = parse_or(src, "QETTA_WEBHOOK_CONCURRENCY", 16usize, "a whole number")?;
    if !(1..=256).contains(&concurrency) {
        return Err(ConfigError::invalid("QETTA_WEBHOOK_CONCURRENCY", "must be between 1 and 256"));
    }
    Ok(WebhookSettings {
        retry_schedule: parse_schedule(&schedule).map_err(|p| ConfigError::invalid("QETTA_WEBHOOK_RETRY_SCHEDULE", p))?,
        allow_private: parse_or(src, "QETTA_WEBHOOK_ALLOW_PRIVATE", false, "true or false")?,
        concurrency,
    })
}

/// Requests per minute (fixed windows).
#[derive(Clone, Debug)]
pub struct RateLimits {
    pub auth_per_ip_per_min: i64,
    pub api_per_ip_per_min: i64,
    pub api_per_user_per_min: i64,
}

/// When and how tokens are refreshed.
#[derive(Clone, Debug)]
pub struct TokenSettings {
    /// A token that expires within this many seconds is refreshed before it is used.
    pub refresh_margin_secs: i64,
    pub refresher_enabled: bool,
    pub refresher_interval: Duration,
    /// The background refresher refreshes tokens that expire within this many seconds.
    pub refresher_lookahead_secs: i64,
    pub refresher_batch: i64,
    pub refresher_concurrency: usize,
    /// First backoff after a failed refresh; doubles per failure up to `backoff_max_secs`.
    pub backoff_base_secs: i64,
    pub backoff_max_secs: i64,
    pub upstream_timeout: Duration,
    /// How long a refreshing replica's lease lasts without renewal (it renews every third of it).
    pub refresh_lease: Duration,
    /// How long after its end another replica may take over a lease: room for a holder whose
    /// renewals failed (storage outage) to store its grant first. Lease + grace is how long a
    /// crashed holder blocks the others.
    pub lease_grace: Duration,
    /// How long a request waits for another replica's refresh before answering 503.
    pub lock_wait: Duration,
    /// How long new tokens that the provider granted are retried against storage before they are
    /// given up (`QETTA_GRANT_RETRY_SECS`).
    pub grant_retry: Duration,
}

/// KFTC OpenBanking. Unset values fall back to the sandbox's registration.
#[derive(Clone)]
pub struct KftcSettings {
    /// `None`: use the embedded sandbox.
    pub api_base: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<SecretString>,
    /// `None`: `{public_url}/api/v1/oauth/kftc/callback`.
    pub redirect_uri: Option<String>,
    pub client_use_code: Option<String>,
    pub scope: String,
}

/// Toss Certification. Unset values fall back to the sandbox's registration.
#[derive(Clone)]
pub struct TossSettings {
    pub oauth_base: Option<String>,
    pub api_base: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<SecretString>,
    /// SPKI DER base64 of Toss's RSA public key; `None`: the production key (or the sandbox's).
    pub rsa_public_key: Option<String>,
    /// `requestUrl` sent with verification requests: the app scheme Toss returns to.
    pub request_url: String,
}

impl Config {
    pub fn from_sources(src: &Sources) -> Result<Self, ConfigError> {
        let src = &src.with_secret_files()?;
        let host: IpAddr = parse_or(src, "HOST", "127.0.0.1".parse().expect("literal address"), "an IP address such as 127.0.0.1 or 0.0.0.0")?;
        let port = match src.get("PORT") {
            None => 8080,
            Some(v) => v.parse::<u16>().map_err(|_| ConfigError::invalid("PORT", format!("expected a port number from 0 to 65535, got {v:?}")))?,
        };
        let data_dir = PathBuf::from(src.get("QETTA_DATA_DIR").unwrap_or_else(|| "./data".to_string()));

        let (database_url, database_is_default) = match src.get("DATABASE_URL") {
            Some(url) => (url, false),
            None => (format!("sqlite://{}?mode=rwc", data_dir.join("qetta.db").display()), true),
        };
        let database_kind = if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
            DatabaseKind::Postgres
        } else if database_url.starts_with("sqlite:") {
            DatabaseKind::Sqlite
        } else {
            return Err(ConfigError::invalid(
                "DATABASE_URL",
                "expected postgres://USER@HOST:PORT/DB or sqlite://PATH (leave it unset for the embedded SQLite database)",
            ));
        };

        let redis_url = match src.get("REDIS_URL") {
            None => None,
            Some(u) if u.starts_with("redis://") || u.starts_with("rediss://") => Some(SecretString::from(u)),
            Some(_) => return Err(ConfigError::invalid("REDIS_URL", "expected redis://HOST:PORT[/DB] or rediss://…")),
        };

        let jwt_secret = match src.get("JWT_SECRET") {
            None => None,
            Some(s) if s.len() < 32 => {
                return Err(ConfigError::invalid(
                    "JWT_SECRET",
                    format!("must be at least 32 characters (it has {}); generate one with `openssl rand -base64 48`", s.len()),
                ))
            }
            Some(s) => Some(SecretString::from(s)),
        };

        let jwt_ttl = Duration::from_secs(parse_or(src, "QETTA_JWT_TTL_SECS", 12 * 3600u64, "a number of seconds")?);
        if jwt_ttl.as_secs() < 60 || jwt_ttl.as_secs() > 30 * 86400 {
            return Err(ConfigError::invalid("QETTA_JWT_TTL_SECS", "must be between 60 and 2592000 seconds"));
        }

        let cors_origins = match src.get("CORS_ORIGINS") {
            None => Vec::new(),
            Some(list) => {
                let mut out = Vec::new();
                for origin in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    if origin == "*" {
                        return Err(ConfigError::invalid(
                            "CORS_ORIGINS",
                            "\"*\" is not allowed for a service that handles credentials; list the origins, e.g. https://app.example.com",
                        ));
                    }
                    if !(origin.starts_with("http://") || origin.starts_with("https://")) || origin.ends_with('/') {
                        return Err(ConfigError::invalid(
                            "CORS_ORIGINS",
                            format!("{origin:?} is not an origin; expected scheme://host[:port] without a path, comma-separated"),
                        ));
                    }
                    out.push(origin.to_string());
                }
                out
            }
        };

        let public_url = match src.get("QETTA_PUBLIC_URL") {
            Some(u) => {
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    return Err(ConfigError::invalid("QETTA_PUBLIC_URL", "expected http(s)://host[:port]"));
                }
                u.trim_end_matches('/').to_string()
            }
            None => {
                let shown = if host.is_unspecified() {
                    "127.0.0.1".to_string()
                } else if host.is_ipv6() {
                    format!("[{host}]")
                } else {
                    host.to_string()
                };
                format!("http://{shown}:{port}")
            }
        };

        let service_key = match src.get("QETTA_SERVICE_KEY") {
            None => None,
            Some(k) if k.len() < 32 => return Err(ConfigError::invalid("QETTA_SERVICE_KEY", "must be at least 32 characters")),
            Some(k) => Some(SecretString::from(k)),
        };

        let log_format = match src.get("QETTA_LOG_FORMAT").as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => return Err(ConfigError::invalid("QETTA_LOG_FORMAT", format!("expected text or json, got {other:?}"))),
        };

        let otel = OtelSettings::from_sources(src)?;

        let request_timeout = Duration::from_secs(parse_or(src, "QETTA_REQUEST_TIMEOUT_SECS", 30u64, "a number of seconds")?);
        if request_timeout.is_zero() {
            return Err(ConfigError::invalid("QETTA_REQUEST_TIMEOUT_SECS", "must be at least 1"));
        }
        let redis_timeout = Duration::from_millis(parse_or(src, "QETTA_REDIS_TIMEOUT_MS", 250u64, "a number of milliseconds")?);
        if !(10..=10_000).contains(&redis_timeout.as_millis()) {
            return Err(ConfigError::invalid("QETTA_REDIS_TIMEOUT_MS", "must be between 10 and 10000"));
        }
        let body_limit_bytes = parse_or(src, "QETTA_BODY_LIMIT_BYTES", 64 * 1024usize, "a number of bytes")?;
        if body_limit_bytes < 1024 {
            return Err(ConfigError::invalid("QETTA_BODY_LIMIT_BYTES", "must be at least 1024"));
        }

        let admin_addr = match src.get("QETTA_ADMIN_ADDR").as_deref() {
            None => Some(std::net::SocketAddr::from(([127, 0, 0, 1], 9090))),
            Some("off") => None,
            Some(a) => {
                Some(a.parse().map_err(|_| ConfigError::invalid("QETTA_ADMIN_ADDR", format!("expected IP:PORT such as 127.0.0.1:9090 (or off), got {a:?}")))?)
            }
        };
        let mut admin_emails: Vec<String> = Vec::new();
        for part in src.get("QETTA_ADMIN_EMAILS").unwrap_or_default().split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let email = crate::auth::password::normalize_email(part)
                .map_err(|e| ConfigError::invalid("QETTA_ADMIN_EMAILS", format!("{part:?} is not an email address ({e}); expected a comma-separated list")))?;
            if !admin_emails.contains(&email) {
                admin_emails.push(email);
            }
        }
        let mut trusted_proxies = Vec::new();
        for part in src.get("QETTA_TRUSTED_PROXIES").unwrap_or_default().split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let net = part
                .parse::<ipnet::IpNet>()
                .or_else(|_| part.parse::<IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| ConfigError::invalid("QETTA_TRUSTED_PROXIES", format!("expected addresses or CIDR ranges such as 10.0.0.0/8, got {part:?}")))?;
            trusted_proxies.push(net);
        }
        Self {
            host,
            port,
            trusted_proxies,
            admin_addr,
            admin_emails,
            data_dir,
            database_url: SecretString::from(database_url),
            database_kind,
            database_connect_wait: Duration::from_secs(parse_or(src, "QETTA_DB_CONNECT_WAIT_SECS", 10u64, "a number of seconds")?),
            database_is_default,
            redis_url,
            redis_prefix: match src.get("QETTA_REDIS_PREFIX") {
                None => "qetta".to_string(),
                Some(p) if p.len() <= 64 && p.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) => p,
                Some(_) => return Err(ConfigError::invalid("QETTA_REDIS_PREFIX", "expected up to 64 letters, digits, - _ or .")),
            },
            redis_timeout,
            jwt_secret,
            jwt_issuer: src.get("QETTA_JWT_ISSUER").unwrap_or_else(|| "qetta-connect".into()),
            jwt_audience: src.get("QETTA_JWT_AUDIENCE").unwrap_or_else(|| "qetta".into()),
            jwt_ttl,
            cors_origins,
            public_url,
            service_key,
            request_timeout,
            body_limit_bytes,
            log_format,
            otel,
            login_max_failures: parse_or(src, "QETTA_LOGIN_MAX_FAILURES", 5u32, "a whole number")?,
            login_lockout: Duration::from_secs(parse_or(src, "QETTA_LOGIN_LOCKOUT_SECS", 900u64, "a number of seconds")?),
            hash_concurrency: match parse_or(src, "QETTA_HASH_CONCURRENCY", 0usize, "a whole number")? {
                0 => crate::auth::hashing::default_concurrency(),
                n if n <= 256 => n,
                _ => return Err(ConfigError::invalid("QETTA_HASH_CONCURRENCY", "expected 1 to 256 (each hash holds 19 MiB)")),
            },
            hash_queue_wait: Duration::from_millis(parse_or(src, "QETTA_HASH_QUEUE_WAIT_MS", 2000u64, "a number of milliseconds")?.min(60_000)),
            encryption_keys: encryption_keys(src)?,
            tokens: TokenSettings {
                // A request waits for another replica's refresh at most a third of its own time.
                lock_wait: (request_timeout / 3).clamp(Duration::from_secs(1), Duration::from_secs(10)),
                ..token_settings(src)?
            },
            breaker: breaker_policy(src)?,
            rate_limits: RateLimits {
                auth_per_ip_per_min: parse_or(src, "QETTA_RATE_LIMIT_AUTH_PER_IP", 30i64, "a whole number")?.max(1),
                api_per_ip_per_min: parse_or(src, "QETTA_RATE_LIMIT_API_PER_IP", 600i64, "a whole number")?.max(1),
                api_per_user_per_min: parse_or(src, "QETTA_RATE_LIMIT_API_PER_USER", 300i64, "a whole number")?.max(1),
            },
            kftc: KftcSettings {
                api_base: base_url(src, "KFTC_API_BASE")?,
                client_id: src.get("KFTC_CLIENT_ID"),
                client_secret: src.get("KFTC_CLIENT_SECRET").map(SecretString::from),
                // The sandbox accepts a list; the service uses the first.
                redirect_uri: src.get("KFTC_REDIRECT_URI").map(|list| list.split(',').next().unwrap_or("").trim().to_string()),
                client_use_code: match src.get("KFTC_CLIENT_USE_CODE") {
                    Some(c) if c.len() == 10 && c.bytes().all(|b| b.is_ascii_alphanumeric()) => Some(c),
                    Some(_) => return Err(ConfigError::invalid("KFTC_CLIENT_USE_CODE", "expected the 10-character 이용기관코드, e.g. M202601315")),
                    None => None,
                },
                scope: kftc_scope(src.get("KFTC_SCOPE").as_deref().unwrap_or("login inquiry"))?,
            },
            toss: TossSettings {
                oauth_base: base_url(src, "TOSS_OAUTH_BASE")?,
                api_base: base_url(src, "TOSS_API_BASE")?,
                client_id: src.get("TOSS_CLIENT_ID"),
                client_secret: src.get("TOSS_CLIENT_SECRET").map(SecretString::from),
                rsa_public_key: src.get("TOSS_RSA_PUBLIC_KEY"),
                request_url: src.get("TOSS_REQUEST_URL").unwrap_or_else(|| "qetta://toss-cert".into()),
            },
            providers: providers::from_sources(src)?,
            sandbox_mode: match src.get("QETTA_SANDBOX").as_deref().map(str::to_ascii_lowercase).as_deref() {
                None | Some("auto") => SandboxMode::Auto,
                Some("on") | Some("true") | Some("1") => SandboxMode::On,
                Some("off") | Some("false") | Some("0") => SandboxMode::Off,
                Some(other) => return Err(ConfigError::invalid("QETTA_SANDBOX", format!("expected auto, on or off, got {other:?}"))),
            },
            webhooks: webhook_settings(src)?,
            sync: sync_settings(src)?,
            sources: src.clone(),
        }
        .check_production_rules()
    }

    /// With PostgreSQL the service is meant to run as several replicas: secrets generated into one
    /// replica's data directory would differ between replicas, so they must be configured.
    fn check_production_rules(self) -> Result<Self, ConfigError> {
        if self.kftc.api_base.is_some() && (self.kftc.client_id.is_none() || self.kftc.client_secret.is_none() || self.kftc.client_use_code.is_none()) {
            return Err(ConfigError::invalid("KFTC_API_BASE", "is set, so KFTC_CLIENT_ID, KFTC_CLIENT_SECRET and KFTC_CLIENT_USE_CODE must be set too"));
        }
        if self.toss.oauth_base.is_some() != self.toss.api_base.is_some() {
            return Err(ConfigError::invalid("TOSS_API_BASE", "set both TOSS_OAUTH_BASE and TOSS_API_BASE (Toss has two hosts), or neither for the sandbox"));
        }
        if self.toss.api_base.is_some() && (self.toss.client_id.is_none() || self.toss.client_secret.is_none()) {
            return Err(ConfigError::invalid("TOSS_API_BASE", "is set, so TOSS_CLIENT_ID and TOSS_CLIENT_SECRET must be set too"));
        }
        if self.sandbox_mode == SandboxMode::On && self.any_provider_configured() {
            // The sandbox's control API can reset every connection and approve identity checks:
            // it must never run beside a real provider.
            return Err(ConfigError::invalid(
                "QETTA_SANDBOX",
                "is on, but a real provider is configured (KFTC_API_BASE, TOSS_API_BASE, KAKAO_CLIENT_ID, NAVER_CLIENT_ID or QETTA_PROVIDERS_FILE); the sandbox never runs beside a real provider: unset one or the other",
            ));
        }
        Ok(self)
    }

    /// With PostgreSQL the encryption keys must be configured: keys generated into one machine's
    /// data directory would differ between replicas (serve, `keys rotate`).
    pub fn check_shared_keys(&self) -> Result<(), ConfigError> {
        if self.database_kind == DatabaseKind::Postgres && self.encryption_keys.is_none() {
            return Err(ConfigError::invalid(
                "QETTA_ENCRYPTION_KEYS",
                "must be set when DATABASE_URL is PostgreSQL (every replica needs the same keys); make one with `qetta keys generate`",
            ));
        }
        Ok(())
    }

    /// Whether a real provider is configured (KFTC, Toss, Kakao, Naver or one of the file).
    pub fn any_provider_configured(&self) -> bool {
        self.kftc.api_base.is_some() || self.toss.api_base.is_some() || self.providers.any()
    }

    /// Whether the embedded sandbox is mounted: on purpose, or because nothing is configured.
    pub fn sandbox_mounted(&self) -> bool {
        match self.sandbox_mode {
            SandboxMode::On => true,
            SandboxMode::Off => false,
            SandboxMode::Auto => !self.any_provider_configured(),
        }
    }

    /// Rules for `qetta serve`: the sandbox and its control API are only reachable from this
    /// machine unless the operator asked for it by name.
    pub fn check_serve_rules(&self) -> Result<(), ConfigError> {
        if self.database_kind == DatabaseKind::Postgres && self.jwt_secret.is_none() {
            return Err(ConfigError::invalid("JWT_SECRET", "must be set when DATABASE_URL is PostgreSQL (every replica needs the same secret)"));
        }
        self.check_shared_keys()?;
        if self.sandbox_mounted() && !self.host.is_loopback() && self.sandbox_mode != SandboxMode::On {
            return Err(ConfigError::invalid(
                "HOST",
                format!(
                    "is {}, not a loopback address, and no provider is configured, so the embedded sandbox (simulated banks with a control API anyone could call) would be reachable from other machines; configure the providers (KFTC_API_BASE…, TOSS_API_BASE…), or set QETTA_SANDBOX=on to expose the sandbox on purpose",
                    self.host
                ),
            ));
        }
        Ok(())
    }

    /// The file of a SQLite database (`None` for PostgreSQL or an in-memory database).
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        if self.database_kind != DatabaseKind::Sqlite {
            return None;
        }
        crate::store::sqlite_file(self.database_url.expose_secret())
    }

    /// The database URL with any password replaced, for messages.
    pub fn database_url_for_display(&self) -> String {
        redact_url(self.database_url.expose_secret())
    }
}

fn encryption_keys(src: &Sources) -> Result<Option<SecretString>, ConfigError> {
    match (src.get("QETTA_ENCRYPTION_KEYS"), src.get("QETTA_ENCRYPTION_KEYS_FILE")) {
        (Some(_), Some(_)) => Err(ConfigError::invalid("QETTA_ENCRYPTION_KEYS", "set either it or QETTA_ENCRYPTION_KEYS_FILE, not both")),
        (Some(k), None) => Ok(Some(SecretString::from(k))),
        (None, Some(path)) => std::fs::read_to_string(&path)
            .map(|s| Some(SecretString::from(s)))
            .map_err(|e| ConfigError::invalid("QETTA_ENCRYPTION_KEYS_FILE", format!("cannot read {path}: {e}"))),
        (None, None) => Ok(None),
    }
}

fn token_settings(src: &Sources) -> Result<TokenSettings, ConfigError> {
    let t = TokenSettings {
        refresh_margin_secs: parse_or(src, "QETTA_REFRESH_MARGIN_SECS", 600i64, "a number of seconds")?,
        refresher_enabled: parse_or(src, "QETTA_REFRESHER_ENABLED", true, "true or false")?,
        refresher_interval: Duration::from_secs(parse_or(src, "QETTA_REFRESHER_INTERVAL_SECS", 60u64, "a number of seconds")?),
        refresher_lookahead_secs: parse_or(src, "QETTA_REFRESHER_LOOKAHEAD_SECS", 3 * 86400i64, "a number of seconds")?,
        refresher_batch: parse_or(src, "QETTA_REFRESHER_BATCH", 50i64, "a whole number")?,
        refresher_concurrency: parse_or(src, "QETTA_REFRESHER_CONCURRENCY", 16usize, "a whole number")?,
        backoff_base_secs: parse_or(src, "QETTA_REFRESH_BACKOFF_SECS", 30i64, "a number of seconds")?,
        backoff_max_secs: parse_or(src, "QETTA_REFRESH_BACKOFF_MAX_SECS", 3600i64, "a number of seconds")?,
        upstream_timeout: Duration::from_millis(parse_or(src, "QETTA_UPSTREAM_TIMEOUT_MS", 10_000u64, "a number of milliseconds")?),
        refresh_lease: Duration::from_secs(3),
        lease_grace: Duration::from_secs(2),
        // Filled in from the request timeout below.
        lock_wait: Duration::ZERO,
        grant_retry: Duration::from_secs(parse_or(src, "QETTA_GRANT_RETRY_SECS", 600u64, "a number of seconds")?),
    };
    if t.grant_retry.as_secs() < 60 {
        return Err(ConfigError::invalid("QETTA_GRANT_RETRY_SECS", "must be at least 60 (new tokens must survive a storage outage of a minute)"));
    }
    if t.refresh_margin_secs < 0 {
        return Err(ConfigError::invalid("QETTA_REFRESH_MARGIN_SECS", "must not be negative"));
    }
    if t.refresher_interval.is_zero() {
        return Err(ConfigError::invalid("QETTA_REFRESHER_INTERVAL_SECS", "must be at least 1"));
    }
    if !(1..=1000).contains(&t.refresher_batch) {
        return Err(ConfigError::invalid("QETTA_REFRESHER_BATCH", "must be between 1 and 1000"));
    }
    // Refreshes hold no pooled database connection while the provider answers, so this is not
    // bounded by the pool size; it is what one replica may ask of a provider at once.
    if !(1..=256).contains(&t.refresher_concurrency) {
        return Err(ConfigError::invalid("QETTA_REFRESHER_CONCURRENCY", "must be between 1 and 256"));
    }
    if t.backoff_base_secs < 1 || t.backoff_max_secs < t.backoff_base_secs {
        return Err(ConfigError::invalid("QETTA_REFRESH_BACKOFF_SECS", "must be at least 1 and at most QETTA_REFRESH_BACKOFF_MAX_SECS"));
    }
    if t.upstream_timeout.as_millis() < 100 {
        return Err(ConfigError::invalid("QETTA_UPSTREAM_TIMEOUT_MS", "must be at least 100"));
    }
    Ok(t)
}

/// A provider's base URL: `https://`, or plain `http://` only to this machine (tests, a local
/// sandbox), since provider calls carry client secrets and users' tokens.
fn base_url(src: &Sources, var: &'static str) -> Result<Option<String>, ConfigError> {
    let Some(u) = src.get(var) else { return Ok(None) };
    base_url_value(&u).map(Some).map_err(|problem| ConfigError::invalid(var, problem))
}

/// The rule of [`base_url`] for one value; the error says what is wrong (without the setting's name).
pub(crate) fn base_url_value(u: &str) -> Result<String, String> {
    let parsed = reqwest::Url::parse(u).map_err(|_| format!("expected an https:// base URL, got {u:?}"))?;
    if !parsed.username().is_empty() || parsed.password().is_some() || parsed.query().is_some() || parsed.fragment().is_some() {
        return Err("expected a base URL without credentials, query or fragment".into());
    }
    match parsed.scheme() {
        "https" => {}
        "http" if is_loopback_host(&parsed) => {}
        "http" => {
            return Err(format!(
                "{u:?} is plain http to another machine: provider calls carry secrets and tokens, use https:// (plain http is allowed only to 127.0.0.1, [::1] or localhost)"
            ))
        }
        _ => return Err(format!("expected an https:// base URL, got {u:?}")),
    }
    Ok(u.trim_end_matches('/').to_string())
}

fn is_loopback_host(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

fn breaker_policy(src: &Sources) -> Result<crate::providers::upstream::BreakerPolicy, ConfigError> {
    let d = crate::providers::upstream::BreakerPolicy::default();
    let window_secs: u64 = parse_or(src, "QETTA_BREAKER_WINDOW_SECS", d.window.as_secs(), "a number of seconds")?;
    if !(1..=3600).contains(&window_secs) {
        return Err(ConfigError::invalid("QETTA_BREAKER_WINDOW_SECS", "must be between 1 and 3600"));
    }
    let min_calls: u32 = parse_or(src, "QETTA_BREAKER_MIN_CALLS", d.min_calls, "a whole number")?;
    if min_calls == 0 {
        return Err(ConfigError::invalid("QETTA_BREAKER_MIN_CALLS", "must be at least 1"));
    }
    let failure_ratio: f64 = parse_or(src, "QETTA_BREAKER_FAILURE_RATIO", d.failure_ratio, "a number between 0 and 1")?;
    if !(failure_ratio > 0.0 && failure_ratio <= 1.0) {
        return Err(ConfigError::invalid("QETTA_BREAKER_FAILURE_RATIO", "must be above 0 and at most 1"));
    }
    let open_ms: u64 = parse_or(src, "QETTA_BREAKER_OPEN_MS", d.open_for.as_millis() as u64, "a number of milliseconds")?;
    if !(100..=3_600_000).contains(&open_ms) {
        return Err(ConfigError::invalid("QETTA_BREAKER_OPEN_MS", "must be between 100 and 3600000"));
    }
    Ok(crate::providers::upstream::BreakerPolicy {
        window: Duration::from_secs(window_secs),
        min_calls,
        failure_ratio,
        open_for: Duration::from_millis(open_ms),
    })
}

fn parse_or<T: std::str::FromStr>(src: &Sources, var: &'static str, default: T, expected: &str) -> Result<T, ConfigError> {
    match src.get(var) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| ConfigError::invalid(var, format!("expected {expected}, got {v:?}"))),
    }
}

/// `scheme://user:secret@host/db` → `scheme://user:***@host/db`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}{path}")
            } else {
                format!("{scheme}://{user}@{host}{path}")
            }
        }
        None => url.to_string(),
    }
}

/// Scopes of KFTC's 3-legged consent (SPEC A4). `oob` (client_credentials) and `sa`
/// (self-authenticating institutions) are not for the user's consent.
const KFTC_CONSENT_SCOPES: &[&str] = &["login", "inquiry", "transfer", "cardinfo", "fintechinfo", "insuinfo", "loaninfo"];

/// `KFTC_SCOPE`: space-separated (SPEC A4 [C]), known scopes, no repeats, and `login` (user/me,
/// account/list) plus `inquiry` (balance, transactions), which the service calls. Answered with
/// single spaces.
fn kftc_scope(v: &str) -> Result<String, ConfigError> {
    const VAR: &str = "KFTC_SCOPE";
    if v.contains([',', '+', ';']) {
        return Err(ConfigError::invalid(VAR, "scopes are separated by spaces (SPEC A4), e.g. \"login inquiry\""));
    }
    let scopes: Vec<&str> = v.split_whitespace().collect();
    let mut seen = std::collections::BTreeSet::new();
    for s in &scopes {
        if !KFTC_CONSENT_SCOPES.contains(s) {
            return Err(ConfigError::invalid(VAR, format!("unknown scope {s:?}; KFTC consent scopes are {}", KFTC_CONSENT_SCOPES.join(", "))));
        }
        if !seen.insert(*s) {
            return Err(ConfigError::invalid(VAR, format!("scope {s:?} is listed twice")));
        }
    }
    for needed in ["login", "inquiry"] {
        if !seen.contains(needed) {
            return Err(ConfigError::invalid(VAR, format!("must include {needed:?}: the service reads user/me and account data (e.g. \"login inquiry\")")));
        }
    }
    Ok(scopes.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_sources(&Sources::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn empty_configuration_is_the_embedded_default() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.port, 8080);
        assert_eq!(c.database_kind, DatabaseKind::Sqlite);
        assert!(c.database_is_default);
        assert!(c.jwt_secret.is_none());
        assert_eq!(c.public_url, "http://127.0.0.1:8080");
        let waits: Vec<u64> = c.webhooks.retry_schedule.iter().map(|d| d.as_secs()).collect();
        assert_eq!(waits, vec![5, 300, 1800, 7200, 18000, 36000, 36000, 36000]);
        assert!(!c.webhooks.allow_private);
    }

    #[test]
    fn traces_are_off_without_an_endpoint_and_follow_the_otlp_http_rules() {
        assert_eq!(cfg(&[]).unwrap().otel, None, "off by default");
        assert_eq!(cfg(&[("OTEL_SERVICE_NAME", "x"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]).unwrap().otel, None, "the endpoint turns it on");
        let o = cfg(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]).unwrap().otel.unwrap();
        assert_eq!(o.traces_endpoint, "http://collector:4318/v1/traces");
        assert_eq!((o.protocol, o.service_name.as_str()), (OtlpProtocol::HttpProtobuf, "qetta"));
        let o =
            cfg(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c.example/otlp"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"), ("OTEL_SERVICE_NAME", "qetta-eu")])
                .unwrap()
                .otel
                .unwrap();
        assert_eq!((o.traces_endpoint.as_str(), o.protocol, o.service_name.as_str()), ("https://c.example/otlp/v1/traces", OtlpProtocol::HttpJson, "qetta-eu"));
        for (pairs, var) in [
            (vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")], "OTEL_EXPORTER_OTLP_ENDPOINT"),
            (vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://c/")], "OTEL_EXPORTER_OTLP_ENDPOINT"),
            (vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")], "OTEL_EXPORTER_OTLP_PROTOCOL"),
            (vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift")], "OTEL_EXPORTER_OTLP_PROTOCOL"),
        ] {
            let e = cfg(&pairs).err().unwrap_or_else(|| panic!("{pairs:?} accepted")).to_string();
            assert!(e.starts_with(var), "{pairs:?}: {e}");
        }
    }

    #[test]
    fn kftc_scope_is_space_separated_known_and_complete() {
        assert_eq!(cfg(&[]).unwrap().kftc.scope, "login inquiry");
        assert_eq!(cfg(&[("KFTC_SCOPE", "  inquiry   login transfer ")]).unwrap().kftc.scope, "inquiry login transfer");
        for bad in ["login,inquiry", "login+inquiry", "login inquiry sa", "login inquiry oob", "inquiry", "login", "login inquiry inquiry", "LOGIN inquiry"] {
            let e = cfg(&[("KFTC_SCOPE", bad)]).err().unwrap_or_else(|| panic!("{bad:?} accepted")).to_string();
            assert!(e.contains("KFTC_SCOPE"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (pairs, var) in [
            (vec![("PORT", "eighty")], "PORT"),
            (vec![("PORT", "70000")], "PORT"),
            (vec![("DATABASE_URL", "mysql://x")], "DATABASE_URL"),
            (vec![("JWT_SECRET", "short")], "JWT_SECRET"),
            (vec![("CORS_ORIGINS", "*")], "CORS_ORIGINS"),
            (vec![("CORS_ORIGINS", "https://a.example/")], "CORS_ORIGINS"),
            (vec![("REDIS_URL", "localhost")], "REDIS_URL"),
            (vec![("QETTA_LOG_FORMAT", "xml")], "QETTA_LOG_FORMAT"),
            (vec![("KFTC_API_BASE", "https://openapi.openbanking.or.kr")], "KFTC_API_BASE"),
            (vec![("KFTC_API_BASE", "ftp://x")], "KFTC_API_BASE"),
            (vec![("QETTA_SANDBOX", "maybe")], "QETTA_SANDBOX"),
            (vec![("TOSS_API_BASE", "https://cert.toss.im")], "TOSS_API_BASE"),
            (vec![("KFTC_CLIENT_USE_CODE", "M2026")], "KFTC_CLIENT_USE_CODE"),
            (vec![("QETTA_REFRESHER_BATCH", "0")], "QETTA_REFRESHER_BATCH"),
            (vec![("QETTA_WEBHOOK_RETRY_SCHEDULE", "5s,soon")], "QETTA_WEBHOOK_RETRY_SCHEDULE"),
            (vec![("QETTA_WEBHOOK_RETRY_SCHEDULE", "0s")], "QETTA_WEBHOOK_RETRY_SCHEDULE"),
            (vec![("QETTA_WEBHOOK_ALLOW_PRIVATE", "yes")], "QETTA_WEBHOOK_ALLOW_PRIVATE"),
            (vec![("QETTA_WEBHOOK_CONCURRENCY", "0")], "QETTA_WEBHOOK_CONCURRENCY"),
            (vec![("QETTA_SYNC_INTERVAL_SECS", "5")], "QETTA_SYNC_INTERVAL_SECS"),
            (vec![("QETTA_SYNC_ENABLED", "maybe")], "QETTA_SYNC_ENABLED"),
        ] {
            let err = cfg(&pairs).err().expect("must fail").to_string();
            assert!(err.starts_with(var), "{err}");
        }
    }

    fn kftc(base: &str) -> Vec<(&str, &str)> {
        vec![("KFTC_API_BASE", base), ("KFTC_CLIENT_ID", "id"), ("KFTC_CLIENT_SECRET", "secret"), ("KFTC_CLIENT_USE_CODE", "M202600001")]
    }

    #[test]
    fn provider_bases_need_https_except_to_this_machine() {
        for base in ["http://openapi.openbanking.or.kr", "http://10.0.0.5:8080", "http://127.0.0.1.example.com"] {
            let err = cfg(&kftc(base)).err().expect(base).to_string();
            assert!(err.starts_with("KFTC_API_BASE") && err.contains("https"), "{err}");
        }
        for base in ["https://openapi.openbanking.or.kr", "http://127.0.0.1:8090/kftc", "http://localhost:8090", "http://[::1]:8090/kftc"] {
            assert!(cfg(&kftc(base)).is_ok(), "{base}");
        }
        let err = cfg(&[
            ("TOSS_OAUTH_BASE", "http://oauth2.cert.toss.im"),
            ("TOSS_API_BASE", "https://cert.toss.im"),
            ("TOSS_CLIENT_ID", "i"),
            ("TOSS_CLIENT_SECRET", "s"),
        ])
        .err()
        .unwrap()
        .to_string();
        assert!(err.starts_with("TOSS_OAUTH_BASE"), "{err}");
        assert!(cfg(&kftc("https://user:pw@openapi.openbanking.or.kr")).is_err());
    }

    #[test]
    fn sandbox_mounts_only_without_real_providers() {
        let c = cfg(&[]).unwrap();
        assert!(c.sandbox_mounted());
        let c = cfg(&kftc("https://openapi.openbanking.or.kr")).unwrap();
        assert!(!c.sandbox_mounted(), "a real KFTC disables the sandbox (and with it an unconfigured Toss)");
        let mut on = kftc("https://openapi.openbanking.or.kr");
        on.push(("QETTA_SANDBOX", "on"));
        assert!(cfg(&on).err().unwrap().to_string().starts_with("QETTA_SANDBOX"));
        assert!(!cfg(&[("QETTA_SANDBOX", "off")]).unwrap().sandbox_mounted());
        // Not on loopback: only on purpose.
        let err = cfg(&[("HOST", "0.0.0.0")]).unwrap().check_serve_rules().err().unwrap().to_string();
        assert!(err.starts_with("HOST") && err.contains("QETTA_SANDBOX=on"), "{err}");
        assert!(cfg(&[("HOST", "0.0.0.0"), ("QETTA_SANDBOX", "on")]).unwrap().check_serve_rules().is_ok());
        assert!(cfg(&[("HOST", "127.0.0.1")]).unwrap().check_serve_rules().is_ok());
        let mut real = kftc("https://openapi.openbanking.or.kr");
        real.push(("HOST", "0.0.0.0"));
        assert!(cfg(&real).unwrap().check_serve_rules().is_ok());
    }

    #[test]
    fn postgres_needs_shared_secrets_to_serve_but_not_for_database_commands() {
        let c = cfg(&[("DATABASE_URL", "postgres://h/db")]).expect("migrate and audit verify need no JWT secret");
        assert!(c.check_serve_rules().err().unwrap().to_string().starts_with("JWT_SECRET"));
        assert!(c.check_shared_keys().err().unwrap().to_string().starts_with("QETTA_ENCRYPTION_KEYS"));
        let c = cfg(&[("DATABASE_URL", "postgres://h/db"), ("JWT_SECRET", "0123456789abcdef0123456789abcdef")]).unwrap();
        assert!(c.check_serve_rules().err().unwrap().to_string().starts_with("QETTA_ENCRYPTION_KEYS"));
    }

    #[test]
    fn secrets_from_files_and_typos_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("jwt");
        std::fs::write(&f, "0123456789abcdef0123456789abcdef-from-file\n").unwrap();
        let src = Sources::from_pairs([("JWT_SECRET_FILE", f.to_str().unwrap())]);
        let c = Config::from_sources(&src).unwrap();
        assert_eq!(c.jwt_secret.as_ref().map(|s| s.expose_secret().to_string()).as_deref(), Some("0123456789abcdef0123456789abcdef-from-file"));
        assert_eq!(c.sources.origin("JWT_SECRET"), Some(&Origin::File(f.display().to_string())));
        let both = Sources::from_pairs([("JWT_SECRET_FILE", f.to_str().unwrap()), ("JWT_SECRET", "x".repeat(40).as_str())]);
        assert!(Config::from_sources(&both).err().unwrap().to_string().starts_with("JWT_SECRET_FILE"));
        let missing = Sources::from_pairs([("KFTC_CLIENT_SECRET_FILE", "/nonexistent/secret")]);
        assert!(Config::from_sources(&missing).err().unwrap().to_string().starts_with("KFTC_CLIENT_SECRET_FILE"));

        let src = Sources::from_pairs([("QETTA_REFRESHER_INTERVAL", "30"), ("QETTA_SANDBOX_SEED", "1"), ("QETTA_WHATEVER_ELSE", "1"), ("PORT", "1")]);
        assert_eq!(
            src.unknown_variables(),
            vec![("QETTA_REFRESHER_INTERVAL".to_string(), Some("QETTA_REFRESHER_INTERVAL_SECS")), ("QETTA_WHATEVER_ELSE".to_string(), None)]
        );
    }

    /// Every variable name this crate reads is in [`KNOWN_VARIABLES`] (so it is never reported
    /// as unknown).
    #[test]
    fn known_variables_cover_the_code() {
        let mut missing = Vec::new();
        for file in [include_str!("mod.rs"), include_str!("providers.rs"), include_str!("../app.rs"), include_str!("../cli.rs")] {
            let code = file.split("#[cfg(test)]").next().unwrap_or(file);
            for part in code.split('"').skip(1).step_by(2) {
                let looks_like_var = part.len() > 3 && part.bytes().all(|b| b.is_ascii_uppercase() || b == b'_' || b.is_ascii_digit()) && part.contains('_');
                let ours = ["QETTA_", "KFTC_", "TOSS_", "KAKAO_", "NAVER_", "JWT_", "DATABASE_", "REDIS_", "CORS_"].iter().any(|p| part.starts_with(p))
                    || ["HOST", "PORT"].contains(&part);
                if looks_like_var && ours && !part.ends_with('_') && !KNOWN_VARIABLES.contains(&part) && !KNOWN_PREFIXES.iter().any(|p| part.starts_with(p)) {
                    missing.push(part.to_string());
                }
            }
        }
        missing.sort();
        missing.dedup();
        assert!(missing.is_empty(), "read but not in KNOWN_VARIABLES: {missing:?}");
    }

    #[test]
    fn secrets_in_urls_are_redacted() {
        assert_eq!(redact_url("postgres://u:pw@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite://data/q.db"), "sqlite://data/q.db");
    }
}
