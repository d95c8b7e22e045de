//! The draw's public record: what anyone can check after the draw.
//!
//! Before registration opens, the room publishes [`commitment`]`(seed)`. Each shard of the
//! room chains its entries as they register ([`ShardChain`]), so its root fixes who
//! entered and in what order. At the draw the room publishes a [`SealRecord`]: the roots,
//! the count and the seed itself. With the entries, [`verify_record`] recomputes the roots
//! and every position: the seed was fixed before anyone entered, and the entries after.

use super::chain::{Entry, ShardChain};
use super::permute::Permutation;
use crate::crypto::sha256_hex;
use crate::ids::EventId;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The fewest bytes a seed may have.
pub const MIN_SEED_BYTES: usize = 16;

/// The published commitment to a seed: its SHA-256, lowercase hex.
///
/// ```
/// use flashgate_core::room::seal::commitment;
/// assert_eq!(
///     commitment(b"abc"),
///     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
/// );
/// ```
pub fn commitment(seed: &[u8]) -> String {
    sha256_hex(seed)
}

/// The draw's public record, published when the room seals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealRecord {
    /// The event whose room drew.
    pub event: EventId,
    /// How many entries the draw holds.
    pub entrants: u64,
    /// Each shard's root, shard 0 first.
    pub shard_roots: Vec<String>,
    /// The seed, revealed, lowercase hex.
    pub seed_hex: String,
    /// The commitment published before registration opened.
    pub commitment: String,
    /// The public randomness round announced with the commitment, if any, for audit.
    pub beacon_round: Option<u64>,
}

/// Why a record does not check out, or could not be sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// The seed is not hex, or shorter than [`MIN_SEED_BYTES`].
    BadSeed,
    /// The seed does not hash to the commitment.
    CommitmentMismatch,
    /// Another number of shards than the record has roots.
    ShardCount {
        /// Roots in the record.
        record: usize,
        /// Shards given.
        given: usize,
    },
    /// Shard `shard` is not where its number says, among the chains sealed.
    ShardOutOfPlace {
        /// The shard's number.
        shard: u32,
    },
    /// The entry at `index` of `shard` carries another shard or index.
    EntryOutOfPlace {
        /// The shard.
        shard: u32,
        /// The place in it.
        index: u64,
    },
    /// A shard's entries do not chain to its root.
    RootMismatch {
        /// The shard.
        shard: u32,
    },
    /// The entries do not add up to `entrants`.
    EntrantCount {
        /// The record's count.
        record: u64,
        /// Entries given.
        given: u64,
    },
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerifyError::BadSeed => {
                write!(f, "the seed is not hex of at least {MIN_SEED_BYTES} bytes")
            }
            VerifyError::CommitmentMismatch => {
                f.write_str("the seed does not match its commitment")
            }
            VerifyError::ShardCount { record, given } => {
                write!(
                    f,
                    "the record has {record} shard roots but {given} shards were given"
                )
            }
            VerifyError::ShardOutOfPlace { shard } => {
                write!(f, "shard {shard} is not at its place in the list")
            }
            VerifyError::EntryOutOfPlace { shard, index } => {
                write!(f, "entry {index} of shard {shard} says it is elsewhere")
            }
            VerifyError::RootMismatch { shard } => {
                write!(f, "the entries of shard {shard} do not chain to its root")
            }
            VerifyError::EntrantCount { record, given } => {
                write!(
                    f,
                    "the record counts {record} entrants but {given} entries were given"
                )
            }
        }
    }
}

