//! Stock buckets for a hot event: its stock split into `n` stock buckets ("buckets" below;
//! not the token buckets of `core::bucket`) whose keys live on
//! different Redis slots (`{E#0}`, `{E#1}`, …), so one hot event spreads over several
//! masters of a cluster. Each bucket owns a contiguous range of the event's unit numbers
//! ([`units`]) and keeps the fence's counter and given-back list for it (`core::fence`),
//! so a unit number stays unique within the event and the orders table's key on
//! `(event_id, unit_no)` still refuses a unit twice.
//!
//! The origin runs these steps for an event put with `stock_buckets` above 1
//! (`origin/src/redis/buckets.rs` and its Lua scripts); this module decides them, and its
//! model checks them.
//!
//! A purchase, each step one atomic script on one slot, driven by a [`Purchase`]:
//!
//! 1. **Home** ([`home`]: a hash of the user; [`at_home`]): the user's **mark** lives
//!    here, naming their order or, while a purchase spills, a **claim** on an order. A
//!    holder gets their order back; a live claim answers "in flight"; else a unit of the
//!    home bucket is reserved with the mark, or, the home bucket empty, a claim naming a
//!    new order is written, valid until a deadline.
//! 2. **Spill** ([`spill`]: the other buckets in turn; [`at_bucket`]): each bucket
//!    decides once per order and keeps that **decision** (the unit it gave, or
//!    "passed"); a repeated or late call for the order gets the same decision. The
//!    purchase moves to the next bucket only on a "passed" it has read, and stops at a
//!    unit or at a call whose answer it lost.
//! 3. **Settle** the claim at home ([`settle`]): the order holds it; or, every bucket
//!    passed, the claim is dropped and the answer is sold out (sold out = every bucket
//!    empty).
//!
//! A claim past its deadline is **resolved** by the user's next attempt: a fence call
//! to each spill bucket records "passed" where the order has no decision yet, so the
//! order can take a unit nowhere afterwards, and finds the unit it took if any; the claim
//! then settles as above. No clock is trusted across masters: the deadline only says
//! when to stop waiting for the purchase that wrote the claim.
//!
//! Why each user holds at most one order, across buckets: a unit is taken for a user
//! either at home together with their mark, while they have none, or at a spill bucket
//! for the order their claim names. That order takes at most one unit: the buckets are
//! visited in turn, the next only after the previous recorded "passed", and a decision
//! never changes. A claim is replaced only once settled, and it settles "nowhere" only
//! once every spill bucket recorded "passed" for its order. The consumer's confirmation
//! writes the mark as the order ([`confirm`]); a compensation clears the mark that names
//! the failed order ([`release`]) and its unit goes back to the bucket whose range holds
//! it ([`bucket_of`]). A crash leaves a claim that undersells until it is resolved, and
//! never oversells: every unit is taken from one bucket's own range, each bucket only
//! while it has stock. The model (`stock_buckets/model.rs`) checks all of this over
//! interleavings of purchases, crashes, lost and repeated calls, and compensations.

use crate::Millis;
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

/// The bucket whose range holds `unit`, where a given-back unit returns; `None` outside
/// `1..=total`.
///
/// ```
/// use flashgate_core::stock_buckets::bucket_of;
/// assert_eq!(bucket_of(4, 7, 3), Some(1));
/// assert_eq!(bucket_of(7, 7, 3), Some(2));
/// assert_eq!(bucket_of(8, 7, 3), None);
/// ```
pub fn bucket_of(unit: u64, total: u64, n: u16) -> Option<u16> {
    units(total, n)
        .iter()
        .position(|r| r.contains(&unit))
        .map(|k| k as u16)
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

/// What the user's home slot holds for the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark<O> {
    /// The user's order.
    Order(O),
    /// A purchase spilling for `order`; resolved by the next attempt after `until`.
    Claim {
        /// The order the spill buckets give a unit to.
        order: O,
        /// Until when the purchase that wrote the claim is waited for (ms).
        until: Millis,
    },
}

