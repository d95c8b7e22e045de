//! The admin API: put an event, read its counters. Bearer `ADMIN_TOKEN`.

use super::error::ApiError;
use super::extract::{header_str, read_body, Admin};
use super::shopper::info;
use super::AppState;
use crate::redis::{EventMeta, PutOutcome};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use flashgate_core::ids::EventId;
use flashgate_core::wire::{self, bad, EventSpec, Outcome};
use std::sync::Arc;
use std::time::Duration;

/// An admin's event id: one that is not a slug is a mistake to point out (400), above all
/// when creating the event.
fn parse_admin_event(id: &str) -> Result<EventId, ApiError> {
    EventId::parse(id).map_err(|_| bad("invalid_event_id", "活动标识无效: [a-z0-9-]{1,64}").into())
}

/// `PUT /admin/events/{event_id}`.
pub(crate) async fn put_event(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    _admin: Admin,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let id = parse_admin_event(&id)?;
    let deadline = Duration::from_millis(state.settings.protect.body_timeout_ms);
    let body = read_body(&headers, body, deadline).await?;
    let value = wire::check_json_body(header_str(&headers, &header::CONTENT_TYPE), &body)?;
    let spec: EventSpec = serde_json::from_value(value).map_err(|e| {
        bad(
            "invalid_event",
            &format!("活动数据无效 (invalid event: {e})"),
        )
    })?;
    let window = spec
        .validate()
        .map_err(|e| bad("invalid_event", &format!("活动数据无效 ({e})")))?;
    let now = state.clock.now_ms();
    let put = state
        .redis(state.store.put_event(&id, &window, now))
        .await?;
    state.events().remove(&id);
    state.sold_out.clear(&id);
    let status = match put {
        PutOutcome::Created => StatusCode::CREATED,
        PutOutcome::Updated => StatusCode::OK,
        PutOutcome::Started => return Err(Outcome::EventStarted.into()),
    };
    tracing::info!(event = %id, stock = window.stock, "event saved");
    let meta = EventMeta {
        name: window.name,
        stock_total: window.stock,
        stock_left: window.stock,
        starts_at: window.starts_at,
        ends_at: window.ends_at,
    };
    Ok((status, Json(info(&id, &meta, now))).into_response())
}

/// `GET /admin/events/{event_id}/stats`.
pub(crate) async fn stats(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    _admin: Admin,
) -> Result<Response, ApiError> {
    let id = parse_admin_event(&id)?;
    let stats = state.redis(state.store.stats(&id)).await?;
    match stats {
        Some(s) => Ok(Json(s).into_response()),
        None => Err(Outcome::EventNotFound.into()),
    }
}
