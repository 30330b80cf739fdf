//! One provider's settings, and their validation (errors name the key, like the service's own
//! configuration does).

use std::time::Duration;

use secrecy::SecretString;

/// How the client authenticates at the token and revocation endpoints (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic with the form-urlencoded id and secret (the RFC's MUST-support method).
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body (Kakao, Naver: D8).
    ClientSecretPost,
    /// A public client: `client_id` only; PKCE is then mandatory.
    None,
}

impl ClientAuth {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::None => "none",
        }
    }

    pub fn parse(s: &str) -> Result<Self, SettingsError> {
        match s {
            "client_secret_basic" => Ok(Self::ClientSecretBasic),
            "client_secret_post" => Ok(Self::ClientSecretPost),
            "none" => Ok(Self::None),
            other => Err(SettingsError::new("client_auth", format!("expected client_secret_basic, client_secret_post or none, got {other:?}"))),
        }
    }
}

/// Which user-info shape the provider answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileKind {
    /// OpenID Connect UserInfo: a flat object with `sub`.
    Oidc,
    /// Kakao `/v2/user/me`: `id` (64-bit number), `kakao_account.profile.nickname` (K4).
    Kakao,
    /// Naver `/v1/nid/me`: `{resultcode, message, response: {id, …}}` (N5, D3).
    Naver,
}

/// The provider's endpoints, when they are configured rather than discovered (a configured
/// endpoint also overrides the discovered one).
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    pub authorize_url: Option<String>,
    pub token_url: Option<String>,
    pub revocation_url: Option<String>,
    pub userinfo_url: Option<String>,
    pub jwks_uri: Option<String>,
    /// The provider's own unlink API, for providers without RFC 7009 (Kakao, D11).
    pub unlink_url: Option<String>,
}

/// One provider, as the connection core will configure it.
#[derive(Debug, Clone)]
pub struct OAuthSettings {
    /// Short name for logs and the circuit breaker (`kakao`, `naver`, `example-idp`).
    pub name: String,
    /// Where discovery starts, and the value `iss` must equal exactly. Required with OIDC.
    pub issuer: Option<String>,
    /// Fetch `/.well-known/openid-configuration` (falling back to RFC 8414's
    /// `/.well-known/oauth-authorization-server`) from the issuer.
    pub discovery: bool,
    pub endpoints: Endpoints,
    pub client_id: String,
    /// `None` for a public client.
    pub client_secret: Option<SecretString>,
    pub client_auth: ClientAuth,
    /// Sent byte for byte at authorize and at the token endpoint.
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    /// Separator of `scope` at authorize: `" "` (RFC 6749 §3.3); Kakao's documents show commas
    /// (D7), though its SDK sends spaces [O].
    pub scope_separator: String,
    /// PKCE with S256 (never `plain`). Sent whenever the provider does not say it lacks S256.
    pub pkce: bool,
    /// OpenID Connect: a nonce at authorize, an ID token required from the code exchange and
    /// validated.
    pub oidc: bool,
    /// Accept an ID token without `nonce` (Naver: whether it echoes the nonce is unknown, E10
    /// [U]). A nonce that is present must always match.
    pub nonce_optional: bool,
    /// Send `state` again at the token endpoint (Naver documents it as required, D9 [C doc /
    /// U enforced]).
    pub state_in_token_request: bool,
    pub profile: ProfileKind,
    /// Tolerated clock difference for `exp` and `iat`.
    pub clock_leeway: Duration,
    /// Least time between two JWKS fetches caused by an unknown `kid`.
    pub jwks_refetch_interval: Duration,
}

/// A setting is wrong; `key` names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct SettingsError {
    pub key: &'static str,
    pub problem: String,
}

impl SettingsError {
    pub fn new(key: &'static str, problem: impl Into<String>) -> Self {
        Self { key, problem: problem.into() }
    }
}

impl OAuthSettings {
    /// A provider found by discovery at `issuer`, with the defaults: client_secret_basic, PKCE,
    /// OpenID Connect with scopes `openid`.
    pub fn discovered(name: &str, issuer: &str, client_id: &str, client_secret: Option<SecretString>, redirect_uri: &str) -> Self {
        Self {
            name: name.to_string(),
            issuer: Some(issuer.to_string()),
            discovery: true,
            endpoints: Endpoints::default(),
            client_id: client_id.to_string(),
            client_auth: if client_secret.is_some() { ClientAuth::ClientSecretBasic } else { ClientAuth::None },
            client_secret,
            redirect_uri: redirect_uri.to_string(),
            scopes: vec!["openid".into()],
            scope_separator: " ".into(),
            pkce: true,
            oidc: true,
            nonce_optional: false,
            state_in_token_request: false,
            profile: ProfileKind::Oidc,
            clock_leeway: Duration::from_secs(60),
            jwks_refetch_interval: Duration::from_secs(60),
        }
    }

