//! Sandbox configuration: defaults, environment variables and validation.
//!
//! The sandbox registers its one client from the same variables the service reads
//! (`KFTC_CLIENT_ID`, `KFTC_CLIENT_SECRET`, `KFTC_REDIRECT_URI`, `TOSS_CLIENT_ID`,
//! `TOSS_CLIENT_SECRET`), so an unconfigured service and an unconfigured sandbox agree. Its own
//! knobs start with `QETTA_SANDBOX_`. See the crate README for the full table.

use chrono::NaiveDate;

use crate::faults::{FaultKind, Provider};

/// Default KFTC client id registered in the sandbox when `KFTC_CLIENT_ID` is unset.
pub const DEFAULT_KFTC_CLIENT_ID: &str = "sandbox-kftc-client-id";
/// Default KFTC client secret when `KFTC_CLIENT_SECRET` is unset.
pub const DEFAULT_KFTC_CLIENT_SECRET: &str = "sandbox-kftc-client-secret";
/// Default registered redirect URI when `KFTC_REDIRECT_URI` is unset (the service's callback
/// when it runs on its default port).
pub const DEFAULT_KFTC_REDIRECT_URI: &str = "http://localhost:8080/api/v1/oauth/kftc/callback";
/// Default 이용기관코드 (10 characters, SPEC A3).
pub const DEFAULT_KFTC_CLIENT_USE_CODE: &str = "M202600001";
/// SPEC A6.2: `expires_in` of current testbed samples (90 days − 1 s).
pub const DEFAULT_KFTC_ACCESS_TOKEN_TTL_SECS: i64 = 7_775_999;
/// SPEC A6.3: the refresh token lived exactly 10 days longer than the access token.
pub const KFTC_REFRESH_EXTRA_SECS: i64 = 864_000;
/// SPEC E1: authorization codes are treated as valid for at most 10 minutes.
pub const DEFAULT_KFTC_CODE_TTL_SECS: i64 = 600;
/// SPEC A13: inquiry consent (제3자정보제공동의) expires; the period is "reported as 1 year" [U].
pub const DEFAULT_KFTC_CONSENT_TTL_SECS: i64 = 31_536_000;
/// SPEC A11.3 describes `befor_inquiry_trace_info` only for the next page; how long KFTC keeps
/// it is not documented [U]. Ten minutes is our choice.
pub const DEFAULT_KFTC_TRACE_TTL_SECS: i64 = 600;
/// SPEC B2.1: the public Toss test client id (always accepted).
pub const TOSS_TEST_CLIENT_ID: &str = "test_a8e23336d673ca70922b485fe806eb2d";
/// SPEC B2.1: the public Toss test client secret (always accepted).
pub const TOSS_TEST_CLIENT_SECRET: &str = "test_418087247d66da09fda1964dc4734e453c7cf66a7a9e3";
/// SPEC B2: test-environment token lifetime (1 year).
pub const DEFAULT_TOSS_TOKEN_TTL_SECS: i64 = 31_536_000;
/// SPEC E10 (undocumented): time until an uncompleted Toss request becomes `EXPIRED`.
pub const DEFAULT_TOSS_REQUEST_TTL_SECS: i64 = 600;
/// SPEC B6: results must be fetched within 60 minutes after completion.
pub const DEFAULT_TOSS_RESULT_WINDOW_SECS: i64 = 3600;
/// SPEC B6: at most 2 successful result queries per txId.
pub const DEFAULT_TOSS_MAX_RESULT_CALLS: u32 = 2;
/// Default Kakao REST API key registered in the sandbox when `KAKAO_CLIENT_ID` is unset.
pub const DEFAULT_KAKAO_CLIENT_ID: &str = "sandbox-kakao-rest-api-key";
/// Default Kakao client secret when `KAKAO_CLIENT_SECRET` is unset.
pub const DEFAULT_KAKAO_CLIENT_SECRET: &str = "sandbox-kakao-client-secret";
/// Default Kakao admin key (`Authorization: KakaoAK …`, K1).
pub const DEFAULT_KAKAO_ADMIN_KEY: &str = "sandbox-kakao-admin-key";
/// Default registered Kakao redirect URI.
pub const DEFAULT_KAKAO_REDIRECT_URI: &str = "http://localhost:8080/api/v1/oauth/kakao/callback";
/// Default registered Kakao logout redirect URI (K5 `logout_redirect_uri`).
pub const DEFAULT_KAKAO_LOGOUT_REDIRECT_URI: &str = "http://localhost:8080/";
/// K3.4: REST API key access tokens live 6 h (`expires_in` ≈ 21599).
pub const DEFAULT_KAKAO_ACCESS_TOKEN_TTL_SECS: i64 = 21_599;
/// K3.4: refresh tokens live 2 months (real answers show 5183999).
pub const DEFAULT_KAKAO_REFRESH_TOKEN_TTL_SECS: i64 = 5_183_999;
/// K3.4: a refresh rotates the refresh token only when it has less than 1 month left (30 days).
pub const DEFAULT_KAKAO_REFRESH_ROTATION_WINDOW_SECS: i64 = 2_592_000;
/// Default Kakao app id answered by token info (K5).
pub const DEFAULT_KAKAO_APP_ID: u64 = 1_234_567;
/// Default Naver client id when `NAVER_CLIENT_ID` is unset.
pub const DEFAULT_NAVER_CLIENT_ID: &str = "sandboxNaverClientId";
/// Default Naver client secret when `NAVER_CLIENT_SECRET` is unset.
pub const DEFAULT_NAVER_CLIENT_SECRET: &str = "sandboxNaverSecret";
/// Default registered Naver callback URL.
pub const DEFAULT_NAVER_REDIRECT_URI: &str = "http://localhost:8080/api/v1/oauth/naver/callback";
/// N3: access tokens live 3600 s.
pub const DEFAULT_NAVER_ACCESS_TOKEN_TTL_SECS: i64 = 3600;
/// N3/E6: the refresh-token lifetime is undocumented [U]; one year is our choice.
pub const DEFAULT_NAVER_REFRESH_TOKEN_TTL_SECS: i64 = 31_536_000;
/// E1: authorization-code lifetime of Kakao and Naver is undocumented [U]; 10 minutes.
pub const DEFAULT_SOCIAL_CODE_TTL_SECS: i64 = 600;
/// Default seed of the generated sandbox data.
pub const DEFAULT_SEED: u64 = 2026;

