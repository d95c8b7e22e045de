//! The order consumer against real MariaDB, Redis and broker.

use crate::helpers::*;
use figment::Figment;
use flashgate_core::ids::{EventId, UserId};
use flashgate_origin::cmd::reconcile::reconcile;
use flashgate_origin::consume::{write_batch, Consumer, Fate, Order};
use flashgate_origin::db;
use flashgate_origin::kafka::client_config;
use flashgate_origin::shutdown::{self, Trigger};
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::Message;
use std::time::Duration;

fn order(id: &str, event: &str, user: &str) -> Order {
    Order::parse(&serde_json::to_vec(&message(id, event, user)).expect("json"))
        .expect("valid order")
}

pub struct Running {
    stop: Trigger,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    pub async fn stop(self) {
        self.stop.fire();
        self.task.await.expect("task").expect("consumer ran");
    }
}

pub fn start_consumer(app: &TestApp, db: &sqlx::MySqlPool) -> Running {
    let consumer = Consumer::new(
        &app.settings.kafka.brokers,
        &app.settings.kafka.orders_topic,
        db.clone(),
        app.store.clone(),
        app.settings.consumer.clone(),
        app.settings.purchase.user_window_ms,
    )
    .expect("consumer");
    let (stop, rx) = shutdown::channel();
    Running {
        stop,
        task: tokio::spawn(consumer.run(rx)),
    }
}

pub async fn order_status(app: &TestApp, event: &str, user: &str) -> serde_json::Value {
    app.signed(
        "GET",
        &format!("/api/events/{event}/order"),
        Some(user),
        b"",
    )
    .await
    .body
}

fn numbered(id: &str, event: &str, user: &str, unit: u64) -> Order {
    let m = flashgate_origin::kafka::OrderMessage {
        unit_no: Some(unit),
        ..message(id, event, user)
    };
    Order::parse(&serde_json::to_vec(&m).expect("json")).expect("valid order")
}

#[tokio::test]
async fn a_unit_sold_twice_is_refused_as_taken_and_keeps_that_fate() {
    let pool = db::connect(&fresh_database().await).await.expect("db");
    let mut db = pool.acquire().await.expect("connection");
    let first = write_batch(&mut db, &[numbered("o1", "e", "a", 7)])
        .await
        .expect("write");
    assert_eq!(first["o1"], Fate::Confirmed);
    // Unit 7 again (a promoted replica sold it again), in a batch with a fresh unit, and
    // by its own holder's second order: refused as taken (its unit stays sold), whoever
    // the buyer; another event's unit 7 is another unit.
    let batch = [
        numbered("o2", "e", "b", 7),
        numbered("o3", "e", "c", 6),
        numbered("o4", "e", "a", 7),
        numbered("o5", "f", "b", 7),
    ];
    let fates = write_batch(&mut db, &batch).await.expect("write");
    assert_eq!(fates["o2"], Fate::Failed("unit_taken"));
    assert_eq!(fates["o3"], Fate::Confirmed);
    assert_eq!(fates["o4"], Fate::Failed("unit_taken"));
    assert_eq!(fates["o5"], Fate::Confirmed);
    // A buyer's second order on a free unit is a duplicate (its unit goes back).
    let dup = write_batch(&mut db, &[numbered("o6", "e", "c", 5)])
        .await
        .expect("write");
    assert_eq!(dup["o6"], Fate::Failed("duplicate"));
    assert_eq!(write_batch(&mut db, &batch).await.expect("replay"), fates);
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM orders").await, 3);
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM failed_orders WHERE reason = 'unit_taken'"
        )
        .await,
        2
    );
}

