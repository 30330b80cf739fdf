//! Email and password policy, and argon2id hashing into caller-provided memory (see
//! [`super::hashing`], which bounds how many hashes run at once and reuses their memory).

use std::collections::HashSet;
use std::sync::OnceLock;

use argon2::password_hash::{rand_core::OsRng, Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use subtle::ConstantTimeEq;
use unicode_normalization::UnicodeNormalization;

pub const MIN_LEN: usize = 10;
pub const MAX_LEN: usize = 128;
pub const EMAIL_MAX_LEN: usize = 254;
/// The domain of the placeholder emails of users minted by the app's backend: never registrable.
pub const EXTERNAL_DOMAIN: &str = "external.invalid";

/// Why a password or email was refused (shown to the user).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialError {
    #[error("Enter a valid email address.")]
    BadEmail,
    #[error("Enter the email address without invisible characters.")]
    InvisibleCharacters,
    #[error("This email domain is reserved; use your own email address.")]
    ReservedDomain,
    #[error("The password must be at least {MIN_LEN} characters long.")]
    TooShort,
    #[error("The password must be at most {MAX_LEN} characters long.")]
    TooLong,
    #[error("The password is too easy to guess: use letters and digits or symbols, not just one kind, and not your email.")]
    TooWeak,
    #[error("This password is one of the most commonly used passwords; choose another.")]
    Common,
}

/// Zero-width, bidi-control and other invisible format characters. They make two different
/// strings look alike (`kim@example.com` and `ki\u{200B}m@example.com`), so emails holding them
/// are refused rather than silently cleaned.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}'
        | '\u{200B}'..='\u{200F}'
        | '\u{2028}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}'
        | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}' | '\u{FFF0}'..='\u{FFFB}'
        | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}')
}

/// Normalises an email (Unicode NFKC, trimmed, lower-cased) and checks its shape. Invisible and
/// control characters are refused.
pub fn normalize_email(raw: &str) -> Result<String, CredentialError> {
    if raw.chars().any(is_invisible) {
        return Err(CredentialError::InvisibleCharacters);
    }
    let email = raw.nfkc().collect::<String>().trim().to_lowercase();
    if email.chars().any(is_invisible) {
        return Err(CredentialError::InvisibleCharacters);
    }
    if email.len() > EMAIL_MAX_LEN || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
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

/// [`normalize_email`], and refuses the domain reserved for backend-minted users.
pub fn registrable_email(raw: &str) -> Result<String, CredentialError> {
    let email = normalize_email(raw)?;
    let domain = email.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
    if domain == EXTERNAL_DOMAIN || domain.ends_with(&format!(".{EXTERNAL_DOMAIN}")) {
        return Err(CredentialError::ReservedDomain);
    }
    Ok(email)
}

fn common_passwords() -> &'static HashSet<String> {
    static LIST: OnceLock<HashSet<String>> = OnceLock::new();
    LIST.get_or_init(|| {
        include_str!("common_passwords.txt").lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_lowercase).collect()
    })
}

/// Whether the password is on the built-in list of common passwords (case-insensitively).
pub fn is_common(password: &str) -> bool {
    common_passwords().contains(&password.to_lowercase())
}

pub fn check_policy(password: &str, email: &str) -> Result<(), CredentialError> {
    let chars = password.chars().count();
    if chars < MIN_LEN {
        return Err(CredentialError::TooShort);
    }
    if chars > MAX_LEN {
        return Err(CredentialError::TooLong);
    }
    if is_common(password) {
        return Err(CredentialError::Common);
    }
    // A letter (Latin or Hangul) and something else: the same rule as the OpenAPI pattern
    // `PASSWORD_PATTERN`, so that a schema-driven client knows exactly what passes. Length,
    // the common-password list and the email check do the rest (no rules a schema cannot state,
    // in the spirit of NIST SP 800-63B).
    let has_letter = password.chars().any(is_letter);
    let has_other = password.chars().any(|c| !is_letter(c));
    let lower = password.to_lowercase();
    let local = email.split('@').next().unwrap_or("");
    if !has_letter || !has_other || lower == email || (!local.is_empty() && lower.contains(local) && local.len() >= 4) {
        return Err(CredentialError::TooWeak);
    }
    Ok(())
}

/// What the password rule counts as a letter: Latin and Hangul syllables.
fn is_letter(c: char) -> bool {
    c.is_ascii_alphabetic() || ('가'..='힣').contains(&c)
}

