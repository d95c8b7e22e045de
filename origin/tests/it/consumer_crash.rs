//! The consumer under crashes: kill -9 mid-batch, a database restart, a group whose
//! members come and go. In a test binary of its own, so no other test's consumer group shares the broker
//! while it runs.

use crate::helpers::*;
use figment::Figment;
use flashgate_origin::db;
use std::time::Duration;

fn spawn_consumer(settings: &flashgate_origin::config::Settings, mysql_url: &str) -> Killed {
    spawn_consumer_with(settings, mysql_url, &[])
}

pub fn spawn_consumer_with(
    settings: &flashgate_origin::config::Settings,
    mysql_url: &str,
    extra: &[(&str, String)],
) -> Killed {
    Killed(
        std::process::Command::new(env!("CARGO_BIN_EXE_flashgate"))
            .arg("consume")
            .env("FLASHGATE_CONSUMER__GROUP", &settings.consumer.group)
            .env("FLASHGATE_REDIS_URL", settings.redis.url.expose_secret())
            .env("FLASHGATE_KEY_PREFIX", &settings.redis.key_prefix)
            .env("FLASHGATE_KAFKA_BROKERS", &settings.kafka.brokers)
            .env("FLASHGATE_ORDERS_TOPIC", &settings.kafka.orders_topic)
            .env("FLASHGATE_MYSQL_URL", mysql_url)
            .env("FLASHGATE_CONSUMER__MAX_RATE", "0")
            .env("FLASHGATE_CONSUMER__BATCH_SIZE", "500")
            // Last, so that a test's own settings win.
            .envs(extra.iter().map(|(k, v)| (k, v)))
            .env(
                "RUST_LOG",
                std::env::var("TEST_CONSUMER_LOG").unwrap_or("warn".into()),
            )
            .env(
                "FLASHGATE_KAFKA_DEBUG",
                std::env::var("TEST_KAFKA_DEBUG").unwrap_or_default(),
            )
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(std::env::temp_dir().join("flashgate-consumer-test.log"))
                    .map(std::process::Stdio::from)
                    .unwrap_or_else(|_| std::process::Stdio::null()),
            )
            .spawn()
            .expect("flashgate consume starts"),
    )
}

/// Three orders of `event` (ids `<prefix>-0..2`, users `user-0..2`), one per message.
async fn produce_three(s: &flashgate_origin::config::Settings, prefix: &str, event: &str) {
    let orders: Vec<_> = (0..3)
        .map(|i| message(&format!("{prefix}-{i}"), event, &format!("user-{i}")))
        .collect();
    let payloads = flashgate_origin::kafka::pack_orders(&orders, 1)
        .into_iter()
        .map(|m| m.payload)
        .collect();
    produce(&s.kafka.brokers, &s.kafka.orders_topic, payloads).await;
}

async fn rows(url: &str) -> Option<i64> {
    use sqlx::Connection;
    let mut c = sqlx::MySqlConnection::connect(url).await.ok()?;
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM orders")
        .fetch_one(&mut c)
        .await
        .ok()?;
    Some(n)
}

/// SIGTERM, then waits (20 s at most) for a clean exit.
async fn stop_gracefully(consumer: &mut Killed) {
    let pid = consumer.0.id().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = consumer.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running 20 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status}");
}

pub async fn wait_rows(url: &str, at_least: i64, secs: u64) {
    eventually(&format!("{at_least} rows"), secs, || async {
        rows(url).await.is_some_and(|n| n >= at_least)
    })
    .await;
}

