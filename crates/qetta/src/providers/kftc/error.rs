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
    /// A0316 / A0334 (제3자정보제공동의 만료) or A0002 with bank code 468 (SPEC A12.3, A12.4,
    /// A13): the inquiry consent ran out; the user renews it through the authorize flow
    /// (`auth_type` 1). The tokens still work for `login` APIs. `code` is `A0316`, `A0334` or
    /// `A0002/468`.
    #[error("KFTC: the inquiry consent expired ({code})")]
    ConsentExpired { code: String },
    /// O0011: the token's scopes do not cover this API (SPEC A4): a consent with the scope is
    /// needed.
    #[error("KFTC: the consent does not cover this API ({code})")]
    ScopeNotGranted { code: String },
    /// A0002 with bank code 551 / 555 / 556 (already cancelled / no such user / not registered,
    /// SPEC A7, A12.4): the account is not registered with us at KFTC (any more).
    #[error("KFTC: the account is not registered for this service (bank {bank_code})")]
    AccountNotRegistered { bank_code: String },
    /// O0013 (and the usage-plan codes O0008/O0009, blocking O0012): slow down.
    #[error("KFTC rate limit ({code})")]
    RateLimited { code: String },
    /// A0326 (duplicate bank_tran_id) or A0008 (duplicate transaction): regenerate the
    /// bank_tran_id and retry once (SPEC A3, pitfall 3).
    #[error("KFTC: duplicate bank_tran_id ({code})")]
    DuplicateTranId { code: String },
    /// A0018 (거래내역 없음): no transactions in the period (SPEC A11.3).
    #[error("KFTC: no transaction history (A0018)")]
    NoHistory,
    /// The `befor_inquiry_trace_info` we sent back was refused (A0004 on a follow-up page whose
    /// first page KFTC accepted with the same criteria): too old to continue from.
    #[error("KFTC no longer accepts this paging position")]
    TraceExpired,
    /// A0002: the bank failed; `bank_rsp_code` says why.
    #[error("the bank answered {bank_code}: {message}")]
    Bank { bank_code: String, message: String },
    /// A0007 / A0017: KFTC or the bank timed out.
    #[error("KFTC timed out ({code})")]
    ProviderTimeout { code: String },
    /// A0003 / A0016 / O0007: a failure inside KFTC (internal error, message send, routing);
    /// another attempt may succeed.
    #[error("KFTC failed internally ({code})")]
    ProviderFailure { code: String },
    /// O0001 with client credentials, redirect URI or scope problems, and the codes that say our
    /// registration or permissions are wrong: an operator must act.
    #[error("KFTC rejected our client configuration ({code}: {message})")]
    Config { code: String, message: String },
    /// A code of the SPEC A12 catalogue with no handling of its own (a request KFTC or the bank
    /// refused for a reason the user or an operator reads in the message).
    #[error("KFTC answered {code}: {message}")]
    Other { code: String, message: String },
    /// A code that is not in SPEC A12 at all.
    #[error("KFTC answered an unknown code {code}: {message}")]
    Unknown { code: String, message: String },
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

/// SPEC A12.3 codes of transfer and registration APIs Qetta does not call (withdrawals, deposits,
/// limits, real-name checks, account moves), and request/data refusals: the message says why.
const PLAIN_CODES: &[&str] = &[
    "O0000", "A0001", "A0004", "A0005", "A0006", "A0009", "A0015", "A0020", "A0021", "A0101", "A0102", "A0103", "A0104", "A0105", "A0106", "A0111", "A0112",
    "A0304", "A0305", "A0306", "A0307", "A0310", "A0312", "A0313", "A0314", "A0317", "A0318", "A0319", "A0320", "A0321", "A0322", "A0323", "A0324", "A0325",
    "A0327", "A0331", "A0332", "A0335", "A0337",
];

/// Codes that say our registration, permissions or requests are wrong (SPEC A12.1, A12.3).
const CONFIG_CODES: &[&str] = &["O0004", "O0005", "O0006", "O0010", "A0010", "A0011", "A0012", "A0013", "A0014", "A0019", "A0301", "A0302", "A0303", "A0336"];

