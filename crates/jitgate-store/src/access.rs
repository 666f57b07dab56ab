//! Access requests, their reviews, the grants they become, and the alerts they raise.

use crate::Result;
use async_trait::async_trait;
use jitgate_core::grant::{Grant, GrantStatus};
use jitgate_core::names::{ResourceName, Username};
use jitgate_core::request::{AccessRequest, RequestStatus, Review};
use jitgate_core::Timestamp;

#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    pub requester: Option<Username>,
    pub status: Option<RequestStatus>,
    pub resource: Option<ResourceName>,
    pub limit: i64,
}

#[derive(Debug, Clone, Default)]
pub struct GrantFilter {
    pub user: Option<Username>,
    pub status: Option<GrantStatus>,
    pub resource: Option<ResourceName>,
    pub limit: i64,
}

/// One alert for one person (the notifier outbox).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationRecord {
    pub id: String,
    pub recipient: Username,
    pub kind: String,
    /// What it is about: a request id, say.
    pub subject: String,
    pub message: String,
    pub created_at: Timestamp,
}

/// Reads outside a transaction.
#[async_trait]
pub trait AccessReads: Send + Sync {
    async fn request(&self, id: &str) -> Result<Option<AccessRequest>>;
    /// What a review weighs before it begins, in one read (see [`crate::ReviewFacts`]).
    async fn request_for_review(&self, id: &str, reviewer: &Username, now: Timestamp) -> Result<Option<crate::ReviewFacts>>;
    async fn requests(&self, filter: &RequestFilter) -> Result<Vec<AccessRequest>>;
    async fn reviews(&self, request_id: &str) -> Result<Vec<Review>>;
    /// Of the requests `ids`, those `reviewer` has reviewed (one read for a whole inbox).
    async fn reviewed_by(&self, reviewer: &Username, ids: &[String]) -> Result<std::collections::BTreeSet<String>>;
    async fn grant(&self, id: &str) -> Result<Option<Grant>>;
    async fn grant_for_request(&self, request_id: &str) -> Result<Option<Grant>>;
    /// The grant id of each of the requests `ids` that has one (one read for a whole list).
    async fn grant_ids_for_requests(&self, ids: &[String]) -> Result<std::collections::BTreeMap<String, String>>;
    async fn grants(&self, filter: &GrantFilter) -> Result<Vec<Grant>>;
    /// `user`'s scheduled and active grants (those with a deadline still to come or not yet
    /// swept), by index, however long their history; callers judge them at their `now`.
    async fn live_grants_of(&self, user: &Username) -> Result<Vec<Grant>>;
    /// The distinct `RESOURCE/ROLE` of `user`'s grants live at `now` — scheduled or active,
    /// not ended (what policies see as `context.active_grants`) — from the index alone.
    async fn active_roles_of(&self, user: &Username, now: Timestamp) -> Result<Vec<String>>;
    /// The earliest moment a grant or a pending request changes by itself, or a warning is due
    /// before a grant ends.
    async fn next_deadline(&self) -> Result<Option<Timestamp>>;
    /// Break-glass requests nobody has acknowledged yet, oldest first.
    async fn requests_awaiting_ack(&self, limit: i64) -> Result<Vec<AccessRequest>>;
    /// How many requests are in each status (for metrics).
    async fn request_counts(&self) -> Result<Vec<(String, i64)>>;
    /// How many grants are live (scheduled or active, not past their end) at `now`.
    async fn live_grant_count(&self, now: Timestamp) -> Result<i64>;
    /// A person's alerts, newest first.
    async fn notifications(&self, recipient: &Username, limit: i64) -> Result<Vec<NotificationRecord>>;
}

