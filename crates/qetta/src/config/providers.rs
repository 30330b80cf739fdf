//! The OAuth 2.0 / OpenID Connect providers of the catalogue besides KFTC and Toss: Kakao and
//! Naver from `KAKAO_*` / `NAVER_*`, and any number of others from a TOML file
//! (`QETTA_PROVIDERS_FILE`, default `./providers.toml` when present):
//!
//! ```toml
//! [providers.acme]
//! display_name = "Acme"
//! issuer = "https://id.acme.example"      # OIDC / RFC 8414 discovery; or give the endpoints
//! # authorize_url, token_url, revocation_url, userinfo_url, jwks_uri = "..."
//! api_base = "https://api.acme.example"   # what the proxy may call
//! client_id = "..."
//! client_secret_file = "/run/secrets/acme" # or client_secret
//! client_auth = "client_secret_basic"     # or client_secret_post, none
//! scopes = ["openid", "profile", "offline_access"]
//! pkce = true                              # default; S256 only
//! ```
//!
//! A bad entry stops the start with a message naming the provider and the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Deserialize;

use super::{base_url_value, ConfigError, Sources};
use crate::providers::oauth2::{ClientAuth, OAuthSettings};

/// Names that are built in (and the ones the service's own routes use).
pub const BUILT_IN: [&str; 4] = ["kftc", "toss", "kakao", "naver"];

/// One configured OAuth 2.0 / OIDC provider, before the service resolves its redirect URI.
#[derive(Clone, Debug)]
pub struct OAuthProviderConfig {
    pub display_name: String,
    /// The client settings; `redirect_uri` is empty when the default
    /// `{QETTA_PUBLIC_URL}/api/v1/oauth/{name}/callback` applies.
    pub settings: OAuthSettings,
    /// What the proxy may call.
    pub api_base: Option<String>,
    /// Where the setting came from, for messages (`KAKAO_CLIENT_ID`, `providers.toml`).
    pub source: String,
}

/// Kakao, Naver and the TOML providers that are configured.
#[derive(Clone, Debug, Default)]
pub struct ProvidersConfig {
    pub kakao: Option<OAuthProviderConfig>,
    pub naver: Option<OAuthProviderConfig>,
    /// In the file's order (by name).
    pub custom: Vec<(String, OAuthProviderConfig)>,
}

impl ProvidersConfig {
    pub fn any(&self) -> bool {
        self.kakao.is_some() || self.naver.is_some() || !self.custom.is_empty()
    }
}

/// One `[providers.NAME]` table; unknown keys are refused (a typo is never ignored).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    display_name: Option<String>,
    issuer: Option<String>,
    /// `false`: use the endpoints given, even with an issuer (default: discover when an issuer is given).
    discovery: Option<bool>,
    authorize_url: Option<String>,
    token_url: Option<String>,
    revocation_url: Option<String>,
    userinfo_url: Option<String>,
    jwks_uri: Option<String>,
    api_base: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    client_secret_file: Option<PathBuf>,
    client_auth: Option<String>,
    scopes: Option<Vec<String>>,
    pkce: Option<bool>,
    /// Default: on when `scopes` holds `openid`.
    oidc: Option<bool>,
    redirect_uri: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    providers: BTreeMap<String, Entry>,
}

/// Reads Kakao, Naver and the providers file.
pub fn from_sources(src: &Sources) -> Result<ProvidersConfig, ConfigError> {
    let kakao = match src.get("KAKAO_CLIENT_ID") {
        Some(id) => {
            // The client secret is optional at Kakao (an app may turn it off, K2).
            let mut s = OAuthSettings::kakao(&id, src.get("KAKAO_CLIENT_SECRET").map(SecretString::from), "");
            s.redirect_uri = src.get("KAKAO_REDIRECT_URI").unwrap_or_default();
            Some(OAuthProviderConfig {
                display_name: "Kakao".into(),
                settings: s,
                api_base: Some("https://kapi.kakao.com".into()),
                source: "KAKAO_CLIENT_ID".into(),
            })
        }
        None if src.get("KAKAO_CLIENT_SECRET").is_some() => {
            return Err(ConfigError::invalid("KAKAO_CLIENT_ID", "is needed with KAKAO_CLIENT_SECRET (the app's REST API key)"))
        }
        None => None,
    };
    let naver = match (src.get("NAVER_CLIENT_ID"), src.get("NAVER_CLIENT_SECRET")) {
        (Some(id), Some(secret)) => {
            let mut s = OAuthSettings::naver(&id, SecretString::from(secret), "");
            s.redirect_uri = src.get("NAVER_REDIRECT_URI").unwrap_or_default();
            Some(OAuthProviderConfig {
                display_name: "Naver".into(),
                settings: s,
                api_base: Some("https://openapi.naver.com".into()),
                source: "NAVER_CLIENT_ID".into(),
            })
        }
        (None, None) => None,
        (Some(_), None) => return Err(ConfigError::invalid("NAVER_CLIENT_SECRET", "is needed with NAVER_CLIENT_ID (Naver always uses a client secret)")),
        (None, Some(_)) => return Err(ConfigError::invalid("NAVER_CLIENT_ID", "is needed with NAVER_CLIENT_SECRET")),
    };
    for (var, settings) in [("KAKAO_REDIRECT_URI", &kakao), ("NAVER_REDIRECT_URI", &naver)] {
        if let Some(c) = settings {
            if !c.settings.redirect_uri.is_empty() {
                check_url(var, &c.settings.redirect_uri)?;
            }
        }
    }
    let path = match src.get("QETTA_PROVIDERS_FILE") {
        Some(p) => Some(PathBuf::from(p)),
        None => Some(PathBuf::from("providers.toml")).filter(|p| p.is_file()),
    };
    let custom = match path {
        Some(p) => read_file(&p)?,
        None => Vec::new(),
    };
    Ok(ProvidersConfig { kakao, naver, custom })
}