/// What an operator's monitoring sees of a consumer process: its health and its counts,
/// on `consumer.listen`; SIGTERM stops it cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_process_serves_its_health_and_metrics() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let url = fresh_database().await;
    db::connect(&url).await.expect("migrations");
    let s = settings(Figment::new());
    flashgate_origin::kafka::ensure_topic(&s.kafka.brokers, &s.kafka.orders_topic, 3)
        .await
        .expect("topic");
    produce_three(&s, "mon", "watched").await;
    let http = reqwest::Client::new();
    let healthy = |port: u16| {
        let req = http
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .timeout(Duration::from_secs(2));
        async move { req.send().await.is_ok_and(|r| r.status() == 200) }
    };
    // Alive while it waits for a database that does not answer yet (up to a minute).
    let port = free_port();
    let waiting = spawn_consumer_with(
        &s,
        &format!("mysql://root@127.0.0.1:{}/nowhere", free_port()),
        &[("FLASHGATE_CONSUMER__LISTEN", format!("127.0.0.1:{port}"))],
    );
    eventually("/healthz while the database is away", 20, || healthy(port)).await;
    // What the alert rules watch is there from the start, at 0.
    let metrics = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for line in [
        "flashgate_consumer_dead_letters_total 0",
        "flashgate_consumer_orders_total 0",
        r#"flashgate_compensations_total{reason="blocked"} 0"#,
    ] {
        assert!(metrics.contains(line), "{line} in:\n{metrics}");
    }
    drop(waiting);
    let port = free_port();
    let mut consumer = spawn_consumer_with(
        &s,
        &url,
        &[("FLASHGATE_CONSUMER__LISTEN", format!("127.0.0.1:{port}"))],
    );
    let get = |path: &str| {
        let req = http.get(format!("http://127.0.0.1:{port}{path}"));
        async move {
            let resp = req.send().await.ok()?;
            (resp.status() == 200).then_some(())?;
            resp.text().await.ok()
        }
    };
    eventually("the consumer's /healthz", 60, || healthy(port)).await;
    eventually("three orders counted in /metrics", 60, || async {
        get("/metrics")
            .await
            .is_some_and(|text| text.contains("flashgate_consumer_orders_total 3"))
    })
    .await;
    stop_gracefully(&mut consumer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_orders_survive_a_kill_9_consumer_and_a_database_restart() {
    let _turn = ONE_AT_A_TIME.lock().await;
    const N: usize = 20_000;
    let mut db = OwnServer::mariadb();
    let url = db.mysql_url();
    db::connect(&url).await.expect("migrations");
    let s = settings(Figment::new());
    produce_bulk(&s, 3, N).await;
    let mut consumer = spawn_consumer(&s, &url);
    wait_rows(&url, 4_000, 120).await;
    // kill -9 in the middle of a batch; it comes back (as a supervisor would restart it).
    consumer.kill();
    let _consumer = spawn_consumer(&s, &url);
    wait_rows(&url, 8_000, 120).await;
    // The database goes away mid-batch and comes back.
    db.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    db.restart();
    wait_rows(&url, N as i64, 240).await;
    every_order_once(&url, N).await;
}

/// Several `flashgate consume` processes in one group share the partitions while members
/// come and go: one is killed mid-batch (kill -9) and not restarted, one is added
/// mid-run, one is stopped with SIGTERM. Every order is written once.
///
/// tansu 0.6 can leave the killed member's partitions assigned to it after its session
/// expires (docs/operations.md, "Partitions nobody reads"); the survivors get them back
/// through the stall check (`consumer.stall_rejoin_ms`, short here). How it spreads the
/// partitions over the live members varies from run to run, so only the rows are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_whose_members_come_and_go_writes_every_order_once() {
    let _turn = ONE_AT_A_TIME.lock().await;
    const N: usize = 20_000;
    let url = fresh_database().await;
    db::connect(&url).await.expect("migrations");
    let s = settings(Figment::new());
    produce_bulk(&s, 4, N).await;
    // A capped rate per member, so that the run lasts long enough for members to come
    // and go in the middle of it.
    let member = || {
        spawn_consumer_with(
            &s,
            &url,
            &[
                ("FLASHGATE_CONSUMER__MAX_RATE", "1000".into()),
                ("FLASHGATE_CONSUMER__STALL_REJOIN_MS", "3000".into()),
            ],
        )
    };
    let mut killed = member();
    let mut stopped = member();
    let _first = member();
    wait_rows(&url, 3_000, 60).await;
    killed.kill();
    let _added = member();
    wait_rows(&url, 8_000, 60).await;
    stop_gracefully(&mut stopped).await;
    wait_rows(&url, N as i64, 120).await;
    every_order_once(&url, N).await;
}

