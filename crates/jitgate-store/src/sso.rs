//! Single sign-on: which provider identity (issuer's subject) is which jitgate user, and the
//! sign-ins between their two halves (sent to the provider, not yet back).
//!
//! A half-done sign-in is bookkeeping, not a change anyone audits: it is written and taken
//! outside the audit head ([`SsoReads::put_sso_sign_in`], [`SsoReads::take_sso_sign_in`]), so
//! anonymous sign-in attempts never queue behind the workflow. Taking one deletes it: a state
//! or hand-off code works once.

use crate::Result;
use async_trait::async_trait;
use jitgate_core::names::{GroupName, Username};
use jitgate_core::Timestamp;
use std::collections::BTreeSet;

/// A sign-in between its halves, or a CLI's hand-off: what the second half needs, sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoSignInRecord {
    /// SHA-256 of the state (or of the hand-off code): the value itself is never stored.
    pub id: String,
    pub provider: String,
    pub key_version: u32,
    pub sealed: String,
    pub expires_at: Timestamp,
}

/// A provider identity linked to a jitgate user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoIdentityRecord {
    pub provider: String,
    pub subject: String,
    pub user: Username,
    pub linked_at: Timestamp,
    pub last_sign_in_at: Timestamp,
}

#[async_trait]
pub trait SsoReads: Send + Sync {
    /// Keeps a half-done sign-in (and drops those expired at `now`).
    async fn put_sso_sign_in(&self, record: &SsoSignInRecord, now: Timestamp) -> Result<()>;
    /// Takes a half-done sign-in that has not expired at `now`: it is gone afterwards.
    async fn take_sso_sign_in(&self, id: &str, now: Timestamp) -> Result<Option<SsoSignInRecord>>;
    async fn sso_identities_of(&self, user: &Username) -> Result<Vec<SsoIdentityRecord>>;
}

#[async_trait]
pub trait SsoWrites: Send {
    async fn sso_identity(&mut self, provider: &str, subject: &str) -> Result<Option<SsoIdentityRecord>>;
    /// The identity of `provider` linked to `user`, if any.
    async fn sso_identity_of(&mut self, provider: &str, user: &Username) -> Result<Option<SsoIdentityRecord>>;
    async fn link_sso_identity(&mut self, identity: &SsoIdentityRecord) -> Result<()>;
    async fn touch_sso_identity(&mut self, provider: &str, subject: &str, at: Timestamp) -> Result<()>;
    /// The groups `user` belongs to by sign-in (source `sso`).
    async fn sso_groups_of(&mut self, user: &Username) -> Result<BTreeSet<GroupName>>;
    /// Ends a membership only if `source` made it: a sign-in does not take away what the
    /// config or an administrator gave.
    async fn remove_member_from(&mut self, group: &GroupName, user: &Username, source: crate::Source) -> Result<bool>;
}

