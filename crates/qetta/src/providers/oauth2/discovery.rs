//! OpenID Connect Discovery 1.0 §4 / RFC 8414 §3: the provider's metadata, fetched once, its
//! `issuer` equal to the configured one byte for byte, and merged with the configured endpoints
//! (a configured endpoint wins, e.g. Naver's userinfo, D12).

use std::time::Duration;

use serde::Deserialize;

use super::error::OAuthError;
use super::settings::{endpoint_url, ClientAuth, OAuthSettings};
use super::transport::{self, Retry};

/// The part of the metadata the client uses.
#[derive(Debug, Clone, Deserialize)]
pub struct ProviderMetadata {
    pub issuer: String,
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: Option<String>,
    pub userinfo_endpoint: Option<String>,
    pub jwks_uri: Option<String>,
    pub revocation_endpoint: Option<String>,
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
    pub revocation_endpoint_auth_methods_supported: Option<Vec<String>>,
    pub code_challenge_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
    pub id_token_signing_alg_values_supported: Option<Vec<String>>,
    pub response_types_supported: Option<Vec<String>>,
}

/// What the client works with: the settings and the metadata, merged and checked.
#[derive(Debug, Clone)]
pub struct ResolvedProvider {
    pub issuer: Option<String>,
    pub authorize_url: String,
    pub token_url: String,
    pub revocation_url: Option<String>,
    pub userinfo_url: Option<String>,
    pub jwks_uri: Option<String>,
    /// Send PKCE (S256): configured, and the provider does not list methods without S256.
    pub pkce_s256: bool,
    /// RFC 9207: the callback must carry `iss`.
    pub iss_parameter_required: bool,
    /// ID-token algorithms accepted: RS256/ES256, narrowed to what the provider advertises.
    pub id_token_algs: Vec<jsonwebtoken::Algorithm>,
}

/// The algorithms this client verifies.
const SUPPORTED_ALGS: [(&str, jsonwebtoken::Algorithm); 2] = [("RS256", jsonwebtoken::Algorithm::RS256), ("ES256", jsonwebtoken::Algorithm::ES256)];

/// The discovery URLs to try, in order: OIDC Discovery (issuer + `/.well-known/openid-configuration`),
/// then RFC 8414 (`/.well-known/oauth-authorization-server` inserted before the issuer's path).
pub fn well_known_urls(issuer: &str) -> Vec<String> {
    let trimmed = issuer.trim_end_matches('/');
    let mut urls = vec![format!("{trimmed}/.well-known/openid-configuration")];
    if let Ok(u) = reqwest::Url::parse(issuer) {
        let path = u.path().trim_end_matches('/');
        let mut origin = u.clone();
        origin.set_path("");
        let origin = origin.as_str().trim_end_matches('/').to_string();
        urls.push(format!("{origin}/.well-known/oauth-authorization-server{path}"));
    }
    urls
}

/// Fetches the metadata of `issuer` and checks that it names the same issuer.
pub async fn fetch(http: &reqwest::Client, issuer: &str, per_call: Duration) -> Result<ProviderMetadata, OAuthError> {
    let mut last = None;
    for url in well_known_urls(issuer) {
        let answer = transport::send(|| http.get(&url).header("accept", "application/json"), per_call, Retry::Idempotent).await?;
        if answer.status == 404 {
            last = Some(OAuthError::Discovery(format!("{url} answered 404")));
            continue;
        }
        if !(200..300).contains(&answer.status) {
            return Err(OAuthError::Discovery(format!("{url} answered HTTP {}", answer.status)));
        }
        let meta: ProviderMetadata = serde_json::from_slice(&answer.body).map_err(|e| OAuthError::Discovery(format!("{url} is not provider metadata: {e}")))?;
        // OIDC Discovery §4.3, RFC 8414 §3.3: exactly the issuer we asked for, or the document is
        // someone else's (or a mix-up).
        if meta.issuer != issuer {
            return Err(OAuthError::Discovery(format!("the metadata names issuer {:?}, not the configured {issuer:?}", meta.issuer)));
        }
        return Ok(meta);
    }
    Err(last.unwrap_or_else(|| OAuthError::Discovery("no discovery document".into())))
}

