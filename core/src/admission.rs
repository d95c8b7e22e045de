//! The edge's admission decisions, in the order the edge applies them.
//!
//! The worker reads the request and looks things up (the event window, the sold-out mark,
//! the rate-limit binding, Turnstile); these functions, pure and clock-free, say what to
//! answer or that the request may go on. Cheap refusals come first, so what costs more
//! (an origin lookup, a limiter's quota, a token of the isolate bucket) is spent only on
//! requests that could still be admitted.
//!
//! - Every shopper endpoint but event info: [`screen`]: 401 identity, 413/415/400 body,
//!   400 event id, 403 bot verdict.
//! - Purchase: [`purchase`]: 404 unknown event, 425 before `starts_at`, 410 from `ends_at`,
//!   403 ticket, 409 while the edge remembers a sold-out (unless it saw this user get an
//!   order); then [`limit`]: 429 per-user limiter, 429 isolate bucket; then forward,
//!   signed, to the origin. The limiters are asked only for purchases that passed the
//!   rest, so refusals spend neither a user's quota nor a token.
//! - Ticket: [`ticket_gate`]: 404, 410, 429 per-IP limiter; then [`issue_ticket`]:
//!   403/503 from the optional Turnstile check, else a ticket.

use crate::bot::{Client, Human, Rules, Tracker, Verdict};
use crate::bucket::TokenBucket;
use crate::gate::{self, Phase};
use crate::ids::{EventId, UserId};
use crate::jwt;
use crate::ticket::{self, Ticket};
use crate::wire::{self, Outcome, TicketAnswer};
use crate::Millis;
use serde_json::Value;

/// `Retry-After` of a 429 from a Cloudflare rate-limit binding: its period (wrangler.toml).
pub const LIMITER_RETRY_SECS: u64 = 10;

/// What the edge read from a shopper request before looking anything up.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// The `{event_id}` path segment, unparsed.
    pub event_id: &'a str,
    /// The `Authorization` header.
    pub authorization: Option<&'a str>,
    /// The `Content-Type` header.
    pub content_type: Option<&'a str>,
    /// The body (the edge refuses one over 4 KiB before reading it).
    pub body: &'a [u8],
    /// What the request shows about its client.
    pub client: Client<'a>,
}

/// A request that passed [`screen`].
#[derive(Debug, Clone)]
pub struct Screened {
    /// The authenticated shopper.
    pub user: UserId,
    /// The event asked about.
    pub event: EventId,
    /// The JSON body (`{}` when absent).
    pub body: Value,
    /// The bot verdict (not blocked).
    pub verdict: Verdict,
}

/// The checks that need nothing but the request and the isolate's burst counters (the
/// same for the ticket, purchase and order endpoints).
pub fn screen(
    req: &Incoming<'_>,
    auth_secret: &[u8],
    rules: &Rules,
    tracker: &mut Tracker,
    now: Millis,
) -> Result<Screened, Outcome> {
    let token = req
        .authorization
        .and_then(jwt::bearer)
        .ok_or(Outcome::Unauthenticated)?;
    let user = jwt::verify(token, auth_secret, now)
        .map_err(|_| Outcome::Unauthenticated)?
        .sub;
    let body = wire::check_json_body(req.content_type, req.body)?;
    // No event can have an id that is not a slug: "no such event", as for a read.
    let event = EventId::parse(req.event_id).map_err(|_| Outcome::EventNotFound)?;
    let verdict = tracker.assess(rules, &req.client, now);
    if let Some(reason) = verdict.reason() {
        return Err(Outcome::Forbidden {
            reason: reason.into(),
        });
    }
    Ok(Screened {
        user,
        event,
        body,
        verdict,
    })
}

/// An event's window as the edge knows it (from its cache or the origin).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Start, unix ms (inclusive).
    pub starts_at: Millis,
    /// End, unix ms (exclusive).
    pub ends_at: Millis,
}

/// What a Cloudflare rate-limit binding said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limiter {
    /// Under the limit.
    Allowed,
    /// Over the limit: 429.
    Refused,
    /// Not asked: no binding in this runtime, the key does not apply (an allow-listed
    /// client), or the call failed. The request goes on (the isolate bucket still holds).
    Skipped,
}

/// What the edge looked up for a purchase.
#[derive(Debug, Clone, Copy)]
pub struct PurchaseFacts<'a> {
    /// The event's window; `None` when the origin does not know the event.
    pub window: Option<Window>,
    /// Whether the edge saw the origin answer sold_out a moment ago.
    pub sold_out: bool,
    /// Whether the edge saw the origin give this user an order for this event: then a
    /// sold-out mark does not hide the origin's `already_purchased` from them.
    pub holds_order: bool,
    /// The `X-Ticket` header.
    pub ticket: Option<&'a str>,
    /// The `User-Agent`, whose fingerprint the ticket must be bound to.
    pub user_agent: Option<&'a str>,
}

/// A purchase that passed every check but the limiters (built only by [`purchase`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admissible {
    path: String,
}

/// A purchase the edge admits: forward it to the origin, signed for this user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// The origin path to call.
    pub path: String,
}

pub(crate) fn live(window: Option<Window>, now: Millis) -> Result<Window, Outcome> {
    let w = window.ok_or(Outcome::EventNotFound)?;
    match gate::phase(w.starts_at, w.ends_at, now) {
        Phase::Upcoming => Err(Outcome::NotStarted {
            starts_at: wire::fmt_time(w.starts_at),
        }),
        Phase::Ended => Err(Outcome::Ended),
        Phase::Live => Ok(w),
    }
}

