//! The order consumer: Kafka → MariaDB at a steady pace, at least once, idempotently.
//!
//! A batch is written with `INSERT IGNORE` (primary key `order_id`, unique
//! `(event_id, user_id)`): a first delivery from unblocked buyers, the common case, is one
//! multi-row statement (atomic on its own); anything else is sorted out in one
//! transaction, which treats the rows that statement may have written as a replay's. Only
//! after the batch is committed are the orders marked confirmed in Redis and the offsets
//! committed, so a crash anywhere replays the batch and the replay writes nothing twice.
//! An order the database refuses (the user already holds another order for the event, or
//! is blocked) is failed and its unit given back (compensation).
//!
//! A reader task fills the next batch while the writer writes the previous one; when the
//! writer falls behind, the reader pauses its partitions instead of buffering. A batch's
//! lookup (earlier failures, blocked buyers) starts when it is handed to the writer, on a
//! connection of its own, so the writer's own round trip is the insert. A batch's Redis
//! side and offset commit run while the next batch goes to the database; batches still
//! settle and commit in order.

use crate::config::ConsumerSettings;
use crate::kafka::{client_config, OrderMessage};
use crate::store::Store;
use anyhow::Context;
use flashgate_core::ids::{EventId, OrderId, UserId};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use sqlx::mysql::{MySqlConnection, MySqlPool};
use sqlx::pool::PoolConnection;
use sqlx::{Connection, MySql, QueryBuilder};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The dead-letter topic of `orders_topic`: the configured one, or `<orders_topic>.dlq`.
pub fn dead_letter_topic(orders_topic: &str, settings: &ConsumerSettings) -> String {
    if settings.dead_letter_topic.is_empty() {
        format!("{orders_topic}.dlq")
    } else {
        settings.dead_letter_topic.clone()
    }
}

/// A valid order read from the topic.
#[derive(Debug, Clone)]
pub struct Order {
    order_id: OrderId,
    event_id: EventId,
    user_id: UserId,
    reserved_at: chrono::NaiveDateTime,
}

impl Order {
    /// Validates a one-order payload; `None` for anything a well-behaved relay never sends.
    pub fn parse(payload: &[u8]) -> Option<Order> {
        Self::from_message(serde_json::from_slice(payload).ok()?)
    }

    /// Validates one order of a message (see [`crate::kafka::unpack`]).
    pub fn from_value(value: &serde_json::Value) -> Option<Order> {
        Self::from_message(serde::Deserialize::deserialize(value).ok()?)
    }

    fn from_message(m: OrderMessage) -> Option<Order> {
        Some(Order {
            order_id: OrderId::parse(&m.order_id).ok()?,
            event_id: EventId::parse(&m.event_id).ok()?,
            user_id: UserId::parse(&m.user_id).ok()?,
            reserved_at: chrono::DateTime::from_timestamp_millis(m.reserved_at)?.naive_utc(),
        })
    }
}

/// Connects to MariaDB and applies the migrations.
pub async fn connect_db(url: &str) -> anyhow::Result<MySqlPool> {
    let pool = sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .context("cannot reach MariaDB (check FLASHGATE_MYSQL_URL)")?;
    sqlx::migrate!("./migrations")
        .run(&pool)
        .await
        .context("cannot apply database migrations")?;
    Ok(pool)
}

