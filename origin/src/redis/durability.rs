//! Redis's settings that a reservation's safety rests on: refused or named at start.

use super::Store;
use std::collections::HashMap;

/// Redis's settings that a reservation's safety rests on. Between its 202 and the relay's
/// hand-over to Kafka, an order exists only in Redis (the outbox), and the stock count
/// lives there for good.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Durability {
    /// `maxmemory-policy`.
    pub eviction: Option<String>,
    /// `appendonly` (`yes`/`no`).
    pub append_only: Option<String>,
    /// `appendfsync`.
    pub fsync: Option<String>,
}

impl Durability {
    /// `Err` with the reason when serving on this Redis could oversell or lose orders;
    /// else the warnings worth a line in the log.
    pub fn verdict(&self) -> Result<Vec<String>, String> {
        let eviction = self.eviction.as_deref();
        if let Some(policy) = eviction.filter(|p| p.starts_with("allkeys-")) {
            return Err(format!(
                "Redis evicts any key when its memory is full (maxmemory-policy {policy}): it could \
                 drop an event's stock (overselling it) or its order outbox (losing orders). \
                 Set maxmemory-policy noeviction on that Redis; a full Redis then refuses \
                 purchases (503) instead"
            ));
        }
        let mut warnings = Vec::new();
        match eviction {
            Some("noeviction") => {}
            Some(policy) => warnings.push(format!(
                "Redis may evict keys that expire when its memory is full (maxmemory-policy \
                 {policy}): the replay guard and the per-user windows could be forgotten early; \
                 noeviction is the safe setting"
            )),
            None => warnings.push(
                "cannot read Redis's maxmemory-policy (CONFIG GET refused): make sure it is \
                 noeviction, or a full Redis may drop stock and orders"
                    .into(),
            ),
        }
        match (self.append_only.as_deref(), self.fsync.as_deref()) {
            (Some("no"), _) => warnings.push(
                "Redis keeps no append-only file (appendonly no): if it restarts without a \
                 replica taking over, the orders it had not yet passed to Kafka and the stock \
                 counts are lost; set appendonly yes"
                    .into(),
            ),
            (Some(_), Some("no")) => warnings.push(
                "Redis leaves flushing its append-only file to the OS (appendfsync no): a \
                 machine crash can lose the last seconds of orders; appendfsync everysec loses \
                 at most about one"
                    .into(),
            ),
            (None, _) => warnings.push(
                "cannot read Redis's appendonly setting (CONFIG GET refused): without an \
                 append-only file or a replica, a Redis restart loses the orders not yet in \
                 Kafka"
                    .into(),
            ),
            _ => {}
        }
        Ok(warnings)
    }
}

impl Store {
    /// Redis's own settings that decide whether a reservation survives (see
    /// [`Durability`]), one per master (the one server, or each master of a cluster,
    /// which keeps its own); a setting Redis will not show (`CONFIG` refused, as some
    /// managed services do) is `None`.
    pub async fn durability(&self) -> Vec<Durability> {
        let mut conn = self.conn();
        let mut nodes: std::collections::BTreeMap<String, Durability> = Default::default();
        for name in ["maxmemory-policy", "appendonly", "appendfsync"] {
            let cmd = redis::cmd("CONFIG").arg("GET").arg(name).clone();
            for (node, answer) in conn.on_every_master(&cmd).await.unwrap_or_default() {
                let pairs: Option<HashMap<String, String>> =
                    redis::from_owned_redis_value(answer).ok();
                let value = pairs.and_then(|p| p.get(name).cloned());
                let d = nodes.entry(node).or_default();
                match name {
                    "maxmemory-policy" => d.eviction = value,
                    "appendonly" => d.append_only = value,
                    _ => d.fsync = value,
                }
            }
        }
        if nodes.is_empty() {
            // Not even an answer: every setting unknown.
            nodes.insert(String::new(), Durability::default());
        }
        nodes.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::Durability;

    fn durability(
        eviction: Option<&str>,
        append_only: Option<&str>,
        fsync: Option<&str>,
    ) -> Durability {
        Durability {
            eviction: eviction.map(Into::into),
            append_only: append_only.map(Into::into),
            fsync: fsync.map(Into::into),
        }
    }

    #[test]
    fn redis_settings_that_lose_orders_are_refused_or_named() {
        let safe = durability(Some("noeviction"), Some("yes"), Some("everysec"));
        assert_eq!(safe.verdict(), Ok(vec![]));
        for policy in ["allkeys-lru", "allkeys-lfu", "allkeys-random"] {
            let refusal = durability(Some(policy), Some("yes"), Some("everysec")).verdict();
            assert!(refusal.is_err_and(|r| r.contains(policy)), "{policy}");
        }
        let warned = |d: Durability, what: &str| {
            let warnings = d.verdict().expect("served");
            assert_eq!(warnings.len(), 1, "{warnings:?}");
            assert!(warnings[0].contains(what), "{warnings:?}");
        };
        warned(
            durability(Some("volatile-lru"), Some("yes"), Some("always")),
            "volatile-lru",
        );
        warned(
            durability(Some("noeviction"), Some("no"), Some("everysec")),
            "appendonly no",
        );
        warned(
            durability(Some("noeviction"), Some("yes"), Some("no")),
            "appendfsync no",
        );
        let hidden = durability(None, None, None).verdict().expect("served");
        assert_eq!(hidden.len(), 2, "{hidden:?}");
    }
}
