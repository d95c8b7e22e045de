//! Typed, layered configuration: defaults < TOML file (`FLASHGATE_CONFIG`) < `FLASHGATE_*`
//! environment variables. Secrets are wrapped so they never print.

mod strength;

use anyhow::{bail, Context};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use flashgate_core::keyring::KeyRing;
use secrecy::{ExposeSecret, SecretString};
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

#[derive(Serialize)]
struct Defaults {
    listen: &'static str,
    environment: &'static str,
    redis_url: &'static str,
    redis_cluster: bool,
    mysql_url: &'static str,
    kafka_brokers: &'static str,
    orders_topic: &'static str,
    topic_partitions: i32,
    topic_replication: i32,
    topic_min_insync_replicas: i32,
    key_prefix: &'static str,
    user_limit: u32,
    user_window_ms: u64,
    redis_timeout_ms: u64,
    redis_wait_replicas: u32,
    redis_wait_timeout_ms: u64,
    redis_wait_strict: bool,
    reserve_batch: usize,
    reserve_inflight: usize,
    event_cache_ms: u64,
    admission_rps: u32,
    adaptive: AdaptiveSettings,
    sold_out_cache_ms: u64,
    breaker_failures: u32,
    breaker_cooldown_ms: u64,
    max_outbox: u64,
    header_timeout_ms: u64,
    body_timeout_ms: u64,
    max_connections: usize,
    relay_pack: usize,
    replay_window_ms: u64,
    faults: Faults,
    consumer: ConsumerSettings,
}

const MIN_SECRET_LEN: usize = 16;
/// Settings also read under the names the contract gives them (`.dev/env`), so that
/// `set -a; . .dev/env; set +a; flashgate users …` works; `FLASHGATE_*` wins.
pub const STACK_VARS: [&str; 7] = [
    "AUTH_SECRET",
    "EDGE_SECRET",
    "ADMIN_TOKEN",
    "REDIS_URL",
    "MYSQL_URL",
    "KAFKA_BROKERS",
    "ORDERS_TOPIC",
];
/// The longest a reservation may wait for replicas: with the script's own budget (1 s),
/// inside the Redis connection's response timeout (2 s).
const MAX_WAIT_TIMEOUT_MS: u64 = 500;
/// Where `./dev up` writes the stack's settings, relative to the checkout (or
/// `$FLASHGATE_DEV_DIR/env`, as `./dev` has it): the dev-stack commands (`flashgate users`
/// and `flashgate event`) run there read [`STACK_VARS`] and `ORIGIN_URL` from it when the
/// environment does not set them. The services (`serve`, `consume`, `migrate`) never do.
pub const DEV_ENV: &str = ".dev/env";

/// The names and values of the dev stack's settings file ([`DEV_ENV`]); none without it.
pub fn dev_env() -> std::collections::HashMap<String, String> {
    let path = std::env::var("FLASHGATE_DEV_DIR")
        .map(|dir| format!("{dir}/env"))
        .unwrap_or_else(|_| DEV_ENV.to_owned());
    parse_env_file(&std::fs::read_to_string(path).unwrap_or_default())
}

/// The `KEY=value` lines of a file such as [`DEV_ENV`].
fn parse_env_file(text: &str) -> std::collections::HashMap<String, String> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| line.trim().split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// The reserve script hands a call's orders to one HSET (Lua's stack holds a few
/// thousand values).
const MAX_RESERVE_BATCH: usize = 1024;