/// [`connect_db`], waiting up to `patience` for a database that does not answer yet (a
/// consumer restarted while the database restarts): connection failures are retried
/// with backoff, anything else (a bad URL, refused credentials, a failed migration) stops
/// at once.
pub async fn connect_db_waiting(url: &str, patience: Duration) -> anyhow::Result<MySqlPool> {
    let started = Instant::now();
    let mut wait = Duration::from_millis(200);
    loop {
        match connect_db(url).await {
            Ok(pool) => return Ok(pool),
            Err(e) if started.elapsed() < patience && unreachable(&e) => {
                tracing::warn!(error = %format!("{e:#}"), retry_in_ms = wait.as_millis() as u64, "MariaDB not reachable yet; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The database did not answer (as opposed to answering no).
fn unreachable(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<sqlx::Error>(),
            Some(sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut)
        )
    })
}

/// What became of an order in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// A row in `orders`.
    Confirmed,
    /// Refused, recorded in `failed_orders`; its unit goes back to stock.
    Failed(&'static str),
}

/// Earlier failures among a batch's orders and blocked users among its buyers. The ids go
/// as two JSON arrays joined against the tables' keys: one statement whatever the batch
/// size, and a third of the cost of two 500-value `IN` lists (whose range analysis
/// dominated; docs/benchmarks.md).
const LOOKUP: &str = "\
    SELECT 'failed', f.order_id, f.reason FROM JSON_TABLE(?, '$[*]' COLUMNS (\
        id VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs PATH '$')) j \
    JOIN failed_orders f ON f.order_id = j.id \
    UNION ALL \
    SELECT 'blocked', b.user_id, '' FROM JSON_TABLE(?, '$[*]' COLUMNS (\
        id VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs PATH '$')) j \
    JOIN blocked_users b ON b.user_id = j.id";

fn in_list<'a>(qb: &mut QueryBuilder<'a, MySql>, ids: impl Iterator<Item = &'a str>) {
    qb.push(" (");
    let mut sep = qb.separated(", ");
    for id in ids {
        sep.push_bind(id);
    }
    sep.push_unseparated(")");
}

/// Earlier failures (order id → fate) and blocked buyers among a batch's orders.
type Lookup = (HashMap<String, Fate>, HashSet<String>);

/// Earlier failures and blocked buyers among a batch's orders ([`LOOKUP`]).
async fn look_up(db: &mut MySqlConnection, orders: &[Order]) -> sqlx::Result<Lookup> {
    let ids =
        |f: fn(&Order) -> &str| serde_json::to_string(&orders.iter().map(f).collect::<Vec<_>>());
    let found: Vec<(String, String, String)> = sqlx::query_as(LOOKUP)
        .bind(ids(|o| o.order_id.as_str()).unwrap_or_default())
        .bind(ids(|o| o.user_id.as_str()).unwrap_or_default())
        .fetch_all(db)
        .await?;
    let mut fates = HashMap::new();
    let mut blocked = HashSet::new();
    for (kind, id, reason) in found {
        if kind == "blocked" {
            blocked.insert(id);
        } else {
            fates.insert(id, Fate::Failed(failure_reason(&reason)));
        }
    }
    Ok((fates, blocked))
}

/// Adds to a lookup made ahead of the batch before it the failures of that batch
/// (`last_failed`) among `orders`: the lookup ran before they were committed.
fn add_failures(found: &mut Lookup, orders: &[Order], last_failed: &HashMap<String, Fate>) {
    for o in orders {
        if let Some(fate) = last_failed.get(o.order_id.as_str()) {
            found.0.insert(o.order_id.as_str().to_owned(), *fate);
        }
    }
}

/// `INSERT IGNORE`s the orders as confirmed rows; how many were new.
async fn insert_orders(db: &mut MySqlConnection, orders: &[&Order]) -> sqlx::Result<u64> {
    let mut insert: QueryBuilder<MySql> = QueryBuilder::new(
        "INSERT IGNORE INTO orders (order_id, event_id, user_id, status, reserved_at) ",
    );
    insert.push_values(orders, |mut row, o| {
        row.push_bind(o.order_id.as_str())
            .push_bind(o.event_id.as_str())
            .push_bind(o.user_id.as_str())
            .push_bind("confirmed")
            .push_bind(o.reserved_at);
    });
    Ok(insert.build().execute(db).await?.rows_affected())
}

/// Writes one batch and says what became of each order. Replaying a batch gives the same
/// answer and writes nothing twice: an order already written or already failed keeps its
/// fate, whatever changed since (e.g. the user was blocked).
///
/// A first delivery of orders from unblocked users (the common case) costs two statements:
/// the lookup (earlier failures and blocked buyers together) and one multi-row insert,
/// atomic on its own. Anything else (a failure to record, a blocked buyer, an insert that
/// skipped rows) is sorted out in one transaction (`write_in_transaction`), which treats
/// the rows that insert wrote as it treats a replay's.
pub async fn write_batch(
    db: &mut MySqlConnection,
    orders: &[Order],
) -> sqlx::Result<HashMap<String, Fate>> {
    write_looked_up(db, orders, None).await
}

/// [`write_batch`], with the lookup made beforehand when `looked_up` is given; it must
/// see every failure recorded before this batch (see `OrderConsumer::run`).
async fn write_looked_up(
    db: &mut MySqlConnection,
    orders: &[Order],
    looked_up: Option<Lookup>,
) -> sqlx::Result<HashMap<String, Fate>> {
    if orders.is_empty() {
        return Ok(HashMap::new());
    }
    let (failed, blocked) = match looked_up {
        Some(found) => found,
        None => look_up(db, orders).await?,
    };
    if failed.is_empty() && blocked.is_empty() {
        let all: Vec<&Order> = orders.iter().collect();
        if insert_orders(db, &all).await? == all.len() as u64 {
            return Ok(orders
                .iter()
                .map(|o| (o.order_id.as_str().to_owned(), Fate::Confirmed))
                .collect());
        }
    }
    write_in_transaction(db, orders).await
}

/// [`write_batch`] in one transaction: the lookup, the insert, which skipped orders are
/// rows already (a locking read), and the failures.
async fn write_in_transaction(
    db: &mut MySqlConnection,
    orders: &[Order],
) -> sqlx::Result<HashMap<String, Fate>> {
    let mut tx = db.begin().await?;
    let (mut fates, blocked) = look_up(&mut tx, orders).await?;
    let fresh: Vec<&Order> = orders
        .iter()
        .filter(|o| !fates.contains_key(o.order_id.as_str()))
        .collect();
    let allowed: Vec<&Order> = fresh
        .iter()
        .copied()
        .filter(|o| !blocked.contains(o.user_id.as_str()))
        .collect();
    let inserted = if allowed.is_empty() {
        0
    } else {
        insert_orders(&mut tx, &allowed).await?
    };
    // Orders of blocked buyers may be rows from before the block, and an insert that
    // skipped some skipped rows that exist (a replay) or a second order of a buyer.
    let unsure: Vec<&Order> = if inserted == allowed.len() as u64 {
        for o in &allowed {
            fates.insert(o.order_id.as_str().to_owned(), Fate::Confirmed);
        }
        fresh
            .iter()
            .copied()
            .filter(|o| blocked.contains(o.user_id.as_str()))
            .collect()
    } else {
        fresh.clone()
    };
    if !unsure.is_empty() {
        // A locking read: it sees rows another consumer committed after this transaction's
        // snapshot (after a rebalance two members may write the same batch), where a plain
        // read would call such an order a duplicate and give its unit back.
        let mut rows: QueryBuilder<MySql> =
            QueryBuilder::new("SELECT order_id FROM orders WHERE order_id IN");
        in_list(&mut rows, unsure.iter().map(|o| o.order_id.as_str()));
        rows.push(" LOCK IN SHARE MODE");
        let rows: Vec<(String,)> = rows.build_query_as().fetch_all(&mut *tx).await?;
        for (id,) in rows {
            fates.insert(id, Fate::Confirmed);
        }
    }
    let failed: Vec<(&Order, &'static str)> = fresh
        .iter()
        .filter(|o| !fates.contains_key(o.order_id.as_str()))
        .map(|o| {
            let reason = if blocked.contains(o.user_id.as_str()) {
                "blocked"
            } else {
                "duplicate"
            };
            (*o, reason)
        })
        .collect();
    if !failed.is_empty() {
        let mut insert: QueryBuilder<MySql> = QueryBuilder::new(
            "INSERT IGNORE INTO failed_orders (order_id, event_id, user_id, reason, reserved_at) ",
        );
        insert.push_values(&failed, |mut row, (o, reason)| {
            row.push_bind(o.order_id.as_str())
                .push_bind(o.event_id.as_str())
                .push_bind(o.user_id.as_str())
                .push_bind(*reason)
                .push_bind(o.reserved_at);
        });
        insert.build().execute(&mut *tx).await?;
        for (o, reason) in failed {
            fates.insert(o.order_id.as_str().to_owned(), Fate::Failed(reason));
        }
    }
    tx.commit().await?;
    Ok(fates)
}

/// The reason of a failure read back from `failed_orders`.
fn failure_reason(stored: &str) -> &'static str {
    match stored {
        "blocked" => "blocked",
        _ => "duplicate",
    }
}

/// Every 2 s, sets `flashgate_consumer_lag{partition}` for the partitions assigned to this
/// consumer: the broker's high watermark less the next offset to write, which is what this
/// consumer has written or, before its first batch there, the group's committed offset (the
/// low watermark without one). A consumer that cannot write still shows its lag growing.
/// A partition a rebalance took away shows 0 here (its new owner reports it); an empty
/// assignment counts only once it has lasted three readings (a rebalance passes sooner).
async fn report_lag(this: Arc<OrderConsumer>, mut shutdown: watch::Receiver<bool>) {
    // A client of the group that never joins it (as in `watch_stalls`): it reads the
    // group's commits and the watermarks without asking anything of the member itself.
    let Ok(client) = client_config(&this.brokers)
        .set("group.id", &this.settings.group)
        .set("enable.auto.commit", "false")
        .create::<rdkafka::consumer::BaseConsumer>()
    else {
        return;
    };
    let client = Arc::new(client);
    let mut empty_readings = 0;
    // The partitions assigned at the last reading.
    let mut before: HashSet<i32> = HashSet::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = shutdown.changed() => return,
        }
        let owner = this.clone();
        let Ok(Ok(assigned)) =
            tokio::task::spawn_blocking(move || owner.consumer.assignment()).await
        else {
            continue;
        };
        empty_readings = if assigned.count() == 0 {
            empty_readings + 1
        } else {
            0
        };
        if (1..3).contains(&empty_readings) {
            continue;
        }
        let mine: HashSet<(String, i32)> = assigned
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        let written: BTreeMap<(String, i32), i64> = match this.done.lock() {
            Ok(mut d) => {
                d.retain(|key, _| mine.contains(key));
                d.clone()
            }
            Err(_) => return,
        };
        let client = client.clone();
        let partitions: HashSet<i32> = mine.iter().map(|(_, p)| *p).collect();
        let lags = tokio::task::spawn_blocking(move || {
            // The group's commits, for partitions this consumer has not written yet; when
            // the lookup fails their lag is unknown this time (not the whole topic).
            let committed = client
                .committed_offsets(assigned, Duration::from_secs(1))
                .ok();
            let start = |topic: &str, partition: i32, low: i64| {
                match committed
                    .as_ref()?
                    .find_partition(topic, partition)?
                    .offset()
                {
                    Offset::Offset(o) => Some(o),
                    // No commit stored: from the start of what the broker keeps.
                    _ => Some(low),
                }
            };
            mine.into_iter()
                .filter_map(|(topic, partition)| {
                    // A failed watermark read skips the partition: its gauge keeps its value.
                    let (low, high) = client
                        .fetch_watermarks(&topic, partition, Duration::from_secs(1))
                        .ok()?;
                    let next = match written.get(&(topic.clone(), partition)) {
                        Some(next) => *next,
                        None => start(&topic, partition, low)?,
                    };
                    Some((partition, (high - next).max(0)))
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for (partition, lag) in lags {
            metrics::gauge!("flashgate_consumer_lag", "partition" => partition.to_string())
                .set(lag as f64);
        }
        // Partitions this consumer had and a rebalance took away.
        for partition in before.difference(&partitions) {
            metrics::gauge!("flashgate_consumer_lag", "partition" => partition.to_string())
                .set(0.0);
        }
        before = partitions;
    }
}

/// Whether a member that holds `mine` should leave and rejoin the group for the `stuck`
/// partitions (see [`OrderConsumer::rejoin_if_orphaned`]): none of them is its own, and
/// it holds something, or has held nothing since `stall_after` before `now`.
fn orphaned(
    mine: &HashSet<i32>,
    stuck: &[i32],
    empty_since: &mut Option<Instant>,
    now: Instant,
    stall_after: Duration,
) -> bool {
    if mine.is_empty() {
        let since = *empty_since.get_or_insert(now);
        if now.duration_since(since) < stall_after {
            return false;
        }
    } else if stuck.iter().any(|p| mine.contains(p)) {
        *empty_since = None;
        return false;
    }
    *empty_since = None;
    true
}

/// Every 2 s, looks for partitions of `topic` that have a backlog (high watermark past the
/// group's committed offset) and whose committed offset has not moved for `stall_after`,
/// and publishes them (a plain client of the group that never joins it, off the consuming
/// path).
///
/// Why: tansu 0.6's group coordinator can leave a partition assigned to nobody. When a
/// member dies (kill -9) and a survivor's heartbeat notices its session expired, the
/// coordinator drops the member and answers REBALANCE_IN_PROGRESS but keeps the group
/// "formed" at the same generation with the old assignments; the rejoin that follows
/// gets the stored assignments back (SyncGroup in that state ignores the leader's new
/// ones), so the dead member's partitions stay assigned to it, and every heartbeat after
/// that succeeds. Nothing on the client side reports an error; the partitions just stop.
/// `OrderConsumer::run` answers a stall on a partition it does not own by leaving and
/// rejoining the group, which moves the coordinator to a new generation and a fresh
/// assignment over the live members. The number of stuck partitions is the gauge
/// `flashgate_consumer_stalled_partitions`.
async fn watch_stalls(
    brokers: String,
    group: String,
    topic: String,
    stall_after: Duration,
    stalled: watch::Sender<Vec<i32>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Ok(client) = client_config(&brokers)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .create::<rdkafka::consumer::BaseConsumer>()
    else {
        return;
    };
    let client = Arc::new(client);
    metrics::gauge!("flashgate_consumer_stalled_partitions").set(0.0);
    // Per partition: the committed position last seen and since when it has not moved.
    let mut seen: HashMap<i32, (i64, Instant)> = HashMap::new();
    let mut answered_at = Instant::now();
    const OUTAGE: Duration = Duration::from_secs(10);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = shutdown.changed() => return,
        }
        let c = client.clone();
        let t = topic.clone();
        let positions = tokio::task::spawn_blocking(move || -> Option<Vec<(i32, i64, i64)>> {
            let timeout = Duration::from_secs(2);
            let metadata = c.fetch_metadata(Some(&t), timeout).ok()?;
            let partitions: Vec<i32> = metadata
                .topics()
                .iter()
                .find(|m| m.name() == t)?
                .partitions()
                .iter()
                .map(|p| p.id())
                .collect();
            let mut tpl = TopicPartitionList::new();
            for p in &partitions {
                tpl.add_partition(&t, *p);
            }
            let committed = c.committed_offsets(tpl, timeout).ok()?;
            partitions
                .into_iter()
                .map(|p| {
                    let (low, high) = c.fetch_watermarks(&t, p, timeout).ok()?;
                    let next = match committed.find_partition(&t, p).map(|e| e.offset()) {
                        Some(Offset::Offset(n)) => n,
                        _ => low,
                    };
                    Some((p, next, high))
                })
                .collect()
        })
        .await
        .ok()
        .flatten();
        // Unknown this round: say nothing new rather than guess.
        let Some(positions) = positions else { continue };
        let now = Instant::now();
        // After the broker was away for a while, count stall time afresh, or the outage
        // would read as a stall (a round missed now and then is no outage).
        if now.duration_since(answered_at) > OUTAGE {
            seen.clear();
        }
        answered_at = now;
        let mut stuck = Vec::new();
        for (p, next, high) in positions {
            if high <= next {
                seen.remove(&p);
                continue;
            }
            let since = match seen.get(&p) {
                Some((at, since)) if *at == next => *since,
                _ => now,
            };
            seen.insert(p, (next, since));
            if now.duration_since(since) >= stall_after {
                stuck.push(p);
            }
        }
        // The group's view, the same in every member: a member left without partitions
        // reports no lag of its own, so this is what shows orders nobody reads.
        metrics::gauge!("flashgate_consumer_stalled_partitions").set(stuck.len() as f64);
        // Said again every round while something is stuck, so that an idle consumer
        // whose last rejoin did not help tries again once `stall_after` has passed.
        stalled.send_if_modified(|old| {
            let changed = !stuck.is_empty() || *old != stuck;
            *old = stuck;
            changed
        });
    }
}

/// How long the reader waits for the writer before it pauses its partitions.
const PAUSE_AFTER: Duration = Duration::from_secs(1);

/// What the reader collected for one write.
#[derive(Default)]
struct Batch {
    /// When its first message arrived.
    started: Option<Instant>,
    orders: Vec<Order>,
    dead: Vec<serde_json::Value>,
    offsets: BTreeMap<(String, i32), i64>,
    /// Its lookup, started when it was handed to the writer (see `OrderConsumer::run`).
    lookup: Option<tokio::task::JoinHandle<anyhow::Result<Lookup>>>,
}

impl Drop for Batch {
    /// A batch dropped before it was written (shutdown) needs no lookup.
    fn drop(&mut self) {
        if let Some(lookup) = self.lookup.take() {
            lookup.abort();
        }
    }
}

impl Batch {
    /// Messages in it: orders and dead letters.
    fn len(&self) -> usize {
        self.orders.len() + self.dead.len()
    }

    fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }
}

