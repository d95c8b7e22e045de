//! # flashgate-edge
//!
//! The Cloudflare worker in front of the origin (workers-rs, compiled to wasm32). It is a
//! router: it reads a request, asks `flashgate-core` what to do
//! ([`flashgate_core::admission`]: identity, body, bot verdict, time gating, sold-out mark,
//! ticket, limiters), and answers or forwards. Only admitted requests reach `ORIGIN_URL`,
//! signed with `EDGE_SECRET`. The activity page in `static/` is served by wrangler's
//! `[assets]` before this code runs; `/e/<event id>`, its shareable address, is served
//! here from the same assets (binding `ASSETS`).
//!
//! ## Layout
//!
//! - `lib.rs`: the fetch handler, the routes, reading requests.
//! - [`config`]: vars and secrets read from the environment (and dev overrides).
//! - [`origin`]: signed forwarding with a deadline; the isolate's bounded memory (event
//!   windows, unknown ids, sold-out marks, buyers).
//! - [`guard`]: the isolate's bucket, bot tracker and counters; rate-limit bindings;
//!   Turnstile.
//! - [`control`]: the edge's own `/__edge/` endpoints (stats, dev overrides).
//! - [`analytics`]: a Workers Analytics Engine data point per shopper answer.
//! - [`room`]: the event's room (behind `ROOM_ENABLED`): its Durable Object, and the
//!   location's and the isolate's copies of its public state; docs/room.md.
#![deny(unsafe_code)]

mod analytics;
mod config;
mod control;
mod guard;
mod head;
mod origin;
mod random;
mod room;

use config::{Config, Guard};
use flashgate_core::admission::{self, PurchaseFacts, Screened, TicketFacts};
use flashgate_core::ids::EventId;
use flashgate_core::isolate::{CachedEvent, Use};
use flashgate_core::wire::{self, Outcome, TicketAnswer};
use flashgate_core::{gate, Millis};
use futures_util::future::join;
use head::{read_body, Head};
use worker::{event, Context, Env, Headers, Method, Request, Response, Result, Url};