/// Every test here runs consumer processes against the one broker, and the crash runs
/// start their own MariaDB and kill processes: one test at a time, so no other consumer
/// group shares the broker while a crash run counts on its group, and two bootstraps
/// never race on a 2-core machine.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `n` orders of event `bulk` (ids `ord-<i>`, one user each) on a topic of `partitions`,
/// packed as the relay packs them.
async fn produce_bulk(s: &flashgate_origin::config::Settings, partitions: i32, n: usize) {
    produce_orders(s, partitions, 0..n).await;
}

/// The orders `ord-<i>` of event `bulk` for `ids` (one user each) on a topic of
/// `partitions`, packed as the relay packs them.
pub async fn produce_orders(
    s: &flashgate_origin::config::Settings,
    partitions: i32,
    ids: std::ops::Range<usize>,
) {
    flashgate_origin::kafka::ensure_topic(&s.kafka.brokers, &s.kafka.orders_topic, partitions)
        .await
        .expect("topic");
    let orders: Vec<_> = ids
        .map(|i| message(&format!("ord-{i}"), "bulk", &format!("user-{i}")))
        .collect();
    let payloads =
        flashgate_origin::kafka::pack_orders(&orders, flashgate_origin::kafka::DEFAULT_PACK)
            .into_iter()
            .map(|m| m.payload)
            .collect();
    produce(&s.kafka.brokers, &s.kafka.orders_topic, payloads).await;
}

/// Exactly `n` rows, one per user, and no failure: every order written once.
pub async fn every_order_once(url: &str, n: usize) {
    let pool = db::connect(url).await.expect("db");
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM orders").await, n as i64);
    assert_eq!(
        count(&pool, "SELECT COUNT(DISTINCT user_id) FROM orders").await,
        n as i64
    );
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM failed_orders").await, 0);
}

/// A consumer that cannot write (here: its table is gone) shows the orders waiting for it
/// in `flashgate_consumer_lag`, though it never wrote a batch, and the partition in
/// `flashgate_consumer_stalled_partitions`, so an alert can see it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_cannot_write_shows_its_lag() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let url = fresh_database().await;
    db::connect(&url).await.expect("migrations");
    let s = settings(Figment::new());
    flashgate_origin::kafka::ensure_topic(&s.kafka.brokers, &s.kafka.orders_topic, 1)
        .await
        .expect("topic");
    let port = free_port();
    let _consumer = spawn_consumer_with(
        &s,
        &url,
        &[
            ("FLASHGATE_CONSUMER__LISTEN", format!("127.0.0.1:{port}")),
            ("FLASHGATE_CONSUMER__STALL_REJOIN_MS", "2000".into()),
        ],
    );
    let http = reqwest::Client::new();
    let metrics = || {
        let req = http.get(format!("http://127.0.0.1:{port}/metrics"));
        async move { req.send().await.ok()?.text().await.ok() }
    };
    let lag = |n: u32| format!("flashgate_consumer_lag{{partition=\"0\"}} {n}");
    let stalled = |n: u32| format!("flashgate_consumer_stalled_partitions {n}");
    eventually("the partition assigned, nothing waiting", 60, || async {
        metrics()
            .await
            .is_some_and(|m| m.contains(&lag(0)) && m.contains(&stalled(0)))
    })
    .await;
    {
        use sqlx::Connection;
        let mut c = sqlx::MySqlConnection::connect(&url).await.expect("db");
        sqlx::query("DROP TABLE orders")
            .execute(&mut c)
            .await
            .expect("drop");
    }
    produce_three(&s, "lag", "unwritable").await;
    eventually("three orders shown waiting", 30, || async {
        metrics().await.is_some_and(|m| m.contains(&lag(3)))
    })
    .await;
    // And, once they have not moved for the stall time, the group's view says so too.
    eventually("the partition shown stalled", 30, || async {
        metrics().await.is_some_and(|m| m.contains(&stalled(1)))
    })
    .await;
}
