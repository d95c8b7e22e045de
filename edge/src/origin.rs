//! Talking to the origin: signed requests with a deadline, and what the isolate
//! remembers between requests (event windows, unknown ids, sold-out marks, buyers:
//! [`flashgate_core::isolate`], every map bounded).

use crate::config::Config;
use crate::now;
use flashgate_core::buyers::BuyerFilter;
use flashgate_core::ids::{EventId, UserId};
use flashgate_core::isolate::{Memory, Recall, Use};
use flashgate_core::sign::{self, Signed};
use flashgate_core::wire::{self, EventInfo, Outcome};
use flashgate_core::Millis;
use futures_util::future::{select, Either};
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use worker::{Delay, Fetch, Headers, Method, Request, RequestInit, Response};

pub use flashgate_core::isolate::CachedEvent;

thread_local! {
    static MEMORY: RefCell<Memory> = RefCell::new(Memory::default());
}

/// Runs `f` on the isolate's memory (never across an await).
pub fn memory<R>(f: impl FnOnce(&mut Memory) -> R) -> R {
    MEMORY.with(|m| f(&mut m.borrow_mut()))
}

/// Remembers that the origin gave `user` an order for `id` (so a sold-out mark does not
/// hide their `already_purchased`). Best effort: per isolate, the least recent forgotten
/// when full.
pub fn record_buyer(id: &EventId, user: &UserId) {
    memory(|m| m.record_buyer(id, user));
}

/// Whether this isolate saw the origin give `user` an order for `id`.
pub fn holds_order(id: &EventId, user: &UserId) -> bool {
    memory(|m| m.holds_order(id, user))
}

/// Remembers that `id` is sold out until `until`.
pub fn mark_sold_out(id: &EventId, until: Millis, now: Millis) {
    memory(|m| m.mark_sold_out(id, until, now));
}

/// Fetches the origin's filter of `id`'s buyers, once per sold-out mark, and keeps it
/// until `until`: a buyer whose order another isolate saw is then forwarded (the origin
/// answers `already_purchased`), not told sold out. Without it (the origin busy, or too
/// many buyers), only the buyers this isolate saw are.
pub async fn learn_buyers(cfg: &Config, id: &EventId, until: Millis) {
    if !memory(|m| m.wants_buyers(id, now())) {
        return;
    }
    let path = format!("/api/events/{id}/buyers");
    let Ok(mut resp) = forward(cfg, Method::Get, &path, "", Vec::new(), None).await else {
        return;
    };
    if resp.status_code() != 200 {
        return;
    }
    let filter = resp
        .json::<serde_json::Value>()
        .await
        .ok()
        .and_then(|v| v["filter"].as_str().and_then(BuyerFilter::decode));
    if let Some(filter) = filter {
        memory(|m| m.remember_buyers(id, filter, until, now()));
    }
}

/// Whether the edge should answer sold_out for `id` itself.
pub fn sold_out(id: &EventId, now: Millis) -> bool {
    memory(|m| m.sold_out(id, now))
}

/// The event window, from the isolate's memory (as `usage` allows) or the origin; `None`
/// when unknown. The origin's 404 is remembered for `NOT_FOUND_CACHE_MS`, its 200 for
/// `EVENT_CACHE_MS`.
pub async fn event(
    cfg: &Config,
    id: &EventId,
    now: Millis,
    usage: Use,
) -> Result<Option<CachedEvent>, Outcome> {
    let ttl = cfg.ttl();
    match memory(|m| m.event(id, now, ttl, usage)) {
        Recall::Known(w) => return Ok(Some(w)),
        Recall::Unknown => return Ok(None),
        Recall::Ask => {}
    }
    let mut resp = forward(
        cfg,
        Method::Get,
        &format!("/api/events/{id}"),
        "",
        Vec::new(),
        None,
    )
    .await?;
    let window = match resp.status_code() {
        200 => {
            let info: EventInfo = resp.json().await.map_err(|_| busy())?;
            let (Some(starts_at), Some(ends_at)) = (
                wire::parse_time(&info.starts_at),
                wire::parse_time(&info.ends_at),
            ) else {
                return Err(busy());
            };
            if info.state == flashgate_core::gate::EventState::SoldOut {
                // A mark learnt here, with no purchase forwarded, needs the buyers' filter
                // as much as one from a 409: else a buyer another isolate saw is told
                // sold out for as long as the info keeps renewing the mark.
                let until = now + cfg.sold_out_cache_ms;
                mark_sold_out(id, until, now);
                learn_buyers(cfg, id, until).await;
            }
            Some(CachedEvent {
                starts_at,
                ends_at,
                info,
            })
        }
        404 => None,
        _ => return Err(busy()),
    };
    memory(|m| m.remember(id, window.clone(), now, ttl));
    Ok(window)
}

/// A nonce for one origin call: 64 random bits and this isolate's call count. It only
/// has to differ between calls (the signature's HMAC does the rest), so that a double
/// click is not taken for a replay.
fn nonce() -> String {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let n = CALLS.fetch_add(1, Ordering::Relaxed);
    // The generator cannot fail in a worker; zeros would still differ by the count.
    let random = u64::from_be_bytes(crate::random::bytes().unwrap_or_default());
    format!("{random:016x}-{n:x}")
}

