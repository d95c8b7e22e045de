//! The admin API: put an event, read its counters. Bearer `ADMIN_TOKEN`.

use super::error::ApiError;
use super::extract::{header_str, read_body, Admin, EventIdPath};
use super::shopper::info;
use super::AppState;
use crate::redis::{EndOutcome, EventMeta, PutOutcome, Stats};
use axum::body::Body;
use axum::extract::State;
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
    EventIdPath(id): EventIdPath,
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
    let valid = spec
        .validate()
        .map_err(|e| bad("invalid_event", &format!("活动数据无效 ({e})")))?;
    if valid.stock_buckets > 1 && state.settings.redis.wait_strict {
        // A spill call does not wait for replicas: strict mode's promise would not hold.
        return Err(bad(
            "invalid_event",
            "活动数据无效 (stock_buckets above 1 needs redis_wait_strict off)",
        )
        .into());
    }
    let now = state.clock.now_ms();
    let put = state.redis(state.store.put_event(&id, &valid, now)).await?;
    state.events().remove(&id);
    state.sold_out.clear(&id);
    let status = match put {
        PutOutcome::Created => StatusCode::CREATED,
        PutOutcome::Updated => StatusCode::OK,
        PutOutcome::Started => return Err(Outcome::EventStarted.into()),
    };
    tracing::info!(event = %id, stock = valid.stock, "event saved");
    let meta = EventMeta {
        name: valid.name,
        stock_total: valid.stock,
        stock_left: valid.stock,
        starts_at: valid.starts_at,
        ends_at: valid.ends_at,
        paused: false,
        room: valid.room,
        stock_buckets: valid.stock_buckets,
    };
    // Read back: an upcoming event keeps a pause an operator set.
    let meta = state.redis(state.store.event(&id)).await?.unwrap_or(meta);
    Ok((status, Json(info(&id, &meta, now))).into_response())
}

/// `GET /admin/events/{event_id}/stats`.
pub(crate) async fn stats(
    State(state): State<Arc<AppState>>,
    EventIdPath(id): EventIdPath,
    _admin: Admin,
) -> Result<Response, ApiError> {
    let id = parse_admin_event(&id)?;
    let stats = state.redis(state.store.stats(&id)).await?;
    match stats {
        Some(s) => Ok(Json(s).into_response()),
        None => Err(Outcome::EventNotFound.into()),
    }
}

/// `POST /admin/events/{event_id}/end`: ends a live sale now (stock and orders stay);
/// answers the event's info. Ending an ended event again changes nothing.
pub(crate) async fn end_event(
    State(state): State<Arc<AppState>>,
    EventIdPath(id): EventIdPath,
    _admin: Admin,
) -> Result<Response, ApiError> {
    let id = parse_admin_event(&id)?;
    let now = state.clock.now_ms();
    match state.redis(state.store.end_event(&id, now)).await? {
        EndOutcome::Unknown => return Err(Outcome::EventNotFound.into()),
        EndOutcome::Upcoming => return Err(Outcome::EventNotStarted.into()),
        EndOutcome::Ended => tracing::info!(event = %id, "sale ended early"),
        EndOutcome::AlreadyEnded => {}
    }
    changed(&state, &id).await
}

/// `GET /admin/events`: every event, by id, with its state and counters.
pub(crate) async fn list_events(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
) -> Result<Response, ApiError> {
    let mut ids = state.redis(state.store.event_ids()).await?;
    ids.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    let now = state.clock.now_ms();
    let mut events = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some((meta, stats)) = state.redis(state.store.event_and_stats(&id)).await? {
            events.push(listed(info(&id, &meta, now), &stats));
        }
    }
    Ok(Json(serde_json::json!({ "events": events })).into_response())
}

/// One event of `GET /admin/events`: its info, and the counters its info lacks.
fn listed(info: flashgate_core::wire::EventInfo, stats: &Stats) -> serde_json::Value {
    let mut entry = serde_json::to_value(info).unwrap_or_default();
    if let Some(fields) = entry.as_object_mut() {
        for (name, n) in [
            ("reserved", stats.reserved),
            ("confirmed", stats.confirmed),
            ("failed", stats.failed),
            ("compensated", stats.compensated),
            ("pending", stats.pending),
        ] {
            fields.insert(name.into(), n.into());
        }
    }
    entry
}

/// `POST /admin/events/{event_id}/pause`: purchases answer 503 `paused` (at the edge
/// within its event cache, about a second) until resumed; nothing else changes.
pub(crate) async fn pause_event(
    State(state): State<Arc<AppState>>,
    EventIdPath(id): EventIdPath,
    _admin: Admin,
) -> Result<Response, ApiError> {
    set_paused(&state, &id, true).await
}

/// `POST /admin/events/{event_id}/resume`: purchases are taken again.
pub(crate) async fn resume_event(
    State(state): State<Arc<AppState>>,
    EventIdPath(id): EventIdPath,
    _admin: Admin,
) -> Result<Response, ApiError> {
    set_paused(&state, &id, false).await
}

/// Pauses or resumes `id` and answers its info.
async fn set_paused(state: &AppState, id: &str, paused: bool) -> Result<Response, ApiError> {
    let id = parse_admin_event(id)?;
    if !state.redis(state.store.pause_event(&id, paused)).await? {
        return Err(Outcome::EventNotFound.into());
    }
    tracing::info!(event = %id, paused, "sale paused or resumed");
    changed(state, &id).await
}

/// After an admin changed `id`: forgets this process's cached copy and answers the
/// event's info as Redis now has it.
async fn changed(state: &AppState, id: &EventId) -> Result<Response, ApiError> {
    state.events().remove(id);
    let meta = state
        .redis(state.store.event(id))
        .await?
        .ok_or(Outcome::EventNotFound)?;
    Ok(Json(info(id, &meta, state.clock.now_ms())).into_response())
}
