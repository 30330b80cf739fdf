//! The provider-neutral part of connecting a provider account in the user's browser (OAuth
//! authorization code with user consent): the single-use state, the launch link, the launch
//! confirmation, and the callback's state and browser checks. KFTC is its first user
//! ([`crate::http::kftc::FLOW`]); every provider with a consent page uses the same [`Flow`].
//!
//! # The flow
//!
//! 1. **start** (the provider's `authorize` route, JWT): stores a single-use state for the user
//!    and answers a launch URL on this service, `{base_path}/launch?state=…`. It also sets the
//!    **initiator cookie** `qetta_{provider}_init` (HttpOnly, SameSite=Lax, Path=`base_path`, as
//!    long as the state lives) holding a random secret whose SHA-256 is stored with the state.
//!    The `/oauth` page calls `authorize` with `fetch` from the same origin, so its browser gets
//!    the cookie; a call from the app's backend leaves the cookie with the backend.
//! 2. **launch** (`GET {base_path}/launch`, no authentication):
//!    * the browser holds the initiator cookie of this state: it is bound to the state (the
//!      **binding cookie** `qetta_{provider}_bind`, once per state) and sent on (303) to the
//!      provider's consent page, as before;
//!    * any other browser gets a **confirmation page** (200) naming the Qetta account being
//!      connected (masked email, or masked user id for users minted by the app's backend) with
//!      a form to continue or cancel. Nothing is bound yet. The page sets the **CSRF cookie**
//!      `qetta_{provider}_csrf` (HttpOnly, SameSite=Strict) and carries
//!      `HMAC-SHA256(cookie secret, provider ‖ state)` in the form.
//! 3. **confirm** (`POST {base_path}/launch`, form `state`, `csrf_token`, `action`): refused when
//!    `Sec-Fetch-Site` or `Origin` (when sent) name another site, when the CSRF token does not
//!    match this browser's CSRF cookie, or when the state is unknown, expired, used or bound.
//!    `action=confirm` binds this browser and redirects (303) to the consent page;
//!    `action=cancel` spends the state.
//! 4. **callback**: [`Flow::take_callback_state`] consumes the state once and checks the binding
//!    cookie before the provider's code is looked at.
//!
//! # Why
//!
//! The launch link needs no authentication (it opens in a popup or an external browser), so
//! without step 2's confirmation anyone could start a flow for *their own* Qetta account and send
//! the link to a victim: the victim would consent at their bank and their accounts would be
//! linked to the attacker's account ("forced account linking"). A browser that did not start the
//! flow from a signed-in Qetta session now always sees whose account it is connecting and must
//! confirm on our own page; a cross-site form cannot confirm for it (Strict cookie, token bound to
//! that cookie and the state, `Origin`/`Sec-Fetch-Site` checks).

use axum::extract::rejection::FormRejection;
use axum::extract::Form;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::app::AppState;
use crate::auth::password::normalize_email;
use crate::error::ApiError;
use crate::mask::{mask_email, mask_user_id};
use crate::shared_state::Consumed;
use crate::store::oauth_states::OAuthState;
use crate::store::{audit, users};

/// One provider's browser connect flow.
pub struct Flow {
    /// `kftc`, `kakao`, …: names the cookies and the audit entries; states of other providers
    /// are refused.
    pub provider: String,
    /// Where the provider's flow routes live (`/api/v1/oauth/kftc`): `launch` and `callback` are
    /// under it, and every cookie of the flow is scoped to it.
    pub base_path: String,
    /// The provider as the confirmation page names it.
    pub name_en: String,
    pub name_ko: String,
    pub state_ttl_secs: i64,
}

/// How long a flow may take from `authorize` to the callback.
pub const STATE_TTL_SECS: i64 = 600;

