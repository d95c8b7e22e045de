//! Reading batches from Kafka, with backpressure: the reader pauses its partitions
//! rather than buffering while the writer is behind.

use super::stalls::Stalled;
use super::write::{Lookup, Order};
use super::Consumer;
use crate::shutdown::Shutdown;
use rdkafka::consumer::Consumer as _;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::TopicPartitionList;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long the reader waits for the writer before it pauses its partitions.
const PAUSE_AFTER: Duration = Duration::from_secs(1);

/// What the reader collected for one write.
#[derive(Default)]
pub(super) struct Batch {
    /// When its first message arrived.
    pub(super) started: Option<Instant>,
    pub(super) orders: Vec<Order>,
    pub(super) dead: Vec<serde_json::Value>,
    pub(super) offsets: BTreeMap<(String, i32), i64>,
    /// Its lookup, started when it was handed to the writer (see `Consumer::run`).
    pub(super) lookup: Option<tokio::task::JoinHandle<anyhow::Result<Lookup>>>,
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

impl Consumer {
    /// Fills batches and hands them to the writer until `shutdown`; leaves and rejoins the
    /// group when `stalled` names orphaned partitions (see [`watch_stalls`]).
    pub(super) async fn read(
        self: Arc<Self>,
        tx: tokio::sync::mpsc::Sender<Batch>,
        mut stalled: watch::Receiver<Stalled>,
        mut shutdown: Shutdown,
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
            if shutdown.is_shutdown() {
                return Ok(());
            }
            let latest = stalled.borrow_and_update().clone();
            if latest.stuck.is_empty() {
                rejoin_after = stall_after;
                empty_since = None;
            } else if last_rejoin.is_none_or(|at| at.elapsed() >= rejoin_after)
                && self.rejoin_if_orphaned(&latest, stall_after, &mut empty_since)?
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
                    _ = shutdown.recv() => break,
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
                    _ = shutdown.recv() => return Ok(()),
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
}
