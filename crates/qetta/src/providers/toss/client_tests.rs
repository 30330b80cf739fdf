//! Tests of [`TossClient`] against a fake Toss on a loopback port.
//!
//! The fake's crypto is written here from SPEC B8 with the `rsa` and `aes-gcm` crates directly,
//! not with `super::crypto`, so a misreading of the wire format in the client shows up as a
//! failure instead of cancelling out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Json, Router};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rand::RngCore;
use rsa::pkcs8::EncodePublicKey;
use rsa::{Oaep, RsaPrivateKey};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use super::{TossAuthStatus, TossClient, TossError, TossUser};
use crate::providers::toss::crypto::CryptoError;

const CLIENT_ID: &str = "test_client_id";
const CLIENT_SECRET: &str = "test_client_secret_value";
const GOOD_TOKEN: &str = "fake-access-token";
const CI: &str = "CI0110000000001AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// The fake Toss's key pair; 1024 bits keeps generation quick.
fn server_key() -> &'static RsaPrivateKey {
    static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| RsaPrivateKey::new(&mut rand::rngs::OsRng, 1024).expect("test key"))
}

fn server_public_key_b64() -> String {
    let der = server_key().to_public_key().to_public_key_der().unwrap();
    B64.encode(der.as_bytes())
}

/// A session as Toss sees it after opening a `sessionKey` (SPEC B8.1).
struct FakeSession {
    version: String,
    id: String,
    key: Vec<u8>,
    iv: Vec<u8>,
}

impl FakeSession {
    fn open(session_key: &str) -> Result<Self, String> {
        let parts: Vec<&str> = session_key.splitn(3, '$').collect();
        let [version, id, rsa_b64] = parts[..] else {
            return Err("sessionKey is not version$id$data".into());
        };
        let encrypted = B64.decode(rsa_b64).map_err(|e| e.to_string())?;
        let plain = server_key().decrypt(Oaep::new::<sha1::Sha1>(), &encrypted).map_err(|e| format!("OAEP SHA-1: {e}"))?;
        let plain = String::from_utf8(plain).map_err(|e| e.to_string())?;
        let fields: Vec<&str> = plain.split('$').collect();
        let ["AES_GCM", key, iv] = fields[..] else {
            return Err(format!("bad session plaintext shape ({} parts)", fields.len()));
        };
        let key = B64.decode(key).map_err(|e| e.to_string())?;
        let iv = B64.decode(iv).map_err(|e| e.to_string())?;
        if key.len() != 32 || iv.len() != 12 {
            return Err(format!("key {} bytes, iv {} bytes", key.len(), iv.len()));
        }
        Ok(Self { version: version.into(), id: id.into(), key, iv })
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new_from_slice(&self.key).unwrap()
    }

    fn decrypt(&self, value: &str) -> Result<String, String> {
        let prefix = format!("{}${}$", self.version, self.id);
        let data = value.strip_prefix(&prefix).ok_or("field prefix differs from the sessionKey's")?;
        let sealed = B64.decode(data).map_err(|e| e.to_string())?;
        let aad = &self.key[..];
        let plain = self.cipher().decrypt(Nonce::from_slice(&self.iv), Payload { msg: &sealed, aad }).map_err(|_| "GCM tag mismatch")?;
        String::from_utf8(plain).map_err(|e| e.to_string())
    }

    fn encrypt(&self, plain: &str) -> String {
        let aad = &self.key[..];
        let sealed = self.cipher().encrypt(Nonce::from_slice(&self.iv), Payload { msg: plain.as_bytes(), aad }).unwrap();
        format!("{}${}${}", self.version, self.id, B64.encode(sealed))
    }
}

/// What the fake saw, for the tests to assert on after the call.
#[derive(Default)]
struct Seen {
    token_form: Option<HashMap<String, String>>,
    /// Decrypted `(requestUrl, triggerType, name, phone, birthday)` or the reason it failed.
    personal: Option<Result<[String; 5], String>>,
    none_body: Option<Value>,
    /// Session ids in the order the request and result calls used them.
    session_ids: Vec<String>,
}

type Fake = Arc<Mutex<Seen>>;

fn success(payload: Value) -> Response {
    Json(json!({ "resultType": "SUCCESS", "success": payload })).into_response()
}

