//! One use of a grant through the gateway: who, from where, for how long, how much.

use crate::names::{ResourceName, RoleName, Username};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// A gateway session, as it is stored and as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GatewaySession {
    pub id: String,
    pub grant_id: String,
    pub user: Username,
    pub resource: ResourceName,
    pub role: RoleName,
    /// The client's address.
    pub peer: String,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    /// Why it ended (`client closed`, `access grant expired`, ...).
    pub end_reason: Option<String>,
    pub bytes_in: i64,
    pub bytes_out: i64,
    pub statements: i64,
}
