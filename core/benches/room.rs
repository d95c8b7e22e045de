//! Native cost of the room's draw and of its check at the purchase
//! (`cargo bench -p flashgate-core --bench room`).
//!
//! The draw of 100,000 entrants, step by step as the room and the verifier run it:
//! `draw_chain_100k` registers them into one shard's hash chain (the names are hashed
//! beforehand, as each join does before it registers), `draw_seal_100k` seals it,
//! `draw_positions_100k` places every entrant (`Drawn::of`, then `position` of each
//! index), and `draw_verify_100k` is `flashgate room verify` over the 100,000 entries.
//!
//! At the purchase with the room on: `room_admission` is `admission::room` (the
//! receipt's signature and binding, then the schedule), `room_position_100k` one
//! entrant's position in a draw of 100,000, and `room_admission_and_position` both, the
//! target (under 10 µs). Positions are taken over indices spread across the draw, since
//! cycle-walking makes some indices cost more than others.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use flashgate_core::admission::{self, Screened};
use flashgate_core::ids::{EventId, UserId};
use flashgate_core::keyring::KeyRing;
use flashgate_core::room::chain::{Entry, ShardChain};
use flashgate_core::room::draw::{entrant, Drawn};
use flashgate_core::room::receipt::{self, Receipt};
use flashgate_core::room::schedule::Schedule;
use flashgate_core::room::seal::{verify_record, SealRecord};
use flashgate_core::ticket;
use std::hint::black_box;

const ENTRANTS: u64 = 100_000;
const SEED: [u8; 32] = [0x5e; 32];
const START: i64 = 1_800_000_000_000;
const UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

fn event() -> EventId {
    EventId::parse("phone-2026").expect("valid")
}

/// The published names of the entrants, in arrival order.
fn names() -> Vec<UserId> {
    (0..ENTRANTS)
        .map(|i| {
            let user = UserId::parse(&format!("bench_user_{i:06}")).expect("valid");
            entrant(&event(), &user)
        })
        .collect()
}

fn register_all(names: &[UserId], fingerprint: &str) -> (ShardChain, Vec<Entry>) {
    let mut chain = ShardChain::new(&event(), 0);
    let entries = (START..)
        .zip(names)
        .map(|(at, name)| chain.register(name.clone(), fingerprint.to_owned(), at))
        .collect();
    (chain, entries)
}

/// An index of the draw for the `k`-th call: a stride coprime with 100,000 visits the
/// whole range.
fn index(k: u64) -> u64 {
    (k * 7_919) % ENTRANTS
}

fn draw(c: &mut Criterion) {
    let names = names();
    let fingerprint = ticket::fingerprint(UA);
    c.bench_function("draw_chain_100k", |b| {
        b.iter(|| register_all(black_box(&names), &fingerprint))
    });
    let (chain, entries) = register_all(&names, &fingerprint);
    let chains = [chain];
    c.bench_function("draw_seal_100k", |b| {
        b.iter(|| SealRecord::seal(&event(), black_box(&chains), &SEED, None).expect("sealed"))
    });
    let record = SealRecord::seal(&event(), &chains, &SEED, None).expect("sealed");
    c.bench_function("draw_positions_100k", |b| {
        b.iter(|| {
            let drawn = Drawn::of(black_box(&record)).expect("a valid seed");
            (0..ENTRANTS)
                .map(|i| drawn.position(i).expect("i < entrants"))
                .max()
        })
    });
    let by_shard = [entries];
    c.bench_function("draw_verify_100k", |b| {
        b.iter(|| verify_record(black_box(&record), &by_shard).expect("honest"))
    });
}

fn purchase(c: &mut Criterion) {
    let (chain, _) = register_all(&names(), &ticket::fingerprint(UA));
    let record = SealRecord::seal(&event(), &[chain], &SEED, None).expect("sealed");
    let drawn = Drawn::of(&record).expect("a valid seed");
    let user = UserId::parse("bench_user_000042").expect("valid");
    let keys = receipt::keys(&KeyRing::single(b"0123456789abcdef0123456789abcdef"));
    let now = START + 60_000;
    let token = receipt::issue(
        keys.current(),
        &Receipt {
            event: event(),
            user: user.clone(),
            fingerprint: ticket::fingerprint(UA),
            position_or_arrival: drawn.position(42).expect("42 < entrants"),
            issued_at: START,
        },
    );
    let s = Screened {
        user,
        event: event(),
        body: serde_json::json!({}),
        verdict: Default::default(),
    };
    // A minute after the opening at 2,000 a second: every position is admitted.
    let schedule = Schedule {
        opened_at: START,
        admit_per_second: 2_000,
        admitted_through: ENTRANTS,
        as_of: now,
        expired_through: 0,
    };
    let admit = |token: &str| {
        admission::room(&s, Some(token), Some(UA), &schedule, &keys, now).expect("admitted")
    };
    c.bench_function("room_admission", |b| b.iter(|| admit(black_box(&token))));
    let mut k = 0;
    c.bench_function("room_position_100k", |b| {
        b.iter(|| {
            k += 1;
            drawn.position(black_box(index(k)))
        })
    });
    c.bench_function("room_admission_and_position", |b| {
        b.iter(|| {
            k += 1;
            (
                admit(black_box(&token)),
                drawn.position(black_box(index(k))),
            )
        })
    });
}

criterion_group! {
    name = draws;
    // One draw of 100,000 takes up to a second: ten samples are enough.
    config = Criterion::default().sample_size(10);
    targets = draw
}
criterion_group!(purchases, purchase);
criterion_main!(draws, purchases);