    /// Kakao Login with OpenID Connect (K3, K4, K6): discovery at `https://kauth.kakao.com`,
    /// `client_secret_post` (the only method it lists, D8), no revocation endpoint (D11: unlink
    /// is a Kakao API, not RFC 7009), the profile from `/v2/user/me` (its `id` is the account id
    /// the non-OIDC flow also knows).
    pub fn kakao(client_id: &str, client_secret: Option<SecretString>, redirect_uri: &str) -> Self {
        let mut s = Self::discovered("kakao", "https://kauth.kakao.com", client_id, client_secret, redirect_uri);
        s.client_auth = if s.client_secret.is_some() { ClientAuth::ClientSecretPost } else { ClientAuth::None };
        s.endpoints.userinfo_url = Some("https://kapi.kakao.com/v2/user/me".into());
        s.endpoints.unlink_url = Some("https://kapi.kakao.com/v1/user/unlink".into());
        s.profile = ProfileKind::Kakao;
        s
    }

    /// Naver Login, OIDC path (N4): discovery at `https://nid.naver.com` (observed [O]),
    /// `client_secret_post`, revocation at `/oauth2.0/revoke` (N6, not in discovery), the profile
    /// from `/v1/nid/me` (the discovered userinfo endpoint is that non-OIDC envelope, D12), the
    /// state repeated at the token endpoint (D9), and a nonce accepted as optional (E10 [U]).
    pub fn naver(client_id: &str, client_secret: SecretString, redirect_uri: &str) -> Self {
        let mut s = Self::discovered("naver", "https://nid.naver.com", client_id, Some(client_secret), redirect_uri);
        s.client_auth = ClientAuth::ClientSecretPost;
        s.endpoints.revocation_url = Some("https://nid.naver.com/oauth2.0/revoke".into());
        s.endpoints.userinfo_url = Some("https://openapi.naver.com/v1/nid/me".into());
        s.scopes = vec!["openid".into(), "profile".into()];
        s.profile = ProfileKind::Naver;
        s.state_in_token_request = true;
        s.nonce_optional = true;
        s
    }

    /// Checks every setting; the first problem found names its key.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.name.is_empty() || !self.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(SettingsError::new("name", "expected a short name of letters, digits, - and _"));
        }
        if let Some(issuer) = &self.issuer {
            let u = endpoint_url("issuer", issuer)?;
            if u.query().is_some() || u.fragment().is_some() {
                return Err(SettingsError::new("issuer", "an issuer has no query or fragment (RFC 8414 §2)"));
            }
        }
        if self.discovery && self.issuer.is_none() {
            return Err(SettingsError::new("issuer", "discovery needs the issuer"));
        }
        if self.oidc && self.issuer.is_none() {
            return Err(SettingsError::new("issuer", "OpenID Connect needs the issuer (ID tokens are checked against it)"));
        }
        let e = &self.endpoints;
        for (key, value) in [
            ("authorize_url", &e.authorize_url),
            ("token_url", &e.token_url),
            ("revocation_url", &e.revocation_url),
            ("userinfo_url", &e.userinfo_url),
            ("jwks_uri", &e.jwks_uri),
            ("unlink_url", &e.unlink_url),
        ] {
            if let Some(v) = value {
                endpoint_url(key, v)?;
            }
        }
        if !self.discovery {
            if e.authorize_url.is_none() {
                return Err(SettingsError::new("authorize_url", "required without discovery"));
            }
            if e.token_url.is_none() {
                return Err(SettingsError::new("token_url", "required without discovery"));
            }
            if self.oidc && e.jwks_uri.is_none() {
                return Err(SettingsError::new("jwks_uri", "required for OpenID Connect without discovery"));
            }
        }
        if self.client_id.is_empty() || self.client_id.chars().any(|c| c.is_control()) {
            return Err(SettingsError::new("client_id", "required, without control characters"));
        }
        match (self.client_auth, &self.client_secret) {
            (ClientAuth::None, Some(_)) => return Err(SettingsError::new("client_secret", "set, but client_auth is none (a public client has no secret)")),
            (ClientAuth::ClientSecretBasic | ClientAuth::ClientSecretPost, None) => {
                return Err(SettingsError::new("client_secret", format!("required with client_auth {}", self.client_auth.as_str())))
            }
            _ => {}
        }
        if self.client_auth == ClientAuth::None && !self.pkce {
            return Err(SettingsError::new("pkce", "a public client (client_auth none) must use PKCE"));
        }
        let redirect = reqwest::Url::parse(&self.redirect_uri).map_err(|_| SettingsError::new("redirect_uri", "expected an absolute URL"))?;
        if redirect.fragment().is_some() {
            return Err(SettingsError::new("redirect_uri", "must not contain a fragment (RFC 6749 §3.1.2)"));
        }
        match redirect.scheme() {
            "https" => {}
            "http" if is_loopback(&redirect) => {}
            _ => return Err(SettingsError::new("redirect_uri", "use https:// (plain http only to 127.0.0.1, [::1] or localhost)")),
        }
        if self.scopes.iter().any(|s| s.is_empty() || s.chars().any(|c| c == ' ' || c == ',' || c == '"' || c == '\\' || c.is_control())) {
            return Err(SettingsError::new("scopes", "a scope is a non-empty token without spaces, commas, quotes or backslashes"));
        }
        if self.oidc && !self.scopes.iter().any(|s| s == "openid") {
            return Err(SettingsError::new("scopes", "OpenID Connect needs the openid scope"));
        }
        if self.scope_separator != " " && self.scope_separator != "," {
            return Err(SettingsError::new("scope_separator", "expected \" \" or \",\""));
        }
        if self.clock_leeway > Duration::from_secs(300) {
            return Err(SettingsError::new("clock_leeway", "at most 300 s"));
        }
        Ok(())
    }

    /// The scopes as sent at authorize.
    pub fn scope_param(&self) -> String {
        self.scopes.join(&self.scope_separator)
    }
}

