//! Traces and logs of the real binary: OpenTelemetry spans over OTLP/HTTP to a receiver in the
//! test (only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set), and the JSON access log. A process of its
//! own each: the tracing subscriber is process-wide, and the flush at exit is part of the test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::procs::free_port;

const SERVICE_KEY: &str = "telemetry-test-service-key-0123456789";

struct Served {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// SIGTERM, as an orchestrator stops it, and waits for the exit (the spans are flushed then).
    fn stop(&mut self) {
        rustix::process::kill_process(rustix::process::Pid::from_child(&self.child), rustix::process::Signal::TERM).unwrap();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "exit status {status}: {}", std::fs::read_to_string(&self.log).unwrap_or_default());
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("no exit after SIGTERM: {}", std::fs::read_to_string(&self.log).unwrap_or_default());
    }
}

/// `qetta serve` on the embedded defaults (its own sandbox as KFTC), with `env`.
async fn serve(dir: &Path, env: &[(&str, &str)]) -> Served {
    let port = free_port();
    let log = dir.join("serve.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qetta"));
    cmd.arg("serve").current_dir(dir).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd.env("QETTA_ADMIN_ADDR", "127.0.0.1:0").env("PORT", port.to_string()).env("QETTA_SERVICE_KEY", SERVICE_KEY).env("QETTA_REFRESHER_ENABLED", "false");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.stdout(file.try_clone().unwrap()).stderr(file).stdin(Stdio::null()).spawn().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if client.get(format!("{base}/health")).send().await.is_ok_and(|r| r.status() == 200) {
            break;
        }
        if started.elapsed() > Duration::from_secs(30) || child.try_wait().unwrap().is_some() {
            panic!("no healthy server: {}", std::fs::read_to_string(&log).unwrap_or_default());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Served { child, base, log }
}

