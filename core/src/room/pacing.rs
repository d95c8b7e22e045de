//! Pacing: how many more positions the room admits, and when.
//!
//! Two limits hold at once. A token bucket keeps admissions under `admit_per_second`
//! (with a burst of [`BURST_MS`] worth), and the inventory keeps live admissions (handed
//! out, not yet used nor expired) under `unsold × margin`: admitting more shoppers than
//! there are units left only makes them wait at the purchase instead of in the room.
//! Isolates take small batches of positions through [`lease`], so the room's storage is
//! asked once per batch, not once per shopper.

use super::settings::RoomSettings;
use crate::Millis;
use serde::{Deserialize, Serialize};

/// The bucket holds this long's worth of admissions: the most the room admits at once.
pub const BURST_MS: u64 = 100;

/// The room's count of positions and admissions, stored between leases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pacing {
    queued: u64,
    admitted: u64,
    live: u64,
    /// In thousandths of an admission, so the refill is exact at any rate.
    tokens_milli: u64,
    refilled_at: Millis,
    /// The highest position whose admission expired: admissions are handed out in
    /// order and each lasts `session_ms`, so the expired ones are a prefix.
    #[serde(default)]
    expired_through: u64,
}

/// Positions `first_position..first_position + count` admitted together, valid until
/// `expires_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The first position admitted (positions count from 1).
    pub first_position: u64,
    /// How many positions; 0 when none may be admitted now.
    pub count: u64,
    /// When these admissions expire if unused.
    pub expires_at: Millis,
}

/// The most admissions the bucket holds: [`BURST_MS`] worth, at least one.
///
/// ```
/// use flashgate_core::room::pacing::burst;
/// use flashgate_core::room::settings::RoomSettings;
/// let s = RoomSettings { admit_per_second: 2_000, ..RoomSettings::default() };
/// assert_eq!(burst(&s), 200);
/// ```
pub fn burst(settings: &RoomSettings) -> u64 {
    (u64::from(settings.admit_per_second) * BURST_MS / 1_000).max(1)
}

impl Pacing {
    /// A room that has queued and admitted nobody, its bucket full at `now`.
    pub fn new(settings: &RoomSettings, now: Millis) -> Self {
        Self {
            queued: 0,
            admitted: 0,
            live: 0,
            tokens_milli: burst(settings) * 1_000,
            refilled_at: now,
            expired_through: 0,
        }
    }

    /// The highest position handed out (to the draw's entrants and later arrivals).
    pub fn queued(&self) -> u64 {
        self.queued
    }

    /// The highest position admitted so far.
    pub fn admitted(&self) -> u64 {
        self.admitted
    }

    /// Admissions handed out and not yet used nor expired.
    pub fn live(&self) -> u64 {
        self.live
    }

    /// Records `count` more positions handed out: the draw's entrants once sealed, then
    /// each later arrival.
    pub fn joined(&mut self, count: u64) {
        self.queued = self.queued.saturating_add(count);
    }

    /// The highest position whose admission expired (0: none).
    pub fn expired_through(&self) -> u64 {
        self.expired_through
    }

    /// Records that the admissions of positions up to `last_position`, `count` of them
    /// still live, expired.
    ///
    /// ```
    /// use flashgate_core::room::pacing::{lease, Pacing};
    /// use flashgate_core::room::settings::RoomSettings;
    /// let s = RoomSettings::default();
    /// let mut p = Pacing::new(&s, 0);
    /// p.joined(10);
    /// let l = lease(&mut p, 5, 0, &s, 100);
    /// p.expire(l.first_position + l.count - 1, l.count);
    /// assert_eq!((p.expired_through(), p.live()), (5, 0));
    /// ```
    pub fn expire(&mut self, last_position: u64, count: u64) {
        self.expired_through = self.expired_through.max(last_position);
        self.ended(count);
    }

    /// Records `count` admissions that ended: used for a purchase, or expired unused (the
    /// room's storage knows which and when).
    pub fn ended(&mut self, count: u64) {
        self.live = self.live.saturating_sub(count);
    }

