//! The order consumer against real MariaDB, Redis and broker.

mod common;

use common::*;
use figment::Figment;
use flashgate_core::ids::{EventId, UserId};
use flashgate_origin::consumer::{connect_db, write_batch, Order, OrderConsumer};
use flashgate_origin::kafka::OrderMessage;
use tokio::sync::watch;

fn order(id: &str, event: &str, user: &str) -> Order {
    let m = OrderMessage {
        order_id: id.into(),
        event_id: event.into(),
        user_id: user.into(),
        reserved_at: now_ms(),
    };
    Order::parse(&serde_json::to_vec(&m).expect("json")).expect("valid order")
}

#[tokio::test]
async fn batches_are_idempotent() {
    let pool = connect_db(&fresh_database().await).await.expect("db");
    let batch = vec![order("o1", "e", "a"), order("o2", "e", "b")];
    assert_eq!(write_batch(&pool, &batch).await.expect("write").len(), 2);
    assert_eq!(write_batch(&pool, &batch).await.expect("rewrite").len(), 2);
    let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM orders")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(rows, 2);
    // A second order for the same user and event is refused by the unique key.
    let present = write_batch(&pool, &[order("o3", "e", "a")])
        .await
        .expect("write");
    assert!(present.is_empty());
}

#[test]
fn malformed_messages_are_not_orders() {
    for bad in [
        &b"not json"[..],
        br#"{"order_id":"x"}"#,
        br#"{"order_id":"a b","event_id":"e","user_id":"u","reserved_at":1}"#,
    ] {
        assert!(Order::parse(bad).is_none());
    }
}

#[tokio::test]
async fn a_purchase_becomes_a_confirmed_row_and_a_refused_one_is_compensated() {
    let db = fresh_database().await;
    let app = spawn_app(Figment::new().merge(("mysql_url", db.clone()))).await;
    app.live_event("sale", 5).await;
    let pool = connect_db(&db).await.expect("db");
    let consumer = OrderConsumer::new(
        &app.settings.kafka_brokers,
        &app.settings.orders_topic,
        pool.clone(),
        app.store.clone(),
        app.settings.consumer.clone(),
    )
    .expect("consumer");
    let (stop, rx) = watch::channel(false);
    let running = tokio::spawn(consumer.run(rx));

    let r = app.purchase("sale", "buyer").await;
    assert_eq!(r.status, 202, "{}", r.body);
    let order_id = r.body["order_id"].as_str().expect("order").to_owned();
    eventually("order confirmed", 60, || async {
        let s = app
            .signed("GET", "/api/events/sale/order", Some("buyer"), b"")
            .await;
        s.body["status"] == "confirmed"
    })
    .await;
    let (event, user, status): (String, String, String) =
        sqlx::query_as("SELECT event_id, user_id, status FROM orders WHERE order_id = ?")
            .bind(&order_id)
            .fetch_one(&pool)
            .await
            .expect("row");
    assert_eq!(
        (event.as_str(), user.as_str(), status.as_str()),
        ("sale", "buyer", "confirmed")
    );

    // The database already holds an order for this user (written behind Redis' back):
    // the new reservation cannot become an order, so it fails and its unit goes back.
    sqlx::query("INSERT INTO orders (order_id, event_id, user_id, status, reserved_at) VALUES ('manual', 'sale', 'twin', 'confirmed', NOW(3))")
        .execute(&pool)
        .await
        .expect("insert");
    let r = app.purchase("sale", "twin").await;
    assert_eq!(r.status, 202);
    eventually("order failed", 60, || async {
        let s = app
            .signed("GET", "/api/events/sale/order", Some("twin"), b"")
            .await;
        s.body["status"] == "failed"
    })
    .await;
    let stats = app.stats("sale").await;
    assert_eq!(stats["stock_left"], 4, "{stats}");
    assert_eq!(
        (
            stats["confirmed"].as_u64(),
            stats["failed"].as_u64(),
            stats["compensated"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
    // Compensation is keyed by order id: doing it again gives nothing back.
    let twin_order = r.body["order_id"].as_str().expect("order");
    let again = app
        .store
        .compensate(
            &EventId::parse("sale").expect("id"),
            &UserId::parse("twin").expect("id"),
            twin_order,
        )
        .await
        .expect("redis");
    assert!(!again);
    assert_eq!(app.stats("sale").await["stock_left"], 4);

    stop.send(true).expect("stop");
    running.await.expect("task").expect("consumer ran");
    app.stop().await;
}
