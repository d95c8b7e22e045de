//! A slow Redis: the adaptive limit, reserve calls that arrive late, and 503s that
//! reserve nothing.

use crate::helpers::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The event's stock in one piece, its own keys (not split into stock buckets).
const ONE_BUCKET: flashgate_origin::redis::Split = flashgate_origin::redis::Split {
    total: 0,
    buckets: 1,
};

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
async fn the_adaptive_limit_shrinks_when_redis_slows_and_refuses_the_excess() {
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
    // What the limit buys in latency is a timing, and timings belong to ./dev bench: on a
    // shared machine the two storms' p99s move with whatever else runs. Printed only.
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
        .order_status(
            &event,
            ONE_BUCKET,
            &UserId::parse("during").expect("user id"),
        )
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
            .order_status(&event, ONE_BUCKET, &UserId::parse(user).expect("user id"))
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
