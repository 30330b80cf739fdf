//! Account deletion: the user's provider connections go (each revoked at its provider, best effort),
//! the Toss identity and verifications go, the audit trail stays, and the user row becomes a
//! tombstone so that every JWT for that id is refused from then on, self-issued or minted by the
//! app's backend, and a backend JWT cannot bring the user back.

use serde_json::{json, Value};

use crate::app::AppState;
use crate::error::ApiError;
use crate::store::audit::NewEntry;
use crate::store::{oauth_states, toss, users};

/// Deletes `user_id`'s account; returns what was removed. `by_backend`: asked by the app's backend
/// (service key) rather than by the user with their password.
pub async fn delete(state: &AppState, user_id: &str, by_backend: bool, ip: Option<String>) -> Result<Value, ApiError> {
    let now = state.clock.now();
    let actor = if by_backend { "backend".to_string() } else { format!("user:{user_id}") };
    // Never unaudited: record the deletion before anything goes, or refuse (503).
    let started = NewEntry {
        actor: actor.clone(),
        user_id: Some(user_id.to_string()),
        action: "account_deleted".into(),
        outcome: "started".into(),
        ip: ip.clone(),
        ..Default::default()
    };
    crate::audit::require(&state.db, started, now).await?;
    // First the tombstone: from here on no request of this user gets past the auth extractor.
    if !users::tombstone(&state.db, user_id, now).await? {
        return Err(ApiError::Unauthorized("This account has been deleted.".into()));
    }
    // Every connection is revoked at its provider (best effort) and forgotten.
    let removed = state.connections.remove_all(user_id).await?;
    let identity_forgotten = toss::delete_identity(state.db.pool(), user_id).await?;
    let verifications_deleted = toss::delete_verifications_for_user(state.db.pool(), user_id).await?;
    oauth_states::delete_for_user(&state.db, user_id).await?;
    let summary = json!({
        "connections": removed,
        "toss": {"identity_forgotten": identity_forgotten, "verifications_deleted": verifications_deleted},
    });
    let entry = NewEntry {
        actor,
        user_id: Some(user_id.to_string()),
        action: "account_deleted".into(),
        outcome: "ok".into(),
        ip,
        detail: summary.clone(),
        ..Default::default()
    };
    crate::audit::record(&state.db, entry, now).await;
    tracing::info!(user_id, "account deleted");
    Ok(summary)
}