fn fail(status: StatusCode, code: &str, reason: &str) -> Response {
    let body = json!({
        "resultType": "FAIL",
        "error": { "errorType": 0, "errorCode": code, "reason": reason, "data": {}, "title": null },
        "success": null
    });
    (status, Json(body)).into_response()
}

fn authorised(headers: &HeaderMap) -> bool {
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) == Some(format!("Bearer {GOOD_TOKEN}").as_str())
}

async fn token(State(fake): State<Fake>, Form(form): Form<HashMap<String, String>>) -> Response {
    let secret_ok = form.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET);
    fake.lock().unwrap().token_form = Some(form);
    if !secret_ok {
        // The description quotes the secret, as a careless server might.
        let body = json!({ "error": "invalid_client", "error_description": format!("bad secret {CLIENT_SECRET}") });
        return (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    }
    Json(json!({ "access_token": GOOD_TOKEN, "scope": "ca", "token_type": "Bearer", "expires_in": 31536000 })).into_response()
}

async fn request(State(fake): State<Fake>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if !authorised(&headers) {
        return fail(StatusCode::UNAUTHORIZED, "CE1000", "토큰이 유효하지 않습니다.");
    }
    let text = |name: &str| body[name].as_str().unwrap_or_default().to_owned();
    match body["requestType"].as_str() {
        Some("USER_PERSONAL") => {
            let decrypted = FakeSession::open(&text("sessionKey")).and_then(|session| {
                fake.lock().unwrap().session_ids.push(session.id.clone());
                Ok([
                    text("requestUrl"),
                    text("triggerType"),
                    session.decrypt(&text("userName"))?,
                    session.decrypt(&text("userPhone"))?,
                    session.decrypt(&text("userBirthday"))?,
                ])
            });
            let ok = decrypted.is_ok();
            fake.lock().unwrap().personal = Some(decrypted);
            if !ok {
                return fail(StatusCode::BAD_REQUEST, "CE3001", "복호화 실패");
            }
            success(json!({
                "txId": "d7b7273b-407b-46be-a9d8-97d2e895b009",
                "appScheme": "supertoss://toss-cert/v2/sign/user/auth?txId=d7b7273b",
                "androidAppUri": "intent://toss-cert#Intent;scheme=supertoss;end",
                "iosAppUri": "https://toss.im/cert?txId=d7b7273b",
                "requestedDt": "2022-02-13T17:52:22+09:00"
            }))
        }
        Some("USER_NONE") => {
            fake.lock().unwrap().none_body = Some(body.clone());
            // As in the current docs: the string "null", plus a JSON null and an absent field.
            success(json!({
                "txId": "633f3e1b-1a11-4e7c-9b35-dd391f440be4",
                "appScheme": "null",
                "androidAppUri": null,
                "requestedDt": "2022-02-13T18:00:26+09:00"
            }))
        }
        _ => fail(StatusCode::BAD_REQUEST, "CE3000", "잘못된 요청"),
    }
}

async fn status(headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if !authorised(&headers) {
        return fail(StatusCode::UNAUTHORIZED, "CE1000", "토큰이 유효하지 않습니다.");
    }
    let status = match body["txId"].as_str() {
        Some("tx-ok") => "COMPLETED",
        Some("tx-progress") => "IN_PROGRESS",
        Some("tx-new-status") => "SOMETHING_NEW",
        Some("tx-gateway") => return (StatusCode::BAD_GATEWAY, "<html>bad gateway</html>").into_response(),
        _ => return fail(StatusCode::NOT_FOUND, "CE3100", "존재하지 않는 요청입니다"),
    };
    success(json!({ "txId": body["txId"], "status": status, "requestedDt": "2022-02-13T18:00:26+09:00" }))
}

