//! The real binary: startup errors and the embedded default.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn qetta(dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_qetta"));
    c.current_dir(dir).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).env("QETTA_ADMIN_ADDR", "127.0.0.1:0");
    c
}

#[test]
fn a_bad_port_stops_with_a_message_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = qetta(dir.path()).arg("serve").env("PORT", "eighty").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PORT") && err.contains("\"eighty\""), "{err}");
}

#[test]
fn a_bad_kftc_scope_stops_with_a_message_naming_it() {
    for (scope, says) in [("login,inquiry", "spaces"), ("login inquiry oob", "\"oob\""), ("login", "\"inquiry\""), ("login inquiry login", "twice")] {
        let dir = tempfile::tempdir().unwrap();
        let out = qetta(dir.path()).arg("serve").env("KFTC_SCOPE", scope).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{scope}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("KFTC_SCOPE") && err.contains(says), "{scope}: {err}");
    }
}

#[test]
fn an_unreachable_database_stops_with_a_message_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let out = qetta(dir.path())
        .arg("serve")
        .env("PORT", "0")
        .env("DATABASE_URL", "postgres://qetta:hunter2secret@127.0.0.1:1/qetta")
        .env("JWT_SECRET", crate::support::JWT_SECRET)
        .env("QETTA_ENCRYPTION_KEYS", crate::support::ENCRYPTION_KEYS)
        .env("QETTA_DB_CONNECT_WAIT_SECS", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("DATABASE_URL") && err.contains("127.0.0.1:1"), "{err}");
    // The root cause, named once (not "pool timed out" three times).
    assert_eq!(err.matches("Connection refused").count(), 2, "once in the retry warning, once in the error: {err}");
    assert!(!err.contains("pool timed out"), "{err}");
    assert!(!err.contains("hunter2secret"), "password leaked: {err}");
}

