//! Users, the groups they belong to, and their sign-in sessions.

use crate::Result;
use async_trait::async_trait;
use jitgate_core::factor::Factor;
use jitgate_core::names::{GroupName, Username};
use jitgate_core::Timestamp;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub name: Username,
    pub display_name: String,
    /// Argon2id PHC string; `None` for a user who cannot log in with a password.
    pub password_hash: Option<String>,
    pub is_admin: bool,
    pub disabled: bool,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// SHA-256 of the opaque token; the token itself is never stored.
    pub token_hash: String,
    pub user: Username,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
    pub expires_at: Timestamp,
    /// When this session last proved a second factor (at login or a step-up), and how.
    pub mfa_at: Option<Timestamp>,
    pub mfa_method: Option<Factor>,
}

/// What decides what a person may do, as one transaction reads it: whether they are an
/// administrator, and their groups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Standing {
    pub is_admin: bool,
    pub groups: BTreeSet<GroupName>,
}

/// Where a group membership or resource came from: the config file is re-applied at every start
/// and replaces what it set before; the API's entries are left alone by that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Config,
    Api,
    /// Set at each single sign-on from the provider's groups, by its mapping rules.
    Sso,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Api => "api",
            Self::Sso => "sso",
        }
    }
}

/// Reads outside a transaction.
#[async_trait]
pub trait IdentityReads: Send + Sync {
    async fn user(&self, name: &Username) -> Result<Option<UserRecord>>;
    async fn users(&self) -> Result<Vec<UserRecord>>;
    async fn user_groups(&self, name: &Username) -> Result<BTreeSet<GroupName>>;
    async fn groups(&self) -> Result<BTreeMap<GroupName, Vec<Username>>>;
    async fn session(&self, token_hash: &str) -> Result<Option<SessionRecord>>;
    /// A session with its user, in one read: every authenticated call starts here.
    async fn session_user(&self, token_hash: &str) -> Result<Option<(SessionRecord, UserRecord)>>;
}

/// Reads and changes inside a [`crate::WriteTx`].
#[async_trait]
pub trait IdentityWrites: Send {
    async fn user(&mut self, name: &Username) -> Result<Option<UserRecord>>;
    async fn user_groups(&mut self, name: &Username) -> Result<BTreeSet<GroupName>>;
    async fn count_users(&mut self) -> Result<i64>;
    async fn insert_user(&mut self, user: &UserRecord) -> Result<()>;
    async fn update_user(&mut self, user: &UserRecord) -> Result<()>;
    async fn ensure_group(&mut self, group: &GroupName, source: Source) -> Result<()>;
    async fn set_member(&mut self, group: &GroupName, user: &Username, member: bool, source: Source) -> Result<bool>;
    /// Removes every group and membership that `source` set; the config is then re-applied.
    async fn clear_source(&mut self, source: Source) -> Result<()>;
    async fn insert_session(&mut self, session: &SessionRecord) -> Result<()>;
    async fn touch_session(&mut self, token_hash: &str, now: Timestamp) -> Result<()>;
    async fn delete_session(&mut self, token_hash: &str) -> Result<bool>;
    async fn delete_sessions_of(&mut self, user: &Username) -> Result<u64>;
    /// Ends every session of `user` but the one whose token hash is `keep`.
    async fn delete_other_sessions_of(&mut self, user: &Username, keep: &str) -> Result<u64>;
}

