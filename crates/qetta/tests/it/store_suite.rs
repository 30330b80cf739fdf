//! The storage behaviour, identical on SQLite and PostgreSQL.

use qetta::config::DatabaseKind;
use qetta::store::{audit, connections, meta, oauth_states, users, Db, StoreError};

use crate::both_backends;
use crate::support::{fresh_database, Backend};

async fn db(backend: Backend, dir: &std::path::Path) -> Db {
    let url = fresh_database(backend, dir).await;
    let kind = if backend.is_postgres() { DatabaseKind::Postgres } else { DatabaseKind::Sqlite };
    let db = Db::connect(&url, kind).await.unwrap();
    db.migrate().await.unwrap();
    // Migrations are idempotent.
    db.migrate().await.unwrap();
    db
}

both_backends!(users_are_unique_by_email, connection_tokens_use_optimistic_versions, oauth_state_is_consumed_once, audit_chain_detects_tampering, meta_upserts);

async fn users_are_unique_by_email(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = db(backend, dir.path()).await;
    let u = users::create(&db, "a@example.com", "$argon2id$x", 100).await.unwrap();
    assert!(matches!(users::create(&db, "a@example.com", "h", 101).await, Err(StoreError::Conflict(_))));
    assert_eq!(users::find_by_email(&db, "a@example.com").await.unwrap().unwrap().id, u.id);
    assert_eq!(users::find_by_id(&db, &u.id).await.unwrap().unwrap().email, "a@example.com");
    assert!(users::find_by_email(&db, "b@example.com").await.unwrap().is_none());
    assert!(users::ensure_external(&db, "ext-1", 5).await.unwrap());
    assert!(!users::ensure_external(&db, "ext-1", 6).await.unwrap());
}

fn new_connection<'a>(id: &'a str, user_id: &'a str, account: &'a str, tokens: &'a connections::TokenWrite) -> connections::NewConnection<'a> {
    connections::NewConnection {
        id,
        user_id,
        provider: "kftc",
        provider_user_id: account,
        account_display: Some("KB ***12"),
        label: Some("personal"),
        metadata: "{}",
        tokens,
    }
}

async fn connection_tokens_use_optimistic_versions(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = db(backend, dir.path()).await;
    let u = users::create(&db, "c@example.com", "h", 1).await.unwrap();
    let write = connections::TokenWrite {
        access_token: vec![1, 2, 3],
        refresh_token: Some(vec![4, 5]),
        key_id: "k1".into(),
        token_type: "Bearer".into(),
        scope: "login inquiry".into(),
        expires_at: Some(1000),
        refresh_expires_at: Some(2000),
    };
    assert!(connections::insert(db.pool(), &new_connection("c-1", &u.id, "1100000001", &write), 10).await.unwrap());
    // The same provider account again is not a second connection.
    assert!(!connections::insert(db.pool(), &new_connection("c-2", &u.id, "1100000001", &write), 11).await.unwrap());
    // Another provider account of the same user is.
    assert!(connections::insert(db.pool(), &new_connection("c-3", &u.id, "1100000002", &write), 12).await.unwrap());
    assert_eq!(connections::list_for_user(&db, &u.id).await.unwrap().len(), 2, "two connections to one provider");
    let c = connections::find_account(db.pool(), &u.id, "kftc", "1100000001").await.unwrap().unwrap();
    assert_eq!((c.id.as_str(), c.status.as_str(), c.label.as_deref(), c.account_display.as_deref()), ("c-1", "active", Some("personal"), Some("KB ***12")));
    assert_eq!(connections::default_for(&db, &u.id, "kftc").await.unwrap().unwrap().id, "c-3", "the newest active one");
    assert!(connections::get_for_user(&db, "someone-else", "c-1").await.unwrap().is_none(), "never another user's");
    assert!(connections::write_tokens(db.pool(), &c.id, c.version, &write, Some("1100000001"), false, 20).await.unwrap());
    // A second writer that read the same version loses.
    assert!(!connections::write_tokens(db.pool(), &c.id, c.version, &write, None, true, 21).await.unwrap());

    let after = connections::get_by_id(&db, "c-1").await.unwrap().unwrap();
    assert_eq!(after.version, c.version + 1);
    assert_eq!(after.status, "active");
    assert_eq!(after.access_token.as_deref(), Some(&[1u8, 2, 3][..]));
    assert_eq!(after.provider_user_id.as_deref(), Some("1100000001"));
    assert_eq!(after.last_refreshed_at, None);

    // A refresh without a new refresh token keeps the stored one.
    let refresh = connections::TokenWrite { access_token: vec![9], refresh_token: None, expires_at: Some(3000), refresh_expires_at: None, ..write.clone() };
    assert!(connections::write_tokens(db.pool(), &c.id, after.version, &refresh, None, true, 30).await.unwrap());
    let r = connections::get_by_id(&db, &c.id).await.unwrap().unwrap();
    assert_eq!(r.refresh_token.as_deref(), Some(&[4u8, 5][..]));
    assert_eq!(r.refresh_expires_at, Some(2000));
    assert_eq!(r.provider_user_id.as_deref(), Some("1100000001"));
    assert_eq!(r.last_refreshed_at, Some(30));

    connections::change_status(db.pool(), &c.id, connections::STATUS_NEEDS_REAUTH, 40).await.unwrap();
    assert_eq!(connections::get_by_id(&db, &c.id).await.unwrap().unwrap().status, "needs_reauth");
    assert_eq!(connections::default_for(&db, &u.id, "kftc").await.unwrap().unwrap().id, "c-3", "an active one before one needing consent");
    assert!(connections::set_label(db.pool(), &u.id, &c.id, Some("business"), 42).await.unwrap());
    assert!(!connections::set_label(db.pool(), "someone-else", &c.id, Some("x"), 42).await.unwrap(), "never another user's");
    connections::set_metadata(db.pool(), &c.id, &serde_json::json!({"accounts": 2}), 41).await.unwrap();
    assert_eq!(connections::get_by_id(&db, &c.id).await.unwrap().unwrap().metadata, r#"{"accounts":2}"#);
    assert!(connections::delete_by_id(db.pool(), &c.id).await.unwrap());
    assert!(!connections::delete_by_id(db.pool(), &c.id).await.unwrap());
    assert_eq!(connections::list_for_user(&db, &u.id).await.unwrap().len(), 1);
}

async fn oauth_state_is_consumed_once(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = db(backend, dir.path()).await;
    let u = users::create(&db, "s@example.com", "h", 1).await.unwrap();
    let s = oauth_states::OAuthState {
        state: "a".repeat(32),
        user_id: u.id.clone(),
        provider: "kftc".into(),
        flow_data: None,
        browser_binding: Some("b".into()),
        initiator_hash: Some("i".into()),
        created_at: 100,
        expires_at: 700,
        consumed_at: None,
    };
    oauth_states::insert(&db, &s).await.unwrap();
    assert!(matches!(oauth_states::insert(&db, &s).await, Err(StoreError::Conflict(_))));
    assert!(!oauth_states::exists(&db, "nope").await.unwrap());

    // Many concurrent consumers: exactly one wins.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let db = db.clone();
        let state = s.state.clone();
        tasks.push(tokio::spawn(async move { oauth_states::consume(&db, &state, 200).await.unwrap() }));
    }
    let mut winners = 0;
    for t in tasks {
        if let Some(got) = t.await.unwrap() {
            winners += 1;
            assert_eq!(got.user_id, u.id);
            assert_eq!(got.consumed_at, Some(200));
            assert_eq!(got.initiator_hash.as_deref(), Some("i"));
        }
    }
    assert_eq!(winners, 1);
    assert!(oauth_states::exists(&db, &s.state).await.unwrap());
    assert_eq!(oauth_states::purge_expired(&db, 700 + 86401).await.unwrap(), 1);
}

