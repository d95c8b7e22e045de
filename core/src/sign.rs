//! The edge → origin request signature.
//!
//! The edge signs the environment it serves, `method`, `path`, the authenticated user
//! (empty for public reads), a timestamp, a nonce of its own and the SHA-256 of the body
//! with `EDGE_SECRET`; the origin recomputes it with its own environment and refuses
//! anything unsigned, forged, made for another environment, or more than [`MAX_SKEW_MS`]
//! away from its clock. The nonce makes two identical requests of one millisecond (a
//! double click) sign differently, so the origin's replay guard, which remembers
//! signatures, refuses only a request sent twice. The environment keeps a request
//! captured on staging from being replayed on production when the two share a secret.
//! A purchase admitted by the room also carries its room position
//! ([`HEADER_ROOM_POSITION`]), signed with the rest, so the origin records a position only
//! the edge can have given; a purchase carries its client's network too
//! ([`HEADER_CLIENT_NET`], see [`client_net`]), for the sale's fairness report.

use crate::crypto::{self, b64, sha256_hex_into, HmacSha256};
use crate::keyring::{KeyRing, KeyUsed};
use crate::Millis;
use hmac::Mac;

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
/// Header carrying the room position the edge admitted a purchase at (absent without
/// the room); covered by the signature.
pub const HEADER_ROOM_POSITION: &str = "x-flashgate-room-position";
/// Header carrying the network of the client a purchase came from (`a.b.c.0/24` or
/// `x:x:x:x::/64`, see [`client_net`]); covered by the signature.
pub const HEADER_CLIENT_NET: &str = "x-flashgate-client-net";
/// Longest client network text.
pub const MAX_CLIENT_NET_LEN: usize = 48;
/// Largest accepted distance between the signing time and the origin's clock.
pub const MAX_SKEW_MS: Millis = 30_000;
/// The environment of an edge and an origin that name none (the local stack).
pub const DEFAULT_ENVIRONMENT: &str = "dev";
/// Longest environment name.
pub const MAX_ENVIRONMENT_LEN: usize = 32;

