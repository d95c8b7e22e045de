//! Tests of the parent module.

use super::*;
use crate::bot::AllowList;
use proptest::prelude::*;

const AUTH: &[u8] = b"auth-secret-for-tests";
const KEY: &[u8] = b"ticket:edge-secret";
const START: Millis = 1_800_000_000_000;
const END: Millis = START + 3_600_000;
fn ticket_keys() -> KeyRing {
    KeyRing::single(KEY)
}

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0 Safari/537.36";

fn token(user: &str) -> String {
    format!(
        "Bearer {}",
        jwt::issue(
            &UserId::parse(user).expect("valid"),
            START / 1000 + 86_400,
            AUTH
        )
    )
}

fn client() -> Client<'static> {
    Client {
        ip: Some("203.0.113.5".parse().expect("ip")),
        user_agent: Some(UA),
        accept: Some("*/*"),
        accept_language: Some("zh-CN"),
        ..Client::default()
    }
}

fn rules() -> Rules {
    Rules {
        allow: AllowList::parse("127.0.0.1").expect("valid"),
        ..Rules::default()
    }
}

fn incoming<'a>(auth: Option<&'a str>, body: &'a [u8]) -> Incoming<'a> {
    Incoming {
        event_id: "phone",
        authorization: auth,
        content_type: Some("application/json"),
        body,
        client: client(),
    }
}

fn screened(user: &str) -> Screened {
    let auth = token(user);
    screen(
        &incoming(Some(&auth), b"{}"),
        &KeyRing::single(AUTH),
        &rules(),
        &mut Tracker::default(),
        START,
    )
    .expect("admitted")
}

fn ticket_for(user: &str, issued_at: Millis) -> String {
    let s = screened(user);
    issue_ticket(
        &s,
        WINDOW,
        Human::NotConfigured,
        Some(UA),
        60_000,
        KEY,
        issued_at,
    )
    .expect("issued")
    .ticket
}

const WINDOW: Window = Window {
    starts_at: START,
    ends_at: END,
};

fn facts(ticket: Option<&str>) -> PurchaseFacts<'_> {
    PurchaseFacts {
        window: Some(WINDOW),
        paused: false,
        sold_out: false,
        holds_order: false,
        ticket,
        user_agent: Some(UA),
    }
}

/// The whole decision after the screen, with an allowing limiter and a full bucket.
fn buy(facts: PurchaseFacts<'_>, now: Millis) -> Result<Forward, Outcome> {
    let mut bucket = TokenBucket::new(100, 100, now);
    let a = purchase(&screened("alice"), &facts, &ticket_keys(), now)?;
    limit(a, Limiter::Allowed, &mut bucket, now)
}

fn reason(o: Result<impl std::fmt::Debug, Outcome>) -> String {
    match o {
        Err(Outcome::Forbidden { reason }) => reason,
        other => panic!("not a 403: {other:?}"),
    }
}

#[test]
fn screen_refuses_in_contract_order() {
    let mut t = Tracker::default();
    let r = rules();
    let go = |req: Incoming<'_>, t: &mut Tracker| {
        screen(&req, &KeyRing::single(AUTH), &r, t, START).map(|_| ())
    };
    // 401 comes first, whatever else is wrong.
    let mut curl = incoming(None, b"[");
    curl.client.user_agent = Some("curl/8");
    assert_eq!(go(curl, &mut t), Err(Outcome::Unauthenticated));
    assert_eq!(
        go(incoming(Some("Bearer x.y.z"), b"{}"), &mut t),
        Err(Outcome::Unauthenticated)
    );
    let other_key = format!(
        "Bearer {}",
        jwt::issue(
            &UserId::parse("a").expect("valid"),
            START / 1000 + 60,
            b"other"
        )
    );
    assert_eq!(
        go(incoming(Some(&other_key), b"{}"), &mut t),
        Err(Outcome::Unauthenticated)
    );
    let expired = format!(
        "Bearer {}",
        jwt::issue(&UserId::parse("a").expect("valid"), START / 1000, AUTH)
    );
    assert_eq!(
        go(incoming(Some(&expired), b"{}"), &mut t),
        Err(Outcome::Unauthenticated)
    );
    let auth = token("alice");
    // Then the body, then the event id, then the bot verdict.
    let mut text = incoming(Some(&auth), b"{}");
    text.content_type = Some("text/plain");
    assert_eq!(go(text, &mut t), Err(Outcome::UnsupportedMediaType));
    assert!(matches!(
        go(incoming(Some(&auth), b"{"), &mut t),
        Err(Outcome::BadRequest { .. })
    ));
    let mut bad_id = curl;
    bad_id.authorization = Some(&auth);
    bad_id.body = b"{}";
    bad_id.event_id = "Phone!";
    assert_eq!(go(bad_id, &mut t), Err(Outcome::EventNotFound));
    bad_id.event_id = "phone";
    assert_eq!(reason(go(bad_id, &mut t)), "bot_automation_agent");
    assert!(go(incoming(Some(&auth), b""), &mut t).is_ok());
    assert_eq!(t.tally.blocked_total(), 1);
    assert_eq!(t.tally.allowed, 1);
}

