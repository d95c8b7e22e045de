//! `flashgate consume`: the order consumer, with its health and metrics server.

use crate::config::Settings;
use crate::consume::Consumer;
use crate::redis::Store;
use crate::{db, kafka, telemetry};
use anyhow::Context;
use secrecy::ExposeSecret;
use std::time::Duration;

/// Consumes orders until a signal; health and metrics answer from the start.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let shutdown = super::on_signal();
    // Health and metrics answer from the start: waiting for the database below may
    // take a minute, and a probe must not take that for a dead process.
    if let Some(addr) = settings.consumer.listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (consumer.listen)"))?;
        tracing::info!(%addr, "consumer health and metrics");
        // The recorder now: what the consumer counts is kept from its first batch.
        telemetry::metrics();
        telemetry::start_at_zero(telemetry::CONSUMER_COUNTERS);
        let stop = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = telemetry::serve_health(listener, stop).await {
                tracing::error!(error = %e, "consumer health and metrics server failed");
            }
        });
    }
    // A signal while waiting for the database or the broker stops the start too.
    let mut stop = shutdown.clone();
    let (redis, pool) = tokio::select! {
        ready = start(&settings) => ready?,
        _ = stop.recv() => return Ok(()),
    };
    let consumer = Consumer::new(
        &settings.kafka.brokers,
        &settings.kafka.orders_topic,
        pool,
        redis,
        settings.consumer.clone(),
        settings.purchase.user_window_ms,
    )?;
    tracing::info!(topic = %settings.kafka.orders_topic, "consumer started");
    consumer.run(shutdown).await
}

/// What the consumer needs before it joins the group: Redis, the database (waited for up
/// to a minute), the orders topic and the dead-letter topic.
async fn start(settings: &Settings) -> anyhow::Result<(Store, sqlx::MySqlPool)> {
    let redis = Store::open(&settings.redis).await?;
    let pool =
        db::connect_waiting(settings.db.url.expose_secret(), Duration::from_secs(60)).await?;
    kafka::ensure_topic_with(
        &settings.kafka.brokers,
        &settings.kafka.orders_topic,
        &settings.kafka.orders_topic_spec(),
    )
    .await?;
    // The dead-letter topic with the configured replication (the consumer would create
    // it with the cluster's default otherwise).
    let dead_letters =
        crate::consume::dead_letter_topic(&settings.kafka.orders_topic, &settings.consumer);
    if let Err(e) = kafka::ensure_topic_with(
        &settings.kafka.brokers,
        &dead_letters,
        &settings.kafka.topic_spec(1),
    )
    .await
    {
        tracing::warn!(error = %format!("{e:#}"), "dead-letter topic not ready; poison messages will wait");
    }
    Ok((redis, pool))
}
