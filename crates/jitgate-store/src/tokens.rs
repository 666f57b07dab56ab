//! API tokens: a person's credential for scripts, with scopes and an end. The token itself is
//! never stored, only its SHA-256; revoking keeps the row (and its name) for the record.

use crate::Result;
use async_trait::async_trait;
use jitgate_core::names::Username;
use jitgate_core::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTokenRecord {
    pub id: String,
    pub token_hash: String,
    pub user: Username,
    pub name: String,
    /// The scope names, as the API spells them.
    pub scopes: Vec<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

#[async_trait]
pub trait TokenReads: Send + Sync {
    /// The token with this hash and its user, in one read: every call made with one starts here.
    async fn api_token_user(&self, token_hash: &str) -> Result<Option<(ApiTokenRecord, crate::UserRecord)>>;
    /// `user`'s tokens, or everyone's; newest first.
    async fn api_tokens(&self, user: Option<&Username>) -> Result<Vec<ApiTokenRecord>>;
    /// Bookkeeping, outside the audit head: when a token was last used.
    async fn touch_api_token(&self, id: &str, at: Timestamp) -> Result<()>;
}

#[async_trait]
pub trait TokenWrites: Send {
    async fn insert_api_token(&mut self, token: &ApiTokenRecord) -> Result<()>;
    async fn api_token(&mut self, id: &str) -> Result<Option<ApiTokenRecord>>;
    /// False when there is no such token, or it was revoked already.
    async fn revoke_api_token(&mut self, id: &str, at: Timestamp) -> Result<bool>;
    /// Revokes every live token of `user`; how many.
    async fn revoke_api_tokens_of(&mut self, user: &Username, at: Timestamp) -> Result<u64>;
}

macro_rules! tokens_sql {
    ($store:ident, $tx:ident, $db:ty, $lock:literal) => {
        const TOKEN_COLS: &str = "t.id, t.token_hash, t.username, t.name AS token_name, t.scopes, t.created_at, t.expires_at, t.last_used_at, t.revoked_at";

        fn api_token_from(row: &DbRow) -> Result<crate::ApiTokenRecord, StoreError> {
            let scopes: String = row.try_get("scopes")?;
            Ok(crate::ApiTokenRecord {
                id: row.try_get("id")?,
                token_hash: row.try_get("token_hash")?,
                user: name(row.try_get("username")?, "token user")?,
                name: row.try_get("token_name")?,
                scopes: scopes.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
                created_at: ts(row.try_get("created_at")?),
                expires_at: ts(row.try_get("expires_at")?),
                last_used_at: opt_ts(row.try_get("last_used_at")?),
                revoked_at: opt_ts(row.try_get("revoked_at")?),
            })
        }

        #[async_trait]
        impl crate::TokenReads for $store {
            async fn api_token_user(&self, token_hash: &str) -> Result<Option<(crate::ApiTokenRecord, crate::UserRecord)>, StoreError> {
                let sql = format!(
                    "SELECT {TOKEN_COLS}, {JOINED_USER_COLS} FROM api_tokens t JOIN users u ON u.name = t.username WHERE t.token_hash = $1"
                );
                let Some(row) = sqlx::query(&sql).bind(token_hash).fetch_optional(&self.read).await? else {
                    return Ok(None);
                };
                Ok(Some((api_token_from(&row)?, joined_user_from(&row)?)))
            }

            async fn api_tokens(&self, user: Option<&Username>) -> Result<Vec<crate::ApiTokenRecord>, StoreError> {
                let sql = format!("SELECT {TOKEN_COLS} FROM api_tokens t WHERE $1 IS NULL OR t.username = $1 ORDER BY t.created_at DESC, t.id");
                all(sqlx::query(&sql).bind(user.map(Username::as_str)).fetch_all(&self.read).await?, api_token_from)
            }

            async fn touch_api_token(&self, id: &str, at: Timestamp) -> Result<(), StoreError> {
                sqlx::query("UPDATE api_tokens SET last_used_at = $2 WHERE id = $1")
                    .bind(id)
                    .bind(at.as_millis())
                    .execute(&self.write)
                    .await?;
                Ok(())
            }
        }

        #[async_trait]
        impl crate::TokenWrites for $tx {
            async fn insert_api_token(&mut self, t: &crate::ApiTokenRecord) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO api_tokens (id, token_hash, username, name, scopes, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&t.id)
                .bind(&t.token_hash)
                .bind(t.user.as_str())
                .bind(&t.name)
                .bind(t.scopes.join(","))
                .bind(t.created_at.as_millis())
                .bind(t.expires_at.as_millis())
                .execute(self.db().await?)
                .await?;
                Ok(())
            }

            async fn api_token(&mut self, id: &str) -> Result<Option<crate::ApiTokenRecord>, StoreError> {
                let sql = format!("SELECT {TOKEN_COLS} FROM api_tokens t WHERE t.id = $1");
                sqlx::query(&sql).bind(id).fetch_optional(self.db().await?).await?.as_ref().map(api_token_from).transpose()
            }

            async fn revoke_api_tokens_of(&mut self, user: &Username, at: Timestamp) -> Result<u64, StoreError> {
                let r = sqlx::query("UPDATE api_tokens SET revoked_at = $2 WHERE username = $1 AND revoked_at IS NULL")
                    .bind(user.as_str())
                    .bind(at.as_millis())
                    .execute(self.db().await?)
                    .await?;
                Ok(r.rows_affected())
            }

            async fn revoke_api_token(&mut self, id: &str, at: Timestamp) -> Result<bool, StoreError> {
                let r = sqlx::query("UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                    .bind(id)
                    .bind(at.as_millis())
                    .execute(self.db().await?)
                    .await?;
                Ok(r.rows_affected() > 0)
            }
        }
    };
}
pub(crate) use tokens_sql;
