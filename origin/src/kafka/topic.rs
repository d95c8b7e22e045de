//! The orders and dead-letter topics: created with enough replicas to survive a broker
//! loss where the cluster allows, and a warning at start where they cannot.

use super::client_config;
use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use std::time::Duration;

/// How many replicas a topic gets, and how many must hold a write (`min.insync.replicas`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replication {
    /// Replicas of each partition; 0 = the cluster's brokers, at most 3.
    pub factor: i32,
    /// `min.insync.replicas`; 0 = one less than the replicas (at least 1).
    pub min_insync: i32,
}

/// A topic to ensure: its partitions and replication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicSpec {
    /// Partitions when it is created.
    pub partitions: i32,
    /// Replication when it is created.
    pub replication: Replication,
}

impl Replication {
    /// The factor and `min.insync.replicas` to create a topic with on a cluster of
    /// `brokers`, or why it cannot be.
    pub(crate) fn resolve(self, brokers: i32) -> anyhow::Result<(i32, i32)> {
        let factor = if self.factor > 0 {
            self.factor
        } else {
            brokers.clamp(1, 3)
        };
        if factor > brokers {
            anyhow::bail!(
                "topic_replication is {factor} but the Kafka cluster has {brokers} broker(s)"
            );
        }
        let min_insync = if self.min_insync > 0 {
            self.min_insync
        } else {
            (factor - 1).max(1)
        };
        if min_insync > factor {
            anyhow::bail!(
                "topic_min_insync_replicas is {min_insync} but topics get {factor} replica(s)"
            );
        }
        Ok((factor, min_insync))
    }
}

/// What a topic with `replicas` replicas and `min_insync` can lose, if anything: `None`
/// when a broker loss neither loses an acknowledged order nor stops the relay.
pub(crate) fn broker_loss_risk(replicas: usize, min_insync: Option<i32>) -> Option<String> {
    if replicas < 2 {
        return Some(format!(
            "has {replicas} replica: losing its broker loses the orders not yet consumed"
        ));
    }
    match min_insync {
        None => None,
        Some(m) if m < 2 => Some(format!(
            "has min.insync.replicas {m}: an order acknowledged by one broker is lost with it"
        )),
        Some(m) if usize::try_from(m).unwrap_or(usize::MAX) >= replicas => Some(format!(
            "has min.insync.replicas {m} of {replicas} replicas: one broker down stops the relay"
        )),
        Some(_) => None,
    }
}

/// Creates `topic` with `partitions` and the cluster's default replication if it does not
/// exist (tests and tools; the services use [`ensure_topic_with`]).
pub async fn ensure_topic(brokers: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let spec = TopicSpec {
        partitions,
        replication: Replication {
            factor: 0,
            min_insync: 0,
        },
    };
    ensure_topic_with(brokers, topic, &spec).await
}

/// Creates `topic` as `spec` says if it does not exist, then warns if it (new or not)
/// cannot survive the loss of a broker.
pub async fn ensure_topic_with(brokers: &str, topic: &str, spec: &TopicSpec) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = client_config(brokers)
        .create()
        .context("cannot create Kafka admin client")?;
    let cluster = cluster_brokers(brokers).await?;
    // The replication matters only to a topic about to be created: an existing one is
    // used as it is (a broker down at start must not stop a service whose topic exists).
    match spec.replication.resolve(cluster) {
        Ok((factor, min_insync)) => {
            create(&admin, brokers, topic, spec.partitions, factor, min_insync).await?
        }
        Err(e) if topic_exists(brokers, topic).await => {
            tracing::warn!(topic, "{e:#}; the topic exists and is used as it is");
        }
        Err(e) => return Err(e.context("configuration")),
    }
    if let Some(risk) = topic_risk(&admin, brokers, topic).await {
        tracing::warn!(
            topic,
            "Kafka topic {topic} {risk} (topic_replication, topic_min_insync_replicas)"
        );
    }
    Ok(())
}

