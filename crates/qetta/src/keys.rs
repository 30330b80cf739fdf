//! Encryption keys: where they come from, the start-up check against what is stored, and
//! online rotation (`qetta keys rotate`).

use secrecy::ExposeSecret;

use crate::config::Config;
use crate::store::{connections, meta, toss, Db, StoreError};
use crate::tokens::aad;
use crate::vault::{KeyRing, Vault, VaultError};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot read or create the key file {path}: {source}")]
    File { path: String, source: std::io::Error },
    #[error(
        "stored data is encrypted with key {0:?}, which is not in the configured keys; add it to QETTA_ENCRYPTION_KEYS (after the active key) and restart"
    )]
    MissingKey(String),
    #[error("the configured key {0:?} is not the key that encrypted the stored data (its fingerprint differs); restore the original key")]
    WrongKey(String),
}

/// The configured key ring, or in embedded mode one generated into `data_dir/encryption_keys`.
/// Returns the ring and whether it came from the generated file.
pub fn load_ring(config: &Config) -> Result<(KeyRing, bool), KeyError> {
    if let Some(spec) = &config.encryption_keys {
        return Ok((KeyRing::parse(spec.expose_secret())?, false));
    }
    let dir = &config.data_dir;
    let file_err = |source| KeyError::File { path: dir.join("encryption_keys").display().to_string(), source };
    crate::local_secrets::create_private_dir(dir).map_err(file_err)?;
    let (spec, _) =
        crate::local_secrets::load_or_create_with(dir, "encryption_keys", || KeyRing::generate_entry(&format!("k{}", chrono::Utc::now().format("%Y%m%d"))))
            .map_err(file_err)?;
    Ok((KeyRing::parse(&spec)?, true))
}

fn fingerprint_key(id: &str) -> String {
    format!("vault.key.{id}.fingerprint")
}

/// Refuses keys that cannot decrypt what is stored: every key id in use must be configured, and
/// every configured key whose fingerprint was recorded must still be the same key. Records the
/// fingerprints of the configured keys.
pub async fn verify_against_store(db: &Db, ring: &KeyRing) -> Result<(), KeyError> {
    let in_use = connections::key_ids_in_use(db)
        .await?
        .into_iter()
        .chain(crate::store::webhooks::key_ids_in_use(db).await?)
        .chain(crate::store::transactions::key_ids_in_use(db).await?);
    for id in in_use {
        if !ring.ids().any(|k| k == id) {
            return Err(KeyError::MissingKey(id));
        }
    }
    for id in ring.ids() {
        let fp = ring.fingerprint(id).expect("configured key");
        match meta::get(db, &fingerprint_key(id)).await? {
            Some(stored) if stored != fp => return Err(KeyError::WrongKey(id.to_string())),
            Some(_) => {}
            None => meta::set(db, &fingerprint_key(id), &fp).await?,
        }
    }
    Ok(())
}

/// What a rotation did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RotationReport {
    pub resealed: u64,
    /// Rows that changed while we worked (a refresh wrote them, already on the active key).
    pub skipped: u64,
    pub remaining: u64,
}

/// Re-encrypts every connection, the Toss service token, every Toss identity and every webhook
/// endpoint's secret that is not on
/// the active key, `batch` rows at a time. Safe while
/// the service runs (a row written meanwhile is left to its writer) and resumable: run it again.
pub async fn rotate(db: &Db, vault: &Vault, batch: i64) -> Result<RotationReport, KeyError> {
    let active = vault.active_key_id().to_string();
    let mut report = RotationReport::default();
    let mut seen = std::collections::HashSet::new();
    loop {
        let ids = connections::ids_not_on_key(db, &active, batch).await?;
        let fresh: Vec<String> = ids.into_iter().filter(|id| seen.insert(id.clone())).collect();
        if fresh.is_empty() {
            break;
        }
        for id in fresh {
            let Some(row) = connections::get_by_id(db, &id).await? else { continue };
            let Some(access) = row.access_token.as_deref() else { continue };
            let access = vault.seal(&vault.open(access, aad(&row, "access_token"))?, aad(&row, "access_token"));
            let refresh = match row.refresh_token.as_deref() {
                Some(r) => Some(vault.seal(&vault.open(r, aad(&row, "refresh_token"))?, aad(&row, "refresh_token"))),
                None => None,
            };
            if connections::reseal(db, &row.id, row.version, &access, refresh.as_deref(), &active).await? {
                report.resealed += 1;
            } else {
                report.skipped += 1;
            }
        }
    }
    rotate_toss(db, vault, batch, &mut report).await?;
    rotate_webhooks(db, vault, batch, &mut report).await?;
    rotate_transactions(db, vault, batch, &mut report).await?;
    report.remaining = connections::ids_not_on_key(db, &active, 1_000_000).await?.len() as u64
        + crate::store::webhooks::endpoints_not_on_key(db, &active, 1_000_000).await?.len() as u64
        + toss::service_tokens_not_on_key(db, &active).await?.len() as u64
        + toss::identities_not_on_key(db, &active, 1_000_000).await?.len() as u64
        + crate::store::transactions::not_on_key(db, &active, 1_000_000).await?.len() as u64;
    Ok(report)
}

