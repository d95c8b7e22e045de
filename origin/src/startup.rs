//! Builds the origin from typed settings and binds it, so tests run the real thing on
//! port 0 with their own Redis prefix and Kafka topic.

use crate::api;
use crate::batch::Reserver;
use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::protect::{AdaptiveLimit, Breaker};
use crate::relay::Relay;
use crate::store::{EventMeta, Store};
use crate::telemetry::{method_label, Counters};
use anyhow::Context;
use axum::routing::{get, post, put, MethodRouter};
use axum::Router;
use flashgate_core::ids::EventId;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use metrics::Label;
use metrics_exporter_prometheus::PrometheusHandle;
use secrecy::ExposeSecret;
use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Events' metadata (`None`: no such event) and when each was read.
pub type EventCache = HashMap<EventId, (Instant, Option<Arc<EventMeta>>)>;

/// A sold-out event's buyers: user id → order id.
pub type Buyers = Arc<HashMap<String, String>>;

/// The most buyers of a sold-out event a process keeps in memory; beyond, a purchase on
/// it reads the buyer's own order from Redis.
pub const MAX_BUYERS_KEPT: u64 = 50_000;

/// How long loaded buyers serve the memo's renewals before they are loaded again (a
/// compensated buyer may be answered already_purchased, and a buyer of a returned unit
/// through another process sold_out, for at most this long).
pub const BUYERS_FRESH: Duration = Duration::from_secs(10);

/// Memos unused this long are dropped with their buyers.
const MEMO_KEPT: Duration = Duration::from_secs(600);

/// What the process remembers of a sold-out event.
struct SoldOut {
    /// When Redis last said sold out (the memo holds for `sold_out_cache_ms` from then).
    at: Instant,
    buyers: Option<Buyers>,
    /// When `buyers` were read; `None` while no load has finished.
    loaded_at: Option<Instant>,
    /// The version of the buyers `buyers` holds (see `lua/reserve.lua`).
    version: String,
    /// A load is running.
    loading: bool,
}

/// Shared state of the HTTP handlers.
pub struct AppState {
    /// Settings the process started with.
    pub settings: Settings,
    /// Redis.
    pub store: Store,
    /// Edge signature secret.
    pub edge_secret: Vec<u8>,
    /// Admin bearer token.
    pub admin_token: Vec<u8>,
    /// Time source.
    pub clock: Arc<dyn Clock>,
    /// Event info cached for `event_cache_ms`.
    events: std::sync::Mutex<EventCache>,
    /// Prometheus handle.
    pub metrics: PrometheusHandle,
    /// `flashgate_purchases_total{outcome}`.
    pub purchases: Counters<&'static str>,
    /// Circuit breaker around Redis.
    pub redis_breaker: Arc<Breaker>,
    /// Whether a background probe of Redis is running (see [`AppState::redis`]).
    redis_probe: Arc<std::sync::atomic::AtomicBool>,
    /// The fixed admission bucket of this process (`None` when off).
    pub admission: Option<DefaultDirectRateLimiter>,
    /// The latency-driven concurrency limit in front of the reserve call.
    pub adaptive: AdaptiveLimit,
    /// Coalesces concurrent reserve attempts into few script calls.
    pub reserver: Reserver,
    /// Events recently seen sold out in Redis.
    sold_out: Arc<std::sync::Mutex<HashMap<EventId, SoldOut>>>,
    /// Reservations waiting for Kafka (kept current by the relay).
    pub outbox_backlog: Arc<AtomicU64>,
    relay: Relay,
}

