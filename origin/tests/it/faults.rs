//! Faults: dependencies that go away, a server killed between reservation and produce,
//! and a Redis that slows down. Each test runs its own Redis or broker so it can stop it.

use crate::helpers::*;
use figment::Figment;
use flashgate_origin::kafka::client_config;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::Message;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn generous() -> Figment {
    Figment::new().merge(("user_limit", 1000))
}

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
    // Alice's order fails downstream and her unit comes back (what the consumer does),
    // then Carol buys it, well within the 10 s the memo keeps its buyers.
    let order = alice.body["order_id"].as_str().expect("order id");
    let user = UserId::parse("alice").expect("user");
    assert!(app
        .store
        .compensate(&event, &user, order, app.settings.purchase.user_window_ms)
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
    app.stop().await;
}

#[tokio::test]
async fn an_order_reserved_by_a_killed_server_still_reaches_kafka() {
    let settings = settings(generous());
    let spawn = |stall: bool| {
        let port = free_port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_flashgate"))
            .arg("serve")
            .env("FLASHGATE_LISTEN", format!("127.0.0.1:{port}"))
            .env("FLASHGATE_REDIS_URL", settings.redis.url.expose_secret())
            .env("FLASHGATE_KAFKA_BROKERS", &settings.kafka.brokers)
            .env("FLASHGATE_ORDERS_TOPIC", &settings.kafka.orders_topic)
            .env("FLASHGATE_KEY_PREFIX", &settings.redis.key_prefix)
            .env("FLASHGATE_EDGE_SECRET", EDGE_SECRET)
            .env("FLASHGATE_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("FLASHGATE_USER_LIMIT", "1000")
            .env("FLASHGATE_FAULTS__RELAY_STALL", stall.to_string())
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("flashgate serve starts");
        (port, Killed(child))
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

/// A TCP proxy in front of Redis that makes it a slow server: each command it forwards
/// costs `delay_us` microseconds, one after another (a saturated Redis, seen from outside).
async fn slow_redis_proxy(upstream: u16, delay_us: Arc<AtomicU64>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let delay_us = delay_us.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                });
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match cr.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    // RESP commands are arrays: each starts with '*' at a line start.
                    let chunk = &buf[..n];
                    let commands = chunk.windows(3).filter(|w| w == b"\r\n*").count()
                        + usize::from(chunk.first() == Some(&b'*'));
                    let d = delay_us.load(Ordering::Relaxed) * commands as u64;
                    if d > 0 {
                        tokio::time::sleep(Duration::from_micros(d)).await;
                    }
                    if sw.write_all(chunk).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

/// Runs `total` purchases from unique users at `concurrency`; returns the latencies of
/// admitted ones (202) and how many were refused by a limiter (429).
async fn storm(
    app: &Arc<TestApp>,
    event: &str,
    tag: &str,
    total: usize,
    concurrency: usize,
) -> (Vec<Duration>, usize) {
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = Vec::new();
    for i in 0..total {
        let (app, sem, event, user) = (
            app.clone(),
            sem.clone(),
            event.to_owned(),
            format!("{tag}{i}"),
        );
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire().await.expect("sem");
            let started = Instant::now();
            let r = app.purchase(&event, &user).await;
            (r.status, started.elapsed())
        }));
    }
    let (mut admitted, mut limited) = (Vec::new(), 0);
    for t in tasks {
        match t.await.expect("task") {
            (202, d) => admitted.push(d),
            (429, _) => limited += 1,
            (s, _) => panic!("unexpected {s}"),
        }
    }
    admitted.sort();
    (admitted, limited)
}

/// A delaying proxy in front of the test Redis: its port, and the delay per command (µs,
/// 0 at first) to set.
async fn slow_test_redis() -> (u16, Arc<AtomicU64>) {
    let upstream: u16 = service("FLASHGATE_TEST_REDIS_URL")
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .expect("redis port");
    let delay_us = Arc::new(AtomicU64::new(0));
    (slow_redis_proxy(upstream, delay_us.clone()).await, delay_us)
}