/// Every setting that has a default, with it.
fn defaults() -> Defaults {
    Defaults {
        listen: "127.0.0.1:8080",
        environment: flashgate_core::sign::DEFAULT_ENVIRONMENT,
        redis_url: "redis://127.0.0.1:6379",
        redis_cluster: false,
        mysql_url: "mysql://root@127.0.0.1:3306/flashgate",
        kafka_brokers: "127.0.0.1:9092",
        orders_topic: "flashgate.orders",
        topic_partitions: 3,
        topic_replication: 0,
        topic_min_insync_replicas: 0,
        key_prefix: "fg:",
        user_limit: 1,
        user_window_ms: 1000,
        redis_timeout_ms: 500,
        redis_wait_replicas: 0,
        redis_wait_timeout_ms: 100,
        redis_wait_strict: false,
        reserve_batch: 64,
        reserve_inflight: 2,
        event_cache_ms: 500,
        admission_rps: 20_000,
        adaptive: AdaptiveSettings::default(),
        sold_out_cache_ms: 1000,
        breaker_failures: 5,
        breaker_cooldown_ms: 1000,
        max_outbox: 100_000,
        header_timeout_ms: 5_000,
        body_timeout_ms: 5_000,
        max_connections: 10_000,
        relay_pack: crate::kafka::DEFAULT_PACK,
        replay_window_ms: 2 * flashgate_core::sign::MAX_SKEW_MS as u64 + 5_000,
        faults: Faults::default(),
        consumer: ConsumerSettings {
            group: "flashgate-orders".into(),
            batch_size: 500,
            flush_ms: 50,
            max_rate: 5000,
            dead_letter_topic: String::new(),
            stall_rejoin_ms: 20_000,
            listen: None,
        },
    }
}

impl Settings {
    /// Loads defaults, then the stack's own names ([`STACK_VARS`], as in `.dev/env`; from
    /// the dev stack's file too when `from_dev_stack`, see [`DEV_ENV`]), then the file named
    /// by `FLASHGATE_CONFIG`, then `FLASHGATE_*`.
    pub fn load(from_dev_stack: bool) -> anyhow::Result<Self> {
        if let Ok(options) = std::env::var(crate::kafka::OPTIONS_VAR) {
            crate::kafka::parse_options(&options)
                .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
        }
        // The dev stack's file, when run where `./dev up` wrote it, below the environment.
        let from_file = if from_dev_stack {
            dev_env()
        } else {
            Default::default()
        };
        let mut stack = Figment::new();
        for name in STACK_VARS {
            let value = std::env::var(name)
                .ok()
                .or_else(|| from_file.get(name).cloned());
            if let Some(value) = value {
                // In the default profile: a plain (key, value) would be global and win.
                stack = stack.merge(Serialized::default(&name.to_lowercase(), value));
            }
        }
        Self::from_layers(
            stack,
            Figment::from(Env::prefixed("FLASHGATE_").split("__")),
        )
    }

    /// Loads from explicit layers on top of the defaults and the `FLASHGATE_CONFIG` file
    /// (tests).
    pub fn from_figment(overrides: Figment) -> anyhow::Result<Self> {
        Self::from_layers(Figment::new(), overrides)
    }

