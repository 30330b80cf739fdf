//! The embedded files: HTML templates rendered once, and static files served with content hashes.
//!
//! Static URLs in the pages carry `?v=<hash of the content>`. A request whose `v` matches the
//! embedded content may be cached for a year (`immutable`): a new build changes the hash and so
//! the URL. Any other request (no `v`, an old `v`, e.g. `/static/oauth-callback.js` referenced by
//! the backend's callback page) gets `no-cache` with an ETag, so it is revalidated every time.

use std::sync::LazyLock;

use axum::extract::{Path, Query};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// One embedded static file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset { name: $name, content_type: $type, body: include_bytes!(concat!("assets/static/", $name)) }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

static FILES: &[Asset] = &[
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("i18n.js", JS),
    asset!("api.js", JS),
    asset!("ui.js", JS),
    asset!("auth.js", JS),
    asset!("oauth.js", JS),
    asset!("connect.js", JS),
    asset!("providers.js", JS),
    asset!("kftc.js", JS),
    asset!("toss.js", JS),
    asset!("admin.js", JS),
    asset!("charts.js", JS),
    asset!("docs.js", JS),
    asset!("oauth-callback.js", JS),
];

/// A static file with its content hash, computed once.
struct Hashed {
    asset: &'static Asset,
    /// First 16 hex digits of SHA-256: the `v` query value and the ETag.
    version: String,
    etag: HeaderValue,
}

static HASHED: LazyLock<Vec<Hashed>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|asset| {
            let version = hex::encode(&Sha256::digest(asset.body)[..8]);
            let etag = HeaderValue::from_str(&format!("\"{version}\"")).expect("hex is a valid header value");
            Hashed { asset, version, etag }
        })
        .collect()
});

fn find(name: &str) -> Option<&'static Hashed> {
    HASHED.iter().find(|h| h.asset.name == name)
}

/// The rendered pages.
pub struct Pages {
    pub login: String,
    pub register: String,
    pub oauth: String,
    pub admin: String,
    pub docs: String,
}

static PAGES: LazyLock<Pages> = LazyLock::new(|| {
    let auth = include_str!("assets/auth.html");
    Pages {
        login: render(auth, &[("mode", "login"), ("other", "register"), ("password_autocomplete", "current-password")]),
        register: render(auth, &[("mode", "register"), ("other", "login"), ("password_autocomplete", "new-password")]),
        oauth: render(include_str!("assets/oauth.html"), &[]),
        admin: render(include_str!("assets/admin.html"), &[]),
        docs: render(include_str!("assets/docs.html"), &[]),
    }
});

pub fn pages() -> &'static Pages {
    &PAGES
}

/// Fills `{{name}}` from `vars` and `{{static:file}}` with the file's versioned URL. Values are
/// our own constants, never user input, so nothing needs escaping. Panics on an unknown
/// placeholder or file: a template error must fail the first request (and the unit test), not
/// ship a broken page.
fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").expect("unclosed {{ in a template") + start;
        let key = &rest[start + 2..end];
        if let Some(file) = key.strip_prefix("static:") {
            let h = find(file).unwrap_or_else(|| panic!("template references unknown static file {file}"));
            out.push_str(&format!("/static/{file}?v={}", h.version));
        } else {
            let value = vars.iter().find(|(k, _)| *k == key).unwrap_or_else(|| panic!("no value for {{{{{key}}}}}")).1;
            out.push_str(value);
        }
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

#[derive(Deserialize)]
pub struct Version {
    v: Option<String>,
}

/// `GET /static/{file}`.
pub async fn serve(Path(file): Path<String>, Query(q): Query<Version>, headers: HeaderMap) -> Result<Response, ApiError> {
    let h = find(&file).ok_or_else(|| ApiError::NotFound("No such file.".into()))?;
    let cache = if q.v.as_deref() == Some(h.version.as_str()) { "public, max-age=31536000, immutable" } else { "no-cache" };
    let fresh = headers.get(header::IF_NONE_MATCH).is_some_and(|v| v.as_bytes().split(|b| *b == b',').any(|t| t.trim_ascii() == h.etag.as_bytes()));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, HeaderValue::from_static(h.asset.content_type))], h.asset.body).into_response()
    };
    let out = response.headers_mut();
    out.insert(header::ETAG, h.etag.clone());
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_renders_and_keeps_all_script_and_style_out_of_the_html() {
        let p = pages();
        for html in [&p.login, &p.register, &p.oauth, &p.admin, &p.docs] {
            assert!(!html.contains("{{"), "unrendered placeholder");
            assert!(!html.contains(" style="), "style attribute");
            assert!(!html.contains("<style"), "inline style element");
            assert!(!html.contains("javascript:"), "javascript: URL");
            assert!(!has_inline_handler(html), "inline event handler");
            for (i, _) in html.match_indices("<script") {
                assert!(html[i..].starts_with("<script type=\"module\" src=\"/static/"), "inline or foreign script");
            }
            assert!(!html.contains("http://") && !html.contains("https://"), "external URL");
        }
        assert!(p.login.contains("data-mode=\"login\"") && p.register.contains("data-mode=\"register\""));
    }

    /// ` on<letters>=` inside a tag, e.g. `<button onclick=…>`.
    fn has_inline_handler(html: &str) -> bool {
        html.match_indices(" on").any(|(i, _)| {
            let name: String = html[i + 3..].chars().take_while(|c| c.is_ascii_lowercase()).collect();
            !name.is_empty() && html[i + 3 + name.len()..].starts_with('=')
        })
    }

    #[test]
    fn static_files_have_content_types_and_distinct_versions() {
        for h in HASHED.iter() {
            assert!(!h.asset.body.is_empty(), "{} is empty", h.asset.name);
            assert_eq!(h.version.len(), 16);
        }
        assert!(find("oauth-callback.js").is_some());
        assert!(find("../mod.rs").is_none());
    }
}
