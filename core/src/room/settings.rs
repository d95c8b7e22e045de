//! A room's settings and its phase at a given time.

use crate::Millis;
use serde::{Deserialize, Serialize};
use std::fmt;

/// How an event's room runs. Missing fields take their defaults; unknown ones are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoomSettings {
    /// Positions admitted per second at most (default 2000).
    pub admit_per_second: u32,
    /// How long after `starts_at` arrivals still join the draw, so that the first
    /// moments of the sale are not a race (default 0: off, the draw holds only those
    /// registered before `starts_at`).
    pub fair_start_ms: Millis,
    /// How long before `starts_at` registration opens (default 300 000: five minutes).
    pub prequeue_ms: Millis,
    /// Live admissions allowed per unsold unit, in thousandths (default 1100: 1.1, so a
    /// few admitted shoppers who do not buy leave no unit unsold for long).
    pub margin_per_mille: u32,
    /// How long an admission stays valid (default 120 000: two minutes).
    pub session_ms: Millis,
    /// How many shard objects take the draw's registrations (default 4), each a few
    /// hundred a second at most; fixed for an event once registration has opened.
    pub shards: u32,
}

impl Default for RoomSettings {
    fn default() -> Self {
        Self {
            admit_per_second: 2_000,
            fair_start_ms: 0,
            prequeue_ms: 300_000,
            margin_per_mille: 1_100,
            session_ms: 120_000,
            shards: 4,
        }
    }
}

/// Bounds of each setting, inclusive.
const ADMIT_PER_SECOND: (u32, u32) = (1, 1_000_000);
const FAIR_START_MS: (Millis, Millis) = (0, 60_000);
const PREQUEUE_MS: (Millis, Millis) = (0, 86_400_000);
const MARGIN_PER_MILLE: (u32, u32) = (1_000, 2_000);
const SESSION_MS: (Millis, Millis) = (1_000, 3_600_000);
/// The seal asks every shard once: 32 stays well under the 50 subrequests of a free plan.
const SHARDS: (u32, u32) = (1, 32);

/// A setting out of its bounds: which one, the value given, and the bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettingsError {
    /// The field's name, as in the settings file.
    pub field: &'static str,
    /// The value given.
    pub value: i64,
    /// The smallest value allowed.
    pub min: i64,
    /// The largest value allowed.
    pub max: i64,
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "room setting {} = {} is out of bounds: it must be from {} to {}",
            self.field, self.value, self.min, self.max
        )
    }
}

impl std::error::Error for SettingsError {}

fn within<T: Copy + PartialOrd + Into<i64>>(
    field: &'static str,
    value: T,
    (min, max): (T, T),
) -> Result<(), SettingsError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(SettingsError {
            field,
            value: value.into(),
            min: min.into(),
            max: max.into(),
        })
    }
}

impl RoomSettings {
    /// Checks every field against its bounds; the first one out of them is the error.
    ///
    /// ```
    /// use flashgate_core::room::settings::RoomSettings;
    /// assert!(RoomSettings::default().validate().is_ok());
    /// let err = RoomSettings { margin_per_mille: 900, ..RoomSettings::default() }
    ///     .validate()
    ///     .expect_err("below 1.0");
    /// assert_eq!(err.field, "margin_per_mille");
    /// ```
    pub fn validate(&self) -> Result<(), SettingsError> {
        within("admit_per_second", self.admit_per_second, ADMIT_PER_SECOND)?;
        within("fair_start_ms", self.fair_start_ms, FAIR_START_MS)?;
        within("prequeue_ms", self.prequeue_ms, PREQUEUE_MS)?;
        // Below 1.0 the last units could never be sold: floor(unsold × margin) = 0.
        within("margin_per_mille", self.margin_per_mille, MARGIN_PER_MILLE)?;
        within("session_ms", self.session_ms, SESSION_MS)?;
        within("shards", self.shards, SHARDS)
    }

