//! Partitions nobody reads: found from the group's view, answered by a rejoin. See
//! docs/operations.md for the broker behaviour this works around.

use super::group::Owners;
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

/// Partitions with a backlog and no progress for the stall time, and who owns them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Stalled {
    pub(super) stuck: Vec<i32>,
    /// The group's view of their owners, asked only while something is stuck.
    pub(super) owners: Owners,
}

/// Whether a member that holds `mine` should leave and rejoin the group for the stuck
/// partitions (see [`Consumer::rejoin_if_orphaned`]). Never when one of them is its own
/// (the trouble is here: a rebalance would not cure it). Otherwise it goes by the group's
/// view: where the coordinator reports assignments, only for a partition no live member
/// owns in a stable group (a correct coordinator is never fought); where it reports
/// none (tansu 0.6), when the member holds something, or has held nothing since
/// `stall_after` before `now`.
fn orphaned(
    mine: &HashSet<i32>,
    stalled: &Stalled,
    empty_since: &mut Option<Instant>,
    now: Instant,
    stall_after: Duration,
) -> bool {
    let stuck = &stalled.stuck;
    if stuck.is_empty() || stuck.iter().any(|p| mine.contains(p)) {
        *empty_since = None;
        return false;
    }
    match &stalled.owners {
        Owners::Unknown => false,
        Owners::Reported { stable, owned } => {
            *empty_since = None;
            *stable && stuck.iter().any(|p| !owned.contains(p))
        }
        Owners::NotReported => {
            if mine.is_empty() {
                let since = *empty_since.get_or_insert(now);
                if now.duration_since(since) < stall_after {
                    return false;
                }
            }
            *empty_since = None;
            true
        }
    }
}

/// Every 2 s, looks for partitions of `topic` that have a backlog (high watermark past the
/// group's committed offset) and whose committed offset has not moved for `stall_after`,
/// and publishes them with the group's view of their owners (a plain client of the group
/// that never joins it, off the consuming path).
///
/// Why: a group coordinator can leave a dead member's partitions assigned to it (tansu
/// 0.6; docs/operations.md, "Partitions nobody reads"), and nothing on the client side
/// reports it. `Consumer::read` answers a stall on a partition that no live member owns
/// by leaving and rejoining the group. The number of stuck partitions is the gauge
/// `flashgate_consumer_stalled_partitions`.
pub(super) async fn watch_stalls(
    brokers: String,
    group: String,
    topic: String,
    stall_after: Duration,
    stalled: watch::Sender<Stalled>,
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
    // Whether the coordinator has ever reported the members' assignments.
    let mut reported = false;
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
        let owners = if stuck.is_empty() {
            Owners::Unknown
        } else {
            match owners(&client, &group, &topic).await {
                Some(owners) => {
                    reported |= matches!(owners, Owners::Reported { .. });
                    owners
                }
                // A coordinator that has reported assignments before is only away for a
                // moment; one that never answers (librdkafka's group listing fails against
                // tansu 0.6) gets the rule for a view without assignments.
                None if reported => Owners::Unknown,
                None => Owners::NotReported,
            }
        };
        if !stuck.is_empty() {
            tracing::debug!(stuck = ?stuck, owners = ?owners, "the group's view of stuck partitions");
        }
        let now_stalled = Stalled { stuck, owners };
        // Said again every round while something is stuck, so that an idle consumer
        // whose last rejoin did not help tries again once `stall_after` has passed.
        stalled.send_if_modified(|old| {
            let changed = !now_stalled.stuck.is_empty() || *old != now_stalled;
            *old = now_stalled;
            changed
        });
    }
}

/// The group's view of who owns the partitions of `topic` (ListGroups, DescribeGroups);
/// `None` when it could not be had.
async fn owners(
    client: &Arc<rdkafka::consumer::BaseConsumer>,
    group: &str,
    topic: &str,
) -> Option<Owners> {
    let (c, g, t) = (client.clone(), group.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let list = c.fetch_group_list(Some(&g), Duration::from_secs(2));
        let list = list
            .inspect_err(|e| tracing::debug!(error = %e, "the group's view could not be had"))
            .ok()?;
        let info = list.groups().iter().find(|i| i.name() == g)?;
        Some(Owners::of(info, &t))
    })
    .await
    .ok()
    .flatten()
}

