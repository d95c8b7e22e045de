//! A client cannot grow the origin's memory with event ids that do not exist: each is
//! answered 404 and forgotten past the event cache's bound, while purchases go on.

use crate::helpers::*;
use crate::servers::serve_binary;
use futures::StreamExt;
use std::time::{Duration, Instant};

/// Distinct unknown ids asked, a warm-up that fills the cache once included;
/// `FLASHGATE_LONG=1` asks 200,000.
const UNKNOWN: usize = 60_000;
const UNKNOWN_LONG: usize = 200_000;
const WARM_UP: usize = 20_000;
/// Requests in flight.
const WIDTH: usize = 32;
/// Most the origin's RSS may grow over the flood after the warm-up. Kept, the ids would
/// take about 130 bytes each (5 MB for 40,000, 23 MB for 180,000).
const GROWTH_BOUND_KIB: u64 = 2 * 1024;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Asks for every id in `ids` (none exists); each must be 404.
async fn flood(app: &TestApp, run: &str, ids: std::ops::Range<usize>) {
    let asked = futures::stream::iter(ids)
        .map(|i| async move {
            app.signed("GET", &format!("/api/events/{run}-x{i}"), None, b"")
                .await
                .status
        })
        .buffer_unordered(WIDTH);
    let statuses: Vec<u16> = asked.collect().await;
    assert!(
        statuses.iter().all(|s| *s == 404),
        "an unknown id answered other than 404: {:?}",
        statuses.iter().find(|s| **s != 404)
    );
}

/// `n` purchases by distinct users, four at a time: every one 202; their p99.
async fn buy(app: &TestApp, event: &str, who: &str, n: usize) -> Duration {
    let mut took: Vec<Duration> = futures::stream::iter(0..n)
        .map(|i| async move {
            let t = Instant::now();
            let r = app.purchase(event, &format!("{who}{i}")).await;
            assert_eq!(r.status, 202, "{}", r.body);
            t.elapsed()
        })
        .buffer_unordered(4)
        .collect()
        .await;
    took.sort();
    took[took.len() * 99 / 100]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_event_ids_leave_the_origins_memory_bounded() {
    let settings = settings(generous());
    let (port, server) = serve_binary(&settings, &[("FLASHGATE_USER_LIMIT", "1000")]);
    let pid = server.0.id();
    let app = TestApp::remote(format!("http://127.0.0.1:{port}"), settings).await;
    eventually("the origin to answer", 30, || async {
        let r = app.http.get(format!("{}/healthz", app.base)).send().await;
        r.is_ok()
    })
    .await;
    let run = unique("mem");
    let event = format!("{run}-live");
    app.live_event(&event, 10_000).await;

    let unknown = if std::env::var("FLASHGATE_LONG").is_ok_and(|v| v == "1") {
        UNKNOWN_LONG
    } else {
        UNKNOWN
    };
    flood(&app, &run, 0..WARM_UP).await;
    let quiet = buy(&app, &event, "quiet", 200).await;
    let before = rss_kib(pid);
    let (_, during) = tokio::join!(
        flood(&app, &run, WARM_UP..unknown),
        buy(&app, &event, "busy", 400)
    );
    let after = rss_kib(pid);
    // Purchases' latency is information (no timing assertion on a shared machine).
    eprintln!(
        "memory: RSS {before} → {after} KiB over {} unknown ids; purchase p99 {quiet:?} quiet, {during:?} during",
        unknown - WARM_UP
    );
    assert!(
        after.saturating_sub(before) < GROWTH_BOUND_KIB,
        "the origin's RSS grew {} KiB over {} unknown ids (bound {GROWTH_BOUND_KIB} KiB)",
        after - before,
        unknown - WARM_UP
    );
    let stats = app.stats(&event).await;
    assert_eq!(stats["stock_left"], 10_000 - 600, "{stats}");
}
