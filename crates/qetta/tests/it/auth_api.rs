use serde_json::{json, Value};

use crate::{all_backends, both_backends};
use crate::support::{error_code, spawn, Backend, JWT_SECRET};

both_backends!(register_login_and_status, jwt_rejections);
// Login throttling counts in the shared state: also with Redis.
all_backends!(bad_credentials_and_input);

async fn register_login_and_status(backend: Backend) {
    let app = spawn(backend).await;
    let (token, user_id) = app.register("  Minsu.Kim@Example.COM ").await;

    // Login with the normalised email.
    let r = app.post_json("/api/v1/auth/login", &json!({"email": "minsu.kim@example.com", "password": "correct horse 7"}), None).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["user"]["id"], user_id.as_str());
    assert_eq!(body["user"]["email"], "minsu.kim@example.com");

    let r = app.get("/api/v1/oauth/status", Some(&token)).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!({"providers": [
            {"provider": "kftc", "configured": true, "connected": false, "status": null, "scope": null, "expires_at": null, "connected_at": null, "last_refreshed_at": null},
            {"provider": "toss", "configured": true, "connected": false, "status": null, "scope": null, "expires_at": null, "connected_at": null, "last_refreshed_at": null,
             "verified": false, "identity": null, "last_test": null},
        ]})
    );

    // Duplicate email, in another spelling.
    let r = app.post_json("/api/v1/auth/register", &json!({"email": "MINSU.KIM@example.com", "password": "another pass 9"}), None).await;
    assert_eq!(error_code(r, 409).await, "email_taken");
}

async fn bad_credentials_and_input(backend: Backend) {
    let app = spawn(backend).await;
    app.register("a@example.com").await;

    let wrong = app.post_json("/api/v1/auth/login", &json!({"email": "a@example.com", "password": "wrong horse 7"}), None).await;
    assert_eq!(error_code(wrong, 401).await, "unauthorized");
    let unknown = app.post_json("/api/v1/auth/login", &json!({"email": "b@example.com", "password": "wrong horse 7"}), None).await;
    assert_eq!(error_code(unknown, 401).await, "unauthorized");

    // Malformed JSON → 400; wrong shape → 422; invalid values → 422.
    let r = app.client.post(app.url("/api/v1/auth/register")).header("content-type", "application/json").body("{\"email\":").send().await.unwrap();
    assert_eq!(error_code(r, 400).await, "malformed_json");
    let r = app.post_json("/api/v1/auth/register", &json!({"email": "c@example.com"}), None).await;
    assert_eq!(error_code(r, 422).await, "invalid_body");
    let r = app.post_json("/api/v1/auth/register", &json!({"email": "not-an-email", "password": "correct horse 7"}), None).await;
    assert_eq!(error_code(r, 422).await, "invalid_email");
    let r = app.post_json("/api/v1/auth/register", &json!({"email": "c@example.com", "password": "short"}), None).await;
    assert_eq!(error_code(r, 422).await, "weak_password");
    let r = app.client.post(app.url("/api/v1/auth/register")).body("email=x").send().await.unwrap();
    assert_eq!(error_code(r, 400).await, "unsupported_media_type");

    // Repeated failures are throttled with Retry-After.
    for _ in 0..4 {
        let r = app.post_json("/api/v1/auth/login", &json!({"email": "a@example.com", "password": "wrong horse 7"}), None).await;
        assert_eq!(r.status(), 401);
    }
    let r = app.post_json("/api/v1/auth/login", &json!({"email": "a@example.com", "password": "correct horse 7"}), None).await;
    assert!(r.headers().get("retry-after").is_some());
    assert_eq!(error_code(r, 429).await, "too_many_attempts");

    // Unknown route, wrong method, health and ready.
    assert_eq!(error_code(app.get("/api/v1/nothing-here", None).await, 404).await, "not_found");
    let r = app.client.delete(app.url("/health")).send().await.unwrap();
    assert_eq!(error_code(r, 405).await, "method_not_allowed");
    let r = app.get("/health", None).await;
    assert_eq!(r.status(), 200);
    let r = app.get("/ready", None).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["checks"]["database"], "ok");

    // A caller's request id is echoed.
    let r = app.client.get(app.url("/nope")).header("x-request-id", "trace-123").send().await.unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-123");
}