#[test]
fn an_empty_directory_serves_health_quickly_on_embedded_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let started = Instant::now();
    let mut child = qetta(dir.path()).arg("serve").env("PORT", port.to_string()).stderr(Stdio::null()).spawn().unwrap();
    let mut healthy = false;
    while started.elapsed() < Duration::from_secs(20) {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
            let mut resp = String::new();
            let _ = s.read_to_string(&mut resp);
            if resp.starts_with("HTTP/1.1 200") {
                healthy = true;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(healthy, "no healthy answer");
    assert!(dir.path().join("data/qetta.db").exists());
    assert!(dir.path().join("data/jwt_secret").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_reports_an_intact_and_a_tampered_chain() {
    let app = crate::support::spawn(crate::support::Backend::Sqlite).await;
    let (token, _) = app.register("audit@example.com").await;
    // Two audited operations.
    for _ in 0..2 {
        assert_eq!(app.get("/api/v1/oauth/kftc/authorize", Some(&token)).await.status(), 200);
    }
    let url = format!("sqlite://{}", app.dir.path().join("test.db").display());
    let run = || {
        qetta(app.dir.path())
            .args(["audit", "verify"])
            .env("DATABASE_URL", &url)
            .env("QETTA_ENCRYPTION_KEYS", crate::support::ENCRYPTION_KEYS)
            .output()
            .unwrap()
    };
    let out = run();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("intact: 2 entries"));
    sqlx::query("UPDATE audit_log SET outcome = 'forged' WHERE id = 1").execute(app.state.db.pool()).await.unwrap();
    let out = run();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("BROKEN at entry 1"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_toml_file_and_a_dotenv_file_are_read_with_the_environment_first() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("qetta.toml"), "PORT = \"from-toml\"\nQETTA_LOG_FORMAT = \"json\"\n").unwrap();
    let out = qetta(dir.path()).arg("serve").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"from-toml\""), "TOML is read");
    std::fs::write(dir.path().join(".env"), "PORT=from-dotenv\n").unwrap();
    let out = qetta(dir.path()).arg("serve").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"from-dotenv\""), ".env wins over TOML");
    let out = qetta(dir.path()).arg("serve").env("PORT", "from-env").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"from-env\""), "the environment wins");
    std::fs::write(dir.path().join("qetta.toml"), "PORT = [\n").unwrap();
    let out = qetta(dir.path()).arg("serve").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("qetta.toml"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn sigterm_stops_the_service_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = qetta(dir.path()).arg("serve").env("PORT", port.to_string()).stderr(Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(20), "never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let waited = Instant::now();
    loop {
        if let Some(code) = child.try_wait().unwrap() {
            assert!(code.success(), "exit status {code}");
            break;
        }
        assert!(waited.elapsed() < Duration::from_secs(10), "did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("shutting down"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_names_the_failing_part_and_cors_allows_only_listed_origins() {
    let app = crate::support::Spawn::new(crate::support::Backend::Sqlite).var("CORS_ORIGINS", "https://app.example.com").start().await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/api/v1/oauth/status"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let r = preflight("https://app.example.com").await.unwrap();
    assert_eq!(r.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap()), Some("https://app.example.com"));
    let r = preflight("https://evil.example").await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());

    app.state.db.close().await;
    let r = app.get("/ready", None).await;
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["failing"], serde_json::json!(["database"]));
    assert_eq!(body["error"]["code"], "not_ready");
    assert!(body["error"]["message"].as_str().unwrap().contains("database"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_passes_against_a_running_service() {
    let app = crate::support::spawn(crate::support::Backend::Sqlite).await;
    let base = app.base.clone();
    let dir = app.dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || qetta(&dir).args(["smoke", "--url", &base, "--sandbox-user", "lee"]).output().unwrap()).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    for step in ["PASS GET /ready", "PASS Toss connection test", "PASS KFTC connect through the sandbox", "PASS KFTC balance", "PASS KFTC disconnect"] {
        assert!(stdout.contains(step), "{stdout}");
    }
    // Through another host name than the public URL: authorize's initiator cookie stays with
    // that name, so the launch link shows the confirmation page, which the smoke test confirms.
    let other_name = app.base.replace("127.0.0.1", "localhost");
    let dir = app.dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || qetta(&dir).args(["smoke", "--url", &other_name, "--sandbox-user", "kim"]).output().unwrap()).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("PASS KFTC connect through the sandbox"), "{stdout}");
    let outcomes: Vec<(String,)> =
        sqlx::query_as("SELECT outcome FROM audit_log WHERE action = 'launch' ORDER BY id").fetch_all(app.state.db.pool()).await.unwrap();
    let outcomes: Vec<&str> = outcomes.iter().map(|(o,)| o.as_str()).collect();
    assert_eq!(outcomes, ["bound", "confirmation_shown", "confirmed"], "first run straight through, second through the confirmation page");
    // Against nothing: a clear failure.
    let out = tokio::task::spawn_blocking(|| qetta(std::path::Path::new("/")).args(["smoke", "--url", "http://127.0.0.1:1"]).output().unwrap()).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL GET /health"));
}

#[test]
fn keys_generate_prints_a_usable_key_entry() {
    let dir = tempfile::tempdir().unwrap();
    let out = qetta(dir.path()).args(["keys", "generate", "--id", "k2026"]).output().unwrap();
    assert!(out.status.success());
    let entry = String::from_utf8(out.stdout).unwrap();
    let entry = entry.trim();
    assert!(entry.starts_with("k2026:") && entry.len() == "k2026:".len() + 44, "{entry}");
    assert_eq!(qetta::vault::KeyRing::parse(entry).unwrap().active_id(), "k2026");
    let out = qetta(dir.path()).args(["keys", "generate", "--id", "bad id"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn audit_verify_is_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("empty.db");
    std::fs::File::create(&db).unwrap();
    let out = qetta(dir.path()).args(["audit", "verify"]).env("DATABASE_URL", format!("sqlite://{}", db.display())).output().unwrap();
    assert_ne!(out.status.code(), Some(0), "an empty database has no audit log to verify");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("audit_log"), "{err}");
    // It migrated nothing: the file still has no tables.
    let out = std::process::Command::new("sqlite3").arg(&db).arg(".tables").output();
    if let Ok(out) = out {
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "", "no tables were created");
    }
    assert!(std::fs::metadata(&db).unwrap().len() == 0, "the file was not written");
}

