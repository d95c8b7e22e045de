//! HMAC-SHA256 and base64url: the primitives under tokens, tickets and signatures.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// HMAC-SHA256.
pub type HmacSha256 = Hmac<Sha256>;

/// The HMAC of `key` with `msg` fed in; feed more with [`Mac::update`].
pub fn mac(key: &[u8], msg: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(msg);
    m
}

/// HMAC-SHA256 of `msg` under `key`, base64url without padding.
pub fn sign_b64(key: &[u8], msg: &[u8]) -> String {
    b64(&mac(key, msg).finalize().into_bytes())
}

/// Checks a base64url HMAC-SHA256 tag in constant time.
pub fn verify_b64(key: &[u8], msg: &[u8], tag_b64: &str) -> bool {
    verify_tag(mac(key, msg), tag_b64)
}

/// Checks a base64url tag against a MAC fed its message, in constant time. A tag is 43
/// characters (32 bytes), decoded on the stack; any other length is refused.
pub fn verify_tag(mac: HmacSha256, tag_b64: &str) -> bool {
    let mut tag = [0u8; 33];
    URL_SAFE_NO_PAD
        .decode_slice(tag_b64.as_bytes(), &mut tag)
        .is_ok_and(|n| n == 32)
        && mac.verify_slice(&tag[..32]).is_ok()
}

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    let mut out = [0u8; 64];
    sha256_hex_into(data, &mut out)
        .iter()
        .copied()
        .map(char::from)
        .collect()
}

/// Lowercase hex SHA-256 of `data`, written into `out`.
pub fn sha256_hex_into<'a>(data: &[u8], out: &'a mut [u8; 64]) -> &'a [u8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in Sha256::digest(data).into_iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0x0f)];
    }
    out
}

/// base64url without padding.
pub fn b64(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// Decodes base64url without padding; `None` on any bad character.
pub fn unb64(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let tag = sign_b64(b"Jefe", b"what do ya want for nothing?");
        let hex: String = unb64(&tag)
            .expect("own encoding")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn sha256_hex_matches_the_standard_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn verify_rejects_other_key_and_garbage() {
        let tag = sign_b64(b"k1", b"m");
        assert!(verify_b64(b"k1", b"m", &tag));
        assert!(!verify_b64(b"k2", b"m", &tag));
        assert!(!verify_b64(b"k1", b"m2", &tag));
        assert!(!verify_b64(b"k1", b"m", "***"));
    }
}
