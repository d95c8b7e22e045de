//! The room's public state in the location's cache (the Cache API), shared by every
//! isolate of one location: about one object read per location per `ROOM_CACHE_MS`,
//! however many isolates serve the event there. The Cache API keeps entries on a custom
//! domain and under `wrangler dev`; on a workers.dev address it keeps nothing, and each
//! isolate falls back to its own copy.

use super::Told;
use flashgate_core::ids::EventId;
use flashgate_core::Millis;
use worker::{Cache, Response, Url};

/// When the copy was read from the room object, in Unix ms. Freshness is judged by it,
/// since the Cache API's `max-age` counts whole seconds.
const READ_AT: &str = "x-flashgate-read-at";

/// The copy's key: under the request's own site, so it lands in that zone's cache.
fn key(site: &Url, event: &EventId) -> String {
    format!(
        "{}://{}/.flashgate/room/{event}",
        site.scheme(),
        site.host_str().unwrap_or("localhost")
    )
}

/// The location's copy of `event`'s room and when it was read, if younger than `ttl`.
pub(super) async fn get(
    site: &Url,
    event: &EventId,
    now: Millis,
    ttl: Millis,
) -> Option<(Millis, Told)> {
    let mut resp = Cache::default().get(key(site, event), false).await.ok()??;
    let at: Millis = resp.headers().get(READ_AT).ok()??.parse().ok()?;
    if !(0..ttl).contains(&(now - at)) {
        return None;
    }
    Some((at, resp.json::<Told>().await.ok()?))
}

/// Stores `told` (the room's public part only), read from the object at `now`, as the
/// location's copy for `ttl`. A failure only costs later object reads.
pub(super) async fn put(site: &Url, event: &EventId, told: &Told, now: Millis, ttl: Millis) {
    let stored = async {
        let resp = Response::from_json(told)?;
        let secs = (ttl + 999) / 1000;
        resp.headers()
            .set("cache-control", &format!("public, max-age={}", secs.max(1)))?;
        resp.headers().set(READ_AT, &now.to_string())?;
        Cache::default().put(key(site, event), resp).await
    };
    if let Err(e) = stored.await {
        worker::console_warn!("room {event}: the location's cache refused a copy: {e}");
    }
}