async fn audit_chain_detects_tampering(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = db(backend, dir.path()).await;
    assert_eq!(audit::verify(&db).await.unwrap(), audit::Verification::Intact { entries: 0 });
    let mut tasks = Vec::new();
    for i in 0..10 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            let e = audit::NewEntry {
                actor: "user:u1".into(),
                user_id: Some(if i % 2 == 0 { "u1" } else { "u2" }.into()),
                provider: Some("kftc".into()),
                action: "refresh".into(),
                outcome: "ok".into(),
                detail: serde_json::json!({"i": i}),
                ..Default::default()
            };
            audit::append(&db, &e, 1000 + i).await.unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(audit::verify(&db).await.unwrap(), audit::Verification::Intact { entries: 10 });
    let page = audit::list_for_user(&db, "u1", None, 3).await.unwrap();
    assert_eq!(page.len(), 3);
    assert!(page[0].id > page[1].id);
    let next = audit::list_for_user(&db, "u1", Some(page[2].id), 10).await.unwrap();
    assert_eq!(next.len(), 2);

    // Edit one entry's content: detected at that entry.
    let victim = page[1].id;
    sqlx::query("UPDATE audit_log SET outcome = 'error' WHERE id = $1").bind(victim).execute(db.pool()).await.unwrap();
    assert!(matches!(audit::verify(&db).await.unwrap(), audit::Verification::Broken { id, .. } if id == victim));
    sqlx::query("UPDATE audit_log SET outcome = 'ok' WHERE id = $1").bind(victim).execute(db.pool()).await.unwrap();
    // Delete one: detected at the next.
    sqlx::query("DELETE FROM audit_log WHERE id = $1").bind(victim).execute(db.pool()).await.unwrap();
    assert!(matches!(audit::verify(&db).await.unwrap(), audit::Verification::Broken { id, .. } if id > victim));
}

async fn meta_upserts(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = db(backend, dir.path()).await;
    assert_eq!(meta::get(&db, "k").await.unwrap(), None);
    meta::set(&db, "k", "1").await.unwrap();
    meta::set(&db, "k", "2").await.unwrap();
    assert_eq!(meta::get(&db, "k").await.unwrap().as_deref(), Some("2"));
}