/// The sandbox-only RSA-2048 private key shipped with the crate. It protects nothing: it only
/// exists so that clients can RSA-encrypt Toss session keys for the simulator. Never use it
/// anywhere else.
pub const SANDBOX_TOSS_RSA_PRIVATE_KEY_PEM: &str = include_str!("../keys/SANDBOX-ONLY-toss-rsa-private-key.pem");

#[derive(Debug, thiserror::Error)]
pub enum SandboxConfigError {
    #[error("invalid value for {var}: {reason}")]
    Invalid { var: &'static str, reason: String },
    #[error("cannot read {var} file {path}: {source}")]
    ReadFile {
        var: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// What the consent page answers on its own (`QETTA_SANDBOX_AUTO_CONSENT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoConsent {
    Approve,
    Deny,
}

#[derive(Clone, Debug)]
pub struct KftcConfig {
    pub client_id: String,
    pub client_secret: String,
    /// Exact redirect URIs registered for the client (SPEC A5.1: must match exactly).
    pub redirect_uris: Vec<String>,
    /// 이용기관코드, the required prefix of every `bank_tran_id`.
    pub client_use_code: String,
    pub access_token_ttl_secs: i64,
    pub refresh_token_ttl_secs: i64,
    pub code_ttl_secs: i64,
    pub auto_consent: Option<AutoConsent>,
    /// Sandbox user id used by auto-consent; `None` means the first sandbox user.
    pub auto_consent_user: Option<String>,
    /// Lifetime of an account's inquiry consent (SPEC A13, A14; renewal period [U]).
    pub consent_ttl_secs: i64,
    /// How an expired consent is answered: `A0316`, `A0334` or bank `468` (SPEC A12.3/A12.4
    /// list all three; which one a bank sends is not documented).
    pub consent_expired_code: ConsentExpiredCode,
    /// Whether a refresh answers a new refresh token and spends the old one (`true`) or answers
    /// the same one again, still valid (`false`). SPEC A6 does not say which KFTC does [U].
    pub refresh_rotation: bool,
    /// How long a `befor_inquiry_trace_info` can be sent back (SPEC A11.3 [U]).
    pub trace_ttl_secs: i64,
    /// Refuse token and JSON requests whose `Content-Type` lacks `charset=UTF-8` (SPEC A1 says
    /// clients send it [C]; whether KFTC refuses requests without it is not known, so this is off
    /// by default). A charset other than UTF-8 is always refused.
    pub require_charset: bool,
    /// Bank oddities the answers carry from the start (also set by `POST _sandbox/quirks`).
    pub quirks: KftcQuirks,
}

/// How the sandbox answers an inquiry whose consent expired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsentExpiredCode {
    A0316,
    A0334,
    /// `A0002` with bank code `468` (제3자정보제공동의 만료).
    Bank468,
}

impl ConsentExpiredCode {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "A0316" => Some(Self::A0316),
            "A0334" => Some(Self::A0334),
            "468" | "A0002:468" => Some(Self::Bank468),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::A0316 => "A0316",
            Self::A0334 => "A0334",
            Self::Bank468 => "A0002:468",
        }
    }
}

/// Answers real banks give that the generated data does not (SPEC A11.2, A11.3, A12.5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KftcQuirks {
    /// Some withdrawals are `지급` instead of `출금`, and some rows are `기타` with `tran_amt` `0`.
    pub odd_rows: bool,
    /// `after_balance_amt` is `""` in every row ("some banks send empty" [U]).
    pub empty_after_balance: bool,
    /// Optional text fields are JSON `null` instead of `""`.
    pub nulls: bool,
    /// An inquiry without matching rows answers `A0018` (거래내역 없음) instead of an empty page.
    pub no_history_a0018: bool,
}