/// `flashgate consume`.
pub struct OrderConsumer {
    consumer: StreamConsumer,
    dlq: FutureProducer,
    dead_letter_topic: String,
    topic: String,
    brokers: String,
    /// Next offset to consume per partition, for the lag gauge.
    done: Arc<Mutex<BTreeMap<(String, i32), i64>>>,
    pool: MySqlPool,
    /// The writer's own connection, kept between batches (taking one from the pool costs
    /// a ping each way); see [`Kept`].
    writer_db: Kept,
    /// The same for the lookups made ahead of the writer.
    lookup_db: Kept,
    store: Store,
    settings: ConsumerSettings,
    /// The per-user window (`user_window_ms`) in which a given-back order's try counts.
    user_window_ms: u64,
    /// When the stall check last said it would not rejoin (said once per stall time).
    stall_warned: Mutex<Option<Instant>>,
}

impl OrderConsumer {
    /// Joins the consumer group on `topic`; `user_window_ms` is the origin's per-user
    /// window, in which the try of an order given back counts.
    pub fn new(
        brokers: &str,
        topic: &str,
        pool: MySqlPool,
        store: Store,
        settings: ConsumerSettings,
        user_window_ms: u64,
    ) -> anyhow::Result<Self> {
        let consumer: StreamConsumer = client_config(brokers)
            .set("group.id", &settings.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            // Bound what librdkafka prefetches: backpressure instead of an unbounded buffer.
            .set("queued.max.messages.kbytes", "16384")
            .create()
            .context("cannot create Kafka consumer")?;
        consumer
            .subscribe(&[topic])
            .with_context(|| format!("cannot subscribe to {topic}"))?;
        let dlq: FutureProducer = client_config(brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create()
            .context("cannot create Kafka producer")?;
        Ok(Self {
            consumer,
            dlq,
            dead_letter_topic: dead_letter_topic(topic, &settings),
            topic: topic.to_owned(),
            brokers: brokers.to_owned(),
            done: Arc::default(),
            pool,
            writer_db: Kept::default(),
            lookup_db: Kept::default(),
            store,
            settings,
            user_window_ms,
            stall_warned: Mutex::default(),
        })
    }

    /// Consumes until `shutdown` turns true, finishing the batch in hand.
    ///
    /// Reading and writing overlap: one task fills the next batch from Kafka while this one
    /// writes the previous batch to MariaDB. At most one batch waits between them; when the
    /// writer is behind (a slow database, the rate cap), the reader pauses its partitions
    /// instead of buffering, and resumes them once the writer takes the waiting batch.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let this = Arc::new(self);
        let lag = tokio::spawn(report_lag(this.clone(), shutdown.clone()));
        if let Err(e) = crate::kafka::ensure_topic(&this.brokers, &this.dead_letter_topic, 1).await
        {
            tracing::warn!(error = %format!("{e:#}"), "dead-letter topic not ready; poison messages will wait");
        }
        let (stalled_tx, stalled) = watch::channel(Vec::new());
        let stall_after = Duration::from_millis(this.settings.stall_rejoin_ms);
        let stalls = (!stall_after.is_zero()).then(|| {
            tokio::spawn(watch_stalls(
                this.brokers.clone(),
                this.settings.group.clone(),
                this.topic.clone(),
                stall_after,
                stalled_tx,
                shutdown.clone(),
            ))
        });
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Batch>(1);
        let reader = tokio::spawn(this.clone().read(tx, stalled, shutdown.clone()));
        let mut result = Ok(());
        let mut idle_since = Instant::now();
        // The Redis side and the offset commit of one batch run while the next batch is
        // written to the database; batches still settle and commit one after the other.
        let mut settling: Option<tokio::task::JoinHandle<anyhow::Result<()>>> = None;
        // The failures of the batch written last. A batch's lookup starts when the reader
        // hands it over, which is when the writer takes the batch before it: it sees every
        // batch committed before that one, and that one's failures are added from here.
        let mut last_failed: HashMap<String, Fate> = HashMap::new();
        while let Some(mut batch) = rx.recv().await {
            // How long the writer waited for the reader (near zero when the database side
            // is the slower one) and how long the batch took it.
            let waited = idle_since.elapsed();
            let writing = Instant::now();
            let ahead = batch.lookup.take();
            let stored = this
                .store(&batch.orders, ahead, &last_failed, &mut shutdown)
                .await;
            if let Some(previous) = settling.take() {
                if let Err(e) = joined(previous.await) {
                    result = Err(e);
                    break;
                }
            }
            let fates = match stored {
                Ok(fates) => fates,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            last_failed = fates
                .iter()
                .filter(|(_, fate)| matches!(fate, Fate::Failed(_)))
                .map(|(id, fate)| (id.clone(), *fate))
                .collect();
            let n = batch.orders.len();
            settling = Some(tokio::spawn(this.clone().settle_and_commit(
                batch,
                fates,
                shutdown.clone(),
            )));
            this.keep_rate(n, writing).await;
            tracing::debug!(
                waited_ms = waited.as_millis() as u64,
                wrote_ms = writing.elapsed().as_millis() as u64,
                "batch written"
            );
            idle_since = Instant::now();
            if *shutdown.borrow() {
                // A batch still waiting was not written; its offsets are not committed, so
                // the next consumer of its partitions reads it again.
                break;
            }
        }
        if let Some(last) = settling.take() {
            let settled = joined(last.await);
            if result.is_ok() {
                result = settled;
            }
        }
        drop(rx);
        if result.is_err() {
            // The reader may wait in recv() on an idle topic; the writer is done for good.
            reader.abort();
        }
        match reader.await {
            Ok(Err(e)) if result.is_ok() => result = Err(e),
            Err(e) if e.is_panic() && result.is_ok() => {
                result = Err(anyhow::anyhow!("the consumer's reader panicked: {e}"))
            }
            _ => {}
        }
        lag.abort();
        if let Some(stalls) = stalls {
            stalls.abort();
        }
        tracing::info!("consumer stopped");
        result
    }

    /// Fills batches and hands them to the writer until `shutdown`; leaves and rejoins the
    /// group when `stalled` names orphaned partitions (see [`watch_stalls`]).
    async fn read(
        self: Arc<Self>,
        tx: tokio::sync::mpsc::Sender<Batch>,
        mut stalled: watch::Receiver<Vec<i32>>,
        mut shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let flush = Duration::from_millis(self.settings.flush_ms);
        let stall_after = Duration::from_millis(self.settings.stall_rejoin_ms);
        // After a rejoin that did not help (the owner is alive but stuck, e.g. its database
        // is away), wait twice as long before the next, up to 16 × `stall_rejoin_ms`.
        let mut last_rejoin: Option<Instant> = None;
        let mut rejoin_after = stall_after;
        // Since when this member has held no partition while some were stuck.
        let mut empty_since: Option<Instant> = None;
        let mut carry = Batch::default();
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            let stuck = stalled.borrow_and_update().clone();
            if stuck.is_empty() {
                rejoin_after = stall_after;
                empty_since = None;
            } else if last_rejoin.is_none_or(|at| at.elapsed() >= rejoin_after)
                && self.rejoin_if_orphaned(&stuck, stall_after, &mut empty_since)?
            {
                if last_rejoin.is_some() {
                    rejoin_after = (rejoin_after * 2).min(stall_after * 16);
                }
                last_rejoin = Some(Instant::now());
            }
            // What arrived while the previous batch waited for the writer starts this one.
            let mut batch = std::mem::take(&mut carry);
            let deadline = tokio::time::sleep(flush);
            tokio::pin!(deadline);
            while batch.len() < self.settings.batch_size {
                tokio::select! {
                    m = self.consumer.recv() => match m {
                        Ok(m) => {
                            if batch.is_empty() {
                                // The flush interval starts with the first message of a batch.
                                deadline.as_mut().reset(tokio::time::Instant::now() + flush);
                            }
                            self.take(&m, &mut batch);
                        }
                        Err(e) => tracing::warn!(error = %e, "kafka receive failed"),
                    },
                    _ = &mut deadline, if !batch.is_empty() => break,
                    _ = shutdown.changed() => break,
                    // An idle consumer waits in recv() for ever; look at the stall first.
                    _ = async {
                        // Without a watcher (check off, or no client) this never fires.
                        if stalled.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    } => break,
                }
            }
            if batch.is_empty() {
                continue;
            }
            // Hand the batch to the writer. While it is busy with the previous one, keep
            // polling (that also serves rebalances), and what arrives starts the next batch.
            // A long wait (the database is away, the rate cap) pauses fetching rather than
            // reading ahead; pausing drops what was prefetched, so a short wait does not.
            let pause_at = tokio::time::sleep(PAUSE_AFTER);
            tokio::pin!(pause_at);
            let mut paused: Option<TopicPartitionList> = None;
            let mut pause_tried = false;
            let mut pending = Some(batch);
            while let Some(waiting) = pending.take() {
                // Once the next batch is full, stop taking messages (librdkafka's prefetch is
                // bounded); pausing here, on every batch of a fast topic, would throw the
                // prefetch away each time.
                let room = carry.len() < self.settings.batch_size;
                tokio::select! {
                    permit = tx.reserve() => match permit {
                        Ok(permit) => {
                            let mut waiting = waiting;
                            waiting.lookup = self.clone().look_up_ahead(&waiting.orders);
                            permit.send(waiting)
                        }
                        Err(_) => return Ok(()),
                    },
                    m = self.consumer.recv(), if room => {
                        pending = Some(waiting);
                        match m {
                            Ok(m) => self.take(&m, &mut carry),
                            Err(e) => tracing::warn!(error = %e, "kafka receive failed"),
                        }
                    },
                    _ = &mut pause_at, if !pause_tried => {
                        pending = Some(waiting);
                        pause_tried = true;
                        paused = self.pause();
                    },
                    _ = shutdown.changed() => return Ok(()),
                }
            }
            if let Some(paused) = paused {
                if let Err(e) = self.consumer.resume(&paused) {
                    // Partitions taken away by a rebalance meanwhile cannot resume; their
                    // new owner reads them.
                    tracing::debug!(error = %e, "resume after backpressure");
                }
            }
        }
    }

    /// `stuck` partitions have a backlog and no progress; if none of them is this
    /// consumer's, leaves the group and joins it again (see [`watch_stalls`]). One of our
    /// own stuck means the trouble is here (e.g. the database), which a rebalance would
    /// not cure.
    ///
    /// An empty assignment is a rebalance under way for a moment; held for `stall_after`
    /// (tracked in `empty_since`) while partitions are stuck, it is this member left out:
    /// a consumer restarted after a kill -9 can join a group whose coordinator still
    /// gives every partition to the dead member, and nothing would ever read them.
    fn rejoin_if_orphaned(
        &self,
        stuck: &[i32],
        stall_after: Duration,
        empty_since: &mut Option<Instant>,
    ) -> anyhow::Result<bool> {
        let mine: HashSet<i32> = match self.consumer.assignment() {
            Ok(tpl) => tpl
                .elements()
                .iter()
                .filter(|e| e.topic() == self.topic)
                .map(|e| e.partition())
                .collect(),
            Err(_) => return Ok(false),
        };
        if !orphaned(&mine, stuck, empty_since, Instant::now(), stall_after) {
            // Our own partitions stuck (or an empty assignment not yet old enough to
            // rejoin): say so once per stall time while it lasts, so that a consumer that
            // stopped making progress is never silent about it.
            let mut warned = self.stall_warned.lock().unwrap_or_else(|e| e.into_inner());
            if warned.is_some_and(|at| at.elapsed() < stall_after) {
                return Ok(false);
            }
            *warned = Some(Instant::now());
            let ours: Vec<i32> = stuck.iter().copied().filter(|p| mine.contains(p)).collect();
            tracing::warn!(
                stuck = ?stuck,
                ours = ?ours,
                assigned = ?mine,
                stalled_for_ms = stall_after.as_millis() as u64,
                "partitions with a backlog made no progress; not rejoining (yet)"
            );
            return Ok(false);
        }
        tracing::warn!(
            partitions = ?stuck,
            assigned = ?mine,
            stalled_for_ms = stall_after.as_millis() as u64,
            "partitions with a backlog made no progress and are not ours; leaving and rejoining the group for a fresh assignment"
        );
        metrics::counter!("flashgate_consumer_forced_rejoins_total").increment(1);
        self.consumer.unsubscribe();
        self.consumer
            .subscribe(&[self.topic.as_str()])
            .with_context(|| format!("cannot subscribe to {}", self.topic))?;
        Ok(true)
    }

    /// Pauses fetching on every assigned partition; the list to resume later.
    fn pause(&self) -> Option<TopicPartitionList> {
        let assigned = self.consumer.assignment().ok()?;
        match self.consumer.pause(&assigned) {
            Ok(()) => {
                metrics::counter!("flashgate_consumer_pauses_total").increment(1);
                Some(assigned)
            }
            Err(e) => {
                tracing::debug!(error = %e, "pause for backpressure");
                None
            }
        }
    }

    /// After the batch's rows are committed: settles its orders in Redis, stores its dead
    /// letters, then commits its offsets.
    async fn settle_and_commit(
        self: Arc<Self>,
        batch: Batch,
        fates: HashMap<String, Fate>,
        mut shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let started = batch.started.unwrap_or_else(Instant::now);
        self.settle_retrying(&batch.orders, &fates, &mut shutdown)
            .await?;
        self.bury(&batch.dead, &mut shutdown).await?;
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in &batch.offsets {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(offset + 1))?;
        }
        // A failed commit (e.g. a rebalance took the partition away) only means the
        // batch will be consumed again, and replaying it writes nothing twice.
        // Async: the rows are already committed, and a lost commit only replays the batch.
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
            tracing::warn!(error = %e, "offset commit failed; the batch may be replayed");
        }
        if let Ok(mut done) = self.done.lock() {
            done.extend(batch.offsets.iter().map(|(k, v)| (k.clone(), v + 1)));
        }
        metrics::counter!("flashgate_consumer_orders_total").increment(batch.orders.len() as u64);
        metrics::histogram!("flashgate_consumer_batch_seconds")
            .record(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// The rate cap is on what reaches the database: the writer spends at least n/rate on
    /// a batch of n (the reader fills the next one meanwhile, then pauses).
    async fn keep_rate(&self, n: usize, writing: Instant) {
        if self.settings.max_rate > 0 {
            let min = Duration::from_secs_f64(n as f64 / f64::from(self.settings.max_rate));
            if let Some(rest) = min.checked_sub(writing.elapsed()) {
                tokio::time::sleep(rest).await;
            }
        }
    }

    fn take(&self, m: &BorrowedMessage<'_>, batch: &mut Batch) {
        if batch.is_empty() {
            batch.started = Some(Instant::now());
        }
        batch
            .offsets
            .insert((m.topic().to_owned(), m.partition()), m.offset());
        let letter = |reason: &str, payload: String| {
            serde_json::json!({"reason": reason, "topic": m.topic(), "partition": m.partition(),
                "offset": m.offset(), "payload": payload})
        };
        let Some(items) = m.payload().and_then(crate::kafka::unpack) else {
            metrics::counter!("flashgate_consumer_malformed_total").increment(1);
            tracing::error!(
                partition = m.partition(),
                offset = m.offset(),
                "malformed order message; to the dead-letter topic"
            );
            batch.dead.push(match m.payload() {
                None => letter("empty message", String::new()),
                Some(p) => letter(
                    "not a valid order message",
                    String::from_utf8_lossy(p).into(),
                ),
            });
            return;
        };
        // A pack's good orders go on; each bad one goes to the dead-letter topic alone.
        for item in items {
            match Order::from_value(&item) {
                Some(o) => batch.orders.push(o),
                None => {
                    metrics::counter!("flashgate_consumer_malformed_total").increment(1);
                    tracing::error!(
                        partition = m.partition(),
                        offset = m.offset(),
                        "malformed order in a message; to the dead-letter topic"
                    );
                    batch
                        .dead
                        .push(letter("not a valid order", item.to_string()));
                }
            }
        }
    }

    /// Sends poison messages to the dead-letter topic; retried until the broker has them,
    /// since their offsets are committed right after.
    async fn bury(
        &self,
        dead: &[serde_json::Value],
        shutdown: &mut watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        for letter in dead {
            let payload = letter.to_string();
            loop {
                let record = FutureRecord::<(), _>::to(&self.dead_letter_topic).payload(&payload);
                match self.dlq.send(record, Duration::from_secs(5)).await {
                    Ok(_) => break,
                    Err((e, _)) => {
                        tracing::warn!(error = %e, "dead-letter produce failed; will retry");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                            _ = shutdown.changed() => anyhow::bail!("stopped before the dead letter was stored"),
                        }
                    }
                }
            }
            metrics::counter!("flashgate_consumer_dead_letters_total").increment(1);
        }
        Ok(())
    }

