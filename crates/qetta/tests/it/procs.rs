//! Real `qetta` processes (replicas, the standalone sandbox) for the multi-process tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{ENCRYPTION_KEYS, JWT_SECRET};

pub struct Proc {
    child: Child,
    pub base: String,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A field of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM` = peak RSS); Linux only.
    pub fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("/proc/PID/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc/PID/status"))
    }

    /// SIGKILL: no graceful shutdown.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn wait_healthy(base: &str, child: &mut Child, log: &Path) {
    let client = reqwest::Client::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if let Ok(r) = client.get(format!("{base}/health")).send().await {
            if r.status() == 200 {
                return;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("process exited with {status}: {}", std::fs::read_to_string(log).unwrap_or_default());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{base} did not become healthy: {}", std::fs::read_to_string(log).unwrap_or_default());
}

fn spawn(dir: &Path, name: &str, args: &[&str], env: &[(String, String)]) -> (Child, PathBuf) {
    let log = dir.join(format!("{name}.log"));
    let file = std::fs::File::create(&log).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qetta"));
    // Any free port for the admin listener (the default 9090 would collide between processes).
    cmd.args(args).current_dir(dir).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).env("QETTA_ADMIN_ADDR", "127.0.0.1:0");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.stdout(file.try_clone().unwrap()).stderr(file).stdin(Stdio::null()).spawn().unwrap();
    (child, log)
}

/// `qetta sandbox` on a free port; KFTC at `{base}/kftc`.
pub async fn sandbox(dir: &Path, env: &[(String, String)]) -> Proc {
    let port = free_port();
    let (mut child, log) = spawn(dir, "sandbox", &["sandbox", "--port", &port.to_string()], env);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if client.get(format!("{base}/kftc/_sandbox/stats")).send().await.is_ok_and(|r| r.status() == 200) {
            break;
        }
        if started.elapsed() > Duration::from_secs(30) || child.try_wait().ok().flatten().is_some() {
            panic!("sandbox did not start: {}", std::fs::read_to_string(&log).unwrap_or_default());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Proc { child, base, log }
}

/// `qetta serve` as one replica: on `database_url`, KFTC at `kftc_base`.
pub async fn replica(dir: &Path, name: &str, port: u16, database_url: &str, kftc_base: &str, extra: &[(String, String)]) -> Proc {
    let data = dir.join(name);
    std::fs::create_dir_all(&data).unwrap();
    let mut env: Vec<(String, String)> = [
        ("PORT", port.to_string()),
        ("QETTA_DATA_DIR", data.display().to_string()),
        ("DATABASE_URL", database_url.to_string()),
        ("JWT_SECRET", JWT_SECRET.to_string()),
        ("QETTA_ENCRYPTION_KEYS", ENCRYPTION_KEYS.to_string()),
        ("KFTC_API_BASE", kftc_base.to_string()),
        ("KFTC_CLIENT_ID", qetta_sandbox::config::DEFAULT_KFTC_CLIENT_ID.to_string()),
        ("KFTC_CLIENT_SECRET", qetta_sandbox::config::DEFAULT_KFTC_CLIENT_SECRET.to_string()),
        ("KFTC_CLIENT_USE_CODE", qetta_sandbox::config::DEFAULT_KFTC_CLIENT_USE_CODE.to_string()),
        ("QETTA_REFRESHER_ENABLED", "false".to_string()),
        ("QETTA_RATE_LIMIT_API_PER_IP", "100000".to_string()),
        ("QETTA_RATE_LIMIT_API_PER_USER", "100000".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    // Toss is the same standalone sandbox: a server with one real provider runs no embedded
    // sandbox, so the other provider must be configured too.
    if let Some(root) = kftc_base.strip_suffix("/kftc") {
        let key = qetta_sandbox::Sandbox::new(qetta_sandbox::SandboxConfig::default()).toss_public_key_base64();
        for (k, v) in [
            ("TOSS_OAUTH_BASE", format!("{root}/toss")),
            ("TOSS_API_BASE", format!("{root}/toss")),
            ("TOSS_CLIENT_ID", qetta_sandbox::config::TOSS_TEST_CLIENT_ID.to_string()),
            ("TOSS_CLIENT_SECRET", qetta_sandbox::config::TOSS_TEST_CLIENT_SECRET.to_string()),
            ("TOSS_RSA_PUBLIC_KEY", key),
        ] {
            env.push((k.to_string(), v));
        }
    }
    env.extend(extra.iter().cloned());
    let (mut child, log) = spawn(&data, name, &["serve"], &env);
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&base, &mut child, &log).await;
    Proc { child, base, log }
}

/// Connects `token`'s user to KFTC through `replica` and the standalone `sandbox`.
pub async fn connect(replica: &str, token: &str, sandbox_user: &str) {
    let browser = reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let v: Value = browser.get(format!("{replica}/api/v1/oauth/kftc/authorize")).bearer_auth(token).send().await.unwrap().json().await.unwrap();
    // The same browser (cookie jar) that called authorize: launch goes straight to the consent page.
    let r = browser.get(v["authorize_url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(r.status(), 303, "launch redirects");
    let consent = r.headers()["location"].to_str().unwrap().to_string();
    let r = browser.get(format!("{consent}&sandbox_user={sandbox_user}&sandbox_consent=approve")).send().await.unwrap();
    let callback = r.headers()["location"].to_str().unwrap().to_string();
    let body = browser.get(&callback).send().await.unwrap().text().await.unwrap();
    assert!(body.contains("data-ok=\"true\""), "connect failed: {body}");
}

pub async fn register(base: &str, email: &str) -> String {
    let v: Value = reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/register"))
        .json(&serde_json::json!({"email": email, "password": "correct horse 7"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["token"].as_str().unwrap().to_string()
}
