//! KFTC OpenBanking client (SPEC part A): OAuth (authorize URL, code exchange, refresh) and the
//! account APIs Qetta needs (user/me, balance, transaction list, unlink).

pub mod client;
pub mod connect;
pub mod error;
pub mod model;
pub mod tran_id;

pub use client::{KftcClient, KftcEndpoints};
pub use connect::{KftcProvider, StoredAccount};
pub use error::KftcError;
