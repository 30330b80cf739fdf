//! Failure modes: a flaky or hanging provider, an open circuit breaker, cancelled calls, a
//! stalled client, and Redis going away and coming back.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::both_backends;
use crate::support::{error_code, Backend, Spawn, TestApp};

fn balance_path(f: &str) -> String {
    format!("/api/v1/oauth/kftc/balance/{f}")
}

fn balance_calls(stats: &Value) -> i64 {
    crate::support::count(stats, &["calls", "/v2.0/account/balance/fin_num"])
}

/// A server without rate limits in the way, with a connected KFTC user; returns (app, token,
/// fintech_use_num).
async fn connected(backend: Backend, vars: &[(&str, &str)]) -> (TestApp, String, String) {
    let mut spawn = Spawn::new(backend).var("QETTA_RATE_LIMIT_API_PER_USER", "100000").var("QETTA_RATE_LIMIT_API_PER_IP", "100000");
    for (k, v) in vars {
        spawn = spawn.var(k, v);
    }
    let app = spawn.start().await;
    let (token, _) = app.register("flaky@example.com").await;
    app.connect_kftc(&token, "kim").await;
    let fin = app.accounts(&token).await[0]["fintech_use_num"].as_str().unwrap().to_string();
    (app, token, fin)
}

async fn metrics(app: &TestApp) -> String {
    app.metrics().await
}

fn breaker_state_line(provider: &str, state: &str) -> String {
    format!("qetta_upstream_circuit_state{{provider=\"{provider}\",state=\"{state}\"}} 1")
}

/// Polls `/metrics` until the KFTC breaker is in `state` (bounded).
async fn wait_for_breaker(app: &TestApp, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = metrics(app).await;
        if m.contains(&breaker_state_line("kftc", state)) {
            return;
        }
        assert!(Instant::now() < deadline, "the KFTC breaker never became {state}: {m}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

both_backends!(half_the_upstream_calls_failing_most_requests_still_succeed);

/// At a 50 % upstream error rate, retries make most requests succeed, and the breaker (which
/// counts a request once, after its retries) stays closed.
async fn half_the_upstream_calls_failing_most_requests_still_succeed(backend: Backend) {
    let (app, token, fin) = connected(backend, &[]).await;
    app.sandbox_control("kftc", "faults", json!({"error_rate": 0.5, "error": "http_500"})).await;
    let before = balance_calls(&app.sandbox_stats("kftc").await);
    let total = 200;
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let client = app.client.clone();
        let url = app.url(&balance_path(&fin));
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in (worker..total).step_by(8) {
                let r = client.get(&url).bearer_auth(&token).send().await.unwrap();
                statuses.push(r.status().as_u16());
            }
            statuses
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.extend(t.await.unwrap());
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let upstream = balance_calls(&app.sandbox_stats("kftc").await) - before;
    eprintln!(
        "50 % upstream errors: {ok}/{total} requests succeeded with {upstream} upstream calls; others: {:?}",
        statuses.iter().filter(|s| **s != 200).collect::<Vec<_>>()
    );
    assert!(ok * 100 >= total * 80, "only {ok} of {total} succeeded");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 502), "failures are 502 upstream errors, never 503: {statuses:?}");
    let m = metrics(&app).await;
    assert!(m.contains(&breaker_state_line("kftc", "closed")), "{m}");
    assert!(m.contains("qetta_upstream_circuit_rejected_total{provider=\"kftc\"} 0"), "{m}");
}

both_backends!(a_hanging_upstream_answers_504_before_the_request_timeout);

