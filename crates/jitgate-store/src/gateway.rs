//! The gateway's records: connect tokens, sessions through it, ephemeral roles, upstream credentials, and kills sent to every instance.

use crate::Result;
use async_trait::async_trait;
use jitgate_core::grant::DbRoleState;
use jitgate_core::names::{ResourceName, RoleName, Username};
pub use jitgate_core::session::GatewaySession;
use jitgate_core::Timestamp;

/// A one-time connect token for the gateway, bound to user, resource, role and grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectTokenRecord {
    pub token_hash: String,
    pub user: Username,
    pub resource: ResourceName,
    pub role: RoleName,
    pub grant_id: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// Sessions it may open (1 unless asked for more, for pools).
    pub uses: i64,
}

/// A database role made for one grant (ephemeral access) and where its removal stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EphemeralRoleRecord {
    pub grant_id: String,
    pub resource: ResourceName,
    pub role_name: String,
    pub key_version: u32,
    pub sealed_password: String,
    pub state: DbRoleState,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

/// A resource's upstream password, sealed with the server's secrets key (the resource name is
/// the associated data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceCredentialRecord {
    pub resource: ResourceName,
    /// The role whose login the password is for; `None` for the resource's service login.
    pub role: Option<RoleName>,
    pub key_version: u32,
    pub sealed_password: String,
    pub updated_at: Timestamp,
    pub updated_by: Username,
}

/// Which gateway sessions a [`SessionKill`] ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KillTarget {
    /// Every session of the grant.
    Grant(String),
    /// One session.
    Session(String),
}

/// Gateway sessions to end wherever they run, and the reason their clients are told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionKill {
    pub target: KillTarget,
    pub reason: String,
}

impl SessionKill {
    /// The notification payload: `{"grant": id, "reason": …}` or `{"session": id, "reason": …}`.
    pub(crate) fn payload(&self) -> String {
        let (key, id) = match &self.target {
            KillTarget::Grant(id) => ("grant", id),
            KillTarget::Session(id) => ("session", id),
        };
        serde_json::json!({ key: id, "reason": self.reason }).to_string()
    }

    pub(crate) fn from_payload(payload: &str) -> Option<Self> {
        let v: serde_json::Value = serde_json::from_str(payload).ok()?;
        let reason = v.get("reason")?.as_str()?.to_owned();
        let text = |key: &str| v.get(key).and_then(|x| x.as_str()).map(str::to_owned);
        let target = match (text("grant"), text("session")) {
            (Some(id), None) => KillTarget::Grant(id),
            (None, Some(id)) => KillTarget::Session(id),
            _ => return None,
        };
        Some(Self { target, reason })
    }
}

/// One instance's subscription to the kills that every instance sharing the store sends.
pub struct KillFeed {
    pub kills: tokio::sync::broadcast::Receiver<SessionKill>,
    /// True while the instance listens. Each change means kills may have been missed (sent while
    /// the connection was down), so what they would have ended must be looked up in the store.
    pub listening: tokio::sync::watch::Receiver<bool>,
}

/// Reads outside a transaction.
#[async_trait]
pub trait GatewayReads: Send + Sync {
    async fn ephemeral_role(&self, grant_id: &str) -> Result<Option<EphemeralRoleRecord>>;
    /// The ephemeral roles of those of the grants `ids` that have one (one read for a list).
    async fn ephemeral_roles_for(&self, grant_ids: &[String]) -> Result<Vec<EphemeralRoleRecord>>;
    async fn resource_credential(&self, resource: &ResourceName, role: Option<&RoleName>) -> Result<Option<ResourceCredentialRecord>>;
    /// Ephemeral roles in `state`, oldest first.
    async fn ephemeral_roles_in(&self, state: DbRoleState) -> Result<Vec<EphemeralRoleRecord>>;
    /// Gateway sessions, newest first: the live ones only, or all, of one user or everyone.
    async fn db_sessions(&self, user: Option<&Username>, live_only: bool, limit: i64) -> Result<Vec<GatewaySession>>;
    /// Of the gateway sessions `ids`, those an administrator asked to end
    /// ([`GatewayWrites::kill_db_session`]), with the reason.
    async fn killed_db_sessions(&self, ids: &[String]) -> Result<Vec<(String, String)>>;
}

