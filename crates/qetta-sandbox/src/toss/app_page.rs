//! The user acting in the Toss app, simulated: a small page per txId with approve/decline
//! (`<base>/_sandbox/app/{txId}`), a list page (`<base>/_sandbox/app`), and the control call
//! `POST <base>/_sandbox/requests/{txId}` with `{"action": "open" | "approve" | "decline"}`.
//!
//! Links are relative and there is no inline script/style (see the KFTC consent page).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};
use serde_json::{json, Value};

use super::{AuthRequest, RequestType, Status, TossSim, UserAction};

fn page(css_href: &str, title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"ko\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n\
         <link rel=\"stylesheet\" href=\"{css_href}\">\n</head>\n<body>\n<header><h1>토스 앱 (샌드박스)</h1>\
         <p>Simulated Toss app — identity verification</p></header>\n<main>\n{body}\n</main>\n</body>\n</html>\n",
        text(title)
    )
}

/// What happened to a user action request.
#[derive(Debug, PartialEq, Eq)]
enum ActionOutcome {
    Done(Status),
    NotFound,
    /// The request already expired or was completed/declined.
    Conflict(Status),
}

fn apply(sim: &TossSim, tx_id: &str, action: &str) -> ActionOutcome {
    let now = sim.clock.now();
    let mut st = sim.state();
    let Some(r) = st.requests.get_mut(tx_id) else { return ActionOutcome::NotFound };
    let status = sim.status_of(r, now);
    match (action, status) {
        ("open", Status::Requested) => r.action = UserAction::Opened,
        ("open", Status::InProgress) => {}
        ("approve", Status::Requested | Status::InProgress) => r.action = UserAction::Approved(now),
        ("decline", Status::Requested | Status::InProgress) => r.action = UserAction::Declined,
        (_, s) => return ActionOutcome::Conflict(s),
    }
    ActionOutcome::Done(sim.status_of(r, now))
}

fn describe(sim: &TossSim, tx_id: &str, r: &AuthRequest, now: chrono::DateTime<chrono::Utc>) -> Value {
    json!({
        "txId": tx_id,
        "requestType": r.request_type.as_str(),
        "status": sim.status_of(r, now).as_str(),
        "requestedDt": TossSim::iso(r.requested_at),
        "successfulResults": r.successful_results,
    })
}

/// `GET /_sandbox/requests`: every request and its status (newest first).
pub async fn requests_json(State(sim): State<Arc<TossSim>>) -> Response {
    let now = sim.clock.now();
    let st = sim.state();
    let mut list: Vec<(&String, &AuthRequest)> = st.requests.iter().collect();
    list.sort_by(|a, b| b.1.requested_at.cmp(&a.1.requested_at).then(a.0.cmp(b.0)));
    let items: Vec<Value> = list.into_iter().map(|(id, r)| describe(&sim, id, r, now)).collect();
    Json(json!({ "requests": items })).into_response()
}

pub async fn request_json(State(sim): State<Arc<TossSim>>, Path(tx_id): Path<String>) -> Response {
    let now = sim.clock.now();
    let st = sim.state();
    match st.requests.get(&tx_id) {
        Some(r) => Json(describe(&sim, &tx_id, r, now)).into_response(),
        None => (StatusCode::NOT_FOUND, Json(json!({ "error": "unknown txId" }))).into_response(),
    }
}

/// `POST /_sandbox/requests/{txId}` with `{"action": "open" | "approve" | "decline"}`.
pub async fn control(State(sim): State<Arc<TossSim>>, Path(tx_id): Path<String>, body: Bytes) -> Response {
    let action = serde_json::from_slice::<Value>(&body).ok().and_then(|v| v.get("action").and_then(Value::as_str).map(str::to_string));
    let Some(action) = action.filter(|a| ["open", "approve", "decline"].contains(&a.as_str())) else {
        return crate::control::bad_request("expected {\"action\": \"open\" | \"approve\" | \"decline\"}");
    };
    match apply(&sim, &tx_id, &action) {
        ActionOutcome::Done(s) => Json(json!({ "txId": tx_id, "status": s.as_str() })).into_response(),
        ActionOutcome::NotFound => (StatusCode::NOT_FOUND, Json(json!({ "error": "unknown txId" }))).into_response(),
        ActionOutcome::Conflict(s) => {
            (StatusCode::CONFLICT, Json(json!({ "error": format!("request is {}", s.as_str()), "txId": tx_id, "status": s.as_str() }))).into_response()
        }
    }
}