/// A user (token, id) with a KFTC connection; returns also an account's fintech use number and
/// the connection's raw access token.
async fn connected_user(base: &str) -> (String, String, String, String) {
    let client = reqwest::Client::new();
    let v: Value = client
        .post(format!("{base}/api/v1/auth/register"))
        .json(&json!({"email": "trace@example.com", "password": "correct horse 7"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (token, user) = (v["token"].as_str().unwrap().to_string(), v["user"]["id"].as_str().unwrap().to_string());
    crate::procs::connect(base, &token, "kim").await;
    let accounts: Value = client.get(format!("{base}/api/v1/oauth/kftc/accounts")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    let fin = accounts["accounts"][0]["fintech_use_num"].as_str().unwrap().to_string();
    let list: Value = client.get(format!("{base}/api/v1/connections")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    let id = list["connections"][0]["id"].as_str().unwrap_or_else(|| panic!("{list}")).to_string();
    let raw: Value = client
        .get(format!("{base}/api/v1/connections/{id}/token"))
        .bearer_auth(&token)
        .header("x-qetta-service-key", SERVICE_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = raw["access_token"].as_str().unwrap_or_else(|| panic!("{raw}")).to_string();
    (token, user, fin, access)
}

/// Every body POSTed to the receiver, with its content type.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// An OTLP/HTTP receiver of `/v1/traces`.
async fn receiver() -> (String, Received) {
    let got: Received = Arc::default();
    let keep = got.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let keep = keep.clone();
            async move {
                let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                keep.lock().unwrap().push((ct, body.to_vec()));
                ([("content-type", "application/json")], "{}")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

/// A span's attribute as text (string and integer values alike).
fn attr(span: &Value, key: &str) -> Option<String> {
    let a = span["attributes"].as_array()?.iter().find(|a| a["key"] == key)?;
    let v = &a["value"];
    v["stringValue"]
        .as_str()
        .map(str::to_string)
        .or_else(|| v["intValue"].as_i64().map(|i| i.to_string()))
        .or_else(|| v["intValue"].as_str().map(str::to_string))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_of_requests_and_provider_calls_reach_the_collector_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let (collector, got) = receiver().await;
    let mut served = serve(
        dir.path(),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &collector), ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"), ("OTEL_SERVICE_NAME", "qetta-trace-test")],
    )
    .await;
    let (token, _, fin, access) = connected_user(&served.base).await;
    let r = reqwest::Client::new().get(format!("{}/api/v1/oauth/kftc/balance/{fin}", served.base)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let request_id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    // The batch is sent at exit at the latest: the flush on shutdown is what this waits for.
    served.stop();

    let bodies = got.lock().unwrap().clone();
    assert!(!bodies.is_empty(), "no export: {}", std::fs::read_to_string(&served.log).unwrap_or_default());
    let mut spans = Vec::new();
    for (ct, body) in &bodies {
        assert!(ct.starts_with("application/json"), "{ct}");
        let text = String::from_utf8_lossy(body);
        for secret in [&token, &access, &fin, &"trace@example.com".to_string(), &"correct horse".to_string(), &SERVICE_KEY.to_string()] {
            assert!(!text.contains(secret.as_str()), "{secret} exported in {text}");
        }
        let v: Value = serde_json::from_slice(body).unwrap();
        for rs in v["resourceSpans"].as_array().unwrap() {
            assert!(rs["resource"].to_string().contains("qetta-trace-test"), "OTEL_SERVICE_NAME: {}", rs["resource"]);
            for ss in rs["scopeSpans"].as_array().unwrap() {
                spans.extend(ss["spans"].as_array().unwrap().iter().cloned());
            }
        }
    }
    let route = "/api/v1/oauth/kftc/balance/{fintech_use_num}";
    let server = spans
        .iter()
        .find(|s| s["name"] == format!("GET {route}"))
        .unwrap_or_else(|| panic!("no server span in {:?}", spans.iter().map(|s| s["name"].clone()).collect::<Vec<_>>()));
    assert_eq!(attr(server, "http.route").as_deref(), Some(route));
    assert_eq!(attr(server, "http.response.status_code").as_deref(), Some("200"));
    assert_eq!(attr(server, "request_id").as_deref(), Some(request_id.as_str()));
    // The provider call: a child of the request's span, named by provider and endpoint.
    let upstream = spans
        .iter()
        .find(|s| s["parentSpanId"] == server["spanId"] && s["name"] == "kftc /v2.0/account/balance/fin_num")
        .unwrap_or_else(|| panic!("no provider span under {server}"));
    assert_eq!(attr(upstream, "provider").as_deref(), Some("kftc"));
    assert_eq!(attr(upstream, "outcome").as_deref(), Some("ok"));
    assert_eq!(upstream["traceId"], server["traceId"]);
    // The embedded sandbox got `traceparent`: its side of the call joined the same trace.
    let provider_side = spans.iter().find(|s| s["parentSpanId"] == upstream["spanId"]).unwrap_or_else(|| panic!("traceparent not followed: {upstream}"));
    assert_eq!(provider_side["traceId"], server["traceId"]);
    assert_eq!(provider_side["name"], "GET /sandbox/kftc/*", "{provider_side}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_access_log_lines_carry_request_route_status_latency_and_user_only() {
    let dir = tempfile::tempdir().unwrap();
    // No OTEL_EXPORTER_OTLP_ENDPOINT: the default, traces off, and the service serves as ever.
    let mut served = serve(dir.path(), &[("QETTA_LOG_FORMAT", "json")]).await;
    let (token, user, fin, access) = connected_user(&served.base).await;
    let r = reqwest::Client::new().get(format!("{}/api/v1/oauth/kftc/balance/{fin}", served.base)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let request_id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    served.stop();

    let log = std::fs::read_to_string(&served.log).unwrap();
    for secret in [&token, &access, &fin, &"trace@example.com".to_string(), &"correct horse".to_string(), &SERVICE_KEY.to_string()] {
        assert!(!log.contains(secret.as_str()), "{secret} logged in {log}");
    }
    let lines: Vec<Value> = log.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let line = lines
        .iter()
        .find(|l| l["message"] == "request" && l["request_id"] == request_id.as_str())
        .unwrap_or_else(|| panic!("no access-log line for {request_id} in {log}"));
    assert_eq!(line["route"], "/api/v1/oauth/kftc/balance/{fintech_use_num}", "{line}");
    assert_eq!(line["status"], 200, "{line}");
    assert!(line["latency_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{line}");
    assert_eq!(line["user_id"], user.as_str(), "{line}");
    assert_eq!(line["span"]["request_id"], request_id.as_str(), "lines inside the request carry its id: {line}");
}
