//! `flashgate migrate`: the database migrations and the orders topic.

use crate::config::Settings;
use crate::{db, kafka};
use secrecy::ExposeSecret;

/// Applies the migrations and creates the orders topic if it is missing.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    db::connect(settings.db.url.expose_secret()).await?;
    kafka::ensure_topic_with(
        &settings.kafka.brokers,
        &settings.kafka.orders_topic,
        &settings.kafka.orders_topic_spec(),
    )
    .await?;
    println!(
        "migrations applied; topic {} ready",
        settings.kafka.orders_topic
    );
    Ok(())
}
