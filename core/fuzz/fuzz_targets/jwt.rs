//! `jwt::verify` and `jwt::bearer`, the edge's first check of every shopper request.
//!
//! Modes (first byte): `S` header JSON `\0` payload JSON, signed with the secret so the
//! claims parsing past the signature is reached; `I` sub `\0` exp, issued then verified;
//! anything else: the rest is a token (or an `Authorization` value) as a client sends it.
#![no_main]

use flashgate_core::crypto::{b64, sign_b64};
use flashgate_core::ids::UserId;
use flashgate_core::jwt::{self, JwtError};
use flashgate_core_fuzz::{fields, ring, text, AUTH_SECRET, NOW};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode {
        b'S' => signed(rest),
        b'I' => issued(rest),
        _ => token(rest),
    }
});

/// A token as a client sends it: whatever verifies was signed with the secret, and no
/// token verifies under another.
fn token(rest: &[u8]) {
    let Some(raw) = text(rest) else { return };
    if let Some(t) = jwt::bearer(raw) {
        assert!(!t.is_empty() && t == t.trim() && raw.contains(t));
    }
    if let Ok(claims) = jwt::verify(raw, &ring(AUTH_SECRET), NOW) {
        assert!(NOW / 1000 < claims.exp, "expired token accepted: {raw:?}");
        assert_eq!(
            jwt::verify(raw, &ring(b"another-secret"), NOW),
            Err(JwtError::Signature)
        );
    }
}

/// Any header and claims, correctly signed: a token verifies only with `alg` HS256, an
/// `exp` after now and a valid `sub`, and then has exactly those claims.
fn signed(rest: &[u8]) {
    let [header, payload] = fields(rest, 2)[..] else {
        unreachable!()
    };
    let signing_input = format!("{}.{}", b64(header), b64(payload));
    let token = format!(
        "{signing_input}.{}",
        sign_b64(AUTH_SECRET, signing_input.as_bytes())
    );
    let verified = jwt::verify(&token, &ring(AUTH_SECRET), NOW);
    let Ok(claims) = verified else { return };
    assert!(NOW / 1000 < claims.exp);
    // Fields other than `alg`, `sub` and `exp` are skipped unread, invalid UTF-8 in their
    // strings included, which a full parse refuses: compare only what parses in full.
    if let Ok(header) = serde_json::from_slice::<Value>(header) {
        assert_eq!(header["alg"], "HS256");
    }
    let Ok(payload) = serde_json::from_slice::<Value>(payload) else {
        return;
    };
    assert_eq!(payload["sub"].as_str(), Some(claims.sub.as_str()));
    let exp = &payload["exp"];
    let want = exp.as_i64().or_else(|| exp.as_f64().map(|f| f as i64));
    assert_eq!(want, Some(claims.exp));
}

/// An issued token verifies, with the claims it was given, until its expiry.
fn issued(rest: &[u8]) {
    let [sub, exp] = fields(rest, 2)[..] else {
        unreachable!()
    };
    let (Some(sub), Some(exp)) = (
        text(sub),
        text(exp).and_then(|e| e.trim().parse::<i64>().ok()),
    ) else {
        return;
    };
    let Ok(sub) = UserId::parse(sub) else { return };
    let token = jwt::issue(&sub, exp, AUTH_SECRET);
    match jwt::verify(&token, &ring(AUTH_SECRET), NOW) {
        Ok(claims) => {
            assert!(NOW / 1000 < exp);
            assert_eq!((claims.sub, claims.exp), (sub, exp));
        }
        Err(e) => assert!(
            NOW / 1000 >= exp && e == JwtError::Expired,
            "{e:?} for {token}"
        ),
    }
    assert_eq!(
        jwt::bearer(&format!("Bearer {token}")),
        Some(token.as_str())
    );
}
