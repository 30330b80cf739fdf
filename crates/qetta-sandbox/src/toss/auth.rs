//! `/api/v2/sign/user/auth/id/{request,status,result}` (SPEC B4–B6), the legacy
//! `/api/v2/sign/user/auth/{request,status,result}` (same bodies, B3) and
//! `/api/v1/certificate/validate` (B7).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{header, HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{Duration, NaiveDate};
use serde_json::{json, Map, Value};

use super::crypto::{CryptoError, Session};
use super::token::authenticate;
use super::{success, test_person, AuthRequest, PersonalInput, RequestType, Status, TossError, TossSim, UserAction};

type Obj = Map<String, Value>;

fn json_object(body: &Bytes) -> Result<Obj, TossError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(TossError::bad_field("body")),
    }
}

fn field<'a>(m: &'a Obj, key: &str) -> Result<&'a str, TossError> {
    m.get(key).and_then(Value::as_str).filter(|s| !s.trim().is_empty()).ok_or_else(|| TossError::bad_field(key))
}

fn crypto_err(e: CryptoError) -> TossError {
    TossError::crypto(&e.to_string())
}

/// URL of the simulated Toss app page for a txId, built from the request's Host and the prefix
/// the router is mounted under (so it works at `/sandbox/toss` and at `/toss`).
fn app_url(headers: &HeaderMap, original: &Uri, relative: &Uri, tx_id: &str) -> String {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("localhost");
    let proto = headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()).filter(|p| *p == "https" || *p == "http").unwrap_or("http");
    let prefix = original.path().strip_suffix(relative.path()).unwrap_or("");
    format!("{proto}://{host}{prefix}/_sandbox/app/{tx_id}")
}

pub async fn request_id(State(sim): State<Arc<TossSim>>, headers: HeaderMap, OriginalUri(original): OriginalUri, uri: Uri, body: Bytes) -> Response {
    request(&sim, &headers, &original, &uri, &body, false).unwrap_or_else(IntoResponse::into_response)
}

pub async fn request_legacy(State(sim): State<Arc<TossSim>>, headers: HeaderMap, OriginalUri(original): OriginalUri, uri: Uri, body: Bytes) -> Response {
    request(&sim, &headers, &original, &uri, &body, true).unwrap_or_else(IntoResponse::into_response)
}

fn valid_phone(p: &str) -> bool {
    (10..=11).contains(&p.len()) && p.starts_with("01") && p.bytes().all(|b| b.is_ascii_digit())
}

fn valid_birthday(b: &str) -> bool {
    b.len() == 8 && b.bytes().all(|c| c.is_ascii_digit()) && NaiveDate::parse_from_str(b, "%Y%m%d").is_ok()
}

fn request(sim: &TossSim, headers: &HeaderMap, original: &Uri, uri: &Uri, body: &Bytes, legacy: bool) -> Result<Response, TossError> {
    authenticate(sim, headers)?;
    let m = json_object(body)?;
    let request_type = match field(&m, "requestType")? {
        "USER_PERSONAL" => RequestType::UserPersonal,
        "USER_NONE" => RequestType::UserNone,
        _ => return Err(TossError::bad_field("requestType")),
    };
    // requestUrl is required by the current docs (B4.1/B4.2) and absent from the legacy ones.
    if !legacy {
        field(&m, "requestUrl")?;
    }
    let mut session_id = None;
    let mut input = None;
    if request_type == RequestType::UserPersonal {
        match field(&m, "triggerType")? {
            "APP_SCHEME" | "PUSH" => {}
            _ => return Err(TossError::bad_field("triggerType")),
        }
        let (name, phone, birthday) = (field(&m, "userName")?, field(&m, "userPhone")?, field(&m, "userBirthday")?);
        let session = Session::open(field(&m, "sessionKey")?, &sim.keys).map_err(crypto_err)?;
        let name = session.decrypt(name).map_err(crypto_err)?;
        let phone = session.decrypt(phone).map_err(crypto_err)?;
        let birthday = session.decrypt(birthday).map_err(crypto_err)?;
        if name.trim().is_empty() || name.chars().count() > 50 {
            return Err(TossError::bad_personal("userName"));
        }
        if !valid_phone(&phone) {
            return Err(TossError::bad_personal("userPhone"));
        }
        if !valid_birthday(&birthday) {
            return Err(TossError::bad_personal("userBirthday"));
        }
        session_id = Some(session.session_id.clone());
        input = Some(PersonalInput { name, phone, birthday });
    }
    let tx_id = uuid::Uuid::new_v4().to_string();
    let now = sim.clock.now();
    let mut st = sim.state();
    if st.requests.len() > 100_000 {
        // Keep memory bounded under load tests: drop requests whose result window has passed.
        let keep = Duration::seconds(sim.config.request_ttl_secs.max(sim.config.auto_complete_after_secs.unwrap_or(0)))
            + Duration::seconds(sim.config.result_window_secs);
        st.requests.retain(|_, r| r.requested_at + keep > now);
    }
    st.requests.insert(
        tx_id.clone(),
        AuthRequest { request_type, requested_at: now, request_session_id: session_id, input, action: UserAction::None, successful_results: 0 },
    );
    drop(st);
    let requested_dt = TossSim::iso(now);
    let url = app_url(headers, original, uri, &tx_id);
    let payload = match (request_type, legacy) {
        // In the sandbox the app links all open the simulated Toss app page.
        (RequestType::UserPersonal, _) => json!({
            "txId": tx_id,
            "appScheme": url,
            "androidAppUri": url,
            "iosAppUri": url,
            "requestedDt": requested_dt,
        }),
        (RequestType::UserNone, false) => json!({ "txId": tx_id, "requestedDt": requested_dt }),
        // Legacy USER_NONE answered with a Toss-hosted page (SPEC B4.2, HERB).
        (RequestType::UserNone, true) => json!({ "txId": tx_id, "authUrl": url, "requestedDt": requested_dt }),
    };
    Ok(success(payload))
}