/// Reads and changes inside a [`crate::WriteTx`].
#[async_trait]
pub trait AccessWrites: Send {
    async fn request(&mut self, id: &str) -> Result<Option<AccessRequest>>;
    async fn reviews(&mut self, request_id: &str) -> Result<Vec<Review>>;
    /// What a review weighs, in one statement (it reads it while it holds the audit head): the
    /// request, its reviews in order, and the [`crate::Standing`] of `reviewer`, `requester`
    /// and everyone who reviewed it before (of those who exist).
    async fn review_context(&mut self, id: &str, reviewer: &Username, requester: &Username) -> Result<Option<crate::ReviewContext>>;
    async fn insert_request(&mut self, request: &AccessRequest) -> Result<()>;
    async fn set_request_status(&mut self, id: &str, status: RequestStatus, decided_at: Timestamp) -> Result<()>;
    async fn insert_review(&mut self, review: &Review) -> Result<()>;
    /// Pending requests whose deadline is at or before `now`, oldest first.
    async fn due_requests(&mut self, now: Timestamp, limit: i64) -> Result<Vec<AccessRequest>>;
    async fn grant(&mut self, id: &str) -> Result<Option<Grant>>;
    async fn insert_grant(&mut self, grant: &Grant) -> Result<()>;
    /// [`AccessWrites::insert_grant`] with the moment its holder is to be warned of its end
    /// (`None`: never), in the same statement.
    async fn insert_grant_warned(&mut self, grant: &Grant, warn_at: Option<Timestamp>) -> Result<()>;
    async fn update_grant(&mut self, grant: &Grant) -> Result<()>;
    /// Moves many grants to `status` in one statement (the expiry engine's batches); their next
    /// deadline follows from the status.
    async fn set_grants_status(&mut self, ids: &[String], status: GrantStatus) -> Result<()>;
    /// Marks many pending requests expired in one statement.
    async fn expire_requests(&mut self, ids: &[String], at: Timestamp) -> Result<()>;
    /// Grants with a transition due at or before `now`, earliest first.
    async fn due_grants(&mut self, now: Timestamp, limit: i64) -> Result<Vec<Grant>>;
    /// Records the after-the-fact acknowledgement of a break-glass request; false when it is
    /// not one or was acknowledged already.
    async fn acknowledge_request(&mut self, id: &str, by: &Username, at: Timestamp) -> Result<bool>;
    async fn insert_notification(&mut self, notification: &NotificationRecord) -> Result<()>;
}

