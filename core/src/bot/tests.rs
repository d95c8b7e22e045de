//! Tests of the parent module.

use super::*;
use proptest::prelude::*;

const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

fn browser() -> Client<'static> {
    Client {
        ip: Some("203.0.113.9".parse().expect("ip")),
        user_agent: Some(CHROME),
        accept: Some("*/*"),
        accept_language: Some("zh-CN,zh;q=0.9"),
        sec_fetch_site: Some("same-origin"),
        origin: Some("https://shop.example"),
        host: Some("shop.example"),
        has_query: false,
    }
}

fn rules() -> Rules {
    Rules {
        allow: AllowList::parse("127.0.0.0/8, ::1").expect("valid"),
        ..Rules::default()
    }
}

fn verdict(client: Client<'_>) -> Verdict {
    Tracker::default().assess(&rules(), &client, 0)
}

#[test]
fn a_browser_passes() {
    let v = verdict(browser());
    assert_eq!((v.score, v.blocked, v.reason()), (0, false, None));
}

#[test]
fn automation_agents_are_blocked() {
    for ua in [
        "curl/8.5.0",
        "python-requests/2.31.0",
        "Python-urllib/3.11",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36",
        "k6/1.1.0 (https://k6.io/)",
        "Go-http-client/1.1",
        "node",
        "Wget/1.21",
    ] {
        let v = verdict(Client {
            user_agent: Some(ua),
            ..browser()
        });
        assert_eq!(v.reason(), Some("bot_automation_agent"), "{ua}");
    }
}

#[test]
fn product_tokens_match_only_at_word_starts() {
    // A phone model or a word that merely contains a token is not a tool.
    for ua in [
        "Mozilla/5.0 (Linux; Android 9; CUBOT X19) AppleWebKit/537.36 Chrome/120 Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) Chrome/131 Mobile Safari/537.36 Kwrk",
    ] {
        assert!(!verdict(Client { user_agent: Some(ua), ..browser() }).blocked, "{ua}");
    }
}

#[test]
fn no_user_agent_is_decisive() {
    let v = verdict(Client {
        user_agent: None,
        ..browser()
    });
    assert_eq!(v.reason(), Some("bot_no_user_agent"));
    let blank = verdict(Client {
        user_agent: Some("  "),
        ..browser()
    });
    assert_eq!(blank.reason(), Some("bot_no_user_agent"));
}

#[test]
fn missing_browser_headers_add_up() {
    let no_lang = verdict(Client {
        accept_language: None,
        ..browser()
    });
    assert_eq!((no_lang.score, no_lang.blocked), (60, false));
    let neither = verdict(Client {
        accept: None,
        accept_language: Some(""),
        ..browser()
    });
    assert_eq!(neither.score, 100);
    assert_eq!(neither.reason(), Some("bot_missing_headers"));
}

#[test]
fn request_shape() {
    let cross = verdict(Client {
        sec_fetch_site: Some("cross-site"),
        ..browser()
    });
    assert_eq!(cross.fired, vec![(Rule::RequestShape, 50)]);
    let other_origin = verdict(Client {
        origin: Some("https://evil.example"),
        sec_fetch_site: None,
        ..browser()
    });
    assert_eq!(other_origin.score, 50);
    let query_short_ua = verdict(Client {
        has_query: true,
        user_agent: Some("Mozilla"),
        ..browser()
    });
    assert_eq!(query_short_ua.score, 70);
    // Shape and a missing language header together reach the threshold; the rule
    // that weighed most names the reason.
    let together = verdict(Client {
        has_query: true,
        origin: Some("https://evil.example"),
        accept_language: None,
        ..browser()
    });
    assert_eq!(together.score, 140);
    assert_eq!(together.reason(), Some("bot_request_shape"));
}

#[test]
fn threshold_is_configurable_and_zero_turns_filtering_off() {
    let no_lang = Client {
        accept_language: None,
        ..browser()
    };
    let strict = Rules {
        threshold: 60,
        ..rules()
    };
    let v = Tracker::default().assess(&strict, &no_lang, 0);
    assert_eq!(v.reason(), Some("bot_missing_headers"));
    let off = Rules {
        threshold: 0,
        ..rules()
    };
    let curl = Client {
        user_agent: Some("curl/8"),
        ..browser()
    };
    assert!(!Tracker::default().assess(&off, &curl, 0).blocked);
}