macro_rules! sso_sql {
    ($store:ident, $tx:ident, $db:ty, $lock:literal) => {
        fn sso_sign_in_from(row: &DbRow) -> Result<crate::SsoSignInRecord, StoreError> {
            let version: i32 = row.try_get("key_version")?;
            Ok(crate::SsoSignInRecord {
                id: row.try_get("id")?,
                provider: row.try_get("provider")?,
                key_version: u32::try_from(version).map_err(|e| corrupt("key version", e))?,
                sealed: row.try_get("sealed")?,
                expires_at: ts(row.try_get("expires_at")?),
            })
        }

        fn sso_identity_from(row: &DbRow) -> Result<crate::SsoIdentityRecord, StoreError> {
            Ok(crate::SsoIdentityRecord {
                provider: row.try_get("provider")?,
                subject: row.try_get("subject")?,
                user: name(row.try_get("username")?, "user")?,
                linked_at: ts(row.try_get("linked_at")?),
                last_sign_in_at: ts(row.try_get("last_sign_in_at")?),
            })
        }

        const SSO_IDENTITY_COLS: &str = "provider, subject, username, linked_at, last_sign_in_at";

        #[async_trait]
        impl crate::SsoReads for $store {
            async fn put_sso_sign_in(&self, r: &crate::SsoSignInRecord, now: Timestamp) -> Result<(), StoreError> {
                sqlx::query("DELETE FROM sso_sign_ins WHERE expires_at <= $1")
                    .bind(now.as_millis())
                    .execute(&self.write)
                    .await?;
                sqlx::query("INSERT INTO sso_sign_ins (id, provider, key_version, sealed, expires_at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(&r.id)
                    .bind(&r.provider)
                    .bind(i32::try_from(r.key_version).unwrap_or(i32::MAX))
                    .bind(&r.sealed)
                    .bind(r.expires_at.as_millis())
                    .execute(&self.write)
                    .await?;
                Ok(())
            }

            async fn take_sso_sign_in(&self, id: &str, now: Timestamp) -> Result<Option<crate::SsoSignInRecord>, StoreError> {
                let row = sqlx::query("DELETE FROM sso_sign_ins WHERE id = $1 RETURNING id, provider, key_version, sealed, expires_at")
                    .bind(id)
                    .fetch_optional(&self.write)
                    .await?;
                Ok(row.as_ref().map(sso_sign_in_from).transpose()?.filter(|r| r.expires_at > now))
            }

            async fn sso_identities_of(&self, user: &Username) -> Result<Vec<crate::SsoIdentityRecord>, StoreError> {
                let sql = format!("SELECT {SSO_IDENTITY_COLS} FROM sso_identities WHERE username = $1 ORDER BY provider");
                all(
                    sqlx::query(&sql).bind(user.as_str()).fetch_all(&self.read).await?,
                    sso_identity_from,
                )
            }
        }

        #[async_trait]
        impl crate::SsoWrites for $tx {
            async fn sso_identity(&mut self, provider: &str, subject: &str) -> Result<Option<crate::SsoIdentityRecord>, StoreError> {
                let sql = format!("SELECT {SSO_IDENTITY_COLS} FROM sso_identities WHERE provider = $1 AND subject = $2");
                sqlx::query(&sql)
                    .bind(provider)
                    .bind(subject)
                    .fetch_optional(self.db().await?)
                    .await?
                    .as_ref()
                    .map(sso_identity_from)
                    .transpose()
            }

            async fn sso_identity_of(&mut self, provider: &str, user: &Username) -> Result<Option<crate::SsoIdentityRecord>, StoreError> {
                let sql = format!("SELECT {SSO_IDENTITY_COLS} FROM sso_identities WHERE provider = $1 AND username = $2");
                sqlx::query(&sql)
                    .bind(provider)
                    .bind(user.as_str())
                    .fetch_optional(self.db().await?)
                    .await?
                    .as_ref()
                    .map(sso_identity_from)
                    .transpose()
            }

            async fn link_sso_identity(&mut self, i: &crate::SsoIdentityRecord) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO sso_identities (provider, subject, username, linked_at, last_sign_in_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&i.provider)
                .bind(&i.subject)
                .bind(i.user.as_str())
                .bind(i.linked_at.as_millis())
                .bind(i.last_sign_in_at.as_millis())
                .execute(self.db().await?)
                .await?;
                Ok(())
            }

            async fn touch_sso_identity(&mut self, provider: &str, subject: &str, at: Timestamp) -> Result<(), StoreError> {
                sqlx::query("UPDATE sso_identities SET last_sign_in_at = $3 WHERE provider = $1 AND subject = $2")
                    .bind(provider)
                    .bind(subject)
                    .bind(at.as_millis())
                    .execute(self.db().await?)
                    .await?;
                Ok(())
            }

            async fn sso_groups_of(&mut self, user: &Username) -> Result<BTreeSet<GroupName>, StoreError> {
                let rows = sqlx::query("SELECT group_name FROM group_members WHERE username = $1 AND source = 'sso'")
                    .bind(user.as_str())
                    .fetch_all(self.db().await?)
                    .await?;
                rows.iter().map(|r| name(r.try_get("group_name")?, "group")).collect()
            }

            async fn remove_member_from(&mut self, g: &GroupName, u: &Username, source: crate::Source) -> Result<bool, StoreError> {
                self.directory_changed = true;
                let r = sqlx::query("DELETE FROM group_members WHERE group_name = $1 AND username = $2 AND source = $3")
                    .bind(g.as_str())
                    .bind(u.as_str())
                    .bind(source.as_str())
                    .execute(self.db().await?)
                    .await?;
                Ok(r.rows_affected() > 0)
            }
        }
    };
}
pub(crate) use sso_sql;