/// The upstream takes longer than the whole request may: the retries stop at the request's
/// deadline and the client gets 504 `upstream_timeout` with the JSON body, not a bodiless 408.
async fn a_hanging_upstream_answers_504_before_the_request_timeout(backend: Backend) {
    // Two full attempts fit, the third is cut at the deadline (5 s less 0.5 s).
    let (app, token, fin) = connected(backend, &[("QETTA_REQUEST_TIMEOUT_SECS", "5"), ("QETTA_UPSTREAM_TIMEOUT_MS", "2000")]).await;
    app.sandbox_control("kftc", "faults", json!({"latency_ms": 20000})).await;
    let before = balance_calls(&app.sandbox_stats("kftc").await);
    let started = Instant::now();
    let r = app.get(&balance_path(&fin), Some(&token)).await;
    let took = started.elapsed();
    assert_eq!(error_code(r, 504).await, "upstream_timeout");
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
    let attempts = balance_calls(&app.sandbox_stats("kftc").await) - before;
    assert!((2..=3).contains(&attempts), "{attempts} attempts");
    app.sandbox_control("kftc", "faults", json!({})).await;
    assert_eq!(app.get(&balance_path(&fin), Some(&token)).await.status(), 200);
}

both_backends!(a_request_that_times_out_gets_a_json_408);

/// A client that stops sending its body: the request timeout answers 408 with the JSON error
/// body (the error layer sits outside the timeout).
async fn a_request_that_times_out_gets_a_json_408(backend: Backend) {
    let app = Spawn::new(backend).var("QETTA_REQUEST_TIMEOUT_SECS", "1").start().await;
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 100\r\nx-request-id: stalled-1\r\nConnection: close\r\n\r\n{{\"email\":"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw)).await.expect("answered").unwrap();
    let raw = String::from_utf8_lossy(&raw);
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response");
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: application/json"), "{head}");
    let json_start = body.find('{').expect("a JSON body");
    let json_end = body.rfind('}').expect("a JSON body");
    let v: Value = serde_json::from_str(&body[json_start..=json_end]).unwrap();
    assert_eq!(v["error"]["code"], "request_timeout", "{v}");
    assert_eq!(v["error"]["request_id"], "stalled-1", "{v}");
}

/// Makes every KFTC call fail until the breaker opens (it counts each request once, with the
/// connect's successful calls in its window); every request before that is a 502.
async fn open_the_breaker(app: &TestApp, token: &str, fin: &str) {
    app.sandbox_control("kftc", "faults", json!({"error_rate": 1.0, "error": "http_503"})).await;
    for attempt in 0.. {
        assert!(attempt < 20, "the breaker never opened");
        let r = app.get(&balance_path(fin), Some(token)).await;
        match r.status().as_u16() {
            502 => continue,
            503 => break,
            other => panic!("unexpected {other}"),
        }
    }
}

both_backends!(an_open_breaker_answers_503_with_retry_after_then_recovers);

/// A provider that fails every call opens the breaker once the minimum volume is reached;
/// while open, calls answer 503 `upstream_unavailable` with `Retry-After` without reaching
/// the provider; after the open period one trial call closes it again.
async fn an_open_breaker_answers_503_with_retry_after_then_recovers(backend: Backend) {
    let (app, token, fin) = connected(backend, &[("QETTA_BREAKER_MIN_CALLS", "5"), ("QETTA_BREAKER_OPEN_MS", "1000")]).await;
    open_the_breaker(&app, &token, &fin).await;
    let before = balance_calls(&app.sandbox_stats("kftc").await);
    let r = app.get(&balance_path(&fin), Some(&token)).await;
    let retry_after: u64 = r.headers().get("retry-after").expect("Retry-After").to_str().unwrap().parse().unwrap();
    assert!((1..=1).contains(&retry_after), "{retry_after}");
    assert_eq!(error_code(r, 503).await, "upstream_unavailable");
    assert_eq!(balance_calls(&app.sandbox_stats("kftc").await), before, "no upstream call while open");
    let m = metrics(&app).await;
    assert!(m.contains(&breaker_state_line("kftc", "open")), "{m}");
    assert!(m.contains("qetta_upstream_circuit_open{provider=\"kftc\"} 1"), "{m}");

    app.sandbox_control("kftc", "faults", json!({})).await;
    wait_for_breaker(&app, "half_open").await;
    assert_eq!(app.get(&balance_path(&fin), Some(&token)).await.status(), 200, "the trial goes through");
    assert!(metrics(&app).await.contains(&breaker_state_line("kftc", "closed")));
}

