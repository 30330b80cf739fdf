//! Who the user is at the provider: the account id (`sub`) and a display label, read from the
//! OIDC UserInfo shape or from Kakao's and Naver's own profile APIs.

use serde_json::Value;

use super::error::{clip, OAuthError};
use super::settings::ProfileKind;

/// The provider account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// The provider's stable account id for this app.
    pub subject: String,
    /// A name to show (nickname, name or email), when the user shared one.
    pub label: Option<String>,
}

/// Reads a profile answer of `kind`.
pub fn parse(kind: ProfileKind, status: u16, body: &[u8]) -> Result<UserInfo, OAuthError> {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    match kind {
        ProfileKind::Oidc => oidc(status, json),
        ProfileKind::Kakao => kakao(status, json),
        ProfileKind::Naver => naver(status, json),
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).map(clip)
}

/// The status alone, when the body says nothing we understand.
fn by_status(status: u16) -> OAuthError {
    match status {
        401 => OAuthError::InvalidToken { provider_code: None },
        _ => OAuthError::Http { status },
    }
}

/// OpenID Connect Core §5.3: a JSON object with `sub`; errors per RFC 6750 (401 = the token).
fn oidc(status: u16, json: Option<Value>) -> Result<UserInfo, OAuthError> {
    if status == 401 {
        return Err(OAuthError::InvalidToken { provider_code: json.as_ref().and_then(|j| text(j.get("error"))) });
    }
    if !(200..300).contains(&status) {
        return Err(by_status(status));
    }
    let j = json.ok_or_else(|| OAuthError::Decode("userinfo is not JSON (signed or encrypted userinfo is not supported)".into()))?;
    let subject = text(j.get("sub")).ok_or_else(|| OAuthError::Decode("userinfo has no sub".into()))?;
    let label = text(j.get("name")).or_else(|| text(j.get("nickname"))).or_else(|| text(j.get("preferred_username"))).or_else(|| text(j.get("email")));
    Ok(UserInfo { subject, label })
}