impl KftcQuirks {
    /// `odd_rows,empty_after_balance,nulls,no_history_a0018` (any subset, comma-separated).
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut q = Self::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "odd_rows" => q.odd_rows = true,
                "empty_after_balance" => q.empty_after_balance = true,
                "nulls" => q.nulls = true,
                "no_history_a0018" => q.no_history_a0018 = true,
                other => return Err(format!("unknown quirk {other:?}; expected odd_rows, empty_after_balance, nulls, no_history_a0018")),
            }
        }
        Ok(q)
    }
}

#[derive(Clone, Debug)]
pub struct TossConfig {
    /// The configured client (the SPEC B2.1 public test credentials are always accepted too).
    pub client_id: String,
    pub client_secret: String,
    pub token_ttl_secs: i64,
    /// Complete every request this many seconds (sandbox clock) after it was made.
    pub auto_complete_after_secs: Option<i64>,
    /// An uncompleted request becomes `EXPIRED` after this many seconds.
    pub request_ttl_secs: i64,
    pub result_window_secs: i64,
    pub max_result_calls: u32,
    /// PEM (PKCS#8 or PKCS#1) of the RSA private key that opens session keys.
    pub rsa_private_key_pem: String,
}

/// Kakao Login (docs/oauth-providers.md Part K).
#[derive(Clone, Debug)]
pub struct KakaoConfig {
    /// The app's REST API key.
    pub client_id: String,
    pub client_secret: String,
    /// K1: when the client secret is ON it is required on token requests (KOE010 otherwise);
    /// when OFF a sent secret is ignored [U].
    pub client_secret_enabled: bool,
    /// `KakaoAK` admin key for server-side user/me, logout and unlink with `target_id`.
    pub admin_key: String,
    /// Exact redirect URIs (K7: up to 10, http/https).
    pub redirect_uris: Vec<String>,
    pub logout_redirect_uris: Vec<String>,
    pub access_token_ttl_secs: i64,
    pub refresh_token_ttl_secs: i64,
    /// K3.4: a refresh returns a new refresh token only when the old one has less than this left.
    pub refresh_rotation_window_secs: i64,
    pub code_ttl_secs: i64,
    /// K6: OpenID Connect switched on for the app (ID tokens, discovery, JWKS).
    pub oidc: bool,
    /// Fixed issuer; `None` = the sandbox base URL the request came in on.
    pub issuer: Option<String>,
    pub app_id: u64,
    /// KOE237 token-issuance rate limit: at most this many tokens per minute (sandbox clock).
    pub token_rate_limit_per_minute: Option<u32>,
    pub auto_consent: Option<AutoConsent>,
    pub auto_consent_user: Option<String>,
}

/// Naver Login (docs/oauth-providers.md Part N).
#[derive(Clone, Debug)]
pub struct NaverConfig {
    pub client_id: String,
    pub client_secret: String,
    /// Exact callback URLs (N7: up to 5; E14 matching rule unknown, we compare exactly).
    pub redirect_uris: Vec<String>,
    pub access_token_ttl_secs: i64,
    pub refresh_token_ttl_secs: i64,
    pub code_ttl_secs: i64,
    /// N4: the OIDC path (`/oauth2/*`, discovery, JWKS, ID tokens).
    pub oidc: bool,
    pub issuer: Option<String>,
    /// D9/E7: refuse a code exchange without the authorize request's `state` [U: enforcement].
    pub require_state: bool,
    /// E8: accept HTTP Basic client authentication on the token endpoints [U].
    pub accept_basic: bool,
    /// E13: HTTP status of a `024` profile answer (401 documented; some clients expect 200).
    pub auth_failed_status: u16,
    pub auto_consent: Option<AutoConsent>,
    pub auto_consent_user: Option<String>,
}

#[derive(Clone, Debug)]
pub struct FaultConfig {
    /// Added to every provider API call (not to control calls or HTML pages).
    pub latency_ms: u64,
    /// Probability (0.0–1.0) that an API call fails with the configured error.
    pub error_rate: f64,
    pub kftc_error: FaultKind,
    pub toss_error: FaultKind,
    pub kakao_error: FaultKind,
    pub naver_error: FaultKind,
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self {
            latency_ms: 0,
            error_rate: 0.0,
            kftc_error: FaultKind::Http(500),
            toss_error: FaultKind::Http(500),
            kakao_error: FaultKind::Http(500),
            naver_error: FaultKind::Http(500),
        }
    }
}

