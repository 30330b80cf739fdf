//! The people who log in with Kakao and Naver in the sandbox, and the consent / error pages the
//! two simulators share.
//!
//! Same four people as the KFTC sandbox (kim, lee, park, choi). Their provider ids are derived
//! from `QETTA_SANDBOX_SEED`, so tests can read them from `_sandbox/users` and assert exactly.
//! Two of them decline optional items, so clients meet absent fields:
//! `lee` has an email that is not verified (Kakao leaves it out of the ID token, K6), and `choi`
//! declines email, phone number and birthday.

use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};
use sha2::{Digest, Sha256};

use crate::oidc::Pairs;

#[derive(Clone, Debug)]
pub struct Person {
    pub id: &'static str,
    pub name: &'static str,
    pub name_en: &'static str,
    pub nickname: &'static str,
    pub email: &'static str,
    pub email_verified: bool,
    /// `female` / `male`.
    pub gender: &'static str,
    pub birthyear: &'static str,
    /// MMDD.
    pub birthday: &'static str,
    /// Korean mobile number, digits only (`010…`).
    pub mobile: &'static str,
    /// Optional items this person refuses to share (`email`, `phone`, `birthday`).
    pub declines: &'static [&'static str],
}

impl Person {
    pub fn shares(&self, item: &str) -> bool {
        !self.declines.contains(&item)
    }

    /// Kakao `phone_number`: `+82 10-1234-5678` (K4).
    pub fn kakao_phone(&self) -> String {
        let m = &self.mobile[1..];
        format!("+82 {}-{}-{}", &m[..2], &m[2..6], &m[6..])
    }

    /// Naver `mobile`: `010-1234-5678` (N5).
    pub fn naver_mobile(&self) -> String {
        format!("{}-{}-{}", &self.mobile[..3], &self.mobile[3..7], &self.mobile[7..])
    }

    /// Age in whole years on `today` (YYYY, MMDD).
    pub fn age(&self, today_year: i32, today_mmdd: &str) -> i32 {
        let y: i32 = self.birthyear.parse().unwrap_or(1990);
        let mut age = today_year - y;
        if today_mmdd < self.birthday {
            age -= 1;
        }
        age.max(0)
    }
}

pub const PEOPLE: &[Person] = &[
    Person {
        id: "kim",
        name: "김민준",
        name_en: "Kim Minjun",
        nickname: "민준",
        email: "minjun.kim@example.com",
        email_verified: true,
        gender: "male",
        birthyear: "1988",
        birthday: "0415",
        mobile: "01012345678",
        declines: &[],
    },
    Person {
        id: "lee",
        name: "이서연",
        name_en: "Lee Seoyeon",
        nickname: "서연",
        email: "seoyeon.lee@example.org",
        email_verified: false,
        gender: "female",
        birthyear: "1995",
        birthday: "1101",
        mobile: "01023456789",
        declines: &[],
    },
    Person {
        id: "park",
        name: "박지훈",
        name_en: "Park Jihoon",
        nickname: "지훈",
        email: "jihoon.park@example.net",
        email_verified: true,
        gender: "male",
        birthyear: "1979",
        birthday: "0228",
        mobile: "01034567890",
        declines: &[],
    },
    Person {
        id: "choi",
        name: "최유진",
        name_en: "Choi Yujin",
        nickname: "유진",
        email: "yujin.choi@example.com",
        email_verified: true,
        gender: "female",
        birthyear: "2001",
        birthday: "0707",
        mobile: "01045678901",
        declines: &["email", "phone", "birthday"],
    },
];

pub fn person(id: &str) -> Option<&'static Person> {
    PEOPLE.iter().find(|p| p.id == id)
}

/// 32 bytes derived from the seed, a provider label and the person.
pub fn derive(seed: u64, label: &str, person: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(seed.to_be_bytes());
    h.update(label.as_bytes());
    h.update([0]);
    h.update(person.as_bytes());
    h.finalize().into()
}

/// Resolve a sandbox user id (`None` = the first person).
pub fn resolve(id: Option<&str>) -> Option<&'static Person> {
    match id {
        Some(id) => person(id),
        None => PEOPLE.first(),
    }
}

const CSS_HREF: &str = "../_sandbox/assets/sandbox.css";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"ko\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<link rel=\"stylesheet\" href=\"{CSS_HREF}\">\n</head>\n<body>\n{body}\n</body>\n</html>\n",
        text(title)
    )
}

