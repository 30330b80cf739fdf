//! Clients of the providers' real APIs (and of the sandbox, which speaks the same protocol).
//! These are an independent reading of `docs/providers.md` ("SPEC A5.1" and the like in comments
//! are its section ids): they share no types with `qetta-sandbox`. `oauth2` is the generic OAuth
//! 2.0 / OpenID Connect client (any provider by configuration; Kakao and Naver facts cited by part
//! and item of `docs/oauth-providers.md`: K3.4, N6, D1 …).

pub mod kftc;
pub mod oauth2;
pub mod provider;
pub mod toss;
pub mod upstream;

pub use provider::{ConnectError, Provider, ProviderInfo, ProviderKind};
