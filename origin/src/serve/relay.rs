//! The outbox relay: moves reservations from each event's Redis stream (each of its stock
//! buckets' for a split event) to Kafka.
//!
//! Entries are read with a consumer group and acknowledged and deleted (lua/relayed.lua)
//! only after the broker's delivery report, so nothing is acknowledged that is not in
//! Kafka. Entries left pending by a relay that died (or by a failed produce) are claimed
//! after [`CLAIM_IDLE_MS`] and sent again; duplicates are harmless downstream because order
//! ids are unique. An entry holds a reserve call's orders (`outbox_entry`); the orders of a
//! pass go out packed, `relay_pack` per message ([`pack_orders`]), and an entry is
//! acknowledged once every message with an order of it is delivered.

use super::outbox_entry::{delivered, orders_of};
use super::protect::Breaker;
use crate::config::Settings;
use crate::kafka::{client_config, pack_orders, OrderMessage};
use crate::redis::{EventKeys, Store};
use crate::shutdown::Shutdown;
use anyhow::Context;
use flashgate_core::ids::EventId;
use futures::future::join_all;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadOptions, StreamReadReply};
use redis::AsyncCommands;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const GROUP: &str = "relay";
/// Pending entries idle this long are claimed by any relay.
pub(crate) const CLAIM_IDLE_MS: u64 = 5_000;
const BATCH: usize = 2048;

/// The relay task's handles.
#[derive(Clone)]
pub(crate) struct Relay {
    store: Store,
    producer: FutureProducer,
    topic: String,
    consumer: String,
    breaker: Arc<Breaker>,
    backlog: Arc<AtomicU64>,
    pack: usize,
    stall: bool,
}

