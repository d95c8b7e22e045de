//! The edge's admission decisions, in the order the edge applies them.
//!
//! The worker reads the request and looks things up (the event window, the sold-out mark,
//! the rate-limit binding, Turnstile); these functions, pure and clock-free, say what to
//! answer or that the request may go on. Cheap refusals come first, so what costs more
//! (an origin lookup, a limiter's quota, a token of the isolate bucket) is spent only on
//! requests that could still be admitted.
//!
//! - Every shopper endpoint but event info: [`screen`]: 401 identity, 413/415/400 body,
//!   404 an event id that is not a slug (no such event), 403 bot verdict.
//! - Purchase: [`purchase`]: 404 unknown event, 425 before `starts_at`, 410 from `ends_at`,
//!   503 paused by an operator, 403 ticket, 409 while the edge remembers a sold-out (unless
//!   it saw this user get an order, or the origin's filter of buyers may hold them); then
//!   [`limit`]: 429 per-user limiter, 429 isolate bucket; then forward, signed, to the
//!   origin. The limiters are asked only for purchases that passed the rest, so refusals
//!   spend neither a user's quota nor a token. When the event's room is on, [`room`] comes
//!   between the two: 403 receipt, 429 until the receipt's position is admitted.
//! - Ticket: [`ticket_gate`]: 404, 410, 429 per-IP limiter; then [`issue_ticket`]:
//!   403/503 from the optional Turnstile check, else a ticket.
//! - Joining a room (when on): [`room_gate`]: 404, 425 before registration opens, 410,
//!   409 sold out, 429 per-IP limiter; then the room gives the position.

