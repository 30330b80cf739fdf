//! The admin dashboard's API and administrators: who may call `/api/v1/admin/…` (401 for
//! strangers, 403 for every non-admin, at once after a revocation, on every replica), the
//! figures of a seeded set of connections and refreshes, the user search and a user's detail,
//! `QETTA_ADMIN_EMAILS` and `qetta admin grant|revoke|list`.

use std::process::Command;

use serde_json::{json, Value};

use crate::support::{error_code, Backend, Spawn, TestApp};
use crate::{all_backends, both_backends};
use qetta::clock::Clock;
use qetta::store::{audit, connections, users};

const BOSS: &str = "boss@example.com";

/// Every admin route, with a user id for the detail route.
fn admin_routes(user_id: &str) -> Vec<String> {
    vec!["/api/v1/admin/stats".into(), "/api/v1/admin/users?q=example".into(), format!("/api/v1/admin/users/{user_id}")]
}

/// Registers `email` and grants it administration (as `qetta admin grant` does); its JWT.
pub async fn admin_token(app: &TestApp, email: &str) -> (String, String) {
    let (token, id) = app.register(email).await;
    let granted = qetta::admin::grant(&app.state.db, email, app.clock.now()).await.expect("grant");
    assert_eq!(granted, id);
    (token, id)
}

async fn get_json(app: &TestApp, path: &str, token: &str) -> Value {
    let r = app.get(path, Some(token)).await;
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.unwrap()
}

/// Every route: 401 without a JWT, 403 `forbidden` for a registered non-admin and for a
/// backend-minted JWT that claims the admin's email (the claim makes no one an admin), even for a
/// user id that does not exist (no probing); 200 for the admin.
async fn strangers_and_non_admins_are_refused_by_every_admin_route(backend: Backend) {
    let app = Spawn::new(backend).start().await;
    let (admin, admin_id) = admin_token(&app, BOSS).await;
    let (user, user_id) = app.register("user@example.com").await;
    let (minted, _) = app.state.jwt.issue("backend-user-1", Some(BOSS), app.clock.now());
    for target in [admin_id.as_str(), user_id.as_str(), "no-such-user"] {
        for path in admin_routes(target) {
            assert_eq!(error_code(app.get(&path, None).await, 401).await, "unauthorized", "{path}");
            let r = app.client.get(app.url(&path)).header("authorization", "Bearer not-a-jwt").send().await.unwrap();
            assert_eq!(error_code(r, 401).await, "unauthorized", "{path}");
            assert_eq!(error_code(app.get(&path, Some(&user)).await, 403).await, "forbidden", "{path} as a user");
            assert_eq!(error_code(app.get(&path, Some(&minted)).await, 403).await, "forbidden", "{path} with a minted JWT claiming the admin's email");
            let status = app.get(&path, Some(&admin)).await.status().as_u16();
            assert_eq!(status, if target == "no-such-user" && path.contains("/users/") { 404 } else { 200 }, "{path} as the admin");
        }
    }
    // A deleted admin account is no admin, even with a fresh JWT for its id.
    let r = app.client.delete(app.url("/api/v1/auth/me")).bearer_auth(&admin).json(&json!({"password": "correct horse 7"})).send().await.unwrap();
    assert!(r.status().is_success(), "delete the admin account: {}", r.status());
    assert!(!qetta::store::admin::is_admin(&app.state.db, &admin_id).await.unwrap());
}

/// Revoking answers 403 from the very next request, on this replica and on another one sharing
/// the database; granting again restores access at once.
async fn revoking_takes_effect_on_the_next_request_on_every_replica(backend: Backend) {
    let app = Spawn::new(backend).start().await;
    let other = Spawn::new(backend).database(&app.database_url).start().await;
    let (admin, _) = admin_token(&app, BOSS).await;
    for replica in [&app, &other] {
        assert_eq!(replica.get("/api/v1/admin/stats", Some(&admin)).await.status(), 200);
    }
    assert!(qetta::admin::revoke(&app.state.db, "Boss@Example.com", app.clock.now()).await.unwrap(), "revoked (the email is normalised)");
    for replica in [&app, &other] {
        for path in admin_routes("x") {
            assert_eq!(error_code(replica.get(&path, Some(&admin)).await, 403).await, "forbidden", "{path} after the revocation");
        }
    }
    assert!(!qetta::admin::revoke(&app.state.db, BOSS, app.clock.now()).await.unwrap(), "nothing left to revoke");
    qetta::admin::grant(&app.state.db, BOSS, app.clock.now()).await.unwrap();
    assert_eq!(other.get("/api/v1/admin/stats", Some(&admin)).await.status(), 200);
    // Grants need a registered account: an email nobody registered is refused, not reserved.
    let e = qetta::admin::grant(&app.state.db, "nobody@example.com", app.clock.now()).await.unwrap_err();
    assert!(e.to_string().contains("no account is registered with nobody@example.com"), "{e}");
    // Both were audited with their actor.
    let log =
        audit::list_for_user(&app.state.db, &qetta::store::admin::account_with_email(&app.state.db, BOSS).await.unwrap().unwrap(), None, 50).await.unwrap();
    let actions: Vec<(&str, &str)> =
        log.iter().filter(|e| e.action.starts_with("admin_grant") || e.action == "admin_revoke").map(|e| (e.action.as_str(), e.actor.as_str())).collect();
    assert_eq!(actions, vec![("admin_grant", "cli:admin-grant"), ("admin_revoke", "cli:admin-revoke"), ("admin_grant", "cli:admin-grant")]);
}

