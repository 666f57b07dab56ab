//! The `jitgate` command: `serve` and every client verb, through the typed client of
//! `jitgate-client`.

pub mod cli;
pub mod credentials;
mod output;
