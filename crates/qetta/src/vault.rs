//! Encryption of tokens and personal data at rest.
//!
//! AES-256-GCM with a random 96-bit nonce per value. The associated data binds each ciphertext to
//! its row and field (a ciphertext copied into another row or column does not open), and every
//! value carries the id of the key that sealed it, so keys can be rotated while the service runs
//! (`qetta keys rotate`).
//!
//! Sealed layout: `b"QV1"` ‖ key-id length (1 byte) ‖ key id ‖ nonce (12) ‖ ciphertext ‖ tag (16).

use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

const MAGIC: &[u8; 3] = b"QV1";
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("QETTA_ENCRYPTION_KEYS: {0}")]
    BadKeySpec(String),
    #[error("the value was sealed with key {0:?}, which is not configured (add it to QETTA_ENCRYPTION_KEYS)")]
    UnknownKey(String),
    #[error("the value is not a sealed value")]
    Malformed,
    #[error("the value does not open with its key (wrong key, or it was moved or altered)")]
    Tampered,
}

/// Where a sealed value lives: the associated data of its ciphertext.
#[derive(Debug, Clone, Copy)]
pub struct Aad<'a> {
    /// The row that owns the value (connection id, …).
    pub row: &'a str,
    /// The provider or table (kftc, toss, …).
    pub scope: &'a str,
    /// The column (access_token, refresh_token, …).
    pub field: &'a str,
}

impl Aad<'_> {
    fn bytes(&self) -> Vec<u8> {
        let mut out = b"qetta-vault-v1".to_vec();
        for part in [self.row, self.scope, self.field] {
            out.extend_from_slice(&(part.len() as u32).to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
        out
    }
}

struct Key {
    id: String,
    bytes: Zeroizing<[u8; 32]>,
}

/// The configured keys; the first is the active one (used to seal), the others only open.
pub struct KeyRing {
    keys: Vec<Key>,
}

impl KeyRing {
    /// Parses `id:base64,id:base64,…` (commas or newlines; `#` comments allowed in files).
    pub fn parse(spec: &str) -> Result<Self, VaultError> {
        let mut keys: Vec<Key> = Vec::new();
        for item in spec.lines().map(|l| l.split('#').next().unwrap_or("")).flat_map(|l| l.split(',')).map(str::trim).filter(|s| !s.is_empty()) {
            let (id, b64) = item.split_once(':').ok_or_else(|| VaultError::BadKeySpec("expected id:base64-key entries separated by commas".into()))?;
            let id = id.trim();
            if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return Err(VaultError::BadKeySpec(format!("key id {id:?} must be 1-64 letters, digits, - or _")));
            }
            let raw = Zeroizing::new(
                base64::engine::general_purpose::STANDARD.decode(b64.trim()).map_err(|_| VaultError::BadKeySpec(format!("key {id:?} is not valid base64")))?,
            );
            let bytes: [u8; 32] = raw
                .as_slice()
                .try_into()
                .map_err(|_| VaultError::BadKeySpec(format!("key {id:?} must be 32 bytes (it has {}); make one with `qetta keys generate`", raw.len())))?;
            if keys.iter().any(|k| k.id == id) {
                return Err(VaultError::BadKeySpec(format!("key id {id:?} appears twice")));
            }
            keys.push(Key { id: id.to_string(), bytes: Zeroizing::new(bytes) });
        }
        if keys.is_empty() {
            return Err(VaultError::BadKeySpec("no key given".into()));
        }
        Ok(Self { keys })
    }

    /// A fresh `id:base64` key entry.
    pub fn generate_entry(id: &str) -> String {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(key.as_mut());
        format!("{id}:{}", base64::engine::general_purpose::STANDARD.encode(key.as_ref()))
    }

    pub fn active_id(&self) -> &str {
        &self.keys[0].id
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.id.as_str())
    }

    /// A short, non-reversible fingerprint of key `id`, stored in the database to detect a
    /// configured key that is not the one that sealed the stored data.
    pub fn fingerprint(&self, id: &str) -> Option<String> {
        let key = self.keys.iter().find(|k| k.id == id)?;
        let mut h = Sha256::new();
        h.update(b"qetta-key-fingerprint-v1");
        h.update(key.bytes.as_ref());
        Some(hex::encode(&h.finalize()[..16]))
    }
}

/// Seals and opens values. Cheap to clone.
#[derive(Clone)]
pub struct Vault {
    ring: Arc<KeyRing>,
}

impl Vault {
    pub fn new(ring: KeyRing) -> Self {
        Self { ring: Arc::new(ring) }
    }

    pub fn ring(&self) -> &KeyRing {
        &self.ring
    }

    pub fn active_key_id(&self) -> &str {
        self.ring.active_id()
    }