impl std::error::Error for VerifyError {}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl SealRecord {
    /// The record of a draw over `chains` (shard 0 first) with `seed`.
    ///
    /// ```
    /// use flashgate_core::ids::{EventId, UserId};
    /// use flashgate_core::room::chain::ShardChain;
    /// use flashgate_core::room::seal::{verify_record, SealRecord};
    /// let event = EventId::parse("phone").expect("a slug");
    /// let mut chain = ShardChain::new(&event, 0);
    /// let entries: Vec<_> = ["a", "b", "c"]
    ///     .iter()
    ///     .map(|u| chain.register(UserId::parse(u).expect("an id"), "fp".into(), 1_000))
    ///     .collect();
    /// let seed = [7u8; 32];
    /// let record = SealRecord::seal(&event, &[chain], &seed, None).expect("a valid seed");
    /// let mut positions = verify_record(&record, &[entries]).expect("it checks out");
    /// positions.sort_unstable();
    /// assert_eq!(positions, [1, 2, 3]);
    /// ```
    pub fn seal(
        event: &EventId,
        chains: &[ShardChain],
        seed: &[u8],
        beacon_round: Option<u64>,
    ) -> Result<SealRecord, VerifyError> {
        if seed.len() < MIN_SEED_BYTES {
            return Err(VerifyError::BadSeed);
        }
        for (place, chain) in chains.iter().enumerate() {
            if usize::try_from(chain.shard()).ok() != Some(place) {
                return Err(VerifyError::ShardOutOfPlace {
                    shard: chain.shard(),
                });
            }
        }
        Ok(SealRecord {
            event: event.clone(),
            entrants: chains.iter().map(ShardChain::len).sum(),
            shard_roots: chains.iter().map(|c| c.root().to_owned()).collect(),
            seed_hex: hex(seed),
            commitment: commitment(seed),
            beacon_round,
        })
    }

    /// The seed's bytes, if the record holds a valid one.
    pub fn seed(&self) -> Result<Vec<u8>, VerifyError> {
        unhex(&self.seed_hex)
            .filter(|s| s.len() >= MIN_SEED_BYTES)
            .ok_or(VerifyError::BadSeed)
    }
}