/// Whether `name` can name an environment: 1 to [`MAX_ENVIRONMENT_LEN`] characters of
/// `a-z`, `0-9` and `-` (so it can never run into the next signed field).
///
/// ```
/// use flashgate_core::sign::valid_environment;
/// assert!(valid_environment("production"));
/// assert!(!valid_environment(""));
/// assert!(!valid_environment("Staging"));
/// assert!(!valid_environment("dev\nPOST"));
/// ```
pub fn valid_environment(name: &str) -> bool {
    (1..=MAX_ENVIRONMENT_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The network a client address belongs to, as the fairness report groups wins: its /24
/// for IPv4, its /64 for IPv6 (never the address itself).
///
/// ```
/// use flashgate_core::sign::client_net;
/// assert_eq!(client_net("203.0.113.77".parse().unwrap()), "203.0.113.0/24");
/// assert_eq!(client_net("2001:db8:1:2:3:4:5:6".parse().unwrap()), "2001:db8:1:2::/64");
/// ```
pub fn client_net(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        std::net::IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// Whether `net` can be a [`client_net`]: at most [`MAX_CLIENT_NET_LEN`] characters of
/// hex digits, `.`, `:` and one `/` (so it can never run into another signed field).
///
/// ```
/// use flashgate_core::sign::valid_client_net;
/// assert!(valid_client_net("203.0.113.0/24"));
/// assert!(!valid_client_net("203.0.113.0/24\n42"));
/// assert!(!valid_client_net(""));
/// ```
pub fn valid_client_net(net: &str) -> bool {
    (1..=MAX_CLIENT_NET_LEN).contains(&net.len())
        && net.bytes().filter(|b| *b == b'/').count() == 1
        && net
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || matches!(b, b'.' | b':' | b'/'))
}

/// What the edge signs for one request.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    /// The environment the request is meant for (edge `ENVIRONMENT`, origin
    /// `environment`), see [`valid_environment`].
    pub environment: &'a str,
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
    /// The room position the edge admitted the purchase at, if any.
    pub room_position: Option<u64>,
    /// The client's network (a purchase's, when the edge knows its address).
    pub client_net: Option<&'a str>,
}

impl Signed<'_> {
    /// The MAC of the canonical form
    /// `flashgate-edge-v3\n{environment}\n{method}\n{path}\n{user}\n{timestamp}\n{nonce}\n{hex sha256(body)}`,
    /// then `\n{room position}` when there is one and `\nnet {client net}` when there is
    /// one, fed to the MAC piece by piece: checking
    /// a request allocates nothing. The digest has a fixed length, so a request with a
    /// position never signs like one without: adding, dropping or changing the position
    /// header makes the signature forged.
    fn mac(&self, secret: &[u8]) -> HmacSha256 {
        let mut ts = [0u8; 20];
        let mut digest = [0u8; 64];
        let mut m = crypto::mac(secret, b"flashgate-edge-v3\n");
        for part in [
            self.environment.as_bytes(),
            b"\n",
            self.method.as_bytes(),
            b"\n",
            self.path.as_bytes(),
            b"\n",
            self.user.as_bytes(),
            b"\n",
            decimal(self.timestamp, &mut ts),
            b"\n",
            self.nonce.as_bytes(),
            b"\n",
            sha256_hex_into(self.body, &mut digest),
        ] {
            m.update(part);
        }
        if let Some(position) = self.room_position {
            let mut pos = [0u8; 20];
            m.update(b"\n");
            m.update(unsigned_decimal(position, &mut pos));
        }
        if let Some(net) = self.client_net {
            m.update(b"\nnet ");
            m.update(net.as_bytes());
        }
        m
    }

    /// The signature header value, under `secret` (the edge's current key).
    pub fn sign(&self, secret: &[u8]) -> String {
        b64(&self.mac(secret).finalize().into_bytes())
    }

    /// Checks the clock skew against `now`, then `signature` under each key of `keys`;
    /// answers the key that signed it.
    pub fn verify(
        &self,
        keys: &KeyRing,
        signature: &str,
        now: Millis,
    ) -> Result<KeyUsed, SignError> {
        check_headers(self.timestamp, self.nonce, now)?;
        keys.find(|key| crypto::verify_tag(self.mac(key), signature))
            .ok_or(SignError::Forged)
    }
}

/// What can be checked before the body is read: a usable nonce and a timestamp within
/// [`MAX_SKEW_MS`] of `now` (so a stale or malformed request never holds a connection
/// while its body trickles in).
///
/// ```
/// use flashgate_core::sign::{check_headers, SignError, MAX_SKEW_MS};
/// assert_eq!(check_headers(1_000, "n1", 1_000), Ok(()));
/// assert_eq!(check_headers(0, "n1", MAX_SKEW_MS + 1), Err(SignError::Stale));
/// assert_eq!(check_headers(1_000, "", 1_000), Err(SignError::Missing));
/// ```
pub fn check_headers(timestamp: Millis, nonce: &str, now: Millis) -> Result<(), SignError> {
    if nonce.is_empty() || nonce.len() > MAX_NONCE_LEN || nonce.contains('\n') {
        return Err(SignError::Missing);
    }
    if now.abs_diff(timestamp) > MAX_SKEW_MS.unsigned_abs() {
        return Err(SignError::Stale);
    }
    Ok(())
}

/// `n` in decimal, written into `buf`.
fn decimal(n: Millis, buf: &mut [u8; 20]) -> &[u8] {
    // Never a real signing time below zero, but signed and checked the same way as
    // `format!`: the digits go last, leaving one byte for the sign.
    let at = buf.len() - unsigned_decimal(n.unsigned_abs(), buf).len();
    if n < 0 {
        buf[at - 1] = b'-';
        return &buf[at - 1..];
    }
    &buf[at..]
}

/// The digits of `n`, written at the end of `buf` (20 bytes hold `u64::MAX`).
fn unsigned_decimal(n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut rest = n;
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    &buf[at..]
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
mod tests;