#[tokio::test]
async fn batches_are_idempotent_and_keep_their_fate() {
    let pool = db::connect(&fresh_database().await).await.expect("db");
    let mut db = pool.acquire().await.expect("connection");
    let batch = vec![order("o1", "e", "a"), order("o2", "e", "b")];
    let first = write_batch(&mut db, &batch).await.expect("write");
    assert!(first.values().all(|f| *f == Fate::Confirmed));
    assert_eq!(write_batch(&mut db, &batch).await.expect("rewrite"), first);
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM orders").await, 2);
    // A second order for the same user and event is refused by the unique key.
    let dup = write_batch(&mut db, &[order("o3", "e", "a")])
        .await
        .expect("write");
    assert_eq!(dup["o3"], Fate::Failed("duplicate"));
    // A confirmed order stays confirmed when replayed after its user was blocked.
    sqlx::query("INSERT INTO blocked_users (user_id) VALUES ('a')")
        .execute(&pool)
        .await
        .expect("block");
    assert_eq!(write_batch(&mut db, &batch).await.expect("replay"), first);
    let blocked = write_batch(&mut db, &[order("o4", "f", "a")])
        .await
        .expect("write");
    assert_eq!(blocked["o4"], Fate::Failed("blocked"));
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM failed_orders").await, 2);
    // A failed order stays failed when replayed after its user was unblocked.
    sqlx::query("DELETE FROM blocked_users WHERE user_id = 'a'")
        .execute(&pool)
        .await
        .expect("unblock");
    let replay = write_batch(&mut db, &[order("o4", "f", "a")])
        .await
        .expect("replay");
    assert_eq!(replay["o4"], Fate::Failed("blocked"));
    // One batch holding two orders of one buyer, beside a new and a replayed order: the
    // first of the two is the order, the second a duplicate.
    let mixed = write_batch(
        &mut db,
        &[
            order("o5", "g", "c"),
            order("o6", "g", "c"),
            order("o7", "g", "d"),
            order("o1", "e", "a"),
        ],
    )
    .await
    .expect("write");
    assert_eq!(mixed["o5"], Fate::Confirmed);
    assert_eq!(mixed["o6"], Fate::Failed("duplicate"));
    assert_eq!(mixed["o7"], Fate::Confirmed);
    assert_eq!(mixed["o1"], Fate::Confirmed);
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM orders").await, 4);
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM failed_orders").await, 3);
    // Ids are case-sensitive, as in Redis: two buyers, two orders.
    let cased = write_batch(
        &mut db,
        &[order("o8", "h", "CaseX"), order("o9", "h", "casex")],
    )
    .await
    .expect("write");
    assert_eq!(cased["o8"], Fate::Confirmed);
    assert_eq!(cased["o9"], Fate::Confirmed);
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM orders").await, 6);
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
async fn purchases_become_rows_and_refused_orders_give_their_unit_back() {
    let db = fresh_database().await;
    let app = spawn_app(Figment::new().merge(("user_limit", 1000))).await;
    app.live_event("sale", 5).await;
    let pool = db::connect(&db).await.expect("db");
    let running = start_consumer(&app, &pool);

    let r = app.purchase("sale", "buyer").await;
    assert_eq!(r.status, 202, "{}", r.body);
    let order_id = r.body["order_id"].as_str().expect("order").to_owned();
    eventually("order confirmed", 60, || async {
        order_status(&app, "sale", "buyer").await["status"] == "confirmed"
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
    // A confirmed order is a row of record: compensation refuses it (no unit sold twice).
    let stock_before = app.stats("sale").await["stock_left"].clone();
    assert!(!app
        .store
        .compensate(
            &EventId::parse("sale").expect("id"),
            &UserId::parse("buyer").expect("id"),
            &order_id,
            give_back(1),
            app.settings.purchase.user_window_ms,
        )
        .await
        .expect("redis"));
    assert_eq!(app.stats("sale").await["stock_left"], stock_before);
    assert_eq!(
        order_status(&app, "sale", "buyer").await["status"],
        "confirmed"
    );

    // A blocked account: the order fails, the unit goes back, and once unblocked the user
    // can buy again while the sale is live.
    sqlx::query("INSERT INTO blocked_users (user_id, reason) VALUES ('shady', 'fraud')")
        .execute(&pool)
        .await
        .expect("block");
    let r = app.purchase("sale", "shady").await;
    assert_eq!(r.status, 202);
    let failed_order = r.body["order_id"].as_str().expect("order").to_owned();
    eventually("order failed", 60, || async {
        order_status(&app, "sale", "shady").await["status"] == "failed"
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
    let (sale, shady) = (
        EventId::parse("sale").expect("id"),
        UserId::parse("shady").expect("id"),
    );
    assert!(!app
        .store
        .compensate(
            &sale,
            &shady,
            &failed_order,
            give_back(1),
            app.settings.purchase.user_window_ms
        )
        .await
        .expect("redis"));
    assert_eq!(app.stats("sale").await["stock_left"], 4);

    sqlx::query("DELETE FROM blocked_users WHERE user_id = 'shady'")
        .execute(&pool)
        .await
        .expect("unblock");
    let again = app.purchase("sale", "shady").await;
    assert_eq!(again.status, 202, "{}", again.body);
    eventually("second order confirmed", 60, || async {
        order_status(&app, "sale", "shady").await["status"] == "confirmed"
    })
    .await;

    // The consumer reports its lag (the same process serves /metrics here).
    eventually("a lag gauge", 30, || async {
        let m = app.http.get(format!("{}/metrics", app.base)).send().await;
        match m {
            Ok(r) => r
                .text()
                .await
                .unwrap_or_default()
                .contains("flashgate_consumer_lag"),
            Err(_) => false,
        }
    })
    .await;

    // Reconciliation agrees with all of this.
    let report = reconcile(&app.store, &pool, &sale, now_ms(), 0)
        .await
        .expect("reconcile");
    assert!(report.clean(), "{}", report.render(&sale));

    running.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_poison_message_goes_to_the_dead_letter_topic_and_the_rest_flow() {
    let db = fresh_database().await;
    let app = spawn_app(Figment::new()).await;
    let pool = db::connect(&db).await.expect("db");
    let running = start_consumer(&app, &pool);
    let good = serde_json::to_vec(&message("good-1", "dlq", "u1")).expect("json");
    // A pack with a bad order between two good ones: only the bad one is a dead letter.
    let pack = serde_json::to_vec(&serde_json::json!([
        message("good-2", "dlq", "u2"),
        {"order_id": "bad-3", "event_id": "dlq"},
        message("good-4", "dlq", "u4"),
    ]))
    .expect("json");
    produce(
        &app.settings.kafka.brokers,
        &app.settings.kafka.orders_topic,
        vec![b"{not an order".to_vec(), good, pack],
    )
    .await;
    eventually("the good orders are written", 60, || async {
        count(
            &pool,
            "SELECT COUNT(*) FROM orders WHERE order_id IN ('good-1', 'good-2', 'good-4')",
        )
        .await
            == 3
    })
    .await;
    let dlq: StreamConsumer = client_config(&app.settings.kafka.brokers)
        .set("group.id", unique("dlq-check-"))
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("consumer");
    dlq.subscribe(&[&format!("{}.dlq", app.settings.kafka.orders_topic)])
        .expect("subscribe");
    // Two letters (the dead-letter topic's partitions may hand them over in any order).
    let mut letters = Vec::new();
    for _ in 0..2 {
        let letter = tokio::time::timeout(Duration::from_secs(60), dlq.recv())
            .await
            .expect("a dead letter arrives")
            .expect("message");
        let letter: serde_json::Value =
            serde_json::from_slice(letter.payload().expect("payload")).expect("json");
        letters.push(letter);
    }
    letters.sort_by_key(|l| l["reason"].as_str().map(str::len));
    assert_eq!(letters[0]["reason"], "not a valid order");
    let bad: serde_json::Value =
        serde_json::from_str(letters[0]["payload"].as_str().expect("the order")).expect("json");
    assert_eq!(bad["order_id"], "bad-3");
    assert_eq!(letters[1]["reason"], "not a valid order message");
    assert_eq!(letters[1]["payload"], "{not an order");
    running.stop().await;
    app.stop().await;
}

/// With the rate cap far below what arrives, the consumer keeps the cap and pauses its
/// partitions instead of reading ahead without bound; nothing is lost meanwhile.
#[tokio::test]
async fn a_slow_writer_pauses_the_partitions_and_keeps_the_rate_cap() {
    let db = fresh_database().await;
    // Batches of 20 at 15 orders/s: each batch takes the writer over a second, longer than
    // the reader waits before it pauses.
    let app = spawn_app(
        Figment::new()
            .merge(("consumer.batch_size", 20))
            .merge(("consumer.max_rate", 15)),
    )
    .await;
    let pool = db::connect(&db).await.expect("db");
    let n = 80;
    let messages = (0..n)
        .map(|i| serde_json::to_vec(&message(&format!("slow-{i}"), "slow", &format!("u{i}"))))
        .collect::<Result<Vec<_>, _>>()
        .expect("json");
    produce(
        &app.settings.kafka.brokers,
        &app.settings.kafka.orders_topic,
        messages,
    )
    .await;
    let running = start_consumer(&app, &pool);
    let rows = || count(&pool, "SELECT COUNT(*) FROM orders WHERE event_id = 'slow'");
    eventually("the first rows", 60, || async { rows().await > 0 }).await;
    let first = std::time::Instant::now();
    let at_first = rows().await;
    eventually("every row", 120, || async { rows().await == n }).await;
    // The cap is a floor on time: the rest took at least (rest - one batch) / rate.
    let rest = (n - at_first - 20).max(0) as f64;
    assert!(
        first.elapsed().as_secs_f64() >= rest / 15.0,
        "{} rows in {:?}: over the cap of 15/s",
        n - at_first,
        first.elapsed()
    );
    let pauses = app.metric("flashgate_consumer_pauses_total").await;
    assert!(
        pauses >= 1.0,
        "the reader never paused:\n{}",
        app.metrics().await
    );
    running.stop().await;
    app.stop().await;
}

/// Topics never ask for more replicas than the cluster has: a clear refusal at start
/// rather than a topic the broker cannot place (the test broker is a single node).
#[tokio::test]
async fn a_topic_asks_for_no_more_replicas_than_the_cluster_has() {
    use flashgate_origin::kafka::{ensure_topic, ensure_topic_with, Replication, TopicSpec};
    let brokers = service("FLASHGATE_TEST_KAFKA_BROKERS");
    let spec = TopicSpec {
        partitions: 1,
        replication: Replication {
            factor: 2,
            min_insync: 0,
        },
    };
    let err = ensure_topic_with(&brokers, &unique("test-rf-"), &spec)
        .await
        .expect_err("one broker cannot hold two replicas");
    assert!(format!("{err:#}").contains("1 broker"), "{err:#}");
    let topic = unique("test-rf-");
    ensure_topic(&brokers, &topic, 1)
        .await
        .expect("automatic replication fits the cluster");
    // An existing topic is used as it is, whatever the replication asked for.
    ensure_topic_with(&brokers, &topic, &spec)
        .await
        .expect("an existing topic is used");
}