both_backends!(a_cancelled_trial_does_not_keep_the_breaker_open);

/// The half-open trial request is abandoned by its client mid-call: the next request is let
/// through (before, the trial flag stuck and every call answered "open" until a restart).
async fn a_cancelled_trial_does_not_keep_the_breaker_open(backend: Backend) {
    let (app, token, fin) = connected(backend, &[("QETTA_BREAKER_MIN_CALLS", "5"), ("QETTA_BREAKER_OPEN_MS", "300")]).await;
    open_the_breaker(&app, &token, &fin).await;
    // The provider now hangs; the trial request's client gives up after 300 ms.
    app.sandbox_control("kftc", "faults", json!({"latency_ms": 8000})).await;
    wait_for_breaker(&app, "half_open").await;
    let before = balance_calls(&app.sandbox_stats("kftc").await);
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
    let r = impatient.get(app.url(&balance_path(&fin))).bearer_auth(&token).send().await;
    assert!(r.is_err_and(|e| e.is_timeout()), "the client gave up");
    // The trial did reach the provider (it is the call that was cancelled).
    let deadline = Instant::now() + Duration::from_secs(5);
    while balance_calls(&app.sandbox_stats("kftc").await) == before {
        assert!(Instant::now() < deadline, "the trial never reached the sandbox");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    app.sandbox_control("kftc", "faults", json!({})).await;
    // The server notices the closed connection and drops the handler: the next call is the new
    // trial. Polled briefly, since noticing the disconnect is asynchronous.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let r = app.get(&balance_path(&fin), Some(&token)).await;
        if r.status() == 200 {
            break;
        }
        assert_eq!(r.status(), 503, "only the trial-in-flight refusal is expected");
        assert!(Instant::now() < deadline, "the cancelled trial kept the breaker from closing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(metrics(&app).await.contains(&breaker_state_line("kftc", "closed")));
}

/// A private `redis-server` on a free loopback port, killed on drop.
struct RedisProc {
    child: Child,
    port: u16,
}

impl RedisProc {
    /// `None` (skip) when redis-server is not installed, except under CI.
    fn binary() -> Option<String> {
        let path = std::env::var("PATH").unwrap_or_default();
        let found = std::env::split_paths(&path).map(|d| d.join("redis-server")).find(|p| p.is_file());
        match found {
            Some(p) => Some(p.display().to_string()),
            None => crate::support::unavailable("redis-server is not on PATH"),
        }
    }

    async fn start(bin: &str, port: u16) -> Self {
        let child = Command::new(bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let me = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while me.query::<String>(&["PING"]).await.is_none() {
            assert!(Instant::now() < deadline, "redis-server on {port} did not answer");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        me
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn query<T: redis::FromRedisValue>(&self, args: &[&str]) -> Option<T> {
        let client = redis::Client::open(self.url()).ok()?;
        let fut = async {
            let mut c = client.get_multiplexed_async_connection().await.ok()?;
            let mut cmd = redis::cmd(args[0]);
            for a in &args[1..] {
                cmd.arg(*a);
            }
            cmd.query_async::<T>(&mut c).await.ok()
        };
        tokio::time::timeout(Duration::from_secs(1), fut).await.ok().flatten()
    }

    async fn keys(&self, pattern: &str) -> Vec<String> {
        self.query::<Vec<String>>(&["KEYS", pattern]).await.unwrap_or_default()
    }

    /// SIGSTOP / SIGCONT: Redis hangs (connections stay open, nothing answers) / resumes.
    fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([sig, &self.child.id().to_string()]).status().expect("kill runs").success();
        assert!(ok, "kill {sig}");
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Asserts the request answers `status` within a second.
async fn fast(what: &str, status: u16, req: reqwest::RequestBuilder) -> reqwest::Response {
    let started = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(1), req.send()).await.unwrap_or_else(|_| panic!("{what} took more than 1 s")).unwrap();
    assert_eq!(r.status().as_u16(), status, "{what} after {:?}", started.elapsed());
    r
}

both_backends!(redis_going_away_and_coming_back);

/// Redis dies: every API call keeps answering within a second on the fallbacks (in-process
/// rate limits, OAuth states in the database, database refresh locks). Redis comes back on the
/// same port: the service uses it again within 5 s, without a restart.
async fn redis_going_away_and_coming_back(backend: Backend) {
    let Some(bin) = RedisProc::binary() else { return };
    let port = crate::procs::free_port();
    let mut redis = RedisProc::start(&bin, port).await;
    let prefix = format!("qetta-rel-{}", uuid::Uuid::new_v4().simple());
    // The day's counter of the former Redis bank_tran_id scheme: carried over, never reused.
    let day = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Seoul).format("%Y%m%d").to_string();
    let legacy: Option<String> = redis.query(&["SET", &format!("{prefix}:kftc:tran_id:{day}"), "5000"]).await;
    assert_eq!(legacy.as_deref(), Some("OK"));
    let app = Spawn::new(backend).var("REDIS_URL", &redis.url()).var("QETTA_REDIS_PREFIX", &prefix).start().await;
    let (token, _) = app.register("redis@example.com").await;
    let login = || app.client.post(app.url("/api/v1/auth/login")).json(&json!({"email": "redis@example.com", "password": "correct horse 7"}));
    let status = || app.client.get(app.url("/api/v1/oauth/status")).bearer_auth(&token);
    fast("status", 200, status()).await;
    let rl_pattern = format!("{prefix}:rl:*");
    assert!(!redis.keys(&rl_pattern).await.is_empty(), "rate limits count in Redis while it is up");
    app.connect_kftc(&token, "kim").await;
    let fin = app.accounts(&token).await[0]["fintech_use_num"].as_str().unwrap().to_string();
    let balance = || app.client.get(app.url(&balance_path(&fin))).bearer_auth(&token);
    fast("balance", 200, balance()).await;
    let (last,): (i64,) = sqlx::query_as("SELECT last FROM kftc_tran_counters WHERE day = $1").bind(&day).fetch_one(app.state.db.pool()).await.unwrap();
    assert!(last > 5000, "the database counter continues above the former Redis counter: {last}");

    // Redis hangs: calls are cut at the Redis timeout, and skipped for a second after a failure.
    redis.signal("-STOP");
    let hung_at = Instant::now();
    let mut slowest_hung = (Duration::ZERO, Duration::ZERO);
    let mut i = 0;
    while hung_at.elapsed() < Duration::from_millis(2500) {
        let started = Instant::now();
        fast("status while Redis hangs", 200, status()).await;
        slowest_hung.0 = slowest_hung.0.max(started.elapsed());
        if i % 5 == 0 {
            let started = Instant::now();
            fast("login while Redis hangs", 200, login()).await;
            slowest_hung.1 = slowest_hung.1.max(started.elapsed());
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    redis.signal("-CONT");

    // Redis dies.
    redis.kill();
    let down_at = Instant::now();
    let mut slowest = (Duration::ZERO, Duration::ZERO);
    let mut i = 0;
    while down_at.elapsed() < Duration::from_millis(2500) {
        let started = Instant::now();
        fast("status", 200, status()).await;
        slowest.0 = slowest.0.max(started.elapsed());
        if i % 5 == 0 {
            let started = Instant::now();
            fast("login", 200, login()).await;
            slowest.1 = slowest.1.max(started.elapsed());
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    fast("balance", 200, balance()).await;
    // A refresh takes the database lock instead of Redis's.
    app.sandbox_control("kftc", "expire-tokens", json!({})).await;
    fast("balance after token expiry", 200, balance()).await;
    // A whole new connection: the OAuth state goes to the database, is bound and consumed there.
    let (other, _) = app.register("redis-other@example.com").await;
    app.connect_kftc(&other, "lee").await;
    // Degraded, not unready: the replica still serves everything.
    let r = fast("ready", 200, app.client.get(app.url("/ready"))).await;
    let v: Value = r.json().await.unwrap();
    assert_eq!((v["status"].clone(), v["checks"]["redis"].clone()), (json!("degraded"), json!("unreachable")), "{v}");
    let m = metrics(&app).await;
    assert!(m.contains("qetta_redis_up 0"), "{m}");
    eprintln!("Redis hung: slowest (status, login) {slowest_hung:?}; Redis dead: slowest (status, login) {slowest:?}");

    // Back on the same port, empty.
    let redis = RedisProc::start(&bin, port).await;
    let back_at = Instant::now();
    loop {
        fast("status", 200, status()).await;
        if !redis.keys(&rl_pattern).await.is_empty() {
            break;
        }
        assert!(back_at.elapsed() < Duration::from_secs(5), "the service did not use Redis again within 5 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovered = back_at.elapsed();
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.client.get(app.url("/ready")).send().await.unwrap().json::<Value>().await.unwrap()["status"] != "ready" {
        assert!(Instant::now() < deadline, "/ready did not recover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(metrics(&app).await.contains("qetta_redis_up 1"));
    eprintln!("Redis back: used again after {recovered:?}");
    // bank_tran_id numbers continue after the Redis restart: one balance is one upstream call
    // (a reused id would be refused with A0326 and retried).
    let before = balance_calls(&app.sandbox_stats("kftc").await);
    fast("balance after Redis came back", 200, balance()).await;
    assert_eq!(balance_calls(&app.sandbox_stats("kftc").await) - before, 1, "no A0326 retry");
    // New OAuth states go to Redis again and the flow works.
    let (third, third_id) = app.register("redis-third@example.com").await;
    app.connect_kftc(&third, "park").await;
    let states = redis.query::<Vec<String>>(&["KEYS", &format!("{prefix}:oauth_state:*")]).await.unwrap_or_default();
    assert!(!states.is_empty(), "the OAuth state of the last connect was kept in Redis");

    // A state that reached both stores (a Redis write that landed after its time-out, then the
    // database fallback) is still consumed once: the winner must also claim the database row.
    use qetta::shared_state::Consumed;
    use qetta::store::oauth_states::{self, OAuthState};
    let now = app.state.clock.now();
    for db_consumed_first in [false, true] {
        let st = OAuthState {
            state: format!("both-{}", uuid::Uuid::new_v4().simple()),
            user_id: third_id.clone(),
            provider: "kftc".into(),
            flow_data: None,
            browser_binding: None,
            initiator_hash: None,
            created_at: now,
            expires_at: now + 600,
            consumed_at: None,
        };
        app.state.shared.put_state(&st).await.unwrap();
        assert!(redis.query::<i64>(&["EXISTS", &format!("{prefix}:oauth_state:{}", st.state)]).await == Some(1), "in Redis");
        oauth_states::insert(&app.state.db, &st).await.unwrap();
        if db_consumed_first {
            // A replica without Redis consumed it from the database.
            assert!(oauth_states::consume(&app.state.db, &st.state, now).await.unwrap().is_some());
            assert!(matches!(app.state.shared.consume_state(&st.state, now).await.unwrap(), Consumed::Replayed));
        } else {
            assert!(matches!(app.state.shared.consume_state(&st.state, now).await.unwrap(), Consumed::Fresh(_)));
            assert!(matches!(app.state.shared.consume_state(&st.state, now).await.unwrap(), Consumed::Replayed));
            assert!(oauth_states::consume(&app.state.db, &st.state, now).await.unwrap().is_none(), "the database row was claimed too");
        }
    }
}