/// Creates `topic` unless it exists.
async fn create(
    admin: &AdminClient<DefaultClientContext>,
    brokers: &str,
    topic: &str,
    partitions: i32,
    factor: i32,
    min_insync: i32,
) -> anyhow::Result<()> {
    let insync = min_insync.to_string();
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(factor));
    if factor > 1 {
        new = new.set("min.insync.replicas", &insync);
    }
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(5)));
    let results = tokio::time::timeout(Duration::from_secs(10), admin.create_topics([&new], &opts))
        .await
        .map_err(|_| {
            anyhow::anyhow!("cannot reach Kafka at {brokers}: timed out creating topic {topic}")
        })?
        .with_context(|| format!("cannot reach Kafka at {brokers}"))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => anyhow::bail!("cannot create Kafka topic {t}: {code}"),
        }
    }
    Ok(())
}

/// Whether the cluster's metadata has `topic` with partitions.
async fn topic_exists(brokers: &str, topic: &str) -> bool {
    let Ok(client) = client_config(brokers).create::<BaseConsumer>() else {
        return false;
    };
    let name = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        client
            .fetch_metadata(Some(&name), Duration::from_secs(5))
            .is_ok_and(|m| {
                m.topics()
                    .iter()
                    .any(|t| t.name() == name && t.error().is_none() && !t.partitions().is_empty())
            })
    })
    .await
    .unwrap_or(false)
}

/// The brokers of the cluster, from its metadata.
async fn cluster_brokers(brokers: &str) -> anyhow::Result<i32> {
    let client: BaseConsumer = client_config(brokers)
        .create()
        .context("cannot create Kafka client")?;
    let count = tokio::task::spawn_blocking(move || {
        client
            .fetch_metadata(None, Duration::from_secs(5))
            .map(|m| m.brokers().len())
    })
    .await
    .context("metadata lookup")?
    .with_context(|| format!("cannot reach Kafka at {brokers}"))?;
    Ok(i32::try_from(count).unwrap_or(i32::MAX))
}

/// What the existing `topic` risks on a broker loss (see [`broker_loss_risk`]); `None`
/// when it is safe or its settings cannot be read.
async fn topic_risk(
    admin: &AdminClient<DefaultClientContext>,
    brokers: &str,
    topic: &str,
) -> Option<String> {
    let client: BaseConsumer = client_config(brokers).create().ok()?;
    let name = topic.to_owned();
    let replicas = tokio::task::spawn_blocking(move || {
        let metadata = client
            .fetch_metadata(Some(&name), Duration::from_secs(5))
            .ok()?;
        let t = metadata.topics().iter().find(|t| t.name() == name)?;
        t.partitions().iter().map(|p| p.replicas().len()).min()
    })
    .await
    .ok()??;
    // One replica says enough; a broker that cannot describe configs is not asked.
    let min_insync = if replicas < 2 {
        None
    } else {
        let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(5)));
        let configs = admin
            .describe_configs([&ResourceSpecifier::Topic(topic)], &opts)
            .await
            .ok()?;
        configs.into_iter().flatten().find_map(|c| {
            c.get("min.insync.replicas")
                .and_then(|e| e.value.as_deref())
                .and_then(|v| v.parse::<i32>().ok())
        })
    };
    broker_loss_risk(replicas, min_insync)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auto() -> Replication {
        Replication {
            factor: 0,
            min_insync: 0,
        }
    }

    #[test]
    fn replication_defaults_to_three_of_the_cluster_with_one_spare() {
        assert_eq!(auto().resolve(1).expect("ok"), (1, 1));
        assert_eq!(auto().resolve(2).expect("ok"), (2, 1));
        assert_eq!(auto().resolve(5).expect("ok"), (3, 2));
        let five = Replication {
            factor: 5,
            min_insync: 3,
        };
        assert_eq!(five.resolve(5).expect("ok"), (5, 3));
        let err = five.resolve(3).expect_err("too few brokers").to_string();
        assert!(err.contains("3 broker"), "{err}");
        let wrong = Replication {
            factor: 2,
            min_insync: 3,
        };
        assert!(wrong.resolve(3).is_err());
    }

    #[test]
    fn a_topic_survives_a_broker_loss_only_with_spare_and_insync_replicas() {
        assert!(broker_loss_risk(1, None).is_some());
        assert!(broker_loss_risk(3, Some(1)).is_some());
        assert!(broker_loss_risk(3, Some(3)).is_some());
        assert_eq!(broker_loss_risk(3, Some(2)), None);
        assert_eq!(broker_loss_risk(2, None), None);
    }
}
