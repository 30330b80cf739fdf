//! The Toss service layer over HTTP against the embedded sandbox, on both databases: the shared
//! service token (one upstream call across two replicas), the test endpoint, identity
//! verification end to end, and the error paths.

use base64::Engine;
use serde_json::{json, Value};

use crate::both_backends;
use crate::support::{count, error_code, Backend, Spawn, TestApp};

both_backends!(
    one_token_for_many_requests_on_two_replicas,
    one_token_on_two_replicas,
    test_endpoint_healthy_and_with_faults,
    token_reused_until_margin_and_replaced_once_when_rejected,
    user_personal_verification_end_to_end,
    user_none_verification_with_auto_complete,
    expiry_and_other_users_verifications,
    input_is_validated_before_any_call,
    tampered_result_is_refused_and_nothing_stored,
    a_field_of_another_session_is_refused_and_nothing_stored,
    polling_is_throttled_per_tx_id,
    key_rotation_reseals_toss_data,
);

const TOSS_TEST_CLIENT_ID: &str = "test_a8e23336d673ca70922b485fe806eb2d";
const TOSS_TEST_CLIENT_SECRET: &str = "test_418087247d66da09fda1964dc4734e453c7cf66a7a9e3";
/// What must never reach a browser: the sandbox's test person (SPEC B2.1) and what we typed.
const SECRETS: [&str; 6] = ["김토스", "CI0110000000001", "DI0110000000001", "19930324", "01011112222", "01000000000"];

fn spawn_toss(backend: Backend) -> Spawn {
    Spawn::new(backend).var("QETTA_RATE_LIMIT_API_PER_USER", "100000").var("QETTA_RATE_LIMIT_API_PER_IP", "100000")
}

/// A second replica on `a`'s database whose Toss is `toss_base` (another server's sandbox, as
/// real replicas share the real Toss).
async fn replica(a: &TestApp, backend: Backend, toss_base: &str) -> TestApp {
    let key = a.state.sandbox.as_ref().expect("embedded sandbox").toss_public_key_base64();
    spawn_toss(backend)
        .database(&a.database_url)
        .var("TOSS_OAUTH_BASE", toss_base)
        .var("TOSS_API_BASE", toss_base)
        .var("TOSS_CLIENT_ID", TOSS_TEST_CLIENT_ID)
        .var("TOSS_CLIENT_SECRET", TOSS_TEST_CLIENT_SECRET)
        .var("TOSS_RSA_PUBLIC_KEY", &key)
        .start()
        .await
}

async fn issued(app: &TestApp) -> i64 {
    count(&app.sandbox_stats("toss").await, &["tokens", "issued", "client_credentials"])
}

async fn toss_calls(app: &TestApp, what: &str) -> i64 {
    count(&app.sandbox_stats("toss").await, &["calls", &format!("/api/v2/sign/user/auth/id/{what}")])
}

/// Collects every browser-facing body so that the test can check none leaks personal data.
#[derive(Default)]
struct Seen(Vec<String>);

impl Seen {
    async fn json(&mut self, r: reqwest::Response, status: u16) -> Value {
        assert_eq!(r.status().as_u16(), status, "status");
        let text = r.text().await.unwrap();
        self.0.push(text.clone());
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON body: {text}"))
    }
    fn assert_clean(&self) {
        for body in &self.0 {
            for secret in SECRETS {
                assert!(!body.contains(secret), "{secret} leaked in {body}");
            }
        }
    }
}

impl TestApp {
    async fn toss_get(&self, path: &str, token: &str) -> reqwest::Response {
        self.get(&format!("/api/v1/oauth/toss{path}"), Some(token)).await
    }
    async fn toss_post(&self, path: &str, body: &Value, token: &str) -> reqwest::Response {
        self.post_json(&format!("/api/v1/oauth/toss{path}"), body, Some(token)).await
    }
    async fn toss_request(&self, path: &str, action: &str) {
        let r = self.post_json(&format!("/sandbox/toss/_sandbox/requests/{path}"), &json!({"action": action}), None).await;
        assert!(r.status().is_success(), "sandbox {action}: {}", r.status());
    }
}