/// Why a step of the flow refused. The status and code come from `ApiError`
/// (`impl From<FlowError> for ApiError`); the codes are stable.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum FlowError {
    #[error("The provider did not return the security code of this sign-in. Start again from the Qetta page.")]
    StateMissing,
    #[error("This link is not valid. Start again from the Qetta page.")]
    StateInvalid,
    #[error("This link is not known. Start again from the Qetta page.")]
    StateUnknown,
    #[error("This connection attempt has expired. Start again from the Qetta page.")]
    StateExpired,
    #[error("This link was already used. Start again from the Qetta page.")]
    StateAlreadyUsed,
    #[error("This sign-in was already completed or used. Start again from the Qetta page.")]
    StateReplayed,
    #[error("This sign-in was started in another browser. Start again here.")]
    BrowserMismatch,
    #[error("The confirmation did not come from this service's own page. Open the link again.")]
    CrossSite,
    #[error("The confirmation form is not valid in this browser. Open the link again.")]
    CsrfInvalid,
    #[error("Choose to continue or to cancel.")]
    ActionInvalid,
}

impl FlowError {
    pub fn code(self) -> &'static str {
        match self {
            Self::StateMissing => "state_missing",
            Self::StateInvalid => "state_invalid",
            Self::StateUnknown => "state_unknown",
            Self::StateExpired => "state_expired",
            Self::StateAlreadyUsed => "state_already_used",
            Self::StateReplayed => "state_replayed",
            Self::BrowserMismatch => "state_browser_mismatch",
            Self::CrossSite => "cross_site_refused",
            Self::CsrfInvalid => "csrf_invalid",
            Self::ActionInvalid => "action_invalid",
        }
    }

    pub fn message_ko(self) -> &'static str {
        match self {
            Self::StateMissing => "제공기관이 이 로그인의 보안 코드를 돌려주지 않았습니다. Qetta 페이지에서 다시 시작하세요.",
            Self::StateInvalid => "올바른 링크가 아닙니다. Qetta 페이지에서 다시 시작하세요.",
            Self::StateUnknown => "알 수 없는 링크입니다. Qetta 페이지에서 다시 시작하세요.",
            Self::StateExpired => "연결 시간이 만료되었습니다. Qetta 페이지에서 다시 시작하세요.",
            Self::StateAlreadyUsed => "이미 사용된 링크입니다. Qetta 페이지에서 다시 시작하세요.",
            Self::StateReplayed => "이미 완료되었거나 사용된 로그인입니다. Qetta 페이지에서 다시 시작하세요.",
            Self::BrowserMismatch => "다른 브라우저에서 시작된 로그인입니다. 이 브라우저에서 다시 시작하세요.",
            Self::CrossSite => "이 서비스의 페이지에서 보낸 확인이 아닙니다. 링크를 다시 여세요.",
            Self::CsrfInvalid => "이 브라우저에서 유효한 확인 양식이 아닙니다. 링크를 다시 여세요.",
            Self::ActionInvalid => "계속할지 취소할지 선택하세요.",
        }
    }
}

/// A started flow: the launch URL, and the initiator cookie to set on the answer.
pub struct Started {
    pub launch_url: String,
    pub expires_at: i64,
    initiator_cookie: HeaderValue,
}

impl Started {
    /// Adds the initiator cookie to the answer of `authorize`.
    pub fn attach(&self, response: &mut Response) {
        response.headers_mut().append(header::SET_COOKIE, self.initiator_cookie.clone());
    }
}

/// The confirmation form (`application/x-www-form-urlencoded`). Every field is parsed as optional
/// so that a missing one gets the HTML refusal page; the document says what a valid form has.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct ConfirmForm {
    #[schema(required = true, nullable = false, pattern = "^[A-Za-z0-9_-]{32,64}$")]
    state: Option<String>,
    /// from the confirmation page
    #[schema(required = true, nullable = false, min_length = 1)]
    csrf_token: Option<String>,
    #[schema(required = true, nullable = false, value_type = Option<ConfirmAction>)]
    action: Option<String>,
}

/// `action` of [`ConfirmForm`] (documentation: the flow matches the strings).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub enum ConfirmAction {
    #[schema(rename = "confirm")]
    Confirm,
    #[schema(rename = "cancel")]
    Cancel,
}

