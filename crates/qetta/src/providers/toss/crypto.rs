//! Toss Certification session keys and field encryption (SPEC B8, AES-GCM variant only).
//!
//! Every call that carries personal data gets its own [`TossSession`]: a random session id, a
//! 32-byte AES key and a 12-byte IV. The key and IV travel to Toss inside the `sessionKey`,
//! RSA-OAEP-encrypted under Toss's public key; the fields themselves are AES-256-GCM with the
//! session IV and the raw key bytes as AAD. The legacy AES-CBC variant (B8.3) is deliberately
//! not implemented: its HMAC construction differs between Toss's own samples (pitfall 23).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rand::rngs::OsRng;
use rand::RngCore;
use rsa::pkcs8::DecodePublicKey;
use rsa::{Oaep, RsaPublicKey};
use secrecy::{ExposeSecret, SecretBox};
use zeroize::Zeroizing;

/// Toss's RSA public key (X.509 SubjectPublicKeyInfo, DER, base64), 4096-bit, e = 65537.
///
/// Copied from the official Java SDK (`TossCertSessionGenerator`, SPEC B8.2). Toss uses the same
/// key for the test and production environments. The key is still taken from configuration so
/// that the sandbox, which cannot hold Toss's private key, can publish its own pair.
pub const TOSS_PRODUCTION_PUBLIC_KEY: &str = "MIICIjANBgkqhkiG9w0BAQEFAAOCAg8AMIICCgKCAgEAoVdxG0Qi9pip46Jw9ImSlPVD8+L2mM47ey6EZna7D7utgNdh8Tzkjrm1Yl4h6kPJrhdWvMIJGS51+6dh041IXcJEoUquNblUEqAUXBYwQM8PdfnS12SjlvZrP4q6whBE7IV1SEIBJP0gSK5/8Iu+uld2ctJiU4p8uswL2bCPGWdvVPltxAg6hfAG/ImRUKPRewQsFhkFvqIDCpO6aeaR10q6wwENZltlJeeRnl02VWSneRmPqqypqCxz0Y+yWCYtsA+ngfZmwRMaFkXcWjaWnvSqqV33OAsrQkvuBHWoEEkvQ0P08+h9Fy2+FhY9TeuukQ2CVFz5YyOhp25QtWyQI+IaDKk+hLxJ1APR0c3tmV0ANEIjO6HhJIdu2KQKtgFppvqSrZp2OKtI8EZgVbWuho50xvlaPGzWoMi9HSCb+8ARamlOpesxHH3O0cTRUnft2Zk1FHQb2Pidb2z5onMEnzP2xpTqAIVQyb6nMac9tof5NFxwR/c4pmci+1n8GFJIFN18j2XGad1mNyio/R8LabqnzNwJC6VPnZJz5/pDUIk9yKNOY0KJe64SRiL0a4SNMohtyj6QlA/3SGxaEXb8UHpophv4G9wN1CgfyUamsRqp8zo5qDxBvlaIlfkqJvYPkltj7/23FHDjPi8q8UkSiAeu7IV5FTfB5KsiN8+sGSMCAwEAAQ==";

/// Version token written in front of every session key and ciphertext.
///
/// Toss's docs use `v1`; the Java SDK sends `v1_<sdk version>` and Toss accepts both (SPEC B8.1,
/// pitfall 18). Toss echoes whatever the session key carried, so decryption compares against it.
pub const SESSION_VERSION: &str = "v1";

/// Why a session could not be created or a value could not be decrypted.
///
/// The variants never carry key material, plaintext or ciphertext.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("the Toss RSA public key is not a valid base64 SubjectPublicKeyInfo RSA key")]
    InvalidPublicKey,
    #[error("RSA-OAEP encryption of the session key failed")]
    RsaEncrypt,
    #[error("encrypted value is not of the form `version$sessionId$base64`")]
    Malformed,
    #[error("encrypted value belongs to a different session or version")]
    SessionMismatch,
    #[error("encrypted value is not valid base64")]
    Base64,
    #[error("AES-GCM encryption failed or the authentication tag did not verify")]
    Aead,
    #[error("decrypted value is not valid UTF-8")]
    Utf8,
}

/// The RSA public key that session keys are encrypted under.
#[derive(Clone, Debug)]
pub struct TossPublicKey(RsaPublicKey);