fn forge(claims: Value, secret: &[u8], alg: jsonwebtoken::Algorithm) -> String {
    jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), &claims, &jsonwebtoken::EncodingKey::from_secret(secret)).unwrap()
}

async fn jwt_rejections(backend: Backend) {
    let app = spawn(backend).await;
    let (token, user_id) = app.register("jwt@example.com").await;
    let now = chrono::Utc::now().timestamp();
    let claims = |exp: i64| json!({"sub": user_id, "iss": "qetta-connect", "aud": "qetta", "iat": now, "exp": exp});

    assert_eq!(error_code(app.get("/api/v1/oauth/status", None).await, 401).await, "unauthorized");
    let r = app.client.get(app.url("/api/v1/oauth/status")).header("authorization", "Basic abc").send().await.unwrap();
    assert_eq!(error_code(r, 401).await, "unauthorized");

    let expired = forge(claims(now - 3600), JWT_SECRET.as_bytes(), jsonwebtoken::Algorithm::HS256);
    assert_eq!(error_code(app.get("/api/v1/oauth/status", Some(&expired)).await, 401).await, "unauthorized");

    let mut tampered = token.clone();
    let sig_start = tampered.rfind('.').unwrap() + 1;
    let flipped = if &tampered[sig_start..sig_start + 1] == "A" { "B" } else { "A" };
    tampered.replace_range(sig_start..sig_start + 1, flipped);
    assert_eq!(error_code(app.get("/api/v1/oauth/status", Some(&tampered)).await, 401).await, "unauthorized");

    let other_key = forge(claims(now + 3600), b"some-other-secret-some-other-secret!!", jsonwebtoken::Algorithm::HS256);
    assert_eq!(error_code(app.get("/api/v1/oauth/status", Some(&other_key)).await, 401).await, "unauthorized");

    // alg: none, unsigned.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let none = format!("{}.{}.", b64.encode(br#"{"alg":"none","typ":"JWT"}"#), b64.encode(claims(now + 3600).to_string()));
    assert_eq!(error_code(app.get("/api/v1/oauth/status", Some(&none)).await, 401).await, "unauthorized");

    // HS512 with the right secret is still refused: only HS256.
    let hs512 = forge(claims(now + 3600), JWT_SECRET.as_bytes(), jsonwebtoken::Algorithm::HS512);
    assert_eq!(error_code(app.get("/api/v1/oauth/status", Some(&hs512)).await, 401).await, "unauthorized");

    // A JWT minted by the app's backend with the shared secret works.
    let minted = forge(claims(now + 3600), JWT_SECRET.as_bytes(), jsonwebtoken::Algorithm::HS256);
    assert_eq!(app.get("/api/v1/oauth/status", Some(&minted)).await.status(), 200);
}

both_backends!(limits_answer_429_and_413);

async fn limits_answer_429_and_413(backend: Backend) {
    let app = crate::support::Spawn::new(backend).var("QETTA_RATE_LIMIT_API_PER_USER", "3").start().await;
    let (token, _) = app.register("limits@example.com").await;
    for _ in 0..3 {
        assert_eq!(app.get("/api/v1/oauth/status", Some(&token)).await.status(), 200);
    }
    let r = app.get("/api/v1/oauth/status", Some(&token)).await;
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(error_code(r, 429).await, "rate_limited");

    // A body over the limit (64 KiB by default).
    let big = json!({"email": "x@example.com", "password": "p".repeat(100_000)});
    let r = app.post_json("/api/v1/auth/register", &big, None).await;
    assert_eq!(error_code(r, 413).await, "payload_too_large");

}

both_backends!(rejections_of_bad_urls_are_json_too);

async fn rejections_of_bad_urls_are_json_too(backend: Backend) {
    let app = crate::support::spawn(backend).await;
    let (token, _) = app.register("urls@example.com").await;
    let r = app.get("/api/v1/oauth/kftc/balance/%FF%FE", Some(&token)).await;
    assert_eq!(error_code(r, 400).await, "bad_request");
    let r = app.get("/api/v1/oauth/audit?limit=abc", Some(&token)).await;
    assert_eq!(error_code(r, 422).await, "invalid_limit");
    let r = app.get("/api/v1/oauth/kftc/launch?state=%FF", None).await;
    assert!(r.status().is_client_error());
}
