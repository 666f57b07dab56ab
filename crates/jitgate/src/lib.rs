//! The `jitgate` command: `serve` and every client verb, through the typed [`client::Client`].

pub mod cli;
mod cli_audit;
mod cli_mfa;
mod cli_policy;
pub mod client;
pub mod credentials;
mod output;