#[test]
fn loopback_load_tests_pass_the_bot_rules() {
    let auth = token("loadtest_1");
    let mut req = incoming(Some(&auth), b"{}");
    req.client = Client {
        ip: Some("127.0.0.1".parse().expect("ip")),
        user_agent: Some("k6/1.1.0"),
        ..Client::default()
    };
    let s = screen(
        &req,
        &KeyRing::single(AUTH),
        &rules(),
        &mut Tracker::default(),
        START,
    )
    .expect("allow-listed");
    assert!(s.verdict.allow_listed);
}

#[test]
fn time_gating_at_the_boundaries() {
    let t = ticket_for("alice", START - 5000);
    assert_eq!(
        buy(facts(Some(&t)), START - 1),
        Err(Outcome::NotStarted {
            starts_at: "2027-01-15T08:00:00Z".into()
        })
    );
    assert!(buy(facts(Some(&t)), START).is_ok());
    let late = ticket_for("alice", END - 10);
    assert!(buy(facts(Some(&late)), END - 1).is_ok());
    assert_eq!(buy(facts(Some(&late)), END), Err(Outcome::Ended));
    // Gating needs no ticket: the origin is not asked either way.
    assert!(matches!(
        buy(facts(None), START - 1),
        Err(Outcome::NotStarted { .. })
    ));
    assert_eq!(buy(facts(None), END + 1), Err(Outcome::Ended));
    let unknown = PurchaseFacts {
        window: None,
        ..facts(None)
    };
    assert_eq!(buy(unknown, START), Err(Outcome::EventNotFound));
}

#[test]
fn sold_out_mark_answers_after_the_ticket_except_to_buyers() {
    let t = ticket_for("alice", START);
    let sold = PurchaseFacts {
        sold_out: true,
        ..facts(Some(&t))
    };
    assert_eq!(buy(sold, START), Err(Outcome::SoldOut));
    // Without a valid ticket the answer is 403, sold out or not.
    let no_ticket = PurchaseFacts {
        sold_out: true,
        ..facts(None)
    };
    assert_eq!(reason(buy(no_ticket, START)), "ticket_missing");
    // A buyer asking again goes on to the origin, which answers already_purchased.
    let buyer = PurchaseFacts {
        sold_out: true,
        holds_order: true,
        ..facts(Some(&t))
    };
    assert!(buy(buyer, START).is_ok());
}

#[test]
fn tickets_missing_forged_expired_or_someone_elses() {
    assert_eq!(reason(buy(facts(None), START)), "ticket_missing");
    assert_eq!(reason(buy(facts(Some("x.y")), START)), "ticket_invalid");
    let bobs = ticket_for("bob", START);
    assert_eq!(reason(buy(facts(Some(&bobs)), START)), "ticket_wrong_user");
    let t = ticket_for("alice", START);
    assert_eq!(
        reason(buy(facts(Some(&t)), START + 60_000)),
        "ticket_expired"
    );
    let other_browser = PurchaseFacts {
        user_agent: Some("Mozilla/5.0 (Macintosh) Safari/605"),
        ..facts(Some(&t))
    };
    assert_eq!(reason(buy(other_browser, START)), "ticket_wrong_client");
    let no_agent = PurchaseFacts {
        user_agent: None,
        ..facts(Some(&t))
    };
    assert_eq!(reason(buy(no_agent, START)), "ticket_wrong_client");
}