    /// Tells Redis what became of each order: confirmed, or failed with its unit given back
    /// (both idempotent, so a replayed batch changes nothing).
    async fn settle(
        &self,
        orders: &[Order],
        fates: &HashMap<String, Fate>,
    ) -> redis::RedisResult<()> {
        let mut confirmed: HashMap<&EventId, Vec<(&UserId, &str)>> = HashMap::new();
        for o in orders {
            match fates.get(o.order_id.as_str()) {
                Some(Fate::Confirmed) => confirmed
                    .entry(&o.event_id)
                    .or_default()
                    .push((&o.user_id, o.order_id.as_str())),
                Some(Fate::Failed(reason)) => {
                    let given_back = self
                        .store
                        .compensate(
                            &o.event_id,
                            &o.user_id,
                            o.order_id.as_str(),
                            self.user_window_ms,
                        )
                        .await?;
                    if given_back {
                        metrics::counter!("flashgate_compensations_total", "reason" => *reason)
                            .increment(1);
                        tracing::warn!(order = %o.order_id, user = %o.user_id, reason, "order failed; stock given back");
                    }
                }
                None => {}
            }
        }
        // One script call per event per batch (an event's keys share one slot).
        let calls = confirmed
            .iter()
            .map(|(event, list)| self.store.confirm_many(event, list));
        for r in futures::future::join_all(calls).await {
            r?;
        }
        Ok(())
    }

