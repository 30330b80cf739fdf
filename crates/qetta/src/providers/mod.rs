//! Clients of the providers' real APIs (and of the sandbox, which speaks the same protocol).
//! These are an independent reading of `shared/providers/SPEC.md`: they share no types with
//! `qetta-sandbox`.

pub mod kftc;
pub mod toss;
pub mod upstream;