/// A user row and a connection of `provider` in `status`, token expiring at `expires_at`.
pub async fn seed(app: &TestApp, n: usize, provider: &str, status: &str, expires_at: Option<i64>) -> String {
    let now = app.clock.now();
    let user = users::create(&app.state.db, &format!("seed-{n}@example.com"), "not-a-real-hash", now).await.unwrap();
    // Ciphertext stand-ins: the dashboard never reads tokens.
    let t = connections::TokenWrite {
        access_token: vec![1, 2, 3],
        refresh_token: Some(vec![4, 5, 6]),
        key_id: "test1".into(),
        token_type: "Bearer".into(),
        scope: "login inquiry".into(),
        expires_at,
        refresh_expires_at: expires_at.map(|e| e + 10 * 86_400),
    };
    let id = uuid::Uuid::new_v4().to_string();
    let account = format!("account-{n}");
    let new = connections::NewConnection {
        id: &id,
        user_id: &user.id,
        provider,
        provider_user_id: &account,
        account_display: None,
        label: None,
        metadata: "{}",
        tokens: &t,
    };
    assert!(connections::insert(app.state.db.pool(), &new, now).await.unwrap());
    if status != connections::STATUS_ACTIVE {
        connections::change_status(app.state.db.pool(), &id, status, now).await.unwrap();
    }
    user.id
}

async fn refresh_entry(app: &TestApp, user_id: &str, outcome: &str, at: i64) {
    let entry = audit::NewEntry {
        actor: "system:token-manager".into(),
        user_id: Some(user_id.into()),
        provider: Some("kftc".into()),
        action: "refresh".into(),
        outcome: outcome.into(),
        ..Default::default()
    };
    audit::append(&app.state.db, &entry, at).await.unwrap();
}

/// The seeded set the API test and the browser test count: six KFTC connections (active with a
/// token expiring in 2 hours, 4 days, 60 days and expired 10 s ago; one needing re-consent; one
/// revoked), one Naver connection, and refresh entries of user 1: 3 ok and 1 failed in the last
/// 24 hours, 2 ok and 1 needs_reauth two days ago, 5 ok eight days ago (outside the 7 days).
/// Returns user 1's id.
pub async fn seed_set(app: &TestApp) -> String {
    let now = app.clock.now();
    let h = 3600;
    let u1 = seed(app, 1, "kftc", "active", Some(now + 2 * h)).await;
    seed(app, 2, "kftc", "active", Some(now + 4 * 86_400)).await;
    seed(app, 3, "kftc", "active", Some(now + 60 * 86_400)).await;
    seed(app, 4, "kftc", "needs_reauth", None).await;
    seed(app, 5, "kftc", "revoked", Some(now + 50 * 86_400)).await;
    seed(app, 6, "kftc", "active", Some(now - 10)).await;
    seed(app, 7, "naver", "active", Some(now + 30 * 86_400)).await;
    for outcome in ["ok", "ok", "ok", "failed"] {
        refresh_entry(app, &u1, outcome, now - 100).await;
    }
    for outcome in ["ok", "ok", "needs_reauth"] {
        refresh_entry(app, &u1, outcome, now - 2 * 86_400 - 5).await;
    }
    for _ in 0..5 {
        refresh_entry(app, &u1, "ok", now - 8 * 86_400).await;
    }

    u1
}

