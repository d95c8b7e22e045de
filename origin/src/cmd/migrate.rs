//! `flashgate migrate`: the database migrations and the orders topic.

use crate::config::Settings;
use crate::{db, kafka};
use secrecy::ExposeSecret;

/// Applies the migrations and creates the orders topic if it is missing.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    db::connect(settings.mysql_url.expose_secret()).await?;
    kafka::ensure_topic(
        &settings.kafka_brokers,
        &settings.orders_topic,
        settings.topic_partitions,
    )
    .await?;
    println!("migrations applied; topic {} ready", settings.orders_topic);
    Ok(())
}
