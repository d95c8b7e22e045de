//! A model of purchases over stock buckets, run by the module's own rules: each call
//! (home, each spill or fence, settle) is one atomic step, so purchases interleave call by
//! call; a user's attempts overlap; a purchase may crash between calls; a bucket call's
//! answer may be lost while the call still runs later, or the call may run twice; claims
//! pass their deadline and are resolved; the consumer writes orders from every bucket's
//! outbox under the orders table's unique keys (user, unit), or refuses one (a blocked
//! buyer), whose unit goes back to its bucket.
//!
//! Proptest checks that no unit is out twice, that a unit is taken only for a user
//! holding no other order and an order holding no other unit, and, once all settled, the
//! invariants of docs/api.md and every buyer's mark naming their row.

use super::{
    at_bucket, at_home, bucket_of, confirm, home, release, settle, units, AtBucket, AtHome, Call,
    Decision, Mark, Next, Purchase,
};
use crate::Millis;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::RangeInclusive;

type User = u8;
type Order = u32;
type Unit = u64;

/// How long a claim waits for its purchase, in ticks.
const CLAIM_TTL: Millis = 3;

#[derive(Debug, Clone)]
struct Bucket {
    range: RangeInclusive<Unit>,
    stock: u64,
    given_back: Vec<Unit>,
    decisions: BTreeMap<Order, Decision>,
    outbox: VecDeque<Msg>,
}

impl Bucket {
    /// As `reserve.lua` picks a unit: a given-back one first, else the highest never sold.
    fn take(&mut self) -> Unit {
        let fresh = self.stock - self.given_back.len() as u64;
        let unit = self
            .given_back
            .pop()
            .unwrap_or(self.range.start() - 1 + fresh);
        self.stock -= 1;
        unit
    }
}

#[derive(Debug, Clone, Copy)]
struct Msg {
    order: Order,
    user: User,
    unit: Unit,
}

/// An attempt between its calls: before the home call, or spilling or resolving a claim.
#[derive(Debug, Clone)]
enum Task {
    Home(User),
    Steps {
        user: User,
        order: Order,
        purchase: Purchase,
    },
}

/// A bucket call whose answer its purchase never read: it runs later, or never.
#[derive(Debug, Clone, Copy)]
struct Stray {
    bucket: u16,
    order: Order,
    user: User,
    call: Call,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Reserved(Order),
    Holder(Order),
    SoldOut(Order),
    Busy,
}

#[derive(Debug, Clone, Copy)]
enum Op {
    /// A new attempt of the user, whatever theirs in flight.
    Buy(User),
    /// The next call of the i-th attempt in flight (modulo their number).
    Step(usize),
    /// The i-th attempt's next bucket call runs later or never; the attempt answers busy.
    Lose(usize),
    /// The i-th attempt's next bucket call runs, and once more later or never.
    Repeat(usize),
    /// The i-th stray call runs.
    Stray(usize),
    /// The i-th attempt stops between its calls (the process died).
    Crash(usize),
    /// Time passes (claims reach their deadline).
    Tick,
    /// The consumer writes the oldest order of a bucket's outbox.
    Consume(u16),
    /// The consumer refuses it (a blocked buyer): the unit goes back, the order fails.
    Refuse(u16),
}