use crate::bot::{Client, Human, Rules, Tracker, Verdict};
use crate::bucket::TokenBucket;
use crate::gate::{self, Phase};
use crate::ids::{EventId, UserId};
use crate::jwt;
use crate::keyring::KeyRing;
use crate::room::schedule::{self, Schedule};
use crate::room::settings::RoomSettings;
use crate::room::{draw, receipt, spend};
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
    auth: &KeyRing,
    rules: &Rules,
    tracker: &mut Tracker,
    now: Millis,
) -> Result<Screened, Outcome> {
    let token = req
        .authorization
        .and_then(jwt::bearer)
        .ok_or(Outcome::Unauthenticated)?;
    let user = jwt::verify(token, auth, now)
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
    /// Whether the event's info says an operator paused the sale.
    pub paused: bool,
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
    ticket_keys: &KeyRing,
    now: Millis,
) -> Result<Admissible, Outcome> {
    live(facts.window, now)?;
    if facts.paused {
        return Err(Outcome::Paused);
    }
    Ticket::verify(
        facts.ticket,
        ticket_keys,
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

/// The room's check of an admissible purchase (when the event's room is on): the
/// receipt (`x-room-receipt`) must be this user's, from this client, for this event
/// (403 with the reason), and its position admitted by the `schedule` (else 429, with
/// `Retry-After` until its [`schedule::estimated_turn`], at least a second). A receipt
/// issued before the room opened holds a registration for the draw, not a position
/// ([`draw::holds_position`]): 429 until the opening, when the room tells its position.
/// A position whose admission expired (at most `schedule.expired_through`) is 403
/// `receipt_expired`: its place passed to the next positions.
/// Answers the position.
///
/// ```
/// use flashgate_core::admission::room;
/// use flashgate_core::keyring::KeyRing;
/// use flashgate_core::room::schedule::Schedule;
/// use flashgate_core::wire::Outcome;
/// # let s = flashgate_core::admission::Screened {
/// #     user: flashgate_core::ids::UserId::parse("u1").expect("valid"),
/// #     event: flashgate_core::ids::EventId::parse("phone").expect("valid"),
/// #     body: serde_json::json!({}),
/// #     verdict: Default::default(),
/// # };
/// let schedule = Schedule { opened_at: 0, admit_per_second: 10, admitted_through: 0, as_of: 0, expired_through: 0 };
/// assert_eq!(
///     room(&s, None, None, &schedule, &KeyRing::single(b"key"), 0),
///     Err(Outcome::Forbidden { reason: "receipt_missing".into() })
/// );
/// ```
pub fn room(
    s: &Screened,
    receipt: Option<&str>,
    user_agent: Option<&str>,
    schedule: &Schedule,
    receipt_keys: &KeyRing,
    now: Millis,
) -> Result<u64, Outcome> {
    let forbidden = |reason: &str| Outcome::Forbidden {
        reason: reason.into(),
    };
    let token = receipt.ok_or_else(|| forbidden("receipt_missing"))?;
    let fingerprint = ticket::fingerprint(user_agent.unwrap_or_default());
    let r = receipt::verify(token, receipt_keys, &s.event, &s.user, &fingerprint)
        .map_err(|e| forbidden(e.reason()))?;
    if !draw::holds_position(r.issued_at, schedule.opened_at) {
        // A registration for the draw: its position comes with the seal, at the opening.
        let wait_ms = schedule.opened_at.saturating_sub(now);
        return Err(Outcome::RateLimited {
            retry_after_secs: u64::try_from(wait_ms).unwrap_or(0).div_ceil(1000).max(1),
        });
    }
    let position = r.position_or_arrival;
    if position <= schedule.expired_through {
        // Its admission lasted `session_ms` and passed to the next positions.
        return Err(forbidden("receipt_expired"));
    }
    if !schedule::admitted(position, schedule) {
        let wait_ms = schedule::estimated_turn(schedule, position).saturating_sub(now);
        return Err(Outcome::RateLimited {
            retry_after_secs: u64::try_from(wait_ms).unwrap_or(0).div_ceil(1000).max(1),
        });
    }
    Ok(position)
}

/// The refusal of a purchase whose receipt was spent already (`room::spend`).
///
/// ```
/// use flashgate_core::admission::receipt_used;
/// assert_eq!(receipt_used().answer().status, 403);
/// ```
pub fn receipt_used() -> Outcome {
    Outcome::Forbidden {
        reason: spend::RECEIPT_USED.into(),
    }
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

/// What the edge looked up for a shopper joining an event's room.
#[derive(Debug, Clone, Copy)]
pub struct RoomFacts {
    /// The event's window; `None` when the origin does not know the event.
    pub window: Option<Window>,
    /// Whether the edge saw the origin answer sold_out a moment ago.
    pub sold_out: bool,
    /// The per-IP rate-limit binding.
    pub limiter: Limiter,
}

/// Whether a shopper may join the room: from `prequeue_ms` before the start (425 before)
/// until the end (410), while not sold out (409).
///
/// ```
/// use flashgate_core::admission::{room_gate, Limiter, RoomFacts, Window};
/// use flashgate_core::room::settings::RoomSettings;
/// use flashgate_core::wire::Outcome;
/// let s = RoomSettings { prequeue_ms: 60_000, ..RoomSettings::default() };
/// let window = Some(Window { starts_at: 100_000, ends_at: 200_000 });
/// let facts = RoomFacts { window, sold_out: false, limiter: Limiter::Skipped };
/// assert!(room_gate(&facts, &s, 40_000).is_ok());
/// assert!(matches!(room_gate(&facts, &s, 39_999), Err(Outcome::NotStarted { .. })));
/// assert_eq!(room_gate(&facts, &s, 200_000), Err(Outcome::Ended));
/// ```
pub fn room_gate(
    facts: &RoomFacts,
    settings: &RoomSettings,
    now: Millis,
) -> Result<Window, Outcome> {
    let w = facts.window.ok_or(Outcome::EventNotFound)?;
    if now < settings.opens_at(w.starts_at) {
        return Err(Outcome::NotStarted {
            starts_at: wire::fmt_time(w.starts_at),
        });
    }
    if gate::phase(w.starts_at, w.ends_at, now) == Phase::Ended {
        return Err(Outcome::Ended);
    }
    if facts.sold_out {
        return Err(Outcome::SoldOut);
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
mod tests;
