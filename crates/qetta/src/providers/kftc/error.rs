//! KFTC outcomes, classified by what the caller must do about them (SPEC A12).
//!
//! KFTC answers errors as HTTP 200 with `rsp_code`/`rsp_message` (and for bank-relayed calls
//! `bank_rsp_code`), so classification is by code, never by HTTP status.

/// A failed KFTC call.
#[derive(Debug, thiserror::Error)]
pub enum KftcError {
    /// O0003: the access token expired — refresh and retry once.
    #[error("KFTC: access token expired (O0003)")]
    TokenExpired,
    /// O0002 on an API, O0014/O0015 on refresh, O0001 [3002110]/invalid grant: the user must
    /// consent again.
    #[error("KFTC refused the grant ({code})")]
    GrantDead { code: String },
    /// O0013 (and the usage-plan codes O0008/O0009): slow down.
    #[error("KFTC rate limit ({code})")]
    RateLimited { code: String },
    /// A0326: the bank_tran_id was used today already — regenerate and retry once.
    #[error("KFTC: duplicate bank_tran_id (A0326)")]
    DuplicateTranId,
    /// A0002: the bank failed; `bank_rsp_code` says why.
    #[error("the bank answered {bank_code}: {message}")]
    Bank { bank_code: String, message: String },
    /// A0007 / A0017: KFTC or the bank timed out.
    #[error("KFTC timed out ({code})")]
    ProviderTimeout { code: String },
    /// O0001 with client credentials, redirect URI or scope problems: our registration is wrong.
    #[error("KFTC rejected our client configuration ({code}: {message})")]
    Config { code: String, message: String },
    /// Any other rsp_code.
    #[error("KFTC answered {code}: {message}")]
    Other { code: String, message: String },
    #[error("KFTC did not answer in time")]
    Timeout,
    /// The connection could not be made: the request provably never reached KFTC.
    #[error("KFTC could not be reached")]
    Connect,
    /// The connection failed after the request may have reached KFTC (reading the answer).
    #[error("the connection to KFTC broke")]
    Network,
    #[error("KFTC answered HTTP {status}")]
    Http { status: u16 },
    #[error("KFTC sent a response we cannot read: {0}")]
    Decode(String),
    /// KFTC answered HTTP 200 with something that is not its JSON (an HTML maintenance page, a
    /// truncated body): a failing provider, counted by the breaker.
    #[error("KFTC sent an answer that is not its JSON ({0})")]
    Unreadable(String),
    /// A failure on our side while preparing the call (e.g. storage for `bank_tran_id`): never
    /// shown to clients as a provider message.
    #[error("internal: {0}")]
    Internal(String),
    /// Our circuit breaker is open after repeated failures.
    #[error("KFTC is failing; calls are paused for {retry_after_secs} s")]
    CircuitOpen { retry_after_secs: u64 },
}

impl KftcError {
    /// Classifies a non-success `rsp_code` (and the bank code for A0002).
    pub fn from_codes(rsp_code: &str, rsp_message: &str, bank_rsp_code: Option<&str>, bank_rsp_message: Option<&str>) -> Self {
        let code = rsp_code.to_string();
        let message = rsp_message.to_string();
        match rsp_code {
            "O0003" => Self::TokenExpired,
            "O0002" | "O0014" | "O0015" => Self::GrantDead { code },
            "O0008" | "O0009" | "O0013" => Self::RateLimited { code },
            "A0326" => Self::DuplicateTranId,
            "A0007" | "A0017" => Self::ProviderTimeout { code },
            "A0002" => Self::Bank {
                bank_code: bank_rsp_code.unwrap_or("").to_string(),
                message: bank_rsp_message.filter(|m| !m.is_empty()).unwrap_or(rsp_message).to_string(),
            },
            // Code reuse / expired authorization session: the consent must be redone.
            "O0001" if rsp_message.contains("3002110") => Self::GrantDead { code },
            "O0001" if ["3000201", "3000114", "3000115", "3000116"].iter().any(|d| rsp_message.contains(d)) => Self::Config { code, message },
            _ => Self::Other { code, message },
        }
    }

    /// A short label of the failure for metrics (`timeout`, `http_503`, the provider code …).
    pub fn kind(&self) -> String {
        match self {
            Self::Timeout => "timeout".into(),
            Self::Connect => "connect".into(),
            Self::Network => "network".into(),
            Self::Http { status } => format!("http_{status}"),
            Self::Decode(_) => "decode".into(),
            Self::Unreadable(_) => "unreadable".into(),
            Self::Internal(_) => "internal".into(),
            Self::CircuitOpen { .. } => "circuit_open".into(),
            other => other.provider_code().unwrap_or_else(|| "error".into()),
        }
    }

