#![allow(dead_code)] // each test module uses a different part of the harness
//! Test harness: a real server on a loopback port, on SQLite or PostgreSQL, with a movable clock.

use std::sync::Arc;

use qetta::app::{App, AppState};
use qetta::clock::OffsetClock;
use qetta::config::{Config, Sources};
use serde_json::Value;

pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123";
/// A fixed test key (never used outside tests).
pub const ENCRYPTION_KEYS: &str = "test1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    /// SQLite with the shared state (OAuth states, counters, locks, bank_tran_id) in Redis.
    SqliteRedis,
    PostgresRedis,
}

impl Backend {
    pub fn is_postgres(self) -> bool {
        matches!(self, Backend::Postgres | Backend::PostgresRedis)
    }
    pub fn uses_redis(self) -> bool {
        matches!(self, Backend::SqliteRedis | Backend::PostgresRedis)
    }
}

/// Runs a behavioural test once per database backend: `both_backends!(name);` expects
/// `async fn name(backend: Backend)` in the same module.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => { $crate::backend_tests!([sqlite, postgres]; $($name),*); };
}

/// Like `both_backends!`, plus both databases with Redis for the shared state.
#[macro_export]
macro_rules! all_backends {
    ($($name:ident),* $(,)?) => { $crate::backend_tests!([sqlite, postgres, sqlite_redis, postgres_redis]; $($name),*); };
}

/// One module per test, one `#[tokio::test]` per listed variant.
#[macro_export]
macro_rules! backend_tests {
    ($variants:tt; $($name:ident),*) => {
        $( mod $name { $crate::backend_variants!($variants, $name); } )*
    };
}

#[macro_export]
macro_rules! backend_variants {
    ([$($variant:ident),*], $name:ident) => { $( $crate::backend_variant!($variant, $name); )* };
}

/// A variant runs when its services are reachable (they are skipped with a message otherwise,
/// except under CI, where an unreachable service fails the test).
#[macro_export]
macro_rules! backend_variant {
    (sqlite, $name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn sqlite() {
            super::$name($crate::support::Backend::Sqlite).await
        }
    };
    (postgres, $name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn postgres() {
            if $crate::support::postgres_admin_url().await.is_some() {
                super::$name($crate::support::Backend::Postgres).await
            }
        }
    };
    (sqlite_redis, $name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn sqlite_redis() {
            if $crate::support::redis_url().await.is_some() {
                super::$name($crate::support::Backend::SqliteRedis).await
            }
        }
    };
    (postgres_redis, $name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn postgres_redis() {
            if $crate::support::postgres_admin_url().await.is_some() && $crate::support::redis_url().await.is_some() {
                super::$name($crate::support::Backend::PostgresRedis).await
            }
        }
    };
}

/// A Redis database of its own for one test (keys are namespaced by test through the DB number
/// and random ids, and tests never FLUSH), or `None` (skip) when unreachable outside CI.
pub async fn redis_url() -> Option<String> {
    let url = std::env::var("QETTA_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/15".into());
    let ok = async {
        let client = redis::Client::open(url.as_str()).ok()?;
        let mut c = client.get_multiplexed_async_connection().await.ok()?;
        redis::cmd("PING").query_async::<String>(&mut c).await.ok()
    };
    match tokio::time::timeout(std::time::Duration::from_secs(3), ok).await {
        Ok(Some(_)) => Some(url),
        _ if !must_run_everything() => {
            eprintln!("SKIPPED: Redis at {url} is unreachable; set QETTA_TEST_REDIS_URL or run .ci/run");
            None
        }
        _ => panic!("Redis at {url} is unreachable under CI"),
    }
}

/// A test whose tool or service is missing: skipped with a `skipped:` line outside CI, failed under
/// CI. `what` says what is missing and how to get it.
pub fn unavailable<T>(what: &str) -> Option<T> {
    if must_run_everything() {
        panic!("{what}: required under CI");
    }
    eprintln!("skipped: {what}");
    None
}

pub fn must_run_everything() -> bool {
    std::env::var("CI").map(|v| v == "true" || v == "1").unwrap_or(false) || std::env::var("QETTA_TEST_REQUIRE_SERVICES").is_ok()
}

/// The admin URL of the test PostgreSQL, or `None` (skip) when it is unreachable outside CI.
pub async fn postgres_admin_url() -> Option<String> {
    let url = std::env::var("QETTA_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    match sqlx::PgPool::connect(&url).await {
        Ok(pool) => {
            pool.close().await;
            Some(url)
        }
        Err(e) if !must_run_everything() => {
            eprintln!("SKIPPED: PostgreSQL at {url} is unreachable ({e}); set QETTA_TEST_DATABASE_URL or run .ci/run");
            None
        }
        Err(e) => panic!("PostgreSQL at {url} is unreachable under CI: {e}"),
    }
}