/// The header that carries a request's id to the origin.
const REQUEST_ID: &str = "x-request-id";

fn busy() -> Outcome {
    Outcome::Busy {
        retry_after_secs: 1,
    }
}

/// Sends a signed request to the origin; a timeout, a network error or a 5xx other than
/// the origin's own 503 busy becomes 503 busy, never a hang. `request_id` (the shopper
/// request's `CF-Ray`; else the call's nonce) goes as `X-Request-Id`, so the origin's log
/// lines of the call join the edge's.
pub async fn forward(
    cfg: &Config,
    method: Method,
    path: &str,
    user: &str,
    body: Vec<u8>,
    request_id: Option<&str>,
) -> Result<Response, Outcome> {
    let none = Provenance::default();
    forward_admitted(cfg, method, path, user, body, request_id, none).await
}

/// What the edge vouches for about a purchase, in headers its signature covers; the
/// origin keeps both with the order (for the sale's fairness report).
#[derive(Debug, Clone, Copy, Default)]
pub struct Provenance<'a> {
    /// The room position the purchase was admitted at (if the room is on).
    pub room_position: Option<u64>,
    /// The network of the shopper's client (`core::sign::client_net`), if known.
    pub client_net: Option<&'a str>,
}

/// [`forward`], with what the edge vouches for about the purchase.
pub async fn forward_admitted(
    cfg: &Config,
    method: Method,
    path: &str,
    user: &str,
    body: Vec<u8>,
    request_id: Option<&str>,
    provenance: Provenance<'_>,
) -> Result<Response, Outcome> {
    let Provenance {
        room_position,
        client_net,
    } = provenance;
    let now = worker::Date::now().as_millis() as Millis;
    let nonce = nonce();
    let signature = Signed {
        environment: &cfg.environment,
        method: method.as_ref(),
        path,
        user,
        timestamp: now,
        nonce: &nonce,
        body: &body,
        room_position,
        client_net,
    }
    .sign(cfg.edge_keys.current());
    let headers = Headers::new();
    let set = |k: &str, v: &str| headers.set(k, v).map_err(|_| busy());
    set(sign::HEADER_SIGNATURE, &signature)?;
    set(sign::HEADER_TIMESTAMP, &now.to_string())?;
    set(sign::HEADER_NONCE, &nonce)?;
    set(REQUEST_ID, request_id.unwrap_or(&nonce))?;
    if !user.is_empty() {
        set(sign::HEADER_USER, user)?;
    }
    if let Some(position) = room_position {
        set(sign::HEADER_ROOM_POSITION, &position.to_string())?;
    }
    if let Some(net) = client_net {
        set(sign::HEADER_CLIENT_NET, net)?;
    }
    if !body.is_empty() {
        set("content-type", "application/json")?;
    }
    let mut init = RequestInit::new();
    init.with_method(method).with_headers(headers);
    if !body.is_empty() {
        init.with_body(Some(
            worker::js_sys::Uint8Array::from(body.as_slice()).into(),
        ));
    }
    let url = format!("{}{}", cfg.origin_url.trim_end_matches('/'), path);
    let req = Request::new_with_init(&url, &init).map_err(|_| busy())?;
    match send(req, cfg.origin_timeout_ms).await {
        Ok(resp) if resp.status_code() < 500 || resp.status_code() == 503 => Ok(resp),
        Ok(resp) => {
            worker::console_warn!("origin answered {} for {path}", resp.status_code());
            Err(busy())
        }
        Err(why) => {
            worker::console_warn!("origin {why} for {path}");
            Err(busy())
        }
    }
}

/// Sends `req` with a deadline; the error says what went wrong, for the log.
pub async fn send(req: Request, timeout_ms: u64) -> Result<Response, String> {
    let fetch = Fetch::Request(req);
    let send = std::pin::pin!(fetch.send());
    let deadline = Delay::from(Duration::from_millis(timeout_ms));
    match select(send, deadline).await {
        Either::Left((Ok(resp), _)) => Ok(resp),
        Either::Left((Err(e), _)) => Err(format!("unreachable: {e}")),
        Either::Right(_) => Err(format!("timed out after {timeout_ms} ms")),
    }
}

/// Passes an origin answer through with the headers a shopper needs. An answer whose body
/// breaks off (the origin gone mid-answer) is 503 busy, as an unreachable origin is.
pub async fn relay(resp: &mut Response) -> worker::Result<Response> {
    let status = resp.status_code();
    let body = match resp.bytes().await {
        Ok(body) => body,
        Err(e) => {
            worker::console_warn!("origin answer {status} broke off: {e}");
            return crate::respond(&busy());
        }
    };
    let headers = Headers::new();
    headers.set("content-type", "application/json; charset=utf-8")?;
    headers.set("cache-control", "no-store")?;
    if let Some(ra) = resp.headers().get("retry-after")? {
        headers.set("retry-after", &ra)?;
    }
    Ok(Response::from_bytes(body)?
        .with_status(status)
        .with_headers(headers))
}
