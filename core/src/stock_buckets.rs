//! Stock buckets for a hot event: its stock split into `n` stock buckets ("buckets" below;
//! not the token buckets of `core::bucket`) whose keys live on
//! different Redis slots (`{E#0}`, `{E#1}`, …), so one hot event spreads over several
//! masters of a cluster. Each bucket owns a contiguous range of the event's unit numbers
//! ([`units`]) and keeps the fence's counter and given-back list for it (`core::fence`),
//! so a unit number stays unique within the event and the orders table's key on
//! `(event_id, unit_no)` still refuses a unit twice.
//!
//! The origin does not split an event's stock yet: this module is the protocol it is to
//! run, with its model; docs/scaling.md says what one event can sell without it.
//!
//! A purchase, each step one atomic script on one slot:
//!
//! 1. **Home** ([`home`]: a hash of the user): the user's one-order mark lives here. A
//!    holder gets their order back; else a unit of the home bucket is reserved, or, the
//!    home bucket empty, a **claim** naming the new order is written in the mark's place.
//! 2. **Spill** ([`spill`]: the other buckets in turn): the first with a unit gives it to
//!    the claimed order (its outbox carries the order, as any bucket's does).
//! 3. **Settle** the claim at home: the order holds it; or, every bucket empty, the claim
//!    is dropped and the answer is sold out (sold out = every bucket empty).
//!
//! A crash between the steps leaves a claim whose spill may or may not have happened: the
//! claim answers the user's retries (already purchased) until it expires; a spilled order
//! becomes a row, and its confirmation writes the mark back at home. A user who buys again
//! after the claim expired while their spilled order exists gets a second order that the
//! orders table refuses (one per user), and its unit goes back. So a crash may undersell
//! for a claim's lifetime, and never oversells: every unit is taken from one bucket's own
//! range, each bucket only while it has stock.

use std::ops::RangeInclusive;

/// The user's home bucket among `n` (FNV-1a of the user id): stable across processes and
/// versions, as the mark must be found where it was written.
///
/// ```
/// use flashgate_core::stock_buckets::home;
/// assert_eq!(home("alice", 1), 0);
/// assert_eq!(home("alice", 3), home("alice", 3));
/// assert!(home("bob", 3) < 3);
/// ```
pub fn home(user: &str, n: u16) -> u16 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in user.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % u64::from(n.max(1))) as u16
}

/// The unit numbers of each of `n` buckets of a stock of `total`: contiguous, in bucket
/// order, sizes differing by at most one (the first buckets get the remainder).
///
/// ```
/// use flashgate_core::stock_buckets::units;
/// assert_eq!(units(7, 3), vec![1..=3, 4..=5, 6..=7]);
/// assert_eq!(units(2, 3), vec![1..=1, 2..=2, 3..=2]);
/// ```
pub fn units(total: u64, n: u16) -> Vec<RangeInclusive<u64>> {
    let n = u64::from(n.max(1));
    let mut start = 1;
    (0..n)
        .map(|k| {
            let size = total / n + u64::from(k < total % n);
            let range = start..=start + size - 1;
            start += size;
            range
        })
        .collect()
}

/// The buckets a purchase tries after its home one, in order: the next ones, wrapping.
///
/// ```
/// use flashgate_core::stock_buckets::spill;
/// assert_eq!(spill(1, 3).collect::<Vec<_>>(), vec![2, 0]);
/// assert_eq!(spill(0, 1).count(), 0);
/// ```
pub fn spill(home: u16, n: u16) -> impl Iterator<Item = u16> {
    (1..n).map(move |i| (home + i) % n)
}

#[cfg(test)]
mod model;