/// Merges settings and metadata (absent when discovery is off), checking what the client relies
/// on.
pub fn resolve(settings: &OAuthSettings, meta: Option<&ProviderMetadata>) -> Result<ResolvedProvider, OAuthError> {
    let e = &settings.endpoints;
    let pick = |key: &'static str, configured: &Option<String>, discovered: Option<&String>| -> Result<Option<String>, OAuthError> {
        match configured.as_ref().or(discovered) {
            Some(u) => {
                endpoint_url(key, u).map_err(|err| OAuthError::Discovery(err.to_string()))?;
                Ok(Some(u.clone()))
            }
            None => Ok(None),
        }
    };
    let authorize_url = pick("authorization_endpoint", &e.authorize_url, meta.and_then(|m| m.authorization_endpoint.as_ref()))?
        .ok_or_else(|| OAuthError::Discovery("the metadata has no authorization_endpoint".into()))?;
    let token_url = pick("token_endpoint", &e.token_url, meta.and_then(|m| m.token_endpoint.as_ref()))?
        .ok_or_else(|| OAuthError::Discovery("the metadata has no token_endpoint".into()))?;
    let revocation_url = pick("revocation_endpoint", &e.revocation_url, meta.and_then(|m| m.revocation_endpoint.as_ref()))?;
    let userinfo_url = pick("userinfo_endpoint", &e.userinfo_url, meta.and_then(|m| m.userinfo_endpoint.as_ref()))?;
    let jwks_uri = pick("jwks_uri", &e.jwks_uri, meta.and_then(|m| m.jwks_uri.as_ref()))?;
    if settings.oidc && jwks_uri.is_none() {
        return Err(OAuthError::Discovery("OpenID Connect is on but the provider has no jwks_uri".into()));
    }
    if let Some(methods) = meta.and_then(|m| m.token_endpoint_auth_methods_supported.as_ref()) {
        let ours = settings.client_auth.as_str();
        if !methods.iter().any(|m| m == ours) {
            // A secret sent the way the provider does not take it is a configuration error. A
            // public client is let through with a warning: Kakao lists only client_secret_post
            // yet an app whose client secret is off sends no secret at all (K1 [C]).
            if settings.client_auth != ClientAuth::None {
                return Err(OAuthError::Discovery(format!("the provider does not support client_auth {ours} (it lists {})", methods.join(", "))));
            }
            tracing::warn!(provider = %settings.name, listed = %methods.join(", "), "the provider does not list the none client authentication; sending client_id only");
        }
    }
    if let (Some(types), true) = (meta.and_then(|m| m.response_types_supported.as_ref()), meta.is_some()) {
        if !types.iter().any(|t| t == "code") {
            return Err(OAuthError::Discovery("the provider does not support response_type=code".into()));
        }
    }
    // S256 whenever it is supported; never `plain` (RFC 9700 §2.1.1). A provider that lists
    // methods without S256 gets no PKCE, unless it is a public client, which needs it.
    let lists_s256 = meta.and_then(|m| m.code_challenge_methods_supported.as_ref()).map(|ms| ms.iter().any(|m| m == "S256"));
    let pkce_s256 = settings.pkce && lists_s256 != Some(false);
    if settings.pkce && !pkce_s256 && settings.client_auth == ClientAuth::None {
        return Err(OAuthError::Discovery("the provider does not support PKCE S256, which a public client needs".into()));
    }
    let advertised = meta.and_then(|m| m.id_token_signing_alg_values_supported.as_ref());
    let id_token_algs: Vec<_> = SUPPORTED_ALGS.iter().filter(|(name, _)| advertised.is_none_or(|a| a.iter().any(|x| x == name))).map(|(_, alg)| *alg).collect();
    if settings.oidc && id_token_algs.is_empty() {
        return Err(OAuthError::Discovery(format!(
            "the provider signs ID tokens with {}, none of which this client verifies (RS256, ES256)",
            advertised.map(|a| a.join(", ")).unwrap_or_default()
        )));
    }
    Ok(ResolvedProvider {
        issuer: settings.issuer.clone(),
        authorize_url,
        token_url,
        revocation_url,
        userinfo_url,
        jwks_uri,
        pkce_s256,
        iss_parameter_required: meta.is_some_and(|m| m.authorization_response_iss_parameter_supported),
        id_token_algs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn meta(json: serde_json::Value) -> ProviderMetadata {
        serde_json::from_value(json).unwrap()
    }

    fn settings() -> OAuthSettings {
        OAuthSettings::discovered("idp", "https://idp.example", "cid", Some(SecretString::from("s")), "https://app.example/cb")
    }

    #[test]
    fn well_known_urls_follow_both_specs() {
        assert_eq!(
            well_known_urls("https://idp.example"),
            vec!["https://idp.example/.well-known/openid-configuration", "https://idp.example/.well-known/oauth-authorization-server"]
        );
        assert_eq!(
            well_known_urls("https://idp.example/tenant/a"),
            vec!["https://idp.example/tenant/a/.well-known/openid-configuration", "https://idp.example/.well-known/oauth-authorization-server/tenant/a"]
        );
    }

    #[test]
    fn kakao_discovery_document_resolves() {
        // K6, as documented [C]: no revocation endpoint, no iss parameter, post only.
        let m = meta(serde_json::json!({
            "issuer": "https://kauth.kakao.com",
            "authorization_endpoint": "https://kauth.kakao.com/oauth/authorize",
            "token_endpoint": "https://kauth.kakao.com/oauth/token",
            "userinfo_endpoint": "https://kapi.kakao.com/v1/oidc/userinfo",
            "jwks_uri": "https://kauth.kakao.com/.well-known/jwks.json",
            "token_endpoint_auth_methods_supported": ["client_secret_post"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "request_uri_parameter_supported": false,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
        }));
        let s = OAuthSettings::kakao("k", Some(SecretString::from("s")), "https://app.example/cb");
        let r = resolve(&s, Some(&m)).unwrap();
        assert_eq!(r.userinfo_url.as_deref(), Some("https://kapi.kakao.com/v2/user/me"), "configured wins");
        assert!(r.pkce_s256 && !r.iss_parameter_required && r.revocation_url.is_none());
        assert_eq!(r.id_token_algs, vec![jsonwebtoken::Algorithm::RS256]);
        // An app with the client secret off (a public client): let through.
        let public = OAuthSettings::kakao("k", None, "https://app.example/cb");
        assert!(resolve(&public, Some(&m)).is_ok());
        // The default (basic) is not what Kakao lists: refused, naming the method.
        let err = resolve(&settings_for("https://kauth.kakao.com"), Some(&m)).unwrap_err().to_string();
        assert!(err.contains("client_secret_basic"), "{err}");
    }

    fn settings_for(issuer: &str) -> OAuthSettings {
        let mut s = settings();
        s.issuer = Some(issuer.into());
        s
    }

    #[test]
    fn pkce_is_dropped_only_where_s256_is_not_listed() {
        let base = serde_json::json!({"issuer": "https://idp.example", "authorization_endpoint": "https://idp.example/a", "token_endpoint": "https://idp.example/t", "jwks_uri": "https://idp.example/j"});
        let r = resolve(&settings(), Some(&meta(base.clone()))).unwrap();
        assert!(r.pkce_s256, "not listed at all: send it");
        let mut plain = base.clone();
        plain["code_challenge_methods_supported"] = serde_json::json!(["plain"]);
        assert!(!resolve(&settings(), Some(&meta(plain.clone()))).unwrap().pkce_s256);
        let mut public = settings();
        public.client_secret = None;
        public.client_auth = ClientAuth::None;
        assert!(resolve(&public, Some(&meta(plain))).is_err());
        let mut http = base;
        http["token_endpoint"] = serde_json::json!("http://idp.example/t");
        assert!(resolve(&settings(), Some(&meta(http))).unwrap_err().to_string().contains("token_endpoint"));
    }

    #[test]
    fn hs_only_providers_are_refused_for_oidc() {
        let m = meta(
            serde_json::json!({"issuer": "https://idp.example", "authorization_endpoint": "https://idp.example/a", "token_endpoint": "https://idp.example/t", "jwks_uri": "https://idp.example/j", "id_token_signing_alg_values_supported": ["HS256", "none"]}),
        );
        assert!(resolve(&settings(), Some(&m)).is_err());
    }
}
