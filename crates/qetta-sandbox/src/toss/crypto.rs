//! Toss Certification session-key and personal-data crypto (SPEC B8).
//!
//! * `sessionKey` = `version$sessionId$base64(RSA-OAEP(plain))` with
//!   `plain` = `AES_GCM$base64(key32)$base64(iv)` (B8.1).
//! * RSA-OAEP: SHA-1 digest + MGF1-SHA-1 is what the official SDK and, since 2022-05-08, every
//!   official example (and their current `rsa_test_data`) send; only the pre-2022 examples and
//!   vectors (16-byte IVs) used a SHA-256 digest + MGF1-SHA-1. Both are accepted, SHA-1 first
//!   (SPEC B8.1 step 5 and its history note, SPEC pitfall 17).
//! * Fields: AES-256-GCM, nonce = the session IV (12 or 16 bytes; same IV for every field),
//!   128-bit tag, AAD = the 32 raw key bytes; `version$sessionId$base64(ct‖tag)`.

use aes_gcm::aead::consts::{U12, U16};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes256;
use aes_gcm::AesGcm;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rand::RngCore;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
use rsa::{Oaep, RsaPrivateKey, RsaPublicKey};
use sha1::Sha1;
use sha2::Sha256;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("invalid RSA private key: {0}")]
    Key(String),
    #[error("malformed encrypted value (expected version$sessionId$base64)")]
    Format,
    #[error("invalid base64")]
    Base64,
    #[error("the session key could not be RSA-decrypted")]
    Rsa,
    #[error("unsupported session key algorithm (only AES_GCM)")]
    Algorithm,
    #[error("the session key must carry a 32-byte key and a 12- or 16-byte IV")]
    KeyMaterial,
    #[error("the value was encrypted for another session (version or sessionId differ)")]
    SessionMismatch,
    #[error("AES-GCM authentication failed")]
    Aead,
    #[error("the plaintext is not UTF-8")]
    Utf8,
}

/// The simulator's RSA key pair (stands in for Toss's, whose private half nobody has).
#[derive(Clone)]
pub struct RsaKeys {
    private: RsaPrivateKey,
    public_spki_b64: String,
}

impl std::fmt::Debug for RsaKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaKeys").field("public_spki_b64", &self.public_spki_b64).finish_non_exhaustive()
    }
}

impl RsaKeys {
    /// Parse a PEM private key (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`).
    pub fn from_pem(pem: &str) -> Result<Self, CryptoError> {
        let pem = pem.trim();
        let private = RsaPrivateKey::from_pkcs8_pem(pem).or_else(|_| RsaPrivateKey::from_pkcs1_pem(pem)).map_err(|e| CryptoError::Key(e.to_string()))?;
        Self::from_private(private)
    }

    /// From a base64 PKCS#8 DER private key (the format of the official test key pair).
    pub fn from_pkcs8_der_base64(b64: &str) -> Result<Self, CryptoError> {
        let der = B64.decode(b64.trim()).map_err(|_| CryptoError::Base64)?;
        let private = RsaPrivateKey::from_pkcs8_der(&der).map_err(|e| CryptoError::Key(e.to_string()))?;
        Self::from_private(private)
    }

    fn from_private(private: RsaPrivateKey) -> Result<Self, CryptoError> {
        let der = RsaPublicKey::from(&private).to_public_key_der().map_err(|e| CryptoError::Key(e.to_string()))?;
        Ok(Self { public_spki_b64: B64.encode(der.as_bytes()), private })
    }

    /// SubjectPublicKeyInfo DER, base64: what a client uses to encrypt session keys.
    pub fn public_key_base64(&self) -> &str {
        &self.public_spki_b64
    }

    pub fn private_key(&self) -> &RsaPrivateKey {
        &self.private
    }

    /// RSA-OAEP decrypt, SHA-1/MGF1-SHA-1 first, then SHA-256/MGF1-SHA-1.
    pub fn oaep_decrypt(&self, ciphertext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if let Ok(p) = self.private.decrypt(Oaep::new::<Sha1>(), ciphertext) {
            return Ok(p);
        }
        self.private.decrypt(Oaep::new_with_mgf_hash::<Sha256, Sha1>(), ciphertext).map_err(|_| CryptoError::Rsa)
    }
}

