//! Fault injection: added latency and a random error rate, set by configuration and changed at
//! run time through `POST <base>/_sandbox/faults`.

use std::sync::Mutex;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Which simulator a fault belongs to (the provider codes differ).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    Kftc,
    Toss,
    Kakao,
    Naver,
}

/// Kakao API error codes (`{"msg", "code"}` bodies, K4) an injected fault may use.
pub const KAKAO_API_FAULT_CODES: &[i64] = &[-1, -2, -10, -101, -103, -401, -402, -9798];
/// Naver OAuth `error` values (N2/N3) an injected fault may use.
pub const NAVER_FAULT_ERRORS: &[&str] = &["server_error", "temporarily_unavailable"];

/// What an injected failure looks like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// A bare HTTP error status (`http_500`, `http_503`, ...).
    Http(u16),
    /// `html_200`: HTTP 200 with an HTML maintenance page instead of the provider's JSON (what a
    /// gateway or load balancer in front of the provider answers during maintenance).
    Html200,
    /// `truncated`: the real answer, cut off after half of its bytes (HTTP 200, JSON content
    /// type, a body that does not parse).
    Truncated,
    /// A provider error: KFTC `O####` / `A####` (optionally `A0002:<bank_rsp_code>`), Toss `CE####`.
    Code { code: String, bank_rsp_code: Option<String> },
}

impl FaultKind {
    /// Parse `http_5xx`, or a provider code valid for `provider`.
    pub fn parse(s: &str, provider: Provider) -> Result<Self, String> {
        let s = s.trim();
        match s {
            "html_200" => return Ok(FaultKind::Html200),
            "truncated" => return Ok(FaultKind::Truncated),
            _ => {}
        }
        if let Some(n) = s.strip_prefix("http_") {
            return match n.parse::<u16>() {
                Ok(n) if (500..=599).contains(&n) => Ok(FaultKind::Http(n)),
                _ => Err(format!("{s}: expected http_500 … http_599")),
            };
        }
        let digits4 = |t: &str| t.len() == 4 && t.bytes().all(|b| b.is_ascii_digit());
        match provider {
            Provider::Kftc => {
                let (code, bank) = match s.split_once(':') {
                    Some((c, b)) => (c, Some(b)),
                    None => (s, None),
                };
                let ok_code = (code.starts_with('A') || code.starts_with('O')) && digits4(&code[1..]);
                if !ok_code || crate::kftc::codes::known_code(code).is_none() {
                    return Err(format!("{s}: expected http_5xx, a KFTC error code of SPEC A12 like A0007, O0013, or A0002:<bank code>"));
                }
                if let Some(b) = bank {
                    if code != "A0002" || b.len() != 3 || !b.bytes().all(|x| x.is_ascii_digit()) || b == "000" {
                        return Err(format!("{s}: a bank code is only allowed as A0002:<3 digits>"));
                    }
                }
                let bank_rsp_code = match (code, bank) {
                    ("A0002", None) => Some("499".to_string()),
                    (_, b) => b.map(str::to_string),
                };
                Ok(FaultKind::Code { code: code.to_string(), bank_rsp_code })
            }
            Provider::Toss => {
                let ok = s.len() == 6 && s.starts_with("CE") && s[2..].bytes().all(|b| b.is_ascii_digit());
                if !ok {
                    return Err(format!("{s}: expected http_5xx or a Toss error code like CE0001"));
                }
                Ok(FaultKind::Code { code: s.to_string(), bank_rsp_code: None })
            }
            Provider::Kakao => {
                let koe = s.len() == 6 && s.starts_with("KOE") && s[3..].bytes().all(|b| b.is_ascii_digit());
                let api = s.parse::<i64>().is_ok_and(|n| KAKAO_API_FAULT_CODES.contains(&n));
                if !(koe || api) {
                    return Err(format!("{s}: expected http_5xx, a Kakao token error like KOE237 or an API code of {KAKAO_API_FAULT_CODES:?}"));
                }
                Ok(FaultKind::Code { code: s.to_string(), bank_rsp_code: None })
            }
            Provider::Naver => {
                if !NAVER_FAULT_ERRORS.contains(&s) {
                    return Err(format!("{s}: expected http_5xx, server_error or temporarily_unavailable"));
                }
                Ok(FaultKind::Code { code: s.to_string(), bank_rsp_code: None })
            }
        }
    }

