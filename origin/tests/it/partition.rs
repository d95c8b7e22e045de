//! Partitions between hosts: the origin cut off from Redis, the consumer from the broker.
//! The server runs in a network namespace of its own and the wire to it is cut (see
//! `crate::netns`); where namespaces cannot be made, it runs on loopback and is frozen
//! (SIGSTOP) instead, which looks the same from the client: nothing answers.

use crate::consumer_crash::{every_order_once, produce_orders, spawn_consumer_with, wait_rows};
use crate::helpers::*;
use crate::netns::Netns;
use figment::Figment;
use flashgate_origin::db;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Cuts the wire to `server` (in `ns`), or freezes it where there is no namespace.
fn cut(ns: Option<&Netns>, server: &OwnServer) {
    match ns {
        Some(ns) => ns.cut(server.port),
        None => server.signal("STOP"),
    }
}

/// Mends what [`cut`] did.
fn heal(ns: Option<&Netns>, server: &OwnServer) {
    match ns {
        Some(ns) => ns.heal(),
        None => server.signal("CONT"),
    }
}

/// Buyers keep coming while the wire to Redis is cut for 3 s: they are answered 503
/// (busy) meanwhile, and once it is mended each of them gets through by itself. Nothing
/// is lost or made up: every order reserved is one its buyer was told of (a 202, or the
/// 200 that a buyer whose answer was lost gets on asking again), every one reaches
/// Kafka, and no unit is created or lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purchases_across_a_cut_to_redis_lose_no_order() {
    const STOCK: u64 = 100_000;
    let ns = Netns::create("redis");
    let redis = OwnServer::redis_in(ns.as_ref(), false, &[]);
    // The production deadline (the test default is longer, for a loaded machine).
    let app = spawn_app(
        generous()
            .merge((
                "redis_url",
                format!("redis://{}:{}", redis.host, redis.port),
            ))
            .merge(("redis_timeout_ms", 500)),
    )
    .await;
    app.live_event("cut", STOCK).await;
    let stop = AtomicBool::new(false);
    // Every answer a buyer got: (user, status, order id).
    let answers = Mutex::new(Vec::new());
    let buyers = futures::future::join_all((0..8).map(|b| {
        let (app, stop, answers) = (&app, &stop, &answers);
        async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let user = format!("b{b}-{i}");
                let r = app.purchase("cut", &user).await;
                assert!(
                    [202, 503, 429].contains(&r.status),
                    "{} {}",
                    r.status,
                    r.body
                );
                let order = r.body["order_id"].as_str().map(str::to_owned);
                answers
                    .lock()
                    .expect("answers")
                    .push((user, r.status, order));
                if r.status != 202 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }));
    let faults = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        cut(ns.as_ref(), &redis);
        tokio::time::sleep(Duration::from_secs(3)).await;
        heal(ns.as_ref(), &redis);
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.store(true, Ordering::Relaxed);
    };
    futures::future::join(buyers, faults).await;
    let answers = answers.into_inner().expect("answers");
    assert!(
        answers.iter().any(|(_, status, _)| *status == 503),
        "no purchase was refused while Redis was cut off"
    );
    let mut orders: HashSet<String> = answers
        .iter()
        .filter(|(_, status, _)| *status == 202)
        .map(|(_, _, order)| order.clone().expect("a 202 has its order"))
        .collect();
    // Each buyer refused asks again until it gets through: its order, new (202) or
    // reserved by the try whose answer was lost (200).
    for (user, _, _) in answers.iter().filter(|(_, status, _)| *status != 202) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let got = loop {
            let r = app.purchase("cut", user).await;
            if [200, 202].contains(&r.status) {
                break r.body["order_id"].as_str().map(str::to_owned);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{user} still refused 30 s after the wire was mended: {} {}",
                r.status,
                r.body
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        orders.extend(got);
    }
    let stats = app.stats("cut").await;
    assert_eq!(
        stats["reserved"].as_u64(),
        Some(orders.len() as u64),
        "{stats}"
    );
    assert_eq!(
        stats["stock_left"].as_u64(),
        Some(STOCK - orders.len() as u64),
        "{stats}"
    );
    every_order_reaches_the_topic(&app, &orders).await;
    app.stop().await;
}

/// The consumer's wire to the broker is cut for 3 s in the middle of a run, and mended;
/// more orders arrive after. Every order is written once: what it wrote while its offset
/// commits could not get through is replayed and written nothing twice.
///
/// The cut is well within the consumer's session (6 s; reconnecting after it takes a
/// moment too): after a longer one, tansu 0.6 can leave the lone member without
/// partitions for good (docs/operations.md, "Partitions nobody reads").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_cut_off_from_the_broker_writes_every_order_once() {
    const N: usize = 6_000;
    let ns = Netns::create("kafka");
    let broker = OwnServer::broker_in(ns.as_ref());
    let url = fresh_database().await;
    db::connect(&url).await.expect("migrations");
    let brokers = format!("{}:{}", broker.host, broker.port);
    let s = settings(Figment::new().merge(("kafka_brokers", brokers)));
    produce_orders(&s, 3, 0..N / 2).await;
    let _consumer =
        spawn_consumer_with(&s, &url, &[("FLASHGATE_CONSUMER__MAX_RATE", "1000".into())]);
    wait_rows(&url, 1_000, 60).await;
    cut(ns.as_ref(), &broker);
    tokio::time::sleep(Duration::from_secs(3)).await;
    heal(ns.as_ref(), &broker);
    produce_orders(&s, 3, N / 2..N).await;
    wait_rows(&url, N as i64, 120).await;
    every_order_once(&url, N).await;
}
