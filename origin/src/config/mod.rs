//! Typed, layered configuration: defaults < TOML file (`FLASHGATE_CONFIG`) < `FLASHGATE_*`
//! environment variables. Secrets are wrapped so they never print.

mod rules;
mod settings;
mod strength;

pub use settings::{
    AdaptiveSettings, ConsumerSettings, DbSettings, Faults, KafkaSettings, ProtectSettings,
    PurchaseSettings, RedisSettings, Secrets, Settings,
};

use anyhow::{bail, Context};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use flashgate_core::keyring::KeyRing;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

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
        rules::check(&settings)?;
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