/// A fresh, empty database for one test; returns its URL.
pub async fn fresh_database(backend: Backend, dir: &std::path::Path) -> String {
    match backend {
        Backend::Sqlite | Backend::SqliteRedis => format!("sqlite://{}?mode=rwc", dir.join("test.db").display()),
        Backend::Postgres | Backend::PostgresRedis => {
            let admin = postgres_admin_url().await.expect("PostgreSQL reachable");
            let name = format!("qetta_t_{}", uuid::Uuid::new_v4().simple());
            let pool = sqlx::PgPool::connect(&admin).await.expect("connect admin");
            sqlx::query(&format!("CREATE DATABASE {name}")).execute(&pool).await.expect("create database");
            pool.close().await;
            let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap_or(admin);
            format!("{base}/{name}")
        }
    }
}

pub struct TestApp {
    pub base: String,
    /// The admin listener (`/metrics`, `/health`, `/ready`).
    pub admin_base: String,
    pub client: reqwest::Client,
    pub clock: Arc<OffsetClock>,
    pub state: AppState,
    pub dir: tempfile::TempDir,
    /// The database this instance uses (a second instance can share it: [`Spawn::database`]).
    pub database_url: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub struct Spawn {
    pub backend: Backend,
    pub vars: Vec<(String, String)>,
    /// Use this database instead of a fresh one (a second replica).
    pub database: Option<String>,
}

impl Spawn {
    pub fn new(backend: Backend) -> Self {
        Self { backend, vars: Vec::new(), database: None }
    }
    /// Shares an existing database (already migrated) instead of creating a fresh one.
    pub fn database(mut self, url: &str) -> Self {
        self.database = Some(url.to_string());
        self
    }
    /// KFTC configured for real at `base` (a simulator elsewhere), with the sandbox's registration.
    pub fn kftc_at(self, base: &str) -> Self {
        self.var("KFTC_API_BASE", base)
            .var("KFTC_CLIENT_ID", qetta_sandbox::config::DEFAULT_KFTC_CLIENT_ID)
            .var("KFTC_CLIENT_SECRET", qetta_sandbox::config::DEFAULT_KFTC_CLIENT_SECRET)
            .var("KFTC_CLIENT_USE_CODE", qetta_sandbox::config::DEFAULT_KFTC_CLIENT_USE_CODE)
    }

    pub fn var(mut self, k: &str, v: &str) -> Self {
        self.vars.push((k.into(), v.into()));
        self
    }
    pub async fn start(self) -> TestApp {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = match &self.database {
            Some(u) => u.clone(),
            None => fresh_database(self.backend, dir.path()).await,
        };
        let mut sources = Sources::from_pairs([
            ("PORT", "0".to_string()),
            ("QETTA_DATA_DIR", dir.path().display().to_string()),
            ("DATABASE_URL", url.clone()),
            ("JWT_SECRET", JWT_SECRET.to_string()),
            ("QETTA_ENCRYPTION_KEYS", ENCRYPTION_KEYS.to_string()),
            ("QETTA_ADMIN_ADDR", "127.0.0.1:0".to_string()),
            // The background refresher wakes when a test moves the clock; tests that want it
            // running say so (the others drive `refresher::run_once` themselves).
            ("QETTA_REFRESHER_ENABLED", "false".to_string()),
        ]);
        if self.backend.uses_redis() {
            sources.set("REDIS_URL", redis_url().await.expect("Redis reachable"));
            sources.set("QETTA_REDIS_PREFIX", format!("qetta-test-{}", uuid::Uuid::new_v4().simple()));
        }
        for (k, v) in &self.vars {
            sources.set(k, v.clone());
        }
        let config = Config::from_sources(&sources).expect("valid test config");
        let clock = OffsetClock::new();
        let app = App::build(config, clock.clone()).await.expect("app starts");
        let base = format!("http://{}", app.local_addr());
        let admin_base = app.admin_addr().map(|a| format!("http://{a}")).unwrap_or_default();
        let state = app.state().clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run(async move {
            let _ = rx.await;
        }));
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        TestApp { base, admin_base, client, clock, state, dir, database_url: url, shutdown: Some(tx) }
    }
}

pub async fn spawn(backend: Backend) -> TestApp {
    Spawn::new(backend).start().await
}

impl TestApp {
    /// The Prometheus text of the admin listener.
    pub async fn metrics(&self) -> String {
        self.client.get(format!("{}/metrics", self.admin_base)).send().await.expect("admin listener").text().await.unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn post_json(&self, path: &str, body: &Value, token: Option<&str>) -> reqwest::Response {
        let mut req = self.client.post(self.url(path)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("request sent")
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut req = self.client.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("request sent")
    }

    /// Registers a user and returns (token, user id).
    pub async fn register(&self, email: &str) -> (String, String) {
        let r = self.post_json("/api/v1/auth/register", &serde_json::json!({"email": email, "password": "correct horse 7"}), None).await;
        assert_eq!(r.status(), 201, "register {email}");
        let body: Value = r.json().await.unwrap();
        (body["token"].as_str().unwrap().to_string(), body["user"]["id"].as_str().unwrap().to_string())
    }
}

/// Reads a JSON error body and checks its shape; returns the code.
pub async fn error_code(r: reqwest::Response, status: u16) -> String {
    assert_eq!(r.status().as_u16(), status, "status");
    let rid = r.headers().get("x-request-id").expect("x-request-id header").to_str().unwrap().to_string();
    let body: Value = r.json().await.expect("JSON error body");
    let err = &body["error"];
    assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()), "message in {body}");
    assert_eq!(err["request_id"].as_str(), Some(rid.as_str()), "request id in {body}");
    err["code"].as_str().expect("code").to_string()
}