/// The stats count exactly the seeded connections and the refresh entries of the last 24 hours
/// and 7 days; the search finds by email part and exact id and treats `_`/`%` literally; a user's
/// detail lists connections without any token and pages the audit trail; every admin read is
/// audited with the admin as actor.
async fn the_admin_api_counts_seeded_connections_and_shows_a_user(backend: Backend) {
    // No background refresher: it would try the seeded (fake) tokens and add refresh entries.
    let app = Spawn::new(backend).var("QETTA_REFRESHER_ENABLED", "false").start().await;
    let (admin, admin_id) = admin_token(&app, BOSS).await;
    let u1 = seed_set(&app).await;
    let now = app.clock.now();

    let stats = get_json(&app, "/api/v1/admin/stats", &admin).await;
    let provider = |p: &str| stats["providers"].as_array().unwrap().iter().find(|x| x["provider"] == p).unwrap_or_else(|| panic!("{p} in {stats}")).clone();
    let kftc = provider("kftc");
    assert_eq!(kftc["connections"], json!({"total": 6, "active": 4, "expired": 1, "expiring_24h": 1, "expiring_7d": 2, "needs_reconsent": 1, "revoked": 1}));
    assert_eq!(kftc["refreshes"]["last_24h"], json!({"ok": 3, "failed": 1, "needs_reauth": 0}));
    assert_eq!(kftc["refreshes"]["last_7d"], json!({"ok": 5, "failed": 1, "needs_reauth": 1}));
    let daily = kftc["refreshes"]["daily"].as_array().unwrap();
    assert_eq!(daily.len(), 7);
    assert_eq!(daily[0], json!({"days_ago": 0, "ok": 3, "failed": 1, "needs_reauth": 0}));
    assert_eq!(daily[2], json!({"days_ago": 2, "ok": 2, "failed": 0, "needs_reauth": 1}));
    assert_eq!(kftc["configured"], true);
    assert_eq!(provider("naver")["connections"]["active"], 1, "any provider in the data is shown");
    assert_eq!(provider("toss")["connections"]["total"], 0, "known providers are shown with zeros");
    assert!(kftc["upstream"]["window_secs"].as_u64().unwrap() > 0 && kftc["upstream"]["top_errors"].is_array());
    let refresher = &stats["background"]["refresher"];
    assert_eq!((refresher["enabled"].clone(), refresher["due"].clone()), (json!(false), json!(2)), "due: the 2-hour and the expired one");
    assert_eq!(
        stats["background"]["webhooks"],
        json!({"queued": 0, "oldest_age_secs": null, "delivered_24h": 0, "failed_24h": 0}),
        "no endpoint, nothing queued"
    );

    // Search: part of an email, an exact id, LIKE wildcards taken literally, bad queries refused.
    let found = get_json(&app, "/api/v1/admin/users?q=SEED-", &admin).await;
    assert_eq!(found["users"].as_array().unwrap().len(), 7);
    let found = get_json(&app, &format!("/api/v1/admin/users?q={u1}"), &admin).await;
    assert_eq!(found["users"][0]["id"], u1.as_str());
    assert_eq!(found["users"][0]["email"], "seed-1@example.com");
    assert_eq!(found["users"][0]["kind"], "registered");
    assert_eq!(found["users"][0]["connections"], 1);
    // A user minted by the app's backend: found by id, shown without its placeholder email.
    users::ensure_external(&app.state.db, "backend-user-42", now).await.unwrap();
    let found = get_json(&app, "/api/v1/admin/users?q=backend-user-42", &admin).await;
    assert_eq!(found["users"][0]["kind"], "external");
    assert_eq!(found["users"][0]["email"], Value::Null);
    for wildcard in ["_", "%25"] {
        let found = get_json(&app, &format!("/api/v1/admin/users?q={wildcard}"), &admin).await;
        assert_eq!(found["users"], json!([]), "{wildcard} matches itself only");
    }
    for bad in ["", "q=", "q=%20%20", &format!("q={}", "a".repeat(255))] {
        let r = app.get(&format!("/api/v1/admin/users?{bad}"), Some(&admin)).await;
        assert_eq!(error_code(r, 422).await, "invalid_query", "{bad:?}");
    }

    // A user's detail: the connection without any token, the audit trail in pages.
    let r = app.get(&format!("/api/v1/admin/users/{u1}?limit=5"), Some(&admin)).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    for secret in ["access_token", "refresh_token", "key_id", "password", "not-a-real-hash"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    let detail: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(detail["is_admin"], false);
    let conns = detail["connections"].as_array().unwrap();
    assert_eq!(conns.len(), 1);
    assert_eq!((conns[0]["provider"].as_str(), conns[0]["status"].as_str()), (Some("kftc"), Some("active")));
    assert_eq!(conns[0]["scope"], json!(["login", "inquiry"]));
    assert!(conns[0]["expires_at"].as_str().is_some());
    let mut seen = detail["audit"].as_array().unwrap().len();
    let mut next = detail["next_before"].as_str().map(str::to_string);
    assert_eq!(seen, 5);
    while let Some(before) = next {
        let page = get_json(&app, &format!("/api/v1/admin/users/{u1}?limit=5&before={before}"), &admin).await;
        seen += page["audit"].as_array().unwrap().len();
        next = page["next_before"].as_str().map(str::to_string);
    }
    assert_eq!(seen, 12, "every refresh entry of the user, over pages");
    for bad in ["limit=0", "limit=201", "before=abc"] {
        let r = app.get(&format!("/api/v1/admin/users/{u1}?{bad}"), Some(&admin)).await;
        assert_eq!(r.status(), 422, "{bad}");
    }
    assert_eq!(error_code(app.get("/api/v1/admin/users/nobody", Some(&admin)).await, 404).await, "user_not_found");
    let me = get_json(&app, &format!("/api/v1/admin/users/{admin_id}"), &admin).await;
    assert_eq!(me["is_admin"], true);

    // Every admin read was audited, the admin as actor; a search keeps no query text.
    let log = audit::list_for_user(&app.state.db, &admin_id, None, 200).await.unwrap();
    let actor = format!("admin:{admin_id}");
    let count = |action: &str| log.iter().filter(|e| e.action == action && e.actor == actor).count();
    assert_eq!(count("admin_stats"), 1);
    assert_eq!(count("admin_user_search"), 5, "five accepted searches");
    assert!(count("admin_user_view") >= 4);
    assert!(log.iter().any(|e| e.action == "admin_user_view" && e.detail.contains(&u1)));
    assert!(log.iter().filter(|e| e.action == "admin_user_search").all(|e| !e.detail.contains("seed") && !e.detail.contains(&u1)));
}

all_backends!(strangers_and_non_admins_are_refused_by_every_admin_route, revoking_takes_effect_on_the_next_request_on_every_replica);
both_backends!(the_admin_api_counts_seeded_connections_and_shows_a_user, admins_refresh_and_disconnect_any_users_connection);

/// `QETTA_ADMIN_EMAILS` grants at start the listed emails that have an account (not one
/// registered after the start, until the next start), and a start without the email revokes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qetta_admin_emails_grants_at_start_and_revokes_when_removed() {
    let first = Spawn::new(Backend::Sqlite).var("QETTA_ADMIN_EMAILS", " Boss@Example.com ,other@example.com").start().await;
    let (boss, _) = first.register(BOSS).await;
    // Registered after the start: not granted to whoever registered first.
    assert_eq!(error_code(first.get("/api/v1/admin/stats", Some(&boss)).await, 403).await, "forbidden");
    let second = Spawn::new(Backend::Sqlite).database(&first.database_url).var("QETTA_ADMIN_EMAILS", "boss@example.com").start().await;
    assert!(second.state.config.admin_emails == vec![BOSS.to_string()]);
    for replica in [&first, &second] {
        assert_eq!(replica.get("/api/v1/admin/stats", Some(&boss)).await.status(), 200, "granted in the database, seen by every replica");
    }
    let grant = qetta::store::admin::get(&second.state.db, BOSS).await.unwrap().unwrap();
    assert_eq!(grant.source, "env");
    drop(second);
    let _third = Spawn::new(Backend::Sqlite).database(&first.database_url).start().await;
    assert_eq!(error_code(first.get("/api/v1/admin/stats", Some(&boss)).await, 403).await, "forbidden", "no longer listed: revoked");
}

