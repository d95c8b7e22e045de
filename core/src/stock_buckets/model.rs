//! A model of purchases over stock buckets: each step of a purchase (home, each spill,
//! settle) is its own atomic call, so purchases interleave step by step; a purchase may
//! crash between steps, claims expire, and the consumer writes orders under the orders
//! table's unique keys (user, unit) and tells the home bucket. Proptest checks that no
//! unit is ever out twice nor the stock exceeded, that the database holds each user and
//! unit once, and that once everything settled every unit without a row is for sale
//! again and each buyer's mark names their row.

use super::{home, spill, units};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::RangeInclusive;

type User = u8;
type Order = u32;
type Unit = u64;

/// How long a claim answers for its order, in ticks.
const CLAIM_TTL: u32 = 3;

#[derive(Debug, Clone)]
struct Bucket {
    range: RangeInclusive<Unit>,
    stock: u64,
    given_back: Vec<Unit>,
}

impl Bucket {
    fn take(&mut self) -> Option<Unit> {
        if self.stock == 0 {
            return None;
        }
        let fresh = self.stock - self.given_back.len() as u64;
        let unit = self
            .given_back
            .pop()
            .unwrap_or(self.range.start() - 1 + fresh);
        self.stock -= 1;
        Some(unit)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    Order(Order),
    Claim(Order, u32),
}

#[derive(Debug, Clone, Copy)]
struct Taken {
    order: Order,
    user: User,
    unit: Unit,
}

/// A purchase between its steps: the buckets it has yet to try, or, once one gave it a
/// unit, its claim to settle.
#[derive(Debug, Clone)]
struct Spilling {
    user: User,
    order: Order,
    left: VecDeque<u16>,
    taken: bool,
}

#[derive(Debug, Clone, Copy)]
enum Op {
    /// A purchase's first step, at its home bucket.
    Buy(User),
    /// The next step of the i-th purchase in flight (modulo their number).
    Step(usize),
    /// The i-th purchase in flight stops between its steps (the process died).
    Crash(usize),
    /// Time passes (claims expire).
    Tick,
    /// The consumer writes the oldest taken order.
    Consume,
}

struct World {
    n: u16,
    total: u64,
    buckets: Vec<Bucket>,
    marks: BTreeMap<User, Mark>,
    spilling: Vec<Spilling>,
    queue: VecDeque<Taken>,
    /// Units out of the buckets (taken, not given back).
    out: BTreeSet<Unit>,
    rows: BTreeMap<Order, (User, Unit)>,
    refused: BTreeSet<Order>,
    now: u32,
    next_order: Order,
}

impl World {
    fn new(total: u64, n: u16) -> Self {
        let buckets = units(total, n)
            .into_iter()
            .map(|range| Bucket {
                stock: range.clone().count() as u64,
                range,
                given_back: Vec::new(),
            })
            .collect();
        World {
            n,
            total,
            buckets,
            marks: BTreeMap::new(),
            spilling: Vec::new(),
            queue: VecDeque::new(),
            out: BTreeSet::new(),
            rows: BTreeMap::new(),
            refused: BTreeSet::new(),
            now: 0,
            next_order: 1,
        }
    }

    /// A mark that still answers for its order.
    fn live_mark(&self, user: User) -> Option<Mark> {
        self.marks
            .get(&user)
            .copied()
            .filter(|m| !matches!(m, Mark::Claim(_, until) if *until <= self.now))
    }

    fn take_from(&mut self, bucket: u16, user: User, order: Order) -> bool {
        let Some(unit) = self.buckets[usize::from(bucket)].take() else {
            return false;
        };
        assert!(self.out.insert(unit), "unit {unit} out twice");
        assert!(self.buckets[usize::from(bucket)].range.contains(&unit));
        self.queue.push_back(Taken { order, user, unit });
        true
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Buy(user) => {
                if self.live_mark(user).is_some() {
                    return;
                }
                let order = self.next_order;
                self.next_order += 1;
                let h = home(&user.to_string(), self.n);
                if self.take_from(h, user, order) {
                    self.marks.insert(user, Mark::Order(order));
                } else {
                    self.marks
                        .insert(user, Mark::Claim(order, self.now + CLAIM_TTL));
                    self.spilling.push(Spilling {
                        user,
                        order,
                        left: spill(h, self.n).collect(),
                        taken: false,
                    });
                }
            }
            Op::Step(i) if !self.spilling.is_empty() => {
                let i = i % self.spilling.len();
                let s = &mut self.spilling[i];
                let (user, order) = (s.user, s.order);
                if s.taken {
                    // Settle: the claim becomes the order.
                    self.spilling.swap_remove(i);
                    if matches!(self.marks.get(&user), Some(Mark::Claim(o, _)) if *o == order) {
                        self.marks.insert(user, Mark::Order(order));
                    }
                    return;
                }
                match s.left.pop_front() {
                    Some(b) => {
                        if self.take_from(b, user, order) {
                            self.spilling[i].taken = true;
                        }
                    }
                    None => {
                        // Every bucket empty: sold out, the claim dropped.
                        self.spilling.swap_remove(i);
                        if matches!(self.marks.get(&user), Some(Mark::Claim(o, _)) if *o == order) {
                            self.marks.remove(&user);
                        }
                    }
                }
            }
            Op::Step(_) => {}
            Op::Crash(i) if !self.spilling.is_empty() => {
                let i = i % self.spilling.len();
                self.spilling.swap_remove(i);
            }
            Op::Crash(_) => {}
            Op::Tick => self.now += 1,
            Op::Consume => {
                if let Some(t) = self.queue.pop_front() {
                    self.consume(t);
                }
            }
        }
    }