/// Reads and changes inside a [`crate::WriteTx`].
#[async_trait]
pub trait GatewayWrites: Send {
    async fn insert_connect_token(&mut self, token: &ConnectTokenRecord) -> Result<()>;
    /// Adds or updates (by grant) an ephemeral role's record.
    async fn put_ephemeral_role(&mut self, role: &EphemeralRoleRecord) -> Result<()>;
    /// Sets (or replaces) a resource's sealed upstream password.
    async fn put_resource_credential(&mut self, credential: &ResourceCredentialRecord) -> Result<()>;
    /// One login's stored password (`None`: the service login's); false when there was none.
    async fn delete_resource_credential(&mut self, resource: &ResourceName, role: Option<&RoleName>) -> Result<bool>;
    /// Every stored password of the resource (when it goes).
    async fn delete_resource_credentials(&mut self, resource: &ResourceName) -> Result<u64>;
    /// Uses a connect token: as many times as it allows, and only before it expires.
    async fn redeem_connect_token(&mut self, token_hash: &str, now: Timestamp) -> Result<Option<ConnectTokenRecord>>;
    async fn insert_db_session(&mut self, session: &GatewaySession) -> Result<()>;
    async fn end_db_session(&mut self, session: &GatewaySession) -> Result<()>;
    /// Moves a live session onto another grant (the extension that takes over at its grant's
    /// end); false when no session with that id is live.
    async fn continue_db_session(&mut self, id: &str, grant_id: &str) -> Result<bool>;
    /// Records that a live gateway session is to end with `reason` (whichever instance runs
    /// it); false when no session with that id is live.
    async fn kill_db_session(&mut self, id: &str, reason: &str) -> Result<bool>;
    /// Sends `kill` to every instance sharing the store, if this transaction commits
    /// (PostgreSQL `NOTIFY`); nothing for a store one process uses alone.
    async fn send_session_kill(&mut self, kill: &SessionKill) -> Result<()>;
}

