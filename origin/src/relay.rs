//! The outbox relay: moves reservations from each event's Redis stream to Kafka.
//!
//! Entries are read with a consumer group and acknowledged (XACK + XDEL) only after the
//! broker's delivery report, so nothing is acknowledged that is not in Kafka. Entries left
//! pending by a relay that died (or by a failed produce) are claimed after
//! [`CLAIM_IDLE_MS`] and sent again; duplicates are harmless downstream because order ids
//! are unique.

use crate::kafka::{client_config, OrderMessage};
use crate::store::Store;
use anyhow::Context;
use futures::future::join_all;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadOptions, StreamReadReply};
use redis::AsyncCommands;
use std::collections::HashSet;
use std::time::Duration;
use tokio::sync::watch;

const GROUP: &str = "relay";
/// Pending entries idle this long are claimed by any relay.
pub const CLAIM_IDLE_MS: u64 = 5_000;
const BATCH: usize = 512;

/// The relay task's handles.
#[derive(Clone)]
pub struct Relay {
    store: Store,
    producer: FutureProducer,
    topic: String,
    consumer: String,
}

impl Relay {
    /// An idempotent producer for `brokers` and a relay over `store`.
    pub fn new(store: Store, brokers: &str, topic: &str) -> anyhow::Result<Self> {
        let producer: FutureProducer = client_config(brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "2")
            .set("message.timeout.ms", "10000")
            .create()
            .context("cannot create Kafka producer")?;
        Ok(Self {
            store,
            producer,
            topic: topic.to_owned(),
            consumer: format!(
                "relay-{}-{}",
                std::process::id(),
                uuid::Uuid::now_v7().simple()
            ),
        })
    }

    /// Whether the broker answers a metadata request.
    pub async fn ready(&self) -> bool {
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
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut groups: HashSet<String> = HashSet::new();
        let mut last_claim = std::time::Instant::now();
        loop {
            if *shutdown.borrow() {
                break;
            }
            let claim = last_claim.elapsed() >= Duration::from_millis(CLAIM_IDLE_MS / 2);
            if claim {
                last_claim = std::time::Instant::now();
            }
            let moved = match self.pass(&mut groups, claim).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "relay pass failed");
                    0
                }
            };
            if moved == 0 {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
        let _ = self.producer.flush(Duration::from_secs(5));
        tracing::info!("relay stopped");
    }

    /// One pass over every event's outbox; returns how many entries reached Kafka.
    pub async fn pass(&self, groups: &mut HashSet<String>, claim: bool) -> anyhow::Result<usize> {
        let mut conn = self.store.conn();
        let mut moved = 0;
        for event in self.store.event_ids().await? {
            let outbox = self.store.keys(&event).outbox();
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
                    .query_async(&mut conn)
                    .await?;
                entries.extend(reply.claimed);
            }
            let opts = StreamReadOptions::default()
                .group(GROUP, &self.consumer)
                .count(BATCH);
            let reply: StreamReadReply = conn.xread_options(&[&outbox], &[">"], &opts).await?;
            entries.extend(reply.keys.into_iter().flat_map(|k| k.ids));
            if !entries.is_empty() {
                moved += self.send(&outbox, entries).await?;
            }
        }
        metrics::counter!("flashgate_relay_orders_total").increment(moved as u64);
        Ok(moved)
    }

    async fn send(&self, outbox: &str, entries: Vec<StreamId>) -> anyhow::Result<usize> {
        let field = |e: &StreamId, f: &str| e.get::<String>(f).unwrap_or_default();
        let messages: Vec<(String, OrderMessage)> = entries
            .iter()
            .map(|e| {
                let m = OrderMessage {
                    order_id: field(e, "order_id"),
                    event_id: field(e, "event_id"),
                    user_id: field(e, "user_id"),
                    reserved_at: field(e, "reserved_at").parse().unwrap_or(0),
                };
                (e.id.clone(), m)
            })
            .collect();
        let deliveries = messages.iter().map(|(_, m)| async move {
            let payload = serde_json::to_vec(m).unwrap_or_default();
            let record = FutureRecord::to(&self.topic)
                .key(m.order_id.as_bytes())
                .payload(&payload);
            self.producer.send(record, Duration::from_secs(5)).await
        });
        let results = join_all(deliveries).await;
        let delivered: Vec<&str> = messages
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.is_ok())
            .map(|((id, _), _)| id.as_str())
            .collect();
        if let Some(Err((e, _))) = results.iter().find(|r| r.is_err()) {
            tracing::warn!(error = %e, failed = results.len() - delivered.len(), "produce failed; entries stay pending");
        }
        if !delivered.is_empty() {
            let mut conn = self.store.conn();
            redis::pipe()
                .atomic()
                .xack(outbox, GROUP, &delivered)
                .ignore()
                .xdel(outbox, &delivered)
                .ignore()
                .query_async::<()>(&mut conn)
                .await?;
        }
        Ok(delivered.len())
    }
}
