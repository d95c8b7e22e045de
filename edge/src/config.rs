//! The worker's configuration: `[vars]` in wrangler.toml and secrets
//! (`wrangler secret put`). Every knob is documented in docs/edge.md.
//!
//! In the dev environment (`DEV_CONTROLS = "on"`), an allow-listed client may override
//! knobs for the isolate (`PUT /__edge/dev/overrides`), so end-to-end tests can provoke a
//! 429 or a Turnstile refusal without restarting `wrangler dev`; see [`crate::control`].

use flashgate_core::bot::{self, AllowList, Rules};
use flashgate_core::isolate::{CachedEvent, Ttl};
use flashgate_core::keyring::KeyRing;
use flashgate_core::room::receipt;
use flashgate_core::room::settings::RoomSettings;
use flashgate_core::sign;
use flashgate_core::ticket;
use flashgate_core::Millis;
use std::cell::RefCell;
use std::collections::BTreeMap;
use worker::Env;

/// Knobs an override may never touch: the secrets and what guards the overrides.
pub const NOT_OVERRIDABLE: &[&str] = &[
    "AUTH_SECRET",
    "AUTH_SECRET_PREVIOUS",
    "EDGE_SECRET",
    "EDGE_SECRET_PREVIOUS",
    "ENVIRONMENT",
    "STATS_TOKEN",
    "ALLOW_IPS",
    "DEV_CONTROLS",
];

thread_local! {
    static OVERRIDES: RefCell<BTreeMap<String, String>> = const { RefCell::new(BTreeMap::new()) };
}

/// The dev overrides in force in this isolate.
pub fn overrides() -> BTreeMap<String, String> {
    OVERRIDES.with(|o| o.borrow().clone())
}

/// Replaces the dev overrides of this isolate.
pub fn set_overrides(new: BTreeMap<String, String>) {
    OVERRIDES.with(|o| *o.borrow_mut() = new);
}

/// What the worker reads from its environment on each request.
pub struct Config {
    /// Base URL of the origin, e.g. `http://127.0.0.1:8080`.
    pub origin_url: String,
    /// HS256 secrets of shopper tokens (secrets `AUTH_SECRET`, and
    /// `AUTH_SECRET_PREVIOUS` during a rotation).
    pub auth_keys: KeyRing,
    /// Secrets shared with the origin (`EDGE_SECRET`, and `EDGE_SECRET_PREVIOUS` during a
    /// rotation); tickets and receipts use keys derived from them.
    pub edge_keys: KeyRing,
    /// The environment signed into every request to the origin (`ENVIRONMENT`, default
    /// `dev`): the origin refuses a request signed for another.
    pub environment: String,
    /// Global purchase bucket of one isolate, requests per second.
    pub purchase_rps: u32,
    /// Ticket lifetime after the start (or after issue, if later).
    pub ticket_ttl_ms: Millis,
    /// How long event windows are cached in the isolate.
    pub event_cache_ms: Millis,
    /// How long an origin sold_out is answered by the edge itself.
    pub sold_out_cache_ms: Millis,
    /// How long an origin 404 (an event id it does not know) is answered by the edge.
    pub not_found_cache_ms: Millis,
    /// Deadline of a forwarded request (and of a Turnstile check).
    pub origin_timeout_ms: u64,
    /// The bot rule set: threshold, allow-list, bursts.
    pub bot: Rules,
    /// Turnstile secret key (secret); `None` skips the human check.
    pub turnstile_secret: Option<String>,
    /// Turnstile site key the page renders its widget with (public); `None`: no widget.
    pub turnstile_site_key: Option<String>,
    /// Where the edge verifies a Turnstile token: Cloudflare's siteverify unless a
    /// stand-in is named (a test, or a region that proxies it).
    pub turnstile_verify_url: String,
    /// The events' room (`ROOM_ENABLED = "true"`), with the settings of events that
    /// carry none ([`event_room`]); `None`: off, and nothing answers differently from an
    /// edge without a room.
    pub room: Option<RoomSettings>,
    /// How long an isolate reuses a room's public schedule.
    pub room_cache_ms: Millis,
}

/// The guard knobs, read straight from the environment (never overridden).
pub struct Guard {
    /// Clients that skip per-IP and fingerprint rules, and may use the dev controls.
    pub allow: AllowList,
    /// Whether the dev controls are on (`DEV_CONTROLS = "on"`, dev environment only).
    pub dev_controls: bool,
    /// Bearer token that opens `/__edge/stats` to non-allow-listed callers (secret).
    pub stats_token: Option<String>,
}

fn raw(env: &Env, name: &str) -> Option<String> {
    env.secret(name)
        .map(|s| s.to_string())
        .or_else(|_| env.var(name).map(|v| v.to_string()))
        .ok()
        .filter(|s| !s.is_empty())
}

impl Guard {
    /// Reads the guard knobs; a bad allow-list entry is logged and empties the list.
    pub fn from_env(env: &Env) -> Self {
        let allow =
            AllowList::parse(&raw(env, "ALLOW_IPS").unwrap_or_default()).unwrap_or_else(|bad| {
                worker::console_error!(
                    "ALLOW_IPS: {bad:?} is not an address or network; list ignored"
                );
                AllowList::default()
            });
        Self {
            allow,
            dev_controls: raw(env, "DEV_CONTROLS").as_deref() == Some("on"),
            stats_token: raw(env, "STATS_TOKEN"),
        }
    }
}

