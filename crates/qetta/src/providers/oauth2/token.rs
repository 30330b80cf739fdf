//! Token endpoint responses (RFC 6749 §5.1/§5.2), read leniently where providers deviate
//! (docs/oauth-providers.md PART D) and strictly where it matters (an access token, a bearer type).

use secrecy::SecretString;
use serde_json::Value;

use super::error::{clip, OAuthError};

/// A token response, read (secrets redacted in `Debug`).
#[derive(Debug)]
pub struct TokenResponse {
    pub access_token: SecretString,
    /// Always `Bearer` (D14: `bearer` from Kakao and Naver, normalised).
    pub token_type: String,
    pub expires_in: Option<i64>,
    /// `None` when the response has none (or an empty one): on refresh, keep the old one (D6).
    pub refresh_token: Option<SecretString>,
    /// Kakao's `refresh_token_expires_in` (K3.3), when given.
    pub refresh_expires_in: Option<i64>,
    /// Space-separated; `None` when the response has none (RFC 6749 §5.1: as requested).
    pub scope: Option<String>,
    pub id_token: Option<SecretString>,
}

/// A number of seconds given as a JSON number or a string of digits (D2: Naver's `"3600"`).
pub fn seconds(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)).filter(|s| *s >= 0),
        Value::String(s) => s.trim().parse::<i64>().ok().filter(|s| *s >= 0),
        _ => None,
    }
}

/// Scopes separated by spaces or commas (D7), as one space-separated string.
pub fn normalise_scope(s: &str) -> String {
    s.split([' ', ',', '+']).filter(|p| !p.is_empty()).collect::<Vec<_>>().join(" ")
}

fn non_empty_string(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string)
}

/// The OAuth error in a body, on any status (D1: Naver's classic endpoint answers errors with
/// HTTP 200). Kakao adds `error_code` (`KOE320`…, D5), kept as the provider code.
pub fn error_in(status: u16, body: &Value) -> Option<OAuthError> {
    let error = body.get("error").and_then(Value::as_str).filter(|e| !e.is_empty())?;
    let description = body.get("error_description").and_then(Value::as_str).map(clip);
    let provider_code = body.get("error_code").and_then(|c| c.as_str().map(str::to_string).or_else(|| c.as_i64().map(|n| n.to_string())));
    Some(match error {
        "invalid_grant" => OAuthError::InvalidGrant { description, provider_code },
        "invalid_client" | "unauthorized_client" => OAuthError::InvalidClient { error: error.to_string(), description },
        _ => OAuthError::Provider { error: clip(error), description, provider_code, status },
    })
}

