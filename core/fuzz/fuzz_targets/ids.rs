//! `UserId`, `EventId` and `OrderId` parsing: what parses re-serializes to itself, as text
//! and as JSON, and JSON accepts exactly what `parse` accepts.
#![no_main]

use flashgate_core::ids::{EventId, OrderId, UserId};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let user = check::<UserId>(s, UserId::parse, UserId::as_str, |b| {
        b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
    });
    let order = check::<OrderId>(s, OrderId::parse, OrderId::as_str, |b| {
        b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
    });
    let event = check::<EventId>(s, EventId::parse, EventId::as_str, |b| {
        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'
    });
    // One alphabet for users and orders; every event slug would also be a user id.
    assert_eq!(user, order);
    assert!(!event || user);
});

fn check<T>(
    s: &str,
    parse: fn(&str) -> Result<T, flashgate_core::ids::IdError>,
    as_str: fn(&T) -> &str,
    allowed: fn(u8) -> bool,
) -> bool
where
    T: serde::Serialize + serde::de::DeserializeOwned + std::fmt::Display + Into<String> + Clone,
    T: PartialEq + std::fmt::Debug,
{
    let parsed = parse(s);
    let expected = (1..=64).contains(&s.len()) && s.bytes().all(allowed);
    assert_eq!(parsed.is_ok(), expected, "{s:?}");
    let from_json = serde_json::from_value::<T>(Value::String(s.to_owned()));
    assert_eq!(from_json.is_ok(), expected, "JSON disagrees on {s:?}");
    if let Ok(id) = parsed {
        assert_eq!(as_str(&id), s);
        assert_eq!(id.to_string(), s);
        let json = serde_json::to_string(&id).expect("an id serializes");
        assert_eq!(
            serde_json::from_str::<T>(&json).expect("and parses back"),
            id
        );
        assert_eq!(Into::<String>::into(id.clone()), s);
        assert_eq!(from_json.ok(), Some(id));
    }
    expected
}
