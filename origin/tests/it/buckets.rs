//! Purchases over a hot event's stock buckets on a Redis Cluster (`core::stock_buckets`):
//! the home call, spills to the other buckets and the settle call, under concurrency and
//! with a claim left behind.

use crate::cluster::{cluster_settings, master_of};
use crate::consumer::{order_status, start_consumer};
use crate::helpers::*;
use figment::Figment;
use flashgate_core::ids::EventId;
use flashgate_core::stock_buckets::{home, units, Call, Decision};
use flashgate_origin::cmd::reconcile::reconcile;
use flashgate_origin::db;
use flashgate_origin::redis::{BucketPurchase, Split, Store};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

async fn cluster_store() -> Store {
    Store::connect(
        &service("FLASHGATE_TEST_REDIS_CLUSTER_URLS"),
        &unique("fgtest:"),
    )
    .await
    .expect("cluster")
}

/// An event id whose `n` stock buckets live on `n` different masters.
async fn event_over_masters(store: &Store, n: u16) -> EventId {
    for i in 0..256 {
        let id = EventId::parse(&format!("hot-{i}")).expect("event id");
        let mut masters = HashSet::new();
        for k in 0..n {
            masters.insert(master_of(store, &store.bucket_keys(&id, k).stock()).await);
        }
        if masters.len() == usize::from(n) {
            return id;
        }
    }
    panic!("no event id with its {n} buckets on {n} masters");
}

/// An event whose `total` units are split into `n` stock buckets on `n` masters.
async fn split_over_masters(store: &Store, total: u64, n: u16) -> (EventId, Split) {
    let split = Split { total, buckets: n };
    let id = event_over_masters(store, n).await;
    store.put_stock_buckets(&id, split).await.expect("put");
    (id, split)
}

/// `(order, user, unit)` of every reservation in the event's bucket outboxes.
async fn reservations(store: &Store, id: &EventId, split: Split) -> Vec<(String, String, u64)> {
    let mut all = Vec::new();
    for k in 0..split.buckets {
        let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(store.bucket_keys(id, k).outbox())
            .arg("-")
            .arg("+")
            .query_async(&mut store.conn())
            .await
            .expect("outbox");
        for e in reply.ids {
            // One field, a line per reservation of the call:
            // order|user|reserved_at|unit|position|network (serve/outbox_entry.rs).
            let packed = e.get::<String>("o").expect("the entry's field");
            for line in packed.split('\n') {
                let parts: Vec<&str> = line.split('|').collect();
                assert_eq!(parts.len(), 6, "{packed}");
                let unit: u64 = parts[3].parse().expect("unit");
                let range = units_of(split, k);
                assert!(
                    range.contains(&unit),
                    "unit {unit} outside bucket {k}'s range"
                );
                all.push((parts[0].to_owned(), parts[1].to_owned(), unit));
            }
        }
    }
    all
}

async fn mark(store: &Store, id: &EventId, n: u16, user: &str) -> Option<String> {
    let keys = store.bucket_keys(id, home(user, n));
    redis::cmd("HGET")
        .arg(keys.orders())
        .arg(user)
        .query_async(&mut store.conn())
        .await
        .expect("mark")
}