impl TossPublicKey {
    /// Parses a base64 (standard alphabet) SubjectPublicKeyInfo DER RSA key, the format Toss
    /// publishes ([`TOSS_PRODUCTION_PUBLIC_KEY`]). Surrounding whitespace is ignored.
    pub fn from_spki_base64(spki_b64: &str) -> Result<Self, CryptoError> {
        let der = B64.decode(spki_b64.trim()).map_err(|_| CryptoError::InvalidPublicKey)?;
        RsaPublicKey::from_public_key_der(&der).map(Self).map_err(|_| CryptoError::InvalidPublicKey)
    }

    /// The RSA key itself, for callers that need its size or parameters.
    pub fn rsa(&self) -> &RsaPublicKey {
        &self.0
    }
}

/// One Toss encryption session: the key, IV and id that protect the fields of a single API call.
///
/// Create a new one for every request and another for every result call (pitfall 14). All
/// fields of a session share its IV on purpose: Toss decrypts them with that one IV
/// (pitfall 15), so do not "fix" it with per-field nonces.
pub struct TossSession {
    version: String,
    session_id: String,
    /// AES-256 key; zeroed on drop and never printed.
    key: SecretBox<[u8; 32]>,
    /// GCM nonce shared by all fields of this session. Not secret on its own, but only useful
    /// together with the key, so `Debug` hides it too.
    iv: [u8; 12],
    /// `version$sessionId$base64(RSA-OAEP(AES_GCM$key$iv))`, sent to Toss as `sessionKey`.
    session_key: String,
}

