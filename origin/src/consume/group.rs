//! The group's own view of who reads what (DescribeGroups), so that the stall check acts
//! only on partitions no live member owns, and stays quiet under a correct coordinator.

use rdkafka::groups::GroupInfo;
use std::collections::HashSet;

/// What the coordinator says about the owners of a topic's partitions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) enum Owners {
    /// Not known this round (the coordinator did not answer): nothing is done on it.
    #[default]
    Unknown,
    /// The members' assignments are not reported (tansu 0.6: its DescribeGroups leaves
    /// them empty, and librdkafka's group listing fails against it): who owns what cannot
    /// be told from outside.
    NotReported,
    /// The live members' assignments, as a Kafka broker reports them; `stable` is false
    /// while a rebalance is under way.
    Reported { stable: bool, owned: HashSet<i32> },
}

impl Owners {
    /// The view of `group` for `topic`.
    pub(super) fn of(group: &GroupInfo, topic: &str) -> Self {
        Self::from_parts(
            group.state(),
            group.members().iter().map(|m| m.assignment()),
            topic,
        )
    }

    /// The view from the group's state and each member's assignment bytes (Kafka's
    /// consumer protocol), as DescribeGroups answers them.
    fn from_parts<'a>(
        state: &str,
        assignments: impl Iterator<Item = Option<&'a [u8]>>,
        topic: &str,
    ) -> Self {
        let mut owned = HashSet::new();
        let mut reported = false;
        for bytes in assignments.flatten().filter(|b| !b.is_empty()) {
            match assigned(bytes, topic) {
                Some(partitions) => owned.extend(partitions),
                // Bytes that do not read as an assignment: nothing to go by.
                None => return Self::Unknown,
            }
            reported = true;
        }
        if reported {
            Self::Reported {
                stable: state == "Stable",
                owned,
            }
        } else if state == "Stable" {
            Self::NotReported
        } else {
            // No member with an assignment in a group that is empty or rebalancing: the
            // coordinator is at work, or nobody is in the group yet.
            Self::Reported {
                stable: false,
                owned,
            }
        }
    }
}

/// The partitions of `topic` in a member's assignment (Kafka's ConsumerProtocolAssignment:
/// version, then per topic its name and partitions, then user data, which is not read).
fn assigned(bytes: &[u8], topic: &str) -> Option<Vec<i32>> {
    let mut r = Reader(bytes);
    let _version = r.i16()?;
    let topics = r.i32()?;
    let mut found = Vec::new();
    for _ in 0..topics.max(0) {
        let len = usize::try_from(r.i16()?).ok()?;
        let name = r.take(len)?;
        let count = r.i32()?;
        for _ in 0..count.max(0) {
            let p = r.i32()?;
            if name == topic.as_bytes() {
                found.push(p);
            }
        }
    }
    Some(found)
}

/// Big-endian fields read from the front of a slice; `None` past its end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }

    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A member's assignment as a consumer encodes it: `(topic, partitions)` pairs.
    fn encoded(topics: &[(&str, &[i32])]) -> Vec<u8> {
        let mut b = 1i16.to_be_bytes().to_vec();
        b.extend((topics.len() as i32).to_be_bytes());
        for (name, partitions) in topics {
            b.extend((name.len() as i16).to_be_bytes());
            b.extend(name.as_bytes());
            b.extend((partitions.len() as i32).to_be_bytes());
            for p in *partitions {
                b.extend(p.to_be_bytes());
            }
        }
        // User data: none.
        b.extend((-1i32).to_be_bytes());
        b
    }

    #[test]
    fn an_assignment_reads_as_the_partitions_of_the_topic() {
        let bytes = encoded(&[("other", &[0, 1]), ("orders", &[2, 5])]);
        assert_eq!(assigned(&bytes, "orders"), Some(vec![2, 5]));
        assert_eq!(assigned(&bytes, "missing"), Some(vec![]));
        // Cut short: not an assignment.
        assert_eq!(assigned(&bytes[..bytes.len() - 9], "orders"), None);
    }

    #[test]
    fn the_view_says_who_owns_what_only_when_the_coordinator_reports_it() {
        let a = encoded(&[("orders", &[0, 1])]);
        let b = encoded(&[("orders", &[])]);
        let view = |state, members: &[Option<&[u8]>]| {
            Owners::from_parts(state, members.iter().copied(), "orders")
        };
        assert_eq!(
            view("Stable", &[Some(&a), Some(&b)]),
            Owners::Reported {
                stable: true,
                owned: [0, 1].into()
            }
        );
        assert_eq!(
            view("PreparingRebalance", &[Some(&a)]),
            Owners::Reported {
                stable: false,
                owned: [0, 1].into()
            }
        );
        // tansu 0.6: members listed, assignments empty.
        assert_eq!(view("Stable", &[Some(&[]), None]), Owners::NotReported);
        assert_eq!(
            view("Empty", &[]),
            Owners::Reported {
                stable: false,
                owned: HashSet::new()
            }
        );
        assert_eq!(view("Stable", &[Some(&[0, 1, 0])]), Owners::Unknown);
    }
}
