//! `room::receipt::verify`, the room's check of the receipt a waiting shopper sends back
//! (`x-room-receipt`).
//!
//! Modes (first byte): `P` a receipt payload (`event|user|fingerprint|position|issued`),
//! signed with the receipt key so the payload parsing past the signature is reached; `R`
//! event `\0` user `\0` User-Agent `\0` position `\0` issued, issued then verified;
//! anything else: the rest is the header as a client sends it. Every receipt is checked
//! for event `phone`, user `u1`, User-Agent `Mozilla/5.0`.
#![no_main]

use flashgate_core::crypto::{b64, sign_b64};
use flashgate_core::ids::{EventId, UserId};
use flashgate_core::room::receipt::{self, receipt_key, Receipt, ReceiptError};
use flashgate_core::ticket::{fingerprint, Ticket, TicketError};
use flashgate_core_fuzz::{fields, ring, text, EDGE_SECRET, NOW, TICKET_KEY};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let key = receipt_key(EDGE_SECRET);
    let event = EventId::parse("phone").expect("valid");
    let user = UserId::parse("u1").expect("valid");
    let fp = fingerprint("Mozilla/5.0");
    match mode {
        b'P' => {
            let Some(payload) = text(rest) else { return };
            let sig = sign_b64(
                &key,
                format!("flashgate-room-receipt-v1\n{payload}").as_bytes(),
            );
            let token = format!("{}.{sig}", b64(payload.as_bytes()));
            accepted(
                &token,
                receipt::verify(&token, &ring(&key), &event, &user, &fp),
            );
        }
        b'R' => round_trip(rest),
        _ => {
            let Some(token) = text(rest) else { return };
            if accepted(
                token,
                receipt::verify(token, &ring(&key), &event, &user, &fp),
            )
            .is_some()
            {
                let other = receipt_key(b"another-secret");
                assert_eq!(
                    receipt::verify(token, &ring(&other), &event, &user, &fp),
                    Err(ReceiptError::Forged)
                );
            }
        }
    }
});

/// An accepted receipt is the one asked for, its own encoding verifies to it again, and
/// it never passes for an admission ticket.
fn accepted(token: &str, verified: Result<Receipt, ReceiptError>) -> Option<Receipt> {
    let r = verified.ok()?;
    assert_eq!((r.event.as_str(), r.user.as_str()), ("phone", "u1"));
    assert_eq!(r.fingerprint, fingerprint("Mozilla/5.0"));
    let key = receipt_key(EDGE_SECRET);
    let again = receipt::issue(&key, &r);
    assert_eq!(
        receipt::verify(&again, &ring(&key), &r.event, &r.user, &r.fingerprint).as_ref(),
        Ok(&r)
    );
    assert_eq!(
        Ticket::verify(
            Some(token),
            &ring(TICKET_KEY),
            &r.event,
            &r.user,
            &r.fingerprint,
            NOW
        ),
        Err(TicketError::Forged)
    );
    Some(r)
}

/// Any receipt issued verifies to itself, for its event, user and client only.
fn round_trip(rest: &[u8]) {
    let [event, user, ua, position, issued] = fields(rest, 5)[..] else {
        unreachable!()
    };
    let (Some(event), Some(user), Some(ua), Some(position_or_arrival), Some(issued_at)) = (
        text(event).and_then(|e| EventId::parse(e).ok()),
        text(user).and_then(|u| UserId::parse(u).ok()),
        text(ua),
        text(position).and_then(|p| p.parse::<u64>().ok()),
        text(issued).and_then(|i| i.parse::<i64>().ok()),
    ) else {
        return;
    };
    let r = Receipt {
        event,
        user,
        fingerprint: fingerprint(ua),
        position_or_arrival,
        issued_at,
    };
    let key = receipt_key(EDGE_SECRET);
    let token = receipt::issue(&key, &r);
    assert_eq!(
        receipt::verify(&token, &ring(&key), &r.event, &r.user, &r.fingerprint).as_ref(),
        Ok(&r)
    );
    let other = UserId::parse(if r.user.as_str() == "u2" { "u3" } else { "u2" }).expect("valid");
    assert_eq!(
        receipt::verify(&token, &ring(&key), &r.event, &other, &r.fingerprint),
        Err(ReceiptError::WrongUser)
    );
    if r.fingerprint != fingerprint("curl/8") {
        assert_eq!(
            receipt::verify(
                &token,
                &ring(&key),
                &r.event,
                &r.user,
                &fingerprint("curl/8")
            ),
            Err(ReceiptError::WrongClient)
        );
    }
}