impl AppState {
    /// The event cache (held only between awaits).
    pub fn events(&self) -> std::sync::MutexGuard<'_, EventCache> {
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs a Redis call through the breaker and under the request-path deadline.
    pub async fn redis<T>(
        &self,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> anyhow::Result<T> {
        let deadline = Duration::from_millis(self.settings.redis_timeout_ms);
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

    /// Runs a Redis call that keeps its own deadline (the reserve call: see `batch.rs`)
    /// through the breaker.
    pub async fn redis_guarded<T>(
        &self,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> anyhow::Result<T> {
        if !self.redis_breaker.allow(Instant::now()) {
            self.probe_redis();
            anyhow::bail!("redis circuit open");
        }
        let result = call.await.map_err(anyhow::Error::from);
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

    /// `Some` when `id` was seen sold out within `sold_out_cache_ms`, with its buyers (user
    /// → order id) once they are loaded (`None` before, or when there are more than
    /// [`MAX_BUYERS_KEPT`]).
    pub fn sold_out_memo(&self, id: &EventId) -> Option<Option<Buyers>> {
        let ttl = Duration::from_millis(self.settings.sold_out_cache_ms);
        self.sold_out
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .filter(|memo| memo.at.elapsed() < ttl)
            .map(|memo| memo.buyers.clone())
    }

    /// Remembers that `id` is sold out (compensation may bring a unit back, so only for
    /// `sold_out_cache_ms`), and has its buyers loaded in the background, so that a buyer's
    /// retry is answered already_purchased without asking Redis. Renewals of the memo keep
    /// the buyers for [`BUYERS_FRESH`] (a storm does not reload them every second) while
    /// Redis gives the same `version` of them; a changed version (a compensation, a unit
    /// given back and sold again, through any process) drops them at once, and until they
    /// are loaded again each buyer's own order is read. One load runs at a time.
    pub fn mark_sold_out(&self, id: &EventId, version: &str) {
        let ttl = Duration::from_millis(self.settings.sold_out_cache_ms);
        let now = Instant::now();
        let mut memos = self.sold_out.lock().unwrap_or_else(|e| e.into_inner());
        memos.retain(|_, m| m.at.elapsed() < MEMO_KEPT.max(ttl));
        let memo = memos.entry(id.clone()).or_insert(SoldOut {
            at: now,
            buyers: None,
            loaded_at: None,
            version: String::new(),
            loading: false,
        });
        memo.at = now;
        if memo.loaded_at.is_some() && memo.version != version {
            memo.buyers = None;
            memo.loaded_at = None;
        }
        let fresh = memo.loaded_at.is_some_and(|t| t.elapsed() < BUYERS_FRESH);
        if fresh || memo.loading {
            return;
        }
        memo.loading = true;
        drop(memos);
        let (store, memos, id) = (self.store.clone(), self.sold_out.clone(), id.clone());
        tokio::spawn(async move {
            let loaded =
                tokio::time::timeout(Duration::from_secs(5), store.buyers(&id, MAX_BUYERS_KEPT))
                    .await;
            let mut memos = memos.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(memo) = memos.get_mut(&id) {
                memo.loading = false;
                // If Redis did not answer, the next renewal tries again; `None` (too many
                // to keep) means buyers are read one by one.
                if let Ok(Ok(loaded)) = loaded {
                    let (version, buyers) = match loaded {
                        Some((version, buyers)) => (version, Some(Arc::new(buyers))),
                        None => (String::new(), None),
                    };
                    memo.buyers = buyers;
                    memo.version = version;
                    memo.loaded_at = Some(Instant::now());
                }
            }
        });
    }

    /// Forgets a sold-out mark (the event changed).
    pub fn clear_sold_out(&self, id: &EventId) {
        self.sold_out
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }

    /// Whether Kafka answers.
    pub async fn relay_ready(&self) -> bool {
        self.relay.ready().await
    }
}

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
        let edge_secret = settings
            .secret(&settings.edge_secret, "edge_secret")?
            .to_vec();
        let admin_token = settings
            .secret(&settings.admin_token, "admin_token")?
            .to_vec();
        let redis_url = crate::config::redact_url(settings.redis_url.expose_secret()).into_owned();
        let store = Store::connect(settings.redis_url.expose_secret(), &settings.key_prefix)
            .await?
            .wait_for_replicas(
                settings.redis_wait_replicas,
                settings.redis_wait_timeout_ms,
                settings.reserve_inflight,
            )
            .await
            .with_context(|| format!("cannot set up waiting for replicas of {redis_url}"))?;
        store
            .ping()
            .await
            .with_context(|| format!("cannot reach Redis at {redis_url}"))?;
        // Refuses a Redis that could oversell or lose orders; says what else is unsafe.
        for warning in store
            .durability()
            .await
            .verdict()
            .map_err(|refusal| anyhow::anyhow!("{refusal} (Redis at {redis_url})"))?
        {
            tracing::warn!(redis = %redis_url, "{warning}");
        }
        if let Err(e) = crate::kafka::ensure_topic(
            &settings.kafka_brokers,
            &settings.orders_topic,
            settings.topic_partitions,
        )
        .await
        {
            // Reservations wait in the outbox until Kafka answers; serving can start.
            tracing::warn!(error = %format!("{e:#}"), "kafka not ready at start");
        }
        let outbox_backlog = Arc::new(AtomicU64::new(0));
        let relay = Relay::new(store.clone(), &settings, outbox_backlog.clone())?;
        let admission = NonZeroU32::new(settings.admission_rps)
            .map(|rps| RateLimiter::direct(Quota::per_second(rps)));
        let redis_breaker = Arc::new(Breaker::new(
            "redis",
            settings.breaker_failures,
            Duration::from_millis(settings.breaker_cooldown_ms),
        ));
        let adaptive = AdaptiveLimit::new(settings.adaptive);
        let reserver = Reserver::start(
            store.clone(),
            settings.reserve_batch,
            settings.reserve_inflight,
        );
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        let state = Arc::new(AppState {
            settings,
            store,
            edge_secret,
            admin_token,
            clock,
            events: Default::default(),
            metrics: crate::telemetry::metrics(),
            purchases: Counters::new("flashgate_purchases_total", |outcome| {
                vec![Label::new("outcome", *outcome)]
            }),
            redis_breaker,
            redis_probe: Arc::default(),
            admission,
            adaptive,
            reserver,
            sold_out: Arc::default(),
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

    /// Serves until `shutdown` completes, drains in-flight requests, then stops the relay
    /// after it flushed what it holds.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let clock = tokio::spawn(sync_redis_clock(self.state.store.clone(), stop_rx.clone()));
        let relay = tokio::spawn(self.relay.run(stop_rx));
        tracing::info!(
            port = self.listener.local_addr()?.port(),
            "origin listening"
        );
        axum::serve(self.listener, router(self.state))
            .with_graceful_shutdown(shutdown)
            .await
            .context("http server failed")?;
        let _ = stop_tx.send(true);
        let _ = relay.await;
        clock.abort();
        Ok(())
    }
}

/// Measures Redis's clock every [`crate::store::CLOCK_SYNC`] (reserve calls carry a
/// deadline on it) until `stop`; a failed reading keeps the last one.
async fn sync_redis_clock(store: Store, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(crate::store::CLOCK_SYNC) => {}
            _ = stop.changed() => return,
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), store.sync_clock()).await;
    }
}

/// The routes of the origin.
pub fn router(state: Arc<AppState>) -> Router {
    let routes: [(&'static str, MethodRouter<Arc<AppState>>); 8] = [
        ("/api/events/{event_id}", get(api::get_event)),
        ("/api/events/{event_id}/purchase", post(api::purchase)),
        ("/api/events/{event_id}/order", get(api::order)),
        ("/admin/events/{event_id}", put(api::put_event)),
        ("/admin/events/{event_id}/stats", get(api::stats)),
        ("/healthz", get(api::healthz)),
        ("/readyz", get(api::readyz)),
        ("/metrics", get(api::metrics_text)),
    ];
    let counting = Arc::new(RequestCounting {
        routes: routes.iter().map(|(path, _)| *path).collect(),
        counters: Counters::new(
            "flashgate_http_requests_total",
            |(method, route, status)| {
                vec![
                    Label::new("method", *method),
                    Label::new("route", *route),
                    Label::new("status", status.to_string()),
                ]
            },
        ),
    });
    routes
        .into_iter()
        .fold(Router::new(), |router, (path, handlers)| {
            router.route(path, handlers)
        })
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            counting,
            count_requests,
        ))
        .with_state(state)
}

/// `flashgate_http_requests_total{method,route,status}`: what reaches the origin, so it
/// can be measured from outside (e.g. that the edge filtered it).
struct RequestCounting {
    /// The router's paths (the `route` label; `unmatched` for the rest).
    routes: Vec<&'static str>,
    counters: Counters<(&'static str, &'static str, u16)>,
}

/// Counts every request by method, route and status.
async fn count_requests(
    axum::extract::State(counting): axum::extract::State<Arc<RequestCounting>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .and_then(|matched| {
            counting
                .routes
                .iter()
                .find(|route| **route == matched.as_str())
        })
        .map_or("unmatched", |route| *route);
    let method = method_label(req.method());
    let resp = next.run(req).await;
    counting
        .counters
        .increment((method, route, resp.status().as_u16()));
    resp
}