#[test]
fn config_show_names_sources_and_never_prints_secrets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("qetta.toml"), "PORT = 9001\nQETTA_JWT_ISSUER = \"from-toml\"\n").unwrap();
    std::fs::write(dir.path().join(".env"), "QETTA_JWT_AUDIENCE=from-dotenv\nQETTA_SERVICE_KEY=service-key-from-dotenv-0123456789abcdef\n").unwrap();
    let secret_file = dir.path().join("jwt");
    std::fs::write(&secret_file, "jwt-secret-from-a-file-0123456789abcdef\n").unwrap();
    let out = qetta(dir.path())
        .args(["config", "show"])
        .env("JWT_SECRET_FILE", &secret_file)
        .env("DATABASE_URL", "postgres://qetta:db-password-secret@127.0.0.1:5432/qetta")
        .env("QETTA_ENCRYPTION_KEYS", crate::support::ENCRYPTION_KEYS)
        .env("QETTA_REFRESHER_INTERVAL", "30")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    for line in [
        "PORT = 9001  (qetta.toml)",
        "QETTA_JWT_ISSUER = from-toml  (qetta.toml)",
        "QETTA_JWT_AUDIENCE = from-dotenv  (.env)",
        "QETTA_SERVICE_KEY = (set, hidden)  (.env)",
        "QETTA_ENCRYPTION_KEYS = (set, hidden)  (environment)",
        "DATABASE_URL = postgres://qetta:***@127.0.0.1:5432/qetta  (environment)",
        "QETTA_REQUEST_TIMEOUT_SECS = 30  (default)",
        "did you mean QETTA_REFRESHER_INTERVAL_SECS?",
    ] {
        assert!(text.contains(line), "{line:?} in:\n{text}");
    }
    assert!(text.contains(&format!("JWT_SECRET = (set, hidden)  (file {})", secret_file.display())), "{text}");
    let key = crate::support::ENCRYPTION_KEYS.split_once(':').unwrap().1;
    for secret in ["jwt-secret-from-a-file", "service-key-from-dotenv", "db-password-secret", key] {
        assert!(!text.contains(secret), "{secret} printed:\n{text}");
    }
}

#[test]
fn doctor_checks_one_line_each_and_fails_on_an_unreachable_database() {
    let dir = tempfile::tempdir().unwrap();
    // Embedded defaults after a first start: everything ok, the sandbox mode pointed out.
    let mut serve = qetta(dir.path()).arg("serve").env("PORT", "0").stderr(Stdio::null()).spawn().unwrap();
    let started = Instant::now();
    while !dir.path().join("data/encryption_keys").exists() && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let _ = serve.kill();
    let _ = serve.wait();
    let out = qetta(dir.path()).arg("doctor").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for line in [
        "ok    configuration: valid",
        "ok    database: reachable",
        "ok    migrations: up to date",
        "ok    database writes",
        "ok    encryption keys: active key",
        "warn  providers: sandbox mode",
    ] {
        assert!(text.contains(line), "{line:?} in:\n{text}");
    }

    let out = qetta(dir.path())
        .arg("doctor")
        .env("DATABASE_URL", "postgres://qetta:hunter2@127.0.0.1:1/qetta")
        .env("JWT_SECRET", crate::support::JWT_SECRET)
        .env("QETTA_ENCRYPTION_KEYS", crate::support::ENCRYPTION_KEYS)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL  database: cannot connect to postgres://qetta:***@127.0.0.1:1/qetta: Connection refused"), "{text}");
    assert!(!text.contains("hunter2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_commands_need_no_jwt_secret() {
    if crate::support::postgres_admin_url().await.is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = crate::support::fresh_database(crate::support::Backend::Postgres, dir.path()).await;
    for args in [vec!["migrate"], vec!["audit", "verify"]] {
        let out = qetta(dir.path()).args(&args).env("DATABASE_URL", &url).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    // Serving still needs the shared secrets, and says which.
    let out = qetta(dir.path()).arg("serve").env("DATABASE_URL", &url).env("PORT", "0").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("JWT_SECRET"));
    // So does a key rotation (keys generated on one machine would differ between replicas).
    let out = qetta(dir.path()).args(["keys", "rotate"]).env("DATABASE_URL", &url).output().unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("QETTA_ENCRYPTION_KEYS"));
}

#[test]
fn serve_warns_about_unknown_settings() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = qetta(dir.path()).arg("serve").env("PORT", port.to_string()).env("QETTA_REQUEST_TIMEOUT", "5").stderr(Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("QETTA_REQUEST_TIMEOUT is not a setting of this service and is ignored; did you mean QETTA_REQUEST_TIMEOUT_SECS?"), "{err}");
}

