//! `wire::check_json_body` (every shopper POST, the edge's dev overrides) and the admin
//! API's event: body check, `EventSpec` from the JSON, `validate`.
//!
//! Input: `Content-Type` `\0` body; without a `\0` the whole input is the body and there
//! is no `Content-Type`.
#![no_main]

use flashgate_core::wire::{self, EventSpec, Outcome, MAX_BODY_BYTES, MAX_STOCK};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let (content_type, body) = match data.iter().position(|b| *b == 0) {
        Some(at) => match std::str::from_utf8(&data[..at]) {
            Ok(ct) => (Some(ct), &data[at + 1..]),
            Err(_) => return,
        },
        None => (None, data),
    };
    let checked = wire::check_json_body(content_type, body);
    match &checked {
        Ok(v) => {
            assert!(v.is_object());
            assert!(body.len() <= MAX_BODY_BYTES);
        }
        Err(o) => {
            assert_eq!(body.len() > MAX_BODY_BYTES, *o == Outcome::PayloadTooLarge);
            let status = o.answer().status;
            assert!(matches!(status, 400 | 413 | 415), "{o:?}");
        }
    }
    let Ok(value) = checked else { return };
    // As `PUT /admin/events/{id}` does (origin/src/serve/admin.rs).
    let Ok(spec) = serde_json::from_value::<EventSpec>(value) else {
        return;
    };
    let Ok(window) = spec.validate() else { return };
    assert!(!window.name.is_empty() && window.name == window.name.trim());
    assert!(window.name.chars().count() <= 200);
    assert!(window.stock <= MAX_STOCK && window.starts_at < window.ends_at);
    assert_eq!(wire::parse_time(&spec.starts_at), Some(window.starts_at));
    // The origin shows the window as RFC 3339 and the edge reads it back to gate
    // purchases (edge/src/origin.rs): an accepted event must survive that trip.
    for at in [window.starts_at, window.ends_at] {
        let shown = wire::fmt_time(at);
        assert_eq!(wire::parse_time(&shown), Some(at), "{shown} from {spec:?}");
    }
    let back = serde_json::to_value(&spec).expect("a spec serializes");
    assert!(matches!(back, Value::Object(_)));
});
