//! Helpers shared by the fuzz targets: how an input is cut into fields, and the fixed
//! secrets and clock the targets check against.
//!
//! Inputs are plain bytes so the seed corpus (`corpus/<target>/`) stays readable and
//! easy to extend by hand: a leading mode byte where a target has several modes, then
//! fields separated by NUL bytes (`\0`), the last field taking the rest.
#![deny(unsafe_code)]

/// The secret of shopper tokens in every target.
pub const AUTH_SECRET: &[u8] = b"fuzz-auth-secret-0123456789";
/// The edge secret (request signatures; the ticket key derives from it).
pub const EDGE_SECRET: &[u8] = b"fuzz-edge-secret-0123456789";
/// The ticket key, derived as the edge derives it (`edge/src/config.rs`).
pub const TICKET_KEY: &[u8] = b"ticket:fuzz-edge-secret-0123456789";
/// The environment the edge signs for and the origin checks.
pub const ENVIRONMENT: &str = "production";

/// `secret` alone as a key ring (no rotation under way).
pub fn ring(secret: &[u8]) -> flashgate_core::keyring::KeyRing {
    flashgate_core::keyring::KeyRing::single(secret)
}

/// "Now" of every check: 2027-01-15T08:00:00Z. The clock is not an input an attacker
/// controls, so it stays fixed (or moves a little) rather than taking any i64.
pub const NOW: i64 = 1_800_000_000_000;

/// Splits `data` at its first `n - 1` NUL bytes into exactly `n` fields (missing
/// trailing fields are empty).
pub fn fields(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = data.splitn(n, |b| *b == 0).collect();
    out.resize(n, &[]);
    out
}

/// The field as text, `None` when it is not UTF-8 (as a header that is not a string).
pub fn text(field: &[u8]) -> Option<&str> {
    std::str::from_utf8(field).ok()
}

/// The field as an optional header: empty is absent.
pub fn header(field: &[u8]) -> Option<&str> {
    text(field).filter(|s| !s.is_empty())
}
