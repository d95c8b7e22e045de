//! Faults: dependencies that go away, a server killed between reservation and produce,
//! and a Redis that slows down. Each test runs its own Redis or broker so it can stop it.

use crate::helpers::*;
use flashgate_origin::kafka::client_config;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::Message;
use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Reads the orders topic until every id in `want` was seen (or the deadline passes).
async fn await_orders_in_kafka(brokers: &str, topic: &str, want: &HashSet<String>, secs: u64) {
    let consumer: StreamConsumer = client_config(brokers)
        .set("group.id", unique("check-"))
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut seen = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !want.is_subset(&seen) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {} orders reached Kafka",
            seen.intersection(want).count(),
            want.len()
        );
        if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await {
            seen.extend(orders_in(m.payload()).into_iter().map(|o| o.order_id));
        }
    }
}

/// Waits (30 s at most) until a purchase of a new user is a 202 again (the users are
/// `after1`, `after2`, …; one of them holds an order when it returns).
async fn purchases_succeed_again(app: &TestApp, event: &str) {
    let mut n = 0;
    eventually("purchases succeed again", 30, || {
        n += 1;
        let user = format!("after{n}");
        async move { app.purchase(event, &user).await.status == 202 }
    })
    .await;
}

/// Waits until the app's sold-out memo of `event` holds its buyers.
async fn buyers_loaded(app: &TestApp, event: &str) {
    let state = app.state.clone().expect("in-process app");
    let event = flashgate_core::ids::EventId::parse(event).expect("id");
    eventually("the buyers are loaded", 10, || async {
        state.buyers_loaded(&event)
    })
    .await;
}

#[tokio::test]
async fn a_sold_out_storm_is_answered_from_memory_and_buyers_still_get_their_order() {
    let mut redis = OwnServer::redis();
    let app = spawn_app(
        generous()
            .merge(("redis_url", format!("redis://127.0.0.1:{}", redis.port)))
            .merge(("sold_out_cache_ms", 60_000))
            .merge(("event_cache_ms", 60_000)),
    )
    .await;
    app.live_event("gone", 1).await;
    let won = app.purchase("gone", "winner").await;
    assert_eq!(won.status, 202, "{}", won.body);
    assert_eq!(app.purchase("gone", "late").await.status, 409);
    buyers_loaded(&app, "gone").await;
    // Without Redis (the event's window is cached too): the storm gets its 409 and the
    // buyer their order, from memory.
    redis.kill();
    for i in 0..5 {
        let r = app.purchase("gone", &format!("storm{i}")).await;
        assert_eq!((r.status, &r.body["status"]), (409, &"sold_out".into()));
    }
    let again = app.purchase("gone", "winner").await;
    assert_eq!(
        (again.status, &again.body["order_id"]),
        (200, &won.body["order_id"])
    );
    app.stop().await;
}

