//! The consumer's lag per assigned partition (`flashgate_consumer_lag`).

use super::Consumer;
use crate::kafka::client_config;
use crate::shutdown::Shutdown;
use rdkafka::consumer::Consumer as _;
use rdkafka::Offset;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// Every 2 s, sets `flashgate_consumer_lag{partition}` for the partitions assigned to this
/// consumer: the broker's high watermark less the next offset to write, which is what this
/// consumer has written or, before its first batch there, the group's committed offset (the
/// low watermark without one). A consumer that cannot write still shows its lag growing.
/// A partition a rebalance took away shows 0 here (its new owner reports it); an empty
/// assignment counts only once it has lasted three readings (a rebalance passes sooner).
pub(super) async fn report_lag(this: Arc<Consumer>, mut shutdown: Shutdown) {
    // A client of the group that never joins it (as in `watch_stalls`): it reads the
    // group's commits and the watermarks without asking anything of the member itself.
    let Ok(client) = client_config(&this.brokers)
        .set("group.id", &this.settings.group)
        .set("enable.auto.commit", "false")
        .create::<rdkafka::consumer::BaseConsumer>()
    else {
        return;
    };
    let client = Arc::new(client);
    let mut empty_readings = 0;
    // The partitions assigned at the last reading.
    let mut before: HashSet<i32> = HashSet::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = shutdown.recv() => return,
        }
        let owner = this.clone();
        let Ok(Ok(assigned)) =
            tokio::task::spawn_blocking(move || owner.consumer.assignment()).await
        else {
            continue;
        };
        empty_readings = if assigned.count() == 0 {
            empty_readings + 1
        } else {
            0
        };
        if (1..3).contains(&empty_readings) {
            continue;
        }
        let mine: HashSet<(String, i32)> = assigned
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        let written: BTreeMap<(String, i32), i64> = match this.done.lock() {
            Ok(mut d) => {
                d.retain(|key, _| mine.contains(key));
                d.clone()
            }
            Err(_) => return,
        };
        let client = client.clone();
        let partitions: HashSet<i32> = mine.iter().map(|(_, p)| *p).collect();
        let lags = tokio::task::spawn_blocking(move || {
            // The group's commits, for partitions this consumer has not written yet; when
            // the lookup fails their lag is unknown this time (not the whole topic).
            let committed = client
                .committed_offsets(assigned, Duration::from_secs(1))
                .ok();
            let start = |topic: &str, partition: i32, low: i64| {
                match committed
                    .as_ref()?
                    .find_partition(topic, partition)?
                    .offset()
                {
                    Offset::Offset(o) => Some(o),
                    // No commit stored: from the start of what the broker keeps.
                    _ => Some(low),
                }
            };
            mine.into_iter()
                .filter_map(|(topic, partition)| {
                    // A failed watermark read skips the partition: its gauge keeps its value.
                    let (low, high) = client
                        .fetch_watermarks(&topic, partition, Duration::from_secs(1))
                        .ok()?;
                    let next = match written.get(&(topic.clone(), partition)) {
                        Some(next) => *next,
                        None => start(&topic, partition, low)?,
                    };
                    Some((partition, (high - next).max(0)))
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for (partition, lag) in lags {
            metrics::gauge!("flashgate_consumer_lag", "partition" => partition.to_string())
                .set(lag as f64);
        }
        // Partitions this consumer had and a rebalance took away.
        for partition in before.difference(&partitions) {
            metrics::gauge!("flashgate_consumer_lag", "partition" => partition.to_string())
                .set(0.0);
        }
        before = partitions;
    }
}
