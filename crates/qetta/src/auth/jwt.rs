//! HS256 JWTs: issued by `/api/v1/auth/*`, or minted by the app's own backend with the same
//! secret. Claims: `sub` (user id), `iss`, `aud`, `iat`, `exp`, optional `nbf` and `email`.
//! A token is refused before its `nbf`, after its `exp`, when it claims to be issued in the future,
//! and when its lifetime `exp - iat` exceeds `QETTA_JWT_TTL_SECS` (so a backend cannot mint
//! year-long tokens). Each check allows [`LEEWAY_SECS`] of clock skew.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// Clock skew allowed on `exp`, `nbf`, `iat` and the lifetime.
pub const LEEWAY_SECS: i64 = 5;

#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    issuer: String,
    audience: String,
    ttl_secs: i64,
    /// Tokens whose signature, issuer, audience and subject were checked already.
    verified: Arc<VerifiedTokens>,
}

/// The claims of tokens seen with a valid signature, so that the next request with the same
/// token skips the HMAC and the JSON decoding (about a tenth of a proxied request's CPU time).
/// Only what does not depend on the time is remembered: `exp`, `nbf`, `iat` and the lifetime are
/// checked on every request. Keyed by the whole token (the map's hasher is keyed at random, so
/// chosen tokens cannot collide on purpose); a token that fails is never stored. Bounded: when
/// full it starts over empty, which costs one verification per token in use.
#[derive(Default)]
struct VerifiedTokens(Mutex<HashMap<String, Claims>>);

/// Tokens remembered at most (a few hundred bytes each).
const VERIFIED_TOKENS: usize = 4096;

impl VerifiedTokens {
    fn get(&self, token: &str) -> Option<Claims> {
        self.0.lock().ok()?.get(token).cloned()
    }

    fn put(&self, token: &str, claims: &Claims) {
        if let Ok(mut map) = self.0.lock() {
            if map.len() >= VERIFIED_TOKENS {
                map.clear();
            }
            map.insert(token.to_string(), claims.clone());
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token lives longer than allowed")]
    LifetimeTooLong,
    #[error("the token is not valid")]
    Invalid,
}

impl JwtKeys {
    pub fn new(secret: &[u8], issuer: &str, audience: &str, ttl_secs: i64) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            ttl_secs,
            verified: Arc::default(),
        }
    }

