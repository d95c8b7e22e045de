//! The outboxes: where they are, what the relay took from them, and what still waits.
//!
//! An entry holds a reserve call's reservations, a line each (`lua/reserve.lua`; one for
//! `lua/spill.lua`), so the outbox's length counts calls, not reservations: the
//! reservations waiting are the stats' `reserved` less `relayed` (`lua/relayed.lua`).

use super::{EventKeys, Store};
use flashgate_core::ids::EventId;
use redis::RedisResult;

impl Store {
    /// The keys of an event's outboxes: its own, or each of its stock buckets'.
    pub async fn outboxes(&self, id: &EventId) -> RedisResult<Vec<EventKeys>> {
        let split = self.split(id).await?;
        Ok(self.stock_keys(id, split))
    }

    /// Acknowledges to `group` and deletes the outbox entries at `keys` the broker holds,
    /// each given with how many reservations it carries; returns how many reservations
    /// this took out of the outbox (an entry deleted already counts nothing).
    pub async fn relayed(
        &self,
        keys: &EventKeys,
        group: &str,
        entries: &[(&str, usize)],
    ) -> RedisResult<u64> {
        if entries.is_empty() {
            return Ok(0);
        }
        let mut call = self.relayed.key(keys.outbox());
        call.key(keys.stats()).arg(group);
        for (id, reservations) in entries {
            call.arg(*id).arg(*reservations);
        }
        call.invoke_async(&mut self.conn()).await
    }

    /// Reservations waiting in the outboxes of these events. The reads of each outbox are
    /// sent at once: each outbox is in its event's slot, and a pipeline may not span slots
    /// on a cluster.
    pub async fn outbox_backlog(&self, events: &[EventId]) -> RedisResult<u64> {
        let mut outboxes = Vec::new();
        for e in events {
            outboxes.extend(self.outboxes(e).await?);
        }
        let waiting = outboxes.iter().map(|k| self.waiting(k));
        Ok(futures::future::try_join_all(waiting).await?.iter().sum())
    }

    /// Reservations waiting in the outbox at `keys`.
    pub async fn waiting(&self, keys: &EventKeys) -> RedisResult<u64> {
        let (entries, reserved, relayed): (u64, Option<u64>, Option<u64>) = redis::pipe()
            .xlen(keys.outbox())
            .hget(keys.stats(), "reserved")
            .hget(keys.stats(), "relayed")
            .query_async(&mut self.conn())
            .await?;
        Ok(waiting(
            entries,
            reserved.unwrap_or(0),
            relayed.unwrap_or(0),
        ))
    }
}

/// Reservations waiting in an outbox of `entries` entries, given its stats' counters. An
/// entry holds one at least, which bounds the count from below while `relayed` is behind
/// (an event whose earlier entries were relayed uncounted, until its outbox empties).
fn waiting(entries: u64, reserved: u64, relayed: u64) -> u64 {
    if entries == 0 {
        return 0;
    }
    entries.max(reserved.saturating_sub(relayed))
}

#[cfg(test)]
mod tests {
    use super::waiting;

    #[test]
    fn an_empty_outbox_has_nothing_waiting_whatever_the_counters_say() {
        assert_eq!(waiting(0, 500, 0), 0);
        assert_eq!(waiting(0, 500, 500), 0);
    }

    #[test]
    fn the_counters_count_the_reservations_of_entries_of_many() {
        // Three calls of 64, 10 and 1 reservations wait; 200 went before them.
        assert_eq!(waiting(3, 275, 200), 75);
    }

    #[test]
    fn counters_behind_the_entries_count_an_entry_as_one() {
        // An earlier version relayed without counting: relayed is 0, reserved is large.
        assert_eq!(waiting(4, 1_000, 0), 1_000);
        // Or relayed ran ahead of a reserved that a restore reset.
        assert_eq!(waiting(4, 10, 50), 4);
    }
}
