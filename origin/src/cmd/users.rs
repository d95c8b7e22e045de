//! `flashgate users`: the `userId,authToken` CSV of demo and load-test shoppers.

use crate::config::Settings;
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

/// Writes `count` users to `out` (`-` for stdout), tokens valid for `ttl_hours`.
pub fn run(
    settings: Settings,
    count: u32,
    out: &str,
    prefix: &str,
    ttl_hours: i64,
) -> anyhow::Result<()> {
    let secret = settings.secret(&settings.secrets.auth_secret, "auth_secret")?;
    let now = super::now_ms()? / 1000;
    let mut w: Box<dyn Write> = if out == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::io::BufWriter::new(std::fs::File::create(out)?))
    };
    let written = write_csv(&mut w, prefix, count, secret, now, ttl_hours * 3600)
        .and_then(|()| Ok(w.flush()?));
    match written {
        // The reader stopped early (`flashgate users | head`): it has what it wanted, as
        // with any Unix tool.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        other => other,
    }
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
        let claims = flashgate_core::jwt::verify(
            token,
            &flashgate_core::keyring::KeyRing::single(b"0123456789abcdef"),
            1_000_000,
        )
        .expect("valid");
        assert_eq!((user, claims.sub.as_str()), ("u3", "u3"));
    }

    #[test]
    fn bad_prefix_is_refused() {
        assert!(write_csv(&mut Vec::new(), "bad prefix", 1, b"k", 0, 1).is_err());
    }
}
