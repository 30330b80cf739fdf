//! A bare forwarder: the cheapest gateway that can be built from the parts ours is built from
//! (an axum server, a pooled reqwest client), with nothing of its own: no authentication, no
//! database, no token, no JSON, no logs. It passes each request's path, query and
//! `Authorization` to the upstream and its answer back.
//!
//! What it reaches against a direct call, in the same run, is the ceiling of the gateway's
//! throughput ratio: every request through any gateway still costs one more HTTP exchange as a
//! server and one more as a client than the direct call, on the same two cores as `wrk` and the
//! simulator. It runs in the bench's process on a runtime of its own with as many workers as
//! the gateway's (one per core).

use std::net::TcpListener;
use std::thread::JoinHandle;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::Response;

/// A running forwarder at `base`; stopped when dropped.
pub struct Forwarder {
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(Clone)]
struct Upstream {
    base: String,
    client: reqwest::Client,
}

/// Starts a forwarder to `upstream` (a base URL such as `http://127.0.0.1:4000`).
pub fn start(upstream: &str) -> Forwarder {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let state = Upstream { base: upstream.trim_end_matches('/').to_string(), client: reqwest::Client::new() };
    let thread = std::thread::spawn(move || {
        let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build().unwrap();
        rt.block_on(async move {
            let app = axum::Router::new().fallback(forward).with_state(state);
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
    });
    Forwarder { base, stop: Some(stop), thread: Some(thread) }
}

async fn forward(State(up): State<Upstream>, req: Request) -> Response {
    let target = format!("{}{}", up.base, req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    let mut call = up.client.request(req.method().clone(), target);
    if let Some(auth) = req.headers().get(header::AUTHORIZATION) {
        call = call.header(header::AUTHORIZATION, auth);
    }
    let answer = async {
        let resp = call.send().await?;
        let status = resp.status();
        let kind = resp.headers().get(header::CONTENT_TYPE).cloned();
        Ok::<_, reqwest::Error>((status, kind, resp.bytes().await?))
    };
    match answer.await {
        Ok((status, kind, body)) => {
            let mut out = Response::builder().status(status);
            if let Some(kind) = kind {
                out = out.header(header::CONTENT_TYPE, kind);
            }
            out.body(Body::from(body)).unwrap()
        }
        Err(_) => Response::builder().status(StatusCode::BAD_GATEWAY).body(Body::empty()).unwrap(),
    }
}
