//! The configuration's shape: every setting the origin's commands read, grouped by concern.

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// Everything the origin's commands read, grouped by concern. The keys stay flat
/// (`redis_url`, `FLASHGATE_REDIS_URL`): the groups are the code's, not the operator's.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// HTTP listen address of `serve`.
    pub listen: SocketAddr,
    /// The deployment this origin serves (`dev`, `staging`, `production`, …): the edge
    /// signs it into each request, and a request signed for another is refused.
    pub environment: String,
    /// Redis: where, its key prefix, deadlines and replica waits.
    #[serde(flatten)]
    pub redis: RedisSettings,
    /// MariaDB: where.
    #[serde(flatten)]
    pub db: DbSettings,
    /// Kafka: where, the orders topic and how the relay packs it.
    #[serde(flatten)]
    pub kafka: KafkaSettings,
    /// The three secrets.
    #[serde(flatten)]
    pub secrets: Secrets,
    /// The rules of a purchase and the reserve calls that decide it.
    #[serde(flatten)]
    pub purchase: PurchaseSettings,
    /// What keeps the process and its dependencies calm: bucket, breakers, outbox cap.
    #[serde(flatten)]
    pub protect: ProtectSettings,
    /// Latency-driven concurrency limit in front of the reserve call.
    pub adaptive: AdaptiveSettings,
    /// Fault injection for tests of crash recovery; all off by default.
    pub faults: Faults,
    /// Order consumer settings.
    pub consumer: ConsumerSettings,
}

/// Redis settings.
#[derive(Debug, Clone, Deserialize)]
pub struct RedisSettings {
    /// Redis URL (may hold a password); several, comma-separated, are the seed nodes of
    /// a Redis Cluster.
    #[serde(rename = "redis_url")]
    pub url: SecretString,
    /// The URL is a Redis Cluster's node even if it is the only one listed.
    #[serde(rename = "redis_cluster")]
    pub cluster: bool,
    /// Prefix of every Redis key (tests use one per test).
    pub key_prefix: String,
    /// Deadline of one Redis call on the request path, milliseconds.
    #[serde(rename = "redis_timeout_ms")]
    pub timeout_ms: u64,
    /// Redis replicas that must hold a reservation before it is answered (`WAIT`); 0
    /// answers once the primary has it.
    #[serde(rename = "redis_wait_replicas")]
    pub wait_replicas: u32,
    /// How long a reservation waits for those replicas at most, milliseconds.
    #[serde(rename = "redis_wait_timeout_ms")]
    pub wait_timeout_ms: u64,
    /// Strict mode: a reservation no replica acknowledged in time is answered 503 busy
    /// instead of 202, and the relay sends only what the replicas hold, so a failover to
    /// one of them loses no 202 (docs/operations.md).
    #[serde(rename = "redis_wait_strict")]
    pub wait_strict: bool,
}

/// MariaDB settings.
#[derive(Debug, Clone, Deserialize)]
pub struct DbSettings {
    /// MySQL/MariaDB URL (may hold a password).
    #[serde(rename = "mysql_url")]
    pub url: SecretString,
}

/// Kafka settings.
#[derive(Debug, Clone, Deserialize)]
pub struct KafkaSettings {
    /// Kafka bootstrap servers.
    #[serde(rename = "kafka_brokers")]
    pub brokers: String,
    /// Topic that carries orders from the relay to the consumer.
    pub orders_topic: String,
    /// Partitions of the orders topic when it is created.
    pub topic_partitions: i32,
    /// Replicas of the orders and dead-letter topics when created; 0 = the cluster's
    /// brokers, at most 3.
    pub topic_replication: i32,
    /// Their `min.insync.replicas` when created; 0 = one less than the replicas.
    pub topic_min_insync_replicas: i32,
    /// Orders the relay packs into one Kafka message (1 = one order object per message).
    pub relay_pack: usize,
}

impl KafkaSettings {
    /// The orders topic as it is created: `topic_partitions`, and the replication.
    pub fn orders_topic_spec(&self) -> crate::kafka::TopicSpec {
        self.topic_spec(self.topic_partitions)
    }

    /// A topic of `partitions` with the configured replication.
    pub fn topic_spec(&self, partitions: i32) -> crate::kafka::TopicSpec {
        crate::kafka::TopicSpec {
            partitions,
            replication: crate::kafka::Replication {
                factor: self.topic_replication,
                min_insync: self.topic_min_insync_replicas,
            },
        }
    }
}