    pub fn issue(&self, user_id: &str, email: Option<&str>, now: i64) -> (String, i64) {
        let exp = now + self.ttl_secs;
        let claims = Claims {
            sub: user_id.to_string(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now,
            exp,
            nbf: None,
            email: email.map(str::to_string),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).expect("HS256 encoding cannot fail");
        (token, exp)
    }

    /// Only HS256 is accepted (so `alg: none` and key-confusion tokens fail), with a valid
    /// signature, issuer, audience, `exp`, `nbf` and `iat`, and a lifetime within the TTL.
    pub fn verify(&self, token: &str) -> Result<Claims, JwtError> {
        let now = jsonwebtoken::get_current_timestamp() as i64;
        self.verify_at(token, now, now)
    }

    /// [`verify`](Self::verify) with the service's clock as well as the system's (they are the
    /// same in production; tests move the service clock): a token counts as expired only when
    /// it is by both, and as not yet valid only when it is by both.
    pub fn verify_with_clock(&self, token: &str, service_now: i64) -> Result<Claims, JwtError> {
        let system_now = jsonwebtoken::get_current_timestamp() as i64;
        self.verify_at(token, service_now.min(system_now), service_now.max(system_now))
    }

    fn verify_at(&self, token: &str, earliest_now: i64, latest_now: i64) -> Result<Claims, JwtError> {
        let claims = match self.verified.get(token) {
            Some(claims) => claims,
            None => {
                let claims = self.decode(token)?;
                self.verified.put(token, &claims);
                claims
            }
        };
        self.check_times(claims, earliest_now, latest_now)
    }

    /// The signature, algorithm, issuer, audience and subject: what does not change with time.
    fn decode(&self, token: &str) -> Result<Claims, JwtError> {
        let mut v = Validation::new(Algorithm::HS256);
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.audience]);
        v.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        // Time checks are done below, with one leeway for all of them.
        v.validate_exp = false;
        v.validate_nbf = false;
        let claims = match jsonwebtoken::decode::<Claims>(token, &self.decoding, &v) {
            Ok(data) => data.claims,
            Err(_) => return Err(JwtError::Invalid),
        };
        if claims.sub.is_empty() || claims.sub.len() > 128 {
            return Err(JwtError::Invalid);
        }
        Ok(claims)
    }

    fn check_times(&self, claims: Claims, earliest_now: i64, latest_now: i64) -> Result<Claims, JwtError> {
        if claims.exp + LEEWAY_SECS <= earliest_now {
            return Err(JwtError::Expired);
        }
        if claims.nbf.is_some_and(|nbf| nbf > latest_now + LEEWAY_SECS) || claims.iat > latest_now + LEEWAY_SECS {
            return Err(JwtError::NotYetValid);
        }
        if claims.exp - claims.iat > self.ttl_secs + LEEWAY_SECS {
            return Err(JwtError::LifetimeTooLong);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> JwtKeys {
        JwtKeys::new(b"0123456789abcdef0123456789abcdef", "qetta-connect", "qetta", 3600)
    }

    #[test]
    fn round_trip_and_rejections() {
        let k = keys();
        let now = chrono::Utc::now().timestamp();
        let (t, _) = k.issue("u1", Some("a@b.co"), now);
        assert_eq!(k.verify(&t).unwrap().sub, "u1");
        let (old, _) = k.issue("u1", None, now - 7200);
        assert!(matches!(k.verify(&old), Err(JwtError::Expired)));
        let other = JwtKeys::new(b"another-secret-another-secret-xx", "qetta-connect", "qetta", 3600);
        assert!(matches!(other.verify(&t), Err(JwtError::Invalid)));
        let wrong_aud = JwtKeys::new(b"0123456789abcdef0123456789abcdef", "qetta-connect", "elsewhere", 3600);
        assert!(matches!(wrong_aud.verify(&t), Err(JwtError::Invalid)));
    }

    /// A token verified once is remembered without its time checks: it still expires, and a
    /// token differing in one character (a forged signature) is verified on its own.
    #[test]
    fn remembered_tokens_are_still_checked_for_time() {
        let k = keys();
        let now = 1_800_000_000;
        let (t, exp) = k.issue("u1", None, now);
        assert_eq!(k.verify_at(&t, now, now).unwrap().sub, "u1");
        assert_eq!(k.verified.0.lock().unwrap().len(), 1);
        assert_eq!(k.verify_at(&t, now + 10, now + 10).unwrap().sub, "u1");
        assert!(matches!(k.verify_at(&t, exp + LEEWAY_SECS, exp + LEEWAY_SECS), Err(JwtError::Expired)));
        assert!(matches!(k.verify_at(&t, now - 3600, now - 3600), Err(JwtError::NotYetValid)));
        // One character in the middle of the signature (the last one has unused bits).
        let i = t.len() - 10;
        let c = if &t[i..=i] == "A" { "B" } else { "A" };
        let forged = format!("{}{c}{}", &t[..i], &t[i + 1..]);
        assert!(matches!(k.verify_at(&forged, now, now), Err(JwtError::Invalid)));
        assert_eq!(k.verified.0.lock().unwrap().len(), 1, "a refused token is not remembered");
        // Bounded: full, it starts over.
        for i in 0..VERIFIED_TOKENS {
            let (t, _) = k.issue(&format!("user-{i}"), None, now);
            k.verify_at(&t, now, now).unwrap();
        }
        assert!(k.verified.0.lock().unwrap().len() <= VERIFIED_TOKENS);
    }

    fn minted(claims: serde_json::Value) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef")).unwrap()
    }

    #[test]
    fn nbf_iat_and_lifetime() {
        let k = keys();
        let now = 1_800_000_000;
        let c = |iat: i64, exp: i64, nbf: Option<i64>| {
            let mut v = serde_json::json!({"sub": "u1", "iss": "qetta-connect", "aud": "qetta", "iat": iat, "exp": exp});
            if let Some(n) = nbf {
                v["nbf"] = n.into();
            }
            minted(v)
        };
        assert!(k.verify_at(&c(now, now + 3600, None), now, now).is_ok());
        assert!(k.verify_at(&c(now, now + 3600, Some(now)), now, now).is_ok());
        assert!(k.verify_at(&c(now, now + 3600, Some(now + 3)), now, now).is_ok(), "within the leeway");
        assert!(matches!(k.verify_at(&c(now, now + 3600, Some(now + 60)), now, now), Err(JwtError::NotYetValid)));
        assert!(matches!(k.verify_at(&c(now + 600, now + 3600, None), now, now), Err(JwtError::NotYetValid)));
        assert!(matches!(k.verify_at(&c(now, now + 365 * 86400, None), now, now), Err(JwtError::LifetimeTooLong)));
        assert!(matches!(k.verify_at(&c(now, now + 3600 + 6, None), now, now), Err(JwtError::LifetimeTooLong)));
        assert!(k.verify_at(&c(now, now + 3600 + 5, None), now, now).is_ok());
        assert!(matches!(k.verify_at(&c(now - 7200, now - 3600, None), now, now), Err(JwtError::Expired)));
        // iat is required.
        let no_iat = minted(serde_json::json!({"sub": "u1", "iss": "qetta-connect", "aud": "qetta", "exp": now + 60}));
        assert!(matches!(k.verify_at(&no_iat, now, now), Err(JwtError::Invalid)));
    }
}