/// One Toss crypto session: the parsed `sessionKey` of a request or result call.
#[derive(Clone, PartialEq, Eq)]
pub struct Session {
    pub version: String,
    pub session_id: String,
    key: [u8; 32],
    iv: Vec<u8>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("version", &self.version).field("session_id", &self.session_id).finish_non_exhaustive()
    }
}

/// Split `version$id$payload` (GCM values have exactly three parts; the base64 part has no `$`).
fn split3(s: &str) -> Result<(&str, &str, &str), CryptoError> {
    let mut it = s.splitn(3, '$');
    match (it.next(), it.next(), it.next()) {
        (Some(v), Some(id), Some(p)) if !v.is_empty() && !id.is_empty() && !p.is_empty() => Ok((v, id, p)),
        _ => Err(CryptoError::Format),
    }
}

impl Session {
    /// Build a session from raw parts (client side and tests).
    pub fn from_parts(version: &str, session_id: &str, key: [u8; 32], iv: Vec<u8>) -> Result<Self, CryptoError> {
        if iv.len() != 12 && iv.len() != 16 {
            return Err(CryptoError::KeyMaterial);
        }
        Ok(Self { version: version.into(), session_id: session_id.into(), key, iv })
    }

    /// A fresh random session (what a correct client does for every request and result call).
    pub fn generate(version: &str) -> Self {
        let mut key = [0u8; 32];
        let mut iv = vec![0u8; 12];
        rand::thread_rng().fill_bytes(&mut key);
        rand::thread_rng().fill_bytes(&mut iv);
        Self { version: version.into(), session_id: uuid::Uuid::new_v4().to_string(), key, iv }
    }