/// The SQL of this aggregate for one backend, stamped out by `crate::sql::impl_store!` in the
/// backend's module (which supplies the imports and the shared helpers).
macro_rules! identity_sql {
    ($store:ident, $tx:ident, $db:ty, $lock:literal) => {
        fn user_from(row: &DbRow) -> Result<UserRecord, StoreError> {
            user_created_as(row, "created_at")
        }

        /// A user from a row whose `created_at` is the column named.
        fn user_created_as(row: &DbRow, created_at: &str) -> Result<UserRecord, StoreError> {
            Ok(UserRecord {
                name: name(row.try_get("name")?, "user name")?,
                display_name: row.try_get("display_name")?,
                password_hash: row.try_get("password_hash")?,
                is_admin: row.try_get("is_admin")?,
                disabled: row.try_get("disabled")?,
                created_at: ts(row.try_get(created_at)?),
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
                mfa_method: factor(row.try_get("mfa_method")?)?,
            })
        }

        /// The user of a row that joined `users u` to something with a `created_at` of its own:
        /// [`JOINED_USER_COLS`].
        fn joined_user_from(row: &DbRow) -> Result<UserRecord, StoreError> {
            user_created_as(row, "user_created_at")
        }

        const JOINED_USER_COLS: &str = "u.name, u.display_name, u.password_hash, u.is_admin, u.disabled, u.created_at AS user_created_at";

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

        #[async_trait]
        impl crate::IdentityReads for $store {
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
                // A literal, not the column constant: every authenticated call runs this.
                let row = sqlx::query(
                    "SELECT s.token_hash, s.username, s.created_at, s.last_seen_at, s.expires_at, s.mfa_at, s.mfa_method, \
                     u.name, u.display_name, u.password_hash, u.is_admin, u.disabled, u.created_at AS user_created_at \
                     FROM sessions s JOIN users u ON u.name = s.username WHERE s.token_hash = $1",
                )
                .bind(token_hash)
                .fetch_optional(&self.read)
                .await?;
                let Some(row) = row else { return Ok(None) };
                Ok(Some((session_from(&row)?, joined_user_from(&row)?)))
            }
        }

        #[async_trait]
        impl crate::IdentityWrites for $tx {
            async fn user(&mut self, user: &Username) -> Result<Option<UserRecord>, StoreError> {
                q_user(self.db().await?, user).await
            }

            async fn user_groups(&mut self, user: &Username) -> Result<BTreeSet<GroupName>, StoreError> {
                q_user_groups(self.db().await?, user).await
            }

            async fn count_users(&mut self) -> Result<i64, StoreError> {
                Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(self.db().await?).await?)
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
                    .execute(self.db().await?)
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
                    .execute(self.db().await?)
                    .await?;
                Ok(())
            }

            async fn ensure_group(&mut self, g: &GroupName, source: Source) -> Result<(), StoreError> {
                sqlx::query("INSERT INTO groups (name, source) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
                    .bind(g.as_str())
                    .bind(source.as_str())
                    .execute(self.db().await?)
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
                        .execute(self.db().await?)
                        .await?
                } else {
                    sqlx::query("DELETE FROM group_members WHERE group_name = $1 AND username = $2")
                        .bind(g.as_str())
                        .bind(u.as_str())
                        .execute(self.db().await?)
                        .await?
                };
                Ok(done.rows_affected() > 0)
            }

            async fn clear_source(&mut self, source: Source) -> Result<(), StoreError> {
                self.directory_changed = true;
                sqlx::query("DELETE FROM group_members WHERE source = $1").bind(source.as_str()).execute(self.db().await?).await?;
                sqlx::query("DELETE FROM groups WHERE source = $1 AND name NOT IN (SELECT group_name FROM group_members)")
                    .bind(source.as_str())
                    .execute(self.db().await?)
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
                    .bind(s.mfa_method.map(Factor::as_str))
                    .execute(self.db().await?)
                    .await?;
                Ok(())
            }

            async fn touch_session(&mut self, token_hash: &str, now: Timestamp) -> Result<(), StoreError> {
                sqlx::query("UPDATE sessions SET last_seen_at = $2 WHERE token_hash = $1")
                    .bind(token_hash)
                    .bind(now.as_millis())
                    .execute(self.db().await?)
                    .await?;
                Ok(())
            }

            async fn delete_session(&mut self, token_hash: &str) -> Result<bool, StoreError> {
                let r = sqlx::query("DELETE FROM sessions WHERE token_hash = $1").bind(token_hash).execute(self.db().await?).await?;
                Ok(r.rows_affected() > 0)
            }

            async fn delete_sessions_of(&mut self, user: &Username) -> Result<u64, StoreError> {
                let r = sqlx::query("DELETE FROM sessions WHERE username = $1").bind(user.as_str()).execute(self.db().await?).await?;
                Ok(r.rows_affected())
            }

            async fn delete_other_sessions_of(&mut self, user: &Username, keep: &str) -> Result<u64, StoreError> {
                let r = sqlx::query("DELETE FROM sessions WHERE username = $1 AND token_hash <> $2")
                    .bind(user.as_str())
                    .bind(keep)
                    .execute(self.db().await?)
                    .await?;
                Ok(r.rows_affected())
            }
        }
    };
}

pub(crate) use identity_sql;
