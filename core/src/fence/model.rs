//! A model of the purchase path around a Redis failover: reserve (as `reserve.lua`),
//! relay (at least once; in strict mode only what a replica holds), consume (the orders table's unique keys, then confirm or
//! compensate as the consumer does), replication to one replica, a failover to it, and
//! `reconcile --repair`. Proptest runs any interleaving and checks that the database never
//! holds a unit twice nor a unit beyond stock, that in strict mode every 202 has its row,
//! and that Redis's units converge to the database's.

use super::{refusal, restock, Refusal};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

type User = u8;
type Order = u32;
type Unit = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Queued,
    Confirmed,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Message {
    order: Order,
    user: User,
    unit: Unit,
}

/// One Redis server's view of the event.
#[derive(Debug, Clone, Default)]
struct Redis {
    stock: u64,
    given_back: Vec<Unit>,
    orders: BTreeMap<User, Order>,
    status: BTreeMap<User, (Status, Order)>,
    outbox: VecDeque<Message>,
    settled: BTreeSet<Order>,
}

impl Redis {
    /// `reserve.lua` for one attempt: the new order, or `None`.
    fn reserve(&mut self, user: User, order: Order) -> Option<Message> {
        if self.orders.contains_key(&user) || self.stock == 0 {
            return None;
        }
        let unit = self.given_back.pop().unwrap_or(self.stock);
        self.stock -= 1;
        self.orders.insert(user, order);
        self.status.insert(user, (Status::Queued, order));
        let m = Message { order, user, unit };
        self.outbox.push_back(m);
        Some(m)
    }

    /// `confirm_many.lua` for one order: a queued order is confirmed; one Redis no longer
    /// knows (lost in a failover) is held again for its buyer.
    fn confirm(&mut self, m: Message) {
        match self.status.get(&m.user) {
            Some((Status::Queued, o)) if *o == m.order => {
                self.status.insert(m.user, (Status::Confirmed, m.order));
            }
            None => {
                self.status.insert(m.user, (Status::Confirmed, m.order));
                self.orders.insert(m.user, m.order);
            }
            _ => {}
        }
    }

    /// `compensate.lua`: fails the order once; its unit goes back only when this Redis
    /// counted it (the buyer's mark is this order) and `gives_back`. A buyer who holds
    /// another row (`holder`) is shown that order, unless another of theirs is pending.
    fn compensate(&mut self, m: Message, gives_back: bool, holder: Option<Order>) {
        if self.status.get(&m.user) == Some(&(Status::Confirmed, m.order)) {
            return;
        }
        if !self.settled.insert(m.order) {
            return;
        }
        let known = self.orders.get(&m.user) == Some(&m.order);
        if known {
            self.orders.remove(&m.user);
        }
        let unknown = !self.status.contains_key(&m.user);
        if self.status.get(&m.user) == Some(&(Status::Queued, m.order)) {
            self.status.insert(m.user, (Status::Failed, m.order));
        }
        if known && gives_back {
            self.stock += 1;
            self.given_back.push(m.unit);
        }
        if let Some(holder) = holder.filter(|_| known || unknown) {
            self.orders.insert(m.user, holder);
            self.status.insert(m.user, (Status::Confirmed, holder));
        }
    }

    /// The units this Redis would sell.
    fn for_sale(&self) -> BTreeSet<Unit> {
        let fresh = self.stock - self.given_back.len() as u64;
        (1..=fresh).chain(self.given_back.iter().copied()).collect()
    }
}

#[derive(Debug, Clone, Copy)]
enum Op {
    /// A purchase; `acked` when the replica acknowledged it (`WAIT`) before the answer.
    Reserve { user: User, acked: bool },
    /// The relay moves the oldest outbox entry to Kafka; without `ack` it stays and is
    /// sent again. In strict mode it sends only once the replica acknowledged what it
    /// read (`synced`).
    Relay { ack: bool, synced: bool },
    /// The consumer writes and settles the oldest message.
    Consume,
    /// The replica catches up.
    Sync,
    /// The master is lost; its replica, as of its last sync, takes over.
    Failover,
}

