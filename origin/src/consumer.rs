//! The order consumer: Kafka → MariaDB at a steady pace, at least once, idempotently.
//!
//! A batch is written in one transaction (`INSERT IGNORE` on the primary key `order_id`
//! and the unique `(event_id, user_id)`); only after the commit are the orders marked
//! confirmed in Redis and the offsets committed, so a crash anywhere replays the batch and
//! the replay writes nothing twice. An order the database refuses (the user already holds
//! another order for the event) is failed and its unit given back (compensation).

use crate::config::ConsumerSettings;
use crate::kafka::{client_config, OrderMessage};
use crate::store::Store;
use anyhow::Context;
use flashgate_core::ids::{EventId, OrderId, UserId};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use sqlx::mysql::MySqlPool;
use sqlx::{MySql, QueryBuilder};
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A valid order read from the topic.
#[derive(Debug, Clone)]
pub struct Order {
    order_id: OrderId,
    event_id: EventId,
    user_id: UserId,
    reserved_at: chrono::NaiveDateTime,
}

impl Order {
    /// Validates a message; `None` for anything a well-behaved relay never sends.
    pub fn parse(payload: &[u8]) -> Option<Order> {
        let m: OrderMessage = serde_json::from_slice(payload).ok()?;
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

/// Writes one batch in one transaction; returns the order ids now in the table.
pub async fn write_batch(pool: &MySqlPool, orders: &[Order]) -> sqlx::Result<HashSet<String>> {
    let mut tx = pool.begin().await?;
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
    insert.build().execute(&mut *tx).await?;
    let mut select: QueryBuilder<MySql> =
        QueryBuilder::new("SELECT order_id FROM orders WHERE order_id IN (");
    let mut ids = select.separated(", ");
    for o in orders {
        ids.push_bind(o.order_id.as_str());
    }
    select.push(")");
    let present: Vec<(String,)> = select.build_query_as().fetch_all(&mut *tx).await?;
    tx.commit().await?;
    Ok(present.into_iter().map(|(id,)| id).collect())
}

/// `flashgate consume`.
pub struct OrderConsumer {
    consumer: StreamConsumer,
    pool: MySqlPool,
    store: Store,
    settings: ConsumerSettings,
}

impl OrderConsumer {
    /// Joins the consumer group on `topic`.
    pub fn new(
        brokers: &str,
        topic: &str,
        pool: MySqlPool,
        store: Store,
        settings: ConsumerSettings,
    ) -> anyhow::Result<Self> {
        let consumer: StreamConsumer = client_config(brokers)
            .set("group.id", &settings.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            .create()
            .context("cannot create Kafka consumer")?;
        consumer
            .subscribe(&[topic])
            .with_context(|| format!("cannot subscribe to {topic}"))?;
        Ok(Self {
            consumer,
            pool,
            store,
            settings,
        })
    }

    /// Consumes until `shutdown` turns true, finishing the batch in hand.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let flush = Duration::from_millis(self.settings.flush_ms);
        loop {
            if *shutdown.borrow() {
                break;
            }
            let started = Instant::now();
            let mut orders = Vec::new();
            let mut offsets: BTreeMap<(String, i32), i64> = BTreeMap::new();
            let deadline = tokio::time::sleep(flush);
            tokio::pin!(deadline);
            let mut first = true;
            while orders.len() < self.settings.batch_size {
                tokio::select! {
                    m = self.consumer.recv() => match m {
                        Ok(m) => {
                            if first {
                                // The flush interval starts with the first message of a batch.
                                deadline.as_mut().reset(tokio::time::Instant::now() + flush);
                                first = false;
                            }
                            self.take(&m, &mut orders, &mut offsets);
                        }
                        Err(e) => tracing::warn!(error = %e, "kafka receive failed"),
                    },
                    _ = &mut deadline, if !first => break,
                    _ = shutdown.changed() => break,
                }
            }
            if offsets.is_empty() {
                continue;
            }
            let n = orders.len();
            if !orders.is_empty() {
                self.write(&orders, &mut shutdown).await?;
            }
            let mut tpl = TopicPartitionList::new();
            for ((topic, partition), offset) in &offsets {
                tpl.add_partition_offset(topic, *partition, Offset::Offset(offset + 1))?;
            }
            self.consumer
                .commit(&tpl, CommitMode::Sync)
                .context("cannot commit consumer offsets")?;
            metrics::counter!("flashgate_consumer_orders_total").increment(n as u64);
            metrics::histogram!("flashgate_consumer_batch_seconds")
                .record(started.elapsed().as_secs_f64());
            if self.settings.max_rate > 0 {
                let min = Duration::from_secs_f64(n as f64 / f64::from(self.settings.max_rate));
                if let Some(rest) = min.checked_sub(started.elapsed()) {
                    tokio::time::sleep(rest).await;
                }
            }
        }
        tracing::info!("consumer stopped");
        Ok(())
    }

    fn take(
        &self,
        m: &BorrowedMessage<'_>,
        orders: &mut Vec<Order>,
        offsets: &mut BTreeMap<(String, i32), i64>,
    ) {
        offsets.insert((m.topic().to_owned(), m.partition()), m.offset());
        match m.payload().and_then(Order::parse) {
            Some(o) => orders.push(o),
            None => {
                metrics::counter!("flashgate_consumer_malformed_total").increment(1);
                tracing::error!(
                    partition = m.partition(),
                    offset = m.offset(),
                    "malformed order message skipped"
                );
            }
        }
    }

    /// Writes the batch and settles each order in Redis, retrying transient failures
    /// with backoff; offsets are committed by the caller only after this returns.
    async fn write(
        &self,
        orders: &[Order],
        shutdown: &mut watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let mut backoff = Duration::from_millis(100);
        loop {
            let attempt = async {
                let present = write_batch(&self.pool, orders).await.context("mariadb")?;
                for o in orders {
                    if present.contains(o.order_id.as_str()) {
                        self.store
                            .confirm(&o.event_id, &o.user_id, o.order_id.as_str())
                            .await
                            .context("redis")?;
                    } else if self
                        .store
                        .compensate(&o.event_id, &o.user_id, o.order_id.as_str())
                        .await
                        .context("redis")?
                    {
                        metrics::counter!("flashgate_compensations_total").increment(1);
                        tracing::warn!(order = %o.order_id, user = %o.user_id, "order refused by the database; stock given back");
                    }
                }
                anyhow::Ok(())
            };
            match attempt.await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), retry_in_ms = backoff.as_millis() as u64, "batch failed; will retry");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => anyhow::bail!("stopped with an unwritten batch; it will be consumed again"),
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}
