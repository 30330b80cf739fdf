//! Integration tests: start `qetta_sandbox::serve` on 127.0.0.1:0 and drive it over HTTP.
//! No test sleeps: expiry is exercised by moving the sandbox clock.

#[path = "sandbox/common.rs"]
mod common;
#[path = "sandbox/control.rs"]
mod control;
#[path = "sandbox/kakao.rs"]
mod kakao;
#[path = "sandbox/kftc_accounts.rs"]
mod kftc_accounts;
#[path = "sandbox/kftc_oauth.rs"]
mod kftc_oauth;
#[path = "sandbox/kftc_round2.rs"]
mod kftc_round2;
#[path = "sandbox/naver.rs"]
mod naver;
#[path = "sandbox/toss.rs"]
mod toss;
