//! The client of one OAuth 2.0 / OpenID Connect provider: authorize URL, callback checks, code
//! exchange, refresh, revocation, ID token and user info.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::discovery::{self, ResolvedProvider};
use super::error::{clip, OAuthError};
use super::id_token::{self, Expectations, IdTokenClaims};
use super::jwks::JwksCache;
use super::pkce;
use super::settings::{ClientAuth, OAuthSettings, SettingsError};
use super::token::{self, TokenResponse};
use super::transport::{self, Retry};
use super::userinfo::{self, UserInfo};
use crate::providers::upstream::{BreakerPolicy, CircuitBreaker, Permit};
use crate::tokens::{Grant, RefreshError, Refresher};

/// Authorize parameters the client sets itself; extra parameters may not override them.
const RESERVED: [&str; 9] =
    ["response_type", "client_id", "redirect_uri", "scope", "state", "nonce", "code_challenge", "code_challenge_method", "response_mode"];

/// A started authorization: send the browser to `url`, and store `pending` under
/// `pending.state` (single use, short-lived, bound to the user's browser) until the callback.
pub struct AuthorizationRequest {
    pub url: String,
    pub pending: PendingAuthorization,
}

/// What the caller keeps with the state until the callback. Secret parts are `SecretString`;
/// seal them like tokens when they are stored.
#[derive(Clone, Debug)]
pub struct PendingAuthorization {
    pub state: String,
    /// PKCE code verifier, when PKCE is used.
    pub code_verifier: Option<SecretString>,
    /// OIDC nonce, when OpenID Connect is on.
    pub nonce: Option<String>,
}

/// The query (or form_post body) the provider sent the browser back with.
#[derive(Deserialize, Default, Debug)]
pub struct CallbackParams {
    pub code: Option<SecretString>,
    pub state: Option<String>,
    /// RFC 9207.
    pub iss: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// What a code exchange or a refresh produced.
pub struct TokenSet {
    pub grant: Grant,
    /// The raw ID token (e.g. as `id_token_hint` at logout).
    pub id_token: Option<SecretString>,
    /// Its validated claims (`sub` is the provider account id).
    pub claims: Option<IdTokenClaims>,
    /// The provider sent a new refresh token (the old one is to be replaced); when false on a
    /// refresh, `grant.refresh_token` is the old one, still valid (D6).
    pub refresh_rotated: bool,
}

/// Which token a revocation names (RFC 7009 §2.1 `token_type_hint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenHint {
    AccessToken,
    RefreshToken,
}

/// The outcome of a revocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// The provider answered 200: the token is dead (or was unknown, which is the same).
    Revoked,
    /// The provider has no revocation endpoint (Kakao, D11): nothing was sent.
    NotSupported,
}

struct Resolved {
    provider: ResolvedProvider,
    jwks: Option<JwksCache>,
}

pub struct OAuthClient {
    settings: OAuthSettings,
    http: reqwest::Client,
    call_timeout: Duration,
    breaker: CircuitBreaker,
    resolved: tokio::sync::OnceCell<Resolved>,
}

impl OAuthClient {
    /// A client for one provider; the settings are validated here. `http` is
    /// `providers::upstream::http_client` (no redirects, rustls); `call_timeout` is the time-out of
    /// one attempt (the request's deadline may cut it).
    pub fn new(settings: OAuthSettings, http: reqwest::Client, call_timeout: Duration, breaker: BreakerPolicy) -> Result<Self, SettingsError> {
        settings.validate()?;
        // The breaker names its provider for logs with a 'static str; clients are built once per
        // configured provider at start-up, so the name is leaked once per client.
        let name: &'static str = Box::leak(settings.name.clone().into_boxed_str());
        Ok(Self { settings, http, call_timeout, breaker: CircuitBreaker::new(name, breaker), resolved: tokio::sync::OnceCell::new() })
    }

    pub fn settings(&self) -> &OAuthSettings {
        &self.settings
    }

    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// The provider's endpoints and capabilities: discovered on first use and cached (a failed
    /// discovery is not cached; the next call tries again).
    pub async fn provider(&self) -> Result<&ResolvedProvider, OAuthError> {
        Ok(&self.resolved().await?.provider)
    }

