//! Integration tests of the `qetta` service: one test binary, one module per area.
//! Each test starts the real server on 127.0.0.1:0 and drives it over HTTP.
//!
//! PostgreSQL tests use `QETTA_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`).
//! When it is unreachable they are skipped with a message, except under CI (`CI=true`), where
//! they fail. The browser tests (`web_e2e`) need Chromium and chromedriver in the same way.

// Tests say on the console what they skipped and what they measured.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod support;

mod admin;
mod auth_api;
mod connections;
mod faults;
mod hardening;
mod kftc_flow;
mod kftc_round2;
mod kftc_upstream;
mod oauth2_sandbox;
mod oidc_peer;
mod openapi;
mod procs;
mod reliability;
mod sandbox_mode;
mod secrets;
mod startup;
mod store_suite;
mod sync;
mod telemetry;
mod token_core;
mod toss_flow;
mod web_e2e;
mod webhooks;
