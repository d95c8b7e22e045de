//! Health, readiness and metrics of `flashgate serve`.

use super::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::sync::Arc;

/// `GET /readyz`: Redis and Kafka answer.
pub(crate) async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let redis = state
        .redis(async { state.store.ping().await })
        .await
        .is_ok();
    let kafka = state.relay_ready().await;
    if redis && kafka {
        let body = serde_json::json!({"status": "ready", "redis": true, "kafka": true});
        (StatusCode::OK, Json(body)).into_response()
    } else {
        let body = serde_json::json!({
            "status": "not_ready",
            "redis": redis,
            "kafka": kafka,
            "message": "依赖服务不可用 (Redis or Kafka does not answer)",
        });
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

/// `GET /metrics`: Prometheus text.
pub(crate) async fn metrics_text(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    crate::telemetry::prometheus_text(state.metrics.render())
}
