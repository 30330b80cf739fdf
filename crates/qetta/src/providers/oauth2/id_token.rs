//! ID token validation (OpenID Connect Core §3.1.3.7): signature by the provider's JWKS (RS256 or
//! ES256 only: `none` and HS* are refused before any key is looked at), `iss` exactly, `aud`
//! containing our client id, `azp` when there are several audiences, `exp` and `iat` with a
//! small leeway, and the `nonce` we sent.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::error::IdTokenError;
use super::jwks::JwksCache;

/// `aud`: one audience or several.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn contains(&self, id: &str) -> bool {
        match self {
            Self::One(a) => a == id,
            Self::Many(all) => all.iter().any(|a| a == id),
        }
    }

    fn count(&self) -> usize {
        match self {
            Self::One(_) => 1,
            Self::Many(all) => all.len(),
        }
    }
}

/// The claims of a validated ID token that the client uses (the rest stays in `extra`).
#[derive(Debug, Clone, Deserialize)]
pub struct IdTokenClaims {
    pub iss: String,
    /// The provider's account id (Kakao: the user id as a string; Naver: pairwise id).
    /// (Defaulted so that a missing `sub` is reported by name.)
    #[serde(default)]
    pub sub: String,
    pub aud: Audience,
    pub exp: i64,
    pub iat: Option<i64>,
    pub nonce: Option<String>,
    pub azp: Option<String>,
    pub auth_time: Option<i64>,
    pub name: Option<String>,
    pub nickname: Option<String>,
    pub preferred_username: Option<String>,
    pub email: Option<String>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// What a token must satisfy.
pub struct Expectations<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    /// The nonce stored with the flow; `None` after a refresh (OIDC Core §12.2).
    pub nonce: Option<&'a str>,
    /// Accept a token without `nonce` although one was sent (a present one must still match).
    pub nonce_optional: bool,
    pub leeway: Duration,
    pub algorithms: &'a [Algorithm],
}

/// The header's `alg`, read before anything else so that `none` and HS* are refused by name.
fn header_alg(token: &str, allowed: &[Algorithm]) -> Result<(Algorithm, Option<String>), IdTokenError> {
    let mut parts = token.split('.');
    let (Some(h), Some(_), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(IdTokenError::Malformed);
    };
    let raw = URL_SAFE_NO_PAD.decode(h.trim_end_matches('=')).map_err(|_| IdTokenError::Malformed)?;
    let header: serde_json::Value = serde_json::from_slice(&raw).map_err(|_| IdTokenError::Malformed)?;
    let alg = header.get("alg").and_then(|a| a.as_str()).ok_or(IdTokenError::Malformed)?;
    let parsed = match alg {
        "RS256" => Algorithm::RS256,
        "ES256" => Algorithm::ES256,
        other => return Err(IdTokenError::Algorithm(other.chars().take(16).collect())),
    };
    if !allowed.contains(&parsed) {
        return Err(IdTokenError::Algorithm(alg.to_string()));
    }
    let kid = header.get("kid").and_then(|k| k.as_str()).map(str::to_string);
    Ok((parsed, kid))
}

/// Validates `token` with a key from `jwks`.
pub async fn validate(token: &str, jwks: &JwksCache, expect: &Expectations<'_>) -> Result<IdTokenClaims, IdTokenError> {
    let (alg, kid) = header_alg(token, expect.algorithms)?;
    let key = jwks.key_for(kid.as_deref(), alg).await?;
    validate_with_key(token, &key, alg, expect, chrono::Utc::now().timestamp())
}

