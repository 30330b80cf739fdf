//! Administrators and the admin dashboard's figures.
//!
//! An administrator is a *registered* account (a local password) whose email is named by
//! `QETTA_ADMIN_EMAILS` or granted with `qetta admin grant EMAIL`. Grants live in the `admins`
//! table (migration 0009), each bound to the account that had the email when it was made, so an
//! account deleted and registered again by someone else is not an administrator. Every admin
//! route takes an [`AdminUser`], which looks the grant up on every request: a revocation takes
//! effect at the next request, on every replica.
//!
//! `QETTA_ADMIN_EMAILS` is written to the table at every start ([`sync_configured`]): listed
//! emails are granted (source `env`), env grants no longer listed are revoked. A listed email
//! without an account yet is reported and bound at the next start after it registers: it is not
//! granted to whoever registers it first in the meantime.

pub mod recorder;
pub mod stats;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::app::AppState;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::store::admin::{self, SOURCE_CLI, SOURCE_ENV};
use crate::store::audit::NewEntry;
use crate::store::{Db, StoreError};

/// The caller, a user who is an administrator now. Unauthenticated: 401; not an admin: 403
/// `forbidden`.
#[derive(Debug, Clone)]
pub struct AdminUser {
    pub id: String,
}

impl AdminUser {
    /// The audit actor of what this admin does.
    pub fn actor(&self) -> String {
        format!("admin:{}", self.id)
    }
}

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let user = AuthUser::from_request_parts(parts, state).await?;
        if !admin::is_admin(&state.db, &user.id).await? {
            return Err(ApiError::Forbidden("This needs an administrator (QETTA_ADMIN_EMAILS or `qetta admin grant`).".into()));
        }
        Ok(AdminUser { id: user.id })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("{0:?} is not an email address: {1}")]
    BadEmail(String, crate::auth::password::CredentialError),
    #[error("no account is registered with {0}: register it first (a grant is bound to the account that has the email when it is made)")]
    NoAccount(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn normalized(email: &str) -> Result<String, GrantError> {
    crate::auth::password::normalize_email(email).map_err(|e| GrantError::BadEmail(email.to_string(), e))
}

fn entry(actor: &str, action: &str, email: &str, user_id: Option<&str>, detail: serde_json::Value) -> NewEntry {
    let mut detail = detail;
    detail["email"] = serde_json::json!(email);
    NewEntry { actor: actor.into(), user_id: user_id.map(str::to_string), action: action.into(), outcome: "ok".into(), detail, ..Default::default() }
}

/// `qetta admin grant EMAIL`: makes the registered account with `email` an administrator.
/// Returns the account id.
pub async fn grant(db: &Db, email: &str, now: i64) -> Result<String, GrantError> {
    let email = normalized(email)?;
    let user_id = admin::account_with_email(db, &email).await?.ok_or_else(|| GrantError::NoAccount(email.clone()))?;
    let e = entry("cli:admin-grant", "admin_grant", &email, Some(&user_id), serde_json::json!({"source": SOURCE_CLI}));
    admin::put(db, &email, Some(&user_id), SOURCE_CLI, now, &e).await?;
    Ok(user_id)
}

/// `qetta admin revoke EMAIL`: whether there was a grant.
pub async fn revoke(db: &Db, email: &str, now: i64) -> Result<bool, GrantError> {
    let email = normalized(email)?;
    let user_id = admin::get(db, &email).await?.and_then(|a| a.user_id);
    let e = entry("cli:admin-revoke", "admin_revoke", &email, user_id.as_deref(), serde_json::Value::Object(Default::default()));
    Ok(admin::remove(db, &email, now, &e).await?)
}

/// Writes `QETTA_ADMIN_EMAILS` into the table (at every start): grants the listed emails that
/// have an account (bound to it), revokes env grants that are no longer listed, and leaves CLI
/// grants alone. Returns a warning per listed email that has no account yet.
pub async fn sync_configured(db: &Db, emails: &[String], now: i64) -> Result<Vec<String>, StoreError> {
    const ACTOR: &str = "config:QETTA_ADMIN_EMAILS";
    let mut warnings = Vec::new();
    for grant in admin::list(db).await? {
        if grant.source == SOURCE_ENV && !emails.contains(&grant.email) {
            let e = entry(ACTOR, "admin_revoke", &grant.email, grant.user_id.as_deref(), serde_json::json!({"reason": "no longer listed"}));
            admin::remove(db, &grant.email, now, &e).await?;
        }
    }
    for email in emails {
        let account = admin::account_with_email(db, email).await?;
        let existing = admin::get(db, email).await?;
        match (&existing, &account) {
            // A CLI grant stays as it is; an env grant already bound to this account too.
            (Some(g), _) if g.source == SOURCE_CLI => {}
            (Some(g), Some(id)) if g.user_id.as_deref() == Some(id.as_str()) => {}
            (_, Some(id)) => {
                let e = entry(ACTOR, "admin_grant", email, Some(id), serde_json::json!({"source": SOURCE_ENV}));
                admin::put(db, email, Some(id), SOURCE_ENV, now, &e).await?;
            }
            (_, None) => {
                if existing.as_ref().is_some_and(|g| g.user_id.is_some()) {
                    // The bound account is gone (deleted): the grant goes with it.
                    let e = entry(ACTOR, "admin_revoke", email, None, serde_json::json!({"reason": "the account was deleted"}));
                    admin::remove(db, email, now, &e).await?;
                }
                // Masked: log lines carry no personal data (`qetta admin list` shows the grants).
                let shown = crate::mask::mask_email(email);
                warnings.push(format!(
                    "QETTA_ADMIN_EMAILS names {shown}, which has no account: register it, then restart (it is not granted to whoever registers it meanwhile)"
                ));
            }
        }
    }
    Ok(warnings)
}