/// The secrets; each is checked when a command needs it ([`Settings::secret`]).
#[derive(Debug, Clone, Deserialize)]
pub struct Secrets {
    /// HS256 secret of shopper tokens.
    pub auth_secret: Option<SecretString>,
    /// Shared secret of the edge signature.
    pub edge_secret: Option<SecretString>,
    /// The edge secret being rotated out: signatures under it are still accepted.
    pub edge_secret_previous: Option<SecretString>,
    /// Bearer token of the admin API.
    pub admin_token: Option<SecretString>,
}

/// The rules of a purchase, and the reserve calls that decide it.
#[derive(Debug, Clone, Deserialize)]
pub struct PurchaseSettings {
    /// Purchase attempts one user may make per window.
    pub user_limit: u32,
    /// Per-user window, milliseconds.
    pub user_window_ms: u64,
    /// How long a used edge signature is remembered (replays get 401), milliseconds.
    pub replay_window_ms: u64,
    /// Most purchase attempts decided in one reserve call (see `serve::reserver`); 1 turns
    /// coalescing off.
    pub reserve_batch: usize,
    /// Reserve calls in flight at once; attempts arriving meanwhile join the next call.
    pub reserve_inflight: usize,
    /// How long event info is cached in the process, milliseconds.
    pub event_cache_ms: u64,
    /// How long a sold_out from Redis is answered from memory, milliseconds.
    pub sold_out_cache_ms: u64,
}

/// The process's protections.
#[derive(Debug, Clone, Deserialize)]
pub struct ProtectSettings {
    /// Purchases admitted per second by this process (fixed bucket); 0 turns it off.
    pub admission_rps: u32,
    /// Consecutive failures that open a dependency's circuit.
    pub breaker_failures: u32,
    /// How long an open circuit refuses calls before a probe, milliseconds.
    pub breaker_cooldown_ms: u64,
    /// Reservations waiting for Kafka above which purchases answer 503 busy.
    pub max_outbox: u64,
    /// How long a connection may take to send a request's headers, milliseconds; then
    /// it is closed.
    pub header_timeout_ms: u64,
    /// How long a request's body may take to arrive once its headers did, milliseconds;
    /// then 408.
    pub body_timeout_ms: u64,
    /// Connections served at once; more wait in the listen queue.
    pub max_connections: usize,
}

/// Fault injection switches (tests only).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Faults {
    /// The relay claims outbox entries and then stops before producing them, as if the
    /// process died between the reservation and the produce.
    pub relay_stall: bool,
}

/// Settings of `flashgate consume`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsumerSettings {
    /// Kafka consumer group.
    pub group: String,
    /// Most orders written in one batch.
    pub batch_size: usize,
    /// Longest wait for a batch to fill, milliseconds.
    pub flush_ms: u64,
    /// Most orders written per second; 0 means no cap.
    pub max_rate: u32,
    /// Where poison messages go; empty means `<orders_topic>.dlq`.
    pub dead_letter_topic: String,
    /// A partition with a backlog whose committed offset has not moved for this long, and
    /// that is not this consumer's, makes it leave and rejoin the group for a fresh
    /// assignment, milliseconds; 0 turns the check off. See `consumer::watch_stalls`.
    pub stall_rejoin_ms: u64,
    /// Where `flashgate consume` serves `/healthz` and `/metrics`; none when unset.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
}

/// Settings of the adaptive concurrency limit.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct AdaptiveSettings {
    /// Off: only the fixed bucket protects the process.
    pub enabled: bool,
    /// Limit at start.
    pub initial: usize,
    /// Never below this many in flight.
    pub min: usize,
    /// Never above this many in flight.
    pub max: usize,
    /// How much slower than the long-term latency a sample may be before the limit shrinks.
    pub tolerance: f64,
    /// The long-term latency counts as at least this, milliseconds: below `tolerance` times
    /// it, nothing is a slowdown. A baseline of a fraction of a millisecond would make a
    /// busy but healthy machine's queueing (1–2 ms) look like a failing Redis and answer
    /// 429 to purchases the process had time for.
    pub latency_floor_ms: f64,
}

impl Default for AdaptiveSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            initial: 64,
            min: 4,
            max: 1024,
            tolerance: 1.5,
            latency_floor_ms: 2.0,
        }
    }
}
