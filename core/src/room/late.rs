//! Later arrivals (after `draw_at`) are placed by their shards, not by the event's object:
//! a shard takes a block of positions behind the draw from the event's object and hands
//! them out one per arrival, so the event's object takes one write per block, not one
//! per shopper. A block's size follows the shard's recent arrivals ([`Arrivals`]): one
//! position when they are few (no place is held back from anyone), up to [`MAX_BLOCK`]
//! in a surge. Positions of a block nobody came for are admitted in their turn and
//! expire unused, as any unused admission does: at most a block per shard, after a surge.

use crate::Millis;
use serde::{Deserialize, Serialize};

/// The most positions a shard takes at once.
pub const MAX_BLOCK: u64 = 64;

/// A block holds about this long's worth of the shard's recent arrivals.
pub const BLOCK_MS: u64 = 100;

/// A shard's count of later arrivals over the current and the last second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arrivals {
    /// The start of the current second.
    since: Millis,
    /// Arrivals in the current second.
    now: u64,
    /// Arrivals in the second before.
    last: u64,
}

impl Arrivals {
    /// Counts one arrival at `at`.
    pub fn arrive(&mut self, at: Millis) {
        if at >= self.since.saturating_add(2_000) {
            *self = Self {
                since: at,
                now: 0,
                last: 0,
            };
        } else if at >= self.since.saturating_add(1_000) {
            *self = Self {
                since: self.since + 1_000,
                now: 0,
                last: self.now,
            };
        }
        self.now += 1;
    }

    /// Arrivals per second, as the busier of the current and the last second shows them.
    pub fn per_second(&self) -> u64 {
        self.now.max(self.last)
    }
}

/// How many positions a shard whose arrivals are `a` takes when it has none left: about
/// [`BLOCK_MS`] of them, at least one, at most [`MAX_BLOCK`].
///
/// ```
/// use flashgate_core::room::late::{block, Arrivals};
/// let mut a = Arrivals::default();
/// a.arrive(5_000);
/// assert_eq!(block(&a), 1);
/// for _ in 0..2_000 { a.arrive(5_100); }
/// assert_eq!(block(&a), 64);
/// ```
pub fn block(a: &Arrivals) -> u64 {
    (a.per_second() * BLOCK_MS / 1_000).clamp(1, MAX_BLOCK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_quiet_shard_takes_one_position_at_a_time() {
        let mut a = Arrivals::default();
        for t in 0..20 {
            a.arrive(t * 500);
            assert_eq!(block(&a), 1, "at {t}");
        }
    }

    #[test]
    fn the_count_moves_on_by_the_second_and_forgets_a_pause() {
        let mut a = Arrivals::default();
        for _ in 0..300 {
            a.arrive(10_000);
        }
        assert_eq!((a.per_second(), block(&a)), (300, 30));
        a.arrive(11_200);
        assert_eq!(a.per_second(), 300, "the last second still counts");
        a.arrive(13_500);
        assert_eq!(a.per_second(), 1, "two quiet seconds: a fresh count");
    }

    proptest! {
        #[test]
        fn a_block_is_between_one_and_the_most(times in proptest::collection::vec(0i64..100_000, 1..500)) {
            let mut times = times;
            times.sort_unstable();
            let mut a = Arrivals::default();
            for t in times {
                a.arrive(t);
                let b = block(&a);
                prop_assert!((1..=MAX_BLOCK).contains(&b));
            }
        }
    }
}