    async fn resolved(&self) -> Result<&Resolved, OAuthError> {
        self.resolved
            .get_or_try_init(|| async {
                let meta = match (&self.settings.issuer, self.settings.discovery) {
                    (Some(issuer), true) => Some(discovery::fetch(&self.http, issuer, self.call_timeout).await?),
                    _ => None,
                };
                let provider = discovery::resolve(&self.settings, meta.as_ref())?;
                let jwks = provider
                    .jwks_uri
                    .clone()
                    .filter(|_| self.settings.oidc)
                    .map(|uri| JwksCache::new(self.http.clone(), uri, self.call_timeout, self.settings.jwks_refetch_interval));
                Ok(Resolved { provider, jwks })
            })
            .await
    }

    /// How many times the JWKS was fetched (0 before the first ID token).
    pub async fn jwks_fetch_count(&self) -> u64 {
        match self.resolved.get().and_then(|r| r.jwks.as_ref()) {
            Some(j) => j.fetch_count().await,
            None => 0,
        }
    }

    /// The authorize URL: `response_type=code`, the exact redirect URI, the scopes, a fresh
    /// state, PKCE S256 whenever the provider supports it, a nonce with OIDC. `extra` adds
    /// provider parameters (`prompt`, `login_hint`, Naver's `auth_type`), never the ones above.
    pub async fn authorize(&self, extra: &[(&str, &str)]) -> Result<AuthorizationRequest, OAuthError> {
        self.authorize_with_scopes(None, extra).await
    }