    fn tokens_milli_at(&self, settings: &RoomSettings, now: Millis) -> u64 {
        // A clock that steps back refills nothing rather than failing.
        let elapsed = u64::try_from(now.saturating_sub(self.refilled_at)).unwrap_or(0);
        let refill = elapsed.saturating_mul(u64::from(settings.admit_per_second));
        self.tokens_milli
            .saturating_add(refill)
            .min(burst(settings) * 1_000)
    }
}

/// How many more positions may be admitted at `now`: the least of what the bucket holds,
/// what the inventory leaves room for, and how many are queued but not yet admitted.
///
/// ```
/// use flashgate_core::room::pacing::{admit_budget, Pacing};
/// use flashgate_core::room::settings::RoomSettings;
/// let s = RoomSettings { admit_per_second: 2_000, margin_per_mille: 1_100, ..RoomSettings::default() };
/// let mut p = Pacing::new(&s, 0);
/// p.joined(10_000);
/// assert_eq!(admit_budget(0, &p, &s, 1_000), 200); // the burst
/// assert_eq!(admit_budget(0, &p, &s, 100), 110); // 100 units × 1.1
/// ```
pub fn admit_budget(now: Millis, state: &Pacing, settings: &RoomSettings, unsold: u64) -> u64 {
    let tokens = state.tokens_milli_at(settings, now) / 1_000;
    let inventory = settings.live_cap(unsold).saturating_sub(state.live);
    let waiting = state.queued.saturating_sub(state.admitted);
    tokens.min(inventory).min(waiting)
}

/// Admits up to `want` positions at `now`, as many as [`admit_budget`] allows, and
/// records them as admitted and live.
///
/// ```
/// use flashgate_core::room::pacing::{lease, Lease, Pacing};
/// use flashgate_core::room::settings::RoomSettings;
/// let s = RoomSettings { admit_per_second: 2_000, session_ms: 120_000, ..RoomSettings::default() };
/// let mut p = Pacing::new(&s, 0);
/// p.joined(10_000);
/// let l = lease(&mut p, 50, 0, &s, 1_000);
/// assert_eq!(l, Lease { first_position: 1, count: 50, expires_at: 120_000 });
/// assert_eq!(lease(&mut p, 50, 0, &s, 1_000).first_position, 51);
/// ```
pub fn lease(
    state: &mut Pacing,
    want: u64,
    now: Millis,
    settings: &RoomSettings,
    unsold: u64,
) -> Lease {
    let count = want.min(admit_budget(now, state, settings, unsold));
    state.tokens_milli = state.tokens_milli_at(settings, now) - count * 1_000;
    state.refilled_at = state.refilled_at.max(now);
    let first_position = state.admitted + 1;
    state.admitted += count;
    state.live += count;
    Lease {
        first_position,
        count,
        expires_at: now.saturating_add(settings.session_ms),
    }
}

