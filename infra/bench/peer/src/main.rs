//! `fg-peer`: the original design's purchase, as a peer for `./dev bench peer`.
//!
//! Bench code, not product. It does for one purchase what the design flashgate replaces
//! did, with the crates and runtime flashgate uses, so that the two can be measured on one
//! stack:
//!
//! 1. check the bearer JWT (HS256, `core::jwt`, as the edge does): 401 without a valid one;
//! 2. `DECR` the product's stock in Redis; below zero, `INCR` it back and answer 409;
//! 3. queue `{userId, productId}` to the orders topic (librdkafka sends it in the
//!    background, as an async producer does) and answer 202.
//!
//! None of flashgate's guarantees: no one-order-per-user, no per-user window, no replay
//! guard, and an order lost with the producer's queue is a 202 that never becomes a row.
//!
//! Settings (environment): `PEER_LISTEN` (127.0.0.1:8090), `PEER_REDIS_URL`,
//! `PEER_KAFKA_BROKERS`, `PEER_TOPIC`, `PEER_AUTH_SECRET`. The stock of product `P` is the
//! Redis key `peer:{P}:stock`, set by whoever runs the sale. `GET /healthz` answers the
//! number of messages the producer still holds, so a bench can wait until it is 0.

use anyhow::Context;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use flashgate_core::jwt;
use flashgate_core::keyring::KeyRing;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use serde_json::json;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

// The origin's allocator, so that allocation costs the two the same.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Peer {
    keys: KeyRing,
    redis: ConnectionManager,
    producer: ThreadedProducer<DefaultProducerContext>,
    topic: String,
}

fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set"))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, Json(body)).into_response()
}

async fn purchase(
    State(peer): State<Arc<Peer>>,
    Path(product): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(claims) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(jwt::bearer)
        .and_then(|token| jwt::verify(token, &peer.keys, now_ms()).ok())
    else {
        return answer(
            StatusCode::UNAUTHORIZED,
            json!({"error": "unauthenticated"}),
        );
    };
    let user = claims.sub.as_str();
    let stock = format!("peer:{{{product}}}:stock");
    let mut redis = peer.redis.clone();
    let busy = || answer(StatusCode::SERVICE_UNAVAILABLE, json!({"status": "busy"}));
    let left: i64 = match redis.decr(&stock, 1).await {
        Ok(left) => left,
        Err(_) => return busy(),
    };
    if left < 0 {
        let _: redis::RedisResult<i64> = redis.incr(&stock, 1).await;
        return answer(StatusCode::CONFLICT, json!({"status": "sold_out"}));
    }
    let order = json!({"userId": user, "productId": product}).to_string();
    match peer
        .producer
        .send(BaseRecord::to(&peer.topic).key(user).payload(&order))
    {
        Ok(()) => answer(StatusCode::ACCEPTED, json!({"status": "queued"})),
        Err(_) => {
            // The producer's queue is full: give the unit back.
            let _: redis::RedisResult<i64> = redis.incr(&stock, 1).await;
            busy()
        }
    }
}

async fn healthz(State(peer): State<Arc<Peer>>) -> String {
    peer.producer.in_flight_count().to_string()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let listen = std::env::var("PEER_LISTEN").unwrap_or_else(|_| "127.0.0.1:8090".into());
    let client = redis::Client::open(env("PEER_REDIS_URL")?).context("PEER_REDIS_URL")?;
    let redis = ConnectionManager::new(client)
        .await
        .context("cannot reach Redis")?;
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", env("PEER_KAFKA_BROKERS")?)
        .set("acks", "all")
        // As flashgate's relay: the shopper already has the 202.
        .set("linger.ms", "10")
        .set("message.timeout.ms", "10000")
        .create()
        .context("cannot create the Kafka producer")?;
    let peer = Arc::new(Peer {
        keys: KeyRing::single(env("PEER_AUTH_SECRET")?.as_bytes()),
        redis,
        producer,
        topic: env("PEER_TOPIC")?,
    });
    let app = Router::new()
        .route("/api/events/{product}/purchase", post(purchase))
        .route("/healthz", get(healthz))
        .with_state(peer);
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    axum::serve(listener, app).await?;
    Ok(())
}
