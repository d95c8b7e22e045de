//! The origin's purchase path against a real Redis and broker.

use crate::helpers::*;
use figment::Figment;
use std::collections::HashSet;
use std::sync::Arc;

#[tokio::test]
async fn one_order_per_user_and_never_more_than_the_stock() {
    let app = spawn_app(generous()).await;
    app.live_event("phone", 3).await;
    let mut orders = Vec::new();
    for user in ["u1", "u2", "u3"] {
        let r = app.purchase("phone", user).await;
        assert_eq!(r.status, 202, "{}", r.body);
        assert_eq!(r.body["status"], "queued");
        assert_eq!(r.body["message"], "抢购成功, 订单处理中");
        orders.push(r.body["order_id"].as_str().expect("order id").to_owned());
    }
    let again = app.purchase("phone", "u1").await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["status"], "already_purchased");
    assert_eq!(again.body["order_id"], orders[0].as_str());
    let late = app.purchase("phone", "u4").await;
    assert_eq!(
        (late.status, &late.body["status"]),
        (409, &"sold_out".into())
    );
    // The 409 made this process remember the event as sold out; a buyer's retry still
    // gets their order back.
    let after = app.purchase("phone", "u3").await;
    assert_eq!(
        (after.status, &after.body["order_id"]),
        (200, &orders[2].as_str().into())
    );

    let mine = app
        .signed("GET", "/api/events/phone/order", Some("u2"), b"")
        .await;
    assert_eq!(mine.status, 200);
    assert_eq!(mine.body["order_id"], orders[1].as_str());
    let none = app
        .signed("GET", "/api/events/phone/order", Some("u4"), b"")
        .await;
    assert_eq!((none.status, &none.body["status"]), (404, &"none".into()));
    assert!(none.body.get("error").is_none(), "{}", none.body);
    // No such event: no order there, and the answer says why.
    for path in ["/api/events/no-phone/order", "/api/events/Not_A_Slug/order"] {
        let unknown = app.signed("GET", path, Some("u2"), b"").await;
        assert_eq!(
            (
                unknown.status,
                &unknown.body["status"],
                &unknown.body["error"]
            ),
            (404, &"none".into(), &"event_not_found".into()),
            "{path}"
        );
    }

    let info = app.signed("GET", "/api/events/phone", None, b"").await;
    assert_eq!(info.status, 200);
    assert_eq!(info.body["stock_left"], 0);
    assert_eq!(info.body["stock_total"], 3);
    assert_eq!(info.body["state"], "sold_out");
    let malformed = app.signed("GET", "/api/events/Not_A_Slug", None, b"").await;
    assert_eq!(
        (malformed.status, &malformed.body["error"]),
        (404, &"event_not_found".into())
    );
    let stats = app.stats("phone").await;
    assert_eq!(stats["reserved"], 3);
    assert_eq!(stats["stock_left"], 0);
    app.stop().await;
}

#[tokio::test]
async fn concurrent_attempts_sell_exactly_the_stock_and_each_reaches_kafka_once() {
    let app = Arc::new(spawn_app(generous()).await);
    let (stock, users, attempts_each) = (1000u64, 10_000usize, 5usize);
    app.live_event("storm", stock).await;
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = Vec::new();
    for round in 0..attempts_each {
        for u in 0..users {
            let (app, sem) = (app.clone(), sem.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = sem.acquire().await.expect("semaphore");
                let user = format!("user{}", (u * 7 + round * 13) % users);
                let r = app.purchase("storm", &user).await;
                (
                    user,
                    r.status,
                    r.body["order_id"].as_str().map(str::to_owned),
                )
            }));
        }
    }
    let mut queued = HashSet::new();
    let mut buyers = HashSet::new();
    for t in tasks {
        let (user, status, order) = t.await.expect("task");
        // 429 is a limiter (admission bucket or adaptive limit) refusing an attempt.
        assert!(
            matches!(status, 200 | 202 | 409 | 429),
            "unexpected {status}"
        );
        if status == 202 {
            assert!(buyers.insert(user), "a user got two 202s");
            queued.insert(order.expect("order id"));
        }
    }
    assert_eq!(queued.len() as u64, stock);
    let stats = app.stats("storm").await;
    assert_eq!(
        (stats["reserved"].as_u64(), stats["stock_left"].as_u64()),
        (Some(stock), Some(0))
    );

    // Every reservation reaches the topic; duplicates (if a relay retried) carry the same id.
    every_order_reaches_the_topic(&app, &queued).await;
    let app = Arc::try_unwrap(app).ok().expect("no other owners");
    app.stop().await;
}