/// Admits, up to `now`, what a caller leasing every [`BURST_MS`] since the last lease
/// would have admitted, never before `opened_at`: the room's storage calls this when it
/// is asked, so admission advances at `admit_per_second` however rarely it is asked
/// (the bucket alone would admit only a burst per call). The positions admitted are
/// one [`Lease`], expiring `session_ms` after `now`.
///
/// Each step is a [`lease`], so [`admit_budget`]'s limits hold at every step; the steps
/// stop as soon as nobody waits or the inventory is full, which neither changes until
/// `now`, so a call costs at most one step per burst of positions admitted.
///
/// ```
/// use flashgate_core::room::pacing::{advance, Pacing};
/// use flashgate_core::room::settings::RoomSettings;
/// let s = RoomSettings { admit_per_second: 1_000, session_ms: 60_000, ..RoomSettings::default() };
/// let mut p = Pacing::new(&s, 0);
/// p.joined(10_000);
/// assert_eq!(advance(&mut p, 5_000, 4_000, &s, 10_000).count, 0); // not open yet
/// let first = advance(&mut p, 5_000, 6_000, &s, 10_000);
/// assert_eq!((first.first_position, first.count), (1, 1_000));
/// assert_eq!(advance(&mut p, 5_000, 6_500, &s, 10_000).count, 500);
/// ```
pub fn advance(
    state: &mut Pacing,
    opened_at: Millis,
    now: Millis,
    settings: &RoomSettings,
    unsold: u64,
) -> Lease {
    let first_position = state.admitted + 1;
    let mut count = 0;
    if now >= opened_at {
        let step = Millis::try_from(BURST_MS).unwrap_or(Millis::MAX);
        let mut t = state.refilled_at.max(opened_at);
        while t < now {
            let waiting = state.queued.saturating_sub(state.admitted);
            if waiting == 0 || settings.live_cap(unsold) <= state.live {
                break;
            }
            t = t.saturating_add(step).min(now);
            count += lease(state, u64::MAX, t, settings, unsold).count;
        }
        count += lease(state, u64::MAX, now, settings, unsold).count;
    }
    Lease {
        first_position,
        count,
        expires_at: now.saturating_add(settings.session_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn settings(rate: u32, margin: u32) -> RoomSettings {
        RoomSettings {
            admit_per_second: rate,
            margin_per_mille: margin,
            session_ms: 5_000,
            ..RoomSettings::default()
        }
    }

    #[test]
    fn the_bucket_refills_at_the_rate() {
        let s = settings(1_000, 1_000);
        let mut p = Pacing::new(&s, 0);
        p.joined(1_000_000);
        assert_eq!(lease(&mut p, 1_000, 0, &s, 1_000_000).count, 100);
        assert_eq!(lease(&mut p, 1_000, 0, &s, 1_000_000).count, 0);
        assert_eq!(lease(&mut p, 1_000, 10, &s, 1_000_000).count, 10);
        // Idle long enough, the bucket holds a burst, not more.
        assert_eq!(lease(&mut p, 1_000, 60_000, &s, 1_000_000).count, 100);
    }

    #[test]
    fn nobody_is_admitted_who_is_not_queued() {
        let s = settings(1_000, 1_000);
        let mut p = Pacing::new(&s, 0);
        p.joined(3);
        assert_eq!(lease(&mut p, 10, 0, &s, 100).count, 3);
        assert_eq!(admit_budget(1_000, &p, &s, 100), 0);
        p.joined(2);
        assert_eq!(lease(&mut p, 10, 1_000, &s, 100).first_position, 4);
    }

    #[test]
    fn admissions_wait_for_units_to_free_up() {
        let s = settings(1_000, 1_100);
        let mut p = Pacing::new(&s, 0);
        p.joined(1_000);
        assert_eq!(lease(&mut p, 100, 0, &s, 10).count, 11);
        assert_eq!(admit_budget(1_000, &p, &s, 10), 0);
        // Three shoppers leave without buying: three more may come in.
        p.ended(3);
        assert_eq!(admit_budget(1_000, &p, &s, 10), 3);
        // Sold out: nobody more, whatever the bucket holds.
        assert_eq!(admit_budget(1_000, &p, &s, 0), 0);
    }

    #[test]
    fn advancing_keeps_the_rate_however_rarely_it_is_asked() {
        let s = settings(2_000, 1_000);
        let opened_at = 10_000;
        let mut p = Pacing::new(&s, 0);
        p.joined(1_000_000);
        // Asked once a second, then once every ten: the rate, not a burst per call.
        assert_eq!(
            advance(&mut p, opened_at, opened_at + 1_000, &s, 1_000_000).count,
            2_000
        );
        assert_eq!(
            advance(&mut p, opened_at, opened_at + 1_000, &s, 1_000_000).count,
            0
        );
        let l = advance(&mut p, opened_at, opened_at + 11_000, &s, 1_000_000);
        assert_eq!((l.first_position, l.count), (2_001, 20_000));
    }

    #[test]
    fn advancing_stops_at_the_inventory_and_the_queue() {
        let s = settings(1_000, 1_100);
        let mut p = Pacing::new(&s, 0);
        p.joined(50);
        assert_eq!(advance(&mut p, 0, 60_000, &s, 10).count, 11);
        assert_eq!(advance(&mut p, 0, 120_000, &s, 10).count, 0);
        p.ended(11);
        assert_eq!(advance(&mut p, 0, 120_100, &s, 1_000).count, 39);
        assert_eq!(p.admitted(), p.queued());
    }

    #[derive(Debug, Clone)]
    enum Step {
        Wait(i64),
        Lease(u64),
        Advance,
        Sell,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0i64..400).prop_map(Step::Wait),
            (0u64..120).prop_map(Step::Lease),
            Just(Step::Advance),
            Just(Step::Sell),
        ]
    }

    proptest! {
        /// Whatever happens, a lease never brings live admissions above unsold × margin,
        /// and admissions over any interval stay under the rate times its length plus a
        /// burst.
        #[test]
        fn never_faster_than_the_rate_nor_past_the_inventory(
            rate in 1u32..3_000, margin in 1_000u32..=2_000, units in 0u64..300,
            queued in 0u64..2_000, steps in proptest::collection::vec(step(), 1..150)
        ) {
            let s = settings(rate, margin);
            let mut p = Pacing::new(&s, 0);
            p.joined(queued);
            let (mut now, mut unsold) = (0i64, units);
            // Admissions outstanding, as (expires_at, how many), oldest first.
            let mut outstanding: Vec<(Millis, u64)> = Vec::new();
            let mut leases: Vec<(Millis, u64)> = Vec::new();
            for step in steps {
                match step {
                    Step::Wait(ms) => {
                        now += ms;
                        let expired: u64 = outstanding.iter().filter(|o| o.0 <= now).map(|o| o.1).sum();
                        outstanding.retain(|o| o.0 > now);
                        p.ended(expired);
                    }
                    Step::Lease(want) => {
                        let live_before = p.live();
                        let l = lease(&mut p, want, now, &s, unsold);
                        prop_assert!(l.count <= want);
                        if l.count > 0 {
                            prop_assert!(p.live() <= s.live_cap(unsold));
                            outstanding.push((l.expires_at, l.count));
                        }
                        prop_assert!(p.live() <= live_before.max(s.live_cap(unsold)));
                        prop_assert!(p.admitted() <= p.queued());
                        leases.push((now, l.count));
                    }
                    Step::Advance => {
                        // Catching up admits what the interval since the last lease
                        // allowed, at once: only the inventory bound applies here.
                        let live_before = p.live();
                        let l = advance(&mut p, 0, now, &s, unsold);
                        if l.count > 0 {
                            prop_assert!(p.live() <= s.live_cap(unsold));
                            outstanding.push((l.expires_at, l.count));
                        }
                        prop_assert!(p.live() <= live_before.max(s.live_cap(unsold)));
                        prop_assert!(p.admitted() <= p.queued());
                    }
                    Step::Sell => {
                        if let Some(first) = outstanding.first_mut().filter(|_| unsold > 0) {
                            first.1 -= 1;
                            unsold -= 1;
                            p.ended(1);
                        }
                        outstanding.retain(|o| o.1 > 0);
                    }
                }
                prop_assert_eq!(p.live(), outstanding.iter().map(|o| o.1).sum::<u64>());
            }
            let burst = burst(&s);
            for (i, &(from, _)) in leases.iter().enumerate() {
                let mut admitted = 0u64;
                for &(to, count) in &leases[i..] {
                    admitted += count;
                    let allowed_milli = burst * 1_000 + u64::from(rate) * u64::try_from(to - from).expect("time moves forward");
                    prop_assert!(admitted * 1_000 <= allowed_milli, "{admitted} admitted in {} ms", to - from);
                }
            }
        }
    }
}
