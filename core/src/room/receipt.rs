//! Receipts: what a waiting shopper holds, signed by the edge. A receipt binds one user,
//! one event and one client fingerprint (see [`ticket::fingerprint`]) to a position in
//! the room (or, before the draw, an arrival), so the page can come back for its turn.
//!
//! The token has a ticket's shape: `base64url(payload).base64url(HMAC)`, the payload's
//! fields joined by `|`, signed under its own domain and its own key, derived from
//! `EDGE_SECRET` ([`keys`]): during a rotation, a receipt issued under the previous edge
//! secret is still accepted.
//!
//! [`ticket::fingerprint`]: crate::ticket::fingerprint

use crate::crypto::{b64, mac, sign_b64, unb64, verify_b64};
use crate::ids::{EventId, UserId};
use crate::keyring::KeyRing;
use crate::Millis;
use hmac::Mac;

/// Header that carries the receipt back to the room.
pub const HEADER: &str = "x-room-receipt";

const DOMAIN: &str = "flashgate-room-receipt-v1\n";

/// The fields a receipt binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Event whose room it was issued in.
    pub event: EventId,
    /// User it was issued to.
    pub user: UserId,
    /// Client fingerprint, see [`crate::ticket::fingerprint`].
    pub fingerprint: String,
    /// The position once drawn; before, the arrival index the registering shard gave
    /// (see [`crate::room::chain::Entry::arrival_index_in_shard`]).
    pub position_or_arrival: u64,
    /// When it was issued.
    pub issued_at: Millis,
}

/// Why a receipt was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptError {
    /// Unreadable or bad signature.
    Forged,
    /// Issued in another event's room.
    WrongEvent,
    /// Issued to another user.
    WrongUser,
    /// Issued to another client.
    WrongClient,
}

impl ReceiptError {
    /// The `reason` of the 403 body.
    pub fn reason(self) -> &'static str {
        match self {
            ReceiptError::Forged => "receipt_invalid",
            ReceiptError::WrongEvent => "receipt_wrong_event",
            ReceiptError::WrongUser => "receipt_wrong_user",
            ReceiptError::WrongClient => "receipt_wrong_client",
        }
    }
}

/// The key receipts are signed with, derived from the edge secret so that a receipt can
/// never pass for a ticket or the reverse.
///
/// ```
/// use flashgate_core::room::receipt::receipt_key;
/// assert_ne!(receipt_key(b"edge-secret"), receipt_key(b"other-secret"));
/// ```
pub fn receipt_key(edge_secret: &[u8]) -> [u8; 32] {
    mac(edge_secret, b"flashgate room receipt v1")
        .finalize()
        .into_bytes()
        .into()
}

/// The receipt keys of the edge secrets `edge` (see [`receipt_key`]).
pub fn keys(edge: &KeyRing) -> KeyRing {
    edge.derive(receipt_key)
}

impl Receipt {
    fn payload(&self) -> String {
        format!(
            "{}|{}|{}|{}|{}",
            self.event, self.user, self.fingerprint, self.position_or_arrival, self.issued_at
        )
    }

    fn parse_payload(payload: &str) -> Option<Receipt> {
        let mut it = payload.split('|');
        let receipt = Receipt {
            event: EventId::parse(it.next()?).ok()?,
            user: UserId::parse(it.next()?).ok()?,
            fingerprint: it.next()?.to_owned(),
            position_or_arrival: it.next()?.parse().ok()?,
            issued_at: it.next()?.parse().ok()?,
        };
        it.next().is_none().then_some(receipt)
    }
}

/// The signed receipt string.
///
/// ```
/// use flashgate_core::ids::{EventId, UserId};
/// use flashgate_core::keyring::KeyRing;
/// use flashgate_core::room::receipt::{issue, keys, verify, Receipt};
/// let keys = keys(&KeyRing::single(b"edge-secret"));
/// let r = Receipt {
///     event: EventId::parse("phone").expect("a slug"),
///     user: UserId::parse("u1").expect("a user id"),
///     fingerprint: "0123456789abcdef".into(),
///     position_or_arrival: 42,
///     issued_at: 1_800_000_000_000,
/// };
/// let token = issue(keys.current(), &r);
/// assert_eq!(verify(&token, &keys, &r.event, &r.user, "0123456789abcdef"), Ok(r));
/// ```
pub fn issue(key: &[u8], receipt: &Receipt) -> String {
    let payload = receipt.payload();
    let sig = sign_b64(key, format!("{DOMAIN}{payload}").as_bytes());
    format!("{}.{sig}", b64(payload.as_bytes()))
}

/// Reads a receipt's fields without checking its signature (only the edge holds the
/// key): for a shopper comparing their receipt with a published draw, never to admit.
///
/// ```
/// use flashgate_core::room::receipt::{issue, read_unverified, Receipt};
/// # use flashgate_core::ids::{EventId, UserId};
/// let r = Receipt {
///     event: EventId::parse("phone").expect("a slug"),
///     user: UserId::parse("u1").expect("a user id"),
///     fingerprint: "0123456789abcdef".into(),
///     position_or_arrival: 42,
///     issued_at: 1_800_000_000_000,
/// };
/// assert_eq!(read_unverified(&issue(b"any key", &r)), Some(r));
/// assert_eq!(read_unverified("not a receipt"), None);
/// ```
pub fn read_unverified(token: &str) -> Option<Receipt> {
    let (payload_b64, _) = token.trim().split_once('.')?;
    Receipt::parse_payload(&String::from_utf8(unb64(payload_b64)?).ok()?)
}

