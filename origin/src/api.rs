//! The shopper API as the edge forwards it, and the admin API. Every shopper request
//! must carry the edge's signature ([`EdgeRequest`]); admin requests the admin token.

use crate::error::{respond, ApiError};
use crate::startup::AppState;
use crate::store::{Attempt, EventMeta, PutOutcome, Reservation, Rules};
use axum::body::{to_bytes, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::{header, request::Parts, HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use flashgate_core::gate::{self, Phase};
use flashgate_core::ids::{EventId, OrderId, UserId};
use flashgate_core::sign::{self, SignError, Signed};
use flashgate_core::wire::{self, bad, EventInfo, EventSpec, Outcome, MAX_BODY_BYTES};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A request that carries a valid edge signature.
#[derive(Debug)]
pub struct EdgeRequest {
    /// The user the edge authenticated, if any.
    pub user: Option<UserId>,
    /// The body, at most [`MAX_BODY_BYTES`].
    pub body: Bytes,
    /// The request's headers, kept as they came (nothing copied out of them).
    headers: HeaderMap,
}

impl EdgeRequest {
    fn user(&self) -> Result<&UserId, ApiError> {
        self.user.as_ref().ok_or(Outcome::Unauthenticated.into())
    }

    /// The `Content-Type` header.
    pub fn content_type(&self) -> Option<&str> {
        header_str(&self.headers, &header::CONTENT_TYPE)
    }

    /// The edge signature, checked (the replay guard remembers it).
    pub fn signature(&self) -> &str {
        header_str(&self.headers, &SIGNATURE).unwrap_or_default()
    }
}

// The edge's headers as names parsed once, not on every lookup.
static SIGNATURE: HeaderName = HeaderName::from_static(sign::HEADER_SIGNATURE);
static TIMESTAMP: HeaderName = HeaderName::from_static(sign::HEADER_TIMESTAMP);
static NONCE: HeaderName = HeaderName::from_static(sign::HEADER_NONCE);
static USER: HeaderName = HeaderName::from_static(sign::HEADER_USER);

fn header_str<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn unauthenticated(kind: SignError) -> ApiError {
    metrics::counter!("flashgate_signature_rejections_total", "reason" => kind.code()).increment(1);
    Outcome::Unauthenticated.into()
}

impl FromRequest<Arc<AppState>> for EdgeRequest {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let h = &parts.headers;
        // Unsigned requests are refused before their body is read.
        let (Some(signature), Some(timestamp), Some(nonce)) = (
            header_str(h, &SIGNATURE),
            header_str(h, &TIMESTAMP).and_then(|t| t.parse().ok()),
            header_str(h, &NONCE),
        ) else {
            return Err(unauthenticated(SignError::Missing));
        };
        let body = to_bytes(body, MAX_BODY_BYTES)
            .await
            .map_err(|_| ApiError::from(Outcome::PayloadTooLarge))?;
        let user = header_str(h, &USER).unwrap_or("");
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        Signed {
            method: parts.method.as_str(),
            path,
            user,
            timestamp,
            nonce,
            body: &body,
        }
        .verify(&state.edge_secret, signature, state.clock.now_ms())
        .map_err(unauthenticated)?;
        let user = if user.is_empty() {
            None
        } else {
            Some(UserId::parse(user).map_err(|_| bad("invalid_user_id", "用户标识无效"))?)
        };
        Ok(EdgeRequest {
            user,
            body,
            headers: parts.headers,
        })
    }
}

/// No event can have an id that is not a slug: such an id names no event (404), on every
/// shopper path alike.
fn parse_event(id: &str) -> Result<EventId, ApiError> {
    EventId::parse(id).map_err(|_| Outcome::EventNotFound.into())
}

/// An admin's event id: one that is not a slug is a mistake to point out (400), above all
/// when creating the event.
fn parse_admin_event(id: &str) -> Result<EventId, ApiError> {
    EventId::parse(id).map_err(|_| bad("invalid_event_id", "活动标识无效: [a-z0-9-]{1,64}").into())
}

/// The event's metadata, from the in-process cache or Redis.
async fn event_meta(state: &AppState, id: &EventId) -> Result<Arc<EventMeta>, ApiError> {
    let ttl = Duration::from_millis(state.settings.event_cache_ms);
    let cached = state.events().get(id).and_then(|(at, meta)| {
        (at.elapsed() < ttl).then(|| meta.clone().ok_or(Outcome::EventNotFound.into()))
    });
    if let Some(meta) = cached {
        return meta;
    }
    let meta = state
        .redis(state.store.event(id))
        .await
        .map_err(|e| ApiError::Dependency("redis", e))?
        .map(Arc::new);
    state
        .events()
        .insert(id.clone(), (Instant::now(), meta.clone()));
    meta.ok_or(Outcome::EventNotFound.into())
}

fn info(id: &EventId, m: &EventMeta, now: i64) -> EventInfo {
    EventInfo {
        event_id: id.to_string(),
        name: m.name.clone(),
        stock_total: m.stock_total,
        stock_left: m.stock_left,
        starts_at: wire::fmt_time(m.starts_at),
        ends_at: wire::fmt_time(m.ends_at),
        server_time: wire::fmt_time(now),
        state: gate::state(m.starts_at, m.ends_at, m.stock_left, now),
    }
}

/// `GET /api/events/{event_id}`.
pub async fn get_event(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    _edge: EdgeRequest,
) -> Result<Json<EventInfo>, ApiError> {
    // No event can have an id that is not a slug: for a read, that is "no such event".
    let id = EventId::parse(&id).map_err(|_| ApiError::from(Outcome::EventNotFound))?;
    let meta = event_meta(&state, &id).await?;
    Ok(Json(info(&id, &meta, state.clock.now_ms())))
}

/// `POST /api/events/{event_id}/purchase`.
pub async fn purchase(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    edge: EdgeRequest,
) -> Response {
    let outcome = purchase_outcome(&state, &id, &edge).await;
    let label = match &outcome {
        Ok(o) | Err(ApiError::Outcome(o)) => outcome_label(o),
        Err(ApiError::Dependency(..)) => "busy",
    };
    state.purchases.increment(label);
    match outcome {
        Ok(o) => respond(&o),
        Err(e) => e.into_response(),
    }
}

fn outcome_label(o: &Outcome) -> &'static str {
    match o {
        Outcome::Queued { .. } => "queued",
        Outcome::AlreadyPurchased { .. } => "already_purchased",
        Outcome::SoldOut => "sold_out",
        Outcome::NotStarted { .. } => "not_started",
        Outcome::Ended => "ended",
        Outcome::RateLimited { .. } => "rate_limited",
        Outcome::Busy { .. } => "busy",
        _ => "rejected",
    }
}

