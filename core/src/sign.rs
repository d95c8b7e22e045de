//! The edge → origin request signature.
//!
//! The edge signs `method`, `path`, the authenticated user (empty for public reads), a
//! timestamp and the SHA-256 of the body with `EDGE_SECRET`; the origin recomputes it
//! and refuses anything unsigned, forged, or more than [`MAX_SKEW_MS`] away from its clock.

use crate::crypto::{sha256_hex, sign_b64, verify_b64};
use crate::Millis;

/// Header carrying the signature (base64url HMAC-SHA256).
pub const HEADER_SIGNATURE: &str = "x-flashgate-signature";
/// Header carrying the signing time, unix milliseconds.
pub const HEADER_TIMESTAMP: &str = "x-flashgate-timestamp";
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
    /// The exact body bytes.
    pub body: &'a [u8],
}

impl Signed<'_> {
    fn canonical(&self) -> String {
        format!(
            "flashgate-edge-v1\n{}\n{}\n{}\n{}\n{}",
            self.method,
            self.path,
            self.user,
            self.timestamp,
            sha256_hex(self.body)
        )
    }

    /// The signature header value.
    pub fn sign(&self, secret: &[u8]) -> String {
        sign_b64(secret, self.canonical().as_bytes())
    }

    /// Checks `signature` and the clock skew against `now`.
    pub fn verify(&self, secret: &[u8], signature: &str, now: Millis) -> Result<(), SignError> {
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
    /// Signature or timestamp header missing or unreadable.
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
        assert_eq!(req(b"{}").verify(b"t", &sig, NOW), Err(SignError::Forged));
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