/// The SQL of this aggregate for one backend, stamped out by `crate::sql::impl_store!` in the
/// backend's module (which supplies the imports and the shared helpers).
macro_rules! gateway_sql {
    ($store:ident, $tx:ident, $db:ty, $lock:literal) => {
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

        /// A stored credential's role: `''` is the service login's.
        fn login_role(stored: String) -> Result<Option<RoleName>, StoreError> {
            if stored.is_empty() {
                Ok(None)
            } else {
                name(stored, "credential role").map(Some)
            }
        }

        fn credential_from(row: &DbRow) -> Result<ResourceCredentialRecord, StoreError> {
            Ok(ResourceCredentialRecord {
                resource: name(row.try_get("resource")?, "credential resource")?,
                role: login_role(row.try_get("role")?)?,
                key_version: u32::try_from(row.try_get::<i64, _>("key_version")?).map_err(|e| corrupt("key version", e))?,
                sealed_password: row.try_get("sealed_password")?,
                updated_at: ts(row.try_get("updated_at")?),
                updated_by: name(row.try_get("updated_by")?, "credential updated_by")?,
            })
        }

        #[async_trait]
        impl crate::GatewayReads for $store {
            async fn ephemeral_role(&self, grant_id: &str) -> Result<Option<EphemeralRoleRecord>, StoreError> {
                let sql = format!("SELECT {EPHEMERAL_COLS} FROM ephemeral_roles WHERE grant_id = $1");
                sqlx::query(&sql).bind(grant_id).fetch_optional(&self.read).await?.as_ref().map(ephemeral_from).transpose()
            }

            async fn ephemeral_roles_for(&self, grant_ids: &[String]) -> Result<Vec<EphemeralRoleRecord>, StoreError> {
                let mut out = Vec::new();
                for chunk in grant_ids.chunks(IN_CHUNK) {
                    let sql = format!("SELECT {EPHEMERAL_COLS} FROM ephemeral_roles WHERE grant_id IN ({})", placeholders(1, chunk.len()));
                    let mut q = sqlx::query(&sql);
                    for id in chunk {
                        q = q.bind(id);
                    }
                    out.extend(all(q.fetch_all(&self.read).await?, ephemeral_from)?);
                }
                Ok(out)
            }

            async fn resource_credential(&self, resource: &ResourceName, role: Option<&RoleName>) -> Result<Option<ResourceCredentialRecord>, StoreError> {
                sqlx::query("SELECT resource, role, key_version, sealed_password, updated_at, updated_by FROM resource_credentials WHERE resource = $1 AND role = $2")
                    .bind(resource.as_str())
                    .bind(role.map_or("", RoleName::as_str))
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

            async fn db_sessions(&self, user: Option<&Username>, live_only: bool, limit: i64) -> Result<Vec<GatewaySession>, StoreError> {
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
                        Ok(GatewaySession {
                            id: r.try_get("id")?,
                            grant_id: r.try_get("grant_id")?,
                            user: name(r.try_get("username")?, "session user")?,
                            resource: name(r.try_get("resource")?, "session resource")?,
                            role: name(r.try_get("role")?, "session role")?,
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
        }

        #[async_trait]
        impl crate::GatewayWrites for $tx {
            async fn insert_connect_token(&mut self, t: &ConnectTokenRecord) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO connect_tokens (token_hash, username, resource, role, grant_id, created_at, expires_at, uses_left, used_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL)",
                )
                .bind(&t.token_hash)
                .bind(t.user.as_str())
                .bind(t.resource.as_str())
                .bind(t.role.as_str())
                .bind(&t.grant_id)
                .bind(t.created_at.as_millis())
                .bind(t.expires_at.as_millis())
                .bind(t.uses)
                .execute(self.db().await?)
                .await?;
                Ok(())
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
                    .execute(self.db().await?)
                    .await?;
                Ok(())
            }

            async fn put_resource_credential(&mut self, c: &ResourceCredentialRecord) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO resource_credentials (resource, role, key_version, sealed_password, updated_at, updated_by) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (resource, role) DO UPDATE SET key_version = excluded.key_version, \
                     sealed_password = excluded.sealed_password, updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                )
                .bind(c.resource.as_str())
                .bind(c.role.as_ref().map_or("", RoleName::as_str))
                .bind(i64::from(c.key_version))
                .bind(&c.sealed_password)
                .bind(c.updated_at.as_millis())
                .bind(c.updated_by.as_str())
                .execute(self.db().await?)
                .await?;
                Ok(())
            }

            async fn delete_resource_credential(&mut self, resource: &ResourceName, role: Option<&RoleName>) -> Result<bool, StoreError> {
                let r = sqlx::query("DELETE FROM resource_credentials WHERE resource = $1 AND role = $2")
                    .bind(resource.as_str())
                    .bind(role.map_or("", RoleName::as_str))
                    .execute(self.db().await?)
                    .await?;
                Ok(r.rows_affected() > 0)
            }

            async fn delete_resource_credentials(&mut self, resource: &ResourceName) -> Result<u64, StoreError> {
                let r = sqlx::query("DELETE FROM resource_credentials WHERE resource = $1")
                    .bind(resource.as_str())
                    .execute(self.db().await?)
                    .await?;
                Ok(r.rows_affected())
            }

            async fn redeem_connect_token(&mut self, token_hash: &str, now: Timestamp) -> Result<Option<ConnectTokenRecord>, StoreError> {
                let row = sqlx::query(
                    "UPDATE connect_tokens SET used_at = $2, uses_left = uses_left - 1 WHERE token_hash = $1 AND uses_left > 0 AND expires_at > $2 \
                     RETURNING token_hash, username, resource, role, grant_id, created_at, expires_at, uses_left",
                )
                .bind(token_hash)
                .bind(now.as_millis())
                .fetch_optional(self.db().await?)
                .await?;
                let Some(r) = row else { return Ok(None) };
                Ok(Some(ConnectTokenRecord {
                    token_hash: r.try_get("token_hash")?,
                    user: name(r.try_get("username")?, "token user")?,
                    resource: name(r.try_get("resource")?, "token resource")?,
                    role: name(r.try_get("role")?, "token role")?,
                    grant_id: r.try_get("grant_id")?,
                    created_at: ts(r.try_get("created_at")?),
                    expires_at: ts(r.try_get("expires_at")?),
                    uses: r.try_get("uses_left")?,
                }))
            }

            async fn insert_db_session(&mut self, d: &GatewaySession) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO db_sessions (id, grant_id, username, resource, role, peer, started_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&d.id)
                .bind(&d.grant_id)
                .bind(d.user.as_str())
                .bind(d.resource.as_str())
                .bind(d.role.as_str())
                .bind(&d.peer)
                .bind(d.started_at.as_millis())
                .execute(self.db().await?)
                .await?;
                Ok(())
            }

            async fn continue_db_session(&mut self, id: &str, grant_id: &str) -> Result<bool, StoreError> {
                let r = sqlx::query("UPDATE db_sessions SET grant_id = $2 WHERE id = $1 AND ended_at IS NULL")
                    .bind(id)
                    .bind(grant_id)
                    .execute(self.db().await?)
                    .await?;
                Ok(r.rows_affected() > 0)
            }

            async fn end_db_session(&mut self, d: &GatewaySession) -> Result<(), StoreError> {
                sqlx::query(
                    "UPDATE db_sessions SET ended_at = $2, end_reason = $3, bytes_in = $4, bytes_out = $5, statements = $6 WHERE id = $1",
                )
                .bind(&d.id)
                .bind(d.ended_at.map(Timestamp::as_millis))
                .bind(&d.end_reason)
                .bind(d.bytes_in)
                .bind(d.bytes_out)
                .bind(d.statements)
                .execute(self.db().await?)
                .await?;
                Ok(())
            }

            async fn kill_db_session(&mut self, id: &str, reason: &str) -> Result<bool, StoreError> {
                let r = sqlx::query("UPDATE db_sessions SET kill_reason = $2 WHERE id = $1 AND ended_at IS NULL")
                    .bind(id)
                    .bind(reason)
                    .execute(self.db().await?)
                    .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn send_session_kill(&mut self, kill: &crate::SessionKill) -> Result<(), StoreError> {
                self.announce_kill(kill).await
            }
        }
    };
}

pub(crate) use gateway_sql;
