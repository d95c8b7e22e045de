//! Partitions nobody reads: found from the group's view, answered by a rejoin. See
//! docs/operations.md for the broker behaviour this works around.

use super::Consumer;
use crate::kafka::client_config;
use crate::shutdown::Shutdown;
use anyhow::Context;
use rdkafka::consumer::Consumer as _;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Whether a member that holds `mine` should leave and rejoin the group for the `stuck`
/// partitions (see [`Consumer::rejoin_if_orphaned`]): none of them is its own, and
/// it holds something, or has held nothing since `stall_after` before `now`.
fn orphaned(
    mine: &HashSet<i32>,
    stuck: &[i32],
    empty_since: &mut Option<Instant>,
    now: Instant,
    stall_after: Duration,
) -> bool {
    if mine.is_empty() {
        let since = *empty_since.get_or_insert(now);
        if now.duration_since(since) < stall_after {
            return false;
        }
    } else if stuck.iter().any(|p| mine.contains(p)) {
        *empty_since = None;
        return false;
    }
    *empty_since = None;
    true
}

/// Every 2 s, looks for partitions of `topic` that have a backlog (high watermark past the
/// group's committed offset) and whose committed offset has not moved for `stall_after`,
/// and publishes them (a plain client of the group that never joins it, off the consuming
/// path).
///
/// Why: a group coordinator can leave a dead member's partitions assigned to it (seen
/// with tansu 0.6; docs/operations.md, "Partitions nobody reads"), and nothing on the client
/// side reports it. `Consumer::read` answers a stall on a partition it does not own by
/// leaving and rejoining the group. The number of stuck partitions is the gauge
/// `flashgate_consumer_stalled_partitions`.
pub(super) async fn watch_stalls(
    brokers: String,
    group: String,
    topic: String,
    stall_after: Duration,
    stalled: watch::Sender<Vec<i32>>,
    mut shutdown: Shutdown,
) {
    let Ok(client) = client_config(&brokers)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .create::<rdkafka::consumer::BaseConsumer>()
    else {
        return;
    };
    let client = Arc::new(client);
    metrics::gauge!("flashgate_consumer_stalled_partitions").set(0.0);
    // Per partition: the committed position last seen and since when it has not moved.
    let mut seen: HashMap<i32, (i64, Instant)> = HashMap::new();
    let mut answered_at = Instant::now();
    const OUTAGE: Duration = Duration::from_secs(10);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = shutdown.recv() => return,
        }
        let c = client.clone();
        let t = topic.clone();
        let positions = tokio::task::spawn_blocking(move || -> Option<Vec<(i32, i64, i64)>> {
            let timeout = Duration::from_secs(2);
            let metadata = c.fetch_metadata(Some(&t), timeout).ok()?;
            let partitions: Vec<i32> = metadata
                .topics()
                .iter()
                .find(|m| m.name() == t)?
                .partitions()
                .iter()
                .map(|p| p.id())
                .collect();
            let mut tpl = TopicPartitionList::new();
            for p in &partitions {
                tpl.add_partition(&t, *p);
            }
            let committed = c.committed_offsets(tpl, timeout).ok()?;
            partitions
                .into_iter()
                .map(|p| {
                    let (low, high) = c.fetch_watermarks(&t, p, timeout).ok()?;
                    let next = match committed.find_partition(&t, p).map(|e| e.offset()) {
                        Some(Offset::Offset(n)) => n,
                        _ => low,
                    };
                    Some((p, next, high))
                })
                .collect()
        })
        .await
        .ok()
        .flatten();
        // Unknown this round: say nothing new rather than guess.
        let Some(positions) = positions else { continue };
        let now = Instant::now();
        // After the broker was away for a while, count stall time afresh, or the outage
        // would read as a stall (a round missed now and then is no outage).
        if now.duration_since(answered_at) > OUTAGE {
            seen.clear();
        }
        answered_at = now;
        let mut stuck = Vec::new();
        for (p, next, high) in positions {
            if high <= next {
                seen.remove(&p);
                continue;
            }
            let since = match seen.get(&p) {
                Some((at, since)) if *at == next => *since,
                _ => now,
            };
            seen.insert(p, (next, since));
            if now.duration_since(since) >= stall_after {
                stuck.push(p);
            }
        }
        // The group's view, the same in every member: a member left without partitions
        // reports no lag of its own, so this is what shows orders nobody reads.
        metrics::gauge!("flashgate_consumer_stalled_partitions").set(stuck.len() as f64);
        // Said again every round while something is stuck, so that an idle consumer
        // whose last rejoin did not help tries again once `stall_after` has passed.
        stalled.send_if_modified(|old| {
            let changed = !stuck.is_empty() || *old != stuck;
            *old = stuck;
            changed
        });
    }
}