/// The password rule as a regular expression (documented in the OpenAPI document).
pub const PASSWORD_PATTERN: &str = "^(.*[A-Za-z가-힣].*[^A-Za-z가-힣].*|.*[^A-Za-z가-힣].*[A-Za-z가-힣].*)$";

// ---------------------------------------------------------------------------------------------
// argon2id

/// The parameters of new hashes: argon2id, m = 19 MiB, t = 2, p = 1 (OWASP's recommendation).
pub fn params() -> Params {
    Params::DEFAULT
}

/// Stored hashes with more memory than this are not verified (they are not ours).
const MAX_VERIFY_BLOCKS: u32 = 256 * 1024;

#[derive(Debug, thiserror::Error)]
#[error("argon2: {0}")]
pub struct HashFailure(String);

/// The memory one hash with [`params`] needs.
pub fn new_memory() -> Vec<Block> {
    vec![Block::default(); params().block_count()]
}

/// Hashes `password` with [`params`] and a random salt into a PHC string, using `memory`
/// (at least [`new_memory`]'s size) for argon2's blocks.
pub fn hash_with(password: &str, memory: &mut [Block]) -> Result<String, HashFailure> {
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_raw = salt.decode_b64(&mut salt_bytes).map_err(|e| HashFailure(e.to_string()))?;
    let p = params();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, p.clone())
        .hash_password_into_with_memory(password.as_bytes(), salt_raw, &mut out, memory)
        .map_err(|e| HashFailure(e.to_string()))?;
    let output = Output::new(&out).map_err(|e| HashFailure(e.to_string()))?;
    Ok(format!("$argon2id$v=19$m={},t={},p={}${}${output}", p.m_cost(), p.t_cost(), p.p_cost(), salt.as_str()))
}

/// Verifies `password` against the PHC string `stored`. With `None` (unknown user) or a user
/// without a password it spends the same work on a throw-away hash, so that the answer takes the
/// same time, and returns `false`.
pub fn verify_with(password: &str, stored: Option<&str>, memory: &mut Vec<Block>) -> bool {
    match stored.and_then(|s| PasswordHash::new(s).ok()) {
        Some(parsed) => verify_parsed(password, &parsed, memory).unwrap_or(false),
        None => {
            let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
            let _ = Argon2::new(Algorithm::Argon2id, Version::V0x13, params()).hash_password_into_with_memory(
                password.as_bytes(),
                b"qetta-dummy-salt",
                &mut out,
                memory.as_mut_slice(),
            );
            false
        }
    }
}

