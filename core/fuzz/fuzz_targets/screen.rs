//! `admission::screen`, what the edge checks on every shopper request before it looks
//! anything up: JWT, body, event id, bot verdict (with `AllowList::parse` of `ALLOW_IPS`).
//!
//! Input, NUL-separated, an empty field being an absent header: event id, Authorization,
//! Content-Type, User-Agent, Accept, Accept-Language, Sec-Fetch-Site, Origin, Host,
//! CF-Connecting-IP, ALLOW_IPS, knobs, body. An Authorization of `@<user>` becomes a valid
//! bearer token for that user, so the checks after the JWT are reached. Knobs, one byte
//! each: threshold (`0`: off, else byte + 1), IP burst, repeats (1–4, the same request a
//! millisecond apart), query string (odd).
#![no_main]

use flashgate_core::admission::{screen, Incoming};
use flashgate_core::bot::{AllowList, Client, Rules, Tracker};
use flashgate_core::ids::{EventId, UserId};
use flashgate_core::jwt;
use flashgate_core::wire::{self, Outcome};
use flashgate_core_fuzz::{fields, header, ring, text, AUTH_SECRET, NOW};
use libfuzzer_sys::fuzz_target;
use std::net::IpAddr;

fuzz_target!(|data: &[u8]| {
    let [event_id, auth, ct, ua, accept, lang, site, origin, host, ip, allow, knobs, body] =
        fields(data, 13)[..]
    else {
        unreachable!()
    };
    let Some(event_id) = text(event_id) else {
        return;
    };
    let minted;
    let authorization = match header(auth) {
        Some(a) if a.starts_with('@') && UserId::parse(&a[1..]).is_ok() => {
            let user = UserId::parse(&a[1..]).expect("checked");
            minted = format!("Bearer {}", jwt::issue(&user, NOW / 1000 + 60, AUTH_SECRET));
            Some(minted.as_str())
        }
        other => other,
    };
    let Some(allow) = text(allow) else { return };
    let allow = match AllowList::parse(allow) {
        Ok(list) => list,
        Err(bad) => {
            assert!(
                allow.contains(bad.as_str()),
                "{bad:?} is not an entry of {allow:?}"
            );
            AllowList::default()
        }
    };
    let knob = |i: usize| knobs.get(i).copied();
    let rules = Rules {
        threshold: knob(0).map_or(100, |b| if b == b'0' { 0 } else { u32::from(b) + 1 }),
        allow,
        ip_burst: knob(1).map_or(100, u32::from),
    };
    let repeats = knob(2).map_or(1, |b| 1 + b % 4);
    let client = Client {
        ip: header(ip).and_then(|s| s.trim().parse::<IpAddr>().ok()),
        user_agent: header(ua),
        accept: header(accept),
        accept_language: header(lang),
        sec_fetch_site: header(site),
        origin: header(origin),
        host: header(host),
        has_query: knob(3).is_some_and(|b| b % 2 == 1),
    };
    let req = Incoming {
        event_id,
        authorization,
        content_type: header(ct),
        body,
        client,
    };
    let mut tracker = Tracker::default();
    for r in 0..i64::from(repeats) {
        let now = NOW + r;
        let mut oracle = tracker.clone();
        let got = screen(&req, &ring(AUTH_SECRET), &rules, &mut tracker, now);
        // The documented order, restated: 401, then 413/415/400, then 404, then 403.
        let user = authorization
            .and_then(jwt::bearer)
            .and_then(|t| jwt::verify(t, &ring(AUTH_SECRET), now).ok());
        let Some(claims) = user else {
            assert_eq!(got.map(|_| ()), Err(Outcome::Unauthenticated));
            continue;
        };
        let body = match wire::check_json_body(req.content_type, body) {
            Ok(v) => v,
            Err(o) => {
                assert_eq!(got.map(|_| ()), Err(o));
                continue;
            }
        };
        let Ok(event) = EventId::parse(event_id) else {
            assert_eq!(got.map(|_| ()), Err(Outcome::EventNotFound));
            continue;
        };
        let verdict = oracle.assess(&rules, &client, now);
        match got {
            Ok(s) => {
                assert!(!verdict.blocked);
                assert_eq!((s.user, s.event, s.body), (claims.sub, event, body));
                assert_eq!(s.verdict, verdict);
            }
            Err(Outcome::Forbidden { reason }) => {
                assert!(verdict.blocked && !verdict.allow_listed && rules.threshold > 0);
                assert_eq!(Some(reason.as_str()), verdict.reason());
                assert!(reason.starts_with("bot_"));
            }
            Err(other) => panic!("{other:?} after every check but the bot verdict passed"),
        }
    }
});
