//! The edge's own endpoints under `/__edge/` (not part of the shopper API):
//!
//! - `GET /__edge/stats`: this isolate's bot verdicts, limiter answers, what it
//!   answered itself and how many entries its memory holds; for allow-listed clients,
//!   or with `Authorization: Bearer <STATS_TOKEN>`. Anyone else gets 404.
//! - `GET|PUT|DELETE /__edge/dev/overrides`: dev-only knob overrides for this isolate,
//!   when `DEV_CONTROLS = "on"` and the client is allow-listed. Anyone else gets 404.

use crate::config::{self, Guard, NOT_OVERRIDABLE};
use crate::guard;
use crate::origin;
use crate::respond;
use flashgate_core::wire::{self, bad, Outcome};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::IpAddr;
use worker::{Method, Request, Response, Result};

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// `GET /__edge/stats`.
pub fn stats(req: &Request, guard: &Guard, ip: Option<IpAddr>) -> Result<Response> {
    let bearer = req
        .headers()
        .get("authorization")
        .ok()
        .flatten()
        .and_then(|h| flashgate_core::jwt::bearer(&h).map(str::to_owned));
    let token_ok = matches!((&guard.stats_token, &bearer), (Some(t), Some(b)) if same(t, b));
    if !(token_ok || ip.is_some_and(|ip| guard.allow.contains(ip))) {
        return respond(&Outcome::NotFound);
    }
    let memory = origin::memory(|m| m.sizes());
    let body = guard::with(|i| {
        let t = &i.tracker.tally;
        json!({
            "bot": {
                "allowed": t.allowed,
                "allow_listed": t.allow_listed,
                "blocked": t.blocked,
                "blocked_total": t.blocked_total(),
            },
            "purchase": {
                "answered_at_edge": i.counters.purchase_answered,
                "forwarded": i.counters.purchase_forwarded,
            },
            "tickets_issued": i.counters.tickets_issued,
            "limiters": i.counters.limiters,
            "analytics": {
                "points": i.counters.analytics_points,
                "failed": i.counters.analytics_failed,
            },
            "memory": memory,
        })
    });
    json_response(&body)
}

fn json_response(body: &Value) -> Result<Response> {
    let resp = Response::from_json(body)?;
    resp.headers().set("cache-control", "no-store")?;
    Ok(resp)
}

/// `GET|PUT|DELETE /__edge/dev/overrides`.
pub async fn overrides(req: &mut Request, guard: &Guard, ip: Option<IpAddr>) -> Result<Response> {
    if !(guard.dev_controls && ip.is_some_and(|ip| guard.allow.contains(ip))) {
        return respond(&Outcome::NotFound);
    }
    match req.method() {
        Method::Get => {}
        Method::Delete => config::set_overrides(BTreeMap::new()),
        Method::Put => {
            let body = req.bytes().await.unwrap_or_default();
            let ct = req.headers().get("content-type").ok().flatten();
            let parsed = match wire::check_json_body(ct.as_deref(), &body) {
                Ok(v) => v,
                Err(o) => return respond(&o),
            };
            let mut next = config::overrides();
            for (name, value) in parsed.as_object().into_iter().flatten() {
                let valid = !name.is_empty()
                    && name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
                    && !NOT_OVERRIDABLE.contains(&name.as_str());
                if !valid {
                    return respond(&bad("invalid_override", "这个设置不能被覆盖"));
                }
                match value {
                    Value::Null => {
                        next.remove(name);
                    }
                    Value::String(s) => {
                        next.insert(name.clone(), s.clone());
                    }
                    Value::Number(n) => {
                        next.insert(name.clone(), n.to_string());
                    }
                    _ => return respond(&bad("invalid_override", "值须为字符串或数字")),
                }
            }
            worker::console_log!(
                "dev overrides now set: {:?}",
                next.keys().collect::<Vec<_>>()
            );
            config::set_overrides(next);
        }
        _ => return respond(&Outcome::MethodNotAllowed),
    }
    json_response(&json!({ "overrides": config::overrides() }))
}
