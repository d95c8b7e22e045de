//! Benchmark of the order consumer against its floor, run by `./dev bench consumer`.
//!
//! 1. Floor: the same rows inserted by a plain batched INSERT loop straight into MariaDB
//!    (sqlx, one multi-row INSERT per transaction, batches of `BENCH_BATCH`), into a table
//!    shaped like `orders`.
//! 2. The consumer: `BENCH_ORDERS` orders produced to a fresh topic first, packed as the
//!    relay packs them (`BENCH_PACK` per message, default the relay's), then the
//!    real `OrderConsumer` (rate cap off), timed from the first row it writes until every
//!    row is in `orders` (the rows of that first poll are not counted): the steady rate,
//!    without the one-off group join. The time to the first row is printed beside it.
//!
//! Needs `REDIS_URL`, `MYSQL_URL` and `KAFKA_BROKERS`; prints one JSON line.
#![allow(missing_docs)]

use figment::Figment;
use flashgate_origin::config::Settings;
use flashgate_origin::consumer::{connect_db, OrderConsumer};
use flashgate_origin::kafka::{client_config, ensure_topic, OrderMessage};
use flashgate_origin::store::Store;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::{MySql, QueryBuilder};
use std::time::{Duration, Instant};

fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name).map_err(|_| anyhow::anyhow!("{name} is not set"))
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
        })
        .collect();
    let pool = connect_db(&mysql).await?;

    // 1. The floor.
    sqlx::query("CREATE TABLE IF NOT EXISTS orders_floor LIKE orders")
        .execute(&pool)
        .await?;
    sqlx::query("TRUNCATE TABLE orders_floor")
        .execute(&pool)
        .await?;
    let started = Instant::now();
    for chunk in orders.chunks(batch) {
        let mut tx = pool.begin().await?;
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
        q.build().execute(&mut *tx).await?;
        tx.commit().await?;
    }
    let floor = n as f64 / started.elapsed().as_secs_f64();
    sqlx::query("DROP TABLE orders_floor")
        .execute(&pool)
        .await?;

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
    let consumer = OrderConsumer::new(&brokers, &topic, pool.clone(), store, settings.consumer)?;
    let (stop, rx) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let task = tokio::spawn(consumer.run(rx));
    let deadline = started + Duration::from_secs(300);
    // (when the first rows were seen, how many there were)
    let mut first: Option<(Instant, i64)> = None;
    loop {
        let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM orders WHERE event_id = ?")
            .bind(&event)
            .fetch_one(&pool)
            .await?;
        if rows > 0 && first.is_none() {
            first = Some((Instant::now(), rows));
        }
        if rows as usize >= n {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "consumer wrote only {rows} of {n} rows in 300 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (first_at, first_rows) = first.unwrap_or((started, 0));
    let join_s = (first_at - started).as_secs_f64();
    let steady_s = first_at.elapsed().as_secs_f64().max(1e-6);
    let consumer_rps = (n as i64 - first_rows) as f64 / steady_s;
    let _ = stop.send(true);
    task.await??;
    sqlx::query("DELETE FROM orders WHERE event_id = ?")
        .bind(&event)
        .execute(&pool)
        .await?;
    println!(
        "{}",
        serde_json::json!({"orders": n, "batch": batch, "pack": pack, "messages": messages.len(), "consumer_rows_per_s": consumer_rps,
            "floor_rows_per_s": floor, "kafka_read_per_s": kafka_floor,
            "first_row_after_s": join_s, "first_poll_rows": first_rows})
    );
    Ok(())
}
