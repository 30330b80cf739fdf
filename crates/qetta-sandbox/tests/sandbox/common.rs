//! Test harness: a sandbox server per test, an HTTP client that does not follow redirects, and
//! helpers for the KFTC consent flow and the Toss client crypto.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use qetta_sandbox::toss::crypto::Session;
use qetta_sandbox::{Sandbox, SandboxConfig};
use reqwest::{redirect, Client, Response, Url};
use serde_json::{json, Value};
use tokio::sync::oneshot;

pub const CLIENT_ID: &str = qetta_sandbox::config::DEFAULT_KFTC_CLIENT_ID;
pub const CLIENT_SECRET: &str = qetta_sandbox::config::DEFAULT_KFTC_CLIENT_SECRET;
pub const REDIRECT_URI: &str = qetta_sandbox::config::DEFAULT_KFTC_REDIRECT_URI;
pub const STATE: &str = "b80BLsfigm9OokPTjy03elbJqRHOfGSY";

pub struct TestSandbox {
    pub sandbox: Sandbox,
    pub kftc: String,
    pub toss: String,
    pub kakao: String,
    pub naver: String,
    pub http: Client,
    counter: AtomicU64,
    _shutdown: oneshot::Sender<()>,
}

pub async fn start() -> TestSandbox {
    start_with(&[]).await
}

