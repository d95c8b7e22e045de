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
mod tests;
