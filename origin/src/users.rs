//! `flashgate users`: the `userId,authToken` CSV of demo and load-test shoppers.

use flashgate_core::ids::UserId;
use std::io::Write;

/// Writes `count` users named `{prefix}{n}` with tokens valid for `ttl_secs` from `now_secs`.
pub fn write_csv(
    out: &mut dyn Write,
    prefix: &str,
    count: u32,
    secret: &[u8],
    now_secs: i64,
    ttl_secs: i64,
) -> anyhow::Result<()> {
    writeln!(out, "userId,authToken")?;
    for n in 1..=count {
        let user = UserId::parse(&format!("{prefix}{n}"))
            .map_err(|_| anyhow::anyhow!("user prefix {prefix:?} makes invalid user ids"))?;
        let token = flashgate_core::jwt::issue(&user, now_secs + ttl_secs, secret);
        writeln!(out, "{user},{token}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_hold_verifiable_tokens() {
        let mut out = Vec::new();
        write_csv(&mut out, "u", 3, b"0123456789abcdef", 1_000, 60).expect("writes");
        let text = String::from_utf8(out).expect("utf8");
        let rows: Vec<&str> = text.lines().collect();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0], "userId,authToken");
        let (user, token) = rows[3].split_once(',').expect("two columns");
        let claims =
            flashgate_core::jwt::verify(token, b"0123456789abcdef", 1_000_000).expect("valid");
        assert_eq!((user, claims.sub.as_str()), ("u3", "u3"));
    }

    #[test]
    fn bad_prefix_is_refused() {
        assert!(write_csv(&mut Vec::new(), "bad prefix", 1, b"k", 0, 1).is_err());
    }
}
