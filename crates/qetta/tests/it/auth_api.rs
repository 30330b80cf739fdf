use serde_json::{json, Value};

use crate::support::{error_code, spawn, Backend, JWT_SECRET};
use crate::{all_backends, both_backends};

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
            {"provider": "kftc", "configured": true, "connected": false, "status": null, "scope": null, "expires_at": null, "connected_at": null, "last_refreshed_at": null, "connections": 0},
            {"provider": "toss", "configured": true, "connected": false, "status": null, "scope": null, "expires_at": null, "connected_at": null, "last_refreshed_at": null,
             "verified": false, "identity": null, "last_test": null},
            {"provider": "kakao", "configured": true, "connected": false, "status": null, "scope": null, "expires_at": null, "connected_at": null, "last_refreshed_at": null, "connections": 0},
            {"provider": "naver", "configured": true, "connected": false, "status": null, "scope": null, "expires_at": null, "connected_at": null, "last_refreshed_at": null, "connections": 0},
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

// ---------------------------------------------------------------------------------------------
// Attacks from the security review, each against the real server.

use crate::support::{count, Spawn, TestApp};

const SERVICE_KEY: &str = "backend-service-key-backend-service-key";

fn backend_jwt(sub: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    forge(json!({"sub": sub, "iss": "qetta-connect", "aud": "qetta", "iat": now, "exp": now + 600}), JWT_SECRET.as_bytes(), jsonwebtoken::Algorithm::HS256)
}

async fn login(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    app.post_json("/api/v1/auth/login", &json!({"email": email, "password": password}), None).await
}

