//! Clients of the providers' real APIs (and of the sandbox, which speaks the same protocol).
//! These are an independent reading of `docs/providers.md` ("SPEC A5.1" and the like in comments
//! are its section ids): they share no types with `qetta-sandbox`.

pub mod kftc;
pub mod toss;
pub mod upstream;
