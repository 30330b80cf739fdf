//! The provider's signing keys (JWKS), cached. An ID token signed with a `kid` the cache does
//! not know makes it fetch the set again, once, and not more often than the refetch interval:
//! that follows a key rotation without letting forged `kid`s make us hammer the provider (Kakao
//! warns that too-frequent fetching may be blocked, K6 [C]).

use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use super::error::IdTokenError;
use super::transport::{self, Retry};

/// A cached set is fetched again after this long even when every `kid` is known (keys that the
/// provider withdrew stop being trusted).
const MAX_AGE: Duration = Duration::from_secs(24 * 3600);

pub struct JwksCache {
    http: reqwest::Client,
    uri: String,
    per_call: Duration,
    refetch_interval: Duration,
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    keys: Vec<Jwk>,
    fetched_at: Option<Instant>,
    fetches: u64,
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

impl JwksCache {
    pub fn new(http: reqwest::Client, uri: String, per_call: Duration, refetch_interval: Duration) -> Self {
        Self { http, uri, per_call, refetch_interval, state: tokio::sync::Mutex::new(State::default()) }
    }

    /// How many times the set was fetched (for tests and metrics).
    pub async fn fetch_count(&self) -> u64 {
        self.state.lock().await.fetches
    }

    /// The key that verifies a token with header `kid` and `alg`.
    pub async fn key_for(&self, kid: Option<&str>, alg: Algorithm) -> Result<DecodingKey, IdTokenError> {
        let mut s = self.state.lock().await;
        let stale = s.fetched_at.is_none_or(|t| t.elapsed() >= MAX_AGE);
        if stale {
            match self.fetch().await {
                Ok(keys) => s.store(keys),
                // Keep serving a set we have if the provider is briefly unreachable.
                Err(e) if s.keys.is_empty() => return Err(e),
                Err(e) => tracing::warn!(jwks = %self.uri, error = %e, "JWKS refresh failed; keeping the cached keys"),
            }
        }
        if let Some(key) = find(&s.keys, kid, alg)? {
            return Ok(key);
        }
        // Unknown kid: maybe the provider rotated its keys. Fetch again, at most once per
        // interval.
        if s.fetched_at.is_some_and(|t| t.elapsed() < self.refetch_interval) {
            return Err(IdTokenError::UnknownKey { kid: kid.map(str::to_string) });
        }
        let keys = self.fetch().await?;
        s.store(keys);
        find(&s.keys, kid, alg)?.ok_or_else(|| IdTokenError::UnknownKey { kid: kid.map(str::to_string) })
    }

    async fn fetch(&self) -> Result<Vec<Jwk>, IdTokenError> {
        let answer = transport::send(|| self.http.get(&self.uri).header("accept", "application/json"), self.per_call, Retry::Idempotent)
            .await
            .map_err(|e| IdTokenError::Jwks(e.to_string()))?;
        if !(200..300).contains(&answer.status) {
            return Err(IdTokenError::Jwks(format!("the JWKS endpoint answered HTTP {}", answer.status)));
        }
        parse_set(&answer.body)
    }
}

impl State {
    fn store(&mut self, keys: Vec<Jwk>) {
        self.keys = keys;
        self.fetched_at = Some(Instant::now());
        self.fetches += 1;
    }
}

/// The usable keys of a JWKS document: keys we cannot read (other key types, encryption keys)
/// are skipped rather than failing the set.
pub fn parse_set(body: &[u8]) -> Result<Vec<Jwk>, IdTokenError> {
    let raw: RawSet = serde_json::from_slice(body).map_err(|e| IdTokenError::Jwks(format!("not a JWK set: {e}")))?;
    Ok(raw
        .keys
        .into_iter()
        .filter_map(|k| serde_json::from_value::<Jwk>(k).ok())
        .filter(|k| !matches!(k.common.public_key_use, Some(PublicKeyUse::Encryption)))
        .collect())
}

/// Whether `jwk` can verify `alg`: the key type and curve fit, and the key's own `alg` (if any)
/// is that one. Symmetric (`oct`) keys never fit: an ID token is verified with a public key.
fn fits(jwk: &Jwk, alg: Algorithm) -> bool {
    let type_fits = match (&jwk.algorithm, alg) {
        (AlgorithmParameters::RSA(_), Algorithm::RS256) => true,
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES256) => p.curve == EllipticCurve::P256,
        _ => false,
    };
    let alg_fits =
        matches!((jwk.common.key_algorithm, alg), (None, _) | (Some(KeyAlgorithm::RS256), Algorithm::RS256) | (Some(KeyAlgorithm::ES256), Algorithm::ES256));
    type_fits && alg_fits
}

fn find(keys: &[Jwk], kid: Option<&str>, alg: Algorithm) -> Result<Option<DecodingKey>, IdTokenError> {
    let mut candidates = keys.iter().filter(|k| fits(k, alg));
    let chosen = match kid {
        Some(kid) => candidates.find(|k| k.common.key_id.as_deref() == Some(kid)),
        // No kid: only unambiguous with a single fitting key.
        None => {
            let all: Vec<_> = candidates.collect();
            if all.len() == 1 {
                Some(all[0])
            } else {
                None
            }
        }
    };
    chosen.map(|k| DecodingKey::from_jwk(k).map_err(|e| IdTokenError::Jwks(format!("unusable key: {e}")))).transpose()
}
