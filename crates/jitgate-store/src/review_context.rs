//! What a review weighs, read in one statement before it begins
//! ([`crate::AccessReads::request_for_review`]) and in one while it holds the audit head
//! ([`crate::AccessWrites::review_context`]).

use jitgate_core::names::Username;
use jitgate_core::request::{AccessRequest, Review};
use std::collections::BTreeMap;

/// The request, its reviews in order, and the standing of the reviewer, the requester and
/// everyone who reviewed it before (of those who exist).
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewContext {
    pub request: AccessRequest,
    pub reviews: Vec<Review>,
    pub standing: BTreeMap<Username, crate::Standing>,
}

/// The review columns, renamed apart from the request's.
pub(crate) const REVIEWS: [&str; 7] = [
    "v_request_id",
    "v_reviewer",
    "v_decision",
    "v_comment",
    "v_stage",
    "v_mfa_method",
    "v_created_at",
];

/// Rows of two kinds, `r` first: the request's columns (`request_cols`) with one review each
/// (NULLs for none), then one row per person and group (NULL for none). The NULLs of one kind
/// take the other kind's column types. `$1` the request, `$2` and `$3` the reviewer and the
/// requester.
pub(crate) fn sql(request_cols: &str) -> String {
    let cols: Vec<&str> = request_cols.split(", ").collect();
    format!(
        "SELECT 'r' AS kind, {}, v.request_id AS v_request_id, v.reviewer AS v_reviewer, v.decision AS v_decision, \
         v.comment AS v_comment, v.stage AS v_stage, v.mfa_method AS v_mfa_method, v.created_at AS v_created_at, \
         NULL AS u_name, NULL AS u_is_admin, NULL AS u_group \
         FROM requests r LEFT JOIN reviews v ON v.request_id = r.id WHERE r.id = $1 \
         UNION ALL \
         SELECT 'u', {}, u.name, u.is_admin, m.group_name \
         FROM users u LEFT JOIN group_members m ON m.username = u.name \
         WHERE u.name IN ($2, $3) OR u.name IN (SELECT reviewer FROM reviews WHERE request_id = $1) \
         ORDER BY kind, v_created_at, v_reviewer",
        cols.iter().map(|c| format!("r.{c}")).collect::<Vec<_>>().join(", "),
        vec!["NULL"; cols.len() + REVIEWS.len()].join(", ")
    )
}

/// The request's columns (`request_cols`) and `requester_is_admin` (NULL for a requester who
/// no longer exists). `$1` the request.
pub(crate) fn request_for_review_sql(request_cols: &str) -> String {
    let cols: Vec<String> = request_cols.split(", ").map(|c| format!("r.{c}")).collect();
    format!(
        "SELECT {}, u.is_admin AS requester_is_admin \
         FROM requests r LEFT JOIN users u ON u.name = r.requester WHERE r.id = $1",
        cols.join(", ")
    )
}
