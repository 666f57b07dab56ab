//! jitgate's server: the HTTP API, the expiry engine, and the wiring of store, auth and core.

pub mod app;
pub mod audit_log;
pub mod changes;
pub mod clock;
pub mod config;
pub mod core;
pub mod engine;
pub mod ephemeral;
pub mod error;
pub mod gateway;
mod integration_secrets;
mod keyed_lock;
pub mod limits;
pub mod live_sessions;
pub mod metrics;
pub mod notify;
pub mod policy;
pub mod readiness;
pub mod recording;
pub mod routes;
pub mod services;
pub mod tls;
pub mod upstream;
pub mod witness;

pub use app::{Application, StopHandle};
pub use config::Settings;
