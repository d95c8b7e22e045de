//! A map with a cap, for every piece of per-key state a client can grow (the edge's
//! event cache and its negative entries, sold-out marks, buyers, per-IP burst counters).
//!
//! When a new key arrives and the map is full, room is made in two steps:
//!
//! 1. entries the caller calls stale (an expired cache entry, a past window) go first;
//! 2. if more than seven eighths of the cap are still held, the least recently used
//!    entries go until seven eighths are left.
//!
//! So a flood of distinct keys never makes the map forget everyone at once: what was
//! used recently (a heavy hitter's counter, a live event) stays. Each entry carries a
//! use stamp from a counter (no clock, no ties); finding the oldest eighth is one
//! `select_nth_unstable` over the stamps, done at most once every `cap / 8` new keys, so
//! an insert costs O(1) amortised. Hand-written rather than an LRU crate: it is a few
//! lines over `HashMap`, it adds nothing to the worker's wasm, and it lets the caller say
//! what is stale.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

/// A map of at most `cap` entries that evicts stale, then least recently used, entries.
#[derive(Debug, Clone)]
pub struct Bounded<K, V> {
    map: HashMap<K, (V, u64)>,
    cap: usize,
    uses: u64,
}

impl<K: Hash + Eq, V> Bounded<K, V> {
    /// An empty map that will hold at most `cap` entries (at least one).
    ///
    /// ```
    /// use flashgate_core::bounded::Bounded;
    /// let mut m = Bounded::new(2);
    /// m.insert("a", 1, |_| false);
    /// m.insert("b", 2, |_| false);
    /// m.get("a"); // "a" is now the most recently used
    /// m.insert("c", 3, |_| false);
    /// assert_eq!((m.peek("a"), m.peek("b"), m.peek("c")), (Some(&1), None, Some(&3)));
    /// ```
    pub fn new(cap: usize) -> Self {
        Self {
            map: HashMap::new(),
            cap: cap.max(1),
            uses: 0,
        }
    }

    fn stamp(&mut self) -> u64 {
        self.uses += 1;
        self.uses
    }

    /// The value of `key`, marked as used.
    pub fn get<Q>(&mut self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get_mut(key).map(|v| &*v)
    }

    /// The value of `key`, mutable, marked as used.
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let stamp = self.stamp();
        self.map.get_mut(key).map(|(v, used)| {
            *used = stamp;
            v
        })
    }

    /// The value of `key`, without marking it as used.
    pub fn peek<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get(key).map(|(v, _)| v)
    }

    /// Whether `key` is held.
    pub fn contains<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.contains_key(key)
    }

    /// Sets `key` to `value` (marked as used). A new key in a full map first makes room:
    /// entries for which `stale` is true go, then the least recently used ones.
    pub fn insert(&mut self, key: K, value: V, stale: impl Fn(&V) -> bool) {
        if self.map.len() >= self.cap && !self.map.contains_key(&key) {
            self.make_room(stale);
        }
        let stamp = self.stamp();
        self.map.insert(key, (value, stamp));
    }

    /// Removes `key`.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.remove(key).map(|(v, _)| v)
    }

    fn make_room(&mut self, stale: impl Fn(&V) -> bool) {
        self.map.retain(|_, (v, _)| !stale(v));
        let keep = self.cap - self.cap.div_ceil(8);
        if self.map.len() <= keep {
            return;
        }
        let drop = self.map.len() - keep;
        let mut stamps: Vec<u64> = self.map.values().map(|(_, used)| *used).collect();
        let (_, newest_dropped, _) = stamps.select_nth_unstable(drop - 1);
        let newest_dropped = *newest_dropped;
        // Stamps are unique: exactly `drop` entries are at or below it.
        self.map.retain(|_, (_, used)| *used > newest_dropped);
    }

    /// How many entries are held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The most entries this map holds.
    pub fn cap(&self) -> usize {
        self.cap
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NEVER: fn(&u32) -> bool = |_| false;

    #[test]
    fn a_full_map_drops_stale_entries_first() {
        let mut m = Bounded::new(8);
        for k in 0..8u32 {
            m.insert(k, k, NEVER);
        }
        // Odd values are stale: they go, and nothing else does.
        m.insert(100, 100, |v| v % 2 == 1);
        assert_eq!(m.len(), 5);
        assert!((0..8).step_by(2).all(|k| m.contains(&k)));
        assert!(m.contains(&100));
    }

    #[test]
    fn a_flood_of_new_keys_forgets_only_the_least_recently_used_eighth() {
        let mut m = Bounded::new(800);
        for k in 0..800u32 {
            m.insert(k, k, NEVER);
        }
        m.get(&0); // the oldest key, used again
        m.insert(1000, 0, NEVER);
        // 100 of 800 went: the least recently used, which 0 no longer is.
        assert_eq!(m.len(), 701);
        assert!(m.contains(&0));
        assert!((1..=100).all(|k| !m.contains(&k)));
        assert!((101..800).all(|k| m.contains(&k)));
    }

    #[test]
    fn a_key_used_all_along_survives_any_flood() {
        let mut m = Bounded::new(1000);
        m.insert(u32::MAX, 0, NEVER);
        for k in 0..100_000u32 {
            m.insert(k, k, NEVER);
            if k % 50 == 0 {
                *m.get_mut(&u32::MAX).expect("kept") += 1;
            }
            assert!(m.len() <= 1000);
        }
        assert_eq!(m.peek(&u32::MAX), Some(&2000));
    }

    #[test]
    fn updating_a_held_key_never_evicts() {
        let mut m = Bounded::new(4);
        for k in 0..4u32 {
            m.insert(k, k, NEVER);
        }
        m.insert(2, 20, NEVER);
        assert_eq!(m.len(), 4);
        assert_eq!(m.peek(&2), Some(&20));
        assert_eq!(m.remove(&2), Some(20));
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn a_cap_of_zero_holds_one() {
        let mut m = Bounded::new(0);
        m.insert(1, 1, NEVER);
        m.insert(2, 2, NEVER);
        assert_eq!((m.cap(), m.len(), m.peek(&2)), (1, 1, Some(&2)));
    }

    proptest! {
        #[test]
        fn never_over_the_cap_and_the_last_insert_is_held(
            cap in 1usize..64, keys in proptest::collection::vec(0u16..200, 1..500)
        ) {
            let mut m = Bounded::new(cap);
            for (i, k) in keys.iter().enumerate() {
                m.insert(*k, i, |v| v % 3 == 0);
                prop_assert!(m.len() <= cap);
                prop_assert_eq!(m.peek(k), Some(&i));
            }
        }
    }
}
