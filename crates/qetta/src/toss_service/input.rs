//! Validation of what a user types for a `USER_PERSONAL` verification, and the masking of what
//! a browser may see of a verified identity.

use chrono::NaiveDate;

/// A value that failed validation: a stable code and a message that says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InputError {
    pub code: &'static str,
    pub message: String,
}

fn invalid(code: &'static str, message: impl Into<String>) -> InputError {
    InputError { code, message: message.into() }
}

const NAME_MAX: usize = 50;

/// A real name: 1–50 characters of Hangul or other letters, spaces, `·` and `-`, with at least
/// one letter. Surrounding spaces are trimmed and inner runs of spaces collapsed.
pub fn name(raw: &str) -> Result<String, InputError> {
    let collapsed = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    let n = collapsed.chars().count();
    if n == 0 {
        return Err(invalid("invalid_name", "name must not be empty."));
    }
    if n > NAME_MAX {
        return Err(invalid("invalid_name", format!("name must be at most {NAME_MAX} characters (it has {n}).")));
    }
    if let Some(bad) = collapsed.chars().find(|c| !(c.is_alphabetic() || *c == ' ' || *c == '·' || *c == '-')) {
        let shown = if bad.is_control() { format!("U+{:04X}", bad as u32) } else { format!("{bad:?}") };
        return Err(invalid("invalid_name", format!("name may contain only letters (Hangul or Latin), spaces, '·' and '-', not {shown}.")));
    }
    if !collapsed.chars().any(char::is_alphabetic) {
        return Err(invalid("invalid_name", "name must contain at least one letter."));
    }
    Ok(collapsed)
}

/// A Korean mobile number as digits: `01[016789]` and 7–8 more digits. Hyphens and spaces are
/// removed first (`010-1234-5678`).
pub fn phone(raw: &str) -> Result<String, InputError> {
    let digits: String = raw.chars().filter(|c| *c != '-' && !c.is_whitespace()).collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(invalid("invalid_phone", "phone must contain only digits and hyphens, e.g. 010-1234-5678."));
    }
    let ok_prefix = digits.len() >= 3 && digits.starts_with("01") && matches!(digits.as_bytes()[2], b'0' | b'1' | b'6' | b'7' | b'8' | b'9');
    if !ok_prefix {
        return Err(invalid("invalid_phone", "phone must be a Korean mobile number starting with 010, 011, 016, 017, 018 or 019."));
    }
    if !(10..=11).contains(&digits.len()) {
        return Err(invalid("invalid_phone", format!("phone must have 10 or 11 digits (it has {}).", digits.len())));
    }
    Ok(digits)
}

/// A birthday as `YYYYMMDD` (hyphens allowed: `1993-03-24`): a real date, from 1900-01-01, not
/// after `today`.
pub fn birthday(raw: &str, today: NaiveDate) -> Result<String, InputError> {
    let compact: String = raw.trim().chars().filter(|c| *c != '-').collect();
    if compact.len() != 8 || !compact.chars().all(|c| c.is_ascii_digit()) {
        return Err(invalid("invalid_birthday", "birthday must be a date as YYYYMMDD, e.g. 19930324."));
    }
    let date = NaiveDate::parse_from_str(&compact, "%Y%m%d").map_err(|_| invalid("invalid_birthday", format!("birthday {compact} is not a real date.")))?;
    if date < NaiveDate::from_ymd_opt(1900, 1, 1).expect("valid date") {
        return Err(invalid("invalid_birthday", "birthday must not be before 1900."));
    }
    if date > today {
        return Err(invalid("invalid_birthday", "birthday must not be in the future."));
    }
    Ok(compact)
}

/// Masks a name for display: first and last character kept for three or more characters
/// (`김*스`, `남**수`), first character and `*` for two (`김*`), `*` for one.
pub fn mask_name(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    match chars.len() {
        0 => String::new(),
        1 => "*".into(),
        2 => format!("{}*", chars[0]),
        n => format!("{}{}{}", chars[0], "*".repeat(n - 2), chars[n - 1]),
    }
}

/// The year of a `YYYYMMDD` birthday, if it has one.
pub fn birth_year(birthday: &str) -> Option<i32> {
    birthday.get(..4).and_then(|y| y.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 5, 1).unwrap()
    }

    #[test]
    fn names() {
        assert_eq!(name("  김토스 ").unwrap(), "김토스");
        assert_eq!(name("Kim  Min-su").unwrap(), "Kim Min-su");
        assert_eq!(name("남궁·민수").unwrap(), "남궁·민수");
        for bad in ["", "   ", "김토스1", "<script>", "a\u{0}b", "--", &"가".repeat(51)] {
            let e = name(bad).unwrap_err();
            assert_eq!(e.code, "invalid_name", "{bad:?}");
        }
        assert!(name(&"가".repeat(50)).is_ok());
        assert!(name(&"가".repeat(51)).unwrap_err().message.contains("51"));
    }

    #[test]
    fn phones() {
        assert_eq!(phone("010-1111-2222").unwrap(), "01011112222");
        assert_eq!(phone("0161234567").unwrap(), "0161234567");
        for bad in ["", "02-123-4567", "0101234567890", "010123456", "01012345678a", "015-1234-5678", "+821012345678"] {
            assert_eq!(phone(bad).unwrap_err().code, "invalid_phone", "{bad:?}");
        }
    }

    #[test]
    fn birthdays() {
        assert_eq!(birthday("19930324", today()).unwrap(), "19930324");
        assert_eq!(birthday("1993-03-24", today()).unwrap(), "19930324");
        assert_eq!(birthday("20000229", today()).unwrap(), "20000229");
        for bad in ["19930230", "19990229", "1993032", "18991231", "20260502", "abcdefgh", "", "19931324"] {
            assert_eq!(birthday(bad, today()).unwrap_err().code, "invalid_birthday", "{bad:?}");
        }
        assert!(birthday("20260501", today()).is_ok());
    }

    #[test]
    fn masking() {
        assert_eq!(mask_name("김토스"), "김*스");
        assert_eq!(mask_name("남궁민수"), "남**수");
        assert_eq!(mask_name("김토"), "김*");
        assert_eq!(mask_name("김"), "*");
        assert_eq!(mask_name(""), "");
        assert_eq!(birth_year("19930324"), Some(1993));
        assert_eq!(birth_year("x"), None);
    }
}
