//! The jitgate domain. Every function here is a pure function of its inputs and of `now`:
//! no clock reads, no storage, no network. The store, the server and the CLI build on it.

pub mod actions;
pub mod audit;
pub mod error;
pub mod factor;
pub mod grant;
pub mod names;
pub mod policy;
pub mod request;
pub mod session;
pub mod time;

pub use error::DomainError;
pub use time::Timestamp;
