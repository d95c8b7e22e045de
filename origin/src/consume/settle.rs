//! After a batch's rows are committed: its orders settled in Redis (confirmed, or
//! failed with the unit given back), its dead letters stored, then its offsets committed.

use super::read::Batch;
use super::retry::retrying;
use super::write::{Fate, Order};
use super::Consumer;
use crate::redis::Refused;
use crate::shutdown::Shutdown;
use anyhow::Context;
use flashgate_core::fence::Refusal;
use flashgate_core::ids::{EventId, UserId};
use rdkafka::consumer::{CommitMode, Consumer as _};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Consumer {
    /// After the batch's rows are committed: settles its orders in Redis, stores its dead
    /// letters, then commits its offsets.
    pub(super) async fn settle_and_commit(
        self: Arc<Self>,
        batch: Batch,
        fates: HashMap<String, Fate>,
        mut shutdown: Shutdown,
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
    pub(super) async fn keep_rate(&self, n: usize, writing: Instant) {
        if self.settings.max_rate > 0 {
            let min = Duration::from_secs_f64(n as f64 / f64::from(self.settings.max_rate));
            if let Some(rest) = min.checked_sub(writing.elapsed()) {
                tokio::time::sleep(rest).await;
            }
        }
    }

    /// Sends poison messages to the dead-letter topic; retried until the broker has them,
    /// since their offsets are committed right after.
    async fn bury(
        &self,
        dead: &[serde_json::Value],
        shutdown: &mut Shutdown,
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
                            _ = shutdown.recv() => anyhow::bail!("stopped before the dead letter was stored"),
                        }
                    }
                }
            }
            metrics::counter!("flashgate_consumer_dead_letters_total").increment(1);
        }
        Ok(())
    }

    /// Tells Redis what became of each order: confirmed, or failed with its unit given back
    /// unless another order holds it (both idempotent, so a replayed batch changes
    /// nothing).
    async fn settle(&self, orders: &[Order], fates: &HashMap<String, Fate>) -> anyhow::Result<()> {
        let holders = self.holders(orders, fates).await.context("mariadb")?;
        let mut confirmed: HashMap<&EventId, Vec<(&UserId, &str)>> = HashMap::new();
        for o in orders {
            match fates.get(o.order_id.as_str()) {
                Some(Fate::Confirmed) => confirmed
                    .entry(&o.event_id)
                    .or_default()
                    .push((&o.user_id, o.order_id.as_str())),
                Some(Fate::Failed(reason)) => {
                    let give_back = Refusal::parse(reason).is_none_or(Refusal::gives_back);
                    let holder = holders.get(&(o.event_id.as_str(), o.user_id.as_str()));
                    let refused = Refused {
                        unit: o.unit_no,
                        give_back,
                        holder: holder.map(String::as_str),
                    };
                    let failed_now = self
                        .redis
                        .compensate(
                            &o.event_id,
                            &o.user_id,
                            o.order_id.as_str(),
                            refused,
                            self.user_window_ms,
                        )
                        .await
                        .context("redis")?;
                    if failed_now {
                        metrics::counter!("flashgate_compensations_total", "reason" => *reason)
                            .increment(1);
                        tracing::warn!(order = %o.order_id, user = %o.user_id, reason, give_back, "order failed");
                    }
                }
                None => {}
            }
        }
        // One script call per event per batch (an event's keys share one slot).
        let calls = confirmed
            .iter()
            .map(|(event, list)| self.redis.confirm_many(event, list));
        for r in futures::future::join_all(calls).await {
            r.context("redis")?;
        }
        Ok(())
    }

    /// The orders the buyers of a batch's failed orders hold in the database, by (event,
    /// user): a buyer refused as a duplicate is shown the order they hold. One query, and
    /// none for a batch without failures.
    async fn holders<'a>(
        &self,
        orders: &'a [Order],
        fates: &HashMap<String, Fate>,
    ) -> sqlx::Result<HashMap<(&'a str, &'a str), String>> {
        let failed: Vec<&Order> = orders
            .iter()
            .filter(|o| matches!(fates.get(o.order_id.as_str()), Some(Fate::Failed(_))))
            .collect();
        if failed.is_empty() {
            return Ok(HashMap::new());
        }
        let mut q: sqlx::QueryBuilder<sqlx::MySql> = sqlx::QueryBuilder::new(
            "SELECT event_id, user_id, order_id FROM orders WHERE (event_id, user_id) IN (",
        );
        let mut sep = q.separated(", ");
        for o in &failed {
            sep.push("(")
                .push_bind_unseparated(o.event_id.as_str())
                .push_unseparated(", ")
                .push_bind_unseparated(o.user_id.as_str())
                .push_unseparated(")");
        }
        q.push(")");
        let rows: Vec<(String, String, String)> = q.build_query_as().fetch_all(&self.pool).await?;
        let mut holders = HashMap::new();
        for (event, user, order) in rows {
            // Borrow the batch's own strings for the key.
            if let Some(o) = failed
                .iter()
                .find(|o| o.event_id.as_str() == event && o.user_id.as_str() == user)
            {
                holders.insert((o.event_id.as_str(), o.user_id.as_str()), order);
            }
        }
        Ok(holders)
    }

    /// Settles each order in Redis, retrying transient failures with backoff (both
    /// settlements are idempotent).
    pub(super) async fn settle_retrying(
        &self,
        orders: &[Order],
        fates: &HashMap<String, Fate>,
        shutdown: &mut Shutdown,
    ) -> anyhow::Result<()> {
        if orders.is_empty() {
            return Ok(());
        }
        retrying(shutdown, || async { self.settle(orders, fates).await }).await
    }
}
