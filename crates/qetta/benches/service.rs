//! Service benchmark: `cargo bench -p qetta --bench service` (release build).
//!
//! Starts the release `qetta serve` on an empty directory (embedded SQLite and sandbox), then
//! measures: start to first healthy `/health`; latency and throughput of `/api/v1/oauth/status`
//! and of KFTC balance reads (token manager + sandbox round trip); a refresh storm (every token
//! rejected, 200 concurrent requests); resident memory idle and after load. Appends the results,
//! with the date and machine, to `docs/BENCHMARKS.md`.
#![allow(clippy::print_stdout, clippy::print_stderr)] // the report is the output

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

async fn load(client: &reqwest::Client, urls: Vec<String>, token: &str, concurrency: usize) -> (Vec<Duration>, Duration, usize) {
    let started = Instant::now();
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = Vec::new();
    for url in urls {
        let (client, token, sem) = (client.clone(), token.to_string(), sem.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.unwrap();
            let t = Instant::now();
            let ok = client.get(url).bearer_auth(token).send().await.map(|r| r.status().is_success()).unwrap_or(false);
            (t.elapsed(), ok)
        }));
    }
    let mut lat = Vec::new();
    let mut failures = 0;
    for t in tasks {
        let (d, ok) = t.await.unwrap();
        lat.push(d);
        failures += usize::from(!ok);
    }
    lat.sort();
    (lat, started.elapsed(), failures)
}

