//! What a Redis failover changed, found by comparing Redis's units with the orders table,
//! and the repair that restores Redis's view from it (`core::fence`).

use super::{Held, Report};
use crate::redis::Store;
use flashgate_core::fence::{restock, Refusal};
use flashgate_core::ids::EventId;
use std::collections::BTreeSet;
use std::fmt::Write;

/// Findings listed one by one up to this many; the rest are counted.
const LISTED: usize = 20;

/// Adds to `r` what a failover changed: units sold twice and refused (settled, so figures),
/// sold units on sale again in Redis and units Redis names twice (problems).
/// `refused` and `rows` are the event's `failed_orders` and `orders` with unit numbers.
pub(super) fn failover_findings(
    r: &mut Report,
    stock: i64,
    given_back: &[u64],
    refused: &[(String, String, String, Option<u64>)],
    rows: &[(String, String, Option<u64>)],
) {
    let taken: Vec<_> = refused
        .iter()
        .filter(|(_, _, reason, _)| Refusal::parse(reason) == Some(Refusal::UnitTaken))
        .collect();
    r.summary.push(format!(
        "units sold twice and refused {} (MariaDB)",
        taken.len()
    ));
    for (order, user, _, unit) in taken.iter().take(LISTED) {
        let holder = rows
            .iter()
            .find(|(_, _, u)| u.is_some() && u == unit)
            .map_or("?", |(o, _, _)| o.as_str());
        r.summary.push(format!(
            "  order {order} of user {user} refused: unit {} is order {holder}'s",
            unit.map_or("?".into(), |u| u.to_string())
        ));
    }
    let fresh = stock.max(0) as u64 - (given_back.len() as u64).min(stock.max(0) as u64);
    let back: BTreeSet<u64> = given_back.iter().copied().collect();
    if back.len() != given_back.len() || back.iter().any(|u| *u <= fresh) {
        r.problems.push(format!(
            "UNITS: Redis names a unit twice (never sold 1..={fresh}, given back {given_back:?})"
        ));
    }
    let resold: Vec<_> = rows
        .iter()
        .filter_map(|(o, _, u)| {
            u.filter(|u| *u <= fresh || back.contains(u))
                .map(|u| (o, u))
        })
        .collect();
    for (order, unit) in resold.iter().take(LISTED) {
        r.problems.push(format!(
            "RESOLD: unit {unit} of order {order} is on sale again in Redis"
        ));
    }
    if resold.len() > LISTED {
        r.problems
            .push(format!("RESOLD: and {} more units", resold.len() - LISTED));
    }
}

/// Restores `event`'s Redis view from the orders table: every row's buyer holds it, and,
/// when nothing is on its way (no reservation without a row or a failure, an empty
/// outbox) and Redis's counters did not move since they were read, the units for sale
/// become exactly those no row holds. What it did, as lines to print.
pub(super) async fn restore(store: &Store, event: &EventId, db: &Held) -> anyhow::Result<String> {
    let units = restock(db.stock_total, &db.units);
    let why_not = if db.on_their_way > 0 {
        Some(format!(
            "{} reservation(s) are on their way to the orders table; run again once they are written",
            db.on_their_way
        ))
    } else if db.unnumbered > 0 {
        Some(format!(
            "{} order(s) have no unit number (written before unit numbers)",
            db.unnumbered
        ))
    } else {
        None
    };
    let restock = match (&why_not, db.counted) {
        (None, Some(counted)) => Some((counted, &units)),
        _ => None,
    };
    let done = store.repair(event, &db.rows, restock).await?;
    let mut out = format!(
        "repair: {} buyer(s) hold their order in Redis again\n",
        done.restored
    );
    let _ = match (done.restocked, why_not) {
        (Some(true), _) => writeln!(
            out,
            "repair: units for sale set to the {} no order holds",
            units.stock()
        ),
        (Some(false), _) => writeln!(
            out,
            "repair: units not restocked: the sale moved since they were read; run again"
        ),
        (None, Some(why)) => writeln!(out, "repair: units not restocked: {why}"),
        (None, None) => Ok(()),
    };
    Ok(out)
}
