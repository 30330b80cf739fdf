//! Commands for operators: `qetta config show` (the effective configuration, secrets redacted,
//! with where each value came from) and `qetta doctor` (one line per check of what the service
//! needs to run: configuration, database, Redis, encryption keys, clock, providers).

use std::time::Duration;

use secrecy::ExposeSecret;

use crate::config::{Config, SandboxMode, Sources};

/// A value shown to an operator: secrets appear as `(set)`, URLs without their password.
enum Shown {
    Plain(String),
    Secret(bool),
    Url(String),
}

impl Shown {
    fn render(&self) -> String {
        match self {
            Shown::Plain(s) => s.clone(),
            Shown::Secret(true) => "(set, hidden)".into(),
            Shown::Secret(false) => "(not set)".into(),
            Shown::Url(u) => crate::config::redact_url(u),
        }
    }
}

fn secs(d: Duration) -> Shown {
    Shown::Plain(d.as_secs().to_string())
}

fn millis(d: Duration) -> Shown {
    Shown::Plain(d.as_millis().to_string())
}

fn plain(v: impl ToString) -> Shown {
    Shown::Plain(v.to_string())
}

fn opt(v: &Option<String>) -> Shown {
    Shown::Plain(v.clone().unwrap_or_default())
}

/// Every setting with its effective value.
fn effective(c: &Config) -> Vec<(&'static str, Shown)> {
    let t = &c.tokens;
    vec![
        ("HOST", plain(c.host)),
        ("PORT", plain(c.port)),
        ("QETTA_ADMIN_ADDR", plain(c.admin_addr.map(|a| a.to_string()).unwrap_or_else(|| "off".into()))),
        ("QETTA_ADMIN_EMAILS", plain(c.admin_emails.join(","))),
        ("QETTA_TRUSTED_PROXIES", plain(c.trusted_proxies.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(","))),
        ("QETTA_DATA_DIR", plain(c.data_dir.display())),
        ("DATABASE_URL", Shown::Url(c.database_url.expose_secret().to_string())),
        ("QETTA_DB_CONNECT_WAIT_SECS", secs(c.database_connect_wait)),
        ("REDIS_URL", c.redis_url.as_ref().map(|u| Shown::Url(u.expose_secret().to_string())).unwrap_or(Shown::Plain(String::new()))),
        ("QETTA_REDIS_PREFIX", plain(&c.redis_prefix)),
        ("QETTA_REDIS_TIMEOUT_MS", millis(c.redis_timeout)),
        ("JWT_SECRET", Shown::Secret(c.jwt_secret.is_some())),
        ("QETTA_JWT_ISSUER", plain(&c.jwt_issuer)),
        ("QETTA_JWT_AUDIENCE", plain(&c.jwt_audience)),
        ("QETTA_JWT_TTL_SECS", secs(c.jwt_ttl)),
        ("QETTA_SERVICE_KEY", Shown::Secret(c.service_key.is_some())),
        ("CORS_ORIGINS", plain(c.cors_origins.join(","))),
        ("QETTA_PUBLIC_URL", plain(&c.public_url)),
        ("QETTA_REQUEST_TIMEOUT_SECS", secs(c.request_timeout)),
        ("QETTA_BODY_LIMIT_BYTES", plain(c.body_limit_bytes)),
        ("QETTA_LOG_FORMAT", plain(format!("{:?}", c.log_format).to_lowercase())),
        ("QETTA_LOGIN_MAX_FAILURES", plain(c.login_max_failures)),
        ("QETTA_LOGIN_LOCKOUT_SECS", secs(c.login_lockout)),
        ("QETTA_HASH_CONCURRENCY", plain(c.hash_concurrency)),
        ("QETTA_HASH_QUEUE_WAIT_MS", millis(c.hash_queue_wait)),
        ("QETTA_ENCRYPTION_KEYS", Shown::Secret(c.encryption_keys.is_some())),
        ("QETTA_REFRESH_MARGIN_SECS", plain(t.refresh_margin_secs)),
        ("QETTA_REFRESHER_ENABLED", plain(t.refresher_enabled)),
        ("QETTA_REFRESHER_INTERVAL_SECS", secs(t.refresher_interval)),
        ("QETTA_REFRESHER_LOOKAHEAD_SECS", plain(t.refresher_lookahead_secs)),
        ("QETTA_REFRESHER_BATCH", plain(t.refresher_batch)),
        ("QETTA_REFRESHER_CONCURRENCY", plain(t.refresher_concurrency)),
        ("QETTA_REFRESH_BACKOFF_SECS", plain(t.backoff_base_secs)),
        ("QETTA_REFRESH_BACKOFF_MAX_SECS", plain(t.backoff_max_secs)),
        ("QETTA_UPSTREAM_TIMEOUT_MS", millis(t.upstream_timeout)),
        ("QETTA_GRANT_RETRY_SECS", secs(t.grant_retry)),
        ("QETTA_BREAKER_WINDOW_SECS", secs(c.breaker.window)),
        ("QETTA_BREAKER_MIN_CALLS", plain(c.breaker.min_calls)),
        ("QETTA_BREAKER_FAILURE_RATIO", plain(c.breaker.failure_ratio)),
        ("QETTA_BREAKER_OPEN_MS", millis(c.breaker.open_for)),
        ("QETTA_RATE_LIMIT_AUTH_PER_IP", plain(c.rate_limits.auth_per_ip_per_min)),
        ("QETTA_RATE_LIMIT_API_PER_IP", plain(c.rate_limits.api_per_ip_per_min)),
        ("QETTA_RATE_LIMIT_API_PER_USER", plain(c.rate_limits.api_per_user_per_min)),
        ("QETTA_SANDBOX", plain(format!("{:?}", c.sandbox_mode).to_lowercase())),
        ("QETTA_WEBHOOK_RETRY_SCHEDULE", plain(c.webhooks.retry_schedule.iter().map(|d| format!("{}s", d.as_secs())).collect::<Vec<_>>().join(","))),
        ("QETTA_WEBHOOK_ALLOW_PRIVATE", plain(c.webhooks.allow_private)),
        ("QETTA_WEBHOOK_CONCURRENCY", plain(c.webhooks.concurrency)),
        ("KFTC_API_BASE", opt(&c.kftc.api_base)),
        ("KFTC_CLIENT_ID", opt(&c.kftc.client_id)),
        ("KFTC_CLIENT_SECRET", Shown::Secret(c.kftc.client_secret.is_some())),
        ("KFTC_CLIENT_USE_CODE", opt(&c.kftc.client_use_code)),
        ("KFTC_REDIRECT_URI", opt(&c.kftc.redirect_uri)),
        ("KFTC_SCOPE", plain(&c.kftc.scope)),
        ("TOSS_OAUTH_BASE", opt(&c.toss.oauth_base)),
        ("TOSS_API_BASE", opt(&c.toss.api_base)),
        ("TOSS_CLIENT_ID", opt(&c.toss.client_id)),
        ("TOSS_CLIENT_SECRET", Shown::Secret(c.toss.client_secret.is_some())),
        ("TOSS_RSA_PUBLIC_KEY", Shown::Plain(if c.toss.rsa_public_key.is_some() { "(set)".into() } else { String::new() })),
        ("TOSS_REQUEST_URL", plain(&c.toss.request_url)),
    ]
}

