//! The connection core over HTTP: Kakao and Naver (the sandbox's simulators) connected through
//! `POST /api/v1/connections/{provider}/authorize` → launch → consent → callback, several
//! connections per user and provider, re-consent without duplicates, rename, token, refresh,
//! proxy, disconnect with revocation; and the refusals (another user's connection, forged
//! callbacks, bad input, path traversal through the proxy).

use serde_json::{json, Value};

use crate::support::{count, data_attr, error_code, Backend, Callback, Spawn, TestApp};
use crate::{all_backends, both_backends};

all_backends!(kakao_connections_live_side_by_side, one_refresh_however_many_callers);
both_backends!(
    kftc_accounts_are_removed_refreshed_and_added,
    naver_refresh_and_revocation,
    another_users_connection_is_not_there,
    forged_callbacks_store_nothing,
    bad_input_is_refused
);

const SERVICE_KEY: &str = "backend-service-key-for-tests-0123456789";

async fn app(backend: Backend) -> TestApp {
    Spawn::new(backend).var("QETTA_SERVICE_KEY", SERVICE_KEY).start().await
}

impl TestApp {
    /// `POST /api/v1/connections/{provider}/authorize` from `browser` (it gets the initiator
    /// cookie); the launch URL.
    pub async fn authorize_at(&self, browser: &reqwest::Client, token: &str, provider: &str, body: Value) -> String {
        let r = browser.post(self.url(&format!("/api/v1/connections/{provider}/authorize"))).bearer_auth(token).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 200, "authorize {provider}");
        let v: Value = r.json().await.unwrap();
        assert!(v["expires_at"].is_string());
        v["authorize_url"].as_str().unwrap().to_string()
    }

    /// Launch, the simulator's scripted consent as `person`, and the callback URL it sends back.
    pub async fn social_consent(&self, browser: &reqwest::Client, launch: &str, provider: &str, person: &str) -> String {
        let r = browser.get(launch).send().await.unwrap();
        assert_eq!(r.status(), 303, "launch redirects: {}", r.text().await.unwrap_or_default());
        let consent = r.headers()["location"].to_str().unwrap().to_string();
        assert!(consent.starts_with(&self.url(&format!("/sandbox/{provider}/"))), "{consent}");
        assert!(consent.contains("code_challenge_method=S256"), "PKCE S256: {consent}");
        let r = browser.get(format!("{consent}&sandbox_user={person}&sandbox_consent=approve")).send().await.unwrap();
        assert!(r.status().is_redirection(), "consent redirects: {}", r.status());
        r.headers()["location"].to_str().unwrap().to_string()
    }

    pub async fn callback_at(&self, browser: &reqwest::Client, url: &str) -> Callback {
        self.kftc_callback(browser, url).await
    }

    /// The whole flow; the callback's result.
    pub async fn connect(&self, token: &str, provider: &str, person: &str, body: Value) -> Callback {
        let browser = self.browser();
        let launch = self.authorize_at(&browser, token, provider, body).await;
        let cb = self.social_consent(&browser, &launch, provider, person).await;
        self.callback_at(&browser, &cb).await
    }

    pub async fn connections(&self, token: &str) -> Vec<Value> {
        let r = self.get("/api/v1/connections", Some(token)).await;
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()["connections"].as_array().unwrap().clone()
    }

    fn backend_call(&self, method: reqwest::Method, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path)).bearer_auth(token).header("x-qetta-service-key", SERVICE_KEY)
    }
}