struct World {
    total: u64,
    strict: bool,
    master: Redis,
    replica: Redis,
    kafka: VecDeque<Message>,
    /// The orders table: order → (user, unit), unique on both.
    rows: BTreeMap<Order, (User, Unit)>,
    failed: BTreeMap<Order, Refusal>,
    next_order: Order,
    /// Orders answered 202.
    accepted: Vec<Order>,
    /// Every reservation's buyer.
    buyers: BTreeMap<Order, User>,
    failovers: usize,
}

impl World {
    fn new(total: u64, strict: bool) -> Self {
        let master = Redis {
            stock: total,
            ..Redis::default()
        };
        World {
            total,
            strict,
            replica: master.clone(),
            master,
            kafka: VecDeque::new(),
            rows: BTreeMap::new(),
            failed: BTreeMap::new(),
            next_order: 1,
            accepted: Vec::new(),
            buyers: BTreeMap::new(),
            failovers: 0,
        }
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Reserve { user, acked } => {
                let order = self.next_order;
                self.next_order += 1;
                if self.master.reserve(user, order).is_some() {
                    self.buyers.insert(order, user);
                    if acked {
                        self.replica = self.master.clone();
                    }
                    // Strict mode answers 503 busy to a reservation no replica holds.
                    if acked || !self.strict {
                        self.accepted.push(order);
                    }
                }
            }
            Op::Relay { ack, synced } => {
                if self.strict {
                    if !synced {
                        return;
                    }
                    self.replica = self.master.clone();
                }
                let first = if ack {
                    self.master.outbox.pop_front()
                } else {
                    self.master.outbox.front().copied()
                };
                self.kafka.extend(first);
            }
            Op::Consume => {
                if let Some(m) = self.kafka.pop_front() {
                    self.consume(m);
                }
            }
            Op::Sync => self.replica = self.master.clone(),
            Op::Failover => {
                self.master = self.replica.clone();
                self.failovers += 1;
            }
        }
    }

    /// The consumer: the row (or its refusal, once), then Redis told.
    fn consume(&mut self, m: Message) {
        let fate = if self.rows.contains_key(&m.order) {
            None
        } else if let Some(r) = self.failed.get(&m.order) {
            Some(*r)
        } else {
            let unit_taken = self.rows.values().any(|(_, u)| *u == m.unit);
            let duplicate = self.rows.values().any(|(user, _)| *user == m.user);
            if unit_taken || duplicate {
                let r = refusal(unit_taken, false);
                self.failed.insert(m.order, r);
                Some(r)
            } else {
                self.rows.insert(m.order, (m.user, m.unit));
                None
            }
        };
        let holder = self
            .rows
            .iter()
            .find(|(o, (user, _))| *user == m.user && **o != m.order)
            .map(|(o, _)| *o);
        match fate {
            None => self.master.confirm(m),
            Some(r) => self.master.compensate(m, r.gives_back(), holder),
        }
    }

    fn drain(&mut self) {
        while !self.master.outbox.is_empty() || !self.kafka.is_empty() {
            self.apply(Op::Relay {
                ack: true,
                synced: true,
            });
            self.apply(Op::Consume);
        }
    }

    /// `reconcile --repair`: Redis's marks and units from the database.
    fn repair(&mut self) {
        let r = &mut self.master;
        for (order, (user, _)) in &self.rows {
            r.orders.insert(*user, *order);
            r.status.insert(*user, (Status::Confirmed, *order));
        }
        let held: BTreeSet<Unit> = self.rows.values().map(|(_, u)| *u).collect();
        let units = restock(self.total, &held);
        r.stock = units.stock();
        r.given_back = units.given_back;
    }

    fn master_user(&self, order: Order) -> User {
        self.buyers[&order]
    }

    /// Units the database does not hold.
    fn unsold(&self) -> BTreeSet<Unit> {
        let held: BTreeSet<Unit> = self.rows.values().map(|(_, u)| *u).collect();
        (1..=self.total).filter(|u| !held.contains(u)).collect()
    }
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        6 => (0u8..8, any::<bool>()).prop_map(|(user, acked)| Op::Reserve { user, acked }),
        4 => (any::<bool>(), any::<bool>()).prop_map(|(ack, synced)| Op::Relay { ack, synced }),
        4 => Just(Op::Consume),
        2 => Just(Op::Sync),
        1 => Just(Op::Failover),
    ];
    proptest::collection::vec(op, 0..60)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Whatever interleaving of purchases, relaying, consuming, replication and
    /// failovers: the database holds each unit once, within stock, and each buyer once;
    /// in strict mode every 202 has its row; Redis's units for sale are exactly the
    /// unsold ones once all is consumed (after a failover: once repaired).
    #[test]
    fn a_failover_never_oversells(total in 1u64..6, strict in any::<bool>(), ops in ops()) {
        let mut w = World::new(total, strict);
        for op in ops {
            w.apply(op);
        }
        w.drain();
        let units: BTreeSet<Unit> = w.rows.values().map(|(_, u)| *u).collect();
        let users: BTreeSet<User> = w.rows.values().map(|(u, _)| *u).collect();
        prop_assert_eq!(units.len(), w.rows.len());
        prop_assert_eq!(users.len(), w.rows.len());
        prop_assert!(units.iter().all(|u| (1..=total).contains(u)));
        if strict {
            // The buyer of every 202 holds a row (that order, or an earlier one of theirs
            // answered 503 that reached the database first), and the order lookup says so.
            for order in &w.accepted {
                let user = w.master_user(*order);
                let row = w.rows.iter().find(|(_, (u, _))| *u == user).map(|(o, _)| *o);
                prop_assert!(row.is_some(), "202 for {} lost", order);
                // (Queued when a failover lost the confirmation: repaired below.)
                let shown = w.master.status.get(&user).copied();
                prop_assert!(
                    matches!(shown, Some((Status::Confirmed | Status::Queued, o)) if Some(o) == row),
                    "buyer of {} is shown {:?}, holds {:?}", order, shown, row
                );
            }
        }
        // The counter and the units given back never name a unit twice.
        let fresh = w.master.stock - w.master.given_back.len() as u64;
        let back: BTreeSet<Unit> = w.master.given_back.iter().copied().collect();
        prop_assert_eq!(back.len(), w.master.given_back.len());
        prop_assert!(back.iter().all(|u| *u > fresh && *u <= total));
        if w.failovers == 0 {
            prop_assert_eq!(w.master.for_sale(), w.unsold());
            prop_assert!(w.failed.values().all(|r| *r != Refusal::UnitTaken));
        }
        w.repair();
        prop_assert_eq!(w.master.for_sale(), w.unsold());
        for (order, (user, _)) in &w.rows {
            prop_assert_eq!(w.master.orders.get(user), Some(order));
            prop_assert_eq!(w.master.status.get(user), Some(&(Status::Confirmed, *order)));
        }
    }
}

/// The case the fence is for, step by step: the replica misses a relayed reservation, the
/// promoted replica sells its unit again, and the database refuses that second sale
/// without giving the unit back.
#[test]
fn a_unit_sold_twice_is_refused_and_stays_sold() {
    let mut w = World::new(2, false);
    w.apply(Op::Reserve {
        user: 1,
        acked: false,
    });
    w.apply(Op::Relay {
        ack: true,
        synced: false,
    });
    w.apply(Op::Failover);
    w.apply(Op::Reserve {
        user: 2,
        acked: false,
    });
    w.drain();
    assert_eq!(w.rows.len(), 1);
    assert_eq!(w.failed.get(&2), Some(&Refusal::UnitTaken));
    // Unit 2 is sold (order 1), unit 1 left: Redis agrees without a repair.
    assert_eq!(w.master.for_sale(), w.unsold());
    assert_eq!(w.master.for_sale(), [1].into());
    // Buyer 1's order, lost by the failover, is held for them again.
    assert_eq!(w.master.orders.get(&1), Some(&1));
}