    /// Writes the batch to the database, retrying transient failures with backoff; what
    /// became of each order.
    async fn store(
        &self,
        orders: &[Order],
        ahead: Option<tokio::task::JoinHandle<anyhow::Result<Lookup>>>,
        last_failed: &HashMap<String, Fate>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> anyhow::Result<HashMap<String, Fate>> {
        if orders.is_empty() {
            return Ok(HashMap::new());
        }
        // A lookup made ahead serves the first attempt; a retry looks up afresh.
        let mut looked_up = match ahead {
            Some(mut task) => match tokio::time::timeout(DB_ANSWER, &mut task).await {
                Ok(Ok(Ok(found))) => Some(found),
                // Said, not silent: a writer that spent DB_ANSWER on every batch's lookup
                // used to say nothing at all.
                Ok(Ok(Err(e))) => {
                    tracing::warn!(error = %format!("{e:#}"), "lookup made ahead failed; the writer looks up itself");
                    None
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "lookup made ahead did not finish; the writer looks up itself");
                    None
                }
                Err(_) => {
                    task.abort();
                    tracing::warn!(
                        waited_s = DB_ANSWER.as_secs(),
                        "lookup made ahead did not answer; the writer looks up itself"
                    );
                    None
                }
            },
            None => None,
        };
        if let Some(found) = looked_up.as_mut() {
            add_failures(found, orders, last_failed);
        }
        retrying(shutdown, || {
            let looked_up = looked_up.take();
            async move {
                let mut db = self.writer_db.take_or_acquire(&self.pool).await?;
                let fates =
                    tokio::time::timeout(DB_ANSWER, write_looked_up(&mut db, orders, looked_up))
                        .await
                        .map_err(|_| anyhow::anyhow!("no answer in {} s", DB_ANSWER.as_secs()))
                        .context("mariadb")?
                        .context("mariadb")?;
                self.writer_db.keep(db);
                Ok(fates)
            }
        })
        .await
    }