#[tokio::test]
async fn on_a_cluster_buckets_sell_their_stock_once_and_each_buyer_once() {
    let store = Arc::new(cluster_store().await);
    let n = 3;
    let (id, split) = split_over_masters(&store, 60, n).await;
    // Most buyers at home in bucket 0, so it runs out first and their purchases spill;
    // two concurrent attempts per buyer.
    let users: Vec<String> = (0..2000)
        .map(|i| format!("buyer{i}"))
        .filter(|u| home(u, n) == 0)
        .take(150)
        .chain(
            (0..2000)
                .map(|i| format!("other{i}"))
                .filter(|u| home(u, n) != 0)
                .take(10),
        )
        .collect();
    let now = now_ms();
    let mut tasks = Vec::new();
    for user in users.iter().chain(&users) {
        let (store, id, user) = (store.clone(), id.clone(), user.clone());
        tasks.push(tokio::spawn(async move {
            let answer = store
                .purchase_in_buckets(&id, split, reserve_rules(now), &new_attempt(&user), 30_000)
                .await
                .expect("purchase");
            (user, answer)
        }));
    }
    let mut reserved: HashMap<String, String> = HashMap::new();
    let mut sold_out = HashSet::new();
    for t in tasks {
        match t.await.expect("task") {
            (user, BucketPurchase::Reserved(order)) => {
                assert!(
                    reserved.insert(user, order.as_str().to_owned()).is_none(),
                    "two 202s"
                );
            }
            (user, BucketPurchase::SoldOut) => {
                sold_out.insert(user);
            }
            (_, BucketPurchase::AlreadyPurchased(_) | BucketPurchase::InFlight) => {}
            (user, other) => panic!("{user}: {other:?}"),
        }
    }
    let all = reservations(&store, &id, split).await;
    let units: HashSet<u64> = all.iter().map(|r| r.2).collect();
    let buyers: HashSet<&str> = all.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(all.len(), 60, "the whole stock sold, once");
    assert_eq!(units.len(), 60, "no unit twice");
    assert_eq!(buyers.len(), 60, "no buyer twice");
    assert_eq!(reserved.len(), 60, "every reservation answered 202");
    let spilled = all
        .iter()
        .filter(|r| r.2 > *units_of(split, 0).end())
        .filter(|r| home(&r.1, n) == 0)
        .count();
    assert!(spilled > 0, "bucket 0's buyers spilled to the others");
    for (order, user, _) in &all {
        assert_eq!(
            reserved.get(user),
            Some(order),
            "{user}'s 202 names the order"
        );
        assert_eq!(
            mark(&store, &id, n, user).await.as_ref(),
            Some(order),
            "{user}'s mark"
        );
    }
    for user in &sold_out {
        assert!(!reserved.contains_key(user));
        assert_eq!(
            mark(&store, &id, n, user).await,
            None,
            "a sold-out attempt leaves no mark"
        );
    }
    for k in 0..n {
        let stock: u64 = redis::cmd("GET")
            .arg(store.bucket_keys(&id, k).stock())
            .query_async(&mut store.conn())
            .await
            .expect("stock");
        assert_eq!(stock, 0, "bucket {k} empty");
    }
}

fn units_of(split: Split, k: u16) -> std::ops::RangeInclusive<u64> {
    units(split.total, split.buckets)[usize::from(k)].clone()
}

/// A purchase by `user` at `now` on the split event `id`, a claim waiting 1 s.
async fn buy_at(store: &Store, id: &EventId, split: Split, user: &str, now: i64) -> BucketPurchase {
    store
        .purchase_in_buckets(id, split, reserve_rules(now), &new_attempt(user), 1000)
        .await
        .expect("purchase")
}

#[tokio::test]
async fn a_claim_left_by_a_dead_purchase_is_resolved_by_the_next_attempt() {
    let store = cluster_store().await;
    let n = 2;
    let (id, split) = split_over_masters(&store, 2, n).await;
    let at_home: Vec<String> = (0..100)
        .map(|i| format!("buyer{i}"))
        .filter(|u| home(u, n) == 0)
        .take(2)
        .collect();
    let now = now_ms();
    // The first buyer empties bucket 0; the second's purchase writes a claim there.
    let first = buy_at(&store, &id, split, &at_home[0], now).await;
    assert!(matches!(first, BucketPurchase::Reserved(_)), "{first:?}");
    // The second buyer's purchase dies after its home call: its claim stays.
    let dead = new_attempt(&at_home[1]);
    let order = dead.new_order.as_str().to_owned();
    let keys = store.bucket_keys(&id, 0);
    redis::cmd("HSET")
        .arg(keys.orders())
        .arg(&at_home[1])
        .arg(format!("claim:{order}:{}", now + 1000))
        .query_async::<()>(&mut store.conn())
        .await
        .expect("claim");
    // Before its deadline, the buyer's retries are told to come back.
    let retry = buy_at(&store, &id, split, &at_home[1], now).await;
    assert_eq!(retry, BucketPurchase::InFlight);
    // After it, the next attempt fences bucket 1 for the dead order and drops the claim;
    // a late spill call of the dead purchase then takes nothing, though bucket 1 has stock.
    let later = buy_at(&store, &id, split, &at_home[1], now + 1000).await;
    assert_eq!(later, BucketPurchase::InFlight);
    assert_eq!(mark(&store, &id, n, &at_home[1]).await, None);
    let late = store
        .spill(
            &id,
            split,
            1,
            &order,
            &at_home[1],
            now,
            Call::Spill,
            None,
            None,
        )
        .await
        .expect("spill");
    assert_eq!(late, Some(Decision::Passed));
    // The buyer's next attempt spills and gets bucket 1's unit; a repeated call for that
    // order answers the same unit.
    let again = buy_at(&store, &id, split, &at_home[1], now + 1000).await;
    let BucketPurchase::Reserved(bought) = again else {
        panic!("{again:?}");
    };
    let repeat = store
        .spill(
            &id,
            split,
            1,
            bought.as_str(),
            &at_home[1],
            now,
            Call::Spill,
            None,
            None,
        )
        .await
        .expect("spill");
    assert_eq!(repeat, Some(Decision::Took(2)));
    assert_eq!(reservations(&store, &id, split).await.len(), 2);
    assert_eq!(
        mark(&store, &id, n, &at_home[1]).await.as_deref(),
        Some(bought.as_str())
    );
}

