//! The origin, its relay, the consumer and `reconcile` on a Redis Cluster (3 masters, 3
//! replicas, started by `./dev test`), with events whose keys live on different masters.

use crate::consumer::{order_status, start_consumer};
use crate::helpers::*;
use crate::reconcile::reconcile_command;
use figment::Figment;
use flashgate_core::ids::EventId;
use flashgate_origin::cmd::reconcile::reconcile;
use flashgate_origin::config::Settings;
use flashgate_origin::db;
use flashgate_origin::redis::Store;
use redis::Value;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Test settings with the cluster's nodes as `redis_url`.
pub fn cluster_settings(extra: Figment) -> Settings {
    settings(
        Figment::new()
            .merge(("redis_url", service("FLASHGATE_TEST_REDIS_CLUSTER_URLS")))
            .merge(extra),
    )
}

/// The address of the master that holds `key`'s slot.
pub async fn master_of(store: &Store, key: &str) -> String {
    let mut conn = store.conn();
    let slot: i64 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query_async(&mut conn)
        .await
        .expect("keyslot");
    let ranges: Vec<Vec<Value>> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut conn)
        .await
        .expect("slots");
    let int = |v: &Value| redis::from_redis_value::<i64>(v).expect("a number");
    let range = ranges
        .iter()
        .find(|r| (int(&r[0])..=int(&r[1])).contains(&slot))
        .expect("every slot is served");
    let master: Vec<Value> = redis::from_redis_value(&range[2]).expect("a node");
    let host: String = redis::from_redis_value(&master[0]).expect("a host");
    format!("{host}:{}", int(&master[1]))
}

/// `n` event ids whose keys live on `n` different masters, each event's keys all on its
/// master (one hash tag).
async fn events_on_different_masters(store: &Store, n: usize) -> Vec<String> {
    let mut by_master: HashMap<String, String> = HashMap::new();
    for i in 0..64 {
        let id = format!("sale-{i}");
        let k = store.keys(&EventId::parse(&id).expect("id"));
        let master = master_of(store, &k.stock()).await;
        for key in [k.info(), k.orders(), k.status(), k.outbox(), k.stats()] {
            assert_eq!(master_of(store, &key).await, master, "{key}");
        }
        by_master.entry(master).or_insert(id);
        if by_master.len() == n {
            break;
        }
    }
    assert_eq!(by_master.len(), n, "the events spread over {n} masters");
    by_master.into_values().collect()
}

#[tokio::test]
async fn on_a_cluster_concurrent_attempts_sell_exactly_each_events_stock_once() {
    let app = Arc::new(spawn_with_settings(cluster_settings(generous())).await);
    let events = events_on_different_masters(&app.store, 3).await;
    // 9,000 attempts over three events; 50,004 with FLASHGATE_LONG=1.
    let long = std::env::var("FLASHGATE_LONG").is_ok_and(|v| v == "1");
    let (stock, users, attempts_each) = if long {
        (1_000u64, 5_556usize, 3usize)
    } else {
        (200u64, 1_000usize, 3usize)
    };
    for e in &events {
        app.live_event(e, stock).await;
    }
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = Vec::new();
    for round in 0..attempts_each {
        for u in 0..users {
            for e in &events {
                let (app, sem, e) = (app.clone(), sem.clone(), e.clone());
                tasks.push(tokio::spawn(async move {
                    let _permit = sem.acquire().await.expect("semaphore");
                    let user = format!("user{}", (u * 7 + round * 13) % users);
                    let r = app.purchase(&e, &user).await;
                    let order = r.body["order_id"].as_str().map(str::to_owned);
                    (e, user, r.status, order)
                }));
            }
        }
    }
    let mut queued: HashMap<String, HashSet<String>> = HashMap::new();
    let mut buyers = HashSet::new();
    for t in tasks {
        let (event, user, status, order) = t.await.expect("task");
        // 429 is a limiter (admission bucket or adaptive limit) refusing an attempt.
        assert!(
            matches!(status, 200 | 202 | 409 | 429),
            "unexpected {status}"
        );
        if status == 202 {
            assert!(buyers.insert((event.clone(), user)), "a user got two 202s");
            let order = order.expect("order id");
            queued.entry(event).or_default().insert(order);
        }
    }
    for e in &events {
        assert_eq!(queued.get(e).map_or(0, HashSet::len) as u64, stock, "{e}");
        let stats = app.stats(e).await;
        assert_eq!(
            (stats["reserved"].as_u64(), stats["stock_left"].as_u64()),
            (Some(stock), Some(0)),
            "{e}"
        );
    }

    // Every reservation of every event reaches the topic.
    let all: HashSet<String> = queued.values().flatten().cloned().collect();
    every_order_reaches_the_topic(&app, &all).await;
    let app = Arc::try_unwrap(app).ok().expect("no other owners");
    app.stop().await;
}