#[test]
fn a_bad_admin_email_stops_the_start_naming_the_variable() {
    let sources = qetta::config::Sources::from_pairs([("QETTA_ADMIN_EMAILS", "ops@example.com, not an email".to_string())]);
    let e = qetta::config::Config::from_sources(&sources).err().expect("refused").to_string();
    assert!(e.starts_with("QETTA_ADMIN_EMAILS:") && e.contains("not an email"), "{e}");
}

fn qetta_cli(app: &TestApp, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_qetta"))
        .current_dir(app.dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &app.database_url)
        .args(args)
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `qetta admin grant|list|revoke` work on the database alone (no JWT_SECRET), and the running
/// service follows them at the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_commands_grant_list_and_revoke() {
    let app = Spawn::new(Backend::Sqlite).start().await;
    let (boss, boss_id) = app.register(BOSS).await;
    let (code, out, err) = qetta_cli(&app, &["admin", "grant", "BOSS@example.com"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains(&boss_id), "{out}");
    assert_eq!(app.get("/api/v1/admin/stats", Some(&boss)).await.status(), 200);
    let (code, out, _) = qetta_cli(&app, &["admin", "list"]);
    assert_eq!(code, Some(0));
    assert!(out.contains(BOSS) && out.contains(&boss_id) && out.contains("qetta admin grant"), "{out}");
    let (code, out, err) = qetta_cli(&app, &["admin", "grant", "nobody@example.com"]);
    assert_ne!(code, Some(0), "{out}");
    assert!(err.contains("no account is registered with nobody@example.com"), "{err}");
    let (code, out, _) = qetta_cli(&app, &["admin", "revoke", BOSS]);
    assert_eq!(code, Some(0));
    assert!(out.contains("revoked"), "{out}");
    assert_eq!(error_code(app.get("/api/v1/admin/stats", Some(&boss)).await, 403).await, "forbidden");
}

/// Provider calls are recorded where the metrics record them and show in the upstream figures:
/// a KFTC connect through the sandbox (a token call) counts with its latency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_calls_show_in_the_upstream_figures() {
    let app = Spawn::new(Backend::Sqlite).start().await;
    let (admin, _) = admin_token(&app, BOSS).await;
    let (user, _) = app.register("user@example.com").await;
    app.connect_kftc(&user, "kim").await;
    let stats = get_json(&app, "/api/v1/admin/stats", &admin).await;
    let kftc = stats["providers"].as_array().unwrap().iter().find(|p| p["provider"] == "kftc").unwrap().clone();
    assert!(kftc["upstream"]["calls"].as_u64().unwrap() >= 1, "{kftc}");
    assert!(kftc["upstream"]["p50_ms"].as_f64().is_some_and(|v| v > 0.0) && kftc["upstream"]["p95_ms"].as_f64().is_some(), "{kftc}");
    assert_eq!(kftc["connections"]["active"], 1);
}

