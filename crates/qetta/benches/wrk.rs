//! Load from a second process: `wrk` (Debian package `wrk`) on loopback, its report parsed.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// One `wrk` run.
#[derive(Clone, Debug, Default)]
pub struct Run {
    pub connections: usize,
    pub requests: u64,
    pub per_sec: f64,
    /// Latency percentiles, milliseconds.
    pub p50: f64,
    pub p99: f64,
    /// Answers other than 2xx/3xx, socket errors, and answers a script found refused.
    pub failures: u64,
}

pub fn available() -> bool {
    Command::new("wrk").arg("--version").output().is_ok()
}

/// `wrk` against `url` with `connections` keep-alive connections for `duration`; `script` (Lua)
/// may build each request. `headers` are sent with every request.
pub fn run(url: &str, connections: usize, duration: Duration, headers: &[(&str, &str)], script: Option<&Path>) -> Run {
    let threads = connections.clamp(1, 2);
    let mut cmd = Command::new("wrk");
    cmd.arg("--latency")
        .arg(format!("-t{threads}"))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .arg("--timeout")
        .arg("10s");
    for (k, v) in headers {
        cmd.arg("-H").arg(format!("{k}: {v}"));
    }
    if let Some(s) = script {
        cmd.arg("-s").arg(s);
    }
    cmd.arg(url);
    let out = cmd.output().expect("wrk runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    parse(&text, connections)
}

fn millis(s: &str) -> f64 {
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => f64::NAN,
    }
}

pub fn parse(text: &str, connections: usize) -> Run {
    let mut run = Run { connections, ..Run::default() };
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", v] => run.p50 = millis(v),
            ["99%", v] => run.p99 = millis(v),
            ["Requests/sec:", v] => run.per_sec = v.parse().unwrap_or(0.0),
            [n, "requests", "in", ..] => run.requests = n.parse().unwrap_or(0),
            ["Non-2xx", "or", "3xx", "responses:", n] => run.failures += n.parse::<u64>().unwrap_or(0),
            // Printed by a script that checks the answers' bodies (see service.rs).
            ["Refused", "answers:", n] => run.failures += n.parse::<u64>().unwrap_or(0),
            ["Socket", "errors:", rest @ ..] => {
                // "connect 0, read 0, write 0, timeout 0"
                run.failures += rest.iter().filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok()).sum::<u64>();
            }
            _ => {}
        }
    }
    run
}
