//! Native cost of the edge's admission decisions (`cargo bench -p flashgate-core`).
//!
//! `full_purchase_admitted` is the whole decision of an admitted purchase: JWT
//! verification, body check, bot scoring with the burst counters, gating, the ticket's
//! fingerprint and verification, the limiters and the isolate bucket. The rejection
//! benches show what the cheap refusals cost. Target (issue 7): under 5 µs for the full
//! decision.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use flashgate_core::admission::{self, Incoming, Limiter, PurchaseFacts, Window};
use flashgate_core::bot::{AllowList, Client, Human, Rules, Tracker};
use flashgate_core::bucket::TokenBucket;
use flashgate_core::ids::UserId;
use flashgate_core::keyring::KeyRing;
use flashgate_core::{jwt, ticket};
use std::hint::black_box;

const AUTH: &[u8] = b"0123456789abcdef0123456789abcdef0123456789abcdef";
const KEY: &[u8] = b"ticket:0123456789abcdef0123456789abcdef0123456789abcdef";
const START: i64 = 1_800_000_000_000;
const UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
const WINDOW: Window = Window {
    starts_at: START,
    ends_at: START + 3_600_000,
};

fn client() -> Client<'static> {
    Client {
        ip: Some("203.0.113.7".parse().expect("ip")),
        user_agent: Some(UA),
        accept: Some("*/*"),
        accept_language: Some("zh-CN,zh;q=0.9,en;q=0.8"),
        sec_fetch_site: Some("same-origin"),
        origin: Some("https://shop.example"),
        host: Some("shop.example"),
        has_query: false,
    }
}

fn bench(c: &mut Criterion) {
    let (auth_keys, ticket_keys) = (KeyRing::single(AUTH), KeyRing::single(KEY));
    let user = UserId::parse("bench_user_000042").expect("valid");
    let auth = format!("Bearer {}", jwt::issue(&user, START / 1000 + 86_400, AUTH));
    let rules = Rules {
        allow: AllowList::parse("127.0.0.0/8, ::1").expect("valid"),
        // High enough that the repeated client is never a burst in the loop.
        ip_burst: u32::MAX,
        ..Rules::default()
    };
    let req = Incoming {
        event_id: "phone-2026",
        authorization: Some(&auth),
        content_type: Some("application/json"),
        body: b"{}",
        client: client(),
    };
    let mut tracker = Tracker::default();
    let screened =
        admission::screen(&req, &auth_keys, &rules, &mut tracker, START).expect("screened");
    let t = admission::issue_ticket(
        &screened,
        WINDOW,
        Human::NotConfigured,
        Some(UA),
        120_000,
        KEY,
        START,
    )
    .expect("issued")
    .ticket;
    let facts = |ticket| PurchaseFacts {
        window: Some(WINDOW),
        paused: false,
        sold_out: false,
        holds_order: false,
        ticket,
        user_agent: Some(UA),
    };

    c.bench_function("full_purchase_admitted", |b| {
        let mut bucket = TokenBucket::new(u32::MAX, u32::MAX, START);
        b.iter(|| {
            let s = admission::screen(black_box(&req), &auth_keys, &rules, &mut tracker, START)
                .expect("screened");
            let a = admission::purchase(&s, &facts(Some(&t)), &ticket_keys, START + 1)
                .expect("admissible");
            admission::limit(a, Limiter::Allowed, &mut bucket, START + 1).expect("admitted")
        })
    });

    c.bench_function("reject_not_started", |b| {
        b.iter(|| {
            let s = admission::screen(black_box(&req), &auth_keys, &rules, &mut tracker, START - 1)
                .expect("screened");
            admission::purchase(&s, &facts(None), &ticket_keys, START - 1).expect_err("425")
        })
    });

    c.bench_function("reject_unauthenticated", |b| {
        let anon = Incoming {
            authorization: None,
            ..req
        };
        b.iter(|| {
            admission::screen(black_box(&anon), &auth_keys, &rules, &mut tracker, START)
                .expect_err("401")
        })
    });

    c.bench_function("reject_bot_automation_agent", |b| {
        let curl = Incoming {
            client: Client {
                user_agent: Some("curl/8.5.0"),
                ..client()
            },
            ..req
        };
        b.iter(|| {
            admission::screen(black_box(&curl), &auth_keys, &rules, &mut tracker, START)
                .expect_err("403")
        })
    });
}

/// The parts of the decision, to see where its time goes.
fn parts(c: &mut Criterion) {
    let (auth_keys, ticket_keys) = (KeyRing::single(AUTH), KeyRing::single(KEY));
    let user = UserId::parse("bench_user_000042").expect("valid");
    let token = jwt::issue(&user, START / 1000 + 86_400, AUTH);
    c.bench_function("part_jwt_verify", |b| {
        b.iter(|| jwt::verify(black_box(&token), &auth_keys, START).expect("valid"))
    });
    c.bench_function("part_fingerprint", |b| {
        b.iter(|| ticket::fingerprint(black_box(UA)))
    });
    let rules = Rules::default();
    let mut tracker = Tracker::default();
    let browser = client();
    c.bench_function("part_bot_assess", |b| {
        b.iter(|| tracker.assess(&rules, black_box(&browser), START))
    });
    let event = flashgate_core::ids::EventId::parse("phone-2026").expect("valid");
    let fp = ticket::fingerprint(UA);
    let t = ticket::Ticket {
        event: event.clone(),
        user: user.clone(),
        fingerprint: fp.clone(),
        valid_from: START,
        expires_at: START + 120_000,
    }
    .encode(KEY);
    c.bench_function("part_ticket_verify", |b| {
        b.iter(|| {
            ticket::Ticket::verify(Some(black_box(&t)), &ticket_keys, &event, &user, &fp, START)
                .expect("valid")
        })
    });
}

criterion_group!(benches, bench, parts);
criterion_main!(benches);