#[test]
fn ip_burst_per_second_window() {
    let r = Rules {
        ip_burst: 3,
        ..rules()
    };
    let mut t = Tracker::default();
    let c = browser();
    for _ in 0..3 {
        assert!(!t.assess(&r, &c, 10).blocked);
    }
    assert_eq!(t.assess(&r, &c, 999).reason(), Some("bot_ip_burst"));
    // Another IP is counted apart; the next second starts afresh.
    let other = Client {
        ip: Some("203.0.113.10".parse().expect("ip")),
        ..browser()
    };
    assert!(!t.assess(&r, &other, 999).blocked);
    assert!(!t.assess(&r, &c, 1010).blocked);
}

#[test]
fn ipv6_clients_are_counted_by_their_64() {
    let r = Rules {
        ip_burst: 1,
        ..rules()
    };
    let mut t = Tracker::default();
    let a = Client {
        ip: Some("2001:db8:1:2::1".parse().expect("ip")),
        ..browser()
    };
    let b = Client {
        ip: Some("2001:db8:1:2:ffff::9".parse().expect("ip")),
        ..browser()
    };
    assert!(!t.assess(&r, &a, 0).blocked);
    assert_eq!(t.assess(&r, &b, 0).reason(), Some("bot_ip_burst"));
}

#[test]
fn allow_list_lifts_every_rule() {
    let r = Rules {
        ip_burst: 1,
        ..rules()
    };
    let mut t = Tracker::default();
    // A load test: one loopback address, one scripted client, many users.
    let k6 = Client {
        ip: Some("127.0.0.1".parse().expect("ip")),
        user_agent: Some("k6/1.1.0 (https://k6.io/)"),
        accept: None,
        accept_language: None,
        has_query: true,
        ..Client::default()
    };
    for _ in 0..50 {
        let v = t.assess(&r, &k6, 0);
        assert!(!v.blocked && v.allow_listed && v.score == 0, "{v:?}");
    }
    assert_eq!(t.tally.allow_listed, 50);
}

#[test]
fn tally_counts_each_verdict() {
    let mut t = Tracker::default();
    let r = rules();
    t.assess(&r, &browser(), 0);
    t.assess(
        &r,
        &Client {
            user_agent: Some("curl/8"),
            ..browser()
        },
        0,
    );
    t.assess(
        &r,
        &Client {
            ip: Some("::1".parse().expect("ip")),
            ..browser()
        },
        0,
    );
    assert_eq!(t.tally.allowed, 2);
    assert_eq!(t.tally.allow_listed, 1);
    assert_eq!(t.tally.blocked.get("bot_automation_agent"), Some(&1));
    assert_eq!(t.tally.blocked_total(), 1);
}

#[test]
fn allow_list_parsing_and_matching() {
    let l = AllowList::parse("127.0.0.0/8, ::1 10.1.2.3").expect("valid");
    assert!(l.contains("127.0.0.1".parse().expect("ip")));
    assert!(l.contains("127.255.0.9".parse().expect("ip")));
    assert!(l.contains("::1".parse().expect("ip")));
    assert!(l.contains("::ffff:127.0.0.1".parse().expect("ip")));
    assert!(l.contains("10.1.2.3".parse().expect("ip")));
    assert!(!l.contains("10.1.2.4".parse().expect("ip")));
    assert!(!l.contains("128.0.0.1".parse().expect("ip")));
    assert!(!l.contains("::2".parse().expect("ip")));
    assert!(AllowList::parse("").expect("empty is valid").is_empty());
    assert_eq!(AllowList::parse("127.0.0.1/33"), Err("127.0.0.1/33".into()));
    assert_eq!(AllowList::parse("localhost"), Err("localhost".into()));
    let all = AllowList::parse("0.0.0.0/0").expect("valid");
    assert!(all.contains("198.51.100.1".parse().expect("ip")));
    assert!(!all.contains("2001:db8::1".parse().expect("ip")));
}

#[test]
fn burst_counter_stays_bounded() {
    let mut c = BurstCounter::default();
    for k in 0..(BURST_KEYS as u64 + 10) {
        c.hit(k, 0);
    }
    assert!(c.len() <= BURST_KEYS);
    // Old windows are dropped first when the map is full.
    let mut c = BurstCounter::default();
    for k in 0..BURST_KEYS as u64 {
        c.hit(k, 0);
    }
    assert_eq!(c.hit(u64::MAX, 5000), 1);
    assert_eq!(c.len(), 1);
}

