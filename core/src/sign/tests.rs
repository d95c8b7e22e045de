//! The signed request's rules: what verifies, and each way a request is refused.

use super::*;

const NOW: Millis = 1_800_000_000_000;

fn keys(secret: &[u8]) -> KeyRing {
    KeyRing::single(secret)
}

fn req(body: &[u8]) -> Signed<'_> {
    Signed {
        environment: "production",
        method: "POST",
        path: "/api/events/e1/purchase",
        user: "u1",
        timestamp: NOW,
        nonce: "n1",
        body,
        room_position: None,
        client_net: None,
    }
}

/// `r`'s canonical form written out by hand, with `tail` after the body's digest.
fn canonical(r: &Signed<'_>, tail: &str) -> String {
    format!(
        "flashgate-edge-v3\n{}\n{}\n{}\n{}\n{}\n{}\n{}{tail}",
        r.environment,
        r.method,
        r.path,
        r.user,
        r.timestamp,
        r.nonce,
        crypto::sha256_hex(r.body)
    )
}

#[test]
fn the_client_net_is_signed_after_the_position() {
    let mut r = req(b"{}");
    r.room_position = Some(7);
    r.client_net = Some("203.0.113.0/24");
    let canonical = canonical(&r, "\n7\nnet 203.0.113.0/24");
    let sig = r.sign(b"s");
    assert_eq!(sig, crypto::sign_b64(b"s", canonical.as_bytes()));
    for other in [None, Some("203.0.114.0/24")] {
        let changed = Signed {
            client_net: other,
            ..r
        };
        assert_eq!(
            changed.verify(&keys(b"s"), &sig, NOW),
            Err(SignError::Forged)
        );
    }
    // Without a position the network line cannot pass for one.
    let no_position = Signed {
        room_position: None,
        ..r
    };
    assert_ne!(no_position.sign(b"s"), sig);
}

#[test]
fn a_client_net_is_the_network_not_the_address() {
    assert_eq!(client_net("10.1.2.3".parse().expect("ip")), "10.1.2.0/24");
    assert_eq!(client_net("::1".parse().expect("ip")), "0:0:0:0::/64");
    for net in ["10.1.2.0/24", "0:0:0:0::/64", "2001:db8:ffff:ffff::/64"] {
        assert!(valid_client_net(net), "{net}");
    }
    for bad in ["10.1.2.0", "10.1.2.0/24/1", "10.1.2.0/24 x", "net 1/2\n3"] {
        assert!(!valid_client_net(bad), "{bad}");
    }
}

#[test]
fn the_room_position_is_signed() {
    let mut r = req(b"{}");
    r.room_position = Some(42);
    let canonical = canonical(&r, "\n42");
    let sig = r.sign(b"s");
    assert_eq!(sig, crypto::sign_b64(b"s", canonical.as_bytes()));
    let top = Signed {
        room_position: Some(u64::MAX),
        ..r
    };
    let canonical_top = format!("{}\n{}", &canonical[..canonical.len() - 3], u64::MAX);
    assert_eq!(
        top.sign(b"s"),
        crypto::sign_b64(b"s", canonical_top.as_bytes())
    );
    assert_eq!(r.verify(&keys(b"s"), &sig, NOW), Ok(KeyUsed::Current));
    // Dropped, added or changed: forged.
    for other in [None, Some(41), Some(420)] {
        let changed = Signed {
            room_position: other,
            ..r
        };
        assert_eq!(
            changed.verify(&keys(b"s"), &sig, NOW),
            Err(SignError::Forged)
        );
    }
    assert_eq!(
        r.verify(&keys(b"s"), &req(b"{}").sign(b"s"), NOW),
        Err(SignError::Forged)
    );
}

#[test]
fn signs_the_documented_canonical_form() {
    // The edge and the origin of different versions must agree: the MAC fed piece by
    // piece is the MAC of the canonical string.
    for timestamp in [0, 7, NOW, -42, Millis::MAX, Millis::MIN] {
        let mut r = req(b"{\"turnstile_token\":\"x\"}");
        r.timestamp = timestamp;
        let canonical = canonical(&r, "");
        assert_eq!(
            r.sign(b"s"),
            crypto::sign_b64(b"s", canonical.as_bytes()),
            "{timestamp}"
        );
    }
}