impl<O> Mark<O> {
    /// The order the mark names.
    pub fn order(&self) -> &O {
        match self {
            Mark::Order(o) | Mark::Claim { order: o, .. } => o,
        }
    }
}

/// The home step's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AtHome<O> {
    /// The user holds this order: already purchased.
    Holder(O),
    /// A purchase of the user's is spilling: answer "busy, retry", change nothing.
    InFlight(O),
    /// The claim on this order is past its deadline: resolve it first.
    Resolve(O),
    /// Take a unit of the home bucket and write the mark as the new order.
    Reserve,
    /// The home bucket is empty: write a claim on the new order and spill.
    Claim,
}

/// The home step: the user's mark first, then the home bucket's stock.
///
/// ```
/// use flashgate_core::stock_buckets::{at_home, AtHome, Mark};
/// assert_eq!(at_home::<u32>(None, 2, 0), AtHome::Reserve);
/// assert_eq!(at_home::<u32>(None, 0, 0), AtHome::Claim);
/// assert_eq!(at_home(Some(&Mark::Order(7)), 2, 0), AtHome::Holder(7));
/// let claim = Mark::Claim { order: 7, until: 10 };
/// assert_eq!(at_home(Some(&claim), 0, 9), AtHome::InFlight(7));
/// assert_eq!(at_home(Some(&claim), 0, 10), AtHome::Resolve(7));
/// ```
pub fn at_home<O: Clone>(mark: Option<&Mark<O>>, home_stock: u64, now: Millis) -> AtHome<O> {
    match mark {
        Some(Mark::Order(o)) => AtHome::Holder(o.clone()),
        Some(Mark::Claim { order, until }) if now < *until => AtHome::InFlight(order.clone()),
        Some(Mark::Claim { order, .. }) => AtHome::Resolve(order.clone()),
        None if home_stock > 0 => AtHome::Reserve,
        None => AtHome::Claim,
    }
}

/// A spill bucket's decision for one order, kept for the event's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The bucket gave the order this unit.
    Took(u64),
    /// The bucket gave the order nothing, and never will.
    Passed,
}

/// Why a spill bucket is called for an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// The purchase asks for a unit.
    Spill,
    /// A resolution closes the bucket to the order: it takes nothing.
    Fence,
}

/// A spill bucket's step for an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtBucket {
    /// Decided before: answer the decision again, change nothing.
    Again(Decision),
    /// Take a unit and keep the decision.
    Take,
    /// Keep the decision "passed".
    Pass,
}

/// The spill step at a bucket: a decision once per order, the first call's.
///
/// ```
/// use flashgate_core::stock_buckets::{at_bucket, AtBucket, Call, Decision};
/// assert_eq!(at_bucket(None, 3, Call::Spill), AtBucket::Take);
/// assert_eq!(at_bucket(None, 0, Call::Spill), AtBucket::Pass);
/// assert_eq!(at_bucket(None, 3, Call::Fence), AtBucket::Pass);
/// assert_eq!(at_bucket(Some(Decision::Passed), 3, Call::Spill), AtBucket::Again(Decision::Passed));
/// ```
pub fn at_bucket(decision: Option<Decision>, stock: u64, call: Call) -> AtBucket {
    match decision {
        Some(r) => AtBucket::Again(r),
        None if call == Call::Spill && stock > 0 => AtBucket::Take,
        None => AtBucket::Pass,
    }
}

/// The user's mark once a purchase or a resolution for `order` settled: the claim on it
/// becomes the order if a bucket gave it a unit, or is dropped; any other mark stays.
///
/// ```
/// use flashgate_core::stock_buckets::{settle, Mark};
/// let claim = Mark::Claim { order: 7, until: 10 };
/// assert_eq!(settle(Some(&claim), &7, true), Some(Mark::Order(7)));
/// assert_eq!(settle(Some(&claim), &7, false), None);
/// assert_eq!(settle(Some(&Mark::Order(5)), &7, false), Some(Mark::Order(5)));
/// ```
pub fn settle<O: Clone + PartialEq>(
    mark: Option<&Mark<O>>,
    order: &O,
    took: bool,
) -> Option<Mark<O>> {
    match mark {
        Some(Mark::Claim { order: o, .. }) if o == order => took.then(|| Mark::Order(o.clone())),
        other => other.cloned(),
    }
}

