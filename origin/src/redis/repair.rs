//! `flashgate reconcile --repair`'s writes: an event's Redis view restored from the orders
//! table (`lua/repair.lua`).

use super::Store;
use flashgate_core::fence::Restock;
use flashgate_core::ids::EventId;
use redis::Script;

/// What the counters read before a restock said: the restock happens only if they still
/// do (no reservation nor failure since).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    /// The event's `reserved` counter.
    pub reserved: u64,
    /// The event's `failed` counter.
    pub failed: u64,
}

/// What a repair did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repaired {
    /// Buyers who hold their row in Redis again.
    pub restored: u64,
    /// Whether the units were replaced (`None`: not asked; `Some(false)`: something
    /// changed since they were read, nothing replaced).
    pub restocked: Option<bool>,
}

impl Store {
    /// The event's counters a restock is checked against.
    pub async fn counted(&self, event: &EventId) -> redis::RedisResult<Counted> {
        let (reserved, failed): (Option<u64>, Option<u64>) = redis::cmd("HMGET")
            .arg(self.keys(event).stats())
            .arg("reserved")
            .arg("failed")
            .query_async(&mut self.conn())
            .await?;
        Ok(Counted {
            reserved: reserved.unwrap_or(0),
            failed: failed.unwrap_or(0),
        })
    }

    /// The units given back, in the order reserve calls take them (last first).
    pub async fn given_back(&self, event: &EventId) -> redis::RedisResult<Vec<u64>> {
        redis::cmd("LRANGE")
            .arg(self.keys(event).given_back())
            .arg(0)
            .arg(-1)
            .query_async(&mut self.conn())
            .await
    }

    /// Each `(user, order)` row's buyer holds it again, and with `restock` (and the
    /// counters as `counted`) the event's units become the given ones.
    pub async fn repair(
        &self,
        event: &EventId,
        rows: &[(String, String)],
        restock: Option<(Counted, &Restock)>,
    ) -> redis::RedisResult<Repaired> {
        let k = self.keys(event);
        let script = Script::new(include_str!("lua/repair.lua"));
        let mut call = script.prepare_invoke();
        call.key(k.stock())
            .key(k.orders())
            .key(k.status())
            .key(k.stats())
            .key(k.given_back());
        match restock {
            Some((counted, units)) => {
                call.arg(counted.reserved)
                    .arg(counted.failed)
                    .arg(units.fresh)
                    .arg(units.given_back.len());
                for u in &units.given_back {
                    call.arg(u);
                }
            }
            None => {
                call.arg("").arg("").arg(0).arg(0);
            }
        }
        for (user, order) in rows {
            call.arg(user).arg(order);
        }
        let (restored, outcome): (u64, String) = call.invoke_async(&mut self.conn()).await?;
        Ok(Repaired {
            restored,
            restocked: restock.map(|_| outcome == "restocked"),
        })
    }
}
