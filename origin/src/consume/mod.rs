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
//!
//! # Layout
//!
//! - `read`: batches from Kafka, with backpressure.
//! - [`write`]: a batch into MariaDB, idempotently (`Fate` of each order).
//! - `settle`: Redis told what became of each order; offsets committed after.
//! - `lag`, `stalls`: what the consumer reports and the rejoin of orphaned partitions;
//!   `group`: the group's view of who owns which partition, which that rejoin goes by.
//! - `retry`: backoff and the connections kept between batches.

mod group;
mod lag;
mod read;
mod retry;
mod settle;
mod stalls;
mod write;

pub use write::{write_batch, Fate, Order};

use crate::config::ConsumerSettings;
use crate::kafka::client_config;
use crate::redis::Store;
use crate::shutdown::Shutdown;
use anyhow::Context;
use lag::report_lag;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::producer::FutureProducer;
use read::Batch;
use retry::{joined, retrying, Kept, DB_ANSWER};
use sqlx::mysql::MySqlPool;
use stalls::watch_stalls;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use write::{add_failures, write_looked_up, Lookup};

/// The dead-letter topic of `orders_topic`: the configured one, or `<orders_topic>.dlq`.
pub fn dead_letter_topic(orders_topic: &str, settings: &ConsumerSettings) -> String {
    if settings.dead_letter_topic.is_empty() {
        format!("{orders_topic}.dlq")
    } else {
        settings.dead_letter_topic.clone()
    }
}

/// `flashgate consume`.
pub struct Consumer {
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
    redis: Store,
    settings: ConsumerSettings,
    /// The per-user window (`user_window_ms`) in which a given-back order's try counts.
    user_window_ms: u64,
    /// When the stall check last said it would not rejoin (said once per stall time).
    stall_warned: Mutex<Option<Instant>>,
}

impl Consumer {
    /// Joins the consumer group on `topic`; `user_window_ms` is the origin's per-user
    /// window, in which the try of an order given back counts.
    pub fn new(
        brokers: &str,
        topic: &str,
        pool: MySqlPool,
        redis: Store,
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
            redis,
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
    pub async fn run(self, mut shutdown: Shutdown) -> anyhow::Result<()> {
        let this = Arc::new(self);
        let lag = tokio::spawn(report_lag(this.clone(), shutdown.clone()));
        if let Err(e) = crate::kafka::ensure_topic(&this.brokers, &this.dead_letter_topic, 1).await
        {
            tracing::warn!(error = %format!("{e:#}"), "dead-letter topic not ready; poison messages will wait");
        }
        let (stalled_tx, stalled) = watch::channel(Default::default());
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
                .write(&batch.orders, ahead, &last_failed, &mut shutdown)
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
            if shutdown.is_shutdown() {
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

    /// Writes the batch to the database, retrying transient failures with backoff; what
    /// became of each order.
    async fn write(
        &self,
        orders: &[Order],
        ahead: Option<tokio::task::JoinHandle<anyhow::Result<Lookup>>>,
        last_failed: &HashMap<String, Fate>,
        shutdown: &mut Shutdown,
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
}
