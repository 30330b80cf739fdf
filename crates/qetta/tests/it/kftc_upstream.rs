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
    /// The token endpoint answers HTTP 200 with an HTML page.
    HtmlToken,
    /// The transaction list answers success, no rows and `next_page_yn=Y`, forever.
    EndlessEmptyPages,
}

/// The sandbox's KFTC behind a front at `{base}/sandbox/kftc`.
struct Front {
    base: String,
    bend: Arc<Mutex<Bend>>,
    token_calls: Arc<AtomicUsize>,
    /// Calls of the transaction list that reached the front.
    page_calls: Arc<AtomicUsize>,
}

async fn front(callback: &str) -> Front {
    let mut config = qetta_sandbox::SandboxConfig::default();
    config.kftc.redirect_uris = vec![callback.to_string()];
    let sandbox = qetta_sandbox::Sandbox::new(config);
    let bend = Arc::new(Mutex::new(Bend::Nothing));
    let token_calls = Arc::new(AtomicUsize::new(0));
    let page_calls = Arc::new(AtomicUsize::new(0));
    let (b, calls, pages) = (bend.clone(), token_calls.clone(), page_calls.clone());
    let router = axum::Router::new().nest_service("/sandbox/kftc", sandbox.kftc_router()).layer(axum::middleware::from_fn(
        move |req: Request, next: axum::middleware::Next| {
            let (bend, calls, pages) = (*b.lock().unwrap(), calls.clone(), pages.clone());
            async move {
                let path = req.uri().path().to_string();
                if path.ends_with("/oauth/2.0/token") {
                    calls.fetch_add(1, Ordering::SeqCst);
                }
                if path.ends_with("/transaction_list/fin_num") {
                    pages.fetch_add(1, Ordering::SeqCst);
                }
                match bend {
                    Bend::HtmlToken if path.ends_with("/oauth/2.0/token") => {
                        ([("content-type", "text/html")], "<!DOCTYPE html><html><body>502 Bad Gateway (점검)</body></html>").into_response()
                    }
                    Bend::EndlessEmptyPages if path.ends_with("/transaction_list/fin_num") => {
                        let n = pages.load(Ordering::SeqCst);
                        axum::Json(serde_json::json!({
                            "api_tran_id": "x", "api_tran_dtm": "20260101000000000", "rsp_code": "A0000", "rsp_message": "",
                            "bank_tran_id": "M202600001U000000001", "bank_tran_date": "20260101", "bank_code_tran": "004",
                            "bank_rsp_code": "000", "bank_rsp_message": "", "balance_amt": "1000", "page_record_cnt": "0",
                            "next_page_yn": "Y", "befor_inquiry_trace_info": format!("{n:020}"), "res_list": [],
                        }))
                        .into_response()
                    }
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
    Front { base, bend, token_calls, page_calls }
}

/// A service whose KFTC is `front` (Toss is left unconfigured: disabled).
async fn service(backend: Backend) -> (TestApp, Front) {
    service_with(backend, &[]).await
}

async fn service_with(backend: Backend, vars: &[(&str, &str)]) -> (TestApp, Front) {
    let port = crate::procs::free_port();
    let callback = format!("http://127.0.0.1:{port}/api/v1/oauth/kftc/callback");
    let front = front(&callback).await;
    let mut spawn = Spawn::new(backend);
    for (k, v) in vars {
        spawn = spawn.var(k, v);
    }
    let app = spawn
        .var("PORT", &port.to_string())
        .kftc_at(&format!("{}/sandbox/kftc", front.base))
        .var("KFTC_REDIRECT_URI", &callback)
        .var("QETTA_REFRESHER_ENABLED", "false")
        .start()
        .await;
    (app, front)
}

both_backends!(
    unexpected_kftc_answers_get_clear_errors,
    a_broken_token_answer_is_not_retried,
    our_own_failures_are_not_shown_as_kftc_messages,
    an_html_token_answer_is_upstream_invalid_and_not_retried,
    endless_empty_pages_end_in_a_502,
);

async fn an_html_token_answer_is_upstream_invalid_and_not_retried(backend: Backend) {
    // A breaker that opens on the first failure among a few calls.
    let (app, front) = service_with(backend, &[("QETTA_BREAKER_MIN_CALLS", "1"), ("QETTA_BREAKER_FAILURE_RATIO", "0.1")]).await;
    let (token, user_id) = app.register("html.token@example.com").await;
    app.connect_kftc(&token, "choi").await;
    let fin = app.accounts(&token).await[0]["fintech_use_num"].as_str().unwrap().to_string();
    let before = front.token_calls.load(Ordering::SeqCst);
    assert!(!app.state.kftc().unwrap().breaker().is_open());
    app.clock.advance(7_776_000);
    *front.bend.lock().unwrap() = Bend::HtmlToken;
    let r = app.get(&format!("/api/v1/oauth/kftc/balance/{fin}"), Some(&token)).await;
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert_eq!(status, 502, "{text}");
    assert!(!text.contains("점검") && !text.contains("DOCTYPE"), "{text}");
    assert_eq!(front.token_calls.load(Ordering::SeqCst) - before, 1, "one token call, no retry");
    assert!(app.state.kftc().unwrap().breaker().is_open(), "counted by the breaker as a failure");
    let conn = qetta::store::connections::default_for(&app.state.db, &user_id, "kftc").await.unwrap().unwrap();
    assert_eq!(conn.status.as_str(), "active", "not a dead grant");
}

async fn endless_empty_pages_end_in_a_502(backend: Backend) {
    let (app, front) = service(backend).await;
    let (token, _) = app.register("endless@example.com").await;
    app.connect_kftc(&token, "kim").await;
    let fin = app.accounts(&token).await[0]["fintech_use_num"].as_str().unwrap().to_string();
    *front.bend.lock().unwrap() = Bend::EndlessEmptyPages;
    let before = front.page_calls.load(Ordering::SeqCst);
    let body = serde_json::json!({"fintech_use_num": fin, "from_date": "2026-01-01", "to_date": "2026-01-31"});
    let r = app.post_json("/api/v1/oauth/kftc/transactions", &body, Some(&token)).await;
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert_eq!((status, error_code_of(&text).as_str()), (502, "upstream_paging"), "{text}");
    assert_eq!(front.page_calls.load(Ordering::SeqCst) - before, 12, "stopped at the page cap");
}

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