#[derive(Clone, Debug)]
pub struct SandboxConfig {
    pub kftc: KftcConfig,
    pub toss: TossConfig,
    pub kakao: KakaoConfig,
    pub naver: NaverConfig,
    /// Seed of every generated value (users, accounts, balances, transactions).
    pub seed: u64,
    /// Transactions are generated backwards from this date; `None` means the sandbox clock's
    /// date (KST) when the sandbox is created or reset.
    pub data_anchor_date: Option<NaiveDate>,
    pub faults: FaultConfig,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            kftc: KftcConfig {
                client_id: DEFAULT_KFTC_CLIENT_ID.into(),
                client_secret: DEFAULT_KFTC_CLIENT_SECRET.into(),
                redirect_uris: vec![DEFAULT_KFTC_REDIRECT_URI.into()],
                client_use_code: DEFAULT_KFTC_CLIENT_USE_CODE.into(),
                access_token_ttl_secs: DEFAULT_KFTC_ACCESS_TOKEN_TTL_SECS,
                refresh_token_ttl_secs: DEFAULT_KFTC_ACCESS_TOKEN_TTL_SECS + KFTC_REFRESH_EXTRA_SECS,
                code_ttl_secs: DEFAULT_KFTC_CODE_TTL_SECS,
                auto_consent: None,
                auto_consent_user: None,
                consent_ttl_secs: DEFAULT_KFTC_CONSENT_TTL_SECS,
                consent_expired_code: ConsentExpiredCode::A0316,
                refresh_rotation: true,
                trace_ttl_secs: DEFAULT_KFTC_TRACE_TTL_SECS,
                require_charset: false,
                quirks: KftcQuirks::default(),
            },
            toss: TossConfig {
                client_id: TOSS_TEST_CLIENT_ID.into(),
                client_secret: TOSS_TEST_CLIENT_SECRET.into(),
                token_ttl_secs: DEFAULT_TOSS_TOKEN_TTL_SECS,
                auto_complete_after_secs: None,
                request_ttl_secs: DEFAULT_TOSS_REQUEST_TTL_SECS,
                result_window_secs: DEFAULT_TOSS_RESULT_WINDOW_SECS,
                max_result_calls: DEFAULT_TOSS_MAX_RESULT_CALLS,
                rsa_private_key_pem: SANDBOX_TOSS_RSA_PRIVATE_KEY_PEM.into(),
            },
            kakao: KakaoConfig {
                client_id: DEFAULT_KAKAO_CLIENT_ID.into(),
                client_secret: DEFAULT_KAKAO_CLIENT_SECRET.into(),
                client_secret_enabled: true,
                admin_key: DEFAULT_KAKAO_ADMIN_KEY.into(),
                redirect_uris: vec![DEFAULT_KAKAO_REDIRECT_URI.into()],
                logout_redirect_uris: vec![DEFAULT_KAKAO_LOGOUT_REDIRECT_URI.into()],
                access_token_ttl_secs: DEFAULT_KAKAO_ACCESS_TOKEN_TTL_SECS,
                refresh_token_ttl_secs: DEFAULT_KAKAO_REFRESH_TOKEN_TTL_SECS,
                refresh_rotation_window_secs: DEFAULT_KAKAO_REFRESH_ROTATION_WINDOW_SECS,
                code_ttl_secs: DEFAULT_SOCIAL_CODE_TTL_SECS,
                oidc: true,
                issuer: None,
                app_id: DEFAULT_KAKAO_APP_ID,
                token_rate_limit_per_minute: None,
                auto_consent: None,
                auto_consent_user: None,
            },
            naver: NaverConfig {
                client_id: DEFAULT_NAVER_CLIENT_ID.into(),
                client_secret: DEFAULT_NAVER_CLIENT_SECRET.into(),
                redirect_uris: vec![DEFAULT_NAVER_REDIRECT_URI.into()],
                access_token_ttl_secs: DEFAULT_NAVER_ACCESS_TOKEN_TTL_SECS,
                refresh_token_ttl_secs: DEFAULT_NAVER_REFRESH_TOKEN_TTL_SECS,
                code_ttl_secs: DEFAULT_SOCIAL_CODE_TTL_SECS,
                oidc: true,
                issuer: None,
                require_state: true,
                accept_basic: false,
                auth_failed_status: 401,
                auto_consent: None,
                auto_consent_user: None,
            },
            seed: DEFAULT_SEED,
            data_anchor_date: None,
            faults: FaultConfig::default(),
        }
    }
}