async fn kakao_connections_live_side_by_side(backend: Backend) {
    let app = app(backend).await;
    let (token, _) = app.register("mina@example.com").await;

    // The catalogue: every built-in provider, usable here through the sandbox.
    let providers: Value = app.get("/api/v1/providers", Some(&token)).await.json().await.unwrap();
    let names: Vec<&str> = providers["providers"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["kftc", "toss", "kakao", "naver"]);
    let kakao = providers["providers"].as_array().unwrap().iter().find(|p| p["name"] == "kakao").unwrap();
    assert_eq!((kakao["kind"].as_str(), kakao["configured"].as_bool(), kakao["sandbox"].as_bool()), (Some("oidc"), Some(true), Some(true)));

    let cb = app.connect(&token, "kakao", "kim", json!({"label": "personal"})).await;
    assert!(cb.ok && cb.code == "connected", "{cb:?}");
    let list = app.connections(&token).await;
    assert_eq!(list.len(), 1);
    let first = list[0].clone();
    assert_eq!((first["provider"].as_str(), first["label"].as_str(), first["status"].as_str()), (Some("kakao"), Some("personal"), Some("active")));
    let account = first["account"].as_str().unwrap_or_default();
    assert!(!account.is_empty() && account.contains('*'), "the account is shown masked: {account}");
    assert!(!first.to_string().contains("token"), "no token in a listing: {first}");

    // The same Kakao account again: the same connection (its label kept), no duplicate.
    let again = app.connect(&token, "kakao", "kim", json!({})).await;
    assert!(again.ok && again.code == "reconnected", "{again:?}");
    let list = app.connections(&token).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!((list[0]["id"].clone(), list[0]["label"].clone()), (first["id"].clone(), json!("personal")));

    // A second Kakao account: a second connection.
    let second = app.connect(&token, "kakao", "lee", json!({"label": "work"})).await;
    assert!(second.ok && second.code == "connected", "{second:?}");
    let list = app.connections(&token).await;
    assert_eq!(list.len(), 2);
    let id = first["id"].as_str().unwrap();
    let other = list.iter().find(|c| c["id"] != first["id"]).unwrap()["id"].as_str().unwrap().to_string();

    // Rename.
    let r = app.client.patch(app.url(&format!("/api/v1/connections/{id}"))).bearer_auth(&token).json(&json!({"label": "  family  "})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["label"], "family");

    // The token: masked for the user, raw for the backend (and audited).
    let masked: Value = app.get(&format!("/api/v1/connections/{id}/token"), Some(&token)).await.json().await.unwrap();
    assert!(masked.get("access_token").is_none() && masked["token_masked"].as_str().unwrap().contains('…'), "{masked}");
    let raw: Value = app.backend_call(reqwest::Method::GET, &format!("/api/v1/connections/{id}/token"), &token).send().await.unwrap().json().await.unwrap();
    let access = raw["access_token"].as_str().expect("the raw token with the service key").to_string();

    // The proxy: Kakao's profile API with the token injected; the caller's own Authorization
    // (its JWT) never goes upstream.
    let me = app.get(&format!("/api/v1/connections/{id}/proxy/v2/user/me"), Some(&token)).await;
    assert_eq!(me.status(), 200);
    let me: Value = me.json().await.unwrap();
    assert!(me["id"].is_number(), "{me}");
    let other_me: Value = app.get(&format!("/api/v1/connections/{other}/proxy/v2/user/me"), Some(&token)).await.json().await.unwrap();
    assert_ne!(me["id"], other_me["id"], "each connection is its own account");
    for bad in ["../../_sandbox/stats", "v2/%2e%2e/%2e%2e/_sandbox/stats", "v2/user/..%2f..%2f_sandbox/stats"] {
        let r = app.get(&format!("/api/v1/connections/{id}/proxy/{bad}"), Some(&token)).await;
        assert!(r.status() == 400 || r.status() == 404, "{bad}: {}", r.status());
    }

    // Disconnect: unlinked at Kakao (the token is dead there), forgotten here.
    let r = app.client.delete(app.url(&format!("/api/v1/connections/{id}"))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let gone: Value = r.json().await.unwrap();
    assert_eq!((gone["revocation"]["ok"].as_bool(), gone["revocation"]["method"].as_str()), (Some(true), Some("unlink")), "{gone}");
    let at_kakao = app.client.get(app.url("/sandbox/kakao/v2/user/me")).bearer_auth(&access).send().await.unwrap();
    assert_eq!(at_kakao.status(), 401, "the unlinked token is refused by Kakao");
    assert_eq!(app.connections(&token).await.len(), 1);
    assert_eq!(error_code(app.get(&format!("/api/v1/connections/{id}"), Some(&token)).await, 404).await, "connection_not_found");
    let audit: Value = app.get("/api/v1/oauth/audit", Some(&token)).await.json().await.unwrap();
    let actions: Vec<String> =
        audit["entries"].as_array().unwrap().iter().map(|e| format!("{}:{}", e["action"].as_str().unwrap(), e["outcome"].as_str().unwrap())).collect();
    for want in ["callback:connected", "disconnect:ok", "token_fetch:raw_token_returned"] {
        assert!(actions.iter().any(|a| a == want), "{want} in {actions:?}");
    }
}

async fn naver_refresh_and_revocation(backend: Backend) {
    let app = app(backend).await;
    let (token, _) = app.register("jun@example.com").await;
    let cb = app.connect(&token, "naver", "kim", json!({})).await;
    assert!(cb.ok, "{cb:?}");
    let c = app.connections(&token).await.remove(0);
    let id = c["id"].as_str().unwrap();

    // Refreshing on demand is for the app's backend only.
    let r = app.client.post(app.url(&format!("/api/v1/connections/{id}/refresh"))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let before = count(&app.sandbox_stats("naver").await, &["tokens", "issued", "refresh_token"]);
    let r = app.backend_call(reqwest::Method::POST, &format!("/api/v1/connections/{id}/refresh"), &token).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let refreshed: Value = app.get(&format!("/api/v1/connections/{id}"), Some(&token)).await.json().await.unwrap();
    assert!(refreshed["last_refreshed_at"].is_string(), "{refreshed}");
    let after = count(&app.sandbox_stats("naver").await, &["tokens", "issued", "refresh_token"]);
    assert_eq!(after, before + 1, "one refresh at Naver");

    // Disconnect revokes at Naver (RFC 7009 style /oauth2.0/revoke, N6).
    let raw: Value = app.backend_call(reqwest::Method::GET, &format!("/api/v1/connections/{id}/token"), &token).send().await.unwrap().json().await.unwrap();
    let access = raw["access_token"].as_str().unwrap().to_string();
    let gone: Value = app.client.delete(app.url(&format!("/api/v1/connections/{id}"))).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!((gone["revocation"]["ok"].as_bool(), gone["revocation"]["method"].as_str()), (Some(true), Some("rfc7009")), "{gone}");
    let me: Value = app.client.get(app.url("/sandbox/naver/v1/nid/me")).bearer_auth(&access).send().await.unwrap().json().await.unwrap();
    assert_ne!(me["resultcode"], "00", "the revoked token is refused by Naver: {me}");
}

async fn another_users_connection_is_not_there(backend: Backend) {
    let app = app(backend).await;
    let (mina, _) = app.register("mina@example.com").await;
    let (eve, _) = app.register("eve@example.com").await;
    assert!(app.connect(&mina, "kakao", "kim", json!({})).await.ok);
    let id = app.connections(&mina).await[0]["id"].as_str().unwrap().to_string();

    for (method, path) in [
        (reqwest::Method::GET, format!("/api/v1/connections/{id}")),
        (reqwest::Method::PATCH, format!("/api/v1/connections/{id}")),
        (reqwest::Method::DELETE, format!("/api/v1/connections/{id}")),
        (reqwest::Method::GET, format!("/api/v1/connections/{id}/token")),
        (reqwest::Method::GET, format!("/api/v1/connections/{id}/proxy/v2/user/me")),
    ] {
        let r = app.client.request(method.clone(), app.url(&path)).bearer_auth(&eve).json(&json!({"label": "mine"})).send().await.unwrap();
        assert_eq!(error_code(r, 404).await, "connection_not_found", "{method} {path}");
    }
    // Even the backend's key does not reach another user's connection through a JWT naming eve.
    let r = app.backend_call(reqwest::Method::POST, &format!("/api/v1/connections/{id}/refresh"), &eve).send().await.unwrap();
    assert_eq!(error_code(r, 404).await, "connection_not_found");
    // Re-consenting someone else's connection is refused before anything is stored.
    let r = app.post_json("/api/v1/connections/kakao/authorize", &json!({"connection_id": id}), Some(&eve)).await;
    assert_eq!(error_code(r, 404).await, "connection_not_found");
    // Nothing changed for mina.
    let c = &app.connections(&mina).await[0];
    assert_eq!((c["label"].clone(), c["status"].clone()), (Value::Null, json!("active")));
    assert!(app.connections(&eve).await.is_empty());
    // No token: 401.
    assert_eq!(app.get("/api/v1/connections", None).await.status(), 401);
}

async fn forged_callbacks_store_nothing(backend: Backend) {
    let app = app(backend).await;
    let (token, _) = app.register("mina@example.com").await;
    let browser = app.browser();
    let launch = app.authorize_at(&browser, &token, "kakao", json!({})).await;
    let cb = app.social_consent(&browser, &launch, "kakao", "kim").await;
    let url = reqwest::Url::parse(&cb).unwrap();
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().filter(|(k, _)| k != "iss").collect();

    // A mixed-up issuer (RFC 9207: a present `iss` must be the provider's) is refused, and the
    // state is spent.
    let mut forged = url.clone();
    forged.query_pairs_mut().clear().extend_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))).append_pair("iss", "https://evil.example");
    let r = app.callback_at(&browser, forged.as_str()).await;
    assert_eq!((r.ok, r.code.as_str()), (false, "issuer_mismatch"), "{r:?}");
    assert!(app.connections(&token).await.is_empty());
    let replay = app.callback_at(&browser, &cb).await;
    assert_eq!((replay.ok, replay.code.as_str()), (false, "state_replayed"));

    // A callback in another browser (no binding cookie) is refused.
    let launch = app.authorize_at(&browser, &token, "kakao", json!({})).await;
    let cb = app.social_consent(&browser, &launch, "kakao", "kim").await;
    let r = app.callback_at(&app.browser(), &cb).await;
    assert_eq!((r.ok, r.code.as_str()), (false, "state_browser_mismatch"));
    // A state of another provider is not this provider's.
    let launch = app.authorize_at(&browser, &token, "kakao", json!({})).await;
    let cb = app.social_consent(&browser, &launch, "kakao", "kim").await;
    let r = app.callback_at(&browser, &cb.replace("/oauth/kakao/callback", "/oauth/naver/callback")).await;
    assert!(!r.ok && r.code.starts_with("state_"), "{r:?}");
    // The user declining at the provider.
    let launch = app.authorize_at(&browser, &token, "kakao", json!({})).await;
    let r = browser.get(&launch).send().await.unwrap();
    let consent = r.headers()["location"].to_str().unwrap().to_string();
    let r = browser.get(format!("{consent}&sandbox_user=kim&sandbox_consent=deny")).send().await.unwrap();
    let denied = app.callback_at(&browser, r.headers()["location"].to_str().unwrap()).await;
    assert_eq!((denied.ok, denied.code.as_str()), (false, "consent_denied"), "{denied:?}");
    assert_eq!(data_attr(&denied.body, "provider"), "kakao");
    assert!(app.connections(&token).await.is_empty(), "nothing stored by any of them");
}