/// Checks a record against the entries of every shard (shard 0 first, each in arrival
/// order) and returns every position, by global index (positions count from 1).
pub fn verify_record(
    record: &SealRecord,
    entries_by_shard: &[Vec<Entry>],
) -> Result<Vec<u64>, VerifyError> {
    let seed = record.seed()?;
    if commitment(&seed) != record.commitment {
        return Err(VerifyError::CommitmentMismatch);
    }
    if entries_by_shard.len() != record.shard_roots.len() {
        return Err(VerifyError::ShardCount {
            record: record.shard_roots.len(),
            given: entries_by_shard.len(),
        });
    }
    let mut given = 0u64;
    for ((shard, entries), root) in (0u32..).zip(entries_by_shard).zip(&record.shard_roots) {
        let mut chain = ShardChain::new(&record.event, shard);
        for entry in entries {
            if !chain.append(entry) {
                return Err(VerifyError::EntryOutOfPlace {
                    shard,
                    index: chain.len(),
                });
            }
        }
        if chain.root() != root {
            return Err(VerifyError::RootMismatch { shard });
        }
        given += chain.len();
    }
    if given != record.entrants {
        return Err(VerifyError::EntrantCount {
            record: record.entrants,
            given,
        });
    }
    let draw = Permutation::new(&seed, record.entrants);
    Ok((0..record.entrants)
        .filter_map(|i| draw.apply(i))
        .map(|p| p + 1)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::UserId;

    const SEED: [u8; 32] = [0x5e; 32];

    fn event() -> EventId {
        EventId::parse("phone").expect("valid")
    }

    /// Three shards of 4, 0 and 3 entries.
    fn registered() -> (Vec<ShardChain>, Vec<Vec<Entry>>) {
        let mut chains = Vec::new();
        let mut entries = Vec::new();
        for (shard, size) in [(0u32, 4u64), (1, 0), (2, 3)] {
            let mut chain = ShardChain::new(&event(), shard);
            let list = (0..size)
                .map(|i| {
                    let user = UserId::parse(&format!("u{shard}-{i}")).expect("valid");
                    chain.register(user, format!("fp{i}"), 1_000 + i as i64)
                })
                .collect();
            chains.push(chain);
            entries.push(list);
        }
        (chains, entries)
    }

    fn sealed() -> (SealRecord, Vec<Vec<Entry>>) {
        let (chains, entries) = registered();
        let record = SealRecord::seal(&event(), &chains, &SEED, Some(42)).expect("valid");
        (record, entries)
    }

    #[test]
    fn an_honest_record_checks_out_with_every_position_once() {
        let (record, entries) = sealed();
        assert_eq!(record.entrants, 7);
        let mut positions = verify_record(&record, &entries).expect("honest");
        positions.sort_unstable();
        assert_eq!(positions, (1..=7).collect::<Vec<u64>>());
    }

    #[test]
    fn changing_one_entry_changes_its_root_and_fails() {
        let (record, mut entries) = sealed();
        entries[2][1].registered_at += 1;
        let mut changed = ShardChain::new(&event(), 2);
        for e in &entries[2] {
            assert!(changed.append(e), "in place");
        }
        assert_ne!(changed.root(), record.shard_roots[2]);
        assert_eq!(
            verify_record(&record, &entries),
            Err(VerifyError::RootMismatch { shard: 2 })
        );
    }

    #[test]
    fn reordered_dropped_or_moved_entries_fail() {
        let (record, entries) = sealed();
        let mut swapped = entries.clone();
        swapped[0].swap(0, 1);
        assert_eq!(
            verify_record(&record, &swapped),
            Err(VerifyError::EntryOutOfPlace { shard: 0, index: 0 })
        );
        let mut dropped = entries.clone();
        dropped[0].pop();
        assert_eq!(
            verify_record(&record, &dropped),
            Err(VerifyError::RootMismatch { shard: 0 })
        );
        assert_eq!(
            verify_record(&record, &entries[..2]),
            Err(VerifyError::ShardCount {
                record: 3,
                given: 2
            })
        );
    }

    #[test]
    fn another_seed_or_count_fails() {
        let (record, entries) = sealed();
        let other_seed = SealRecord {
            seed_hex: hex(&[1u8; 32]),
            ..record.clone()
        };
        assert_eq!(
            verify_record(&other_seed, &entries),
            Err(VerifyError::CommitmentMismatch)
        );
        let short = SealRecord {
            seed_hex: "abcd".into(),
            ..record.clone()
        };
        assert_eq!(verify_record(&short, &entries), Err(VerifyError::BadSeed));
        let inflated = SealRecord {
            entrants: 8,
            ..record
        };
        assert_eq!(
            verify_record(&inflated, &entries),
            Err(VerifyError::EntrantCount {
                record: 8,
                given: 7
            })
        );
    }

    #[test]
    fn the_record_round_trips_through_json() {
        let (record, entries) = sealed();
        let json = serde_json::to_string(&record).expect("serializes");
        let back: SealRecord = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, record);
        let entry_json = serde_json::to_string(&entries[0][0]).expect("serializes");
        assert_eq!(
            serde_json::from_str::<Entry>(&entry_json).expect("parses"),
            entries[0][0]
        );
    }

    #[test]
    fn chains_sealed_out_of_order_are_refused() {
        let (mut chains, _) = registered();
        chains.swap(0, 1);
        assert_eq!(
            SealRecord::seal(&event(), &chains, &SEED, None),
            Err(VerifyError::ShardOutOfPlace { shard: 1 })
        );
        assert_eq!(
            SealRecord::seal(&event(), &[], &[0u8; 8], None),
            Err(VerifyError::BadSeed)
        );
    }

    #[test]
    fn frozen_roots_and_positions() {
        // Computed once by an independent implementation of the format.
        let (record, entries) = sealed();
        assert_eq!(
            ShardChain::new(&event(), 1).root(),
            "81a9d011016c6c320ab224e54dfafe01d6e55b60b99a3aa9ccde2b0d44943e40"
        );
        assert_eq!(
            record.shard_roots,
            [
                "e6f9bb62b8666180872fae27a812c571fc8a040c40d83c7a81fc06061cb052fd",
                "81a9d011016c6c320ab224e54dfafe01d6e55b60b99a3aa9ccde2b0d44943e40",
                "e7ddca7bfb74ffa076a4d60a76b9cf4c7e800230d8f9a8400c38c290bf62cd3c",
            ]
        );
        assert_eq!(
            verify_record(&record, &entries).expect("honest"),
            [4, 2, 3, 7, 5, 6, 1]
        );
    }
}
