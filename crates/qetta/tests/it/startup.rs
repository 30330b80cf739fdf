//! The real binary: startup errors and the embedded default.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn qetta(dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_qetta"));
    c.current_dir(dir).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
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
fn an_unreachable_database_stops_with_a_message_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let out = qetta(dir.path())
        .arg("serve")
        .env("PORT", "0")
        .env("DATABASE_URL", "postgres://qetta:hunter2secret@127.0.0.1:1/qetta")
        .env("JWT_SECRET", crate::support::JWT_SECRET)
        .env("QETTA_ENCRYPTION_KEYS", crate::support::ENCRYPTION_KEYS)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("DATABASE_URL") && err.contains("127.0.0.1:1"), "{err}");
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