async fn bad_input_is_refused(backend: Backend) {
    let app = app(backend).await;
    let (token, _) = app.register("mina@example.com").await;
    let r = app.post_json("/api/v1/connections/nope/authorize", &json!({}), Some(&token)).await;
    assert_eq!(error_code(r, 404).await, "provider_unknown");
    let r = app.post_json("/api/v1/connections/toss/authorize", &json!({}), Some(&token)).await;
    assert_eq!(error_code(r, 400).await, "provider_not_connectable");
    let r = app.post_json("/api/v1/connections/kakao/authorize", &json!({"label": "x".repeat(65)}), Some(&token)).await;
    assert_eq!(error_code(r, 422).await, "invalid_label");
    let r = app.post_json("/api/v1/connections/kakao/authorize", &json!({"label": "a\u{202E}b"}), Some(&token)).await;
    assert_eq!(error_code(r, 422).await, "invalid_label");
    let r = app.post_json("/api/v1/connections/kakao/authorize", &json!({"scopes": ["admin"]}), Some(&token)).await;
    assert_eq!(error_code(r, 422).await, "invalid_scopes");
    let r = app.post_json("/api/v1/connections/kakao/authorize", &json!({"scopes": []}), Some(&token)).await;
    assert_eq!(error_code(r, 422).await, "invalid_scopes");
    let r = app.post_json("/api/v1/connections/kakao/authorize", &json!({"surprise": 1}), Some(&token)).await;
    assert_eq!(r.status(), 422, "unknown fields refused");
    let r = app.get(&format!("/api/v1/connections/{}", "x".repeat(300)), Some(&token)).await;
    assert_eq!(error_code(r, 404).await, "connection_not_found");
    let r = app
        .client
        .patch(app.url("/api/v1/connections/abc"))
        .bearer_auth(&token)
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // A launch link opened in another browser (made by the backend, or sent by someone) shows
    // our confirmation page naming the Qetta account first, for every provider.
    let r = app.post_json("/api/v1/connections/naver/authorize", &json!({}), Some(&token)).await;
    let launch = r.json::<Value>().await.unwrap()["authorize_url"].as_str().unwrap().to_string();
    let page = app.browser().get(&launch).send().await.unwrap();
    assert_eq!(page.status(), 200, "not straight to Naver");
    let body = page.text().await.unwrap();
    assert!(body.contains("id=\"launch-confirm\"") && data_attr(&body, "provider") == "naver" && data_attr(&body, "account").contains("***"), "{body}");
    // The generic launch of an unknown provider, and a junk state.
    assert_eq!(app.get("/api/v1/oauth/nope/launch?state=x", None).await.status(), 404);
    assert_eq!(app.get("/api/v1/oauth/kakao/launch?state=%00", None).await.status(), 400);
}

