//! Second factors (TOTP, passkeys, recovery codes), pending ceremonies and attempt limits.

use crate::Result;
use async_trait::async_trait;
use jitgate_core::factor::{Ceremony, Factor};
use jitgate_core::names::Username;
use jitgate_core::Timestamp;

/// A user's TOTP factor. The seed is sealed; see `jitgate_auth::secret_box`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpRecord {
    pub user: Username,
    pub key_version: u32,
    pub sealed_seed: String,
    pub algorithm: String,
    pub digits: u32,
    pub period_secs: u32,
    /// `None` while the enrolment waits for its first valid code.
    pub confirmed_at: Option<Timestamp>,
    pub last_step: Option<i64>,
    pub created_at: Timestamp,
}

/// A registered WebAuthn credential (passkey or security key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyRecord {
    /// base64url; unique across all users.
    pub credential_id: String,
    pub user: Username,
    pub name: String,
    /// The relying party library's credential record (public key, counter) as JSON.
    pub passkey_json: String,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
}

/// A pending ceremony: a login waiting for its second factor, a WebAuthn challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeRecord {
    pub id: String,
    pub user: Username,
    pub purpose: Ceremony,
    pub state: String,
    pub expires_at: Timestamp,
}

/// Consecutive failures for one account name (which need not exist).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    pub username: String,
    pub failures: u32,
    pub last_failure_at: Timestamp,
    pub locked_until: Option<Timestamp>,
}

/// Reads outside a transaction.
#[async_trait]
pub trait MfaReads: Send + Sync {
    async fn totp(&self, user: &Username) -> Result<Option<TotpRecord>>;
    async fn passkeys(&self, user: &Username) -> Result<Vec<PasskeyRecord>>;
    async fn recovery_codes_left(&self, user: &Username) -> Result<i64>;
    async fn challenge(&self, id: &str) -> Result<Option<ChallengeRecord>>;
    async fn attempts(&self, username: &str) -> Result<Option<AttemptRecord>>;
}

/// Reads and changes inside a [`crate::WriteTx`].
#[async_trait]
pub trait MfaWrites: Send {
    async fn set_session_mfa(&mut self, token_hash: &str, at: Timestamp, method: Factor) -> Result<()>;
    /// Adds or replaces a user's TOTP factor.
    async fn put_totp(&mut self, totp: &TotpRecord) -> Result<()>;
    async fn totp(&mut self, user: &Username) -> Result<Option<TotpRecord>>;
    /// Records `step` as used if it is later than the last used one; false means it was not
    /// (a replay, possibly racing another instance).
    async fn use_totp_step(&mut self, user: &Username, step: i64, confirm_at: Option<Timestamp>) -> Result<bool>;
    async fn delete_totp(&mut self, user: &Username) -> Result<bool>;
    /// Fails with `Conflict` when the credential id is registered already (to anyone).
    async fn insert_passkey(&mut self, passkey: &PasskeyRecord) -> Result<()>;
    async fn passkeys(&mut self, user: &Username) -> Result<Vec<PasskeyRecord>>;
    async fn update_passkey(&mut self, credential_id: &str, passkey_json: Option<&str>, used_at: Timestamp) -> Result<()>;
    async fn delete_passkey(&mut self, user: &Username, credential_id: &str) -> Result<bool>;
    /// Voids every earlier code of the user and stores these hashes.
    async fn replace_recovery_codes(&mut self, user: &Username, hashes: &[String], now: Timestamp) -> Result<()>;
    /// Marks an unused code used; false when there is no such unused code.
    async fn use_recovery_code(&mut self, user: &Username, hash: &str, now: Timestamp) -> Result<bool>;
    async fn recovery_codes_left(&mut self, user: &Username) -> Result<i64>;
    /// Stores a pending ceremony, dropping the ones that ran out before `now`.
    async fn insert_challenge(&mut self, challenge: &ChallengeRecord, now: Timestamp) -> Result<()>;
    /// Removes and returns a pending ceremony: each is used once.
    async fn take_challenge(&mut self, id: &str) -> Result<Option<ChallengeRecord>>;
    /// The attempt state of `username`, locked for the rest of the transaction so that a
    /// check and its count are one step even across instances. A name without a record gets
    /// an empty one (no failures) to lock; it goes again unless the transaction keeps it.
    async fn lock_attempts(&mut self, username: &str) -> Result<AttemptRecord>;
    /// Forgets the attempt records of names that are not users and whose last failure is
    /// older than `before`; returns how many went.
    async fn prune_attempts(&mut self, before: Timestamp) -> Result<u64>;
    async fn put_attempts(&mut self, attempts: &AttemptRecord) -> Result<()>;
    async fn clear_attempts(&mut self, username: &str) -> Result<bool>;
}