impl Flow {
    /// The flow of a provider of the catalogue.
    pub fn of(info: &crate::providers::ProviderInfo) -> Self {
        Self {
            provider: info.name.clone(),
            base_path: format!("/api/v1/oauth/{}", info.name),
            name_en: info.display_name.clone(),
            name_ko: info.display_name_ko.clone(),
            state_ttl_secs: STATE_TTL_SECS,
        }
    }

    /// The consent page stored with a state.
    fn consent_url(pending: &OAuthState) -> Result<String, ApiError> {
        crate::connections::FlowData::parse(pending.flow_data.as_deref()).map(|d| d.url).ok_or_else(|| ApiError::from(FlowError::StateUnknown))
    }

    pub fn bind_cookie(&self) -> String {
        format!("qetta_{}_bind", self.provider)
    }
    pub fn initiator_cookie(&self) -> String {
        format!("qetta_{}_init", self.provider)
    }
    pub fn csrf_cookie(&self) -> String {
        format!("qetta_{}_csrf", self.provider)
    }
    fn launch_url(&self, state: &AppState) -> String {
        format!("{}{}/launch", state.config.public_url, self.base_path)
    }

    fn set_cookie(&self, state: &AppState, name: &str, value: &str, max_age: i64, same_site: &str) -> HeaderValue {
        let secure = if state.config.public_url.starts_with("https://") { "; Secure" } else { "" };
        let cookie = format!("{name}={value}; Max-Age={max_age}; Path={}; HttpOnly; SameSite={same_site}{secure}", self.base_path);
        HeaderValue::from_str(&cookie).expect("cookie is ASCII")
    }

    /// Stores the state `state_value` of a new flow for `user_id` with its `flow_data` (the
    /// consent page and what the callback needs) and returns its launch URL with the initiator
    /// cookie. A browser that already holds an initiator cookie keeps its secret, so several flows
    /// started from one page all go straight through.
    pub async fn start(&self, state: &AppState, headers: &HeaderMap, user_id: &str, state_value: String, flow_data: String) -> Result<Started, ApiError> {
        let now = state.clock.now();
        let initiator = cookie_values(headers, &self.initiator_cookie()).find(|v| well_formed_secret(v)).unwrap_or_else(new_secret);
        let expires_at = now + self.state_ttl_secs;
        state
            .shared
            .put_state(&OAuthState {
                state: state_value.clone(),
                user_id: user_id.to_string(),
                provider: self.provider.clone(),
                flow_data: Some(flow_data),
                browser_binding: None,
                initiator_hash: Some(sha256_hex(&initiator)),
                created_at: now,
                expires_at,
                consumed_at: None,
            })
            .await?;
        Ok(Started {
            launch_url: format!("{}?state={}", self.launch_url(state), urlencode(&state_value)),
            expires_at,
            initiator_cookie: self.set_cookie(state, &self.initiator_cookie(), &initiator, self.state_ttl_secs, "Lax"),
        })
    }

    /// `GET {base_path}/launch?state=…`: straight to the provider for the browser that started
    /// the flow, the confirmation page for any other.
    pub async fn launch(&self, state: &AppState, headers: &HeaderMap, raw_state: Option<&str>, ip: Option<String>) -> Response {
        let pending = match self.pending(state, raw_state).await {
            Ok(p) => p,
            Err(r) => return r,
        };
        if self.is_initiator(headers, &pending) {
            return self.bind_and_redirect(state, &pending, ip, "bound").await;
        }
        self.confirmation_page(state, headers, &pending).await
    }