    /// Reads settings from a JSON object, as an event spec's `room` carries them: missing
    /// fields take their defaults; the error names the field (`room.<field>: …`) of an
    /// unknown field, a value of the wrong type, or one out of bounds.
    ///
    /// ```
    /// use flashgate_core::room::settings::RoomSettings;
    /// let s = RoomSettings::from_json(&serde_json::json!({"admit_per_second": 50})).unwrap();
    /// assert_eq!((s.admit_per_second, s.session_ms), (50, 120_000));
    /// let err = RoomSettings::from_json(&serde_json::json!({"session_ms": -1})).unwrap_err();
    /// assert!(err.starts_with("room.session_ms: "), "{err}");
    /// ```
    pub fn from_json(value: &serde_json::Value) -> Result<RoomSettings, String> {
        let fields = value
            .as_object()
            .ok_or("room must be a JSON object of room settings")?;
        // Field by field first, so that serde's message ("invalid type…") gets its name.
        for (name, v) in fields {
            let alone =
                serde_json::Value::Object([(name.clone(), v.clone())].into_iter().collect());
            if let Err(e) = serde_json::from_value::<RoomSettings>(alone) {
                return Err(format!("room.{name}: {e}"));
            }
        }
        let settings: RoomSettings =
            serde_json::from_value(value.clone()).map_err(|e| format!("room: {e}"))?;
        settings
            .validate()
            .map_err(|e| format!("room.{}: {e}", e.field))?;
        Ok(settings)
    }

    /// When registration opens for an event starting at `starts_at`.
    pub fn opens_at(&self, starts_at: Millis) -> Millis {
        starts_at.saturating_sub(self.prequeue_ms)
    }

    /// When the draw's window closes: who registered before joins the draw, who comes
    /// later queues behind in arrival order.
    pub fn draw_at(&self, starts_at: Millis) -> Millis {
        starts_at.saturating_add(self.fair_start_ms)
    }

    /// How many live admissions `unsold` units allow: `unsold × margin`, rounded down.
    ///
    /// ```
    /// use flashgate_core::room::settings::RoomSettings;
    /// let s = RoomSettings { margin_per_mille: 1_100, ..RoomSettings::default() };
    /// assert_eq!(s.live_cap(10), 11);
    /// assert_eq!(s.live_cap(9), 9);
    /// assert_eq!(s.live_cap(0), 0);
    /// ```
    pub fn live_cap(&self, unsold: u64) -> u64 {
        let cap = u128::from(unsold) * u128::from(self.margin_per_mille) / 1_000;
        u64::try_from(cap).unwrap_or(u64::MAX)
    }
}

/// Where a room stands at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoomPhase {
    /// Registration has not opened yet.
    Closed,
    /// Registration is open: whoever registers now joins the draw.
    Registering,
    /// The draw's window has closed but the draw is not sealed yet: newcomers queue
    /// behind the draw, nobody is admitted.
    Sealing,
    /// The draw is sealed: positions are known and admitted in order; newcomers queue
    /// behind in arrival order.
    Open,
    /// The event is over.
    Ended,
}

