//! The SQLSTATE codes the gateway answers with, named as PostgreSQL's errcodes appendix names
//! them, so a refusal says what it is rather than which digits it carries.

/// `08P01` protocol_violation: the client sent what the protocol does not allow.
pub const PROTOCOL_VIOLATION: &str = "08P01";
/// `08006` connection_failure: the gateway cannot reach or log in to the upstream, or the
/// store is away.
pub const CONNECTION_FAILURE: &str = "08006";
/// `28000` invalid_authorization_specification: the connect token or the login is refused.
pub const INVALID_AUTHORIZATION: &str = "28000";
/// `42501` insufficient_privilege: the upstream login is privileged and the role does not
/// allow it.
pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
/// `53300` too_many_connections: a per-user or per-address limit.
pub const TOO_MANY_CONNECTIONS: &str = "53300";
/// `57P01` admin_shutdown: the session was ended (the grant ended, or it was killed).
pub const ADMIN_SHUTDOWN: &str = "57P01";
/// `57P03` cannot_connect_now: the gateway is shutting down.
pub const CANNOT_CONNECT_NOW: &str = "57P03";