#[derive(Default)]
struct World {
    n: u16,
    total: u64,
    buckets: Vec<Bucket>,
    marks: BTreeMap<User, Mark<Order>>,
    tasks: Vec<Task>,
    strays: Vec<Stray>,
    /// Units out of the buckets (taken, not given back), with their order.
    out: BTreeMap<Unit, Order>,
    /// Each user's order holding a unit.
    live: BTreeMap<User, Order>,
    /// Every order that ever took a unit.
    took: BTreeMap<Order, Unit>,
    rows: BTreeMap<Order, (User, Unit)>,
    failed: BTreeSet<Order>,
    answers: Vec<Answer>,
    now: Millis,
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
                decisions: BTreeMap::new(),
                outbox: VecDeque::new(),
            })
            .collect();
        World {
            n,
            total,
            buckets,
            next_order: 1,
            ..World::default()
        }
    }

    fn home_of(&self, user: User) -> u16 {
        home(&user.to_string(), self.n)
    }

    /// A unit of bucket `b` for the order, with the checks every take must pass.
    fn take(&mut self, b: u16, user: User, order: Order) -> Unit {
        let bucket = &mut self.buckets[usize::from(b)];
        assert!(bucket.stock > 0, "bucket {b} empty");
        let unit = bucket.take();
        assert!(bucket.range.contains(&unit), "unit {unit} not bucket {b}'s");
        bucket.outbox.push_back(Msg { order, user, unit });
        assert!(
            self.out.insert(unit, order).is_none(),
            "unit {unit} out twice"
        );
        assert!(
            self.took.insert(order, unit).is_none(),
            "order {order} took twice"
        );
        assert!(
            self.live.insert(user, order).is_none(),
            "user {user} holds two orders"
        );
        unit
    }

    fn call_bucket(&mut self, b: u16, user: User, order: Order, call: Call) -> Decision {
        let bucket = &self.buckets[usize::from(b)];
        let decision = bucket.decisions.get(&order).copied();
        let decision = match at_bucket(decision, bucket.stock, call) {
            AtBucket::Again(r) => return r,
            AtBucket::Take => Decision::Took(self.take(b, user, order)),
            AtBucket::Pass => Decision::Passed,
        };
        self.buckets[usize::from(b)]
            .decisions
            .insert(order, decision);
        decision
    }

    fn set_mark(&mut self, user: User, mark: Option<Mark<Order>>) {
        match mark {
            Some(m) => self.marks.insert(user, m),
            None => self.marks.remove(&user),
        };
    }

    fn finish(&mut self, i: usize, answer: Answer) {
        self.tasks.swap_remove(i);
        self.answers.push(answer);
    }

    /// Runs the i-th attempt's next call.
    fn step(&mut self, i: usize) {
        match self.tasks[i].clone() {
            Task::Home(user) => {
                let h = self.home_of(user);
                let stock = self.buckets[usize::from(h)].stock;
                match at_home(self.marks.get(&user), stock, self.now) {
                    AtHome::Holder(o) => self.finish(i, Answer::Holder(o)),
                    AtHome::InFlight(_) => self.finish(i, Answer::Busy),
                    AtHome::Resolve(order) => {
                        let purchase = Purchase::resolving(h, self.n);
                        self.tasks[i] = Task::Steps {
                            user,
                            order,
                            purchase,
                        };
                    }
                    AtHome::Reserve => {
                        let order = self.new_order();
                        self.take(h, user, order);
                        self.marks.insert(user, Mark::Order(order));
                        self.finish(i, Answer::Reserved(order));
                    }
                    AtHome::Claim => {
                        let order = self.new_order();
                        let until = self.now + CLAIM_TTL;
                        self.marks.insert(user, Mark::Claim { order, until });
                        let purchase = Purchase::spilling(h, self.n);
                        self.tasks[i] = Task::Steps {
                            user,
                            order,
                            purchase,
                        };
                    }
                }
            }
            Task::Steps {
                user,
                order,
                mut purchase,
            } => match purchase.next() {
                Next::Bucket(b, call) => {
                    let decision = self.call_bucket(b, user, order, call);
                    purchase.answer(b, decision);
                    self.tasks[i] = Task::Steps {
                        user,
                        order,
                        purchase,
                    };
                }
                Next::Settle(took) => {
                    let before = self.marks.get(&user).cloned();
                    self.set_mark(user, settle(before.as_ref(), &order, took.is_some()));
                    let answer = match (took, before) {
                        (Some(_), _) => Answer::Reserved(order),
                        (None, Some(Mark::Claim { order: o, .. })) if o == order => {
                            Answer::SoldOut(order)
                        }
                        (None, _) => Answer::Busy,
                    };
                    self.finish(i, answer);
                }
            },
        }
    }

    fn new_order(&mut self) -> Order {
        self.next_order += 1;
        self.next_order
    }

    /// The i-th attempt's next bucket call, if its next call is one.
    fn next_call(&self, i: usize) -> Option<Stray> {
        let Task::Steps {
            user,
            order,
            purchase,
        } = &self.tasks[i]
        else {
            return None;
        };
        let Next::Bucket(bucket, call) = purchase.next() else {
            return None;
        };
        let (order, user) = (*order, *user);
        Some(Stray {
            bucket,
            order,
            user,
            call,
        })
    }

    fn consume(&mut self, b: u16, refused: bool) {
        let Some(m) = self.buckets[usize::from(b)].outbox.pop_front() else {
            return;
        };
        if refused {
            let owner = bucket_of(m.unit, self.total, self.n).expect("a unit of the event");
            let bucket = &mut self.buckets[usize::from(owner)];
            bucket.stock += 1;
            bucket.given_back.push(m.unit);
            assert_eq!(self.out.remove(&m.unit), Some(m.order));
            assert_eq!(self.live.remove(&m.user), Some(m.order));
            assert!(self.failed.insert(m.order));
            let mark = release(self.marks.get(&m.user), &m.order);
            self.set_mark(m.user, mark);
            return;
        }
        assert!(
            self.rows
                .values()
                .all(|(u, n)| *u != m.user && *n != m.unit),
            "the orders table refuses order {}",
            m.order
        );
        self.rows.insert(m.order, (m.user, m.unit));
        let mark = confirm(self.marks.get(&m.user), &m.order);
        self.set_mark(m.user, mark);
    }

    fn apply(&mut self, op: Op) {
        let tasks = self.tasks.len();
        match op {
            Op::Buy(user) => self.tasks.push(Task::Home(user)),
            Op::Step(i) if tasks > 0 => self.step(i % tasks),
            Op::Lose(i) if tasks > 0 => {
                if let Some(stray) = self.next_call(i % tasks) {
                    self.strays.push(stray);
                    self.finish(i % tasks, Answer::Busy);
                }
            }
            Op::Repeat(i) if tasks > 0 => {
                if let Some(stray) = self.next_call(i % tasks) {
                    self.strays.push(stray);
                }
                self.step(i % tasks);
            }
            Op::Stray(i) if !self.strays.is_empty() => {
                let s = self.strays.swap_remove(i % self.strays.len());
                self.call_bucket(s.bucket, s.user, s.order, s.call);
            }
            Op::Crash(i) if tasks > 0 => {
                self.tasks.swap_remove(i % tasks);
            }
            Op::Tick => self.now += 1,
            Op::Consume(b) => self.consume(b % self.n, false),
            Op::Refuse(b) => self.consume(b % self.n, true),
            _ => {}
        }
    }

    fn for_sale(&self) -> u64 {
        self.buckets.iter().map(|b| b.stock).sum()
    }

    /// Everything in flight finishes: attempts, stray calls, every claim resolved by an
    /// attempt after its deadline, the consumer caught up.
    fn settle_all(&mut self) {
        while !self.tasks.is_empty() {
            self.step(0);
        }
        while !self.strays.is_empty() {
            self.apply(Op::Stray(0));
        }
        self.now += CLAIM_TTL;
        let claimed: Vec<User> = self
            .marks
            .iter()
            .filter(|(_, m)| matches!(m, Mark::Claim { .. }))
            .map(|(u, _)| *u)
            .collect();
        for user in claimed {
            self.tasks.push(Task::Home(user));
            while !self.tasks.is_empty() {
                self.step(0);
            }
        }
        for b in 0..self.n {
            while !self.buckets[usize::from(b)].outbox.is_empty() {
                self.consume(b, false);
            }
        }
    }
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        4 => (0u8..6).prop_map(Op::Buy),
        8 => (0usize..8).prop_map(Op::Step),
        1 => (0usize..8).prop_map(Op::Lose),
        1 => (0usize..8).prop_map(Op::Repeat),
        1 => (0usize..8).prop_map(Op::Stray),
        1 => (0usize..8).prop_map(Op::Crash),
        2 => Just(Op::Tick),
        2 => (0u16..4).prop_map(Op::Consume),
        1 => (0u16..4).prop_map(Op::Refuse),
    ];
    proptest::collection::vec(op, 0..120)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Whatever the interleaving (the checks of `World::take` run at every take): the
    /// buckets never hand out more than the stock; once all settled, the database holds
    /// each unit and each buyer once, every 202 is a row or a failed order, a sold-out
    /// attempt took nothing, every unit without a row is for sale and every buyer's mark
    /// names their row.
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
        w.settle_all();
        let units: BTreeSet<Unit> = w.rows.values().map(|(_, u)| *u).collect();
        let users: BTreeSet<User> = w.rows.values().map(|(u, _)| *u).collect();
        prop_assert_eq!(units.len(), w.rows.len());
        prop_assert_eq!(users.len(), w.rows.len());
        prop_assert!(units.iter().all(|u| (1..=w.total).contains(u)));
        prop_assert_eq!(w.for_sale(), total - w.rows.len() as u64);
        for answer in &w.answers {
            match answer {
                Answer::Reserved(o) | Answer::Holder(o) => {
                    prop_assert!(w.rows.contains_key(o) || w.failed.contains(o));
                }
                Answer::SoldOut(o) => prop_assert!(!w.took.contains_key(o)),
                Answer::Busy => {}
            }
        }
        for (order, (user, _)) in &w.rows {
            prop_assert_eq!(w.marks.get(user), Some(&Mark::Order(*order)));
        }
        prop_assert_eq!(w.marks.len(), w.rows.len(), "a mark without a row");
    }
}

mod scenarios;
