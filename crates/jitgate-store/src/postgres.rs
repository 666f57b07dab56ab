use crate::{KillFeed, Result, SessionKill};
use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::{PgPool, Postgres};
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// PostgreSQL, for several jitgate instances sharing the load. Writers serialize on the audit
/// head row (`SELECT … FOR UPDATE`), so the chain stays one line across instances.
#[derive(Clone)]
pub struct PgStore {
    read: PgPool,
    write: PgPool,
    cache: std::sync::Arc<crate::cache::Cache>,
    flusher: std::sync::Arc<crate::durable::LogFlusher>,
    deadline_signal: Option<std::sync::Arc<crate::DeadlineSignal>>,
    kills: broadcast::Sender<SessionKill>,
    listening: watch::Receiver<bool>,
    _listener: std::sync::Arc<ListenerTask>,
}

/// Stops the LISTEN task and its heartbeat when the last clone of the store goes.
struct ListenerTask(Vec<tokio::task::JoinHandle<()>>);

impl Drop for ListenerTask {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// How often an instance notifies itself on [`crate::HEARTBEAT_CHANNEL`] to learn whether its
/// LISTEN connection still hears.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
/// A heartbeat not heard in this long means the LISTEN connection died without a word (a NAT
/// or a load balancer dropped an idle flow, a peer vanished): nothing else would show it, and
/// kills and deadlines from other instances would be missed until the connection's TCP gave up,
/// minutes later. The connection is dropped and made again, and the loss announced like any.
const HEARD_WITHIN: Duration = Duration::from_secs(5);

/// This instance's heartbeats: sent through the pool, expected back on the LISTEN connection.
struct Heartbeat {
    /// What this instance's heartbeats carry, so that other instances' are ignored.
    nonce: String,
    started: std::time::Instant,
    /// When the heartbeat not heard yet was sent (milliseconds since `started`, plus one), or 0.
    pending_since: std::sync::atomic::AtomicU64,
}

impl Heartbeat {
    fn new() -> Self {
        Self {
            nonce: format!("{:016x}", rand::random::<u64>()),
            started: std::time::Instant::now(),
            pending_since: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1)
    }

    fn heard(&self, payload: &str) {
        if payload == self.nonce {
            self.pending_since.store(0, std::sync::atomic::Ordering::Release);
        }
    }

    /// Resolves once a heartbeat has gone unheard for [`HEARD_WITHIN`]; never otherwise. Only
    /// then is the receive it races dropped, with the connection it was reading.
    async fn missed(&self) {
        let limit = u64::try_from(HEARD_WITHIN.as_millis()).unwrap_or(u64::MAX);
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let since = self.pending_since.load(std::sync::atomic::Ordering::Acquire);
            if since != 0 && self.now().saturating_sub(since) > limit {
                return;
            }
        }
    }

    /// Sends a heartbeat every [`HEARTBEAT_EVERY`] while none is outstanding. A send that fails
    /// (the store is away) leaves nothing outstanding: that is the store's failure to report,
    /// not the listener's.
    async fn run(self: std::sync::Arc<Self>, pool: PgPool) {
        loop {
            tokio::time::sleep(HEARTBEAT_EVERY).await;
            let pending = &self.pending_since;
            if pending
                .compare_exchange(
                    0,
                    self.now(),
                    std::sync::atomic::Ordering::AcqRel,
                    std::sync::atomic::Ordering::Acquire,
                )
                .is_err()
            {
                continue;
            }
            let sent = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(crate::HEARTBEAT_CHANNEL)
                .bind(&self.nonce)
                .execute(&pool)
                .await;
            if sent.is_err() {
                pending.store(0, std::sync::atomic::Ordering::Release);
            }
        }
    }
}

/// How long the listener waits before it tries to connect again.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);

async fn listen(pool: &PgPool) -> Result<PgListener> {
    let mut listener = PgListener::connect_with(pool).await?;
    // A lost connection is for `run_listener` to see, not to be mended silently.
    listener.eager_reconnect(false);
    let channels = [
        crate::DEADLINE_CHANNEL,
        crate::SESSION_KILL_CHANNEL,
        crate::DIRECTORY_CHANNEL,
        crate::HEARTBEAT_CHANNEL,
    ];
    // A connection that went silent while it was being made would wait here for ever.
    tokio::time::timeout(HEARD_WITHIN, listener.listen_all(channels))
        .await
        .map_err(|_| crate::StoreError::Timeout {
            op: "listen",
            after: HEARD_WITHIN,
        })??;
    Ok(listener)
}

/// A transaction idle this long (a frozen or cut-off instance holding locks) is ended by the
/// database; jitgate's own transactions are never idle for more than a few milliseconds.
const IDLE_IN_TRANSACTION: Duration = Duration::from_secs(10);

