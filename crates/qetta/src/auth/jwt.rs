//! HS256 JWTs: issued by `/api/v1/auth/*`, or minted by the app's own backend with the same
//! secret. Claims: `sub` (user id), `iss`, `aud`, `iat`, `exp`, optional `email`.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    issuer: String,
    audience: String,
    ttl_secs: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("the token has expired")]
    Expired,
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
            email: email.map(str::to_string),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).expect("HS256 encoding cannot fail");
        (token, exp)
    }

    /// Only HS256 is accepted (so `alg: none` and key-confusion tokens fail), with a valid
    /// signature, issuer, audience and expiry.
    pub fn verify(&self, token: &str) -> Result<Claims, JwtError> {
        let mut v = Validation::new(Algorithm::HS256);
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.audience]);
        v.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        v.leeway = 5;
        match jsonwebtoken::decode::<Claims>(token, &self.decoding, &v) {
            Ok(data) if !data.claims.sub.is_empty() && data.claims.sub.len() <= 128 => Ok(data.claims),
            Ok(_) => Err(JwtError::Invalid),
            Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature) => Err(JwtError::Expired),
            Err(_) => Err(JwtError::Invalid),
        }
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
}