/// `GET /_sandbox/app`: the pending requests, like the Toss app's notification list.
pub async fn list(State(sim): State<Arc<TossSim>>) -> Response {
    let now = sim.clock.now();
    let st = sim.state();
    let mut list: Vec<(&String, &AuthRequest)> = st.requests.iter().collect();
    list.sort_by(|a, b| b.1.requested_at.cmp(&a.1.requested_at).then(a.0.cmp(b.0)));
    let mut body = String::from("<div class=\"card\"><h2>본인확인 요청 / Verification requests</h2>\n");
    if list.is_empty() {
        body.push_str("<p class=\"muted\">요청이 없습니다. / No requests yet.</p>\n");
    } else {
        body.push_str("<table>\n<tr><th>txId</th><th>종류 / Type</th><th>상태 / Status</th><th>요청 시각 / Requested</th></tr>\n");
        for (id, r) in list {
            body.push_str(&format!(
                "<tr><td><a href=\"app/{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                attr(id),
                text(id),
                r.request_type.as_str(),
                sim.status_of(r, now).as_str(),
                text(&TossSim::iso(r.requested_at)),
            ));
        }
        body.push_str("</table>\n");
    }
    body.push_str("</div>");
    Html(page("assets/sandbox.css", "토스 앱 / Toss app (sandbox)", &body)).into_response()
}

fn render(sim: &TossSim, tx_id: &str, message: Option<&str>) -> Response {
    let now = sim.clock.now();
    let st = sim.state();
    let Some(r) = st.requests.get(tx_id) else {
        let body = "<div class=\"card error\"><p>존재하지 않는 요청입니다. / Unknown request.</p></div>";
        return (StatusCode::NOT_FOUND, Html(page("../assets/sandbox.css", "토스 앱", body))).into_response();
    };
    let status = sim.status_of(r, now);
    let mut body = String::from("<div class=\"card\">\n<h2>본인확인 요청 / Identity verification</h2>\n");
    if let Some(m) = message {
        body.push_str(&format!("<p class=\"notice\">{}</p>\n", text(m)));
    }
    body.push_str(&format!(
        "<p class=\"muted\">txId <code>{}</code> · {} · 요청 {}</p>\n<p>상태 / Status: <strong>{}</strong></p>\n",
        text(tx_id),
        r.request_type.as_str(),
        text(&TossSim::iso(r.requested_at)),
        status.as_str()
    ));
    if let (RequestType::UserPersonal, Some(i)) = (r.request_type, &r.input) {
        body.push_str(&format!(
            "<table><tr><th>이름 / Name</th><td>{}</td></tr><tr><th>휴대폰 / Phone</th><td>{}</td></tr>\
             <tr><th>생년월일 / Birthday</th><td>{}</td></tr></table>\n",
            text(&i.name),
            text(&i.phone),
            text(&i.birthday)
        ));
    }
    if matches!(status, Status::Requested | Status::InProgress) {
        // No action attribute: the form posts back to this page's own URL.
        body.push_str(
            "<form method=\"post\">\n<p>파트너 서비스가 본인확인을 요청했습니다. 인증하시겠습니까?<br>\
             A partner service asks to verify your identity. Do you approve?</p>\n\
             <button class=\"approve\" type=\"submit\" name=\"decision\" value=\"approve\">인증하기 / Approve</button>\n\
             <button class=\"deny\" type=\"submit\" name=\"decision\" value=\"decline\">거절 / Decline</button>\n</form>\n",
        );
    } else {
        body.push_str("<p class=\"muted\">이 요청은 더 이상 진행할 수 없습니다. / This request can no longer be acted on.</p>\n");
    }
    body.push_str("<p><a href=\"../app\">모든 요청 / All requests</a></p>\n</div>");
    Html(page("../assets/sandbox.css", "토스 앱 / Toss app (sandbox)", &body)).into_response()
}

/// `GET /_sandbox/app/{txId}`: opening the page counts as the user opening the app
/// (REQUESTED → IN_PROGRESS).
pub async fn show(State(sim): State<Arc<TossSim>>, Path(tx_id): Path<String>) -> Response {
    let _ = apply(&sim, &tx_id, "open");
    render(&sim, &tx_id, None)
}

/// `POST /_sandbox/app/{txId}` from the page's form (`decision=approve|decline`).
pub async fn decide(State(sim): State<Arc<TossSim>>, Path(tx_id): Path<String>, body: Bytes) -> Response {
    let form: Vec<(String, String)> = std::str::from_utf8(&body).ok().and_then(|s| serde_urlencoded::from_str(s).ok()).unwrap_or_default();
    let decision = form.iter().find(|(k, _)| k == "decision").map(|(_, v)| v.as_str()).unwrap_or("");
    let msg = match decision {
        "approve" | "decline" => match apply(&sim, &tx_id, decision) {
            ActionOutcome::Done(_) if decision == "approve" => "인증을 완료했습니다. / Verification approved.",
            ActionOutcome::Done(_) => "요청을 거절했습니다. / Request declined.",
            ActionOutcome::NotFound => "존재하지 않는 요청입니다. / Unknown request.",
            ActionOutcome::Conflict(_) => "이미 처리되었거나 만료된 요청입니다. / Already handled or expired.",
        },
        _ => "알 수 없는 선택입니다. / Unknown decision.",
    };
    render(&sim, &tx_id, Some(msg))
}