pub(crate) fn now() -> Millis {
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

/// 405, with the methods the path answers (`Allow`).
fn not_allowed(allow: &str) -> Result<Response> {
    let resp = respond(&Outcome::MethodNotAllowed)?;
    resp.headers().set("allow", allow)?;
    Ok(resp)
}

pub(crate) fn json<T: serde::Serialize>(value: &T) -> Result<Response> {
    let resp = Response::from_json(value)?;
    resp.headers().set("cache-control", "no-store")?;
    Ok(resp)
}

#[event(fetch)]
async fn fetch(mut req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let path = req.path();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = method_of(&req);
    let head = Head::read(&req);
    let guard = Guard::from_env(&env);
    match segments.as_slice() {
        ["__edge", "stats"] => return control::stats(&req, &guard, head.ip),
        ["__edge", "dev", "overrides"] => {
            return control::overrides(&mut req, &guard, head.ip).await
        }
        _ => {}
    }
    let cfg = match Config::from_env(&env, guard) {
        Ok(c) => c,
        Err(missing) => {
            worker::console_error!("edge misconfigured: {missing} is not set or not valid");
            return respond(&Outcome::Busy {
                retry_after_secs: 5,
            });
        }
    };
    let cx = Cx {
        cfg: &cfg,
        env: &env,
        head: &head,
    };
    let answered = route(&mut req, &env, &cx, &segments, method).await;
    if let (["api", "events", event, rest @ ..], Ok(resp)) = (segments.as_slice(), &answered) {
        let endpoint = rest.first().copied().unwrap_or("event");
        analytics::record(&env, event, endpoint, resp.status_code());
    }
    answered
}

/// The request's method. workers-rs reads a method it has no name for (PURGE, say) as GET;
/// such a method is taken as TRACE, which no path answers: 405 on the API, as DELETE is.
fn method_of(req: &Request) -> Method {
    let method = req.method();
    if method.as_ref() == req.inner().method() {
        method
    } else {
        Method::Trace
    }
}

/// The shopper API and the activity page.
async fn route(
    req: &mut Request,
    env: &Env,
    cx: &Cx<'_>,
    segments: &[&str],
    method: Method,
) -> Result<Response> {
    let cfg = cx.cfg;
    match (segments, method) {
        (["api", "page"], Method::Get | Method::Head) => json(&guard::PageSettings::of(cfg)),
        (["api", "page"], _) => not_allowed("GET, HEAD"),
        (["api", "events", id], Method::Get | Method::Head) => event_info(cfg, id).await,
        (["api", "events", id, "ticket"], Method::Post) => cx.ticket(req, id).await,
        (["api", "events", id, "purchase"], Method::Post) => cx.purchase(req, id).await,
        // A HEAD is answered as the GET (the runtime sends no body).
        (["api", "events", id, "order"], Method::Get | Method::Head) => cx.order(id).await,
        (["api", "events", _], _) => not_allowed("GET, HEAD"),
        (["api", "events", _, "order"], _) => not_allowed("GET, HEAD"),
        (["api", "events", _, "ticket" | "purchase"], _) => not_allowed("POST"),
        // Without the room, its path is unknown, as it always was.
        (["api", "events", id, "room"], Method::Post) if cfg.room.is_some() => {
            cx.room_join(req, id).await
        }
        (["api", "events", id, "room"], Method::Get | Method::Head) if cfg.room.is_some() => {
            room::public::status(cfg, env, req, id).await
        }
        (["api", "events", id, "room", "entries"], Method::Get | Method::Head)
            if cfg.room.is_some() =>
        {
            room::public::entries(cfg, env, req, id).await
        }
        (["api", "events", _, "room", "entries"], _) if cfg.room.is_some() => {
            not_allowed("GET, HEAD")
        }
        (["api", "events", _, "room"], _) if cfg.room.is_some() => not_allowed("GET, HEAD, POST"),
        (["e", id], Method::Get | Method::Head) => activity_page(env, id).await,
        _ => respond(&Outcome::NotFound),
    }
}

/// `/e/<event id>`: the shareable address of an event's activity page. The page is the
/// same static `index.html` (it reads the event from its path), served from the assets.
async fn activity_page(env: &Env, id: &str) -> Result<Response> {
    if EventId::parse(id).is_err() {
        return respond(&Outcome::NotFound);
    }
    env.assets("ASSETS")?
        .fetch("https://assets.invalid/", None)
        .await
}

/// An admitted purchase, ready to forward.
struct Admitted {
    s: Screened,
    forward: admission::Forward,
    body: Vec<u8>,
    /// The room's admitted position, when the event's room is on.
    position: Option<u64>,
    /// The receipt the purchase spent, when the event's room is on.
    spending: Option<room::Spending>,
}

/// One shopper request's context.
struct Cx<'a> {
    cfg: &'a Config,
    env: &'a Env,
    head: &'a Head,
}

