//! The PostgreSQL gateway. Clients connect with their jitgate user name, the resource as the
//! database and a one-time connect token as the password; the gateway asks a [`Broker`] (the
//! server) to admit them, logs in upstream as the grant's login, and relays until either side
//! leaves or the broker says the grant is over, when the client gets a FATAL error between two
//! messages and the upstream backend is ended.
//!
//! The client never learns the upstream credentials, and no session outlives its grant.
//!
//! - [`broker`]: what the gateway asks of the server;
//! - [`gateway`]: the listener and its limits on anonymous connections;
//! - `session`: one connection from its first packet to its end;
//! - [`relay`]: the bytes both ways, the statement record and the kill switch;
//! - [`ending`]: making sure a killed session's backend stops;
//! - [`protocol`]: the wire messages, one file per family.

pub mod broker;
mod cancels;
pub mod ending;
pub mod gateway;
pub mod per_address;
pub mod protocol;
pub mod relay;
mod session;
pub mod transport;
pub mod upstream;

pub use broker::{Admission, AdmissionRequest, Broker, BrokerOnRuntime, Refusal};
pub use gateway::{Gateway, GatewayLimits};
