//! The storage behaviour, identical on SQLite and PostgreSQL.

use qetta::config::DatabaseKind;
use qetta::store::{audit, connections, meta, oauth_states, toss, users, Db, StoreError};

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

both_backends!(
    users_are_unique_by_email,
    connection_tokens_use_optimistic_versions,
    oauth_state_is_consumed_once,
    audit_chain_detects_tampering,
    audit_chains_take_concurrent_writers,
    an_audit_entry_the_database_refuses_fails_alone,
    audit_entries_from_before_the_chains_still_verify,
    background_work_never_takes_the_request_path_s_connections,
    toss_status_reads_match_the_reads_one_by_one,
    meta_upserts
);

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
    // Delete one: detected at the next of its chain (u1's).
    let row = |id: i64| {
        let db = db.clone();
        async move {
            let r: (i64, String, String, String) =
                sqlx::query_as("SELECT at, outcome, detail, hash FROM audit_log WHERE id = $1").bind(id).fetch_one(db.pool()).await.unwrap();
            r
        }
    };
    let saved = row(victim).await;
    let (saved_prev,): (String,) = sqlx::query_as("SELECT prev_hash FROM audit_log WHERE id = $1").bind(victim).fetch_one(db.pool()).await.unwrap();
    sqlx::query("DELETE FROM audit_log WHERE id = $1").bind(victim).execute(db.pool()).await.unwrap();
    assert!(matches!(audit::verify(&db).await.unwrap(), audit::Verification::Broken { id, .. } if id > victim));
    // Put back as it was: intact again (the check is of the content, not of the rows' history).
    let chain = audit::chain_of(Some("u1"));
    let overriding = if backend.is_postgres() { "OVERRIDING SYSTEM VALUE" } else { "" };
    sqlx::query(&format!(
        "INSERT INTO audit_log (id, at, actor, user_id, provider, action, outcome, detail, prev_hash, hash, chain) {overriding} \
         VALUES ($1, $2, 'user:u1', 'u1', 'kftc', 'refresh', $3, $4, $5, $6, $7)"
    ))
    .bind(victim)
    .bind(saved.0)
    .bind(&saved.1)
    .bind(&saved.2)
    .bind(&saved_prev)
    .bind(&saved.3)
    .bind(chain)
    .execute(db.pool())
    .await
    .unwrap_or_else(|e| panic!("restore: {e}"));
    assert_eq!(audit::verify(&db).await.unwrap(), audit::Verification::Intact { entries: 10 });

    // Reorder two entries of one chain (swap their contents): detected.
    let (a, b) = (page[2].id, page[1].id);
    let (ra, rb) = (row(a).await, row(b).await);
    let swap = |id: i64, r: (i64, String, String, String)| {
        let db = db.clone();
        async move {
            sqlx::query("UPDATE audit_log SET at = $1, outcome = $2, detail = $3 WHERE id = $4")
                .bind(r.0)
                .bind(r.1)
                .bind(r.2)
                .bind(id)
                .execute(db.pool())
                .await
                .unwrap();
        }
    };
    swap(a, rb.clone()).await;
    swap(b, ra.clone()).await;
    assert!(matches!(audit::verify(&db).await.unwrap(), audit::Verification::Broken { id, .. } if id == a), "a reordering is detected");
    swap(a, ra).await;
    swap(b, rb).await;
    assert_eq!(audit::verify(&db).await.unwrap(), audit::Verification::Intact { entries: 10 });

    // Move an entry to another chain: detected.
    sqlx::query("UPDATE audit_log SET chain = $1 WHERE id = $2").bind((chain + 1) % audit::CHAINS).bind(victim).execute(db.pool()).await.unwrap();
    assert!(matches!(audit::verify(&db).await.unwrap(), audit::Verification::Broken { .. }), "a moved entry is detected");
    sqlx::query("UPDATE audit_log SET chain = $1 WHERE id = $2").bind(chain).bind(victim).execute(db.pool()).await.unwrap();

    // Remove the newest entry of a chain (nothing after it links to it): the head tells.
    let newest = page[0].id;
    sqlx::query("DELETE FROM audit_log WHERE id = $1").bind(newest).execute(db.pool()).await.unwrap();
    assert!(matches!(audit::verify(&db).await.unwrap(), audit::Verification::Broken { id, .. } if id == newest), "a removed tail is detected");
}

