//! Builds the origin from typed settings and binds it, so tests run the real thing on
//! port 0 with their own Redis prefix and Kafka topic.

use crate::api;
use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::relay::Relay;
use crate::store::{EventMeta, Store};
use anyhow::Context;
use axum::routing::{get, post, put};
use axum::Router;
use flashgate_core::ids::EventId;
use metrics_exporter_prometheus::PrometheusHandle;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{watch, Mutex};

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
    pub events: Mutex<HashMap<EventId, (Instant, Option<EventMeta>)>>,
    /// Prometheus handle.
    pub metrics: PrometheusHandle,
    relay: Relay,
}

impl AppState {
    /// Runs a Redis call under the request-path deadline.
    pub async fn with_timeout<T>(
        &self,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> anyhow::Result<T> {
        tokio::time::timeout(Duration::from_millis(self.settings.redis_timeout_ms), call)
            .await
            .map_err(|_| anyhow::anyhow!("redis call timed out"))?
            .map_err(Into::into)
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
        let store = Store::connect(&settings.redis_url, &settings.key_prefix).await?;
        store
            .ping()
            .await
            .with_context(|| format!("cannot reach Redis at {}", settings.redis_url))?;
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
        let relay = Relay::new(
            store.clone(),
            &settings.kafka_brokers,
            &settings.orders_topic,
        )?;
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        let state = Arc::new(AppState {
            settings,
            store,
            edge_secret,
            admin_token,
            clock,
            events: Mutex::new(HashMap::new()),
            metrics: crate::telemetry::metrics(),
            relay: relay.clone(),
        });
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

    /// Serves until `shutdown` completes, drains in-flight requests, then stops the relay
    /// after it flushed what it holds.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
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
        Ok(())
    }
}

/// The routes of the origin.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/api/events/{event_id}", get(api::get_event))
        .route("/api/events/{event_id}/purchase", post(api::purchase))
        .route("/api/events/{event_id}/order", get(api::order))
        .route("/admin/events/{event_id}", put(api::put_event))
        .route("/admin/events/{event_id}/stats", get(api::stats))
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(api::metrics_text))
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(axum::middleware::from_fn(count_requests))
        .with_state(state)
}

/// Counts every request by route and status (`flashgate_http_requests_total`), so what
/// reaches the origin can be measured from outside (e.g. that the edge filtered it).
async fn count_requests(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let resp = next.run(req).await;
    metrics::counter!("flashgate_http_requests_total",
        "method" => method, "route" => route, "status" => resp.status().as_u16().to_string())
    .increment(1);
    resp
}
