//! `Ticket::verify`, the purchase's admission ticket check (`X-Ticket`).
//!
//! Modes (first byte): `P` a ticket payload (`event|user|fingerprint|from|until`), signed
//! with the ticket key so the payload parsing past the signature is reached; `R` event
//! `\0` user `\0` User-Agent `\0` from `\0` until, encoded then verified; anything else:
//! the rest is an `X-Ticket` header as a client sends it. Every ticket is checked for
//! event `phone`, user `u1`, User-Agent `Mozilla/5.0` at [`NOW`].
#![no_main]

use flashgate_core::crypto::{b64, sign_b64};
use flashgate_core::ids::{EventId, UserId};
use flashgate_core::ticket::{fingerprint, Ticket, TicketError};
use flashgate_core_fuzz::{fields, ring, text, NOW, TICKET_KEY};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let event = EventId::parse("phone").expect("valid");
    let user = UserId::parse("u1").expect("valid");
    let fp = fingerprint("Mozilla/5.0");
    match mode {
        b'P' => {
            let Some(payload) = text(rest) else { return };
            let sig = sign_b64(
                TICKET_KEY,
                format!("flashgate-ticket-v1\n{payload}").as_bytes(),
            );
            let token = format!("{}.{sig}", b64(payload.as_bytes()));
            accepted(Ticket::verify(
                Some(&token),
                &ring(TICKET_KEY),
                &event,
                &user,
                &fp,
                NOW,
            ));
        }
        b'R' => round_trip(rest),
        _ => {
            let Some(token) = text(rest) else { return };
            let verified = Ticket::verify(Some(token), &ring(TICKET_KEY), &event, &user, &fp, NOW);
            if accepted(verified).is_some() {
                // Accepted tokens were signed with the ticket key, never with another.
                assert_eq!(
                    Ticket::verify(Some(token), &ring(b"other"), &event, &user, &fp, NOW),
                    Err(TicketError::Forged)
                );
            }
        }
    }
});

/// An accepted ticket is the one asked for, valid now, and its own encoding verifies to
/// it again.
fn accepted(verified: Result<Ticket, TicketError>) -> Option<Ticket> {
    let t = verified.ok()?;
    assert_eq!((t.event.as_str(), t.user.as_str()), ("phone", "u1"));
    assert_eq!(t.fingerprint, fingerprint("Mozilla/5.0"));
    assert!(t.valid_from <= NOW && NOW < t.expires_at, "{t:?}");
    let again = t.encode(TICKET_KEY);
    assert_eq!(
        Ticket::verify(
            Some(&again),
            &ring(TICKET_KEY),
            &t.event,
            &t.user,
            &t.fingerprint,
            NOW
        )
        .as_ref(),
        Ok(&t)
    );
    Some(t)
}

/// Any valid ticket verifies, within its window only, for its event, user and client only.
fn round_trip(rest: &[u8]) {
    let [event, user, ua, from, until] = fields(rest, 5)[..] else {
        unreachable!()
    };
    let number = |f: &[u8]| text(f).and_then(|s| s.parse::<i64>().ok());
    let (Some(event), Some(user), Some(ua), Some(valid_from), Some(expires_at)) = (
        text(event).and_then(|e| EventId::parse(e).ok()),
        text(user).and_then(|u| UserId::parse(u).ok()),
        text(ua),
        number(from),
        number(until),
    ) else {
        return;
    };
    let t = Ticket {
        event,
        user,
        fingerprint: fingerprint(ua),
        valid_from,
        expires_at,
    };
    let token = t.encode(TICKET_KEY);
    let at = |now| {
        Ticket::verify(
            Some(&token),
            &ring(TICKET_KEY),
            &t.event,
            &t.user,
            &t.fingerprint,
            now,
        )
    };
    if valid_from < expires_at {
        assert_eq!(at(valid_from).as_ref(), Ok(&t));
        assert_eq!(at(expires_at - 1).as_ref(), Ok(&t));
    }
    // The window is checked from its start: a window that ends before it starts is not
    // yet valid at its end.
    let at_end = if expires_at < valid_from {
        TicketError::NotYetValid
    } else {
        TicketError::Expired
    };
    assert_eq!(at(expires_at), Err(at_end));
    if let Some(before) = valid_from.checked_sub(1) {
        assert_eq!(at(before), Err(TicketError::NotYetValid));
    }
    let other = UserId::parse(if t.user.as_str() == "u2" { "u3" } else { "u2" }).expect("valid");
    let now = valid_from;
    assert_eq!(
        Ticket::verify(
            Some(&token),
            &ring(TICKET_KEY),
            &t.event,
            &other,
            &t.fingerprint,
            now
        ),
        Err(TicketError::WrongUser)
    );
    if t.fingerprint != fingerprint("curl/8") {
        assert_eq!(
            Ticket::verify(
                Some(&token),
                &ring(TICKET_KEY),
                &t.event,
                &t.user,
                &fingerprint("curl/8"),
                now
            ),
            Err(TicketError::WrongClient)
        );
    }
}
