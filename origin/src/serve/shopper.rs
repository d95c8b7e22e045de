//! The shopper API as the edge forwards it: event info, purchase, order lookup.

use super::error::{respond, ApiError};
use super::extract::{EdgeRequest, EventIdPath};
use super::AppState;
use crate::redis::{
    Attempt, BucketPurchase, EventMeta, Reservation, ReserveRules, Split, SPLIT_BUYERS_VERSION,
};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use flashgate_core::admission::Window;
use flashgate_core::buyers::BuyerFilter;
use flashgate_core::gate;
use flashgate_core::ids::{EventId, OrderId};
use flashgate_core::reservation::{self, Held};
use flashgate_core::wire::{self, EventInfo, Outcome};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// No event can have an id that is not a slug: such an id names no event (404), on every
/// shopper path alike.
fn parse_event(id: &str) -> Result<EventId, ApiError> {
    EventId::parse(id).map_err(|_| Outcome::EventNotFound.into())
}

/// The event's metadata, from the in-process cache or Redis.
async fn event_meta(state: &AppState, id: &EventId) -> Result<Arc<EventMeta>, ApiError> {
    let ttl = Duration::from_millis(state.settings.purchase.event_cache_ms);
    let cached = state.events().get(id, ttl);
    if let Some(meta) = cached {
        return meta.ok_or(Outcome::EventNotFound.into());
    }
    let meta = state.redis(state.store.event(id)).await?.map(Arc::new);
    state.events().insert(id.clone(), meta.clone());
    meta.ok_or(Outcome::EventNotFound.into())
}

pub(super) fn info(id: &EventId, m: &EventMeta, now: i64) -> EventInfo {
    EventInfo {
        event_id: id.to_string(),
        name: m.name.clone(),
        stock_total: m.stock_total,
        stock_left: m.stock_left,
        starts_at: wire::fmt_time(m.starts_at),
        ends_at: wire::fmt_time(m.ends_at),
        server_time: wire::fmt_time(now),
        state: gate::state(m.starts_at, m.ends_at, m.stock_left, now),
        paused: m.paused,
        room: m.room,
    }
}

/// `GET /api/events/{event_id}`.
pub(crate) async fn get_event(
    State(state): State<Arc<AppState>>,
    EventIdPath(id): EventIdPath,
    _edge: EdgeRequest,
) -> Result<Json<EventInfo>, ApiError> {
    // No event can have an id that is not a slug: for a read, that is "no such event".
    let id = EventId::parse(&id).map_err(|_| ApiError::from(Outcome::EventNotFound))?;
    let meta = event_meta(&state, &id).await?;
    Ok(Json(info(&id, &meta, state.clock.now_ms())))
}

/// `POST /api/events/{event_id}/purchase`.
pub(crate) async fn purchase(
    State(state): State<Arc<AppState>>,
    EventIdPath(id): EventIdPath,
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
        Outcome::Paused => "paused",
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
    let sale = Window {
        starts_at: meta.starts_at,
        ends_at: meta.ends_at,
    };
    if let Err(answer) =
        reservation::window(Some(sale), now).and_then(|()| reservation::not_paused(meta.paused))
    {
        return Ok(answer);
    }
    if let Some(buyers) = state.sold_out.get(&id) {
        // Until the buyers are loaded (or when there are too many to keep), the buyer's
        // own order is read; should Redis not answer, the memo's 409 stands.
        let order = match buyers {
            Some(buyers) => buyers.get(user.as_str()).cloned(),
            None => state
                .redis(state.store.order_of(&id, meta.split(), user))
                .await
                .ok()
                .flatten(),
        };
        return Ok(reservation::remembered(order));
    }
    let permit = reservation::limits(
        || state.bucket.as_ref().map_or(Ok(()), bucket_token),
        state.outbox_backlog.load(Ordering::Relaxed),
        state.settings.protect.max_outbox,
        || state.adaptive.try_acquire(),
    );
    let permit = match permit {
        Ok(permit) => permit,
        Err(Held::OutboxFull) => {
            // Kafka has been away long enough that the outbox is full: degrade instead
            // of letting Redis memory grow without bound.
            return Err(ApiError::Dependency(
                "kafka",
                anyhow::anyhow!("outbox backlog over max_outbox"),
            ));
        }
        Err(held) => {
            if held == Held::Adaptive {
                metrics::counter!("flashgate_adaptive_rejections_total").increment(1);
            }
            return Ok(held.outcome());
        }
    };
    let order = OrderId::parse(&uuid::Uuid::now_v7().simple().to_string())
        .map_err(|e| ApiError::Dependency("order_id", e.into()))?;
    let rules = ReserveRules {
        now,
        window_ms: state.settings.purchase.user_window_ms,
        limit: state.settings.purchase.user_limit,
        replay_window_ms: state.settings.purchase.replay_window_ms,
    };
    let attempt = Attempt {
        user: user.clone(),
        new_order: order,
        signature: edge.signature().to_owned(),
        signed_at: edge.signed_at,
        room_position: edge.room_position,
        client_net: edge.client_net.clone(),
    };
    let started = Instant::now();
    if meta.stock_buckets > 1 {
        // The home call goes with others at the same bucket (the reserver), the rest on
        // its own.
        let split = meta.split();
        let home = flashgate_core::stock_buckets::home(user.as_str(), split.buckets);
        let bought = state
            .redis_guarded(async {
                let verdict = state
                    .reserver
                    .reserve_at_home(
                        &id,
                        (split, home, CLAIM_MS),
                        rules,
                        attempt.clone(),
                        Duration::from_millis(state.settings.redis.timeout_ms),
                    )
                    .await?;
                state
                    .store
                    .after_home(&id, split, rules, &attempt, verdict)
                    .await
            })
            .await;
        permit.record(started.elapsed());
        drop(permit);
        let bought = bought?;
        if bought == BucketPurchase::SoldOut {
            state.sold_out.mark(&state.store, &id, SPLIT_BUYERS_VERSION);
        }
        return Ok(bucket_answer(bought));
    }
    let reservation = state
        .redis_guarded(state.reserver.reserve(
            &id,
            rules,
            attempt,
            Duration::from_millis(state.settings.redis.timeout_ms),
        ))
        .await?;
    let rtt = started.elapsed();
    permit.record(rtt);
    drop(permit);
    metrics::histogram!("flashgate_reserve_seconds").record(rtt.as_secs_f64());
    match &reservation {
        Reservation::Reserved(order) => {
            tracing::debug!(event = %id, user = %user, order = %order, "reserved");
        }
        Reservation::SoldOut(buyers_version) => {
            state.sold_out.mark(&state.store, &id, buyers_version);
        }
        Reservation::Replayed => {
            metrics::counter!("flashgate_signature_rejections_total", "reason" => "replayed")
                .increment(1);
        }
        _ => {}
    }
    Ok(reservation::answer(&reservation))
}