/// The user's mark once the orders table holds `order`: the order, unless the mark names
/// another order (which the table would have refused).
///
/// ```
/// use flashgate_core::stock_buckets::{confirm, Mark};
/// let claim = Mark::Claim { order: 7, until: 10 };
/// assert_eq!(confirm(Some(&claim), &7), Some(Mark::Order(7)));
/// assert_eq!(confirm(None, &7), Some(Mark::Order(7)));
/// assert_eq!(confirm(Some(&Mark::Order(5)), &7), Some(Mark::Order(5)));
/// ```
pub fn confirm<O: Clone + PartialEq>(mark: Option<&Mark<O>>, order: &O) -> Option<Mark<O>> {
    match mark {
        Some(m) if m.order() != order => Some(m.clone()),
        _ => Some(Mark::Order(order.clone())),
    }
}

/// The user's mark once `order` failed and its unit went back: cleared if it names the
/// order, so the user may buy again.
///
/// ```
/// use flashgate_core::stock_buckets::{release, Mark};
/// assert_eq!(release(Some(&Mark::Order(7)), &7), None);
/// assert_eq!(release(Some(&Mark::Order(5)), &7), Some(Mark::Order(5)));
/// ```
pub fn release<O: Clone + PartialEq>(mark: Option<&Mark<O>>, order: &O) -> Option<Mark<O>> {
    mark.filter(|m| m.order() != order).cloned()
}

/// What a [`Purchase`] asks for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Call this bucket for the order.
    Bucket(u16, Call),
    /// Settle the claim at home: whether a bucket gave the order a unit, and which.
    Settle(Option<(u16, u64)>),
}

/// The steps after the home one, for a claim being spilled or resolved: which bucket to
/// call, then how to settle.
#[derive(Debug, Clone)]
pub struct Purchase {
    call: Call,
    left: Vec<u16>,
    took: Option<(u16, u64)>,
}

impl Purchase {
    /// A purchase that wrote a claim at `home` among `n` buckets and spills.
    pub fn spilling(home: u16, n: u16) -> Self {
        Self::new(home, n, Call::Spill)
    }

    /// A resolution of an expired claim written at `home` among `n` buckets.
    pub fn resolving(home: u16, n: u16) -> Self {
        Self::new(home, n, Call::Fence)
    }

    fn new(home: u16, n: u16, call: Call) -> Self {
        let mut left: Vec<u16> = spill(home, n).collect();
        left.reverse();
        Purchase {
            call,
            left,
            took: None,
        }
    }

    /// The next call, or how to settle.
    ///
    /// ```
    /// use flashgate_core::stock_buckets::{Call, Decision, Next, Purchase};
    /// let mut p = Purchase::spilling(0, 3);
    /// assert_eq!(p.next(), Next::Bucket(1, Call::Spill));
    /// p.answer(1, Decision::Passed);
    /// assert_eq!(p.next(), Next::Bucket(2, Call::Spill));
    /// p.answer(2, Decision::Took(9));
    /// assert_eq!(p.next(), Next::Settle(Some((2, 9))));
    /// ```
    pub fn next(&self) -> Next {
        match (self.took, self.left.last()) {
            (None, Some(&b)) => Next::Bucket(b, self.call),
            (took, _) => Next::Settle(took),
        }
    }

    /// Takes in bucket `b`'s answer to the call [`Purchase::next`] asked for.
    pub fn answer(&mut self, b: u16, decision: Decision) {
        if self.left.last() == Some(&b) {
            self.left.pop();
            if let Decision::Took(unit) = decision {
                self.took = Some((b, unit));
            }
        }
    }
}

#[cfg(test)]
mod model;