/// The bench's backend key (raw tokens for the direct calls).
const SERVICE_KEY: &str = "bench-service-key-0123456789-abcdefghij";

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_qetta"))
        .arg("serve")
        .current_dir(dir.path())
        .env("PORT", port.to_string())
        .env("QETTA_ADMIN_ADDR", "127.0.0.1:0")
        .env("QETTA_SANDBOX_AUTO_CONSENT", "approve")
        .env("QETTA_SERVICE_KEY", SERVICE_KEY)
        .env("QETTA_RATE_LIMIT_API_PER_IP", "1000000")
        .env("QETTA_RATE_LIMIT_API_PER_USER", "1000000")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("release binary");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::limited(10)).build().unwrap();
    let startup = loop {
        if client.get(format!("{base}/health")).send().await.is_ok_and(|r| r.status() == 200) {
            break started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no healthy answer");
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let rss_idle = rss_kib(child.id());

    let reg: Value = client
        .post(format!("{base}/api/v1/auth/register"))
        .json(&json!({"email": "bench@example.com", "password": "correct horse 7"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = reg["token"].as_str().unwrap().to_string();
    let auth: Value = client.get(format!("{base}/api/v1/oauth/kftc/authorize")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    let page = client.get(auth["authorize_url"].as_str().unwrap()).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("data-ok=\"true\""), "connect failed");
    let accounts: Value = client.get(format!("{base}/api/v1/oauth/kftc/accounts")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    let fin = accounts["accounts"][0]["fintech_use_num"].as_str().unwrap().to_string();

    // A Kakao connection through the connection core (the simulator consents by itself).
    let kakao: Value =
        client.post(format!("{base}/api/v1/connections/kakao/authorize")).bearer_auth(&token).json(&json!({})).send().await.unwrap().json().await.unwrap();
    let page = client.get(kakao["authorize_url"].as_str().unwrap()).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("data-ok=\"true\""), "Kakao connect failed: {page}");
    let list: Value = client.get(format!("{base}/api/v1/connections")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    let kakao_id = list["connections"].as_array().unwrap().iter().find(|c| c["provider"] == "kakao").unwrap()["id"].as_str().unwrap().to_string();
    let raw: Value = client
        .get(format!("{base}/api/v1/connections/{kakao_id}/token"))
        .bearer_auth(&token)
        .header("x-qetta-service-key", SERVICE_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kakao_token = raw["access_token"].as_str().unwrap().to_string();

    let n = 2000;
    let (status_lat, status_total, status_fail) = load(&client, vec![format!("{base}/api/v1/oauth/status"); n], &token, 32).await;
    let (bal_lat, bal_total, bal_fail) = load(&client, vec![format!("{base}/api/v1/oauth/kftc/balance/{fin}"); n], &token, 32).await;
    client.post(format!("{base}/sandbox/kftc/_sandbox/expire-tokens")).json(&json!({})).send().await.unwrap();
    let (storm_lat, storm_total, storm_fail) = load(&client, vec![format!("{base}/api/v1/oauth/kftc/balance/{fin}"); 200], &token, 200).await;
    let stats: Value = client.get(format!("{base}/sandbox/kftc/_sandbox/stats")).send().await.unwrap().json().await.unwrap();
    let refreshes = stats["tokens"]["issued"]["refresh_token"].as_i64().unwrap_or(0);

    // The proxy against a direct call to the same upstream (the Kakao simulator's profile API).
    let (direct_lat, direct_total, direct_fail) = load(&client, vec![format!("{base}/sandbox/kakao/v2/user/me"); n], &kakao_token, 32).await;
    let (proxy_lat, proxy_total, proxy_fail) = load(&client, vec![format!("{base}/api/v1/connections/{kakao_id}/proxy/v2/user/me"); n], &token, 32).await;
    let (list_lat, list_total, list_fail) = load(&client, vec![format!("{base}/api/v1/connections"); n], &token, 32).await;
    // Refreshes per expiry under concurrency: 100 backend refreshes of the same connection at once.
    let before: Value = client.get(format!("{base}/sandbox/kakao/_sandbox/stats")).send().await.unwrap().json().await.unwrap();
    let storm =
        futures::future::join_all((0..100).map(|_| {
            client.post(format!("{base}/api/v1/connections/{kakao_id}/refresh")).bearer_auth(&token).header("x-qetta-service-key", SERVICE_KEY).send()
        }))
        .await;
    let kakao_ok = storm.iter().filter(|r| r.as_ref().is_ok_and(|r| r.status() == 200)).count();
    let after: Value = client.get(format!("{base}/sandbox/kakao/_sandbox/stats")).send().await.unwrap().json().await.unwrap();
    let issued = |v: &Value| v["tokens"]["issued"]["refresh_token"].as_i64().unwrap_or(0);
    let kakao_refreshes = issued(&after) - issued(&before);
    let rss_loaded = rss_kib(child.id());
    let _ = child.kill();
    let _ = child.wait();

    let machine = format!(
        "{} cores, {} MiB RAM, {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| m.lines().next()?.split_whitespace().nth(1)?.parse::<u64>().ok()).unwrap_or(0) / 1024,
        String::from_utf8_lossy(&Command::new("uname").arg("-srm").output().map(|o| o.stdout).unwrap_or_default()).trim()
    );
    let row = |name: &str, lat: &[Duration], total: Duration, fail: usize| {
        format!(
            "| {name} | {} | {fail} | {:.0} | {:.2} | {:.2} | {:.2} |\n",
            lat.len(),
            lat.len() as f64 / total.as_secs_f64(),
            percentile(lat, 0.5),
            percentile(lat, 0.95),
            percentile(lat, 0.99)
        )
    };
    let mut report = format!(
        "\n## {} — {machine}\n\nRelease build, embedded SQLite and sandbox, loopback HTTP, client in another process.\n\n\
         - start to first healthy `/health` on an empty directory: **{:.0} ms**\n\
         - resident memory: {} MiB idle, {} MiB after the runs below\n\
         - refresh storm (every token rejected by the provider, 200 concurrent balance reads): {} upstream refresh(es), {} failures, all done in {:.0} ms\n\
         - Kakao: 100 concurrent `POST /connections/{{id}}/refresh` of one connection: {} upstream refresh(es), {} answered 200\n\
         - proxy overhead: the proxy's throughput is {:.2}× a direct call to the same simulator endpoint; p50 {:.2} ms vs {:.2} ms direct\n\n\
         | run | requests | failures | req/s | p50 ms | p95 ms | p99 ms |\n|---|---|---|---|---|---|---|\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        startup.as_secs_f64() * 1000.0,
        rss_idle / 1024,
        rss_loaded / 1024,
        refreshes,
        storm_fail,
        storm_total.as_secs_f64() * 1000.0,
        kakao_refreshes,
        kakao_ok,
        (proxy_lat.len() as f64 / proxy_total.as_secs_f64()) / (direct_lat.len() as f64 / direct_total.as_secs_f64()),
        percentile(&proxy_lat, 0.5),
        percentile(&direct_lat, 0.5),
    );
    report.push_str(&row("GET /api/v1/oauth/status (32 concurrent)", &status_lat, status_total, status_fail));
    report.push_str(&row("GET /api/v1/oauth/kftc/balance (32 concurrent; includes the sandbox call)", &bal_lat, bal_total, bal_fail));
    report.push_str(&row("refresh storm (200 concurrent)", &storm_lat, storm_total, storm_fail));
    report.push_str(&row("direct: the Kakao simulator's GET /v2/user/me (32 concurrent)", &direct_lat, direct_total, direct_fail));
    report.push_str(&row("proxy: GET /api/v1/connections/{id}/proxy/v2/user/me (32 concurrent)", &proxy_lat, proxy_total, proxy_fail));
    report.push_str(&row("GET /api/v1/connections (32 concurrent)", &list_lat, list_total, list_fail));
    print!("{report}");

    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/BENCHMARKS.md");
    let fresh = !path.exists();
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).unwrap();
    if fresh {
        f.write_all(b"# Benchmarks\n\nMade by `cargo bench -p qetta --bench service`; each run appends a section.\n").unwrap();
    }
    f.write_all(report.as_bytes()).unwrap();
}