#[tokio::test]
async fn a_unit_given_back_and_sold_again_changes_the_buyers_the_sold_out_memo_knows() {
    use flashgate_core::ids::{EventId, UserId};
    let app = spawn_app(
        generous()
            .merge(("sold_out_cache_ms", 300))
            .merge(("event_cache_ms", 60_000)),
    )
    .await;
    app.live_event("back", 1).await;
    let alice = app.purchase("back", "alice").await;
    assert_eq!(alice.status, 202, "{}", alice.body);
    assert_eq!(app.purchase("back", "bob").await.status, 409);
    buyers_loaded(&app, "back").await;
    let event = EventId::parse("back").expect("id");
    // Alice's order (unit 1, the only one) fails downstream and her unit comes back (what
    // the consumer does), then Carol buys it, well within the 10 s the memo keeps its
    // buyers.
    let order = alice.body["order_id"].as_str().expect("order id");
    let user = UserId::parse("alice").expect("user");
    assert!(app
        .store
        .compensate(
            &event,
            &user,
            order,
            give_back(1),
            app.settings.purchase.user_window_ms
        )
        .await
        .expect("redis"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    let carol = app.purchase("back", "carol").await;
    assert_eq!(carol.status, 202, "{}", carol.body);
    assert_eq!(app.purchase("back", "dave").await.status, 409);
    // Sold out again: Carol's retry gets her order, Alice is told sold out.
    let again = app.purchase("back", "carol").await;
    assert_eq!(
        (again.status, &again.body["order_id"]),
        (200, &carol.body["order_id"]),
        "{}",
        again.body
    );
    let alice_again = app.purchase("back", "alice").await;
    assert_eq!(
        (alice_again.status, &alice_again.body["status"]),
        (409, &"sold_out".into()),
        "{}",
        alice_again.body
    );
    app.stop().await;
}

#[tokio::test]
async fn redis_down_answers_busy_fast_reserves_nothing_and_recovers() {
    let mut redis = OwnServer::redis();
    let app =
        spawn_app(generous().merge(("redis_url", format!("redis://127.0.0.1:{}", redis.port))))
            .await;
    app.live_event("fragile", 10).await;
    assert_eq!(app.purchase("fragile", "before").await.status, 202);

    redis.kill();
    let mut latencies = Vec::new();
    for i in 0..20 {
        let started = Instant::now();
        let r = app.purchase("fragile", &format!("down{i}")).await;
        latencies.push(started.elapsed());
        assert_eq!(r.status, 503, "{}", r.body);
        assert_eq!(r.body["status"], "busy");
        assert!(r.retry_after.is_some());
    }
    // Once the circuit is open, refusals do not wait for Redis at all.
    let mut open = latencies[10..].to_vec();
    open.sort();
    let median = open[open.len() / 2];
    assert!(
        median < Duration::from_millis(50),
        "median refusal took {median:?}"
    );

    redis.restart();
    purchases_succeed_again(&app, "fragile").await;
    let stats = app.stats("fragile").await;
    let reserved = stats["reserved"].as_u64().expect("reserved");
    assert_eq!(
        reserved, 2,
        "only the two accepted purchases reserved stock: {stats}"
    );
    assert_eq!(stats["stock_left"].as_u64(), Some(10 - reserved));
    app.stop().await;
}

/// What `./dev chaos` does to Redis while buyers keep coming: frozen (SIGSTOP) for a few
/// seconds, thawed, then killed and restarted on its AOF. Purchases come back by
/// themselves once Redis does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_frozen_then_killed_under_load_recovers_by_itself() {
    let mut redis = OwnServer::redis_with(false, &[]);
    // The production deadline (the test default is longer, for a loaded machine).
    let app = spawn_app(
        generous()
            .merge(("redis_url", format!("redis://127.0.0.1:{}", redis.port)))
            .merge(("redis_timeout_ms", 500)),
    )
    .await;
    app.live_event("shaken", 1_000_000).await;
    assert_eq!(app.purchase("shaken", "first").await.status, 202);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let buyers = futures::future::join_all((0..8).map(|b| {
        let (app, stop) = (&app, &stop);
        async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let r = app.purchase("shaken", &format!("b{b}-{i}")).await;
                assert!(
                    [202, 503, 429].contains(&r.status),
                    "{} {}",
                    r.status,
                    r.body
                );
                if r.status != 202 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }));
    let faults = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        redis.signal("STOP");
        tokio::time::sleep(Duration::from_secs(3)).await;
        redis.signal("CONT");
        tokio::time::sleep(Duration::from_secs(2)).await;
        redis.kill();
        tokio::time::sleep(Duration::from_secs(3)).await;
        redis.restart();
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, Ordering::Relaxed);
    };
    futures::future::join(buyers, faults).await;
    purchases_succeed_again(&app, "shaken").await;
    // And keep succeeding: not one probe that closed the circuit for a moment.
    for i in 0..20 {
        let r = app.purchase("shaken", &format!("steady{i}")).await;
        assert_eq!(r.status, 202, "{}", r.body);
    }
    app.stop().await;
}

