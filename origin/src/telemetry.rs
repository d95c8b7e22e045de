//! Structured logs (`tracing`, JSON lines), the Prometheus recorder, the per-label counter
//! cache of the hot path, and the health and metrics server of the consumer.

use axum::http::Method;
use metrics::{Counter, Label};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{OnceLock, RwLock};

/// JSON logs to stderr, filtered by `RUST_LOG` (default `info`). Safe to call twice.
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// A counter and its labels.
pub type CounterSpec = (&'static str, &'static [(&'static str, &'static str)]);

/// The counters of `flashgate serve` that alert rules (infra/prometheus/alerts.yaml)
/// watch; see [`start_at_zero`].
pub const SERVE_COUNTERS: &[CounterSpec] = &[
    ("flashgate_relay_orders_total", &[]),
    ("flashgate_reservations_unreplicated_total", &[]),
    ("flashgate_signature_previous_key_total", &[]),
];

/// The same for `flashgate consume`.
pub const CONSUMER_COUNTERS: &[CounterSpec] = &[
    ("flashgate_consumer_orders_total", &[]),
    ("flashgate_consumer_malformed_total", &[]),
    ("flashgate_consumer_dead_letters_total", &[]),
    ("flashgate_consumer_forced_rejoins_total", &[]),
    ("flashgate_consumer_pauses_total", &[]),
    ("flashgate_compensations_total", &[("reason", "blocked")]),
    ("flashgate_compensations_total", &[("reason", "duplicate")]),
    ("flashgate_compensations_total", &[("reason", "unit_taken")]),
];

/// Shows `counters` from the start, at 0 until they count (their values are kept if they
/// exist): a counter that appears only with its first event hides that event from
/// `increase()`, and a `rate()` of nothing is no series at all, not 0.
pub fn start_at_zero(counters: &[CounterSpec]) {
    // Which build answers, for dashboards that span an upgrade.
    metrics::gauge!("flashgate_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    for (name, labels) in counters {
        let labels: Vec<Label> = labels.iter().map(|(k, v)| Label::new(*k, *v)).collect();
        metrics::counter!(*name, labels).increment(0);
    }
}

/// How often histogram samples are folded into their buckets between scrapes.
const UPKEEP: std::time::Duration = std::time::Duration::from_secs(5);

/// The process-wide metrics recorder (installed on first use).
pub fn metrics() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0,
                ])
                .expect("static, non-empty bucket list")
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Suffix("_batch_size".into()),
                    &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0],
                )
                .expect("static, non-empty bucket list")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (tests embedding the app): keep ours readable.
            let _ = metrics::set_global_recorder(recorder);
            // Histogram samples wait in the recorder until a scrape (or this) folds them
            // into their buckets: without it, a process nobody scrapes grows by 8 bytes per
            // sample (one per purchase) for ever.
            let upkeep = handle.clone();
            let _ = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(UPKEEP);
                    upkeep.run_upkeep();
                });
            handle
        })
        .clone()
}

/// `GET /healthz` and `GET /metrics` of a process that serves no API (the order
/// consumer), on `listener`, until `stop` fires.
pub async fn serve_health(
    listener: tokio::net::TcpListener,
    mut stop: crate::shutdown::Shutdown,
) -> std::io::Result<()> {
    let handle = metrics();
    let app = axum::Router::new()
        .route("/healthz", axum::routing::get(healthz))
        .route(
            "/metrics",
            axum::routing::get(move || async move { prometheus_text(handle.render()) }),
        );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            stop.recv().await;
        })
        .await
}

/// The Prometheus text exposition format's content type, version included, as
/// Prometheus's own exporters send it: scrapers that negotiate formats read it as text.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A `GET /metrics` answer: `body` (the recorder's rendering) as Prometheus text.
pub(crate) fn prometheus_text(body: String) -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, PROMETHEUS_TEXT)], body)
}

/// `GET /healthz`: the process answers (the same body in `serve` and `consume`).
pub async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"status": "ok"}))
}

