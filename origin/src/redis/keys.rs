//! The keys of one event, all under its hash tag; a stock bucket's (`{E#k}`) have the same
//! names under its own.

use flashgate_core::ids::UserId;
use flashgate_core::Millis;

/// The replay guard's time slice: the signatures signed within one share a set, which
/// expires as a whole. Short, so a set holds few; long, so a reserve call's attempts, signed
/// within milliseconds of each other, nearly always share one.
const SIGNATURE_SLICE_MS: Millis = 10_000;

/// The keys of one event.
#[derive(Debug, Clone)]
pub struct EventKeys {
    pub(super) base: String,
}

impl EventKeys {
    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.base)
    }
    /// Hash: name, stock_total, starts_at, ends_at.
    pub fn info(&self) -> String {
        self.key("info")
    }
    /// Integer: units left.
    pub fn stock(&self) -> String {
        self.key("stock")
    }
    /// Hash: user → order id (the one-order-per-user mark).
    pub fn orders(&self) -> String {
        self.key("orders")
    }
    /// Hash: user → `status:order_id`.
    pub fn status(&self) -> String {
        self.key("status")
    }
    /// Stream: reservations waiting to be relayed to Kafka.
    pub fn outbox(&self) -> String {
        self.key("outbox")
    }
    /// Hash: reserved, confirmed, failed, compensated counters.
    pub fn stats(&self) -> String {
        self.key("stats")
    }
    /// List: unit numbers given back by failed orders, taken before the never-sold ones
    /// (`core::fence`).
    pub fn given_back(&self) -> String {
        self.key("given_back")
    }
    /// Hash, a stock bucket's: spilled order id → the unit it took here, or `passed`
    /// (`core::stock_buckets::Decision`).
    pub fn decisions(&self) -> String {
        self.key("decisions")
    }
    /// Set: order ids already compensated.
    pub fn compensated(&self) -> String {
        self.key("compensated")
    }
    /// Set: the edge signatures seen that were signed in the time slice of `signed_at`
    /// (replay guard; reserve.lua), and an empty member, there once the set has its
    /// expiry. The name ends with the slice's end, unix ms, from which the script reckons
    /// when the set may go.
    pub fn signatures(&self, signed_at: Millis) -> String {
        format!("{}:sigs:{}", self.base, slice_end(signed_at))
    }
    /// Counter of one user's tries in the current window that got nothing (a reserving try
    /// counts once its order is given back).
    pub fn window(&self, user: &UserId) -> String {
        format!("{}:win:{user}", self.base)
    }
}

/// The end of the replay guard's time slice that holds `signed_at`, unix ms: the attempts
/// of a reserve call with the same end share one set.
pub(super) fn slice_end(signed_at: Millis) -> Millis {
    (signed_at.div_euclid(SIGNATURE_SLICE_MS) + 1) * SIGNATURE_SLICE_MS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_goes_to_the_slice_that_ends_after_it() {
        let k = EventKeys {
            base: "fg:{e1}".into(),
        };
        assert_eq!(
            k.signatures(1_764_000_000_000),
            "fg:{e1}:sigs:1764000010000"
        );
        assert_eq!(
            k.signatures(1_764_000_009_999),
            "fg:{e1}:sigs:1764000010000"
        );
        assert_eq!(slice_end(1_764_000_010_000), 1_764_000_020_000);
        assert_eq!(
            k.window(&UserId::parse("u1").expect("id")),
            "fg:{e1}:win:u1"
        );
    }
}
