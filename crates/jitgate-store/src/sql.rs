//! The SQL both backends run, written once. SQLite and PostgreSQL both accept `$N` parameters,
//! `CAST(… AS TEXT)` and partial indexes, so one text serves both; the macro stamps out an
//! implementation per backend because sqlx's row and executor types differ per database.

pub(crate) const USER_COLS: &str = "name, display_name, password_hash, is_admin, disabled, created_at";
pub(crate) const REQUEST_COLS: &str =
    "id, requester, resource, role, reason, ticket, duration_secs, start_at, status, created_at, expires_at, decided_at, extends_grant, mfa_method, break_glass, acknowledged_by, acknowledged_at";
pub(crate) const REVIEW_COLS: &str = "request_id, reviewer, decision, comment, stage, mfa_method, created_at";
pub(crate) const GRANT_COLS: &str =
    "id, request_id, username, resource, role, starts_at, ends_at, status, created_at, revoked_at, revoked_by, revoke_reason";
pub(crate) const CHECKPOINT_COLS: &str = "seq, hash, ts, key_id, signature, prev_seq, prev_hash, next_key";
pub(crate) const AUDIT_COLS: &str = "seq, ts, actor, action, target, outcome, details, prev_hash, hash";

pub(crate) fn corrupt(what: &str, e: impl std::fmt::Display) -> crate::StoreError {
    crate::StoreError::Corrupt(format!("{what}: {e}"))
}