#[tokio::test]
async fn the_per_user_window_allows_one_attempt_per_second_but_never_hides_an_order() {
    // No sold-out memo, so every attempt reaches the script and its window.
    let app = spawn_app(Figment::new().merge(("sold_out_cache_ms", 0))).await;
    app.live_event("limited", 1).await;
    let won = app.purchase("limited", "quick").await;
    assert_eq!(won.status, 202, "{}", won.body);
    // The buyer's immediate retry is inside their window: it still gets the order back.
    let again = app.purchase("limited", "quick").await;
    assert_eq!(
        (again.status, &again.body["status"]),
        (200, &"already_purchased".into())
    );
    assert_eq!(again.body["order_id"], won.body["order_id"]);
    // Someone without an order is held to one attempt per second.
    assert_eq!(app.purchase("limited", "eager").await.status, 409);
    let r = app.purchase("limited", "eager").await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.body["status"], "rate_limited");
    assert_eq!(r.body["message"], "活动火爆, 请稍后再试");
    assert_eq!(r.retry_after.as_deref(), Some("1"));
    app.stop().await;
}

#[tokio::test]
async fn an_order_without_a_unit_number_gives_nothing_back() {
    // Orders from before unit numbers, or published again by reconcile, carry none: the
    // counter alone would hand out a unit already sold, so their unit stays unsold.
    let app = spawn_app(generous()).await;
    app.live_event("nounit", 2).await;
    let alice = app.purchase("nounit", "alice").await;
    assert_eq!(alice.status, 202, "{}", alice.body);
    let order = alice.body["order_id"].as_str().expect("order id");
    let unnumbered = flashgate_origin::redis::Refused {
        unit: None,
        give_back: true,
        holder: None,
    };
    let event = flashgate_core::ids::EventId::parse("nounit").expect("id");
    let user = flashgate_core::ids::UserId::parse("alice").expect("user");
    let window = app.settings.purchase.user_window_ms;
    let changed = app
        .store
        .compensate(&event, &user, order, unnumbered, window);
    assert!(changed.await.expect("redis"), "the order is marked failed");
    let stats = app.stats("nounit").await;
    assert_eq!(
        (stats["stock_left"].as_u64(), stats["compensated"].as_u64()),
        (Some(1), Some(0)),
        "{stats}"
    );
    let lookup = crate::consumer::order_status(&app, "nounit", "alice").await;
    assert_eq!(lookup["status"], "failed");
    // Unit 1 sells once; nothing else is offered.
    assert_eq!(app.purchase("nounit", "bob").await.status, 202);
    assert_eq!(app.purchase("nounit", "carol").await.status, 409);
    app.stop().await;
}