async fn result(State(fake): State<Fake>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if !authorised(&headers) {
        return fail(StatusCode::UNAUTHORIZED, "CE1000", "토큰이 유효하지 않습니다.");
    }
    let tx_id = body["txId"].as_str().unwrap_or_default();
    match tx_id {
        "tx-pending" => return fail(StatusCode::BAD_REQUEST, "CE3102", "요청이 아직 완료되지 않았습니다."),
        "tx-expired" => return fail(StatusCode::BAD_REQUEST, "CE3103", "만료된 요청입니다."),
        "tx-limit" => return fail(StatusCode::BAD_REQUEST, "CE3101", "조회 횟수 초과"),
        "tx-other" => return fail(StatusCode::BAD_REQUEST, "CE3000", "알 수 없는 오류"),
        "tx-token-code" => return fail(StatusCode::BAD_REQUEST, "CE1000", "토큰이 유효하지 않습니다."),
        "tx-garbled" => return success(json!({ "txId": tx_id })),
        "tx-slow" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            return success(json!({}));
        }
        "tx-ok" | "tx-tampered" | "tx-foreign-session" => {}
        _ => return fail(StatusCode::NOT_FOUND, "CE3100", "존재하지 않는 요청입니다"),
    }
    let session = match FakeSession::open(body["sessionKey"].as_str().unwrap_or_default()) {
        Ok(session) => session,
        Err(_) => return fail(StatusCode::BAD_REQUEST, "CE3001", "복호화 실패"),
    };
    fake.lock().unwrap().session_ids.push(session.id.clone());

    let mut name = session.encrypt("김토스");
    if tx_id == "tx-tampered" {
        // Flip one bit of the tag.
        let (prefix, data) = name.rsplit_once('$').unwrap();
        let mut sealed = B64.decode(data).unwrap();
        *sealed.last_mut().unwrap() ^= 1;
        name = format!("{prefix}${}", B64.encode(sealed));
    }
    let mut di = session.encrypt("DI0110000000001");
    if tx_id == "tx-foreign-session" {
        // The doc example's copy/paste oddity: one field under another session id.
        di = di.replacen(&session.id, "b88f8717-8e76-4276-bed0-f769a8baf7be", 1);
    }
    let mut signature = vec![0u8; 64];
    rand::rngs::OsRng.fill_bytes(&mut signature);
    success(json!({
        "txId": tx_id,
        "status": "COMPLETED",
        "userIdentifier": null,
        "userCiToken": null,
        "signature": B64.encode(signature),
        "randomValue": null,
        "completedDt": "2022-02-13T18:01:53+09:00",
        "requestedDt": "2022-02-13T18:00:26+09:00",
        "personalData": {
            "ci": session.encrypt(CI),
            "name": name,
            "phone": "null",
            "birthday": session.encrypt("19930324"),
            "gender": session.encrypt("FEMALE"),
            "nationality": session.encrypt("LOCAL"),
            "ci2": null,
            "di": di,
            "ciUpdate": null,
            "ageGroup": session.encrypt("ADULT")
        }
    }))
}

/// Starts the fake Toss on `127.0.0.1:0` and returns its base URL.
async fn start_fake() -> (String, Fake) {
    let fake = Fake::default();
    let app = Router::new()
        .route("/token", post(token))
        .route("/api/v2/sign/user/auth/id/request", post(request))
        .route("/api/v2/sign/user/auth/id/status", post(status))
        .route("/api/v2/sign/user/auth/id/result", post(result))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, fake)
}

/// A client for the fake at `base`; the API base gets a trailing `/` to check it is ignored.
fn client_for(base: &str, secret: &str, http: reqwest::Client) -> TossClient {
    TossClient::new(http, base.to_owned(), format!("{base}/"), CLIENT_ID.into(), SecretString::from(secret), &server_public_key_b64()).unwrap()
}

fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder().timeout(timeout).redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

async fn start() -> (TossClient, Fake) {
    let (base, fake) = start_fake().await;
    (client_for(&base, CLIENT_SECRET, http_client(Duration::from_secs(10))), fake)
}

fn good_token() -> SecretString {
    SecretString::from(GOOD_TOKEN)
}

