//! Toss Certification (토스인증 본인확인, identity verification), client side.
//!
//! [`crypto`] owns the session keys and field encryption (SPEC B8); [`client`] owns the HTTP
//! calls: access token, verification request, status and result (SPEC B1–B6, B9). Token caching
//! and refresh are the caller's job: Toss asks partners not to call `/token` per request.

pub mod client;
pub mod crypto;

pub use client::{AuthRequest, AuthResult, AuthStatus, PersonalData, TossAccessToken, TossAuthStatus, TossClient, TossError, TossUser};
pub use crypto::{CryptoError, TossPublicKey, TossSession, TOSS_PRODUCTION_PUBLIC_KEY};

#[cfg(test)]
mod client_tests;
