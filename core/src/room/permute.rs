//! The draw: a keyed permutation of the entry indices `0..n`.
//!
//! A balanced Feistel network over HMAC-SHA256, keyed with the revealed seed, permutes
//! the smallest domain of an even number of bits that holds `n`; cycle-walking (apply
//! again until the value falls below `n`) turns it into a permutation of `0..n` itself.
//! Everything is `u64` and big-endian bytes, so every platform draws the same order.

use crate::crypto::{mac, HmacSha256};
use hmac::Mac;

/// Feistel rounds: four make a pseudo-random permutation (Luby–Rackoff); eight leave a
/// margin on the small domains of small events, as FF3-1 (a standard Feistel
/// format-preserving cipher) does.
const ROUNDS: u8 = 8;

const DOMAIN: &[u8] = b"flashgate room permutation v1\n";

/// A keyed permutation of `0..n`, built once and applied to many indices.
#[derive(Clone)]
pub struct Permutation {
    keyed: HmacSha256,
    n: u64,
    half_bits: u32,
}

impl std::fmt::Debug for Permutation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is the seed: keep it out of logs.
        f.debug_struct("Permutation")
            .field("n", &self.n)
            .finish_non_exhaustive()
    }
}

impl Permutation {
    /// The permutation of `0..n` drawn by `seed`.
    ///
    /// ```
    /// use flashgate_core::room::permute::Permutation;
    /// let p = Permutation::new(b"seed", 10);
    /// let mut seen: Vec<u64> = (0..10).filter_map(|i| p.apply(i)).collect();
    /// seen.sort_unstable();
    /// assert_eq!(seen, (0..10).collect::<Vec<u64>>());
    /// ```
    pub fn new(seed: &[u8], n: u64) -> Self {
        // Half of the bits of the smallest power of four holding n, at least one each.
        let bits = u64::BITS - n.saturating_sub(1).leading_zeros();
        let half_bits = bits.div_ceil(2).max(1);
        let mut keyed = mac(seed, DOMAIN);
        keyed.update(&n.to_be_bytes());
        Self {
            keyed,
            n,
            half_bits,
        }
    }

    /// How many indices it permutes.
    pub fn len(&self) -> u64 {
        self.n
    }

    /// Whether it permutes nothing (`n` = 0).
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Where index `i` goes; `None` when `i` is not below `n`.
    ///
    /// ```
    /// use flashgate_core::room::permute::Permutation;
    /// let p = Permutation::new(b"seed", 1000);
    /// let to = p.apply(7).expect("7 < 1000");
    /// assert_eq!(p.invert(to), Some(7));
    /// assert_eq!(p.apply(1000), None);
    /// ```
    pub fn apply(&self, i: u64) -> Option<u64> {
        self.walk(i, |x| self.encrypt(x))
    }

    /// Which index goes to `p`; `None` when `p` is not below `n`.
    pub fn invert(&self, p: u64) -> Option<u64> {
        self.walk(p, |x| self.decrypt(x))
    }

    /// Applies `step` (a permutation of the whole domain) until the value is below `n`:
    /// the cycle through `x` comes back below `n` at the latest at `x` itself.
    fn walk(&self, x: u64, step: impl Fn(u64) -> u64) -> Option<u64> {
        if x >= self.n {
            return None;
        }
        let mut y = step(x);
        while y >= self.n {
            y = step(y);
        }
        Some(y)
    }

    fn mask(&self) -> u64 {
        (1u64 << self.half_bits) - 1
    }

    fn round(&self, r: u8, half: u64) -> u64 {
        let mut m = self.keyed.clone();
        m.update(&[r]);
        m.update(&half.to_be_bytes());
        let out = m.finalize().into_bytes();
        let mut first = [0u8; 8];
        first.copy_from_slice(&out[..8]);
        u64::from_be_bytes(first) & self.mask()
    }

    fn encrypt(&self, x: u64) -> u64 {
        let (mut left, mut right) = (x >> self.half_bits, x & self.mask());
        for r in 0..ROUNDS {
            (left, right) = (right, left ^ self.round(r, right));
        }
        (left << self.half_bits) | right
    }

    fn decrypt(&self, x: u64) -> u64 {
        let (mut left, mut right) = (x >> self.half_bits, x & self.mask());
        for r in (0..ROUNDS).rev() {
            (left, right) = (right ^ self.round(r, left), left);
        }
        (left << self.half_bits) | right
    }
}

/// Where index `i` of `0..n` goes in the draw keyed by `seed`; `None` when `i >= n`.
///
/// ```
/// use flashgate_core::room::permute::{invert, permute};
/// let p = permute(b"seed", 5, 2).expect("2 < 5");
/// assert!(p < 5);
/// assert_eq!(invert(b"seed", 5, p), Some(2));
/// ```
pub fn permute(seed: &[u8], n: u64, i: u64) -> Option<u64> {
    Permutation::new(seed, n).apply(i)
}

