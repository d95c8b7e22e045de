//! What an origin of this version does with what an earlier one left in Redis.

use crate::helpers::*;
use flashgate_core::ids::EventId;
use flashgate_origin::kafka::OrderMessage;
use std::collections::HashMap;
use std::time::Duration;

/// Outbox entries of a field each, as reserve.lua wrote them before 2026-12-03, go to the
/// orders topic as the same orders as the entries written now, and leave the outbox's
/// count of reservations waiting right.
#[tokio::test]
async fn entries_left_by_the_earlier_reserve_script_reach_the_topic() {
    let app = spawn_app(generous()).await;
    app.live_event("upgrade", 5).await;
    let id = EventId::parse("upgrade").expect("event id");
    let earlier = unique("o");
    let _: String = redis::cmd("XADD")
        .arg(app.store.keys(&id).outbox())
        .arg("*")
        .arg(&[
            ("order_id", earlier.as_str()),
            ("user_id", "before"),
            ("reserved_at", "1764700000000"),
            ("unit_no", "5"),
            ("room_position", "12"),
        ])
        .query_async(&mut app.store.conn())
        .await
        .expect("an entry of the earlier layout");
    let now = app.purchase("upgrade", "after").await;
    assert_eq!(now.status, 202, "{}", now.body);
    let current = now.body["order_id"].as_str().expect("order id").to_owned();

    let orders = on_the_topic(&app, &[&earlier, &current]).await;
    let old = &orders[&earlier];
    assert_eq!(
        (old.event_id.as_str(), old.user_id.as_str(), old.reserved_at),
        ("upgrade", "before", 1_764_700_000_000)
    );
    assert_eq!(
        (old.unit_no, old.room_position, &old.client_net),
        (Some(5), Some(12), &None)
    );
    let new = &orders[&current];
    assert_eq!(
        (new.event_id.as_str(), new.user_id.as_str()),
        ("upgrade", "after")
    );
    // Units 1 to 5, sold from the highest (core::fence): the first sale takes unit 5.
    assert_eq!((new.unit_no, new.room_position), (Some(5), None));
    // The earlier entry was never counted as reserved here: once the outbox is empty, the
    // relayed count starts again from what was reserved, and nothing waits.
    let k = app.store.keys(&id);
    eventually("the outbox empties", 30, || async {
        app.store.waiting(&k).await.ok() == Some(0)
    })
    .await;
    assert_eq!(reserved_and_relayed(&app, &k).await, (1, 1));
    app.stop().await;
}

/// The orders of `ids` as they reach the orders topic (within a minute).
async fn on_the_topic(app: &TestApp, ids: &[&str]) -> HashMap<String, OrderMessage> {
    use rdkafka::Message;
    let consumer = orders_consumer(app);
    let mut found = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while ids.iter().any(|id| !found.contains_key(*id)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "found only {found:?}"
        );
        if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await {
            for order in orders_in(m.payload()) {
                if ids.contains(&order.order_id.as_str()) {
                    found.insert(order.order_id.clone(), order);
                }
            }
        }
    }
    found
}