/// Re-encrypts the stored transactions' memo and branch (`sync`).
async fn rotate_transactions(db: &Db, vault: &Vault, batch: i64, report: &mut RotationReport) -> Result<(), KeyError> {
    use crate::store::transactions as tx;
    let active = vault.active_key_id().to_string();
    let mut seen = std::collections::HashSet::new();
    loop {
        let rows: Vec<tx::StoredTransaction> =
            tx::not_on_key(db, &active, batch).await?.into_iter().filter(|t| seen.insert((t.connection_id.clone(), t.fingerprint.clone()))).collect();
        if rows.is_empty() {
            return Ok(());
        }
        for t in rows {
            let row = crate::sync::row_id(&t.connection_id, &t.fingerprint);
            let reseal = |blob: &[u8], field: &str| -> Result<Vec<u8>, VaultError> {
                let a = crate::sync::aad(&row, field);
                Ok(vault.seal(&vault.open(blob, a)?, crate::sync::aad(&row, field)))
            };
            let (p, b) = (reseal(&t.print_content, "print_content")?, reseal(&t.branch_name, "branch_name")?);
            if tx::reseal(db, &t, &p, &b, &active).await? {
                report.resealed += 1;
            } else {
                report.skipped += 1;
            }
        }
    }
}

/// Re-encrypts the webhook endpoints' signing secrets (current and, during an overlap, previous).
async fn rotate_webhooks(db: &Db, vault: &Vault, batch: i64, report: &mut RotationReport) -> Result<(), KeyError> {
    use crate::events::delivery::secret_aad;
    use crate::store::webhooks as hooks;
    let active = vault.active_key_id().to_string();
    let mut seen = std::collections::HashSet::new();
    loop {
        let rows: Vec<hooks::Endpoint> = hooks::endpoints_not_on_key(db, &active, batch).await?.into_iter().filter(|e| seen.insert(e.id.clone())).collect();
        if rows.is_empty() {
            return Ok(());
        }
        for e in rows {
            let reseal = |blob: &[u8], field: &str| -> Result<Vec<u8>, VaultError> {
                Ok(vault.seal(&vault.open(blob, secret_aad(&e.id, field))?, secret_aad(&e.id, field)))
            };
            let secret = reseal(&e.secret, "secret")?;
            let previous = match e.previous_secret.as_deref() {
                Some(p) => Some(reseal(p, "previous_secret")?),
                None => None,
            };
            if hooks::reseal_endpoint(db, &e.id, &e.secret, &secret, previous.as_deref(), &active).await? {
                report.resealed += 1;
            } else {
                report.skipped += 1;
            }
        }
    }
}

/// Re-encrypts the shared Toss service token and the sealed Toss identities.
async fn rotate_toss(db: &Db, vault: &Vault, batch: i64, report: &mut RotationReport) -> Result<(), KeyError> {
    let active = vault.active_key_id().to_string();
    for provider in toss::service_tokens_not_on_key(db, &active).await? {
        let Some(row) = toss::read_service_row(db.pool(), &provider, false).await? else { continue };
        if !row.has_token() {
            continue;
        }
        let aad = crate::toss_service::service_token_aad();
        let sealed = vault.seal(&vault.open(&row.access_token, aad)?, aad);
        if toss::reseal_service_token(db, &provider, row.version, &sealed, &active).await? {
            report.resealed += 1;
        } else {
            report.skipped += 1;
        }
    }
    let mut seen = std::collections::HashSet::new();
    loop {
        let ids = toss::identities_not_on_key(db, &active, batch).await?;
        let fresh: Vec<String> = ids.into_iter().filter(|id| seen.insert(id.clone())).collect();
        if fresh.is_empty() {
            return Ok(());
        }
        for user_id in fresh {
            let Some(mut i) = toss::get_identity(db, &user_id).await? else { continue };
            let reseal = |blob: &[u8], field: &str| -> Result<Vec<u8>, VaultError> {
                let aad = crate::toss_service::identity_aad(&user_id, field);
                Ok(vault.seal(&vault.open(blob, aad)?, aad))
            };
            i.ci = reseal(&i.ci, "ci")?;
            i.di = reseal(&i.di, "di")?;
            i.name = reseal(&i.name, "name")?;
            i.birthday = reseal(&i.birthday, "birthday")?;
            i.signature = reseal(&i.signature, "signature")?;
            i.phone = match i.phone.as_deref() {
                Some(p) => Some(reseal(p, "phone")?),
                None => None,
            };
            i.key_id = active.clone();
            if toss::reseal_identity(db, &i).await? {
                report.resealed += 1;
            } else {
                report.skipped += 1;
            }
        }
    }
}
