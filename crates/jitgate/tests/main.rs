//! Integration tests: the real server on port 0, the real CLI binary, real SQLite and
//! PostgreSQL. One test binary (as kanidm and zero2prod do), modules by topic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod browser_support;
mod cluster;
mod support;

mod architecture;
mod audit;
mod audit_witness;
mod bad_input;
mod browser;
mod gateway;
mod gateway_integrity;
mod hardening;
mod identity;
mod mfa;
mod mfa_support;
mod notifications;
mod policy;
mod quickstart;
mod sso;
mod sso_browser;
mod sso_support;
mod store_outage;
mod tokens;
mod web_limits;
mod workflow;
