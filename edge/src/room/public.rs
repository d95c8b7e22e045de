//! The room's public answers: its state (`GET …/room`) and, once sealed, the draw's
//! entries (`GET …/room/entries`), from which anyone can check every position.

use super::{Ask, Draw};
use crate::config::Config;
use crate::{json, now, origin, respond};
use flashgate_core::ids::EventId;
use flashgate_core::isolate::{CachedEvent, Use};
use flashgate_core::room::settings::{self as room_settings, RoomSettings};
use flashgate_core::wire::{self, Outcome};
use flashgate_core::Millis;
use worker::{Env, Request, Response, Result};

/// What the worker tells an event's room, without a user: the settings, the start, and
/// the units still unsold as the edge last saw them (none while it remembers a sold-out
/// or the sale is paused: the room then admits nobody more, and everyone keeps their
/// place in line).
pub(crate) fn ask(settings: RoomSettings, event: &EventId, w: &CachedEvent, now: Millis) -> Ask {
    let sold_out = origin::sold_out(event, now);
    let hold = sold_out || w.info.paused;
    Ask {
        event: event.clone(),
        late: 0,
        settings,
        starts_at: w.starts_at,
        unsold: if hold { 0 } else { w.info.stock_left },
        sold_out,
    }
}

/// The draw as published: before the seal its time and commitment only; from the seal
/// the record too (entrants, root, the seed revealed). `full` adds the record's fields.
pub(crate) fn draw(d: &Draw, full: bool) -> serde_json::Value {
    let mut out = serde_json::json!({
        "draw_at": d.draw_at,
        "commitment": d.commitment,
        "shards": d.shards,
        "sealed": d.record.is_some(),
    });
    if let (true, Some(r), Some(o)) = (full, &d.record, out.as_object_mut()) {
        o.insert("entrants".into(), r.entrants.into());
        o.insert("shard_roots".into(), r.shard_roots.clone().into());
        o.insert("shard_sizes".into(), d.sizes.clone().into());
        o.insert("seed".into(), r.seed_hex.clone().into());
    }
    out
}

async fn event(cfg: &Config, id: &str) -> std::result::Result<(EventId, CachedEvent), Outcome> {
    let id = EventId::parse(id).map_err(|_| Outcome::EventNotFound)?;
    let w = origin::event(cfg, &id, now(), Use::Any)
        .await?
        .ok_or(Outcome::EventNotFound)?;
    Ok((id, w))
}

/// `GET /api/events/{id}/room`: the room's public state, without identity, from the
/// location's copy (about one object read per location per `ROOM_CACHE_MS`);
/// `X-Flashgate-Room-Source` says where the copy came from.
pub(crate) async fn status(cfg: &Config, env: &Env, req: &Request, id: &str) -> Result<Response> {
    let site = req.url()?;
    let mut source = None;
    let answer = async {
        let settings = cfg.room.ok_or(Outcome::NotFound)?;
        let (id, w) = event(cfg, id).await?;
        let settings = crate::config::event_room(settings, Some(&w));
        let t = now();
        let ask = ask(settings, &id, &w, t);
        let (told, from) = super::status(ask, env, &site, t, cfg.room_cache_ms, true).await?;
        source = Some(from);
        let sealed = told.draw.record.is_some();
        let phase = room_settings::phase(&settings, w.starts_at, w.ends_at, t, sealed);
        Ok(serde_json::json!({
            "event_id": id.as_str(),
            "phase": phase,
            "queued": told.queued,
            "schedule": told.schedule,
            "sold_out": told.sold_out || origin::sold_out(&id, t) || w.info.stock_left == 0,
            "draw": draw(&told.draw, true),
            "server_time": wire::fmt_time(t),
        }))
    };
    let answered = answer.await;
    let resp = match answered {
        Ok(body) => json(&body)?,
        Err(o) => respond(&o)?,
    };
    if let Some(from) = source {
        resp.headers().set(super::SOURCE_HEADER, from.as_str())?;
    }
    Ok(resp)
}

/// `GET /api/events/{id}/room/entries?shard=K&from=N`: a page of a sealed shard's
/// entries in chain order (each entrant named by [`flashgate_core::room::draw::entrant`],
/// never by user id); 425 before the seal.
pub(crate) async fn entries(cfg: &Config, env: &Env, req: &Request, id: &str) -> Result<Response> {
    let query = |name: &str| {
        req.url().ok().and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        })
    };
    let (shard, from) = (query("shard"), query("from"));
    let site = req.url()?;
    let answer = async {
        let settings = cfg.room.ok_or(Outcome::NotFound)?;
        let number = |v: Option<String>, what: &str| {
            v.map_or(Ok(0), |v| v.parse::<u64>())
                .map_err(|_| wire::bad("invalid_query", &format!("{what} 须为非负整数")))
        };
        let from = number(from, "from")?;
        let shard = number(shard, "shard")?;
        let (id, w) = event(cfg, id).await?;
        let settings = crate::config::event_room(settings, Some(&w));
        let t = now();
        let ask = ask(settings, &id, &w, t);
        let (told, _) = super::status(ask, env, &site, t, cfg.room_cache_ms, true).await?;
        let sealed_shards = told.draw.record.as_ref().map(|r| r.shard_roots.len());
        let Some(count) = sealed_shards else {
            return Err(Outcome::NotStarted {
                starts_at: wire::fmt_time(told.draw.draw_at),
            });
        };
        let shard = u32::try_from(shard)
            .ok()
            .filter(|s| (*s as usize) < count)
            .ok_or_else(|| wire::bad("invalid_query", "shard 超出范围"))?;
        let page = super::entries(env, &id, shard, from).await?;
        Ok(serde_json::json!({
            "event_id": id.as_str(),
            "shard": page.shard,
            "from": from,
            "entries": page.entries,
            "next": page.next,
        }))
    };
    match answer.await {
        Ok(body) => json(&body),
        Err(o) => respond(&o),
    }
}