impl Cx<'_> {
    /// [`admission::screen`] on the isolate's tracker; bot verdicts are logged.
    fn screen(
        &self,
        id: &str,
        body: &[u8],
        endpoint: &str,
    ) -> std::result::Result<Screened, Outcome> {
        let req = self.head.incoming(id, body);
        let screened = guard::with(|i| {
            admission::screen(
                &req,
                &self.cfg.auth_keys,
                &self.cfg.bot,
                &mut i.tracker,
                now(),
            )
        });
        if let Err(Outcome::Forbidden { reason }) = &screened {
            // One line per isolate every BOT_LOG_EVERY_MS at most: an attack must not turn
            // into a flood of logs. The line carries the tally since the isolate started.
            if let Some(tally) = guard::with(|i| i.bot_log_due(now())) {
                let ip = self.head.ip.map(|ip| ip.to_string()).unwrap_or_default();
                worker::console_log!(
                    "{}",
                    serde_json::json!({"bot_verdict": reason, "ip": ip, "endpoint": endpoint, "tally": tally})
                );
            }
        }
        screened
    }

    /// `POST /api/events/{id}/purchase`: everything the edge can refuse is refused here;
    /// the rest is forwarded.
    async fn purchase(&self, req: &mut Request, id: &str) -> Result<Response> {
        let site = req.url()?;
        match self.admit_purchase(req, &site, id).await {
            Err(o) => {
                let status = o.answer().status;
                guard::with(|i| *i.counters.purchase_answered.entry(status).or_insert(0) += 1);
                respond(&o)
            }
            Ok(Admitted {
                s,
                forward,
                body,
                position,
                spending,
            }) => {
                guard::with(|i| i.counters.purchase_forwarded += 1);
                let user = s.user.as_str();
                let net = self.head.ip.map(flashgate_core::sign::client_net);
                let provenance = origin::Provenance {
                    room_position: position,
                    client_net: net.as_deref(),
                };
                let answer = origin::forward_admitted(
                    self.cfg,
                    Method::Post,
                    &forward.path,
                    user,
                    body,
                    self.head.ray.as_deref(),
                    provenance,
                )
                .await;
                if let Some(spending) = spending {
                    let status = answer.as_ref().ok().map(Response::status_code);
                    spending.settle(self.env, status).await;
                }
                match answer {
                    Ok(mut r) => {
                        match r.status_code() {
                            200 | 202 => origin::record_buyer(&s.event, &s.user),
                            409 => {
                                let t = now();
                                let until = t + self.cfg.sold_out_cache_ms;
                                origin::mark_sold_out(&s.event, until, t);
                                origin::learn_buyers(self.cfg, &s.event, until).await;
                            }
                            _ => {}
                        }
                        origin::relay(&mut r).await
                    }
                    Err(o) => respond(&o),
                }
            }
        }
    }

    async fn admit_purchase(
        &self,
        req: &mut Request,
        site: &Url,
        id: &str,
    ) -> std::result::Result<Admitted, Outcome> {
        let body = read_body(req, self.head).await?;
        let s = self.screen(id, &body, "purchase")?;
        let window = origin::event(self.cfg, &s.event, now(), Use::Any).await?;
        let t = now();
        let facts = PurchaseFacts {
            window: window.as_ref().map(origin::CachedEvent::window),
            paused: window.as_ref().is_some_and(|w| w.info.paused),
            sold_out: origin::sold_out(&s.event, t),
            holds_order: origin::holds_order(&s.event, &s.user),
            ticket: self.head.ticket.as_deref(),
            user_agent: self.head.user_agent.as_deref(),
        };
        let admissible = admission::purchase(&s, &facts, &self.cfg.ticket_keys(), t)?;
        // The event's own room settings, else the vars'.
        let room_settings = self
            .cfg
            .room
            .map(|d| config::event_room(d, window.as_ref()));
        let mut admitted = None;
        if let (Some(settings), Some(w)) = (room_settings, window.as_ref()) {
            let t = now();
            let ask = room::public::ask(settings, &s.event, w, t);
            let ttl = self.cfg.room_cache_ms;
            let (told, _) = room::status(ask, self.env, site, t, ttl, false).await?;
            let position = admission::room(
                &s,
                self.head.receipt.as_deref(),
                self.head.user_agent.as_deref(),
                &told.schedule,
                &self.cfg.receipt_keys(),
                now(),
            )?;
            admitted = Some((position, told.draw.shards));
        }
        // Per user and event: a shopper's presses on one sale do not spend another's.
        let user_key = Some(format!("user:{}:{}", s.user, s.event));
        let limiter = guard::limit(self.env, guard::PURCHASE_LIMITER, user_key).await;
        let t = now();
        let forward = guard::with(|i| {
            admission::limit(admissible, limiter, i.bucket(self.cfg.purchase_rps, t), t)
        })?;
        // The purchase spends its receipt; the whole edge forwards admitted purchases at
        // the room's rate, not each isolate.
        let mut spending = None;
        if let (Some(settings), Some((_, shards))) = (room_settings, admitted) {
            let spent = room::spend(self.env, &s.event, &s.user, shards, now()).await?;
            if let Err(o) = room::forward(self.env, &s.event, settings, now()).await {
                spent.settle(self.env, None).await;
                return Err(o);
            }
            spending = Some(spent);
        }
        Ok(Admitted {
            s,
            forward,
            body,
            position: admitted.map(|(p, _)| p),
            spending,
        })
    }

    /// `POST /api/events/{id}/ticket`.
    async fn ticket(&self, req: &mut Request, id: &str) -> Result<Response> {
        match self.issue_ticket(req, id).await {
            Ok(answer) => {
                guard::with(|i| i.counters.tickets_issued += 1);
                json(&answer)
            }
            Err(o) => respond(&o),
        }
    }

    /// What a ticket request and a room join start with: the body read and screened
    /// (`what` names the endpoint, as [`Cx::screen`] takes it), then the per-IP ticket limiter and the
    /// event, looked up together.
    async fn screen_per_ip(
        &self,
        req: &mut Request,
        id: &str,
        what: &str,
    ) -> std::result::Result<(Screened, admission::Limiter, Option<CachedEvent>), Outcome> {
        let body = read_body(req, self.head).await?;
        let s = self.screen(id, &body, what)?;
        let (limiter, window) = join(
            guard::limit(
                self.env,
                guard::TICKET_LIMITER,
                guard::ip_key(self.cfg, self.head.ip),
            ),
            origin::event(self.cfg, &s.event, now(), Use::Any),
        )
        .await;
        Ok((s, limiter, window?))
    }

    async fn issue_ticket(
        &self,
        req: &mut Request,
        id: &str,
    ) -> std::result::Result<TicketAnswer, Outcome> {
        let (s, limiter, window) = self.screen_per_ip(req, id, "ticket").await?;
        let facts = TicketFacts {
            window: window.as_ref().map(origin::CachedEvent::window),
            limiter,
        };
        let w = admission::ticket_gate(&facts, now())?;
        let human = guard::human(self.cfg, &s.body, self.head.ip).await;
        admission::issue_ticket(
            &s,
            w,
            human,
            self.head.user_agent.as_deref(),
            self.cfg.ticket_ttl_ms,
            self.cfg.ticket_keys().current(),
            now(),
        )
    }

    /// `GET /api/events/{id}/order`: screened (identity, bot rules), then forwarded.
    async fn order(&self, id: &str) -> Result<Response> {
        let s = match self.screen(id, b"", "order") {
            Ok(s) => s,
            // The order path's "no such event" also says there is no order.
            Err(Outcome::EventNotFound) => return respond(&Outcome::NoOrderNoEvent),
            Err(o) => return respond(&o),
        };
        let path = format!("/api/events/{}/order", s.event);
        match origin::forward(
            self.cfg,
            Method::Get,
            &path,
            s.user.as_str(),
            Vec::new(),
            self.head.ray.as_deref(),
        )
        .await
        {
            Ok(mut r) => origin::relay(&mut r).await,
            Err(o) => respond(&o),
        }
    }
}