/// Start with configuration read from `vars` (through `SandboxConfig::from_lookup`).
pub async fn start_with(vars: &[(&str, &str)]) -> TestSandbox {
    let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let config = SandboxConfig::from_lookup(move |k| map.get(k).cloned()).expect("config");
    let sandbox = Sandbox::new(config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = oneshot::channel::<()>();
    let s = sandbox.clone();
    tokio::spawn(async move {
        qetta_sandbox::serve(listener, s, async {
            let _ = rx.await;
        })
        .await
        .expect("serve");
    });
    TestSandbox {
        sandbox,
        kftc: format!("http://{addr}/kftc"),
        toss: format!("http://{addr}/toss"),
        kakao: format!("http://{addr}/kakao"),
        naver: format!("http://{addr}/naver"),
        http: Client::builder().redirect(redirect::Policy::none()).build().expect("client"),
        counter: AtomicU64::new(1),
        _shutdown: tx,
    }
}

pub fn query_of(location: &str) -> HashMap<String, String> {
    Url::parse(location).expect("absolute location").query_pairs().into_owned().collect()
}

pub fn location(resp: &Response) -> String {
    resp.headers().get("location").expect("location header").to_str().expect("ascii").to_string()
}

pub struct Tokens {
    pub access: String,
    pub refresh: String,
    pub user_seq_no: String,
    pub body: Value,
}

impl TestSandbox {
    pub fn kftc_url(&self, path: &str) -> String {
        format!("{}{}", self.kftc, path)
    }

    pub fn toss_url(&self, path: &str) -> String {
        format!("{}{}", self.toss, path)
    }

    /// A fresh, well-formed bank_tran_id.
    pub fn bank_tran_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        format!("{}U{:09}", self.sandbox.kftc_client_use_code(), n)
    }

    pub fn authorize_params(&self, scope: &str) -> Vec<(&'static str, String)> {
        vec![
            ("response_type", "code".into()),
            ("client_id", CLIENT_ID.into()),
            ("redirect_uri", REDIRECT_URI.into()),
            ("scope", scope.into()),
            ("state", STATE.into()),
            ("auth_type", "0".into()),
        ]
    }

    pub async fn authorize(&self, params: &[(&str, String)]) -> Response {
        self.http.get(self.kftc_url("/oauth/2.0/authorize")).query(params).send().await.expect("authorize")
    }

    /// Approve as `user` through the script parameters; returns the callback query.
    pub async fn consent(&self, user: &str, scope: &str) -> HashMap<String, String> {
        let mut p = self.authorize_params(scope);
        p.push(("sandbox_user", user.into()));
        p.push(("sandbox_consent", "approve".into()));
        let resp = self.authorize(&p).await;
        assert_eq!(resp.status(), 302, "authorize should redirect");
        let loc = location(&resp);
        assert!(loc.starts_with(REDIRECT_URI), "{loc}");
        query_of(&loc)
    }

    pub async fn token_form(&self, form: &[(&str, &str)]) -> Value {
        self.http.post(self.kftc_url("/oauth/2.0/token")).form(form).send().await.expect("token").json().await.expect("json")
    }

    pub async fn exchange(&self, code: &str) -> Value {
        self.token_form(&[
            ("grant_type", "authorization_code"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("redirect_uri", REDIRECT_URI),
            ("code", code),
        ])
        .await
    }

    pub async fn login(&self, user: &str, scope: &str) -> Tokens {
        let cb = self.consent(user, scope).await;
        let body = self.exchange(&cb["code"]).await;
        assert!(body["access_token"].is_string(), "{body}");
        Tokens {
            access: body["access_token"].as_str().unwrap_or_default().into(),
            refresh: body["refresh_token"].as_str().unwrap_or_default().into(),
            user_seq_no: body["user_seq_no"].as_str().unwrap_or_default().into(),
            body,
        }
    }

    pub async fn refresh(&self, refresh_token: &str, scope: &str) -> Value {
        self.token_form(&[
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("refresh_token", refresh_token),
            ("scope", scope),
        ])
        .await
    }

    pub async fn kftc_get(&self, path: &str, token: &str, query: &[(&str, String)]) -> Value {
        self.http.get(self.kftc_url(path)).bearer_auth(token).query(query).send().await.expect("get").json().await.expect("json")
    }

    pub async fn kftc_post(&self, path: &str, token: &str, body: Value) -> Value {
        self.http.post(self.kftc_url(path)).bearer_auth(token).json(&body).send().await.expect("post").json().await.expect("json")
    }

    pub async fn users(&self) -> Value {
        self.http.get(self.kftc_url("/_sandbox/users")).send().await.expect("users").json().await.expect("json")
    }

    /// fintech_use_num of account `i` of sandbox user `id`.
    pub async fn fintech(&self, id: &str, i: usize) -> String {
        let users = self.users().await;
        let user = users["users"].as_array().expect("users").iter().find(|u| u["id"] == id).expect("user").clone();
        user["accounts"][i]["fintech_use_num"].as_str().expect("fintech").to_string()
    }

    pub async fn balance(&self, token: &str, fintech: &str) -> Value {
        let q = [("bank_tran_id", self.bank_tran_id()), ("fintech_use_num", fintech.to_string()), ("tran_dtime", "20260101120000".to_string())];
        self.kftc_get("/v2.0/account/balance/fin_num", token, &q).await
    }

    pub async fn control(&self, base: &str, path: &str, body: Value) -> Response {
        self.http.post(format!("{base}/_sandbox/{path}")).json(&body).send().await.expect("control")
    }

    pub async fn advance(&self, seconds: i64) {
        let r = self.control(&self.kftc, "clock", json!({ "advance_seconds": seconds })).await;
        assert_eq!(r.status(), 200);
    }

    // ---- Toss -------------------------------------------------------------------------------

    pub async fn toss_token(&self) -> String {
        let body: Value = self
            .http
            .post(self.toss_url("/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", qetta_sandbox::config::TOSS_TEST_CLIENT_ID),
                ("client_secret", qetta_sandbox::config::TOSS_TEST_CLIENT_SECRET),
                ("scope", "ca"),
            ])
            .send()
            .await
            .expect("token")
            .json()
            .await
            .expect("json");
        body["access_token"].as_str().expect("access_token").to_string()
    }

    pub async fn toss_post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        let r = self.http.post(self.toss_url(path)).bearer_auth(token).json(&body).send().await.expect("post");
        let status = r.status().as_u16();
        (status, r.json().await.expect("json"))
    }

    /// A new client session sealed with the sandbox public key.
    pub fn toss_session(&self) -> (Session, String) {
        let s = Session::generate("v1");
        let key = s.seal_for(&self.sandbox.toss_public_key_base64()).expect("seal");
        (s, key)
    }

    pub fn personal_request(&self, path_id: bool) -> Value {
        let (s, key) = self.toss_session();
        let mut v = json!({
            "requestType": "USER_PERSONAL",
            "triggerType": "APP_SCHEME",
            "userName": s.encrypt("홍길동"),
            "userPhone": s.encrypt("01012345678"),
            "userBirthday": s.encrypt("19900101"),
            "sessionKey": key,
        });
        if path_id {
            v["requestUrl"] = json!("intoss://qetta");
        }
        v
    }

    /// Create a USER_PERSONAL request; returns its txId.
    pub async fn toss_request(&self, token: &str) -> String {
        let (status, body) = self.toss_post("/api/v2/sign/user/auth/id/request", token, self.personal_request(true)).await;
        assert_eq!(status, 200, "{body}");
        body["success"]["txId"].as_str().expect("txId").to_string()
    }

    pub async fn toss_action(&self, tx_id: &str, action: &str) -> Response {
        self.control(&self.toss, &format!("requests/{tx_id}"), json!({ "action": action })).await
    }

    pub async fn toss_status(&self, token: &str, tx_id: &str) -> String {
        let (_, body) = self.toss_post("/api/v2/sign/user/auth/id/status", token, json!({ "txId": tx_id })).await;
        body["success"]["status"].as_str().unwrap_or("?").to_string()
    }
}

