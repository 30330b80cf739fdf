//! Pieces shared by the Kakao and Naver simulators: RS256 signing keys and JWKS, ID-token
//! signing and checking, PKCE (S256), request parameters, redirects and base URLs.
//!
//! Written from docs/oauth-providers.md, independently of the service's OAuth client.

use std::sync::{Mutex, OnceLock};

use axum::body::Bytes;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use rand::distributions::Alphanumeric;
use rand::Rng;
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::faults::lock;

/// Sandbox-only RSA-2048 keys that sign ID tokens. They protect nothing (shipped in the crate,
/// like the Toss key): a real key pair generated at every start would make tests slow, and
/// shipped keys let a rotation be deterministic. Never use them anywhere else.
const OIDC_KEY_PEMS: [&str; 4] = [
    include_str!("../keys/SANDBOX-ONLY-oidc-rsa-key-1.pem"),
    include_str!("../keys/SANDBOX-ONLY-oidc-rsa-key-2.pem"),
    include_str!("../keys/SANDBOX-ONLY-oidc-rsa-key-3.pem"),
    include_str!("../keys/SANDBOX-ONLY-oidc-rsa-key-4.pem"),
];

pub(crate) struct SigningEntry {
    pub kid: String,
    private: RsaPrivateKey,
    public: RsaPublicKey,
}

fn pool() -> &'static [SigningEntry] {
    static POOL: OnceLock<Vec<SigningEntry>> = OnceLock::new();
    POOL.get_or_init(|| {
        OIDC_KEY_PEMS
            .iter()
            .filter_map(|pem| {
                let private = match RsaPrivateKey::from_pkcs8_pem(pem.trim()) {
                    Ok(k) => k,
                    Err(e) => {
                        tracing::error!(error = %e, "shipped sandbox OIDC key does not parse");
                        return None;
                    }
                };
                let public = RsaPublicKey::from(&private);
                // kid: 32 hex characters of SHA-256(n) (Kakao's kids are 32 hex characters too).
                let kid = hex::encode(&Sha256::digest(public.n().to_bytes_be())[..16]);
                Some(SigningEntry { kid, private, public })
            })
            .collect()
    })
}

/// The signing keys of one simulator: the current key and, after a rotation, the previous one
/// (still published so ID tokens issued before the rotation verify).
pub(crate) struct KeyRing {
    start: usize,
    /// (current, previous) indexes into the shipped pool.
    state: Mutex<(usize, Option<usize>)>,
}

impl KeyRing {
    pub fn new(start: usize) -> Self {
        Self { start, state: Mutex::new((start, None)) }
    }

    fn entry(i: usize) -> Option<&'static SigningEntry> {
        let p = pool();
        if p.is_empty() {
            None
        } else {
            p.get(i % p.len())
        }
    }

    pub fn current_kid(&self) -> String {
        let (cur, _) = *lock(&self.state);
        Self::entry(cur).map(|e| e.kid.clone()).unwrap_or_default()
    }

    /// Move to the next shipped key; `keep_previous` keeps the old key in the JWKS.
    /// Returns (new kid, retired kid).
    pub fn rotate(&self, keep_previous: bool) -> (String, String) {
        let mut g = lock(&self.state);
        let old = g.0;
        let n = pool().len().max(1);
        let next = (old + 1) % n;
        *g = (next, keep_previous.then_some(old));
        let kid = |i| Self::entry(i).map(|e| e.kid.clone()).unwrap_or_default();
        (kid(next), kid(old))
    }

    pub fn reset(&self) {
        *lock(&self.state) = (self.start, None);
    }

    /// `{"keys": [...]}` (K6: kid, kty RSA, alg RS256, use sig, n, e).
    pub fn jwks(&self) -> Value {
        let (cur, prev) = *lock(&self.state);
        let keys: Vec<Value> = [Some(cur), prev]
            .into_iter()
            .flatten()
            .filter_map(Self::entry)
            .map(|e| {
                json!({
                    "kid": e.kid,
                    "kty": "RSA",
                    "alg": "RS256",
                    "use": "sig",
                    "n": B64URL.encode(e.public.n().to_bytes_be()),
                    "e": B64URL.encode(e.public.e().to_bytes_be()),
                })
            })
            .collect();
        json!({ "keys": keys })
    }

    /// A compact RS256 JWS of `claims` with the current key.
    pub fn sign(&self, claims: &Value) -> String {
        let (cur, _) = *lock(&self.state);
        let Some(e) = Self::entry(cur) else { return String::new() };
        let header = json!({ "kid": e.kid, "typ": "JWT", "alg": "RS256" });
        let input = format!("{}.{}", B64URL.encode(header.to_string()), B64URL.encode(claims.to_string()));
        let sig = SigningKey::<Sha256>::new(e.private.clone()).sign(input.as_bytes()).to_bytes();
        format!("{input}.{}", B64URL.encode(sig))
    }

    /// The claims of a token this ring signed (current or published previous key), if the
    /// signature verifies. Expiry is the caller's business.
    pub fn verify(&self, token: &str) -> Option<Value> {
        let mut parts = token.split('.');
        let (h, p, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let header: Value = serde_json::from_slice(&B64URL.decode(h).ok()?).ok()?;
        let kid = header.get("kid")?.as_str()?;
        if header.get("alg")?.as_str()? != "RS256" {
            return None;
        }
        let (cur, prev) = *lock(&self.state);
        let e = [Some(cur), prev].into_iter().flatten().filter_map(Self::entry).find(|e| e.kid == kid)?;
        let sig = Signature::try_from(B64URL.decode(s).ok()?.as_slice()).ok()?;
        VerifyingKey::<Sha256>::new(e.public.clone()).verify(format!("{h}.{p}").as_bytes(), &sig).ok()?;
        serde_json::from_slice(&B64URL.decode(p).ok()?).ok()
    }
}