#[test]
fn only_a_well_formed_tag_is_accepted() {
    let sig = req(b"{}").sign(b"s");
    assert_eq!(sig.len(), 43);
    for bad in [
        "",
        "***",
        &sig[..42],
        &format!("{sig}A"),
        &format!("{sig}AAAA"),
    ] {
        assert_eq!(
            req(b"{}").verify(&keys(b"s"), bad, NOW),
            Err(SignError::Forged),
            "{bad:?}"
        );
    }
}

#[test]
fn round_trip_within_skew() {
    let sig = req(b"{}").sign(b"s");
    assert_eq!(
        req(b"{}").verify(&keys(b"s"), &sig, NOW + MAX_SKEW_MS),
        Ok(KeyUsed::Current)
    );
    assert_eq!(
        req(b"{}").verify(&keys(b"s"), &sig, NOW - MAX_SKEW_MS),
        Ok(KeyUsed::Current)
    );
}

#[test]
fn every_signed_part_matters() {
    let sig = req(b"{}").sign(b"s");
    assert_eq!(
        req(b"{ }").verify(&keys(b"s"), &sig, NOW),
        Err(SignError::Forged)
    );
    let mut other = req(b"{}");
    other.user = "u2";
    assert_eq!(other.verify(&keys(b"s"), &sig, NOW), Err(SignError::Forged));
    other = req(b"{}");
    other.path = "/api/events/e2/purchase";
    assert_eq!(other.verify(&keys(b"s"), &sig, NOW), Err(SignError::Forged));
    other = req(b"{}");
    other.method = "GET";
    assert_eq!(other.verify(&keys(b"s"), &sig, NOW), Err(SignError::Forged));
    other = req(b"{}");
    other.environment = "staging";
    assert_eq!(other.verify(&keys(b"s"), &sig, NOW), Err(SignError::Forged));
    other = req(b"{}");
    other.nonce = "n2";
    assert_eq!(other.verify(&keys(b"s"), &sig, NOW), Err(SignError::Forged));
    assert_eq!(
        req(b"{}").verify(&keys(b"t"), &sig, NOW),
        Err(SignError::Forged)
    );
}

#[test]
fn a_request_signed_for_one_environment_is_refused_by_another() {
    let mut staging = req(b"{}");
    staging.environment = "staging";
    let sig = staging.sign(b"shared");
    assert_eq!(
        staging.verify(&keys(b"shared"), &sig, NOW),
        Ok(KeyUsed::Current)
    );
    // The same bytes on the wire, checked by an origin of another environment.
    assert_eq!(
        req(b"{}").verify(&keys(b"shared"), &sig, NOW),
        Err(SignError::Forged)
    );
}

#[test]
fn during_a_rotation_both_keys_verify_and_a_third_does_not() {
    let ring = KeyRing::new(b"new", Some(b"old".as_slice()));
    let r = req(b"{}");
    assert_eq!(r.verify(&ring, &r.sign(b"new"), NOW), Ok(KeyUsed::Current));
    assert_eq!(r.verify(&ring, &r.sign(b"old"), NOW), Ok(KeyUsed::Previous));
    assert_eq!(
        r.verify(&ring, &r.sign(b"third"), NOW),
        Err(SignError::Forged)
    );
    // A stale request is stale under either key.
    assert_eq!(
        r.verify(&ring, &r.sign(b"old"), NOW + MAX_SKEW_MS + 1),
        Err(SignError::Stale)
    );
}

#[test]
fn a_nonce_is_required_and_bounded() {
    for nonce in ["", "a\nb", &"n".repeat(MAX_NONCE_LEN + 1)] {
        let mut r = req(b"{}");
        r.nonce = nonce;
        let sig = r.sign(b"s");
        assert_eq!(
            r.verify(&keys(b"s"), &sig, NOW),
            Err(SignError::Missing),
            "{nonce:?}"
        );
    }
}

#[test]
fn stale_beyond_skew() {
    let sig = req(b"").sign(b"s");
    assert_eq!(
        req(b"").verify(&keys(b"s"), &sig, NOW + MAX_SKEW_MS + 1),
        Err(SignError::Stale)
    );
    assert_eq!(
        req(b"").verify(&keys(b"s"), &sig, NOW - MAX_SKEW_MS - 1),
        Err(SignError::Stale)
    );
    // The far ends of the header's range are stale too, not an overflow.
    for timestamp in [Millis::MIN, Millis::MAX] {
        let mut r = req(b"");
        r.timestamp = timestamp;
        let sig = r.sign(b"s");
        assert_eq!(r.verify(&keys(b"s"), &sig, NOW), Err(SignError::Stale));
    }
}