fn check_url(var: &'static str, url: &str) -> Result<(), ConfigError> {
    let u = reqwest::Url::parse(url).map_err(|_| ConfigError::invalid(var, format!("expected a URL, got {url:?}")))?;
    if !matches!(u.scheme(), "https" | "http") || u.fragment().is_some() {
        return Err(ConfigError::invalid(var, "expected an http(s) URL without a fragment"));
    }
    Ok(())
}

fn read_file(path: &Path) -> Result<Vec<(String, OAuthProviderConfig)>, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::invalid("QETTA_PROVIDERS_FILE", format!("cannot read {shown}: {e}")))?;
    let file: File =
        toml::from_str(&text).map_err(|e| ConfigError::invalid("QETTA_PROVIDERS_FILE", format!("{shown} is not a valid providers file: {}", e.message())))?;
    let mut out = Vec::new();
    for (name, entry) in file.providers {
        let bad = |key: &str, problem: String| ConfigError::invalid("QETTA_PROVIDERS_FILE", format!("{shown}: [providers.{name}] {key}: {problem}"));
        if BUILT_IN.contains(&name.as_str()) {
            return Err(bad("name", format!("{name} is built in; configure it with its own variables (KAKAO_CLIENT_ID, NAVER_CLIENT_ID…)")));
        }
        if name.is_empty() || name.len() > 32 || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_') {
            return Err(bad("name", "expected 1-32 lower-case letters, digits, - and _ (it appears in URLs)".into()));
        }
        let client_id = entry.client_id.filter(|c| !c.trim().is_empty()).ok_or_else(|| bad("client_id", "missing".into()))?;
        let client_secret = match (entry.client_secret, entry.client_secret_file) {
            (Some(_), Some(_)) => return Err(bad("client_secret_file", "set either it or client_secret, not both".into())),
            (Some(s), None) => Some(s),
            (None, Some(file)) => {
                let s = std::fs::read_to_string(&file).map_err(|e| bad("client_secret_file", format!("cannot read {}: {e}", file.display())))?;
                Some(s.trim_end_matches(['\n', '\r']).to_string())
            }
            (None, None) => None,
        }
        .filter(|s| !s.is_empty())
        .map(SecretString::from);
        let scopes = entry.scopes.unwrap_or_else(|| vec!["openid".into()]);
        if let Some(s) = scopes.iter().find(|s| s.is_empty() || s.chars().any(|c| c.is_whitespace() || c == '"' || c == '\\')) {
            return Err(bad("scopes", format!("{s:?} is not a scope token (RFC 6749 §3.3)")));
        }
        let oidc = entry.oidc.unwrap_or_else(|| scopes.iter().any(|s| s == "openid"));
        let mut s = match &entry.issuer {
            Some(issuer) => OAuthSettings::discovered(&name, issuer, &client_id, client_secret.clone(), ""),
            None => {
                let mut s = OAuthSettings::discovered(&name, "https://unused.invalid", &client_id, client_secret.clone(), "");
                s.issuer = None;
                s.discovery = false;
                s
            }
        };
        s.discovery = entry.issuer.is_some() && entry.discovery.unwrap_or(true);
        s.oidc = oidc;
        s.scopes = scopes;
        s.pkce = entry.pkce.unwrap_or(true);
        if let Some(a) = &entry.client_auth {
            s.client_auth = ClientAuth::parse(a).map_err(|e| bad("client_auth", e.problem))?;
        }
        if s.client_auth != ClientAuth::None && client_secret.is_none() {
            return Err(bad(
                "client_secret",
                format!("is needed with client_auth = {:?} (or set client_auth = \"none\" for a public client)", s.client_auth.as_str()),
            ));
        }
        s.endpoints.authorize_url = entry.authorize_url;
        s.endpoints.token_url = entry.token_url;
        s.endpoints.revocation_url = entry.revocation_url;
        s.endpoints.userinfo_url = entry.userinfo_url;
        s.endpoints.jwks_uri = entry.jwks_uri;
        s.redirect_uri = entry.redirect_uri.unwrap_or_default();
        // Checked here with a dummy redirect URI (the real one is known at start): every other
        // key is validated by the client's own rules, which name the key.
        let mut check = s.clone();
        if check.redirect_uri.is_empty() {
            check.redirect_uri = format!("https://qetta.invalid/api/v1/oauth/{name}/callback");
        }
        check.validate().map_err(|e| bad(e.key, e.problem))?;
        let api_base = match entry.api_base {
            Some(b) => Some(base_url_value(&b).map_err(|problem| bad("api_base", problem))?),
            None => None,
        };
        let display_name = entry.display_name.filter(|d| !d.trim().is_empty()).unwrap_or_else(|| name.clone());
        out.push((name.clone(), OAuthProviderConfig { display_name, settings: s, api_base, source: shown.clone() }));
    }
    Ok(out)
}
