//! End-to-end tests of the management page in real headless Chromium, driven over WebDriver.
//!
//! Each test starts the service (SQLite), its own `chromedriver` on a free loopback port and a
//! Chromium with a fresh profile. Without Chromium and chromedriver (Debian: `chromium`,
//! `chromium-driver`) the tests are skipped with a message, except under CI (`CI=true`) or with
//! `QETTA_TEST_REQUIRE_SERVICES` set, where they fail. Screenshots of the main states go to
//! `target/screenshots/` (override with `QETTA_SCREENSHOT_DIR`).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use tokio::process::{Child, Command};

use crate::support::{Backend, Spawn, TestApp};

/// One browser at a time: two cores cannot run several Chromiums and the server briskly.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const WAIT: Duration = Duration::from_secs(30);

fn binary(env: &str, default: &str) -> PathBuf {
    std::env::var_os(env).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(default))
}

/// The Chromium and chromedriver paths, or `None` (skip) when they are missing outside CI.
fn browser_binaries() -> Option<(PathBuf, PathBuf)> {
    let chromium = binary("QETTA_CHROMIUM", "/usr/bin/chromium");
    let driver = binary("QETTA_CHROMEDRIVER", "/usr/bin/chromedriver");
    let missing: Vec<String> = [&chromium, &driver].iter().filter(|p| !p.exists()).map(|p| p.display().to_string()).collect();
    if missing.is_empty() {
        return Some((chromium, driver));
    }
    let why = format!("{} not found; install the Debian packages chromium and chromium-driver (or set QETTA_CHROMIUM/QETTA_CHROMEDRIVER)", missing.join(", "));
    crate::support::unavailable(&format!("browser tests: {why}"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port").local_addr().unwrap().port()
}

/// A chromedriver process, a Chromium session in a fresh profile, and the page under test.
struct Browser {
    client: Client,
    driver: Child,
    driver_url: String,
    profile: tempfile::TempDir,
    base: String,
    main_window: fantoccini::wd::WindowHandle,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Browser {
    /// Starts a browser whose `navigator.language` is `lang`, or returns `None` to skip the test.
    async fn start(app: &TestApp, lang: &str) -> Option<Browser> {
        let (chromium, driver_bin) = browser_binaries()?;
        let turn = ONE_BROWSER.lock().await;
        let port = free_port();
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let driver_url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let ready = Instant::now() + Duration::from_secs(20);
        while http.get(format!("{driver_url}/status")).send().await.is_err() {
            assert!(Instant::now() < ready, "chromedriver did not start on port {port}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let profile = tempfile::tempdir().expect("profile dir");
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                    "--disable-dev-shm-usage", "--window-size=1280,900",
                    format!("--lang={lang}"),
                    format!("--user-data-dir={}", profile.path().display()),
                ],
                "prefs": { "intl.accept_languages": lang },
            }),
        );
        caps.insert("goog:loggingPrefs".into(), json!({ "browser": "ALL" }));
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector).capabilities(caps).connect(&driver_url).await.expect("WebDriver session");
        let main_window = client.window().await.expect("window handle");
        Some(Browser { client, driver, driver_url, profile, base: app.base.clone(), main_window, _turn: turn })
    }

    /// Ends the session (which quits Chromium) and stops chromedriver.
    async fn finish(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill().await;
    }

    async fn goto(&self, path: &str) {
        self.client.goto(&format!("{}{path}", self.base)).await.expect("navigate");
    }

    /// Runs axe-core on the current page (WCAG 2.x A/AA, best practices and the experimental
    /// rules): the serious and critical violations, as `(rule, [selectors])`.
    async fn accessibility_violations(&self, axe_source: &str) -> Vec<(String, Vec<String>)> {
        self.client.execute(axe_source, vec![]).await.expect("inject axe-core");
        let script = "const done = arguments[arguments.length - 1];\n\
            axe.run(document, { resultTypes: ['violations'], runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice', 'experimental'] } })\n\
              .then((r) => done(r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')\n\
                .map((v) => [v.id, v.nodes.map((n) => n.target.join(' '))])))\n\
              .catch((e) => done([['axe failed: ' + e, []]]));";
        let found = self.client.execute_async(script, vec![]).await.expect("run axe-core");
        serde_json::from_value(found).expect("violations")
    }

    /// Runs `script` (a function body) and returns its result.
    async fn js(&self, script: &str) -> Value {
        self.client.execute(script, vec![]).await.unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Polls `expr` (a JavaScript expression) until it is truthy; returns its value.
    async fn wait_for(&self, what: &str, expr: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let v = self.client.execute(&format!("try {{ return ({expr}); }} catch (e) {{ return null; }}"), vec![]).await.unwrap_or(Value::Null);
            let truthy = match &v {
                Value::Null | Value::Bool(false) => false,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return v;
            }
            if Instant::now() > deadline {
                self.screenshot(&format!("timeout-{}", what.replace(' ', "-"))).await;
                let text = self.js("return document.body ? document.body.innerText : ''").await;
                panic!("timed out waiting for {what} ({expr}); page text:\n{}", text.as_str().unwrap_or_default());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn click(&self, css: &str) {
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    async fn fill(&self, css: &str, text: &str) {
        let field = self.client.wait().at_most(WAIT).for_element(Locator::Css(css)).await.unwrap_or_else(|e| panic!("no {css}: {e}"));
        field.clear().await.expect("clear");
        field.send_keys(text).await.expect("type");
    }

    async fn text(&self, css: &str) -> String {
        let v = self.js(&format!("const e = document.querySelector({}); return e ? e.textContent.trim() : null;", json!(css))).await;
        v.as_str().unwrap_or_else(|| panic!("no element {css}")).to_string()
    }

    /// Saves a PNG of the current viewport to the screenshot directory.
    async fn screenshot(&self, name: &str) {
        let dir = std::env::var_os("QETTA_SCREENSHOT_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots"));
        if let Ok(png) = self.client.screenshot().await {
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::write(dir.join(format!("{name}.png")), png);
        }
    }

    /// The browser console entries at level SEVERE since the last call (chromedriver's log API).
    async fn console_errors(&self) -> Vec<String> {
        let session = self.client.session_id().await.expect("session id").expect("a session");
        let r = reqwest::Client::new()
            .post(format!("{}/session/{session}/se/log", self.driver_url))
            .json(&json!({ "type": "browser" }))
            .send()
            .await
            .expect("chromedriver log request");
        let body: Value = r.json().await.expect("log JSON");
        body["value"]
            .as_array()
            .map(|entries| entries.iter().filter(|e| e["level"] == "SEVERE").map(|e| e["message"].as_str().unwrap_or_default().to_string()).collect())
            .unwrap_or_default()
    }

    async fn card_state(&self, provider: &str) -> String {
        self.js(&format!("return document.getElementById('{provider}').dataset.state")).await.as_str().unwrap_or_default().to_string()
    }

    /// Waits for the popup (a window other than the main one), switches to it, clicks `css` on the
    /// page it shows (a consent page's approve button), and goes back to the main window once the
    /// popup has closed itself.
    async fn approve_in_popup(&self, what: &str, css: &str) {
        let deadline = Instant::now() + WAIT;
        let popup = loop {
            let windows = self.client.windows().await.unwrap();
            if let Some(w) = windows.into_iter().find(|w| *w != self.main_window) {
                break w;
            }
            if Instant::now() > deadline {
                self.screenshot("timeout-popup").await;
                panic!("no popup opened for {what}; page text:\n{}", self.js("return document.body.innerText").await);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        self.client.switch_to_window(popup).await.unwrap();
        self.wait_for(what, &format!("document.querySelector({})", json!(css))).await;
        // The popup may close itself before the click command returns: ignore that error.
        let button = self.client.find(Locator::Css(css)).await.expect("the button");
        let _ = button.click().await;
        self.client.switch_to_window(self.main_window.clone()).await.unwrap();
        let deadline = Instant::now() + WAIT;
        while self.client.windows().await.unwrap().len() > 1 {
            assert!(Instant::now() < deadline, "the popup of {what} did not close itself");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for `#{provider}` to reach `state` (not_connected, active, …).
    async fn wait_card(&self, provider: &str, state: &str) {
        self.wait_for(&format!("{provider} {state}"), &format!("document.getElementById('{provider}').dataset.state === '{state}'")).await;
    }
}

impl Drop for Browser {
    /// A failed test never reaches `finish`: stop the Chromium of this profile (matched by its
    /// unique user-data-dir, so no other process is touched); chromedriver dies with `kill_on_drop`.
    fn drop(&mut self) {
        let marker = format!("--user-data-dir={}", self.profile.path().display());
        let Ok(procs) = std::fs::read_dir("/proc") else { return };
        for p in procs.flatten() {
            let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            if let Ok(cmd) = std::fs::read(p.path().join("cmdline")) {
                if String::from_utf8_lossy(&cmd).split('\0').any(|a| a == marker) {
                    let _ = std::process::Command::new("kill").arg("-9").arg(pid.to_string()).status();
                }
            }
        }
    }
}

async fn register_via_api(app: &TestApp, email: &str) -> String {
    app.register(email).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_on_the_page_then_switch_language_and_fit_a_phone() {
    let app = Spawn::new(Backend::Sqlite).start().await;
    let Some(b) = Browser::start(&app, "ko-KR").await else { return };

    // The language comes from navigator.language.
    b.goto("/register").await;
    b.wait_for("Korean register page", "document.documentElement.lang === 'ko' && document.getElementById('auth-title').textContent.length > 0").await;
    assert_eq!(b.text("#auth-title").await, "계정 만들기");
    b.screenshot("register-ko").await;

    b.fill("#email", "jiwoo@example.com").await;
    b.fill("#password", "correct horse 7").await;
    b.click("#auth-submit").await;
    b.wait_for("the /oauth page", "location.pathname === '/oauth'").await;
    b.wait_card("kftc", "not_connected").await;
    b.wait_card("toss", "not_connected").await;
    assert_eq!(b.text("#kftc [data-role=badge]").await, "연결 안 됨");
    assert_eq!(b.text("#toss [data-role=badge]").await, "연결 안 됨");
    assert_eq!(b.text("#who").await, "jiwoo@example.com");
    assert!(b.js("return !document.querySelector('#kftc [data-action=connect]').hidden").await.as_bool().unwrap(), "Connect is offered");
    b.screenshot("oauth-ko").await;

    // Switch to English; the choice survives a reload; switch back.
    b.click("#lang-toggle").await;
    b.wait_for("English", "document.documentElement.lang === 'en'").await;
    assert_eq!(b.text("#kftc [data-role=badge]").await, "Not connected");
    assert_eq!(b.text("#lang-toggle").await, "한국어");
    b.client.refresh().await.unwrap();
    b.wait_card("toss", "not_connected").await;
    assert_eq!(b.js("return document.documentElement.lang").await, "en", "language remembered");
    assert_eq!(b.text("h1").await, "Connections");
    b.screenshot("oauth-en").await;
    b.click("#lang-toggle").await;
    b.wait_for("Korean again", "document.documentElement.lang === 'ko'").await;
    assert_eq!(b.text("#toss [data-role=badge]").await, "연결 안 됨");

    // A 360 px wide phone: nothing scrolls sideways.
    b.client.set_window_size(360, 780).await.unwrap();
    let width = b.wait_for("a narrow viewport", "window.innerWidth <= 360 && window.innerWidth").await;
    assert_eq!(width, 360, "the viewport is 360 px wide");
    for path in ["/oauth", "/login", "/register"] {
        b.goto(path).await;
        b.wait_for("translated page", "document.querySelector('h1').textContent.length > 0").await;
        // clientWidth excludes a vertical scrollbar, which innerWidth includes.
        let overflow = b.js("return document.documentElement.scrollWidth - document.documentElement.clientWidth").await;
        assert_eq!(overflow, 0, "horizontal overflow on {path}");
        if path == "/oauth" {
            b.wait_card("kftc", "not_connected").await;
            b.screenshot("oauth-360").await;
        }
    }
    b.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_with_a_wrong_password_shows_the_error_and_its_request_id() {
    let app = Spawn::new(Backend::Sqlite).start().await;
    register_via_api(&app, "minsu@example.com").await;
    let Some(b) = Browser::start(&app, "en-US").await else { return };

    b.goto("/login").await;
    b.wait_for("English login page", "document.documentElement.lang === 'en' && document.getElementById('auth-title').textContent === 'Sign in'").await;
    b.fill("#email", "minsu@example.com").await;
    b.fill("#password", "wrong horse 7").await;
    b.click("#auth-submit").await;
    let shown = b.wait_for("the error", "!document.getElementById('auth-error').hidden && document.getElementById('auth-error').textContent").await;
    let shown = shown.as_str().unwrap();
    let rid = b.text("#auth-error .request-id").await;
    let id = rid.strip_prefix("Request ID: ").unwrap_or_else(|| panic!("request id line: {rid}"));
    assert_eq!(id.len(), 36, "a UUID request id in {shown}");
    assert!(shown.len() > rid.len() + 5, "a message besides the request id: {shown}");
    assert_eq!(b.js("return location.pathname").await, "/login", "still on the login page");
    assert_eq!(b.js("return sessionStorage.getItem('qetta.token')").await, Value::Null, "no session");
    assert_eq!(b.js("return document.activeElement.id").await, "password", "focus back on the password");
    b.screenshot("login-error").await;

    // The right password signs in.
    b.fill("#password", "correct horse 7").await;
    b.click("#auth-submit").await;
    b.wait_for("the /oauth page", "location.pathname === '/oauth'").await;
    b.wait_card("kftc", "not_connected").await;
    b.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_have_a_strict_csp_and_no_console_errors() {
    let app = Spawn::new(Backend::Sqlite).start().await;

    // Headers, over plain HTTP.
    for path in ["/login", "/register", "/oauth"] {
        let r = app.get(path, None).await;
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers();
        assert!(h["content-type"].to_str().unwrap().starts_with("text/html"), "{path} content type");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{path}: {csp}");
        for d in ["script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"] {
            assert!(csp.contains(d), "{path} CSP has {d}: {csp}");
        }
        let html = r.text().await.unwrap();
        assert!(!html.contains(" style=") && !html.contains("<style"), "{path} has inline style");
    }
    let r = app.get("/", None).await;
    assert!(r.status().is_redirection());
    assert_eq!(r.headers()["location"], "/oauth");

    // Static files: content types; versioned URLs are immutable, bare ones revalidate.
    let html = app.get("/oauth", None).await.text().await.unwrap();
    let css = html.split('"').find(|s| s.starts_with("/static/app.css?v=")).expect("versioned stylesheet URL").to_string();
    let r = app.get(&css, None).await;
    assert_eq!(r.headers()["content-type"], "text/css; charset=utf-8");
    assert!(r.headers()["cache-control"].to_str().unwrap().contains("immutable"));
    let etag = r.headers()["etag"].clone();
    let r = app.get("/static/oauth-callback.js", None).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/javascript; charset=utf-8");
    assert_eq!(r.headers()["cache-control"], "no-cache");
    let r = app.client.get(app.url("/static/app.css")).header("if-none-match", etag).send().await.unwrap();
    assert_eq!(r.status(), 304);
    let r = app.get("/static/nope.js", None).await;
    assert_eq!(r.status(), 404);

    // In the browser: no CSP violation or other error on any page, also with a handed-over JWT.
    let token = register_via_api(&app, "ara@example.com").await;
    let Some(b) = Browser::start(&app, "en-US").await else { return };
    for path in ["/login", "/register"] {
        b.goto(path).await;
        b.wait_for("page scripts ran", "document.getElementById('auth-title').textContent.length > 0").await;
    }
    b.goto(&format!("/oauth#token={token}")).await;
    b.wait_card("kftc", "not_connected").await;
    b.wait_card("toss", "not_connected").await;
    assert_eq!(b.js("return location.hash").await, "", "the token is taken out of the address bar");
    assert_eq!(b.js("return sessionStorage.getItem('qetta.token')").await, token.as_str());
    assert_eq!(b.text("#who").await, "ara@example.com");
    let errors = b.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    b.screenshot("oauth-handover").await;

    // Sign out clears the session.
    b.click("#sign-out").await;
    b.wait_for("the login page", "location.pathname === '/login'").await;
    assert_eq!(b.js("return sessionStorage.getItem('qetta.token')").await, Value::Null);
    let errors = b.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    b.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_flow_connect_kftc_browse_accounts_verify_with_toss_and_disconnect() {
    let app = Spawn::new(Backend::Sqlite).var("QETTA_SANDBOX_TOSS_AUTO_COMPLETE", "0").start().await;
    let token = register_via_api(&app, "flow@example.com").await;
    let Some(b) = Browser::start(&app, "en-US").await else { return };
    b.goto(&format!("/oauth#token={token}")).await;
    b.wait_card("kftc", "not_connected").await;

    // The session came in the URL (someone else's link could do that): the first connect names
    // the account and asks; the popup opens from the confirmation's click.
    b.click("#kftc [data-action=connect]").await;
    b.wait_for("the account confirmation", "document.getElementById('confirm').open").await;
    let asked = b.text("#confirm-text").await;
    assert!(asked.contains("flow@example.com"), "{asked}");
    b.screenshot("handover-confirm-account").await;
    b.click("#confirm-ok").await;
    // Connect KFTC: the consent page opens in a popup; approving closes it and updates the page.
    let deadline = Instant::now() + WAIT;
    let popup = loop {
        let windows = b.client.windows().await.unwrap();
        if let Some(w) = windows.into_iter().find(|w| *w != b.main_window) {
            break w;
        }
        if Instant::now() > deadline {
            b.screenshot("timeout-popup").await;
            panic!("no popup opened; page text:\n{}", b.js("return document.body.innerText").await);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    b.client.switch_to_window(popup).await.unwrap();
    b.wait_for("the consent page", "document.querySelector('button.approve')").await;
    b.screenshot("kftc-consent-popup").await;
    // The popup may close itself before the click command returns: ignore that error.
    let approve = b.client.find(Locator::Css("button.approve")).await.expect("an approve button");
    let _ = approve.click().await;
    b.client.switch_to_window(b.main_window.clone()).await.unwrap();
    b.wait_card("kftc", "active").await;
    let deadline = Instant::now() + WAIT;
    while b.client.windows().await.unwrap().len() > 1 {
        assert!(Instant::now() < deadline, "the popup did not close itself");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(b.text("#kftc [data-role=badge]").await, "Active");
    let facts = b.text("#kftc [data-role=facts]").await;
    assert!(facts.contains("inquiry") || facts.contains("login"), "scopes shown: {facts}");
    assert!(facts.contains("(in ") && facts.contains(" days)"), "relative expiry shown: {facts}");

    // Accounts with balances.
    b.wait_for("an account", "document.querySelectorAll('#kftc .account').length > 0").await;
    b.wait_for("a balance", "document.querySelector('#kftc .account [data-role=balance] .amount')").await;
    let balance = b.text("#kftc .account [data-role=balance] .amount").await;
    assert!(balance.contains('₩'), "balance in won: {balance}");
    b.screenshot("kftc-accounts").await;

    // Transactions of the first account, 20 per page, "More" loads the next page.
    b.click("#kftc .account [data-action=transactions]").await;
    let first = b.wait_for("transactions", "document.querySelectorAll('#kftc .tx-list li').length").await.as_u64().unwrap();
    assert!(first <= 20, "at most 20 per page, got {first}");
    let has_more = b.js("return !!document.querySelector('#kftc [data-action=more]')").await.as_bool().unwrap();
    if has_more {
        assert_eq!(first, 20, "a full first page before More");
        b.click("#kftc [data-action=more]").await;
        b.wait_for("the second page", &format!("document.querySelectorAll('#kftc .tx-list li').length > {first}")).await;
    }
    b.screenshot("kftc-transactions").await;

    // Toss: connection test.
    b.click("#toss [data-action=test]").await;
    b.wait_for("the test result", "document.querySelector('#toss [data-role=test-result]').dataset.ok === 'true'").await;
    let result = b.text("#toss [data-role=test-result]").await;
    assert!(result.contains("ms"), "latency shown: {result}");

    // Toss: a USER_PERSONAL verification, completed at once by the sandbox.
    b.fill("#v-name", "홍길동").await;
    b.fill("#v-phone", "01012345678").await;
    b.fill("#v-birthday", "19900101").await;
    b.click("#toss [data-role=verify-form] button[type=submit]").await;
    b.wait_for("the verification to complete", "document.querySelector('#toss [data-role=verification]').dataset.status === 'COMPLETED'").await;
    b.wait_for("the verified identity", "document.querySelector('#toss [data-role=identity] dd')").await;
    b.screenshot("toss-verified").await;

    // Disconnect both, through the confirm dialog.
    for provider in ["kftc", "toss"] {
        if b.card_state(provider).await == "not_connected" {
            continue;
        }
        b.click(&format!("#{provider} [data-action=disconnect]")).await;
        b.wait_for("the confirm dialog", "document.getElementById('confirm').open").await;
        b.screenshot(&format!("{provider}-confirm")).await;
        b.click("#confirm-ok").await;
        b.wait_card(provider, "not_connected").await;
    }
    assert_eq!(
        b.js("return document.querySelectorAll('#kftc .connection, #kftc [data-role=accounts]').length").await,
        0,
        "no KFTC connection or accounts left"
    );
    b.screenshot("disconnected").await;
    b.finish().await;
}

/// A connect link made without the browser (by the app's backend, or by someone else for their
/// own account) opens on a confirmation page naming the account; continuing in the real browser
/// (its own Origin, Sec-Fetch-Site and cookies) reaches the consent page and connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_made_elsewhere_asks_for_confirmation_first() {
    let app = Spawn::new(Backend::Sqlite).start().await;
    let token = register_via_api(&app, "mina@example.com").await;
    let launch = app.kftc_authorize_backend(&token).await;
    let Some(b) = Browser::start(&app, "ko-KR").await else { return };

    b.client.goto(&launch).await.expect("open the link");
    b.wait_for("the confirmation page", "document.getElementById('launch-confirm')").await;
    assert_eq!(b.text("#account-label").await, "mi***@ex*****.com");
    assert!(b.text("h1").await.contains("연결할 계정 확인"));
    // Styled by the stylesheet (no inline style is allowed): the confirm button is the primary one.
    let styled = b.js("return getComputedStyle(document.querySelector('button.primary')).backgroundColor").await;
    assert_ne!(styled, "rgba(0, 0, 0, 0)", "the stylesheet applies");
    let errors = b.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    b.screenshot("kftc-launch-confirm").await;

    b.click("button[value=confirm]").await;
    b.wait_for("the consent page", "document.querySelector('button.approve')").await;
    b.click("button.approve").await;
    b.wait_for("the result page", "document.getElementById('result') && document.getElementById('result').dataset.ok").await;
    assert_eq!(b.js("return document.getElementById('result').dataset.ok").await, "true");
    assert_eq!(app.status_of(&token, "kftc").await["connected"], true);

    // The link is spent: opened again it is refused.
    b.client.goto(&launch).await.expect("open the link again");
    b.wait_for("the refusal", "document.getElementById('result')").await;
    assert_eq!(b.js("return document.getElementById('result').dataset.code").await, "state_already_used");
    b.finish().await;
}

/// axe-core's browser build, installed by `.ci/run` (`npm ci --prefix crates/qetta/tests/peers/axe`),
/// or `None` (skip) outside CI.
fn axe_source() -> Option<String> {
    let path = std::env::var("QETTA_AXE_JS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/axe/node_modules/axe-core/axe.min.js"));
    match std::fs::read_to_string(&path) {
        Ok(s) => Some(s),
        Err(e) => crate::support::unavailable(&format!("axe-core at {}: {e} (npm ci --prefix crates/qetta/tests/peers/axe)", path.display())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_passes_the_axe_accessibility_rules() {
    let Some(axe) = axe_source() else { return };
    let app = Spawn::new(Backend::Sqlite).start().await;
    let token = register_via_api(&app, "a11y@example.com").await;
    let mut found = Vec::new();
    for lang in ["en-US", "ko-KR"] {
        let Some(b) = Browser::start(&app, lang).await else { return };
        for path in ["/login", "/register"] {
            b.goto(path).await;
            b.wait_for("page scripts ran", "document.getElementById('auth-title').textContent.length > 0").await;
            found.extend(b.accessibility_violations(&axe).await.into_iter().map(|v| (format!("{lang} {path}"), v)));
        }
        b.goto(&format!("/oauth#token={token}")).await;
        b.wait_card("kftc", "not_connected").await;
        found.extend(b.accessibility_violations(&axe).await.into_iter().map(|v| (format!("{lang} /oauth"), v)));
        b.finish().await;
    }
    // The pages of the connect flow: the confirmation of a link made elsewhere, and a result.
    let Some(b) = Browser::start(&app, "en-US").await else { return };
    let launch = app.kftc_authorize_backend(&token).await;
    b.client.goto(&launch).await.unwrap();
    b.wait_for("the confirmation page", "document.querySelector('form')").await;
    found.extend(b.accessibility_violations(&axe).await.into_iter().map(|v| ("launch confirmation".to_string(), v)));
    b.goto("/api/v1/oauth/kftc/callback?state=unknown-state&code=x").await;
    found.extend(b.accessibility_violations(&axe).await.into_iter().map(|v| ("callback result".to_string(), v)));
    b.finish().await;
    assert!(found.is_empty(), "serious or critical accessibility violations: {found:#?}");
}

/// The page lists every provider of the catalogue with its connections: Kakao connected twice
/// (the sandbox people `kim` and `lee`, each through the popup and the simulated Kakao consent
/// page) shows two rows; one is renamed with the keyboard, the other disconnected after the
/// confirmation; Naver stays offered. Both languages pass axe-core with connections shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_kakao_connections_are_listed_renamed_and_disconnected() {
    let app = Spawn::new(Backend::Sqlite).start().await;
    let token = register_via_api(&app, "duo@example.com").await;
    let Some(b) = Browser::start(&app, "en-US").await else { return };

    // Signed in on the login page (not a handed-over session: no account confirmation).
    b.goto("/login").await;
    b.wait_for("the login page", "document.getElementById('auth-title').textContent === 'Sign in'").await;
    b.fill("#email", "duo@example.com").await;
    b.fill("#password", "correct horse 7").await;
    b.click("#auth-submit").await;
    b.wait_for("the /oauth page", "location.pathname === '/oauth'").await;

    // Every provider of the catalogue, in its order.
    b.wait_card("kakao", "not_connected").await;
    b.wait_card("naver", "not_connected").await;
    let order = b.js("return [...document.querySelectorAll('#providers > section.provider:not([hidden])')].map((s) => s.id)").await;
    assert_eq!(order, json!(["kftc", "toss", "kakao", "naver"]));
    assert_eq!(b.text("#kakao h2").await, "Kakao Login");
    assert_eq!(b.text("#kakao [data-action=connect]").await, "Connect");

    // First Kakao account, with a label, as kim.
    b.fill("#kakao-new-label", "personal").await;
    b.click("#kakao [data-action=connect]").await;
    b.approve_in_popup("Kakao consent as kim", "form:has(input[name=sandbox_user][value=kim]) button.approve").await;
    b.wait_for("one Kakao row", "document.querySelectorAll('#kakao .connection').length === 1").await;
    b.wait_card("kakao", "active").await;
    assert_eq!(b.text("#kakao .connection [data-role=name]").await, "personal");
    assert_eq!(b.text("#kakao .connection [data-role=status]").await, "Active");
    let facts = b.text("#kakao .connection [data-role=facts]").await;
    assert!(facts.contains("(in ") && facts.contains('*'), "relative expiry and the masked account shown: {facts}");
    assert_eq!(b.js("return document.getElementById('kakao-new-label').value").await, "", "the label field is emptied");

    // A second Kakao account, without a label, as lee: shown by its masked account.
    assert_eq!(b.text("#kakao [data-action=connect]").await, "Add another");
    b.click("#kakao [data-action=connect]").await;
    b.approve_in_popup("Kakao consent as lee", "form:has(input[name=sandbox_user][value=lee]) button.approve").await;
    b.wait_for("two Kakao rows", "document.querySelectorAll('#kakao .connection').length === 2").await;
    let listed = app.connections(&token).await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    let personal = listed.iter().find(|c| c["label"] == "personal").expect("the labelled one")["id"].as_str().unwrap().to_string();
    let second = listed.iter().find(|c| c["label"].is_null()).expect("the unlabelled one");
    let (second_id, second_account) = (second["id"].as_str().unwrap().to_string(), second["account"].as_str().unwrap().to_string());
    let row = |id: &str| format!("#kakao .connection[data-id=\"{id}\"]");
    assert_eq!(b.text(&format!("{} [data-role=name]", row(&second_id))).await, second_account);
    let html = b.js("return document.body.innerHTML").await;
    assert!(!html.as_str().unwrap().contains("access_token"), "no token on the page");
    // The sandbox's consent pages in the popup have no icon: Chromium's /favicon.ico 404 is theirs.
    let errors: Vec<String> = b.console_errors().await.into_iter().filter(|e| !e.contains("/favicon.ico ")).collect();
    assert!(errors.is_empty(), "console errors: {errors:#?}");

    // A KFTC connection beside them, through the same flow: its bank accounts in its row.
    b.click("#kftc [data-action=connect]").await;
    b.approve_in_popup("the KFTC consent page", "button.approve").await;
    b.wait_card("kftc", "active").await;
    b.wait_for("a KFTC balance", "document.querySelector('#kftc .connection .account [data-role=balance] .amount')").await;

    // The screenshot of the README: the whole page with its connections.
    let height = b.js("return document.documentElement.scrollHeight").await.as_u64().unwrap();
    b.client.set_window_size(1280, height as u32 + 140).await.unwrap();
    b.screenshot("oauth-connections").await;
    // A 360 px wide phone: the rows (long masked accounts, chips, actions) scroll nothing sideways.
    b.client.set_window_size(360, 780).await.unwrap();
    b.wait_for("a narrow viewport", "window.innerWidth <= 360").await;
    let overflow = b.js("return document.documentElement.scrollWidth - document.documentElement.clientWidth").await;
    assert_eq!(overflow, 0, "horizontal overflow with connections shown");
    b.screenshot("oauth-connections-360").await;
    b.client.set_window_size(1280, 900).await.unwrap();

    // Rename the second one with the keyboard: Enter on Rename opens the form with the focus in
    // its field; Enter saves; the focus returns to Rename.
    let rename = b.client.find(Locator::Css(&format!("{} [data-action=rename]", row(&second_id)))).await.unwrap();
    rename.send_keys("\u{E007}").await.unwrap();
    b.wait_for(
        "the rename field focused",
        "document.activeElement && document.activeElement.name === 'label' && document.activeElement.closest('form.rename')",
    )
    .await;
    assert_eq!(b.js(&format!("return document.querySelector('{} [data-action=rename]').getAttribute('aria-expanded')", row(&second_id))).await, "true");
    let field = b.client.find(Locator::Css(&format!("{} form.rename input", row(&second_id)))).await.unwrap();
    field.send_keys("work\u{E007}").await.unwrap();
    b.wait_for("the new name", &format!("document.querySelector('{} [data-role=name]').textContent === 'work'", row(&second_id))).await;
    b.wait_for("focus back on Rename", "document.activeElement && document.activeElement.dataset.action === 'rename'").await;
    assert!(app.connections(&token).await.iter().any(|c| c["id"] == second_id.as_str() && c["label"] == "work"), "renamed in the service");

    // A refused rename shows the service's message and its request id.
    b.click(&format!("{} [data-action=rename]", row(&second_id))).await;
    b.fill(&format!("{} form.rename input", row(&second_id)), "x\u{200B}y").await;
    b.click(&format!("{} [data-action=save]", row(&second_id))).await;
    let shown = b.wait_for("the rename error", &format!("document.querySelector('{} [data-role=row-error] .request-id')?.textContent", row(&second_id))).await;
    assert!(shown.as_str().unwrap().starts_with("Request ID: "), "{shown}");
    let message = b.text(&format!("{} [data-role=row-error]", row(&second_id))).await;
    assert!(message.contains("invisible"), "the service's message: {message}");
    // Chromium logs the refused request itself; nothing else went wrong.
    let errors = b.console_errors().await;
    assert!(errors.len() == 1 && errors[0].contains("status of 422"), "console errors: {errors:#?}");
    b.click(&format!("{} [data-action=cancel]", row(&second_id))).await;
    b.wait_for(
        "the form and its error gone",
        &format!("document.querySelector('{r} form.rename').hidden && document.querySelector('{r} [data-role=row-error]').hidden", r = row(&second_id)),
    )
    .await;
    assert_eq!(b.text(&format!("{} [data-role=name]", row(&second_id))).await, "work", "a refused rename changes nothing");

    // Disconnect the first, after the confirmation naming it.
    b.click(&format!("{} [data-action=disconnect]", row(&personal))).await;
    b.wait_for("the confirm dialog", "document.getElementById('confirm').open").await;
    assert!(b.text("#confirm-title").await.contains("personal"));
    b.click("#confirm-ok").await;
    b.wait_for("one Kakao row left", "document.querySelectorAll('#kakao .connection').length === 1").await;
    assert_eq!(b.text("#kakao .connection [data-role=name]").await, "work");
    let left: Vec<Value> = app.connections(&token).await.into_iter().filter(|c| c["provider"] == "kakao").collect();
    assert_eq!((left.len(), left[0]["id"].as_str()), (1, Some(second_id.as_str())), "{left:?}");
    b.wait_card("kakao", "active").await;

    // Naver is offered.
    b.wait_card("naver", "not_connected").await;
    assert!(b
        .js("return !document.querySelector('#naver [data-action=connect]').hidden && !document.querySelector('#naver [data-role=add-form]').hidden")
        .await
        .as_bool()
        .unwrap());
    assert_eq!(b.text("#naver [data-action=connect]").await, "Connect");
    b.screenshot("oauth-connections-after").await;

    // Accessibility with connections shown, in both languages.
    if let Some(axe) = axe_source() {
        let mut found: Vec<(String, (String, Vec<String>))> =
            b.accessibility_violations(&axe).await.into_iter().map(|v| ("en /oauth".to_string(), v)).collect();
        b.click("#lang-toggle").await;
        b.wait_for("Korean", "document.documentElement.lang === 'ko'").await;
        assert_eq!(b.text("#kakao h2").await, "카카오 로그인");
        assert_eq!(b.text("#kakao .connection [data-role=status]").await, "사용 중");
        assert_eq!(b.text("#naver [data-action=connect]").await, "연결하기");
        found.extend(b.accessibility_violations(&axe).await.into_iter().map(|v| ("ko /oauth".to_string(), v)));
        assert!(found.is_empty(), "serious or critical accessibility violations: {found:#?}");
    }
    let errors = b.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    b.finish().await;
}

/// A KFTC connection whose grant died (101 days later on both clocks) turns into "needs
/// re-consent" on the page as soon as KFTC refuses a call; Reconnect renews that same connection
/// through the popup, and its accounts come back. The same for a bank consent that expired
/// ("consent expired", 409 `consent_expired`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_needing_consent_is_reconnected_in_place() {
    let app = Spawn::new(Backend::Sqlite).start().await;
    let token = register_via_api(&app, "again@example.com").await;
    let Some(b) = Browser::start(&app, "ko-KR").await else { return };
    b.goto("/login").await;
    b.wait_for("the login page", "document.getElementById('auth-title').textContent.length > 0").await;
    b.fill("#email", "again@example.com").await;
    b.fill("#password", "correct horse 7").await;
    b.click("#auth-submit").await;
    b.wait_card("kftc", "not_connected").await;
    b.click("#kftc [data-action=connect]").await;
    b.approve_in_popup("the KFTC consent page", "button.approve").await;
    b.wait_for("a KFTC balance", "document.querySelector('#kftc .connection .account [data-role=balance] .amount')").await;
    let id = app.connections(&token).await[0]["id"].as_str().unwrap().to_string();

    app.sandbox_control("kftc", "clock", json!({"advance_seconds": 101 * 86_400})).await;
    app.clock.advance(101 * 86_400);
    b.client.refresh().await.unwrap();
    b.wait_card("kftc", "needs_reauth").await;
    assert_eq!(b.text("#kftc .connection [data-role=status]").await, "재동의 필요");
    let note = b.text("#kftc .connection [data-role=status-note]").await;
    assert!(note.contains("다시 연결하기"), "the status explains what to do: {note}");
    b.screenshot("kftc-needs-reconsent").await;
    if let Some(axe) = axe_source() {
        let found = b.accessibility_violations(&axe).await;
        assert!(found.is_empty(), "serious or critical accessibility violations with a connection needing consent: {found:#?}");
    }

    b.click("#kftc .connection [data-action=reconnect]").await;
    b.approve_in_popup("the KFTC consent page again", "button.approve").await;
    b.wait_card("kftc", "active").await;
    b.wait_for("the balance again", "document.querySelector('#kftc .connection .account [data-role=balance] .amount')").await;
    let list = app.connections(&token).await;
    assert_eq!((list.len(), list[0]["id"].as_str(), list[0]["status"].as_str()), (1, Some(id.as_str()), Some("active")), "renewed in place: {list:?}");
    assert!(b.js("return !document.querySelector('#kftc [data-action=reconnect]')").await.as_bool().unwrap(), "no Reconnect once active");

    // The bank's consent period ends (A0316): the row says "consent expired", and Reconnect renews it.
    app.sandbox_control("kftc", "expire-consent", json!({})).await;
    b.client.refresh().await.unwrap();
    b.wait_card("kftc", "consent_expired").await;
    assert_eq!(b.text("#kftc .connection [data-role=status]").await, "동의 만료");
    let note = b.text("#kftc .connection [data-role=status-note]").await;
    assert!(note.contains("동의 기간이 끝났습니다"), "{note}");
    b.click("#kftc .connection [data-action=reconnect]").await;
    b.approve_in_popup("the KFTC consent page a third time", "button.approve").await;
    b.wait_card("kftc", "active").await;
    b.wait_for("the balance once more", "document.querySelector('#kftc .connection .account [data-role=balance] .amount')").await;
    let list = app.connections(&token).await;
    assert_eq!((list.len(), list[0]["id"].as_str()), (1, Some(id.as_str())), "{list:?}");

    // Remove an account (confirmed in the dialog): gone on the page and at the API; then add
    // accounts to the same consent (KFTC authorize_account): it is back.
    let before = app.accounts(&token).await.len();
    assert!(before >= 2, "several accounts to start with");
    b.click("#kftc .connection .account [data-action=remove-account]").await;
    b.wait_for("the confirmation", "document.getElementById('confirm').open").await;
    b.click("#confirm-ok").await;
    b.wait_for("one account fewer", &format!("document.querySelectorAll('#kftc .connection .account').length === {}", before - 1)).await;
    assert_eq!(app.accounts(&token).await.len(), before - 1);
    b.click("#kftc .connection [data-action=add-accounts]").await;
    b.approve_in_popup("the KFTC add-accounts page", "button.approve").await;
    b.wait_for("the account back", &format!("document.querySelectorAll('#kftc .connection .account').length === {before}")).await;
    assert_eq!(app.accounts(&token).await.len(), before);
    assert_eq!(app.connections(&token).await.len(), 1, "the same connection");
    let errors: Vec<String> = b.console_errors().await.into_iter().filter(|e| !e.contains("/favicon.ico ") && !e.contains("status of 409")).collect();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    b.finish().await;
}

/// With every provider off (`QETTA_SANDBOX=off`, nothing configured), every card of the
/// catalogue is still there and says it is not available on this server, with nothing to click.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_not_set_up_here_say_so() {
    let app = Spawn::new(Backend::Sqlite).var("QETTA_SANDBOX", "off").start().await;
    let token = register_via_api(&app, "off@example.com").await;
    let Some(b) = Browser::start(&app, "en-US").await else { return };
    b.goto(&format!("/oauth#token={token}")).await;
    for p in ["kftc", "toss", "kakao", "naver"] {
        b.wait_card(p, "not_configured").await;
        assert_eq!(b.text(&format!("#{p} [data-role=badge]")).await, "Not available on this server", "{p}");
    }
    let clickable = b.js("return [...document.querySelectorAll('#providers button, #providers input')].filter((e) => e.offsetParent !== null).length").await;
    assert_eq!(clickable, 0, "no visible button or field on a provider that is not set up");
    assert!(b.text("#kakao [data-role=availability]").await.contains("not set this provider up"));
    b.click("#lang-toggle").await;
    b.wait_for("Korean", "document.documentElement.lang === 'ko'").await;
    assert_eq!(b.text("#naver [data-role=badge]").await, "이 서버에서는 사용할 수 없음");
    let errors = b.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    b.finish().await;
}

/// Signs in through the login form and waits for the /oauth page it leads to.
async fn sign_in(b: &Browser, email: &str) {
    b.goto("/login").await;
    b.wait_for("the login page", "document.getElementById('auth-title').textContent.length > 0").await;
    b.fill("#email", email).await;
    b.fill("#password", "correct horse 7").await;
    b.click("#auth-submit").await;
    b.wait_for("the /oauth page", "location.pathname === '/oauth'").await;
}

/// The figure with `data-figure=id` on the admin page, as shown.
async fn figure(b: &Browser, id: &str) -> String {
    b.text(&format!("[data-figure=\"{id}\"]")).await
}

/// An admin signs in and sees, in English and in Korean, the numbers of the seeded connections
/// and refreshes, drawn as SVG charts by the page's own script; searches a user and opens their
/// connections and audit trail; a signed-in non-admin sees the "administrators only" notice.
/// Every state passes axe-core with no serious or critical violation, with no console error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_sees_the_seeded_figures_in_both_languages() {
    let Some(axe) = axe_source() else { return };
    let app = Spawn::new(Backend::Sqlite).var("QETTA_REFRESHER_ENABLED", "false").start().await;
    crate::admin::admin_token(&app, "boss@example.com").await;
    app.register("user@example.com").await;
    let u1 = crate::admin::seed_set(&app).await;
    let mut found = Vec::new();
    for (lang, active_badge) in [("en-US", "Active"), ("ko-KR", "사용 중")] {
        let Some(b) = Browser::start(&app, lang).await else { return };
        sign_in(&b, "boss@example.com").await;
        b.goto("/admin").await;
        b.wait_for("the figures", "document.getElementById('dashboard').dataset.state === 'ready'").await;
        for (id, want) in [
            ("kftc.connections.total", "6"),
            ("kftc.connections.active", "4"),
            ("kftc.connections.expiring_24h", "1"),
            ("kftc.connections.expiring_7d", "2"),
            ("kftc.connections.expired", "1"),
            ("kftc.connections.needs_reconsent", "1"),
            ("kftc.connections.revoked", "1"),
            ("kftc.refreshes.24h.ok", "3"),
            ("kftc.refreshes.24h.failed", "1"),
            ("kftc.refreshes.7d.ok", "5"),
            ("kftc.refreshes.7d.needs_reauth", "1"),
            ("naver.connections.active", "1"),
            ("refresher.due", "2"),
        ] {
            assert_eq!(figure(&b, id).await, want, "{lang} {id}");
        }
        let charts = b.js("return document.querySelectorAll('#stats-kftc svg.chart rect').length").await.as_u64().unwrap();
        assert!(charts >= 6 + 3, "SVG bars drawn: {charts}");
        assert_eq!(b.js("return document.documentElement.lang").await, &lang[..2]);
        b.screenshot(&format!("admin-{}", &lang[..2])).await;

        b.fill("#q", "seed-1@").await;
        b.click("#user-search button[type=submit]").await;
        b.wait_for("a search result", &format!("document.querySelector('.user-row[data-user-id=\"{u1}\"]')")).await;
        b.click(&format!(".user-row[data-user-id=\"{u1}\"] [data-action=view]")).await;
        b.wait_for("the user's connections", "document.querySelector('table[data-role=connections] tr[data-provider=kftc]')").await;
        assert_eq!(b.text("table[data-role=connections] tr[data-provider=kftc] .badge").await, active_badge);
        let rows = b.js("return document.querySelectorAll('table[data-role=audit] tbody tr').length").await.as_u64().unwrap();
        assert_eq!(rows, 12, "the user's audit entries");
        let page = b.js("return document.body.innerText").await;
        assert!(!page.as_str().unwrap().contains("access_token"), "no token on the page");
        b.screenshot(&format!("admin-user-{}", &lang[..2])).await;
        found.extend(b.accessibility_violations(&axe).await.into_iter().map(|v| (format!("{lang} /admin"), v)));
        let errors = b.console_errors().await;
        assert!(errors.is_empty(), "console errors: {errors:#?}");
        b.finish().await;
    }
    // Someone signed in who is not an administrator: the notice, no figures.
    let Some(b) = Browser::start(&app, "en-US").await else { return };
    sign_in(&b, "user@example.com").await;
    b.goto("/admin").await;
    b.wait_for("the notice", "!document.getElementById('forbidden').hidden").await;
    assert!(b.js("return document.getElementById('dashboard').hidden").await.as_bool().unwrap());
    assert_eq!(b.js("return document.querySelectorAll('[data-figure]').length").await, 0);
    found.extend(b.accessibility_violations(&axe).await.into_iter().map(|v| ("en-US /admin forbidden".to_string(), v)));
    b.screenshot("admin-forbidden").await;
    b.finish().await;
    assert!(found.is_empty(), "serious or critical accessibility violations: {found:#?}");
}

/// The operations of the OpenAPI document, as `"METHOD /path"`, sorted.
fn document_operations(doc: &Value) -> Vec<String> {
    let methods = ["get", "put", "post", "patch", "delete", "head", "options"];
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in methods {
            if item.get(m).is_some() {
                out.push(format!("{} {path}", m.to_uppercase()));
            }
        }
    }
    out.sort();
    out
}

/// `/docs`, the API reference rendered by the page's own script from `GET /api/v1/openapi.json`:
/// every operation of the document is listed (with its `$ref`s resolved: no `$ref` text on the
/// page), the filter narrows the list, "try it" calls the service with the session's JWT and
/// shows status and body (a 200 and a refused 4xx), never sends a service key (signed out: no
/// Authorization at all, the 401 shown in place), and is not
/// offered for the service-key-only operations; every resource the page loads comes from the
/// service's own origin (Resource Timing), the CSP would refuse any other, no console error, and
/// axe-core finds no serious or critical violation in English or Korean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_reference_lists_every_operation_and_tries_one_with_the_session() {
    let app = Spawn::new(Backend::Sqlite).start().await;
    let r = app.get("/docs", None).await;
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_string();
    for directive in ["default-src 'self'", "script-src 'self'", "connect-src 'self'", "img-src 'self' data:", "style-src 'self'"] {
        assert!(csp.contains(directive), "/docs CSP has {directive}: {csp}");
    }
    let html = r.text().await.unwrap();
    assert!(!html.contains("http://") && !html.contains("https://"), "no absolute URL in the shell");
    let doc: Value = app.get("/api/v1/openapi.json", None).await.json().await.unwrap();
    let want = document_operations(&doc);
    assert!(want.len() > 40, "the document has its operations: {}", want.len());

    let token = register_via_api(&app, "docs@example.com").await;
    let axe = axe_source();
    let mut found = Vec::new();
    for (lang, title) in [("en-US", "API reference"), ("ko-KR", "API 레퍼런스")] {
        let Some(b) = Browser::start(&app, lang).await else { return };
        b.goto("/docs").await;
        b.js(&format!("sessionStorage.setItem('qetta.token', {}); sessionStorage.setItem('qetta.email', 'docs@example.com');", json!(token))).await;
        b.client.refresh().await.unwrap();
        b.wait_for("the rendered reference", "document.getElementById('operations').dataset.state === 'ready'").await;
        assert_eq!(b.text("h1").await, title);
        assert_eq!(b.js("return document.documentElement.lang").await, &lang[..2]);
        assert_eq!(b.text("#who").await, "docs@example.com");

        // Every operation, once each (grouped by tag on the page, so compared sorted); `$ref`s resolved.
        let mut listed: Vec<String> =
            serde_json::from_value(b.js("return [...document.querySelectorAll('details.op')].map((e) => e.dataset.op)").await).unwrap();
        listed.sort();
        assert_eq!(listed, want, "{lang}: the listed operations");
        let text = b.js("return document.getElementById('operations').textContent").await;
        assert!(!text.as_str().unwrap().contains("#/components/"), "{lang}: an unresolved $ref is shown");

        // The filter.
        b.fill("#filter", "openapi.json").await;
        let shown = b.js("return [...document.querySelectorAll('details.op')].filter((e) => !e.hidden).map((e) => e.dataset.op)").await;
        assert_eq!(shown, json!(["GET /api/v1/openapi.json"]), "{lang}: filtered");
        b.fill("#filter", "").await;
        b.js("document.getElementById('filter').dispatchEvent(new Event('input'))").await;
        let hidden = b.js("return document.querySelectorAll('details.op[hidden]').length").await;
        assert_eq!(hidden, 0, "{lang}: the cleared filter shows everything");

        // Record what "try it" sends.
        b.js("window.sent = []; const f = window.fetch; window.fetch = (u, o) => { window.sent.push({ url: String(u), headers: (o && o.headers) || {} }); return f(u, o); };").await;

        // A call that answers 200 with the caller's data.
        let op = "#op-get-api-v1-oauth-status";
        b.click(&format!("{op} > summary")).await;
        b.click(&format!("{op} form button[type=submit]")).await;
        let status = b.wait_for("the try-it answer", &format!("document.querySelector('{op} [data-role=result] .result').dataset.status")).await;
        assert_eq!(status, "200", "{lang}: GET /api/v1/oauth/status");
        let body = b.text(&format!("{op} .response-body")).await;
        let body: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{lang}: a JSON body shown ({e}): {body}"));
        assert!(body.is_object(), "{lang}: {body}");

        // A refused call shows its status and the error body.
        let op = "#op-get-api-v1-connections-id";
        b.click(&format!("{op} > summary")).await;
        b.fill(&format!("{op} input[name=id]"), "not-a-connection").await;
        b.click(&format!("{op} form button[type=submit]")).await;
        let status = b.wait_for("the refused answer", &format!("document.querySelector('{op} [data-role=result] .result').dataset.status")).await;
        let status: u16 = status.as_str().unwrap().parse().unwrap();
        assert!((400..500).contains(&status), "{lang}: a 4xx for an unknown connection, got {status}");
        let body: Value = serde_json::from_str(&b.text(&format!("{op} .response-body")).await).unwrap();
        assert!(body["error"]["code"].is_string() && body["error"]["request_id"].is_string(), "{lang}: the error body: {body}");

        // Both with the session's JWT, neither with a service key.
        let sent = b.js("return window.sent").await;
        let sent = sent.as_array().unwrap();
        assert_eq!(sent.len(), 2, "{lang}: two requests: {sent:?}");
        for s in sent {
            let url = s["url"].as_str().unwrap();
            assert!(url.starts_with("/api/v1/"), "{lang}: relative same-origin URL {url}");
            assert_eq!(s["headers"]["Authorization"], format!("Bearer {token}"), "{lang}: {url}");
            let names: Vec<String> = s["headers"].as_object().unwrap().keys().map(|k| k.to_ascii_lowercase()).collect();
            assert!(!names.iter().any(|n| n.contains("service") || n.contains("key")), "{lang}: {url} sent {names:?}");
        }
        // A service-key-only operation offers no form at all.
        assert_eq!(b.js("return document.querySelectorAll('#op-get-api-v1-webhooks form').length").await, 0, "{lang}: no form for GET /api/v1/webhooks");
        assert_eq!(b.js("return document.querySelectorAll('#op-get-api-v1-webhooks .try .notice').length").await, 1);

        // Nothing was loaded from any other host.
        let origin = b.js("return location.origin").await;
        let resources = b.js("return performance.getEntriesByType('resource').map((e) => e.name)").await;
        let resources = resources.as_array().unwrap();
        assert!(resources.len() >= 5, "{lang}: scripts, stylesheet, document and calls were timed: {resources:?}");
        for name in resources {
            assert!(name.as_str().unwrap().starts_with(&format!("{}/", origin.as_str().unwrap())), "{lang}: a request to another host: {name}");
        }
        // Chromium logs the deliberately refused call as a failed load; anything else is an error.
        let errors: Vec<String> =
            b.console_errors().await.into_iter().filter(|e| !e.contains("/api/v1/connections/not-a-connection - Failed to load resource")).collect();
        assert!(errors.is_empty(), "{lang}: console errors: {errors:#?}");
        b.screenshot(&format!("docs-{}", &lang[..2])).await;
        if let Some(axe) = &axe {
            found.extend(b.accessibility_violations(axe).await.into_iter().map(|v| (format!("{lang} /docs"), v)));
        }

        // Signed out: the page still reads, and "try it" sends no Authorization at all (401 shown).
        if lang == "en-US" {
            b.js("sessionStorage.clear()").await;
            b.client.refresh().await.unwrap();
            b.wait_for("the rendered reference", "document.getElementById('operations').dataset.state === 'ready'").await;
            assert!(!b.js("return document.getElementById('sign-in').hidden").await.as_bool().unwrap(), "a sign-in link is offered");
            b.js("window.sent = []; const f = window.fetch; window.fetch = (u, o) => { window.sent.push({ url: String(u), headers: (o && o.headers) || {} }); return f(u, o); };").await;
            let op = "#op-get-api-v1-oauth-status";
            b.click(&format!("{op} > summary")).await;
            b.click(&format!("{op} form button[type=submit]")).await;
            let status = b.wait_for("the signed-out answer", &format!("document.querySelector('{op} [data-role=result] .result').dataset.status")).await;
            assert_eq!(status, "401");
            let sent = b.js("return window.sent").await;
            assert_eq!(sent.as_array().unwrap().len(), 1);
            assert!(sent[0]["headers"].get("Authorization").is_none(), "no Authorization without a session: {sent}");
            assert_eq!(b.js("return location.pathname").await, "/docs", "a 401 does not navigate away");
        }
        b.finish().await;
    }
    assert!(found.is_empty(), "serious or critical accessibility violations: {found:#?}");
}
