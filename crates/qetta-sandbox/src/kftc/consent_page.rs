//! The consent page a person uses in a browser (Korean, with English).
//!
//! Pages are mounted under an unknown prefix (`/sandbox/kftc` when embedded, `/kftc`
//! standalone), so every link and form action is relative, and there is no inline script or
//! style: the stylesheet is `<base>/_sandbox/assets/sandbox.css`, which from
//! `<base>/oauth/2.0/authorize` is `../../_sandbox/assets/sandbox.css`.

use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};

use super::codes::KftcError;
use super::data::SandboxUser;
use super::oauth::AuthorizeRequest;

const CSS_HREF: &str = "../../_sandbox/assets/sandbox.css";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"ko\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<link rel=\"stylesheet\" href=\"{CSS_HREF}\">\n</head>\n<body>\n{body}\n</body>\n</html>\n",
        text(title)
    )
}

fn scope_label(s: &str) -> &'static str {
    match s {
        "login" => "로그인·사용자 정보 (login)",
        "inquiry" => "계좌 조회 (inquiry)",
        "transfer" => "출금 이체 (transfer)",
        _ => "기타 (other)",
    }
}

fn won(n: i64) -> String {
    let s = n.unsigned_abs().to_string();
    let head = s.len() % 3;
    let mut groups: Vec<&str> = Vec::new();
    if head > 0 {
        groups.push(&s[..head]);
    }
    groups.extend(s.as_bytes()[head..].chunks(3).filter_map(|c| std::str::from_utf8(c).ok()));
    format!("{}{}원", if n < 0 { "-" } else { "" }, groups.join(","))
}

/// Hidden inputs that carry the original authorize parameters through the form post.
fn hidden_inputs(req: &AuthorizeRequest) -> String {
    req.pairs
        .iter()
        .filter(|(k, _)| !k.starts_with("sandbox_"))
        .map(|(k, v)| format!("<input type=\"hidden\" name=\"{}\" value=\"{}\">\n", attr(k), attr(v)))
        .collect()
}

pub(crate) fn consent_page(req: &AuthorizeRequest, users: &[SandboxUser]) -> String {
    let hidden = hidden_inputs(req);
    let scopes: String = req.scopes.iter().map(|s| format!("<span>{}</span>", text(scope_label(s)))).collect();
    let mut body = String::new();
    body.push_str(
        "<header><h1>오픈뱅킹 서비스 이용 동의</h1>\
         <p>KFTC OpenBanking sandbox — consent for a fintech service</p></header>\n<main>\n",
    );
    body.push_str(
        "<p class=\"notice\">이 화면은 Qetta 샌드박스가 흉내 낸 금융결제원 인증 화면입니다. 실제 인증은 일어나지 않습니다.<br>\
         This page simulates the KFTC authentication and consent screens. No real authentication happens.</p>\n",
    );
    body.push_str(&format!("<p class=\"scopes\">요청 권한 / Requested scopes: {scopes}</p>\n"));
    body.push_str("<p>동의할 사용자와 계좌를 선택하세요. / Choose who you are and which accounts to register.</p>\n");
    for u in users {
        let action = if req.account_add { "authorize_account" } else { "authorize" };
        body.push_str(&format!("<form class=\"card\" method=\"post\" action=\"{action}\">\n"));
        body.push_str(&hidden);
        body.push_str("<input type=\"hidden\" name=\"sandbox_consent\" value=\"approve\">\n");
        body.push_str(&format!("<input type=\"hidden\" name=\"sandbox_user\" value=\"{}\">\n", attr(&u.id)));
        body.push_str(&format!(
            "<h2>{} <span class=\"muted\">({}, id <code>{}</code>, user_seq_no {})</span></h2>\n",
            text(&u.name),
            text(&u.name_en),
            text(&u.id),
            text(&u.user_seq_no)
        ));
        body.push_str("<table>\n<tr><th>등록 / Register</th><th>은행 / Bank</th><th>계좌 / Account</th><th>상품 / Product</th><th>잔액 / Balance</th></tr>\n");
        for a in &u.accounts {
            let cls = if a.balance_amt < 0 { "amount negative" } else { "amount" };
            body.push_str(&format!(
                "<tr><td><input type=\"checkbox\" name=\"sandbox_account\" value=\"{}\" checked></td>\
                 <td>{}</td><td>{}</td><td>{}</td><td class=\"{cls}\">{}</td></tr>\n",
                attr(&a.fintech_use_num),
                text(&a.bank_name),
                text(&a.account_num_masked),
                text(&a.product_name),
                text(&won(a.balance_amt)),
            ));
        }
        body.push_str("</table>\n");
        body.push_str(&format!(
            "<button class=\"approve\" type=\"submit\">{} 님으로 동의하기 / Approve as {}</button>\n</form>\n",
            text(&u.name),
            text(&u.name_en)
        ));
    }
    body.push_str("<form class=\"card\" method=\"post\" action=\"authorize\">\n");
    body.push_str(&hidden);
    body.push_str("<input type=\"hidden\" name=\"sandbox_consent\" value=\"deny\">\n");
    body.push_str("<p>동의하지 않으면 서비스로 돌아갑니다. / Deny and return to the service.</p>\n");
    body.push_str("<button class=\"deny\" type=\"submit\">동의하지 않음 / Deny</button>\n</form>\n</main>");
    page("오픈뱅킹 동의 / KFTC consent (sandbox)", &body)
}

pub(crate) fn error_page(err: &KftcError) -> String {
    let body = format!(
        "<header><h1>오픈뱅킹 인증 오류</h1><p>KFTC OpenBanking sandbox — authorization error</p></header>\n\
         <main><div class=\"card error\"><p><code>{}</code> {}</p>\
         <p class=\"muted\">요청 파라미터(client_id, redirect_uri 등)를 확인하세요. / Check the request parameters \
         (client_id, redirect_uri, ...).</p></div></main>",
        text(err.code()),
        text(&err.rsp_message())
    );
    page("오픈뱅킹 인증 오류 / KFTC error (sandbox)", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn won_formats_thousands() {
        assert_eq!(won(0), "0원");
        assert_eq!(won(1_234_567), "1,234,567원");
        assert_eq!(won(-3_100_000), "-3,100,000원");
    }

    #[test]
    fn pages_escape_and_stay_relative() {
        let req = AuthorizeRequest {
            pairs: vec![("state".into(), "\"><script>x</script>".into())],
            redirect_uri: "http://x/cb".into(),
            scopes: ["login".to_string()].into(),
            state: "s".into(),
            client_info: None,
            auth_type: "0".into(),
            account_add: false,
        };
        let users = super::super::data::generate(1, "M202600001", chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap());
        let html = consent_page(&req, &users);
        assert!(!html.contains("<script>"));
        assert!(!html.contains("style="));
        assert!(!html.contains("href=\"/"));
        assert!(!html.contains("action=\"/"));
        assert!(html.contains("action=\"authorize\""));
    }
}