fn hidden_inputs(pairs: &Pairs) -> String {
    pairs
        .iter()
        .filter(|(k, _)| !k.starts_with("sandbox_"))
        .map(|(k, v)| format!("<input type=\"hidden\" name=\"{}\" value=\"{}\">\n", attr(k), attr(v)))
        .collect()
}

/// The login + consent page: one form per person (approve as …) and a cancel form. `action` is
/// the relative authorize path (`authorize`); `items` are the consent items shown.
pub fn consent_page(provider: &str, action: &str, pairs: &Pairs, items: &[String]) -> String {
    let hidden = hidden_inputs(pairs);
    let items: String = items.iter().map(|s| format!("<span>{}</span>", text(s))).collect();
    let mut body = format!(
        "<header><h1>{p} 로그인 동의</h1><p>{p} Login sandbox — log in and consent</p></header>\n<main>\n\
         <p class=\"notice\">이 화면은 Qetta 샌드박스가 흉내 낸 {p} 로그인 화면입니다. 실제 인증은 일어나지 않습니다.<br>\
         This page simulates the {p} login and consent screens. No real authentication happens.</p>\n\
         <p class=\"scopes\">동의 항목 / Consent items: {items}</p>\n\
         <p>로그인할 사용자를 선택하세요. / Choose who you are.</p>\n",
        p = text(provider)
    );
    for u in PEOPLE {
        body.push_str(&format!("<form class=\"card\" method=\"post\" action=\"{}\">\n", attr(action)));
        body.push_str(&hidden);
        body.push_str("<input type=\"hidden\" name=\"sandbox_consent\" value=\"approve\">\n");
        body.push_str(&format!("<input type=\"hidden\" name=\"sandbox_user\" value=\"{}\">\n", attr(u.id)));
        let declines = if u.declines.is_empty() { String::new() } else { format!(" — 제공 거부 / declines: {}", text(&u.declines.join(", "))) };
        body.push_str(&format!(
            "<h2>{} <span class=\"muted\">({}, id <code>{}</code>, {}{})</span></h2>\n",
            text(u.name),
            text(u.name_en),
            text(u.id),
            text(u.email),
            declines
        ));
        body.push_str(&format!(
            "<button class=\"approve\" type=\"submit\">{} 님으로 동의하고 계속하기 / Agree and continue as {}</button>\n</form>\n",
            text(u.name),
            text(u.name_en)
        ));
    }
    body.push_str(&format!("<form class=\"card\" method=\"post\" action=\"{}\">\n", attr(action)));
    body.push_str(&hidden);
    body.push_str("<input type=\"hidden\" name=\"sandbox_consent\" value=\"deny\">\n");
    body.push_str("<p>취소하면 서비스로 돌아갑니다. / Cancel and return to the service.</p>\n");
    body.push_str("<button class=\"deny\" type=\"submit\">취소 / Cancel</button>\n</form>\n</main>");
    page(&format!("{provider} 로그인 (sandbox)"), &body)
}

/// The provider's own error page (errors before the redirect URI is trusted).
pub fn error_page(provider: &str, code: &str, message: &str) -> String {
    let body = format!(
        "<header><h1>{p} 로그인 오류</h1><p>{p} Login sandbox — error</p></header>\n\
         <main><div class=\"card error\"><p><code>{}</code> {}</p>\
         <p class=\"muted\">요청 파라미터(client_id, redirect_uri 등)를 확인하세요. / Check the request parameters \
         (client_id, redirect_uri, ...).</p></div></main>",
        text(code),
        text(message),
        p = text(provider)
    );
    page(&format!("{provider} 오류 (sandbox)"), &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let kim = person("kim").unwrap();
        assert_eq!(kim.kakao_phone(), "+82 10-1234-5678");
        assert_eq!(kim.naver_mobile(), "010-1234-5678");
        assert_eq!(kim.age(2026, "0414"), 37);
        assert_eq!(kim.age(2026, "0415"), 38);
    }

    #[test]
    fn pages_escape_and_stay_relative() {
        let pairs: Pairs = vec![("state".into(), "\"><script>x</script>".into())];
        let html = consent_page("Kakao", "authorize", &pairs, &["profile_nickname".into()]);
        assert!(!html.contains("<script>"));
        assert!(!html.contains("style="));
        assert!(!html.contains("href=\"/") && !html.contains("action=\"/"));
        let err = error_page("Naver", "<b>", "<i>");
        assert!(!err.contains("<b>") && !err.contains("<i>"));
    }
}
