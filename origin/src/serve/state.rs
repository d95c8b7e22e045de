//! What the handlers share: settings, Redis behind its breaker, the protections.

use super::error::RedisFailed;
use super::event_cache::EventCache;
use super::protect::{AdaptiveLimit, Breaker};
use super::relay::Relay;
use super::reserver::Reserver;
use super::sold_out::SoldOutMemo;
use crate::clock::Clock;
use crate::config::Settings;
use crate::redis::Store;
use crate::telemetry::Counters;
use flashgate_core::ids::EventId;
use flashgate_core::keyring::KeyRing;
use governor::DefaultDirectRateLimiter;
use metrics_exporter_prometheus::PrometheusHandle;
use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Shared state of the HTTP handlers.
pub struct AppState {
    /// Settings the process started with.
    pub(crate) settings: Settings,
    /// Redis.
    pub(crate) store: Store,
    /// Edge signature secrets (the current one, and the previous during a rotation).
    pub(crate) edge_keys: KeyRing,
    /// Admin bearer token.
    pub(crate) admin_token: Vec<u8>,
    /// Time source.
    pub(crate) clock: Arc<dyn Clock>,
    /// Event info cached for `event_cache_ms`.
    pub(crate) events: std::sync::Mutex<EventCache>,
    /// Prometheus handle.
    pub(crate) metrics: PrometheusHandle,
    /// `flashgate_purchases_total{outcome}`.
    pub(crate) purchases: Counters<&'static str>,
    /// Circuit breaker around Redis.
    pub(crate) redis_breaker: Arc<Breaker>,
    /// Whether a background probe of Redis is running (see [`AppState::redis`]).
    pub(crate) redis_probe: Arc<std::sync::atomic::AtomicBool>,
    /// The fixed purchase bucket of this process (`admission_rps`; `None` when off).
    pub(crate) bucket: Option<DefaultDirectRateLimiter>,
    /// The latency-driven concurrency limit in front of the reserve call.
    pub(crate) adaptive: AdaptiveLimit,
    /// Coalesces concurrent reserve attempts into few script calls.
    pub(crate) reserver: Reserver,
    /// Events recently seen sold out in Redis.
    pub(crate) sold_out: SoldOutMemo,
    /// Reservations waiting for Kafka (kept current by the relay).
    pub(crate) outbox_backlog: Arc<AtomicU64>,
    pub(crate) relay: Relay,
}

impl AppState {
    /// The event cache (held only between awaits).
    pub(crate) fn events(&self) -> std::sync::MutexGuard<'_, EventCache> {
        crate::locks::lock(&self.events)
    }

    /// Runs a Redis call through the breaker and under the request-path deadline.
    pub(crate) async fn redis<T>(
        &self,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, RedisFailed> {
        let deadline = Duration::from_millis(self.settings.redis.timeout_ms);
        self.redis_guarded(async move {
            tokio::time::timeout(deadline, call)
                .await
                .unwrap_or_else(|_| {
                    Err(redis::RedisError::from((
                        redis::ErrorKind::IoError,
                        "redis call timed out",
                    )))
                })
        })
        .await
    }

    /// Runs a Redis call that keeps its own deadline (the reserve call: see `serve::reserver`)
    /// through the breaker.
    pub(crate) async fn redis_guarded<T>(
        &self,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, RedisFailed> {
        if !self.redis_breaker.allow(Instant::now()) {
            self.probe_redis();
            return Err(RedisFailed(anyhow::anyhow!("redis circuit open")));
        }
        let result = call.await.map_err(|e| RedisFailed(e.into()));
        match &result {
            Ok(_) => self.redis_breaker.success(),
            Err(_) => self.redis_breaker.failure(Instant::now()),
        }
        result
    }

    /// While the circuit is open, one background probe at a time, with no request deadline:
    /// a PING on the current connection, else a fresh connection; when Redis answers, the
    /// circuit closes.
    fn probe_redis(&self) {
        use std::sync::atomic::Ordering;
        if self.redis_probe.swap(true, Ordering::AcqRel) {
            return;
        }
        let (store, breaker, flag) = (
            self.store.clone(),
            self.redis_breaker.clone(),
            self.redis_probe.clone(),
        );
        tokio::spawn(async move {
            if store.answers_or_reconnect().await {
                breaker.success();
            }
            flag.store(false, Ordering::Release);
        });
    }

    /// Whether Kafka answers.
    pub(crate) async fn relay_ready(&self) -> bool {
        self.relay.ready().await
    }

    /// The adaptive concurrency limit now (tests watch it shrink).
    pub fn adaptive_limit(&self) -> usize {
        self.adaptive.limit()
    }

    /// Events held in the event cache (bounded; tests flood it with unknown ids).
    pub fn cached_events(&self) -> usize {
        self.events().len()
    }

    /// Whether `id` is in the sold-out memo with its buyers loaded.
    pub fn buyers_loaded(&self, id: &EventId) -> bool {
        self.sold_out.get(id).is_some_and(|buyers| buyers.is_some())
    }
}