    /// The string form accepted by [`FaultKind::parse`].
    pub fn as_string(&self) -> String {
        match self {
            FaultKind::Http(n) => format!("http_{n}"),
            FaultKind::Html200 => "html_200".into(),
            FaultKind::Truncated => "truncated".into(),
            FaultKind::Code { code, bank_rsp_code: Some(b) } if code == "A0002" => format!("{code}:{b}"),
            FaultKind::Code { code, .. } => code.clone(),
        }
    }
}

/// Current fault settings of one simulator.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultSettings {
    pub latency_ms: u64,
    pub error_rate: f64,
    pub error: FaultKind,
}

impl FaultSettings {
    pub fn none() -> Self {
        Self { latency_ms: 0, error_rate: 0.0, error: FaultKind::Http(500) }
    }
}

/// Body of `POST /_sandbox/faults`. Missing fields take their "no fault" value, so `{}` clears.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRequest {
    #[serde(default)]
    pub latency_ms: Option<u64>,
    #[serde(default)]
    pub error_rate: Option<f64>,
    #[serde(default)]
    pub error: Option<String>,
}

/// JSON view of the settings (same field names as the request).
#[derive(Debug, Serialize)]
pub struct FaultView {
    pub latency_ms: u64,
    pub error_rate: f64,
    pub error: String,
}

impl FaultRequest {
    pub fn into_settings(self, provider: Provider) -> Result<FaultSettings, String> {
        let error_rate = self.error_rate.unwrap_or(0.0);
        if !(0.0..=1.0).contains(&error_rate) || error_rate.is_nan() {
            return Err("error_rate must be between 0.0 and 1.0".into());
        }
        let latency_ms = self.latency_ms.unwrap_or(0);
        if latency_ms > 600_000 {
            return Err("latency_ms must be at most 600000".into());
        }
        let error = match self.error {
            Some(e) => FaultKind::parse(&e, provider)?,
            None => FaultKind::Http(500),
        };
        Ok(FaultSettings { latency_ms, error_rate, error })
    }
}

/// Live fault state of one simulator.
pub struct Faults {
    provider: Provider,
    initial: FaultSettings,
    seed: u64,
    state: Mutex<(FaultSettings, StdRng)>,
}

impl Faults {
    pub fn new(provider: Provider, initial: FaultSettings, seed: u64) -> Self {
        let rng = StdRng::seed_from_u64(seed ^ 0xFA01_75EE);
        Self { provider, initial: initial.clone(), seed, state: Mutex::new((initial, rng)) }
    }

    pub fn provider(&self) -> Provider {
        self.provider
    }

    pub fn set(&self, settings: FaultSettings) {
        let mut g = lock(&self.state);
        g.0 = settings;
    }

    pub fn current(&self) -> FaultSettings {
        lock(&self.state).0.clone()
    }

    pub fn view(&self) -> FaultView {
        let s = self.current();
        FaultView { latency_ms: s.latency_ms, error_rate: s.error_rate, error: s.error.as_string() }
    }

    /// Back to the configured settings and the initial random sequence.
    pub fn reset(&self) {
        let mut g = lock(&self.state);
        *g = (self.initial.clone(), StdRng::seed_from_u64(self.seed ^ 0xFA01_75EE));
    }

    /// Decide the fate of one call: latency to add and, maybe, an error to answer with.
    pub fn decide(&self) -> (Duration, Option<FaultKind>) {
        let mut g = lock(&self.state);
        let (settings, rng) = &mut *g;
        let latency = Duration::from_millis(settings.latency_ms);
        let fail = settings.error_rate > 0.0 && (settings.error_rate >= 1.0 || rng.gen::<f64>() < settings.error_rate);
        (latency, fail.then(|| settings.error.clone()))
    }
}