impl SandboxConfig {
    /// Defaults + environment (KFTC_CLIENT_ID, KFTC_CLIENT_SECRET, KFTC_REDIRECT_URI,
    /// TOSS_CLIENT_ID, TOSS_CLIENT_SECRET, QETTA_SANDBOX_*).
    pub fn from_env() -> Result<Self, SandboxConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Same, reading variables through `lookup`. Empty values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SandboxConfigError> {
        let get = |k: &str| lookup(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let mut c = SandboxConfig::default();

        if let Some(v) = get("KFTC_CLIENT_ID") {
            c.kftc.client_id = v;
        }
        if let Some(v) = get("KFTC_CLIENT_SECRET") {
            c.kftc.client_secret = v;
        }
        if let Some(v) = get("KFTC_REDIRECT_URI") {
            let uris: Vec<String> = v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
            if uris.is_empty() {
                return Err(invalid("KFTC_REDIRECT_URI", "no redirect URI given"));
            }
            for u in &uris {
                if !(u.contains("://")) || u.chars().any(char::is_whitespace) {
                    return Err(invalid("KFTC_REDIRECT_URI", format!("not an absolute URI: {u}")));
                }
            }
            c.kftc.redirect_uris = uris;
        }
        if let Some(v) = get("QETTA_SANDBOX_KFTC_CLIENT_USE_CODE") {
            if v.len() != 10 || !v.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
                return Err(invalid("QETTA_SANDBOX_KFTC_CLIENT_USE_CODE", "must be 10 characters [0-9A-Z], e.g. M202600001"));
            }
            c.kftc.client_use_code = v;
        }
        if let Some(v) = get("QETTA_SANDBOX_KFTC_ACCESS_TOKEN_TTL") {
            c.kftc.access_token_ttl_secs = positive("QETTA_SANDBOX_KFTC_ACCESS_TOKEN_TTL", &v)?;
            c.kftc.refresh_token_ttl_secs = c.kftc.access_token_ttl_secs.saturating_add(KFTC_REFRESH_EXTRA_SECS);
        }
        if let Some(v) = get("QETTA_SANDBOX_KFTC_REFRESH_TOKEN_TTL") {
            c.kftc.refresh_token_ttl_secs = positive("QETTA_SANDBOX_KFTC_REFRESH_TOKEN_TTL", &v)?;
        }
        if let Some(v) = get("QETTA_SANDBOX_KFTC_CODE_TTL") {
            c.kftc.code_ttl_secs = positive("QETTA_SANDBOX_KFTC_CODE_TTL", &v)?;
        }
        if let Some(v) = get("QETTA_SANDBOX_KFTC_CONSENT_TTL") {
            c.kftc.consent_ttl_secs = positive("QETTA_SANDBOX_KFTC_CONSENT_TTL", &v)?;
        }
        if let Some(v) = get("QETTA_SANDBOX_KFTC_CONSENT_EXPIRED_CODE") {
            c.kftc.consent_expired_code =
                ConsentExpiredCode::parse(&v).ok_or_else(|| invalid("QETTA_SANDBOX_KFTC_CONSENT_EXPIRED_CODE", "expected A0316, A0334 or 468"))?;
        }
        if let Some(v) = get("QETTA_SANDBOX_KFTC_REFRESH_ROTATION") {
            c.kftc.refresh_rotation = boolean("QETTA_SANDBOX_KFTC_REFRESH_ROTATION", &v)?;
        }
        if let Some(v) = get("QETTA_SANDBOX_KFTC_TRACE_TTL") {
            c.kftc.trace_ttl_secs = positive("QETTA_SANDBOX_KFTC_TRACE_TTL", &v)?;
        }
        if let Some(v) = get("QETTA_SANDBOX_KFTC_REQUIRE_CHARSET") {
            c.kftc.require_charset = boolean("QETTA_SANDBOX_KFTC_REQUIRE_CHARSET", &v)?;
        }
        if let Some(v) = get("QETTA_SANDBOX_KFTC_QUIRKS") {
            c.kftc.quirks = KftcQuirks::parse(&v).map_err(|e| invalid("QETTA_SANDBOX_KFTC_QUIRKS", e))?;
        }
        if let Some(v) = get("QETTA_SANDBOX_AUTO_CONSENT") {
            c.kftc.auto_consent = match v.to_ascii_lowercase().as_str() {
                "approve" => Some(AutoConsent::Approve),
                "deny" => Some(AutoConsent::Deny),
                "off" | "none" | "false" => None,
                _ => return Err(invalid("QETTA_SANDBOX_AUTO_CONSENT", "expected approve, deny or off")),
            };
        }
        c.kftc.auto_consent_user = get("QETTA_SANDBOX_USER");
        c.kakao.auto_consent = c.kftc.auto_consent;
        c.kakao.auto_consent_user = c.kftc.auto_consent_user.clone();
        c.naver.auto_consent = c.kftc.auto_consent;
        c.naver.auto_consent_user = c.kftc.auto_consent_user.clone();

        // Kakao (Part K)
        if let Some(v) = get("KAKAO_CLIENT_ID") {
            c.kakao.client_id = v;
        }
        if let Some(v) = get("KAKAO_CLIENT_SECRET") {
            c.kakao.client_secret = v;
        }
        if let Some(v) = get("QETTA_SANDBOX_KAKAO_CLIENT_SECRET_ENABLED") {
            c.kakao.client_secret_enabled = boolean("QETTA_SANDBOX_KAKAO_CLIENT_SECRET_ENABLED", &v)?;
        }
        if let Some(v) = get("KAKAO_ADMIN_KEY") {
            c.kakao.admin_key = v;
        }
        if let Some(v) = get("KAKAO_REDIRECT_URI") {
            c.kakao.redirect_uris = uri_list("KAKAO_REDIRECT_URI", &v)?;
        }
        if let Some(v) = get("KAKAO_LOGOUT_REDIRECT_URI") {
            c.kakao.logout_redirect_uris = uri_list("KAKAO_LOGOUT_REDIRECT_URI", &v)?;
        }
        if let Some(v) = get("QETTA_SANDBOX_KAKAO_ACCESS_TOKEN_TTL") {
            c.kakao.access_token_ttl_secs = positive("QETTA_SANDBOX_KAKAO_ACCESS_TOKEN_TTL", &v)?;
        }
        if let Some(v) = get("QETTA_SANDBOX_KAKAO_REFRESH_TOKEN_TTL") {
            c.kakao.refresh_token_ttl_secs = positive("QETTA_SANDBOX_KAKAO_REFRESH_TOKEN_TTL", &v)?;
        }
        if let Some(v) = get("QETTA_SANDBOX_KAKAO_REFRESH_ROTATION_WINDOW") {
            c.kakao.refresh_rotation_window_secs = non_negative("QETTA_SANDBOX_KAKAO_REFRESH_ROTATION_WINDOW", &v)?;
        }
        if let Some(v) = get("QETTA_SANDBOX_KAKAO_CODE_TTL") {
            c.kakao.code_ttl_secs = positive("QETTA_SANDBOX_KAKAO_CODE_TTL", &v)?;
        }
        if let Some(v) = get("QETTA_SANDBOX_KAKAO_OIDC") {
            c.kakao.oidc = boolean("QETTA_SANDBOX_KAKAO_OIDC", &v)?;
        }
        if let Some(v) = get("QETTA_SANDBOX_KAKAO_ISSUER") {
            c.kakao.issuer = Some(uri_list("QETTA_SANDBOX_KAKAO_ISSUER", &v)?.remove(0));
        }
        if let Some(v) = get("QETTA_SANDBOX_KAKAO_TOKEN_RATE_LIMIT") {
            c.kakao.token_rate_limit_per_minute = match v.to_ascii_lowercase().as_str() {
                "off" | "none" | "false" => None,
                _ => Some(
                    v.parse::<u32>()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| invalid("QETTA_SANDBOX_KAKAO_TOKEN_RATE_LIMIT", "expected a positive number of tokens per minute or off"))?,
                ),
            };
        }