    /// Seals with the active key.
    pub fn seal(&self, plaintext: &[u8], aad: Aad<'_>) -> Vec<u8> {
        let key = &self.ring.keys[0];
        let cipher = Aes256Gcm::new_from_slice(key.bytes.as_ref()).expect("32-byte key");
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: &aad.bytes() })
            .expect("AES-GCM encryption of a bounded value cannot fail");
        let mut out = Vec::with_capacity(4 + key.id.len() + NONCE_LEN + sealed.len());
        out.extend_from_slice(MAGIC);
        out.push(key.id.len() as u8);
        out.extend_from_slice(key.id.as_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    pub fn seal_str(&self, plaintext: &str, aad: Aad<'_>) -> Vec<u8> {
        self.seal(plaintext.as_bytes(), aad)
    }

    /// The id of the key that sealed `blob`.
    pub fn key_id_of(blob: &[u8]) -> Result<&str, VaultError> {
        let (id, _) = split(blob)?;
        Ok(id)
    }

    pub fn open(&self, blob: &[u8], aad: Aad<'_>) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let (id, rest) = split(blob)?;
        let key = self.ring.keys.iter().find(|k| k.id == id).ok_or_else(|| VaultError::UnknownKey(id.to_string()))?;
        if rest.len() < NONCE_LEN + 16 {
            return Err(VaultError::Malformed);
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let cipher = Aes256Gcm::new_from_slice(key.bytes.as_ref()).expect("32-byte key");
        cipher.decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad: &aad.bytes() }).map(Zeroizing::new).map_err(|_| VaultError::Tampered)
    }

    pub fn open_string(&self, blob: &[u8], aad: Aad<'_>) -> Result<secrecy::SecretString, VaultError> {
        let bytes = self.open(blob, aad)?;
        let s = std::str::from_utf8(&bytes).map_err(|_| VaultError::Malformed)?;
        Ok(secrecy::SecretString::from(s.to_string()))
    }
}

fn split(blob: &[u8]) -> Result<(&str, &[u8]), VaultError> {
    if blob.len() < 4 || &blob[..3] != MAGIC {
        return Err(VaultError::Malformed);
    }
    let n = blob[3] as usize;
    if blob.len() < 4 + n {
        return Err(VaultError::Malformed);
    }
    let id = std::str::from_utf8(&blob[4..4 + n]).map_err(|_| VaultError::Malformed)?;
    Ok((id, &blob[4 + n..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn aad(field: &str) -> Aad<'_> {
        Aad { row: "conn-1", scope: "kftc", field }
    }

    #[test]
    fn seals_and_opens_with_a_fresh_nonce_each_time() {
        let v = Vault::new(KeyRing::parse(&KeyRing::generate_entry("k1")).unwrap());
        let a = v.seal_str("token-abc", aad("access_token"));
        let b = v.seal_str("token-abc", aad("access_token"));
        assert_ne!(a, b);
        assert!(!a.windows(9).any(|w| w == b"token-abc"));
        assert_eq!(v.open_string(&a, aad("access_token")).unwrap().expose_secret(), "token-abc");
        assert_eq!(Vault::key_id_of(&a).unwrap(), "k1");
    }

    #[test]
    fn a_value_moved_to_another_field_or_row_or_altered_does_not_open() {
        let v = Vault::new(KeyRing::parse(&KeyRing::generate_entry("k1")).unwrap());
        let a = v.seal_str("token-abc", aad("access_token"));
        assert!(matches!(v.open(&a, aad("refresh_token")), Err(VaultError::Tampered)));
        assert!(matches!(v.open(&a, Aad { row: "conn-2", scope: "kftc", field: "access_token" }), Err(VaultError::Tampered)));
        let mut bent = a.clone();
        *bent.last_mut().unwrap() ^= 1;
        assert!(matches!(v.open(&bent, aad("access_token")), Err(VaultError::Tampered)));
        assert!(matches!(v.open(b"plain", aad("access_token")), Err(VaultError::Malformed)));
    }

    #[test]
    fn old_keys_open_and_the_first_key_seals() {
        let old = KeyRing::generate_entry("old");
        let new = KeyRing::generate_entry("new");
        let v_old = Vault::new(KeyRing::parse(&old).unwrap());
        let sealed_old = v_old.seal_str("x", aad("f"));
        let v = Vault::new(KeyRing::parse(&format!("{new},{old}")).unwrap());
        assert_eq!(v.open_string(&sealed_old, aad("f")).unwrap().expose_secret(), "x");
        assert_eq!(Vault::key_id_of(&v.seal_str("x", aad("f"))).unwrap(), "new");
        let v_new_only = Vault::new(KeyRing::parse(&new).unwrap());
        assert!(matches!(v_new_only.open(&sealed_old, aad("f")), Err(VaultError::UnknownKey(id)) if id == "old"));
    }

    #[test]
    fn key_specs_are_validated() {
        for bad in ["", "nokey", "k1:notbase64!", "k1:AAAA", "bad id:AAAA", &format!("{},{}", KeyRing::generate_entry("a"), KeyRing::generate_entry("a"))] {
            assert!(KeyRing::parse(bad).is_err(), "{bad}");
        }
        let spec = format!("# current\n{}\n{}\n", KeyRing::generate_entry("a"), KeyRing::generate_entry("b"));
        let ring = KeyRing::parse(&spec).unwrap();
        assert_eq!(ring.active_id(), "a");
        assert_eq!(ring.ids().collect::<Vec<_>>(), ["a", "b"]);
        assert_ne!(ring.fingerprint("a"), ring.fingerprint("b"));
        assert_eq!(ring.fingerprint("a").unwrap().len(), 32);
    }
}
