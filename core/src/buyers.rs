//! A compact filter of a sold-out event's buyers, handed by the origin to the edge, so
//! that the edge forwards a buyer's retry (the origin answers their `already_purchased`)
//! while it answers everyone else's `sold_out` itself, whichever isolate saw the buyer's
//! purchase.
//!
//! A Bloom filter: a buyer is always in it; a few others may be too (about one in a
//! hundred at [`BITS_PER_BUYER`]), and their purchase then reaches the origin, which
//! answers `sold_out` as it would have: a false positive costs one origin call, never a
//! wrong answer.

use crate::crypto::{b64, unb64};
use crate::ids::UserId;
use sha2::{Digest, Sha256};

/// Filter bits per buyer: about 1 % false positives with [`HASHES`] probes.
pub const BITS_PER_BUYER: usize = 10;
/// Probes per user.
pub const HASHES: u8 = 7;
/// The largest filter decoded (bytes): past it the edge keeps its own memory only.
pub const MAX_BYTES: usize = 128 * 1024;

/// A filter of buyers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuyerFilter {
    hashes: u8,
    bits: Vec<u8>,
}

fn probes(user: &str, hashes: u8, m: u64) -> impl Iterator<Item = u64> {
    let digest = Sha256::digest(format!("flashgate buyers v1\n{user}").as_bytes());
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&digest[i..i + 8]);
        u64::from_be_bytes(w)
    };
    let (h1, h2) = (word(0), word(8) | 1);
    (0..u64::from(hashes)).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % m)
}

impl BuyerFilter {
    /// The filter of `buyers`.
    ///
    /// ```
    /// use flashgate_core::buyers::BuyerFilter;
    /// let f = BuyerFilter::of(["alice", "bob"]);
    /// assert!(f.contains("alice") && f.contains("bob"));
    /// ```
    pub fn of<'a>(buyers: impl IntoIterator<Item = &'a str>) -> Self {
        let buyers: Vec<&str> = buyers.into_iter().collect();
        let bytes = (buyers.len() * BITS_PER_BUYER).div_ceil(8).max(8);
        let mut f = Self {
            hashes: HASHES,
            bits: vec![0; bytes],
        };
        let m = f.bits_len();
        for user in buyers {
            for p in probes(user, f.hashes, m) {
                f.bits[(p / 8) as usize] |= 1 << (p % 8);
            }
        }
        f
    }

    fn bits_len(&self) -> u64 {
        self.bits.len() as u64 * 8
    }

    /// Whether `user` may be a buyer (always true for one).
    pub fn contains(&self, user: &str) -> bool {
        let m = self.bits_len();
        probes(user, self.hashes, m).all(|p| self.bits[(p / 8) as usize] & (1 << (p % 8)) != 0)
    }

    /// Whether `user` may be a buyer.
    pub fn holds(&self, user: &UserId) -> bool {
        self.contains(user.as_str())
    }

    /// The filter as text: base64url of the probe count, then the bits.
    pub fn encode(&self) -> String {
        let mut raw = Vec::with_capacity(1 + self.bits.len());
        raw.push(self.hashes);
        raw.extend_from_slice(&self.bits);
        b64(&raw)
    }

    /// A filter from [`BuyerFilter::encode`]'s text; `None` for anything else, or past
    /// [`MAX_BYTES`].
    ///
    /// ```
    /// use flashgate_core::buyers::BuyerFilter;
    /// let f = BuyerFilter::of(["alice"]);
    /// assert_eq!(BuyerFilter::decode(&f.encode()), Some(f));
    /// assert_eq!(BuyerFilter::decode("not base64!"), None);
    /// ```
    pub fn decode(text: &str) -> Option<Self> {
        if text.len() > MAX_BYTES * 4 / 3 + 4 {
            return None;
        }
        let raw = unb64(text)?;
        let (&hashes, bits) = raw.split_first()?;
        if hashes == 0 || hashes > 16 || bits.is_empty() || bits.len() > MAX_BYTES {
            return None;
        }
        Some(Self {
            hashes,
            bits: bits.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A buyer is always in the filter, through its text too.
        #[test]
        fn buyers_are_never_missed(users in proptest::collection::hash_set("[a-z0-9_-]{1,16}", 0..300)) {
            let f = BuyerFilter::of(users.iter().map(String::as_str));
            let back = BuyerFilter::decode(&f.encode()).expect("decodes");
            for u in &users {
                prop_assert!(back.contains(u));
            }
        }
    }

    #[test]
    fn few_others_pass() {
        let buyers: Vec<String> = (0..1_000).map(|i| format!("buyer{i}")).collect();
        let f = BuyerFilter::of(buyers.iter().map(String::as_str));
        let others = (0..10_000)
            .filter(|i| f.contains(&format!("other{i}")))
            .count();
        // About 1 % expected; a broken filter passes far more.
        assert!(others < 300, "{others} of 10,000 others pass");
    }

    #[test]
    fn frozen_text() {
        // The origin and the edge of different versions must read each other's filter.
        assert_eq!(BuyerFilter::of(["u1"]).encode(), "BwAGQAAIAAEw");
    }
}
