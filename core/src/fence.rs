//! The unit fence: every reservation holds a **unit number**, which of the event's units
//! it took (1..=stock_total), and the orders table refuses a second row for one unit. A
//! Redis failover to a replica that missed the last reservations puts their units back on
//! sale; selling one again is then refused by the database instead of overselling.
//!
//! - Which unit a reservation takes (the origin's `reserve.lua`): a unit given back
//!   first, else the highest never sold, which is the stock counter itself. Units given
//!   back are a list beside the counter, so the counter is always the never-sold units
//!   plus that list (`stock = fresh + given back`), and units `1..=fresh` are never sold.
//! - [`refusal`]: why the database refused an order, and whether its unit goes back to
//!   stock: never a unit that another order holds (it is sold), always another's.
//! - [`restock`]: Redis's units rebuilt from the units the database holds (`flashgate
//!   reconcile --repair`).

use std::collections::BTreeSet;

/// Why the orders table refused an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Another order holds its unit (a unit sold twice after a failover): the unit is
    /// sold, and stays out of stock.
    UnitTaken,
    /// The buyer is blocked.
    Blocked,
    /// The buyer holds another order for the event.
    Duplicate,
}

impl Refusal {
    /// The reason stored in `failed_orders` and counted in metrics.
    ///
    /// ```
    /// use flashgate_core::fence::Refusal;
    /// assert_eq!(Refusal::UnitTaken.reason(), "unit_taken");
    /// assert_eq!(Refusal::parse("unit_taken"), Some(Refusal::UnitTaken));
    /// ```
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::UnitTaken => "unit_taken",
            Refusal::Blocked => "blocked",
            Refusal::Duplicate => "duplicate",
        }
    }

    /// Reads a stored reason back.
    pub fn parse(reason: &str) -> Option<Self> {
        [Refusal::UnitTaken, Refusal::Blocked, Refusal::Duplicate]
            .into_iter()
            .find(|r| r.reason() == reason)
    }

    /// Whether the order's unit goes back to stock: not when another order holds it.
    ///
    /// ```
    /// use flashgate_core::fence::Refusal;
    /// assert!(!Refusal::UnitTaken.gives_back());
    /// assert!(Refusal::Duplicate.gives_back());
    /// ```
    pub fn gives_back(self) -> bool {
        self != Refusal::UnitTaken
    }
}

/// Why an order the database would not write was refused: its unit held by another row
/// wins over everything else, as that decides whether the unit goes back.
///
/// ```
/// use flashgate_core::fence::{refusal, Refusal};
/// assert_eq!(refusal(true, true), Refusal::UnitTaken);
/// assert_eq!(refusal(false, true), Refusal::Blocked);
/// assert_eq!(refusal(false, false), Refusal::Duplicate);
/// ```
pub fn refusal(unit_taken: bool, blocked: bool) -> Refusal {
    if unit_taken {
        Refusal::UnitTaken
    } else if blocked {
        Refusal::Blocked
    } else {
        Refusal::Duplicate
    }
}

/// An event's units as Redis keeps them: the stock counter is `fresh` plus the units
/// given back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restock {
    /// Units `1..=fresh` are free.
    pub fresh: u64,
    /// The other free units, ascending.
    pub given_back: Vec<u64>,
}

impl Restock {
    /// The stock counter: every free unit.
    pub fn stock(&self) -> u64 {
        self.fresh + self.given_back.len() as u64
    }
}

/// The free units of an event of `total` units of which `held` are held by orders, in
/// Redis's shape: the longest run from unit 1 as the never-sold range, the rest as units
/// given back. Held units outside `1..=total` are ignored.
///
/// ```
/// use flashgate_core::fence::restock;
/// let r = restock(6, &[4, 6].into());
/// assert_eq!((r.fresh, r.given_back.clone(), r.stock()), (3, vec![5], 4));
/// assert_eq!(restock(3, &[].into()).stock(), 3);
/// ```
pub fn restock(total: u64, held: &BTreeSet<u64>) -> Restock {
    let lowest = held.range(1..=total).next().copied();
    let fresh = lowest.map_or(total, |u| u - 1);
    let given_back = (fresh + 1..=total).filter(|u| !held.contains(u)).collect();
    Restock { fresh, given_back }
}

#[cfg(test)]
mod model;
