//! Offline simulators of the KFTC OpenBanking testbed and of Toss Certification (본인확인),
//! built from `docs/providers.md` ("SPEC A5.1" and the like in comments are that document's
//! section ids), and of Kakao Login and Naver Login, built from the Kakao/Naver provider facts
//! (`docs/oauth-providers.md`, cited by part and item: K3.4, N6, D1 …), independently of the `qetta`
//! service.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let sandbox = qetta_sandbox::Sandbox::new(qetta_sandbox::SandboxConfig::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! qetta_sandbox::serve(listener, sandbox, std::future::pending()).await
//! # }
//! ```
//!
//! Mount [`Sandbox::kftc_router`] and [`Sandbox::toss_router`] anywhere (`Router::nest`); every
//! HTML link is relative. Time is the [`SandboxClock`], which tests move forward instead of
//! sleeping.

pub mod clock;
pub mod config;
pub mod control;
pub mod faults;
pub mod kakao;
pub mod kftc;
pub mod naver;
pub mod oidc;
pub mod social;
pub mod stats;
pub mod toss;

use std::future::Future;
use std::sync::Arc;

pub use clock::SandboxClock;
pub use config::{AutoConsent, FaultConfig, KakaoConfig, KftcConfig, NaverConfig, SandboxConfig, SandboxConfigError, TossConfig};
pub use faults::FaultKind;

/// All simulators, sharing one clock. Cheap to clone.
#[derive(Clone)]
pub struct Sandbox {
    clock: SandboxClock,
    kftc: Arc<kftc::KftcSim>,
    toss: Arc<toss::TossSim>,
    kakao: Arc<kakao::KakaoSim>,
    naver: Arc<naver::NaverSim>,
}

impl Sandbox {
    /// Build the simulators. An invalid Toss RSA key in `config` (which
    /// [`SandboxConfig::from_lookup`] already rejects) falls back to the shipped sandbox key.
    pub fn new(config: SandboxConfig) -> Self {
        let clock = SandboxClock::new();
        let kftc = Arc::new(kftc::KftcSim::new(&config, clock.clone()));
        let toss = match toss::TossSim::new(&config, clock.clone()) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "invalid Toss RSA key; using the shipped sandbox key");
                let mut fallback = config.clone();
                fallback.toss.rsa_private_key_pem = config::SANDBOX_TOSS_RSA_PRIVATE_KEY_PEM.to_string();
                match toss::TossSim::new(&fallback, clock.clone()) {
                    Ok(t) => t,
                    Err(e) => panic!("the shipped sandbox RSA key is invalid: {e}"),
                }
            }
        };
        let kakao = Arc::new(kakao::KakaoSim::new(&config, clock.clone()));
        let naver = Arc::new(naver::NaverSim::new(&config, clock.clone()));
        Self { clock, kftc, toss: Arc::new(toss), kakao, naver }
    }

    /// KFTC routes relative to the KFTC base: `/oauth/2.0/authorize`, `/oauth/2.0/token`,
    /// `/v2.0/...`, `/_sandbox/...`.
    pub fn kftc_router(&self) -> axum::Router {
        kftc::router(self.kftc.clone())
    }

    /// Toss routes relative to the Toss base: `/token`, `/api/v2/...`, `/api/v1/...`,
    /// `/_sandbox/...`.
    pub fn toss_router(&self) -> axum::Router {
        toss::router(self.toss.clone())
    }

    /// Kakao Login routes relative to the Kakao base (both of Kakao's hosts): `/oauth/authorize`,
    /// `/oauth/token`, `/.well-known/...`, `/v2/user/me`, `/v1/user/...`, `/_sandbox/...`.
    pub fn kakao_router(&self) -> axum::Router {
        kakao::router(self.kakao.clone())
    }

    /// Naver Login routes relative to the Naver base (nid and openapi hosts): `/oauth2.0/...`,
    /// `/oauth2/...`, `/.well-known/openid-configuration`, `/v1/nid/...`, `/_sandbox/...`.
    pub fn naver_router(&self) -> axum::Router {
        naver::router(self.naver.clone())
    }

    /// Kakao app user id (a Long above 2^53) of a sandbox person (`kim`, `lee`, `park`, `choi`).
    pub fn kakao_user_id(&self, person: &str) -> u64 {
        self.kakao.user_id(person)
    }

    /// Naver pairwise `id` (and ID-token `sub`) of a sandbox person.
    pub fn naver_user_id(&self, person: &str) -> String {
        self.naver.user_id(person)
    }

    /// SubjectPublicKeyInfo DER, base64: the key clients use to RSA-encrypt session keys.
    pub fn toss_public_key_base64(&self) -> String {
        self.toss.keys.public_key_base64().to_string()
    }

    /// The 이용기관코드 every `bank_tran_id` must start with.
    pub fn kftc_client_use_code(&self) -> String {
        self.kftc.client_use_code().to_string()
    }

    /// The clock behind every expiry in both simulators.
    pub fn clock(&self) -> SandboxClock {
        self.clock.clone()
    }
}

/// All routers on one router: KFTC under `/kftc`, Toss under `/toss`, Kakao under `/kakao`,
/// Naver under `/naver`.
pub fn standalone_router(sandbox: &Sandbox) -> axum::Router {
    axum::Router::new()
        .nest("/kftc", sandbox.kftc_router())
        .nest("/toss", sandbox.toss_router())
        .nest("/kakao", sandbox.kakao_router())
        .nest("/naver", sandbox.naver_router())
        .route("/", axum::routing::get(index))
}

async fn index() -> axum::response::Html<&'static str> {
    axum::response::Html(
        "<!DOCTYPE html><html lang=\"ko\"><head><meta charset=\"utf-8\"><title>Qetta sandbox</title>\
         <link rel=\"stylesheet\" href=\"kftc/_sandbox/assets/sandbox.css\"></head><body>\
         <header><h1>Qetta sandbox</h1><p>KFTC OpenBanking testbed and Toss Certification simulators</p></header>\
         <main><div class=\"card\"><ul>\
         <li>KFTC base: <code>kftc/</code> — <a href=\"kftc/_sandbox/users\">users</a>, \
         <a href=\"kftc/_sandbox/stats\">stats</a></li>\
         <li>Toss base: <code>toss/</code> — <a href=\"toss/_sandbox/app\">simulated Toss app</a>, \
         <a href=\"toss/_sandbox/stats\">stats</a></li>\
         <li>Kakao Login base: <code>kakao/</code> — <a href=\"kakao/.well-known/openid-configuration\">discovery</a>, \
         <a href=\"kakao/_sandbox/users\">users</a>, <a href=\"kakao/_sandbox/stats\">stats</a></li>\
         <li>Naver Login base: <code>naver/</code> — <a href=\"naver/.well-known/openid-configuration\">discovery</a>, \
         <a href=\"naver/_sandbox/users\">users</a>, <a href=\"naver/_sandbox/stats\">stats</a></li>\
         </ul></div></main></body></html>",
    )
}

/// Standalone server: KFTC under `/kftc`, Toss under `/toss`, Kakao under `/kakao` and Naver
/// under `/naver` on one listener; runs until
/// `shutdown` resolves.
pub async fn serve(listener: tokio::net::TcpListener, sandbox: Sandbox, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    let app = standalone_router(&sandbox);
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}
