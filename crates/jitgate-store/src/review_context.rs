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

/// What a review weighs before it begins, read in one statement: the request, whether its
/// requester is an administrator (false for one who no longer exists), and the reviewer's live
/// roles (`RESOURCE/ROLE`) at the time given.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewFacts {
    pub request: AccessRequest,
    pub requester_is_admin: bool,
    pub reviewer_live_roles: Vec<String>,
}

/// Rows of two kinds: `r`, the request's columns (`request_cols`) and `requester_is_admin`
/// (NULL for a requester who no longer exists); then `g`, one per live role of the reviewer
/// (`held_resource`, `held_role`) from the backend's `held` CTE. `$1` the request, `$2` the
/// reviewer, `$3` the time.
pub(crate) fn request_for_review_sql(request_cols: &str, held: &str) -> String {
    let cols: Vec<String> = request_cols.split(", ").map(|c| format!("r.{c}")).collect();
    format!(
        "{held} SELECT 'r' AS kind, {}, u.is_admin AS requester_is_admin, \
         NULL AS held_resource, NULL AS held_role \
         FROM requests r LEFT JOIN users u ON u.name = r.requester WHERE r.id = $1 \
         UNION ALL SELECT 'g', {}, NULL, resource, role FROM held",
        cols.join(", "),
        vec!["NULL"; cols.len()].join(", ")
    )
}

/// The reads of a review for one backend, stamped out by `crate::sql::impl_store!` in the
/// backend's module (which supplies the imports and the row helpers).
macro_rules! review_sql {
    ($store:ident, $db:ty) => {
        /// A user's live roles as the CTE `held(resource, role)`, with the placeholders given
        /// for the user and the time (the skip scan is written per backend: `HELD_CTE`).
        fn held(user: &str, now: &str) -> String {
            $store::HELD_CTE.replace("$USER", user).replace("$NOW", now)
        }

        async fn q_request_for_review(
            pool: &sqlx::Pool<$db>,
            id: &str,
            reviewer: &Username,
            now: Timestamp,
        ) -> Result<Option<crate::ReviewFacts>, StoreError> {
            static SQL: std::sync::LazyLock<String> =
                std::sync::LazyLock::new(|| crate::review_context::request_for_review_sql(REQUEST_COLS, &held("$2", "$3")));
            let rows = sqlx::query(SQL.as_str())
                .bind(id)
                .bind(reviewer.as_str())
                .bind(now.as_millis())
                .fetch_all(pool)
                .await?;
            let mut found = None;
            let mut reviewer_live_roles = Vec::new();
            for row in &rows {
                if row.try_get::<String, _>("kind")? == "r" {
                    let is_admin: Option<bool> = row.try_get("requester_is_admin")?;
                    found = Some((request_from(row)?, is_admin.unwrap_or(false)));
                } else {
                    let resource: String = row.try_get("held_resource")?;
                    let role: String = row.try_get("held_role")?;
                    reviewer_live_roles.push(format!("{resource}/{role}"));
                }
            }
            Ok(found.map(|(request, requester_is_admin)| crate::ReviewFacts {
                request,
                requester_is_admin,
                reviewer_live_roles,
            }))
        }
    };
}

pub(crate) use review_sql;