    /// [`Self::authorize`] asking for `scopes` instead of the configured ones (with OpenID
    /// Connect, `openid` is always asked for).
    pub async fn authorize_with_scopes(&self, scopes: Option<&[String]>, extra: &[(&str, &str)]) -> Result<AuthorizationRequest, OAuthError> {
        if let Some((k, _)) = extra.iter().find(|(k, _)| RESERVED.contains(k)) {
            return Err(SettingsError::new("authorize_params", format!("{k} is set by the client")).into());
        }
        let p = self.provider().await?;
        let state = pkce::new_state();
        let code_verifier = p.pkce_s256.then(pkce::new_verifier);
        let nonce = self.settings.oidc.then(pkce::new_nonce);
        let mut url = reqwest::Url::parse(&p.authorize_url).map_err(|_| OAuthError::Discovery("authorization_endpoint is not a URL".into()))?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code");
            q.append_pair("client_id", &self.settings.client_id);
            q.append_pair("redirect_uri", &self.settings.redirect_uri);
            let scope = match scopes {
                Some(asked) => {
                    let mut list: Vec<&str> = asked.iter().map(String::as_str).collect();
                    if self.settings.oidc && !list.contains(&"openid") {
                        list.insert(0, "openid");
                    }
                    list.join(&self.settings.scope_separator)
                }
                None => self.settings.scope_param(),
            };
            if !scope.is_empty() {
                q.append_pair("scope", &scope);
            }
            q.append_pair("state", &state);
            if let Some(v) = &code_verifier {
                q.append_pair("code_challenge", &pkce::challenge_s256(v));
                q.append_pair("code_challenge_method", "S256");
            }
            if let Some(n) = &nonce {
                q.append_pair("nonce", n);
            }
            for (k, v) in extra {
                q.append_pair(k, v);
            }
        }
        Ok(AuthorizationRequest { url: url.into(), pending: PendingAuthorization { state, code_verifier, nonce } })
    }

    /// Checks the callback against the stored flow and returns the code: the state (the
    /// caller found `pending` by it; compared again here), the issuer (RFC 9207: a present `iss`
    /// must be ours, and it must be present when the provider advertises it), then the
    /// provider's `error`.
    pub async fn callback(&self, params: &CallbackParams, pending: &PendingAuthorization) -> Result<SecretString, OAuthError> {
        let state_ok = params.state.as_deref().is_some_and(|s| bool::from(s.as_bytes().ct_eq(pending.state.as_bytes())));
        if !state_ok {
            return Err(OAuthError::StateMismatch);
        }
        let p = self.provider().await?;
        match (&params.iss, &p.issuer) {
            (Some(got), Some(issuer)) if got != issuer => return Err(OAuthError::IssuerMismatch),
            (None, Some(_)) if p.iss_parameter_required => return Err(OAuthError::MissingIssuer),
            _ => {}
        }
        if let Some(error) = params.error.as_deref().filter(|e| !e.is_empty()) {
            return Err(OAuthError::Authorization { error: clip(error), description: params.error_description.as_deref().map(clip) });
        }
        params.code.clone().filter(|c| !c.expose_secret().is_empty()).ok_or(OAuthError::MissingCode)
    }

    /// `grant_type=authorization_code` with the PKCE verifier (and, with OIDC, the ID token
    /// validated against the stored nonce). Never retried once the request may have reached the
    /// provider: the code is single use.
    pub async fn exchange_code(&self, code: &SecretString, pending: &PendingAuthorization) -> Result<TokenSet, OAuthError> {
        let mut form: Vec<(&str, String)> =
            vec![("grant_type", "authorization_code".into()), ("code", code.expose_secret().to_string()), ("redirect_uri", self.settings.redirect_uri.clone())];
        if let Some(v) = &pending.code_verifier {
            form.push(("code_verifier", v.expose_secret().to_string()));
        }
        if self.settings.state_in_token_request {
            form.push(("state", pending.state.clone()));
        }
        let t = self.token_call(form).await?;
        let requested = self.settings.scopes.join(" ");
        let (id_token, claims) = match (&t.id_token, self.settings.oidc) {
            (Some(raw), true) => {
                let claims = self.validate_id_token(raw.expose_secret(), pending.nonce.as_deref()).await?;
                id_token::check_at_hash(&claims, t.access_token.expose_secret())?;
                (Some(raw.clone()), Some(claims))
            }
            (None, true) => return Err(OAuthError::Decode("OpenID Connect is on but the token response has no id_token".into())),
            // Without OIDC an ID token is not validated, so it is not handed on either.
            (_, false) => (None, None),
        };
        let refresh_rotated = t.refresh_token.is_some();
        Ok(TokenSet { grant: grant(t, &requested, None), id_token, claims, refresh_rotated })
    }

    /// `grant_type=refresh_token`. A response without a refresh token keeps the old one (D6);
    /// without `scope`, the scope is `scope` (what was granted before, RFC 6749 §5.1). An ID
    /// token in the answer is validated (no nonce, OIDC Core §12.2); one that fails is logged and
    /// dropped, not the grant: the provider may already have rotated the refresh token, and
    /// the access token is what the refresh is for.
    pub async fn refresh(&self, refresh_token: &SecretString, scope: &str) -> Result<TokenSet, OAuthError> {
        let form: Vec<(&str, String)> = vec![("grant_type", "refresh_token".into()), ("refresh_token", refresh_token.expose_secret().to_string())];
        let t = self.token_call(form).await?;
        let mut claims = None;
        let mut id_token = None;
        if let (Some(raw), true) = (&t.id_token, self.settings.oidc) {
            let checked = match self.validate_id_token(raw.expose_secret(), None).await {
                Ok(c) => id_token::check_at_hash(&c, t.access_token.expose_secret()).map(|_| c).map_err(OAuthError::from),
                Err(e) => Err(e),
            };
            match checked {
                Ok(c) => {
                    claims = Some(c);
                    id_token = Some(raw.clone());
                }
                Err(e) => tracing::warn!(provider = %self.settings.name, error = %e, "the ID token of a refresh response is invalid; ignored"),
            }
        }
        let refresh_rotated = t.refresh_token.is_some();
        Ok(TokenSet { grant: grant(t, scope, Some(refresh_token)), id_token, claims, refresh_rotated })
    }

    /// RFC 7009 revocation of a refresh or access token, with the client's authentication.
    /// 200 is success whatever the body (Naver answers an empty one, N6); 503 and other 5xx are
    /// transient.
    pub async fn revoke(&self, token: &SecretString, hint: TokenHint) -> Result<Revocation, OAuthError> {
        let p = self.provider().await?;
        let Some(url) = p.revocation_url.clone() else {
            return Ok(Revocation::NotSupported);
        };
        let hint = match hint {
            TokenHint::AccessToken => "access_token",
            TokenHint::RefreshToken => "refresh_token",
        };
        let form: Vec<(&str, String)> = vec![("token", token.expose_secret().to_string()), ("token_type_hint", hint.into())];
        let permit = self.gate()?;
        let result = async {
            let answer = self.post_form(&url, form).await?;
            if answer.status == 200 {
                return Ok(Revocation::Revoked);
            }
            let json: Option<serde_json::Value> = serde_json::from_slice(&answer.body).ok();
            Err(json.as_ref().and_then(|j| token::error_in(answer.status, j)).unwrap_or(OAuthError::Http { status: answer.status }))
        }
        .await;
        record(permit, &result);
        result
    }

    /// The provider's own unlink (Kakao `POST /v1/user/unlink` with the user's access token, K5,
    /// D11: it revokes the consent and every token). `NotSupported` without an unlink endpoint.
    pub async fn unlink(&self, access_token: &SecretString) -> Result<Revocation, OAuthError> {
        let Some(url) = self.settings.endpoints.unlink_url.clone() else {
            return Ok(Revocation::NotSupported);
        };
        let permit = self.gate()?;
        let result = async {
            let answer = transport::send(|| self.http.post(&url).bearer_auth(access_token.expose_secret()), self.call_timeout, Retry::Idempotent).await?;
            match answer.status {
                200 => Ok(Revocation::Revoked),
                401 => Err(OAuthError::InvalidToken { provider_code: None }),
                status => Err(OAuthError::Http { status }),
            }
        }
        .await;
        record(permit, &result);
        result
    }

    /// The provider account behind `access_token`: OIDC UserInfo, or Kakao's / Naver's profile
    /// API (per `settings.profile`). With OIDC, pass the ID token's `sub`: the UserInfo `sub` must
    /// equal it (OIDC Core §5.3.4).
    pub async fn user_info(&self, access_token: &SecretString, id_token_sub: Option<&str>) -> Result<UserInfo, OAuthError> {
        let p = self.provider().await?;
        let url = p.userinfo_url.clone().ok_or(OAuthError::NoEndpoint("userinfo"))?;
        let permit = self.gate()?;
        let result = async {
            let answer = transport::send(
                || self.http.get(&url).header("accept", "application/json").bearer_auth(access_token.expose_secret()),
                self.call_timeout,
                Retry::Idempotent,
            )
            .await?;
            userinfo::parse(self.settings.profile, answer.status, &answer.body)
        }
        .await;
        record(permit, &result);
        let info = result?;
        if let Some(sub) = id_token_sub {
            if info.subject != sub {
                return Err(OAuthError::Decode("the userinfo sub is not the ID token's sub".into()));
            }
        }
        Ok(info)
    }

    /// Validates an ID token of this provider for this client; `nonce` is the stored one
    /// (`None` after a refresh).
    pub async fn validate_id_token(&self, id_token: &str, nonce: Option<&str>) -> Result<IdTokenClaims, OAuthError> {
        let r = self.resolved().await?;
        let jwks = r.jwks.as_ref().ok_or(OAuthError::NoEndpoint("jwks"))?;
        let issuer = r.provider.issuer.as_deref().ok_or_else(|| SettingsError::new("issuer", "required to validate ID tokens"))?;
        let expect = Expectations {
            issuer,
            client_id: &self.settings.client_id,
            nonce,
            nonce_optional: self.settings.nonce_optional,
            leeway: self.settings.clock_leeway,
            algorithms: &r.provider.id_token_algs,
        };
        Ok(id_token::validate(id_token, jwks, &expect).await?)
    }

    fn gate(&self) -> Result<Permit<'_>, OAuthError> {
        self.breaker.check().map_err(|d| OAuthError::CircuitOpen { retry_after_secs: d.as_secs_f64().ceil().max(1.0) as u64 })
    }

    /// POSTs a form to `url` with the client's authentication; retried on connect failures
    /// only.
    async fn post_form(&self, url: &str, mut form: Vec<(&str, String)>) -> Result<transport::Answer, OAuthError> {
        let mut basic = None;
        match (self.settings.client_auth, &self.settings.client_secret) {
            (ClientAuth::ClientSecretBasic, Some(secret)) => {
                // RFC 6749 §2.3.1: id and secret form-urlencoded before Basic encoding.
                let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                let credentials = SecretString::from(format!("{}:{}", enc(&self.settings.client_id), enc(secret.expose_secret())));
                let mut value = reqwest::header::HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(credentials.expose_secret())))
                    .map_err(|_| OAuthError::Decode("the client credentials do not fit a header".into()))?;
                // Kept out of any Debug output of the request.
                value.set_sensitive(true);
                basic = Some(value);
            }
            (ClientAuth::ClientSecretPost, Some(secret)) => {
                form.push(("client_id", self.settings.client_id.clone()));
                form.push(("client_secret", secret.expose_secret().to_string()));
            }
            _ => form.push(("client_id", self.settings.client_id.clone())),
        }
        let body = serde_urlencoded::to_string(&form).map_err(|e| OAuthError::Decode(format!("form: {e}")))?;
        let body = SecretString::from(body);
        transport::send(
            || {
                let mut req = self
                    .http
                    .post(url)
                    .header("content-type", "application/x-www-form-urlencoded;charset=UTF-8")
                    .header("accept", "application/json")
                    .body(body.expose_secret().to_string());
                if let Some(b) = &basic {
                    req = req.header(reqwest::header::AUTHORIZATION, b.clone());
                }
                req
            },
            self.call_timeout,
            Retry::ConnectOnly,
        )
        .await
    }

    async fn token_call(&self, form: Vec<(&str, String)>) -> Result<TokenResponse, OAuthError> {
        let url = self.provider().await?.token_url.clone();
        let permit = self.gate()?;
        let result = async {
            let answer = self.post_form(&url, form).await?;
            token::parse(answer.status, &answer.body)
        }
        .await;
        record(permit, &result);
        result
    }
}