    /// The orders table, then the home bucket told: a row's buyer holds it; a refused
    /// order (its buyer holds another) gives its unit back to its bucket.
    fn consume(&mut self, t: Taken) {
        let holder = self
            .rows
            .iter()
            .find(|(_, (u, _))| *u == t.user)
            .map(|(o, _)| *o);
        match holder {
            None => {
                self.rows.insert(t.order, (t.user, t.unit));
                if !matches!(self.marks.get(&t.user), Some(Mark::Order(_))) {
                    self.marks.insert(t.user, Mark::Order(t.order));
                }
            }
            Some(row) => {
                assert!(self.refused.insert(t.order));
                let bucket = self
                    .buckets
                    .iter_mut()
                    .find(|b| b.range.contains(&t.unit))
                    .expect("every unit is a bucket's");
                bucket.stock += 1;
                bucket.given_back.push(t.unit);
                assert!(self.out.remove(&t.unit));
                self.marks.insert(t.user, Mark::Order(row));
            }
        }
    }

    fn for_sale(&self) -> u64 {
        self.buckets.iter().map(|b| b.stock).sum()
    }
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        5 => (0u8..10).prop_map(Op::Buy),
        5 => (0usize..8).prop_map(Op::Step),
        1 => (0usize..8).prop_map(Op::Crash),
        2 => Just(Op::Tick),
        3 => Just(Op::Consume),
    ];
    proptest::collection::vec(op, 0..80)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Whatever the interleaving of purchases' steps, crashes and expiries: no unit is out
    /// twice and the buckets never hand out more than the stock; the database holds each
    /// unit and each buyer once; once all is settled, every unit without a row is for
    /// sale (a crash undersold only meanwhile) and every buyer's mark names their row.
    #[test]
    fn buckets_never_oversell_and_each_buyer_orders_once(
        total in 0u64..8,
        n in 1u16..4,
        ops in ops(),
    ) {
        let mut w = World::new(total, n);
        for op in ops {
            w.apply(op);
            prop_assert_eq!(w.for_sale() + w.out.len() as u64, total);
        }
        // Settle: the purchases in flight finish, claims expire, the consumer catches up.
        while !w.spilling.is_empty() {
            w.apply(Op::Step(0));
        }
        w.now += CLAIM_TTL;
        while !w.queue.is_empty() {
            w.apply(Op::Consume);
        }
        let units: BTreeSet<Unit> = w.rows.values().map(|(_, u)| *u).collect();
        let users: BTreeSet<User> = w.rows.values().map(|(u, _)| *u).collect();
        prop_assert_eq!(units.len(), w.rows.len());
        prop_assert_eq!(users.len(), w.rows.len());
        prop_assert!(units.iter().all(|u| (1..=w.total).contains(u)));
        prop_assert_eq!(w.for_sale(), total - w.rows.len() as u64);
        for (order, (user, _)) in &w.rows {
            prop_assert_eq!(w.live_mark(*user), Some(Mark::Order(*order)));
        }
    }
}

#[test]
fn a_purchase_spills_to_another_bucket_once_home_is_empty() {
    // Two buckets of one unit each; two buyers at home in bucket 0 when there is one.
    let mut w = World::new(2, 2);
    let at_home: Vec<User> = (0..=u8::MAX)
        .filter(|u| home(&u.to_string(), 2) == 0)
        .take(2)
        .collect();
    w.apply(Op::Buy(at_home[0]));
    w.apply(Op::Buy(at_home[1]));
    assert_eq!(w.spilling.len(), 1, "the second buyer's home is empty");
    w.apply(Op::Step(0));
    w.apply(Op::Step(0));
    assert!(w.spilling.is_empty());
    assert_eq!(w.for_sale(), 0);
    assert!(matches!(w.marks.get(&at_home[1]), Some(Mark::Order(_))));
    let third = (0..=u8::MAX)
        .find(|u| !at_home.contains(u))
        .expect("a third buyer");
    w.apply(Op::Buy(third));
    while !w.spilling.is_empty() {
        w.apply(Op::Step(0));
    }
    assert_eq!(w.marks.get(&third), None, "sold out: every bucket empty");
}
