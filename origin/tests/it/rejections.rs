//! A rejected request answers its documented code and changes nothing.

use crate::helpers::*;

#[tokio::test]
async fn rejected_requests_answer_the_documented_code_and_change_nothing() {
    let app = spawn_app(generous()).await;
    app.live_event("guarded", 5).await;
    let now = now_ms();
    let path = "/api/events/guarded/purchase";
    let json = Some("application/json");
    let cases: Vec<(&str, Reply)> = vec![
        (
            "forged",
            app.signed_at(
                "POST",
                path,
                Some("u1"),
                b"{}",
                json,
                now,
                "another-secret-0123456789",
            )
            .await,
        ),
        (
            "stale",
            app.signed_at(
                "POST",
                path,
                Some("u1"),
                b"{}",
                json,
                now - 31_000,
                EDGE_SECRET,
            )
            .await,
        ),
        (
            "malformed json",
            app.signed_at("POST", path, Some("u1"), b"{", json, now, EDGE_SECRET)
                .await,
        ),
        (
            "5 KiB body",
            app.signed_at(
                "POST",
                path,
                Some("u1"),
                &[b' '; 5120],
                json,
                now,
                EDGE_SECRET,
            )
            .await,
        ),
        (
            "text body",
            app.signed_at(
                "POST",
                path,
                Some("u1"),
                b"{}",
                Some("text/plain"),
                now,
                EDGE_SECRET,
            )
            .await,
        ),
        (
            "bad event id",
            app.signed("POST", "/api/events/Bad_Id/purchase", Some("u1"), b"{}")
                .await,
        ),
        (
            "undecodable event id",
            app.signed("POST", "/api/events/%FF/purchase", Some("u1"), b"{}")
                .await,
        ),
        (
            "unknown event",
            app.signed("POST", "/api/events/nope/purchase", Some("u1"), b"{}")
                .await,
        ),
        (
            "bad user id",
            app.signed("POST", path, Some("u 1"), b"{}").await,
        ),
        ("no user", app.signed("POST", path, None, b"{}").await),
        (
            "wrong method",
            app.signed("DELETE", path, Some("u1"), b"").await,
        ),
        (
            "unknown path",
            app.signed("GET", "/api/nothing", None, b"").await,
        ),
    ];
    let unsigned = reply(
        app.http
            .post(format!("{}{path}", app.base))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .expect("answers"),
    )
    .await;
    let expected = [401, 401, 400, 413, 415, 404, 404, 404, 400, 401, 405, 404];
    for ((name, r), want) in cases.iter().zip(expected) {
        assert_eq!(r.status, want, "{name}: {}", r.body);
        assert!(
            r.body.get("error").or(r.body.get("status")).is_some(),
            "{name}: {}",
            r.body
        );
    }
    assert_eq!(unsigned.status, 401);
    assert_eq!(unsigned.body["error"], "unauthenticated");
    // Under /api/, an unsigned request learns nothing, not even that a path or method
    // does not exist here (tickets are the edge's own); elsewhere an unknown path is 404.
    for (method, p, want) in [
        ("POST", "/api/events/guarded/ticket", 401),
        ("DELETE", path, 401),
        ("GET", "/api/nothing", 401),
        ("GET", "/nothing", 404),
        // An id that does not decode to UTF-8: still the signature's or token's answer first.
        ("POST", "/api/events/%FF/purchase", 401),
        ("GET", "/api/events/%FF", 401),
        ("PUT", "/admin/events/%ff", 401),
    ] {
        let r = reply(
            app.http
                .request(method.parse().expect("method"), format!("{}{p}", app.base))
                .send()
                .await
                .expect("answers"),
        )
        .await;
        assert_eq!(r.status, want, "unsigned {method} {p}: {}", r.body);
        assert!(
            r.body.get("error").is_some(),
            "unsigned {method} {p}: {}",
            r.body
        );
    }
    let signed_ticket = app
        .signed("POST", "/api/events/guarded/ticket", Some("u1"), b"{}")
        .await;
    assert_eq!(signed_ticket.status, 404, "{}", signed_ticket.body);
    let stats = app.stats("guarded").await;
    assert_eq!(
        (stats["reserved"].as_u64(), stats["stock_left"].as_u64()),
        (Some(0), Some(5))
    );
    app.stop().await;
}

#[tokio::test]
async fn a_replayed_signature_is_refused_and_changes_nothing() {
    let app = spawn_app(generous()).await;
    app.live_event("replay", 5).await;
    let now = now_ms();
    let path = "/api/events/replay/purchase";
    let json = Some("application/json");
    let send = |nonce: &'static str| {
        app.signed_exactly(
            "POST",
            path,
            Some("r1"),
            b"{}",
            json,
            now,
            EDGE_SECRET,
            nonce,
        )
    };
    let first = send("n-1").await;
    assert_eq!(first.status, 202);
    let before = app.stats("replay").await;
    let again = send("n-1").await;
    assert_eq!(
        (again.status, &again.body["error"]),
        (401, &"unauthenticated".into())
    );
    assert_eq!(app.stats("replay").await, before);
    // The same purchase in the same millisecond with the edge's next nonce (a double
    // click) is not a replay: the buyer gets their order back.
    let click = send("n-2").await;
    assert_eq!(
        (click.status, &click.body["order_id"]),
        (200, &first.body["order_id"])
    );
    // The guard is one set per time slice, which expires as a whole once no signature in
    // it can pass the time check: not a key per signature.
    let id = flashgate_core::ids::EventId::parse("replay").expect("event id");
    let slice = app.store.keys(&id).signatures(now);
    let mut conn = app.store.conn();
    let held: u64 = redis::cmd("SCARD")
        .arg(&slice)
        .query_async(&mut conn)
        .await
        .expect("scard");
    // Both signatures, once each, and the empty member that tells the set is not new.
    assert_eq!(held, 3);
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&slice)
        .query_async(&mut conn)
        .await
        .expect("pttl");
    let replay_ms = i64::try_from(app.settings.purchase.replay_window_ms).expect("ms");
    let slice_end: i64 = slice
        .rsplit(':')
        .next()
        .and_then(|e| e.parse().ok())
        .expect("end");
    assert!(ttl > replay_ms - 5_000, "{ttl}");
    assert!(ttl <= slice_end - now + replay_ms, "{ttl}");
    app.stop().await;
}

/// The process's purchase bucket (`admission_rps`): past it, a purchase is 429
/// `rate_limited` with the seconds until its next token, and reserves nothing.
#[tokio::test]
async fn past_the_process_bucket_a_purchase_waits_and_reserves_nothing() {
    let app = spawn_app(generous().merge(("admission_rps", 1))).await;
    app.live_event("bucketed", 5).await;
    assert_eq!(app.purchase("bucketed", "first").await.status, 202);
    let held = app.purchase("bucketed", "second").await;
    assert_eq!(
        (held.status, &held.body["status"]),
        (429, &"rate_limited".into()),
        "{}",
        held.body
    );
    assert_eq!(held.retry_after.as_deref(), Some("1"));
    let stats = app.stats("bucketed").await;
    assert_eq!(
        (stats["reserved"].as_u64(), stats["stock_left"].as_u64()),
        (Some(1), Some(4))
    );
    app.stop().await;
}
