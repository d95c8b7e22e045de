//! A Redis master cut off mid-sale and its replica promoted (`REPLICAOF NO ONE`) while
//! purchases flow, on a master and replica of the test's own: the unit fence refuses what
//! the promoted replica sells again, and strict mode answers no 202 a failover can lose.

use crate::consumer::{order_status, start_consumer};
use crate::helpers::*;
use crate::reconcile::reconcile_command;
use figment::Figment;
use flashgate_core::ids::EventId;
use flashgate_origin::cmd::reconcile::reconcile;
use flashgate_origin::db;
use std::collections::{BTreeSet, HashMap};

const STOCK: u64 = 20;

/// A master and its replica, in sync.
async fn master_and_replica() -> (OwnServer, OwnServer) {
    let master = OwnServer::redis();
    let replica = OwnServer::redis_with(
        false,
        &[
            "--replicaof".into(),
            "127.0.0.1".into(),
            master.port.to_string(),
        ],
    );
    let url = format!("redis://127.0.0.1:{}", replica.port);
    eventually("the replica syncs", 20, || async {
        info(&url).await.contains("master_link_status:up")
    })
    .await;
    (master, replica)
}

async fn info(url: &str) -> String {
    let Ok(client) = redis::Client::open(url) else {
        return String::new();
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return String::new();
    };
    redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut conn)
        .await
        .unwrap_or_default()
}

/// A connection to a Redis of the test's own.
async fn conn(server: &OwnServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(format!("redis://127.0.0.1:{}", server.port))
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis of the test's own")
}

/// Waits until the replica holds every write the master took so far: a write of its own,
/// then `WAIT` (replicas apply writes in order).
async fn replicated(master: &OwnServer) {
    let mut conn = conn(master).await;
    let _: () = redis::cmd("SET")
        .arg(unique("sync-"))
        .arg(1)
        .query_async(&mut conn)
        .await
        .expect("set");
    let acked: u32 = redis::cmd("WAIT")
        .arg(1)
        .arg(10_000)
        .query_async(&mut conn)
        .await
        .expect("wait");
    assert_eq!(acked, 1, "the replica did not catch up");
}

/// Promotes the replica: from now on it takes no more of the master's writes.
async fn promote(replica: &OwnServer) {
    let mut conn = conn(replica).await;
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query_async(&mut conn)
        .await
        .expect("promoted");
}

/// Settings shared by the origin on the master and the one on the promoted replica.
fn shared(redis_port: u16, sale: &Figment) -> Figment {
    sale.clone()
        .merge(("redis_url", format!("redis://127.0.0.1:{redis_port}")))
        .merge(("user_limit", 1000))
        .merge(("sold_out_cache_ms", 0))
}

fn sale_settings() -> Figment {
    Figment::new()
        .merge(("orders_topic", unique("test-orders-")))
        .merge(("key_prefix", unique("t") + ":"))
        .merge(("consumer.group", unique("test-group-")))
}

/// Buys as each of `users`: user → the answer's status and order id.
async fn buy(app: &TestApp, users: impl Iterator<Item = String>) -> Vec<(String, u16, String)> {
    let mut answers = Vec::new();
    for user in users {
        let r = app.purchase("sale", &user).await;
        let order = r.body["order_id"].as_str().unwrap_or_default().to_owned();
        answers.push((user, r.status, order));
    }
    answers
}

async fn outbox_empty(app: &TestApp) -> bool {
    let k = app.store.keys(&EventId::parse("sale").expect("id"));
    let n: redis::RedisResult<u64> = redis::cmd("XLEN")
        .arg(k.outbox())
        .query_async(&mut app.store.conn())
        .await;
    n.is_ok_and(|n| n == 0)
}

/// The orders table: (order, user, unit) of each row.
async fn rows(pool: &sqlx::MySqlPool) -> Vec<(String, String, Option<u64>)> {
    sqlx::query_as("SELECT order_id, user_id, unit_no FROM orders WHERE event_id = 'sale'")
        .fetch_all(pool)
        .await
        .expect("rows")
}

/// Never a unit beyond stock or twice, never a user twice.
fn assert_fenced(rows: &[(String, String, Option<u64>)]) {
    let units: BTreeSet<u64> = rows.iter().map(|(_, _, u)| u.expect("a unit")).collect();
    let users: BTreeSet<&str> = rows.iter().map(|(_, u, _)| u.as_str()).collect();
    assert!(rows.len() as u64 <= STOCK, "{} rows", rows.len());
    assert_eq!(units.len(), rows.len(), "a unit twice: {rows:?}");
    assert_eq!(users.len(), rows.len(), "a user twice: {rows:?}");
    assert!(units.iter().all(|u| (1..=STOCK).contains(u)), "{units:?}");
}