impl KftcError {
    /// Classifies a non-success `rsp_code` (and the bank code for A0002). Every code of SPEC
    /// A12.1–A12.4 has an arm here (see the table test); anything else is [`KftcError::Unknown`].
    pub fn from_codes(rsp_code: &str, rsp_message: &str, bank_rsp_code: Option<&str>, bank_rsp_message: Option<&str>) -> Self {
        let code = rsp_code.to_string();
        let message = rsp_message.to_string();
        match rsp_code {
            "O0003" => Self::TokenExpired,
            "O0002" | "O0014" | "O0015" => Self::GrantDead { code },
            // O0012 (서비스 거부 / blocked) is read as "stop calling for a while" [U: duration].
            "O0008" | "O0009" | "O0012" | "O0013" => Self::RateLimited { code },
            "O0011" => Self::ScopeNotGranted { code },
            "O0007" | "A0003" | "A0016" => Self::ProviderFailure { code },
            "A0008" | "A0326" => Self::DuplicateTranId { code },
            "A0007" | "A0017" => Self::ProviderTimeout { code },
            "A0018" => Self::NoHistory,
            "A0316" | "A0334" => Self::ConsentExpired { code },
            "A0002" => match bank_rsp_code.unwrap_or("") {
                "468" => Self::ConsentExpired { code: "A0002/468".into() },
                b @ ("551" | "555" | "556") => Self::AccountNotRegistered { bank_code: b.to_string() },
                b => Self::Bank { bank_code: b.to_string(), message: bank_rsp_message.filter(|m| !m.is_empty()).unwrap_or(rsp_message).to_string() },
            },
            // Code reuse / expired authorization session: the consent must be redone.
            "O0001" if rsp_message.contains("3002110") => Self::GrantDead { code },
            // Every other O0001 detail (SPEC A12.2: 992, 3000103, 3000114, 3000115, 3000116,
            // 3000201) says our request or registration is wrong.
            "O0001" => Self::Config { code, message },
            c if CONFIG_CODES.contains(&c) => Self::Config { code, message },
            c if PLAIN_CODES.contains(&c) => Self::Other { code, message },
            _ => Self::Unknown { code, message },
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
            Self::NoHistory => Some("A0018".into()),
            Self::GrantDead { code }
            | Self::RateLimited { code }
            | Self::ProviderTimeout { code }
            | Self::ProviderFailure { code }
            | Self::DuplicateTranId { code }
            | Self::ConsentExpired { code }
            | Self::ScopeNotGranted { code } => Some(code.clone()),
            Self::Config { code, .. } | Self::Other { code, .. } | Self::Unknown { code, .. } => Some(code.clone()),
            Self::Bank { bank_code, .. } | Self::AccountNotRegistered { bank_code } => Some(format!("A0002/{bank_code}")),
            _ => None,
        }
    }

