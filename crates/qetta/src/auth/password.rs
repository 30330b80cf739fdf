//! Password policy and argon2id hashing.

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use std::sync::OnceLock;

pub const MIN_LEN: usize = 10;
pub const MAX_LEN: usize = 128;

/// Why a password or email was refused (shown to the user).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialError {
    #[error("Enter a valid email address.")]
    BadEmail,
    #[error("The password must be at least {MIN_LEN} characters long.")]
    TooShort,
    #[error("The password must be at most {MAX_LEN} characters long.")]
    TooLong,
    #[error("The password is too easy to guess: use letters and digits or symbols, not just one kind, and not your email.")]
    TooWeak,
}

/// Trims and lower-cases an email and checks its shape.
pub fn normalize_email(raw: &str) -> Result<String, CredentialError> {
    let email = raw.trim().to_lowercase();
    if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(CredentialError::BadEmail);
    }
    let (local, domain) = email.split_once('@').ok_or(CredentialError::BadEmail)?;
    let domain_ok = !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && domain.chars().all(|c| c.is_alphanumeric() || c == '.' || c == '-');
    if local.is_empty() || local.len() > 64 || !domain_ok {
        return Err(CredentialError::BadEmail);
    }
    Ok(email)
}

pub fn check_policy(password: &str, email: &str) -> Result<(), CredentialError> {
    let chars = password.chars().count();
    if chars < MIN_LEN {
        return Err(CredentialError::TooShort);
    }
    if chars > MAX_LEN {
        return Err(CredentialError::TooLong);
    }
    let has_letter = password.chars().any(char::is_alphabetic);
    let has_other = password.chars().any(|c| !c.is_alphabetic());
    let distinct = password.chars().collect::<std::collections::HashSet<_>>().len();
    let lower = password.to_lowercase();
    let local = email.split('@').next().unwrap_or("");
    if !has_letter || !has_other || distinct < 5 || lower == email || (!local.is_empty() && lower.contains(local) && local.len() >= 4) {
        return Err(CredentialError::TooWeak);
    }
    Ok(())
}

pub fn hash(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default().hash_password(password.as_bytes(), &salt)?.to_string())
}

/// Verifies `password` against `stored`; with `None` (unknown user) verifies against a fixed
/// dummy hash, so that an unknown email costs the same time as a wrong password.
pub fn verify(password: &str, stored: Option<&str>) -> bool {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash("dummy password for timing equality").expect("hashing a constant"));
    let (candidate, real) = match stored {
        Some(s) => (s, true),
        None => (dummy.as_str(), false),
    };
    let ok = match PasswordHash::new(candidate) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        // A user minted by the app's backend has no password ("!"): still spend the time.
        Err(_) => {
            let parsed = PasswordHash::new(dummy).expect("dummy hash parses");
            let _ = Argon2::default().verify_password(password.as_bytes(), &parsed);
            false
        }
    };
    ok && real
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(normalize_email("  Kim@Example.COM ").unwrap(), "kim@example.com");
        for bad in ["", "kim", "kim@", "@example.com", "kim@example", "kim@@example.com", "k m@example.com", "kim@exa..mple.com"] {
            assert_eq!(normalize_email(bad), Err(CredentialError::BadEmail), "{bad}");
        }
    }

    #[test]
    fn password_policy() {
        assert_eq!(check_policy("short1", "a@b.co"), Err(CredentialError::TooShort));
        assert_eq!(check_policy("onlyletterslong", "a@b.co"), Err(CredentialError::TooWeak));
        assert_eq!(check_policy("1234567890", "a@b.co"), Err(CredentialError::TooWeak));
        assert_eq!(check_policy("aaaaaaaaa1", "a@b.co"), Err(CredentialError::TooWeak));
        assert_eq!(check_policy("minsu.kim-2024", "minsu.kim@b.co"), Err(CredentialError::TooWeak));
        assert_eq!(check_policy(&"ab1".repeat(50), "a@b.co"), Err(CredentialError::TooLong));
        assert!(check_policy("correct horse 7", "a@b.co").is_ok());
    }

    #[test]
    fn hash_and_verify() {
        let h = hash("correct horse 7").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correct horse 7", Some(&h)));
        assert!(!verify("wrong horse 7", Some(&h)));
        assert!(!verify("correct horse 7", None));
        assert!(!verify("anything", Some("!")));
    }
}
