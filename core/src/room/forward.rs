//! Forwarding grants: how many admitted purchases the edge sends to the origin, however
//! many isolates send them.
//!
//! The room keeps one bucket of forwards per event, refilled at `admit_per_second` and
//! holding [`super::pacing::BURST_MS`] worth, at least [`MIN_BURST`]. An isolate asks it for a small batch
//! ([`batch`]) and spends it on admitted purchases for at most [`GRANT_MS`]; what is left
//! then is dropped, never carried. The origin therefore receives at most the rate (plus
//! one burst) from the whole edge, retries and double clicks included, while the room's
//! storage is asked once per batch, not once per purchase.

use super::pacing::BURST_MS;
use super::settings::RoomSettings;
use crate::Millis;
use serde::{Deserialize, Serialize};

/// How long an isolate may spend a grant.
pub const GRANT_MS: Millis = 1_000;

/// The room's bucket of forwards, stored between grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forwards {
    /// In thousandths of a forward, so the refill is exact at any rate.
    tokens_milli: u64,
    refilled_at: Millis,
}

/// The fewest forwards the bucket holds. A bucket of one or two (a low rate's 100 ms)
/// is full most of the time that isolates do not ask, and its refill is lost: admitted
/// shoppers would be refused while the origin idles.
pub const MIN_BURST: u64 = 5;

fn capacity_milli(settings: &RoomSettings) -> u64 {
    (u64::from(settings.admit_per_second) * BURST_MS).max(MIN_BURST * 1_000)
}

/// How many forwards an isolate asks for at once: a twentieth of a second's worth, at
/// least 1 and at most 64 (small, so that what an idle isolate drops stays small).
///
/// ```
/// use flashgate_core::room::forward::batch;
/// use flashgate_core::room::settings::RoomSettings;
/// let at = |admit_per_second| batch(&RoomSettings { admit_per_second, ..RoomSettings::default() });
/// assert_eq!((at(1), at(200), at(2_000)), (1, 10, 64));
/// ```
pub fn batch(settings: &RoomSettings) -> u64 {
    (u64::from(settings.admit_per_second) / 20).clamp(1, 64)
}

impl Forwards {
    /// A bucket holding one burst at `now`.
    pub fn new(settings: &RoomSettings, now: Millis) -> Self {
        Self {
            tokens_milli: capacity_milli(settings),
            refilled_at: now,
        }
    }

    /// Grants up to `want` forwards at `now`: as many whole ones as the bucket holds.
    ///
    /// ```
    /// use flashgate_core::room::forward::Forwards;
    /// use flashgate_core::room::settings::RoomSettings;
    /// let s = RoomSettings { admit_per_second: 100, ..RoomSettings::default() };
    /// let mut f = Forwards::new(&s, 0);
    /// assert_eq!(f.grant(64, &s, 0), 10); // one burst: 100 ms worth
    /// assert_eq!(f.grant(64, &s, 0), 0);
    /// assert_eq!(f.grant(64, &s, 50), 5);
    /// ```
    pub fn grant(&mut self, want: u64, settings: &RoomSettings, now: Millis) -> u64 {
        // A clock that steps back refills nothing rather than failing.
        let elapsed = u64::try_from(now.saturating_sub(self.refilled_at)).unwrap_or(0);
        let refill = elapsed.saturating_mul(u64::from(settings.admit_per_second));
        let tokens = self
            .tokens_milli
            .saturating_add(refill)
            .min(capacity_milli(settings));
        let granted = want.min(tokens / 1_000);
        self.tokens_milli = tokens - granted * 1_000;
        self.refilled_at = self.refilled_at.max(now);
        granted
    }
}

/// What an isolate holds of a grant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Grant {
    left: u64,
    until: Millis,
}

impl Grant {
    /// `count` forwards from the room at `now`, to spend within [`GRANT_MS`].
    pub fn new(count: u64, now: Millis) -> Self {
        Self {
            left: count,
            until: now.saturating_add(GRANT_MS),
        }
    }

    /// Spends one forward at `now`, if any is left and the grant has not lapsed.
    ///
    /// ```
    /// use flashgate_core::room::forward::{Grant, GRANT_MS};
    /// let mut g = Grant::new(2, 0);
    /// assert!(g.take(10) && g.take(20));
    /// assert!(!g.take(30));
    /// assert!(!Grant::new(5, 0).take(GRANT_MS));
    /// ```
    pub fn take(&mut self, now: Millis) -> bool {
        if self.left == 0 || now >= self.until {
            return false;
        }
        self.left -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// However isolates ask and spend, the forwards granted over any run never exceed
        /// the rate times its length plus one burst.
        #[test]
        fn grants_stay_within_the_rate(
            rate in 1u32..5_000,
            asks in proptest::collection::vec((0i64..200, 1u64..100), 1..300),
        ) {
            let s = RoomSettings { admit_per_second: rate, ..RoomSettings::default() };
            let mut f = Forwards::new(&s, 0);
            let (mut now, mut granted) = (0i64, 0u64);
            for (step, want) in asks {
                now += step;
                granted += f.grant(want, &s, now);
                // The bucket counts thousandths: the whole forwards in a burst plus the
                // refill so far, rounded down once.
                let allowed = (u64::from(rate) * u64::try_from(now).expect("positive")
                    + capacity_milli(&s))
                    / 1_000;
                prop_assert!(granted <= allowed, "{granted} granted, {allowed} allowed at {now}");
            }
        }
    }
}
