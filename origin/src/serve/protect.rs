//! What keeps one origin process fast and its dependencies calm under any load:
//!
//! - [`Breaker`]: a circuit breaker per dependency. After `threshold` consecutive failures it
//!   opens for `cooldown`; while open, calls are refused at once (503 busy, nothing
//!   reserved); after the cooldown one probe goes through and its result closes or reopens it.
//! - [`AdaptiveLimit`]: a concurrency limit derived from observed latency (in the spirit of
//!   Netflix concurrency-limits' Gradient2): when the reserve call slows down, fewer requests
//!   are admitted at once, so admitted requests stay fast and the rest get 429 at once.
//!   Latency under a floor (`latency_floor_ms`) is never a slowdown, whatever the baseline.
//! - The fixed admission bucket (`governor`) lives in `state`, the sold-out memo in `sold_out`.
//!
//! Every rule takes the time as an argument, so tests drive it without sleeping.

use crate::config::AdaptiveSettings;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The state of a breaker, as exported in metrics (0 closed, 1 open, 2 half-open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls flow.
    Closed,
    /// Calls are refused until the cooldown ends.
    Open,
    /// One probe is in flight.
    HalfOpen,
}

#[derive(Debug)]
struct BreakerInner {
    failures: u32,
    open_until: Option<Instant>,
    probing: bool,
}

/// A consecutive-failures circuit breaker.
#[derive(Debug)]
pub struct Breaker {
    name: &'static str,
    threshold: u32,
    cooldown: Duration,
    inner: Mutex<BreakerInner>,
}