/// "Refresh now" and "disconnect" on any user's connection, through the connection core: refused
/// to everyone but an admin (nothing changes), done once for the admin and audited with the admin
/// as actor.
async fn admins_refresh_and_disconnect_any_users_connection(backend: Backend) {
    let app = Spawn::new(backend).start().await;
    let (admin, admin_id) = admin_token(&app, BOSS).await;
    let (user, _) = app.register("user@example.com").await;
    assert!(app.connect(&user, "kakao", "kim", json!({})).await.ok);
    let id = app.connections(&user).await[0]["id"].as_str().unwrap().to_string();
    let refresh = format!("/api/v1/admin/connections/{id}/refresh");
    let remove = format!("/api/v1/admin/connections/{id}");
    let issued = |s: &serde_json::Value| s["tokens"]["issued"]["refresh_token"].as_i64().unwrap_or(0);
    let before = issued(&app.sandbox_stats("kakao").await);

    for (who, code, status) in [(None, "unauthorized", 401), (Some(user.as_str()), "forbidden", 403)] {
        let r = app.post_json(&refresh, &json!({}), who).await;
        assert_eq!(error_code(r, status).await, code);
        let mut req = app.client.delete(app.url(&remove));
        if let Some(t) = who {
            req = req.bearer_auth(t);
        }
        assert_eq!(error_code(req.send().await.unwrap(), status).await, code);
    }
    assert_eq!(issued(&app.sandbox_stats("kakao").await), before, "no refresh for a refused caller");
    assert_eq!(app.connections(&user).await.len(), 1, "nothing removed for a refused caller");

    let r = app.post_json(&refresh, &json!({}), Some(&admin)).await;
    assert_eq!(r.status(), 200);
    assert!(r.json::<serde_json::Value>().await.unwrap()["last_refreshed_at"].is_string());
    assert_eq!(issued(&app.sandbox_stats("kakao").await), before + 1, "one refresh at Kakao");
    let r = app.post_json("/api/v1/admin/connections/no-such-connection/refresh", &json!({}), Some(&admin)).await;
    assert_eq!(error_code(r, 404).await, "connection_not_found");

    let r = app.client.delete(app.url(&remove)).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let gone: serde_json::Value = r.json().await.unwrap();
    assert_eq!(gone["revocation"]["ok"], true, "{gone}");
    assert!(app.connections(&user).await.is_empty());
    let user_id = qetta::store::admin::account_with_email(&app.state.db, "user@example.com").await.unwrap().unwrap();
    let log = audit::list_for_user(&app.state.db, &user_id, None, 50).await.unwrap();
    assert!(log.iter().any(|e| e.action == "disconnect" && e.actor == format!("admin:{admin_id}")), "the disconnect names the admin");
    let mine = audit::list_for_user(&app.state.db, &admin_id, None, 50).await.unwrap();
    assert!(mine.iter().any(|e| e.action == "admin_refresh"), "the admin's refresh is in the admin's trail");
}
