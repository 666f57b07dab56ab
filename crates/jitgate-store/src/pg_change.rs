//! A PostgreSQL change's transaction, begun in one round trip with the audit head's lock.
//!
//! Every change holds the audit head from its `BEGIN` to its `COMMIT`, and every writer waits
//! for the head, so each round trip made under it is paid by every writer in turn. sqlx's
//! `Transaction` sends its `BEGIN` as a statement of its own and throws away the rows of a
//! custom one, so the head's lock cost a round trip more. This type sends `BEGIN`, the change's
//! durability and the lock as one simple query, and keeps the head that query returns.
//!
//! A change that ends without `COMMIT` (a refusal, an error, a call given up halfway) is
//! rolled back by a task of its own before its connection goes back to the pool, as sqlx does
//! for its own transactions; a connection that cannot be rolled back is closed, which ends the
//! transaction in the database too.

use jitgate_core::audit::ChainHead;
use sqlx::pool::PoolConnection;
use sqlx::{Executor, PgConnection, PgPool, Postgres, Row};
use std::time::Duration;

/// `synchronous_commit = off`: the change commits without waiting for its log flush, and
/// waits for it once it has let the head go (see [`crate::durable`]). A `&str` with no
/// arguments goes by the simple query protocol: the statements in one message, one answer.
const BEGIN_AND_LOCK_FLUSH_AFTER: &str = "BEGIN; SET LOCAL synchronous_commit = off; \
     SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE";
/// The same, committing with the session's durability.
const BEGIN_AND_LOCK: &str = "BEGIN; SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE";

/// The longest a rollback after an abandoned change may take before its connection is closed
/// instead: a database that stopped answering must not keep the connection out of the pool.
const ROLLBACK_WITHIN: Duration = Duration::from_secs(5);

pub(crate) struct PgChange {
    /// Taken only by `drop`.
    conn: Option<PoolConnection<Postgres>>,
    /// A transaction may be open on the connection: cleared once `COMMIT` has answered.
    open: bool,
}

impl PgChange {
    /// Takes a connection, begins, and locks the audit head: the head it returns stays the
    /// chain's last link until this change ends. With `flush_after`, the commit does not wait
    /// for the log flush: the caller does.
    pub(crate) async fn begin(pool: &PgPool, flush_after: bool) -> Result<(Self, ChainHead), sqlx::Error> {
        let mut change = Self {
            conn: Some(pool.acquire().await?),
            open: true,
        };
        let begin = if flush_after { BEGIN_AND_LOCK_FLUSH_AFTER } else { BEGIN_AND_LOCK };
        let rows = Executor::fetch_all(&mut *change, begin).await?;
        let row = rows.first().ok_or(sqlx::Error::RowNotFound)?;
        let head = ChainHead {
            seq: row.try_get("seq")?,
            hash: row.try_get("hash")?,
        };
        Ok((change, head))
    }

    pub(crate) async fn commit(mut self) -> Result<(), sqlx::Error> {
        Executor::execute(&mut *self, "COMMIT").await?;
        self.open = false;
        Ok(())
    }
}

impl std::ops::Deref for PgChange {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        self.conn.as_ref().expect("a change's connection is taken only when it is dropped")
    }
}

impl std::ops::DerefMut for PgChange {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.conn.as_mut().expect("a change's connection is taken only when it is dropped")
    }
}

impl Drop for PgChange {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        if !self.open {
            return;
        }
        // sqlx reads what a statement given up halfway still has on the wire before it sends
        // the next, so the rollback finds the connection in step.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    let rollback = Executor::execute(&mut *conn, "ROLLBACK");
                    if !matches!(tokio::time::timeout(ROLLBACK_WITHIN, rollback).await, Ok(Ok(_))) {
                        conn.close_on_drop();
                    }
                });
            }
            Err(_) => conn.close_on_drop(),
        }
    }
}
