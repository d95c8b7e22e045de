//! Redis's clock against this process's monotonic clock: a reserve call carries a
//! deadline on Redis's clock, so a call that arrives late reserves nothing.

use super::Store;
use std::sync::atomic::Ordering;

/// How often `flashgate serve` measures Redis's clock ([`Store::sync_clock`]).
pub const CLOCK_SYNC: std::time::Duration = std::time::Duration::from_secs(10);

/// [`Store::sync_clock`] has not read Redis's clock yet.
pub(super) const NOT_MEASURED: i64 = i64::MIN;

/// The longest round trip of a clock reading that replaces an earlier one.
const CLOCK_SYNC_MAX_RTT: std::time::Duration = std::time::Duration::from_millis(100);

/// Milliseconds of a monotonic clock (from the first call in this process): immune to
/// steps of the wall clock, so a deadline cannot jump with it.
pub(super) fn mono_ms() -> i64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as i64
}

impl Store {
    /// Measures where Redis's clock stands against this process's monotonic clock, which
    /// a reserve call's deadline is given in (see `lua/reserve.lua`). Kept fresh by
    /// `flashgate serve` (every [`CLOCK_SYNC`]). The reading is off by at most half its
    /// round trip: once there is one, a reading whose round trip took longer than
    /// `CLOCK_SYNC_MAX_RTT` is too coarse to replace it. On a Redis Cluster `TIME` goes to
    /// any node, and each call's deadline is checked on its event's master: the masters'
    /// clocks must agree.
    pub async fn sync_clock(&self) -> redis::RedisResult<()> {
        let before = mono_ms();
        let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(&mut self.conn()).await?;
        let after = mono_ms();
        let first = self.clock_offset.load(Ordering::Relaxed) == NOT_MEASURED;
        if first || after - before <= CLOCK_SYNC_MAX_RTT.as_millis() as i64 {
            let redis_ms = secs * 1000 + micros / 1000;
            self.clock_offset
                .store(redis_ms - (before + after) / 2, Ordering::Relaxed);
        }
        Ok(())
    }
}
