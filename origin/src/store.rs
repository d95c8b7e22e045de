//! Redis: the hot state of every event. All keys of one event share the hash tag `{E}`,
//! so each script touches a single slot and the design runs unchanged on Redis Cluster.

use anyhow::Context;
use flashgate_core::ids::{EventId, OrderId, UserId};
use flashgate_core::wire::OrderStatus;
use flashgate_core::Millis;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

/// How long after it is sent a reserve call may still reserve: Redis refuses it, untouched,
/// once this has passed on its clock. Well inside the connection's response timeout
/// (2 s), after which the origin answers 503 without the verdict.
pub const RESERVE_BUDGET_MS: i64 = 1000;

/// How often `flashgate serve` measures Redis's clock ([`Store::sync_clock`]).
pub const CLOCK_SYNC: std::time::Duration = std::time::Duration::from_secs(10);

/// [`Store::sync_clock`] has not read Redis's clock yet.
const NOT_MEASURED: i64 = i64::MIN;

/// The longest round trip of a clock reading that replaces an earlier one.
const CLOCK_SYNC_MAX_RTT: std::time::Duration = std::time::Duration::from_millis(100);

/// Milliseconds of a monotonic clock (from the first call in this process): immune to
/// steps of the wall clock, so a deadline cannot jump with it.
fn mono_ms() -> i64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as i64
}

/// The keys of one event.
#[derive(Debug, Clone)]
pub struct EventKeys {
    base: String,
}

impl EventKeys {
    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.base)
    }
    /// Hash: name, stock_total, starts_at, ends_at.
    pub fn info(&self) -> String {
        self.key("info")
    }
    /// Integer: units left.
    pub fn stock(&self) -> String {
        self.key("stock")
    }
    /// Hash: user → order id (the one-order-per-user mark).
    pub fn orders(&self) -> String {
        self.key("orders")
    }
    /// Hash: user → `status:order_id`.
    pub fn status(&self) -> String {
        self.key("status")
    }
    /// Stream: reservations waiting to be relayed to Kafka.
    pub fn outbox(&self) -> String {
        self.key("outbox")
    }
    /// Hash: reserved, confirmed, failed, compensated counters.
    pub fn stats(&self) -> String {
        self.key("stats")
    }
    /// Set: order ids already compensated.
    pub fn compensated(&self) -> String {
        self.key("compensated")
    }
    /// Marks an edge signature as used (replay guard).
    pub fn signature(&self, signature: &str) -> String {
        self.key(&format!("sig:{signature}"))
    }
    /// Counter of one user's tries in the current window that got nothing (a reserving try
    /// counts once its order is given back).
    pub fn window(&self, user: &UserId) -> String {
        self.key(&format!("win:{user}"))
    }
}

/// The event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMeta {
    /// Display name.
    pub name: String,
    /// Units put on sale.
    pub stock_total: u64,
    /// Units left.
    pub stock_left: u64,
    /// Start.
    pub starts_at: Millis,
    /// End.
    pub ends_at: Millis,
}

/// What the reserve script decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// Stock reserved under this new order.
    Reserved(OrderId),
    /// The user already holds this order.
    AlreadyPurchased(String),
    /// No stock left; the version of the event's buyers (see `lua/reserve.lua`).
    SoldOut(String),
    /// The per-user window is full; retry after this many milliseconds.
    RateLimited(u64),
    /// The event has no stock key.
    NoEvent,
    /// This exact signed request was already seen.
    Replayed,
}

/// One purchase attempt of a reserve call.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The buyer.
    pub user: UserId,
    /// The order id to use if stock is reserved.
    pub new_order: OrderId,
    /// The edge signature of the request (replay guard).
    pub signature: String,
}

/// What every attempt of one reserve call shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Now, unix ms (the reservation time of the call's orders).
    pub now: Millis,
    /// Per-user window, ms.
    pub window_ms: u64,
    /// Tries allowed per window (see [`EventKeys::window`]).
    pub limit: u32,
    /// How long signatures are remembered, ms.
    pub replay_window_ms: u64,
}