fn p99(sorted: &[Duration]) -> Duration {
    sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)]
}

#[tokio::test]
async fn the_adaptive_limit_shrinks_when_redis_slows_and_keeps_admitted_requests_fast() {
    let (proxy, delay_us) = slow_test_redis().await;
    let via_proxy = |adaptive: bool| {
        generous()
            .merge(("redis_url", format!("redis://127.0.0.1:{proxy}")))
            .merge(("admission_rps", 0))
            .merge(("redis_timeout_ms", 5000))
            .merge(("event_cache_ms", 60_000))
            .merge(("adaptive.enabled", adaptive))
    };
    let fixed = Arc::new(spawn_app(via_proxy(false)).await);
    let adaptive = Arc::new(spawn_app(via_proxy(true)).await);
    fixed.live_event("slow", 100_000).await;
    adaptive.live_event("slow", 100_000).await;

    // Fast Redis, light load: learn the baseline latency.
    storm(&adaptive, "slow", "warm", 500, 4).await;
    let limit_fast = adaptive.state_limit();

    // Redis now costs 2 ms per command, one command at a time.
    delay_us.store(2000, Ordering::Relaxed);
    let (unlimited, _) = storm(&fixed, "slow", "f", 400, 64).await;
    let (admitted, refused) = storm(&adaptive, "slow", "a", 400, 64).await;
    let limit_slow = adaptive.state_limit();
    delay_us.store(0, Ordering::Relaxed);

    assert!(limit_slow < limit_fast, "limit {limit_fast} → {limit_slow}");
    assert!(refused > 0, "the limit refused nothing");
    assert!(!admitted.is_empty());
    assert!(
        p99(&admitted) < p99(&unlimited),
        "p99 admitted {:?} vs without the limit {:?}",
        p99(&admitted),
        p99(&unlimited)
    );
    println!(
        "adaptive limit {limit_fast} → {limit_slow}; p99 admitted {:?} (refused {refused}) vs {:?} without it",
        p99(&admitted),
        p99(&unlimited)
    );
    for app in [fixed, adaptive] {
        Arc::try_unwrap(app).ok().expect("sole owner").stop().await;
    }
}

#[tokio::test]
async fn a_call_that_reaches_redis_after_the_origin_gave_up_reserves_nothing() {
    use flashgate_core::ids::{EventId, UserId};
    // A Redis that takes 2.5 s to get each command (frozen, or a network holding the call
    // back): the origin stops waiting after the connection's response timeout (2 s) and
    // answers 503; the call still reaches Redis afterwards, and must reserve nothing.
    let (proxy, delay_us) = slow_test_redis().await;
    let app = spawn_app(
        generous()
            .merge(("redis_url", format!("redis://127.0.0.1:{proxy}")))
            .merge(("admission_rps", 0))
            .merge(("adaptive.enabled", false))
            .merge(("breaker_failures", 10_000))
            .merge(("redis_timeout_ms", 3000))
            .merge(("event_cache_ms", 60_000)),
    )
    .await;
    app.live_event("frozen", 10).await;
    assert_eq!(app.purchase("frozen", "before").await.status, 202);
    delay_us.store(2_500_000, Ordering::Relaxed);
    let r = app.purchase("frozen", "during").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.body["status"], "busy");
    delay_us.store(0, Ordering::Relaxed);
    // The held-back call reaches Redis about 2.5 s after it was sent.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let event = EventId::parse("frozen").expect("event id");
    let held = app
        .store
        .order_status(&event, &UserId::parse("during").expect("user id"))
        .await
        .expect("redis");
    assert!(held.is_none(), "answered 503 but holds {held:?}");
    let stats = app.stats("frozen").await;
    assert_eq!(
        (stats["reserved"].as_u64(), stats["stock_left"].as_u64()),
        (Some(1), Some(9)),
        "{stats}"
    );
    // And Redis answering in time again, purchases go through.
    assert_eq!(app.purchase("frozen", "after").await.status, 202);
    app.stop().await;
}