/// `qetta config show`: one line per setting, `NAME = value  (source)`, secrets never printed.
pub fn show(config: &Config) -> String {
    let src = &config.sources;
    let mut out = String::new();
    for (name, value) in effective(config) {
        let origin = src.origin(name).map(|o| o.to_string()).unwrap_or_else(|| "default".into());
        out.push_str(&format!("{name} = {}  ({origin})\n", value.render()));
    }
    for (name, closest) in src.unknown_variables() {
        out.push_str(&format!("# warning: {}\n", unknown_warning(&name, closest)));
    }
    out
}

/// The warning for a variable nothing reads.
pub fn unknown_warning(name: &str, closest: Option<&str>) -> String {
    match closest {
        Some(c) => format!("{name} is not a setting of this service and is ignored; did you mean {c}?"),
        None => format!("{name} is not a setting of this service and is ignored"),
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

pub struct Check {
    pub name: &'static str,
    pub level: Level,
    pub detail: String,
}

fn check(name: &'static str, level: Level, detail: impl Into<String>) -> Check {
    Check { name, level, detail: detail.into() }
}

/// `qetta doctor`: every check, in order. Nothing is written except the readiness probe row.
pub async fn doctor(sources: &Sources) -> Vec<Check> {
    let mut checks = Vec::new();
    let config = match Config::from_sources(sources) {
        Ok(c) => c,
        Err(e) => {
            checks.push(check("configuration", Level::Fail, e.to_string()));
            return checks;
        }
    };
    match config.check_serve_rules() {
        Ok(()) => checks.push(check("configuration", Level::Ok, "valid")),
        Err(e) => checks.push(check("configuration", Level::Fail, e.to_string())),
    }
    for (name, closest) in config.sources.unknown_variables() {
        checks.push(check("configuration", Level::Warn, unknown_warning(&name, closest)));
    }
    if config.sandbox_mounted() {
        checks.push(check("providers", Level::Warn, "sandbox mode: KFTC and Toss are simulated; never serve real users like this"));
    }

    // Database: reachable, writable, migrations, key fingerprints, clock.
    if let Some(path) = config.sqlite_path().filter(|p| !p.exists()) {
        checks.push(check("database", Level::Warn, format!("{} does not exist yet; the service creates it at start", path.display())));
        return finish(checks, &config).await;
    }
    let db = match crate::store::Db::connect_waiting(config.database_url.expose_secret(), config.database_kind, Duration::ZERO).await {
        Ok(db) => {
            checks.push(check("database", Level::Ok, format!("reachable at {}", config.database_url_for_display())));
            Some(db)
        }
        Err(e) => {
            let cause = match &e {
                crate::store::StoreError::Database(inner) => crate::store::root_cause(inner),
                other => other.to_string(),
            };
            checks.push(check("database", Level::Fail, format!("cannot connect to {}: {cause}", config.database_url_for_display())));
            None
        }
    };
    if let Some(db) = &db {
        match db.pending_migrations().await {
            Ok(0) => checks.push(check("migrations", Level::Ok, "up to date")),
            Ok(n) => checks.push(check("migrations", Level::Warn, format!("{n} to apply (they run at start, or with `qetta migrate`)"))),
            Err(e) => checks.push(check("migrations", Level::Fail, e.to_string())),
        }
        match db.write_probe(chrono::Utc::now().timestamp()).await {
            Ok(()) => checks.push(check("database writes", Level::Ok, "a probe row was written")),
            // Before the first migration there is no table to write to.
            Err(_) if db.pending_migrations().await.unwrap_or(0) > 0 => checks.push(check("database writes", Level::Warn, "not checked before the migrations")),
            Err(e) => checks.push(check("database writes", Level::Fail, e.to_string())),
        }
        checks.push(keys_check(&config, db).await);
        if let Some(c) = clock_check(db).await {
            checks.push(c);
        }
    }

    finish(checks, &config).await
}

/// The checks that need no database: Redis and the providers.
async fn finish(mut checks: Vec<Check>, config: &Config) -> Vec<Check> {
    // Redis.
    if config.redis_url.is_some() {
        match crate::app::open_redis(config).await {
            Ok(_) => {
                let url = config.redis_url.as_ref().map(|u| crate::config::redact_url(u.expose_secret())).unwrap_or_default();
                checks.push(check("redis", Level::Ok, format!("answers at {url}")))
            }
            Err(e) => checks.push(check("redis", Level::Fail, e.to_string())),
        }
    } else {
        checks.push(check("redis", Level::Ok, "not configured (rate limits are per replica)"));
    }

    // Providers: DNS and TLS of each configured base.
    let bases = [("kftc", config.kftc.api_base.clone()), ("toss oauth", config.toss.oauth_base.clone()), ("toss api", config.toss.api_base.clone())];
    let http = crate::providers::upstream::http_client(Duration::from_secs(5));
    for (name, base) in bases {
        let Some(base) = base else { continue };
        let detail = match http.get(&base).send().await {
            Ok(r) => check("provider", Level::Ok, format!("{name}: {base} answers (HTTP {})", r.status().as_u16())),
            Err(e) => check("provider", Level::Fail, format!("{name}: {base} cannot be reached: {}", crate::store::root_cause(&e))),
        };
        checks.push(detail);
    }
    if config.sandbox_mode == SandboxMode::Off && !config.any_provider_configured() {
        checks.push(check("providers", Level::Warn, "QETTA_SANDBOX=off and no provider configured: every provider is disabled"));
    }
    checks
}

async fn keys_check(config: &Config, db: &crate::store::Db) -> Check {
    if config.encryption_keys.is_none() {
        let file = config.data_dir.join("encryption_keys");
        if !file.exists() {
            return check("encryption keys", Level::Warn, format!("not configured; the service will generate {} at start", file.display()));
        }
    }
    match crate::keys::load_ring(config) {
        Ok((ring, _)) => match crate::keys::verify_against_store(db, &ring).await {
            Ok(()) => check("encryption keys", Level::Ok, format!("active key {} opens what is stored", ring.active_id())),
            Err(e) => check("encryption keys", Level::Fail, e.to_string()),
        },
        Err(e) => check("encryption keys", Level::Fail, e.to_string()),
    }
}

/// PostgreSQL's clock against ours: token expiry and leases assume the replicas agree.
async fn clock_check(db: &crate::store::Db) -> Option<Check> {
    if db.kind() != crate::config::DatabaseKind::Postgres {
        return None;
    }
    let theirs: Result<(i64,), _> = sqlx::query_as("SELECT CAST(EXTRACT(EPOCH FROM now()) * 1000 AS BIGINT)").fetch_one(db.pool()).await;
    let ours = chrono::Utc::now().timestamp_millis();
    Some(match theirs {
        Ok((t,)) if (t - ours).abs() <= 2_000 => check("clock", Level::Ok, format!("within {} ms of the database's", (t - ours).abs())),
        Ok((t,)) => check("clock", Level::Warn, format!("{} ms off the database's clock; keep every machine on NTP", (t - ours).abs())),
        Err(e) => check("clock", Level::Warn, format!("cannot read the database's clock: {e}")),
    })
}

/// Prints the checks; `true` when none failed.
#[allow(clippy::print_stdout)] // one line per check on the operator's terminal
pub fn report(checks: &[Check]) -> bool {
    for c in checks {
        let tag = match c.level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        };
        println!("{tag}  {}: {}", c.name, c.detail);
    }
    !checks.iter().any(|c| c.level == Level::Fail)
}
