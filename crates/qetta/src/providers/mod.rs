//! Clients of the providers' real APIs (and of the sandbox, which speaks the same protocol).
//! These are an independent reading of `shared/providers/SPEC.md`: they share no types with
//! `qetta-sandbox`. `oauth2` is the generic OAuth 2.0 / OpenID Connect client (any provider by
//! configuration).

pub mod kftc;
pub mod oauth2;
pub mod toss;
pub mod upstream;
