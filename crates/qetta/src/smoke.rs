//! `qetta smoke --url …`: checks a running deployment end to end, the way an operator would after
//! a release: health and readiness, a throwaway user, the provider status, the Toss connection
//! test, and — when the deployment runs the embedded sandbox — a whole KFTC connect, balance and
//! disconnect. Prints one line a step; fails on the first broken step.

// One line a step on the operator's terminal.
#![allow(clippy::print_stdout)]

use std::time::Instant;

use serde_json::{json, Value};

#[derive(Debug, thiserror::Error)]
#[error("smoke test failed at step {step:?}: {reason}")]
pub struct SmokeFailed {
    pub step: String,
    pub reason: String,
}

struct Smoke {
    base: String,
    client: reqwest::Client,
    token: Option<String>,
}

impl Smoke {
    async fn step<T>(&self, name: &str, f: impl std::future::Future<Output = Result<T, String>>) -> Result<T, SmokeFailed> {
        let started = Instant::now();
        match f.await {
            Ok(v) => {
                println!("PASS {name} ({} ms)", started.elapsed().as_millis());
                Ok(v)
            }
            Err(reason) => {
                println!("FAIL {name}: {reason}");
                Err(SmokeFailed { step: name.to_string(), reason })
            }
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<(u16, Value), String> {
        let url = if path.starts_with("http") { path.to_string() } else { format!("{}{path}", self.base) };
        let mut req = self.client.request(method, url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.map_err(|e| format!("request failed: {e}"))?;
        let status = r.status().as_u16();
        let text = r.text().await.map_err(|e| format!("reading the body: {e}"))?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }

    async fn expect(&self, method: reqwest::Method, path: &str, body: Option<Value>, want: u16) -> Result<Value, String> {
        let (status, v) = self.call(method, path, body).await?;
        if status == want {
            Ok(v)
        } else {
            Err(format!("HTTP {status}: {}", v.get("error").map(|e| e.to_string()).unwrap_or_else(|| v.to_string())))
        }
    }
}

pub async fn run(base: &str, sandbox_user: &str) -> Result<(), SmokeFailed> {
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .expect("HTTP client");
    let mut s = Smoke { base: base.trim_end_matches('/').to_string(), client, token: None };
    use reqwest::Method as M;
    s.step("GET /health", s.expect(M::GET, "/health", None, 200)).await?;
    s.step("GET /ready", s.expect(M::GET, "/ready", None, 200)).await?;
    let email = format!("smoke-{}@smoke.invalid", uuid::Uuid::new_v4().simple());
    let password = format!("smoke-{}", uuid::Uuid::new_v4().simple());
    let session =
        s.step("register a throwaway user", s.expect(M::POST, "/api/v1/auth/register", Some(json!({"email": email, "password": password})), 201)).await?;
    s.token = session["token"].as_str().map(str::to_string);
    s.step("GET /api/v1/oauth/status", s.expect(M::GET, "/api/v1/oauth/status", None, 200)).await?;
    s.step("Toss connection test", async {
        let v = s.expect(M::POST, "/api/v1/oauth/toss/test", None, 200).await?;
        if v["ok"] == true {
            Ok(())
        } else {
            Err(format!("{v}"))
        }
    })
    .await?;

    let sandboxed = matches!(s.call(M::GET, "/sandbox/kftc/_sandbox/users", None).await, Ok((200, _)));
    if !sandboxed {
        println!("SKIP KFTC connect: KFTC is the real provider (a person must consent)");
        return Ok(());
    }
    let fin = s
        .step("KFTC connect through the sandbox", async {
            let auth = s.expect(M::GET, "/api/v1/oauth/kftc/authorize", None, 200).await?;
            let launch = auth["authorize_url"].as_str().ok_or("no authorize_url")?.to_string();
            let mut r = s.client.get(&launch).send().await.map_err(|e| e.to_string())?;
            if r.status() == 200 {
                // The confirmation page: the launch URL is on another host than --url, so the
                // initiator cookie of authorize did not go with it. Confirm, as a person would.
                let page = r.text().await.map_err(|e| e.to_string())?;
                let form = ConfirmationForm::parse(&page).ok_or("launch answered 200 without a confirmation form")?;
                r = s
                    .client
                    .post(&form.action)
                    .form(&[("state", form.state.as_str()), ("csrf_token", form.csrf_token.as_str()), ("action", "confirm")])
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
            }
            let consent =
                r.headers().get("location").and_then(|l| l.to_str().ok()).ok_or_else(|| format!("launch did not redirect (HTTP {})", r.status()))?.to_string();
            let r = s.client.get(format!("{consent}&sandbox_user={sandbox_user}&sandbox_consent=approve")).send().await.map_err(|e| e.to_string())?;
            let callback = r.headers().get("location").and_then(|l| l.to_str().ok()).ok_or("consent did not redirect")?.to_string();
            let page = s.client.get(&callback).send().await.map_err(|e| e.to_string())?.text().await.map_err(|e| e.to_string())?;
            if !page.contains("data-ok=\"true\"") {
                return Err("the callback page reports a failure".into());
            }
            let accounts = s.expect(M::GET, "/api/v1/oauth/kftc/accounts", None, 200).await?;
            accounts["accounts"][0]["fintech_use_num"].as_str().map(str::to_string).ok_or_else(|| "no accounts".to_string())
        })
        .await?;
    s.step("KFTC balance", s.expect(M::GET, &format!("/api/v1/oauth/kftc/balance/{fin}"), None, 200)).await?;
    s.step("KFTC disconnect", s.expect(M::DELETE, "/api/v1/oauth/kftc/disconnect", None, 200)).await?;
    Ok(())
}

/// The launch confirmation page's form (see `http::oauth_flow`).
struct ConfirmationForm {
    action: String,
    state: String,
    csrf_token: String,
}

impl ConfirmationForm {
    fn parse(page: &str) -> Option<Self> {
        if !page.contains("id=\"launch-confirm\"") {
            return None;
        }
        let attr = |after: &str| -> Option<String> {
            let (_, rest) = page.split_once(after)?;
            let (value, _) = rest.split_once('"')?;
            Some(html_escape::decode_html_entities(value).into_owned())
        };
        Some(Self {
            action: attr("<form method=\"post\" action=\"")?,
            state: attr("name=\"state\" value=\"")?,
            csrf_token: attr("name=\"csrf_token\" value=\"")?,
        })
    }
}