fn record<T>(permit: Permit<'_>, r: &Result<T, OAuthError>) {
    permit.record(matches!(r, Err(e) if e.is_upstream_failure()));
}

/// The token manager's grant: scope as granted (else `fallback_scope`), the old refresh token
/// when no new one came (D6; its stored lifetime stays as it was).
fn grant(t: TokenResponse, fallback_scope: &str, old_refresh: Option<&SecretString>) -> Grant {
    let rotated = t.refresh_token.is_some();
    Grant {
        access_token: t.access_token,
        refresh_token: t.refresh_token.or_else(|| old_refresh.cloned()),
        token_type: t.token_type,
        scope: t.scope.unwrap_or_else(|| token::normalise_scope(fallback_scope)),
        expires_in: t.expires_in,
        refresh_expires_in: if rotated { t.refresh_expires_in } else { None },
    }
}

/// The token manager refreshes generic providers through this.
pub struct OAuthRefresher(pub Arc<OAuthClient>);

#[async_trait::async_trait]
impl Refresher for OAuthRefresher {
    async fn refresh(&self, refresh_token: &SecretString, scope: &str) -> Result<Grant, RefreshError> {
        self.0.refresh(refresh_token, scope).await.map(|t| t.grant).map_err(refresh_error)
    }
}

/// `invalid_grant` = the grant is dead (consent again); a time-out is a time-out; everything
/// else keeps the tokens for a later try.
pub fn refresh_error(e: OAuthError) -> RefreshError {
    match e {
        OAuthError::InvalidGrant { provider_code, .. } => RefreshError::GrantDead { provider_code: provider_code.unwrap_or_else(|| "invalid_grant".into()) },
        OAuthError::Timeout => RefreshError::Timeout,
        other => RefreshError::Transient { provider_code: other.provider_code(), message: other.to_string() },
    }
}