async fn one_token_for_many_requests_on_two_replicas(backend: Backend) {
    let a = spawn_toss(backend).start().await;
    let b = replica(&a, backend, &format!("{}/sandbox/toss", a.base)).await;
    let (ta, _) = a.register("one@example.com").await;
    let (tb, _) = b.register("two@example.com").await;

    let mut set = tokio::task::JoinSet::new();
    for i in 0..200 {
        let (app, token) = if i % 2 == 0 { (&a, &ta) } else { (&b, &tb) };
        let client = app.client.clone();
        let token = token.clone();
        let test = i % 10 == 0;
        let url = app.url(if test { "/api/v1/oauth/toss/test" } else { "/api/v1/oauth/toss/token" });
        set.spawn(async move {
            let req = if test { client.post(url) } else { client.get(url) };
            let r = req.bearer_auth(token).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let v: Value = r.json().await.unwrap();
            if test {
                assert_eq!(v["ok"], true, "{v}");
                None
            } else {
                assert!(v.get("access_token").is_none(), "browsers get no raw token");
                Some(v["token_masked"].as_str().unwrap().to_string())
            }
        });
    }
    let mut masked = Vec::new();
    while let Some(r) = set.join_next().await {
        masked.extend(r.unwrap());
    }
    assert_eq!(masked.len(), 180);
    masked.dedup();
    assert_eq!(masked.len(), 1, "one token for everyone");
    assert_eq!(issued(&a).await, 1, "one upstream token call for 200 requests on two replicas");
    assert_eq!(issued(&b).await, 0, "the second replica's own sandbox is not used");
    // The upstream fetch is audited once, without the token.
    let (n, detail): (i64, String) = sqlx::query_as("SELECT COUNT(*), MAX(detail) FROM audit_log WHERE action = 'service_token_fetch' AND outcome = 'ok'")
        .fetch_one(a.state.db.pool())
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert!(!detail.contains("eyJ"), "{detail}");
}

async fn one_token_on_two_replicas(backend: Backend) {
    let Some(redis) = crate::support::redis_url().await else { return };
    // Both replicas share one key namespace, as real replicas of one deployment do.
    let prefix = format!("qetta-test-{}", uuid::Uuid::new_v4().simple());
    let a = spawn_toss(backend).var("REDIS_URL", &redis).var("QETTA_REDIS_PREFIX", &prefix).start().await;
    let key = a.state.sandbox.as_ref().unwrap().toss_public_key_base64();
    let toss = format!("{}/sandbox/toss", a.base);
    let b = spawn_toss(backend)
        .database(&a.database_url)
        .var("REDIS_URL", &redis)
        .var("QETTA_REDIS_PREFIX", &prefix)
        .var("TOSS_OAUTH_BASE", &toss)
        .var("TOSS_API_BASE", &toss)
        .var("TOSS_CLIENT_ID", TOSS_TEST_CLIENT_ID)
        .var("TOSS_CLIENT_SECRET", TOSS_TEST_CLIENT_SECRET)
        .var("TOSS_RSA_PUBLIC_KEY", &key)
        .start()
        .await;
    let (token, _) = a.register("redis@example.com").await;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..100 {
        let app = if i % 2 == 0 { &a } else { &b };
        let req = app.client.get(app.url("/api/v1/oauth/toss/token")).bearer_auth(&token);
        set.spawn(async move { req.send().await.unwrap().status().as_u16() });
    }
    while let Some(status) = set.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    assert_eq!(issued(&a).await, 1);
}

