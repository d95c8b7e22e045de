//! Benchmark of the order consumer against its floor, run by `./dev bench consumer`.
//!
//! 1. Floor: the same rows inserted by a plain batched INSERT loop straight into MariaDB
//!    (sqlx, one connection, one multi-row INSERT per batch of `BENCH_BATCH`, autocommit),
//!    into an empty table shaped like `orders`; measured before and after the consumer,
//!    and the mean is the floor (the machine's pace drifts within a run).
//! 2. The consumer: `BENCH_ORDERS` orders produced to a fresh topic first, packed as the
//!    relay packs them (`BENCH_PACK` per message, default the relay's), and left in Redis
//!    as their reservations would have left them (the buyer's order and its `queued:`
//!    status, so that the confirmation takes a sale's path), then the
//!    real `Consumer` (rate cap off), timed from its first finished batch until it
//!    has finished every order (the orders of that first batch are not counted): the
//!    steady rate, without the one-off group join, which is printed beside it. Progress is
//!    read from the consumer's own `flashgate_consumer_orders_total` counter (a batch
//!    counts once its rows are committed, its Redis statuses set and its offsets
//!    committed), through an in-process metrics recorder, so watching costs the database
//!    nothing; once it is done, one `COUNT(*)` checks that every row is in `orders`.
//!    (Polling `COUNT(*)` every 20 ms, as this bench first did, took up to 14 ms of
//!    MariaDB time per poll at 100,000 rows: the measurement slowed what it measured.)
//!    Redis's CPU over the consumer's run (`INFO cpu`), per order, is reported beside it.
//!
//! Needs `REDIS_URL`, `MYSQL_URL` and `KAFKA_BROKERS`; prints one JSON line.
#![allow(missing_docs)]

use figment::Figment;
use flashgate_origin::config::Settings;
use flashgate_origin::consume::Consumer;
use flashgate_origin::db;
use flashgate_origin::kafka::{client_config, ensure_topic, OrderMessage};
use flashgate_origin::redis::Store;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::{MySql, QueryBuilder};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Orders the consumer has finished: its `flashgate_consumer_orders_total` counter.
const FINISHED: &str = "flashgate_consumer_orders_total";

/// A metrics recorder that keeps that one counter, in an atomic the bench can poll.
struct Finished(Arc<AtomicU64>);

impl metrics::Recorder for Finished {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        if key.name() == FINISHED {
            metrics::Counter::from_arc(self.0.clone())
        } else {
            metrics::Counter::noop()
        }
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name).map_err(|_| anyhow::anyhow!("{name} is not set"))
}

/// What the reserve script leaves in Redis for each order (`lua/reserve.lua`): the buyer's
/// order and its `queued:` status, which the consumer's confirmation turns `confirmed:`.
async fn seed_reservations(
    store: &Store,
    event: &str,
    orders: &[OrderMessage],
) -> anyhow::Result<()> {
    let keys = store.keys(&flashgate_core::ids::EventId::parse(event)?);
    let mut conn = store.conn();
    for chunk in orders.chunks(1000) {
        let (mut held, mut status) = (redis::cmd("HSET"), redis::cmd("HSET"));
        held.arg(keys.orders());
        status.arg(keys.status());
        for o in chunk {
            held.arg(&o.user_id).arg(&o.order_id);
            status.arg(&o.user_id).arg(format!("queued:{}", o.order_id));
        }
        redis::pipe()
            .add_command(held)
            .add_command(status)
            .query_async::<()>(&mut conn)
            .await?;
    }
    Ok(())
}