impl Breaker {
    /// A closed breaker for dependency `name`.
    pub fn new(name: &'static str, threshold: u32, cooldown: Duration) -> Self {
        Self {
            name,
            threshold: threshold.max(1),
            cooldown,
            inner: Mutex::new(BreakerInner {
                failures: 0,
                open_until: None,
                probing: false,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BreakerInner> {
        // A poisoned lock only means a panic elsewhere; the counters are still usable.
        crate::locks::lock(&self.inner)
    }

    /// Whether a call may go through at `now`.
    pub fn allow(&self, now: Instant) -> bool {
        let mut s = self.lock();
        match s.open_until {
            None => true,
            Some(until) if now < until => false,
            Some(_) if s.probing => false,
            Some(_) => {
                s.probing = true;
                true
            }
        }
    }

    /// Records a successful call: the breaker closes.
    pub fn success(&self) {
        let mut s = self.lock();
        let was_open = s.open_until.is_some();
        *s = BreakerInner {
            failures: 0,
            open_until: None,
            probing: false,
        };
        drop(s);
        if was_open {
            tracing::info!(dependency = self.name, "circuit closed");
            self.export(BreakerState::Closed);
        }
    }

    /// Records a failed call at `now`: after `threshold` in a row (or a failed probe) it opens.
    pub fn failure(&self, now: Instant) {
        let mut s = self.lock();
        s.failures = s.failures.saturating_add(1);
        if s.probing || s.failures >= self.threshold {
            let newly = s.open_until.is_none();
            s.open_until = Some(now + self.cooldown);
            s.probing = false;
            drop(s);
            if newly {
                tracing::warn!(dependency = self.name, "circuit opened");
            }
            self.export(BreakerState::Open);
        }
    }

    /// The state at `now`.
    pub fn state(&self, now: Instant) -> BreakerState {
        let s = self.lock();
        match s.open_until {
            None => BreakerState::Closed,
            Some(until) if now < until => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }

    fn export(&self, state: BreakerState) {
        let v = match state {
            BreakerState::Closed => 0.0,
            BreakerState::Open => 1.0,
            BreakerState::HalfOpen => 2.0,
        };
        metrics::gauge!("flashgate_breaker_state", "dependency" => self.name).set(v);
    }
}

/// The baseline latency follows about this many windows (as Gradient2's long window).
const LONG_WINDOW: f64 = 600.0;
/// Samples averaged into one measurement before the limit moves (as Netflix's
/// `WindowedLimit`): single slow samples (a context switch on a busy machine) are noise,
/// a window whose mean is slow is a trend.
pub const SAMPLE_WINDOW: usize = 16;

#[derive(Debug)]
struct LimitInner {
    limit: f64,
    long_rtt: Option<f64>,
    /// Sum of the current window's latencies, seconds.
    window_sum: f64,
    /// Samples in the current window.
    window_len: usize,
    /// Most requests in flight seen in the current window.
    window_inflight: usize,
}

/// A latency-driven concurrency limit (Gradient2-like).
#[derive(Debug)]
pub struct AdaptiveLimit {
    settings: AdaptiveSettings,
    inflight: AtomicUsize,
    inner: Mutex<LimitInner>,
}

/// One admitted request; dropping it releases its slot.
#[derive(Debug)]
pub struct Permit<'a> {
    limit: &'a AdaptiveLimit,
    inflight_at_start: usize,
}

impl Permit<'_> {
    /// Records how long the protected work took.
    pub fn record(&self, rtt: Duration) {
        self.limit.sample(rtt, self.inflight_at_start);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.limit.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl AdaptiveLimit {
    /// A limit starting at `settings.initial`.
    pub fn new(settings: AdaptiveSettings) -> Self {
        let min = settings.min.max(1);
        let max = settings.max.max(min);
        let settings = AdaptiveSettings {
            min,
            max,
            ..settings
        };
        Self {
            settings,
            inflight: AtomicUsize::new(0),
            inner: Mutex::new(LimitInner {
                limit: settings.initial.clamp(min, max) as f64,
                long_rtt: None,
                window_sum: 0.0,
                window_len: 0,
                window_inflight: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LimitInner> {
        crate::locks::lock(&self.inner)
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.lock().limit as usize
    }

    /// Requests in flight.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Acquire)
    }

    /// A slot, or `None` when the limit is reached (answer 429 at once).
    pub fn try_acquire(&self) -> Option<Permit<'_>> {
        if !self.settings.enabled {
            let n = self.inflight.fetch_add(1, Ordering::AcqRel);
            return Some(Permit {
                limit: self,
                inflight_at_start: n + 1,
            });
        }
        let limit = self.limit();
        let mut current = self.inflight.load(Ordering::Acquire);
        loop {
            if current >= limit {
                return None;
            }
            match self.inflight.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    return Some(Permit {
                        limit: self,
                        inflight_at_start: current + 1,
                    })
                }
                Err(seen) => current = seen,
            }
        }
    }

    /// Feeds one latency sample taken with `inflight` requests in flight; every
    /// [`SAMPLE_WINDOW`] samples, their mean moves the limit.
    pub fn sample(&self, rtt: Duration, inflight: usize) {
        if !self.settings.enabled {
            return;
        }
        let mut s = self.lock();
        s.window_sum += rtt.as_secs_f64();
        s.window_len += 1;
        s.window_inflight = s.window_inflight.max(inflight);
        if s.window_len < SAMPLE_WINDOW {
            return;
        }
        let short = (s.window_sum / s.window_len as f64).max(1e-6);
        let inflight = s.window_inflight;
        (s.window_sum, s.window_len, s.window_inflight) = (0.0, 0, 0);
        let long = match s.long_rtt {
            None => short,
            Some(long) => {
                // The baseline moves slowly (about 600 windows, as Gradient2's 600 samples), so a
                // sudden slowdown is seen as one instead of becoming the new normal.
                let mut long = long + (short - long) / LONG_WINDOW;
                // After a long period of high latency the baseline drifts up; let it come
                // back down quickly once latency recovers.
                if long / short > 2.0 {
                    long *= 0.95;
                }
                long
            }
        };
        s.long_rtt = Some(long);
        let base = long.max(self.settings.latency_floor_ms / 1000.0);
        // An under-used limit says nothing about capacity: do not grow it.
        if (inflight as f64) < s.limit / 2.0 && short <= base * self.settings.tolerance {
            return;
        }
        let gradient = (self.settings.tolerance * base / short).clamp(0.5, 1.0);
        let queue = s.limit.sqrt();
        let target = s.limit * gradient + queue;
        let next = s.limit * 0.8 + target * 0.2;
        s.limit = next.clamp(self.settings.min as f64, self.settings.max as f64);
        metrics::gauge!("flashgate_adaptive_limit").set(s.limit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_after_threshold_and_probes_after_cooldown() {
        let b = Breaker::new("redis", 3, Duration::from_millis(100));
        let t0 = Instant::now();
        assert!(b.allow(t0));
        b.failure(t0);
        b.failure(t0);
        assert_eq!(b.state(t0), BreakerState::Closed);
        b.failure(t0);
        assert_eq!(b.state(t0), BreakerState::Open);
        assert!(!b.allow(t0 + Duration::from_millis(99)));
        let later = t0 + Duration::from_millis(100);
        assert!(b.allow(later), "one probe after the cooldown");
        assert!(!b.allow(later), "only one probe at a time");
        b.failure(later);
        assert!(
            !b.allow(later + Duration::from_millis(50)),
            "failed probe reopens"
        );
        let again = later + Duration::from_millis(100);
        assert!(b.allow(again));
        b.success();
        assert_eq!(b.state(again), BreakerState::Closed);
        assert!(b.allow(again) && b.allow(again));
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let b = Breaker::new("kafka", 2, Duration::from_secs(1));
        let t = Instant::now();
        b.failure(t);
        b.success();
        b.failure(t);
        assert_eq!(b.state(t), BreakerState::Closed);
    }

    /// `rounds` windows of samples, each taken with the limit in flight.
    fn busy(l: &AdaptiveLimit, rtt_ms: u64, rounds: usize) {
        busy_us(l, rtt_ms * 1000, rounds);
    }

    fn busy_us(l: &AdaptiveLimit, rtt_us: u64, rounds: usize) {
        for _ in 0..rounds * SAMPLE_WINDOW {
            let inflight = l.limit();
            l.sample(Duration::from_micros(rtt_us), inflight);
        }
    }

    #[test]
    fn latency_under_the_floor_is_not_a_slowdown() {
        let l = AdaptiveLimit::new(AdaptiveSettings::default());
        busy_us(&l, 100, 200);
        let steady = l.limit();
        // 15 × the baseline, but 1.5 ms: a busy machine's queue, not a failing Redis.
        busy_us(&l, 1500, 50);
        assert!(l.limit() >= steady, "limit {steady} → {}", l.limit());
        // 5 ms is over tolerance × floor (3 ms): the limit shrinks.
        busy_us(&l, 5000, 30);
        assert!(l.limit() < steady, "limit {steady} → {}", l.limit());
    }

    #[test]
    fn limit_shrinks_when_latency_rises_and_grows_back_when_it_falls() {
        let l = AdaptiveLimit::new(AdaptiveSettings::default());
        busy(&l, 1, 200);
        let steady = l.limit();
        assert!(steady >= 64, "steady limit {steady}");
        busy(&l, 20, 30);
        let slow = l.limit();
        assert!(
            slow < steady / 2,
            "limit {steady} → {slow} after a 20× slowdown"
        );
        busy(&l, 1, 300);
        assert!(l.limit() > slow, "limit recovers");
    }

    #[test]
    fn limit_stays_within_bounds() {
        let settings = AdaptiveSettings {
            min: 4,
            max: 100,
            ..AdaptiveSettings::default()
        };
        let l = AdaptiveLimit::new(settings);
        busy(&l, 1, 1000);
        assert_eq!(l.limit(), 100);
        busy(&l, 1000, 200);
        assert_eq!(l.limit(), 4);
    }

    #[test]
    fn one_slow_sample_in_a_window_does_not_move_the_limit_much() {
        let l = AdaptiveLimit::new(AdaptiveSettings::default());
        busy(&l, 1, 200);
        let steady = l.limit();
        for _ in 0..50 {
            // A window of 15 fast samples and one 4× slower (the tail of a busy machine).
            for i in 0..SAMPLE_WINDOW {
                let ms = if i == 0 { 4 } else { 1 };
                l.sample(Duration::from_millis(ms), steady);
            }
        }
        assert!(l.limit() >= steady, "limit {steady} → {}", l.limit());
    }

    #[test]
    fn permits_are_bounded_by_the_limit_and_released_on_drop() {
        let l = AdaptiveLimit::new(AdaptiveSettings {
            initial: 2,
            min: 2,
            ..AdaptiveSettings::default()
        });
        let a = l.try_acquire().expect("first");
        let _b = l.try_acquire().expect("second");
        assert!(l.try_acquire().is_none());
        drop(a);
        assert!(l.try_acquire().is_some());
    }
}