/// RFC 7636 §4.1: 43–128 characters of `[A-Za-z0-9-._~]`.
pub fn valid_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// A challenge is BASE64URL(SHA-256) without padding: 43 characters of the base64url alphabet.
pub fn valid_challenge(c: &str) -> bool {
    c.len() == 43 && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// S256: BASE64URL-no-padding(SHA-256(verifier)) == challenge.
pub fn pkce_matches(challenge: &str, verifier: &str) -> bool {
    valid_verifier(verifier) && B64URL.encode(Sha256::digest(verifier.as_bytes())) == challenge
}

/// Parameters in order, duplicates kept.
pub type Pairs = Vec<(String, String)>;

pub fn parse_pairs(s: &str) -> Option<Pairs> {
    serde_urlencoded::from_str(s).ok()
}

/// A form body (`application/x-www-form-urlencoded`), `None` if it is not one or not UTF-8.
pub fn form_pairs(headers: &HeaderMap, body: &Bytes) -> Option<Pairs> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return if body.is_empty() { Some(Vec::new()) } else { None };
    }
    std::str::from_utf8(body).ok().and_then(parse_pairs)
}

/// A parameter given more than once.
#[derive(Debug, PartialEq, Eq)]
pub struct Duplicated(pub String);

/// The single non-empty value of `key`; an empty value counts as absent.
pub fn single<'a>(pairs: &'a Pairs, key: &str) -> Result<Option<&'a str>, Duplicated> {
    let mut it = pairs.iter().filter(|(k, _)| k == key);
    let first = it.next().map(|(_, v)| v.as_str());
    if it.next().is_some() {
        return Err(Duplicated(key.to_string()));
    }
    Ok(first.filter(|v| !v.is_empty()))
}

pub fn append_query(uri: &str, params: &[(&str, &str)]) -> String {
    let q = serde_urlencoded::to_string(params).unwrap_or_default();
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}{q}")
}

/// `302 Found` to `location`.
pub fn found(location: &str) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, location.to_string())]).into_response()
}

pub fn wants_html(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("text/html"))
}

/// `scheme://host{mount prefix}` of the simulator the request came in on: the prefix is what
/// the original path has in front of the path relative to the simulator's router.
pub fn base_url(headers: &HeaderMap, original: &Uri, relative: &Uri) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()) && !h.contains(['/', '"', '<', '>']))
        .unwrap_or("localhost");
    let proto = headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()).filter(|p| *p == "https" || *p == "http").unwrap_or("http");
    let prefix = original.path().strip_suffix(relative.path()).unwrap_or("");
    format!("{proto}://{host}{prefix}")
}

pub fn random_alnum(n: usize) -> String {
    rand::thread_rng().sample_iter(&Alphanumeric).take(n).map(char::from).collect()
}

/// `Authorization: Bearer <token>` (scheme case-insensitive), `None` when absent or malformed.
pub fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' ').filter(|(s, _)| s.eq_ignore_ascii_case("bearer")).map(|(_, t)| t.trim()))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

/// `Authorization: Basic base64(id:secret)` (ids and secrets form-urlencoded per RFC 6749 §2.3.1).
pub fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::engine::general_purpose::STANDARD;
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(rest.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let dec = |s: &str| serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("x={s}")).ok()?.pop().map(|(_, v)| v);
    Some((dec(id)?, dec(secret)?))
}

/// JSON answer with `Cache-Control: no-store` (token responses, RFC 6749 §5.1).
pub fn no_store_json(status: StatusCode, body: Value) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store"), (header::PRAGMA, "no-cache")], [(header::CONTENT_TYPE, "application/json;charset=UTF-8")], body.to_string())
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_rfc7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(valid_challenge(challenge));
        assert!(pkce_matches(challenge, verifier));
        assert!(!pkce_matches(challenge, "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXK"));
        assert!(!pkce_matches(challenge, "short"));
    }

    #[test]
    fn keys_sign_verify_and_rotate() {
        let ring = KeyRing::new(0);
        let kid = ring.current_kid();
        assert_eq!(kid.len(), 32);
        let t = ring.sign(&json!({"sub": "1"}));
        assert_eq!(ring.verify(&t).unwrap()["sub"], "1");
        let (new, old) = ring.rotate(true);
        assert_eq!(old, kid);
        assert_ne!(new, kid);
        assert_eq!(ring.jwks()["keys"].as_array().unwrap().len(), 2);
        assert!(ring.verify(&t).is_some(), "previous key still published");
        ring.rotate(false);
        assert!(ring.verify(&t).is_none());
        assert_eq!(ring.jwks()["keys"].as_array().unwrap().len(), 1);
        ring.reset();
        assert_eq!(ring.current_kid(), kid);
        assert!(ring.verify("a.b.c").is_none());
        assert!(ring.verify("").is_none());
    }

    #[test]
    fn basic_credentials_decode() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Basic aWQ6c2VjcmV0".parse().unwrap());
        assert_eq!(basic_credentials(&h), Some(("id".into(), "secret".into())));
    }
}
