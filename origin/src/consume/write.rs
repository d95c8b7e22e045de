//! Writing a batch of orders to MariaDB, idempotently: what became of each order.

use super::Consumer;
use crate::kafka::OrderMessage;
use anyhow::Context;
use flashgate_core::fence;
use flashgate_core::ids::{EventId, OrderId, UserId};
use sqlx::mysql::MySqlConnection;
use sqlx::{Connection, MySql, QueryBuilder};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// A valid order read from the topic.
#[derive(Debug, Clone)]
pub struct Order {
    pub(super) order_id: OrderId,
    pub(super) event_id: EventId,
    pub(super) user_id: UserId,
    pub(super) reserved_at: chrono::NaiveDateTime,
    pub(super) room_position: Option<u64>,
    pub(super) unit_no: Option<u64>,
    pub(super) client_net: Option<String>,
}

impl Order {
    /// Validates a one-order payload; `None` for anything a well-behaved relay never sends.
    pub fn parse(payload: &[u8]) -> Option<Order> {
        Self::from_message(serde_json::from_slice(payload).ok()?)
    }

    /// Validates one order of a message (see [`crate::kafka::unpack`]).
    pub fn from_value(value: &serde_json::Value) -> Option<Order> {
        Self::from_message(serde::Deserialize::deserialize(value).ok()?)
    }

    fn from_message(m: OrderMessage) -> Option<Order> {
        Some(Order {
            order_id: OrderId::parse(&m.order_id).ok()?,
            event_id: EventId::parse(&m.event_id).ok()?,
            user_id: UserId::parse(&m.user_id).ok()?,
            reserved_at: chrono::DateTime::from_timestamp_millis(m.reserved_at)?.naive_utc(),
            room_position: m.room_position,
            unit_no: m.unit_no,
            // A network the edge could not have signed is dropped, not the order.
            client_net: m
                .client_net
                .filter(|n| flashgate_core::sign::valid_client_net(n)),
        })
    }
}

/// What became of an order in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// A row in `orders`.
    Confirmed,
    /// Refused, recorded in `failed_orders` with this reason (`core::fence::Refusal`);
    /// its unit goes back to stock unless another order holds it.
    Failed(&'static str),
}

/// Earlier failures among a batch's orders and blocked users among its buyers. The ids go
/// as two JSON arrays joined against the tables' keys: one statement whatever the batch
/// size, and a third of the cost of two 500-value `IN` lists (whose range analysis
/// dominated; docs/benchmarks.md).
const LOOKUP: &str = "\
    SELECT 'failed', f.order_id, f.reason FROM JSON_TABLE(?, '$[*]' COLUMNS (\
        id VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs PATH '$')) j \
    JOIN failed_orders f ON f.order_id = j.id \
    UNION ALL \
    SELECT 'blocked', b.user_id, '' FROM JSON_TABLE(?, '$[*]' COLUMNS (\
        id VARCHAR(64) CHARACTER SET latin1 COLLATE latin1_general_cs PATH '$')) j \
    JOIN blocked_users b ON b.user_id = j.id";

fn in_list<'a>(qb: &mut QueryBuilder<'a, MySql>, ids: impl Iterator<Item = &'a str>) {
    qb.push(" (");
    let mut sep = qb.separated(", ");
    for id in ids {
        sep.push_bind(id);
    }
    sep.push_unseparated(")");
}

/// Earlier failures (order id → fate) and blocked buyers among a batch's orders.
pub(super) type Lookup = (HashMap<String, Fate>, HashSet<String>);

/// Earlier failures and blocked buyers among a batch's orders ([`LOOKUP`]).
async fn look_up(db: &mut MySqlConnection, orders: &[Order]) -> sqlx::Result<Lookup> {
    let ids =
        |f: fn(&Order) -> &str| serde_json::to_string(&orders.iter().map(f).collect::<Vec<_>>());
    let found: Vec<(String, String, String)> = sqlx::query_as(LOOKUP)
        .bind(ids(|o| o.order_id.as_str()).unwrap_or_default())
        .bind(ids(|o| o.user_id.as_str()).unwrap_or_default())
        .fetch_all(db)
        .await?;
    let mut fates = HashMap::new();
    let mut blocked = HashSet::new();
    for (kind, id, reason) in found {
        if kind == "blocked" {
            blocked.insert(id);
        } else {
            fates.insert(id, Fate::Failed(failure_reason(&reason)));
        }
    }
    Ok((fates, blocked))
}