#[test]
fn limiters_come_last_and_spend_nothing_on_refusals() {
    let t = ticket_for("alice", START);
    let s = screened("alice");
    let mut bucket = TokenBucket::new(1, 1, START);
    let admissible = || purchase(&s, &facts(Some(&t)), &ticket_keys(), START).expect("admissible");
    assert_eq!(
        limit(admissible(), Limiter::Refused, &mut bucket, START),
        Err(Outcome::RateLimited {
            retry_after_secs: LIMITER_RETRY_SECS
        })
    );
    // The binding's refusal left the bucket's one token for the next request.
    assert_eq!(
        limit(admissible(), Limiter::Skipped, &mut bucket, START),
        Ok(Forward {
            path: "/api/events/phone/purchase".into()
        })
    );
    assert_eq!(
        limit(admissible(), Limiter::Allowed, &mut bucket, START + 1),
        Err(Outcome::RateLimited {
            retry_after_secs: 1
        })
    );
    assert!(limit(admissible(), Limiter::Allowed, &mut bucket, START + 1000).is_ok());
}

#[test]
fn room_receipts_missing_forged_someone_elses_or_not_yet_admitted() {
    use crate::room::receipt::{issue, receipt_key, Receipt};
    let key = KeyRing::single(&receipt_key(b"edge-secret"));
    let alice = screened("alice");
    let receipt_at = |user: &str, ua: &str, position: u64, issued_at| {
        issue(
            key.current(),
            &Receipt {
                event: alice.event.clone(),
                user: UserId::parse(user).expect("valid"),
                fingerprint: ticket::fingerprint(ua),
                position_or_arrival: position,
                issued_at,
            },
        )
    };
    let receipt = |user: &str, ua: &str, position: u64| receipt_at(user, ua, position, START);
    // 100 a second from the start, 5 admitted by 10 ms in.
    let schedule = Schedule {
        opened_at: START,
        admit_per_second: 100,
        admitted_through: 5,
        as_of: START + 10,
        expired_through: 0,
    };
    let gate = |token: Option<&str>, now| room(&alice, token, Some(UA), &schedule, &key, now);
    assert_eq!(gate(Some(&receipt("alice", UA, 5)), START + 10), Ok(5));
    assert_eq!(reason(gate(None, START)), "receipt_missing");
    assert_eq!(
        reason(gate(Some("forged.receipt"), START)),
        "receipt_invalid"
    );
    assert_eq!(
        reason(gate(Some(&receipt("bob", UA, 1)), START)),
        "receipt_wrong_user"
    );
    assert_eq!(
        reason(gate(Some(&receipt("alice", "curl/8", 1)), START)),
        "receipt_wrong_client"
    );
    // A ticket is not a receipt.
    let ticket = ticket_for("alice", START);
    assert_eq!(reason(gate(Some(&ticket), START)), "receipt_invalid");
    // Position 305's turn comes 3.04 s after the opening at 100 a second: 3.03 s
    // from now, rounded up.
    assert_eq!(
        gate(Some(&receipt("alice", UA, 305)), START + 10),
        Err(Outcome::RateLimited {
            retry_after_secs: 4
        })
    );
    assert_eq!(
        gate(Some(&receipt("alice", UA, 6)), START + 10),
        Err(Outcome::RateLimited {
            retry_after_secs: 1
        })
    );
    // Position 3's admission expired: refused, whatever the schedule admitted since.
    let later = Schedule {
        expired_through: 3,
        ..schedule
    };
    let expired = room(
        &alice,
        Some(&receipt("alice", UA, 3)),
        Some(UA),
        &later,
        &key,
        START + 10,
    );
    assert_eq!(reason(expired), "receipt_expired");
    assert_eq!(
        room(
            &alice,
            Some(&receipt("alice", UA, 4)),
            Some(UA),
            &later,
            &key,
            START + 10
        ),
        Ok(4)
    );
    // Issued before the opening: a registration for the draw (arrival 1), not position
    // 1; it waits for the opening, however far the schedule has admitted.
    let registration = receipt_at("alice", UA, 1, START - 1);
    assert_eq!(
        gate(Some(&registration), START - 2_500),
        Err(Outcome::RateLimited {
            retry_after_secs: 3
        })
    );
    assert_eq!(
        gate(Some(&registration), START + 10),
        Err(Outcome::RateLimited {
            retry_after_secs: 1
        })
    );
}