/// The reserve deadline covers the wait for a call to Redis, not the call: an attempt that
/// was answered 503 reserved nothing, and one that Redis took is answered with its verdict
/// however late that comes (within the connection's response timeout, see the test above).
#[tokio::test]
async fn a_503_reserves_nothing_even_when_redis_answers_late() {
    use flashgate_core::ids::{EventId, UserId};
    let (proxy, delay_us) = slow_test_redis().await;
    let app = Arc::new(
        spawn_app(
            generous()
                .merge(("redis_url", format!("redis://127.0.0.1:{proxy}")))
                .merge(("admission_rps", 0))
                .merge(("adaptive.enabled", false))
                .merge(("breaker_failures", 10_000))
                .merge(("redis_timeout_ms", 100))
                .merge(("event_cache_ms", 60_000)),
        )
        .await,
    );
    app.live_event("late", 1000).await;
    // The event's info is in the process's cache from here on.
    assert_eq!(app.purchase("late", "early").await.status, 202);
    // Every command now takes 300 ms, three times the deadline.
    delay_us.store(300_000, Ordering::Relaxed);
    // Two attempts take both call slots (reserve_inflight = 2) for 300 ms or more; the
    // twenty after them wait for a slot past their 100 ms deadline.
    let mut tasks = Vec::new();
    for i in 0..22 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let user = format!("late{i}");
            (app.purchase("late", &user).await.status, user)
        }));
        if i < 2 {
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.expect("task"));
    }
    delay_us.store(0, Ordering::Relaxed);
    let event = EventId::parse("late").expect("event id");
    let (mut reserved, mut busy) = (0, 0);
    for (status, user) in &answers {
        let held = app
            .store
            .order_status(&event, &UserId::parse(user).expect("user id"))
            .await
            .expect("redis");
        match status {
            202 => {
                reserved += 1;
                assert!(held.is_some(), "{user}: 202 without a reservation");
            }
            503 => {
                busy += 1;
                assert!(held.is_none(), "{user}: answered 503 but holds {held:?}");
            }
            s => panic!("{user}: unexpected {s}"),
        }
    }
    assert!(reserved > 0 && busy > 0, "{reserved} × 202, {busy} × 503");
    let stats = app
        .store
        .stats(&event)
        .await
        .expect("redis")
        .expect("event");
    assert_eq!(stats.reserved, reserved + 1, "{answers:?}");
    Arc::try_unwrap(app).ok().expect("sole owner").stop().await;
}

#[tokio::test]
async fn a_redis_that_could_evict_stock_or_orders_is_refused_at_start() {
    let redis = OwnServer::redis();
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let config = |policy: &str| {
        let client = redis::Client::open(url.as_str()).expect("url");
        let mut conn = client.get_connection().expect("redis");
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory-policy")
            .arg(policy)
            .exec(&mut conn)
            .expect("config set");
    };
    let build = || {
        let settings = settings(Figment::new().merge(("redis_url", url.clone())));
        flashgate_origin::serve::Application::build(settings)
    };

    config("allkeys-lru");
    let refused = build().await.err().expect("refused");
    let message = format!("{refused:#}");
    assert!(
        message.contains("maxmemory-policy allkeys-lru"),
        "{message}"
    );
    assert!(message.contains("noeviction"), "{message}");
    // Nothing was written: the refusal comes before any event or outbox exists.
    let client = redis::Client::open(url.as_str()).expect("url");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query(&mut client.get_connection().expect("redis"))
        .expect("keys");
    assert!(keys.is_empty(), "{keys:?}");

    for safe_enough in ["noeviction", "volatile-lru"] {
        config(safe_enough);
        assert!(build().await.is_ok(), "{safe_enough} serves");
    }
}

