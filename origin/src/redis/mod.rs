//! Redis: the hot state of every event. All keys of one event share the hash tag `{E}`,
//! so each script and pipeline touches a single slot and the design runs unchanged on
//! Redis Cluster; the event index (`events`) is the one key outside them, and is only
//! ever touched alone.
//!
//! # Layout
//!
//! - `conn`: one server or a Redis Cluster behind one connection type.
//! - `keys`: the keys of one event.
//! - `buckets`: a hot event's stock buckets (`core::stock_buckets`): their keys, the
//!   purchase over them.
//! - `scripts`: the atomic scripts (`lua/`): reserve, confirm, compensate, put an event.
//! - `reads`: what the API and the admin read: an event, a buyer's order, counters.
//! - `outbox`: the outboxes, what the relay took from them and what waits in them.
//! - `replicas`: reserve calls that wait for replicas (`WAIT`), and strict mode.
//! - `repair`: an event's view restored from the orders table (`reconcile --repair`).
//! - `clock_sync`: Redis's clock against ours, for the reserve call's deadline.
//! - `durability`: Redis settings that could oversell or lose orders, refused or named.

mod buckets;
mod clock_sync;
mod conn;
mod durability;
mod keys;
mod outbox;
mod reads;
mod repair;
mod replicas;
mod scripts;

pub use buckets::{BucketPurchase, Split, SPLIT_BUYERS_VERSION};
pub use clock_sync::CLOCK_SYNC;
pub use conn::Conn;
pub use durability::Durability;
pub use keys::EventKeys;
pub use reads::{EventMeta, Stats};
pub use repair::{Counted, Repaired};
pub use scripts::{Attempt, EndOutcome, PutOutcome, Refused, Reservation, ReserveRules};

use anyhow::Context;
use clock_sync::NOT_MEASURED;
use conn::Client;
use flashgate_core::ids::EventId;
use redis::Script;
use replicas::Replicas;
use std::sync::atomic::{AtomicBool, AtomicI64};
use std::sync::Arc;

/// Redis access for one key prefix.
#[derive(Clone)]
pub struct Store {
    conn: Arc<std::sync::RwLock<Conn>>,
    /// Redis's clock minus [`mono_ms`], from the last [`Store::sync_clock`]
    /// ([`NOT_MEASURED`] before the first).
    clock_offset: Arc<AtomicI64>,
    /// A re-measure after a late call is under way (one at a time).
    clock_resync: Arc<AtomicBool>,
    client: Client,
    prefix: Arc<str>,
    reserve: Arc<Script>,
    confirm: Arc<Script>,
    confirm_many: Arc<Script>,
    compensate: Arc<Script>,
    put_event: Arc<Script>,
    end_event: Arc<Script>,
    pause_event: Arc<Script>,
    spill: Arc<Script>,
    settle: Arc<Script>,
    give_back: Arc<Script>,
    relayed: Arc<Script>,
    /// Waiting for replicas after each reservation ([`Store::wait_for_replicas`]); none
    /// by default.
    replicas: Option<Arc<Replicas>>,
}

impl Store {
    /// Connects as `settings` say and checks Redis answers.
    pub async fn open(settings: &crate::config::RedisSettings) -> anyhow::Result<Self> {
        use secrecy::ExposeSecret;
        Self::connect_to(
            settings.url.expose_secret(),
            &settings.key_prefix,
            settings.cluster,
        )
        .await
    }

    /// Connects and checks the server answers: a Redis Cluster when `url` lists several
    /// nodes (comma-separated), else one server.
    pub async fn connect(url: &str, prefix: &str) -> anyhow::Result<Self> {
        Self::connect_to(url, prefix, false).await
    }

    /// Connects to the server at `url`, or to the cluster of the nodes it lists when
    /// there are several or `cluster` is set.
    async fn connect_to(url: &str, prefix: &str, cluster: bool) -> anyhow::Result<Self> {
        let client = Client::open(url, cluster);
        let url = crate::telemetry::redact_urls(url);
        let client = client.with_context(|| format!("invalid Redis URL {url}"))?;
        let conn = tokio::time::timeout(std::time::Duration::from_secs(3), client.connect())
            .await
            .map_err(|_| anyhow::anyhow!("cannot reach Redis at {url}: timed out"))?
            .with_context(|| format!("cannot reach Redis at {url}"))?;
        let store = Self {
            conn: Arc::new(std::sync::RwLock::new(conn)),
            clock_offset: Arc::new(AtomicI64::new(NOT_MEASURED)),
            clock_resync: Arc::default(),
            client,
            prefix: prefix.into(),
            reserve: Arc::new(Script::new(include_str!("lua/reserve.lua"))),
            confirm: Arc::new(Script::new(include_str!("lua/confirm.lua"))),
            confirm_many: Arc::new(Script::new(include_str!("lua/confirm_many.lua"))),
            compensate: Arc::new(Script::new(include_str!("lua/compensate.lua"))),
            put_event: Arc::new(Script::new(include_str!("lua/put_event.lua"))),
            end_event: Arc::new(Script::new(include_str!("lua/end_event.lua"))),
            pause_event: Arc::new(Script::new(include_str!("lua/pause_event.lua"))),
            spill: Arc::new(Script::new(include_str!("lua/spill.lua"))),
            settle: Arc::new(Script::new(include_str!("lua/settle.lua"))),
            give_back: Arc::new(Script::new(include_str!("lua/give_back.lua"))),
            relayed: Arc::new(Script::new(include_str!("lua/relayed.lua"))),
            replicas: None,
        };
        // The first reading is used whatever its round trip; two more may refine it.
        for _ in 0..3 {
            store
                .sync_clock()
                .await
                .with_context(|| format!("cannot read the clock of Redis at {url}"))?;
        }
        Ok(store)
    }

    /// The keys of event `id`.
    pub fn keys(&self, id: &EventId) -> EventKeys {
        EventKeys {
            base: format!("{}{{{id}}}", self.prefix),
        }
    }

    fn events_key(&self) -> String {
        format!("{}events", self.prefix)
    }

    /// A connection handle (cheap clone, reconnects by itself).
    pub fn conn(&self) -> Conn {
        crate::locks::read(&self.conn).clone()
    }

    /// Opens a fresh connection and, once it answers PING, uses it from now on: the way
    /// back when the current manager's connection does not answer (the circuit's probe),
    /// without waiting for its own reconnect to notice.
    pub async fn reconnect(&self) -> redis::RedisResult<()> {
        let mut fresh = self.client.connect().await?;
        redis::cmd("PING").query_async::<()>(&mut fresh).await?;
        *crate::locks::write(&self.conn) = fresh;
        if let Some(replicas) = &self.replicas {
            // The reserve calls open fresh connections as they need them.
            crate::locks::lock(&replicas.idle).clear();
        }
        // It may be another server behind the same address (a failover), with its clock.
        self.sync_clock().await
    }

    /// `PING`.
    pub async fn ping(&self) -> redis::RedisResult<()> {
        redis::cmd("PING").query_async(&mut self.conn()).await
    }

    /// Whether Redis answers: a PING on the current connection (within 1 s), else a fresh
    /// connection ([`Store::reconnect`], within 5 s). A healthy connection is kept.
    pub async fn answers_or_reconnect(&self) -> bool {
        let answers = tokio::time::timeout(std::time::Duration::from_secs(1), self.ping())
            .await
            .is_ok_and(|r| r.is_ok());
        answers
            || tokio::time::timeout(std::time::Duration::from_secs(5), self.reconnect())
                .await
                .is_ok_and(|r| r.is_ok())
    }
}