/// 40 callers of the proxy at once on a connection whose token expired: one refresh at Kakao,
/// every call answered with the new token.
async fn one_refresh_however_many_callers(backend: Backend) {
    let app = app(backend).await;
    let (token, _) = app.register("mina@example.com").await;
    assert!(app.connect(&token, "kakao", "kim", json!({})).await.ok);
    let id = app.connections(&token).await[0]["id"].as_str().unwrap().to_string();
    let before = count(&app.sandbox_stats("kakao").await, &["tokens", "issued", "refresh_token"]);
    // Past the access token's lifetime (Kakao: about 6 hours, K3) on our clock.
    app.clock.advance(7 * 3600);
    let path = format!("/api/v1/connections/{id}/proxy/v2/user/me");
    let answers = futures::future::join_all((0..40).map(|_| app.get(&path, Some(&token)))).await;
    assert!(answers.iter().all(|r| r.status() == 200), "{:?}", answers.iter().map(|r| r.status()).collect::<Vec<_>>());
    let after = count(&app.sandbox_stats("kakao").await, &["tokens", "issued", "refresh_token"]);
    assert_eq!(after, before + 1, "40 callers, one refresh");
    let c: Value = app.get(&format!("/api/v1/connections/{id}"), Some(&token)).await.json().await.unwrap();
    assert!(c["last_refreshed_at"].is_string());
}

