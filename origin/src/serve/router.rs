//! The routes of the origin, its fallbacks, and the request counter.

use super::error::{respond, DependencyFailed};
use super::extract::EdgeRequest;
use super::{admin, health, shopper, AppState};
use crate::telemetry::{method_label, Counters};
use axum::extract::{FromRequest, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put, MethodRouter};
use axum::Router;
use flashgate_core::wire::Outcome;
use metrics::Label;
use std::sync::Arc;
use tracing::Instrument;

/// The routes of the origin.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    let routes: [(&'static str, MethodRouter<Arc<AppState>>); 13] = [
        ("/api/events/{event_id}", get(shopper::get_event)),
        ("/api/events/{event_id}/purchase", post(shopper::purchase)),
        ("/api/events/{event_id}/order", get(shopper::order)),
        ("/api/events/{event_id}/buyers", get(shopper::buyers)),
        ("/admin/events/{event_id}", put(admin::put_event)),
        ("/admin/events", get(admin::list_events)),
        ("/admin/events/{event_id}/stats", get(admin::stats)),
        ("/admin/events/{event_id}/end", post(admin::end_event)),
        ("/admin/events/{event_id}/pause", post(admin::pause_event)),
        ("/admin/events/{event_id}/resume", post(admin::resume_event)),
        ("/healthz", get(crate::telemetry::healthz)),
        ("/readyz", get(health::readyz)),
        ("/metrics", get(health::metrics_text)),
    ];
    let latency = |route: &'static str| metrics::histogram!("flashgate_http_request_seconds", "route" => route);
    let counting = Arc::new(RequestCounting {
        routes: routes
            .iter()
            .map(|(path, _)| (*path, latency(path)))
            .collect(),
        unmatched: latency("unmatched"),
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
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            counting,
            count_requests,
        ))
        .with_state(state)
}

/// `flashgate_http_requests_total{method,route,status}`: what reaches the origin, so it
/// can be measured from outside (e.g. that the edge filtered it); and
/// `flashgate_http_request_seconds{route}`, from its headers to its answer.
struct RequestCounting {
    /// The router's paths (the `route` label) with their latency histograms, made once.
    routes: Vec<(&'static str, metrics::Histogram)>,
    /// The latency of requests that matched no route.
    unmatched: metrics::Histogram,
    counters: Counters<(&'static str, &'static str, u16)>,
}

/// Counts every request by method, route and status, and logs and counts a dependency
/// failure behind a 503 once.
async fn count_requests(
    axum::extract::State(counting): axum::extract::State<Arc<RequestCounting>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = std::time::Instant::now();
    let (route, latency) = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .and_then(|matched| {
            counting
                .routes
                .iter()
                .find(|(route, _)| *route == matched.as_str())
        })
        .map_or(("unmatched", &counting.unmatched), |(route, h)| (*route, h));
    let method = method_label(req.method());
    // The edge's id of the request (its CF-Ray), or one made here: every log line of the
    // request carries it, and the answer names it.
    let request_id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| valid_request_id(id))
        .map_or_else(|| uuid::Uuid::now_v7().simple().to_string(), str::to_owned);
    let span = tracing::info_span!("request", request_id = %request_id);
    let mut resp = next.run(req).instrument(span.clone()).await;
    if let Ok(value) = axum::http::HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert(REQUEST_ID, value);
    }
    let _in_request = span.enter();
    latency.record(started.elapsed().as_secs_f64());
    if let Some(failed) = resp.extensions_mut().remove::<DependencyFailed>() {
        tracing::warn!(dependency = failed.which, error = %failed.cause, "dependency failed");
        metrics::counter!("flashgate_dependency_errors_total", "dependency" => failed.which)
            .increment(1);
    }
    counting
        .counters
        .increment((method, route, resp.status().as_u16()));
    resp
}

/// The header that names a request (set by the edge, echoed in the answer).
const REQUEST_ID: &str = "x-request-id";

/// A request id the origin takes as given: short, and only characters safe in a log line.
fn valid_request_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Under `/api/` only the edge may ask anything: a request without its signature is
/// refused (401) before it learns whether its path or method exists.
async fn edge_only(state: &Arc<AppState>, req: Request, otherwise: Outcome) -> Response {
    if req.uri().path().starts_with("/api/") {
        if let Err(refused) = EdgeRequest::from_request(req, state).await {
            return refused.into_response();
        }
    }
    respond(&otherwise)
}

/// Unknown paths (the ticket path too: tickets are the edge's own).
pub(crate) async fn not_found(State(state): State<Arc<AppState>>, req: Request) -> Response {
    edge_only(&state, req, Outcome::NotFound).await
}

/// Known paths, wrong method.
pub(crate) async fn method_not_allowed(
    State(state): State<Arc<AppState>>,
    req: Request,
) -> Response {
    edge_only(&state, req, Outcome::MethodNotAllowed).await
}