pub async fn status(State(sim): State<Arc<TossSim>>, headers: HeaderMap, body: Bytes) -> Response {
    (|| -> Result<Response, TossError> {
        authenticate(&sim, &headers)?;
        let m = json_object(&body)?;
        let tx_id = field(&m, "txId")?;
        let now = sim.clock.now();
        let st = sim.state();
        let r = st.requests.get(tx_id).ok_or_else(TossError::unknown_request)?;
        let status = sim.status_of(r, now);
        Ok(success(json!({
            "txId": tx_id,
            "status": status.as_str(),
            "requestedDt": TossSim::iso(r.requested_at),
        })))
    })()
    .unwrap_or_else(IntoResponse::into_response)
}

pub async fn result(State(sim): State<Arc<TossSim>>, headers: HeaderMap, body: Bytes) -> Response {
    (|| -> Result<Response, TossError> {
        authenticate(&sim, &headers)?;
        let m = json_object(&body)?;
        let tx_id = field(&m, "txId")?;
        let session_key = field(&m, "sessionKey")?;
        let now = sim.clock.now();
        let mut st = sim.state();
        let r = st.requests.get_mut(tx_id).ok_or_else(TossError::unknown_request)?;
        let completed_at = match sim.status_of(r, now) {
            Status::Completed(at) => at,
            Status::Expired => return Err(TossError::expired()),
            Status::Requested | Status::InProgress => return Err(TossError::not_completed()),
        };
        if now > completed_at + Duration::seconds(sim.config.result_window_secs) || r.successful_results >= sim.config.max_result_calls {
            return Err(TossError::result_limit());
        }
        let session = Session::open(session_key, &sim.keys).map_err(crypto_err)?;
        if r.request_session_id.as_deref() == Some(session.session_id.as_str()) {
            // SPEC B6: the result call needs a newly generated session key.
            return Err(TossError::crypto("the request's session key cannot be reused"));
        }
        r.successful_results += 1;
        let requested_at = r.requested_at;
        drop(st);
        let e = |s: &str| Value::String(session.encrypt(s));
        let signed = json!({
            "txId": tx_id,
            "partnerCode": "SANDBOX",
            "serviceType": "간편인증",
            "identifier": null,
            "userIdentifier": null,
            "requestTs": TossSim::iso(requested_at),
        });
        Ok(success(json!({
            "txId": tx_id,
            "status": "COMPLETED",
            "userIdentifier": null,
            "userCiToken": null,
            // Placeholder, not a PKCS#7 structure (SPEC B11.6 allows this): base64 of the JSON the
            // real signature would embed.
            "signature": B64.encode(signed.to_string()),
            "randomValue": null,
            "completedDt": TossSim::iso(completed_at),
            "requestedDt": TossSim::iso(requested_at),
            "personalData": {
                "ci": e(&test_person::ci()),
                "name": e(test_person::NAME),
                "phone": e(test_person::PHONE),
                "birthday": e(test_person::BIRTHDAY),
                "gender": e(test_person::GENDER),
                "nationality": e(test_person::NATIONALITY),
                "ci2": null,
                "di": e(&test_person::di()),
                "ciUpdate": null,
                "ageGroup": e(test_person::AGE_GROUP),
                "address": null,
                "addressDetails": null,
                "zipCode": null,
                "email": null,
            },
        })))
    })()
    .unwrap_or_else(IntoResponse::into_response)
}

/// SPEC B7: the simulator accepts every certificate.
pub async fn certificate_validate(State(sim): State<Arc<TossSim>>, headers: HeaderMap, body: Bytes) -> Response {
    (|| -> Result<Response, TossError> {
        authenticate(&sim, &headers)?;
        let m = json_object(&body)?;
        field(&m, "certificate")?;
        Ok(success(json!({ "valid": true, "enabled": true })))
    })()
    .unwrap_or_else(IntoResponse::into_response)
}