async fn test_endpoint_healthy_and_with_faults(backend: Backend) {
    let app = spawn_toss(backend).start().await;
    let (token, _) = app.register("test@example.com").await;
    assert!(app.status_of(&token, "toss").await["last_test"].is_null());

    // Toss fails before we hold a token: the token step fails.
    app.sandbox_control("toss", "faults", json!({"error_rate": 1.0, "error": "CE0001"})).await;
    let v: Value = app.toss_post("/test", &json!({}), &token).await.json().await.unwrap();
    assert_eq!((v["ok"].as_bool(), v["step"].as_str()), (Some(false), Some("token")), "{v}");
    let r = app.toss_get("/token", &token).await;
    assert_eq!(error_code(r, 502).await, "upstream_auth");

    // Healthy.
    app.sandbox_control("toss", "faults", json!({})).await;
    let v: Value = app.toss_post("/test", &json!({}), &token).await.json().await.unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["step"], "done");
    assert!(v["latency_ms"].is_u64());
    assert!(v.get("provider_code").is_none());
    let s = app.status_of(&token, "toss").await;
    assert_eq!(s["last_test"]["ok"], true, "{s}");
    assert!(s["expires_at"].as_str().is_some(), "the shared token's expiry: {s}");
    assert_eq!(s["scope"], json!(["ca"]));

    // Toss fails the API call: ok=false at the api step, with Toss's code; the token stays.
    app.sandbox_control("toss", "faults", json!({"error_rate": 1.0, "error": "CE0001"})).await;
    let v: Value = app.toss_post("/test", &json!({}), &token).await.json().await.unwrap();
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["step"], "api");
    assert_eq!(v["provider_code"], "CE0001");
    let s = app.status_of(&token, "toss").await;
    assert_eq!(s["last_test"]["ok"], false);
    assert_eq!(s["last_test"]["provider_code"], "CE0001");
    assert_eq!(app.toss_get("/token", &token).await.status(), 200, "a stored token needs no call to Toss");
    // An unknown code on a real call is a 502 with Toss's code.
    let r = app.toss_post("/verifications", &json!({"request_type": "USER_NONE"}), &token).await;
    assert_eq!(r.status(), 502);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["provider_code"], "CE0001", "{body}");
    app.sandbox_control("toss", "faults", json!({})).await;
    assert_eq!(issued(&app).await, 1);
}

async fn token_reused_until_margin_and_replaced_once_when_rejected(backend: Backend) {
    let app = spawn_toss(backend).var("QETTA_SANDBOX_TOSS_TOKEN_TTL", "100").var("QETTA_SERVICE_KEY", "backend-key-0123456789-0123456789-abc").start().await;
    let (token, _) = app.register("margin@example.com").await;
    let t1: Value = app.toss_get("/token", &token).await.json().await.unwrap();
    assert_eq!(issued(&app).await, 1);
    // A 100 s token: the margin is half its life (50 s), not QETTA_REFRESH_MARGIN_SECS (600 s).
    app.clock.advance(45);
    assert_eq!(app.toss_get("/token", &token).await.status(), 200);
    assert_eq!(issued(&app).await, 1, "reused while more than the margin is left");
    app.clock.advance(10);
    let t2: Value = app.toss_get("/token", &token).await.json().await.unwrap();
    assert_eq!(issued(&app).await, 2, "replaced within the margin");
    assert_ne!(t1["token_masked"], t2["token_masked"]);

    // Toss rejects the token (CE1000) although it is fresh: one new token, and the call succeeds.
    app.sandbox_control("toss", "expire-tokens", json!({})).await;
    let v: Value = app.toss_post("/test", &json!({}), &token).await.json().await.unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(issued(&app).await, 3);
    let v: Value = app.toss_post("/test", &json!({}), &token).await.json().await.unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(issued(&app).await, 3, "and it is kept");

    // The raw token only for the app's backend, audited.
    let r = app
        .client
        .get(app.url("/api/v1/oauth/toss/token"))
        .bearer_auth(&token)
        .header("x-qetta-service-key", "backend-key-0123456789-0123456789-abc")
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert!(v["access_token"].as_str().is_some_and(|t| t.starts_with("eyJ")), "{v}");
    let audit: Value = app.get("/api/v1/oauth/audit", Some(&token)).await.json().await.unwrap();
    let entries = audit["entries"].as_array().unwrap();
    assert!(entries.iter().any(|e| e["action"] == "token_fetch" && e["outcome"] == "raw_token_returned"), "{audit}");
    assert!(!audit.to_string().contains(v["access_token"].as_str().unwrap()));
}