#[test]
fn a_flood_of_distinct_ips_does_not_make_the_counter_forget_a_heavy_hitter() {
    let r = Rules {
        ip_burst: 100,
        ..rules()
    };
    let mut t = Tracker::default();
    let hitter = browser();
    for _ in 0..100 {
        assert!(!t.assess(&r, &hitter, 500).blocked);
    }
    assert_eq!(t.assess(&r, &hitter, 500).reason(), Some("bot_ip_burst"));
    // Three times as many distinct /64s as the counter holds, all in the same second,
    // while the heavy hitter keeps sending.
    for i in 0..3 * BURST_KEYS as u128 {
        let ip = std::net::Ipv6Addr::from((0x2001_0db8_u128 << 96) | (i << 64));
        let flood = Client {
            ip: Some(ip.into()),
            ..browser()
        };
        assert!(!t.assess(&r, &flood, 600).blocked);
        if i % 100 == 0 {
            let v = t.assess(&r, &hitter, 700);
            assert_eq!(v.reason(), Some("bot_ip_burst"), "forgotten after {i} keys");
        }
    }
    assert!(t.ips.len() <= BURST_KEYS);
    assert_eq!(t.assess(&r, &hitter, 999).reason(), Some("bot_ip_burst"));
    // Its next second starts afresh, as for anyone.
    assert!(!t.assess(&r, &hitter, 1500).blocked);
}

#[test]
fn a_full_counter_keeps_counting_the_keys_it_holds() {
    let mut c = BurstCounter::default();
    for k in 0..BURST_KEYS as u64 {
        c.hit(k, 0);
    }
    // Key 7 is seen again: it is counted, and the next new key evicts others.
    assert_eq!(c.hit(7, 10), 2);
    assert_eq!(c.hit(u64::MAX, 20), 1);
    assert_eq!(c.hit(7, 30), 3);
    assert!(c.len() < BURST_KEYS);
    assert!(c.len() >= BURST_KEYS * 7 / 8);
}

#[test]
fn turnstile_body_and_answer() {
    let body = serde_json::json!({"turnstile_token": " abc "});
    assert_eq!(turnstile_token(&body), Some("abc"));
    assert_eq!(turnstile_token(&serde_json::json!({})), None);
    assert_eq!(
        turnstile_token(&serde_json::json!({"turnstile_token": 5})),
        None
    );
    assert!(siteverify_passed(br#"{"success":true,"error-codes":[]}"#));
    assert!(!siteverify_passed(
        br#"{"success":false,"error-codes":["invalid-input-response"]}"#
    ));
    assert!(!siteverify_passed(b"<html>"));
    let call = serde_json::to_value(Siteverify {
        secret: "s",
        response: "t",
        remoteip: None,
    })
    .expect("serializes");
    assert_eq!(call, serde_json::json!({"secret": "s", "response": "t"}));
}

proptest! {
    #[test]
    fn burst_counter_admits_at_most_twice_the_limit_in_any_second(
        steps in proptest::collection::vec(0i64..300, 1..300), limit in 1u32..20
    ) {
        let mut c = BurstCounter::default();
        let mut now = 0;
        let mut admitted = Vec::new();
        for step in steps {
            now += step;
            if c.hit("k", now) <= limit { admitted.push(now); }
        }
        for (i, t) in admitted.iter().enumerate() {
            let within = admitted[i..].iter().take_while(|u| **u < t + BURST_WINDOW_MS).count();
            prop_assert!(within <= 2 * limit as usize);
        }
    }

    #[test]
    fn requests_a_second_apart_are_never_a_burst(n in 1usize..50) {
        let mut c = BurstCounter::default();
        for i in 0..n {
            prop_assert_eq!(c.hit("k", i as i64 * BURST_WINDOW_MS), 1);
        }
    }

    #[test]
    fn any_automation_token_blocks_whatever_else_is_sent(
        i in 0usize..AUTOMATION_AGENTS.len(), suffix in "[a-z0-9./ ]{0,20}"
    ) {
        let ua = format!("{}{}", AUTOMATION_AGENTS[i], suffix);
        let v = verdict(Client { user_agent: Some(&ua), ..browser() });
        prop_assert!(v.blocked);
    }

    #[test]
    fn allow_listed_clients_are_never_blocked(
        ua in proptest::option::of(".{0,40}"), accept in proptest::option::of("[a-z/*]{0,10}"),
        query: bool, cross: bool
    ) {
        let c = Client {
            ip: Some("127.0.0.1".parse().expect("ip")),
            user_agent: ua.as_deref(),
            accept: accept.as_deref(),
            accept_language: None,
            sec_fetch_site: cross.then_some("cross-site"),
            has_query: query,
            ..Client::default()
        };
        let v = Tracker::default().assess(&rules(), &c, 0);
        prop_assert!(!v.blocked);
    }
}
