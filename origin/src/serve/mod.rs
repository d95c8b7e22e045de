//! `flashgate serve`: the purchase API behind the edge, with the outbox relay.
//!
//! # Layout
//!
//! - [`Application`]: built from settings and bound (port 0 in tests), run until shutdown.
//! - `state`: what the handlers share; `sold_out`: the memo that answers a sold-out storm.
//! - `listen`: the server loop: header timeout, connection cap, graceful drain.
//! - `event_cache`: events as last read, bounded against made-up ids.
//! - `router`: the routes, the fallbacks and the request counter.
//! - `extract`: the edge's signed request and the admin token, as extractors.
//! - `shopper`, `admin`, `health`: the handlers, one file per group.
//! - `error`: the one error type; every answer comes from `flashgate_core::wire`.
//! - `reserver`: coalesces concurrent attempts into few reserve calls.
//! - `protect`: circuit breaker and adaptive concurrency limit.
//! - `relay`: the outbox relay (Redis stream → Kafka); `outbox_entry`: what an entry holds.

mod admin;
mod error;
mod event_cache;
mod extract;
mod health;
mod listen;
mod outbox_entry;
pub mod protect;
mod relay;
mod reserver;
mod router;
mod shopper;
mod sold_out;
mod state;

pub use state::AppState;

use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::redis::Store;
use crate::shutdown::Shutdown;
use crate::telemetry::Counters;
use anyhow::Context;
use governor::{Quota, RateLimiter};
use metrics::Label;
use protect::{AdaptiveLimit, Breaker};
use relay::Relay;
use reserver::Reserver;
use secrecy::ExposeSecret;
use std::num::NonZeroU32;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// A bound, ready-to-run origin.
pub struct Application {
    listener: TcpListener,
    state: Arc<AppState>,
    relay: Relay,
}

impl Application {
    /// Checks the configuration and dependencies and binds the listen address.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// [`Application::build`] with an injected clock.
    pub async fn build_with_clock(
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let edge_keys = settings.edge_keys()?;
        let admin_token = settings
            .secret(&settings.secrets.admin_token, "admin_token")?
            .to_vec();
        let redis_url = crate::telemetry::redact_urls(settings.redis.url.expose_secret());
        let store = Store::open(&settings.redis)
            .await?
            .wait_for_replicas(
                settings.redis.wait_replicas,
                settings.redis.wait_timeout_ms,
                settings.redis.wait_strict,
                settings.purchase.reserve_inflight,
            )
            .await
            .with_context(|| format!("cannot set up waiting for replicas of {redis_url}"))?;
        store
            .ping()
            .await
            .with_context(|| format!("cannot reach Redis at {redis_url}"))?;
        // Refuses a Redis that could oversell or lose orders; says what else is unsafe
        // (once for all of a cluster's masters that share it).
        let mut warnings = std::collections::BTreeSet::new();
        for node in store.durability().await {
            warnings.extend(
                node.verdict()
                    .map_err(|refusal| anyhow::anyhow!("{refusal} (Redis at {redis_url})"))?,
            );
        }
        for warning in warnings {
            tracing::warn!(redis = %redis_url, "{warning}");
        }
        if let Err(e) = crate::kafka::ensure_topic_with(
            &settings.kafka.brokers,
            &settings.kafka.orders_topic,
            &settings.kafka.orders_topic_spec(),
        )
        .await
        {
            // Reservations wait in the outbox until Kafka answers; serving can start.
            tracing::warn!(error = %format!("{e:#}"), "kafka not ready at start");
        }
        let outbox_backlog = Arc::new(AtomicU64::new(0));
        let relay = Relay::new(store.clone(), &settings, outbox_backlog.clone())?;
        let bucket = NonZeroU32::new(settings.protect.admission_rps)
            .map(|rps| RateLimiter::direct(Quota::per_second(rps)));
        let redis_breaker = Arc::new(Breaker::new(
            "redis",
            settings.protect.breaker_failures,
            Duration::from_millis(settings.protect.breaker_cooldown_ms),
        ));
        let adaptive = AdaptiveLimit::new(settings.adaptive);
        let reserver = Reserver::start(
            store.clone(),
            settings.purchase.reserve_batch,
            settings.purchase.reserve_inflight,
        );
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        let sold_out =
            sold_out::SoldOutMemo::new(Duration::from_millis(settings.purchase.sold_out_cache_ms));
        let state = Arc::new(AppState {
            settings,
            store,
            edge_keys,
            admin_token,
            clock,
            events: Default::default(),
            metrics: crate::telemetry::metrics(),
            purchases: Counters::new("flashgate_purchases_total", |outcome| {
                vec![Label::new("outcome", *outcome)]
            }),
            redis_breaker,
            redis_probe: Arc::default(),
            bucket,
            adaptive,
            reserver,
            sold_out,
            outbox_backlog,
            relay: relay.clone(),
        });
        crate::telemetry::start_at_zero(crate::telemetry::SERVE_COUNTERS);
        Ok(Self {
            listener,
            state,
            relay,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Shared state (tests read the limiter and breakers).
    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// Serves until `shutdown` fires, drains in-flight requests, then stops the relay
    /// after it flushed what it holds (reservations made while draining are relayed too).
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let (stop_tasks, tasks) = crate::shutdown::channel();
        let clock = tokio::spawn(sync_redis_clock(self.state.store.clone(), tasks.clone()));
        let relay = tokio::spawn(self.relay.run(tasks));
        tracing::info!(
            port = self.listener.local_addr()?.port(),
            "origin listening"
        );
        let protect = &self.state.settings.protect;
        let limits = listen::ConnLimits {
            header_timeout: Duration::from_millis(protect.header_timeout_ms),
            max_connections: protect.max_connections,
        };
        listen::serve(self.listener, router::router(self.state), limits, shutdown)
            .await
            .context("http server failed")?;
        stop_tasks.fire();
        let _ = relay.await;
        clock.abort();
        Ok(())
    }
}

/// Measures Redis's clock every [`crate::redis::CLOCK_SYNC`] (reserve calls carry a
/// deadline on it) until `stop`; a failed reading keeps the last one.
async fn sync_redis_clock(store: Store, mut stop: Shutdown) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(crate::redis::CLOCK_SYNC) => {}
            _ = stop.recv() => return,
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), store.sync_clock()).await;
    }
}
