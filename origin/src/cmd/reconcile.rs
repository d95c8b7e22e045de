//! `flashgate reconcile --event E`: compares what Redis says was sold with what the orders
//! table holds, and names every mismatch (oversell, duplicate, a reservation with no order
//! after a grace period, a failed order whose unit was not given back, and what a Redis
//! failover changed: rows Redis no longer knows, units sold twice and refused, sold units
//! on sale again). `--repair` re-publishes missing reservations and restores Redis's view
//! from the orders table (`reconcile/repair.rs`).

mod repair;

use crate::config::Settings;
use crate::kafka::OrderMessage;
use crate::redis::{Counted, Store};
use crate::{db, kafka};
use flashgate_core::ids::EventId;
use flashgate_core::Millis;
use redis::AsyncCommands;
use secrecy::ExposeSecret;
use sqlx::mysql::MySqlPool;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write;

/// The outcome of a reconciliation.
#[derive(Debug, Default)]
pub struct Report {
    /// Figures, one per line.
    pub summary: Vec<String>,
    /// Each mismatch, named.
    pub problems: Vec<String>,
    /// Reservations with no order past the grace period (what `--repair` re-publishes).
    pub missing: Vec<OrderMessage>,
    /// What the orders table holds, for `--repair`.
    pub db: Held,
}

/// What the orders table holds of an event, and whether Redis has orders on their way.
#[derive(Debug, Default)]
pub struct Held {
    /// `(user, order)` of each row.
    pub rows: Vec<(String, String)>,
    /// The rows' unit numbers.
    pub units: BTreeSet<u64>,
    /// Rows without a unit number (written before unit numbers).
    pub unnumbered: usize,
    /// Orders Redis holds that have neither a row nor a failure yet, and outbox entries.
    pub on_their_way: usize,
    /// The event's units.
    pub stock_total: u64,
    /// Redis's counters, read before everything else: a restock checks that they did not
    /// change since.
    pub counted: Option<Counted>,
}

impl Report {
    /// Whether everything matched.
    pub fn clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// The printed report.
    pub fn render(&self, event: &EventId) -> String {
        let mut out = format!("reconcile {event}\n");
        for l in &self.summary {
            let _ = writeln!(out, "  {l}");
        }
        if self.clean() {
            out.push_str("OK: Redis and the orders table agree\n");
        } else {
            let _ = writeln!(out, "{} problem(s):", self.problems.len());
            for p in &self.problems {
                let _ = writeln!(out, "  {p}");
            }
        }
        out
    }
}

/// When an order id (UUIDv7) was minted, unix ms.
pub fn minted_at(order_id: &str) -> Option<Millis> {
    let hex = order_id.get(..12)?;
    i64::from_str_radix(hex, 16).ok()
}