/// Waits until every order of `accepted` has a row or a failure.
async fn all_settled(pool: &sqlx::MySqlPool, accepted: &[&str]) {
    let ids = serde_json::to_string(accepted).expect("json");
    eventually("every order written or failed", 60, || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM orders WHERE JSON_CONTAINS(?, JSON_QUOTE(order_id))) + \
             (SELECT COUNT(*) FROM failed_orders WHERE JSON_CONTAINS(?, JSON_QUOTE(order_id)))",
        )
        .bind(&ids)
        .bind(&ids)
        .fetch_one(pool)
        .await
        .expect("count");
        n as usize == accepted.len()
    })
    .await;
}

#[tokio::test]
async fn a_promoted_replica_that_missed_sales_oversells_nothing() {
    let (mut master, replica) = master_and_replica().await;
    let pool = db::connect(&fresh_database().await).await.expect("db");
    let sale = sale_settings();
    let first = spawn_app(shared(master.port, &sale)).await;
    first.live_event("sale", STOCK).await;
    // Ten sales the replica gets, then it is cut off and six more reach only the master,
    // which relays them to Kafka before it dies.
    let before = buy(&first, (0..10).map(|i| format!("u{i}"))).await;
    replicated(&master).await;
    promote(&replica).await;
    let lost = buy(&first, (10..16).map(|i| format!("u{i}"))).await;
    assert!(before.iter().chain(&lost).all(|(_, s, _)| *s == 202));
    eventually("the master relays its sales", 30, || outbox_empty(&first)).await;
    first.stop().await;
    master.kill();

    // The promoted replica still sells the six lost units, and three buyers of lost
    // orders buy again.
    let second = spawn_app(shared(replica.port, &sale)).await;
    let consumer = start_consumer(&second, &pool);
    let mut after = Vec::new();
    for round in 0..10 {
        let users = (0..8).map(|i| format!("v{round}-{i}"));
        let again = (10..13).map(|i| format!("u{i}")).filter(|_| round == 0);
        after.extend(buy(&second, again.chain(users)).await);
        let accepted: Vec<&str> = before
            .iter()
            .chain(&lost)
            .chain(&after)
            .filter(|(_, s, _)| *s == 202)
            .map(|(_, _, o)| o.as_str())
            .collect();
        all_settled(&pool, &accepted).await;
        if rows(&pool).await.len() as u64 == STOCK {
            break;
        }
    }
    consumer.stop().await;
    let rows = rows(&pool).await;
    assert_fenced(&rows);
    assert_eq!(rows.len() as u64, STOCK, "every unit sold once");
    let refused: Vec<(String, String)> = sqlx::query_as(
        "SELECT order_id, reason FROM failed_orders WHERE event_id = 'sale' AND reason = 'unit_taken'",
    )
    .fetch_all(&pool)
    .await
    .expect("failed");
    assert!(
        !refused.is_empty(),
        "the promoted replica sold no lost unit again"
    );
    // A buyer whose order the failover lost and who bought again holds one of the two
    // (whichever reached the database first; the other is refused), and is shown it.
    let holder: HashMap<&str, &str> = rows
        .iter()
        .map(|(o, u, _)| (u.as_str(), o.as_str()))
        .collect();
    for (user, _, _) in lost.iter().take(3) {
        let held = holder[user.as_str()];
        let shown = order_status(&second, "sale", user).await;
        assert_eq!(
            (shown["status"].as_str(), shown["order_id"].as_str()),
            (Some("confirmed"), Some(held)),
            "{user}"
        );
    }
    // A refused order's buyer is told the truth: the order they hold, else that theirs
    // failed (or, an order the failover lost, that they hold none).
    let buyer: HashMap<&str, &str> = lost
        .iter()
        .chain(&after)
        .map(|(u, _, o)| (o.as_str(), u.as_str()))
        .collect();
    for (order, _) in &refused {
        let user = buyer[order.as_str()];
        let shown = order_status(&second, "sale", user).await;
        match holder.get(user) {
            Some(held) => assert_eq!(
                (shown["status"].as_str(), shown["order_id"].as_str()),
                (Some("confirmed"), Some(*held)),
                "{user}"
            ),
            None => {
                let lost_order = lost.iter().any(|(_, _, o)| o == order);
                let expected = if lost_order { "none" } else { "failed" };
                assert_eq!(shown["status"], expected, "{user}: {shown}");
            }
        }
    }
    // Redis's units already agree with the database's: every lost unit was sold again and
    // refused. Reconcile names what the failover changed, and --repair leaves it clean.
    let id = EventId::parse("sale").expect("id");
    assert_eq!(second.stats("sale").await["stock_left"], 0);
    let report = reconcile(&second.store, &pool, &id, now_ms(), 0)
        .await
        .expect("reconcile");
    let text = report.render(&id);
    assert!(
        text.contains(&format!("units sold twice and refused {}", refused.len())),
        "{text}"
    );
    assert!(report.clean(), "{text}");
    second.stop().await;
}

