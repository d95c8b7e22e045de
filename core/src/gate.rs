//! An event's phase from its window and the time, and the state shown to shoppers.

use crate::Millis;
use serde::{Deserialize, Serialize};

/// Where `now` falls in an event's window `[starts_at, ends_at)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before `starts_at`.
    Upcoming,
    /// From `starts_at` (inclusive) to `ends_at` (exclusive).
    Live,
    /// From `ends_at` on.
    Ended,
}

/// The phase of the window `[starts_at, ends_at)` at `now`.
pub fn phase(starts_at: Millis, ends_at: Millis, now: Millis) -> Phase {
    if now < starts_at {
        Phase::Upcoming
    } else if now >= ends_at {
        Phase::Ended
    } else {
        Phase::Live
    }
}

/// The `state` field of event info.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventState {
    /// Not started yet.
    Upcoming,
    /// On sale with stock left.
    Live,
    /// On sale, no stock left.
    SoldOut,
    /// Over.
    Ended,
}

/// The state shown for an event with `stock_left` units at `now`.
pub fn state(starts_at: Millis, ends_at: Millis, stock_left: u64, now: Millis) -> EventState {
    match phase(starts_at, ends_at, now) {
        Phase::Upcoming => EventState::Upcoming,
        Phase::Ended => EventState::Ended,
        Phase::Live if stock_left == 0 => EventState::SoldOut,
        Phase::Live => EventState::Live,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn boundaries() {
        assert_eq!(phase(100, 200, 99), Phase::Upcoming);
        assert_eq!(phase(100, 200, 100), Phase::Live);
        assert_eq!(phase(100, 200, 199), Phase::Live);
        assert_eq!(phase(100, 200, 200), Phase::Ended);
    }

    #[test]
    fn sold_out_only_while_live() {
        assert_eq!(state(100, 200, 0, 150), EventState::SoldOut);
        assert_eq!(state(100, 200, 0, 50), EventState::Upcoming);
        assert_eq!(state(100, 200, 0, 250), EventState::Ended);
        assert_eq!(state(100, 200, 3, 150), EventState::Live);
    }

    proptest! {
        #[test]
        fn exactly_one_phase(s in 0i64..1000, len in 1i64..1000, now in -10i64..3000) {
            let p = phase(s, s + len, now);
            prop_assert_eq!(p == Phase::Live, now >= s && now < s + len);
        }
    }
}