    /// Starts the lookup of a batch about to be handed to the writer, on a connection of
    /// its own. `None` for a batch without orders.
    fn look_up_ahead(
        self: Arc<Self>,
        orders: &[Order],
    ) -> Option<tokio::task::JoinHandle<anyhow::Result<Lookup>>> {
        if orders.is_empty() {
            return None;
        }
        let orders = orders.to_vec();
        Some(tokio::spawn(async move {
            let mut db = self.lookup_db.take_or_acquire(&self.pool).await?;
            let found = look_up(&mut db, &orders).await.context("mariadb")?;
            self.lookup_db.keep(db);
            Ok(found)
        }))
    }

    /// Settles each order in Redis, retrying transient failures with backoff (both
    /// settlements are idempotent).
    async fn settle_retrying(
        &self,
        orders: &[Order],
        fates: &HashMap<String, Fate>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        if orders.is_empty() {
            return Ok(());
        }
        retrying(shutdown, || async {
            self.settle(orders, fates).await.context("redis")
        })
        .await
    }
}

/// How long a database call may take before it counts as failed (and is retried on a
/// fresh connection: a connection cut without a word could otherwise hang a query until
/// the kernel gives up on it, many minutes later).
const DB_ANSWER: Duration = Duration::from_secs(30);

/// A connection kept out of the pool between uses, while it stays busy: one that worked
/// is kept for the next use; one that failed is dropped (the pool checks it before
/// lending it again); one idle for more than [`KEEP_IDLE`] goes back to the pool, which
/// pings it before lending it (a quiet topic may outlive the server's or a NAT's idle
/// timeout).
#[derive(Default)]
struct Kept(Mutex<Option<(Instant, PoolConnection<MySql>)>>);