async fn purchase_outcome(
    state: &AppState,
    id: &str,
    edge: &EdgeRequest,
) -> Result<Outcome, ApiError> {
    let user = edge.user()?;
    wire::check_json_body(edge.content_type(), &edge.body)?;
    let id = parse_event(id)?;
    let meta = event_meta(state, &id).await?;
    let now = state.clock.now_ms();
    match gate::phase(meta.starts_at, meta.ends_at, now) {
        Phase::Upcoming => {
            return Ok(Outcome::NotStarted {
                starts_at: wire::fmt_time(meta.starts_at),
            })
        }
        Phase::Ended => return Ok(Outcome::Ended),
        Phase::Live => {}
    }
    if let Some(buyers) = state.sold_out_memo(&id) {
        // A sold-out storm is answered from memory, and a buyer's retry still gets their
        // order. Until the buyers are loaded (or when there are too many to keep), the
        // buyer's own order is read; should Redis not answer, the memo's 409 stands.
        let order = match buyers {
            Some(buyers) => buyers.get(user.as_str()).cloned(),
            None => state
                .redis(state.store.order_of(&id, user))
                .await
                .ok()
                .flatten(),
        };
        return Ok(match order {
            Some(order_id) => Outcome::AlreadyPurchased { order_id },
            None => Outcome::SoldOut,
        });
    }
    // The fixed bucket comes after the answers that cost nothing (window, sold-out flag),
    // so a sold-out storm gets 409, not 429.
    if let Some(bucket) = &state.admission {
        if let Err(not_until) = bucket.check() {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            return Ok(Outcome::RateLimited {
                retry_after_secs: wait.as_secs().max(1),
            });
        }
    }
    // Kafka has been away long enough that the outbox is full: degrade instead of
    // letting Redis memory grow without bound.
    if state.outbox_backlog.load(Ordering::Relaxed) >= state.settings.max_outbox {
        return Err(ApiError::Dependency(
            "kafka",
            anyhow::anyhow!("outbox backlog over max_outbox"),
        ));
    }
    let Some(permit) = state.adaptive.try_acquire() else {
        metrics::counter!("flashgate_adaptive_rejections_total").increment(1);
        return Ok(Outcome::RateLimited {
            retry_after_secs: 1,
        });
    };
    let order = OrderId::parse(&uuid::Uuid::now_v7().simple().to_string())
        .map_err(|e| ApiError::Dependency("order_id", e.into()))?;
    let started = Instant::now();
    let reservation = state
        .redis_guarded(state.reserver.reserve(
            &id,
            Rules {
                now,
                window_ms: state.settings.user_window_ms,
                limit: state.settings.user_limit,
                replay_window_ms: state.settings.replay_window_ms,
            },
            Attempt {
                user: user.clone(),
                new_order: order,
                signature: edge.signature().to_owned(),
            },
            Duration::from_millis(state.settings.redis_timeout_ms),
        ))
        .await
        .map_err(|e| ApiError::Dependency("redis", e))?;
    let rtt = started.elapsed();
    permit.record(rtt);
    drop(permit);
    metrics::histogram!("flashgate_reserve_seconds").record(rtt.as_secs_f64());
    Ok(match reservation {
        Reservation::Reserved(order) => {
            tracing::debug!(event = %id, user = %user, order = %order, "reserved");
            Outcome::Queued {
                order_id: order.to_string(),
            }
        }
        Reservation::AlreadyPurchased(order_id) => Outcome::AlreadyPurchased { order_id },
        Reservation::SoldOut(buyers_version) => {
            state.mark_sold_out(&id, &buyers_version);
            Outcome::SoldOut
        }
        Reservation::RateLimited(ms) => Outcome::RateLimited {
            retry_after_secs: ms.div_ceil(1000),
        },
        Reservation::NoEvent => Outcome::EventNotFound,
        Reservation::Replayed => {
            metrics::counter!("flashgate_signature_rejections_total", "reason" => "replayed")
                .increment(1);
            Outcome::Unauthenticated
        }
    })
}