impl Config {
    /// Reads the environment (and the dev overrides, when the dev controls are on); the
    /// error names the first missing required setting.
    pub fn from_env(env: &Env, guard: Guard) -> Result<Self, &'static str> {
        let get = |name: &str| -> Option<String> {
            let overridden = guard.dev_controls && !NOT_OVERRIDABLE.contains(&name);
            overridden
                .then(|| OVERRIDES.with(|o| o.borrow().get(name).cloned()))
                .flatten()
                .or_else(|| raw(env, name))
                .filter(|s| !s.is_empty())
        };
        fn number<T: std::str::FromStr>(v: Option<String>, default: T) -> T {
            v.and_then(|s| s.trim().parse().ok()).unwrap_or(default)
        }
        Ok(Self {
            origin_url: get("ORIGIN_URL").ok_or("ORIGIN_URL")?,
            auth_keys: keys(&get, "AUTH_SECRET", "AUTH_SECRET_PREVIOUS")?,
            edge_keys: keys(&get, "EDGE_SECRET", "EDGE_SECRET_PREVIOUS")?,
            environment: environment(&get)?,
            purchase_rps: number(get("PURCHASE_RPS"), 2000),
            ticket_ttl_ms: number(get("TICKET_TTL_MS"), 120_000),
            event_cache_ms: number(get("EVENT_CACHE_MS"), 1000),
            sold_out_cache_ms: number(get("SOLD_OUT_CACHE_MS"), 2000),
            not_found_cache_ms: number(get("NOT_FOUND_CACHE_MS"), 2000),
            origin_timeout_ms: number(get("ORIGIN_TIMEOUT_MS"), 3000),
            bot: Rules {
                threshold: number(get("BOT_THRESHOLD"), bot::DEFAULT_THRESHOLD),
                ip_burst: number(get("BOT_IP_BURST"), bot::DEFAULT_IP_BURST),
                allow: guard.allow,
            },
            turnstile_secret: get("TURNSTILE_SECRET"),
            turnstile_site_key: get("TURNSTILE_SITE_KEY"),
            turnstile_verify_url: get("TURNSTILE_VERIFY_URL")
                .unwrap_or_else(|| bot::SITEVERIFY_URL.to_owned()),
            room: match get("ROOM_ENABLED").as_deref() {
                Some("true") => Some(room_settings(&get)?),
                _ => None,
            },
            room_cache_ms: number(get("ROOM_CACHE_MS"), 1000),
        })
    }

    /// How long the isolate remembers the origin's answers about an event.
    pub fn ttl(&self) -> Ttl {
        Ttl {
            event_ms: self.event_cache_ms,
            not_found_ms: self.not_found_cache_ms,
        }
    }

    /// The room's receipt keys, derived from the edge secrets.
    pub fn receipt_keys(&self) -> KeyRing {
        receipt::keys(&self.edge_keys)
    }

    /// The ticket keys, derived from the edge secrets.
    pub fn ticket_keys(&self) -> KeyRing {
        ticket::keys(&self.edge_keys)
    }
}

/// The secret `current` (required) and, during a rotation, `previous`.
fn keys(
    get: &dyn Fn(&str) -> Option<String>,
    current: &'static str,
    previous: &'static str,
) -> Result<KeyRing, &'static str> {
    let key = get(current).ok_or(current)?;
    Ok(KeyRing::new(
        key.as_bytes(),
        get(previous).as_deref().map(str::as_bytes),
    ))
}

/// `ENVIRONMENT`, `dev` when unset; a name that [`sign::valid_environment`] refuses is an
/// error, never a request signed for an environment no origin serves.
fn environment(get: &dyn Fn(&str) -> Option<String>) -> Result<String, &'static str> {
    let name = get("ENVIRONMENT").unwrap_or_else(|| sign::DEFAULT_ENVIRONMENT.into());
    if sign::valid_environment(&name) {
        Ok(name)
    } else {
        Err("ENVIRONMENT")
    }
}

/// The room settings of an event: its own, from the origin's event info, else the
/// `ROOM_*` vars (`defaults`).
pub fn event_room(defaults: RoomSettings, event: Option<&CachedEvent>) -> RoomSettings {
    event
        .and_then(|e| e.info.room)
        .filter(|r| r.validate().is_ok())
        .unwrap_or(defaults)
}

/// The room's default settings from `ROOM_*` vars, for events without their own; a
/// value that is not a number or is out of bounds names its var.
fn room_settings(get: &dyn Fn(&str) -> Option<String>) -> Result<RoomSettings, &'static str> {
    let d = RoomSettings::default();
    fn read<T: std::str::FromStr>(
        get: &dyn Fn(&str) -> Option<String>,
        name: &'static str,
        default: T,
    ) -> Result<T, &'static str> {
        get(name).map_or(Ok(default), |v| v.trim().parse().map_err(|_| name))
    }
    let s = RoomSettings {
        admit_per_second: read(get, "ROOM_ADMIT_PER_SECOND", d.admit_per_second)?,
        prequeue_ms: read(get, "ROOM_PREQUEUE_MS", d.prequeue_ms)?,
        margin_per_mille: read(get, "ROOM_MARGIN_PER_MILLE", d.margin_per_mille)?,
        session_ms: read(get, "ROOM_SESSION_MS", d.session_ms)?,
        fair_start_ms: read(get, "ROOM_FAIR_START_MS", d.fair_start_ms)?,
        shards: read(get, "ROOM_SHARDS", d.shards)?,
    };
    s.validate().map_err(|e| match e.field {
        "admit_per_second" => "ROOM_ADMIT_PER_SECOND",
        "prequeue_ms" => "ROOM_PREQUEUE_MS",
        "margin_per_mille" => "ROOM_MARGIN_PER_MILLE",
        "fair_start_ms" => "ROOM_FAIR_START_MS",
        "shards" => "ROOM_SHARDS",
        _ => "ROOM_SESSION_MS",
    })?;
    Ok(s)
}
