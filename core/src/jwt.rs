//! HS256 shopper tokens: `Authorization: Bearer <JWT>` with claims `sub` and `exp`.
//!
//! Only HS256 is accepted: the algorithm is pinned here, never read from the token to
//! choose a verifier, so `alg: none` and algorithm-confusion tokens fail. A token is
//! accepted under `AUTH_SECRET` or, during a rotation, the previous one (see
//! [`crate::keyring`]).

use crate::crypto::{b64, sign_b64, unb64, verify_b64};
use crate::ids::UserId;
use crate::keyring::KeyRing;
use serde::Deserialize;

/// The verified claims of a shopper token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The shopper.
    pub sub: UserId,
    /// Expiry, unix seconds.
    pub exp: i64,
}

/// Why a token was refused. All of them answer 401; the kind is for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtError {
    /// Not three base64url JSON parts.
    Malformed,
    /// `alg` is not HS256.
    Algorithm,
    /// The HMAC does not match.
    Signature,
    /// `exp` is missing or not after now.
    Expired,
    /// `sub` is missing or not a valid user id.
    Subject,
}

impl JwtError {
    /// A stable code for logs and metrics.
    pub fn code(self) -> &'static str {
        match self {
            JwtError::Malformed => "malformed",
            JwtError::Algorithm => "algorithm",
            JwtError::Signature => "signature",
            JwtError::Expired => "expired",
            JwtError::Subject => "subject",
        }
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

#[derive(Deserialize)]
struct RawClaims {
    sub: Option<String>,
    exp: Option<serde_json::Number>,
}

const HEADER_B64: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"; // {"alg":"HS256","typ":"JWT"}

/// Verifies an HS256 token at `now_ms`, signed under any key of `keys`.
pub fn verify(token: &str, keys: &KeyRing, now_ms: i64) -> Result<Claims, JwtError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let header: Header = unb64(h)
        .and_then(|raw| serde_json::from_slice(&raw).ok())
        .ok_or(JwtError::Malformed)?;
    if header.alg != "HS256" {
        return Err(JwtError::Algorithm);
    }
    let signed = &token[..h.len() + 1 + p.len()];
    if keys
        .find(|key| verify_b64(key, signed.as_bytes(), s))
        .is_none()
    {
        return Err(JwtError::Signature);
    }
    let claims: RawClaims = unb64(p)
        .and_then(|raw| serde_json::from_slice(&raw).ok())
        .ok_or(JwtError::Malformed)?;
    let exp = claims
        .exp
        .and_then(|n| n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)))
        .ok_or(JwtError::Expired)?;
    if now_ms / 1000 >= exp {
        return Err(JwtError::Expired);
    }
    let sub = claims
        .sub
        .and_then(|s| UserId::parse(&s).ok())
        .ok_or(JwtError::Subject)?;
    Ok(Claims { sub, exp })
}

/// Issues an HS256 token for `sub` expiring at `exp` (unix seconds).
pub fn issue(sub: &UserId, exp: i64, secret: &[u8]) -> String {
    let payload = serde_json::json!({ "sub": sub.as_str(), "exp": exp }).to_string();
    let signed = format!("{HEADER_B64}.{}", b64(payload.as_bytes()));
    let sig = sign_b64(secret, signed.as_bytes());
    format!("{signed}.{sig}")
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer(header_value: &str) -> Option<&str> {
    let (scheme, token) = header_value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"test-secret";
    const NOW: i64 = 1_800_000_000_000;

    fn keys() -> KeyRing {
        KeyRing::single(SECRET)
    }

    fn user() -> UserId {
        UserId::parse("alice_1").expect("valid")
    }

    fn forge(header: &str, payload: &str, key: &[u8]) -> String {
        let signed = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
        format!("{signed}.{}", sign_b64(key, signed.as_bytes()))
    }

    #[test]
    fn issued_token_verifies() {
        let t = issue(&user(), NOW / 1000 + 60, SECRET);
        assert_eq!(verify(&t, &keys(), NOW).expect("valid").sub, user());
    }

    #[test]
    fn matches_a_token_from_another_library() {
        // Computed independently with Python's hmac and base64 modules.
        let t = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZV8xIiwiZXhwIjoxOTAwMDAwMDAwfQ.59Rb9F1IWweKJsVkJhcs6g7UGydUUfpmTSkpnDY8avo";
        let expected = forge(
            r#"{"alg":"HS256","typ":"JWT"}"#,
            r#"{"sub":"alice_1","exp":1900000000}"#,
            SECRET,
        );
        assert_eq!(t, expected);
        assert!(verify(t, &keys(), NOW).is_ok());
    }

    #[test]
    fn expiry_is_exclusive() {
        let t = issue(&user(), NOW / 1000, SECRET);
        assert_eq!(verify(&t, &keys(), NOW), Err(JwtError::Expired));
        assert!(verify(&t, &keys(), NOW - 1000).is_ok());
    }

    #[test]
    fn rejects_other_algorithms_and_keys() {
        let payload = r#"{"sub":"alice_1","exp":1900000000}"#;
        let none = format!(
            "{}.{}.",
            b64(br#"{"alg":"none","typ":"JWT"}"#),
            b64(payload.as_bytes())
        );
        assert_eq!(verify(&none, &keys(), NOW), Err(JwtError::Algorithm));
        let hs512 = forge(r#"{"alg":"HS512"}"#, payload, SECRET);
        assert_eq!(verify(&hs512, &keys(), NOW), Err(JwtError::Algorithm));
        let other_key = forge(r#"{"alg":"HS256"}"#, payload, b"other");
        assert_eq!(verify(&other_key, &keys(), NOW), Err(JwtError::Signature));
    }

    #[test]
    fn rejects_bad_subjects_and_shapes() {
        let bad_sub = forge(
            r#"{"alg":"HS256"}"#,
            r#"{"sub":"a b","exp":1900000000}"#,
            SECRET,
        );
        assert_eq!(verify(&bad_sub, &keys(), NOW), Err(JwtError::Subject));
        let no_exp = forge(r#"{"alg":"HS256"}"#, r#"{"sub":"a"}"#, SECRET);
        assert_eq!(verify(&no_exp, &keys(), NOW), Err(JwtError::Expired));
        for junk in ["", "a.b", "a.b.c.d", "!!.!!.!!"] {
            assert_eq!(
                verify(junk, &keys(), NOW),
                Err(JwtError::Malformed),
                "{junk}"
            );
        }
    }

    #[test]
    fn during_a_rotation_both_keys_verify_and_a_third_does_not() {
        let ring = KeyRing::new(b"new-secret", Some(b"old-secret".as_slice()));
        for key in [b"new-secret".as_slice(), b"old-secret"] {
            let t = issue(&user(), NOW / 1000 + 60, key);
            assert_eq!(verify(&t, &ring, NOW).expect("valid").sub, user());
        }
        let third = issue(&user(), NOW / 1000 + 60, b"third-secret");
        assert_eq!(verify(&third, &ring, NOW), Err(JwtError::Signature));
        // Once the rotation is over, the old key's tokens are refused.
        let old = issue(&user(), NOW / 1000 + 60, b"old-secret");
        assert_eq!(
            verify(&old, &KeyRing::single(b"new-secret"), NOW),
            Err(JwtError::Signature)
        );
    }

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
    }
}
