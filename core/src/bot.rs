//! Bot filtering at the edge: a scoring rule set over what a request shows about its
//! client, and the optional Turnstile check of the ticket endpoint.
//!
//! Each rule that fires adds points; a request whose score reaches the threshold is
//! refused with 403 and the reason of the rule that weighed most (`bot_…`). Rules read
//! the client IP (`CF-Connecting-IP`), the User-Agent and browser headers (the client's
//! fingerprint), the request's shape, and short per-IP bursts counted in the isolate.
//! Every rule here is a per-IP or fingerprint rule, so clients on the allow-list (loopback
//! in the dev stack, where load tests drive thousands of users from one address with one
//! User-Agent) skip them all; the per-user rules (the edge's per-user rate-limit binding,
//! the origin's per-user window) still apply to them, as 429s.

use crate::bounded::Bounded;
use crate::Millis;
use serde::Serialize;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;

/// Points of a rule that is enough on its own (with the default threshold).
pub const DECISIVE: u32 = 100;
/// Default score at which a request is refused.
pub const DEFAULT_THRESHOLD: u32 = DECISIVE;
/// Default most requests per second one IP may send to the shopper API (per isolate).
pub const DEFAULT_IP_BURST: u32 = 100;
/// Length of the burst windows.
pub const BURST_WINDOW_MS: Millis = 1000;
/// Most keys a burst counter remembers (the isolate's memory stays bounded).
pub const BURST_KEYS: usize = 20_000;

/// Product tokens of HTTP libraries, headless browsers and load tools. Matched,
/// case-insensitively, at the start of the User-Agent or of one of its words.
pub const AUTOMATION_AGENTS: &[&str] = &[
    "curl/",
    "wget/",
    "python-requests",
    "python-urllib",
    "python-httpx",
    "aiohttp",
    "httpx/",
    "go-http-client",
    "java/",
    "okhttp",
    "apache-httpclient",
    "libwww-perl",
    "headlesschrome",
    "phantomjs",
    "selenium",
    "webdriver",
    "puppeteer",
    "playwright",
    "k6/",
    "apachebench",
    "jmeter",
    "locust",
    "scrapy",
    "node-fetch",
    "undici",
    "axios/",
    "postmanruntime",
    "httpie",
    "wrk",
];

/// What a request shows about its client.
#[derive(Debug, Clone, Copy, Default)]
pub struct Client<'a> {
    /// `CF-Connecting-IP`, when present and readable.
    pub ip: Option<IpAddr>,
    /// `User-Agent`.
    pub user_agent: Option<&'a str>,
    /// `Accept`.
    pub accept: Option<&'a str>,
    /// `Accept-Language`.
    pub accept_language: Option<&'a str>,
    /// `Sec-Fetch-Site`, which browsers send with every fetch.
    pub sec_fetch_site: Option<&'a str>,
    /// `Origin`.
    pub origin: Option<&'a str>,
    /// The host the request was sent to.
    pub host: Option<&'a str>,
    /// Whether the URL carries a query string (the page never sends one).
    pub has_query: bool,
}

/// One rule of the set. Its reason code is the `reason` of the 403.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    /// No User-Agent at all: 100 points.
    NoUserAgent,
    /// An HTTP library, headless browser or load tool ([`AUTOMATION_AGENTS`]): 100.
    AutomationAgent,
    /// No `Accept` (40) and/or no `Accept-Language` (60): every browser sends both.
    MissingHeaders,
    /// A shape the page never produces: sent from another site (50), a query string
    /// (30), a User-Agent shorter than 8 or longer than 512 characters (40).
    RequestShape,
    /// More than the IP burst from one IP in one second: 100.
    IpBurst,
}

impl Rule {
    /// Every rule, in the order ties are broken.
    pub const ALL: [Rule; 5] = [
        Rule::NoUserAgent,
        Rule::AutomationAgent,
        Rule::MissingHeaders,
        Rule::RequestShape,
        Rule::IpBurst,
    ];

    /// The `reason` of the 403 when this rule weighed most.
    pub fn reason(self) -> &'static str {
        match self {
            Rule::NoUserAgent => "bot_no_user_agent",
            Rule::AutomationAgent => "bot_automation_agent",
            Rule::MissingHeaders => "bot_missing_headers",
            Rule::RequestShape => "bot_request_shape",
            Rule::IpBurst => "bot_ip_burst",
        }
    }
}

/// An allow-list of IP networks (`127.0.0.0/8, ::1`); IPv4-mapped IPv6 matches IPv4.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList(Vec<(IpAddr, u8)>);

