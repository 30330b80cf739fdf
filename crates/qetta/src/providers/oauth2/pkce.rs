//! PKCE (RFC 7636, S256 only), `state` and `nonce`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// The unreserved characters a verifier is made of (RFC 7636 §4.1).
const UNRESERVED: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";

/// Length of the verifiers we make: the maximum, 128 characters (≈ 780 bits).
pub const VERIFIER_LEN: usize = 128;

/// A fresh code verifier: 128 characters drawn uniformly from the unreserved set.
pub fn new_verifier() -> SecretString {
    SecretString::from(random_string(VERIFIER_LEN, UNRESERVED))
}

/// Whether `v` is a valid verifier: 43–128 characters of the unreserved set.
pub fn is_valid_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len()) && v.bytes().all(|b| UNRESERVED.contains(&b))
}

/// `BASE64URL-NOPAD(SHA-256(ASCII(verifier)))` (RFC 7636 §4.2, S256).
pub fn challenge_s256(verifier: &SecretString) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.expose_secret().as_bytes()))
}

/// An unguessable `state` for one authorization request: 32 bytes of randomness, base64url.
pub fn new_state() -> String {
    random_token()
}

/// An unguessable OIDC `nonce`: 32 bytes of randomness, base64url.
pub fn new_nonce() -> String {
    random_token()
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn random_string(len: usize, alphabet: &[u8]) -> String {
    let mut rng = rand::rngs::OsRng;
    (0..len).map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b_vector() {
        let verifier = SecretString::from("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
        assert!(is_valid_verifier(verifier.expose_secret()));
        assert_eq!(challenge_s256(&verifier), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    }

    #[test]
    fn verifiers_are_valid_random_and_long() {
        let a = new_verifier();
        let b = new_verifier();
        assert!(is_valid_verifier(a.expose_secret()));
        assert_eq!(a.expose_secret().len(), 128);
        assert_ne!(a.expose_secret(), b.expose_secret());
        let c = challenge_s256(&a);
        assert_eq!(c.len(), 43);
        assert!(!c.contains('=') && !c.contains('+') && !c.contains('/'));
        // Every unreserved character appears over a few verifiers (the alphabet is used whole).
        let all: String = (0..20).map(|_| new_verifier().expose_secret().to_string()).collect();
        for ch in UNRESERVED {
            assert!(all.as_bytes().contains(ch), "{}", *ch as char);
        }
    }

    #[test]
    fn verifier_bounds() {
        assert!(!is_valid_verifier(&"a".repeat(42)));
        assert!(is_valid_verifier(&"a".repeat(43)));
        assert!(is_valid_verifier(&"a".repeat(128)));
        assert!(!is_valid_verifier(&"a".repeat(129)));
        assert!(!is_valid_verifier(&format!("{}+", "a".repeat(50))));
    }

    #[test]
    fn state_and_nonce_are_unguessable_and_url_safe() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let s = new_state();
            assert_eq!(s.len(), 43);
            assert!(s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{s}");
            assert!(seen.insert(s));
            assert!(seen.insert(new_nonce()));
        }
    }
}