        // Naver (Part N)
        if let Some(v) = get("NAVER_CLIENT_ID") {
            c.naver.client_id = v;
        }
        if let Some(v) = get("NAVER_CLIENT_SECRET") {
            c.naver.client_secret = v;
        }
        if let Some(v) = get("NAVER_REDIRECT_URI") {
            c.naver.redirect_uris = uri_list("NAVER_REDIRECT_URI", &v)?;
        }
        if let Some(v) = get("QETTA_SANDBOX_NAVER_ACCESS_TOKEN_TTL") {
            c.naver.access_token_ttl_secs = positive("QETTA_SANDBOX_NAVER_ACCESS_TOKEN_TTL", &v)?;
        }
        if let Some(v) = get("QETTA_SANDBOX_NAVER_REFRESH_TOKEN_TTL") {
            c.naver.refresh_token_ttl_secs = positive("QETTA_SANDBOX_NAVER_REFRESH_TOKEN_TTL", &v)?;
        }
        if let Some(v) = get("QETTA_SANDBOX_NAVER_CODE_TTL") {
            c.naver.code_ttl_secs = positive("QETTA_SANDBOX_NAVER_CODE_TTL", &v)?;
        }
        if let Some(v) = get("QETTA_SANDBOX_NAVER_OIDC") {
            c.naver.oidc = boolean("QETTA_SANDBOX_NAVER_OIDC", &v)?;
        }
        if let Some(v) = get("QETTA_SANDBOX_NAVER_ISSUER") {
            c.naver.issuer = Some(uri_list("QETTA_SANDBOX_NAVER_ISSUER", &v)?.remove(0));
        }
        if let Some(v) = get("QETTA_SANDBOX_NAVER_REQUIRE_STATE") {
            c.naver.require_state = boolean("QETTA_SANDBOX_NAVER_REQUIRE_STATE", &v)?;
        }
        if let Some(v) = get("QETTA_SANDBOX_NAVER_ACCEPT_BASIC") {
            c.naver.accept_basic = boolean("QETTA_SANDBOX_NAVER_ACCEPT_BASIC", &v)?;
        }
        if let Some(v) = get("QETTA_SANDBOX_NAVER_AUTH_FAILED_STATUS") {
            c.naver.auth_failed_status = match v.as_str() {
                "401" => 401,
                "200" => 200,
                _ => return Err(invalid("QETTA_SANDBOX_NAVER_AUTH_FAILED_STATUS", "expected 401 or 200")),
            };
        }

        if let Some(v) = get("TOSS_CLIENT_ID") {
            c.toss.client_id = v;
        }
        if let Some(v) = get("TOSS_CLIENT_SECRET") {
            c.toss.client_secret = v;
        }
        if let Some(v) = get("QETTA_SANDBOX_TOSS_TOKEN_TTL") {
            c.toss.token_ttl_secs = positive("QETTA_SANDBOX_TOSS_TOKEN_TTL", &v)?;
        }
        if let Some(v) = get("QETTA_SANDBOX_TOSS_AUTO_COMPLETE") {
            c.toss.auto_complete_after_secs = match v.to_ascii_lowercase().as_str() {
                "off" | "none" | "false" => None,
                _ => Some(non_negative("QETTA_SANDBOX_TOSS_AUTO_COMPLETE", &v)?),
            };
        }
        if let Some(v) = get("QETTA_SANDBOX_TOSS_REQUEST_TTL") {
            c.toss.request_ttl_secs = positive("QETTA_SANDBOX_TOSS_REQUEST_TTL", &v)?;
        }
        if let Some(v) = get("QETTA_SANDBOX_TOSS_RSA_PRIVATE_KEY") {
            // PEM text, or a path to a PEM file.
            if v.contains("-----BEGIN") {
                c.toss.rsa_private_key_pem = v.replace("\\n", "\n");
            } else {
                c.toss.rsa_private_key_pem = std::fs::read_to_string(&v).map_err(|source| SandboxConfigError::ReadFile {
                    var: "QETTA_SANDBOX_TOSS_RSA_PRIVATE_KEY",
                    path: v.clone(),
                    source,
                })?;
            }
        }
        crate::toss::crypto::RsaKeys::from_pem(&c.toss.rsa_private_key_pem).map_err(|e| invalid("QETTA_SANDBOX_TOSS_RSA_PRIVATE_KEY", e.to_string()))?;

