//! Password-guessing limits. An attempt is counted *before* the password is checked, with an
//! atomic increment (in this process, or in Redis across replicas), so that however many guesses
//! arrive at once, at most `QETTA_LOGIN_MAX_FAILURES` per email and window are ever checked
//! (4× that per client IP, which many users may share). A success clears the email's count and
//! takes back its IP hit, so an office behind one address is not locked out by its own sign-ins;
//! an attempt that was not checked (refused, or no hashing slot) takes back both hits.

use std::net::IpAddr;

use crate::app::AppState;
use crate::error::ApiError;

/// A counted attempt; finish it with one of its methods.
pub struct Attempt<'a> {
    state: &'a AppState,
    email_key: String,
    ip_key: String,
    window: i64,
    now: i64,
}

/// Counts an attempt for `email` from `ip`; 429 `too_many_attempts` (with `Retry-After`) once
/// either allowance is used up.
pub async fn begin<'a>(state: &'a AppState, email: &str, ip: IpAddr) -> Result<Attempt<'a>, ApiError> {
    let window = state.config.login_lockout.as_secs().max(1) as i64;
    let max = i64::from(state.config.login_max_failures);
    let attempt = Attempt { state, email_key: format!("login-fail:email:{email}"), ip_key: format!("login-fail:ip:{ip}"), window, now: state.clock.now() };
    let refused = |reset_in: i64| ApiError::TooManyRequests {
        code: "too_many_attempts",
        message: "Too many failed sign-in attempts; try again later.".into(),
        retry_after_secs: reset_in.max(1) as u64,
    };
    let (n, reset_in) = state.shared.hit(&attempt.email_key, window, attempt.now).await?;
    if n > max {
        attempt.undo(&attempt.email_key).await;
        return Err(refused(reset_in));
    }
    let (n, reset_in) = state.shared.hit(&attempt.ip_key, window, attempt.now).await?;
    if n > max * 4 {
        attempt.undo(&attempt.email_key).await;
        attempt.undo(&attempt.ip_key).await;
        return Err(refused(reset_in));
    }
    Ok(attempt)
}

impl Attempt<'_> {
    async fn undo(&self, key: &str) {
        if let Err(e) = self.state.shared.undo(key, self.window, self.now).await {
            tracing::warn!(error = %e, "could not take back a sign-in attempt count");
        }
    }

    /// The password was right.
    pub async fn succeeded(self) {
        if let Err(e) = self.state.shared.clear(&self.email_key, self.window, self.now).await {
            tracing::warn!(error = %e, "could not clear the sign-in failure count");
        }
        self.undo(&self.ip_key).await;
    }

    /// The password was wrong: the counts stay.
    pub fn failed(self) {}

    /// The password was not checked (no hashing slot, an internal error).
    pub async fn not_checked(self) {
        self.undo(&self.email_key).await;
        self.undo(&self.ip_key).await;
    }
}