impl AllowList {
    /// Parses a comma- or space-separated list of addresses and CIDR networks. The error
    /// names the first entry that is neither.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut nets = Vec::new();
        for entry in list
            .split([',', ' '])
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let (addr, bits) = match entry.split_once('/') {
                Some((a, b)) => (a, Some(b)),
                None => (entry, None),
            };
            let ip: IpAddr = addr.parse().map_err(|_| entry.to_owned())?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                Some(b) => b.parse::<u8>().ok().filter(|b| *b <= max),
                None => Some(max),
            }
            .ok_or_else(|| entry.to_owned())?;
            nets.push((ip.to_canonical(), bits));
        }
        Ok(Self(nets))
    }

    /// Whether `ip` is in one of the networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|(net, bits)| {
            net.is_ipv4() == ip.is_ipv4() && masked(*net, *bits) == masked(ip, *bits)
        })
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `ip` with all but its first `bits` bits cleared (`bits` at most the family's width),
/// tagged with its family (true for IPv6).
fn masked(ip: IpAddr, bits: u8) -> (bool, u128) {
    match ip {
        IpAddr::V4(v4) => {
            let n = u32::from(v4);
            let m = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(bits))
            };
            (false, u128::from(n & m))
        }
        IpAddr::V6(v6) => {
            let n = u128::from(v6);
            let m = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(bits))
            };
            (true, n & m)
        }
    }
}

/// The key an IP is counted under: the address for IPv4, its /64 for IPv6 (one
/// subscriber usually holds a whole /64).
pub fn ip_key(ip: IpAddr) -> (bool, u128) {
    match ip.to_canonical() {
        v4 @ IpAddr::V4(_) => masked(v4, 32),
        v6 => masked(v6, 64),
    }
}

/// The knobs of the rule set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// Score at which a request is refused; 0 turns bot filtering off.
    pub threshold: u32,
    /// Clients that skip the rule set.
    pub allow: AllowList,
    /// Most shopper API requests per second from one IP (per isolate).
    pub ip_burst: u32,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            threshold: DEFAULT_THRESHOLD,
            allow: AllowList::default(),
            ip_burst: DEFAULT_IP_BURST,
        }
    }
}

impl Rules {
    /// Whether this client is on the allow-list.
    pub fn allow_listed(&self, client: &Client<'_>) -> bool {
        client.ip.is_some_and(|ip| self.allow.contains(ip))
    }
}

/// The score of one request and the rules that fired.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Verdict {
    /// Sum of the points of every rule that fired.
    pub score: u32,
    /// Points per rule that fired, in [`Rule::ALL`] order.
    pub fired: Vec<(Rule, u32)>,
    /// Whether the client was on the allow-list (and so not scored).
    pub allow_listed: bool,
    /// Whether the score reached the threshold.
    pub blocked: bool,
}

impl Verdict {
    /// The rule that weighed most (the first of equals).
    pub fn top(&self) -> Option<Rule> {
        self.fired
            .iter()
            .fold(None, |best: Option<(Rule, u32)>, &(r, p)| match best {
                Some((_, bp)) if bp >= p => best,
                _ => Some((r, p)),
            })
            .map(|(r, _)| r)
    }

    /// The 403 reason when blocked.
    pub fn reason(&self) -> Option<&'static str> {
        self.blocked.then(|| self.top().map(Rule::reason)).flatten()
    }
}

/// Whether `user_agent` names an automation tool ([`AUTOMATION_AGENTS`]) at its start or
/// at the start of one of its words. No allocation: this runs on every request.
pub fn automation_agent(user_agent: &str) -> bool {
    let ua = user_agent.as_bytes();
    if user_agent.eq_ignore_ascii_case("node") {
        return true;
    }
    (0..ua.len())
        .filter(|&i| i == 0 || matches!(ua[i - 1], b' ' | b'(' | b';' | b',' | b'/'))
        .any(|i| {
            let rest = &ua[i..];
            let first = rest[0].to_ascii_lowercase();
            AUTOMATION_AGENTS.iter().any(|t| {
                let t = t.as_bytes();
                t[0] == first && rest.len() >= t.len() && rest[..t.len()].eq_ignore_ascii_case(t)
            })
        })
}

/// The points of the rules that read only the request (fingerprint and shape).
pub fn fingerprint_points(client: &Client<'_>) -> Vec<(Rule, u32)> {
    let mut fired = Vec::new();
    let ua = client.user_agent.map(str::trim).unwrap_or("");
    if ua.is_empty() {
        fired.push((Rule::NoUserAgent, DECISIVE));
    } else {
        if automation_agent(ua) {
            fired.push((Rule::AutomationAgent, DECISIVE));
        }
    }
    let blank = |h: Option<&str>| h.is_none_or(|v| v.trim().is_empty());
    let missing = if blank(client.accept) { 40 } else { 0 }
        + if blank(client.accept_language) { 60 } else { 0 };
    if missing > 0 {
        fired.push((Rule::MissingHeaders, missing));
    }
    let mut shape = 0;
    if cross_site(client) {
        shape += 50;
    }
    if client.has_query {
        shape += 30;
    }
    if !ua.is_empty() && !(8..=512).contains(&ua.len()) {
        shape += 40;
    }
    if shape > 0 {
        fired.push((Rule::RequestShape, shape));
    }
    fired
}

