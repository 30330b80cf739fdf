//! Masking what is shown of accounts and tokens: enough to recognise one's own, not to learn it.

/// The first one or two characters of each part, the rest starred; the top-level domain stays.
/// `mina@example.com` → `mi***@ex*****.com`. The local part always gets three stars (its length
/// is not shown); the domain's stars follow its length, between 3 and 8.
pub fn mask_email(email: &str) -> String {
    let Some((local, domain)) = email.rsplit_once('@') else {
        return mask_user_id(email);
    };
    let keep = |s: &str| -> (String, usize) {
        let n = s.chars().count();
        let k = if n >= 3 { 2 } else { 1.min(n) };
        (s.chars().take(k).collect(), n - k)
    };
    let (local_head, _) = keep(local);
    let (name, tld) = match domain.rsplit_once('.') {
        Some((name, tld)) if !name.is_empty() => (name, Some(tld)),
        _ => (domain, None),
    };
    let (domain_head, rest) = keep(name);
    let stars = "*".repeat(rest.clamp(3, 8));
    match tld {
        Some(tld) => format!("{local_head}***@{domain_head}{stars}.{tld}"),
        None => format!("{local_head}***@{domain_head}{stars}"),
    }
}

/// `app-user-42` → `app***42`: enough to recognise an id one knows, not to learn it.
pub fn mask_user_id(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    let n = chars.len();
    let (head, tail) = match n {
        0 => (0, 0),
        1..=4 => (1, 0),
        5..=8 => (2, 1),
        _ => (3, 2),
    };
    format!("{}***{}", chars[..head].iter().collect::<String>(), chars[n - tail..].iter().collect::<String>())
}

/// Masks a token for display: the first 4 and last 4 characters.
pub fn mask_token(t: &str) -> String {
    let chars: Vec<char> = t.chars().collect();
    if chars.len() <= 12 {
        return "…".into();
    }
    format!("{}…{}", chars[..4].iter().collect::<String>(), chars[chars.len() - 4..].iter().collect::<String>())
}

/// What a provider tells us to show of an account: an email is masked like [`mask_email`]; a
/// name or nickname keeps its first character (`김철수` → `김**`).
pub fn mask_display(label: &str) -> String {
    let label = label.trim();
    if label.contains('@') {
        return mask_email(label);
    }
    let mut chars = label.chars();
    match chars.next() {
        Some(first) => format!("{first}{}", "*".repeat(chars.count().clamp(1, 8))),
        None => String::new(),
    }
}
