//! The keys of one event, all under its hash tag; a stock bucket's (`{E#k}`) have the same
//! names under its own.

use flashgate_core::ids::UserId;

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
    /// Marks an edge signature as used (replay guard).
    pub fn signature(&self, signature: &str) -> String {
        self.key(&format!("sig:{signature}"))
    }
    /// Counter of one user's tries in the current window that got nothing (a reserving try
    /// counts once its order is given back).
    pub fn window(&self, user: &UserId) -> String {
        self.key(&format!("win:{user}"))
    }
}