/// Reads a token endpoint answer.
pub fn parse(status: u16, body: &[u8]) -> Result<TokenResponse, OAuthError> {
    let json: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) if !(200..300).contains(&status) => return Err(OAuthError::Http { status }),
        Err(_) => return Err(OAuthError::Decode("the token response is not JSON".into())),
    };
    if let Some(e) = error_in(status, &json) {
        return Err(e);
    }
    if !(200..300).contains(&status) {
        return Err(OAuthError::Http { status });
    }
    let access_token = non_empty_string(json.get("access_token")).ok_or_else(|| OAuthError::Decode("the token response has no access_token".into()))?;
    // RFC 6749 §5.1: case-insensitive; missing is tolerated as bearer (some providers omit it).
    let token_type = match json.get("token_type").and_then(Value::as_str) {
        None | Some("") => "Bearer".to_string(),
        Some(t) if t.eq_ignore_ascii_case("bearer") => "Bearer".to_string(),
        Some(other) => return Err(OAuthError::Decode(format!("token_type {:?} is not supported (bearer only)", clip(other)))),
    };
    Ok(TokenResponse {
        access_token: SecretString::from(access_token),
        token_type,
        expires_in: seconds(json.get("expires_in")),
        refresh_token: non_empty_string(json.get("refresh_token")).map(SecretString::from),
        refresh_expires_in: seconds(json.get("refresh_token_expires_in")),
        scope: json.get("scope").and_then(Value::as_str).map(normalise_scope).filter(|s| !s.is_empty()),
        id_token: non_empty_string(json.get("id_token")).map(SecretString::from),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use serde_json::json;

    fn body(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn naver_classic_issue_and_refresh() {
        // N3: expires_in as a string (D2), lowercase bearer (D14), no rotation on refresh (D6).
        let t = parse(200, &body(json!({"access_token": "AAA", "refresh_token": "RRR", "token_type": "bearer", "expires_in": "3600"}))).unwrap();
        assert_eq!((t.token_type.as_str(), t.expires_in, t.scope.as_deref()), ("Bearer", Some(3600), None));
        assert_eq!(t.refresh_token.unwrap().expose_secret(), "RRR");
        let r = parse(200, &body(json!({"access_token": "AAB", "token_type": "bearer", "expires_in": "3600"}))).unwrap();
        assert!(r.refresh_token.is_none());
        let r = parse(200, &body(json!({"access_token": "AAB", "refresh_token": "", "expires_in": 10}))).unwrap();
        assert!(r.refresh_token.is_none(), "an empty refresh token is none");
    }

    #[test]
    fn errors_on_http_200_are_errors() {
        // D1: Naver's reused code.
        let e = parse(200, &body(json!({"error": "invalid_request", "error_description": "no valid data in session"}))).unwrap_err();
        assert!(matches!(&e, OAuthError::Provider { error, status: 200, .. } if error == "invalid_request"), "{e:?}");
        assert!(!e.is_transient());
        let e = parse(200, &body(json!({"error": "invalid_grant"}))).unwrap_err();
        assert!(matches!(e, OAuthError::InvalidGrant { .. }));
    }

    #[test]
    fn kakao_errors_keep_the_koe_code() {
        // K3.5, D5.
        let e = parse(400, &body(json!({"error": "invalid_grant", "error_description": "authorization code not found for code=xyz", "error_code": "KOE320"})))
            .unwrap_err();
        assert_eq!(e.provider_code().as_deref(), Some("KOE320"));
        assert!(matches!(e, OAuthError::InvalidGrant { .. }));
        let e = parse(401, &body(json!({"error": "invalid_client", "error_description": "Bad client credentials", "error_code": "KOE010"}))).unwrap_err();
        assert!(matches!(e, OAuthError::InvalidClient { .. }));
        let e = parse(400, &body(json!({"error": "invalid_request", "error_code": "KOE237", "error_description": "token request rate limit exceeded"})))
            .unwrap_err();
        assert_eq!(e.provider_code().as_deref(), Some("KOE237"));
    }

    #[test]
    fn kakao_success_with_refresh_lifetime_and_scopes() {
        // K3.3: integer expires_in, refresh_token_expires_in, space-separated scope.
        let t = parse(200, &body(json!({"token_type": "bearer", "access_token": "a", "expires_in": 21599, "refresh_token": "r", "refresh_token_expires_in": 5183999, "scope": "account_email profile_nickname"}))).unwrap();
        assert_eq!((t.expires_in, t.refresh_expires_in), (Some(21599), Some(5183999)));
        assert_eq!(t.scope.as_deref(), Some("account_email profile_nickname"));
        // D7: commas.
        assert_eq!(normalise_scope("account_email,gender"), "account_email gender");
        assert_eq!(normalise_scope(" a  b,c "), "a b c");
    }

    #[test]
    fn odd_and_broken_answers() {
        let t = parse(200, &body(json!({"access_token": "a"}))).unwrap();
        assert_eq!((t.token_type.as_str(), t.expires_in), ("Bearer", None), "missing token_type is bearer");
        assert!(parse(200, &body(json!({"access_token": "a", "token_type": "mac"}))).is_err());
        assert!(matches!(parse(200, &body(json!({"token_type": "bearer"}))), Err(OAuthError::Decode(_))));
        assert!(matches!(parse(502, b"<html>bad gateway</html>"), Err(OAuthError::Http { status: 502 })));
        assert!(parse(502, b"<html>").unwrap_err().is_transient());
        assert!(matches!(parse(200, b"<html>"), Err(OAuthError::Decode(_))));
        assert!(matches!(parse(503, &body(json!({"error": "temporarily_unavailable"}))), Err(ref e) if e.is_transient()));
        assert_eq!(seconds(Some(&json!("abc"))), None);
        assert_eq!(seconds(Some(&json!(-5))), None);
        assert_eq!(seconds(Some(&json!(3600.0))), Some(3600));
        assert_eq!(seconds(Some(&json!(" 7199 "))), Some(7199));
        // Secrets stay out of messages.
        let e = parse(200, &body(json!({"token_type": "mac", "access_token": "SECRET-AT"}))).unwrap_err();
        assert!(!e.to_string().contains("SECRET-AT"));
    }
}