/// Result of `put_event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// A new event.
    Created,
    /// An upcoming event changed.
    Updated,
    /// Refused: the event has started.
    Started,
}

/// Counters of `GET /admin/events/{id}/stats`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Stats {
    /// Units put on sale.
    pub stock_total: u64,
    /// Units left.
    pub stock_left: u64,
    /// Reservations made.
    pub reserved: u64,
    /// Orders written to the orders table.
    pub confirmed: u64,
    /// Orders that could not be created.
    pub failed: u64,
    /// Units given back.
    pub compensated: u64,
    /// Reserved, neither confirmed nor failed yet.
    pub pending: u64,
}

/// Redis access for one key prefix.
#[derive(Clone)]
pub struct Store {
    conn: Arc<std::sync::RwLock<ConnectionManager>>,
    /// Redis's clock minus [`mono_ms`], from the last [`Store::sync_clock`]
    /// ([`NOT_MEASURED`] before the first).
    clock_offset: Arc<AtomicI64>,
    /// A re-measure after a late call is under way (one at a time).
    clock_resync: Arc<AtomicBool>,
    client: redis::Client,
    prefix: Arc<str>,
    reserve: Arc<Script>,
    confirm: Arc<Script>,
    confirm_many: Arc<Script>,
    compensate: Arc<Script>,
    put_event: Arc<Script>,
    /// Waiting for replicas after each reservation ([`Store::wait_for_replicas`]); none
    /// by default.
    replicas: Option<Arc<Replicas>>,
}

/// How reserve calls wait for Redis replicas ([`Store::wait_for_replicas`]).
struct Replicas {
    /// Replicas that must acknowledge a reservation's writes.
    count: u32,
    /// The longest wait, ms.
    timeout_ms: u64,
    /// Idle connections of the reserve calls' own: a call takes one (or opens one when
    /// none is idle) and gives it back once answered, so a `WAIT`, which blocks the
    /// connection it is sent on, holds up no other call and nothing else of the process. A
    /// connection whose call failed is dropped, and [`Store::reconnect`] drops them all.
    idle: std::sync::Mutex<Vec<ConnectionManager>>,
    /// Since when the waits fall short (replicas behind or away), [`mono_ms`]; `None`
    /// while they succeed. Meanwhile calls wait 1 ms only, and one a second the whole
    /// timeout, which ends the state when it succeeds.
    short_since: std::sync::Mutex<Option<(i64, i64)>>,
}