async fn delete_me(app: &TestApp, token: &str, service_key: Option<&str>, body: Option<Value>) -> reqwest::Response {
    let mut req = app.client.delete(app.url("/api/v1/auth/me")).bearer_auth(token);
    if let Some(k) = service_key {
        req = req.header("x-qetta-service-key", k);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.unwrap()
}

all_backends!(concurrent_wrong_passwords_check_at_most_the_allowance);

/// 40 wrong passwords for one email at once: attempts are counted before the hash is checked,
/// so at most QETTA_LOGIN_MAX_FAILURES (5) are checked (401), the rest are refused (429).
async fn concurrent_wrong_passwords_check_at_most_the_allowance(backend: Backend) {
    let app = Spawn::new(backend)
        .var("QETTA_RATE_LIMIT_AUTH_PER_IP", "10000")
        // Every checked guess must be answered 401 here, not 503: let them queue for the hasher.
        .var("QETTA_HASH_QUEUE_WAIT_MS", "60000")
        .start()
        .await;
    app.register("race@example.com").await;
    let answers = futures::future::join_all((0..40).map(|i| {
        let app = &app;
        async move { login(app, "race@example.com", &format!("wrong horse {i}")).await }
    }))
    .await;
    let (mut unauthorized, mut throttled) = (0, 0);
    for r in answers {
        match r.status().as_u16() {
            401 => {
                unauthorized += 1;
                assert_eq!(error_code(r, 401).await, "unauthorized");
            }
            429 => {
                throttled += 1;
                let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
                assert!((1..=900).contains(&retry), "{retry}");
                assert_eq!(error_code(r, 429).await, "too_many_attempts");
            }
            other => panic!("unexpected status {other}"),
        }
    }
    eprintln!("{backend:?}: 40 concurrent wrong logins: {unauthorized} answered 401 (checked), {throttled} answered 429");
    assert!((1..=5).contains(&unauthorized), "{unauthorized} guesses were checked");
    assert_eq!(unauthorized + throttled, 40);

    // The right password is refused too until the window has passed, then works.
    let r = login(&app, "race@example.com", "correct horse 7").await;
    assert_eq!(error_code(r, 429).await, "too_many_attempts");
    app.clock.advance(900);
    assert_eq!(login(&app, "race@example.com", "correct horse 7").await.status(), 200);

    // An office behind one address (IP allowance: 4 × 5 = 20): 25 successful sign-ins do not use
    // it up, so a colleague's typo is still answered 401, not 429.
    for i in 0..25 {
        let email = format!("office{i}@example.com");
        app.register(&email).await;
        assert_eq!(login(&app, &email, "correct horse 7").await.status(), 200, "{email}");
    }
    assert_eq!(error_code(login(&app, "office0@example.com", "wrong horse 7").await, 401).await, "unauthorized");
}

both_backends!(backend_user_ids_cannot_be_blocked_by_registration);

/// Backend-minted users got the placeholder `{sub}@external.invalid`: registering it first made
/// every later request with a backend JWT for that sub answer 500.
async fn backend_user_ids_cannot_be_blocked_by_registration(backend: Backend) {
    let app = spawn(backend).await;
    // Register first, then the backend JWT: the reserved domain cannot be registered at all, in
    // any spelling.
    for email in ["extuser1@external.invalid", "ExtUser1@EXTERNAL.INVALID", "ｅｘｔｕｓｅｒ1@external.invalid", "x@sub.external.invalid"] {
        let r = app.post_json("/api/v1/auth/register", &json!({"email": email, "password": "correct horse 7"}), None).await;
        assert_eq!(error_code(r, 422).await, "invalid_email", "{email}");
    }
    let jwt = backend_jwt("extuser1");
    let r = app.get("/api/v1/oauth/kftc/authorize", Some(&jwt)).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    // Even a row registered under that email before this fix cannot collide any more.
    qetta::store::users::create(&app.state.db, "extuser2@external.invalid", "$argon2id$legacy", 0).await.unwrap();
    let r = app.get("/api/v1/oauth/kftc/authorize", Some(&backend_jwt("extuser2"))).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    // The backend JWT first, then the registration.
    let jwt = backend_jwt("extuser3");
    assert_eq!(app.get("/api/v1/oauth/kftc/authorize", Some(&jwt)).await.status(), 200);
    let r = app.post_json("/api/v1/auth/register", &json!({"email": "extuser3@external.invalid", "password": "correct horse 7"}), None).await;
    assert_eq!(error_code(r, 422).await, "invalid_email");
    assert_eq!(app.get("/api/v1/oauth/kftc/authorize", Some(&jwt)).await.status(), 200);
    assert_eq!(app.get("/api/v1/oauth/status", Some(&jwt)).await.status(), 200);
    // The placeholder is not an email anyone could register.
    let (email,): (String,) = sqlx::query_as("SELECT email FROM users WHERE id = 'extuser3'").fetch_one(app.state.db.pool()).await.unwrap();
    assert!(email.ends_with("@external.invalid") && qetta::auth::password::normalize_email(&email).is_err(), "{email}");
}

both_backends!(jwt_time_claims_are_enforced);

async fn jwt_time_claims_are_enforced(backend: Backend) {
    let app = spawn(backend).await;
    let (_, user_id) = app.register("times@example.com").await;
    let now = chrono::Utc::now().timestamp();
    let token = |claims: Value| forge(claims, JWT_SECRET.as_bytes(), jsonwebtoken::Algorithm::HS256);
    let base = json!({"sub": user_id, "iss": "qetta-connect", "aud": "qetta"});
    let with = |extra: Value| {
        let mut c = base.clone();
        c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        token(c)
    };
    // Not valid before an hour from now.
    let early = with(json!({"iat": now, "exp": now + 7200, "nbf": now + 3600}));
    assert_eq!(error_code(app.get("/api/v1/oauth/status", Some(&early)).await, 401).await, "unauthorized");
    // A year-long token from a backend: longer than QETTA_JWT_TTL_SECS (12 h).
    let year = with(json!({"iat": now, "exp": now + 365 * 86400}));
    assert_eq!(error_code(app.get("/api/v1/oauth/status", Some(&year)).await, 401).await, "unauthorized");
    // The same with iat moved forward to look short-lived: issued in the future.
    let future = with(json!({"iat": now + 365 * 86400 - 3600, "exp": now + 365 * 86400}));
    assert_eq!(error_code(app.get("/api/v1/oauth/status", Some(&future)).await, 401).await, "unauthorized");
    // Within the limits: accepted (nbf in the past, lifetime = TTL).
    let fine = with(json!({"iat": now, "exp": now + 43200, "nbf": now - 10}));
    assert_eq!(app.get("/api/v1/oauth/status", Some(&fine)).await.status(), 200);
}

both_backends!(deleting_an_account);

/// `DELETE /api/v1/auth/me`: connections unlinked and gone, Toss identity gone, audit kept, and
/// every JWT for the id refused afterwards, self-issued or minted by the backend.
async fn deleting_an_account(backend: Backend) {
    let app = Spawn::new(backend)
        .var("QETTA_SERVICE_KEY", SERVICE_KEY)
        .var("QETTA_SANDBOX_TOSS_AUTO_COMPLETE", "0")
        .var("QETTA_HASH_QUEUE_WAIT_MS", "60000")
        .start()
        .await;
    let (token, id) = app.register("leaving@example.com").await;
    app.connect_kftc(&token, "kim").await;
    let created: Value = app.post_json("/api/v1/oauth/toss/verifications", &json!({"request_type": "USER_NONE"}), Some(&token)).await.json().await.unwrap();
    let tx = created["tx_id"].as_str().unwrap();
    assert_eq!(app.get(&format!("/api/v1/oauth/toss/verifications/{tx}"), Some(&token)).await.status(), 200);
    assert_eq!(app.status_of(&token, "toss").await["verified"], true);

    // A registered user confirms with the password.
    assert_eq!(error_code(delete_me(&app, &token, None, None).await, 422).await, "password_required");
    assert_eq!(error_code(delete_me(&app, &token, None, Some(json!({"password": "wrong horse 7"}))).await, 403).await, "forbidden");
    assert_eq!(app.status_of(&token, "kftc").await["connected"], true, "nothing deleted yet");
    let r = delete_me(&app, &token, None, Some(json!({"password": "correct horse 7"}))).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["deleted"], true);
    assert_eq!(body["removed"]["connections"][0]["provider"], "kftc", "{body}");
    assert_eq!(body["removed"]["connections"][0]["unlink"]["ok"], true, "{body}");
    assert_eq!(body["removed"]["toss"]["identity_forgotten"], true, "{body}");
    // Leaving the service is KFTC's user/close (SPEC A7), not a mere unlink.
    assert_eq!(body["removed"]["connections"][0]["unlink"]["method"], "kftc_user_close", "{body}");
    assert_eq!(count(&app.sandbox_stats("kftc").await, &["calls", "/v2.0/user/close"]), 1);
    assert_eq!(count(&app.sandbox_stats("kftc").await, &["calls", "/v2.0/user/unlink"]), 0);

    // Every token for the id is refused: the session's, a backend-minted one (with or without the
    // service key), and the backend cannot bring the user back through a connect.
    for (jwt, key) in [(token.clone(), None), (backend_jwt(&id), None), (backend_jwt(&id), Some(SERVICE_KEY))] {
        let mut req = app.client.get(app.url("/api/v1/oauth/kftc/authorize")).bearer_auth(&jwt);
        if let Some(k) = key {
            req = req.header("x-qetta-service-key", k);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "unauthorized");
        assert!(v["error"]["message"].as_str().unwrap().contains("deleted"), "{v}");
    }
    assert_eq!(error_code(login(&app, "leaving@example.com", "correct horse 7").await, 401).await, "unauthorized");
    // Personal data is gone from the row; the tokens and the identity are gone; the audit stays.
    let (email, hash, deleted_at): (String, String, Option<i64>) =
        sqlx::query_as("SELECT email, password_hash, deleted_at FROM users WHERE id = $1").bind(&id).fetch_one(app.state.db.pool()).await.unwrap();
    assert!(!email.contains("leaving") && hash == "!" && deleted_at.is_some(), "{email} {hash}");
    let (conns,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM connections WHERE user_id = $1").bind(&id).fetch_one(app.state.db.pool()).await.unwrap();
    let (ids,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM toss_identities WHERE user_id = $1").bind(&id).fetch_one(app.state.db.pool()).await.unwrap();
    assert_eq!((conns, ids), (0, 0));
    let audit = qetta::store::audit::list_for_user(&app.state.db, &id, None, 100).await.unwrap();
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    assert!(actions.contains(&"account_deleted") && actions.contains(&"callback"), "{actions:?}");
    // The email is free again: a new account, a new id.
    let (_, new_id) = app.register("leaving@example.com").await;
    assert_ne!(new_id, id);

    // A backend-minted user: deleted by the backend with the service key, no password.
    let ext = backend_jwt("ext-leaving-1");
    assert_eq!(app.get("/api/v1/oauth/kftc/authorize", Some(&ext)).await.status(), 200);
    assert_eq!(error_code(delete_me(&app, &ext, None, None).await, 403).await, "forbidden");
    assert_eq!(delete_me(&app, &ext, Some(SERVICE_KEY), None).await.status(), 200);
    assert_eq!(error_code(app.get("/api/v1/oauth/kftc/authorize", Some(&backend_jwt("ext-leaving-1"))).await, 401).await, "unauthorized");
    // One never seen before: the tombstone is created, so it cannot appear later either.
    assert_eq!(delete_me(&app, &backend_jwt("ext-never-seen"), Some(SERVICE_KEY), None).await.status(), 200);
    assert_eq!(error_code(app.get("/api/v1/oauth/status", Some(&backend_jwt("ext-never-seen"))).await, 401).await, "unauthorized");
}

all_backends!(wrong_service_keys_are_throttled_and_audited);

/// Guessing `x-qetta-service-key`: 10 wrong keys per client IP and minute, then 429, across
/// replicas when they share Redis; each refusal is audited without the key.
async fn wrong_service_keys_are_throttled_and_audited(backend: Backend) {
    let app = Spawn::new(backend).var("QETTA_SERVICE_KEY", SERVICE_KEY).start().await;
    // With Redis, a second replica on the same database and Redis namespace shares the count.
    let other = if backend.uses_redis() {
        Some(
            Spawn::new(backend)
                .database(&app.database_url)
                .var("QETTA_SERVICE_KEY", SERVICE_KEY)
                .var("QETTA_REDIS_PREFIX", &app.state.config.redis_prefix)
                .start()
                .await,
        )
    } else {
        None
    };
    let (token, id) = app.register("guess@example.com").await;
    let guess = |a: &TestApp, key: String| a.client.get(a.url("/api/v1/oauth/status")).bearer_auth(&token).header("x-qetta-service-key", key).send();
    for i in 0..10 {
        let target = match (&other, i % 2) {
            (Some(o), 1) => o,
            _ => &app,
        };
        assert_eq!(error_code(guess(target, format!("guessed-key-{i:02}-guessed-key-guessed-key")).await.unwrap(), 401).await, "unauthorized");
    }
    let target = other.as_ref().unwrap_or(&app);
    let r = guess(target, "guessed-key-10-guessed-key-guessed-key".into()).await.unwrap();
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(error_code(r, 429).await, "too_many_attempts");
    // Throttled means not compared: the right key waits for the window too.
    assert_eq!(error_code(guess(&app, SERVICE_KEY.into()).await.unwrap(), 429).await, "too_many_attempts");
    // A JWT alone is unaffected.
    assert_eq!(app.get("/api/v1/oauth/status", Some(&token)).await.status(), 200);
    app.clock.advance(60);
    other.iter().for_each(|o| o.clock.advance(60));
    assert_eq!(guess(&app, SERVICE_KEY.into()).await.unwrap().status(), 200);

    let audit = qetta::store::audit::list_for_user(&app.state.db, &id, None, 100).await.unwrap();
    let refused = audit.iter().filter(|e| e.action == "service_key" && e.outcome == "refused").count();
    let throttled = audit.iter().filter(|e| e.action == "service_key" && e.outcome == "throttled").count();
    assert_eq!((refused, throttled), (10, 1));
    assert!(audit.iter().filter(|e| e.action == "service_key").all(|e| e.ip.as_deref() == Some("127.0.0.1")));
    let rows: Vec<(String,)> = sqlx::query_as("SELECT detail FROM audit_log").fetch_all(app.state.db.pool()).await.unwrap();
    let details = rows.into_iter().map(|(d,)| d).collect::<Vec<_>>().join(" ");
    assert!(details.contains("service-key") || details.contains("x-qetta-service-key"), "{details}");
    assert!(!details.contains("guessed-key") && !details.contains(SERVICE_KEY), "the keys given are never recorded");
}

both_backends!(invisible_characters_in_emails_are_refused, common_passwords_are_refused);

async fn invisible_characters_in_emails_are_refused(backend: Backend) {
    let app = spawn(backend).await;
    app.register("kim@example.com").await;
    // A look-alike of an existing account, with a zero-width space, a BOM or a bidi override.
    for email in ["ki\u{200B}m@example.com", "\u{FEFF}kim@example.com", "kim@exam\u{202E}ple.com", "kim\u{2060}@example.com", "kim@example.com\u{200D}"] {
        let r = app.post_json("/api/v1/auth/register", &json!({"email": email, "password": "correct horse 7"}), None).await;
        assert_eq!(error_code(r, 422).await, "invalid_email", "{email:?}");
    }
    // NFKC: the full-width spelling is the same account.
    let r = app.post_json("/api/v1/auth/register", &json!({"email": "ＫＩＭ＠example.com", "password": "correct horse 7"}), None).await;
    assert_eq!(error_code(r, 409).await, "email_taken");
    assert_eq!(login(&app, "ｋｉｍ@ｅｘａｍｐｌｅ.com", "correct horse 7").await.status(), 200);
}

async fn common_passwords_are_refused(backend: Backend) {
    let app = spawn(backend).await;
    for password in ["qwer1234!!", "1q2w3e4r5t", "Password123", "1qaz2wsx3edc"] {
        let r = app.post_json("/api/v1/auth/register", &json!({"email": "common@example.com", "password": password}), None).await;
        assert_eq!(error_code(r, 422).await, "weak_password", "{password}");
    }
    let r = app.post_json("/api/v1/auth/register", &json!({"email": "common@example.com", "password": "qwer1234!!x7"}), None).await;
    assert_eq!(r.status(), 201);
}

/// 1,000 concurrent sign-ins against the real binary: argon2 (19 MiB each) runs under the hashing
/// bound, so the process stays small, and every request gets an answer (the excess a 503 `busy`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_logins_keep_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}?mode=rwc", dir.path().join("logins.db").display());
    let extra: Vec<(String, String)> = [("QETTA_RATE_LIMIT_AUTH_PER_IP", "1000000"), ("QETTA_LOGIN_MAX_FAILURES", "1000000"), ("RUST_LOG", "warn")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    // KFTC is never called here; the Toss sandbox stays embedded.
    let proc = crate::procs::replica(dir.path(), "logins", crate::procs::free_port(), &db, "http://127.0.0.1:9/kftc", &extra).await;
    crate::procs::register(&proc.base, "many@example.com").await;
    let before = proc.status_kib("VmRSS");
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(120)).build().unwrap();
    let started = std::time::Instant::now();
    let answers = futures::future::join_all((0..1000).map(|i| {
        let (client, base) = (&client, &proc.base);
        async move {
            let password = if i % 2 == 0 { "correct horse 7" } else { "wrong horse 7" };
            let r = client.post(format!("{base}/api/v1/auth/login")).json(&json!({"email": "many@example.com", "password": password})).send().await;
            let r = r.unwrap_or_else(|e| panic!("request {i} got no answer: {e}"));
            let status = r.status().as_u16();
            let retry_after = r.headers().get("retry-after").is_some();
            let body: Value = r.json().await.unwrap_or_else(|e| panic!("request {i}: answer is not JSON: {e}"));
            (status, retry_after, body)
        }
    }))
    .await;
    let elapsed = started.elapsed();
    let peak = proc.status_kib("VmHWM");
    let after = proc.status_kib("VmRSS");
    let mut by_status = std::collections::BTreeMap::new();
    for (status, retry_after, body) in &answers {
        *by_status.entry(*status).or_insert(0) += 1;
        match status {
            200 => assert!(body["token"].is_string(), "{body}"),
            401 => assert_eq!(body["error"]["code"], "unauthorized"),
            503 => {
                assert_eq!(body["error"]["code"], "busy", "{body}");
                assert!(retry_after, "503 carries Retry-After");
            }
            429 => assert!(retry_after),
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    eprintln!("1000 concurrent logins in {elapsed:?}: {by_status:?}; RSS before {} MiB, peak {} MiB, after {} MiB", before / 1024, peak / 1024, after / 1024);
    assert_eq!(answers.len(), 1000);
    assert!(by_status.get(&200).is_some_and(|n| *n > 0) && by_status.get(&401).is_some_and(|n| *n > 0), "{by_status:?}");
    assert!(peak < 200 * 1024, "peak RSS {} MiB", peak / 1024);
    assert!(after < 200 * 1024, "RSS after {} MiB", after / 1024);
    // The service is fine afterwards.
    let r = client
        .post(format!("{}/api/v1/auth/login", proc.base))
        .json(&json!({"email": "many@example.com", "password": "correct horse 7"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
