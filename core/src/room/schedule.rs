//! Positions and the public schedule: who comes in when.
//!
//! The draw's entrants hold positions `1..=entrants` in the drawn order; whoever comes
//! after the draw's window queues behind them in arrival order. The room publishes a
//! [`Schedule`], from which each page computes its own turn ([`estimated_turn`]) and the
//! room checks that a position has been let in ([`admitted`]).

use super::pacing::Pacing;
use super::permute::Permutation;
use super::settings::RoomSettings;
use crate::Millis;
use serde::{Deserialize, Serialize};

/// The position of the entrant at `global_index` in the draw over `entrants` (see
/// [`super::chain::global_index`]); `None` when there is no such entrant.
///
/// ```
/// use flashgate_core::room::permute::Permutation;
/// use flashgate_core::room::schedule::position;
/// let draw = Permutation::new(&[7u8; 32], 3);
/// let mut all: Vec<u64> = (0..3).filter_map(|i| position(&draw, i)).collect();
/// all.sort_unstable();
/// assert_eq!(all, [1, 2, 3]);
/// ```
pub fn position(draw: &Permutation, global_index: u64) -> Option<u64> {
    draw.apply(global_index).map(|p| p + 1)
}

/// The position of the `arrival`-th (from 0) shopper to come after the draw's window.
///
/// ```
/// use flashgate_core::room::schedule::late_position;
/// assert_eq!(late_position(1_000, 0), 1_001);
/// ```
pub fn late_position(entrants: u64, arrival: u64) -> u64 {
    entrants.saturating_add(arrival).saturating_add(1)
}

/// How far the room has admitted, as the page sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// When the room began admitting.
    pub opened_at: Millis,
    /// Positions admitted per second at most.
    pub admit_per_second: u32,
    /// The highest position admitted so far (0: nobody yet).
    pub admitted_through: u64,
    /// When `admitted_through` was read.
    pub as_of: Millis,
    /// The highest position whose admission expired (0: none): a receipt of a position
    /// up to it is refused, its place has passed to the next.
    #[serde(default)]
    pub expired_through: u64,
}

impl Schedule {
    /// The schedule of a room that opened at `opened_at`, from its pacing at `now`.
    pub fn of(settings: &RoomSettings, pacing: &Pacing, opened_at: Millis, now: Millis) -> Self {
        Self {
            opened_at,
            admit_per_second: settings.admit_per_second,
            admitted_through: pacing.admitted(),
            as_of: now,
            expired_through: pacing.expired_through(),
        }
    }
}

/// Whether `position` has been admitted.
///
/// ```
/// use flashgate_core::room::schedule::{admitted, Schedule};
/// let s = Schedule { opened_at: 0, admit_per_second: 10, admitted_through: 5, as_of: 0, expired_through: 0 };
/// assert!(admitted(5, &s));
/// assert!(!admitted(6, &s));
/// ```
pub fn admitted(position: u64, schedule: &Schedule) -> bool {
    position <= schedule.admitted_through
}

/// `count` admissions' worth of time at `rate` per second, rounded up.
fn admission_time(count: u64, rate: u32) -> Millis {
    let ms = (u128::from(count) * 1_000).div_ceil(u128::from(rate.max(1)));
    Millis::try_from(ms).unwrap_or(Millis::MAX)
}

/// When `position`'s turn comes, at the earliest: the rate never lets it in before
/// `opened_at` plus the time to admit the positions ahead of it, and from `as_of` the
/// positions still ahead take their time at the rate. An admitted position's turn is
/// past: then it is the earlier of its ideal turn and `as_of`.
///
/// ```
/// use flashgate_core::room::schedule::{estimated_turn, Schedule};
/// // Opened at 20:00:00 admitting 1000 a second, 2000 admitted by 20:00:05.
/// let opened_at = 1_800_000_000_000;
/// let s = Schedule {
///     opened_at,
///     admit_per_second: 1_000,
///     admitted_through: 2_000,
///     as_of: opened_at + 5_000,
///     expired_through: 0,
/// };
/// // Position 4000 is 2000 behind: about two seconds later, 20:00:07.
/// assert_eq!(estimated_turn(&s, 4_000), opened_at + 7_000);
/// ```
pub fn estimated_turn(schedule: &Schedule, position: u64) -> Millis {
    let rate = schedule.admit_per_second;
    let ideal = schedule
        .opened_at
        .saturating_add(admission_time(position.saturating_sub(1), rate));
    if admitted(position, schedule) {
        return ideal.min(schedule.as_of);
    }
    let ahead = position - schedule.admitted_through;
    let paced = schedule
        .as_of
        .max(schedule.opened_at)
        .saturating_add(admission_time(ahead, rate));
    ideal.max(paced)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::pacing::lease;
    use proptest::prelude::*;

    #[test]
    fn late_arrivals_queue_behind_every_entrant() {
        let draw = Permutation::new(&[1u8; 32], 50);
        let last_drawn = (0..50).filter_map(|i| position(&draw, i)).max();
        assert_eq!(last_drawn, Some(50));
        assert_eq!(late_position(50, 0), 51);
        assert_eq!(late_position(50, 9), 60);
        assert_eq!(position(&draw, 50), None);
    }

    #[test]
    fn before_the_room_opens_turns_follow_the_rate_from_the_opening() {
        let s = Schedule {
            opened_at: 10_000,
            admit_per_second: 100,
            admitted_through: 0,
            as_of: 0,
            expired_through: 0,
        };
        assert_eq!(estimated_turn(&s, 1), 10_010);
        assert_eq!(estimated_turn(&s, 101), 11_010);
    }

    #[test]
    fn a_slow_room_pushes_turns_back() {
        // Five seconds in at 100 a second, only 200 are in (the inventory held the rest).
        let s = Schedule {
            opened_at: 0,
            admit_per_second: 100,
            admitted_through: 200,
            as_of: 5_000,
            expired_through: 0,
        };
        assert_eq!(estimated_turn(&s, 300), 6_000);
        assert!(admitted(200, &s));
        assert_eq!(estimated_turn(&s, 150), 1_490);
    }

    #[test]
    fn the_schedule_reads_the_pacing() {
        let settings = RoomSettings::default();
        let mut pacing = Pacing::new(&settings, 0);
        pacing.joined(1_000);
        let l = lease(&mut pacing, 30, 0, &settings, 1_000);
        let s = Schedule::of(&settings, &pacing, 0, 0);
        assert!(admitted(l.first_position + l.count - 1, &s));
        assert!(!admitted(l.first_position + l.count, &s));
    }

    proptest! {
        #[test]
        fn a_later_position_never_comes_sooner(
            rate in 1u32..5_000, through in 0u64..100_000, as_of in 0i64..100_000,
            a in 1u64..200_000, b in 1u64..200_000
        ) {
            let s = Schedule { opened_at: 1_000, admit_per_second: rate, admitted_through: through, as_of, expired_through: 0 };
            let (first, second) = (a.min(b), a.max(b));
            prop_assert!(estimated_turn(&s, first) <= estimated_turn(&s, second));
        }
    }
}