/// Which index of `0..n` goes to `p` in the draw keyed by `seed`; `None` when `p >= n`.
///
/// ```
/// use flashgate_core::room::permute::{invert, permute};
/// let i = invert(b"seed", 5, 0).expect("0 < 5");
/// assert_eq!(permute(b"seed", 5, i), Some(0));
/// ```
pub fn invert(seed: &[u8], n: u64, p: u64) -> Option<u64> {
    Permutation::new(seed, n).invert(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(k: u64) -> [u8; 32] {
        let mut s = [0u8; 32];
        s[..8].copy_from_slice(&k.to_be_bytes());
        s
    }

    fn assert_bijection(p: &Permutation) {
        let n = p.len();
        let mut hit = vec![false; usize::try_from(n).expect("small n")];
        for i in 0..n {
            let to = p.apply(i).expect("i < n");
            let slot = &mut hit[usize::try_from(to).expect("to < n")];
            assert!(!*slot, "n = {n}: two indices go to {to}");
            *slot = true;
            assert_eq!(p.invert(to), Some(i), "n = {n}: invert(apply({i}))");
        }
    }

    #[test]
    fn a_bijection_for_every_small_n() {
        // Every n up to 100, and around the domain sizes 2^8 and 2^8 + 1 (where the
        // smallest even-bit domain jumps from 256 to 1024).
        for n in (0..=100).chain([127, 128, 129, 255, 256, 257, 300]) {
            assert_bijection(&Permutation::new(&seed(n), n));
        }
    }

    #[test]
    fn a_bijection_for_larger_n() {
        // 1_025 is the worst case for cycle-walking (a domain of 4_096, four times n).
        for n in [1_025, 10_000] {
            assert_bijection(&Permutation::new(&seed(n), n));
        }
    }

    #[test]
    fn a_bijection_on_a_sample_of_a_million() {
        let n = 1_000_000;
        let p = Permutation::new(&seed(7), n);
        let mut images = std::collections::BTreeSet::new();
        // A stride coprime with n visits indices spread over the whole range.
        for i in (0..2_000u64).map(|k| (k * 999_983) % n) {
            let to = p.apply(i).expect("i < n");
            assert!(to < n);
            assert_eq!(p.invert(to), Some(i));
            assert!(images.insert(to), "two sampled indices go to {to}");
        }
    }

    #[test]
    fn out_of_range_has_no_image() {
        assert_eq!(permute(b"s", 0, 0), None);
        assert_eq!(permute(b"s", 1, 0), Some(0));
        assert_eq!(permute(b"s", 1, 1), None);
        assert_eq!(invert(b"s", 3, 3), None);
    }

    #[test]
    fn the_seed_and_n_change_the_order() {
        let order = |s: &[u8], n: u64| -> Vec<u64> {
            let p = Permutation::new(s, n);
            (0..n).filter_map(|i| p.apply(i)).collect()
        };
        assert_ne!(order(b"a", 100), order(b"b", 100));
        assert_ne!(order(b"a", 100)[..99], order(b"a", 99)[..]);
    }

    #[test]
    fn frozen_vectors() {
        let p = Permutation::new(b"flashgate test seed", 10);
        let order: Vec<u64> = (0..10).filter_map(|i| p.apply(i)).collect();
        assert_eq!(order, [3, 8, 4, 6, 0, 5, 1, 7, 2, 9]);
        let p = Permutation::new(&seed(42), 1_000_000);
        let some: Vec<u64> = [0, 1, 2, 999_999]
            .iter()
            .filter_map(|&i| p.apply(i))
            .collect();
        assert_eq!(some, [354_928, 118_368, 71_067, 967_031]);
    }

    /// The first tenth of the entrants lands evenly across the deciles of positions.
    #[test]
    fn early_entrants_spread_evenly_over_deciles() {
        let (n, seeds) = (1_000u64, 50u64);
        let mut deciles = [0u64; 10];
        for s in 0..seeds {
            let p = Permutation::new(&seed(1_000 + s), n);
            for i in 0..n / 10 {
                let to = p.apply(i).expect("i < n");
                deciles[usize::try_from(to * 10 / n).expect("below 10")] += 1;
            }
        }
        let expected = (seeds * n / 10) as f64 / 10.0;
        let chi2: f64 = deciles
            .iter()
            .map(|&o| (o as f64 - expected).powi(2) / expected)
            .sum();
        // df 9, p = 0.01.
        assert!(chi2 < 21.67, "χ² = {chi2:.2}, deciles {deciles:?}");
    }
}