    /// Worth another attempt of a read-only call (fresh bank_tran_id): upstream trouble, not a
    /// verdict about the request.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Timeout | Self::Connect | Self::Network | Self::ProviderTimeout { .. } | Self::ProviderFailure { .. } | Self::Unreadable(_))
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
            KftcError::ConsentExpired { .. } => ApiError::ProviderConflict {
                code: "consent_expired",
                message: "Your consent to share account data through KFTC has expired: renew it to see balances and transactions again.".into(),
                provider_code,
            },
            KftcError::ScopeNotGranted { .. } => ApiError::ProviderConflict {
                code: "scope_not_granted",
                message: "Your KFTC consent does not cover this kind of request: connect your bank accounts again.".into(),
                provider_code,
            },
            KftcError::AccountNotRegistered { .. } => ApiError::ProviderConflict {
                code: "account_not_registered",
                message: "This account is no longer registered with this service at KFTC.".into(),
                provider_code,
            },
            KftcError::TraceExpired => ApiError::Gone {
                code: "cursor_expired",
                message: "This cursor is too old for KFTC to continue from: start the query again without a cursor.".into(),
            },
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
        assert!(matches!(KftcError::from_codes("O0001", "인증 파라미터 오류([3002110])", None, None), KftcError::GrantDead { .. }));
        assert!(matches!(KftcError::from_codes("O0001", "인증 파라미터 오류([3000201])", None, None), KftcError::Config { .. }));
        let bank = KftcError::from_codes("A0002", "참가기관 에러", Some("412"), Some("계좌없음"));
        assert_eq!(bank.provider_code().as_deref(), Some("A0002/412"));
        assert_eq!(KftcError::from_codes("A0002", "", Some("468"), None).provider_code().as_deref(), Some("A0002/468"));
        assert!(KftcError::from_codes("A0017", "", None, None).is_retryable());
        assert!(KftcError::from_codes("A0003", "", None, None).is_retryable());
        assert!(!KftcError::from_codes("A0004", "", None, None).is_retryable());
        assert!(!KftcError::from_codes("A0316", "", None, None).is_retryable());
        assert_eq!(KftcError::from_codes("A9999", "x", None, None).provider_code().as_deref(), Some("A9999"));
        assert!(matches!(KftcError::from_codes("A9999", "x", None, None), KftcError::Unknown { .. }));
    }

    /// Every code of SPEC A12.1, A12.3 and A12.4 and what it becomes.
    #[test]
    fn every_spec_code_has_a_mapping() {
        fn class(e: &KftcError) -> &'static str {
            match e {
                KftcError::TokenExpired => "token_expired",
                KftcError::GrantDead { .. } => "grant_dead",
                KftcError::ConsentExpired { .. } => "consent_expired",
                KftcError::ScopeNotGranted { .. } => "scope",
                KftcError::AccountNotRegistered { .. } => "not_registered",
                KftcError::RateLimited { .. } => "rate",
                KftcError::DuplicateTranId { .. } => "duplicate",
                KftcError::NoHistory => "no_history",
                KftcError::Bank { .. } => "bank",
                KftcError::ProviderTimeout { .. } => "timeout",
                KftcError::ProviderFailure { .. } => "failure",
                KftcError::Config { .. } => "config",
                KftcError::Other { .. } => "other",
                _ => "unknown",
            }
        }
        let centre: &[(&str, &str)] = &[
            ("O0000", "other"),
            ("O0001", "config"),
            ("O0002", "grant_dead"),
            ("O0003", "token_expired"),
            ("O0004", "config"),
            ("O0005", "config"),
            ("O0006", "config"),
            ("O0007", "failure"),
            ("O0008", "rate"),
            ("O0009", "rate"),
            ("O0010", "config"),
            ("O0011", "scope"),
            ("O0012", "rate"),
            ("O0013", "rate"),
            ("O0014", "grant_dead"),
            ("O0015", "grant_dead"),
            ("A0001", "other"),
            ("A0002", "bank"),
            ("A0003", "failure"),
            ("A0004", "other"),
            ("A0005", "other"),
            ("A0006", "other"),
            ("A0007", "timeout"),
            ("A0008", "duplicate"),
            ("A0009", "other"),
            ("A0010", "config"),
            ("A0011", "config"),
            ("A0012", "config"),
            ("A0013", "config"),
            ("A0014", "config"),
            ("A0015", "other"),
            ("A0016", "failure"),
            ("A0017", "timeout"),
            ("A0018", "no_history"),
            ("A0019", "config"),
            ("A0020", "other"),
            ("A0021", "other"),
            ("A0101", "other"),
            ("A0102", "other"),
            ("A0103", "other"),
            ("A0104", "other"),
            ("A0105", "other"),
            ("A0106", "other"),
            ("A0111", "other"),
            ("A0112", "other"),
            ("A0301", "config"),
            ("A0302", "config"),
            ("A0303", "config"),
            ("A0304", "other"),
            ("A0305", "other"),
            ("A0306", "other"),
            ("A0307", "other"),
            ("A0310", "other"),
            ("A0312", "other"),
            ("A0313", "other"),
            ("A0314", "other"),
            ("A0316", "consent_expired"),
            ("A0317", "other"),
            ("A0318", "other"),
            ("A0319", "other"),
            ("A0320", "other"),
            ("A0321", "other"),
            ("A0322", "other"),
            ("A0323", "other"),
            ("A0324", "other"),
            ("A0325", "other"),
            ("A0326", "duplicate"),
            ("A0327", "other"),
            ("A0331", "other"),
            ("A0332", "other"),
            ("A0334", "consent_expired"),
            ("A0335", "other"),
            ("A0336", "config"),
            ("A0337", "other"),
        ];
        for (code, want) in centre {
            assert_eq!(class(&KftcError::from_codes(code, "", Some("499"), None)), *want, "{code}");
        }
        for detail in ["992", "3000103", "3000114", "3000115", "3000116", "3000201"] {
            let e = KftcError::from_codes("O0001", &format!("인증 파라미터 오류([{detail}])"), None, None);
            assert_eq!(class(&e), "config", "{detail}");
        }
        let bank = [
            "412", "413", "414", "415", "416", "417", "418", "419", "420", "421", "422", "424", "425", "426", "427", "428", "431", "432", "433", "452", "453",
            "454", "455", "456", "458", "461", "462", "463", "464", "467", "470", "471", "472", "473", "474", "475", "476", "477", "490", "499",
        ];
        for b in bank {
            assert_eq!(class(&KftcError::from_codes("A0002", "", Some(b), None)), "bank", "{b}");
        }
        assert_eq!(class(&KftcError::from_codes("A0002", "", Some("468"), None)), "consent_expired");
        for b in ["551", "555", "556"] {
            assert_eq!(class(&KftcError::from_codes("A0002", "", Some(b), None)), "not_registered", "{b}");
        }
    }

    #[test]
    fn api_errors_for_the_new_classes() {
        let api: crate::error::ApiError = KftcError::from_codes("A0334", "", None, None).into();
        assert_eq!((api.status().as_u16(), api.code()), (409, "consent_expired"));
        let api: crate::error::ApiError = KftcError::from_codes("A0002", "", Some("468"), None).into();
        assert_eq!((api.status().as_u16(), api.code()), (409, "consent_expired"));
        let api: crate::error::ApiError = KftcError::TraceExpired.into();
        assert_eq!((api.status().as_u16(), api.code()), (410, "cursor_expired"));
        let api: crate::error::ApiError = KftcError::from_codes("A0002", "", Some("551"), None).into();
        assert_eq!((api.status().as_u16(), api.code()), (409, "account_not_registered"));
    }
}
