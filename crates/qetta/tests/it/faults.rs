//! Fault injection: storage outages, a full disk, a dead refresh-lease holder, an audit log that
//! cannot be written, and a PostgreSQL pool under refresh load. Each test starts what it breaks
//! itself (its own PostgreSQL cluster on a free port, its own tmpfs), never the machine's own
//! services, and is bounded in time.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::both_backends;
use crate::support::{count, error_code, unavailable, Backend, Spawn, TestApp};

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    out
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A PostgreSQL cluster of the test's own, on a free loopback port, that the test stops and
/// starts at will.
struct PrivatePg {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl PrivatePg {
    fn start() -> Option<Self> {
        Self::start_on(crate::procs::free_port())
    }

    fn start_on(port: u16) -> Option<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql").ok().and_then(|versions| {
            let mut dirs: Vec<PathBuf> = versions.flatten().map(|e| e.path().join("bin")).filter(|b| b.join("pg_ctl").exists()).collect();
            dirs.sort();
            dirs.pop()
        });
        let Some(bin) = bin else { return unavailable("a PostgreSQL server installation (/usr/lib/postgresql/*/bin)") };
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        if is_root() {
            // PostgreSQL refuses to run as root: the cluster belongs to the postgres user.
            run(Command::new("chown").args(["-R", "postgres:"]).arg(dir.path()));
        }
        let pg = Self { bin, data, port, _dir: dir };
        run(pg.cmd("initdb", &["-A", "trust", "-U", "postgres", "--no-sync", "-D"]).arg(&pg.data));
        pg.up();
        Some(pg)
    }

    fn cmd(&self, tool: &str, args: &[&str]) -> Command {
        let mut c = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join(tool));
            c
        } else {
            Command::new(self.bin.join(tool))
        };
        c.args(args);
        c
    }

    fn up(&self) {
        let opts = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60", self.port, self.data.display());
        run(self.cmd("pg_ctl", &["-w", "-t", "30", "-o", &opts, "-l"]).arg(self.data.join("log")).arg("-D").arg(&self.data).arg("start"));
    }

    /// A crash: no shutdown checkpoint, every connection cut.
    fn crash(&self) {
        run(self.cmd("pg_ctl", &["-w", "-m", "immediate", "-D"]).arg(&self.data).arg("stop"));
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let _ = self.cmd("pg_ctl", &["-m", "immediate", "-D"]).arg(&self.data).arg("stop").output();
    }
}

/// Connects `n` users to KFTC; returns their tokens.
async fn connected_users(app: &TestApp, n: usize) -> Vec<String> {
    let mut tokens = Vec::new();
    for i in 0..n {
        let (token, _) = app.register(&format!("fault{i}@example.com")).await;
        app.connect_kftc(&token, ["kim", "lee", "park", "choi"][i % 4]).await;
        tokens.push(token);
    }
    tokens
}

async fn balance_status(app: &TestApp, token: &str) -> u16 {
    let fin = app.accounts(token).await[0]["fintech_use_num"].as_str().unwrap().to_string();
    app.get(&format!("/api/v1/oauth/kftc/balance/{fin}"), Some(token)).await.status().as_u16()
}

