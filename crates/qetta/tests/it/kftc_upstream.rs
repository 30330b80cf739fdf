//! KFTC answers we do not expect: an HTML page with HTTP 200, an error answer with `null` in odd
//! places, a token answer that breaks off while it is read, and a failure on our side while
//! preparing a call. The service talks to the sandbox through a small front that can bend its
//! answers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::both_backends;
use crate::support::{count, Backend, Spawn, TestApp};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Bend {
    Nothing,
    /// The balance API answers HTTP 200 with an HTML maintenance page.
    HtmlBalance,
    /// The balance API answers a bank error whose other fields are `null`.
    ErrorWithNulls,
    /// The token endpoint's answer breaks off after its first bytes.
    BrokenTokenAnswer,
}

/// The sandbox's KFTC behind a front at `{base}/sandbox/kftc`.
struct Front {
    base: String,
    bend: Arc<Mutex<Bend>>,
    token_calls: Arc<AtomicUsize>,
}

async fn front(callback: &str) -> Front {
    let mut config = qetta_sandbox::SandboxConfig::default();
    config.kftc.redirect_uris = vec![callback.to_string()];
    let sandbox = qetta_sandbox::Sandbox::new(config);
    let bend = Arc::new(Mutex::new(Bend::Nothing));
    let token_calls = Arc::new(AtomicUsize::new(0));
    let (b, calls) = (bend.clone(), token_calls.clone());
    let router = axum::Router::new().nest_service("/sandbox/kftc", sandbox.kftc_router()).layer(axum::middleware::from_fn(
        move |req: Request, next: axum::middleware::Next| {
            let (bend, calls) = (*b.lock().unwrap(), calls.clone());
            async move {
                let path = req.uri().path().to_string();
                if path.ends_with("/oauth/2.0/token") {
                    calls.fetch_add(1, Ordering::SeqCst);
                }
                match bend {
                    Bend::HtmlBalance if path.ends_with("/balance/fin_num") => {
                        ([("content-type", "text/html")], "<!DOCTYPE html><html><body>서비스 점검 중입니다 (maintenance)</body></html>").into_response()
                    }
                    Bend::ErrorWithNulls if path.ends_with("/balance/fin_num") => axum::Json(serde_json::json!({
                        "api_tran_id": null, "rsp_code": "A0002", "rsp_message": "참가기관 에러", "bank_tran_id": null,
                        "bank_rsp_code": "412", "bank_rsp_message": null, "balance_amt": null, "res_list": null,
                    }))
                    .into_response(),
                    Bend::BrokenTokenAnswer if path.ends_with("/oauth/2.0/token") => {
                        let chunks: Vec<Result<&'static str, std::io::Error>> =
                            vec![Ok("{\"access_token\":\"eyJ"), Err(std::io::Error::other("connection lost"))];
                        Response::builder().header("content-type", "application/json").body(Body::from_stream(futures::stream::iter(chunks))).unwrap()
                    }
                    _ => next.run(req).await,
                }
            }
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Front { base, bend, token_calls }
}

/// A service whose KFTC is `front` (Toss is left unconfigured: disabled).
async fn service(backend: Backend) -> (TestApp, Front) {
    let port = crate::procs::free_port();
    let callback = format!("http://127.0.0.1:{port}/api/v1/oauth/kftc/callback");
    let front = front(&callback).await;
    let app = Spawn::new(backend)
        .var("PORT", &port.to_string())
        .kftc_at(&format!("{}/sandbox/kftc", front.base))
        .var("KFTC_REDIRECT_URI", &callback)
        .var("QETTA_REFRESHER_ENABLED", "false")
        .start()
        .await;
    (app, front)
}

both_backends!(unexpected_kftc_answers_get_clear_errors, a_broken_token_answer_is_not_retried, our_own_failures_are_not_shown_as_kftc_messages);

async fn unexpected_kftc_answers_get_clear_errors(backend: Backend) {
    let (app, front) = service(backend).await;
    let (token, _) = app.register("odd.answers@example.com").await;
    app.connect_kftc(&token, "kim").await;
    let fin = app.accounts(&token).await[0]["fintech_use_num"].as_str().unwrap().to_string();
    let balance = format!("/api/v1/oauth/kftc/balance/{fin}");

    // An HTML page with HTTP 200 is a failing provider, not a body to parse: 502 upstream_invalid,
    // nothing of the page shown.
    *front.bend.lock().unwrap() = Bend::HtmlBalance;
    let r = app.get(&balance, Some(&token)).await;
    let text = r.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["code"], "upstream_invalid", "{text}");
    assert!(!text.contains("점검") && !text.contains("DOCTYPE"), "{text}");

    // A bank error whose other fields are null: the real code is read first and answered.
    *front.bend.lock().unwrap() = Bend::ErrorWithNulls;
    let r = app.get(&balance, Some(&token)).await;
    let text = r.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!((body["error"]["code"].as_str(), body["error"]["provider_code"].as_str()), (Some("bank_error"), Some("A0002/412")), "{text}");

    *front.bend.lock().unwrap() = Bend::Nothing;
    assert_eq!(app.get(&balance, Some(&token)).await.status(), 200);
}

async fn a_broken_token_answer_is_not_retried(backend: Backend) {
    let (app, front) = service(backend).await;
    let (token, user_id) = app.register("broken.token@example.com").await;
    app.connect_kftc(&token, "lee").await;
    let fin = app.accounts(&token).await[0]["fintech_use_num"].as_str().unwrap().to_string();
    let before = front.token_calls.load(Ordering::SeqCst);

    // The token is due; KFTC's answer to the refresh breaks off while it is read. The request may
    // have spent the refresh token, so it is never sent a second time.
    app.clock.advance(7_776_000);
    *front.bend.lock().unwrap() = Bend::BrokenTokenAnswer;
    let r = app.get(&format!("/api/v1/oauth/kftc/balance/{fin}"), Some(&token)).await;
    assert_eq!(r.status(), 502, "{}", r.text().await.unwrap_or_default());
    assert_eq!(front.token_calls.load(Ordering::SeqCst) - before, 1, "one token call, no retry");
    let conn = qetta::store::connections::default_for(&app.state.db, &user_id, "kftc").await.unwrap().unwrap();
    assert_eq!((conn.status.as_str(), conn.refresh_failures), ("active", 1), "a transient failure: backoff, not a dead grant");
}

async fn our_own_failures_are_not_shown_as_kftc_messages(backend: Backend) {
    let (app, front) = service(backend).await;
    let (token, _) = app.register("internal@example.com").await;
    app.connect_kftc(&token, "park").await;
    let fin = app.accounts(&token).await[0]["fintech_use_num"].as_str().unwrap().to_string();
    // Storage refuses to hand out bank_tran_id numbers.
    let statements: &[&str] =
        if app.database_url.starts_with("postgres") {
            &[
            "CREATE FUNCTION qetta_test_no_ids() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'counter table broken (secret detail)'; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER qetta_test_no_ids BEFORE INSERT OR UPDATE ON kftc_tran_counters FOR EACH ROW EXECUTE FUNCTION qetta_test_no_ids()",
        ]
        } else {
            &["CREATE TRIGGER qetta_test_no_ids BEFORE UPDATE ON kftc_tran_counters BEGIN SELECT RAISE(ABORT, 'counter table broken (secret detail)'); END",
          "CREATE TRIGGER qetta_test_no_ids_ins BEFORE INSERT ON kftc_tran_counters BEGIN SELECT RAISE(ABORT, 'counter table broken (secret detail)'); END"]
        };
    for s in statements {
        sqlx::query(s).execute(app.state.db.pool()).await.unwrap();
    }
    let calls = count(&app.sandbox_stats_at(&front.base).await, &["calls", "/v2.0/account/balance/fin_num"]);
    let r = app.get(&format!("/api/v1/oauth/kftc/balance/{fin}"), Some(&token)).await;
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert_eq!(status, 500, "{text}");
    assert!(!text.contains("KFTC") && !text.contains("secret detail") && !text.contains("bank_tran_id"), "{text}");
    assert_eq!(error_code_of(&text), "internal_error");
    assert_eq!(count(&app.sandbox_stats_at(&front.base).await, &["calls", "/v2.0/account/balance/fin_num"]), calls, "nothing sent to KFTC");
}

fn error_code_of(text: &str) -> String {
    serde_json::from_str::<Value>(text).unwrap()["error"]["code"].as_str().unwrap_or_default().to_string()
}

impl TestApp {
    /// The stats of a sandbox served elsewhere (`{base}/sandbox/kftc`).
    async fn sandbox_stats_at(&self, base: &str) -> Value {
        self.client.get(format!("{base}/sandbox/kftc/_sandbox/stats")).send().await.unwrap().json().await.unwrap()
    }
}
