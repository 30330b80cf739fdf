//! Qetta Connect: connects users' KFTC OpenBanking accounts and Toss identity verification to a
//! fintech app, keeping the providers' tokens encrypted and fresh.

pub mod admin;
pub mod app;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod connections;
pub mod error;
pub mod events;
pub mod http;
pub mod keys;
pub mod local_secrets;
pub mod mask;
pub mod observability;
pub mod operator;
pub mod providers;
pub mod redis_conn;
pub mod shared_state;
pub mod smoke;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod tokens;
pub mod toss_service;
pub mod vault;
pub mod web;