/// Validates `token` with `key` at Unix time `now`.
pub fn validate_with_key(token: &str, key: &DecodingKey, alg: Algorithm, expect: &Expectations<'_>, now: i64) -> Result<IdTokenClaims, IdTokenError> {
    let mut v = Validation::new(alg);
    v.leeway = expect.leeway.as_secs();
    v.set_issuer(&[expect.issuer]);
    v.set_audience(&[expect.client_id]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    // exp is checked below against `now` (testable), with the same leeway.
    v.validate_exp = false;
    v.validate_nbf = false;
    let data = jsonwebtoken::decode::<IdTokenClaims>(token, key, &v).map_err(|e| match e.kind() {
        ErrorKind::InvalidSignature | ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidRsaKey(_) | ErrorKind::Crypto(_) => IdTokenError::Signature,
        ErrorKind::InvalidIssuer => IdTokenError::Issuer,
        ErrorKind::InvalidAudience => IdTokenError::Audience,
        ErrorKind::ExpiredSignature => IdTokenError::Expired,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName | ErrorKind::MissingAlgorithm => IdTokenError::Algorithm(format!("{alg:?}")),
        ErrorKind::MissingRequiredClaim(c) => IdTokenError::MissingClaim(match c.as_str() {
            "exp" => "exp",
            "iss" => "iss",
            "aud" => "aud",
            _ => "sub",
        }),
        _ => IdTokenError::Malformed,
    })?;
    let c = data.claims;
    let leeway = expect.leeway.as_secs() as i64;
    // Belt and braces: the library compared these already.
    if c.iss != expect.issuer {
        return Err(IdTokenError::Issuer);
    }
    if !c.aud.contains(expect.client_id) {
        return Err(IdTokenError::Audience);
    }
    // §3.1.3.7 items 4–5: with several audiences, azp must be present and be us; if present, us.
    match &c.azp {
        Some(azp) if azp != expect.client_id => return Err(IdTokenError::AuthorizedParty),
        None if c.aud.count() > 1 => return Err(IdTokenError::AuthorizedParty),
        _ => {}
    }
    if c.exp + leeway <= now {
        return Err(IdTokenError::Expired);
    }
    let iat = c.iat.ok_or(IdTokenError::MissingClaim("iat"))?;
    if iat > now + leeway || iat > c.exp {
        return Err(IdTokenError::IssuedAt);
    }
    if c.sub.is_empty() {
        return Err(IdTokenError::MissingClaim("sub"));
    }
    if let Some(expected) = expect.nonce {
        match &c.nonce {
            Some(got) if bool::from(got.as_bytes().ct_eq(expected.as_bytes())) => {}
            None if expect.nonce_optional => {}
            _ => return Err(IdTokenError::Nonce),
        }
    }
    Ok(c)
}

/// OIDC Core §3.1.3.8 / §3.3.2.11: when the ID token carries `at_hash`, it must be the
/// base64url of the left half of the SHA-256 of the access token (RS256 and ES256 both hash with
/// SHA-256). Absent (Kakao never sends it, K6), nothing to check.
pub fn check_at_hash(claims: &IdTokenClaims, access_token: &str) -> Result<(), IdTokenError> {
    use sha2::{Digest, Sha256};
    let Some(at_hash) = claims.extra.get("at_hash") else {
        return Ok(());
    };
    let digest = Sha256::digest(access_token.as_bytes());
    let expected = URL_SAFE_NO_PAD.encode(&digest[..16]);
    match at_hash.as_str() {
        Some(got) if bool::from(got.as_bytes().ct_eq(expected.as_bytes())) => Ok(()),
        _ => Err(IdTokenError::AccessTokenHash),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::traits::PublicKeyParts;
    use serde_json::json;

    /// An RSA signing key and its JWK (public part).
    pub struct TestKey {
        pub kid: String,
        pub alg: Algorithm,
        pub encoding: EncodingKey,
        pub jwk: serde_json::Value,
    }

    pub fn rsa_key(kid: &str) -> TestKey {
        let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).expect("rsa key");
        let pem = private.to_pkcs1_pem(rsa::pkcs8::LineEnding::LF).expect("pem");
        let encoding = EncodingKey::from_rsa_pem(pem.as_bytes()).expect("encoding key");
        let b64 = |b: Vec<u8>| URL_SAFE_NO_PAD.encode(b);
        let jwk = json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64(private.n().to_bytes_be()), "e": b64(private.e().to_bytes_be())});
        TestKey { kid: kid.into(), alg: Algorithm::RS256, encoding, jwk }
    }

    pub fn sign(key: &TestKey, claims: &serde_json::Value) -> String {
        let mut h = Header::new(key.alg);
        h.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&h, claims, &key.encoding).expect("sign")
    }

    pub const ISS: &str = "https://idp.example";
    pub const CID: &str = "client-1";

    pub fn claims(now: i64) -> serde_json::Value {
        json!({"iss": ISS, "sub": "user-42", "aud": CID, "exp": now + 600, "iat": now, "nonce": "n-1", "name": "Kim"})
    }

    fn expect(nonce: Option<&'static str>) -> Expectations<'static> {
        Expectations {
            issuer: ISS,
            client_id: CID,
            nonce,
            nonce_optional: false,
            leeway: Duration::from_secs(60),
            algorithms: &[Algorithm::RS256, Algorithm::ES256],
        }
    }

    fn check(key: &TestKey, claims: serde_json::Value, nonce: Option<&'static str>) -> Result<IdTokenClaims, IdTokenError> {
        let token = sign(key, &claims);
        let decoding = DecodingKey::from_jwk(&serde_json::from_value(key.jwk.clone()).unwrap()).unwrap();
        header_alg(&token, &[Algorithm::RS256, Algorithm::ES256])?;
        validate_with_key(&token, &decoding, key.alg, &expect(nonce), chrono::Utc::now().timestamp())
    }

    fn with(now: i64, f: impl FnOnce(&mut serde_json::Value)) -> serde_json::Value {
        let mut c = claims(now);
        f(&mut c);
        c
    }

    #[test]
    fn failures_are_named() {
        let key = rsa_key("k1");
        let now = chrono::Utc::now().timestamp();
        let ok = check(&key, claims(now), Some("n-1")).expect("valid");
        assert_eq!((ok.sub.as_str(), ok.name.as_deref()), ("user-42", Some("Kim")));
        assert_eq!(check(&key, with(now, |c| c["iss"] = json!("https://evil.example")), Some("n-1")).unwrap_err(), IdTokenError::Issuer);
        assert_eq!(check(&key, with(now, |c| c["iss"] = json!("https://idp.example/")), Some("n-1")).unwrap_err(), IdTokenError::Issuer);
        assert_eq!(check(&key, with(now, |c| c["aud"] = json!("someone-else")), Some("n-1")).unwrap_err(), IdTokenError::Audience);
        assert_eq!(check(&key, with(now, |c| c["aud"] = json!(["a", CID])), Some("n-1")).unwrap_err(), IdTokenError::AuthorizedParty);
        check(
            &key,
            with(now, |c| {
                c["aud"] = json!(["a", CID]);
                c["azp"] = json!(CID)
            }),
            Some("n-1"),
        )
        .expect("several audiences with azp");
        assert_eq!(check(&key, with(now, |c| c["azp"] = json!("a")), Some("n-1")).unwrap_err(), IdTokenError::AuthorizedParty);
        assert_eq!(
            check(
                &key,
                with(now, |c| {
                    c["exp"] = json!(now - 61);
                    c["iat"] = json!(now - 700)
                }),
                Some("n-1")
            )
            .unwrap_err(),
            IdTokenError::Expired
        );
        check(
            &key,
            with(now, |c| {
                c["exp"] = json!(now - 30);
                c["iat"] = json!(now - 600)
            }),
            Some("n-1"),
        )
        .expect("within the leeway");
        assert_eq!(check(&key, with(now, |c| c["iat"] = json!(now + 300)), Some("n-1")).unwrap_err(), IdTokenError::IssuedAt);
        assert_eq!(
            check(
                &key,
                with(now, |c| {
                    c.as_object_mut().unwrap().remove("iat");
                }),
                Some("n-1")
            )
            .unwrap_err(),
            IdTokenError::MissingClaim("iat")
        );
        assert_eq!(
            check(
                &key,
                with(now, |c| {
                    c.as_object_mut().unwrap().remove("sub");
                }),
                Some("n-1")
            )
            .unwrap_err(),
            IdTokenError::MissingClaim("sub")
        );
        assert_eq!(check(&key, claims(now), Some("n-2")).unwrap_err(), IdTokenError::Nonce);
        assert_eq!(
            check(
                &key,
                with(now, |c| {
                    c.as_object_mut().unwrap().remove("nonce");
                }),
                Some("n-1")
            )
            .unwrap_err(),
            IdTokenError::Nonce
        );
        check(&key, claims(now), None).expect("no nonce expected after a refresh");
        // Nonce optional (Naver, E10): absent is accepted, a wrong one is not.
        let token = sign(
            &key,
            &with(now, |c| {
                c.as_object_mut().unwrap().remove("nonce");
            }),
        );
        let decoding = DecodingKey::from_jwk(&serde_json::from_value(key.jwk.clone()).unwrap()).unwrap();
        let lenient = Expectations { nonce_optional: true, ..expect(Some("n-1")) };
        validate_with_key(&token, &decoding, Algorithm::RS256, &lenient, now).expect("absent nonce tolerated");
        let token = sign(&key, &claims(now));
        let lenient = Expectations { nonce_optional: true, ..expect(Some("other")) };
        assert_eq!(validate_with_key(&token, &decoding, Algorithm::RS256, &lenient, now).unwrap_err(), IdTokenError::Nonce);
    }

    #[test]
    fn at_hash_is_checked_when_present() {
        let key = rsa_key("k1");
        let now = chrono::Utc::now().timestamp();
        // OIDC Core §A.3's example: access token jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y has
        // at_hash 77QmUPtjPfzWtF2AnpK9RQ.
        let at = "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y";
        let c = check(&key, with(now, |c| c["at_hash"] = json!("77QmUPtjPfzWtF2AnpK9RQ")), Some("n-1")).unwrap();
        check_at_hash(&c, at).expect("matches");
        assert_eq!(check_at_hash(&c, "another-token").unwrap_err(), IdTokenError::AccessTokenHash);
        let without = check(&key, claims(now), Some("n-1")).unwrap();
        check_at_hash(&without, "anything").expect("absent: nothing to check");
    }

    #[test]
    fn wrong_signature_and_tampering_are_refused() {
        let key = rsa_key("k1");
        let other = rsa_key("k1");
        let now = chrono::Utc::now().timestamp();
        let token = sign(&other, &claims(now));
        let decoding = DecodingKey::from_jwk(&serde_json::from_value(key.jwk.clone()).unwrap()).unwrap();
        assert_eq!(validate_with_key(&token, &decoding, Algorithm::RS256, &expect(Some("n-1")), now).unwrap_err(), IdTokenError::Signature);
        // A valid token whose payload is swapped for another one.
        let good = sign(&key, &claims(now));
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&with(now, |c| c["sub"] = json!("admin"))).unwrap());
        let parts: Vec<&str> = good.split('.').collect();
        let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(validate_with_key(&tampered, &decoding, Algorithm::RS256, &expect(Some("n-1")), now).unwrap_err(), IdTokenError::Signature);
    }

    #[test]
    fn none_and_hmac_are_refused_by_name() {
        let now = chrono::Utc::now().timestamp();
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(now)).unwrap());
        let none = format!("{}.{payload}.", URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#));
        assert_eq!(header_alg(&none, &[Algorithm::RS256]).unwrap_err(), IdTokenError::Algorithm("none".into()));
        // HS256 "signed" with the RSA public key's bytes (the classic key-confusion forgery).
        let key = rsa_key("k1");
        let n = key.jwk["n"].as_str().unwrap().to_string();
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("k1".into());
        let hs = jsonwebtoken::encode(&h, &claims(now), &EncodingKey::from_secret(n.as_bytes())).unwrap();
        assert_eq!(header_alg(&hs, &[Algorithm::RS256, Algorithm::ES256]).unwrap_err(), IdTokenError::Algorithm("HS256".into()));
        // Even past the header check, an RSA key never verifies an HS256 token.
        let decoding = DecodingKey::from_jwk(&serde_json::from_value(key.jwk.clone()).unwrap()).unwrap();
        assert!(validate_with_key(&hs, &decoding, Algorithm::RS256, &expect(Some("n-1")), now).is_err());
        // ES256 not advertised by the provider: refused.
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some("k1".into());
        let rs = jsonwebtoken::encode(&h, &claims(now), &key.encoding).unwrap();
        assert_eq!(header_alg(&rs, &[Algorithm::ES256]).unwrap_err(), IdTokenError::Algorithm("RS256".into()));
        assert_eq!(header_alg("a.b", &[Algorithm::RS256]).unwrap_err(), IdTokenError::Malformed);
    }
}
