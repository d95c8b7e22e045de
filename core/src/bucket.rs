//! A token bucket with injected time: `rate` tokens per second, bursts up to `burst`.

use crate::Millis;

/// A token bucket. Time only moves forward through the `now` passed in.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate_per_ms: f64,
    burst: f64,
    tokens: f64,
    last: Millis,
}

impl TokenBucket {
    /// A full bucket refilling at `rate_per_sec`, holding at most `burst` tokens.
    pub fn new(rate_per_sec: u32, burst: u32, now: Millis) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate_per_ms: f64::from(rate_per_sec.max(1)) / 1000.0,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes one token, or says how many milliseconds until one is available.
    pub fn try_take(&mut self, now: Millis) -> Result<(), Millis> {
        if now > self.last {
            let refill = (now - self.last) as f64 * self.rate_per_ms;
            self.tokens = (self.tokens + refill).min(self.burst);
            self.last = now;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - self.tokens) / self.rate_per_ms).ceil() as Millis)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn burst_then_refill() {
        let mut b = TokenBucket::new(10, 3, 0);
        assert!(b.try_take(0).is_ok());
        assert!(b.try_take(0).is_ok());
        assert!(b.try_take(0).is_ok());
        assert_eq!(b.try_take(0), Err(100));
        assert_eq!(b.try_take(50), Err(50));
        assert!(b.try_take(100).is_ok());
        assert!(b.try_take(100).is_err());
    }

    #[test]
    fn never_above_burst() {
        let mut b = TokenBucket::new(1000, 2, 0);
        assert!(b.try_take(1_000_000).is_ok());
        assert!(b.try_take(1_000_000).is_ok());
        assert!(b.try_take(1_000_000).is_err());
    }

    proptest! {
        #[test]
        fn admits_at_most_burst_plus_rate_times_time(
            rate in 1u32..5000, burst in 1u32..100, steps in proptest::collection::vec(0i64..50, 1..400)
        ) {
            let mut b = TokenBucket::new(rate, burst, 0);
            let (mut now, mut admitted) = (0i64, 0u64);
            for step in steps {
                now += step;
                if b.try_take(now).is_ok() { admitted += 1; }
            }
            let bound = f64::from(burst) + f64::from(rate) * now as f64 / 1000.0;
            prop_assert!(admitted as f64 <= bound + 1e-6);
        }
    }
}