#[tokio::test]
async fn issue_token_posts_the_client_credentials_form() {
    let (client, fake) = start().await;

    let token = client.issue_token().await.unwrap();

    assert_eq!(token.access_token.expose_secret(), GOOD_TOKEN);
    assert_eq!((token.scope.as_str(), token.token_type.as_str()), ("ca", "Bearer"));
    assert_eq!(token.expires_in, 31536000);
    let form = fake.lock().unwrap().token_form.take().unwrap();
    let expected: HashMap<String, String> = [("grant_type", "client_credentials"), ("client_id", CLIENT_ID), ("client_secret", CLIENT_SECRET), ("scope", "ca")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert_eq!(form, expected);
    assert!(!format!("{token:?}").contains(GOOD_TOKEN));
}

#[tokio::test]
async fn a_refused_token_call_keeps_only_the_status_and_oauth_code() {
    let (base, _) = start_fake().await;
    let client = client_for(&base, "wrong", http_client(Duration::from_secs(10)));

    let err = client.issue_token().await.unwrap_err();

    assert!(matches!(&err, TossError::TokenRejected { status: 401, error: Some(e) } if e == "invalid_client"), "{err:?}");
    for shown in [err.to_string(), format!("{err:?}")] {
        assert!(!shown.contains(CLIENT_SECRET), "{shown}");
    }
}

#[tokio::test]
async fn user_personal_request_encrypts_fields_the_way_toss_decrypts_them() {
    let (client, fake) = start().await;
    let user = TossUser { name: "김토스".into(), phone: "01011112222".into(), birthday: "19930324".into() };

    let requested = client.request_user_personal(&good_token(), "intoss://my-app", &user).await.unwrap();

    let seen = fake.lock().unwrap().personal.take().unwrap().unwrap();
    assert_eq!(seen, ["intoss://my-app", "APP_SCHEME", "김토스", "01011112222", "19930324"].map(String::from));
    assert_eq!(requested.tx_id, "d7b7273b-407b-46be-a9d8-97d2e895b009");
    assert_eq!(requested.requested_dt.to_rfc3339(), "2022-02-13T17:52:22+09:00");
    assert!(requested.app_scheme.unwrap().starts_with("supertoss://"));
    assert!(requested.android_app_uri.is_some());
    assert!(requested.ios_app_uri.is_some());
    assert!(!format!("{user:?}").contains("01011112222"));
}

#[tokio::test]
async fn user_none_request_sends_no_personal_fields_and_null_like_schemes_become_none() {
    let (client, fake) = start().await;

    let requested = client.request_user_none(&good_token(), "intoss://my-app").await.unwrap();

    let body = fake.lock().unwrap().none_body.take().unwrap();
    assert_eq!(body, json!({ "requestType": "USER_NONE", "requestUrl": "intoss://my-app" }));
    assert_eq!(requested.tx_id, "633f3e1b-1a11-4e7c-9b35-dd391f440be4");
    assert_eq!(requested.app_scheme, None, "the string \"null\"");
    assert_eq!(requested.android_app_uri, None, "JSON null");
    assert_eq!(requested.ios_app_uri, None, "absent");
}

#[tokio::test]
async fn status_reports_progress_and_tolerates_new_values() {
    let (client, _) = start().await;

    let completed = client.status(&good_token(), "tx-ok").await.unwrap();
    let progress = client.status(&good_token(), "tx-progress").await.unwrap();
    let new = client.status(&good_token(), "tx-new-status").await.unwrap();

    assert_eq!(completed.tx_id, "tx-ok");
    assert_eq!(completed.status, TossAuthStatus::Completed);
    assert_eq!(progress.status, TossAuthStatus::InProgress);
    assert_eq!(new.status, TossAuthStatus::Unknown);
}

#[tokio::test]
async fn result_uses_a_new_session_and_decrypts_personal_data() {
    let (client, fake) = start().await;
    let user = TossUser { name: "김토스".into(), phone: "01011112222".into(), birthday: "19930324".into() };
    client.request_user_personal(&good_token(), "intoss://my-app", &user).await.unwrap();

    let result = client.result(&good_token(), "tx-ok").await.unwrap();

    let data = &result.personal_data;
    assert_eq!(data.ci, CI);
    assert_eq!(data.name, "김토스");
    assert_eq!(data.phone, None, "the string \"null\"");
    assert_eq!(data.birthday, "19930324");
    assert_eq!(data.gender, "FEMALE");
    assert_eq!(data.nationality, "LOCAL");
    assert_eq!(data.di, "DI0110000000001");
    assert_eq!(data.age_group.as_deref(), Some("ADULT"));
    assert_eq!(data.ci2, None);
    assert_eq!(result.tx_id, "tx-ok");
    assert_eq!(result.completed_dt.to_rfc3339(), "2022-02-13T18:01:53+09:00");
    assert!(!result.signature.is_empty());

    let sessions = fake.lock().unwrap().session_ids.clone();
    assert_eq!(sessions.len(), 2);
    assert_ne!(sessions[0], sessions[1], "result must not reuse the request session");

    let printed = format!("{result:?}");
    for secret in ["김토스", CI, "19930324", "FEMALE", result.signature.as_str()] {
        assert!(!printed.contains(secret), "{printed}");
    }
}

#[tokio::test]
async fn fail_envelopes_map_to_typed_errors() {
    let (client, _) = start().await;
    let token = good_token();

    let pending = client.result(&token, "tx-pending").await.unwrap_err();
    let expired = client.result(&token, "tx-expired").await.unwrap_err();
    let limit = client.result(&token, "tx-limit").await.unwrap_err();
    let unknown_tx = client.result(&token, "tx-nope").await.unwrap_err();
    let unknown_status = client.status(&token, "tx-nope").await.unwrap_err();
    let other = client.result(&token, "tx-other").await.unwrap_err();
    let token_code = client.result(&token, "tx-token-code").await.unwrap_err();
    let bad_token = client.status(&SecretString::from("stale"), "tx-ok").await.unwrap_err();

    assert!(matches!(pending, TossError::NotCompleted), "{pending:?}");
    assert!(matches!(expired, TossError::Expired), "{expired:?}");
    assert!(matches!(limit, TossError::ResultLimit), "{limit:?}");
    assert!(matches!(unknown_tx, TossError::NotFound), "{unknown_tx:?}");
    assert!(matches!(unknown_status, TossError::NotFound), "{unknown_status:?}");
    assert!(matches!(&other, TossError::Provider { code, reason } if code == "CE3000" && reason == "알 수 없는 오류"), "{other:?}");
    assert!(matches!(token_code, TossError::InvalidToken), "{token_code:?}");
    assert!(matches!(bad_token, TossError::InvalidToken), "{bad_token:?}");
}

#[tokio::test]
async fn answers_without_an_envelope_are_http_or_decode_errors() {
    let (client, _) = start().await;

    let gateway = client.status(&good_token(), "tx-gateway").await.unwrap_err();
    let garbled = client.result(&good_token(), "tx-garbled").await.unwrap_err();

    assert!(matches!(gateway, TossError::Http { status: 502 }), "{gateway:?}");
    assert!(matches!(garbled, TossError::Decode(_)), "{garbled:?}");
}

#[tokio::test]
async fn a_tampered_or_foreign_ciphertext_is_a_crypto_error() {
    let (client, _) = start().await;

    let tampered = client.result(&good_token(), "tx-tampered").await.unwrap_err();
    let foreign = client.result(&good_token(), "tx-foreign-session").await.unwrap_err();

    assert!(matches!(tampered, TossError::Crypto(CryptoError::Aead)), "{tampered:?}");
    assert!(matches!(foreign, TossError::Crypto(CryptoError::SessionMismatch)), "{foreign:?}");
}

#[tokio::test]
async fn a_slow_toss_is_a_timeout() {
    let (base, _) = start_fake().await;
    let client = client_for(&base, CLIENT_SECRET, http_client(Duration::from_millis(300)));

    let err = client.result(&good_token(), "tx-slow").await.unwrap_err();

    assert!(matches!(err, TossError::Timeout), "{err:?}");
}

#[tokio::test]
async fn an_unreachable_toss_is_a_network_error() {
    // Bind and drop a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let client = client_for(&format!("http://127.0.0.1:{port}"), CLIENT_SECRET, http_client(Duration::from_secs(10)));

    let err = client.issue_token().await.unwrap_err();

    assert!(matches!(err, TossError::Network(_)), "{err:?}");
}

#[test]
fn the_constructor_rejects_a_bad_public_key() {
    let err = TossClient::new(
        reqwest::Client::new(),
        "http://127.0.0.1:1".into(),
        "http://127.0.0.1:1".into(),
        CLIENT_ID.into(),
        SecretString::from(CLIENT_SECRET),
        "bm90IGEga2V5",
    )
    .unwrap_err();
    assert!(matches!(err, TossError::Crypto(CryptoError::InvalidPublicKey)));
}