impl std::fmt::Debug for TossSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TossSession")
            .field("version", &self.version)
            .field("session_id", &self.session_id)
            .field("key", &"[REDACTED]")
            .field("iv", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

impl TossSession {
    /// Creates a fresh session (UUID v4 id, random key and IV from the OS) and encrypts its
    /// session key under `public_key`.
    pub fn generate(public_key: &TossPublicKey) -> Result<Self, CryptoError> {
        let key = SecretBox::init_with_mut(|key: &mut [u8; 32]| OsRng.fill_bytes(key));
        let mut iv = [0u8; 12];
        OsRng.fill_bytes(&mut iv);
        Self::from_parts(public_key, SESSION_VERSION, &uuid::Uuid::new_v4().to_string(), key, iv)
    }

    /// Builds a session from known parts; used by [`generate`](Self::generate) and by tests that
    /// replay Toss's published vectors.
    fn from_parts(public_key: &TossPublicKey, version: &str, session_id: &str, key: SecretBox<[u8; 32]>, iv: [u8; 12]) -> Result<Self, CryptoError> {
        // `AES_GCM$<b64 key>$<b64 iv>`: 69 ASCII bytes, which fit OAEP-SHA-1 under any key of
        // 1024 bits or more.
        let plaintext = Zeroizing::new(format!("AES_GCM${}${}", B64.encode(key.expose_secret()), B64.encode(iv)));
        // OAEP with SHA-1 for both the digest and MGF1, as every current official client sends
        // (pitfall 17). `Oaep::new::<Sha1>()` uses the same digest for MGF1.
        let encrypted = public_key.0.encrypt(&mut OsRng, Oaep::new::<sha1::Sha1>(), plaintext.as_bytes()).map_err(|_| CryptoError::RsaEncrypt)?;
        let session_key = format!("{version}${session_id}${}", B64.encode(encrypted));
        Ok(Self { version: version.to_owned(), session_id: session_id.to_owned(), key, iv, session_key })
    }

    /// The session id (lower-case hyphenated UUID).
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The version token in front of this session's values.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The value to send to Toss as `sessionKey`.
    pub fn session_key(&self) -> &str {
        &self.session_key
    }

    /// Encrypts one field: `version$sessionId$base64(ciphertext ‖ tag)`.
    pub fn encrypt(&self, plaintext: &str) -> Result<String, CryptoError> {
        let key = self.key.expose_secret();
        let sealed = self
            .cipher()
            .encrypt(
                Nonce::from_slice(&self.iv),
                // AAD is the raw key: without it the ciphertext is the same but the tag is not,
                // and Toss rejects the field (pitfall 16).
                Payload { msg: plaintext.as_bytes(), aad: key },
            )
            .map_err(|_| CryptoError::Aead)?;
        Ok(format!("{}${}${}", self.version, self.session_id, B64.encode(sealed)))
    }

    /// Decrypts one field that Toss encrypted with this session.
    ///
    /// Like the official SDK, rejects a value whose version or session id is not this session's,
    /// so a response can never be read with the wrong session.
    pub fn decrypt(&self, value: &str) -> Result<String, CryptoError> {
        let mut parts = value.splitn(3, '$');
        let (Some(version), Some(session_id), Some(data)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(CryptoError::Malformed);
        };
        if version != self.version || session_id != self.session_id {
            return Err(CryptoError::SessionMismatch);
        }
        // A trailing `$hmac` (the CBC format) lands in `data` and fails here as bad base64.
        let sealed = B64.decode(data).map_err(|_| CryptoError::Base64)?;
        let plain =
            self.cipher().decrypt(Nonce::from_slice(&self.iv), Payload { msg: &sealed, aad: self.key.expose_secret() }).map_err(|_| CryptoError::Aead)?;
        String::from_utf8(plain).map_err(|_| CryptoError::Utf8)
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.key.expose_secret().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::traits::PublicKeyParts;
    use rsa::RsaPrivateKey;

    const VECTOR_SESSION_ID: &str = "b94ea687-0a72-43f8-be24-7be5029fa998";
    const VECTOR_KEY: &str = "KxHeNnbiR5Eh5d/9KJCN6jUW5Md9nkk8jU6WbkmR7Es=";
    const VECTOR_IV: &str = "jbZIV4aBzrydN0IP";

    /// One key pair for all tests; 1024 bits keeps generation fast and still fits the 69-byte
    /// plaintext.
    fn test_key_pair() -> &'static (RsaPrivateKey, TossPublicKey) {
        static PAIR: std::sync::OnceLock<(RsaPrivateKey, TossPublicKey)> = std::sync::OnceLock::new();
        PAIR.get_or_init(|| {
            let private = RsaPrivateKey::new(&mut OsRng, 1024).expect("test key");
            let public = TossPublicKey(private.to_public_key());
            (private, public)
        })
    }

    fn session_from_b64(session_id: &str, key_b64: &str, iv_b64: &str) -> TossSession {
        let (_, public) = test_key_pair();
        let key: [u8; 32] = B64.decode(key_b64).unwrap().try_into().unwrap();
        let iv: [u8; 12] = B64.decode(iv_b64).unwrap().try_into().unwrap();
        TossSession::from_parts(public, "v1", session_id, SecretBox::new(Box::new(key)), iv).unwrap()
    }

    fn vector_session() -> TossSession {
        session_from_b64(VECTOR_SESSION_ID, VECTOR_KEY, VECTOR_IV)
    }

    #[test]
    fn encrypt_matches_the_official_vector() {
        let session = vector_session();
        assert_eq!(session.encrypt("Layton Nicholson").unwrap(), "v1$b94ea687-0a72-43f8-be24-7be5029fa998$LCFncFGpJKMBClC5RHa7zabbPzqsKC51USGG1ZwSBPE=");
    }

    #[test]
    fn encrypt_matches_the_second_official_vector() {
        // Only the ciphertext part is in the SPEC; the session id does not affect it.
        let session = session_from_b64("e29491b8-0000-4000-8000-000000000000", "m85BCTCEC0G2prUG6X1LWWBwy4j/3zaJhk4KZI1p3JA=", "XvA/fJkStWbxQcQw");
        let encrypted = session.encrypt("Rocco Mills").unwrap();
        assert!(encrypted.ends_with("$8m9jMT5ILpm5p4eFgBU+LrPNBJDgeNTNYuoH"));
    }

    #[test]
    fn encrypt_and_decrypt_match_the_computed_vectors_including_korean() {
        let session = vector_session();
        let prefix = format!("v1${VECTOR_SESSION_ID}$");
        let cases = [
            ("김토스", "ivme6bhn6GfMJSA9F9VZvpP5wHx9aJNrIg=="),
            ("01011112222", "UHEuNQ/2Nd9aWwquc8rUsFmv5GTBJdwDLn6V"),
            ("20230101", "UnAsNw72NNzjOHlN0aG7/SZtUG3Xlffe"),
            ("19930324", "UXknNw70NtnAcvt6HlbRY2iINWocJcnW"),
            ("FEMALE", "JgVTRXKC5zzc4F2VQUGf7BWVExY3Rw=="),
            ("MALE", "LQFSQRKGB9BqQLctLPKtH7u6SQc="),
            ("LOCAL", "LA9dRXKMSiYhuxZWd+6woLkMNkpX"),
            ("ADULT", "IQRLSGqVB/ijF2FfkV4DtNtENA3n"),
        ];
        for (plain, sealed) in cases {
            let expected = format!("{prefix}{sealed}");
            assert_eq!(session.encrypt(plain).unwrap(), expected, "encrypt {plain}");
            assert_eq!(session.decrypt(&expected).unwrap(), plain, "decrypt {plain}");
        }
    }

    #[test]
    fn decrypt_rejects_the_vector_made_without_aad() {
        // Same ciphertext bytes as the real `김토스` vector, but the tag was computed without AAD.
        let session = vector_session();
        let no_aad = format!("v1${VECTOR_SESSION_ID}$ivme6bhn6GfM+vKJF/FE1CznaeqCqv8bCw==");
        assert!(matches!(session.decrypt(&no_aad), Err(CryptoError::Aead)));
    }

    #[test]
    fn decrypt_rejects_foreign_sessions_bad_base64_and_bad_format() {
        let session = vector_session();
        let sealed = "ivme6bhn6GfMJSA9F9VZvpP5wHx9aJNrIg==";
        let other_id = format!("v1$00000000-0a72-43f8-be24-7be5029fa998${sealed}");
        let other_version = format!("v1_0.0.14${VECTOR_SESSION_ID}${sealed}");
        let bad_b64 = format!("v1${VECTOR_SESSION_ID}$not base64!");
        let cbc_style = format!("v1${VECTOR_SESSION_ID}${sealed}$abcdef");

        assert!(matches!(session.decrypt(&other_id), Err(CryptoError::SessionMismatch)));
        assert!(matches!(session.decrypt(&other_version), Err(CryptoError::SessionMismatch)));
        assert!(matches!(session.decrypt(&bad_b64), Err(CryptoError::Base64)));
        assert!(matches!(session.decrypt(&cbc_style), Err(CryptoError::Base64)));
        assert!(matches!(session.decrypt("v1$only-two"), Err(CryptoError::Malformed)));
        assert!(matches!(session.decrypt(""), Err(CryptoError::Malformed)));
    }

    #[test]
    fn generated_session_key_decrypts_with_oaep_sha1_to_the_documented_plaintext() {
        let (private, public) = test_key_pair();
        let session = TossSession::generate(public).unwrap();

        let mut parts = session.session_key().splitn(3, '$');
        assert_eq!(parts.next(), Some("v1"));
        let session_id = parts.next().unwrap();
        assert_eq!(session_id, session.session_id());
        let parsed = uuid::Uuid::parse_str(session_id).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(parsed.hyphenated().to_string(), session_id, "lower-case hyphenated");

        let rsa = B64.decode(parts.next().unwrap()).unwrap();
        let plain = private.decrypt(Oaep::new::<sha1::Sha1>(), &rsa).unwrap();
        let plain = String::from_utf8(plain).unwrap();
        assert_eq!(plain.len(), 69);
        let fields: Vec<&str> = plain.split('$').collect();
        assert_eq!(fields[0], "AES_GCM");
        assert_eq!(B64.decode(fields[1]).unwrap(), session.key.expose_secret());
        assert_eq!(B64.decode(fields[2]).unwrap(), session.iv);
    }

    #[test]
    fn each_generated_session_is_new() {
        let (_, public) = test_key_pair();
        let a = TossSession::generate(public).unwrap();
        let b = TossSession::generate(public).unwrap();
        assert_ne!(a.session_id(), b.session_id());
        assert_ne!(a.key.expose_secret(), b.key.expose_secret());
        assert_ne!(a.iv, b.iv);
        let round_trip = a.decrypt(&a.encrypt("김토스").unwrap()).unwrap();
        assert_eq!(round_trip, "김토스");
    }

    #[test]
    fn production_key_constant_is_a_4096_bit_rsa_key() {
        let key = TossPublicKey::from_spki_base64(TOSS_PRODUCTION_PUBLIC_KEY).unwrap();
        assert_eq!(key.rsa().n().bits(), 4096);
        assert_eq!(key.rsa().e(), &rsa::BigUint::from(65537u32));
    }

    #[test]
    fn invalid_public_keys_are_rejected() {
        assert!(matches!(TossPublicKey::from_spki_base64("not base64!"), Err(CryptoError::InvalidPublicKey)));
        assert!(matches!(TossPublicKey::from_spki_base64("AAAA"), Err(CryptoError::InvalidPublicKey)));
    }

    #[test]
    fn debug_output_hides_key_material() {
        let session = vector_session();
        let printed = format!("{session:?}");
        assert!(printed.contains(VECTOR_SESSION_ID));
        assert!(!printed.contains(VECTOR_KEY));
        assert!(printed.contains("[REDACTED]"));
    }
}