#[tokio::test]
async fn a_reservation_counts_in_the_buyers_window_only_once_its_order_is_given_back() {
    use flashgate_core::ids::{EventId, UserId};
    // A window of a minute, so that no try counted in it can age out during the test.
    let app = spawn_app(
        Figment::new()
            .merge(("sold_out_cache_ms", 0))
            .merge(("user_window_ms", 60_000)),
    )
    .await;
    app.live_event("again", 2).await;
    let first = app.purchase("again", "alice").await;
    assert_eq!(first.status, 202, "{}", first.body);
    // Her order answers her retries, so no window is kept for her in Redis.
    let event = EventId::parse("again").expect("id");
    let alice = UserId::parse("alice").expect("user");
    let window: bool = redis::cmd("EXISTS")
        .arg(app.store.keys(&event).window(&alice))
        .query_async(&mut app.store.conn())
        .await
        .expect("redis");
    assert!(!window, "a reservation left a window counter");
    assert_eq!(app.purchase("again", "alice").await.status, 200);
    // Her order (unit 2: the first sold of two) fails downstream and its unit comes back:
    // that try now counts, so a buyer whose orders keep failing (a blocked one) reserves
    // at most once per window.
    let order = first.body["order_id"].as_str().expect("order id");
    assert!(app
        .store
        .compensate(
            &event,
            &alice,
            order,
            give_back(2),
            app.settings.purchase.user_window_ms
        )
        .await
        .expect("redis"));
    let held = app.purchase("again", "alice").await;
    assert_eq!(
        (held.status, &held.body["status"]),
        (429, &"rate_limited".into())
    );
    let wait: u64 = held
        .retry_after
        .as_deref()
        .expect("Retry-After")
        .parse()
        .expect("secs");
    assert!((50..=60).contains(&wait), "Retry-After {wait}");
    // Her unit is sold to others; a try that got nothing counts as before.
    assert_eq!(app.purchase("again", "bob").await.status, 202);
    assert_eq!(app.purchase("again", "carol").await.status, 202);
    assert_eq!(app.purchase("again", "dave").await.status, 409);
    assert_eq!(app.purchase("again", "dave").await.status, 429);
    app.stop().await;
}

#[tokio::test]
async fn the_origin_gates_the_sale_window_too() {
    let app = spawn_app(generous()).await;
    let now = now_ms();
    assert_eq!(
        app.admin_put("later", 5, now + 60_000, now + 120_000)
            .await
            .status,
        201
    );
    assert_eq!(
        app.admin_put("over", 5, now - 120_000, now - 60_000)
            .await
            .status,
        201
    );
    let r = app.purchase("later", "u1").await;
    assert_eq!((r.status, &r.body["status"]), (425, &"not_started".into()));
    assert!(r.body["starts_at"].is_string());
    let r = app.purchase("over", "u1").await;
    assert_eq!((r.status, &r.body["status"]), (410, &"ended".into()));
    assert_eq!(app.stats("later").await["stock_left"], 5);
    app.stop().await;
}