/// Compares Redis and MariaDB for `event` at `now`; reservations younger than `grace_ms`
/// may still be on their way and are not reported missing.
pub async fn reconcile(
    store: &Store,
    pool: &MySqlPool,
    event: &EventId,
    now: Millis,
    grace_ms: Millis,
) -> anyhow::Result<Report> {
    let mut r = Report::default();
    let Some(meta) = store.event(event).await? else {
        r.problems
            .push(format!("UNKNOWN: no event {event} in Redis"));
        return Ok(r);
    };
    // An event split into stock buckets keeps its units, marks and outboxes in each
    // bucket's keys: they are read bucket by bucket and added up. A claim is a purchase in
    // flight, not a held order (the consumer's confirmation turns a spilled order's claim
    // into the order).
    let split = meta.split();
    let counted = match split.buckets {
        1 => Some(store.counted(event).await?),
        _ => None,
    };
    let mut conn = store.conn();
    let (mut stock_raw, mut backlog) = (0i64, 0u64);
    let mut held: HashMap<String, String> = HashMap::new();
    let mut compensated: HashSet<String> = HashSet::new();
    for k in store.stock_keys(event, split) {
        stock_raw += conn.get::<_, i64>(k.stock()).await?;
        let marks: HashMap<String, String> = conn.hgetall(k.orders()).await?;
        held.extend(marks.into_iter().filter(|(_, m)| !m.starts_with("claim:")));
        compensated.extend(conn.smembers::<_, HashSet<String>>(k.compensated()).await?);
        backlog += store.waiting(&k).await?;
    }
    let given_back = match split.buckets {
        1 => store.given_back(event).await?,
        _ => Vec::new(),
    };
    let numbered: Vec<(String, String, Option<u64>)> =
        sqlx::query_as("SELECT order_id, user_id, unit_no FROM orders WHERE event_id = ?")
            .bind(event.as_str())
            .fetch_all(pool)
            .await?;
    let refused: Vec<(String, String, String, Option<u64>)> = sqlx::query_as(
        "SELECT order_id, user_id, reason, unit_no FROM failed_orders WHERE event_id = ?",
    )
    .bind(event.as_str())
    .fetch_all(pool)
    .await?;
    let rows: Vec<(String, String)> = numbered
        .iter()
        .map(|(o, u, _)| (o.clone(), u.clone()))
        .collect();
    let failed: Vec<(String, String)> = refused
        .iter()
        .map(|(o, u, _, _)| (o.clone(), u.clone()))
        .collect();

    r.summary.push(format!("stock_total {}", meta.stock_total));
    r.summary.push(format!("stock_left {stock_raw} (Redis)"));
    r.summary
        .push(format!("reservations held {} (Redis)", held.len()));
    r.summary.push(format!("orders {} (MariaDB)", rows.len()));
    r.summary.push(format!(
        "failed orders {} (MariaDB), compensated {} (Redis)",
        failed.len(),
        compensated.len()
    ));
    r.summary.push(format!("outbox backlog {backlog}"));

    if stock_raw < 0 {
        r.problems
            .push(format!("OVERSELL: stock is {stock_raw} in Redis"));
    }
    if rows.len() as u64 > meta.stock_total {
        r.problems.push(format!(
            "OVERSELL: {} orders for {} units",
            rows.len(),
            meta.stock_total
        ));
    }
    if stock_raw + held.len() as i64 != meta.stock_total as i64 {
        r.problems.push(format!(
            "STOCK: {stock_raw} left + {} held != {} total",
            held.len(),
            meta.stock_total
        ));
    }
    let mut per_user: HashMap<&str, usize> = HashMap::new();
    for (_, user) in &rows {
        *per_user.entry(user).or_default() += 1;
    }
    for (user, n) in per_user.iter().filter(|(_, n)| **n > 1) {
        r.problems
            .push(format!("DUPLICATE: user {user} holds {n} orders"));
    }
    let in_db: HashSet<&str> = rows.iter().map(|(o, _)| o.as_str()).collect();
    for (order, user) in &rows {
        if held.get(user) != Some(order) {
            r.problems.push(format!(
                "ORPHAN: order {order} of user {user} is not held in Redis"
            ));
        }
    }
    let failed_ids: HashSet<&str> = failed.iter().map(|(o, _)| o.as_str()).collect();
    for (user, order) in &held {
        if in_db.contains(order.as_str()) {
            continue;
        }
        let age = minted_at(order).map(|t| now - t).unwrap_or(Millis::MAX);
        if failed_ids.contains(order.as_str()) {
            r.problems.push(format!(
                "UNCOMPENSATED: failed order {order} of user {user} still holds stock"
            ));
        } else if age > grace_ms {
            r.problems.push(format!(
                "MISSING: order {order} of user {user}, reserved {}s ago, has no row",
                age / 1000
            ));
            r.missing.push(OrderMessage {
                order_id: order.clone(),
                event_id: event.to_string(),
                user_id: user.clone(),
                reserved_at: minted_at(order).unwrap_or(now),
                // The outbox entry is gone: its position and network with it.
                room_position: None,
                unit_no: None,
                client_net: None,
            });
        }
    }
    for (order, user) in &failed {
        if !compensated.contains(order) {
            r.problems.push(format!(
                "UNCOMPENSATED: failed order {order} of user {user} was never given back"
            ));
        }
    }
    let pending = held
        .values()
        .filter(|o| !in_db.contains(o.as_str()) && !failed_ids.contains(o.as_str()))
        .count();
    r.db = Held {
        units: numbered.iter().filter_map(|(_, _, u)| *u).collect(),
        unnumbered: numbered.iter().filter(|(_, _, u)| u.is_none()).count(),
        rows: rows.iter().map(|(o, u)| (u.clone(), o.clone())).collect(),
        on_their_way: pending + backlog as usize,
        stock_total: meta.stock_total,
        counted,
    };
    if split.buckets > 1 {
        // The units' checks read one stock and its given-back list.
        r.summary.push(format!(
            "stock buckets {}: units not checked against a failover",
            split.buckets
        ));
        return Ok(r);
    }
    repair::failover_findings(&mut r, stock_raw, &given_back, &refused, &numbered);
    Ok(r)
}

/// Reconciles `event` and prints the report; with `repair`, re-publishes the
/// reservations that have no order and restores Redis's view from the orders table
/// (`reconcile/repair.rs`). Fails on any mismatch.
pub async fn run(
    settings: Settings,
    event: &str,
    grace_secs: i64,
    repair: bool,
) -> anyhow::Result<()> {
    let event = EventId::parse(event)?;
    let store = Store::open(&settings.redis).await?;
    let pool = db::connect(settings.db.url.expose_secret()).await?;
    let buckets = store.split(&event).await?.buckets;
    if repair && buckets > 1 {
        // Nothing is repaired: restoring units is per stock, and its units are per bucket.
        anyhow::bail!(
            "{event} is split into {buckets} stock buckets, which --repair does not restore yet"
        );
    }
    let report = reconcile(&store, &pool, &event, super::now_ms()?, grace_secs * 1000).await?;
    print!("{}", report.render(&event));
    if repair && !report.missing.is_empty() {
        let n = kafka::publish(
            &settings.kafka.brokers,
            &settings.kafka.orders_topic,
            &report.missing,
        )
        .await?;
        println!(
            "repair: re-published {n} reservation(s) to {}",
            settings.kafka.orders_topic
        );
    }
    if repair {
        print!("{}", repair::restore(&store, &event, &report.db).await?);
    }
    if report.clean() {
        Ok(())
    } else {
        anyhow::bail!("reconcile found {} problem(s)", report.problems.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_ids_carry_their_minting_time() {
        let id = uuid::Uuid::now_v7().simple().to_string();
        let t = minted_at(&id).expect("v7");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis() as i64;
        assert!((now - t).abs() < 60_000);
        assert_eq!(minted_at("zz"), None);
    }
}