    /// Open a `sessionKey` with the simulator's private key.
    pub fn open(session_key: &str, keys: &RsaKeys) -> Result<Self, CryptoError> {
        let (version, session_id, payload) = split3(session_key.trim())?;
        let ct = B64.decode(payload).map_err(|_| CryptoError::Base64)?;
        let plain = keys.oaep_decrypt(&ct)?;
        let plain = String::from_utf8(plain).map_err(|_| CryptoError::Utf8)?;
        let mut parts = plain.split('$');
        let (alg, key_b64, iv_b64) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(k), Some(i), None) => (a, k, i),
            _ => return Err(CryptoError::Format),
        };
        if alg != "AES_GCM" {
            // AES_CBC (B8.3) is legacy with an ambiguous HMAC; not supported by the simulator.
            return Err(CryptoError::Algorithm);
        }
        let key: [u8; 32] = B64.decode(key_b64).map_err(|_| CryptoError::Base64)?.try_into().map_err(|_| CryptoError::KeyMaterial)?;
        let iv = B64.decode(iv_b64).map_err(|_| CryptoError::Base64)?;
        Self::from_parts(version, session_id, key, iv)
    }

    /// The `sessionKey` a client sends, RSA-OAEP(SHA-1)-encrypted under `public_spki_b64`.
    pub fn seal_for(&self, public_spki_b64: &str) -> Result<String, CryptoError> {
        use rsa::pkcs8::DecodePublicKey;
        let der = B64.decode(public_spki_b64.trim()).map_err(|_| CryptoError::Base64)?;
        let public = RsaPublicKey::from_public_key_der(&der).map_err(|e| CryptoError::Key(e.to_string()))?;
        let plain = format!("AES_GCM${}${}", B64.encode(self.key), B64.encode(&self.iv));
        let ct = public.encrypt(&mut rand::thread_rng(), Oaep::new::<Sha1>(), plain.as_bytes()).map_err(|_| CryptoError::Rsa)?;
        Ok(format!("{}${}${}", self.version, self.session_id, B64.encode(ct)))
    }

    fn gcm(&self, encrypt: bool, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let payload = Payload { msg: data, aad: &self.key };
        let out = match self.iv.len() {
            12 => {
                let c = AesGcm::<Aes256, U12>::new_from_slice(&self.key).map_err(|_| CryptoError::KeyMaterial)?;
                let nonce = aes_gcm::Nonce::<U12>::from_slice(&self.iv);
                if encrypt {
                    c.encrypt(nonce, payload)
                } else {
                    c.decrypt(nonce, payload)
                }
            }
            16 => {
                let c = AesGcm::<Aes256, U16>::new_from_slice(&self.key).map_err(|_| CryptoError::KeyMaterial)?;
                let nonce = aes_gcm::Nonce::<U16>::from_slice(&self.iv);
                if encrypt {
                    c.encrypt(nonce, payload)
                } else {
                    c.decrypt(nonce, payload)
                }
            }
            _ => return Err(CryptoError::KeyMaterial),
        };
        out.map_err(|_| CryptoError::Aead)
    }

    /// `version$sessionId$base64(ct‖tag)`.
    pub fn encrypt(&self, plain: &str) -> String {
        // Encryption only fails for an invalid IV length, which `from_parts` rules out.
        let ct = self.gcm(true, plain.as_bytes()).unwrap_or_default();
        format!("{}${}${}", self.version, self.session_id, B64.encode(ct))
    }

    /// Decrypt a field of this session; the version and sessionId must be this session's.
    pub fn decrypt(&self, value: &str) -> Result<String, CryptoError> {
        let (version, id, payload) = split3(value.trim())?;
        if version != self.version || id != self.session_id {
            return Err(CryptoError::SessionMismatch);
        }
        let ct = B64.decode(payload).map_err(|_| CryptoError::Base64)?;
        let plain = self.gcm(false, &ct)?;
        String::from_utf8(plain).map_err(|_| CryptoError::Utf8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str, key_b64: &str, iv_b64: &str) -> Session {
        let key: [u8; 32] = B64.decode(key_b64).unwrap().try_into().unwrap();
        Session::from_parts("v1", id, key, B64.decode(iv_b64).unwrap()).unwrap()
    }

    /// SPEC B8.4, official vector (toss-cert-examples test_data/aes_test_data) and the extra
    /// vectors computed with the same key/iv and AAD = key.
    #[test]
    fn aes_gcm_official_vectors() {
        let id = "b94ea687-0a72-43f8-be24-7be5029fa998";
        let s = session(id, "KxHeNnbiR5Eh5d/9KJCN6jUW5Md9nkk8jU6WbkmR7Es=", "jbZIV4aBzrydN0IP");
        assert_eq!(s.encrypt("Layton Nicholson"), "v1$b94ea687-0a72-43f8-be24-7be5029fa998$LCFncFGpJKMBClC5RHa7zabbPzqsKC51USGG1ZwSBPE=");
        for (plain, ct) in [
            ("김토스", "ivme6bhn6GfMJSA9F9VZvpP5wHx9aJNrIg=="),
            ("01011112222", "UHEuNQ/2Nd9aWwquc8rUsFmv5GTBJdwDLn6V"),
            ("20230101", "UnAsNw72NNzjOHlN0aG7/SZtUG3Xlffe"),
            ("19930324", "UXknNw70NtnAcvt6HlbRY2iINWocJcnW"),
            ("FEMALE", "JgVTRXKC5zzc4F2VQUGf7BWVExY3Rw=="),
            ("MALE", "LQFSQRKGB9BqQLctLPKtH7u6SQc="),
            ("LOCAL", "LA9dRXKMSiYhuxZWd+6woLkMNkpX"),
            ("ADULT", "IQRLSGqVB/ijF2FfkV4DtNtENA3n"),
        ] {
            let full = format!("v1${id}${ct}");
            assert_eq!(s.encrypt(plain), full, "{plain}");
            assert_eq!(s.decrypt(&full).unwrap(), plain);
        }
        // Without AAD the tag differs (B8.4 last row): our decrypt must reject it.
        let no_aad = format!("v1${id}$ivme6bhn6GfM+vKJF/FE1CznaeqCqv8bCw==");
        assert_eq!(s.decrypt(&no_aad), Err(CryptoError::Aead));
    }

    /// A row of the official aes_test_data with a 16-byte IV (older example generation).
    #[test]
    fn aes_gcm_sixteen_byte_iv_vector() {
        let id = "6c210743-1412-42f7-9c3b-808b837dbd76";
        let s = session(id, "739VxwXZlS7vgl6pSNfQKt1zGkcxIR6STwaevwJHkt0=", "Wv0ZzxmIRGSF1SnkRo6UqA==");
        let expected = "v1$6c210743-1412-42f7-9c3b-808b837dbd76$zeS1Th8whOURwfAr2o3uMmTRAt9180twXTSm6PYCfOc=";
        assert_eq!(s.decrypt(expected).unwrap(), "Layton Nicholson");
        assert_eq!(s.encrypt("Layton Nicholson"), expected);
    }

    #[test]
    fn decrypt_rejects_other_sessions_and_garbage() {
        let s = session("a", "KxHeNnbiR5Eh5d/9KJCN6jUW5Md9nkk8jU6WbkmR7Es=", "jbZIV4aBzrydN0IP");
        let v = s.encrypt("x");
        assert_eq!(s.decrypt(&v.replacen("v1$", "v2$", 1)), Err(CryptoError::SessionMismatch));
        assert_eq!(s.decrypt("v1$a"), Err(CryptoError::Format));
        assert_eq!(s.decrypt("v1$a$!!!"), Err(CryptoError::Base64));
        assert_eq!(s.decrypt("v1$a$AAAA"), Err(CryptoError::Aead));
        assert_eq!(s.decrypt(""), Err(CryptoError::Format));
    }

    #[test]
    fn shipped_key_round_trip() {
        let keys = RsaKeys::from_pem(crate::config::SANDBOX_TOSS_RSA_PRIVATE_KEY_PEM).unwrap();
        let client = Session::generate("v1_0.0.14");
        let sk = client.seal_for(keys.public_key_base64()).unwrap();
        assert!(sk.starts_with(&format!("v1_0.0.14${}$", client.session_id)));
        let server = Session::open(&sk, &keys).unwrap();
        assert_eq!(server, client);
        assert_eq!(server.decrypt(&client.encrypt("김토스")).unwrap(), "김토스");
        assert!(Session::open("v1$x$AAAA", &keys).is_err());
        assert!(Session::open("nonsense", &keys).is_err());
    }
}