/// `GET /api/events/{id}`: from the isolate's event cache once the event has started
/// (`stock_left`, a pause or an early end lag by at most `EVENT_CACHE_MS` then), else
/// from the origin (signed without a user); a sold-out seen at the edge is reflected in `state`. An id the origin did not know is
/// answered 404 from the isolate's memory for `NOT_FOUND_CACHE_MS`, so a flood of one
/// made-up id reaches the origin once per that time.
async fn event_info(cfg: &Config, id: &str) -> Result<Response> {
    // No event can have an id that is not a slug: for a read, that is "no such event".
    let Ok(id) = EventId::parse(id) else {
        return respond(&Outcome::EventNotFound);
    };
    match origin::event(cfg, &id, now(), Use::Started).await {
        Ok(Some(w)) => {
            // The cached answer's state is recomputed for now; the rest may lag a moment.
            let t = now();
            let mut info = w.info.clone();
            info.server_time = wire::fmt_time(t);
            let live = matches!(gate::phase(w.starts_at, w.ends_at, t), gate::Phase::Live);
            if live && origin::sold_out(&id, t) {
                info.stock_left = 0;
            }
            info.state = gate::state(w.starts_at, w.ends_at, info.stock_left, t);
            let resp = json(&info)?;
            resp.headers()
                .set("content-type", "application/json; charset=utf-8")?;
            Ok(resp)
        }
        Ok(None) => respond(&Outcome::EventNotFound),
        Err(o) => respond(&o),
    }
}