/// The page of [`FaultKind::Html200`].
pub fn html_page() -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
        "<!DOCTYPE html><html lang=\"ko\"><head><title>서비스 점검</title></head><body><h1>서비스 점검 중입니다</h1>\
         <p>sandbox injected fault: maintenance page</p></body></html>",
    )
        .into_response()
}

/// [`FaultKind::Truncated`]: `resp` with only the first half of its body (status and headers
/// kept, `Content-Length` fixed to what is sent).
pub async fn truncate(resp: axum::response::Response) -> axum::response::Response {
    let (mut parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 24).await.unwrap_or_default();
    let cut = bytes.slice(..bytes.len() / 2);
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    axum::response::Response::from_parts(parts, axum::body::Body::from(cut))
}

/// Lock a mutex, recovering from poisoning (a panicked handler must not wedge the sandbox).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_kinds() {
        assert_eq!(FaultKind::parse("http_503", Provider::Kftc), Ok(FaultKind::Http(503)));
        assert!(FaultKind::parse("http_404", Provider::Kftc).is_err());
        assert_eq!(FaultKind::parse("A0002:412", Provider::Kftc), Ok(FaultKind::Code { code: "A0002".into(), bank_rsp_code: Some("412".into()) }));
        assert_eq!(FaultKind::parse("O0013", Provider::Kftc), Ok(FaultKind::Code { code: "O0013".into(), bank_rsp_code: None }));
        assert!(FaultKind::parse("A0007:412", Provider::Kftc).is_err());
        assert!(FaultKind::parse("CE0001", Provider::Kftc).is_err());
        assert!(FaultKind::parse("A0000", Provider::Kftc).is_err());
        assert!(FaultKind::parse("A0999", Provider::Kftc).is_err());
        assert!(FaultKind::parse("CE0001", Provider::Toss).is_ok());
        assert!(FaultKind::parse("A0007", Provider::Toss).is_err());
        assert!(FaultKind::parse("", Provider::Toss).is_err());
        assert!(FaultKind::parse("é", Provider::Kftc).is_err());
        assert!(FaultKind::parse("KOE237", Provider::Kakao).is_ok());
        assert!(FaultKind::parse("-9798", Provider::Kakao).is_ok());
        assert!(FaultKind::parse("-5", Provider::Kakao).is_err());
        assert!(FaultKind::parse("KOE23", Provider::Kakao).is_err());
        assert!(FaultKind::parse("server_error", Provider::Naver).is_ok());
        assert!(FaultKind::parse("KOE237", Provider::Naver).is_err());
        for p in [Provider::Kftc, Provider::Toss, Provider::Kakao, Provider::Naver] {
            assert_eq!(FaultKind::parse("html_200", p), Ok(FaultKind::Html200));
            assert_eq!(FaultKind::parse("truncated", p).map(|k| k.as_string()), Ok("truncated".to_string()));
        }
    }

    #[test]
    fn rates_zero_and_one_are_exact() {
        let f = Faults::new(Provider::Kftc, FaultSettings::none(), 1);
        for _ in 0..100 {
            assert!(f.decide().1.is_none());
        }
        f.set(FaultSettings { latency_ms: 5, error_rate: 1.0, error: FaultKind::Http(502) });
        for _ in 0..100 {
            assert_eq!(f.decide(), (Duration::from_millis(5), Some(FaultKind::Http(502))));
        }
        f.reset();
        assert_eq!(f.current(), FaultSettings::none());
    }

    #[test]
    fn empty_request_clears() {
        let r: FaultRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(r.into_settings(Provider::Toss).unwrap(), FaultSettings::none());
        let r: FaultRequest = serde_json::from_str(r#"{"error_rate": 1.5}"#).unwrap();
        assert!(r.into_settings(Provider::Toss).is_err());
    }
}