/// A pooled connection idle this long is pinged before it is handed out (see `connect_with`).
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(5);

impl PgStore {
    /// Connects with [`crate::DEFAULT_TIMEOUT`].
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, crate::DEFAULT_TIMEOUT).await
    }

    /// Connects, runs the migrations and starts listening for notifications. Taking a
    /// connection from the pool gives up after `timeout`, and that includes opening one (sqlx
    /// bounds each connect attempt by the acquire deadline, retrying a refused one until then):
    /// a server that is down or unreachable fails a call within `timeout`. A call on a
    /// connection already taken is not bounded here; [`crate::Bounded`] does that.
    ///
    /// Every connection also waits for a lock no longer than `timeout` (`lock_timeout`), and is
    /// ended by the database after `IDLE_IN_TRANSACTION` idle inside a transaction: a call that
    /// gives up on a lock must not leave its connection queued behind it in the database (the
    /// pool would drain, one stuck connection per try, until reads failed too), and a peer
    /// instance that froze while holding the audit head must not hold it for ever.
    pub async fn connect_with(url: &str, timeout: Duration) -> Result<Self> {
        let limits = format!(
            "SET lock_timeout = {}; SET idle_in_transaction_session_timeout = {}",
            timeout.as_millis().max(1),
            IDLE_IN_TRANSACTION.as_millis()
        );
        let on_connect = limits.clone();
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(timeout)
            // sqlx pings every connection it hands out: a round trip before each read and, worse,
            // inside every write's hold on the audit head. A connection in use within the last
            // few seconds is taken as it is (a dead one fails its statement, which is then
            // answered as the store being away); one idle for longer is pinged first, so a
            // database that restarted while we were quiet costs nobody a failed call.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_IF_IDLE_FOR {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .after_connect(move |conn, _| {
                let limits = on_connect.clone();
                Box::pin(async move {
                    sqlx::Executor::execute(conn, limits.as_str()).await?;
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        {
            // Migrations may wait for other instances' transactions to end: not bounded.
            let mut conn = pool.acquire().await?;
            sqlx::raw_sql("SET lock_timeout = 0").execute(&mut *conn).await?;
            sqlx::migrate!("./migrations/postgres").run(&mut *conn).await?;
            sqlx::raw_sql(&limits).execute(&mut *conn).await?;
        }
        let signal = std::sync::Arc::new(crate::DeadlineSignal::default());
        let first = listen(&pool).await?;
        let (kills, _) = broadcast::channel(1024);
        let (listening_tx, listening) = watch::channel(true);
        let cache = crate::cache::Cache::shared();
        cache.set_heard(true);
        let heartbeat = std::sync::Arc::new(Heartbeat::new());
        let beating = tokio::spawn(heartbeat.clone().run(pool.clone()));
        let task = tokio::spawn(run_listener(
            pool.clone(),
            first,
            signal.clone(),
            kills.clone(),
            listening_tx,
            cache.clone(),
            heartbeat,
        ));
        Ok(Self {
            read: pool.clone(),
            flusher: std::sync::Arc::new(crate::durable::LogFlusher::new(pool.clone())),
            write: pool,
            cache,
            deadline_signal: Some(signal),
            kills,
            listening,
            _listener: std::sync::Arc::new(ListenerTask(vec![task, beating])),
        })
    }

    fn log_flusher(&self) -> Option<std::sync::Arc<crate::durable::LogFlusher>> {
        Some(self.flusher.clone())
    }

    /// A change's transaction, begun holding the audit head's row lock, and the head, in one
    /// round trip. With `flush_after_head` it commits without waiting for its log flush, and
    /// the change waits for it once it has let the head go (see [`crate::durable`]).
    async fn begin_change(&self, flush_after_head: bool) -> Result<crate::sql::Began<crate::pg_change::PgChange>> {
        let (change, head) = crate::pg_change::PgChange::begin(&self.write, flush_after_head).await?;
        Ok((change, Some(head)))
    }

    fn kill_feed(&self) -> Option<KillFeed> {
        Some(KillFeed {
            kills: self.kills.subscribe(),
            listening: self.listening.clone(),
        })
    }
}

/// Hands each notification to whoever waits for it, and connects again when the connection is
/// lost. `listening` is false from a lost connection until the next one listens, and every
/// change of it tells the gateway that kills may have been missed; a deadline missed meanwhile
/// is covered by waking the expiry engine on every new connection (and by its slow periodic
/// re-read).
async fn run_listener(
    pool: PgPool,
    first: PgListener,
    deadlines: std::sync::Arc<crate::DeadlineSignal>,
    kills: broadcast::Sender<SessionKill>,
    listening: watch::Sender<bool>,
    directory: std::sync::Arc<crate::cache::Cache>,
    heartbeat: std::sync::Arc<Heartbeat>,
) {
    let mut listener = Some(first);
    loop {
        let mut l = match listener.take() {
            Some(l) => l,
            None => match listen(&pool).await {
                Ok(l) => {
                    listening.send_replace(true);
                    directory.set_heard(true);
                    deadlines.announce(None);
                    tracing::info!("store notifications resumed");
                    l
                }
                Err(e) => {
                    tracing::warn!(error = %e, "store notifications still interrupted; retrying");
                    tokio::time::sleep(RECONNECT_EVERY).await;
                    continue;
                }
            },
        };
        // `try_recv` answers `None` when it lost its connection (after connecting again by
        // itself, which may already have missed notifications), and an error when it could not
        // connect again or anything else went wrong: either way start over on a new connection,
        // so that the loss is seen.
        heartbeat.pending_since.store(0, std::sync::atomic::Ordering::Release);
        let lost = loop {
            let received = tokio::select! {
                r = l.try_recv() => r,
                () = heartbeat.missed() => break format!("no heartbeat heard within {HEARD_WITHIN:?}"),
            };
            match received {
                Ok(Some(n)) if n.channel() == crate::HEARTBEAT_CHANNEL => heartbeat.heard(n.payload()),
                Ok(Some(n)) if n.channel() == crate::SESSION_KILL_CHANNEL => match SessionKill::from_payload(n.payload()) {
                    // No receiver is fine: the gateway is not running.
                    Some(kill) => drop(kills.send(kill)),
                    None => tracing::warn!(payload = n.payload(), "unreadable session kill notification"),
                },
                Ok(Some(n)) if n.channel() == crate::DIRECTORY_CHANNEL => directory.forget_directory(),
                // The payload is the earliest deadline the transaction added (milliseconds).
                Ok(Some(n)) => deadlines.announce(n.payload().parse().ok()),
                Ok(None) => break "connection lost".to_owned(),
                Err(e) => break e.to_string(),
            }
        };
        drop(l);
        directory.set_heard(false);
        listening.send_replace(false);
        tracing::warn!(error = %lost, "store notifications interrupted; reconnecting");
    }
}

impl PgStore {
    /// The distinct `RESOURCE/ROLE` of a user's live grants as the CTE `held(resource, role)`,
    /// the user and the time as `$USER` and `$NOW` (filled in by `held` in
    /// `review_context.rs`), by a skip scan over the live-grants index: one probe per role held, however many grants of it there are (a
    /// DISTINCT reads them all). The next role is taken by LATERAL.
    const HELD_CTE: &'static str = "WITH RECURSIVE held(resource, role) AS ( \
           (SELECT resource, role FROM grants \
            WHERE username = $USER AND next_deadline IS NOT NULL AND ends_at > $NOW \
            ORDER BY resource, role LIMIT 1) \
           UNION ALL \
           SELECT n.resource, n.role FROM held, LATERAL ( \
             SELECT resource, role FROM grants \
             WHERE username = $USER AND next_deadline IS NOT NULL AND ends_at > $NOW \
               AND (resource, role) > (held.resource, held.role) \
             ORDER BY resource, role LIMIT 1) n)";

    async fn read_audit_rows(&self, after_seq: i64, limit: i64) -> Result<Vec<jitgate_core::audit::StoredEvent>> {
        let sql = format!(
            "SELECT {} FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2",
            crate::sql::AUDIT_COLS
        );
        let rows = sqlx::query(&sql).bind(after_seq).bind(limit).fetch_all(&self.read).await?;
        rows.iter().map(stored_from).collect()
    }
}

impl PgWriteTx {
    /// Several instances share a PostgreSQL store: each new deadline and each kill is told to
    /// all of them (`NOTIFY`, delivered at commit).
    const SHARED: bool = true;
    /// Joins held-back writes into one statement (see `Deferred` in `sql.rs`).
    const JOINS_WRITES: bool = true;

    /// No wait for the flush after the commit (see [`crate::WriteTx::relax_durability`]).
    async fn relax(&mut self) -> Result<()> {
        self.flush_after_head = None;
        Ok(())
    }

    /// Delivered at commit, and only then, to every instance (see `run_listener`).
    async fn announce_kill(&mut self, kill: &SessionKill) -> Result<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(crate::SESSION_KILL_CHANNEL)
            .bind(kill.payload())
            .execute(self.db().await?)
            .await?;
        Ok(())
    }
}

/// How senders on several instances take messages from the outbox without taking the same one.
const CLAIM_LOCK: &str = " FOR UPDATE SKIP LOCKED";

crate::sql::impl_store!(PgStore, PgWriteTx, crate::pg_change::PgChange, Postgres, "postgres", " FOR UPDATE");