/// A KFTC connection's accounts over HTTP: one removed (cancelled at KFTC, its balance refused),
/// the list read again from KFTC, accounts added back through `authorize_account`, and the
/// refusals (another user's connection, a Kakao connection, an account not in the list).
async fn kftc_accounts_are_removed_refreshed_and_added(backend: Backend) {
    let app = app(backend).await;
    let (token, _) = app.register("mina@example.com").await;
    let (eve, _) = app.register("eve@example.com").await;
    app.connect_kftc(&token, "kim").await;
    let kftc = app.connections(&token).await.into_iter().find(|c| c["provider"] == "kftc").unwrap();
    let id = kftc["id"].as_str().unwrap().to_string();
    let accounts = app.accounts(&token).await;
    assert!(accounts.len() >= 2, "the sandbox person has several accounts: {accounts:?}");
    let fin = accounts[0]["fintech_use_num"].as_str().unwrap().to_string();

    // Refusals first: nothing changes.
    let r = app.client.delete(app.url(&format!("/api/v1/connections/{id}/accounts/{fin}"))).bearer_auth(&eve).send().await.unwrap();
    assert_eq!(error_code(r, 404).await, "connection_not_found");
    let r = app.post_json(&format!("/api/v1/connections/{id}/accounts/refresh"), &json!({}), Some(&eve)).await;
    assert_eq!(error_code(r, 404).await, "connection_not_found");
    let r = app.client.delete(app.url(&format!("/api/v1/connections/{id}/accounts/{}", "0".repeat(24)))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = app.client.delete(app.url(&format!("/api/v1/connections/{id}/accounts/x"))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(error_code(r, 422).await, "invalid_fintech_use_num");
    assert!(app.connect(&token, "kakao", "kim", json!({})).await.ok);
    let kakao = app.connections(&token).await.into_iter().find(|c| c["provider"] == "kakao").unwrap()["id"].as_str().unwrap().to_string();
    let r = app.post_json(&format!("/api/v1/connections/{kakao}/accounts/refresh"), &json!({}), Some(&token)).await;
    assert_eq!(error_code(r, 400).await, "not_supported");
    let r = app.post_json(&format!("/api/v1/connections/{kakao}/accounts/authorize"), &json!({}), Some(&token)).await;
    assert_eq!(error_code(r, 400).await, "not_supported");
    assert_eq!(app.accounts(&token).await.len(), accounts.len());

    // Remove one: cancelled at KFTC, gone here, its balance refused.
    let r = app.client.delete(app.url(&format!("/api/v1/connections/{id}/accounts/{fin}"))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!((v["removed"].as_bool(), v["already_cancelled"].as_bool()), (Some(true), Some(false)), "{v}");
    assert_eq!(app.accounts(&token).await.len(), accounts.len() - 1);
    assert_eq!(app.get(&format!("/api/v1/oauth/kftc/balance/{fin}"), Some(&token)).await.status(), 404);
    // KFTC's own list agrees: read again, the cancelled account stays away.
    let r = app.post_json(&format!("/api/v1/connections/{id}/accounts/refresh"), &json!({}), Some(&token)).await;
    assert_eq!(r.status(), 200);
    let listed: Value = r.json().await.unwrap();
    assert_eq!(listed["accounts"].as_array().unwrap().len(), accounts.len() - 1, "{listed}");
    assert!(!listed.to_string().contains(&fin));

    // Add accounts to the same consent (authorize_account): the same connection, the account back.
    let browser = app.browser();
    let r = browser.post(app.url(&format!("/api/v1/connections/{id}/accounts/authorize"))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let launch = r.json::<Value>().await.unwrap()["authorize_url"].as_str().unwrap().to_string();
    let r = browser.get(&launch).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let consent = r.headers()["location"].to_str().unwrap().to_string();
    assert!(consent.contains("/oauth/2.0/authorize_account?"), "{consent}");
    let r = browser.get(format!("{consent}&sandbox_user=kim&sandbox_consent=approve")).send().await.unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    let cb = app.callback_at(&browser, r.headers()["location"].to_str().unwrap()).await;
    assert!(cb.ok && cb.code == "reconnected", "{cb:?}");
    let kftc_now: Vec<Value> = app.connections(&token).await.into_iter().filter(|c| c["provider"] == "kftc").collect();
    assert_eq!(kftc_now.len(), 1);
    assert_eq!(kftc_now[0]["id"], id.as_str());
    assert!(app.accounts(&token).await.iter().any(|a| a["fintech_use_num"] == fin.as_str()), "the account is back");
    assert_eq!(app.get(&format!("/api/v1/oauth/kftc/balance/{fin}"), Some(&token)).await.status(), 200);
}