#[tokio::test]
async fn on_a_cluster_each_events_orders_become_rows_and_refused_ones_give_their_unit_back() {
    let db = fresh_database().await;
    // Each reservation also waits for its master's replica, on the event's own master.
    let app = spawn_with_settings(cluster_settings(
        Figment::new()
            .merge(("user_limit", 1000))
            .merge(("redis_wait_replicas", 1))
            .merge(("redis_wait_timeout_ms", 500)),
    ))
    .await;
    let events = events_on_different_masters(&app.store, 3).await;
    let pool = db::connect(&db).await.expect("db");
    sqlx::query("INSERT INTO blocked_users (user_id, reason) VALUES ('shady', 'fraud')")
        .execute(&pool)
        .await
        .expect("block");
    let running = start_consumer(&app, &pool);
    // The masters forget their scripts, as after a restart or a failover: the reserve
    // pipeline (script and WAIT) loads its script again.
    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async::<()>(&mut app.store.conn())
        .await
        .expect("script flush");
    for e in &events {
        app.live_event(e, 5).await;
        for user in ["buyer", "shady"] {
            let r = app.purchase(e, user).await;
            assert_eq!(r.status, 202, "{e} {user}: {}", r.body);
        }
    }
    for e in &events {
        eventually("order confirmed", 60, || async {
            order_status(&app, e, "buyer").await["status"] == "confirmed"
        })
        .await;
        eventually("order failed", 60, || async {
            order_status(&app, e, "shady").await["status"] == "failed"
        })
        .await;
        let stats = app.stats(e).await;
        assert_eq!(
            (
                stats["stock_left"].as_u64(),
                stats["confirmed"].as_u64(),
                stats["compensated"].as_u64()
            ),
            (Some(4), Some(1), Some(1)),
            "{e}: {stats}"
        );
    }
    let rows = count(&pool, "SELECT COUNT(*) FROM orders WHERE user_id = 'buyer'").await;
    assert_eq!(rows, events.len() as i64);
    // Every order was relayed: the backlog, read at each event's master, is empty.
    let ids: Vec<EventId> = events
        .iter()
        .map(|e| EventId::parse(e).expect("event id"))
        .collect();
    let backlog = app.store.outbox_backlog(&ids).await;
    assert_eq!(backlog.expect("the backlog of every master"), 0);
    assert_eq!(
        app.metric("flashgate_reservations_unreplicated_total")
            .await,
        0.0
    );
    // The admin list walks the event index, a key of its own beside the events' slots.
    let listed = reply(
        app.http
            .get(format!("{}/admin/events", app.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("origin answers"),
    )
    .await;
    let ids: HashSet<&str> = listed.body["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["event_id"].as_str())
        .collect();
    assert_eq!(ids, events.iter().map(String::as_str).collect());
    running.stop().await;

    // Reconciliation agrees, in process and as the command run on the cluster's nodes.
    for e in &events {
        let id = EventId::parse(e).expect("id");
        let report = reconcile(&app.store, &pool, &id, now_ms(), 0)
            .await
            .expect("reconcile");
        assert!(report.clean(), "{}", report.render(&id));
    }
    let out = reconcile_command(&app, &db, &events[0], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("OK: Redis and the orders table agree"),
        "{stdout}"
    );
    app.stop().await;
}

#[tokio::test]
async fn on_a_cluster_strict_mode_relays_each_events_orders_once_replicated() {
    // The relay's WAIT follows its reads of each event's outbox on that event's master.
    let app = spawn_with_settings(cluster_settings(
        generous()
            .merge(("redis_wait_replicas", 1))
            .merge(("redis_wait_timeout_ms", 500))
            .merge(("redis_wait_strict", true)),
    ))
    .await;
    let events = events_on_different_masters(&app.store, 3).await;
    let mut orders = HashSet::new();
    for e in &events {
        app.live_event(e, 5).await;
        for u in 0..5 {
            let user = format!("u{u}");
            let mut r = app.purchase(e, &user).await;
            // A 503 (no replica in time on a loaded machine) stands for an order the
            // buyer's retry gets back.
            for _ in 0..20 {
                if r.status != 503 {
                    break;
                }
                r = app.purchase(e, &user).await;
            }
            assert!(matches!(r.status, 200 | 202), "{}: {}", r.status, r.body);
            orders.insert(r.body["order_id"].as_str().expect("order").to_owned());
        }
    }
    every_order_reaches_the_topic(&app, &orders).await;
    app.stop().await;
}