fn limited(limiter: Limiter) -> Result<(), Outcome> {
    match limiter {
        Limiter::Refused => Err(Outcome::RateLimited {
            retry_after_secs: LIMITER_RETRY_SECS,
        }),
        Limiter::Allowed | Limiter::Skipped => Ok(()),
    }
}

/// A purchase's checks after [`screen`], up to the limiters.
pub fn purchase(
    s: &Screened,
    facts: &PurchaseFacts<'_>,
    ticket_key: &[u8],
    now: Millis,
) -> Result<Admissible, Outcome> {
    live(facts.window, now)?;
    Ticket::verify(
        facts.ticket,
        ticket_key,
        &s.event,
        &s.user,
        &ticket::fingerprint(facts.user_agent.unwrap_or_default()),
        now,
    )
    .map_err(|e| Outcome::Forbidden {
        reason: e.reason().into(),
    })?;
    // After the ticket: a request without a valid one is refused as such (403), whatever
    // the stock, and the sold-out mark is one lookup.
    if facts.sold_out && !facts.holds_order {
        return Err(Outcome::SoldOut);
    }
    Ok(Admissible {
        path: format!("/api/events/{}/purchase", s.event),
    })
}

/// The limiters of an admissible purchase: the per-user binding's answer, then a token of
/// the isolate's `bucket`.
pub fn limit(
    a: Admissible,
    limiter: Limiter,
    bucket: &mut TokenBucket,
    now: Millis,
) -> Result<Forward, Outcome> {
    limited(limiter)?;
    bucket
        .try_take(now)
        .map_err(|wait_ms| Outcome::RateLimited {
            retry_after_secs: u64::try_from(wait_ms).unwrap_or(1).div_ceil(1000),
        })?;
    Ok(Forward { path: a.path })
}

/// What the edge looked up for a ticket.
#[derive(Debug, Clone, Copy)]
pub struct TicketFacts {
    /// The event's window; `None` when the origin does not know the event.
    pub window: Option<Window>,
    /// The per-IP rate-limit binding.
    pub limiter: Limiter,
}

/// Whether a ticket may be issued, before the human check: the window to issue it for.
/// Tickets are issued before the start too (valid from the start), not after the end.
pub fn ticket_gate(facts: &TicketFacts, now: Millis) -> Result<Window, Outcome> {
    let w = facts.window.ok_or(Outcome::EventNotFound)?;
    if gate::phase(w.starts_at, w.ends_at, now) == Phase::Ended {
        return Err(Outcome::Ended);
    }
    limited(facts.limiter)?;
    Ok(w)
}

/// The ticket's signed string and the answer to send, once the human check is known.
pub fn issue_ticket(
    s: &Screened,
    window: Window,
    human: Human,
    user_agent: Option<&str>,
    ttl: Millis,
    ticket_key: &[u8],
    now: Millis,
) -> Result<TicketAnswer, Outcome> {
    let forbidden = |reason: &str| Outcome::Forbidden {
        reason: reason.into(),
    };
    match human {
        Human::NotConfigured | Human::Passed => {}
        Human::Missing => return Err(forbidden("turnstile_missing")),
        Human::Failed => return Err(forbidden("turnstile_failed")),
        Human::Unavailable => {
            return Err(Outcome::Busy {
                retry_after_secs: 1,
            })
        }
    }
    let (valid_from, expires_at) = ticket::window(now, window.starts_at, ttl);
    let token = Ticket {
        event: s.event.clone(),
        user: s.user.clone(),
        fingerprint: ticket::fingerprint(user_agent.unwrap_or_default()),
        valid_from,
        expires_at,
    }
    .encode(ticket_key);
    Ok(TicketAnswer {
        ticket: token,
        valid_from: wire::fmt_time(valid_from),
        expires_at: wire::fmt_time(expires_at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bot::AllowList;
    use proptest::prelude::*;

    const AUTH: &[u8] = b"auth-secret-for-tests";
    const KEY: &[u8] = b"ticket:edge-secret";
    const START: Millis = 1_800_000_000_000;
    const END: Millis = START + 3_600_000;
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
            AUTH,
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
            sold_out: false,
            holds_order: false,
            ticket,
            user_agent: Some(UA),
        }
    }

    /// The whole decision after the screen, with an allowing limiter and a full bucket.
    fn buy(facts: PurchaseFacts<'_>, now: Millis) -> Result<Forward, Outcome> {
        let mut bucket = TokenBucket::new(100, 100, now);
        let a = purchase(&screened("alice"), &facts, KEY, now)?;
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
        let go = |req: Incoming<'_>, t: &mut Tracker| screen(&req, AUTH, &r, t, START).map(|_| ());
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
        let s = screen(&req, AUTH, &rules(), &mut Tracker::default(), START).expect("allow-listed");
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
        let admissible = || purchase(&s, &facts(Some(&t)), KEY, START).expect("admissible");
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
            sold_out: bool, holds_order: bool, own_ticket: bool, refused: bool, tokens in 0u32..2
        ) {
            let now = START + now_off;
            let t = ticket_for(if own_ticket { "alice" } else { "bob" }, START + issued_off);
            let f = PurchaseFacts {
                window: Some(WINDOW),
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
            let expected = (START..END).contains(&now)
                && (!sold_out || holds_order)
                && own_ticket
                && (valid_from..expires_at).contains(&now)
                && !refused
                && tokens > 0;
            let forwarded = purchase(&screened("alice"), &f, KEY, now)
                .and_then(|a| limit(a, limiter, &mut bucket, now));
            prop_assert_eq!(forwarded.is_ok(), expected);
        }
    }
}