/// Redis's CPU time so far (user + system, `INFO cpu`), in seconds.
async fn redis_cpu_s(store: &Store) -> anyhow::Result<f64> {
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query_async(&mut store.conn())
        .await?;
    let field = |name: &str| {
        info.lines()
            .find_map(|l| {
                l.strip_prefix(name)?
                    .strip_prefix(':')?
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .ok_or_else(|| anyhow::anyhow!("INFO cpu has no {name}"))
    };
    Ok(field("used_cpu_user")? + field("used_cpu_sys")?)
}

/// Rows per second of the plain loop: `orders` inserted into an empty table shaped like
/// `orders`, one autocommit multi-row INSERT per `batch`, on one connection.
async fn floor(
    pool: &sqlx::MySqlPool,
    orders: &[OrderMessage],
    batch: usize,
) -> anyhow::Result<f64> {
    sqlx::query("CREATE TABLE IF NOT EXISTS orders_floor LIKE orders")
        .execute(pool)
        .await?;
    sqlx::query("TRUNCATE TABLE orders_floor")
        .execute(pool)
        .await?;
    let mut db = pool.acquire().await?;
    let started = Instant::now();
    for chunk in orders.chunks(batch) {
        let mut q: QueryBuilder<MySql> = QueryBuilder::new(
            "INSERT INTO orders_floor (order_id, event_id, user_id, status, reserved_at) ",
        );
        q.push_values(chunk, |mut row, o| {
            row.push_bind(&o.order_id)
                .push_bind(&o.event_id)
                .push_bind(&o.user_id)
                .push_bind("confirmed")
                .push_bind(
                    chrono::DateTime::from_timestamp_millis(o.reserved_at).map(|t| t.naive_utc()),
                );
        });
        q.build().execute(&mut *db).await?;
    }
    let rate = orders.len() as f64 / started.elapsed().as_secs_f64();
    drop(db);
    sqlx::query("DROP TABLE orders_floor").execute(pool).await?;
    Ok(rate)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("BENCH_ORDERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let batch: usize = std::env::var("BENCH_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let (redis, mysql, brokers) = (env("REDIS_URL")?, env("MYSQL_URL")?, env("KAFKA_BROKERS")?);
    let run = uuid::Uuid::now_v7().simple().to_string();
    let topic = format!("bench.consumer.{run}");
    let event = format!("bench-{}", &run[20..]);
    let now = chrono::Utc::now().timestamp_millis();
    let orders: Vec<OrderMessage> = (0..n)
        .map(|i| OrderMessage {
            order_id: format!("{}-{i}", &run[..20]),
            event_id: event.clone(),
            user_id: format!("bench-user-{i}"),
            reserved_at: now,
            room_position: None,
            unit_no: None,
            client_net: None,
        })
        .collect();
    let pool = db::connect(&mysql).await?;

    // 1. The floor (measured again after the consumer; the report has their mean).
    let floor_before = floor(&pool, &orders, batch).await?;

    // 2. The consumer: the topic is filled first, so only consuming is timed.
    ensure_topic(&brokers, &topic, 3).await?;
    let producer: FutureProducer = client_config(&brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()?;
    // Packed as the relay packs them (`relay_pack`, BENCH_PACK to change it).
    let pack: usize = std::env::var("BENCH_PACK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(flashgate_origin::kafka::DEFAULT_PACK);
    let messages = flashgate_origin::kafka::pack_orders(&orders, pack);
    for chunk in messages.chunks(5000) {
        let sends = chunk.iter().map(|m| {
            let producer = producer.clone();
            let topic = topic.clone();
            async move {
                producer
                    .send(
                        FutureRecord::to(&topic)
                            .key(m.key.as_bytes())
                            .payload(&m.payload),
                        Duration::from_secs(30),
                    )
                    .await
                    .map(|_| ())
                    .map_err(|(e, _)| anyhow::anyhow!("produce: {e}"))
            }
        });
        for r in futures::future::join_all(sends).await {
            r?;
        }
    }
    // The broker's own pace: the same messages read by a bare consumer that does nothing.
    let kafka_floor = {
        use rdkafka::consumer::{Consumer, StreamConsumer};
        let bare: StreamConsumer = client_config(&brokers)
            .set("group.id", format!("bench-bare-{run}"))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", "6000")
            .create()?;
        bare.subscribe(&[&topic])?;
        let first = tokio::time::timeout(Duration::from_secs(60), bare.recv()).await??;
        drop(first);
        let started = Instant::now();
        // Orders per second: every message but the last carries `pack` of them.
        let mut seen = 1usize;
        while seen < messages.len() {
            tokio::time::timeout(Duration::from_secs(30), bare.recv()).await??;
            seen += 1;
        }
        n as f64 / started.elapsed().as_secs_f64()
    };
    let settings = Settings::from_figment(
        Figment::new()
            .merge(("consumer.group", format!("bench-{run}")))
            .merge(("consumer.max_rate", 0))
            .merge(("consumer.batch_size", batch)),
    )?;
    let store = Store::connect(&redis, &format!("bench-{run}:")).await?;
    seed_reservations(&store, &event, &orders).await?;
    let redis_cpu_before = redis_cpu_s(&store).await?;
    let consumer = Consumer::new(
        &brokers,
        &topic,
        pool.clone(),
        store.clone(),
        settings.consumer,
        settings.purchase.user_window_ms,
    )?;
    let finished = Arc::new(AtomicU64::new(0));
    metrics::set_global_recorder(Finished(finished.clone()))
        .map_err(|e| anyhow::anyhow!("metrics recorder: {e}"))?;
    let (stop, rx) = flashgate_origin::shutdown::channel();
    let started = Instant::now();
    let task = tokio::spawn(consumer.run(rx));
    let deadline = started + Duration::from_secs(300);
    // (when the first batch was finished, how many orders it held)
    let mut first: Option<(Instant, u64)> = None;
    loop {
        let done = finished.load(Ordering::Relaxed);
        if done > 0 && first.is_none() {
            first = Some((Instant::now(), done));
        }
        if done as usize >= n {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline && !task.is_finished(),
            "the consumer finished only {done} of {n} orders"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let (first_at, first_orders) = first.unwrap_or((started, 0));
    let join_s = (first_at - started).as_secs_f64();
    let steady_s = first_at.elapsed().as_secs_f64().max(1e-6);
    let consumer_rps = (n as u64 - first_orders) as f64 / steady_s;
    // Redis's CPU per order over the whole run, the group join included.
    let redis_us_per_order = (redis_cpu_s(&store).await? - redis_cpu_before) * 1e6 / n as f64;
    let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM orders WHERE event_id = ?")
        .bind(&event)
        .fetch_one(&pool)
        .await?;
    anyhow::ensure!(
        rows as usize == n,
        "the consumer reported {n} orders done, but {rows} rows are in orders"
    );
    stop.fire();
    task.await??;
    let floor_after = floor(&pool, &orders, batch).await?;
    let floor = (floor_before + floor_after) / 2.0;
    sqlx::query("DELETE FROM orders WHERE event_id = ?")
        .bind(&event)
        .execute(&pool)
        .await?;
    println!(
        "{}",
        serde_json::json!({"orders": n, "batch": batch, "pack": pack, "messages": messages.len(), "consumer_rows_per_s": consumer_rps,
            "floor_rows_per_s": floor, "floor_before_rows_per_s": floor_before, "floor_after_rows_per_s": floor_after, "kafka_read_per_s": kafka_floor,
            "first_batch_after_s": join_s, "first_batch_orders": first_orders,
            "redis_us_per_order": redis_us_per_order})
    );
    Ok(())
}
