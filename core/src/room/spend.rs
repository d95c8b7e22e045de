//! A receipt is used once. The edge spends a user's receipt in their shard just before it
//! forwards their admitted purchase; a second purchase with any receipt of that user for
//! that event is then refused, 403 `receipt_used`, and reaches nobody. An answer that
//! decided nothing about the purchase (the origin busy or unreachable, the room's
//! forwards used up) gives the receipt back, so the shopper's retry passes; an answer that
//! decided it ([`decided`]) keeps it spent, and the shopper finds the outcome with the
//! order lookup.

use crate::Millis;

/// The 403 `reason` of a receipt already spent on a purchase (the answer is
/// `admission::receipt_used`).
pub const RECEIPT_USED: &str = "receipt_used";

/// Whether the origin's answer `status` decided the purchase it was sent, so its receipt
/// stays spent: an order made or found (202, 200), the sale sold out or gone (409, 410).
/// Anything else (429, 5xx, a refusal of the request itself) leaves the purchase to be
/// tried again, and gives the receipt back.
///
/// ```
/// use flashgate_core::room::spend::decided;
/// assert!(decided(Some(202)) && decided(Some(409)));
/// assert!(!decided(Some(503)) && !decided(None));
/// ```
pub fn decided(status: Option<u16>) -> bool {
    matches!(status, Some(200 | 202 | 409 | 410))
}

/// A shard's rule for the user's spend mark `mark` (when they spent it): whether a spend
/// takes the receipt. The first does; any later one is refused while the mark stands.
pub fn takes(mark: Option<Millis>) -> bool {
    mark.is_none()
}

/// Whether a give-back for the spend made at `spent_at` removes the mark `mark`: only
/// the mark that spend wrote, so a late give-back never frees a later spend.
pub fn gives_back(mark: Option<Millis>, spent_at: Millis) -> bool {
    mark == Some(spent_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_answers_that_decide_the_purchase_keep_the_receipt() {
        for s in [200, 202, 409, 410] {
            assert!(decided(Some(s)), "{s}");
        }
        for s in [400, 401, 403, 404, 413, 425, 429, 500, 502, 503, 504] {
            assert!(!decided(Some(s)), "{s}");
        }
        assert!(!decided(None), "no answer at all");
    }

    #[test]
    fn a_receipt_is_spent_once_and_given_back_only_by_its_own_spend() {
        assert!(takes(None));
        assert!(!takes(Some(5)));
        assert!(gives_back(Some(5), 5));
        assert!(!gives_back(Some(9), 5), "a later spend stays");
        assert!(!gives_back(None, 5));
    }
}