/// Many users' entries written at once from two handles (two replicas' pools) land in several
/// chains, and the log verifies while they are being written.
async fn audit_chains_take_concurrent_writers(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(backend, dir.path()).await;
    let kind = if backend.is_postgres() { DatabaseKind::Postgres } else { DatabaseKind::Sqlite };
    let db = Db::connect(&url, kind).await.unwrap();
    db.migrate().await.unwrap();
    // SQLite has one writing process: its second handle is the same pool.
    let other = if backend.is_postgres() { Db::connect(&url, kind).await.unwrap() } else { db.clone() };
    let mut tasks = Vec::new();
    for w in 0..16 {
        let db = if w % 2 == 0 { db.clone() } else { other.clone() };
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let user = format!("user-{w}-{}", i % 5);
                let e =
                    audit::NewEntry { actor: format!("user:{user}"), user_id: Some(user), action: "login".into(), outcome: "ok".into(), ..Default::default() };
                audit::append(&db, &e, 1000 + i).await.unwrap();
            }
        }));
    }
    // Verified in the middle of the writes: a consistent snapshot, never a false break.
    for _ in 0..3 {
        assert!(matches!(audit::verify(&db).await.unwrap(), audit::Verification::Intact { .. }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(audit::verify(&db).await.unwrap(), audit::Verification::Intact { entries: 400 });
    let (chains,): (i64,) = sqlx::query_as("SELECT COUNT(DISTINCT chain) FROM audit_log").fetch_one(db.pool()).await.unwrap();
    assert!(chains > 8, "entries spread over the chains: {chains}");
    // Entries without a user go to some chain too.
    audit::append(&db, &audit::NewEntry { actor: "service".into(), action: "launch".into(), outcome: "ok".into(), ..Default::default() }, 2000).await.unwrap();
    assert_eq!(audit::verify(&db).await.unwrap(), audit::Verification::Intact { entries: 401 });
}

/// Background work's handle ([`Db::background`]) writes the same data under the same rules (the
/// audit chains stay intact with writers on both handles); on PostgreSQL its connections are a
/// pool of their own, so with every connection of the request path's pool taken, background work
/// goes on, and the other way round.
async fn background_work_never_takes_the_request_path_s_connections(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = db(backend, dir.path()).await;
    let background = db.background();
    let writes = (0..24).map(|i| {
        let db = if i % 2 == 0 { db.clone() } else { background.clone() };
        tokio::spawn(async move {
            let user = format!("user-{}", i % 3);
            let e = audit::NewEntry { actor: format!("user:{user}"), user_id: Some(user), action: "login".into(), outcome: "ok".into(), ..Default::default() };
            audit::append(&db, &e, 1000 + i).await
        })
    });
    for w in futures::future::join_all(writes).await {
        w.unwrap().unwrap();
    }
    assert_eq!(audit::verify(&background).await.unwrap(), audit::Verification::Intact { entries: 24 });
    if !backend.is_postgres() {
        // SQLite: one pool (an in-memory database cannot be shared by a second), one writer.
        assert!(db.background_pool().is_none());
        return;
    }
    let quick = std::time::Duration::from_secs(2);
    for (n, (busy, other)) in [(&db, &background), (&background, &db)].into_iter().enumerate() {
        let mut held = Vec::new();
        while let Ok(Ok(conn)) = tokio::time::timeout(std::time::Duration::from_millis(300), busy.pool().acquire()).await {
            held.push(conn);
        }
        assert!(held.len() >= 8, "the busy pool gave {} connections", held.len());
        tokio::time::timeout(quick, other.ping()).await.expect("the other pool answers at once").unwrap();
        tokio::time::timeout(quick, users::create(other, &format!("pools-{n}@example.com"), "hash", 1000)).await.expect("a write at once").unwrap();
        drop(held);
    }
    assert_eq!(db.max_connections(), 16);
    assert_eq!(background.max_connections(), 8);
}

/// The one statement behind Toss's status entry reads what the three reads it replaced read: with
/// nothing stored, and with an identity, a service row and a test outcome.
async fn toss_status_reads_match_the_reads_one_by_one(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = db(backend, dir.path()).await;
    let user = users::create(&db, "toss-status@example.com", "hash", 1000).await.unwrap();
    let empty = toss::status_reads(&db, &user.id, "toss", "toss.last_test").await.unwrap();
    assert!(empty.identity.is_none() && empty.service.is_none() && empty.last_test.is_none(), "{empty:?}");

    toss::ensure_service_row(&db, "toss", 1000).await.unwrap();
    let identity = toss::Identity {
        user_id: user.id.clone(),
        tx_id: "tx-1".into(),
        ci: vec![1, 2, 3],
        di: vec![4, 5],
        name: vec![6],
        birthday: vec![7, 8],
        signature: vec![9],
        phone: None,
        gender: "F".into(),
        nationality: "LOCAL".into(),
        age_group: Some("30s".into()),
        key_id: "k1".into(),
        verified_at: 1234,
        version: 2,
    };
    toss::upsert_identity(db.pool(), &identity).await.unwrap();
    meta::set(&db, "toss.last_test", r#"{"ok":true}"#).await.unwrap();
    // Another user's identity is not the caller's.
    let other = users::create(&db, "toss-other@example.com", "hash", 1000).await.unwrap();
    assert!(toss::status_reads(&db, &other.id, "toss", "toss.last_test").await.unwrap().identity.is_none());

    let all = toss::status_reads(&db, &user.id, "toss", "toss.last_test").await.unwrap();
    let one = toss::get_identity(&db, &user.id).await.unwrap().unwrap();
    let got = all.identity.expect("the identity");
    assert_eq!((&got.user_id, &got.tx_id, &got.ci, &got.di, &got.name, &got.birthday), (&one.user_id, &one.tx_id, &one.ci, &one.di, &one.name, &one.birthday));
    assert_eq!(
        (&got.signature, &got.phone, &got.gender, &got.nationality, &got.age_group),
        (&one.signature, &one.phone, &one.gender, &one.nationality, &one.age_group)
    );
    assert_eq!((&got.key_id, got.verified_at, got.version), (&one.key_id, 1234, one.version));
    let service = all.service.expect("the service row");
    let alone = toss::get_service_row(&db, "toss").await.unwrap().unwrap();
    assert_eq!(format!("{service:?}"), format!("{alone:?}"));
    assert_eq!(all.last_test.as_deref(), Some(r#"{"ok":true}"#));
}

/// Entries appended at the same moment are written together on PostgreSQL (group commit); one
/// that the database refuses (PostgreSQL takes no NUL in text) fails only itself, and every other
/// caller gets its own entry's id.
async fn an_audit_entry_the_database_refuses_fails_alone(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = db(backend, dir.path()).await;
    let writes = (0..24).map(|i| {
        let db = db.clone();
        tokio::spawn(async move {
            let user = format!("user-{i}");
            let action = if i == 7 { "bad\u{0}action".to_string() } else { "login".to_string() };
            let e = audit::NewEntry { actor: format!("user:{user}"), user_id: Some(user), action, outcome: "ok".into(), ..Default::default() };
            audit::append(&db, &e, 1000).await
        })
    });
    let outcomes: Vec<_> = futures::future::join_all(writes).await.into_iter().map(|r| r.unwrap()).collect();
    let mut ids: Vec<i64> = outcomes.iter().enumerate().filter(|(i, _)| *i != 7).map(|(_, r)| *r.as_ref().expect("a good entry is written")).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 23, "every good entry has an id of its own");
    let written = if backend.is_postgres() {
        assert!(outcomes[7].is_err(), "PostgreSQL refuses a NUL in text");
        23
    } else {
        24
    };
    assert_eq!(audit::verify(&db).await.unwrap(), audit::Verification::Intact { entries: written });
    for (i, r) in outcomes.iter().enumerate().filter(|(i, _)| *i != 7) {
        let (user,): (Option<String>,) =
            sqlx::query_as("SELECT user_id FROM audit_log WHERE id = $1").bind(r.as_ref().unwrap()).fetch_one(db.pool()).await.unwrap();
        assert_eq!(user.as_deref(), Some(format!("user-{i}").as_str()), "the id returned is the caller's own entry");
    }
}

/// The single chain of old, written as the service wrote it before migration 0011 (its hash
/// function, spelled out here on purpose), verifies after the migration and goes on as chain 0.
async fn audit_entries_from_before_the_chains_still_verify(backend: Backend) {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(backend, dir.path()).await;
    let kind = if backend.is_postgres() { DatabaseKind::Postgres } else { DatabaseKind::Sqlite };
    let db = Db::connect(&url, kind).await.unwrap();
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(if backend.is_postgres() { "postgres" } else { "sqlite" });
    let mut before = sqlx::migrate::Migrator::new(folder).await.unwrap();
    before.migrations = std::borrow::Cow::Owned(before.migrations.iter().filter(|m| m.version <= 10).cloned().collect());
    before.run(db.pool()).await.unwrap();
    let old_hash = |prev: &str, at: i64, actor: &str, user: &str, action: &str| {
        let mut h = sha2::Sha256::new();
        let mut field = |s: Option<&str>| match s {
            None => h.update(b"-"),
            Some(s) => {
                h.update((s.len() as u64).to_be_bytes());
                h.update(s.as_bytes());
            }
        };
        for f in [Some(prev), Some(&at.to_string()), Some(actor), Some(user), None, None, Some(action), Some("ok"), None, None, Some("{}")] {
            field(f);
        }
        hex::encode(h.finalize())
    };
    let mut prev = audit::GENESIS.to_string();
    for i in 0..5i64 {
        let user = format!("old-{i}");
        let hash = old_hash(&prev, 100 + i, "system", &user, "login");
        sqlx::query(
            "INSERT INTO audit_log (at, actor, user_id, action, outcome, detail, prev_hash, hash) VALUES ($1, 'system', $2, 'login', 'ok', '{}', $3, $4)",
        )
        .bind(100 + i)
        .bind(&user)
        .bind(&prev)
        .bind(&hash)
        .execute(db.pool())
        .await
        .unwrap();
        prev = hash;
    }
    db.migrate().await.unwrap();
    assert_eq!(audit::verify(&db).await.unwrap(), audit::Verification::Intact { entries: 5 });
    for i in 0..20 {
        let e =
            audit::NewEntry { actor: "system".into(), user_id: Some(format!("new-{i}")), action: "login".into(), outcome: "ok".into(), ..Default::default() };
        audit::append(&db, &e, 200 + i).await.unwrap();
    }
    assert_eq!(audit::verify(&db).await.unwrap(), audit::Verification::Intact { entries: 25 });
    // The old entries are still guarded: an edit among them is found.
    sqlx::query("UPDATE audit_log SET action = 'logout' WHERE user_id = 'old-2'").execute(db.pool()).await.unwrap();
    assert!(matches!(audit::verify(&db).await.unwrap(), audit::Verification::Broken { .. }));
}

async fn meta_upserts(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = db(backend, dir.path()).await;
    assert_eq!(meta::get(&db, "k").await.unwrap(), None);
    meta::set(&db, "k", "1").await.unwrap();
    meta::set(&db, "k", "2").await.unwrap();
    assert_eq!(meta::get(&db, "k").await.unwrap().as_deref(), Some("2"));
}