/// SPEC B8.4 RSA vector: the official test key pair and a row of `rsa_test_data`. Its 16-byte IV
/// dates it before the examples' 2022 switch to OAEP SHA-1 with 12-byte IVs (SPEC B8.1);
/// [`RsaKeys::oaep_decrypt`] opens it with whichever of the two paddings it was made with.
#[cfg(test)]
mod official_rsa_vector {
    use super::*;

    const DATA: &str = include_str!("testdata/official_rsa_vector.txt");

    fn field(name: &str) -> &'static str {
        DATA.lines().find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix('='))).unwrap_or_else(|| panic!("missing {name}"))
    }

    #[test]
    fn official_session_key_decrypts() {
        let keys = RsaKeys::from_pkcs8_der_base64(field("private_key_pkcs8_base64")).unwrap();
        let sk = field("session_key");
        let (_, _, payload) = split3(sk).unwrap();
        let plain = keys.oaep_decrypt(&B64.decode(payload).unwrap()).unwrap();
        assert_eq!(String::from_utf8(plain).unwrap(), format!("AES_GCM${}${}", field("secret_key"), field("iv")));
        let s = Session::open(sk, &keys).unwrap();
        assert_eq!(s.session_id, field("session_id"));
        assert_eq!(s.version, "v1");
        // The opened session encrypts and decrypts with its 16-byte IV.
        assert_eq!(s.decrypt(&s.encrypt("20230101")).unwrap(), "20230101");
    }
}
