//! Each shard's hash chain of entries: its root fixes who entered the draw and in what
//! order, as they register.
//!
//! Entries are ordered by shard, then by arrival in the shard; that global index
//! ([`global_index`]) is what the draw permutes.

use crate::crypto::sha256_hex;
use crate::ids::{EventId, UserId};
use crate::Millis;
use serde::{Deserialize, Serialize};

const SHARD_DOMAIN: &[u8] = b"flashgate room shard v1\n";

/// One registration in the draw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Who registered.
    pub user: UserId,
    /// A hash of their client (see [`crate::ticket::fingerprint`]).
    pub fingerprint_hash: String,
    /// The shard that took the registration.
    pub shard: u32,
    /// Its place in that shard's arrivals, from 0.
    pub arrival_index_in_shard: u64,
    /// When it registered.
    pub registered_at: Millis,
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // A length prefix keeps the encoding unambiguous whatever the strings hold.
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

impl Entry {
    /// The bytes chained into the shard's root: each string length-prefixed (u32), each
    /// number big-endian.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(96);
        put_bytes(&mut out, self.user.as_str().as_bytes());
        put_bytes(&mut out, self.fingerprint_hash.as_bytes());
        out.extend_from_slice(&self.shard.to_be_bytes());
        out.extend_from_slice(&self.arrival_index_in_shard.to_be_bytes());
        out.extend_from_slice(&self.registered_at.to_be_bytes());
        out
    }
}

/// A shard's running hash chain: `root_0 = sha256(tag, event, shard)`, then
/// `root_k+1 = sha256(root_k || entry_k)`, roots in lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardChain {
    shard: u32,
    len: u64,
    root: String,
}

impl ShardChain {
    /// The empty chain of `shard` in `event`'s room.
    ///
    /// ```
    /// use flashgate_core::ids::{EventId, UserId};
    /// use flashgate_core::room::chain::ShardChain;
    /// let event = EventId::parse("phone").expect("a slug");
    /// let mut chain = ShardChain::new(&event, 0);
    /// let empty = chain.root().to_owned();
    /// let entry = chain.register(UserId::parse("u1").expect("an id"), "fp".into(), 1_000);
    /// assert_eq!(entry.arrival_index_in_shard, 0);
    /// assert_ne!(chain.root(), empty);
    /// ```
    pub fn new(event: &EventId, shard: u32) -> Self {
        let mut seed = SHARD_DOMAIN.to_vec();
        put_bytes(&mut seed, event.as_str().as_bytes());
        seed.extend_from_slice(&shard.to_be_bytes());
        Self {
            shard,
            len: 0,
            root: sha256_hex(&seed),
        }
    }

    /// The shard number.
    pub fn shard(&self) -> u32 {
        self.shard
    }

    /// How many entries it holds.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The root over every entry so far.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// Registers the next arrival in this shard and returns its entry, to be stored.
    pub fn register(&mut self, user: UserId, fingerprint_hash: String, at: Millis) -> Entry {
        let entry = Entry {
            user,
            fingerprint_hash,
            shard: self.shard,
            arrival_index_in_shard: self.len,
            registered_at: at,
        };
        self.chain(&entry);
        entry
    }

    /// Appends a stored entry if it is the next of this shard; whether it was.
    #[must_use]
    pub(super) fn append(&mut self, entry: &Entry) -> bool {
        if entry.shard != self.shard || entry.arrival_index_in_shard != self.len {
            return false;
        }
        self.chain(entry);
        true
    }

    fn chain(&mut self, entry: &Entry) {
        let mut data = self.root.clone().into_bytes();
        data.extend_from_slice(&entry.canonical_bytes());
        self.root = sha256_hex(&data);
        self.len += 1;
    }
}

/// The shard that takes `user`'s registration among `shards`: a hash of the user id, so
/// one user always lands on one shard, and users spread evenly.
///
/// ```
/// use flashgate_core::ids::UserId;
/// use flashgate_core::room::chain::shard_of;
/// let u = UserId::parse("alice").expect("an id");
/// assert_eq!(shard_of(&u, 4), shard_of(&u, 4));
/// assert!(shard_of(&u, 4) < 4);
/// assert_eq!(shard_of(&u, 1), 0);
/// ```
pub fn shard_of(user: &UserId, shards: u32) -> u32 {
    let digest = sha256_hex(format!("flashgate room shard of v1\n{user}").as_bytes());
    let n = u64::from_str_radix(&digest[..16], 16).unwrap_or(0);
    u32::try_from(n % u64::from(shards.max(1))).unwrap_or(0)
}

/// Where the entry at `index` of `shard` falls in the global order (shard by shard, in
/// arrival order), given every shard's size; `None` when there is no such entry.
///
/// ```
/// use flashgate_core::room::chain::global_index;
/// assert_eq!(global_index(&[3, 5], 1, 2), Some(5));
/// assert_eq!(global_index(&[3, 5], 0, 3), None);
/// ```
pub fn global_index(shard_sizes: &[u64], shard: u32, index: u64) -> Option<u64> {
    let shard = usize::try_from(shard).ok()?;
    if index >= *shard_sizes.get(shard)? {
        return None;
    }
    shard_sizes[..shard]
        .iter()
        .try_fold(index, |acc, &size| acc.checked_add(size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(slug: &str) -> EventId {
        EventId::parse(slug).expect("valid")
    }

    #[test]
    fn users_spread_over_the_shards() {
        let mut counts = [0u32; 4];
        for i in 0..4_000 {
            let user = UserId::parse(&format!("u{i}")).expect("valid");
            counts[shard_of(&user, 4) as usize] += 1;
        }
        // 1,000 expected each; a hash that clumped would fall far outside.
        assert!(
            counts.iter().all(|&c| (850..1_150).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn empty_roots_differ_by_event_and_shard() {
        let root = |e: &str, s: u32| ShardChain::new(&event(e), s).root().to_owned();
        assert_ne!(root("phone", 0), root("phone", 1));
        assert_ne!(root("phone", 0), root("tv", 0));
    }

    #[test]
    fn arrivals_get_consecutive_indices_in_their_shard() {
        let mut chain = ShardChain::new(&event("phone"), 3);
        let user = UserId::parse("u1").expect("valid");
        let a = chain.register(user.clone(), "fp".into(), 1);
        let b = chain.register(user, "fp".into(), 2);
        assert_eq!((a.shard, a.arrival_index_in_shard), (3, 0));
        assert_eq!((b.shard, b.arrival_index_in_shard), (3, 1));
        assert_eq!(chain.len(), 2);
    }

    #[test]
    fn the_global_order_is_shard_by_shard() {
        let sizes = [2, 0, 3];
        let order: Vec<Option<u64>> = [(0, 0), (0, 1), (2, 0), (2, 2), (1, 0), (3, 0)]
            .iter()
            .map(|&(s, i)| global_index(&sizes, s, i))
            .collect();
        assert_eq!(order, [Some(0), Some(1), Some(2), Some(4), None, None]);
    }
}