impl Consumer {
    /// `stuck` partitions have a backlog and no progress; if none of them is this
    /// consumer's, leaves the group and joins it again (see [`watch_stalls`]). One of our
    /// own stuck means the trouble is here (e.g. the database), which a rebalance would
    /// not cure.
    ///
    /// An empty assignment is a rebalance under way for a moment; held for `stall_after`
    /// (tracked in `empty_since`) while partitions are stuck, it is this member left out:
    /// a consumer restarted after a kill -9 can join a group whose coordinator still
    /// gives every partition to the dead member, and nothing would ever read them.
    pub(super) fn rejoin_if_orphaned(
        &self,
        stuck: &[i32],
        stall_after: Duration,
        empty_since: &mut Option<Instant>,
    ) -> anyhow::Result<bool> {
        let mine: HashSet<i32> = match self.consumer.assignment() {
            Ok(tpl) => tpl
                .elements()
                .iter()
                .filter(|e| e.topic() == self.topic)
                .map(|e| e.partition())
                .collect(),
            Err(_) => return Ok(false),
        };
        if !orphaned(&mine, stuck, empty_since, Instant::now(), stall_after) {
            // Our own partitions stuck (or an empty assignment not yet old enough to
            // rejoin): say so once per stall time while it lasts, so that a consumer that
            // stopped making progress is never silent about it.
            let mut warned = crate::locks::lock(&self.stall_warned);
            if warned.is_some_and(|at| at.elapsed() < stall_after) {
                return Ok(false);
            }
            *warned = Some(Instant::now());
            let ours: Vec<i32> = stuck.iter().copied().filter(|p| mine.contains(p)).collect();
            tracing::warn!(
                stuck = ?stuck,
                ours = ?ours,
                assigned = ?mine,
                stalled_for_ms = stall_after.as_millis() as u64,
                "partitions with a backlog made no progress; not rejoining (yet)"
            );
            return Ok(false);
        }
        tracing::warn!(
            partitions = ?stuck,
            assigned = ?mine,
            stalled_for_ms = stall_after.as_millis() as u64,
            "partitions with a backlog made no progress and are not ours; leaving and rejoining the group for a fresh assignment"
        );
        metrics::counter!("flashgate_consumer_forced_rejoins_total").increment(1);
        self.consumer.unsubscribe();
        self.consumer
            .subscribe(&[self.topic.as_str()])
            .with_context(|| format!("cannot subscribe to {}", self.topic))?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::time::{Duration, Instant};

    #[test]
    fn a_member_rejoins_for_stuck_partitions_it_does_not_hold() {
        let stall = Duration::from_secs(20);
        let t0 = Instant::now();
        let mine: HashSet<i32> = [0].into();
        let mut since = None;
        // Its own partition is stuck: the trouble is here, a rebalance would not help.
        assert!(!orphaned(&mine, &[0, 1], &mut since, t0, stall));
        // Only others' partitions are stuck: a fresh assignment may give them to it.
        assert!(orphaned(&mine, &[1, 2], &mut since, t0, stall));
    }

    #[test]
    fn a_member_left_with_nothing_rejoins_once_it_is_no_rebalance() {
        let stall = Duration::from_secs(20);
        let t0 = Instant::now();
        let none = HashSet::new();
        let mut since = None;
        // Empty for a moment: a rebalance under way.
        assert!(!orphaned(&none, &[0, 1, 2], &mut since, t0, stall));
        assert!(!orphaned(
            &none,
            &[0, 1, 2],
            &mut since,
            t0 + stall / 2,
            stall
        ));
        // Empty as long as a stall: left out while every partition waits.
        assert!(orphaned(&none, &[0, 1, 2], &mut since, t0 + stall, stall));
        // The rejoin starts the count again.
        assert!(!orphaned(
            &none,
            &[0, 1, 2],
            &mut since,
            t0 + stall * 2,
            stall
        ));
        // A member that got something in between counts from its next empty spell.
        let mut since = None;
        assert!(!orphaned(&none, &[0], &mut since, t0, stall));
        assert!(!orphaned(
            &[0].into(),
            &[0],
            &mut since,
            t0 + stall / 2,
            stall
        ));
        assert!(!orphaned(&none, &[0], &mut since, t0 + stall, stall));
    }
}