#[tokio::test]
async fn a_redis_that_hides_its_settings_is_served_with_a_warning() {
    // As managed services do: CONFIG is not available to the application.
    let redis = OwnServer::redis_with(
        false,
        &["--rename-command".into(), "CONFIG".into(), "".into()],
    );
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let app = spawn_app(Figment::new().merge(("redis_url", url))).await;
    app.live_event("hidden", 1).await;
    assert_eq!(app.purchase("hidden", "u1").await.status, 202);
    app.stop().await;
}

#[tokio::test]
async fn with_redis_wait_replicas_a_reservation_is_on_the_replica_before_its_202() {
    let primary = OwnServer::redis();
    let replica = OwnServer::redis_with(
        false,
        &[
            "--replicaof".into(),
            "127.0.0.1".into(),
            primary.port.to_string(),
        ],
    );
    let replica_conn = || {
        redis::Client::open(format!("redis://127.0.0.1:{}", replica.port))
            .expect("url")
            .get_connection()
            .expect("replica")
    };
    eventually("the replica is in sync", 20, || async {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut replica_conn())
            .expect("info");
        info.contains("master_link_status:up")
    })
    .await;
    let app = spawn_app(
        generous()
            .merge(("redis_url", format!("redis://127.0.0.1:{}", primary.port)))
            .merge(("redis_wait_replicas", 1))
            .merge(("redis_wait_timeout_ms", 200)),
    )
    .await;
    app.live_event("replicated", 10).await;
    let orders = app
        .store
        .keys(&flashgate_core::ids::EventId::parse("replicated").expect("id"))
        .orders();
    let on_replica = |user: &str| -> Option<String> {
        redis::cmd("HGET")
            .arg(&orders)
            .arg(user)
            .query(&mut replica_conn())
            .expect("hget")
    };
    let before = app
        .metric("flashgate_reservations_unreplicated_total")
        .await;

    let r = app.purchase("replicated", "first").await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(on_replica("first").as_deref(), r.body["order_id"].as_str());
    assert_eq!(
        app.metric("flashgate_reservations_unreplicated_total")
            .await,
        before
    );

    // A replica that stops answering: purchases are still answered (the order is real on
    // the primary), and counted as not replicated.
    replica.signal("STOP");
    for user in ["second", "third"] {
        let r = app.purchase("replicated", user).await;
        assert_eq!(r.status, 202, "{}", r.body);
    }
    assert_eq!(
        app.metric("flashgate_reservations_unreplicated_total")
            .await,
        before + 2.0
    );
    replica.signal("CONT");
    eventually("the replica catches up", 20, || async {
        on_replica("third").is_some()
    })
    .await;
    // Once the replica answers again, the waits are whole again (one a second is tried in
    // full meanwhile): a purchase is acknowledged, not counted.
    let mut n = 0;
    eventually("reservations acknowledged again", 20, || {
        n += 1;
        let user = format!("again{n}");
        let app = &app;
        async move {
            let counted = app
                .metric("flashgate_reservations_unreplicated_total")
                .await;
            let r = app.purchase("replicated", &user).await;
            assert_eq!(r.status, 202, "{}", r.body);
            app.metric("flashgate_reservations_unreplicated_total")
                .await
                == counted
        }
    })
    .await;
    // Redis forgot its scripts (as after a restart): the call loads it and goes on.
    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .exec(
            &mut redis::Client::open(format!("redis://127.0.0.1:{}", primary.port))
                .expect("url")
                .get_connection()
                .expect("primary"),
        )
        .expect("script flush");
    let r = app.purchase("replicated", "after-flush").await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(
        on_replica("after-flush").as_deref(),
        r.body["order_id"].as_str()
    );
    assert_eq!(app.stats("replicated").await["reserved"], 4 + n);
    app.stop().await;
}
