//! The management web pages, served by the binary itself: `/login`, `/register`, `/oauth` and
//! `/admin` (the administrators' dashboard), `/docs` (the interactive API reference, rendered in
//! the browser from `GET /api/v1/openapi.json` by our own `docs.js`), plus
//! their static files under `/static/`.
//!
//! Everything is embedded at compile time (`include_str!`/`include_bytes!`): there is no Node
//! build step and nothing is loaded from a CDN, so the page works offline and behind strict egress
//! rules. The pages are static shells; their scripts call the JSON API with the user's JWT.
//!
//! # Security
//!
//! * Every page response carries [`PAGE_CSP`], which has no `unsafe-inline`: all script and style
//!   live in files under `/static/`, and the templates have no inline handlers or style attributes.
//! * CSRF: the API authenticates by the `Authorization: Bearer` header only, never by cookies. A
//!   cross-site form or `fetch` cannot attach that header, so the page needs no CSRF tokens. (The
//!   cookies of the OAuth connect flow, see `http::oauth_flow`, only tie a launch link and its
//!   callback to a browser; they authenticate nothing on their own. The flow's one form, the
//!   launch confirmation page, carries its own CSRF token.)
//! * The JWT lives in `sessionStorage` (gone when the tab closes), and a JWT handed over by the
//!   app arrives in the URL fragment (`/oauth#token=…`), which browsers never send to servers.

mod assets;

use axum::http::{header, HeaderValue};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use crate::app::AppState;

/// The Content-Security-Policy of the HTML pages. `connect-src 'self'`: the page only talks to
/// this service; `form-action 'self'`: forms are handled by script, never posted elsewhere.
pub const PAGE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The page routes and `/static/{file}`; merged into the main router before its fallback.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/oauth") }))
        .route("/login", get(|| async { page(&assets::pages().login) }))
        .route("/register", get(|| async { page(&assets::pages().register) }))
        .route("/oauth", get(|| async { page(&assets::pages().oauth) }))
        .route("/admin", get(|| async { page(&assets::pages().admin) }))
        .route("/docs", get(|| async { page(&assets::pages().docs) }))
        .route("/static/{file}", get(assets::serve))
}

/// An HTML page with the page CSP. `no-store`: the shell is tiny and must never be served stale
/// after an upgrade (its asset URLs carry content hashes).
fn page(html: &'static str) -> Response {
    let mut response = Html(html).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(PAGE_CSP));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_page_csp_allows_nothing_inline_or_foreign() {
        let csp = super::PAGE_CSP;
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
        for directive in ["script-src 'self'", "style-src 'self'", "frame-ancestors 'none'", "base-uri 'none'"] {
            assert!(csp.contains(directive), "{directive}");
        }
    }
}