#[test]
fn tickets_are_issued_until_the_end_for_the_window_from_the_start() {
    let f = |window, limiter| TicketFacts { window, limiter };
    assert_eq!(
        ticket_gate(&f(None, Limiter::Allowed), START),
        Err(Outcome::EventNotFound)
    );
    assert_eq!(
        ticket_gate(&f(Some(WINDOW), Limiter::Allowed), END),
        Err(Outcome::Ended)
    );
    assert!(matches!(
        ticket_gate(&f(Some(WINDOW), Limiter::Refused), START),
        Err(Outcome::RateLimited { .. })
    ));
    assert_eq!(
        ticket_gate(&f(Some(WINDOW), Limiter::Skipped), START - 60_000),
        Ok(WINDOW)
    );
    let a = issue_ticket(
        &screened("alice"),
        WINDOW,
        Human::NotConfigured,
        Some(UA),
        120_000,
        KEY,
        START - 60_000,
    )
    .expect("issued");
    assert_eq!(a.valid_from, wire::fmt_time(START));
    assert_eq!(a.expires_at, wire::fmt_time(START + 120_000));
}

#[test]
fn turnstile_outcomes() {
    let s = screened("alice");
    let issue = |h| issue_ticket(&s, WINDOW, h, Some(UA), 1000, KEY, START);
    assert!(issue(Human::NotConfigured).is_ok());
    assert!(issue(Human::Passed).is_ok());
    assert_eq!(reason(issue(Human::Missing)), "turnstile_missing");
    assert_eq!(reason(issue(Human::Failed)), "turnstile_failed");
    assert!(matches!(
        issue(Human::Unavailable),
        Err(Outcome::Busy { .. })
    ));
}

proptest! {
    #[test]
    fn forwards_only_live_unsold_ticketed_and_under_every_limit(
        now_off in -5_000i64..3_700_000, issued_off in -5_000i64..3_700_000,
        paused: bool, sold_out: bool, holds_order: bool, own_ticket: bool, refused: bool,
        tokens in 0u32..2
    ) {
        let now = START + now_off;
        let t = ticket_for(if own_ticket { "alice" } else { "bob" }, START + issued_off);
        let f = PurchaseFacts {
            window: Some(WINDOW),
            paused,
            sold_out,
            holds_order,
            ticket: Some(&t),
            user_agent: Some(UA),
        };
        let mut bucket = TokenBucket::new(1, 1, now);
        if tokens == 0 {
            prop_assert!(bucket.try_take(now).is_ok());
        }
        let limiter = if refused { Limiter::Refused } else { Limiter::Allowed };
        let (valid_from, expires_at) = ticket::window(START + issued_off, START, 60_000);
        let live = (START..END).contains(&now);
        let expected = live
            && !paused
            && (!sold_out || holds_order)
            && own_ticket
            && (valid_from..expires_at).contains(&now)
            && !refused
            && tokens > 0;
        let forwarded = purchase(&screened("alice"), &f, &ticket_keys(), now)
            .and_then(|a| limit(a, limiter, &mut bucket, now));
        prop_assert_eq!(forwarded.is_ok(), expected);
        if live && paused {
            prop_assert_eq!(purchase(&screened("alice"), &f, &ticket_keys(), now), Err(Outcome::Paused));
        }
    }
}