    /// `POST {base_path}/launch`: the confirmation page's form.
    pub async fn confirm(&self, state: &AppState, headers: &HeaderMap, form: Result<Form<ConfirmForm>, FormRejection>, ip: Option<String>) -> Response {
        if !same_origin_request(headers, &state.config.public_url) {
            return self.refusal(FlowError::CrossSite);
        }
        let Ok(Form(form)) = form else {
            return self.refusal(FlowError::StateInvalid);
        };
        let Some(s) = form.state.as_deref().filter(|s| valid_state(s)) else {
            return self.refusal(FlowError::StateInvalid);
        };
        let given = form.csrf_token.as_deref().unwrap_or("");
        let csrf_ok = !given.is_empty()
            && cookie_values(headers, &self.csrf_cookie())
                .filter(|c| well_formed_secret(c))
                .any(|c| bool::from(csrf_token(&c, &self.provider, s).as_bytes().ct_eq(given.as_bytes())));
        if !csrf_ok {
            return self.refusal(FlowError::CsrfInvalid);
        }
        let pending = match self.pending(state, Some(s)).await {
            Ok(p) => p,
            Err(r) => return r,
        };
        match form.action.as_deref() {
            Some("confirm") => self.bind_and_redirect(state, &pending, ip, "confirmed").await,
            Some("cancel") => {
                // Spend the state: the link cannot be used by anyone any more.
                if let Err(e) = state.shared.consume_state(&pending.state, state.clock.now()).await {
                    return ApiError::from(e).into_response();
                }
                // As for the confirmation page: not the opener's address.
                self.audit(state, &pending.user_id, "launch", "cancelled", None, json!({})).await;
                self.page(
                    StatusCode::OK,
                    false,
                    "launch_cancelled",
                    "The connection was cancelled. Nothing was connected.",
                    Some("연결을 취소했습니다. 아무것도 연결되지 않았습니다."),
                    false,
                )
            }
            _ => self.refusal(FlowError::ActionInvalid),
        }
    }

    /// The callback's first step: consumes the state exactly once, checks its provider, expiry
    /// and that this browser is the one bound at launch. Any refusal is the page to answer.
    pub async fn take_callback_state(
        &self,
        state: &AppState,
        headers: &HeaderMap,
        raw_state: Option<&str>,
        ip: Option<String>,
    ) -> Result<OAuthState, Response> {
        let now = state.clock.now();
        let Some(s) = raw_state.filter(|s| !s.is_empty()) else {
            return Err(self.callback_refusal(FlowError::StateMissing));
        };
        if s.len() > 128 {
            return Err(self.callback_refusal(FlowError::StateUnknown));
        }
        let pending = match state.shared.consume_state(s, now).await {
            Ok(Consumed::Fresh(p)) => p,
            Ok(Consumed::Replayed) => return Err(self.callback_refusal(FlowError::StateReplayed)),
            Ok(Consumed::Unknown) => return Err(self.callback_refusal(FlowError::StateUnknown)),
            Err(e) => return Err(ApiError::from(e).into_response()),
        };
        if pending.provider != self.provider {
            return Err(self.callback_refusal(FlowError::StateUnknown));
        }
        if pending.expires_at <= now {
            self.audit(state, &pending.user_id, "callback", "state_expired", ip, json!({})).await;
            return Err(self.callback_refusal(FlowError::StateExpired));
        }
        let bound = match (&pending.browser_binding, cookie_values(headers, &self.bind_cookie()).next()) {
            (Some(expected), Some(c)) => sha256_hex(&c).as_bytes().ct_eq(expected.as_bytes()).into(),
            _ => false,
        };
        if !bound {
            self.audit(state, &pending.user_id, "callback", "browser_mismatch", ip, json!({})).await;
            return Err(self.callback_refusal(FlowError::BrowserMismatch));
        }
        Ok(pending)
    }

    /// The state of a launch or confirmation, if it can still be bound.
    async fn pending(&self, state: &AppState, raw_state: Option<&str>) -> Result<OAuthState, Response> {
        let Some(s) = raw_state.filter(|s| valid_state(s)) else {
            return Err(self.refusal(FlowError::StateInvalid));
        };
        let pending = state.shared.peek_state(s).await.map_err(|e| ApiError::from(e).into_response())?;
        let Some(pending) = pending.filter(|p| p.provider == self.provider) else {
            return Err(self.refusal(FlowError::StateUnknown));
        };
        if pending.consumed_at.is_some() || pending.browser_binding.is_some() {
            return Err(self.refusal(FlowError::StateAlreadyUsed));
        }
        if pending.expires_at <= state.clock.now() {
            return Err(self.refusal(FlowError::StateExpired));
        }
        Ok(pending)
    }

