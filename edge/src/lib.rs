//! # flashgate-edge
//!
//! The Cloudflare worker in front of the origin (workers-rs, compiled to wasm32). It is a
//! router: each decision comes from `flashgate-core` (tokens, tickets, gating, the token
//! bucket, the answers), and only admitted requests are forwarded to `ORIGIN_URL`, signed
//! with `EDGE_SECRET`. The activity page in `static/` is served by wrangler's `[assets]`
//! before this code runs.
//!
//! ## Layout
//!
//! - `lib.rs`: the fetch handler and routes.
//! - [`config`]: vars and secrets read from the environment.
//! - [`origin`]: signed forwarding with a deadline, and the event cache of the isolate.
#![deny(unsafe_code)]

mod config;
mod origin;

use config::Config;
use flashgate_core::bucket::TokenBucket;
use flashgate_core::gate::{self, Phase};
use flashgate_core::ids::{EventId, UserId};
use flashgate_core::ticket::{self, Ticket};
use flashgate_core::wire::{self, bad, Outcome, TicketAnswer};
use flashgate_core::{jwt, Millis};
use origin::EventWindow;
use std::cell::RefCell;
use worker::{event, Context, Env, Headers, Method, Request, Response, Result};

thread_local! {
    /// The isolate-wide purchase bucket (one per isolate, as Workers run them).
    static BUCKET: RefCell<Option<TokenBucket>> = const { RefCell::new(None) };
}

fn now() -> Millis {
    worker::Date::now().as_millis() as Millis
}

/// Renders an outcome.
pub fn respond(outcome: &Outcome) -> Result<Response> {
    let a = outcome.answer();
    let headers = Headers::new();
    headers.set("content-type", "application/json; charset=utf-8")?;
    headers.set("cache-control", "no-store")?;
    if let Some(secs) = a.retry_after_secs {
        headers.set("retry-after", &secs.to_string())?;
    }
    Ok(Response::from_bytes(a.body.to_string().into_bytes())?
        .with_status(a.status)
        .with_headers(headers))
}

#[event(fetch)]
async fn fetch(mut req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let cfg = match Config::from_env(&env) {
        Ok(c) => c,
        Err(missing) => {
            worker::console_error!("edge misconfigured: {missing} is not set");
            return respond(&Outcome::Busy {
                retry_after_secs: 5,
            });
        }
    };
    let path = req.path();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method();
    let outcome = match (segments.as_slice(), method.clone()) {
        (["api", "events", id], Method::Get) => return event_info(&cfg, id).await,
        (["api", "events", id, "ticket"], Method::Post) => issue_ticket(&cfg, &mut req, id).await,
        (["api", "events", id, "purchase"], Method::Post) => {
            return purchase(&cfg, &mut req, id).await
        }
        (["api", "events", id, "order"], Method::Get) => return order(&cfg, &req, id).await,
        (["api", "events", _], _) | (["api", "events", _, "ticket" | "purchase" | "order"], _) => {
            Err(Outcome::MethodNotAllowed)
        }
        _ => Err(Outcome::NotFound),
    };
    match outcome {
        Ok(resp) => Ok(resp),
        Err(o) => respond(&o),
    }
}

/// The bearer user, or 401.
fn authenticate(cfg: &Config, req: &Request) -> std::result::Result<UserId, Outcome> {
    let header = req.headers().get("authorization").ok().flatten();
    let token = header
        .as_deref()
        .and_then(jwt::bearer)
        .ok_or(Outcome::Unauthenticated)?;
    jwt::verify(token, cfg.auth_secret.as_bytes(), now())
        .map(|c| c.sub)
        .map_err(|_| Outcome::Unauthenticated)
}

async fn read_body(req: &mut Request) -> std::result::Result<Vec<u8>, Outcome> {
    if let Some(len) = req
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|l| l.parse::<usize>().ok())
    {
        if len > wire::MAX_BODY_BYTES {
            return Err(Outcome::PayloadTooLarge);
        }
    }
    let body = req
        .bytes()
        .await
        .map_err(|_| bad("invalid_body", "请求体无法读取"))?;
    let ct = req.headers().get("content-type").ok().flatten();
    wire::check_json_body(ct.as_deref(), &body)?;
    Ok(body)
}

fn parse_event(id: &str) -> std::result::Result<EventId, Outcome> {
    EventId::parse(id).map_err(|_| bad("invalid_event_id", "活动标识无效"))
}

fn fingerprint(req: &Request) -> String {
    ticket::fingerprint(
        &req.headers()
            .get("user-agent")
            .ok()
            .flatten()
            .unwrap_or_default(),
    )
}