/// `qetta health`: the container health check (Dockerfile `HEALTHCHECK`, Kubernetes exec probe).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_probes_ready_and_exits_by_the_answer() {
    let app = crate::support::spawn(crate::support::Backend::Sqlite).await;
    let dir = app.dir.path().to_path_buf();
    let run = move |args: Vec<String>| {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || qetta(&dir).arg("health").args(args).output().unwrap())
    };
    let ready = app.url("/ready");
    let out = run(vec!["--url".into(), ready.clone()]).await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("healthy"));
    // The default URL is /ready on 127.0.0.1 and PORT.
    let port = app.base.rsplit(':').next().unwrap().trim_end_matches('/').to_string();
    let out = tokio::task::spawn_blocking({
        let dir = app.dir.path().to_path_buf();
        move || qetta(&dir).arg("health").env("PORT", port).output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    // Nothing listening: exit 1 with a message.
    let out = run(vec!["--url".into(), "http://127.0.0.1:1/ready".into()]).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unhealthy"), "{}", String::from_utf8_lossy(&out.stderr));
    // /ready answers 503 for the database: unhealthy, also with `--ignore redis`; only an ignored
    // check may fail.
    app.state.db.close().await;
    let out = run(vec!["--url".into(), ready.clone(), "--ignore".into(), "redis".into()]).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("failing: database"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(vec!["--url".into(), ready, "--ignore".into(), "database".into()]).await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

/// JSON logs: one line per request with its route template, status, latency, user and request id;
/// no token, no query string, no line for the probes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_access_log_lines_carry_route_status_latency_user_and_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let log_path = dir.path().join("serve.log");
    let mut child = qetta(dir.path())
        .arg("serve")
        .env("PORT", port.to_string())
        .env("QETTA_LOG_FORMAT", "json")
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let started = Instant::now();
    while client.get(format!("{base}/health")).send().await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(20), "did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let v: serde_json::Value = client
        .post(format!("{base}/api/v1/auth/register"))
        .json(&serde_json::json!({"email": "logs@example.com", "password": "correct horse 7"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (token, user_id) = (v["token"].as_str().unwrap().to_string(), v["user"]["id"].as_str().unwrap().to_string());
    let r = client.get(format!("{base}/api/v1/oauth/audit?limit=5")).bearer_auth(&token).header("x-request-id", "trace-log-1").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<serde_json::Value> =
        log.lines().filter_map(|l| serde_json::from_str(l).ok()).filter(|v: &serde_json::Value| v["message"] == "request").collect();
    let audit = lines.iter().find(|v| v["route"] == "/api/v1/oauth/audit").unwrap_or_else(|| panic!("no access line for the audit route in:\n{log}"));
    assert_eq!(audit["status"], 200, "{audit}");
    assert_eq!(audit["user_id"], user_id.as_str(), "{audit}");
    assert!(audit["latency_ms"].as_f64().is_some(), "{audit}");
    assert_eq!(audit["span"]["request_id"], "trace-log-1", "{audit}");
    assert!(lines.iter().any(|v| v["route"] == "/api/v1/auth/register" && v["status"] == 201), "{log}");
    assert!(!lines.iter().any(|v| v["route"] == "/health"), "no line for probes");
    assert!(!log.contains(&token), "the JWT is never logged");
    assert!(!log.contains("limit=5"), "query strings are never logged");
}