    fn is_initiator(&self, headers: &HeaderMap, pending: &OAuthState) -> bool {
        let Some(expected) = &pending.initiator_hash else { return false };
        cookie_values(headers, &self.initiator_cookie()).any(|c| bool::from(sha256_hex(&c).as_bytes().ct_eq(expected.as_bytes())))
    }

    /// Binds the state to this browser (once: a second browser, or a second try, is refused)
    /// and redirects (303) to the provider's consent page.
    async fn bind_and_redirect(&self, state: &AppState, pending: &OAuthState, ip: Option<String>, outcome: &str) -> Response {
        let target = match Self::consent_url(pending) {
            Ok(t) => t,
            Err(e) => return e.into_response(),
        };
        let secret = new_secret();
        match state.shared.bind_browser(&pending.state, &sha256_hex(&secret)).await {
            Ok(true) => {}
            Ok(false) => return self.refusal(FlowError::StateAlreadyUsed),
            Err(e) => return ApiError::from(e).into_response(),
        }
        self.audit(state, &pending.user_id, "launch", outcome, ip, json!({})).await;
        let mut resp = Redirect::to(&target).into_response();
        resp.headers_mut().append(header::SET_COOKIE, self.set_cookie(state, &self.bind_cookie(), &secret, self.state_ttl_secs, "Lax"));
        resp
    }