#[tokio::test]
async fn kafka_down_reservations_wait_in_the_outbox_and_flow_when_it_returns() {
    let mut broker = OwnServer::broker();
    let brokers = format!("127.0.0.1:{}", broker.port);
    let app = spawn_app(generous().merge(("kafka_brokers", brokers.clone()))).await;
    app.live_event("patient", 10).await;
    broker.kill();
    let mut orders = HashSet::new();
    for user in ["k1", "k2", "k3"] {
        let r = app.purchase("patient", user).await;
        assert_eq!(r.status, 202, "{}", r.body);
        orders.insert(r.body["order_id"].as_str().expect("order").to_owned());
    }
    // And one reserve call of three: its reservations share an entry, a line each.
    orders.extend(reserve_three(&app, "patient").await);
    let id = flashgate_core::ids::EventId::parse("patient").expect("id");
    let k = app.store.keys(&id);
    let entries: u64 = redis::cmd("XLEN")
        .arg(k.outbox())
        .query_async(&mut app.store.conn())
        .await
        .expect("xlen");
    assert_eq!(entries, 4);
    // The backlog counts reservations, not entries.
    let waiting = app.store.outbox_backlog(std::slice::from_ref(&id));
    assert_eq!(waiting.await.expect("backlog"), 6);
    let ready = reply(
        app.http
            .get(format!("{}/readyz", app.base))
            .send()
            .await
            .expect("answers"),
    )
    .await;
    assert_eq!(ready.status, 503);
    assert_eq!(
        (
            &ready.body["status"],
            &ready.body["kafka"],
            &ready.body["redis"]
        ),
        (&"not_ready".into(), &false.into(), &true.into())
    );
    assert!(ready.body["message"].is_string(), "{}", ready.body);
    broker.restart();
    await_orders_in_kafka(&brokers, &app.settings.kafka.orders_topic, &orders, 90).await;
    eventually("the outbox empties", 30, || async {
        app.store
            .outbox_backlog(std::slice::from_ref(&id))
            .await
            .ok()
            == Some(0)
    })
    .await;
    assert_eq!(reserved_and_relayed(&app, &k).await, (6, 6));
    app.stop().await;
}

/// Three attempts of new buyers in one reserve call, all reserved; their order ids.
async fn reserve_three(app: &TestApp, event: &str) -> Vec<String> {
    use flashgate_core::ids::EventId;
    use flashgate_origin::redis::{Attempt, Reservation};
    let attempts: Vec<Attempt> = (0..3)
        .map(|_| Attempt {
            room_position: Some(7),
            ..new_attempt(&unique("call"))
        })
        .collect();
    let event = EventId::parse(event).expect("event id");
    let verdicts = app
        .store
        .reserve(&event, reserve_rules(now_ms()), &attempts)
        .await;
    let verdicts = verdicts.expect("reserve call");
    let ids: Vec<String> = attempts.iter().map(|a| a.new_order.to_string()).collect();
    for (verdict, a) in verdicts.iter().zip(&attempts) {
        assert_eq!(verdict, &Reservation::Reserved(a.new_order.clone()));
    }
    ids
}

#[tokio::test]
async fn an_order_reserved_by_a_killed_server_still_reaches_kafka() {
    let settings = settings(generous());
    let spawn = |stall: bool| {
        let stall = stall.to_string();
        let extra = [
            ("FLASHGATE_USER_LIMIT", "1000"),
            ("FLASHGATE_FAULTS__RELAY_STALL", stall.as_str()),
        ];
        crate::servers::serve_binary(&settings, &extra)
    };
    let (port, mut first) = spawn(true);
    let app = TestApp::remote(format!("http://127.0.0.1:{port}"), settings.clone()).await;
    eventually("first server up", 30, || async {
        app.http
            .get(format!("{}/healthz", app.base))
            .send()
            .await
            .is_ok()
    })
    .await;
    app.live_event("crash", 5).await;
    let r = app.purchase("crash", "survivor").await;
    assert_eq!(r.status, 202, "{}", r.body);
    let order = r.body["order_id"].as_str().expect("order").to_owned();
    // The stalled relay has claimed the entry (pending, unacknowledged); kill -9 now.
    eventually("entry claimed by the stalled relay", 10, || async {
        let k = app.store.keys(&flashgate_core::ids::EventId::parse("crash").expect("id"));
        let pending: redis::Value = redis::cmd("XPENDING")
            .arg(k.outbox())
            .arg("relay")
            .query_async(&mut app.store.conn())
            .await
            .unwrap_or(redis::Value::Nil);
        matches!(pending, redis::Value::Array(ref v) if matches!(v.first(), Some(redis::Value::Int(n)) if *n > 0))
    })
    .await;
    first.kill();

    let (_, mut second) = spawn(false);
    let want = HashSet::from([order]);
    await_orders_in_kafka(
        &settings.kafka.brokers,
        &settings.kafka.orders_topic,
        &want,
        60,
    )
    .await;
    second.kill();
}