/// The phase of the room of an event running `[starts_at, ends_at)` at `now`, given
/// whether its draw has been sealed.
///
/// ```
/// use flashgate_core::room::settings::{phase, RoomPhase, RoomSettings};
/// let s = RoomSettings { prequeue_ms: 60_000, fair_start_ms: 3_000, ..RoomSettings::default() };
/// let (start, end) = (1_000_000, 2_000_000);
/// assert_eq!(phase(&s, start, end, start - 60_001, false), RoomPhase::Closed);
/// assert_eq!(phase(&s, start, end, start + 2_999, false), RoomPhase::Registering);
/// assert_eq!(phase(&s, start, end, start + 3_000, false), RoomPhase::Sealing);
/// assert_eq!(phase(&s, start, end, start + 3_000, true), RoomPhase::Open);
/// assert_eq!(phase(&s, start, end, end, true), RoomPhase::Ended);
/// ```
pub fn phase(
    settings: &RoomSettings,
    starts_at: Millis,
    ends_at: Millis,
    now: Millis,
    sealed: bool,
) -> RoomPhase {
    if now >= ends_at {
        RoomPhase::Ended
    } else if now < settings.opens_at(starts_at) {
        RoomPhase::Closed
    } else if now < settings.draw_at(starts_at) {
        RoomPhase::Registering
    } else if sealed {
        RoomPhase::Open
    } else {
        RoomPhase::Sealing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn settings_read_from_json_with_defaults() {
        let s: RoomSettings =
            serde_json::from_str(r#"{"fair_start_ms": 3000}"#).expect("valid settings");
        assert_eq!(s.fair_start_ms, 3_000);
        assert_eq!(s.admit_per_second, 2_000);
        assert!(s.validate().is_ok());
    }

    #[test]
    fn unknown_settings_are_refused() {
        assert!(serde_json::from_str::<RoomSettings>(r#"{"admit_per_sec": 5}"#).is_err());
    }

    #[test]
    fn settings_from_json_name_the_bad_field() {
        let err = |v| RoomSettings::from_json(&v).expect_err("refused");
        let unknown = err(serde_json::json!({"admit_per_sec": 5}));
        assert!(
            unknown.starts_with("room.admit_per_sec: unknown field"),
            "{unknown}"
        );
        let typed = err(serde_json::json!({"margin_per_mille": "lots"}));
        assert!(
            typed.starts_with("room.margin_per_mille: invalid type"),
            "{typed}"
        );
        let bounds = err(serde_json::json!({"margin_per_mille": 999}));
        assert!(bounds.starts_with("room.margin_per_mille: "), "{bounds}");
        assert!(bounds.contains("from 1000 to 2000"), "{bounds}");
        assert!(err(serde_json::json!([1])).contains("JSON object"));
        // The kill switch is the pause, not a room setting.
        assert!(err(serde_json::json!({"queue_all": true})).contains("unknown field"));
        assert_eq!(
            RoomSettings::from_json(&serde_json::json!({})),
            Ok(RoomSettings::default())
        );
    }

    #[test]
    fn out_of_bounds_settings_name_the_field_and_bounds() {
        let bad = |s: RoomSettings| s.validate().expect_err("out of bounds");
        let d = RoomSettings::default();
        assert_eq!(
            bad(RoomSettings {
                admit_per_second: 0,
                ..d
            })
            .to_string(),
            "room setting admit_per_second = 0 is out of bounds: it must be from 1 to 1000000"
        );
        assert_eq!(
            bad(RoomSettings {
                fair_start_ms: -1,
                ..d
            })
            .field,
            "fair_start_ms"
        );
        assert_eq!(
            bad(RoomSettings {
                prequeue_ms: -5,
                ..d
            })
            .field,
            "prequeue_ms"
        );
        assert_eq!(bad(RoomSettings { session_ms: 0, ..d }).field, "session_ms");
    }

    #[test]
    fn ended_wins_over_every_other_phase() {
        let s = RoomSettings::default();
        assert_eq!(
            phase(&s, 1_000_000, 900_000, 950_000, false),
            RoomPhase::Ended
        );
    }

    proptest! {
        #[test]
        fn registering_exactly_inside_the_draw_window(
            prequeue in 0i64..100_000, fair in 0i64..10_000, now_off in -200_000i64..200_000,
            sealed: bool
        ) {
            let s = RoomSettings { prequeue_ms: prequeue, fair_start_ms: fair, ..RoomSettings::default() };
            let start = 10_000_000;
            let now = start + now_off;
            let p = phase(&s, start, start + 1_000_000, now, sealed);
            prop_assert_eq!(
                p == RoomPhase::Registering,
                now >= start - prequeue && now < start + fair
            );
            prop_assert_eq!(p == RoomPhase::Open, now >= start + fair && sealed);
        }
    }
}