impl Replicas {
    /// An idle reserve connection, or a new one.
    async fn take(&self, client: &redis::Client) -> redis::RedisResult<ConnectionManager> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match idle {
            Some(conn) => Ok(conn),
            None => Store::manager(client).await,
        }
    }

    /// Gives back a connection whose call was answered.
    fn give_back(&self, conn: ConnectionManager) {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn);
    }

    /// The `WAIT` timeout for the next call: the whole one, or 1 ms while waits fall short
    /// (the whole one again once a second, to find out whether they still do).
    fn next_timeout(&self) -> u64 {
        let mut short = self.short_since.lock().unwrap_or_else(|e| e.into_inner());
        match short.as_mut() {
            None => self.timeout_ms,
            Some((_, probed)) if mono_ms() - *probed >= 1000 => {
                *probed = mono_ms();
                self.timeout_ms
            }
            Some(_) => 1,
        }
    }

    /// The reserve call and its `WAIT` in one pipeline, so the `WAIT` goes on the very
    /// connection that carried the script, whatever reconnects, and counts its writes.
    /// Each has its own result: a failing `WAIT` does not hide the script's verdicts.
    async fn reserve_and_wait(
        &self,
        conn: &mut ConnectionManager,
        call: &redis::ScriptInvocation<'_>,
        timeout_ms: u64,
    ) -> redis::RedisResult<(redis::RedisResult<Vec<String>>, redis::RedisResult<u32>)> {
        use redis::aio::ConnectionLike;
        let mut pipeline = redis::pipe();
        pipeline
            .invoke_script(call)
            .cmd("WAIT")
            .arg(self.count)
            .arg(timeout_ms);
        let mut answers = conn.req_packed_commands(&pipeline, 0, 2).await?.into_iter();
        let mut next = || -> redis::RedisResult<redis::Value> {
            match answers.next() {
                Some(redis::Value::ServerError(e)) => Err(e.into()),
                Some(v) => Ok(v),
                None => Err((redis::ErrorKind::TypeError, "a pipeline answer is missing").into()),
            }
        };
        let verdicts = next().and_then(redis::from_owned_redis_value);
        let acked = next().and_then(redis::from_owned_redis_value);
        Ok((verdicts, acked))
    }

    /// Records how a wait of `timeout_ms` went: `acked` replicas (an error counts as
    /// none) for `reserved` reservations. Only a whole wait that fell short makes the
    /// next ones short (a 1 ms one sent before the replicas were found back proves
    /// nothing); any that succeeds ends that.
    fn record(&self, acked: &redis::RedisResult<u32>, reserved: usize, timeout_ms: u64) {
        let enough = acked.as_ref().is_ok_and(|n| *n >= self.count);
        if !enough {
            metrics::counter!("flashgate_reservations_unreplicated_total")
                .increment(reserved as u64);
        }
        let whole = timeout_ms >= self.timeout_ms;
        let mut short = self.short_since.lock().unwrap_or_else(|e| e.into_inner());
        match (short.is_some(), enough) {
            (false, false) if whole => {
                tracing::warn!(
                    acked = ?acked,
                    replicas = self.count,
                    timeout_ms = self.timeout_ms,
                    "Redis replicas did not acknowledge reservations in time; answering them \
                     anyway (flashgate_reservations_unreplicated_total) and waiting 1 ms until \
                     they catch up"
                );
                *short = Some((mono_ms(), mono_ms()));
            }
            (true, true) => {
                let (since, _) = short.take().unwrap_or_default();
                tracing::info!(
                    short_for_ms = mono_ms() - since,
                    "Redis replicas acknowledge reservations again"
                );
            }
            _ => {}
        }
    }
}

/// Redis's settings that a reservation's safety rests on. Between its 202 and the relay's
/// hand-over to Kafka, an order exists only in Redis (the outbox), and the stock count
/// lives there for good.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Durability {
    /// `maxmemory-policy`.
    pub eviction: Option<String>,
    /// `appendonly` (`yes`/`no`).
    pub append_only: Option<String>,
    /// `appendfsync`.
    pub fsync: Option<String>,
}

impl Durability {
    /// `Err` with the reason when serving on this Redis could oversell or lose orders;
    /// else the warnings worth a line in the log.
    pub fn verdict(&self) -> Result<Vec<String>, String> {
        let eviction = self.eviction.as_deref();
        if let Some(policy) = eviction.filter(|p| p.starts_with("allkeys-")) {
            return Err(format!(
                "Redis evicts any key when its memory is full (maxmemory-policy {policy}): it could \
                 drop an event's stock (overselling it) or its order outbox (losing orders). \
                 Set maxmemory-policy noeviction on that Redis; a full Redis then refuses \
                 purchases (503) instead"
            ));
        }
        let mut warnings = Vec::new();
        match eviction {
            Some("noeviction") => {}
            Some(policy) => warnings.push(format!(
                "Redis may evict keys that expire when its memory is full (maxmemory-policy \
                 {policy}): the replay guard and the per-user windows could be forgotten early; \
                 noeviction is the safe setting"
            )),
            None => warnings.push(
                "cannot read Redis's maxmemory-policy (CONFIG GET refused): make sure it is \
                 noeviction, or a full Redis may drop stock and orders"
                    .into(),
            ),
        }
        match (self.append_only.as_deref(), self.fsync.as_deref()) {
            (Some("no"), _) => warnings.push(
                "Redis keeps no append-only file (appendonly no): if it restarts without a \
                 replica taking over, the orders it had not yet passed to Kafka and the stock \
                 counts are lost; set appendonly yes"
                    .into(),
            ),
            (Some(_), Some("no")) => warnings.push(
                "Redis leaves flushing its append-only file to the OS (appendfsync no): a \
                 machine crash can lose the last seconds of orders; appendfsync everysec loses \
                 at most about one"
                    .into(),
            ),
            (None, _) => warnings.push(
                "cannot read Redis's appendonly setting (CONFIG GET refused): without an \
                 append-only file or a replica, a Redis restart loses the orders not yet in \
                 Kafka"
                    .into(),
            ),
            _ => {}
        }
        Ok(warnings)
    }
}

