//! Whether a secret is fit to guard a sale: not an example from the docs, not guessable.

/// Parts of the example values in the docs and `infra/k8s`: a secret holding one was
/// copied, not generated.
const EXAMPLE_MARKS: [&str; 4] = ["change-me", "changeme", "example", "placeholder"];

/// The least estimated entropy of a secret, in bits: `openssl rand -hex 8` (16 hex
/// characters) is 64; a 16-digit number or a short word less.
const MIN_BITS: f64 = 64.0;

/// The fewest distinct characters a secret may have: a repeated pattern has fewer, a
/// random string of 16 or more characters practically never does.
const MIN_DISTINCT: usize = 5;

/// Why `secret` is unfit (known example, or guessable), or `None` when it is fit.
///
/// The entropy is estimated as its length times the bits of the character classes it uses
/// (digits 10, hex 16, lower or upper case 26, other 32): what a generator of that alphabet
/// would give. It catches short alphabets and, with [`MIN_DISTINCT`], repeats; not a
/// dictionary word, which the length and the example check are for.
pub(crate) fn weakness(secret: &[u8]) -> Option<&'static str> {
    let lower = String::from_utf8_lossy(secret).to_lowercase();
    if EXAMPLE_MARKS.iter().any(|mark| lower.contains(mark)) {
        return Some(
            "is an example value from the docs; generate one, e.g. `openssl rand -hex 24`",
        );
    }
    let mut seen = [false; 256];
    for b in secret {
        seen[usize::from(*b)] = true;
    }
    let distinct = seen.iter().filter(|s| **s).count();
    if distinct < MIN_DISTINCT || estimated_bits(secret) < MIN_BITS {
        return Some("is too easy to guess (too short an alphabet, or repeats); generate one, e.g. `openssl rand -hex 24`");
    }
    None
}

/// Length times log2 of the alphabet the secret's character classes span (digits with
/// only `a`–`f` count as hex).
fn estimated_bits(s: &[u8]) -> f64 {
    let has = |f: fn(&u8) -> bool| s.iter().any(f);
    let (digits, lower) = (has(u8::is_ascii_digit), has(u8::is_ascii_lowercase));
    let hex = digits && lower && !has(|b| b.is_ascii_lowercase() && *b > b'f');
    let mut alphabet = if hex {
        16
    } else {
        u32::from(digits) * 10 + u32::from(lower) * 26
    };
    alphabet += u32::from(has(u8::is_ascii_uppercase)) * 26;
    alphabet += u32::from(has(|b| !b.is_ascii_alphanumeric())) * 32;
    s.len() as f64 * f64::from(alphabet.max(1)).log2()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_and_guessable_secrets_are_refused_and_generated_ones_pass() {
        for bad in [
            "change-me-jwt-secret-shared-with-the-edge",
            "change-me-admin-bearer-token",
            "CHANGEME-CHANGEME-123",
            "aaaaaaaaaaaaaaaaaaaaaaaa",
            "1234567890123456",
            "abababababababababababab",
            "1212121212121212121212121212",
        ] {
            assert!(weakness(bad.as_bytes()).is_some(), "{bad}");
        }
        for good in [
            "3f9c1e0b7a5d2c48e6f1a9b0c3d7e2f5a8b1c4d9e0f3a6b7",
            "test-edge-secret-0123456789",
            "Zq8+Lm3/Vt0=Kp7xWc2Rn5Jb",
            // openssl rand -hex 8 and -base64 12: the shortest a generator gives.
            "9f3a07c2e4b1d856",
            "q2F+9xKp1Lm0Zw7c",
        ] {
            assert_eq!(weakness(good.as_bytes()), None, "{good}");
        }
    }
}