pub fn error_code(v: &Value) -> &str {
    v["error"]["errorCode"].as_str().unwrap_or("")
}

// ---- OAuth 2.0 / OIDC client helpers (Kakao, Naver) ---------------------------------------------

/// A PKCE pair as a client makes it (RFC 7636): 64-character verifier, S256 challenge.
pub fn pkce_pair() -> (String, String) {
    use base64::Engine;
    use sha2::Digest;
    let verifier: String = {
        use rand::Rng;
        rand::thread_rng().sample_iter(&rand::distributions::Alphanumeric).take(64).map(char::from).collect()
    };
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// Verify an ID token like an OIDC client: key by `kid` from the JWKS, RS256 only, `iss` and
/// `aud` exact, `exp` in the future. Returns the claims.
pub fn verify_id_token(jwks: &Value, token: &str, issuer: &str, audience: &str) -> Result<Value, String> {
    use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
    let header = decode_header(token).map_err(|e| e.to_string())?;
    if header.alg != Algorithm::RS256 {
        return Err(format!("alg {:?}", header.alg));
    }
    let kid = header.kid.ok_or("no kid")?;
    let key = jwks["keys"].as_array().ok_or("no keys")?.iter().find(|k| k["kid"] == kid.as_str()).ok_or_else(|| format!("kid {kid} not in JWKS"))?;
    assert_eq!((key["kty"].as_str(), key["alg"].as_str(), key["use"].as_str()), (Some("RSA"), Some("RS256"), Some("sig")));
    let dk = DecodingKey::from_rsa_components(key["n"].as_str().ok_or("n")?, key["e"].as_str().ok_or("e")?).map_err(|e| e.to_string())?;
    let mut v = Validation::new(Algorithm::RS256);
    v.set_issuer(&[issuer]);
    v.set_audience(&[audience]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    v.leeway = 0;
    decode::<Value>(token, &dk, &v).map(|d| d.claims).map_err(|e| e.to_string())
}

impl TestSandbox {
    pub async fn get_json_bearer(&self, url: &str, token: &str) -> (u16, Value) {
        let r = self.http.get(url).bearer_auth(token).send().await.expect("get");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get_json_url(&self, url: &str) -> (u16, Value) {
        let r = self.http.get(url).send().await.expect("get");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}