        if let Some(v) = get("QETTA_SANDBOX_SEED") {
            c.seed = v.parse().map_err(|_| invalid("QETTA_SANDBOX_SEED", "expected an unsigned integer"))?;
        }
        if let Some(v) = get("QETTA_SANDBOX_DATA_ANCHOR_DATE") {
            let d = NaiveDate::parse_from_str(&v, "%Y%m%d")
                .or_else(|_| NaiveDate::parse_from_str(&v, "%Y-%m-%d"))
                .map_err(|_| invalid("QETTA_SANDBOX_DATA_ANCHOR_DATE", "expected YYYYMMDD or YYYY-MM-DD"))?;
            c.data_anchor_date = Some(d);
        }

        if let Some(v) = get("QETTA_SANDBOX_LATENCY_MS") {
            c.faults.latency_ms = v.parse().map_err(|_| invalid("QETTA_SANDBOX_LATENCY_MS", "expected milliseconds"))?;
        }
        if let Some(v) = get("QETTA_SANDBOX_ERROR_RATE") {
            let r: f64 = v.parse().map_err(|_| invalid("QETTA_SANDBOX_ERROR_RATE", "expected a number 0.0–1.0"))?;
            if !(0.0..=1.0).contains(&r) {
                return Err(invalid("QETTA_SANDBOX_ERROR_RATE", "expected a number 0.0–1.0"));
            }
            c.faults.error_rate = r;
        }
        if let Some(v) = get("QETTA_SANDBOX_KFTC_ERROR") {
            c.faults.kftc_error = FaultKind::parse(&v, Provider::Kftc).map_err(|e| invalid("QETTA_SANDBOX_KFTC_ERROR", e))?;
        }
        if let Some(v) = get("QETTA_SANDBOX_TOSS_ERROR") {
            c.faults.toss_error = FaultKind::parse(&v, Provider::Toss).map_err(|e| invalid("QETTA_SANDBOX_TOSS_ERROR", e))?;
        }
        if let Some(v) = get("QETTA_SANDBOX_KAKAO_ERROR") {
            c.faults.kakao_error = FaultKind::parse(&v, Provider::Kakao).map_err(|e| invalid("QETTA_SANDBOX_KAKAO_ERROR", e))?;
        }
        if let Some(v) = get("QETTA_SANDBOX_NAVER_ERROR") {
            c.faults.naver_error = FaultKind::parse(&v, Provider::Naver).map_err(|e| invalid("QETTA_SANDBOX_NAVER_ERROR", e))?;
        }
        Ok(c)
    }
}

fn boolean(var: &'static str, v: &str) -> Result<bool, SandboxConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "on" | "yes" => Ok(true),
        "0" | "false" | "off" | "no" => Ok(false),
        _ => Err(invalid(var, "expected on/off (true/false)")),
    }
}

/// Comma-separated absolute http(s) URIs (at least one).
fn uri_list(var: &'static str, v: &str) -> Result<Vec<String>, SandboxConfigError> {
    let uris: Vec<String> = v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    if uris.is_empty() {
        return Err(invalid(var, "no URI given"));
    }
    for u in &uris {
        let ok = (u.starts_with("http://") || u.starts_with("https://")) && !u.chars().any(char::is_whitespace);
        if !ok {
            return Err(invalid(var, format!("not an absolute http(s) URI: {u}")));
        }
    }
    Ok(uris)
}

fn invalid(var: &'static str, reason: impl Into<String>) -> SandboxConfigError {
    SandboxConfigError::Invalid { var, reason: reason.into() }
}

fn positive(var: &'static str, v: &str) -> Result<i64, SandboxConfigError> {
    match v.parse::<i64>() {
        Ok(n) if n > 0 && n <= 100 * 366 * 86_400 => Ok(n),
        _ => Err(invalid(var, "expected a positive number of seconds (at most 100 years)")),
    }
}

