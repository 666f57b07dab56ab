//! The `jitgate` command: `serve` and every client verb, through the typed [`client::Client`].

pub mod cli;
pub mod client;
pub mod credentials;
mod output;
