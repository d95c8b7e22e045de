//! Admission tickets: issued by the edge at `POST /api/events/{id}/ticket`, required on
//! purchase. A ticket binds one user, one event and one client fingerprint (a hash of the
//! User-Agent) to a short window that opens at the event's start. The ticket key derives
//! from `EDGE_SECRET` ([`keys`]), so a ticket issued under the previous edge secret is
//! still accepted during a rotation.

use crate::crypto::{b64, sha256_hex, sign_b64, unb64, verify_b64};
use crate::ids::{EventId, UserId};
use crate::keyring::KeyRing;
use crate::Millis;

/// Header that carries the ticket on purchase.
pub const HEADER: &str = "x-ticket";

/// The fields a ticket binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// Event it admits to.
    pub event: EventId,
    /// User it was issued to.
    pub user: UserId,
    /// Client fingerprint, see [`fingerprint`].
    pub fingerprint: String,
    /// First valid instant.
    pub valid_from: Millis,
    /// First instant it is no longer valid.
    pub expires_at: Millis,
}

/// Why a ticket was refused (403 with this reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketError {
    /// No `X-Ticket` header.
    Missing,
    /// Unreadable or bad signature.
    Forged,
    /// Issued for another event.
    WrongEvent,
    /// Issued to another user.
    WrongUser,
    /// Issued to another client.
    WrongClient,
    /// Used before its window opens.
    NotYetValid,
    /// Used after its window closed.
    Expired,
}

impl TicketError {
    /// The `reason` of the 403 body.
    pub fn reason(self) -> &'static str {
        match self {
            TicketError::Missing => "ticket_missing",
            TicketError::Forged => "ticket_invalid",
            TicketError::WrongEvent => "ticket_wrong_event",
            TicketError::WrongUser => "ticket_wrong_user",
            TicketError::WrongClient => "ticket_wrong_client",
            TicketError::NotYetValid => "ticket_not_yet_valid",
            TicketError::Expired => "ticket_expired",
        }
    }
}

/// A short, stable hash of the client's User-Agent.
pub fn fingerprint(user_agent: &str) -> String {
    sha256_hex(user_agent.as_bytes())[..16].to_owned()
}

/// The window of a ticket asked for at `now` for an event starting at `starts_at`:
/// it opens at the start and lasts `ttl` from the later of now and the start.
pub fn window(now: Millis, starts_at: Millis, ttl: Millis) -> (Millis, Millis) {
    (starts_at, now.max(starts_at) + ttl)
}

const DOMAIN: &str = "flashgate-ticket-v1\n";

/// The ticket keys of the edge secrets `edge`: derived, so that the origin's signature
/// key and the ticket key never sign the same kind of message.
///
/// ```
/// use flashgate_core::keyring::KeyRing;
/// use flashgate_core::ticket::keys;
/// assert_eq!(keys(&KeyRing::single(b"edge-secret")).current(), b"ticket:edge-secret");
/// ```
pub fn keys(edge: &KeyRing) -> KeyRing {
    edge.derive(|secret| [b"ticket:", secret].concat())
}

impl Ticket {
    fn payload(&self) -> String {
        format!(
            "{}|{}|{}|{}|{}",
            self.event, self.user, self.fingerprint, self.valid_from, self.expires_at
        )
    }

    /// The signed ticket string.
    pub fn encode(&self, secret: &[u8]) -> String {
        let payload = self.payload();
        let sig = sign_b64(secret, format!("{DOMAIN}{payload}").as_bytes());
        format!("{}.{sig}", b64(payload.as_bytes()))
    }

    /// Reads and checks a ticket for this event, user and client at `now`, signed under
    /// any key of `keys`.
    pub fn verify(
        token: Option<&str>,
        keys: &KeyRing,
        event: &EventId,
        user: &UserId,
        fingerprint: &str,
        now: Millis,
    ) -> Result<Ticket, TicketError> {
        let token = token
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(TicketError::Missing)?;
        let (payload_b64, sig) = token.split_once('.').ok_or(TicketError::Forged)?;
        let payload = unb64(payload_b64)
            .and_then(|raw| String::from_utf8(raw).ok())
            .ok_or(TicketError::Forged)?;
        let signed = format!("{DOMAIN}{payload}");
        if keys
            .find(|key| verify_b64(key, signed.as_bytes(), sig))
            .is_none()
        {
            return Err(TicketError::Forged);
        }
        let ticket = Self::parse_payload(&payload).ok_or(TicketError::Forged)?;
        if &ticket.event != event {
            return Err(TicketError::WrongEvent);
        }
        if &ticket.user != user {
            return Err(TicketError::WrongUser);
        }
        if ticket.fingerprint != fingerprint {
            return Err(TicketError::WrongClient);
        }
        if now < ticket.valid_from {
            return Err(TicketError::NotYetValid);
        }
        if now >= ticket.expires_at {
            return Err(TicketError::Expired);
        }
        Ok(ticket)
    }