#[tokio::test]
async fn through_the_api_a_split_event_sells_once_and_every_202_becomes_a_row() {
    let db = fresh_database().await;
    let app = Arc::new(spawn_with_settings(cluster_settings(generous())).await);
    let pool = db::connect(&db).await.expect("db");
    // A blocked buyer at home in bucket 0, which runs out first: their order spills, is
    // refused by the database, and its unit goes back to the bucket that gave it.
    let n = 3;
    let shady = (0..100)
        .map(|i| format!("shady{i}"))
        .find(|u| home(u, n) == 0)
        .expect("a buyer at home in bucket 0");
    sqlx::query("INSERT INTO blocked_users (user_id, reason) VALUES (?, 'fraud')")
        .bind(&shady)
        .execute(&pool)
        .await
        .expect("block");
    let running = start_consumer(&app, &pool);
    let id = event_over_masters(&app.store, n).await;
    let event = id.as_str().to_owned();
    let put = put_split(&app, &event, 30, serde_json::json!(n)).await;
    assert_eq!(put.status, 201, "{}", put.body);
    // Bucket 0 empties first (its 10 units to its own buyers), then its buyers spill.
    let users: Vec<String> = (0..400)
        .map(|i| format!("buyer{i}"))
        .filter(|u| home(u, n) == 0)
        .take(10)
        .collect();
    for user in &users {
        let r = app.purchase(&event, user).await;
        assert_eq!(r.status, 202, "{user}: {}", r.body);
    }
    let r = app.purchase(&event, &shady).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let shady_order = r.body["order_id"].as_str().expect("order id").to_owned();
    eventually("the blocked buyer's order failed", 60, || async {
        order_status(&app, &event, &shady).await["status"] == "failed"
    })
    .await;
    // Its unit goes back after the order failed at home, in a call of its own.
    eventually("the unit given back", 60, || async {
        app.stats(&event).await["compensated"] == 1
    })
    .await;
    // Then a crowd, two attempts each, at once.
    let crowd: Vec<String> = (0..120).map(|i| format!("crowd{i}")).collect();
    let sem = Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = Vec::new();
    for user in crowd.iter().chain(&crowd) {
        let (app, sem, event, user) = (app.clone(), sem.clone(), event.clone(), user.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await.expect("semaphore");
            let r = app.purchase(&event, &user).await;
            (
                user,
                r.status,
                r.body["order_id"].as_str().map(str::to_owned),
            )
        }));
    }
    let mut queued: HashMap<String, String> = HashMap::new();
    for t in tasks {
        let (user, status, order) = t.await.expect("task");
        // 429 is a limiter (admission bucket or adaptive limit) refusing an attempt.
        assert!(
            matches!(status, 200 | 202 | 409 | 429 | 503),
            "unexpected {status}"
        );
        if status == 202 {
            let order = order.expect("order id");
            assert!(queued.insert(user, order).is_none(), "a user got two 202s");
        }
    }
    // Late buyers, one at a time, until the event answers sold out (units the limiters
    // kept from the crowd are theirs).
    let mut sold_out = false;
    for i in 0..100 {
        let user = format!("late{i}");
        let r = app.purchase(&event, &user).await;
        match r.status {
            202 => {
                let order = r.body["order_id"].as_str().expect("order id").to_owned();
                queued.insert(user, order);
            }
            409 => {
                sold_out = true;
                break;
            }
            _ => {}
        }
    }
    assert!(sold_out, "the event sold out");
    assert_eq!(
        queued.len(),
        20,
        "the 20 units left, the given-back one with them"
    );
    eventually("every order written", 60, || async {
        count(
            &pool,
            &format!("SELECT COUNT(*) FROM orders WHERE event_id = '{event}'"),
        )
        .await
            == 30
    })
    .await;
    let rows: Vec<(String, String, Option<u32>)> =
        sqlx::query_as("SELECT order_id, user_id, unit_no FROM orders WHERE event_id = ?")
            .bind(&event)
            .fetch_all(&pool)
            .await
            .expect("rows");
    let units: HashSet<u32> = rows.iter().filter_map(|r| r.2).collect();
    let buyers: HashSet<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(
        (units.len(), buyers.len()),
        (30, 30),
        "each unit and buyer once"
    );
    assert!(units.iter().all(|u| (1..=30).contains(u)));
    assert!(!rows.iter().any(|r| r.0 == shady_order));
    for (user, order) in &queued {
        assert!(
            rows.iter().any(|r| &r.0 == order && &r.1 == user),
            "{user}'s 202 is a row"
        );
        eventually("the buyer sees the order confirmed", 60, || async {
            let o = order_status(&app, &event, user).await;
            o["status"] == "confirmed" && o["order_id"] == order.as_str()
        })
        .await;
    }
    let stats = app.stats(&event).await;
    assert_eq!(
        (
            stats["stock_left"].as_u64(),
            stats["confirmed"].as_u64(),
            stats["compensated"].as_u64()
        ),
        (Some(0), Some(30), Some(1)),
        "{stats}"
    );
    // Sold out, from the memo or Redis alike: a buyer's retry gets their order back.
    let (buyer, order) = queued.iter().next().expect("a buyer");
    let again = app.purchase(&event, buyer).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["order_id"], order.as_str());
    assert_eq!(app.purchase(&event, "newcomer").await.status, 409);
    let info = app
        .signed("GET", &format!("/api/events/{event}"), None, b"")
        .await;
    assert_eq!(info.body["state"], "sold_out", "{}", info.body);
    running.stop().await;
    // Reconciliation reads the buckets and agrees.
    let report = reconcile(&app.store, &pool, &id, now_ms(), 0)
        .await
        .expect("reconcile");
    assert!(report.clean(), "{}", report.render(&id));
    let app = Arc::try_unwrap(app).ok().expect("no other owners");
    app.stop().await;
}

