//! The worker's configuration: `[vars]` in wrangler.toml and secrets
//! (`wrangler secret put`). Every knob is documented in docs/edge.md.

use flashgate_core::Millis;
use worker::Env;

/// What the worker reads from its environment on each request.
pub struct Config {
    /// Base URL of the origin, e.g. `http://127.0.0.1:8080`.
    pub origin_url: String,
    /// HS256 secret of shopper tokens (secret).
    pub auth_secret: String,
    /// Shared secret with the origin (secret); tickets use a key derived from it.
    pub edge_secret: String,
    /// Global purchase bucket of one isolate, requests per second.
    pub purchase_rps: u32,
    /// Ticket lifetime after the start (or after issue, if later).
    pub ticket_ttl_ms: Millis,
    /// How long event windows are cached in the isolate.
    pub event_cache_ms: Millis,
    /// How long an origin sold_out is answered by the edge itself.
    pub sold_out_cache_ms: Millis,
    /// Deadline of a forwarded request.
    pub origin_timeout_ms: u64,
}

fn string(env: &Env, name: &str) -> Option<String> {
    env.secret(name)
        .map(|s| s.to_string())
        .or_else(|_| env.var(name).map(|v| v.to_string()))
        .ok()
        .filter(|s| !s.is_empty())
}

fn number<T: std::str::FromStr>(env: &Env, name: &str, default: T) -> T {
    string(env, name)
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

impl Config {
    /// Reads the environment; the error names the first missing required setting.
    pub fn from_env(env: &Env) -> Result<Self, &'static str> {
        Ok(Self {
            origin_url: string(env, "ORIGIN_URL").ok_or("ORIGIN_URL")?,
            auth_secret: string(env, "AUTH_SECRET").ok_or("AUTH_SECRET")?,
            edge_secret: string(env, "EDGE_SECRET").ok_or("EDGE_SECRET")?,
            purchase_rps: number(env, "PURCHASE_RPS", 2000),
            ticket_ttl_ms: number(env, "TICKET_TTL_MS", 120_000),
            event_cache_ms: number(env, "EVENT_CACHE_MS", 1000),
            sold_out_cache_ms: number(env, "SOLD_OUT_CACHE_MS", 2000),
            origin_timeout_ms: number(env, "ORIGIN_TIMEOUT_MS", 3000),
        })
    }

    /// The ticket signing key, derived from the edge secret so the origin's signature
    /// key and the ticket key never sign the same kind of message.
    pub fn ticket_key(&self) -> String {
        format!("ticket:{}", self.edge_secret)
    }
}