/// The SQL of this aggregate for one backend, stamped out by `crate::sql::impl_store!` in the
/// backend's module (which supplies the imports and the shared helpers).
macro_rules! mfa_sql {
    ($store:ident, $tx:ident, $db:ty, $lock:literal) => {

        const TOTP_COLS: &str = "username, key_version, sealed_seed, algorithm, digits, period_secs, confirmed_at, last_step, created_at";
        const PASSKEY_COLS: &str = "credential_id, username, name, passkey, created_at, last_used_at";

        fn u32_of(v: i64, what: &str) -> Result<u32, StoreError> {
            u32::try_from(v).map_err(|e| corrupt(what, e))
        }

        fn totp_from(row: &DbRow) -> Result<TotpRecord, StoreError> {
            Ok(TotpRecord {
                user: name(row.try_get("username")?, "totp user")?,
                key_version: u32_of(row.try_get::<i64, _>("key_version")?, "key version")?,
                sealed_seed: row.try_get("sealed_seed")?,
                algorithm: row.try_get("algorithm")?,
                digits: u32_of(row.try_get::<i64, _>("digits")?, "digits")?,
                period_secs: u32_of(row.try_get::<i64, _>("period_secs")?, "period")?,
                confirmed_at: opt_ts(row.try_get("confirmed_at")?),
                last_step: row.try_get("last_step")?,
                created_at: ts(row.try_get("created_at")?),
            })
        }

        fn passkey_from(row: &DbRow) -> Result<PasskeyRecord, StoreError> {
            Ok(PasskeyRecord {
                credential_id: row.try_get("credential_id")?,
                user: name(row.try_get("username")?, "passkey user")?,
                name: row.try_get("name")?,
                passkey_json: row.try_get("passkey")?,
                created_at: ts(row.try_get("created_at")?),
                last_used_at: opt_ts(row.try_get("last_used_at")?),
            })
        }

        fn challenge_from(row: &DbRow) -> Result<ChallengeRecord, StoreError> {
            Ok(ChallengeRecord {
                id: row.try_get("id")?,
                user: name(row.try_get("username")?, "challenge user")?,
                purpose: {
                    let purpose: String = row.try_get("purpose")?;
                    Ceremony::parse(&purpose).ok_or_else(|| corrupt("challenge purpose", purpose))?
                },
                state: row.try_get("state")?,
                expires_at: ts(row.try_get("expires_at")?),
            })
        }

        fn attempts_from(row: &DbRow) -> Result<AttemptRecord, StoreError> {
            Ok(AttemptRecord {
                username: row.try_get("username")?,
                failures: u32_of(row.try_get::<i64, _>("failures")?, "failures")?,
                last_failure_at: ts(row.try_get("last_failure_at")?),
                locked_until: opt_ts(row.try_get("locked_until")?),
            })
        }

        async fn q_totp<'e, E: sqlx::Executor<'e, Database = $db>>(ex: E, user: &Username) -> Result<Option<TotpRecord>, StoreError> {
            let sql = format!("SELECT {TOTP_COLS} FROM mfa_totp WHERE username = $1");
            sqlx::query(&sql)
                .bind(user.as_str())
                .fetch_optional(ex)
                .await?
                .as_ref()
                .map(totp_from)
                .transpose()
        }

        async fn q_passkeys<'e, E: sqlx::Executor<'e, Database = $db>>(ex: E, user: &Username) -> Result<Vec<PasskeyRecord>, StoreError> {
            let sql = format!("SELECT {PASSKEY_COLS} FROM mfa_passkeys WHERE username = $1 ORDER BY created_at, credential_id");
            all(sqlx::query(&sql).bind(user.as_str()).fetch_all(ex).await?, passkey_from)
        }

        async fn q_recovery_left<'e, E: sqlx::Executor<'e, Database = $db>>(ex: E, user: &Username) -> Result<i64, StoreError> {
            Ok(
                sqlx::query_scalar("SELECT COUNT(*) FROM mfa_recovery_codes WHERE username = $1 AND used_at IS NULL")
                    .bind(user.as_str())
                    .fetch_one(ex)
                    .await?,
            )
        }

        async fn q_challenge<'e, E: sqlx::Executor<'e, Database = $db>>(ex: E, id: &str) -> Result<Option<ChallengeRecord>, StoreError> {
            sqlx::query("SELECT id, username, purpose, state, expires_at FROM mfa_challenges WHERE id = $1")
                .bind(id)
                .fetch_optional(ex)
                .await?
                .as_ref()
                .map(challenge_from)
                .transpose()
        }

        async fn q_attempts<'e, E: sqlx::Executor<'e, Database = $db>>(
            ex: E,
            username: &str,
            lock: bool,
        ) -> Result<Option<AttemptRecord>, StoreError> {
            let sql = format!(
                "SELECT username, failures, last_failure_at, locked_until FROM auth_attempts WHERE username = $1{}",
                if lock { $lock } else { "" }
            );
            sqlx::query(&sql)
                .bind(username)
                .fetch_optional(ex)
                .await?
                .as_ref()
                .map(attempts_from)
                .transpose()
        }

        async fn q_put_totp<'e, E: sqlx::Executor<'e, Database = $db>>(ex: E, t: &TotpRecord) -> Result<(), StoreError> {
            let sql = format!(
                "INSERT INTO mfa_totp ({TOTP_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (username) DO UPDATE SET key_version = excluded.key_version, sealed_seed = excluded.sealed_seed, \
                 algorithm = excluded.algorithm, digits = excluded.digits, period_secs = excluded.period_secs, \
                 confirmed_at = excluded.confirmed_at, last_step = excluded.last_step, created_at = excluded.created_at"
            );
            sqlx::query(&sql)
                .bind(t.user.as_str())
                .bind(i64::from(t.key_version))
                .bind(&t.sealed_seed)
                .bind(&t.algorithm)
                .bind(i64::from(t.digits))
                .bind(i64::from(t.period_secs))
                .bind(t.confirmed_at.map(Timestamp::as_millis))
                .bind(t.last_step)
                .bind(t.created_at.as_millis())
                .execute(ex)
                .await?;
            Ok(())
        }

        async fn q_use_totp_step<'e, E: sqlx::Executor<'e, Database = $db>>(
            ex: E,
            user: &Username,
            step: i64,
            confirm_at: Option<Timestamp>,
        ) -> Result<bool, StoreError> {
            let r = sqlx::query(
                "UPDATE mfa_totp SET last_step = $2, confirmed_at = COALESCE(confirmed_at, $3) \
                 WHERE username = $1 AND (last_step IS NULL OR last_step < $2)",
            )
            .bind(user.as_str())
            .bind(step)
            .bind(confirm_at.map(Timestamp::as_millis))
            .execute(ex)
            .await?;
            Ok(r.rows_affected() == 1)
        }

        async fn q_insert_passkey<'e, E: sqlx::Executor<'e, Database = $db>>(ex: E, p: &PasskeyRecord) -> Result<(), sqlx::Error> {
            let sql = format!("INSERT INTO mfa_passkeys ({PASSKEY_COLS}) VALUES ($1, $2, $3, $4, $5, $6)");
            sqlx::query(&sql)
                .bind(&p.credential_id)
                .bind(p.user.as_str())
                .bind(&p.name)
                .bind(&p.passkey_json)
                .bind(p.created_at.as_millis())
                .bind(p.last_used_at.map(Timestamp::as_millis))
                .execute(ex)
                .await?;
            Ok(())
        }

        async fn q_update_passkey<'e, E: sqlx::Executor<'e, Database = $db>>(
            ex: E,
            credential_id: &str,
            passkey_json: Option<&str>,
            used_at: Timestamp,
        ) -> Result<(), StoreError> {
            sqlx::query("UPDATE mfa_passkeys SET passkey = COALESCE($2, passkey), last_used_at = $3 WHERE credential_id = $1")
                .bind(credential_id)
                .bind(passkey_json.map(str::to_owned))
                .bind(used_at.as_millis())
                .execute(ex)
                .await?;
            Ok(())
        }

        async fn q_use_recovery_code<'e, E: sqlx::Executor<'e, Database = $db>>(
            ex: E,
            user: &Username,
            hash: &str,
            now: Timestamp,
        ) -> Result<bool, StoreError> {
            let r = sqlx::query("UPDATE mfa_recovery_codes SET used_at = $3 WHERE username = $1 AND code_hash = $2 AND used_at IS NULL")
                .bind(user.as_str())
                .bind(hash)
                .bind(now.as_millis())
                .execute(ex)
                .await?;
            Ok(r.rows_affected() == 1)
        }

        async fn q_put_attempts<'e, E: sqlx::Executor<'e, Database = $db>>(ex: E, a: &AttemptRecord) -> Result<(), StoreError> {
            sqlx::query(
                "INSERT INTO auth_attempts (username, failures, last_failure_at, locked_until) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (username) DO UPDATE SET failures = excluded.failures, \
                 last_failure_at = excluded.last_failure_at, locked_until = excluded.locked_until",
            )
            .bind(&a.username)
            .bind(i64::from(a.failures))
            .bind(a.last_failure_at.as_millis())
            .bind(a.locked_until.map(Timestamp::as_millis))
            .execute(ex)
            .await?;
            Ok(())
        }
        #[async_trait]
        impl crate::MfaReads for $store {
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
        }

        #[async_trait]
        impl crate::MfaWrites for $tx {
            async fn set_session_mfa(&mut self, token_hash: &str, at: Timestamp, method: Factor) -> Result<(), StoreError> {
                sqlx::query("UPDATE sessions SET mfa_at = $2, mfa_method = $3 WHERE token_hash = $1")
                    .bind(token_hash)
                    .bind(at.as_millis())
                    .bind(method.as_str())
                    .execute(self.db().await?)
                    .await?;
                Ok(())
            }

            async fn put_totp(&mut self, totp: &TotpRecord) -> Result<(), StoreError> {
                q_put_totp(self.db().await?, totp).await
            }

            async fn totp(&mut self, user: &Username) -> Result<Option<TotpRecord>, StoreError> {
                q_totp(self.db().await?, user).await
            }

            async fn use_totp_step(&mut self, user: &Username, step: i64, confirm_at: Option<Timestamp>) -> Result<bool, StoreError> {
                q_use_totp_step(self.db().await?, user, step, confirm_at).await
            }

            async fn delete_totp(&mut self, user: &Username) -> Result<bool, StoreError> {
                let r = sqlx::query("DELETE FROM mfa_totp WHERE username = $1").bind(user.as_str()).execute(self.db().await?).await?;
                Ok(r.rows_affected() > 0)
            }

            async fn insert_passkey(&mut self, passkey: &PasskeyRecord) -> Result<(), StoreError> {
                let taken: Option<String> = sqlx::query_scalar("SELECT username FROM mfa_passkeys WHERE credential_id = $1")
                    .bind(&passkey.credential_id)
                    .fetch_optional(self.db().await?)
                    .await?;
                if taken.is_some() {
                    return Err(StoreError::Conflict(format!("credential {}", passkey.credential_id)));
                }
                let result = q_insert_passkey(self.db().await?, passkey).await;
                result.map_err(|e| self.conflict(e, format!("credential {}", passkey.credential_id)))
            }

            async fn passkeys(&mut self, user: &Username) -> Result<Vec<PasskeyRecord>, StoreError> {
                q_passkeys(self.db().await?, user).await
            }

            async fn update_passkey(&mut self, credential_id: &str, passkey_json: Option<&str>, used_at: Timestamp) -> Result<(), StoreError> {
                q_update_passkey(self.db().await?, credential_id, passkey_json, used_at).await
            }

            async fn delete_passkey(&mut self, user: &Username, credential_id: &str) -> Result<bool, StoreError> {
                let r = sqlx::query("DELETE FROM mfa_passkeys WHERE username = $1 AND credential_id = $2")
                    .bind(user.as_str())
                    .bind(credential_id)
                    .execute(self.db().await?)
                    .await?;
                Ok(r.rows_affected() > 0)
            }

            async fn replace_recovery_codes(&mut self, user: &Username, hashes: &[String], now: Timestamp) -> Result<(), StoreError> {
                sqlx::query("DELETE FROM mfa_recovery_codes WHERE username = $1")
                    .bind(user.as_str())
                    .execute(self.db().await?)
                    .await?;
                for hash in hashes {
                    sqlx::query("INSERT INTO mfa_recovery_codes (username, code_hash, used_at, created_at) VALUES ($1, $2, NULL, $3)")
                        .bind(user.as_str())
                        .bind(hash)
                        .bind(now.as_millis())
                        .execute(self.db().await?)
                        .await?;
                }
                Ok(())
            }

            async fn use_recovery_code(&mut self, user: &Username, hash: &str, now: Timestamp) -> Result<bool, StoreError> {
                q_use_recovery_code(self.db().await?, user, hash, now).await
            }

            async fn recovery_codes_left(&mut self, user: &Username) -> Result<i64, StoreError> {
                q_recovery_left(self.db().await?, user).await
            }

            async fn insert_challenge(&mut self, c: &ChallengeRecord, now: Timestamp) -> Result<(), StoreError> {
                sqlx::query("DELETE FROM mfa_challenges WHERE expires_at <= $1")
                    .bind(now.as_millis())
                    .execute(self.db().await?)
                    .await?;
                sqlx::query("INSERT INTO mfa_challenges (id, username, purpose, state, expires_at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(&c.id)
                    .bind(c.user.as_str())
                    .bind(c.purpose.as_str())
                    .bind(&c.state)
                    .bind(c.expires_at.as_millis())
                    .execute(self.db().await?)
                    .await?;
                Ok(())
            }

            async fn take_challenge(&mut self, id: &str) -> Result<Option<ChallengeRecord>, StoreError> {
                sqlx::query("DELETE FROM mfa_challenges WHERE id = $1 RETURNING id, username, purpose, state, expires_at")
                    .bind(id)
                    .fetch_optional(self.db().await?)
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
                    .execute(self.db().await?)
                    .await?;
                q_attempts(self.db().await?, username, true)
                    .await?
                    .ok_or_else(|| StoreError::Corrupt(format!("the attempt record of '{username}' vanished")))
            }

            async fn prune_attempts(&mut self, before: Timestamp) -> Result<u64, StoreError> {
                let r = sqlx::query("DELETE FROM auth_attempts WHERE last_failure_at < $1 AND username NOT IN (SELECT name FROM users)")
                    .bind(before.as_millis())
                    .execute(self.db().await?)
                    .await?;
                Ok(r.rows_affected())
            }

            async fn put_attempts(&mut self, attempts: &AttemptRecord) -> Result<(), StoreError> {
                q_put_attempts(self.db().await?, attempts).await
            }

            async fn clear_attempts(&mut self, username: &str) -> Result<bool, StoreError> {
                let r = sqlx::query("DELETE FROM auth_attempts WHERE username = $1").bind(username).execute(self.db().await?).await?;
                Ok(r.rows_affected() > 0)
            }
        }
    };
}

pub(crate) use mfa_sql;
