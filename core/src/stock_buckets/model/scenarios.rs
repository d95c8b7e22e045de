//! Two purchases of the model step by step: a spill to another bucket, and a spill call
//! that runs after its claim was resolved.

use super::{Answer, Op, User, World, CLAIM_TTL};
use crate::stock_buckets::{home, Mark};

/// Buyers at home in bucket 0 of `n`.
fn at_home_in_0(n: u16, count: usize) -> Vec<User> {
    (0..=u8::MAX)
        .filter(|u| home(&u.to_string(), n) == 0)
        .take(count)
        .collect()
}

#[test]
fn a_purchase_spills_to_another_bucket_once_home_is_empty() {
    // Two buckets of one unit each; two buyers at home in bucket 0.
    let mut w = World::new(2, 2);
    let buyers = at_home_in_0(2, 3);
    w.apply(Op::Buy(buyers[0]));
    w.apply(Op::Step(0));
    w.apply(Op::Buy(buyers[1]));
    w.apply(Op::Step(0));
    assert!(matches!(w.marks.get(&buyers[1]), Some(Mark::Claim { .. })));
    w.apply(Op::Step(0));
    w.apply(Op::Step(0));
    assert!(w.tasks.is_empty());
    assert_eq!(w.for_sale(), 0);
    assert!(matches!(w.answers[1], Answer::Reserved(_)));
    assert!(matches!(w.marks.get(&buyers[1]), Some(Mark::Order(_))));
    w.apply(Op::Buy(buyers[2]));
    while !w.tasks.is_empty() {
        w.apply(Op::Step(0));
    }
    assert!(
        matches!(w.answers[2], Answer::SoldOut(_)),
        "every bucket empty"
    );
    assert_eq!(
        w.marks.get(&buyers[2]),
        None,
        "a sold-out attempt leaves no mark"
    );
}

#[test]
fn a_late_spill_call_after_its_claim_was_resolved_takes_nothing() {
    // Bucket 0 empty at once, bucket 1 of one unit: the spill call to bucket 1 is lost.
    let mut w = World::new(3, 2);
    let buyers = at_home_in_0(2, 3);
    for &b in &buyers[..2] {
        w.apply(Op::Buy(b));
        w.apply(Op::Step(0));
    }
    w.apply(Op::Buy(buyers[2]));
    w.apply(Op::Step(0));
    w.apply(Op::Lose(0));
    assert_eq!(w.answers.last(), Some(&Answer::Busy));
    // Past the deadline, the buyer's next attempt resolves the claim: nothing taken.
    w.now += CLAIM_TTL;
    w.apply(Op::Buy(buyers[2]));
    while !w.tasks.is_empty() {
        w.apply(Op::Step(0));
    }
    assert_eq!(w.marks.get(&buyers[2]), None);
    // The lost call runs now, with stock there: the bucket's decision refuses it.
    w.apply(Op::Stray(0));
    assert_eq!(w.buckets[1].stock, 1);
    assert!(w.buckets[1].outbox.is_empty());
}
