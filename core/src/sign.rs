//! The edge → origin request signature.
//!
//! The edge signs `method`, `path`, the authenticated user (empty for public reads), a
//! timestamp, a nonce of its own and the SHA-256 of the body with `EDGE_SECRET`; the
//! origin recomputes it and refuses anything unsigned, forged, or more than
//! [`MAX_SKEW_MS`] away from its clock. The nonce makes two identical requests of one
//! millisecond (a double click) sign differently, so the origin's replay guard, which
//! remembers signatures, refuses only a request sent twice.

use crate::crypto::{sha256_hex, sign_b64, verify_b64};
use crate::Millis;

/// Header carrying the signature (base64url HMAC-SHA256).
pub const HEADER_SIGNATURE: &str = "x-flashgate-signature";
/// Header carrying the signing time, unix milliseconds.
pub const HEADER_TIMESTAMP: &str = "x-flashgate-timestamp";
/// Header carrying the edge's nonce for this request.
pub const HEADER_NONCE: &str = "x-flashgate-nonce";
/// Longest accepted nonce.
pub const MAX_NONCE_LEN: usize = 64;
/// Header carrying the user the edge authenticated (absent for public reads).
pub const HEADER_USER: &str = "x-flashgate-user";
/// Largest accepted distance between the signing time and the origin's clock.
pub const MAX_SKEW_MS: Millis = 30_000;

/// What the edge signs for one request.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    /// HTTP method, upper case.
    pub method: &'a str,
    /// Path and query as sent to the origin.
    pub path: &'a str,
    /// Authenticated user id, or "" for public reads.
    pub user: &'a str,
    /// Signing time, unix milliseconds.
    pub timestamp: Millis,
    /// Unique per request (1 to [`MAX_NONCE_LEN`] bytes, no newline).
    pub nonce: &'a str,
    /// The exact body bytes.
    pub body: &'a [u8],
}

impl Signed<'_> {
    fn canonical(&self) -> String {
        format!(
            "flashgate-edge-v2\n{}\n{}\n{}\n{}\n{}\n{}",
            self.method,
            self.path,
            self.user,
            self.timestamp,
            self.nonce,
            sha256_hex(self.body)
        )
    }

    /// The signature header value.
    pub fn sign(&self, secret: &[u8]) -> String {
        sign_b64(secret, self.canonical().as_bytes())
    }

    /// Checks `signature` and the clock skew against `now`.
    pub fn verify(&self, secret: &[u8], signature: &str, now: Millis) -> Result<(), SignError> {
        if self.nonce.is_empty() || self.nonce.len() > MAX_NONCE_LEN || self.nonce.contains('\n') {
            return Err(SignError::Missing);
        }
        if (now - self.timestamp).abs() > MAX_SKEW_MS {
            return Err(SignError::Stale);
        }
        if verify_b64(secret, self.canonical().as_bytes(), signature) {
            Ok(())
        } else {
            Err(SignError::Forged)
        }
    }
}

/// Why a signed request was refused (all answer 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignError {
    /// Signature, timestamp or nonce header missing or unreadable.
    Missing,
    /// The signature does not match.
    Forged,
    /// The timestamp is outside the allowed skew.
    Stale,
}

impl SignError {
    /// A stable code for logs and metrics.
    pub fn code(self) -> &'static str {
        match self {
            SignError::Missing => "unsigned",
            SignError::Forged => "forged",
            SignError::Stale => "stale",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Millis = 1_800_000_000_000;

    fn req(body: &[u8]) -> Signed<'_> {
        Signed {
            method: "POST",
            path: "/api/events/e1/purchase",
            user: "u1",
            timestamp: NOW,
            nonce: "n1",
            body,
        }
    }

    #[test]
    fn round_trip_within_skew() {
        let sig = req(b"{}").sign(b"s");
        assert_eq!(req(b"{}").verify(b"s", &sig, NOW + MAX_SKEW_MS), Ok(()));
        assert_eq!(req(b"{}").verify(b"s", &sig, NOW - MAX_SKEW_MS), Ok(()));
    }

    #[test]
    fn every_signed_part_matters() {
        let sig = req(b"{}").sign(b"s");
        assert_eq!(req(b"{ }").verify(b"s", &sig, NOW), Err(SignError::Forged));
        let mut other = req(b"{}");
        other.user = "u2";
        assert_eq!(other.verify(b"s", &sig, NOW), Err(SignError::Forged));
        other = req(b"{}");
        other.path = "/api/events/e2/purchase";
        assert_eq!(other.verify(b"s", &sig, NOW), Err(SignError::Forged));
        other = req(b"{}");
        other.method = "GET";
        assert_eq!(other.verify(b"s", &sig, NOW), Err(SignError::Forged));
        other = req(b"{}");
        other.nonce = "n2";
        assert_eq!(other.verify(b"s", &sig, NOW), Err(SignError::Forged));
        assert_eq!(req(b"{}").verify(b"t", &sig, NOW), Err(SignError::Forged));
    }

    #[test]
    fn a_nonce_is_required_and_bounded() {
        for nonce in ["", "a\nb", &"n".repeat(MAX_NONCE_LEN + 1)] {
            let mut r = req(b"{}");
            r.nonce = nonce;
            let sig = r.sign(b"s");
            assert_eq!(
                r.verify(b"s", &sig, NOW),
                Err(SignError::Missing),
                "{nonce:?}"
            );
        }
    }

    #[test]
    fn stale_beyond_skew() {
        let sig = req(b"").sign(b"s");
        assert_eq!(
            req(b"").verify(b"s", &sig, NOW + MAX_SKEW_MS + 1),
            Err(SignError::Stale)
        );
        assert_eq!(
            req(b"").verify(b"s", &sig, NOW - MAX_SKEW_MS - 1),
            Err(SignError::Stale)
        );
    }
}
