//! What an attacker can do to the origin, bounded: slow clients are cut off, and made-up
//! event ids cannot grow its memory. Purchases go on meanwhile.

use crate::helpers::*;
use figment::Figment;
use flashgate_core::sign;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a held connection ends with: the bytes the server sent before closing it.
async fn closed_within(mut stream: TcpStream, until: Instant) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let left = until.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_closed_in_time_and_purchases_go_on() {
    let app = spawn_app(
        Figment::new()
            .merge(("header_timeout_ms", 1_000))
            .merge(("body_timeout_ms", 1_000)),
    )
    .await;
    app.live_event("slow", 100).await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    // Some send nothing at all, or one byte: closed too.
    let mut silent = Vec::new();
    for i in 0..200 {
        let mut s = TcpStream::connect(&addr).await.expect("connect");
        if i % 2 == 1 {
            s.write_all(b"P").await.expect("write");
        }
        silent.push(s);
    }
    // Half never finish their headers; half send signed-looking headers and half a body.
    let mut held = Vec::new();
    for i in 0..2_000 {
        let mut s = TcpStream::connect(&addr).await.expect("connect");
        let start = if i % 2 == 0 {
            "POST /api/events/slow/purchase HTTP/1.1\r\nhost: origin\r\nx-flashgate-nonce: n"
                .to_owned()
        } else {
            format!(
                "POST /api/events/slow/purchase HTTP/1.1\r\nhost: origin\r\n\
                 content-type: application/json\r\ncontent-length: 100\r\n\
                 {}: {}\r\n{}: nonce-{i}\r\n{}: whatever\r\n\r\n{{\"a\":",
                sign::HEADER_TIMESTAMP,
                now_ms(),
                sign::HEADER_NONCE,
                sign::HEADER_SIGNATURE,
            )
        };
        s.write_all(start.as_bytes()).await.expect("write");
        held.push(s);
    }
    let sent = Instant::now();
    // The held connections take no purchase's place.
    let bought = app.purchase("slow", "alice").await;
    assert_eq!(bought.status, 202, "{}", bought.body);
    // Each is closed within its timeout (1 s) and a margin for a loaded machine.
    let until = sent + Duration::from_secs(15);
    let mut timed_out_bodies = 0;
    for (i, s) in held.into_iter().enumerate() {
        let answer = closed_within(s, until)
            .await
            .unwrap_or_else(|| panic!("connection {i} still open 15 s after it stalled"));
        if i % 2 == 1 && String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408") {
            timed_out_bodies += 1;
        }
    }
    // A stalled body is answered 408 (request_timeout) before the connection closes.
    assert_eq!(timed_out_bodies, 1_000);
    for (i, s) in silent.into_iter().enumerate() {
        closed_within(s, until)
            .await
            .unwrap_or_else(|| panic!("silent connection {i} still open 15 s on"));
    }
    let again = app.purchase("slow", "bob").await;
    assert_eq!(again.status, 202, "{}", again.body);
}

/// A flood of made-up event ids (past the event cache's cap) leaves the cache bounded,
/// the real event cached and purchases answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_event_ids_do_not_grow_the_origin() {
    let app =
        std::sync::Arc::new(spawn_app(Figment::new().merge(("event_cache_ms", 60_000))).await);
    app.live_event("real", 10).await;
    let state = app.state.clone().expect("in-process app");
    let asks: Vec<_> = (0..8)
        .map(|worker| {
            let app = app.clone();
            tokio::spawn(async move {
                for n in 0..1_500 {
                    let path = format!("/api/events/made-up-{worker}-{n}");
                    let r = app.signed("GET", &path, None, b"").await;
                    assert_eq!(r.status, 404, "{}", r.body);
                }
            })
        })
        .collect();
    for ask in asks {
        ask.await.expect("asker");
    }
    let held = state.cached_events();
    assert!(
        held <= 10_000,
        "{held} events cached after 12,000 made-up ids"
    );
    let bought = app.purchase("real", "carol").await;
    assert_eq!(bought.status, 202, "{}", bought.body);
}