#[tokio::test]
async fn admin_needs_the_token_and_refuses_to_change_a_started_event() {
    let app = spawn_app(generous()).await;
    let now = now_ms();
    let anonymous = reply(
        app.http
            .put(format!("{}/admin/events/x", app.base))
            .json(&serde_json::json!({"name":"x","stock":1,"starts_at":rfc3339(now),"ends_at":rfc3339(now+1000)}))
            .send()
            .await
            .expect("answers"),
    )
    .await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(
        app.admin_put("soon", 5, now + 60_000, now + 120_000)
            .await
            .status,
        201
    );
    let updated = app.admin_put("soon", 7, now + 60_000, now + 120_000).await;
    assert_eq!(
        (updated.status, updated.body["stock_total"].as_u64()),
        (200, Some(7))
    );
    app.live_event("running", 5).await;
    let refused = app
        .admin_put("running", 50, now + 60_000, now + 120_000)
        .await;
    assert_eq!(
        (refused.status, &refused.body["error"]),
        (409, &"event_started".into())
    );
    assert_eq!(app.stats("running").await["stock_total"], 5);
    let bad = app.admin_put("soon", 5, now + 120_000, now + 60_000).await;
    assert_eq!(
        (bad.status, &bad.body["error"]),
        (400, &"invalid_event".into())
    );
    // An id that is not a slug is the admin's mistake (400), not an unknown event.
    let bad_id = app
        .admin_put("Bad_Id", 5, now + 60_000, now + 120_000)
        .await;
    assert_eq!(
        (bad_id.status, &bad_id.body["error"]),
        (400, &"invalid_event_id".into())
    );
    app.stop().await;
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let app = spawn_app(Figment::new()).await;
    let get = |p: &str| app.http.get(format!("{}{p}", app.base)).send();
    assert_eq!(get("/healthz").await.expect("answers").status(), 200);
    let ready = reply(get("/readyz").await.expect("answers")).await;
    assert_eq!(
        (ready.status, &ready.body["status"]),
        (200, &"ready".into())
    );
    app.live_event("metered", 1).await;
    app.purchase("metered", "m1").await;
    // A method of the client's own invention is counted, under one label for all such.
    let brewed = app
        .http
        .request(
            reqwest::Method::from_bytes(b"BREW").expect("a method"),
            format!("{}/healthz", app.base),
        )
        .send()
        .await
        .expect("answers");
    assert_eq!(brewed.status(), 405);
    let metrics = get("/metrics").await.expect("answers");
    assert_eq!(
        metrics.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8",
        "the Prometheus text format"
    );
    let text = metrics.text().await.expect("text");
    for line in [
        r#"flashgate_purchases_total{outcome="queued"}"#,
        r#"flashgate_http_requests_total{method="GET",route="/healthz",status="200"}"#,
        r#"flashgate_http_requests_total{method="POST",route="/api/events/{event_id}/purchase",status="202"}"#,
        r#"flashgate_http_requests_total{method="other",route="/healthz",status="405"}"#,
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
    assert!(!text.contains("BREW"), "{text}");
    app.stop().await;
}

/// One coalesced reserve call decides its attempts one after another, as if each were a
/// call of its own: the same user twice in one batch holds one order, a signature seen
/// earlier in the batch is a replay, the last unit goes to the first asker.
#[tokio::test]
async fn one_reserve_call_decides_its_attempts_in_order() {
    use flashgate_core::ids::{EventId, OrderId, UserId};
    use flashgate_origin::redis::{Attempt, Reservation, ReserveRules};
    let app = spawn_app(generous()).await;
    app.live_event("batch", 2).await;
    let attempt = |user: &str, order: &str, signature: &str| Attempt {
        user: UserId::parse(user).expect("user id"),
        new_order: OrderId::parse(order).expect("order id"),
        signature: signature.to_owned(),
        signed_at: 1_764_000_000_000,
        room_position: None,
        client_net: None,
    };
    let rules = ReserveRules {
        now: app.clock.now_ms(),
        window_ms: 1000,
        limit: 1000,
        replay_window_ms: 60_000,
    };
    let event = EventId::parse("batch").expect("event id");
    let verdicts = app
        .store
        .reserve(
            &event,
            rules,
            &[
                attempt("ann", "o1", "s1"),
                attempt("ann", "o2", "s2"),
                attempt("bob", "o3", "s1"),
                attempt("bob", "o4", "s4"),
                attempt("cid", "o5", "s5"),
            ],
        )
        .await
        .expect("reserve call");
    let o = |id: &str| OrderId::parse(id).expect("order id");
    assert_eq!(
        verdicts,
        vec![
            Reservation::Reserved(o("o1")),
            Reservation::AlreadyPurchased("o1".into()),
            Reservation::Replayed,
            Reservation::Reserved(o("o4")),
            // Two reservations made and two buyers, this call's own included.
            Reservation::SoldOut("2:2".into()),
        ]
    );
    let stats = app.stats("batch").await;
    assert_eq!(stats["stock_left"], 0, "{stats}");
    assert_eq!(stats["reserved"], 2, "{stats}");
    app.stop().await;
}

/// The edge's id of a request (X-Request-Id, its CF-Ray) is the answer's, so edge and
/// origin logs join; without one, or with one unfit for a log line, the origin makes one.
#[tokio::test]
async fn every_answer_names_its_request_id() {
    let app = spawn_app(Figment::new()).await;
    let ask = |id: Option<&'static str>| {
        let mut req = app.http.get(format!("{}/healthz", app.base));
        if let Some(id) = id {
            req = req.header("x-request-id", id);
        }
        async move {
            let resp = req.send().await.expect("answers");
            resp.headers()
                .get("x-request-id")
                .map(|v| v.to_str().expect("ascii").to_owned())
        }
    };
    assert_eq!(
        ask(Some("8d2f1a7c9b3e4f60-NRT")).await.as_deref(),
        Some("8d2f1a7c9b3e4f60-NRT")
    );
    let long: &'static str = Box::leak("a".repeat(65).into_boxed_str());
    for unfit in [None, Some("two words"), Some("a/b;c"), Some(long)] {
        let made = ask(unfit).await.expect("an id");
        assert_eq!(made.len(), 32, "{made}");
        assert!(made.bytes().all(|b| b.is_ascii_hexdigit()), "{made}");
    }
    app.stop().await;
}