    /// Defaults < `below_file` < the `FLASHGATE_CONFIG` file < `overrides`.
    fn from_layers(below_file: Figment, overrides: Figment) -> anyhow::Result<Self> {
        let defaults = defaults();
        let mut figment = Figment::from(Serialized::defaults(defaults)).merge(below_file);
        if let Ok(path) = std::env::var("FLASHGATE_CONFIG") {
            figment = figment.merge(Toml::file_exact(path));
        }
        let settings: Settings = figment
            .merge(overrides)
            .extract()
            .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
        if !flashgate_core::sign::valid_environment(&settings.environment) {
            bail!(
                "configuration: environment must be 1 to {} characters of a-z, 0-9 and -",
                flashgate_core::sign::MAX_ENVIRONMENT_LEN
            );
        }
        if settings.purchase.user_limit == 0 || settings.purchase.user_window_ms == 0 {
            bail!("configuration: user_limit and user_window_ms must be positive");
        }
        if settings.purchase.reserve_batch == 0 || settings.purchase.reserve_inflight == 0 {
            bail!("configuration: reserve_batch and reserve_inflight must be positive");
        }
        if settings.purchase.reserve_batch > MAX_RESERVE_BATCH {
            bail!("configuration: reserve_batch must be at most {MAX_RESERVE_BATCH}");
        }
        if settings.kafka.relay_pack == 0 || settings.kafka.relay_pack > crate::kafka::MAX_PACK {
            bail!(
                "configuration: relay_pack must be between 1 and {}",
                crate::kafka::MAX_PACK
            );
        }
        if settings.redis.wait_replicas > 0
            && !(1..=MAX_WAIT_TIMEOUT_MS).contains(&settings.redis.wait_timeout_ms)
        {
            bail!(
                "configuration: redis_wait_timeout_ms must be between 1 and \
                 {MAX_WAIT_TIMEOUT_MS} (a reservation's whole call has 2 s)"
            );
        }
        if settings.redis.wait_strict && settings.redis.wait_replicas == 0 {
            bail!("configuration: redis_wait_strict needs redis_wait_replicas of 1 or more");
        }
        if settings.redis.key_prefix.contains(['{', '}']) {
            // The event's `{E}` must be the first hash tag of each of its keys, or a
            // Redis Cluster would not keep them in one slot.
            bail!("configuration: key_prefix must not contain '{{' or '}}'");
        }
        if settings.kafka.topic_replication < 0 || settings.kafka.topic_min_insync_replicas < 0 {
            bail!("configuration: topic_replication and topic_min_insync_replicas must be 0 (automatic) or more");
        }
        // A signature stays acceptable for the skew either side of now: one forgotten
        // sooner could be replayed.
        let min_replay = 2 * flashgate_core::sign::MAX_SKEW_MS as u64;
        if settings.purchase.replay_window_ms < min_replay {
            bail!("configuration: replay_window_ms must be at least {min_replay} (twice the signature's allowed skew)");
        }
        let p = &settings.protect;
        if p.header_timeout_ms == 0 || p.body_timeout_ms == 0 || p.max_connections == 0 {
            bail!("configuration: header_timeout_ms, body_timeout_ms and max_connections must be positive");
        }
        if settings.consumer.batch_size == 0 {
            bail!("configuration: consumer.batch_size must be positive");
        }
        Ok(settings)
    }

    /// The secret `name`, or a clear error naming the variable that sets it: unset, too
    /// short, an example from the docs, or too easy to guess.
    pub fn secret<'a>(
        &self,
        field: &'a Option<SecretString>,
        name: &str,
    ) -> anyhow::Result<&'a [u8]> {
        let value = field.as_ref().with_context(|| {
            format!(
                "configuration: FLASHGATE_{0} (or {0}) is not set",
                name.to_uppercase()
            )
        })?;
        fit_secret(value, name)
    }

    /// The edge secrets: `edge_secret`, and `edge_secret_previous` during a rotation, each
    /// held to the rules of [`Settings::secret`].
    pub fn edge_keys(&self) -> anyhow::Result<KeyRing> {
        let current = self.secret(&self.secrets.edge_secret, "edge_secret")?;
        let previous = self
            .secrets
            .edge_secret_previous
            .as_ref()
            .map(|p| fit_secret(p, "edge_secret_previous"))
            .transpose()?;
        Ok(KeyRing::new(current, previous))
    }
}

/// `secret`'s bytes when it is fit to guard a sale; else an error naming `name`'s variable.
fn fit_secret<'a>(secret: &'a SecretString, name: &str) -> anyhow::Result<&'a [u8]> {
    let value = secret.expose_secret().as_bytes();
    if value.len() < MIN_SECRET_LEN {
        bail!(
            "configuration: FLASHGATE_{} must be at least {MIN_SECRET_LEN} characters",
            name.to_uppercase()
        );
    }
    if let Some(why) = strength::weakness(value) {
        bail!("configuration: FLASHGATE_{} {why}", name.to_uppercase());
    }
    Ok(value)
}

#[cfg(test)]
mod tests;