/// `GET /api/events/{id}`: forwarded (public, signed without a user); sold-out seen at
/// the edge is reflected in `state`.
async fn event_info(cfg: &Config, id: &str) -> Result<Response> {
    let id = match parse_event(id) {
        Ok(id) => id,
        Err(o) => return respond(&o),
    };
    match origin::event(cfg, &id, now()).await {
        Ok(Some(w)) => {
            let mut info = w.info.clone();
            info.server_time = wire::fmt_time(now());
            if origin::sold_out(&id, now()) && info.state == gate::EventState::Live {
                info.state = gate::EventState::SoldOut;
                info.stock_left = 0;
            }
            let headers = Headers::new();
            headers.set("content-type", "application/json; charset=utf-8")?;
            headers.set("cache-control", "no-store")?;
            Ok(Response::from_json(&info)?.with_headers(headers))
        }
        Ok(None) => respond(&Outcome::EventNotFound),
        Err(o) => respond(&o),
    }
}

async fn window(cfg: &Config, id: &EventId) -> std::result::Result<EventWindow, Outcome> {
    origin::event(cfg, id, now())
        .await?
        .ok_or(Outcome::EventNotFound)
}

/// `POST /api/events/{id}/ticket`.
async fn issue_ticket(
    cfg: &Config,
    req: &mut Request,
    id: &str,
) -> std::result::Result<Response, Outcome> {
    let user = authenticate(cfg, req)?;
    read_body(req).await?;
    let id = parse_event(id)?;
    let w = window(cfg, &id).await?;
    let t = now();
    if gate::phase(w.starts_at, w.ends_at, t) == Phase::Ended {
        return Err(Outcome::Ended);
    }
    let (valid_from, expires_at) = ticket::window(t, w.starts_at, cfg.ticket_ttl_ms);
    let token = Ticket {
        event: id,
        user,
        fingerprint: fingerprint(req),
        valid_from,
        expires_at,
    }
    .encode(cfg.ticket_key().as_bytes());
    Response::from_json(&TicketAnswer {
        ticket: token,
        valid_from: wire::fmt_time(valid_from),
        expires_at: wire::fmt_time(expires_at),
    })
    .map_err(|_| Outcome::Busy {
        retry_after_secs: 1,
    })
}

/// `POST /api/events/{id}/purchase`: everything the edge can refuse is refused here;
/// the rest is forwarded.
async fn purchase(cfg: &Config, req: &mut Request, id: &str) -> Result<Response> {
    let admitted = admit_purchase(cfg, req, id).await;
    match admitted {
        Err(o) => respond(&o),
        Ok((id, user, body)) => {
            let path = format!("/api/events/{id}/purchase");
            let resp = origin::forward(cfg, Method::Post, &path, user.as_str(), body).await;
            match resp {
                Ok(mut r) => {
                    if r.status_code() == 409 {
                        origin::mark_sold_out(&id, now() + cfg.sold_out_cache_ms);
                    }
                    origin::relay(&mut r).await
                }
                Err(o) => respond(&o),
            }
        }
    }
}

async fn admit_purchase(
    cfg: &Config,
    req: &mut Request,
    id: &str,
) -> std::result::Result<(EventId, UserId, Vec<u8>), Outcome> {
    let user = authenticate(cfg, req)?;
    let body = read_body(req).await?;
    let id = parse_event(id)?;
    let w = window(cfg, &id).await?;
    let t = now();
    match gate::phase(w.starts_at, w.ends_at, t) {
        Phase::Upcoming => {
            return Err(Outcome::NotStarted {
                starts_at: wire::fmt_time(w.starts_at),
            })
        }
        Phase::Ended => return Err(Outcome::Ended),
        Phase::Live => {}
    }
    if origin::sold_out(&id, t) {
        return Err(Outcome::SoldOut);
    }
    let presented = req.headers().get(ticket::HEADER).ok().flatten();
    Ticket::verify(
        presented.as_deref(),
        cfg.ticket_key().as_bytes(),
        &id,
        &user,
        &fingerprint(req),
        t,
    )
    .map_err(|e| Outcome::Forbidden {
        reason: e.reason().into(),
    })?;
    BUCKET.with(|b| {
        let mut b = b.borrow_mut();
        let bucket =
            b.get_or_insert_with(|| TokenBucket::new(cfg.purchase_rps, cfg.purchase_rps, t));
        bucket.try_take(t).map_err(|wait_ms| Outcome::RateLimited {
            retry_after_secs: (wait_ms as u64).div_ceil(1000),
        })
    })?;
    Ok((id, user, body))
}

/// `GET /api/events/{id}/order`.
async fn order(cfg: &Config, req: &Request, id: &str) -> Result<Response> {
    let user = match authenticate(cfg, req) {
        Ok(u) => u,
        Err(o) => return respond(&o),
    };
    let id = match parse_event(id) {
        Ok(id) => id,
        Err(o) => return respond(&o),
    };
    let path = format!("/api/events/{id}/order");
    match origin::forward(cfg, Method::Get, &path, user.as_str(), Vec::new()).await {
        Ok(mut r) => origin::relay(&mut r).await,
        Err(o) => respond(&o),
    }
}
