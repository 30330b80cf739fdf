//! Users and authentication: password hashing, JWTs, the request extractor.

pub mod account;
pub mod extract;
pub mod hashing;
pub mod jwt;
pub mod lockout;
pub mod password;
pub mod service_key;

pub use extract::{AppBackend, AuthUser};
pub use hashing::Hasher;
pub use jwt::JwtKeys;