fn cross_site(client: &Client<'_>) -> bool {
    if client
        .sec_fetch_site
        .is_some_and(|s| s.trim().eq_ignore_ascii_case("cross-site"))
    {
        return true;
    }
    match (client.origin, client.host) {
        (Some(origin), Some(host)) if origin != "null" => {
            let origin_host = origin
                .split_once("://")
                .map_or(origin, |(_, rest)| rest)
                .trim_end_matches('/');
            !origin_host.eq_ignore_ascii_case(host)
        }
        _ => false,
    }
}

/// Requests per key in fixed windows of [`BURST_WINDOW_MS`], remembering at most
/// [`BURST_KEYS`] keys. When full, a new key first drops the keys whose window has
/// passed, then the least recently seen ones ([`Bounded`]): a flood of distinct keys
/// (addresses are cheap, IPv6 /64s above all) cannot make it forget a heavy hitter.
#[derive(Debug, Clone)]
pub struct BurstCounter<K> {
    seen: Bounded<K, (Millis, u32)>,
}

impl<K: Hash + Eq> Default for BurstCounter<K> {
    fn default() -> Self {
        Self {
            seen: Bounded::new(BURST_KEYS),
        }
    }
}

impl<K: Hash + Eq> BurstCounter<K> {
    /// Counts one request of `key` at `now`; the count of its current window.
    pub fn hit(&mut self, key: K, now: Millis) -> u32 {
        let current = |start: Millis| now >= start && now - start < BURST_WINDOW_MS;
        if let Some((start, count)) = self.seen.get_mut(&key) {
            if !current(*start) {
                *start = now;
                *count = 0;
            }
            *count = count.saturating_add(1);
            return *count;
        }
        self.seen
            .insert(key, (now, 1), |(start, _)| !current(*start));
        1
    }

    /// How many keys are remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// Verdicts counted since the isolate started (exposed by the edge, see docs/edge.md).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Requests assessed and let through (allow-listed ones included).
    pub allowed: u64,
    /// Of those, from allow-listed clients.
    pub allow_listed: u64,
    /// Requests refused, by reason.
    pub blocked: HashMap<&'static str, u64>,
}

impl Tally {
    /// Counts one verdict.
    pub fn count(&mut self, v: &Verdict) {
        match v.reason() {
            Some(reason) => *self.blocked.entry(reason).or_insert(0) += 1,
            None => {
                self.allowed += 1;
                self.allow_listed += u64::from(v.allow_listed);
            }
        }
    }

    /// Requests refused, all reasons.
    pub fn blocked_total(&self) -> u64 {
        self.blocked.values().sum()
    }
}

/// What the isolate remembers between requests for the burst rule, and the tally.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    ips: BurstCounter<(bool, u128)>,
    /// Verdicts so far.
    pub tally: Tally,
}

impl Tracker {
    /// Scores one request from `client` at `now` and counts the verdict in
    /// [`Tracker::tally`]. Allow-listed clients are not scored.
    pub fn assess(&mut self, rules: &Rules, client: &Client<'_>, now: Millis) -> Verdict {
        let allow_listed = rules.allow_listed(client);
        let mut fired = Vec::new();
        if !allow_listed {
            fired = fingerprint_points(client);
            if let Some(ip) = client.ip {
                if self.ips.hit(ip_key(ip), now) > rules.ip_burst {
                    fired.push((Rule::IpBurst, DECISIVE));
                }
            }
        }
        let score = fired.iter().map(|(_, p)| p).sum();
        let verdict = Verdict {
            score,
            fired,
            allow_listed,
            blocked: rules.threshold > 0 && score >= rules.threshold,
        };
        self.tally.count(&verdict);
        verdict
    }
}

/// Cloudflare Turnstile's verification endpoint.
pub const SITEVERIFY_URL: &str = "https://challenges.cloudflare.com/turnstile/v0/siteverify";

/// The body of a siteverify call (sent as JSON).
#[derive(Debug, Clone, Serialize)]
pub struct Siteverify<'a> {
    /// The Turnstile secret key.
    pub secret: &'a str,
    /// The token the widget gave the page.
    pub response: &'a str,
    /// The client's IP, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remoteip: Option<String>,
}

/// The Turnstile token of a ticket request body (`{"turnstile_token": "…"}`).
pub fn turnstile_token(body: &serde_json::Value) -> Option<&str> {
    body.get("turnstile_token")
        .and_then(serde_json::Value::as_str)
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 2048)
}

/// Whether a siteverify answer says the token is good.
pub fn siteverify_passed(answer: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(answer)
        .ok()
        .and_then(|v| v.get("success").and_then(serde_json::Value::as_bool))
        .unwrap_or(false)
}

/// The outcome of the human check of the ticket endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Human {
    /// No Turnstile secret is configured: the check is skipped.
    NotConfigured,
    /// Configured, and the body carries no token: 403 `turnstile_missing`.
    Missing,
    /// Siteverify accepted the token.
    Passed,
    /// Siteverify refused the token: 403 `turnstile_failed`.
    Failed,
    /// Siteverify could not be asked: 503 busy.
    Unavailable,
}

#[cfg(test)]
mod tests {
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
}
