//! `fg-load`: closed-loop HTTP/1.1 load on loopback for `./dev bench origin`.
//!
//! Each of `--connections` keep-alive connections sends one request, waits for the whole
//! answer, and sends the next, until `--duration` seconds have passed (or `--max-requests`
//! were sent). Requests can carry the edge's signature (the canonical string of
//! `core/src/sign.rs`, HMAC-SHA256 under the secret in the environment variable named by
//! `--sign-env`, for the origin's `--environment`, default `dev`, with the request id the
//! edge sends), for a new user per request (`--user-prefix`). Prints one JSON line:
//! requests, rps, statuses, errors and latency percentiles of the measured window.
//!
//! With `--backoff`, a connection answered 429 or 503 waits the answer's `Retry-After`
//! (1 s without one) before its next request, as the activity page does, instead of
//! asking again at once.
//!
//! With `--bearer-env VAR`, each request carries a shopper's `Authorization: Bearer`
//! HS256 token for its user, made under the secret in `VAR` (as a browser sends it to the
//! edge; the peer of `./dev bench peer` checks it).
//!
//! Besides the measured window's figures, `statuses_all` counts every answer from the
//! start (warm-up included), to divide a phase's CPU time by.
//!
//! It runs on one thread, so it leaves the other core to what it measures.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const USAGE: &str = "fg-load --addr HOST:PORT --path PATH [--method GET] [--body STR] \
[--sign-env VAR] [--bearer-env VAR] [--user-prefix P] [--environment dev] [--connections 64] [--duration 10] [--warmup 2] \
[--max-requests N] [--timeout-ms 5000] [--backoff]";

struct Opts {
    addr: String,
    method: String,
    path: String,
    body: Vec<u8>,
    secret: Option<Vec<u8>>,
    bearer: Option<Vec<u8>>,
    environment: String,
    user_prefix: String,
    connections: usize,
    duration: Duration,
    warmup: Duration,
    max_requests: u64,
    timeout: Duration,
    backoff: bool,
    body_sha: String,
}

fn parse() -> Result<Opts, String> {
    let mut args = std::env::args().skip(1);
    let mut o = Opts {
        addr: String::new(),
        method: "GET".into(),
        path: String::new(),
        body: Vec::new(),
        secret: None,
        bearer: None,
        environment: "dev".into(),
        user_prefix: String::new(),
        connections: 64,
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(2),
        max_requests: u64::MAX,
        timeout: Duration::from_millis(5000),
        backoff: false,
        body_sha: String::new(),
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        let secs = |v: String| {
            v.parse::<f64>()
                .map(Duration::from_secs_f64)
                .map_err(|e| e.to_string())
        };
        match flag.as_str() {
            "--backoff" => o.backoff = true,
            "--addr" => o.addr = value()?,
            "--method" => o.method = value()?,
            "--path" => o.path = value()?,
            "--body" => o.body = value()?.into_bytes(),
            "--sign-env" => o.secret = Some(env_bytes(&value()?)?),
            "--bearer-env" => o.bearer = Some(env_bytes(&value()?)?),
            "--environment" => o.environment = value()?,
            "--user-prefix" => o.user_prefix = value()?,
            "--connections" => o.connections = value()?.parse().map_err(|e| format!("{e}"))?,
            "--duration" => o.duration = secs(value()?)?,
            "--warmup" => o.warmup = secs(value()?)?,
            "--max-requests" => o.max_requests = value()?.parse().map_err(|e| format!("{e}"))?,
            "--timeout-ms" => {
                o.timeout = Duration::from_millis(value()?.parse().map_err(|e| format!("{e}"))?)
            }
            _ => return Err(format!("unknown argument {flag}\n{USAGE}")),
        }
    }
    if o.addr.is_empty() || o.path.is_empty() || o.connections == 0 {
        return Err(USAGE.into());
    }
    if !o.addr.starts_with("127.") && !o.addr.starts_with("localhost:") {
        return Err(format!("loopback only, not {}", o.addr));
    }
    o.body_sha = Sha256::digest(&o.body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(o)
}

/// CPU time this process has used (user + system), from /proc/self/stat (USER_HZ = 100).
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may hold spaces) start at state (3).
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
            Some(ticks as f64 / 100.0)
        })
        .unwrap_or(0.0)
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

