//! Tests of the parent module.

use super::*;

#[test]
fn contract_status_codes_and_fields() {
    let q = Outcome::Queued {
        order_id: "o1".into(),
    }
    .answer();
    assert_eq!(q.status, 202);
    assert_eq!(q.body["status"], "queued");
    assert_eq!(q.body["message"], "抢购成功, 订单处理中");
    let r = Outcome::RateLimited {
        retry_after_secs: 0,
    }
    .answer();
    assert_eq!((r.status, r.retry_after_secs), (429, Some(1)));
    assert_eq!(r.body["message"], "活动火爆, 请稍后再试");
    assert_eq!(Outcome::SoldOut.answer().status, 409);
    assert_eq!(Outcome::Ended.answer().status, 410);
    assert_eq!(Outcome::NoOrder.answer().body["status"], "none");
    let unknown = Outcome::NoOrderNoEvent.answer();
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.body["status"], "none");
    assert_eq!(unknown.body["error"], "event_not_found");
    assert_eq!(
        Outcome::EventNotFound.answer().body["error"],
        "event_not_found"
    );
    assert_eq!(
        Outcome::Unauthenticated.answer().body["error"],
        "unauthenticated"
    );
    let f = Outcome::Forbidden {
        reason: "ticket_missing".into(),
    }
    .answer();
    assert_eq!(
        (f.status, &f.body["reason"]),
        (403, &json!("ticket_missing"))
    );
}

#[test]
fn every_error_body_has_a_code_and_message() {
    for o in [
        Outcome::SoldOut,
        Outcome::Ended,
        Outcome::NotFound,
        Outcome::MethodNotAllowed,
        Outcome::PayloadTooLarge,
        Outcome::UnsupportedMediaType,
        Outcome::Busy {
            retry_after_secs: 1,
        },
        Outcome::RateLimited {
            retry_after_secs: 1,
        },
        Outcome::Unauthenticated,
        Outcome::Forbidden {
            reason: "ticket_missing".into(),
        },
        Outcome::EventNotFound,
        Outcome::NotStarted {
            starts_at: "2026-11-25T12:00:00Z".into(),
        },
        Outcome::NoOrder,
        Outcome::NoOrderNoEvent,
        Outcome::Paused,
        Outcome::RequestTimeout,
        Outcome::EventStarted,
        Outcome::EventNotStarted,
        check_json_body(None, b"{").expect_err("not JSON"),
        check_json_body(None, b"[]").expect_err("not an object"),
    ] {
        let a = o.answer();
        assert!(a.body.get("status").or(a.body.get("error")).is_some());
        // Chinese first, as the contract has it.
        let message = a.body["message"].as_str().expect("a message");
        let first = message.chars().next().expect("not empty");
        assert!(('\u{4e00}'..='\u{9fff}').contains(&first), "{message}");
    }
}

#[test]
fn body_checks() {
    assert_eq!(check_json_body(None, b""), Ok(json!({})));
    assert_eq!(check_json_body(None, b"{}"), Ok(json!({})));
    assert!(check_json_body(Some("application/merge-patch+json"), b"{}").is_ok());
    assert_eq!(
        check_json_body(Some("application/x-www-form-urlencoded"), b"{}"),
        Err(Outcome::UnsupportedMediaType)
    );
    assert_eq!(
        check_json_body(Some("json"), b"{}"),
        Err(Outcome::UnsupportedMediaType)
    );
    assert!(check_json_body(Some("application/json; charset=utf-8"), b"{}").is_ok());
    assert_eq!(
        check_json_body(Some("text/plain"), b"{}"),
        Err(Outcome::UnsupportedMediaType)
    );
    assert_eq!(
        check_json_body(Some("application/json"), &[b' '; 5000]),
        Err(Outcome::PayloadTooLarge)
    );
    assert!(matches!(
        check_json_body(Some("application/json"), b"{"),
        Err(Outcome::BadRequest { .. })
    ));
    assert!(matches!(
        check_json_body(Some("application/json"), b"[1]"),
        Err(Outcome::BadRequest { .. })
    ));
}

#[test]
fn times_round_trip() {
    let t = parse_time("2026-11-24T20:00:00Z").expect("valid");
    assert_eq!(fmt_time(t), "2026-11-24T20:00:00Z");
    assert_eq!(parse_time("2026-11-24T21:00:00+01:00"), Some(t));
    assert_eq!(parse_time("tomorrow"), None);
}