    fn parse_payload(payload: &str) -> Option<Ticket> {
        let mut it = payload.split('|');
        let ticket = Ticket {
            event: EventId::parse(it.next()?).ok()?,
            user: UserId::parse(it.next()?).ok()?,
            fingerprint: it.next()?.to_owned(),
            valid_from: it.next()?.parse().ok()?,
            expires_at: it.next()?.parse().ok()?,
        };
        it.next().is_none().then_some(ticket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &[u8] = b"edge-secret";
    const START: Millis = 1_800_000_000_000;

    fn ids() -> (EventId, UserId, String) {
        (
            EventId::parse("phone").expect("valid"),
            UserId::parse("u1").expect("valid"),
            fingerprint("Mozilla/5.0"),
        )
    }

    fn issued(now: Millis) -> String {
        let (event, user, fp) = ids();
        let (valid_from, expires_at) = window(now, START, 60_000);
        Ticket {
            event,
            user,
            fingerprint: fp,
            valid_from,
            expires_at,
        }
        .encode(S)
    }

    fn check(token: Option<&str>, now: Millis) -> Result<Ticket, TicketError> {
        let (e, u, fp) = ids();
        Ticket::verify(token, &KeyRing::single(S), &e, &u, &fp, now)
    }

    #[test]
    fn valid_from_start_until_ttl() {
        let t = issued(START - 10_000);
        assert_eq!(check(Some(&t), START - 1), Err(TicketError::NotYetValid));
        assert!(check(Some(&t), START).is_ok());
        assert!(check(Some(&t), START + 59_999).is_ok());
        assert_eq!(check(Some(&t), START + 60_000), Err(TicketError::Expired));
    }

    #[test]
    fn bound_to_user_event_and_client() {
        let t = issued(START);
        let (e, u, fp) = ids();
        let other_user = UserId::parse("u2").expect("valid");
        let other_event = EventId::parse("tv").expect("valid");
        assert_eq!(
            Ticket::verify(Some(&t), &KeyRing::single(S), &e, &other_user, &fp, START),
            Err(TicketError::WrongUser)
        );
        assert_eq!(
            Ticket::verify(Some(&t), &KeyRing::single(S), &other_event, &u, &fp, START),
            Err(TicketError::WrongEvent)
        );
        assert_eq!(
            Ticket::verify(
                Some(&t),
                &KeyRing::single(S),
                &e,
                &u,
                &fingerprint("curl/8"),
                START
            ),
            Err(TicketError::WrongClient)
        );
    }

    #[test]
    fn forged_or_missing() {
        assert_eq!(check(None, START), Err(TicketError::Missing));
        assert_eq!(check(Some(" "), START), Err(TicketError::Missing));
        assert_eq!(check(Some("abc"), START), Err(TicketError::Forged));
        let t = issued(START);
        let (payload, sig) = t.split_once('.').expect("two parts");
        let longer = b64(String::from_utf8(unb64(payload).expect("b64"))
            .expect("utf8")
            .replace("|1800000060000", "|1900000000000")
            .as_bytes());
        assert_eq!(
            check(Some(&format!("{longer}.{sig}")), START),
            Err(TicketError::Forged)
        );
        let (e, u, fp) = ids();
        assert_eq!(
            Ticket::verify(Some(&t), &KeyRing::single(b"other"), &e, &u, &fp, START),
            Err(TicketError::Forged)
        );
    }

    #[test]
    fn during_a_rotation_tickets_under_either_edge_secret_pass() {
        let (e, u, fp) = ids();
        let ring = keys(&KeyRing::new(b"new", Some(b"old".as_slice())));
        let under = |edge_secret: &[u8]| {
            let (valid_from, expires_at) = window(START, START, 60_000);
            Ticket {
                event: e.clone(),
                user: u.clone(),
                fingerprint: fp.clone(),
                valid_from,
                expires_at,
            }
            .encode(keys(&KeyRing::single(edge_secret)).current())
        };
        for secret in [b"new".as_slice(), b"old"] {
            assert!(Ticket::verify(Some(&under(secret)), &ring, &e, &u, &fp, START).is_ok());
        }
        assert_eq!(
            Ticket::verify(Some(&under(b"third")), &ring, &e, &u, &fp, START),
            Err(TicketError::Forged)
        );
        // The edge secret itself is no ticket key.
        let raw = Ticket::parse_payload(&format!("{e}|{u}|{fp}|{START}|{}", START + 1))
            .expect("payload")
            .encode(b"new");
        assert_eq!(
            Ticket::verify(Some(&raw), &ring, &e, &u, &fp, START),
            Err(TicketError::Forged)
        );
    }
}