/// One counter metric whose labels a request only knows when it is answered (its
/// route, status, outcome). Each set of labels gets its counter from the recorder once;
/// after that a request looks it up by a small key, without building label strings.
pub struct Counters<K> {
    name: &'static str,
    labels: fn(&K) -> Vec<Label>,
    made: RwLock<HashMap<K, Counter>>,
}

impl<K: Eq + Hash> Counters<K> {
    /// The counter `name`, labelled for each key by `labels`.
    pub fn new(name: &'static str, labels: fn(&K) -> Vec<Label>) -> Self {
        Self {
            name,
            labels,
            made: RwLock::default(),
        }
    }

    /// Adds one to the counter of `key`.
    pub fn increment(&self, key: K) {
        if let Some(counter) = crate::locks::read(&self.made).get(&key) {
            counter.increment(1);
            return;
        }
        let counter = metrics::counter!(self.name, (self.labels)(&key));
        counter.increment(1);
        crate::locks::write(&self.made).insert(key, counter);
    }
}

/// The label of an HTTP method: methods outside the standard ones are `other`, so a
/// client cannot grow a metric without bound.
pub fn method_label(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "other",
    }
}

/// `urls`, one or several comma-separated (a Redis Cluster's nodes), each as
/// [`redact_url`] shows it.
pub fn redact_urls(urls: &str) -> String {
    let shown: Vec<_> = urls.split(',').map(|u| redact_url(u.trim())).collect();
    shown.join(",")
}

/// `url` for logs and errors: a password in its user info or in a `pass`/`password`
/// query parameter shown as `***`; a URL that does not parse, or has an `@` that did not end
/// a user info, shows only its scheme (it may hold a password anywhere). E.g. `redis://:pw@host:6379/0` → `redis://:***@host:6379/0`.
pub fn redact_url(url: &str) -> std::borrow::Cow<'_, str> {
    let (scheme, after_scheme) = url.split_once("://").unwrap_or(("", url));
    let hidden = || format!("{scheme}://<a URL that does not parse>").into();
    let Ok(mut parsed) = url::Url::parse(url) else {
        return hidden();
    };
    // An `@` the parser did not take for the end of a user info may end one it misread
    // (`redis://app:12?x@cache`: a password taken for a port): show nothing of it.
    if after_scheme.contains('@') && parsed.username().is_empty() && parsed.password().is_none() {
        return hidden();
    }
    let mut changed = false;
    if parsed.password().is_some() {
        changed |= parsed.set_password(Some("***")).is_ok();
    }
    let secret = |k: &str| k.eq_ignore_ascii_case("pass") || k.eq_ignore_ascii_case("password");
    if parsed.query_pairs().any(|(k, _)| secret(&k)) {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if secret(&k) {
                    "***".into()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
        changed = true;
    }
    if changed {
        parsed.to_string().into()
    } else {
        url.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_prints_without_its_password() {
        for (url, shown) in [
            ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
            (
                "rediss://app:p@ss:w@cache:6380",
                "rediss://app:***@cache:6380",
            ),
            ("rediss://:p%40ss@cache/0", "rediss://:***@cache/0"),
            ("redis://app@cache:6379", "redis://app@cache:6379"),
            (
                "redis://127.0.0.1:6379/?a=b@c",
                "redis://<a URL that does not parse>",
            ),
            (
                "redis://app:12?x@cache",
                "redis://<a URL that does not parse>",
            ),
            (
                "redis://app:2024/Summer!@cache:6379",
                "redis://<a URL that does not parse>",
            ),
            (
                "redis+unix:///run/redis.sock",
                "redis+unix:///run/redis.sock",
            ),
            (
                "redis+unix:///run/redis.sock?db=1&pass=s3cret",
                "redis+unix:///run/redis.sock?db=1&pass=***",
            ),
            // Not URLs the url crate (nor redis-rs) reads: only the scheme is shown.
            (
                "redis://:pa/ss@host:6379",
                "redis://<a URL that does not parse>",
            ),
            ("redis://:pa#ss@host", "redis://<a URL that does not parse>"),
            ("not a url", "://<a URL that does not parse>"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }
}