/// Adds to a lookup made ahead of the batch before it the failures of that batch
/// (`last_failed`) among `orders`: the lookup ran before they were committed.
pub(super) fn add_failures(
    found: &mut Lookup,
    orders: &[Order],
    last_failed: &HashMap<String, Fate>,
) {
    for o in orders {
        if let Some(fate) = last_failed.get(o.order_id.as_str()) {
            found.0.insert(o.order_id.as_str().to_owned(), *fate);
        }
    }
}

/// `INSERT IGNORE`s the orders as confirmed rows; how many were new.
async fn insert_orders(db: &mut MySqlConnection, orders: &[&Order]) -> sqlx::Result<u64> {
    let mut insert: QueryBuilder<MySql> = QueryBuilder::new(
        "INSERT IGNORE INTO orders \
         (order_id, event_id, user_id, status, reserved_at, room_position, unit_no, client_net) ",
    );
    insert.push_values(orders, |mut row, o| {
        row.push_bind(o.order_id.as_str())
            .push_bind(o.event_id.as_str())
            .push_bind(o.user_id.as_str())
            .push_bind("confirmed")
            .push_bind(o.reserved_at)
            .push_bind(o.room_position)
            .push_bind(o.unit_no)
            .push_bind(o.client_net.as_deref());
    });
    Ok(insert.build().execute(db).await?.rows_affected())
}

/// Writes one batch and says what became of each order. Replaying a batch gives the same
/// answer and writes nothing twice: an order already written or already failed keeps its
/// fate, whatever changed since (e.g. the user was blocked).
///
/// A first delivery of orders from unblocked users (the common case) costs two statements:
/// the lookup (earlier failures and blocked buyers together) and one multi-row insert,
/// atomic on its own. Anything else (a failure to record, a blocked buyer, an insert that
/// skipped rows) is sorted out in one transaction (`write_in_transaction`), which treats
/// the rows that insert wrote as it treats a replay's.
pub async fn write_batch(
    db: &mut MySqlConnection,
    orders: &[Order],
) -> sqlx::Result<HashMap<String, Fate>> {
    write_looked_up(db, orders, None).await
}

/// [`write_batch`], with the lookup made beforehand when `looked_up` is given; it must
/// see every failure recorded before this batch (see `Consumer::run`).
pub(super) async fn write_looked_up(
    db: &mut MySqlConnection,
    orders: &[Order],
    looked_up: Option<Lookup>,
) -> sqlx::Result<HashMap<String, Fate>> {
    if orders.is_empty() {
        return Ok(HashMap::new());
    }
    let (failed, blocked) = match looked_up {
        Some(found) => found,
        None => look_up(db, orders).await?,
    };
    if failed.is_empty() && blocked.is_empty() {
        let all: Vec<&Order> = orders.iter().collect();
        if insert_orders(db, &all).await? == all.len() as u64 {
            return Ok(orders
                .iter()
                .map(|o| (o.order_id.as_str().to_owned(), Fate::Confirmed))
                .collect());
        }
    }
    write_in_transaction(db, orders).await
}