/// `GET /api/events/{event_id}/order`.
pub async fn order(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    edge: EdgeRequest,
) -> Result<Response, ApiError> {
    let user = edge.user()?;
    let id = parse_event(&id)?;
    let found = state
        .redis(state.store.order_status(&id, user))
        .await
        .map_err(|e| ApiError::Dependency("redis", e))?;
    Ok(respond(&match found {
        Some((status, order_id)) => Outcome::Order { status, order_id },
        None => Outcome::NoOrder,
    }))
}

/// Requests that carry `Authorization: Bearer <ADMIN_TOKEN>`.
pub struct Admin;

impl FromRequestParts<Arc<AppState>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let token = header_str(&parts.headers, &header::AUTHORIZATION)
            .and_then(flashgate_core::jwt::bearer)
            .unwrap_or("");
        // Compare MACs rather than the strings, so the comparison takes constant time.
        let tag = flashgate_core::crypto::sign_b64(b"admin", &state.admin_token);
        if flashgate_core::crypto::verify_b64(b"admin", token.as_bytes(), &tag) {
            Ok(Admin)
        } else {
            Err(Outcome::Unauthenticated.into())
        }
    }
}

/// `PUT /admin/events/{event_id}`.
pub async fn put_event(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    _admin: Admin,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = parse_admin_event(&id)?;
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
        .await
        .map_err(|e| ApiError::Dependency("redis", e))?;
    state.events().remove(&id);
    state.clear_sold_out(&id);
    let status = match put {
        PutOutcome::Created => StatusCode::CREATED,
        PutOutcome::Updated => StatusCode::OK,
        PutOutcome::Started => {
            return Ok((
                StatusCode::CONFLICT,
                Json(serde_json::json!({"error": "event_started",
                    "message": "活动已开始, 不能修改"})),
            )
                .into_response())
        }
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
pub async fn stats(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    _admin: Admin,
) -> Result<Response, ApiError> {
    let id = parse_admin_event(&id)?;
    let stats = state
        .redis(state.store.stats(&id))
        .await
        .map_err(|e| ApiError::Dependency("redis", e))?;
    match stats {
        Some(s) => Ok(Json(s).into_response()),
        None => Err(Outcome::EventNotFound.into()),
    }
}

/// `GET /healthz`: the process answers.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// `GET /readyz`: Redis and Kafka answer.
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
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
pub async fn metrics_text(State(state): State<Arc<AppState>>) -> String {
    state.metrics.render()
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
pub async fn not_found(State(state): State<Arc<AppState>>, req: Request) -> Response {
    edge_only(&state, req, Outcome::NotFound).await
}

/// Known paths, wrong method.
pub async fn method_not_allowed(State(state): State<Arc<AppState>>, req: Request) -> Response {
    edge_only(&state, req, Outcome::MethodNotAllowed).await
}