/// See [`Kept`].
const KEEP_IDLE: Duration = Duration::from_secs(10);

impl Kept {
    /// The kept connection if it was used lately, else one from the pool.
    async fn take_or_acquire(&self, pool: &MySqlPool) -> anyhow::Result<PoolConnection<MySql>> {
        let kept = self.0.lock().ok().and_then(|mut db| db.take());
        match kept {
            Some((used, db)) if used.elapsed() < KEEP_IDLE => Ok(db),
            _ => pool.acquire().await.context("mariadb"),
        }
    }

    /// Keeps a connection that just worked.
    fn keep(&self, db: PoolConnection<MySql>) {
        if let Ok(mut kept) = self.0.lock() {
            *kept = Some((Instant::now(), db));
        }
    }
}

/// Runs `attempt` until it succeeds, with backoff from 100 ms to 5 s, or until shutdown
/// (the batch is then consumed again by whoever reads its partitions next).
async fn retrying<T, F, Fut>(
    shutdown: &mut watch::Receiver<bool>,
    mut attempt: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut backoff = Duration::from_millis(100);
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), retry_in_ms = backoff.as_millis() as u64, "batch failed; will retry");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.changed() => anyhow::bail!("stopped with an unfinished batch; it will be consumed again"),
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// A settling task's outcome.
fn joined(r: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Result<()> {
    r.map_err(|e| anyhow::anyhow!("settling a batch failed: {e}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(id: &str, user: &str) -> Order {
        let payload =
            serde_json::json!({"order_id": id, "event_id": "e", "user_id": user, "reserved_at": 1});
        Order::parse(payload.to_string().as_bytes()).expect("order")
    }

    #[test]
    fn a_lookup_made_ahead_gets_the_failures_of_the_batch_before() {
        // The batch before failed o1 (its buyer was blocked, maybe unblocked since) and
        // confirmed o2; the lookup, made before that was committed, found neither.
        let last: HashMap<String, Fate> = [("o1".to_owned(), Fate::Failed("blocked"))].into();
        let mut found: Lookup = Default::default();
        add_failures(
            &mut found,
            &[order("o1", "a"), order("o2", "b"), order("o3", "c")],
            &last,
        );
        assert_eq!(found.0, [("o1".to_owned(), Fate::Failed("blocked"))].into());
        // Failures of orders not in this batch are not its business.
        let mut found: Lookup = Default::default();
        add_failures(&mut found, &[order("o3", "c")], &last);
        assert!(found.0.is_empty());
    }

    #[test]
    fn a_member_rejoins_for_stuck_partitions_it_does_not_hold() {
        let stall = Duration::from_secs(20);
        let t0 = Instant::now();
        let mine: HashSet<i32> = [0].into();
        let mut since = None;
        // Its own partition is stuck: the trouble is here, a rebalance would not help.
        assert!(!orphaned(&mine, &[0, 1], &mut since, t0, stall));
        // Only others' partitions are stuck: a fresh assignment may give them to it.
        assert!(orphaned(&mine, &[1, 2], &mut since, t0, stall));
    }

    #[test]
    fn a_member_left_with_nothing_rejoins_once_it_is_no_rebalance() {
        let stall = Duration::from_secs(20);
        let t0 = Instant::now();
        let none = HashSet::new();
        let mut since = None;
        // Empty for a moment: a rebalance under way.
        assert!(!orphaned(&none, &[0, 1, 2], &mut since, t0, stall));
        assert!(!orphaned(
            &none,
            &[0, 1, 2],
            &mut since,
            t0 + stall / 2,
            stall
        ));
        // Empty as long as a stall: left out while every partition waits.
        assert!(orphaned(&none, &[0, 1, 2], &mut since, t0 + stall, stall));
        // The rejoin starts the count again.
        assert!(!orphaned(
            &none,
            &[0, 1, 2],
            &mut since,
            t0 + stall * 2,
            stall
        ));
        // A member that got something in between counts from its next empty spell.
        let mut since = None;
        assert!(!orphaned(&none, &[0], &mut since, t0, stall));
        assert!(!orphaned(
            &[0].into(),
            &[0],
            &mut since,
            t0 + stall / 2,
            stall
        ));
        assert!(!orphaned(&none, &[0], &mut since, t0 + stall, stall));
    }
}