fn non_negative(var: &'static str, v: &str) -> Result<i64, SandboxConfigError> {
    match v.parse::<i64>() {
        Ok(n) if (0..=100 * 366 * 86_400).contains(&n) => Ok(n),
        _ => Err(invalid(var, "expected a number of seconds >= 0")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<SandboxConfig, SandboxConfigError> {
        let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        SandboxConfig::from_lookup(move |k| m.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.kftc.client_id, DEFAULT_KFTC_CLIENT_ID);
        assert_eq!(c.kftc.redirect_uris, vec![DEFAULT_KFTC_REDIRECT_URI.to_string()]);
        assert_eq!(c.kftc.access_token_ttl_secs, 7_775_999);
        assert_eq!(c.kftc.refresh_token_ttl_secs, 7_775_999 + 864_000);
        assert_eq!(c.toss.client_id, TOSS_TEST_CLIENT_ID);
        assert_eq!(c.toss.token_ttl_secs, 31_536_000);
        assert_eq!(c.seed, DEFAULT_SEED);
        assert!(c.kftc.auto_consent.is_none());
        assert!(c.toss.auto_complete_after_secs.is_none());
        assert_eq!(c.kakao.access_token_ttl_secs, 21_599);
        assert_eq!(c.kakao.refresh_token_ttl_secs, 5_183_999);
        assert!(c.kakao.oidc && c.kakao.client_secret_enabled);
        assert_eq!(c.naver.access_token_ttl_secs, 3600);
        assert!(c.naver.require_state && !c.naver.accept_basic);
    }

    #[test]
    fn social_overrides() {
        let c = cfg(&[
            ("KAKAO_CLIENT_ID", "k"),
            ("KAKAO_REDIRECT_URI", "https://a/cb,http://localhost/cb"),
            ("QETTA_SANDBOX_KAKAO_OIDC", "off"),
            ("QETTA_SANDBOX_KAKAO_CLIENT_SECRET_ENABLED", "false"),
            ("QETTA_SANDBOX_NAVER_REQUIRE_STATE", "off"),
            ("QETTA_SANDBOX_NAVER_AUTH_FAILED_STATUS", "200"),
            ("QETTA_SANDBOX_AUTO_CONSENT", "approve"),
            ("QETTA_SANDBOX_KAKAO_ERROR", "KOE237"),
        ])
        .unwrap();
        assert_eq!(c.kakao.client_id, "k");
        assert_eq!(c.kakao.redirect_uris.len(), 2);
        assert!(!c.kakao.oidc && !c.kakao.client_secret_enabled);
        assert!(!c.naver.require_state);
        assert_eq!(c.naver.auth_failed_status, 200);
        assert_eq!(c.naver.auto_consent, Some(AutoConsent::Approve));
        assert!(matches!(c.faults.kakao_error, FaultKind::Code { .. }));
    }

    #[test]
    fn environment_overrides() {
        let c = cfg(&[
            ("KFTC_CLIENT_ID", "cid"),
            ("KFTC_REDIRECT_URI", "http://a/cb, https://b/cb"),
            ("QETTA_SANDBOX_KFTC_ACCESS_TOKEN_TTL", "60"),
            ("QETTA_SANDBOX_AUTO_CONSENT", "approve"),
            ("QETTA_SANDBOX_USER", "lee"),
            ("QETTA_SANDBOX_TOSS_AUTO_COMPLETE", "0"),
            ("QETTA_SANDBOX_SEED", "7"),
            ("QETTA_SANDBOX_DATA_ANCHOR_DATE", "20260115"),
            ("QETTA_SANDBOX_KFTC_ERROR", "A0007"),
            ("QETTA_SANDBOX_ERROR_RATE", "0.25"),
        ])
        .unwrap();
        assert_eq!(c.kftc.client_id, "cid");
        assert_eq!(c.kftc.redirect_uris, vec!["http://a/cb".to_string(), "https://b/cb".to_string()]);
        assert_eq!(c.kftc.refresh_token_ttl_secs, 60 + 864_000);
        assert_eq!(c.kftc.auto_consent, Some(AutoConsent::Approve));
        assert_eq!(c.kftc.auto_consent_user.as_deref(), Some("lee"));
        assert_eq!(c.toss.auto_complete_after_secs, Some(0));
        assert_eq!(c.seed, 7);
        assert_eq!(c.data_anchor_date, NaiveDate::from_ymd_opt(2026, 1, 15));
        assert_eq!(c.faults.error_rate, 0.25);
        assert!(matches!(c.faults.kftc_error, FaultKind::Code { .. }));
    }

    #[test]
    fn invalid_values_are_reported() {
        for (k, v) in [
            ("QETTA_SANDBOX_KFTC_CLIENT_USE_CODE", "short"),
            ("QETTA_SANDBOX_KFTC_ACCESS_TOKEN_TTL", "-1"),
            ("QETTA_SANDBOX_AUTO_CONSENT", "maybe"),
            ("QETTA_SANDBOX_ERROR_RATE", "2"),
            ("QETTA_SANDBOX_KFTC_ERROR", "CE0001"),
            ("QETTA_SANDBOX_TOSS_ERROR", "A0007"),
            ("QETTA_SANDBOX_TOSS_RSA_PRIVATE_KEY", "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----"),
            ("KFTC_REDIRECT_URI", "not a uri"),
            ("KAKAO_REDIRECT_URI", "myapp://cb"),
            ("QETTA_SANDBOX_KAKAO_OIDC", "maybe"),
            ("QETTA_SANDBOX_KAKAO_ERROR", "A0007"),
            ("QETTA_SANDBOX_NAVER_ERROR", "KOE237"),
            ("QETTA_SANDBOX_NAVER_AUTH_FAILED_STATUS", "403"),
            ("QETTA_SANDBOX_KAKAO_TOKEN_RATE_LIMIT", "0"),
        ] {
            assert!(cfg(&[(k, v)]).is_err(), "{k}={v} should be rejected");
        }
    }
}
