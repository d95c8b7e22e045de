//! `Signed::verify`, the origin's check of the edge signature headers
//! (`x-flashgate-signature`, `-timestamp`, `-nonce`, `-user`) over the environment,
//! method, path and body.
//!
//! Modes (first byte): `V` method `\0` path `\0` user `\0` nonce `\0` skew ms `\0` body,
//! signed by the edge at now + skew then checked by the origin at now; anything else:
//! signature `\0` timestamp `\0` nonce `\0` user `\0` method `\0` path `\0` body, as
//! headers and a request reach the origin.
#![no_main]

use flashgate_core::crypto::{sha256_hex, sign_b64};
use flashgate_core::keyring::KeyUsed;
use flashgate_core::sign::{SignError, Signed, MAX_NONCE_LEN, MAX_SKEW_MS};
use flashgate_core_fuzz::{fields, ring, text, EDGE_SECRET, ENVIRONMENT, NOW};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode == b'V' {
        signed_by_the_edge(rest);
    } else {
        as_received(rest);
    }
});

fn nonce_ok(nonce: &str) -> bool {
    !nonce.is_empty() && nonce.len() <= MAX_NONCE_LEN && !nonce.contains('\n')
}

/// Headers as anyone may send them: what passes was signed with the edge secret, within
/// the skew, with a usable nonce.
fn as_received(rest: &[u8]) {
    let [sig, ts, nonce, user, method, path, body] = fields(rest, 7)[..] else {
        unreachable!()
    };
    let (Some(sig), Some(timestamp), Some(nonce), Some(user), Some(method), Some(path)) = (
        text(sig),
        text(ts).and_then(|t| t.parse().ok()),
        text(nonce),
        text(user),
        text(method),
        text(path),
    ) else {
        return;
    };
    let s = Signed {
        environment: ENVIRONMENT,
        method,
        path,
        user,
        timestamp,
        nonce,
        body,
        room_position: None,
        client_net: None,
    };
    if s.verify(&ring(EDGE_SECRET), sig, NOW).is_ok() {
        assert_eq!(
            sig,
            s.sign(EDGE_SECRET),
            "a second spelling of a valid signature"
        );
        assert!(nonce_ok(nonce) && NOW.abs_diff(timestamp) <= MAX_SKEW_MS.unsigned_abs());
        assert_eq!(
            s.verify(&ring(b"another-secret"), sig, NOW),
            Err(SignError::Forged)
        );
    }
}

/// What the edge signs, the origin accepts within the skew, and not with any part changed;
/// the MAC is the MAC of the documented canonical string.
fn signed_by_the_edge(rest: &[u8]) {
    let [method, path, user, nonce, skew, body] = fields(rest, 6)[..] else {
        unreachable!()
    };
    let (Some(method), Some(path), Some(user), Some(nonce), Some(skew)) = (
        text(method),
        text(path),
        text(user),
        text(nonce),
        text(skew).and_then(|s| s.trim().parse::<i64>().ok()),
    ) else {
        return;
    };
    let Some(timestamp) = NOW.checked_add(skew) else {
        return;
    };
    let s = Signed {
        environment: ENVIRONMENT,
        method,
        path,
        user,
        timestamp,
        nonce,
        body,
        room_position: None,
        client_net: None,
    };
    let sig = s.sign(EDGE_SECRET);
    let canonical = format!(
        "flashgate-edge-v3\n{ENVIRONMENT}\n{method}\n{path}\n{user}\n{timestamp}\n{nonce}\n{}",
        sha256_hex(body)
    );
    assert_eq!(sig, sign_b64(EDGE_SECRET, canonical.as_bytes()));
    let expected = if !nonce_ok(nonce) {
        Err(SignError::Missing)
    } else if skew.unsigned_abs() > MAX_SKEW_MS.unsigned_abs() {
        Err(SignError::Stale)
    } else {
        Ok(KeyUsed::Current)
    };
    assert_eq!(s.verify(&ring(EDGE_SECRET), &sig, NOW), expected);
    if expected.is_ok() {
        let mut longer = body.to_vec();
        longer.push(b' ');
        let changed = Signed { body: &longer, ..s };
        assert_eq!(
            changed.verify(&ring(EDGE_SECRET), &sig, NOW),
            Err(SignError::Forged)
        );
        let other_user = format!("{user}x");
        let changed = Signed {
            user: &other_user,
            ..s
        };
        assert_eq!(
            changed.verify(&ring(EDGE_SECRET), &sig, NOW),
            Err(SignError::Forged)
        );
        let changed = Signed {
            environment: "staging",
            ..s
        };
        assert_eq!(
            changed.verify(&ring(EDGE_SECRET), &sig, NOW),
            Err(SignError::Forged)
        );
    }
}
