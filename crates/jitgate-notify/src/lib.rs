//! Notifications that reach people: the message schema every channel starts from
//! ([`notice::Notice`], a webhook's body), its renderings (e-mail, Slack Block Kit), webhook
//! signatures, and sending one message by webhook, Slack or SMTP.
//!
//! What to send and when (the outbox, retries, order, who is told) is the server's; this crate
//! knows no store and keeps no state.

pub mod channel;
pub mod notice;
pub mod render;
pub mod send;
pub mod signature;

pub use channel::{Channel, ChannelKind, Filter, SmtpTls};
pub use notice::{EventKind, Notice};
pub use send::{SendError, Sender};