/// Puts a live event of `stock` units split into `buckets` stock buckets.
async fn put_split(app: &TestApp, event: &str, stock: u64, buckets: serde_json::Value) -> Reply {
    let now = now_ms();
    let body = serde_json::json!({
        "name": "hot", "stock": stock, "stock_buckets": buckets,
        "starts_at": rfc3339(now - 1000), "ends_at": rfc3339(now + 3_600_000),
    });
    app.admin_put_spec(event, &body).await
}

#[tokio::test]
async fn a_split_out_of_bounds_or_in_strict_mode_is_refused_and_changes_nothing() {
    let app = spawn_with_settings(cluster_settings(
        Figment::new()
            .merge(("redis_wait_replicas", 1))
            .merge(("redis_wait_strict", true)),
    ))
    .await;
    let event = unique("split-");
    for (buckets, why) in [
        (json!(0), "stock_buckets must be 1-16"),
        (json!(17), "stock_buckets must be 1-16"),
        (json!(3), "redis_wait_strict"),
    ] {
        let put = put_split(&app, &event, 30, buckets).await;
        assert_eq!(put.status, 400, "{}", put.body);
        assert_eq!(put.body["error"], "invalid_event");
        assert!(
            put.body["message"]
                .as_str()
                .is_some_and(|m| m.contains(why)),
            "{}",
            put.body
        );
    }
    let info = app
        .signed("GET", &format!("/api/events/{event}"), None, b"")
        .await;
    assert_eq!(info.status, 404, "{}", info.body);
    // One bucket is the event as ever, strict mode or not.
    let put = put_split(&app, &event, 30, json!(1)).await;
    assert_eq!(put.status, 201, "{}", put.body);
    app.stop().await;
}