/// Kakao `/v2/user/me` (K4 [C]): `id` is a 64-bit number (D15: beyond 2^53, so read as an
/// integer, never as a float); errors are `{"code": <negative>, "msg"}` (D4), −401 = the access
/// token. The label: `kakao_account.profile.nickname` [C], else `properties.nickname` (older apps
/// [O]), else `kakao_account.email` [C].
fn kakao(status: u16, json: Option<Value>) -> Result<UserInfo, OAuthError> {
    let j = json.ok_or_else(|| if (200..300).contains(&status) { OAuthError::Decode("Kakao profile is not JSON".into()) } else { by_status(status) })?;
    if let Some(code) = j.get("code").and_then(Value::as_i64).filter(|c| *c < 0) {
        return Err(match code {
            -401 => OAuthError::InvalidToken { provider_code: Some("-401".into()) },
            _ => OAuthError::Provider { error: code.to_string(), description: text(j.get("msg")), provider_code: Some(code.to_string()), status },
        });
    }
    if !(200..300).contains(&status) {
        return Err(by_status(status));
    }
    let subject = match j.get("id") {
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
        // Some proxies stringify large ids [U]; accept digits.
        Some(Value::String(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.clone(),
        _ => return Err(OAuthError::Decode("Kakao profile has no integer id".into())),
    };
    let account = j.get("kakao_account");
    let label = text(account.and_then(|a| a.get("profile")).and_then(|p| p.get("nickname")))
        .or_else(|| text(j.get("properties").and_then(|p| p.get("nickname"))))
        .or_else(|| text(account.and_then(|a| a.get("email"))));
    Ok(UserInfo { subject, label })
}

/// Naver `/v1/nid/me` (N5 [C], D3): `{resultcode, message, response: {id, nickname, name,
/// email}}`, `"00"` = success. `resultcode` is checked whatever the status (E13 [U]: 024 may come
/// with 200). 024 = the access token (401), 028 = no Authorization header.
fn naver(status: u16, json: Option<Value>) -> Result<UserInfo, OAuthError> {
    let j = json.ok_or_else(|| if (200..300).contains(&status) { OAuthError::Decode("Naver profile is not JSON".into()) } else { by_status(status) })?;
    // The gateway's other error shape {"errorMessage", "errorCode"} (N5, N-ERR [C]).
    let code = text(j.get("resultcode")).or_else(|| text(j.get("errorCode")));
    match code.as_deref() {
        Some("00") => {}
        Some("024") => return Err(OAuthError::InvalidToken { provider_code: Some("024".into()) }),
        Some(other) => {
            return Err(OAuthError::Provider {
                error: other.to_string(),
                description: text(j.get("message")).or_else(|| text(j.get("errorMessage"))),
                provider_code: Some(other.to_string()),
                status,
            })
        }
        None if status == 401 => return Err(OAuthError::InvalidToken { provider_code: None }),
        None if !(200..300).contains(&status) => return Err(by_status(status)),
        None => return Err(OAuthError::Decode("Naver profile has no resultcode".into())),
    }
    let r = j.get("response").ok_or_else(|| OAuthError::Decode("Naver profile has no response".into()))?;
    // `id` is a string (a number string for apps older than 2021-05, N5 [C]); accept a number.
    let subject = text(r.get("id"))
        .or_else(|| r.get("id").and_then(Value::as_i64).map(|n| n.to_string()))
        .ok_or_else(|| OAuthError::Decode("Naver profile has no response.id".into()))?;
    let label = text(r.get("nickname")).or_else(|| text(r.get("name"))).or_else(|| text(r.get("email")));
    Ok(UserInfo { subject, label })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn oidc_userinfo() {
        let u = parse(ProfileKind::Oidc, 200, &b(json!({"sub": "248289761001", "name": "Jane Doe", "email": "j@example.com"}))).unwrap();
        assert_eq!(u, UserInfo { subject: "248289761001".into(), label: Some("Jane Doe".into()) });
        assert!(matches!(parse(ProfileKind::Oidc, 401, b""), Err(OAuthError::InvalidToken { .. })));
        assert!(matches!(parse(ProfileKind::Oidc, 200, &b(json!({"name": "x"}))), Err(OAuthError::Decode(_))));
        assert!(parse(ProfileKind::Oidc, 503, b"").unwrap_err().is_transient());
    }

    #[test]
    fn kakao_user_me() {
        // K4: the documented sample id exceeds 2^53.
        let body = r#"{"id":1376016924429759228,"connected_at":"2022-04-11T01:45:28Z","kakao_account":{"profile_nickname_needs_agreement":false,"profile":{"nickname":"홍길동"},"email":"sample@sample.com"}}"#.as_bytes();
        let u = parse(ProfileKind::Kakao, 200, body).unwrap();
        assert_eq!(u.subject, "1376016924429759228");
        assert_eq!(u.label.as_deref(), Some("홍길동"));
        let u = parse(ProfileKind::Kakao, 200, br#"{"id":12,"kakao_account":{"email":"e@x.com"}}"#).unwrap();
        assert_eq!(u.label.as_deref(), Some("e@x.com"));
        let e = parse(ProfileKind::Kakao, 401, br#"{"msg":"this access token does not exist","code":-401}"#).unwrap_err();
        assert!(matches!(e, OAuthError::InvalidToken { .. }));
        let e = parse(ProfileKind::Kakao, 403, br#"{"msg":"insufficient scopes.","code":-402,"api_type":"USER_ME"}"#).unwrap_err();
        assert_eq!(e.provider_code().as_deref(), Some("-402"));
        let e = parse(ProfileKind::Kakao, 503, br#"{"msg":"maintenance","code":-9798}"#).unwrap_err();
        assert!(e.is_transient());
    }

    #[test]
    fn naver_nid_me() {
        let body = br#"{"resultcode":"00","message":"success","response":{"id":"32742776","nickname":"OpenAPI","email":"openapi@naver.com"}}"#;
        let u = parse(ProfileKind::Naver, 200, body).unwrap();
        assert_eq!(u, UserInfo { subject: "32742776".into(), label: Some("OpenAPI".into()) });
        let e = parse(ProfileKind::Naver, 401, r#"{"message":"Authentication failed (인증 실패하였습니다.)","resultcode":"024"}"#.as_bytes()).unwrap_err();
        assert!(matches!(e, OAuthError::InvalidToken { .. }));
        // E13 [U]: 024 with HTTP 200 is still the token.
        let e = parse(ProfileKind::Naver, 200, br#"{"message":"Authentication failed","resultcode":"024"}"#).unwrap_err();
        assert!(matches!(e, OAuthError::InvalidToken { .. }));
        let e = parse(ProfileKind::Naver, 401, br#"{"resultcode":"028","message":"Authentication header not exists"}"#).unwrap_err();
        assert_eq!(e.provider_code().as_deref(), Some("028"));
        let u = parse(ProfileKind::Naver, 200, br#"{"resultcode":"00","message":"success","response":{"id":"abc-pairwise"}}"#).unwrap();
        assert_eq!(u.label, None);
    }
}