impl Consumer {
    /// `stalled` partitions have a backlog and no progress; if no live member owns them
    /// (as far as the group's view tells), leaves the group and joins it again (see
    /// [`watch_stalls`] and [`orphaned`]). One of our own stuck means the trouble is here
    /// (e.g. the database), which a rebalance would not cure.
    ///
    /// Where the coordinator does not report assignments, an empty assignment is a
    /// rebalance under way for a moment; held for `stall_after` (tracked in
    /// `empty_since`) while partitions are stuck, it is this member left out: a consumer
    /// restarted after a kill -9 can join a group whose coordinator still gives every
    /// partition to the dead member, and nothing would ever read them.
    pub(super) fn rejoin_if_orphaned(
        &self,
        stalled: &Stalled,
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
        let stuck = &stalled.stuck;
        if !orphaned(&mine, stalled, empty_since, Instant::now(), stall_after) {
            let ours: Vec<i32> = stuck.iter().copied().filter(|p| mine.contains(p)).collect();
            // Another live member's partitions: that member speaks for them.
            if ours.is_empty() && stalled.owners != Owners::NotReported {
                return Ok(false);
            }
            // Our own partitions stuck (or an empty assignment not yet old enough to
            // rejoin): say so once per stall time while it lasts, so that a consumer that
            // stopped making progress is never silent about it.
            let mut warned = crate::locks::lock(&self.stall_warned);
            if warned.is_some_and(|at| at.elapsed() < stall_after) {
                return Ok(false);
            }
            *warned = Some(Instant::now());
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
            "partitions with a backlog made no progress and no live member owns them; leaving and rejoining the group for a fresh assignment"
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

    fn stalled(stuck: &[i32], owners: Owners) -> Stalled {
        Stalled {
            stuck: stuck.to_vec(),
            owners,
        }
    }

    #[test]
    fn a_member_rejoins_for_stuck_partitions_it_does_not_hold() {
        let stall = Duration::from_secs(20);
        let t0 = Instant::now();
        let mine: HashSet<i32> = [0].into();
        let mut since = None;
        // Its own partition is stuck: the trouble is here, a rebalance would not help.
        let own = stalled(&[0, 1], Owners::NotReported);
        assert!(!orphaned(&mine, &own, &mut since, t0, stall));
        // Only others' partitions are stuck: a fresh assignment may give them to it.
        let others = stalled(&[1, 2], Owners::NotReported);
        assert!(orphaned(&mine, &others, &mut since, t0, stall));
        // Unless the group's view could not be had this round: nothing is done on a guess.
        let unknown = stalled(&[1, 2], Owners::Unknown);
        assert!(!orphaned(&mine, &unknown, &mut since, t0, stall));
    }

    #[test]
    fn a_correct_coordinator_is_never_fought() {
        let stall = Duration::from_secs(20);
        let t0 = Instant::now();
        let reported = |stable, owned: &[i32]| Owners::Reported {
            stable,
            owned: owned.iter().copied().collect(),
        };
        for mine in [HashSet::from([0]), HashSet::new()] {
            let mut since = None;
            // Another live member owns the stuck partitions (its database is slow, say):
            // quiet, however long it lasts, with partitions or without.
            let owned = stalled(&[1, 2], reported(true, &[0, 1, 2]));
            for later in [0, 1, 2, 10] {
                assert!(!orphaned(
                    &mine,
                    &owned,
                    &mut since,
                    t0 + stall * later,
                    stall
                ));
            }
            // A rebalance under way: the coordinator is at work.
            let moving = stalled(&[1, 2], reported(false, &[0]));
            assert!(!orphaned(
                &mine,
                &moving,
                &mut since,
                t0 + stall * 20,
                stall
            ));
            // A stable group in which no live member owns partition 2: rejoin.
            let orphan = stalled(&[1, 2], reported(true, &[0, 1]));
            assert!(orphaned(&mine, &orphan, &mut since, t0, stall));
        }
    }

    #[test]
    fn a_member_left_with_nothing_rejoins_once_it_is_no_rebalance() {
        let stall = Duration::from_secs(20);
        let t0 = Instant::now();
        let none = HashSet::new();
        let all = stalled(&[0, 1, 2], Owners::NotReported);
        let first = stalled(&[0], Owners::NotReported);
        let mut since = None;
        // Empty for a moment: a rebalance under way.
        assert!(!orphaned(&none, &all, &mut since, t0, stall));
        assert!(!orphaned(&none, &all, &mut since, t0 + stall / 2, stall));
        // Empty as long as a stall: left out while every partition waits.
        assert!(orphaned(&none, &all, &mut since, t0 + stall, stall));
        // The rejoin starts the count again.
        assert!(!orphaned(&none, &all, &mut since, t0 + stall * 2, stall));
        // A member that got something in between counts from its next empty spell.
        let mut since = None;
        assert!(!orphaned(&none, &first, &mut since, t0, stall));
        assert!(!orphaned(
            &[0].into(),
            &first,
            &mut since,
            t0 + stall / 2,
            stall
        ));
        assert!(!orphaned(&none, &first, &mut since, t0 + stall, stall));
    }
}