    async fn confirmation_page(&self, state: &AppState, headers: &HeaderMap, pending: &OAuthState) -> Response {
        let user = match users::find_by_id(&state.db, &pending.user_id).await {
            Ok(Some(u)) => u,
            Ok(None) => return self.refusal(FlowError::StateUnknown),
            Err(e) => return ApiError::from(e).into_response(),
        };
        let label = AccountLabel::of(&user.id, &user.email);
        let csrf_secret = cookie_values(headers, &self.csrf_cookie()).find(|v| well_formed_secret(v)).unwrap_or_else(new_secret);
        let token = csrf_token(&csrf_secret, &self.provider, &pending.state);
        // Whoever opened the link may not be the account's owner (that is the point of the page):
        // their address is not written into the owner's audit log, which the owner can read.
        self.audit(state, &pending.user_id, "launch", "confirmation_shown", None, json!({})).await;

        let attr = |s: &str| html_escape::encode_double_quoted_attribute(s).to_string();
        let text = |s: &str| html_escape::encode_text(s).to_string();
        let (kind_ko, kind_en) = match &label {
            AccountLabel::Email(_) => ("Qetta 계정 이메일", "Qetta account email"),
            AccountLabel::UserId(_) => ("앱 사용자 ID", "App user ID"),
        };
        let body = format!(
            "<!DOCTYPE html><html lang=\"ko\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>연결 확인 · Confirm the connection</title><link rel=\"stylesheet\" href=\"/static/app.css\"><link rel=\"icon\" href=\"/static/favicon.svg\" type=\"image/svg+xml\"></head><body>\
             <main id=\"launch-confirm\" class=\"narrow\" data-provider=\"{provider}\" data-account=\"{label_attr}\">\
             <h1>연결할 계정 확인 <span lang=\"en\">· Confirm the connection</span></h1>\
             <section class=\"card\">\
             <p>아래 Qetta 계정에 {name_ko}을(를) 연결하려고 합니다.</p>\
             <p lang=\"en\">You are about to connect {name_en} to this Qetta account:</p>\
             <p><span class=\"muted\">{kind_ko} · {kind_en}</span><br><strong id=\"account-label\" class=\"mono\">{label_text}</strong></p>\
             <p class=\"notice\">본인의 계정이 아니거나 직접 시작한 연결이 아니면 취소하세요. 다른 사람이 보낸 링크로 연결하면 그 사람이 내 계좌 정보를 보게 됩니다.</p>\
             <p class=\"notice\" lang=\"en\">If this is not your account, or you did not start this yourself, cancel: connecting through a link someone sent you would let them see your accounts.</p>\
             <form method=\"post\" action=\"{action}\">\
             <input type=\"hidden\" name=\"state\" value=\"{state_attr}\"><input type=\"hidden\" name=\"csrf_token\" value=\"{token_attr}\">\
             <div class=\"actions\"><button type=\"submit\" name=\"action\" value=\"confirm\" class=\"primary\">내 계정이 맞습니다, 계속 · This is my account, continue</button>\
             <button type=\"submit\" name=\"action\" value=\"cancel\" class=\"secondary\">취소 · Cancel</button></div></form>\
             </section><p class=\"request-id\">request id: {rid}</p></main></body></html>",
            provider = attr(&self.provider),
            label_attr = attr(label.masked()),
            label_text = text(label.masked()),
            name_ko = text(&self.name_ko),
            name_en = text(&self.name_en),
            action = attr(&self.launch_url(state)),
            state_attr = attr(&pending.state),
            token_attr = attr(&token),
            rid = text(&crate::http::request_id::current()),
        );
        // The form posts here and is redirected to the provider: both may be form targets.
        let consent_origin =
            Self::consent_url(pending).ok().and_then(|u| reqwest::Url::parse(&u).ok()).map(|u| u.origin().ascii_serialization()).filter(|o| o != "null");
        let form_action = match consent_origin {
            Some(o) => format!("form-action 'self' {o}"),
            None => "form-action 'self'".to_string(),
        };
        let csp = format!("default-src 'none'; style-src 'self'; img-src 'self'; {form_action}; frame-ancestors 'none'; base-uri 'none'");
        let mut resp = (StatusCode::OK, Html(body)).into_response();
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&csp) {
            h.insert(header::CONTENT_SECURITY_POLICY, v);
        }
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        // The form's POST carries our Origin (with `no-referrer` browsers send `Origin: null`).
        h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
        h.insert("cross-origin-opener-policy", HeaderValue::from_static("unsafe-none"));
        h.append(header::SET_COOKIE, self.set_cookie(state, &self.csrf_cookie(), &csrf_secret, self.state_ttl_secs, "Strict"));
        resp
    }

    /// A refusal of launch or confirm (the binding cookie, if any, is left alone).
    pub fn refusal(&self, e: FlowError) -> Response {
        let ko = e.message_ko();
        let api = ApiError::from(e);
        self.page(api.status(), false, api.code(), &api.to_string(), Some(ko), false)
    }

    fn callback_refusal(&self, e: FlowError) -> Response {
        let ko = e.message_ko();
        let api = ApiError::from(e);
        self.page(api.status(), false, api.code(), &api.to_string(), Some(ko), true)
    }

    /// The small result page of the flow: it reports to the opener window (same origin only, via
    /// `/static/oauth-callback.js`) and closes, or shows the result when not a popup.
    /// `clear_bind`: the binding cookie has done its job (callback pages).
    pub fn page(&self, status: StatusCode, ok: bool, code: &str, message: &str, message_ko: Option<&str>, clear_bind: bool) -> Response {
        let attr = |s: &str| html_escape::encode_double_quoted_attribute(s).to_string();
        let text = |s: &str| html_escape::encode_text(s).to_string();
        let title = if ok { "Connected · 연결 완료" } else { "Not connected · 연결 실패" };
        let ko = message_ko.map(|m| format!("<p>{}</p>", text(m))).unwrap_or_default();
        let body = format!(
            "<!DOCTYPE html><html lang=\"ko\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{title}</title><link rel=\"stylesheet\" href=\"/static/app.css\"><link rel=\"icon\" href=\"/static/favicon.svg\" type=\"image/svg+xml\"></head><body>\
             <main id=\"result\" class=\"callback\" data-provider=\"{provider}\" data-ok=\"{ok}\" data-code=\"{code_attr}\" data-message=\"{msg_attr}\">\
             <h1>{title}</h1>{ko}<p lang=\"en\">{msg_text}</p><p class=\"request-id\">request id: {rid}</p>\
             <p><a href=\"/oauth\">Qetta Connect</a></p></main>\
             <script src=\"/static/oauth-callback.js\"></script></body></html>",
            provider = attr(&self.provider),
            code_attr = attr(code),
            msg_attr = attr(message),
            msg_text = text(message),
            rid = text(&crate::http::request_id::current()),
        );
        let mut resp = (status, Html(body)).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert("cross-origin-opener-policy", HeaderValue::from_static("unsafe-none"));
        if clear_bind {
            let clear = format!("{}=; Max-Age=0; Path={}; HttpOnly; SameSite=Lax", self.bind_cookie(), self.base_path);
            h.append(header::SET_COOKIE, HeaderValue::from_str(&clear).expect("ASCII"));
        }
        resp
    }

    pub async fn audit(&self, state: &AppState, user_id: &str, action: &str, outcome: &str, ip: Option<String>, detail: Value) {
        let entry = audit::NewEntry::user_action(Some(user_id), &self.provider, None, action, outcome, ip, detail);
        crate::audit::record(&state.db, entry, state.clock.now()).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The account shown on the confirmation page

/// Whose Qetta account a flow connects, masked for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountLabel {
    /// A real email address, masked: `mi***@ex*****.com`.
    Email(String),
    /// A user minted by the app's backend (no real email): the masked user id.
    UserId(String),
}