fn request(o: &Opts, conn: usize, seq: u64) -> Vec<u8> {
    let mut head = format!(
        "{} {} HTTP/1.1\r\nhost: {}\r\nuser-agent: fg-load\r\n",
        o.method, o.path, o.addr
    );
    if !o.body.is_empty() || o.method == "POST" {
        head.push_str(&format!(
            "content-type: application/json\r\ncontent-length: {}\r\n",
            o.body.len()
        ));
    }
    let user = if o.user_prefix.is_empty() {
        String::new()
    } else {
        format!("{}{conn}x{seq}", o.user_prefix)
    };
    if let Some(secret) = &o.bearer {
        head.push_str(&format!(
            "authorization: Bearer {}\r\n",
            token(secret, &user)
        ));
    }
    if let Some(secret) = &o.secret {
        let ts = now_ms();
        let nonce = format!("{conn}x{seq}");
        let canonical = format!(
            "flashgate-edge-v3\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
            o.environment, o.method, o.path, user, ts, nonce, o.body_sha
        );
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
        mac.update(canonical.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        // The edge names every request it forwards (its CF-Ray, else its nonce).
        head.push_str(&format!(
            "x-flashgate-signature: {sig}\r\nx-flashgate-timestamp: {ts}\r\nx-flashgate-nonce: {nonce}\r\nx-request-id: {nonce}\r\n"
        ));
        if !user.is_empty() {
            head.push_str(&format!("x-flashgate-user: {user}\r\n"));
        }
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&o.body);
    bytes
}

/// A shopper's HS256 token for `user`, valid for an hour (core/src/jwt.rs).
fn token(secret: &[u8], user: &str) -> String {
    // {"alg":"HS256","typ":"JWT"}
    const HEADER: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";
    let exp = now_ms() / 1000 + 3600;
    let claims = URL_SAFE_NO_PAD.encode(format!("{{\"sub\":\"{user}\",\"exp\":{exp}}}"));
    let signed = format!("{HEADER}.{claims}");
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(signed.as_bytes());
    format!(
        "{signed}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// What one answer said.
struct Answer {
    status: u16,
    /// The connection stays open.
    keep: bool,
    /// `Retry-After`, seconds.
    retry_after: Option<u64>,
}

/// Sends one request and reads the whole answer.
async fn round_trip(s: &mut TcpStream, req: &[u8], buf: &mut Vec<u8>) -> std::io::Result<Answer> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_owned());
    s.write_all(req).await?;
    buf.clear();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(bad("closed"));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| bad("head not utf-8"))?
        .to_ascii_lowercase();
    let status: u16 = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("status line"))?;
    let mut length = None;
    let mut keep = true;
    let mut retry_after = None;
    for line in head.lines() {
        if let Some(v) = line.strip_prefix("content-length:") {
            length = v.trim().parse::<usize>().ok();
        } else if let Some(v) = line.strip_prefix("retry-after:") {
            retry_after = v.trim().parse::<u64>().ok();
        } else if line.starts_with("connection:") && line.contains("close") {
            keep = false;
        } else if line.starts_with("transfer-encoding:") {
            return Err(bad("chunked answers are not supported"));
        }
    }
    let length = length.ok_or_else(|| bad("no content-length"))?;
    while buf.len() < head_end + length {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(bad("closed in body"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(Answer {
        status,
        keep,
        retry_after,
    })
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    by_status: BTreeMap<u16, Vec<u32>>,
    statuses: BTreeMap<u16, u64>,
    /// Every answer, warm-up included.
    statuses_all: BTreeMap<u16, u64>,
    errors: u64,
    sent: u64,
}

async fn connection(
    o: Rc<Opts>,
    id: usize,
    measure_from: Instant,
    end: Instant,
    budget: Rc<std::cell::Cell<u64>>,
) -> Tally {
    let mut t = Tally::default();
    let mut buf = Vec::with_capacity(8192);
    let mut seq = 0u64;
    'connect: while Instant::now() < end && budget.get() > 0 {
        let mut s = match TcpStream::connect(&o.addr).await {
            Ok(s) => s,
            Err(_) => {
                t.errors += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = s.set_nodelay(true);
        loop {
            if Instant::now() >= end || budget.get() == 0 {
                break 'connect;
            }
            budget.set(budget.get() - 1);
            seq += 1;
            let req = request(&o, id, seq);
            let started = Instant::now();
            let answer = tokio::time::timeout(o.timeout, round_trip(&mut s, &req, &mut buf)).await;
            let measured = started >= measure_from;
            if measured {
                t.sent += 1;
            }
            match answer {
                Ok(Ok(a)) => {
                    *t.statuses_all.entry(a.status).or_default() += 1;
                    if measured {
                        let us = started.elapsed().as_micros().min(u32::MAX as u128) as u32;
                        t.latencies_us.push(us);
                        t.by_status.entry(a.status).or_default().push(us);
                        *t.statuses.entry(a.status).or_default() += 1;
                    }
                    if o.backoff && matches!(a.status, 429 | 503) {
                        let wait = Duration::from_secs(a.retry_after.unwrap_or(1));
                        tokio::time::sleep_until((Instant::now() + wait).min(end).into()).await;
                    }
                    if !a.keep {
                        continue 'connect;
                    }
                }
                _ => {
                    if measured {
                        t.errors += 1;
                    }
                    continue 'connect;
                }
            }
        }
    }
    t
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let o = match parse() {
        Ok(o) => Rc::new(o),
        Err(e) => {
            eprintln!("fg-load: {e}");
            std::process::exit(2);
        }
    };
    let start = Instant::now();
    let measure_from = start + o.warmup;
    let end = measure_from + o.duration;
    let budget = Rc::new(std::cell::Cell::new(o.max_requests));
    let local = tokio::task::LocalSet::new();
    let tallies = local
        .run_until(async {
            let handles: Vec<_> = (0..o.connections)
                .map(|id| {
                    tokio::task::spawn_local(connection(
                        o.clone(),
                        id,
                        measure_from,
                        end,
                        budget.clone(),
                    ))
                })
                .collect();
            let mut out = Vec::new();
            for h in handles {
                out.push(h.await.expect("a connection task panicked"));
            }
            out
        })
        .await;
    let window = (Instant::now().min(end) - measure_from.min(Instant::now()))
        .as_secs_f64()
        .max(1e-9);
    let mut lat: Vec<u32> = Vec::new();
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    let mut statuses_all: BTreeMap<u16, u64> = BTreeMap::new();
    let mut by_status: BTreeMap<u16, Vec<u32>> = BTreeMap::new();
    let (mut errors, mut sent) = (0, 0);
    for t in tallies {
        lat.extend(t.latencies_us);
        for (k, v) in t.statuses {
            *statuses.entry(k).or_default() += v;
        }
        for (k, v) in t.statuses_all {
            *statuses_all.entry(k).or_default() += v;
        }
        for (k, v) in t.by_status {
            by_status.entry(k).or_default().extend(v);
        }
        errors += t.errors;
        sent += t.sent;
    }
    lat.sort_unstable();
    fn pct(lat: &[u32], q: f64) -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        let i = ((q * lat.len() as f64).ceil() as usize).clamp(1, lat.len()) - 1;
        lat[i] as f64 / 1000.0
    }
    let counts = |m: &BTreeMap<u16, u64>| -> String {
        m.iter()
            .map(|(k, v)| format!("\"{k}\":{v}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let latency_json: Vec<String> = by_status
        .iter_mut()
        .map(|(k, v)| {
            v.sort_unstable();
            format!(
                "\"{k}\":{{\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"max_ms\":{:.3}}}",
                pct(v, 0.5),
                pct(v, 0.99),
                pct(v, 1.0)
            )
        })
        .collect();
    println!(
        "{{\"cpu_s\":{:.2},\"requests\":{},\"sent\":{sent},\"errors\":{errors},\"seconds\":{window:.3},\"rps\":{:.1},\"statuses\":{{{}}},\"statuses_all\":{{{}}},\"p50_ms\":{:.3},\"p90_ms\":{:.3},\"p99_ms\":{:.3},\"max_ms\":{:.3},\"by_status\":{{{}}},\"connections\":{}}}",
        cpu_seconds(),
        lat.len(),
        lat.len() as f64 / window,
        counts(&statuses),
        counts(&statuses_all),
        pct(&lat, 0.50),
        pct(&lat, 0.90),
        pct(&lat, 0.99),
        pct(&lat, 1.0),
        latency_json.join(","),
        o.connections
    );
}

/// The value of the environment variable `var`, as bytes; an error naming it when unset.
fn env_bytes(var: &str) -> Result<Vec<u8>, String> {
    std::env::var(var)
        .map(String::into_bytes)
        .map_err(|_| format!("{var} is not set"))
}