    /// The provider's code, for the `provider_code` of our error body.
    pub fn provider_code(&self) -> Option<String> {
        match self {
            Self::TokenExpired => Some("O0003".into()),
            Self::DuplicateTranId => Some("A0326".into()),
            Self::GrantDead { code } | Self::RateLimited { code } | Self::ProviderTimeout { code } => Some(code.clone()),
            Self::Config { code, .. } | Self::Other { code, .. } => Some(code.clone()),
            Self::Bank { bank_code, .. } => Some(format!("A0002/{bank_code}")),
            _ => None,
        }
    }

    /// Worth another attempt of a read-only call (fresh bank_tran_id): upstream trouble, not a
    /// verdict about the request.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Timeout | Self::Connect | Self::Network | Self::ProviderTimeout { .. } | Self::Unreadable(_))
            || matches!(self, Self::Http { status } if *status >= 500)
    }

    /// Counts against the circuit breaker.
    pub fn is_upstream_failure(&self) -> bool {
        self.is_retryable()
    }
}

impl From<KftcError> for crate::error::ApiError {
    fn from(e: KftcError) -> Self {
        use crate::error::ApiError;
        let provider_code = e.provider_code();
        match e {
            KftcError::GrantDead { .. } => ApiError::conflict("reauth_required", "KFTC no longer accepts this connection: connect your bank accounts again."),
            KftcError::RateLimited { .. } => ApiError::TooManyRequests {
                code: "upstream_rate_limited",
                message: "KFTC is limiting our calls; try again in a minute.".into(),
                retry_after_secs: 60,
            },
            KftcError::Bank { message, .. } => {
                ApiError::Upstream { code: "bank_error", message: format!("The bank could not answer: {message}"), provider_code }
            }
            KftcError::Timeout | KftcError::ProviderTimeout { .. } => ApiError::UpstreamTimeout { message: "KFTC or the bank did not answer in time.".into() },
            KftcError::CircuitOpen { retry_after_secs } => {
                ApiError::UpstreamUnavailable { message: "KFTC is failing right now; calls are paused briefly.".into(), retry_after_secs }
            }
            KftcError::Unreadable(_) | KftcError::Decode(_) => {
                tracing::warn!(error = %e, "KFTC sent an unreadable answer");
                ApiError::Upstream { code: "upstream_invalid", message: "KFTC sent an answer we cannot read.".into(), provider_code: None }
            }
            KftcError::Internal(detail) => ApiError::internal(anyhow::anyhow!("preparing a KFTC call: {detail}")),
            other => ApiError::Upstream { code: "upstream_error", message: format!("KFTC call failed: {other}"), provider_code },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::KftcError;

    #[test]
    fn codes_are_classified() {
        assert!(matches!(KftcError::from_codes("O0003", "", None, None), KftcError::TokenExpired));
        for c in ["O0002", "O0014", "O0015"] {
            assert!(matches!(KftcError::from_codes(c, "", None, None), KftcError::GrantDead { .. }), "{c}");
        }
        assert!(matches!(KftcError::from_codes("O0013", "", None, None), KftcError::RateLimited { .. }));
        assert!(matches!(KftcError::from_codes("A0326", "", None, None), KftcError::DuplicateTranId));
        assert!(matches!(KftcError::from_codes("O0001", "인증 파라미터 오류([3002110])", None, None), KftcError::GrantDead { .. }));
        assert!(matches!(KftcError::from_codes("O0001", "인증 파라미터 오류([3000201])", None, None), KftcError::Config { .. }));
        let bank = KftcError::from_codes("A0002", "참가기관 에러", Some("412"), Some("계좌없음"));
        assert_eq!(bank.provider_code().as_deref(), Some("A0002/412"));
        assert!(matches!(KftcError::from_codes("A0017", "", None, None), KftcError::ProviderTimeout { .. }));
        assert!(KftcError::from_codes("A0017", "", None, None).is_retryable());
        assert!(!KftcError::from_codes("A0004", "", None, None).is_retryable());
        assert_eq!(KftcError::from_codes("A9999", "x", None, None).provider_code().as_deref(), Some("A9999"));
    }
}