/// An endpoint URL: `https://`, or plain `http://` only to this machine; no credentials in it.
pub(crate) fn endpoint_url(key: &'static str, value: &str) -> Result<reqwest::Url, SettingsError> {
    let u = reqwest::Url::parse(value).map_err(|_| SettingsError::new(key, format!("expected an https:// URL, got {value:?}")))?;
    if !u.username().is_empty() || u.password().is_some() {
        return Err(SettingsError::new(key, "must not carry credentials"));
    }
    if u.fragment().is_some() {
        return Err(SettingsError::new(key, "must not contain a fragment"));
    }
    match u.scheme() {
        "https" => Ok(u),
        "http" if is_loopback(&u) => Ok(u),
        "http" => Err(SettingsError::new(
            key,
            format!("{value:?} is plain http to another machine: use https:// (plain http is allowed only to 127.0.0.1, [::1] or localhost)"),
        )),
        _ => Err(SettingsError::new(key, format!("expected an https:// URL, got {value:?}"))),
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> OAuthSettings {
        OAuthSettings::discovered("idp", "https://idp.example", "cid", Some(SecretString::from("s")), "https://app.example/cb")
    }

    fn key_of(s: &OAuthSettings) -> &'static str {
        s.validate().expect_err("invalid").key
    }

    #[test]
    fn defaults_and_presets_are_valid() {
        base().validate().unwrap();
        OAuthSettings::kakao("k", Some(SecretString::from("s")), "https://app.example/cb").validate().unwrap();
        OAuthSettings::kakao("k", None, "https://app.example/cb").validate().unwrap();
        OAuthSettings::naver("n", SecretString::from("s"), "https://app.example/cb").validate().unwrap();
        let mut loopback = base();
        loopback.issuer = Some("http://127.0.0.1:4000".into());
        loopback.redirect_uri = "http://localhost:8080/cb".into();
        loopback.validate().unwrap();
    }

    #[test]
    fn errors_name_the_key() {
        let mut s = base();
        s.issuer = Some("http://idp.example".into());
        assert_eq!(key_of(&s), "issuer");
        let mut s = base();
        s.issuer = None;
        assert_eq!(key_of(&s), "issuer");
        let mut s = base();
        s.endpoints.token_url = Some("http://idp.example/token".into());
        assert_eq!(key_of(&s), "token_url");
        let mut s = base();
        s.endpoints.jwks_uri = Some("https://user:pw@idp.example/jwks".into());
        assert_eq!(key_of(&s), "jwks_uri");
        let mut s = base();
        s.discovery = false;
        assert_eq!(key_of(&s), "authorize_url");
        s.endpoints.authorize_url = Some("https://idp.example/a".into());
        assert_eq!(key_of(&s), "token_url");
        s.endpoints.token_url = Some("https://idp.example/t".into());
        assert_eq!(key_of(&s), "jwks_uri");
        s.oidc = false;
        s.scopes = vec!["read".into()];
        s.validate().unwrap();
        let mut s = base();
        s.client_id = String::new();
        assert_eq!(key_of(&s), "client_id");
        let mut s = base();
        s.client_secret = None;
        assert_eq!(key_of(&s), "client_secret");
        let mut s = base();
        s.client_auth = ClientAuth::None;
        assert_eq!(key_of(&s), "client_secret");
        s.client_secret = None;
        s.pkce = false;
        assert_eq!(key_of(&s), "pkce");
        let mut s = base();
        s.redirect_uri = "http://app.example/cb".into();
        assert_eq!(key_of(&s), "redirect_uri");
        s.redirect_uri = "https://app.example/cb#x".into();
        assert_eq!(key_of(&s), "redirect_uri");
        let mut s = base();
        s.scopes = vec!["profile".into()];
        assert_eq!(key_of(&s), "scopes");
        s.scopes = vec!["openid email".into()];
        assert_eq!(key_of(&s), "scopes");
        assert_eq!(ClientAuth::parse("private_key_jwt").unwrap_err().key, "client_auth");
        assert_eq!(ClientAuth::parse("client_secret_post").unwrap(), ClientAuth::ClientSecretPost);
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let s = base();
        let shown = format!("{s:?}");
        assert!(!shown.contains("client_secret: Some(SecretBox { inner: \"s\""), "{shown}");
        assert!(shown.contains("REDACTED"), "{shown}");
    }
}