/// [`write_batch`] in one transaction: the lookup, the insert, which skipped orders are
/// rows already (a locking read), and the failures.
async fn write_in_transaction(
    db: &mut MySqlConnection,
    orders: &[Order],
) -> sqlx::Result<HashMap<String, Fate>> {
    let mut tx = db.begin().await?;
    let (mut fates, blocked) = look_up(&mut tx, orders).await?;
    let fresh: Vec<&Order> = orders
        .iter()
        .filter(|o| !fates.contains_key(o.order_id.as_str()))
        .collect();
    let allowed: Vec<&Order> = fresh
        .iter()
        .copied()
        .filter(|o| !blocked.contains(o.user_id.as_str()))
        .collect();
    let inserted = if allowed.is_empty() {
        0
    } else {
        insert_orders(&mut tx, &allowed).await?
    };
    // Orders of blocked buyers may be rows from before the block, and an insert that
    // skipped some skipped rows that exist (a replay) or a second order of a buyer.
    let unsure: Vec<&Order> = if inserted == allowed.len() as u64 {
        for o in &allowed {
            fates.insert(o.order_id.as_str().to_owned(), Fate::Confirmed);
        }
        fresh
            .iter()
            .copied()
            .filter(|o| blocked.contains(o.user_id.as_str()))
            .collect()
    } else {
        fresh.clone()
    };
    if !unsure.is_empty() {
        // A locking read: it sees rows another consumer committed after this transaction's
        // snapshot (after a rebalance two members may write the same batch), where a plain
        // read would call such an order a duplicate and give its unit back.
        let mut rows: QueryBuilder<MySql> =
            QueryBuilder::new("SELECT order_id FROM orders WHERE order_id IN");
        in_list(&mut rows, unsure.iter().map(|o| o.order_id.as_str()));
        rows.push(" LOCK IN SHARE MODE");
        let rows: Vec<(String,)> = rows.build_query_as().fetch_all(&mut *tx).await?;
        for (id,) in rows {
            fates.insert(id, Fate::Confirmed);
        }
    }
    let refused: Vec<&Order> = fresh
        .iter()
        .copied()
        .filter(|o| !fates.contains_key(o.order_id.as_str()))
        .collect();
    let taken = units_taken(&mut tx, &refused).await?;
    let failed: Vec<(&Order, &'static str)> = refused
        .into_iter()
        .map(|o| {
            let unit_taken = o
                .unit_no
                .is_some_and(|u| taken.contains(&(o.event_id.as_str().to_owned(), u)));
            let reason = fence::refusal(unit_taken, blocked.contains(o.user_id.as_str()));
            (o, reason.reason())
        })
        .collect();
    if !failed.is_empty() {
        let mut insert: QueryBuilder<MySql> = QueryBuilder::new(
            "INSERT IGNORE INTO failed_orders (order_id, event_id, user_id, reason, reserved_at, unit_no) ",
        );
        insert.push_values(&failed, |mut row, (o, reason)| {
            row.push_bind(o.order_id.as_str())
                .push_bind(o.event_id.as_str())
                .push_bind(o.user_id.as_str())
                .push_bind(*reason)
                .push_bind(o.reserved_at)
                .push_bind(o.unit_no);
        });
        insert.build().execute(&mut *tx).await?;
        for (o, reason) in failed {
            fates.insert(o.order_id.as_str().to_owned(), Fate::Failed(reason));
        }
    }
    tx.commit().await?;
    Ok(fates)
}

/// The units of `orders` that rows hold (event, unit): none of these orders is a row, so
/// another order holds each (the unit fence; a locking read, as for the rows above).
async fn units_taken(
    tx: &mut MySqlConnection,
    orders: &[&Order],
) -> sqlx::Result<HashSet<(String, u64)>> {
    let numbered: Vec<(&str, u64)> = orders
        .iter()
        .filter_map(|o| Some((o.event_id.as_str(), o.unit_no?)))
        .collect();
    if numbered.is_empty() {
        return Ok(HashSet::new());
    }
    let mut q: QueryBuilder<MySql> =
        QueryBuilder::new("SELECT event_id, unit_no FROM orders WHERE (event_id, unit_no) IN (");
    let mut sep = q.separated(", ");
    for (event, unit) in &numbered {
        sep.push("(")
            .push_bind_unseparated(*event)
            .push_unseparated(", ")
            .push_bind_unseparated(*unit)
            .push_unseparated(")");
    }
    q.push(") LOCK IN SHARE MODE");
    let rows: Vec<(String, u64)> = q.build_query_as().fetch_all(tx).await?;
    Ok(rows.into_iter().collect())
}

/// The reason of a failure read back from `failed_orders`.
fn failure_reason(stored: &str) -> &'static str {
    fence::Refusal::parse(stored).map_or("duplicate", fence::Refusal::reason)
}

impl Consumer {
    /// Starts the lookup of a batch about to be handed to the writer, on a connection of
    /// its own. `None` for a batch without orders.
    pub(super) fn look_up_ahead(
        self: Arc<Self>,
        orders: &[Order],
    ) -> Option<tokio::task::JoinHandle<anyhow::Result<Lookup>>> {
        if orders.is_empty() {
            return None;
        }
        let orders = orders.to_vec();
        Some(tokio::spawn(async move {
            let mut db = self.lookup_db.take_or_acquire(&self.pool).await?;
            let found = look_up(&mut db, &orders).await.context("mariadb")?;
            self.lookup_db.keep(db);
            Ok(found)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(id: &str, user: &str) -> Order {
        let payload =
            serde_json::json!({"order_id": id, "event_id": "e", "user_id": user, "reserved_at": 1});
        Order::parse(payload.to_string().as_bytes()).expect("order")
    }

    #[test]
    fn a_lookup_made_ahead_gets_the_failures_of_the_batch_before() {
        // The batch before failed o1 (its buyer was blocked, maybe unblocked since) and
        // confirmed o2; the lookup, made before that was committed, found neither.
        let last: HashMap<String, Fate> = [("o1".to_owned(), Fate::Failed("blocked"))].into();
        let mut found: Lookup = Default::default();
        add_failures(
            &mut found,
            &[order("o1", "a"), order("o2", "b"), order("o3", "c")],
            &last,
        );
        assert_eq!(found.0, [("o1".to_owned(), Fate::Failed("blocked"))].into());
        // Failures of orders not in this batch are not its business.
        let mut found: Lookup = Default::default();
        add_failures(&mut found, &[order("o3", "c")], &last);
        assert!(found.0.is_empty());
    }
}