async fn user_personal_verification_end_to_end(backend: Backend) {
    let app = spawn_toss(backend).start().await;
    let (token, user_id) = app.register("personal@example.com").await;
    let mut seen = Seen::default();
    let s = seen.json(app.get("/api/v1/oauth/status", Some(&token)).await, 200).await;
    let toss = s["providers"].as_array().unwrap().iter().find(|p| p["provider"] == "toss").unwrap().clone();
    assert_eq!((toss["connected"].as_bool(), toss["verified"].as_bool()), (Some(false), Some(false)));

    let body = json!({"request_type": "USER_PERSONAL", "name": "김토스", "phone": "010-1111-2222", "birthday": "19930324"});
    let created = seen.json(app.toss_post("/verifications", &body, &token).await, 201).await;
    let tx = created["tx_id"].as_str().unwrap().to_string();
    assert!(created["app_scheme"].as_str().is_some_and(|s| s.contains(&tx)), "{created}");
    assert!(created["android_app_uri"].is_string() && created["ios_app_uri"].is_string());
    assert!(chrono::DateTime::parse_from_rfc3339(created["requested_at"].as_str().unwrap()).is_ok());
    assert_eq!(created["status"], "REQUESTED");

    let v = seen.json(app.toss_get(&format!("/verifications/{tx}"), &token).await, 200).await;
    assert_eq!((v["status"].as_str(), v["verified"].as_bool()), (Some("REQUESTED"), Some(false)), "{v}");
    // The result before the user finished.
    let r = app.toss_post(&format!("/verifications/{tx}/result"), &json!({}), &token).await;
    assert_eq!(error_code(r, 409).await, "not_completed");
    assert_eq!(toss_calls(&app, "result").await, 1, "Toss refused the early result call");

    app.toss_request(&tx, "open").await;
    // Status calls are throttled per txId (STATUS_POLL_WINDOW_SECS): the next poll is a window later.
    app.clock.advance(qetta::http::toss::STATUS_POLL_WINDOW_SECS);
    let v = seen.json(app.toss_get(&format!("/verifications/{tx}"), &token).await, 200).await;
    assert_eq!(v["status"], "IN_PROGRESS");

    app.toss_request(&tx, "approve").await;
    app.clock.advance(qetta::http::toss::STATUS_POLL_WINDOW_SECS);
    let v = seen.json(app.toss_get(&format!("/verifications/{tx}"), &token).await, 200).await;
    assert_eq!(v["status"], "COMPLETED", "{v}");
    assert_eq!(v["verified"], true);
    assert_eq!(v["result_calls"], 1);
    let id = &v["identity"];
    assert_eq!(id["name_masked"], "김*스");
    assert_eq!(id["birth_year"], 1993);
    assert_eq!((id["gender"].as_str(), id["nationality"].as_str(), id["age_group"].as_str()), (Some("FEMALE"), Some("LOCAL"), Some("ADULT")));
    assert!(id.get("ci").is_none() && id.get("di").is_none());
    assert_eq!(toss_calls(&app, "result").await, 2);

    // Asking again reads what is stored: no second result call.
    let again = seen.json(app.toss_get(&format!("/verifications/{tx}"), &token).await, 200).await;
    assert_eq!(again["identity"], v["identity"]);
    assert_eq!(toss_calls(&app, "result").await, 2);

    let s = seen.json(app.get("/api/v1/oauth/status", Some(&token)).await, 200).await;
    let toss = s["providers"].as_array().unwrap().iter().find(|p| p["provider"] == "toss").unwrap().clone();
    assert_eq!(toss["connected"], true, "{toss}");
    assert_eq!(toss["status"], "active");
    assert_eq!(toss["verified"], true);
    assert_eq!(toss["identity"]["name_masked"], "김*스");

    // Stored sealed: no plaintext in the row.
    let (ci, name, key_id): (Vec<u8>, Vec<u8>, String) =
        sqlx::query_as("SELECT ci, name, key_id FROM toss_identities WHERE user_id = $1").bind(&user_id).fetch_one(app.state.db.pool()).await.unwrap();
    assert_eq!(key_id, "test1");
    assert!(!ci.windows(15).any(|w| w == b"CI0110000000001"));
    assert!(!name.windows("김토스".len()).any(|w| w == "김토스".as_bytes()));

    // Toss gives the result twice: a second explicit fetch works, the third is refused.
    let v = seen.json(app.toss_post(&format!("/verifications/{tx}/result"), &json!({}), &token).await, 200).await;
    assert_eq!(v["result_calls"], 2);
    let r = app.toss_post(&format!("/verifications/{tx}/result"), &json!({}), &token).await;
    assert_eq!(error_code(r, 409).await, "result_limit");
    assert_eq!(toss_calls(&app, "result").await, 4);

    // The audit trail names the steps and holds no personal data.
    let audit = seen.json(app.get("/api/v1/oauth/audit", Some(&token)).await, 200).await;
    let actions: Vec<(&str, &str)> =
        audit["entries"].as_array().unwrap().iter().map(|e| (e["action"].as_str().unwrap(), e["outcome"].as_str().unwrap())).collect();
    for want in [("verification_request", "requested"), ("verification_result", "verified"), ("verification_result", "failed")] {
        assert!(actions.contains(&want), "{want:?} in {actions:?}");
    }

    // Disconnect forgets the identity and the verifications.
    let r = app.client.delete(app.url("/api/v1/oauth/toss/disconnect")).bearer_auth(&token).send().await.unwrap();
    let d = seen.json(r, 200).await;
    assert_eq!(d["identity_forgotten"], true);
    let s = app.status_of(&token, "toss").await;
    assert_eq!((s["connected"].as_bool(), s["identity"].is_null()), (Some(false), true), "{s}");
    let r = app.toss_get(&format!("/verifications/{tx}"), &token).await;
    assert_eq!(error_code(r, 404).await, "not_found");
    let r = app.client.delete(app.url("/api/v1/oauth/toss/disconnect")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(error_code(r, 404).await, "not_found");
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM toss_identities").fetch_one(app.state.db.pool()).await.unwrap();
    assert_eq!(n, 0);
    let (leaks,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_log WHERE detail LIKE '%김%' OR detail LIKE '%CI011%' OR detail LIKE '%1993%'")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(leaks, 0, "no personal data in audit details");
    seen.assert_clean();
}

async fn user_none_verification_with_auto_complete(backend: Backend) {
    let app = spawn_toss(backend).var("QETTA_SANDBOX_TOSS_AUTO_COMPLETE", "0").start().await;
    let (token, _) = app.register("none@example.com").await;
    let mut seen = Seen::default();
    let created = seen.json(app.toss_post("/verifications", &json!({"request_type": "USER_NONE"}), &token).await, 201).await;
    let tx = created["tx_id"].as_str().unwrap();
    // USER_NONE answers no app links (SPEC B4.3): null, not the string "null".
    assert!(created["app_scheme"].is_null() && created["android_app_uri"].is_null() && created["ios_app_uri"].is_null(), "{created}");
    let v = seen.json(app.toss_get(&format!("/verifications/{tx}"), &token).await, 200).await;
    assert_eq!(v["status"], "COMPLETED", "{v}");
    assert_eq!(v["request_type"], "USER_NONE");
    assert_eq!(v["identity"]["name_masked"], "김*스");
    assert_eq!(app.status_of(&token, "toss").await["verified"], true);
    seen.assert_clean();
}

async fn expiry_and_other_users_verifications(backend: Backend) {
    let app = spawn_toss(backend).start().await;
    let (alice, _) = app.register("alice@example.com").await;
    let (bob, _) = app.register("bob@example.com").await;
    let created: Value = app.toss_post("/verifications", &json!({"request_type": "USER_NONE"}), &alice).await.json().await.unwrap();
    let tx = created["tx_id"].as_str().unwrap().to_string();

    // Bob cannot see or use Alice's verification, and learns nothing from trying.
    let r = app.toss_get(&format!("/verifications/{tx}"), &bob).await;
    assert_eq!(error_code(r, 404).await, "not_found");
    let r = app.toss_post(&format!("/verifications/{tx}/result"), &json!({}), &bob).await;
    assert_eq!(error_code(r, 404).await, "not_found");
    let r = app.toss_get("/verifications/0f4c2d5e-1111-4222-8333-944445555666", &bob).await;
    assert_eq!(error_code(r, 404).await, "not_found");
    let r = app.toss_get("/verifications/not%20a%20tx", &bob).await;
    assert_eq!(error_code(r, 422).await, "invalid_tx_id");
    assert_eq!(toss_calls(&app, "status").await, 0, "nothing of this reached Toss");
    let r = app.client.delete(app.url("/api/v1/oauth/toss/disconnect")).bearer_auth(&bob).send().await.unwrap();
    assert_eq!(error_code(r, 404).await, "not_found");

    // The user never acts: after the sandbox's validity window the request is EXPIRED.
    app.sandbox_control("toss", "clock", json!({"advance_seconds": 601})).await;
    let v: Value = app.toss_get(&format!("/verifications/{tx}"), &alice).await.json().await.unwrap();
    assert_eq!(v["status"], "EXPIRED", "{v}");
    assert_eq!(v["verified"], false);
    let r = app.toss_post(&format!("/verifications/{tx}/result"), &json!({}), &alice).await;
    assert_eq!(error_code(r, 409).await, "verification_expired");
    // Final: no more status calls.
    let before = toss_calls(&app, "status").await;
    let v: Value = app.toss_get(&format!("/verifications/{tx}"), &alice).await.json().await.unwrap();
    assert_eq!(v["status"], "EXPIRED");
    assert_eq!(toss_calls(&app, "status").await, before);
}

async fn input_is_validated_before_any_call(backend: Backend) {
    let app = spawn_toss(backend).start().await;
    let (token, _) = app.register("input@example.com").await;
    let personal = |name: &str, phone: &str, birthday: &str| json!({"request_type": "USER_PERSONAL", "name": name, "phone": phone, "birthday": birthday});
    let cases = [
        (json!({}), "invalid_request_type"),
        (json!({"request_type": "USER_SOMETHING"}), "invalid_request_type"),
        (json!({"request_type": "USER_NONE", "trigger": "PUSH"}), "invalid_trigger"),
        (json!({"request_type": "USER_NONE", "name": "김토스"}), "unexpected_field"),
        (json!({"request_type": "USER_NONE", "extra": 1}), "invalid_body"),
        (json!({"request_type": "USER_PERSONAL", "phone": "01011112222", "birthday": "19930324"}), "missing_field"),
        (personal("김토스1", "01011112222", "19930324"), "invalid_name"),
        (personal("", "01011112222", "19930324"), "invalid_name"),
        (personal(&"가".repeat(51), "01011112222", "19930324"), "invalid_name"),
        (personal("김토스", "02-123-4567", "19930324"), "invalid_phone"),
        (personal("김토스", "010-123", "19930324"), "invalid_phone"),
        (personal("김토스", "010-1111-2222", "19930230"), "invalid_birthday"),
        (personal("김토스", "010-1111-2222", "18991231"), "invalid_birthday"),
        (personal("김토스", "010-1111-2222", "29990101"), "invalid_birthday"),
        (personal("김토스", "010-1111-2222", "1993324"), "invalid_birthday"),
    ];
    for (body, code) in cases {
        let r = app.toss_post("/verifications", &body, &token).await;
        assert_eq!(r.status(), 422, "{body}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], code, "{body}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().len() > 10);
    }
    let r = app.post_json("/api/v1/oauth/toss/verifications", &json!({"request_type": "USER_NONE"}), None).await;
    assert_eq!(error_code(r, 401).await, "unauthorized");
    assert_eq!(toss_calls(&app, "request").await, 0);
    assert_eq!(issued(&app).await, 0);
}

/// A man in the middle that flips one bit of the encrypted name in every result answer.
/// How the proxy bends a successful result.
#[derive(Clone, Copy)]
enum Tamper {
    /// One bit of the `name` ciphertext flipped.
    NameCiphertext,
    /// `di` carries another session id than the result call's (as in SPEC B6's doc example).
    ForeignDiSession,
}

async fn tampering_proxy(target: String) -> String {
    tampering_proxy_with(target, Tamper::NameCiphertext).await
}

async fn tampering_proxy_with(target: String, tamper: Tamper) -> String {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode, Uri};
    let client = reqwest::Client::new();
    let handler = move |uri: Uri, headers: HeaderMap, body: Bytes| {
        let client = client.clone();
        let target = target.clone();
        async move {
            let mut req = client.post(format!("{target}{}", uri.path())).body(body.to_vec());
            for h in ["content-type", "authorization"] {
                if let Some(v) = headers.get(h) {
                    req = req.header(h, v.to_str().unwrap());
                }
            }
            let r = req.send().await.unwrap();
            let status = StatusCode::from_u16(r.status().as_u16()).unwrap();
            let mut bytes = r.bytes().await.unwrap().to_vec();
            if uri.path().ends_with("/result") && status == StatusCode::OK {
                let mut v: Value = serde_json::from_slice(&bytes).unwrap();
                match tamper {
                    Tamper::NameCiphertext => {
                        let name = v["success"]["personalData"]["name"].as_str().unwrap().to_string();
                        let (prefix, b64) = name.rsplit_once('$').unwrap();
                        let b64e = base64::engine::general_purpose::STANDARD;
                        let mut ct = b64e.decode(b64).unwrap();
                        ct[0] ^= 1;
                        v["success"]["personalData"]["name"] = json!(format!("{prefix}${}", b64e.encode(ct)));
                    }
                    Tamper::ForeignDiSession => {
                        let di = v["success"]["personalData"]["di"].as_str().unwrap().to_string();
                        let mut parts = di.splitn(3, '$');
                        let (version, _, data) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
                        v["success"]["personalData"]["di"] = json!(format!("{version}$b88f8717-8e76-4276-bed0-f769a8baf7be${data}"));
                    }
                }
                bytes = serde_json::to_vec(&v).unwrap();
            }
            (status, [("content-type", "application/json")], bytes)
        }
    };
    let router = axum::Router::new().fallback(axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

/// SPEC B6: the doc example's `di` carries another session id; we refuse such a result (see
/// the comment in `TossClient::result`).
async fn a_field_of_another_session_is_refused_and_nothing_stored(backend: Backend) {
    let toss = spawn_toss(backend).var("QETTA_SANDBOX_TOSS_AUTO_COMPLETE", "0").start().await;
    let proxy = tampering_proxy_with(format!("{}/sandbox/toss", toss.base), Tamper::ForeignDiSession).await;
    let app = replica(&toss, backend, &proxy).await;
    let (token, _) = app.register("foreign.session@example.com").await;
    let created: Value = app.toss_post("/verifications", &json!({"request_type": "USER_NONE"}), &token).await.json().await.unwrap();
    let tx = created["tx_id"].as_str().unwrap();
    let r = app.toss_get(&format!("/verifications/{tx}"), &token).await;
    assert_eq!(error_code(r, 502).await, "upstream_invalid");
    assert_eq!(app.status_of(&token, "toss").await["verified"], false);
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM toss_identities").fetch_one(app.state.db.pool()).await.unwrap();
    assert_eq!(n, 0);
}

/// A page polling a pending verification as fast as it can reaches Toss at most once per
/// window per txId (counted at the sandbox).
async fn polling_is_throttled_per_tx_id(backend: Backend) {
    let app = spawn_toss(backend).start().await;
    let (token, _) = app.register("poller@example.com").await;
    let body = json!({"request_type": "USER_PERSONAL", "name": "김토스", "phone": "010-1111-2222", "birthday": "19930324"});
    let a: Value = app.toss_post("/verifications", &body, &token).await.json().await.unwrap();
    let b: Value = app.toss_post("/verifications", &body, &token).await.json().await.unwrap();
    let (a, b) = (a["tx_id"].as_str().unwrap().to_string(), b["tx_id"].as_str().unwrap().to_string());
    let before = toss_calls(&app, "status").await;
    // Pin the clock to the start of a window so that the polls below share it.
    let now = app.state.clock.now();
    let window = qetta::http::toss::STATUS_POLL_WINDOW_SECS;
    app.clock.advance(window - now.rem_euclid(window));
    let path = format!("/verifications/{a}");
    let polls = (0..10).map(|_| app.toss_get(&path, &token));
    for r in futures::future::join_all(polls).await {
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["status"], "REQUESTED");
    }
    assert_eq!(toss_calls(&app, "status").await - before, 1, "ten polls, one status call");
    // Another txId has its own window.
    assert_eq!(app.toss_get(&format!("/verifications/{b}"), &token).await.status(), 200);
    assert_eq!(toss_calls(&app, "status").await - before, 2);
    // The next window asks Toss again and sees the change.
    app.toss_request(&a, "open").await;
    let v: Value = app.toss_get(&format!("/verifications/{a}"), &token).await.json().await.unwrap();
    assert_eq!(v["status"], "REQUESTED", "still the stored status in this window");
    app.clock.advance(window);
    let v: Value = app.toss_get(&format!("/verifications/{a}"), &token).await.json().await.unwrap();
    assert_eq!(v["status"], "IN_PROGRESS");
    assert_eq!(toss_calls(&app, "status").await - before, 3);
}

async fn tampered_result_is_refused_and_nothing_stored(backend: Backend) {
    let toss = spawn_toss(backend).var("QETTA_SANDBOX_TOSS_AUTO_COMPLETE", "0").start().await;
    let proxy = tampering_proxy(format!("{}/sandbox/toss", toss.base)).await;
    let app = replica(&toss, backend, &proxy).await;
    let (token, _) = app.register("tampered@example.com").await;
    let created: Value = app.toss_post("/verifications", &json!({"request_type": "USER_NONE"}), &token).await.json().await.unwrap();
    let tx = created["tx_id"].as_str().unwrap();
    let r = app.toss_get(&format!("/verifications/{tx}"), &token).await;
    assert_eq!(error_code(r, 502).await, "upstream_invalid");
    let s = app.status_of(&token, "toss").await;
    assert_eq!(s["verified"], false, "{s}");
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM toss_identities").fetch_one(app.state.db.pool()).await.unwrap();
    assert_eq!(n, 0);
    let audit: Value = app.get("/api/v1/oauth/audit", Some(&token)).await.json().await.unwrap();
    assert!(audit["entries"].as_array().unwrap().iter().any(|e| e["action"] == "verification_result" && e["outcome"] == "failed"), "{audit}");
}

async fn key_rotation_reseals_toss_data(backend: Backend) {
    let app = spawn_toss(backend).var("QETTA_SANDBOX_TOSS_AUTO_COMPLETE", "0").start().await;
    let (token, user_id) = app.register("rotate@example.com").await;
    let created: Value = app.toss_post("/verifications", &json!({"request_type": "USER_NONE"}), &token).await.json().await.unwrap();
    let tx = created["tx_id"].as_str().unwrap();
    assert_eq!(app.toss_get(&format!("/verifications/{tx}"), &token).await.status(), 200);

    let new = qetta::vault::KeyRing::generate_entry("test2");
    let vault = qetta::vault::Vault::new(qetta::vault::KeyRing::parse(&format!("{new},{}", crate::support::ENCRYPTION_KEYS)).unwrap());
    let report = qetta::keys::rotate(&app.state.db, &vault, 10).await.unwrap();
    assert_eq!((report.resealed, report.remaining), (2, 0), "the service token and one identity: {report:?}");
    let (name, key_id): (Vec<u8>, String) =
        sqlx::query_as("SELECT name, key_id FROM toss_identities WHERE user_id = $1").bind(&user_id).fetch_one(app.state.db.pool()).await.unwrap();
    assert_eq!(key_id, "test2");
    let opened = vault.open_string(&name, qetta::toss_service::identity_aad(&user_id, "name")).unwrap();
    assert_eq!(secrecy::ExposeSecret::expose_secret(&opened), "김토스");
    let (tok,): (Vec<u8>,) = sqlx::query_as("SELECT access_token FROM service_tokens WHERE provider = 'toss'").fetch_one(app.state.db.pool()).await.unwrap();
    assert_eq!(qetta::vault::Vault::key_id_of(&tok).unwrap(), "test2");
    assert!(vault.open(&tok, qetta::toss_service::service_token_aad()).is_ok());
    let ids = qetta::store::connections::key_ids_in_use(&app.state.db).await.unwrap();
    assert_eq!(ids, vec!["test2".to_string()]);
}

both_backends!(a_failing_toss_opens_the_circuit_breaker);

async fn a_failing_toss_opens_the_circuit_breaker(backend: Backend) {
    let app = spawn_toss(backend).start().await;
    let (token, _) = app.register("breaker@example.com").await;
    // A token first, so that only the API calls fail.
    assert_eq!(app.toss_get("/token", &token).await.status(), 200);
    app.sandbox_control("toss", "faults", json!({"error_rate": 1.0, "error": "CE0001"})).await;
    // The breaker opens on the failure ratio once it has seen its minimum volume (20 calls,
    // the successful token call included).
    let mut failed = 0;
    loop {
        let v: Value = app.toss_post("/test", &json!({}), &token).await.json().await.unwrap();
        assert_eq!(v["ok"], false);
        if v["provider_code"] != "CE0001" {
            break;
        }
        failed += 1;
        assert!(failed <= 20, "the breaker did not open");
    }
    assert_eq!(failed, 19, "not before the minimum volume");
    let calls = toss_calls(&app, "status").await;
    let v: Value = app.toss_post("/test", &json!({}), &token).await.json().await.unwrap();
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(toss_calls(&app, "status").await, calls, "no call while the breaker is open");
    let metrics = app.metrics().await;
    assert!(metrics.contains("qetta_upstream_circuit_open{provider=\"toss\"} 1"), "{metrics}");
    assert!(metrics.contains("qetta_upstream_circuit_state{provider=\"toss\",state=\"open\"} 1"), "{metrics}");
    // An API call that needs Toss answers 503 with Retry-After while it is open.
    let r = app.toss_post("/verifications", &json!({"request_type": "USER_NONE"}), &token).await;
    assert!(r.headers().get("retry-after").is_some(), "Retry-After on 503");
    assert_eq!(crate::support::error_code(r, 503).await, "upstream_unavailable");
}