macro_rules! impl_store {
    ($store:ident, $tx:ident, $db:ty, $backend:literal, $lock:literal) => {
        use crate::sql::{corrupt, AUDIT_COLS, CHECKPOINT_COLS, GRANT_COLS, REQUEST_COLS, REVIEW_COLS, USER_COLS};
        use crate::{ConnectTokenRecord, DbSessionRecord, EphemeralRoleRecord, GrantFilter, ResourceCredentialRecord, NotificationRecord, RequestFilter, SessionRecord, Source, Store, StoreError, UserRecord, WriteTx};
        use async_trait::async_trait;
        use jitgate_core::audit::{AuditEvent, ChainHead, Checkpoint, NewEvent, StoredEvent};
        use jitgate_core::grant::{DbRoleState, Grant, GrantStatus};
        use jitgate_core::names::{GroupName, ResourceName, RoleName, Username};
        use jitgate_core::policy::Resource;
        use jitgate_core::request::{AccessRequest, Decision, RequestStatus, Review};
        use jitgate_core::Timestamp;
        use sqlx::Row;
        use std::collections::{BTreeMap, BTreeSet};

        type DbRow = <$db as sqlx::Database>::Row;

        crate::sql_mfa::mfa_queries!($db, $lock);

        fn ts(ms: i64) -> Timestamp {
            Timestamp::from_millis(ms)
        }
        fn opt_ts(ms: Option<i64>) -> Option<Timestamp> {
            ms.map(Timestamp::from_millis)
        }
        fn name<T: std::str::FromStr<Err = String>>(s: String, what: &str) -> Result<T, StoreError> {
            s.parse().map_err(|e: String| corrupt(what, e))
        }

        fn user_from(row: &DbRow) -> Result<UserRecord, StoreError> {
            Ok(UserRecord {
                name: name(row.try_get("name")?, "user name")?,
                display_name: row.try_get("display_name")?,
                password_hash: row.try_get("password_hash")?,
                is_admin: row.try_get("is_admin")?,
                disabled: row.try_get("disabled")?,
                created_at: ts(row.try_get("created_at")?),
            })
        }

        fn session_from(row: &DbRow) -> Result<SessionRecord, StoreError> {
            Ok(SessionRecord {
                token_hash: row.try_get("token_hash")?,
                user: name(row.try_get("username")?, "session user")?,
                created_at: ts(row.try_get("created_at")?),
                last_seen_at: ts(row.try_get("last_seen_at")?),
                expires_at: ts(row.try_get("expires_at")?),
                mfa_at: opt_ts(row.try_get("mfa_at")?),
                mfa_method: row.try_get("mfa_method")?,
            })
        }

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
                mfa_method: row.try_get("mfa_method")?,
                break_glass: row.try_get("break_glass")?,
                acknowledged_by: row
                    .try_get::<Option<String>, _>("acknowledged_by")?
                    .map(|s| name(s, "acknowledged_by"))
                    .transpose()?,
                acknowledged_at: opt_ts(row.try_get("acknowledged_at")?),
            })
        }

        fn review_from(row: &DbRow) -> Result<Review, StoreError> {
            let decision: String = row.try_get("decision")?;
            let stage: Option<i64> = row.try_get("stage")?;
            Ok(Review {
                request_id: row.try_get("request_id")?,
                reviewer: name(row.try_get("reviewer")?, "reviewer")?,
                decision: Decision::parse(&decision).ok_or_else(|| corrupt("decision", &decision))?,
                comment: row.try_get("comment")?,
                stage: stage.and_then(|s| u32::try_from(s).ok()),
                mfa_method: row.try_get("mfa_method")?,
                created_at: ts(row.try_get("created_at")?),
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

        const EPHEMERAL_COLS: &str =
            "grant_id, resource, role_name, key_version, sealed_password, state, last_error, created_at, revoked_at";

        fn ephemeral_from(row: &DbRow) -> Result<EphemeralRoleRecord, StoreError> {
            Ok(EphemeralRoleRecord {
                grant_id: row.try_get("grant_id")?,
                resource: name(row.try_get("resource")?, "ephemeral resource")?,
                role_name: row.try_get("role_name")?,
                key_version: u32::try_from(row.try_get::<i64, _>("key_version")?).map_err(|e| corrupt("key version", e))?,
                sealed_password: row.try_get("sealed_password")?,
                state: {
                    let state: String = row.try_get("state")?;
                    DbRoleState::parse(&state).ok_or_else(|| corrupt("ephemeral role state", state))?
                },
                last_error: row.try_get("last_error")?,
                created_at: ts(row.try_get("created_at")?),
                revoked_at: opt_ts(row.try_get("revoked_at")?),
            })
        }

        fn credential_from(row: &DbRow) -> Result<ResourceCredentialRecord, StoreError> {
            Ok(ResourceCredentialRecord {
                resource: name(row.try_get("resource")?, "credential resource")?,
                role: row.try_get("role")?,
                key_version: u32::try_from(row.try_get::<i64, _>("key_version")?).map_err(|e| corrupt("key version", e))?,
                sealed_password: row.try_get("sealed_password")?,
                updated_at: ts(row.try_get("updated_at")?),
                updated_by: name(row.try_get("updated_by")?, "credential updated_by")?,
            })
        }

        fn stored_from(row: &DbRow) -> Result<StoredEvent, StoreError> {
            Ok(StoredEvent {
                seq: row.try_get("seq")?,
                ts: row.try_get("ts")?,
                actor: row.try_get("actor")?,
                action: row.try_get("action")?,
                target: row.try_get("target")?,
                outcome: row.try_get("outcome")?,
                details_json: row.try_get("details")?,
                prev_hash: row.try_get("prev_hash")?,
                hash: row.try_get("hash")?,
            })
        }

        #[allow(dead_code)]
        async fn sqlx_audit_rows(pool: &sqlx::Pool<$db>, after_seq: i64, limit: i64) -> Result<Vec<StoredEvent>, StoreError> {
            let sql = format!("SELECT {AUDIT_COLS} FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2");
            all(sqlx::query(&sql).bind(after_seq).bind(limit).fetch_all(pool).await?, stored_from)
        }

        fn checkpoint_from(r: &DbRow) -> Result<Checkpoint, StoreError> {
            let prev_seq: Option<i64> = r.try_get("prev_seq")?;
            let prev_hash: Option<String> = r.try_get("prev_hash")?;
            Ok(Checkpoint {
                seq: r.try_get("seq")?,
                hash: r.try_get("hash")?,
                ts: r.try_get("ts")?,
                key_id: r.try_get("key_id")?,
                signature: r.try_get("signature")?,
                prev: match (prev_seq, prev_hash) {
                    (Some(seq), Some(hash)) => Some(jitgate_core::audit::CheckpointLink { seq, hash }),
                    _ => None,
                },
                next_key: r.try_get("next_key")?,
            })
        }

        fn audit_from(row: &DbRow) -> Result<AuditEvent, StoreError> {
            stored_from(row).map(StoredEvent::into_event)
        }

        fn resource_from(row: &DbRow) -> Result<Resource, StoreError> {
            let spec: String = row.try_get("spec")?;
            serde_json::from_str(&spec).map_err(|e| corrupt("resource", e))
        }

        fn all<T>(rows: Vec<DbRow>, f: fn(&DbRow) -> Result<T, StoreError>) -> Result<Vec<T>, StoreError> {
            rows.iter().map(f).collect()
        }

        async fn q_user<'e, E: sqlx::Executor<'e, Database = $db>>(ex: E, user: &Username) -> Result<Option<UserRecord>, StoreError> {
            let sql = format!("SELECT {USER_COLS} FROM users WHERE name = $1");
            sqlx::query(&sql).bind(user.as_str()).fetch_optional(ex).await?.as_ref().map(user_from).transpose()
        }

        async fn q_user_groups<'e, E: sqlx::Executor<'e, Database = $db>>(ex: E, user: &Username) -> Result<BTreeSet<GroupName>, StoreError> {
            let rows = sqlx::query("SELECT group_name FROM group_members WHERE username = $1")
                .bind(user.as_str())
                .fetch_all(ex)
                .await?;
            rows.iter().map(|r| name(r.try_get("group_name")?, "group")).collect()
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
        impl Store for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            fn deadline_signal(&self) -> Option<std::sync::Arc<crate::DeadlineSignal>> {
                self.deadline_signal.clone()
            }

            fn session_kills(&self) -> Option<crate::KillFeed> {
                self.kill_feed()
            }

            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("SELECT 1").execute(&self.read).await?;
                Ok(())
            }

            async fn write(&self) -> Result<Box<dyn WriteTx>, StoreError> {
                let slot = self.cache.hold_head().await;
                let mut tx = self.write.begin().await?;
                let head = match slot.known() {
                    Some(head) => head,
                    None => {
                        let row = sqlx::query(concat!("SELECT seq, hash FROM audit_head WHERE id = 1", $lock))
                            .fetch_one(&mut *tx)
                            .await?;
                        ChainHead { seq: row.try_get("seq")?, hash: row.try_get("hash")? }
                    }
                };
                Ok(Box::new($tx { head, tx, appended: Vec::new(), appended_details: Vec::new(), poisoned: false, slot, directory_changed: false, earliest_deadline: None }))
            }

            async fn user(&self, user: &Username) -> Result<Option<UserRecord>, StoreError> {
                q_user(&self.read, user).await
            }

            async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
                let sql = format!("SELECT {USER_COLS} FROM users ORDER BY name");
                all(sqlx::query(&sql).fetch_all(&self.read).await?, user_from)
            }

            async fn user_groups(&self, user: &Username) -> Result<BTreeSet<GroupName>, StoreError> {
                if let Some(groups) = self.cache.groups_of(user) {
                    return Ok(groups);
                }
                let read_at = self.cache.generation();
                let groups = q_user_groups(&self.read, user).await?;
                if let Some(read_at) = read_at {
                    self.cache.keep_groups_of(user, groups.clone(), read_at);
                }
                Ok(groups)
            }

            async fn groups(&self) -> Result<BTreeMap<GroupName, Vec<Username>>, StoreError> {
                let mut out = BTreeMap::new();
                for r in sqlx::query("SELECT name FROM groups ORDER BY name").fetch_all(&self.read).await? {
                    out.insert(name(r.try_get("name")?, "group")?, Vec::new());
                }
                let rows = sqlx::query("SELECT group_name, username FROM group_members ORDER BY group_name, username")
                    .fetch_all(&self.read)
                    .await?;
                for r in rows {
                    let g: GroupName = name(r.try_get("group_name")?, "group")?;
                    out.entry(g).or_default().push(name(r.try_get("username")?, "member")?);
                }
                Ok(out)
            }

            async fn session(&self, token_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
                sqlx::query("SELECT token_hash, username, created_at, last_seen_at, expires_at, mfa_at, mfa_method FROM sessions WHERE token_hash = $1")
                    .bind(token_hash)
                    .fetch_optional(&self.read)
                    .await?
                    .as_ref()
                    .map(session_from)
                    .transpose()
            }

            async fn session_user(&self, token_hash: &str) -> Result<Option<(SessionRecord, UserRecord)>, StoreError> {
                let row = sqlx::query(
                    "SELECT s.token_hash, s.username, s.created_at, s.last_seen_at, s.expires_at, s.mfa_at, s.mfa_method, \
                     u.name, u.display_name, u.password_hash, u.is_admin, u.disabled, u.created_at AS user_created_at \
                     FROM sessions s JOIN users u ON u.name = s.username WHERE s.token_hash = $1",
                )
                .bind(token_hash)
                .fetch_optional(&self.read)
                .await?;
                let Some(row) = row else { return Ok(None) };
                let session = session_from(&row)?;
                let user = UserRecord {
                    name: name(row.try_get("name")?, "user name")?,
                    display_name: row.try_get("display_name")?,
                    password_hash: row.try_get("password_hash")?,
                    is_admin: row.try_get("is_admin")?,
                    disabled: row.try_get("disabled")?,
                    created_at: ts(row.try_get("user_created_at")?),
                };
                Ok(Some((session, user)))
            }

            async fn resource(&self, res: &ResourceName) -> Result<Option<Resource>, StoreError> {
                if let Some(map) = self.cache.resources() {
                    return Ok(map.get(res).cloned());
                }
                if let Some(read_at) = self.cache.generation() {
                    let all = self.resources().await?;
                    let map = std::sync::Arc::new(all.into_iter().map(|r| (r.name.clone(), r)).collect::<BTreeMap<_, _>>());
                    self.cache.keep_resources(map.clone(), read_at);
                    return Ok(map.get(res).cloned());
                }
                sqlx::query("SELECT spec FROM resources WHERE name = $1")
                    .bind(res.as_str())
                    .fetch_optional(&self.read)
                    .await?
                    .as_ref()
                    .map(resource_from)
                    .transpose()
            }

            async fn resources(&self) -> Result<Vec<Resource>, StoreError> {
                all(sqlx::query("SELECT spec FROM resources ORDER BY name").fetch_all(&self.read).await?, resource_from)
            }

            async fn request(&self, id: &str) -> Result<Option<AccessRequest>, StoreError> {
                q_request(&self.read, id).await
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
                // A skip scan over the live-grants index: one probe per role held, however
                // many grants of it there are (a DISTINCT reads them all). PostgreSQL takes
                // the next role by LATERAL; SQLite, which has none, by rowid.
                let sql = if $backend == "postgres" {
                    "WITH RECURSIVE held(resource, role) AS ( \
                       (SELECT resource, role FROM grants \
                        WHERE username = $1 AND next_deadline IS NOT NULL AND ends_at > $2 \
                        ORDER BY resource, role LIMIT 1) \
                       UNION ALL \
                       SELECT n.resource, n.role FROM held, LATERAL ( \
                         SELECT resource, role FROM grants \
                         WHERE username = $1 AND next_deadline IS NOT NULL AND ends_at > $2 \
                           AND (resource, role) > (held.resource, held.role) \
                         ORDER BY resource, role LIMIT 1) n) \
                     SELECT resource, role FROM held"
                } else {
                    "WITH RECURSIVE held(resource, role) AS ( \
                       SELECT resource, role FROM (SELECT resource, role FROM grants \
                         WHERE username = $1 AND next_deadline IS NOT NULL AND ends_at > $2 \
                         ORDER BY resource, role LIMIT 1) \
                       UNION ALL \
                       SELECT g.resource, g.role FROM held JOIN grants g ON g.rowid = ( \
                         SELECT rowid FROM grants \
                         WHERE username = $1 AND next_deadline IS NOT NULL AND ends_at > $2 \
                           AND (resource, role) > (held.resource, held.role) \
                         ORDER BY resource, role LIMIT 1)) \
                     SELECT resource, role FROM held"
                };
                let rows = sqlx::query(sql)
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
                Ok(match (g, r) {
                    (Some(a), Some(b)) => Some(ts(a.min(b))),
                    (a, b) => a.or(b).map(ts),
                })
            }

            async fn audit_events(&self, after_seq: i64, limit: i64) -> Result<Vec<AuditEvent>, StoreError> {
                let sql = format!("SELECT {AUDIT_COLS} FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2");
                all(sqlx::query(&sql).bind(after_seq).bind(limit).fetch_all(&self.read).await?, audit_from)
            }

            async fn audit_rows(&self, after_seq: i64, limit: i64) -> Result<Vec<StoredEvent>, StoreError> {
                self.read_audit_rows(after_seq, limit).await
            }

            async fn audit_events_for(&self, targets: &[String]) -> Result<Vec<AuditEvent>, StoreError> {
                let mut out = Vec::new();
                for target in targets {
                    let sql = format!("SELECT {AUDIT_COLS} FROM audit_events WHERE target = $1 ORDER BY seq");
                    out.extend(all(sqlx::query(&sql).bind(target).fetch_all(&self.read).await?, audit_from)?);
                }
                out.sort_by_key(|e| e.seq);
                Ok(out)
            }

            async fn audit_checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
                self.audit_checkpoints_after(0, i64::MAX).await
            }

            async fn audit_last_checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
                let sql = format!("SELECT {CHECKPOINT_COLS} FROM audit_checkpoints ORDER BY seq DESC LIMIT 1");
                let row = sqlx::query(&sql).fetch_optional(&self.read).await?;
                row.as_ref().map(checkpoint_from).transpose()
            }

            async fn audit_checkpoints_after(&self, after_seq: i64, limit: i64) -> Result<Vec<Checkpoint>, StoreError> {
                let sql = format!("SELECT {CHECKPOINT_COLS} FROM audit_checkpoints WHERE seq > $1 ORDER BY seq LIMIT $2");
                let rows = sqlx::query(&sql).bind(after_seq).bind(limit).fetch_all(&self.read).await?;
                rows.iter().map(checkpoint_from).collect()
            }

            async fn audit_head(&self) -> Result<ChainHead, StoreError> {
                let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1").fetch_one(&self.read).await?;
                Ok(ChainHead { seq: row.try_get("seq")?, hash: row.try_get("hash")? })
            }

            async fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
                Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = $1").bind(key).fetch_optional(&self.read).await?)
            }

            async fn totp(&self, user: &Username) -> Result<Option<TotpRecord>, StoreError> {
                q_totp(&self.read, user).await
            }

            async fn passkeys(&self, user: &Username) -> Result<Vec<PasskeyRecord>, StoreError> {
                q_passkeys(&self.read, user).await
            }

            async fn recovery_codes_left(&self, user: &Username) -> Result<i64, StoreError> {
                q_recovery_left(&self.read, user).await
            }

            async fn challenge(&self, id: &str) -> Result<Option<ChallengeRecord>, StoreError> {
                q_challenge(&self.read, id).await
            }

            async fn attempts(&self, username: &str) -> Result<Option<AttemptRecord>, StoreError> {
                q_attempts(&self.read, username, false).await
            }

            async fn requests_awaiting_ack(&self, limit: i64) -> Result<Vec<AccessRequest>, StoreError> {
                let sql = format!(
                    "SELECT {REQUEST_COLS} FROM requests WHERE break_glass AND acknowledged_at IS NULL ORDER BY created_at, id LIMIT $1"
                );
                all(sqlx::query(&sql).bind(limit).fetch_all(&self.read).await?, request_from)
            }

            async fn ephemeral_role(&self, grant_id: &str) -> Result<Option<EphemeralRoleRecord>, StoreError> {
                let sql = format!("SELECT {EPHEMERAL_COLS} FROM ephemeral_roles WHERE grant_id = $1");
                sqlx::query(&sql).bind(grant_id).fetch_optional(&self.read).await?.as_ref().map(ephemeral_from).transpose()
            }

            async fn resource_credential(&self, resource: &ResourceName, role: &str) -> Result<Option<ResourceCredentialRecord>, StoreError> {
                sqlx::query("SELECT resource, role, key_version, sealed_password, updated_at, updated_by FROM resource_credentials WHERE resource = $1 AND role = $2")
                    .bind(resource.as_str())
                    .bind(role)
                    .fetch_optional(&self.read)
                    .await?
                    .as_ref()
                    .map(credential_from)
                    .transpose()
            }

            async fn ephemeral_roles_in(&self, state: DbRoleState) -> Result<Vec<EphemeralRoleRecord>, StoreError> {
                let sql = format!("SELECT {EPHEMERAL_COLS} FROM ephemeral_roles WHERE state = $1 ORDER BY created_at, grant_id");
                all(sqlx::query(&sql).bind(state.as_str()).fetch_all(&self.read).await?, ephemeral_from)
            }

            async fn db_sessions(&self, user: Option<&Username>, live_only: bool, limit: i64) -> Result<Vec<DbSessionRecord>, StoreError> {
                let rows = sqlx::query(
                    "SELECT id, grant_id, username, resource, role, peer, started_at, ended_at, end_reason, bytes_in, bytes_out, statements \
                     FROM db_sessions WHERE (CAST($1 AS TEXT) IS NULL OR username = $1) AND (NOT $2 OR ended_at IS NULL) \
                     ORDER BY started_at DESC, id DESC LIMIT $3",
                )
                .bind(user.map(|u| u.to_string()))
                .bind(live_only)
                .bind(limit)
                .fetch_all(&self.read)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(DbSessionRecord {
                            id: r.try_get("id")?,
                            grant_id: r.try_get("grant_id")?,
                            user: name(r.try_get("username")?, "session user")?,
                            resource: name(r.try_get("resource")?, "session resource")?,
                            role: r.try_get("role")?,
                            peer: r.try_get("peer")?,
                            started_at: ts(r.try_get("started_at")?),
                            ended_at: opt_ts(r.try_get("ended_at")?),
                            end_reason: r.try_get("end_reason")?,
                            bytes_in: r.try_get("bytes_in")?,
                            bytes_out: r.try_get("bytes_out")?,
                            statements: r.try_get("statements")?,
                        })
                    })
                    .collect()
            }

            async fn killed_db_sessions(&self, ids: &[String]) -> Result<Vec<(String, String)>, StoreError> {
                let mut killed = Vec::new();
                for chunk in ids.chunks(1000) {
                    let mut q = sqlx::QueryBuilder::<$db>::new("SELECT id, kill_reason FROM db_sessions WHERE kill_reason IS NOT NULL AND id IN (");
                    let mut list = q.separated(", ");
                    for id in chunk {
                        list.push_bind(id.clone());
                    }
                    q.push(")");
                    for r in q.build().fetch_all(&self.read).await? {
                        killed.push((r.try_get("id")?, r.try_get("kill_reason")?));
                    }
                }
                Ok(killed)
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

        pub struct $tx {
            tx: sqlx::Transaction<'static, $db>,
            head: ChainHead,
            appended: Vec<AuditEvent>,
            /// Each appended event's details as the canonical text it was hashed as.
            appended_details: Vec<String>,
            poisoned: bool,
            slot: crate::cache::HeadSlot,
            directory_changed: bool,
            /// The earliest deadline this transaction added (milliseconds), announced to every
            /// instance at commit.
            earliest_deadline: Option<i64>,
        }

        impl $tx {
            /// PostgreSQL aborts a transaction at its first failed statement (SQLite does not);
            /// marking the transaction poisoned makes `commit` refuse on both, the same way.
            fn conflict(&mut self, e: sqlx::Error, what: String) -> StoreError {
                self.poisoned = true;
                if crate::is_unique_violation(&e) {
                    StoreError::Conflict(what)
                } else {
                    StoreError::Database(e)
                }
            }

            fn deadline_added(&mut self, at_ms: i64) {
                self.earliest_deadline = Some(self.earliest_deadline.map_or(at_ms, |e| e.min(at_ms)));
            }
        }

        #[async_trait]
        impl WriteTx for $tx {
            fn head(&self) -> &ChainHead {
                &self.head
            }

            fn appended(&self) -> usize {
                self.appended.len()
            }

            async fn user(&mut self, user: &Username) -> Result<Option<UserRecord>, StoreError> {
                q_user(&mut *self.tx, user).await
            }

            async fn user_groups(&mut self, user: &Username) -> Result<BTreeSet<GroupName>, StoreError> {
                q_user_groups(&mut *self.tx, user).await
            }

            async fn count_users(&mut self) -> Result<i64, StoreError> {
                Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(&mut *self.tx).await?)
            }

            async fn insert_user(&mut self, u: &UserRecord) -> Result<(), StoreError> {
                let sql = format!("INSERT INTO users ({USER_COLS}) VALUES ($1, $2, $3, $4, $5, $6)");
                sqlx::query(&sql)
                    .bind(u.name.as_str())
                    .bind(&u.display_name)
                    .bind(&u.password_hash)
                    .bind(u.is_admin)
                    .bind(u.disabled)
                    .bind(u.created_at.as_millis())
                    .execute(&mut *self.tx)
                    .await
                    .map_err(|e| self.conflict(e, format!("user '{}'", u.name)))?;
                Ok(())
            }

            async fn update_user(&mut self, u: &UserRecord) -> Result<(), StoreError> {
                sqlx::query("UPDATE users SET display_name = $2, password_hash = $3, is_admin = $4, disabled = $5 WHERE name = $1")
                    .bind(u.name.as_str())
                    .bind(&u.display_name)
                    .bind(&u.password_hash)
                    .bind(u.is_admin)
                    .bind(u.disabled)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(())
            }

            async fn ensure_group(&mut self, g: &GroupName, source: Source) -> Result<(), StoreError> {
                sqlx::query("INSERT INTO groups (name, source) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
                    .bind(g.as_str())
                    .bind(source.as_str())
                    .execute(&mut *self.tx)
                    .await?;
                Ok(())
            }

            async fn set_member(&mut self, g: &GroupName, u: &Username, member: bool, source: Source) -> Result<bool, StoreError> {
                self.directory_changed = true;
                let done = if member {
                    self.ensure_group(g, source).await?;
                    sqlx::query("INSERT INTO group_members (group_name, username, source) VALUES ($1, $2, $3) ON CONFLICT (group_name, username) DO NOTHING")
                        .bind(g.as_str())
                        .bind(u.as_str())
                        .bind(source.as_str())
                        .execute(&mut *self.tx)
                        .await?
                } else {
                    sqlx::query("DELETE FROM group_members WHERE group_name = $1 AND username = $2")
                        .bind(g.as_str())
                        .bind(u.as_str())
                        .execute(&mut *self.tx)
                        .await?
                };
                Ok(done.rows_affected() > 0)
            }

            async fn clear_source(&mut self, source: Source) -> Result<(), StoreError> {
                self.directory_changed = true;
                sqlx::query("DELETE FROM group_members WHERE source = $1").bind(source.as_str()).execute(&mut *self.tx).await?;
                sqlx::query("DELETE FROM groups WHERE source = $1 AND name NOT IN (SELECT group_name FROM group_members)")
                    .bind(source.as_str())
                    .execute(&mut *self.tx)
                    .await?;
                Ok(())
            }

            async fn insert_session(&mut self, s: &SessionRecord) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO sessions (token_hash, username, created_at, last_seen_at, expires_at, mfa_at, mfa_method) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                    .bind(&s.token_hash)
                    .bind(s.user.as_str())
                    .bind(s.created_at.as_millis())
                    .bind(s.last_seen_at.as_millis())
                    .bind(s.expires_at.as_millis())
                    .bind(s.mfa_at.map(Timestamp::as_millis))
                    .bind(&s.mfa_method)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(())
            }

            async fn touch_session(&mut self, token_hash: &str, now: Timestamp) -> Result<(), StoreError> {
                sqlx::query("UPDATE sessions SET last_seen_at = $2 WHERE token_hash = $1")
                    .bind(token_hash)
                    .bind(now.as_millis())
                    .execute(&mut *self.tx)
                    .await?;
                Ok(())
            }

            async fn delete_session(&mut self, token_hash: &str) -> Result<bool, StoreError> {
                let r = sqlx::query("DELETE FROM sessions WHERE token_hash = $1").bind(token_hash).execute(&mut *self.tx).await?;
                Ok(r.rows_affected() > 0)
            }

            async fn delete_sessions_of(&mut self, user: &Username) -> Result<u64, StoreError> {
                let r = sqlx::query("DELETE FROM sessions WHERE username = $1").bind(user.as_str()).execute(&mut *self.tx).await?;
                Ok(r.rows_affected())
            }

            async fn delete_other_sessions_of(&mut self, user: &Username, keep: &str) -> Result<u64, StoreError> {
                let r = sqlx::query("DELETE FROM sessions WHERE username = $1 AND token_hash <> $2")
                    .bind(user.as_str())
                    .bind(keep)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(r.rows_affected())
            }

            async fn put_resource(&mut self, r: &Resource, source: Source, now: Timestamp) -> Result<(), StoreError> {
                self.directory_changed = true;
                let spec = serde_json::to_string(r).map_err(|e| corrupt("resource", e))?;
                sqlx::query(
                    "INSERT INTO resources (name, spec, source, updated_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, source = excluded.source, updated_at = excluded.updated_at",
                )
                .bind(r.name.as_str())
                .bind(spec)
                .bind(source.as_str())
                .bind(now.as_millis())
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }

            async fn delete_resource(&mut self, res: &ResourceName) -> Result<bool, StoreError> {
                self.directory_changed = true;
                let r = sqlx::query("DELETE FROM resources WHERE name = $1").bind(res.as_str()).execute(&mut *self.tx).await?;
                Ok(r.rows_affected() > 0)
            }

            async fn resources_from(&mut self, source: Source) -> Result<Vec<ResourceName>, StoreError> {
                let rows = sqlx::query("SELECT name FROM resources WHERE source = $1 ORDER BY name")
                    .bind(source.as_str())
                    .fetch_all(&mut *self.tx)
                    .await?;
                rows.iter().map(|r| name(r.try_get("name")?, "resource")).collect()
            }

            async fn request(&mut self, id: &str) -> Result<Option<AccessRequest>, StoreError> {
                q_request(&mut *self.tx, id).await
            }

            async fn reviews(&mut self, id: &str) -> Result<Vec<Review>, StoreError> {
                q_reviews(&mut *self.tx, id).await
            }

            async fn insert_request(&mut self, r: &AccessRequest) -> Result<(), StoreError> {
                self.deadline_added(r.expires_at.as_millis());
                let sql = format!("INSERT INTO requests ({REQUEST_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)");
                sqlx::query(&sql)
                    .bind(&r.id)
                    .bind(r.requester.as_str())
                    .bind(r.resource.as_str())
                    .bind(r.role.as_str())
                    .bind(&r.reason)
                    .bind(&r.ticket)
                    .bind(r.duration_secs)
                    .bind(r.start_at.map(Timestamp::as_millis))
                    .bind(r.status.as_str())
                    .bind(r.created_at.as_millis())
                    .bind(r.expires_at.as_millis())
                    .bind(r.decided_at.map(Timestamp::as_millis))
                    .bind(&r.extends_grant)
                    .bind(&r.mfa_method)
                    .bind(r.break_glass)
                    .bind(r.acknowledged_by.as_ref().map(|u| u.to_string()))
                    .bind(r.acknowledged_at.map(Timestamp::as_millis))
                    .execute(&mut *self.tx)
                    .await
                    .map_err(|e| self.conflict(e, format!("request {}", r.id)))?;
                Ok(())
            }

            async fn set_request_status(&mut self, id: &str, status: RequestStatus, at: Timestamp) -> Result<(), StoreError> {
                sqlx::query("UPDATE requests SET status = $2, decided_at = $3 WHERE id = $1")
                    .bind(id)
                    .bind(status.as_str())
                    .bind(at.as_millis())
                    .execute(&mut *self.tx)
                    .await?;
                Ok(())
            }

            async fn insert_review(&mut self, r: &Review) -> Result<(), StoreError> {
                let sql = format!("INSERT INTO reviews ({REVIEW_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7)");
                sqlx::query(&sql)
                    .bind(&r.request_id)
                    .bind(r.reviewer.to_string())
                    .bind(r.decision.as_str())
                    .bind(&r.comment)
                    .bind(r.stage.map(i64::from))
                    .bind(&r.mfa_method)
                    .bind(r.created_at.as_millis())
                    .execute(&mut *self.tx)
                    .await
                    .map_err(|e| self.conflict(e, format!("review of {} by {}", r.request_id, r.reviewer)))?;
                Ok(())
            }

            async fn due_requests(&mut self, now: Timestamp, limit: i64) -> Result<Vec<AccessRequest>, StoreError> {
                let sql = format!("SELECT {REQUEST_COLS} FROM requests WHERE status = 'pending' AND expires_at <= $1 ORDER BY expires_at LIMIT $2");
                all(sqlx::query(&sql).bind(now.as_millis()).bind(limit).fetch_all(&mut *self.tx).await?, request_from)
            }

            async fn grant(&mut self, id: &str) -> Result<Option<Grant>, StoreError> {
                q_grant(&mut *self.tx, "id", id).await
            }

            async fn insert_grant(&mut self, g: &Grant) -> Result<(), StoreError> {
                if let Some(d) = g.next_deadline() {
                    self.deadline_added(d.as_millis());
                }
                let sql = format!("INSERT INTO grants ({GRANT_COLS}, next_deadline) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)");
                sqlx::query(&sql)
                    .bind(&g.id)
                    .bind(&g.request_id)
                    .bind(g.user.as_str())
                    .bind(g.resource.as_str())
                    .bind(g.role.as_str())
                    .bind(g.starts_at.as_millis())
                    .bind(g.ends_at.as_millis())
                    .bind(g.status.as_str())
                    .bind(g.created_at.as_millis())
                    .bind(g.revoked_at.map(Timestamp::as_millis))
                    .bind(g.revoked_by.as_ref().map(|u| u.as_str().to_owned()))
                    .bind(&g.revoke_reason)
                    .bind(g.next_deadline().map(Timestamp::as_millis))
                    .execute(&mut *self.tx)
                    .await
                    .map_err(|e| self.conflict(e, format!("grant {}", g.id)))?;
                Ok(())
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
                .execute(&mut *self.tx)
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
                    q.build().execute(&mut *self.tx).await?;
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
                    q.build().execute(&mut *self.tx).await?;
                }
                Ok(())
            }

            async fn due_grants(&mut self, now: Timestamp, limit: i64) -> Result<Vec<Grant>, StoreError> {
                let sql = format!("SELECT {GRANT_COLS} FROM grants WHERE next_deadline IS NOT NULL AND next_deadline <= $1 ORDER BY next_deadline LIMIT $2");
                all(sqlx::query(&sql).bind(now.as_millis()).bind(limit).fetch_all(&mut *self.tx).await?, grant_from)
            }

            async fn put_resource_credential(&mut self, c: &ResourceCredentialRecord) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO resource_credentials (resource, role, key_version, sealed_password, updated_at, updated_by) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (resource, role) DO UPDATE SET key_version = excluded.key_version, \
                     sealed_password = excluded.sealed_password, updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                )
                .bind(c.resource.as_str())
                .bind(&c.role)
                .bind(i64::from(c.key_version))
                .bind(&c.sealed_password)
                .bind(c.updated_at.as_millis())
                .bind(c.updated_by.as_str())
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }

            async fn delete_resource_credential(&mut self, resource: &ResourceName, role: Option<&str>) -> Result<bool, StoreError> {
                let r = sqlx::query("DELETE FROM resource_credentials WHERE resource = $1 AND (CAST($2 AS TEXT) IS NULL OR role = $2)")
                    .bind(resource.as_str())
                    .bind(role)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(r.rows_affected() > 0)
            }

            async fn put_ephemeral_role(&mut self, e: &EphemeralRoleRecord) -> Result<(), StoreError> {
                let sql = format!(
                    "INSERT INTO ephemeral_roles ({EPHEMERAL_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     ON CONFLICT (grant_id) DO UPDATE SET state = excluded.state, last_error = excluded.last_error, \
                     revoked_at = excluded.revoked_at"
                );
                sqlx::query(&sql)
                    .bind(&e.grant_id)
                    .bind(e.resource.as_str())
                    .bind(&e.role_name)
                    .bind(i64::from(e.key_version))
                    .bind(&e.sealed_password)
                    .bind(e.state.as_str())
                    .bind(&e.last_error)
                    .bind(e.created_at.as_millis())
                    .bind(e.revoked_at.map(Timestamp::as_millis))
                    .execute(&mut *self.tx)
                    .await?;
                Ok(())
            }

            async fn insert_connect_token(&mut self, t: &ConnectTokenRecord) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO connect_tokens (token_hash, username, resource, role, grant_id, created_at, expires_at, uses_left, used_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL)",
                )
                .bind(&t.token_hash)
                .bind(t.user.as_str())
                .bind(t.resource.as_str())
                .bind(&t.role)
                .bind(&t.grant_id)
                .bind(t.created_at.as_millis())
                .bind(t.expires_at.as_millis())
                .bind(t.uses)
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }

            async fn redeem_connect_token(&mut self, token_hash: &str, now: Timestamp) -> Result<Option<ConnectTokenRecord>, StoreError> {
                let row = sqlx::query(
                    "UPDATE connect_tokens SET used_at = $2, uses_left = uses_left - 1 WHERE token_hash = $1 AND uses_left > 0 AND expires_at > $2 \
                     RETURNING token_hash, username, resource, role, grant_id, created_at, expires_at, uses_left",
                )
                .bind(token_hash)
                .bind(now.as_millis())
                .fetch_optional(&mut *self.tx)
                .await?;
                let Some(r) = row else { return Ok(None) };
                Ok(Some(ConnectTokenRecord {
                    token_hash: r.try_get("token_hash")?,
                    user: name(r.try_get("username")?, "token user")?,
                    resource: name(r.try_get("resource")?, "token resource")?,
                    role: r.try_get("role")?,
                    grant_id: r.try_get("grant_id")?,
                    created_at: ts(r.try_get("created_at")?),
                    expires_at: ts(r.try_get("expires_at")?),
                    uses: r.try_get("uses_left")?,
                }))
            }

            async fn insert_db_session(&mut self, d: &DbSessionRecord) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO db_sessions (id, grant_id, username, resource, role, peer, started_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&d.id)
                .bind(&d.grant_id)
                .bind(d.user.as_str())
                .bind(d.resource.as_str())
                .bind(&d.role)
                .bind(&d.peer)
                .bind(d.started_at.as_millis())
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }

            async fn end_db_session(&mut self, d: &DbSessionRecord) -> Result<(), StoreError> {
                sqlx::query(
                    "UPDATE db_sessions SET ended_at = $2, end_reason = $3, bytes_in = $4, bytes_out = $5, statements = $6 WHERE id = $1",
                )
                .bind(&d.id)
                .bind(d.ended_at.map(Timestamp::as_millis))
                .bind(&d.end_reason)
                .bind(d.bytes_in)
                .bind(d.bytes_out)
                .bind(d.statements)
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }

            async fn kill_db_session(&mut self, id: &str, reason: &str) -> Result<bool, StoreError> {
                let r = sqlx::query("UPDATE db_sessions SET kill_reason = $2 WHERE id = $1 AND ended_at IS NULL")
                    .bind(id)
                    .bind(reason)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn send_session_kill(&mut self, kill: &crate::SessionKill) -> Result<(), StoreError> {
                if $backend == "postgres" {
                    // Delivered at commit, and only then, to every instance (see PgStore).
                    sqlx::query("SELECT pg_notify($1, $2)")
                        .bind(crate::SESSION_KILL_CHANNEL)
                        .bind(kill.payload())
                        .execute(&mut *self.tx)
                        .await?;
                }
                Ok(())
            }

            async fn acknowledge_request(&mut self, id: &str, by: &Username, at: Timestamp) -> Result<bool, StoreError> {
                let r = sqlx::query(
                    "UPDATE requests SET acknowledged_by = $2, acknowledged_at = $3 \
                     WHERE id = $1 AND break_glass AND acknowledged_at IS NULL",
                )
                .bind(id)
                .bind(by.as_str())
                .bind(at.as_millis())
                .execute(&mut *self.tx)
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
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }

            async fn set_session_mfa(&mut self, token_hash: &str, at: Timestamp, method: &str) -> Result<(), StoreError> {
                sqlx::query("UPDATE sessions SET mfa_at = $2, mfa_method = $3 WHERE token_hash = $1")
                    .bind(token_hash)
                    .bind(at.as_millis())
                    .bind(method)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(())
            }

            async fn put_totp(&mut self, totp: &TotpRecord) -> Result<(), StoreError> {
                q_put_totp(&mut *self.tx, totp).await
            }

            async fn totp(&mut self, user: &Username) -> Result<Option<TotpRecord>, StoreError> {
                q_totp(&mut *self.tx, user).await
            }

            async fn use_totp_step(&mut self, user: &Username, step: i64, confirm_at: Option<Timestamp>) -> Result<bool, StoreError> {
                q_use_totp_step(&mut *self.tx, user, step, confirm_at).await
            }

            async fn delete_totp(&mut self, user: &Username) -> Result<bool, StoreError> {
                let r = sqlx::query("DELETE FROM mfa_totp WHERE username = $1").bind(user.as_str()).execute(&mut *self.tx).await?;
                Ok(r.rows_affected() > 0)
            }

            async fn insert_passkey(&mut self, passkey: &PasskeyRecord) -> Result<(), StoreError> {
                let taken: Option<String> = sqlx::query_scalar("SELECT username FROM mfa_passkeys WHERE credential_id = $1")
                    .bind(&passkey.credential_id)
                    .fetch_optional(&mut *self.tx)
                    .await?;
                if taken.is_some() {
                    return Err(StoreError::Conflict(format!("credential {}", passkey.credential_id)));
                }
                let result = q_insert_passkey(&mut *self.tx, passkey).await;
                result.map_err(|e| self.conflict(e, format!("credential {}", passkey.credential_id)))
            }

            async fn passkeys(&mut self, user: &Username) -> Result<Vec<PasskeyRecord>, StoreError> {
                q_passkeys(&mut *self.tx, user).await
            }

            async fn update_passkey(&mut self, credential_id: &str, passkey_json: Option<&str>, used_at: Timestamp) -> Result<(), StoreError> {
                q_update_passkey(&mut *self.tx, credential_id, passkey_json, used_at).await
            }

            async fn delete_passkey(&mut self, user: &Username, credential_id: &str) -> Result<bool, StoreError> {
                let r = sqlx::query("DELETE FROM mfa_passkeys WHERE username = $1 AND credential_id = $2")
                    .bind(user.as_str())
                    .bind(credential_id)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(r.rows_affected() > 0)
            }

            async fn replace_recovery_codes(&mut self, user: &Username, hashes: &[String], now: Timestamp) -> Result<(), StoreError> {
                sqlx::query("DELETE FROM mfa_recovery_codes WHERE username = $1")
                    .bind(user.as_str())
                    .execute(&mut *self.tx)
                    .await?;
                for hash in hashes {
                    sqlx::query("INSERT INTO mfa_recovery_codes (username, code_hash, used_at, created_at) VALUES ($1, $2, NULL, $3)")
                        .bind(user.as_str())
                        .bind(hash)
                        .bind(now.as_millis())
                        .execute(&mut *self.tx)
                        .await?;
                }
                Ok(())
            }

            async fn use_recovery_code(&mut self, user: &Username, hash: &str, now: Timestamp) -> Result<bool, StoreError> {
                q_use_recovery_code(&mut *self.tx, user, hash, now).await
            }

            async fn recovery_codes_left(&mut self, user: &Username) -> Result<i64, StoreError> {
                q_recovery_left(&mut *self.tx, user).await
            }

            async fn insert_challenge(&mut self, c: &ChallengeRecord, now: Timestamp) -> Result<(), StoreError> {
                sqlx::query("DELETE FROM mfa_challenges WHERE expires_at <= $1")
                    .bind(now.as_millis())
                    .execute(&mut *self.tx)
                    .await?;
                sqlx::query("INSERT INTO mfa_challenges (id, username, purpose, state, expires_at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(&c.id)
                    .bind(c.user.as_str())
                    .bind(&c.purpose)
                    .bind(&c.state)
                    .bind(c.expires_at.as_millis())
                    .execute(&mut *self.tx)
                    .await?;
                Ok(())
            }

            async fn take_challenge(&mut self, id: &str) -> Result<Option<ChallengeRecord>, StoreError> {
                sqlx::query("DELETE FROM mfa_challenges WHERE id = $1 RETURNING id, username, purpose, state, expires_at")
                    .bind(id)
                    .fetch_optional(&mut *self.tx)
                    .await?
                    .as_ref()
                    .map(challenge_from)
                    .transpose()
            }

            async fn lock_attempts(&mut self, username: &str) -> Result<AttemptRecord, StoreError> {
                // A row to lock first: `FOR UPDATE` on no row locks nothing, and two first
                // attempts would both pass.
                sqlx::query("INSERT INTO auth_attempts (username, failures, last_failure_at, locked_until) VALUES ($1, 0, 0, NULL) ON CONFLICT (username) DO NOTHING")
                    .bind(username)
                    .execute(&mut *self.tx)
                    .await?;
                q_attempts(&mut *self.tx, username, true)
                    .await?
                    .ok_or_else(|| StoreError::Corrupt(format!("the attempt record of '{username}' vanished")))
            }

            async fn prune_attempts(&mut self, before: Timestamp) -> Result<u64, StoreError> {
                let r = sqlx::query("DELETE FROM auth_attempts WHERE last_failure_at < $1 AND username NOT IN (SELECT name FROM users)")
                    .bind(before.as_millis())
                    .execute(&mut *self.tx)
                    .await?;
                Ok(r.rows_affected())
            }

            async fn put_attempts(&mut self, attempts: &AttemptRecord) -> Result<(), StoreError> {
                q_put_attempts(&mut *self.tx, attempts).await
            }

            async fn clear_attempts(&mut self, username: &str) -> Result<bool, StoreError> {
                let r = sqlx::query("DELETE FROM auth_attempts WHERE username = $1").bind(username).execute(&mut *self.tx).await?;
                Ok(r.rows_affected() > 0)
            }

            async fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
                sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
                    .bind(key)
                    .bind(value)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(())
            }

            async fn delete_meta(&mut self, key: &str) -> Result<(), StoreError> {
                sqlx::query("DELETE FROM meta WHERE key = $1").bind(key).execute(&mut *self.tx).await?;
                Ok(())
            }

            async fn relax_durability(&mut self) -> Result<(), StoreError> {
                if $backend == "postgres" {
                    sqlx::query("SET LOCAL synchronous_commit = off").execute(&mut *self.tx).await?;
                }
                Ok(())
            }

            async fn append_audit(&mut self, event: NewEvent, now: Timestamp) -> Result<(), StoreError> {
                // Written at commit, all in one statement: a change's events cost one round
                // trip to the database, not one each. Nothing is handed back but the head
                // (`head()`): a copy of the event would copy its details, and the gateway's
                // carry hundreds of statements.
                let (e, details) = self.head.append_stored(event, now.as_millis());
                self.appended.push(e);
                self.appended_details.push(details);
                Ok(())
            }

            async fn insert_checkpoint(&mut self, c: &Checkpoint) -> Result<(), StoreError> {
                sqlx::query("INSERT INTO audit_checkpoints (seq, hash, ts, key_id, signature, prev_seq, prev_hash, next_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
                    .bind(c.seq)
                    .bind(&c.hash)
                    .bind(c.ts)
                    .bind(&c.key_id)
                    .bind(&c.signature)
                    .bind(c.prev.as_ref().map(|p| p.seq))
                    .bind(c.prev.as_ref().map(|p| p.hash.clone()))
                    .bind(c.next_key.clone())
                    .execute(&mut *self.tx)
                    .await
                    .map_err(|e| self.conflict(e, format!("checkpoint {}", c.seq)))?;
                Ok(())
            }

            async fn last_checkpoint(&mut self) -> Result<Option<Checkpoint>, StoreError> {
                let sql = format!("SELECT {CHECKPOINT_COLS} FROM audit_checkpoints ORDER BY seq DESC LIMIT 1");
                let row = sqlx::query(&sql).fetch_optional(&mut *self.tx).await?;
                row.as_ref().map(checkpoint_from).transpose()
            }

            async fn commit(mut self: Box<Self>) -> Result<Vec<AuditEvent>, StoreError> {
                if self.poisoned {
                    return Err(StoreError::Aborted);
                }
                // The audit_head row follows by trigger (see the migration).
                // A new deadline is announced at commit to every instance's expiry engine (see
                // PgStore), with the time, so an engine waiting for an earlier one reads nothing.
                // The announcement rides on the events' insert: one round trip less while the
                // head is held.
                let mut deadline = self.earliest_deadline.filter(|_| $backend == "postgres").map(|at| at.to_string());
                if self.appended.is_empty() {
                    if let Some(at) = deadline.take() {
                        sqlx::query("SELECT pg_notify($1, $2)").bind(crate::DEADLINE_CHANNEL).bind(at).execute(&mut *self.tx).await?;
                    }
                }
                let mut details = std::mem::take(&mut self.appended_details).into_iter();
                for chunk in self.appended.chunks(1000) {
                    let announce = deadline.take();
                    let mut insert = sqlx::QueryBuilder::<$db>::new(if announce.is_some() { "WITH inserted AS (" } else { "" });
                    insert.push(format!("INSERT INTO audit_events ({AUDIT_COLS}) "));
                    let texts: Vec<String> = details.by_ref().take(chunk.len()).collect();
                    insert.push_values(chunk.iter().zip(texts), |mut row, (e, d)| {
                        row.push_bind(e.seq)
                            .push_bind(e.ts)
                            .push_bind(e.actor.clone())
                            .push_bind(e.action.clone())
                            .push_bind(e.target.clone())
                            .push_bind(e.outcome.clone())
                            .push_bind(d)
                            .push_bind(e.prev_hash.clone())
                            .push_bind(e.hash.clone());
                    });
                    if let Some(at) = announce {
                        insert.push(" RETURNING 1) SELECT pg_notify(").push_bind(crate::DEADLINE_CHANNEL).push(", ").push_bind(at);
                        insert.push(") FROM (SELECT 1 FROM inserted LIMIT 1) AS announced");
                    }
                    insert.build().execute(&mut *self.tx).await?;
                }
                let this = *self;
                this.tx.commit().await?;
                this.slot.committed(&this.head, this.directory_changed);
                Ok(this.appended)
            }
        }
    };
}

pub(crate) use impl_store;
