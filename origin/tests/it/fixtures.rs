//! Fixtures that need no running origin: the services' URLs and secrets, fresh names and
//! databases, order messages, and reserve calls made directly. Leaf of the harness: the
//! origin's (`helpers`) and the servers' (`servers`) modules build on it.
use flashgate_origin::clock::{Clock, SystemClock};
use std::time::Duration;

pub const EDGE_SECRET: &str = "test-edge-secret-0123456789";
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// A service URL from the environment `./dev test` sets.
pub fn service(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: integration tests need the services that `./dev test` starts")
    })
}

/// `prefix` and a new UUID: a name no other test uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::now_v7().simple())
}

/// Unix ms by the system clock.
pub fn now_ms() -> i64 {
    SystemClock.now_ms()
}

/// A fresh database on the test MariaDB; returns its URL.
pub async fn fresh_database() -> String {
    use sqlx::Connection;
    let server = service("FLASHGATE_TEST_MYSQL_URL");
    let name = unique("t_");
    let mut conn = sqlx::MySqlConnection::connect(&server)
        .await
        .expect("mariadb");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create database");
    format!("{}/{name}", server.trim_end_matches('/'))
}

/// The orders one message of the orders topic carries (the relay packs several).
pub fn orders_in(payload: Option<&[u8]>) -> Vec<flashgate_origin::kafka::OrderMessage> {
    flashgate_origin::kafka::unpack(payload.expect("payload"))
        .expect("an order message")
        .into_iter()
        .map(|v| serde_json::from_value(v).expect("an order"))
        .collect()
}

/// An order message as the relay writes it.
pub fn message(id: &str, event: &str, user: &str) -> flashgate_origin::kafka::OrderMessage {
    flashgate_origin::kafka::OrderMessage {
        order_id: id.into(),
        event_id: event.into(),
        user_id: user.into(),
        reserved_at: now_ms(),
        room_position: None,
        unit_no: None,
        client_net: None,
    }
}

/// The single number a `SELECT COUNT(*) …` answers.
pub async fn count(pool: &sqlx::MySqlPool, sql: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(sql).fetch_one(pool).await.expect("count");
    n
}

/// Produces raw payloads to `topic`, all acknowledged before it returns.
pub async fn produce(brokers: &str, topic: &str, payloads: Vec<Vec<u8>>) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = flashgate_origin::kafka::client_config(brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    for chunk in payloads.chunks(2000) {
        let sends = chunk.iter().map(|p| {
            let producer = producer.clone();
            async move {
                producer
                    .send(
                        FutureRecord::<(), _>::to(topic).payload(p),
                        Duration::from_secs(30),
                    )
                    .await
                    .map(|_| ())
                    .map_err(|(e, _)| e)
            }
        });
        for r in futures::future::join_all(sends).await {
            r.expect("produced");
        }
    }
}

/// Rules of a reserve call made now (`now`, unix ms) that leave room for many tries.
pub fn reserve_rules(now: i64) -> flashgate_origin::redis::ReserveRules {
    flashgate_origin::redis::ReserveRules {
        now,
        window_ms: 60_000,
        limit: 1000,
        replay_window_ms: 60_000,
    }
}

/// A purchase attempt of `user` signed now, with a new order id and signature.
pub fn new_attempt(user: &str) -> flashgate_origin::redis::Attempt {
    use flashgate_core::ids::{OrderId, UserId};
    flashgate_origin::redis::Attempt {
        user: UserId::parse(user).expect("user id"),
        new_order: OrderId::parse(&uuid::Uuid::now_v7().simple().to_string()).expect("order id"),
        signature: unique("sig"),
        signed_at: now_ms(),
        room_position: None,
        client_net: None,
    }
}
