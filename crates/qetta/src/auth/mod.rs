//! Users and authentication: password hashing, JWTs, the request extractor.

pub mod extract;
pub mod jwt;
pub mod password;

pub use extract::AuthUser;
pub use jwt::JwtKeys;