/// What the KFTC callback page reported.
#[derive(Debug)]
pub struct Callback {
    pub status: u16,
    pub ok: bool,
    pub code: String,
    pub body: String,
}

pub fn data_attr(body: &str, name: &str) -> String {
    let key = format!("data-{name}=\"");
    body.split_once(&key).and_then(|(_, rest)| rest.split_once('"')).map(|(v, _)| v.to_string()).unwrap_or_default()
}

impl TestApp {
    /// A browser: its own cookie jar, redirects followed by hand.
    pub fn browser(&self) -> reqwest::Client {
        reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap()
    }

    /// `GET /api/v1/oauth/kftc/authorize` from `browser`, as the /oauth page does (its cookie jar
    /// gets the initiator cookie, so the launch URL goes straight to the consent page there).
    pub async fn kftc_authorize(&self, browser: &reqwest::Client, token: &str) -> String {
        let r = browser.get(self.url("/api/v1/oauth/kftc/authorize")).bearer_auth(token).send().await.expect("request sent");
        assert_eq!(r.status(), 200, "authorize");
        let v: Value = r.json().await.unwrap();
        v["authorize_url"].as_str().unwrap().to_string()
    }

    /// `GET /api/v1/oauth/kftc/authorize` without a cookie jar, as the app's backend (or an
    /// attacker making a link) does: the launch URL shows a confirmation page in any browser.
    pub async fn kftc_authorize_backend(&self, token: &str) -> String {
        let r = self.get("/api/v1/oauth/kftc/authorize", Some(token)).await;
        assert_eq!(r.status(), 200, "authorize");
        let v: Value = r.json().await.unwrap();
        v["authorize_url"].as_str().unwrap().to_string()
    }

    /// Opens the launch URL in `browser`, answers the sandbox consent as `sandbox_user` with
    /// `decision`, and returns the callback URL KFTC sends the browser to.
    pub async fn kftc_consent(&self, browser: &reqwest::Client, launch_url: &str, sandbox_user: &str, decision: &str) -> String {
        let r = browser.get(launch_url).send().await.unwrap();
        assert_eq!(r.status(), 303, "launch redirects: {}", r.text().await.unwrap_or_default());
        let consent = r.headers()["location"].to_str().unwrap().to_string();
        assert!(consent.contains("/sandbox/kftc/oauth/2.0/authorize?"), "{consent}");
        let r = browser.get(format!("{consent}&sandbox_user={sandbox_user}&sandbox_consent={decision}")).send().await.unwrap();
        assert!(r.status().is_redirection(), "consent redirects, got {}", r.status());
        r.headers()["location"].to_str().unwrap().to_string()
    }

    pub async fn kftc_callback(&self, browser: &reqwest::Client, callback_url: &str) -> Callback {
        let r = browser.get(callback_url).send().await.unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        Callback { status, ok: data_attr(&body, "ok") == "true", code: data_attr(&body, "code"), body }
    }

    /// The whole connect flow for `sandbox_user`; asserts it succeeded.
    pub async fn connect_kftc(&self, token: &str, sandbox_user: &str) {
        let browser = self.browser();
        let launch = self.kftc_authorize(&browser, token).await;
        let callback = self.kftc_consent(&browser, &launch, sandbox_user, "approve").await;
        let cb = self.kftc_callback(&browser, &callback).await;
        assert!(cb.ok, "connect failed: {cb:?}");
    }

    pub async fn sandbox_stats(&self, provider: &str) -> Value {
        self.get(&format!("/sandbox/{provider}/_sandbox/stats"), None).await.json().await.unwrap()
    }

    pub async fn sandbox_control(&self, provider: &str, what: &str, body: Value) {
        let r = self.post_json(&format!("/sandbox/{provider}/_sandbox/{what}"), &body, None).await;
        assert!(r.status().is_success(), "sandbox {what}: {}", r.status());
    }

    pub async fn accounts(&self, token: &str) -> Vec<Value> {
        let r = self.get("/api/v1/oauth/kftc/accounts", Some(token)).await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        v["accounts"].as_array().unwrap().clone()
    }

    pub async fn status_of(&self, token: &str, provider: &str) -> Value {
        let v: Value = self.get("/api/v1/oauth/status", Some(token)).await.json().await.unwrap();
        v["providers"].as_array().unwrap().iter().find(|p| p["provider"] == provider).unwrap().clone()
    }
}

pub fn count(stats: &Value, path: &[&str]) -> i64 {
    let mut v = stats;
    for p in path {
        v = &v[*p];
    }
    v.as_i64().unwrap_or(0)
}
