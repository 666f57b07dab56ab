//! The SQL of second factors, ceremonies and attempt limits, written once for both backends
//! like `sql.rs`. The macro makes executor-generic query functions that the `Store` and
//! `WriteTx` implementations call with their pool or their transaction.

macro_rules! mfa_queries {
    ($db:ty, $lock:literal) => {
        use crate::{AttemptRecord, ChallengeRecord, PasskeyRecord, TotpRecord};

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
                purpose: row.try_get("purpose")?,
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
    };
}

pub(crate) use mfa_queries;