fn verify_parsed(password: &str, parsed: &PasswordHash<'_>, memory: &mut Vec<Block>) -> Option<bool> {
    let algorithm = Algorithm::try_from(parsed.algorithm).ok()?;
    let version = parsed.version.map(Version::try_from).transpose().ok()?.unwrap_or_default();
    let p = Params::try_from(parsed).ok()?;
    if p.m_cost() > MAX_VERIFY_BLOCKS {
        return None;
    }
    let expected = parsed.hash?;
    let mut salt_bytes = [0u8; 64];
    let salt = parsed.salt?.decode_b64(&mut salt_bytes).ok()?;
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version, p.clone());
    if memory.len() < p.block_count() {
        // Only for a stored hash with more memory than ours: a one-off buffer.
        let mut big = vec![Block::default(); p.block_count()];
        argon.hash_password_into_with_memory(password.as_bytes(), salt, &mut out, big.as_mut_slice()).ok()?;
    } else {
        argon.hash_password_into_with_memory(password.as_bytes(), salt, &mut out, memory.as_mut_slice()).ok()?;
    }
    Some(out.ct_eq(expected.as_bytes()).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::PasswordVerifier;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(normalize_email("  Kim@Example.COM ").unwrap(), "kim@example.com");
        // NFKC: full-width letters and the full-width @ become their ASCII forms.
        assert_eq!(normalize_email("ＫＩＭ＠ｅｘａｍｐｌｅ．ｃｏｍ").unwrap(), "kim@example.com");
        assert_eq!(normalize_email("\u{3000}kim@example.com\u{3000}").unwrap(), "kim@example.com");
        for bad in ["", "kim", "kim@", "@example.com", "kim@example", "kim@@example.com", "k m@example.com", "kim@exa..mple.com"] {
            assert_eq!(normalize_email(bad), Err(CredentialError::BadEmail), "{bad}");
        }
        assert_eq!(normalize_email(&format!("{}@example.com", "a".repeat(250))), Err(CredentialError::BadEmail));
        // The placeholders of backend-minted users and of deleted accounts can never be an email.
        assert!(normalize_email(&crate::store::users::external_placeholder_email("extuser1")).is_err());
        assert!(normalize_email(&crate::store::users::tombstone_email("u1")).is_err());
    }

    #[test]
    fn invisible_characters_are_refused() {
        for c in ['\u{200B}', '\u{200C}', '\u{200D}', '\u{2060}', '\u{FEFF}', '\u{202E}', '\u{2066}', '\u{00AD}', '\u{061C}', '\u{E0041}'] {
            for email in [format!("ki{c}m@example.com"), format!("{c}kim@example.com"), format!("kim@example.com{c}")] {
                assert_eq!(normalize_email(&email), Err(CredentialError::InvisibleCharacters), "{:?}", email);
            }
        }
    }

    #[test]
    fn the_external_domain_cannot_be_registered() {
        assert_eq!(registrable_email("extuser1@external.invalid"), Err(CredentialError::ReservedDomain));
        assert_eq!(registrable_email("ExtUser1@EXTERNAL.invalid"), Err(CredentialError::ReservedDomain));
        assert_eq!(registrable_email("a@sub.external.invalid"), Err(CredentialError::ReservedDomain));
        assert_eq!(registrable_email("a@notexternal.invalid").unwrap(), "a@notexternal.invalid");
        assert_eq!(registrable_email("a@example.com").unwrap(), "a@example.com");
    }

    #[test]
    fn password_policy() {
        assert_eq!(check_policy("short1", "a@b.co"), Err(CredentialError::TooShort));
        assert_eq!(check_policy("onlyletterslong", "a@b.co"), Err(CredentialError::TooWeak));
        assert_eq!(check_policy("aaaaaaaaa1", "a@b.co"), Err(CredentialError::Common));
        // Repetition is left to the length, the list and the sign-in limits (a schema can state
        // the rule exactly this way).
        assert!(check_policy("aaaaaaaaa2", "a@b.co").is_ok());
        assert!(check_policy("가나다라마바사아자1", "a@b.co").is_ok());
        assert_eq!(check_policy("가나다라마바사아자차", "a@b.co"), Err(CredentialError::TooWeak));
        assert_eq!(check_policy("minsu.kim-2024", "minsu.kim@b.co"), Err(CredentialError::TooWeak));
        assert_eq!(check_policy(&"ab1".repeat(50), "a@b.co"), Err(CredentialError::TooLong));
        assert!(check_policy("correct horse 7", "a@b.co").is_ok());
    }

    #[test]
    fn common_passwords_are_refused_case_insensitively() {
        let list: Vec<&str> = include_str!("common_passwords.txt").lines().filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
        assert!(list.len() >= 300, "a few hundred entries, got {}", list.len());
        assert!(list.iter().all(|p| p.chars().count() >= MIN_LEN), "only passwords the length rule lets through");
        for p in ["qwer1234!!", "1q2w3e4r5t", "password123", "Password123", "PASSWORD123", "1234567890", "QwEr1234!!", "dkssudgktpdy1"] {
            assert!(is_common(p), "{p}");
            assert_eq!(check_policy(p, "a@b.co"), Err(CredentialError::Common), "{p}");
        }
        assert!(!is_common("correct horse 7"));
    }

    #[test]
    fn hash_and_verify() {
        let mut memory = new_memory();
        let h = hash_with("correct horse 7", &mut memory).unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_with("correct horse 7", Some(&h), &mut memory));
        assert!(!verify_with("wrong horse 7", Some(&h), &mut memory));
        assert!(!verify_with("correct horse 7", None, &mut memory));
        assert!(!verify_with("anything", Some("!"), &mut memory));
        // Compatible with the argon2 crate's own PHC handling both ways.
        let parsed = PasswordHash::new(&h).unwrap();
        assert!(Argon2::default().verify_password(b"correct horse 7", &parsed).is_ok());
        use argon2::PasswordHasher;
        let theirs = Argon2::default().hash_password(b"correct horse 7", &SaltString::generate(&mut OsRng)).unwrap().to_string();
        assert!(verify_with("correct horse 7", Some(&theirs), &mut memory));
        assert!(!verify_with("correct horse 8", Some(&theirs), &mut memory));
        // A hash with other (smaller) parameters still verifies.
        let small = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(1024, 1, 1, None).unwrap())
            .hash_password(b"correct horse 7", &SaltString::generate(&mut OsRng))
            .unwrap()
            .to_string();
        assert!(verify_with("correct horse 7", Some(&small), &mut memory));
    }
}