#[tokio::test]
async fn strict_mode_answers_no_202_a_failover_loses() {
    let (mut master, replica) = master_and_replica().await;
    let pool = db::connect(&fresh_database().await).await.expect("db");
    let sale = sale_settings();
    let strict = shared(master.port, &sale)
        .merge(("redis_wait_replicas", 1))
        .merge(("redis_wait_timeout_ms", 200))
        .merge(("redis_wait_strict", true));
    let first = spawn_app(strict).await;
    first.live_event("sale", STOCK).await;
    let before = buy(&first, (0..8).map(|i| format!("u{i}"))).await;
    assert!(before.iter().all(|(_, s, _)| *s == 202), "{before:?}");
    // Cut off: no replica acknowledges any more, so the master's sales are answered 503
    // and its relay holds them back.
    promote(&replica).await;
    let lost = buy(&first, (8..14).map(|i| format!("u{i}"))).await;
    assert!(lost.iter().all(|(_, s, _)| *s == 503), "{lost:?}");
    // The order stands on the master (the lookup shows it), but no replica holds it: a
    // retry is busy too, never a success a failover could take back.
    let busy = first.purchase("sale", "u8").await;
    assert_eq!(busy.status, 503, "{}", busy.body);
    assert_eq!(order_status(&first, "sale", "u8").await["status"], "queued");
    first.stop().await;
    master.kill();

    let second = spawn_app(shared(replica.port, &sale)).await;
    let consumer = start_consumer(&second, &pool);
    // The lost orders are gone for their buyers, who may buy again; the rest sells out.
    assert_eq!(order_status(&second, "sale", "u8").await["status"], "none");
    let after = buy(&second, (8..30).map(|i| format!("u{i}"))).await;
    let accepted: Vec<&(String, u16, String)> = before
        .iter()
        .chain(&after)
        .filter(|(_, s, _)| *s == 202)
        .collect();
    assert_eq!(accepted.len() as u64, STOCK);
    let ids: Vec<&str> = accepted.iter().map(|(_, _, o)| o.as_str()).collect();
    all_settled(&pool, &ids).await;
    consumer.stop().await;
    let rows = rows(&pool).await;
    assert_fenced(&rows);
    let written: BTreeSet<&str> = rows.iter().map(|(o, _, _)| o.as_str()).collect();
    for (user, _, order) in &accepted {
        assert!(
            written.contains(order.as_str()),
            "the 202 of {user} has no row"
        );
    }
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM failed_orders").await, 0);
    second.stop().await;
}

#[tokio::test]
async fn reconcile_repairs_what_a_failover_changed() {
    let (mut master, replica) = master_and_replica().await;
    let db_url = fresh_database().await;
    let pool = db::connect(&db_url).await.expect("db");
    let sale = sale_settings();
    let first = spawn_app(shared(master.port, &sale)).await;
    first.live_event("sale", STOCK).await;
    buy(&first, (0..10).map(|i| format!("u{i}"))).await;
    replicated(&master).await;
    promote(&replica).await;
    buy(&first, (10..16).map(|i| format!("u{i}"))).await;
    eventually("the master relays its sales", 30, || outbox_empty(&first)).await;
    first.stop().await;
    master.kill();

    // Every order is written; the promoted replica still offers the six lost units.
    let second = spawn_app(shared(replica.port, &sale)).await;
    let consumer = start_consumer(&second, &pool);
    eventually("every order written", 60, || async {
        rows(&pool).await.len() == 16 && outbox_empty(&second).await
    })
    .await;
    let id = EventId::parse("sale").expect("id");
    let report = reconcile(&second.store, &pool, &id, now_ms(), 0)
        .await
        .expect("reconcile");
    let text = report.render(&id);
    assert_eq!(text.matches("RESOLD").count(), 6, "{text}");

    // `second` reads and writes the promoted replica.
    let out = reconcile_command(&second, &db_url, "sale", &["--repair"]);
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("units for sale set to the 4 no order holds"),
        "{printed}"
    );
    let report = reconcile(&second.store, &pool, &id, now_ms(), 0)
        .await
        .expect("reconcile");
    assert!(report.clean(), "{}", report.render(&id));

    // The four units left sell once each, and nothing is refused.
    let after = buy(&second, (0..6).map(|i| format!("w{i}"))).await;
    let sold: Vec<&str> = after
        .iter()
        .filter(|(_, s, _)| *s == 202)
        .map(|(_, _, o)| o.as_str())
        .collect();
    assert_eq!(sold.len(), 4, "{after:?}");
    all_settled(&pool, &sold).await;
    consumer.stop().await;
    let rows = rows(&pool).await;
    assert_fenced(&rows);
    assert_eq!(rows.len() as u64, STOCK);
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM failed_orders").await, 0);
    second.stop().await;
}