/// How long a claim waits for the purchase that wrote it (`core::stock_buckets`): well
/// past the calls' timeouts, so only a purchase that died leaves one to resolve.
const CLAIM_MS: i64 = 10_000;

/// The answer to a purchase over stock buckets.
fn bucket_answer(bought: BucketPurchase) -> Outcome {
    let verdict = match bought {
        BucketPurchase::Reserved(order) => Reservation::Reserved(order),
        BucketPurchase::AlreadyPurchased(order) => Reservation::AlreadyPurchased(order),
        BucketPurchase::InFlight => {
            return Outcome::Busy {
                retry_after_secs: 1,
            }
        }
        BucketPurchase::SoldOut => Reservation::SoldOut(String::new()),
        BucketPurchase::RateLimited(ms) => Reservation::RateLimited(ms),
        BucketPurchase::Replayed => {
            metrics::counter!("flashgate_signature_rejections_total", "reason" => "replayed")
                .increment(1);
            Reservation::Replayed
        }
        BucketPurchase::NoEvent => Reservation::NoEvent,
    };
    reservation::answer(&verdict)
}

/// A token of the process's purchase bucket, or the seconds until one.
fn bucket_token(bucket: &governor::DefaultDirectRateLimiter) -> Result<(), u64> {
    // The bucket's own clock: a new one would probe the CPU (CPUID, a trap to the
    // hypervisor in a VM) on every refusal, when the bucket is busiest.
    bucket.check().map_err(|not_until| {
        not_until
            .wait_time_from(governor::clock::Clock::now(bucket.clock()))
            .as_secs()
    })
}

/// `GET /api/events/{event_id}/order`.
pub(crate) async fn order(
    State(state): State<Arc<AppState>>,
    EventIdPath(id): EventIdPath,
    edge: EdgeRequest,
) -> Result<Response, ApiError> {
    let user = edge.user()?;
    // No such event: the user has no order there, and the answer says why.
    let Ok(id) = EventId::parse(&id) else {
        return Ok(respond(&Outcome::NoOrderNoEvent));
    };
    // The event's split says where the user's order lives; an event not found (or not
    // read) has one bucket, where an order left of it would be.
    let (split, missing) = match event_meta(&state, &id).await {
        Ok(meta) => (meta.split(), false),
        Err(e) => {
            let split = Split {
                total: 0,
                buckets: 1,
            };
            (
                split,
                matches!(e, ApiError::Outcome(Outcome::EventNotFound)),
            )
        }
    };
    let found = state
        .redis(state.store.order_status(&id, split, user))
        .await?;
    Ok(respond(&match found {
        Some((status, order_id)) => Outcome::Order { status, order_id },
        None if missing => Outcome::NoOrderNoEvent,
        None => Outcome::NoOrder,
    }))
}

/// `GET /api/events/{event_id}/buyers` (the edge only, signed without a user): a filter
/// of the event's buyers (`flashgate_core::buyers`), which the edge keeps with its
/// sold-out mark so a buyer whose order another isolate saw is answered
/// `already_purchased` by the origin, not `sold_out` by the edge. `filter` is `null`
/// past [`MAX_BUYERS_KEPT`](super::sold_out::MAX_BUYERS_KEPT) buyers.
pub(crate) async fn buyers(
    State(state): State<Arc<AppState>>,
    EventIdPath(id): EventIdPath,
    _edge: EdgeRequest,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = parse_event(&id)?;
    let found = state
        .redis(state.store.buyers(&id, super::sold_out::MAX_BUYERS_KEPT))
        .await?;
    Ok(Json(match found {
        Some((_, buyers)) => serde_json::json!({
            "event_id": id.as_str(),
            "buyers": buyers.len(),
            "filter": BuyerFilter::of(buyers.keys().map(String::as_str)).encode(),
        }),
        None => serde_json::json!({"event_id": id.as_str(), "buyers": null, "filter": null}),
    }))
}
