//! The bench's child processes: `qetta` subcommands on free loopback ports, killed when dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `qetta` process listening at `base`; killed when dropped.
pub struct Proc {
    pub child: Child,
    pub base: String,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts `qetta ARGS` in `dir` with only `env` (and `PATH`) set, listening on `port`; its output
/// goes to `dir/ARGS[0].log`. The admin listener takes any free port.
pub fn spawn(dir: &Path, args: &[&str], env: &[(&str, String)], port: u16) -> Proc {
    let log = std::fs::File::create(dir.join(format!("{}.log", args[0]))).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qetta"));
    cmd.args(args).current_dir(dir).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd.env("RUST_LOG", "warn").env("QETTA_ADMIN_ADDR", "127.0.0.1:0");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.stdout(log.try_clone().unwrap()).stderr(log).stdin(Stdio::null()).spawn().expect("the release binary starts");
    Proc { child, base: format!("http://127.0.0.1:{port}") }
}

/// Waits until `url` answers 200; the time since `started`.
pub async fn wait_for(client: &reqwest::Client, url: &str, started: Instant) -> Duration {
    loop {
        if client.get(url).send().await.is_ok_and(|r| r.status() == 200) {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{url} never answered");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