/// Reads and checks a receipt for this event, user and client, signed under any key of
/// `keys`.
pub fn verify(
    token: &str,
    keys: &KeyRing,
    event: &EventId,
    user: &UserId,
    fingerprint: &str,
) -> Result<Receipt, ReceiptError> {
    let (payload_b64, sig) = token.trim().split_once('.').ok_or(ReceiptError::Forged)?;
    let payload = unb64(payload_b64)
        .and_then(|raw| String::from_utf8(raw).ok())
        .ok_or(ReceiptError::Forged)?;
    let signed = format!("{DOMAIN}{payload}");
    if keys
        .find(|key| verify_b64(key, signed.as_bytes(), sig))
        .is_none()
    {
        return Err(ReceiptError::Forged);
    }
    let receipt = Receipt::parse_payload(&payload).ok_or(ReceiptError::Forged)?;
    if &receipt.event != event {
        return Err(ReceiptError::WrongEvent);
    }
    if &receipt.user != user {
        return Err(ReceiptError::WrongUser);
    }
    if receipt.fingerprint != fingerprint {
        return Err(ReceiptError::WrongClient);
    }
    Ok(receipt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ticket::{self, Ticket};

    const SECRET: &[u8] = b"edge-secret";

    fn receipt() -> Receipt {
        Receipt {
            event: EventId::parse("phone").expect("valid"),
            user: UserId::parse("u1").expect("valid"),
            fingerprint: ticket::fingerprint("Mozilla/5.0"),
            position_or_arrival: 1_234,
            issued_at: 1_800_000_000_000,
        }
    }

    fn check(token: &str) -> Result<Receipt, ReceiptError> {
        let r = receipt();
        verify(
            token,
            &keys(&KeyRing::single(SECRET)),
            &r.event,
            &r.user,
            &r.fingerprint,
        )
    }

    #[test]
    fn frozen_key_and_token() {
        let key = receipt_key(SECRET);
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "fbce1e832d0e7d702572a3b5ebb4403d2df8132d39be70c93629b502bb6e1c2a"
        );
        assert_eq!(
            issue(&key, &receipt()),
            "cGhvbmV8dTF8MTA2NmI0ODIyNGJiMTg4Y3wxMjM0fDE4MDAwMDAwMDAwMDA\
             .HqZAQ13u-AfJbSAVxJ2UifmDrjdqS8Cc1A2r3ZUa9N8"
        );
    }

    #[test]
    fn round_trips() {
        assert_eq!(
            check(&issue(&receipt_key(SECRET), &receipt())),
            Ok(receipt())
        );
    }

    #[test]
    fn bound_to_event_user_and_client() {
        let key = keys(&KeyRing::single(SECRET));
        let r = receipt();
        let token = issue(key.current(), &r);
        let other_event = EventId::parse("tv").expect("valid");
        let other_user = UserId::parse("u2").expect("valid");
        assert_eq!(
            verify(&token, &key, &other_event, &r.user, &r.fingerprint),
            Err(ReceiptError::WrongEvent)
        );
        assert_eq!(
            verify(&token, &key, &r.event, &other_user, &r.fingerprint),
            Err(ReceiptError::WrongUser)
        );
        assert_eq!(
            verify(
                &token,
                &key,
                &r.event,
                &r.user,
                &ticket::fingerprint("curl/8")
            ),
            Err(ReceiptError::WrongClient)
        );
    }

    #[test]
    fn forged_receipts_are_refused() {
        assert_eq!(check(""), Err(ReceiptError::Forged));
        assert_eq!(check("abc"), Err(ReceiptError::Forged));
        let token = issue(&receipt_key(SECRET), &receipt());
        let (payload, sig) = token.split_once('.').expect("two parts");
        let better = b64(String::from_utf8(unb64(payload).expect("b64"))
            .expect("utf8")
            .replace("|1234|", "|1|")
            .as_bytes());
        assert_eq!(check(&format!("{better}.{sig}")), Err(ReceiptError::Forged));
        let other_key = issue(&receipt_key(b"other"), &receipt());
        assert_eq!(check(&other_key), Err(ReceiptError::Forged));
    }

    #[test]
    fn a_receipt_is_not_a_ticket() {
        // Same edge secret, same fields where they overlap: neither passes for the other.
        let token = issue(&receipt_key(SECRET), &receipt());
        let r = receipt();
        assert!(Ticket::verify(
            Some(&token),
            &ticket::keys(&KeyRing::single(SECRET)),
            &r.event,
            &r.user,
            &r.fingerprint,
            r.issued_at
        )
        .is_err());
    }

    #[test]
    fn during_a_rotation_receipts_under_either_edge_secret_pass() {
        let ring = keys(&KeyRing::new(b"new", Some(b"old".as_slice())));
        let r = receipt();
        let check = |token: &str| verify(token, &ring, &r.event, &r.user, &r.fingerprint);
        assert_eq!(check(&issue(&receipt_key(b"new"), &r)), Ok(r.clone()));
        assert_eq!(check(&issue(&receipt_key(b"old"), &r)), Ok(r.clone()));
        assert_eq!(
            check(&issue(&receipt_key(b"third"), &r)),
            Err(ReceiptError::Forged)
        );
    }
}