#[test]
fn event_spec_validation() {
    let spec = |stock, s: &str, e: &str| EventSpec {
        name: "Phone".into(),
        stock,
        starts_at: s.into(),
        ends_at: e.into(),
        room: None,
        stock_buckets: None,
    };
    assert!(spec(10, "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z")
        .validate()
        .is_ok());
    assert!(spec(10, "2026-01-02T00:00:00Z", "2026-01-01T00:00:00Z")
        .validate()
        .is_err());
    assert!(spec(
        MAX_STOCK + 1,
        "2026-01-01T00:00:00Z",
        "2026-01-02T00:00:00Z"
    )
    .validate()
    .is_err());
    assert!(spec(1, "soon", "2026-01-02T00:00:00Z").validate().is_err());
    let extra: EventSpec = serde_json::from_value(json!({"name": "Phone", "stock": 3,
        "starts_at": "2026-01-01T00:00:00Z", "ends_at": "2026-01-02T00:00:00Z",
        "price": 4999}))
    .expect("extra fields are ignored");
    assert_eq!(extra.stock, 3);
    assert!(serde_json::from_value::<EventSpec>(json!({"name": "Phone"})).is_err());
}

#[test]
fn stock_buckets_default_to_one_and_stay_within_bounds() {
    let spec = |buckets: serde_json::Value| -> EventSpec {
        serde_json::from_value(json!({"name": "Phone", "stock": 3,
            "starts_at": "2026-01-01T00:00:00Z", "ends_at": "2026-01-02T00:00:00Z",
            "stock_buckets": buckets}))
        .expect("a spec")
    };
    assert_eq!(spec(json!(null)).validate().map(|v| v.stock_buckets), Ok(1));
    assert_eq!(spec(json!(3)).validate().map(|v| v.stock_buckets), Ok(3));
    assert!(spec(json!(0)).validate().is_err());
    assert!(spec(json!(MAX_STOCK_BUCKETS + 1)).validate().is_err());
}

#[test]
fn an_event_spec_carries_its_room_settings() {
    let spec = |room| -> EventSpec {
        serde_json::from_value(json!({"name": "Phone", "stock": 3,
            "starts_at": "2026-01-01T00:00:00Z", "ends_at": "2026-01-02T00:00:00Z",
            "room": room}))
        .expect("a spec")
    };
    assert_eq!(spec(json!(null)).validate().expect("valid").room, None);
    let valid = spec(json!({"admit_per_second": 50}))
        .validate()
        .expect("valid");
    let room = valid.room.expect("room settings");
    assert_eq!((room.admit_per_second, room.prequeue_ms), (50, 300_000));
    let err = spec(json!({"admit_per_second": 0}))
        .validate()
        .expect_err("out of bounds");
    assert!(err.starts_with("room.admit_per_second: "), "{err}");
    let err = spec(json!({"speed": 1})).validate().expect_err("unknown");
    assert!(err.starts_with("room.speed: unknown field"), "{err}");
}

#[test]
fn event_info_shows_room_settings_only_when_the_event_has_them() {
    let mut info: EventInfo = serde_json::from_value(json!({"event_id": "e", "name": "E",
        "stock_total": 1, "stock_left": 1, "starts_at": "2026-01-01T00:00:00Z",
        "ends_at": "2026-01-02T00:00:00Z", "server_time": "2026-01-01T00:00:00Z",
        "state": "upcoming"}))
    .expect("info without room");
    assert_eq!(info.room, None);
    assert!(serde_json::to_value(&info)
        .expect("json")
        .get("room")
        .is_none());
    info.room = Some(crate::room::settings::RoomSettings::default());
    let shown = serde_json::to_value(&info).expect("json");
    assert_eq!(shown["room"]["admit_per_second"], 2000);
    let back: EventInfo = serde_json::from_value(shown.clone()).expect("read back");
    assert_eq!(back, info);
    // Settings this version does not know leave the info readable, without them.
    let mut newer = shown;
    newer["room"]["admit_per_minute"] = json!(5);
    let read: EventInfo = serde_json::from_value(newer).expect("still read");
    assert_eq!(read.room, None);
    assert_eq!(read.event_id, "e");
}

/// Found by fuzzing: times whose UTC year leaves 0000-9999 were accepted but shown as
/// `+10000-…` or `-0001-…`, which nothing reads back (every ticket and purchase of such
/// an event answered 503 at the edge).
#[test]
fn an_event_time_must_read_back_as_it_is_shown() {
    let spec = |s: &str, e: &str| EventSpec {
        name: "Phone".into(),
        stock: 1,
        starts_at: s.into(),
        ends_at: e.into(),
        room: None,
        stock_buckets: None,
    };
    for (s, e) in [
        ("9999-12-31T23:00:00-01:00", "9999-12-31T23:30:00-01:00"),
        ("0000-01-01T00:00:00+01:00", "2026-01-01T00:00:00Z"),
    ] {
        let err = spec(s, e).validate().expect_err("refused");
        assert!(err.contains("0000-9999"), "{err}");
    }
    let w = spec("0000-01-01T00:00:00Z", "9999-12-31T23:59:59Z")
        .validate()
        .expect("the whole readable range");
    assert_eq!(parse_time(&fmt_time(w.ends_at)), Some(w.ends_at));
}