impl AccountLabel {
    pub fn of(user_id: &str, email: &str) -> Self {
        match real_email(email) {
            Some(e) => Self::Email(mask_email(&e)),
            None => Self::UserId(mask_user_id(user_id)),
        }
    }

    pub fn masked(&self) -> &str {
        match self {
            Self::Email(s) | Self::UserId(s) => s,
        }
    }
}

/// The normalised email if it is a real one: accepted by `normalize_email` and not the
/// placeholder of users minted by the app's backend (`…@external.invalid`).
pub fn real_email(email: &str) -> Option<String> {
    normalize_email(email).ok().filter(|e| !e.ends_with("@external.invalid"))
}

// ---------------------------------------------------------------------------------------------
// helpers

pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn new_secret() -> String {
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
}

/// What [`new_secret`] makes: 32 bytes, unpadded base64url.
fn well_formed_secret(s: &str) -> bool {
    s.len() == 43 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// States are 32 to 64 characters of base64url: KFTC's 32 letters or digits, the generic
/// client's 43 characters of base64url.
pub fn valid_state(s: &str) -> bool {
    (32..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The confirmation form's token: bound to this browser's CSRF cookie, the provider and the
/// state, so that it is worth nothing in another browser or for another link.
fn csrf_token(cookie_secret: &str, provider: &str, state: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(cookie_secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(b"qetta launch confirmation\0");
    mac.update(provider.as_bytes());
    mac.update(b"\0");
    mac.update(state.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// Every value of the cookie `name` in the request.
pub fn cookie_values<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = String> + 'a {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .filter(move |(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Whether a form POST comes from our own pages, as far as the browser says: `Sec-Fetch-Site`,
/// when sent, must be `same-origin`; `Origin`, when sent, must be the public URL's origin
/// (`null` only together with `Sec-Fetch-Site: same-origin`). Clients that send neither rely on
/// the CSRF token alone.
fn same_origin_request(headers: &HeaderMap, public_url: &str) -> bool {
    let site = match headers.get("sec-fetch-site").map(|v| v.to_str()) {
        None => None,
        Some(Ok(s)) => Some(s),
        Some(Err(_)) => return false,
    };
    if site.is_some_and(|s| s != "same-origin") {
        return false;
    }
    match headers.get(header::ORIGIN).map(|v| v.to_str()) {
        None => true,
        Some(Err(_)) => false,
        Some(Ok("null")) => site == Some("same-origin"),
        Some(Ok(origin)) => {
            let ours = reqwest::Url::parse(public_url).map(|u| u.origin().ascii_serialization()).unwrap_or_default();
            origin.trim_end_matches('/').eq_ignore_ascii_case(&ours)
        }
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_masked() {
        assert_eq!(mask_email("mina@example.com"), "mi***@ex*****.com");
        assert_eq!(mask_email("a@b.co"), "a***@b***.co");
        assert_eq!(mask_email("jo@mail.example.co.kr"), "j***@ma********.kr");
        assert_eq!(mask_email("김철수@회사.kr"), "김철***@회***.kr");
        // The local part's length does not show.
        assert_eq!(mask_email("minsu.kim.1987@example.com"), "mi***@ex*****.com");
        for e in ["mina@example.com", "someone.long@verylongdomainname.org"] {
            let m = mask_email(e);
            assert!(!m.contains(e.split('@').next().unwrap()), "{m}");
            assert!(m.contains("***"), "{m}");
        }
    }

    #[test]
    fn user_ids_are_masked() {
        assert_eq!(mask_user_id("app-user-42"), "app***42");
        assert_eq!(mask_user_id("u12345"), "u1***5");
        assert_eq!(mask_user_id("abc"), "a***");
        assert_eq!(mask_user_id(""), "***");
        let uuid = "3f2a9c1e-8d7b-4e6f-9a0b-1c2d3e4f5a6b";
        assert_eq!(mask_user_id(uuid), "3f2***6b");
    }

    #[test]
    fn placeholder_emails_of_backend_users_show_the_user_id() {
        assert_eq!(AccountLabel::of("id-1", "Mina@Example.com"), AccountLabel::Email("mi***@ex*****.com".into()));
        assert_eq!(AccountLabel::of("app-user-42", "app-user-42@external.invalid"), AccountLabel::UserId("app***42".into()));
        // Whatever placeholder normalize_email refuses is not an email either.
        assert_eq!(AccountLabel::of("app-user-42", "app-user-42@external"), AccountLabel::UserId("app***42".into()));
        assert_eq!(AccountLabel::of("app-user-42", ""), AccountLabel::UserId("app***42".into()));
    }

    #[test]
    fn csrf_tokens_are_bound_to_cookie_provider_and_state() {
        let (a, b) = (new_secret(), new_secret());
        assert!(well_formed_secret(&a) && a != b);
        let s = "A".repeat(32);
        let t = csrf_token(&a, "kftc", &s);
        assert_eq!(t, csrf_token(&a, "kftc", &s));
        assert_ne!(t, csrf_token(&b, "kftc", &s));
        assert_ne!(t, csrf_token(&a, "toss", &s));
        assert_ne!(t, csrf_token(&a, "kftc", &"B".repeat(32)));
        assert!(!well_formed_secret("short") && !well_formed_secret(&format!("{}=", &a[..42])));
    }

    #[test]
    fn only_same_origin_posts_pass() {
        let public = "https://connect.example.com";
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, HeaderValue::from_static(v));
            }
            m
        };
        assert!(same_origin_request(&h(&[]), public));
        assert!(same_origin_request(&h(&[("origin", "https://connect.example.com")]), public));
        assert!(same_origin_request(&h(&[("origin", "https://connect.example.com"), ("sec-fetch-site", "same-origin")]), public));
        assert!(same_origin_request(&h(&[("origin", "null"), ("sec-fetch-site", "same-origin")]), public));
        assert!(!same_origin_request(&h(&[("origin", "null")]), public));
        assert!(!same_origin_request(&h(&[("origin", "https://evil.example")]), public));
        assert!(!same_origin_request(&h(&[("origin", "http://connect.example.com")]), public));
        assert!(!same_origin_request(&h(&[("sec-fetch-site", "cross-site")]), public));
        assert!(!same_origin_request(&h(&[("sec-fetch-site", "same-site"), ("origin", "https://connect.example.com")]), public));
        assert!(same_origin_request(&h(&[("origin", "https://connect.example.com")]), "https://connect.example.com:443/prefix"));
    }
}
