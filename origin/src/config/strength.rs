//! Whether a secret is fit to guard a sale: not an example from the docs, not guessable.

/// Parts of the example values in the docs and `infra/k8s`: a secret holding one was
/// copied, not generated.
const EXAMPLE_MARKS: [&str; 4] = ["change-me", "changeme", "example", "placeholder"];

/// The least estimated entropy of a secret, in bits: `openssl rand -hex 24` gives about
/// 190; a 16-character word or a keyboard run far less.
const MIN_BITS: f64 = 64.0;

/// Why `secret` is unfit (known example, or too little entropy), or `None` when it is fit.
///
/// The entropy is estimated from the secret's own character frequencies (Shannon), which
/// catches repeats and short alphabets, not a dictionary word of many distinct letters;
/// that is what the length and the example check are for.
pub(crate) fn weakness(secret: &[u8]) -> Option<&'static str> {
    let lower = String::from_utf8_lossy(secret).to_lowercase();
    if EXAMPLE_MARKS.iter().any(|mark| lower.contains(mark)) {
        return Some(
            "is an example value from the docs; generate one, e.g. `openssl rand -hex 24`",
        );
    }
    if estimated_bits(secret) < MIN_BITS {
        return Some("is too easy to guess (too few distinct characters); generate one, e.g. `openssl rand -hex 24`");
    }
    None
}

/// Shannon entropy of `s`'s byte frequencies, times its length.
fn estimated_bits(s: &[u8]) -> f64 {
    let mut counts = [0u32; 256];
    for b in s {
        counts[usize::from(*b)] += 1;
    }
    let n = s.len() as f64;
    let per_char: f64 = counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = f64::from(*c) / n;
            -p * p.log2()
        })
        .sum();
    per_char * n
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
        ] {
            assert!(weakness(bad.as_bytes()).is_some(), "{bad}");
        }
        for good in [
            "3f9c1e0b7a5d2c48e6f1a9b0c3d7e2f5a8b1c4d9e0f3a6b7",
            "test-edge-secret-0123456789",
            "Zq8+Lm3/Vt0=Kp7xWc2Rn5Jb",
        ] {
            assert_eq!(weakness(good.as_bytes()), None, "{good}");
        }
    }
}