/// (active connections refreshed at least once, connections needing consent again).
async fn refreshed_and_lost(db_url: &str) -> (i64, i64) {
    let pool = sqlx::PgPool::connect(db_url).await.unwrap();
    let row: (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*) FILTER (WHERE status = 'active' AND last_refreshed_at IS NOT NULL), COUNT(*) FILTER (WHERE status <> 'active') FROM connections",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    row
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_storage_outage_during_a_refresh_wave_loses_no_connection() {
    let Some(pg) = PrivatePg::start() else { return };
    let app = Spawn::new(Backend::Postgres)
        .database(&pg.url())
        .var("QETTA_REFRESHER_ENABLED", "false")
        .var("QETTA_RATE_LIMIT_API_PER_USER", "100000")
        .var("QETTA_RATE_LIMIT_API_PER_IP", "100000")
        .start()
        .await;
    const N: usize = 20;
    let tokens = connected_users(&app, N).await;
    // A second replica on the same database, calling the same KFTC (the first one's simulator).
    let other = Spawn::new(Backend::Postgres)
        .database(&pg.url())
        .kftc_at(&app.url("/sandbox/kftc"))
        .var("QETTA_REFRESHER_ENABLED", "false")
        .var("QETTA_RATE_LIMIT_API_PER_USER", "100000")
        .var("QETTA_RATE_LIMIT_API_PER_IP", "100000")
        .start()
        .await;
    let issued = |s: &Value| count(s, &["tokens", "issued", "refresh_token"]);
    assert_eq!(issued(&app.sandbox_stats("kftc").await), 0);

    // Every token is due; KFTC answers the refreshes after 1.5 s, and the database crashes while
    // they are in flight, for 12 s.
    app.clock.advance(7_776_000);
    other.clock.advance(7_776_000);
    app.sandbox_control("kftc", "faults", json!({"latency_ms": 1500})).await;
    let mut wave = Vec::new();
    let mut fins = Vec::new();
    for t in &tokens {
        let (client, url, token) = (app.client.clone(), app.url("/api/v1/oauth/kftc/accounts"), t.clone());
        // Warm the account list first (the balance route reads it before refreshing).
        let fin: Value = client.get(&url).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
        let fin = fin["accounts"][0]["fintech_use_num"].as_str().unwrap().to_string();
        let balance = app.url(&format!("/api/v1/oauth/kftc/balance/{fin}"));
        fins.push(fin);
        wave.push(tokio::spawn(async move { client.get(balance).bearer_auth(&token).send().await.map(|r| r.status().as_u16()).unwrap_or(0) }));
    }
    // Crash once every refresh has reached KFTC (the sandbox counts a call before its latency).
    let token_calls = |s: &Value| count(s, &["calls", "/oauth/2.0/token"]) as usize;
    let reached = Instant::now() + Duration::from_secs(5);
    while token_calls(&app.sandbox_stats("kftc").await) < 2 * N {
        assert!(Instant::now() < reached, "the refreshes did not reach KFTC");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pg.crash();
    let outage = Instant::now();
    tokio::time::sleep(Duration::from_secs(12)).await;
    pg.up();
    // The moment storage is back, the other replica wants the same connections: the first
    // replica's leases ran out during the outage, but its grants must still win.
    let race = tokens.iter().zip(&fins).map(|(t, f)| {
        let (client, url, token) = (other.client.clone(), other.url(&format!("/api/v1/oauth/kftc/balance/{f}")), t.clone());
        async move { client.get(url).bearer_auth(&token).send().await.map(|r| r.status().as_u16()).unwrap_or(0) }
    });
    let raced = futures::future::join_all(race).await;
    let statuses: Vec<u16> = futures::future::join_all(wave).await.into_iter().map(Result::unwrap).collect();
    assert!(statuses.iter().all(|s| [200, 503].contains(s)), "answers during the outage: {statuses:?}");
    app.sandbox_control("kftc", "faults", json!({})).await;

    // The grants KFTC issued during the outage are stored once storage is back.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (refreshed, lost) = loop {
        let (refreshed, lost) = refreshed_and_lost(&pg.url()).await;
        if refreshed as usize == N || Instant::now() > deadline {
            break (refreshed, lost);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!(
        "outage of {:?}: {refreshed} of {N} grants stored after it, {lost} lost; answers {statuses:?}; the other replica right after: {raced:?}",
        outage.elapsed()
    );
    assert!(raced.iter().all(|s| [200, 503].contains(s)), "{raced:?}");
    assert_eq!(lost, 0, "no connection needs consent again");
    assert_eq!(refreshed as usize, N, "every grant issued during the outage was stored");
    assert_eq!(issued(&app.sandbox_stats("kftc").await) as usize, N, "one refresh per connection, none repeated");
    // The stored tokens are the live ones: every user's balance works without another refresh.
    for t in &tokens {
        assert_eq!(balance_status(&app, t).await, 200);
    }
    assert_eq!(issued(&app.sandbox_stats("kftc").await) as usize, N);
    let audited: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'refresh' AND outcome = 'ok'").fetch_one(app.state.db.pool()).await.unwrap();
    assert_eq!(audited as usize, N, "every stored refresh has its audit entry");
}

/// A tmpfs of `size` mounted for the test (root only), unmounted on drop.
struct SmallDisk {
    dir: PathBuf,
    _root: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<Self> {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("disk");
        std::fs::create_dir(&dir).unwrap();
        let ok = is_root() && Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(&dir).status().is_ok_and(|s| s.success());
        if !ok {
            return unavailable("mounting a tmpfs (root) to fill a disk");
        }
        Some(Self { dir, _root: root })
    }

    /// Fills the disk and keeps it full (taking every byte SQLite frees after a failed write)
    /// until the returned filler is dropped, which deletes it.
    fn fill(&self) -> Filler {
        use std::io::Write;
        let path = self.dir.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let big = vec![0u8; 64 * 1024];
        while f.write_all(&big).is_ok() {}
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let keeper = std::thread::spawn(move || {
            let small = [0u8; 512];
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                if f.write_all(&small).is_err() {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        });
        Filler { path, stop, keeper: Some(keeper) }
    }
}

struct Filler {
    path: PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    keeper: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Filler {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(k) = self.keeper.take() {
            let _ = k.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_loses_no_refresh_and_ready_says_so() {
    let Some(disk) = SmallDisk::mount("24m") else { return };
    let db = disk.dir.join("qetta.db");
    let url = format!("sqlite://{}?mode=rwc", path_str(&db));
    let app = Spawn::new(Backend::Sqlite).database(&url).var("QETTA_REFRESHER_ENABLED", "false").start().await;
    const N: usize = 5;
    let tokens = connected_users(&app, N).await;
    assert_eq!(app.get("/ready", None).await.status(), 200);

    // A refresh wave: KFTC answers after 2 s, and the disk fills up while the refreshes are in
    // flight, so KFTC grants new tokens that cannot be written.
    app.clock.advance(7_776_000);
    let mut fins = Vec::new();
    for t in &tokens {
        fins.push(app.accounts(t).await[0]["fintech_use_num"].as_str().unwrap().to_string());
    }
    app.sandbox_control("kftc", "faults", json!({"latency_ms": 2000})).await;
    let mut wave = Vec::new();
    for (t, fin) in tokens.iter().zip(&fins) {
        let (client, url, token) = (app.client.clone(), app.url(&format!("/api/v1/oauth/kftc/balance/{fin}")), t.clone());
        wave.push(tokio::spawn(async move { client.get(url).bearer_auth(&token).send().await.map(|r| r.status().as_u16()).unwrap_or(0) }));
    }
    let reached = Instant::now() + Duration::from_secs(5);
    while (count(&app.sandbox_stats("kftc").await, &["calls", "/oauth/2.0/token"]) as usize) < 2 * N {
        assert!(Instant::now() < reached, "the refreshes did not reach KFTC");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Empty the WAL so that any new write needs new disk space, then fill the disk. The test
    // reads through a connection of its own, opened before (the service's may fail meanwhile).
    let side = sqlx::sqlite::SqlitePoolOptions::new().max_connections(1).connect(&url).await.unwrap();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&side).await.unwrap();
    let filler = disk.fill();
    let r = app.get("/ready", None).await;
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["checks"]["database"], "disk_full", "{body}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let issued = count(&app.sandbox_stats("kftc").await, &["tokens", "issued", "refresh_token"]);
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM connections WHERE last_refreshed_at IS NOT NULL").fetch_one(&side).await.unwrap();
    assert_eq!((issued, stored), (N as i64, 0), "KFTC granted new tokens that the full disk could not take yet");
    drop(filler);
    app.sandbox_control("kftc", "faults", json!({})).await;
    let statuses: Vec<u16> = futures::future::join_all(wave).await.into_iter().map(Result::unwrap).collect();
    assert!(statuses.iter().all(|s| [200, 503].contains(s)), "{statuses:?}");

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows: Vec<(String, Option<i64>)> = sqlx::query_as("SELECT status, last_refreshed_at FROM connections").fetch_all(&side).await.unwrap();
        assert!(rows.iter().all(|r| r.0 == "active"), "no connection lost: {rows:?}");
        if rows.iter().all(|r| r.1.is_some()) {
            break;
        }
        assert!(Instant::now() < deadline, "grants stored after the disk has room again: {rows:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("full disk: {issued} grants issued while full, answers {statuses:?}, all stored afterwards");
    for t in &tokens {
        assert_eq!(balance_status(&app, t).await, 200);
    }
    assert_eq!(count(&app.sandbox_stats("kftc").await, &["tokens", "issued", "refresh_token"]) as usize, N, "one refresh each");
    assert_eq!(app.get("/ready", None).await.status(), 200);
}

both_backends!(a_dead_lease_holder_blocks_others_for_one_lease_at_most, raw_tokens_and_disconnects_are_refused_without_an_audit_entry);

async fn a_dead_lease_holder_blocks_others_for_one_lease_at_most(backend: Backend) {
    let app = Spawn::new(backend).var("QETTA_REFRESHER_ENABLED", "false").start().await;
    let (token, _) = app.register("lease@example.com").await;
    app.connect_kftc(&token, "kim").await;
    let fin = app.accounts(&token).await[0]["fintech_use_num"].as_str().unwrap().to_string();
    app.clock.advance(7_776_000);
    // A replica took the refresh lease (3 s) and died at once: it never renews it.
    let until = chrono::Utc::now().timestamp_millis() + 3_000;
    sqlx::query("UPDATE connections SET refresh_lease_owner = 'dead-replica', refresh_lease_until = $1")
        .bind(until)
        .execute(app.state.db.pool())
        .await
        .unwrap();
    let started = Instant::now();
    let r = app.get(&format!("/api/v1/oauth/kftc/balance/{fin}"), Some(&token)).await;
    let waited = started.elapsed();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    eprintln!("blocked by a dead lease holder for {waited:?}");
    assert!(waited >= Duration::from_millis(4_500), "the lease and its grace were honoured ({waited:?})");
    assert!(waited < Duration::from_millis(5_900), "blocked at most 5 s (lease and grace) plus the refresh ({waited:?})");
    assert_eq!(count(&app.sandbox_stats("kftc").await, &["tokens", "issued", "refresh_token"]), 1);
}

/// Makes every audit insert fail (a trigger works for every role, superusers included).
async fn break_audit_log(app: &TestApp, broken: bool) {
    let pg = app.database_url.starts_with("postgres");
    let statements: &[&str] = match (pg, broken) {
        (true, true) => &[
            "CREATE OR REPLACE FUNCTION qetta_test_no_audit() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'audit log unavailable'; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER qetta_test_no_audit BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION qetta_test_no_audit()",
        ],
        (true, false) => &["DROP TRIGGER qetta_test_no_audit ON audit_log"],
        (false, true) => &["CREATE TRIGGER qetta_test_no_audit BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'audit log unavailable'); END"],
        (false, false) => &["DROP TRIGGER qetta_test_no_audit"],
    };
    for s in statements {
        sqlx::query(s).execute(app.state.db.pool()).await.unwrap();
    }
}

async fn raw_tokens_and_disconnects_are_refused_without_an_audit_entry(backend: Backend) {
    const SERVICE_KEY: &str = "service-key-service-key-service-key-0123";
    let app = Spawn::new(backend).var("QETTA_SERVICE_KEY", SERVICE_KEY).start().await;
    let (token, _) = app.register("audit.fail@example.com").await;
    app.connect_kftc(&token, "kim").await;
    let raw = |path: &'static str| {
        let (app, token) = (&app, token.clone());
        async move { app.client.get(app.url(path)).bearer_auth(token).header("x-qetta-service-key", SERVICE_KEY).send().await.unwrap() }
    };
    let entries = || async { sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM audit_log").fetch_one(app.state.db.pool()).await.unwrap() };

    break_audit_log(&app, true).await;
    let before = entries().await;
    for path in ["/api/v1/oauth/kftc/token", "/api/v1/oauth/toss/token"] {
        let r = raw(path).await;
        assert_eq!(r.status(), 503, "{path}");
        let text = r.text().await.unwrap();
        assert!(!text.contains("access_token"), "no raw token without its audit entry: {text}");
        assert!(text.contains("audit_unavailable"), "{text}");
    }
    let r = app.client.delete(app.url("/api/v1/oauth/kftc/disconnect")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(error_code(r, 503).await, "audit_unavailable");
    assert_eq!(app.status_of(&token, "kftc").await["connected"], true, "the connection stays when its removal cannot be recorded");
    assert_eq!(entries().await, before);

    // Once the audit log takes writes again, everything works and is recorded.
    break_audit_log(&app, false).await;
    let r = raw("/api/v1/oauth/kftc/token").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["access_token"].is_string());
    let r = app.client.delete(app.url("/api/v1/oauth/kftc/disconnect")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let recorded: Vec<String> =
        sqlx::query_scalar("SELECT action FROM audit_log WHERE provider = 'kftc' AND action IN ('token_fetch', 'disconnect') ORDER BY id")
            .fetch_all(app.state.db.pool())
            .await
            .unwrap();
    assert_eq!(recorded, ["token_fetch", "disconnect"], "only the operations that happened are recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_without_redis_keeps_its_pool_under_a_refresh_storm() {
    if crate::support::postgres_admin_url().await.is_none() {
        return;
    }
    let app = Spawn::new(Backend::Postgres)
        .var("QETTA_REFRESHER_ENABLED", "false")
        .var("QETTA_RATE_LIMIT_API_PER_USER", "100000")
        .var("QETTA_RATE_LIMIT_API_PER_IP", "100000")
        .var("QETTA_RATE_LIMIT_AUTH_PER_IP", "100000")
        .start()
        .await;
    const N: usize = 40;
    let tokens = connected_users(&app, N).await;
    let mut fins = Vec::new();
    for t in &tokens {
        fins.push(app.accounts(t).await[0]["fintech_use_num"].as_str().unwrap().to_string());
    }
    // 40 refreshes at once over a pool of 16, each waiting 500 ms on KFTC.
    app.clock.advance(7_776_000);
    app.sandbox_control("kftc", "faults", json!({"latency_ms": 500})).await;
    let started = Instant::now();
    let wave = tokens.iter().zip(&fins).map(|(t, f)| {
        let (client, url, token) = (app.client.clone(), app.url(&format!("/api/v1/oauth/kftc/balance/{f}")), t.clone());
        async move { client.get(url).bearer_auth(&token).send().await.unwrap().status().as_u16() }
    });
    let statuses = futures::future::join_all(wave).await;
    eprintln!(
        "40 concurrent refreshes over a pool of 16: {:?} in {:?}",
        statuses.iter().fold(std::collections::BTreeMap::new(), |mut m, s| {
            *m.entry(*s).or_insert(0) += 1;
            m
        }),
        started.elapsed()
    );
    assert!(statuses.iter().all(|s| *s == 200), "no pool time-out: {statuses:?}");
    assert_eq!(count(&app.sandbox_stats("kftc").await, &["tokens", "issued", "refresh_token"]) as usize, N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_starts_after_the_service_is_waited_for() {
    let db_port = crate::procs::free_port();
    let port = crate::procs::free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut service = Command::new(env!("CARGO_BIN_EXE_qetta"))
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("QETTA_ADMIN_ADDR", "127.0.0.1:0")
        .args(["serve"])
        .env("PORT", port.to_string())
        .env("DATABASE_URL", format!("postgres://postgres@127.0.0.1:{db_port}/postgres"))
        .env("JWT_SECRET", crate::support::JWT_SECRET)
        .env("QETTA_ENCRYPTION_KEYS", crate::support::ENCRYPTION_KEYS)
        .env("QETTA_DB_CONNECT_WAIT_SECS", "30")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(service.try_wait().unwrap().is_none(), "still waiting for its database");
    let Some(_pg) = PrivatePg::start_on(db_port) else {
        let _ = service.kill();
        return;
    };
    let started = Instant::now();
    let healthy = loop {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/ready")).await {
            break r.status() == 200;
        }
        if started.elapsed() > Duration::from_secs(20) || service.try_wait().unwrap().is_some() {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = service.kill();
    let _ = service.wait();
    assert!(healthy, "the service started once its database did");
}

both_backends!(a_refresh_token_spent_by_a_stalled_holder_waits_for_its_grant);

/// A holder refreshed at KFTC, then its storage failed long enough for its lease to run out; the
/// moment storage is back another caller takes the lease and presents the (now spent) refresh
/// token. KFTC refuses it, but the connection is not declared dead: the holder's grant lands
/// within the lease's grace and is used.
async fn a_refresh_token_spent_by_a_stalled_holder_waits_for_its_grant(backend: Backend) {
    let app = Spawn::new(backend).var("QETTA_REFRESHER_ENABLED", "false").start().await;
    let (token, user_id) = app.register("stalled@example.com").await;
    app.connect_kftc(&token, "kim").await;
    let fin = app.accounts(&token).await[0]["fintech_use_num"].as_str().unwrap().to_string();
    let conn = qetta::store::connections::default_for(&app.state.db, &user_id, "kftc").await.unwrap().unwrap();
    let vault = &app.state.vault;
    let refresh = vault.open_string(conn.refresh_token.as_deref().unwrap(), qetta::tokens::aad(&conn, "refresh_token")).unwrap();

    // The stalled holder's refresh at KFTC: the old refresh token is spent now.
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", qetta_sandbox::config::DEFAULT_KFTC_CLIENT_ID),
        ("client_secret", qetta_sandbox::config::DEFAULT_KFTC_CLIENT_SECRET),
        ("refresh_token", secrecy::ExposeSecret::expose_secret(&refresh)),
        ("scope", "login inquiry"),
    ];
    let granted: Value = app.client.post(app.url("/sandbox/kftc/oauth/2.0/token")).form(&form).send().await.unwrap().json().await.unwrap();
    let access = granted["access_token"].as_str().expect("a new grant").to_string();
    let new_refresh = granted["refresh_token"].as_str().unwrap().to_string();
    // Its lease ran out (and its grace) while storage was down.
    let long_ago = chrono::Utc::now().timestamp_millis() - 60_000;
    sqlx::query("UPDATE connections SET refresh_lease_owner = 'stalled-holder', refresh_lease_until = $1")
        .bind(long_ago)
        .execute(app.state.db.pool())
        .await
        .unwrap();

    // Storage is back: its write lands 600 ms from now, fenced by the version it read.
    let (db, now) = (app.state.db.clone(), app.state.clock.now());
    let write = qetta::store::connections::TokenWrite {
        access_token: vault.seal_str(&access, qetta::tokens::aad(&conn, "access_token")),
        refresh_token: Some(vault.seal_str(&new_refresh, qetta::tokens::aad(&conn, "refresh_token"))),
        key_id: vault.active_key_id().to_string(),
        token_type: "Bearer".into(),
        scope: "inquiry login".into(),
        expires_at: Some(now + 7_776_000),
        refresh_expires_at: None,
    };
    let (id, version) = (conn.id.clone(), conn.version);
    let holder = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(600)).await;
        qetta::store::connections::write_tokens(db.pool(), &id, version, &write, None, true, now).await.unwrap()
    });

    // Meanwhile a request finds the token due and takes the abandoned lease.
    app.clock.advance(7_776_000 - 60);
    let r = app.get(&format!("/api/v1/oauth/kftc/balance/{fin}"), Some(&token)).await;
    assert!(holder.await.unwrap(), "the holder's grant was stored");
    assert_eq!(r.status(), 200, "served with the holder's grant: {}", r.text().await.unwrap_or_default());
    let after = qetta::store::connections::default_for(&app.state.db, &user_id, "kftc").await.unwrap().unwrap();
    assert_eq!(after.status, "active", "not declared dead");
    let refused = count(&app.sandbox_stats("kftc").await, &["tokens", "refused", "refresh_token"]);
    assert_eq!(refused, 1, "the spent refresh token was presented once and refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_is_refused_when_the_audit_log_cannot_be_written() {
    let app = Spawn::new(Backend::Sqlite).start().await;
    let (token, _) = app.register("rotate@example.com").await;
    app.connect_kftc(&token, "kim").await;
    break_audit_log(&app, true).await;
    let before: Vec<Vec<u8>> = sqlx::query_scalar("SELECT access_token FROM connections").fetch_all(app.state.db.pool()).await.unwrap();
    // A new active key first, the old one after it: everything would be re-encrypted.
    let keys = format!("k2:{},{}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 32]), crate::support::ENCRYPTION_KEYS);
    let out = Command::new(env!("CARGO_BIN_EXE_qetta"))
        .current_dir(app.dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("QETTA_ADMIN_ADDR", "127.0.0.1:0")
        .args(["keys", "rotate"])
        .env("DATABASE_URL", &app.database_url)
        .env("QETTA_ENCRYPTION_KEYS", &keys)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("keys rotate with the audit log broken: {:?} {err}", out.status.code());
    assert_ne!(out.status.code(), Some(0), "refused");
    assert!(err.contains("audit log cannot be written") && err.contains("nothing was re-encrypted"), "{err}");
    let after: Vec<Vec<u8>> = sqlx::query_scalar("SELECT access_token FROM connections").fetch_all(app.state.db.pool()).await.unwrap();
    assert_eq!(before, after, "nothing re-encrypted");
}