impl Relay {
    /// An idempotent producer for the configured brokers and a relay over `store` that
    /// keeps `backlog` current.
    pub(crate) fn new(
        store: Store,
        settings: &Settings,
        backlog: Arc<AtomicU64>,
    ) -> anyhow::Result<Self> {
        let producer: FutureProducer = client_config(&settings.kafka.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // Fuller produce requests: the reservation is already safe in the outbox and
            // the shopper has the 202, so 10 ms here costs nobody a wait, and it halves
            // the broker's (and this process's) work per order under a flash crowd
            // (docs/benchmarks.md).
            .set("linger.ms", "10")
            .set("message.timeout.ms", "10000")
            .create()
            .context("cannot create Kafka producer")?;
        Ok(Self {
            store,
            producer,
            topic: settings.kafka.orders_topic.clone(),
            consumer: format!(
                "relay-{}-{}",
                std::process::id(),
                uuid::Uuid::now_v7().simple()
            ),
            breaker: Arc::new(Breaker::new(
                "kafka",
                settings.protect.breaker_failures,
                Duration::from_millis(settings.protect.breaker_cooldown_ms),
            )),
            backlog,
            pack: settings.kafka.relay_pack,
            stall: settings.faults.relay_stall,
        })
    }

    /// Whether the broker answers a metadata request.
    pub(crate) async fn ready(&self) -> bool {
        let producer = self.producer.clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&topic), Duration::from_secs(1))
                .is_ok()
        })
        .await
        .unwrap_or(false)
    }

    /// Runs until `shutdown` turns true, then flushes what it holds.
    pub(crate) async fn run(self, mut shutdown: Shutdown) {
        let mut groups: HashSet<String> = HashSet::new();
        let mut last_claim = std::time::Instant::now();
        let mut last_backlog = std::time::Instant::now() - Duration::from_secs(1);
        loop {
            if shutdown.is_shutdown() {
                break;
            }
            if last_backlog.elapsed() >= Duration::from_millis(250) {
                last_backlog = std::time::Instant::now();
                // Like a pass, never hangs the relay on a stuck connection.
                let _ = tokio::time::timeout(Duration::from_secs(2), self.measure_backlog()).await;
            }
            let claim = last_claim.elapsed() >= Duration::from_millis(CLAIM_IDLE_MS / 2);
            if claim {
                last_claim = std::time::Instant::now();
            }
            // A pass never hangs the relay (and so never the shutdown) on a stuck dependency.
            let pass = tokio::time::timeout(Duration::from_secs(10), self.pass(&mut groups, claim));
            let (moved, failed) = match pass.await {
                Ok(Ok(n)) => (n, false),
                Ok(Err(e)) => {
                    tracing::warn!(error = %format!("{e:#}"), "relay pass failed");
                    let redis = e.downcast_ref::<redis::RedisError>();
                    if redis.is_some_and(|e| e.code() == Some("NOGROUP")) {
                        // Redis lost its data (restarted without it): the consumer groups
                        // are created again on the next pass.
                        groups.clear();
                    }
                    (0, true)
                }
                Err(_) => {
                    tracing::warn!("relay pass timed out");
                    (0, true)
                }
            };
            if failed {
                // Redis may have restarted: when it does not answer a PING on the current
                // connection, a fresh one, made here too, so that the outbox drains with no
                // shopper traffic to trigger the API's probe. (A pass also times out on a
                // stalled broker; Redis answers then, and its connection is kept.)
                tokio::select! {
                    _ = self.store.answers_or_reconnect() => {}
                    _ = shutdown.recv() => {}
                }
            }
            if moved == 0 {
                let idle = if failed { 500 } else { 20 };
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(idle)) => {}
                    _ = shutdown.recv() => {}
                }
            }
        }
        let _ = self.producer.flush(Duration::from_secs(5));
        tracing::info!("relay stopped");
    }

    async fn measure_backlog(&self) {
        let backlog = match self.store.event_ids().await {
            Ok(events) => self.store.outbox_backlog(&events).await,
            Err(e) => Err(e),
        };
        if let Ok(n) = backlog {
            self.backlog.store(n, Ordering::Relaxed);
            metrics::gauge!("flashgate_outbox_backlog").set(n as f64);
        }
    }

    /// One pass over every event's outbox; returns how many entries reached Kafka.
    pub(crate) async fn pass(
        &self,
        groups: &mut HashSet<String>,
        claim: bool,
    ) -> anyhow::Result<usize> {
        let mut conn = self.store.conn();
        let mut moved = 0;
        // Every event's outbox, or each of its stock buckets'.
        let mut outboxes = Vec::new();
        for event in self.store.event_ids().await? {
            for keys in self.store.outboxes(&event).await? {
                outboxes.push((event.clone(), keys));
            }
        }
        for (event, keys) in outboxes {
            let outbox = keys.outbox();
            if !groups.contains(&outbox) {
                let created: redis::RedisResult<()> =
                    conn.xgroup_create_mkstream(&outbox, GROUP, "0").await;
                if let Err(e) = created {
                    if e.code() != Some("BUSYGROUP") {
                        return Err(e.into());
                    }
                }
                groups.insert(outbox.clone());
            }
            if !self.breaker.allow(std::time::Instant::now()) {
                // Kafka is away: entries wait in the outbox until a probe succeeds.
                return Ok(moved);
            }
            // In strict mode the reads go on a connection of their own, so that a WAIT on it
            // counts them (and with them the reservations they read).
            let strict = self.store.strict_conn().await?;
            let mut reads = strict.clone().unwrap_or_else(|| conn.clone());
            let mut entries: Vec<StreamId> = Vec::new();
            if claim {
                let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                    .arg(&outbox)
                    .arg(GROUP)
                    .arg(&self.consumer)
                    .arg(CLAIM_IDLE_MS)
                    .arg("0-0")
                    .arg("COUNT")
                    .arg(BATCH)
                    .query_async(&mut reads)
                    .await?;
                entries.extend(reply.claimed);
            }
            let opts = StreamReadOptions::default()
                .group(GROUP, &self.consumer)
                .count(BATCH);
            if strict.is_some() {
                // What this relay held back is pending on it: read it again first, so it
                // goes as soon as the replicas hold it, not only once claimed as idle.
                let held: StreamReadReply = reads.xread_options(&[&outbox], &["0"], &opts).await?;
                for entry in held.keys.into_iter().flat_map(|k| k.ids) {
                    if !entries.iter().any(|e| e.id == entry.id) {
                        entries.push(entry);
                    }
                }
            }
            let reply: StreamReadReply = reads.xread_options(&[&outbox], &[">"], &opts).await?;
            entries.extend(reply.keys.into_iter().flat_map(|k| k.ids));
            if let Some(strict) = strict {
                if !self
                    .store
                    .replicas_hold(strict, &outbox, entries.len())
                    .await?
                {
                    // A failover could lose these reservations, and their rows would hold
                    // units the promoted replica sells again: they stay pending, to be
                    // claimed and sent once the replicas have them.
                    metrics::counter!("flashgate_relay_held_back_total")
                        .increment(entries.len() as u64);
                    continue;
                }
            }
            if !entries.is_empty() && self.stall {
                tracing::warn!(
                    entries = entries.len(),
                    "fault injection: relay stalls before producing"
                );
                std::future::pending::<()>().await;
            }
            if !entries.is_empty() {
                moved += self.send(&event, &keys, entries).await?;
            }
        }
        metrics::counter!("flashgate_relay_orders_total").increment(moved as u64);
        Ok(moved)
    }

    async fn send(
        &self,
        event: &EventId,
        keys: &EventKeys,
        entries: Vec<StreamId>,
    ) -> anyhow::Result<usize> {
        let mut counts = Vec::with_capacity(entries.len());
        let mut orders: Vec<OrderMessage> = Vec::with_capacity(entries.len());
        for e in &entries {
            let of = orders_of(event, e);
            counts.push(of.len());
            orders.extend(of);
        }
        let messages = pack_orders(&orders, self.pack);
        let deliveries = messages.iter().map(|m| async move {
            let record = FutureRecord::to(&self.topic)
                .key(m.key.as_bytes())
                .payload(&m.payload);
            self.producer.send(record, Duration::from_secs(5)).await
        });
        let results = join_all(deliveries).await;
        let lens: Vec<usize> = messages.iter().map(|m| m.len).collect();
        let sent: Vec<bool> = results.iter().map(Result::is_ok).collect();
        let done: Vec<(&str, usize)> = entries
            .iter()
            .zip(&counts)
            .zip(delivered(&counts, &lens, &sent))
            .filter(|(_, whole)| *whole)
            .map(|((e, n), _)| (e.id.as_str(), *n))
            .collect();
        let moved = done.iter().map(|(_, n)| n).sum();
        if let Some(Err((e, _))) = results.iter().find(|r| r.is_err()) {
            self.breaker.failure(std::time::Instant::now());
            tracing::warn!(error = %e, failed = orders.len() - moved, "produce failed; entries stay pending");
        } else {
            self.breaker.success();
        }
        self.store.relayed(keys, GROUP, &done).await?;
        Ok(moved)
    }
}
