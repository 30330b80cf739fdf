//! Standard Webhooks signatures (<https://www.standardwebhooks.com>, "Signature scheme"):
//! `webhook-signature: v1,<base64 HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}")>`,
//! several space-separated while a secret is being rotated; the key is the base64-decoded part of
//! the secret after `whsec_`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

pub const SECRET_PREFIX: &str = "whsec_";
/// Random bytes per secret (the specification asks for 24 to 64).
const SECRET_BYTES: usize = 32;

/// A fresh `whsec_…` secret.
pub fn new_secret() -> SecretString {
    let mut key = Zeroizing::new([0u8; SECRET_BYTES]);
    rand::rngs::OsRng.fill_bytes(key.as_mut());
    SecretString::from(format!("{SECRET_PREFIX}{}", STANDARD.encode(key.as_ref())))
}

/// The HMAC key of a `whsec_…` secret; `None` when it is not one.
fn key_of(secret: &SecretString) -> Option<Zeroizing<Vec<u8>>> {
    let b64 = secret.expose_secret().strip_prefix(SECRET_PREFIX)?;
    STANDARD.decode(b64).ok().map(Zeroizing::new).filter(|k| !k.is_empty())
}

/// `v1,<signature>` of one message under one secret.
pub fn sign(secret: &SecretString, msg_id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = key_of(secret)?;
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes())))
}

/// The `webhook-signature` header value: one signature per secret, space-separated.
pub fn signature_header(secrets: &[SecretString], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets.iter().filter_map(|s| sign(s, msg_id, timestamp, body)).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification's test vectors (also used by every
    /// official library's tests).
    #[test]
    fn matches_the_reference_vector() {
        let secret = SecretString::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_string());
        let body = br#"{"test": 2432232314}"#;
        let sig = sign(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn secrets_are_fresh_and_well_formed() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_eq!(key_of(&a).unwrap().len(), SECRET_BYTES);
        assert!(sign(&SecretString::from("nope".to_string()), "m", 1, b"").is_none());
        let two = signature_header(&[a, b], "m", 1, b"{}");
        assert_eq!(two.split(' ').count(), 2);
    }
}