/// The SQL of this aggregate for one backend, stamped out by `crate::sql::impl_store!` in the
/// backend's module (which supplies the imports and the shared helpers).
macro_rules! access_sql {
    ($store:ident, $tx:ident, $db:ty, $lock:literal) => {
        fn request_from(row: &DbRow) -> Result<AccessRequest, StoreError> {
            let status: String = row.try_get("status")?;
            Ok(AccessRequest {
                id: row.try_get("id")?,
                requester: name(row.try_get("requester")?, "requester")?,
                resource: name::<ResourceName>(row.try_get("resource")?, "resource")?,
                role: name::<RoleName>(row.try_get("role")?, "role")?,
                reason: row.try_get("reason")?,
                ticket: row.try_get("ticket")?,
                duration_secs: row.try_get("duration_secs")?,
                start_at: opt_ts(row.try_get("start_at")?),
                status: RequestStatus::parse(&status).ok_or_else(|| corrupt("request status", &status))?,
                created_at: ts(row.try_get("created_at")?),
                expires_at: ts(row.try_get("expires_at")?),
                decided_at: opt_ts(row.try_get("decided_at")?),
                extends_grant: row.try_get("extends_grant")?,
                mfa_method: factor(row.try_get("mfa_method")?)?,
                break_glass: row.try_get("break_glass")?,
                acknowledged_by: row
                    .try_get::<Option<String>, _>("acknowledged_by")?
                    .map(|s| name(s, "acknowledged_by"))
                    .transpose()?,
                acknowledged_at: opt_ts(row.try_get("acknowledged_at")?),
            })
        }

        fn review_from(row: &DbRow) -> Result<Review, StoreError> {
            review_named(row, ["request_id", "reviewer", "decision", "comment", "stage", "mfa_method", "created_at"])
        }

        /// A review from the columns named, in [`REVIEW_COLS`]' order.
        fn review_named(row: &DbRow, [request_id, reviewer, decision, comment, stage, mfa_method, created_at]: [&str; 7]) -> Result<Review, StoreError> {
            let decision: String = row.try_get(decision)?;
            let stage: Option<i64> = row.try_get(stage)?;
            Ok(Review {
                request_id: row.try_get(request_id)?,
                reviewer: name(row.try_get(reviewer)?, "reviewer")?,
                decision: Decision::parse(&decision).ok_or_else(|| corrupt("decision", &decision))?,
                comment: row.try_get(comment)?,
                stage: stage.and_then(|s| u32::try_from(s).ok()),
                mfa_method: factor(row.try_get(mfa_method)?)?,
                created_at: ts(row.try_get(created_at)?),
            })
        }

        fn grant_from(row: &DbRow) -> Result<Grant, StoreError> {
            let status: String = row.try_get("status")?;
            let revoked_by: Option<String> = row.try_get("revoked_by")?;
            Ok(Grant {
                id: row.try_get("id")?,
                request_id: row.try_get("request_id")?,
                user: name(row.try_get("username")?, "grant user")?,
                resource: name::<ResourceName>(row.try_get("resource")?, "resource")?,
                role: name::<RoleName>(row.try_get("role")?, "role")?,
                starts_at: ts(row.try_get("starts_at")?),
                ends_at: ts(row.try_get("ends_at")?),
                status: GrantStatus::parse(&status).ok_or_else(|| corrupt("grant status", &status))?,
                created_at: ts(row.try_get("created_at")?),
                revoked_at: opt_ts(row.try_get("revoked_at")?),
                revoked_by: revoked_by.map(|s| name(s, "revoked_by")).transpose()?,
                revoke_reason: row.try_get("revoke_reason")?,
                db_role: None,
            })
        }

        async fn q_request<'e, E: sqlx::Executor<'e, Database = $db>>(ex: E, id: &str) -> Result<Option<AccessRequest>, StoreError> {
            let sql = format!("SELECT {REQUEST_COLS} FROM requests WHERE id = $1");
            sqlx::query(&sql).bind(id).fetch_optional(ex).await?.as_ref().map(request_from).transpose()
        }

        async fn q_reviews<'e, E: sqlx::Executor<'e, Database = $db>>(ex: E, id: &str) -> Result<Vec<Review>, StoreError> {
            let sql = format!("SELECT {REVIEW_COLS} FROM reviews WHERE request_id = $1 ORDER BY created_at, reviewer");
            all(sqlx::query(&sql).bind(id).fetch_all(ex).await?, review_from)
        }

        async fn q_grant<'e, E: sqlx::Executor<'e, Database = $db>>(ex: E, column: &str, id: &str) -> Result<Option<Grant>, StoreError> {
            let sql = format!("SELECT {GRANT_COLS} FROM grants WHERE {column} = $1");
            sqlx::query(&sql).bind(id).fetch_optional(ex).await?.as_ref().map(grant_from).transpose()
        }

        /// Newest-first listing of requests or grants, each filter applied when given.
        #[allow(clippy::too_many_arguments)]
        async fn q_listing(
            pool: &sqlx::Pool<$db>,
            table: &str,
            cols: &str,
            who_col: &str,
            who: Option<&str>,
            status: Option<&str>,
            resource: Option<&ResourceName>,
            limit: i64,
        ) -> Result<Vec<DbRow>, StoreError> {
            let sql = format!(
                "SELECT {cols} FROM {table} \
                 WHERE (CAST($1 AS TEXT) IS NULL OR {who_col} = $1) \
                   AND (CAST($2 AS TEXT) IS NULL OR status = $2) \
                   AND (CAST($3 AS TEXT) IS NULL OR resource = $3) \
                 ORDER BY created_at DESC, id DESC LIMIT $4"
            );
            Ok(sqlx::query(&sql)
                .bind(who.map(str::to_owned))
                .bind(status.map(str::to_owned))
                .bind(resource.map(|r| r.as_str().to_owned()))
                .bind(if limit > 0 { limit } else { 100 })
                .fetch_all(pool)
                .await?)
        }

        #[async_trait]
        impl crate::AccessReads for $store {
            async fn request(&self, id: &str) -> Result<Option<AccessRequest>, StoreError> {
                q_request(&self.read, id).await
            }

            async fn request_for_review(
                &self,
                id: &str,
                reviewer: &Username,
                now: Timestamp,
            ) -> Result<Option<crate::ReviewFacts>, StoreError> {
                q_request_for_review(&self.read, id, reviewer, now).await
            }

            async fn requests(&self, f: &RequestFilter) -> Result<Vec<AccessRequest>, StoreError> {
                let who = f.requester.as_ref().map(|u| u.as_str());
                let status = f.status.map(|s| s.as_str());
                let rows = q_listing(&self.read, "requests", REQUEST_COLS, "requester", who, status, f.resource.as_ref(), f.limit).await?;
                all(rows, request_from)
            }

            async fn reviews(&self, id: &str) -> Result<Vec<Review>, StoreError> {
                q_reviews(&self.read, id).await
            }

            async fn reviewed_by(&self, reviewer: &Username, ids: &[String]) -> Result<std::collections::BTreeSet<String>, StoreError> {
                let mut out = std::collections::BTreeSet::new();
                for chunk in ids.chunks(IN_CHUNK) {
                    let sql = format!("SELECT request_id FROM reviews WHERE reviewer = $1 AND request_id IN ({})", placeholders(2, chunk.len()));
                    let mut q = sqlx::query_scalar::<_, String>(&sql).bind(reviewer.as_str());
                    for id in chunk {
                        q = q.bind(id);
                    }
                    out.extend(q.fetch_all(&self.read).await?);
                }
                Ok(out)
            }

            async fn grant_ids_for_requests(&self, ids: &[String]) -> Result<std::collections::BTreeMap<String, String>, StoreError> {
                let mut out = std::collections::BTreeMap::new();
                for chunk in ids.chunks(IN_CHUNK) {
                    let sql = format!("SELECT request_id, id FROM grants WHERE request_id IN ({})", placeholders(1, chunk.len()));
                    let mut q = sqlx::query_as::<_, (String, String)>(&sql);
                    for id in chunk {
                        q = q.bind(id);
                    }
                    out.extend(q.fetch_all(&self.read).await?);
                }
                Ok(out)
            }

            async fn grant(&self, id: &str) -> Result<Option<Grant>, StoreError> {
                q_grant(&self.read, "id", id).await
            }

            async fn grant_for_request(&self, request_id: &str) -> Result<Option<Grant>, StoreError> {
                q_grant(&self.read, "request_id", request_id).await
            }

            async fn grants(&self, f: &GrantFilter) -> Result<Vec<Grant>, StoreError> {
                let who = f.user.as_ref().map(|u| u.as_str());
                let status = f.status.map(|s| s.as_str());
                let rows = q_listing(&self.read, "grants", GRANT_COLS, "username", who, status, f.resource.as_ref(), f.limit).await?;
                all(rows, grant_from)
            }

            async fn live_grants_of(&self, user: &Username) -> Result<Vec<Grant>, StoreError> {
                let sql = format!("SELECT {GRANT_COLS} FROM grants WHERE username = $1 AND next_deadline IS NOT NULL ORDER BY created_at");
                all(sqlx::query(&sql).bind(user.as_str()).fetch_all(&self.read).await?, grant_from)
            }

            async fn active_roles_of(&self, user: &Username, now: Timestamp) -> Result<Vec<String>, StoreError> {
                // A skip scan over the live-grants index, written per backend.
                static SQL: std::sync::LazyLock<String> =
                    std::sync::LazyLock::new(|| format!("{} SELECT resource, role FROM held", held("$1", "$2")));
                let rows = sqlx::query(SQL.as_str())
                    .bind(user.as_str())
                    .bind(now.as_millis())
                    .fetch_all(&self.read)
                    .await?;
                rows.iter()
                    .map(|r| Ok(format!("{}/{}", r.try_get::<String, _>("resource")?, r.try_get::<String, _>("role")?)))
                    .collect()
            }

            async fn next_deadline(&self) -> Result<Option<Timestamp>, StoreError> {
                let g: Option<i64> = sqlx::query_scalar("SELECT MIN(next_deadline) FROM grants WHERE next_deadline IS NOT NULL")
                    .fetch_one(&self.read)
                    .await?;
                let r: Option<i64> = sqlx::query_scalar("SELECT MIN(expires_at) FROM requests WHERE status = 'pending'")
                    .fetch_one(&self.read)
                    .await?;
                let w: Option<i64> = sqlx::query_scalar("SELECT MIN(warn_at) FROM grants WHERE warn_at IS NOT NULL")
                    .fetch_one(&self.read)
                    .await?;
                Ok([g, r, w].into_iter().flatten().min().map(ts))
            }

            async fn request_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
                let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM requests GROUP BY status").fetch_all(&self.read).await?;
                rows.iter().map(|r| Ok((r.try_get("status")?, r.try_get("n")?))).collect()
            }

            async fn live_grant_count(&self, now: Timestamp) -> Result<i64, StoreError> {
                Ok(sqlx::query_scalar("SELECT COUNT(*) FROM grants WHERE next_deadline IS NOT NULL AND ends_at > $1")
                    .bind(now.as_millis())
                    .fetch_one(&self.read)
                    .await?)
            }

            async fn requests_awaiting_ack(&self, limit: i64) -> Result<Vec<AccessRequest>, StoreError> {
                let sql = format!(
                    "SELECT {REQUEST_COLS} FROM requests WHERE break_glass AND acknowledged_at IS NULL ORDER BY created_at, id LIMIT $1"
                );
                all(sqlx::query(&sql).bind(limit).fetch_all(&self.read).await?, request_from)
            }

            async fn notifications(&self, recipient: &Username, limit: i64) -> Result<Vec<NotificationRecord>, StoreError> {
                let rows = sqlx::query(
                    "SELECT id, recipient, kind, subject, message, created_at FROM notifications \
                     WHERE recipient = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
                )
                .bind(recipient.as_str())
                .bind(limit)
                .fetch_all(&self.read)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(NotificationRecord {
                            id: r.try_get("id")?,
                            recipient: name(r.try_get("recipient")?, "recipient")?,
                            kind: r.try_get("kind")?,
                            subject: r.try_get("subject")?,
                            message: r.try_get("message")?,
                            created_at: ts(r.try_get("created_at")?),
                        })
                    })
                    .collect()
            }
        }

        #[async_trait]
        impl crate::AccessWrites for $tx {
            async fn request(&mut self, id: &str) -> Result<Option<AccessRequest>, StoreError> {
                q_request(self.db().await?, id).await
            }

            async fn reviews(&mut self, id: &str) -> Result<Vec<Review>, StoreError> {
                q_reviews(self.db().await?, id).await
            }

            async fn review_context(
                &mut self,
                id: &str,
                reviewer: &Username,
                requester: &Username,
            ) -> Result<Option<crate::ReviewContext>, StoreError> {
                use crate::review_context::REVIEWS;
                static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| crate::review_context::sql(REQUEST_COLS));
                let rows = sqlx::query(SQL.as_str())
                    .bind(id)
                    .bind(reviewer.as_str())
                    .bind(requester.as_str())
                    .fetch_all(self.db().await?)
                    .await?;
                let mut request = None;
                let mut reviews = Vec::new();
                let mut standing: BTreeMap<Username, crate::Standing> = BTreeMap::new();
                for row in &rows {
                    let kind: String = row.try_get("kind")?;
                    if kind == "r" {
                        if request.is_none() {
                            request = Some(request_from(row)?);
                        }
                        if row.try_get::<Option<String>, _>("v_request_id")?.is_some() {
                            reviews.push(review_named(row, REVIEWS)?);
                        }
                    } else {
                        let person = standing.entry(name(row.try_get("u_name")?, "user name")?).or_default();
                        person.is_admin = row.try_get("u_is_admin")?;
                        if let Some(g) = row.try_get::<Option<String>, _>("u_group")? {
                            person.groups.insert(name(g, "group")?);
                        }
                    }
                }
                Ok(request.map(|request| crate::ReviewContext {
                    request,
                    reviews,
                    standing,
                }))
            }

            async fn insert_request(&mut self, r: &AccessRequest) -> Result<(), StoreError> {
                self.deadline_added(r.expires_at.as_millis());
                let r = r.clone();
                self.defer("requests", false, format!("request {}", r.id), move |q| {
                    q.push(format!("INSERT INTO requests ({REQUEST_COLS}) VALUES ("));
                    let mut v = q.separated(", ");
                    v.push_bind(r.id)
                        .push_bind(r.requester.to_string())
                        .push_bind(r.resource.to_string())
                        .push_bind(r.role.to_string())
                        .push_bind(r.reason)
                        .push_bind(r.ticket)
                        .push_bind(r.duration_secs)
                        .push_bind(r.start_at.map(Timestamp::as_millis))
                        .push_bind(r.status.as_str())
                        .push_bind(r.created_at.as_millis())
                        .push_bind(r.expires_at.as_millis())
                        .push_bind(r.decided_at.map(Timestamp::as_millis))
                        .push_bind(r.extends_grant)
                        .push_bind(r.mfa_method.map(Factor::as_str))
                        .push_bind(r.break_glass)
                        .push_bind(r.acknowledged_by.map(|u| u.to_string()))
                        .push_bind(r.acknowledged_at.map(Timestamp::as_millis));
                    v.push_unseparated(")");
                })
                .await
            }

            async fn set_request_status(&mut self, id: &str, status: RequestStatus, at: Timestamp) -> Result<(), StoreError> {
                let id = id.to_owned();
                self.defer("requests", true, format!("request {id}"), move |q| {
                    q.push("UPDATE requests SET status = ")
                        .push_bind(status.as_str())
                        .push(", decided_at = ")
                        .push_bind(at.as_millis())
                        .push(" WHERE id = ")
                        .push_bind(id);
                })
                .await
            }

            async fn insert_review(&mut self, r: &Review) -> Result<(), StoreError> {
                let r = r.clone();
                let what = format!("review of {} by {}", r.request_id, r.reviewer);
                self.defer("reviews", false, what, move |q| {
                    q.push(format!("INSERT INTO reviews ({REVIEW_COLS}) VALUES ("));
                    let mut v = q.separated(", ");
                    v.push_bind(r.request_id)
                        .push_bind(r.reviewer.to_string())
                        .push_bind(r.decision.as_str())
                        .push_bind(r.comment)
                        .push_bind(r.stage.map(i64::from))
                        .push_bind(r.mfa_method.map(Factor::as_str))
                        .push_bind(r.created_at.as_millis());
                    v.push_unseparated(")");
                })
                .await
            }

            async fn due_requests(&mut self, now: Timestamp, limit: i64) -> Result<Vec<AccessRequest>, StoreError> {
                let sql = format!("SELECT {REQUEST_COLS} FROM requests WHERE status = 'pending' AND expires_at <= $1 ORDER BY expires_at LIMIT $2");
                all(sqlx::query(&sql).bind(now.as_millis()).bind(limit).fetch_all(self.db().await?).await?, request_from)
            }

            async fn grant(&mut self, id: &str) -> Result<Option<Grant>, StoreError> {
                q_grant(self.db().await?, "id", id).await
            }

            async fn insert_grant(&mut self, g: &Grant) -> Result<(), StoreError> {
                self.insert_grant_warned(g, None).await
            }

            async fn insert_grant_warned(&mut self, g: &Grant, warn_at: Option<Timestamp>) -> Result<(), StoreError> {
                for d in g.next_deadline().into_iter().chain(warn_at) {
                    self.deadline_added(d.as_millis());
                }
                let g = g.clone();
                self.defer("grants", false, format!("grant {}", g.id), move |q| {
                    q.push(format!("INSERT INTO grants ({GRANT_COLS}, next_deadline, warn_at) VALUES ("));
                    let next_deadline = g.next_deadline().map(Timestamp::as_millis);
                    let mut v = q.separated(", ");
                    v.push_bind(g.id)
                        .push_bind(g.request_id)
                        .push_bind(g.user.to_string())
                        .push_bind(g.resource.to_string())
                        .push_bind(g.role.to_string())
                        .push_bind(g.starts_at.as_millis())
                        .push_bind(g.ends_at.as_millis())
                        .push_bind(g.status.as_str())
                        .push_bind(g.created_at.as_millis())
                        .push_bind(g.revoked_at.map(Timestamp::as_millis))
                        .push_bind(g.revoked_by.map(|u| u.to_string()))
                        .push_bind(g.revoke_reason)
                        .push_bind(next_deadline)
                        .push_bind(warn_at.map(Timestamp::as_millis));
                    v.push_unseparated(")");
                })
                .await
            }

            async fn update_grant(&mut self, g: &Grant) -> Result<(), StoreError> {
                sqlx::query(
                    "UPDATE grants SET status = $2, starts_at = $3, ends_at = $4, revoked_at = $5, revoked_by = $6, \
                     revoke_reason = $7, next_deadline = $8 WHERE id = $1",
                )
                .bind(&g.id)
                .bind(g.status.as_str())
                .bind(g.starts_at.as_millis())
                .bind(g.ends_at.as_millis())
                .bind(g.revoked_at.map(Timestamp::as_millis))
                .bind(g.revoked_by.as_ref().map(|u| u.as_str().to_owned()))
                .bind(&g.revoke_reason)
                .bind(g.next_deadline().map(Timestamp::as_millis))
                .execute(self.db().await?)
                .await?;
                Ok(())
            }

            async fn set_grants_status(&mut self, ids: &[String], status: GrantStatus) -> Result<(), StoreError> {
                let deadline = match status {
                    GrantStatus::Scheduled => "starts_at",
                    GrantStatus::Active => "ends_at",
                    GrantStatus::Expired | GrantStatus::Revoked => "NULL",
                };
                for chunk in ids.chunks(1000) {
                    let mut q = sqlx::QueryBuilder::<$db>::new("UPDATE grants SET status = ");
                    q.push_bind(status.as_str()).push(format!(", next_deadline = {deadline} WHERE id IN ("));
                    let mut list = q.separated(", ");
                    for id in chunk {
                        list.push_bind(id.clone());
                    }
                    q.push(")");
                    q.build().execute(self.db().await?).await?;
                }
                Ok(())
            }

            async fn expire_requests(&mut self, ids: &[String], at: Timestamp) -> Result<(), StoreError> {
                for chunk in ids.chunks(1000) {
                    let mut q = sqlx::QueryBuilder::<$db>::new("UPDATE requests SET status = 'expired', decided_at = ");
                    q.push_bind(at.as_millis()).push(" WHERE status = 'pending' AND id IN (");
                    let mut list = q.separated(", ");
                    for id in chunk {
                        list.push_bind(id.clone());
                    }
                    q.push(")");
                    q.build().execute(self.db().await?).await?;
                }
                Ok(())
            }

            async fn due_grants(&mut self, now: Timestamp, limit: i64) -> Result<Vec<Grant>, StoreError> {
                let sql = format!("SELECT {GRANT_COLS} FROM grants WHERE next_deadline IS NOT NULL AND next_deadline <= $1 ORDER BY next_deadline LIMIT $2");
                all(sqlx::query(&sql).bind(now.as_millis()).bind(limit).fetch_all(self.db().await?).await?, grant_from)
            }

            async fn acknowledge_request(&mut self, id: &str, by: &Username, at: Timestamp) -> Result<bool, StoreError> {
                let r = sqlx::query(
                    "UPDATE requests SET acknowledged_by = $2, acknowledged_at = $3 \
                     WHERE id = $1 AND break_glass AND acknowledged_at IS NULL",
                )
                .bind(id)
                .bind(by.as_str())
                .bind(at.as_millis())
                .execute(self.db().await?)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn insert_notification(&mut self, n: &NotificationRecord) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO notifications (id, recipient, kind, subject, message, created_at, read_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, NULL)",
                )
                .bind(&n.id)
                .bind(n.recipient.as_str())
                .bind(&n.kind)
                .bind(&n.subject)
                .bind(&n.message)
                .bind(n.created_at.as_millis())
                .execute(self.db().await?)
                .await?;
                Ok(())
            }
        }
    };
}

pub(crate) use access_sql;
