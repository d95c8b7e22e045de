//! What guards the origin and lives in the isolate: the purchase token bucket, the bot
//! tracker and its tally, counters of what the edge answered itself; the calls to
//! Cloudflare's Rate Limiting bindings and to Turnstile's siteverify; and the public
//! settings the page needs to pass these guards (`GET /api/page`).

use crate::config::Config;
use crate::origin;
use flashgate_core::admission::Limiter;
use flashgate_core::bot::{self, Human, Siteverify, Tracker};
use flashgate_core::bucket::TokenBucket;
use flashgate_core::Millis;
use serde::Serialize;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::IpAddr;
use worker::{Env, Headers, Method, Request, RequestInit};

/// Binding keyed by user on the purchase endpoint (`[[ratelimits]]` in wrangler.toml).
pub const PURCHASE_LIMITER: &str = "PURCHASE_LIMITER";
/// Binding keyed by client IP on the ticket endpoint.
pub const TICKET_LIMITER: &str = "TICKET_LIMITER";

/// Counters of the isolate, shown by `GET /__edge/stats`.
#[derive(Debug, Default, Serialize)]
pub struct Counters {
    /// Purchases the edge answered itself, by status.
    pub purchase_answered: BTreeMap<u16, u64>,
    /// Purchases forwarded to the origin.
    pub purchase_forwarded: u64,
    /// Tickets issued.
    pub tickets_issued: u64,
    /// Rate-limit binding answers, by binding and outcome.
    pub limiters: BTreeMap<String, u64>,
    /// Data points written to Analytics Engine.
    pub analytics_points: u64,
    /// Analytics Engine writes that failed.
    pub analytics_failed: u64,
}

/// Shortest time between two log lines of bot verdicts from one isolate.
pub const BOT_LOG_EVERY_MS: Millis = 10_000;

/// The isolate's state.
#[derive(Default)]
pub struct Isolate {
    bucket: Option<(u32, TokenBucket)>,
    /// Bot burst counters and the verdict tally.
    pub tracker: Tracker,
    /// What the edge did.
    pub counters: Counters,
    bot_logged_at: Option<Millis>,
}

impl Isolate {
    /// The tally to log with a bot refusal at `now`, at most once per [`BOT_LOG_EVERY_MS`].
    pub fn bot_log_due(&mut self, now: Millis) -> Option<bot::Tally> {
        let due = self
            .bot_logged_at
            .is_none_or(|at| now - at >= BOT_LOG_EVERY_MS);
        due.then(|| {
            self.bot_logged_at = Some(now);
            self.tracker.tally.clone()
        })
    }

    /// The purchase bucket, built (full) on first use and again when `PURCHASE_RPS` changes.
    pub fn bucket(&mut self, rps: u32, now: Millis) -> &mut TokenBucket {
        if self.bucket.as_ref().is_some_and(|(r, _)| *r != rps) {
            self.bucket = None;
        }
        &mut self
            .bucket
            .get_or_insert_with(|| (rps, TokenBucket::new(rps, rps, now)))
            .1
    }
}

thread_local! {
    static ISOLATE: RefCell<Isolate> = RefCell::new(Isolate::default());
}

/// Runs `f` on the isolate's state (never across an await).
pub fn with<R>(f: impl FnOnce(&mut Isolate) -> R) -> R {
    ISOLATE.with(|i| f(&mut i.borrow_mut()))
}

/// Asks the rate-limit binding `name` about `key`. No binding, or a failed call, skips
/// the limiter: the isolate bucket still protects the origin.
pub async fn limit(env: &Env, name: &str, key: Option<String>) -> Limiter {
    let Some(key) = key else {
        return count(name, Limiter::Skipped);
    };
    let Ok(binding) = env.rate_limiter(name) else {
        return count(name, Limiter::Skipped);
    };
    let outcome = match binding.limit(key).await {
        Ok(o) if o.success => Limiter::Allowed,
        Ok(_) => Limiter::Refused,
        Err(e) => {
            worker::console_warn!("rate limiter {name} failed: {e}");
            Limiter::Skipped
        }
    };
    count(name, outcome)
}

fn count(name: &str, outcome: Limiter) -> Limiter {
    let word = match outcome {
        Limiter::Allowed => "allowed",
        Limiter::Refused => "refused",
        Limiter::Skipped => "skipped",
    };
    with(|i| {
        *i.counters
            .limiters
            .entry(format!("{name}.{word}"))
            .or_insert(0) += 1
    });
    outcome
}

/// The per-IP limiter key of a client; `None` (not limited) when the IP is unknown or
/// allow-listed.
pub fn ip_key(cfg: &Config, ip: Option<IpAddr>) -> Option<String> {
    let ip = ip.filter(|ip| !cfg.bot.allow.contains(*ip))?;
    let (v6, bits) = bot::ip_key(ip);
    Some(format!("ip{}:{bits:x}", if v6 { 6 } else { 4 }))
}

/// The Turnstile check of a ticket request (skipped when no secret is configured).
pub async fn human(cfg: &Config, body: &serde_json::Value, ip: Option<IpAddr>) -> Human {
    let Some(secret) = cfg.turnstile_secret.as_deref() else {
        return Human::NotConfigured;
    };
    let Some(token) = bot::turnstile_token(body) else {
        return Human::Missing;
    };
    let call = Siteverify {
        secret,
        response: token,
        remoteip: ip.map(|ip| ip.to_string()),
    };
    let Ok(json) = serde_json::to_string(&call) else {
        return Human::Unavailable;
    };
    let headers = Headers::new();
    if headers.set("content-type", "application/json").is_err() {
        return Human::Unavailable;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(json.into()));
    let Ok(req) = Request::new_with_init(&cfg.turnstile_verify_url, &init) else {
        return Human::Unavailable;
    };
    match origin::send(req, cfg.origin_timeout_ms).await {
        Ok(mut resp) if resp.status_code() == 200 => match resp.bytes().await {
            Ok(body) if bot::siteverify_passed(&body) => Human::Passed,
            Ok(_) => Human::Failed,
            Err(_) => Human::Unavailable,
        },
        Ok(resp) => {
            worker::console_warn!("turnstile siteverify answered {}", resp.status_code());
            Human::Unavailable
        }
        Err(why) => {
            worker::console_warn!("turnstile siteverify {why}");
            Human::Unavailable
        }
    }
}

/// What the activity page needs to know about the guards: the Turnstile site key, so it
/// renders the widget whose token the ticket endpoint asks for.
#[derive(Debug, Serialize)]
pub struct PageSettings<'a> {
    /// `null` when the page needs no widget.
    pub turnstile_site_key: Option<&'a str>,
}

impl<'a> PageSettings<'a> {
    /// The page's settings from the worker's configuration.
    pub fn of(cfg: &'a Config) -> Self {
        Self {
            turnstile_site_key: cfg.turnstile_site_key.as_deref(),
        }
    }
}