impl Store {
    /// Connects and checks the server answers.
    pub async fn connect(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url);
        let url = crate::config::redact_url(url);
        let client = client.with_context(|| format!("invalid Redis URL {url}"))?;
        let conn = tokio::time::timeout(std::time::Duration::from_secs(3), Self::manager(&client))
            .await
            .map_err(|_| anyhow::anyhow!("cannot reach Redis at {url}: timed out"))?
            .with_context(|| format!("cannot reach Redis at {url}"))?;
        let store = Self {
            conn: Arc::new(std::sync::RwLock::new(conn)),
            clock_offset: Arc::new(AtomicI64::new(NOT_MEASURED)),
            clock_resync: Arc::default(),
            client,
            prefix: prefix.into(),
            reserve: Arc::new(Script::new(include_str!("lua/reserve.lua"))),
            confirm: Arc::new(Script::new(include_str!("lua/confirm.lua"))),
            confirm_many: Arc::new(Script::new(include_str!("lua/confirm_many.lua"))),
            compensate: Arc::new(Script::new(include_str!("lua/compensate.lua"))),
            put_event: Arc::new(Script::new(include_str!("lua/put_event.lua"))),
            replicas: None,
        };
        // The first reading is used whatever its round trip; two more may refine it.
        for _ in 0..3 {
            store
                .sync_clock()
                .await
                .with_context(|| format!("cannot read the clock of Redis at {url}"))?;
        }
        Ok(store)
    }

    /// Measures where Redis's clock stands against this process's monotonic clock, which
    /// a reserve call's deadline is given in (see `lua/reserve.lua`). Kept fresh by
    /// `flashgate serve` (every [`CLOCK_SYNC`]). The reading is off by at most half its
    /// round trip: once there is one, a reading whose round trip took longer than
    /// `CLOCK_SYNC_MAX_RTT` is too coarse to replace it.
    pub async fn sync_clock(&self) -> redis::RedisResult<()> {
        let before = mono_ms();
        let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(&mut self.conn()).await?;
        let after = mono_ms();
        let first = self.clock_offset.load(Ordering::Relaxed) == NOT_MEASURED;
        if first || after - before <= CLOCK_SYNC_MAX_RTT.as_millis() as i64 {
            let redis_ms = secs * 1000 + micros / 1000;
            self.clock_offset
                .store(redis_ms - (before + after) / 2, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Makes every reserve call wait (Redis `WAIT`, in one pipeline with the script, on a
    /// connection of the reserve calls' own; `connections` of them opened now) until `replicas` replicas have its writes, or
    /// `timeout_ms` passed, before its verdicts are answered: a 202 then survives a
    /// failover to one of them. A reservation that was not acknowledged in time is still
    /// answered (it is real on the primary) and counted in
    /// `flashgate_reservations_unreplicated_total`; while that goes on, calls wait 1 ms
    /// only (see [`Replicas`]). `0` waits for none.
    pub async fn wait_for_replicas(
        mut self,
        replicas: u32,
        timeout_ms: u64,
        connections: usize,
    ) -> redis::RedisResult<Self> {
        if replicas == 0 {
            return Ok(self);
        }
        let mut idle = Vec::new();
        for _ in 0..connections.max(1) {
            idle.push(Self::manager(&self.client).await?);
        }
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut self.conn())
            .await?;
        let connected = info
            .lines()
            .find_map(|l| l.strip_prefix("connected_slaves:"))
            .and_then(|n| n.trim().parse::<u32>().ok())
            .unwrap_or(0);
        if connected < replicas {
            tracing::warn!(
                connected,
                replicas,
                "fewer Redis replicas than redis_wait_replicas are connected: reservations \
                 will be answered unreplicated until enough are"
            );
        }
        self.replicas = Some(Arc::new(Replicas {
            count: replicas,
            timeout_ms,
            idle: std::sync::Mutex::new(idle),
            short_since: std::sync::Mutex::new(None),
        }));
        Ok(self)
    }

    /// The keys of event `id`.
    pub fn keys(&self, id: &EventId) -> EventKeys {
        EventKeys {
            base: format!("{}{{{id}}}", self.prefix),
        }
    }

    fn events_key(&self) -> String {
        format!("{}events", self.prefix)
    }

    /// A connection that reconnects by itself, one attempt at a time. Every call made while
    /// a reconnect is under way waits for it, whatever the response timeout; the manager's
    /// own retries wait 1 s, then 60 s or more between attempts (redis 0.32 multiplies
    /// its 1 s first delay by 100), so with retries a Redis that came back could leave the
    /// reserve calls waiting for minutes. One attempt (at most the connection timeout),
    /// and the next call starts the next one.
    async fn manager(client: &redis::Client) -> redis::RedisResult<ConnectionManager> {
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(std::time::Duration::from_secs(2))
            .set_response_timeout(std::time::Duration::from_secs(2))
            .set_number_of_retries(0);
        ConnectionManager::new_with_config(client.clone(), config).await
    }

    /// A connection handle (cheap clone, reconnects by itself).
    pub fn conn(&self) -> ConnectionManager {
        self.conn.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Opens a fresh connection and, once it answers PING, uses it from now on: the way
    /// back when the current manager's connection does not answer (the circuit's probe),
    /// without waiting for its own reconnect to notice.
    pub async fn reconnect(&self) -> redis::RedisResult<()> {
        let mut fresh = Self::manager(&self.client).await?;
        redis::cmd("PING").query_async::<()>(&mut fresh).await?;
        *self.conn.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        if let Some(replicas) = &self.replicas {
            // The reserve calls open fresh connections as they need them.
            replicas
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
        }
        // It may be another server behind the same address (a failover), with its clock.
        self.sync_clock().await
    }

    /// `PING`.
    pub async fn ping(&self) -> redis::RedisResult<()> {
        redis::cmd("PING").query_async(&mut self.conn()).await
    }

    /// Whether Redis answers: a PING on the current connection (within 1 s), else a fresh
    /// connection ([`Store::reconnect`], within 5 s). A healthy connection is kept.
    pub async fn answers_or_reconnect(&self) -> bool {
        let answers = tokio::time::timeout(std::time::Duration::from_secs(1), self.ping())
            .await
            .is_ok_and(|r| r.is_ok());
        answers
            || tokio::time::timeout(std::time::Duration::from_secs(5), self.reconnect())
                .await
                .is_ok_and(|r| r.is_ok())
    }

    /// Redis's own settings that decide whether a reservation survives (see
    /// [`Durability`]); a setting Redis will not show (`CONFIG` refused, as some managed
    /// services do) is `None`.
    pub async fn durability(&self) -> Durability {
        let mut conn = self.conn();
        let mut setting = async |name: &str| -> Option<String> {
            let pairs: HashMap<String, String> = redis::cmd("CONFIG")
                .arg("GET")
                .arg(name)
                .query_async(&mut conn)
                .await
                .ok()?;
            pairs.get(name).cloned()
        };
        Durability {
            eviction: setting("maxmemory-policy").await,
            append_only: setting("appendonly").await,
            fsync: setting("appendfsync").await,
        }
    }

    /// Creates or updates an upcoming event and pre-warms its stock.
    pub async fn put_event(
        &self,
        id: &EventId,
        w: &flashgate_core::wire::EventWindow,
        now: Millis,
    ) -> redis::RedisResult<PutOutcome> {
        let k = self.keys(id);
        let r: String = self
            .put_event
            .key(k.info())
            .key(k.stock())
            .key(self.events_key())
            .arg(now)
            .arg(&w.name)
            .arg(w.stock)
            .arg(w.starts_at)
            .arg(w.ends_at)
            .arg(id.as_str())
            .invoke_async(&mut self.conn())
            .await?;
        Ok(match r.as_str() {
            "started" => PutOutcome::Started,
            "updated" => PutOutcome::Updated,
            _ => PutOutcome::Created,
        })
    }

    /// The event's info and stock, `None` when unknown.
    pub async fn event(&self, id: &EventId) -> redis::RedisResult<Option<EventMeta>> {
        let k = self.keys(id);
        let (info, stock): (HashMap<String, String>, Option<i64>) = redis::pipe()
            .hgetall(k.info())
            .get(k.stock())
            .query_async(&mut self.conn())
            .await?;
        let num = |f: &str| info.get(f).and_then(|v| v.parse::<i64>().ok());
        let (Some(name), Some(total), Some(starts_at), Some(ends_at)) = (
            info.get("name"),
            num("stock_total"),
            num("starts_at"),
            num("ends_at"),
        ) else {
            return Ok(None);
        };
        Ok(Some(EventMeta {
            name: name.clone(),
            stock_total: total.max(0) as u64,
            stock_left: stock.unwrap_or(0).max(0) as u64,
            starts_at,
            ends_at,
        }))
    }

    /// Runs the reserve script for attempts on one event, in order, in one atomic call:
    /// one verdict per attempt. Every key is in the event's slot, so this is one call on
    /// Redis Cluster too.
    pub async fn reserve(
        &self,
        event: &EventId,
        rules: Rules,
        attempts: &[Attempt],
    ) -> redis::RedisResult<Vec<Reservation>> {
        let k = self.keys(event);
        let mut call = self.reserve.prepare_invoke();
        call.key(k.stock())
            .key(k.orders())
            .key(k.status())
            .key(k.outbox())
            .key(k.stats())
            .arg(rules.now)
            .arg(rules.window_ms)
            .arg(rules.limit)
            .arg(event.as_str())
            .arg(rules.replay_window_ms)
            .arg(mono_ms() + self.clock_offset.load(Ordering::Relaxed) + RESERVE_BUDGET_MS);
        for a in attempts {
            call.key(k.window(&a.user))
                .key(k.signature(&a.signature))
                .arg(a.user.as_str())
                .arg(a.new_order.as_str());
        }
        let r: Vec<String> = match &self.replicas {
            None => call.invoke_async(&mut self.conn()).await?,
            Some(replicas) => {
                // One pipeline: the WAIT goes on the very connection that carried the
                // script, whatever reconnects, and counts its writes.
                let mut conn = replicas.take(&self.client).await?;
                let timeout_ms = replicas.next_timeout();
                let mut answer = replicas
                    .reserve_and_wait(&mut conn, &call, timeout_ms)
                    .await?;
                if matches!(&answer.0, Err(e) if e.kind() == redis::ErrorKind::NoScriptError) {
                    // Redis lost its scripts (a restart, a failover): nothing ran. Load the
                    // script and send the pipeline again.
                    call.load_async(&mut conn).await?;
                    answer = replicas
                        .reserve_and_wait(&mut conn, &call, timeout_ms)
                        .await?;
                }
                // Answered: the connection works (a transport error above drops it).
                replicas.give_back(conn);
                let (r, acked) = answer;
                let r = r?;
                let reserved = r.iter().step_by(2).filter(|v| *v == "reserved").count();
                if reserved > 0 {
                    replicas.record(&acked, reserved, timeout_ms);
                }
                r
            }
        };
        if r.len() != 2 * attempts.len() {
            return Err(redis::RedisError::from((
                redis::ErrorKind::TypeError,
                "reserve script answered the wrong number of verdicts",
            )));
        }
        if r.first().is_some_and(|v| v == "late") {
            // Nothing was reserved. The clock may have moved: measure it again.
            if !self.clock_resync.swap(true, Ordering::AcqRel) {
                let store = self.clone();
                tokio::spawn(async move {
                    let _ = store.sync_clock().await;
                    store.clock_resync.store(false, Ordering::Release);
                });
            }
            return Err(redis::RedisError::from((
                redis::ErrorKind::IoError,
                "the reserve call reached Redis after its deadline; nothing was reserved",
            )));
        }
        Ok(r.chunks(2)
            .zip(attempts)
            .map(|(v, a)| match v[0].as_str() {
                "reserved" => Reservation::Reserved(a.new_order.clone()),
                "already_purchased" => Reservation::AlreadyPurchased(v[1].clone()),
                "sold_out" => Reservation::SoldOut(v[1].clone()),
                "rate_limited" => Reservation::RateLimited(v[1].parse().unwrap_or(1000)),
                "replayed" => Reservation::Replayed,
                _ => Reservation::NoEvent,
            })
            .collect())
    }

    /// The order the user holds for the event (what the reserve script answers as
    /// already purchased), if any.
    pub async fn order_of(
        &self,
        event: &EventId,
        user: &UserId,
    ) -> redis::RedisResult<Option<String>> {
        self.conn()
            .hget(self.keys(event).orders(), user.as_str())
            .await
    }

    /// The event's buyers (user → order id), or `None` when there are more than `max`.
    ///
    /// With them, their version as the reserve script gives it with `sold_out`, read in
    /// the same atomic step.
    pub async fn buyers(
        &self,
        event: &EventId,
        max: u64,
    ) -> redis::RedisResult<Option<(String, HashMap<String, String>)>> {
        let k = self.keys(event);
        let mut conn = self.conn();
        let n: u64 = conn.hlen(k.orders()).await?;
        if n > max {
            return Ok(None);
        }
        let (reserved, buyers): (Option<u64>, HashMap<String, String>) = redis::pipe()
            .atomic()
            .hget(k.stats(), "reserved")
            .hgetall(k.orders())
            .query_async(&mut conn)
            .await?;
        let version = format!("{}:{}", reserved.unwrap_or(0), buyers.len());
        Ok(Some((version, buyers)))
    }

    /// The user's order and its status.
    pub async fn order_status(
        &self,
        event: &EventId,
        user: &UserId,
    ) -> redis::RedisResult<Option<(OrderStatus, String)>> {
        let v: Option<String> = self
            .conn()
            .hget(self.keys(event).status(), user.as_str())
            .await?;
        Ok(v.and_then(|v| {
            let (status, order) = v.split_once(':')?;
            Some((OrderStatus::parse(status)?, order.to_owned()))
        }))
    }

    /// Marks an order confirmed (idempotent); true when it changed.
    pub async fn confirm(
        &self,
        event: &EventId,
        user: &UserId,
        order: &str,
    ) -> redis::RedisResult<bool> {
        let k = self.keys(event);
        let changed: i64 = self
            .confirm
            .key(k.status())
            .key(k.stats())
            .arg(user.as_str())
            .arg(order)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(changed == 1)
    }

    /// Marks many orders of one event confirmed in one call (idempotent); returns how many
    /// changed.
    pub async fn confirm_many(
        &self,
        event: &EventId,
        orders: &[(&UserId, &str)],
    ) -> redis::RedisResult<u64> {
        if orders.is_empty() {
            return Ok(0);
        }
        let k = self.keys(event);
        let mut inv = self.confirm_many.key(k.status());
        inv.key(k.stats());
        for (user, order) in orders {
            inv.arg(user.as_str()).arg(*order);
        }
        inv.invoke_async(&mut self.conn()).await
    }

    /// Fails an order and gives its unit back, once per order id; true when it did. The
    /// order's try then counts in the user's window of `window_ms`.
    pub async fn compensate(
        &self,
        event: &EventId,
        user: &UserId,
        order: &str,
        window_ms: u64,
    ) -> redis::RedisResult<bool> {
        let k = self.keys(event);
        let changed: i64 = self
            .compensate
            .key(k.stock())
            .key(k.orders())
            .key(k.status())
            .key(k.stats())
            .key(k.compensated())
            .key(k.window(user))
            .arg(user.as_str())
            .arg(order)
            .arg(window_ms)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(changed == 1)
    }

    /// Reservations waiting in the outboxes of these events.
    pub async fn outbox_backlog(&self, events: &[EventId]) -> redis::RedisResult<u64> {
        let mut pipe = redis::pipe();
        for e in events {
            pipe.xlen(self.keys(e).outbox());
        }
        let lens: Vec<u64> = pipe.query_async(&mut self.conn()).await?;
        Ok(lens.iter().sum())
    }

    /// Every event id known to this prefix.
    pub async fn event_ids(&self) -> redis::RedisResult<Vec<EventId>> {
        let ids: Vec<String> = self.conn().smembers(self.events_key()).await?;
        Ok(ids.iter().filter_map(|s| EventId::parse(s).ok()).collect())
    }

    /// The admin counters of an event, `None` when unknown.
    pub async fn stats(&self, id: &EventId) -> redis::RedisResult<Option<Stats>> {
        let Some(meta) = self.event(id).await? else {
            return Ok(None);
        };
        let c: HashMap<String, u64> = self.conn().hgetall(self.keys(id).stats()).await?;
        let get = |f: &str| c.get(f).copied().unwrap_or(0);
        let (reserved, confirmed, failed) = (get("reserved"), get("confirmed"), get("failed"));
        Ok(Some(Stats {
            stock_total: meta.stock_total,
            stock_left: meta.stock_left,
            reserved,
            confirmed,
            failed,
            compensated: get("compensated"),
            pending: reserved.saturating_sub(confirmed + failed),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::{Durability, Replicas};

    #[test]
    fn waits_go_short_only_after_a_whole_one_fell_short_and_back_after_any_success() {
        let replicas = Replicas {
            count: 1,
            timeout_ms: 100,
            idle: Default::default(),
            short_since: Default::default(),
        };
        assert_eq!(replicas.next_timeout(), 100);
        // A whole wait that fell short (or failed): the next ones wait 1 ms.
        replicas.record(&Ok(0), 3, 100);
        assert_eq!(replicas.next_timeout(), 1);
        assert_eq!(replicas.next_timeout(), 1);
        // Any success ends it.
        replicas.record(&Ok(1), 3, 1);
        assert_eq!(replicas.next_timeout(), 100);
        // A 1 ms wait sent before that success and answered after it proves nothing.
        replicas.record(&Ok(0), 3, 1);
        assert_eq!(replicas.next_timeout(), 100);
        let failed: redis::RedisResult<u32> =
            Err((redis::ErrorKind::IoError, "connection lost").into());
        replicas.record(&failed, 1, 100);
        assert_eq!(replicas.next_timeout(), 1);
    }

    fn durability(
        eviction: Option<&str>,
        append_only: Option<&str>,
        fsync: Option<&str>,
    ) -> Durability {
        Durability {
            eviction: eviction.map(Into::into),
            append_only: append_only.map(Into::into),
            fsync: fsync.map(Into::into),
        }
    }

    #[test]
    fn redis_settings_that_lose_orders_are_refused_or_named() {
        let safe = durability(Some("noeviction"), Some("yes"), Some("everysec"));
        assert_eq!(safe.verdict(), Ok(vec![]));
        for policy in ["allkeys-lru", "allkeys-lfu", "allkeys-random"] {
            let refusal = durability(Some(policy), Some("yes"), Some("everysec")).verdict();
            assert!(refusal.is_err_and(|r| r.contains(policy)), "{policy}");
        }
        let warned = |d: Durability, what: &str| {
            let warnings = d.verdict().expect("served");
            assert_eq!(warnings.len(), 1, "{warnings:?}");
            assert!(warnings[0].contains(what), "{warnings:?}");
        };
        warned(
            durability(Some("volatile-lru"), Some("yes"), Some("always")),
            "volatile-lru",
        );
        warned(
            durability(Some("noeviction"), Some("no"), Some("everysec")),
            "appendonly no",
        );
        warned(
            durability(Some("noeviction"), Some("yes"), Some("no")),
            "appendfsync no",
        );
        let hidden = durability(None, None, None).verdict().expect("served");
        assert_eq!(hidden.len(), 2, "{hidden:?}");
    }
}
