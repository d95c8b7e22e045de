//! The room of an event: a Durable Object per event (binding `ROOM`, class
//! [`object::Room`]) that holds the draw, the arrivals and the pacing, and what an
//! isolate keeps of it (the public state, for `ROOM_CACHE_MS`). The object only stores
//! and calls `flashgate_core::room`; the settings, the event's start and its unsold
//! units come with each call from the worker, which reads them from its vars and the
//! event cache. docs/room.md explains the room to an operator.

mod join;
mod location;
mod object;
pub(crate) mod public;
mod shard;
mod spend;

pub use spend::{spend, Spending};

use flashgate_core::ids::{EventId, UserId};
use flashgate_core::room::chain::{shard_of, Entry};
use flashgate_core::room::draw::Drawn;
use flashgate_core::room::forward::{self, Grant};
use flashgate_core::room::schedule::Schedule;
use flashgate_core::room::seal::SealRecord;
use flashgate_core::room::settings::RoomSettings;
use flashgate_core::wire::Outcome;
use flashgate_core::{bounded::Bounded, Millis};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use worker::{Env, Method, Request, RequestInit, Url};

/// The Durable Object binding (wrangler.toml `[[durable_objects.bindings]]`).
pub const BINDING: &str = "ROOM";

/// Most rooms whose state an isolate remembers.
const MAX_CACHED: usize = 1_024;

/// Most entries in one page of a sealed draw.
pub const MAX_PAGE: u64 = 1_000;

/// A call from the worker (or the event's object) to a room object.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum Call {
    /// The event's object: advance the admissions, seal when due, and hand a shard a
    /// block of positions for its later arrivals when it asks for one.
    Ask(Ask),
    /// A shard: find or register a user's entry in the draw.
    Enter(Enter),
    /// A shard: close it to registrations and answer its chain (the seal asks).
    Close {
        /// The room's event.
        event: EventId,
        /// The shard's number.
        shard: u32,
    },
    /// The event's object: forwards for an isolate to spend on admitted purchases.
    Forwards {
        /// The room's settings (its rate).
        settings: RoomSettings,
        /// How many the isolate asks for.
        want: u64,
    },
    /// A shard: spend the user's receipt on a purchase (`core::room::spend`).
    Spend(Mark),
    /// A shard: give back the receipt that spend took.
    GiveBack(Mark),
    /// A shard: a page of its closed chain's entries.
    Entries {
        /// The room's event.
        event: EventId,
        /// The shard's number.
        shard: u32,
        /// The first arrival index of the page.
        from: u64,
        /// Most entries to answer.
        limit: u64,
    },
}

/// Finds or registers a user in their shard.
#[derive(Debug, Serialize, Deserialize)]
pub struct Enter {
    /// The room's event.
    pub event: EventId,
    /// The user's shard (`chain::shard_of`).
    pub shard: u32,
    /// The user.
    pub user: UserId,
    /// Their client's fingerprint (`ticket::fingerprint`), kept in the entry.
    pub fingerprint: String,
    /// When the draw's window closes: no registration from then.
    pub draw_at: Millis,
    /// What the shard tells the event's object when it needs positions for its later
    /// arrivals (the worker's public ask).
    pub room: Ask,
}

/// A user's spend mark in their shard: written when their purchase is forwarded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mark {
    /// The user.
    pub user: UserId,
    /// When the purchase spent the receipt (a give-back names the same time).
    pub at: Millis,
}

/// Whether a spend took the receipt.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Spent {
    /// `false`: the receipt was spent already.
    pub first: bool,
}

/// A user's entry in their shard.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Entered {
    /// Their arrival index in the shard; `None`: not in the draw (came after it).
    pub index: Option<u64>,
    /// A later arrival's position behind the draw (`None` while the draw is not sealed).
    #[serde(default)]
    pub position: Option<u64>,
    /// When they registered.
    pub at: Millis,
}

/// A closed shard's chain.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Closed {
    /// The chain: its length and root.
    pub chain: flashgate_core::room::chain::ShardChain,
}

/// The object name of `event`'s shard `shard`.
pub fn shard_name(event: &EventId, shard: u32) -> String {
    format!("{event}/{shard}")
}

/// Advances the admissions, and hands a shard positions behind the draw when it asks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ask {
    /// The room's event.
    pub event: EventId,
    /// How many positions behind the draw a shard takes for its later arrivals
    /// (`core::room::late`); 0 only reads (and advances) the room.
    pub late: u64,
    /// The room's settings.
    pub settings: RoomSettings,
    /// The event's start; the draw closes `fair_start_ms` after it.
    pub starts_at: Millis,
    /// Units not yet sold, as the edge last saw them.
    pub unsold: u64,
    /// Whether the calling isolate saw the event sold out (the room tells every other
    /// isolate for a few seconds, so waiting pages learn it wherever they ask).
    pub sold_out: bool,
}

/// The draw's public part: the commitment from the start, the record once sealed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Draw {
    /// When the draw's window closes and the room seals.
    pub draw_at: Millis,
    /// SHA-256 of the seed, published before anyone registered.
    pub commitment: String,
    /// How many shards take registrations.
    pub shards: u32,
    /// The sealed record (entrants, roots, the seed revealed).
    pub record: Option<SealRecord>,
    /// Each shard's entries in the record, shard 0 first (empty before the seal).
    pub sizes: Vec<u64>,
}

/// What the room answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Told {
    /// The joining user's position, once the draw is sealed.
    pub position: Option<u64>,
    /// The first of the `late` positions a shard asked for (they follow each other).
    #[serde(default)]
    pub block: Option<u64>,
    /// Before the seal: the joining user's arrival index in their shard.
    pub arrival: Option<u64>,
    /// The receipt's `issued_at`: the registration before the seal, now after it.
    pub issued_at: Option<Millis>,
    /// Positions handed out so far.
    pub queued: u64,
    /// The public schedule.
    pub schedule: Schedule,
    /// The draw.
    pub draw: Draw,
    /// Whether an isolate saw the event sold out in the last few seconds.
    pub sold_out: bool,
}

/// How many forwards the room granted.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Granted {
    /// Forwards to spend within `core::room::forward::GRANT_MS`.
    pub count: u64,
}

/// A page of a sealed draw's entries, in chain order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntriesPage {
    /// Whether the draw is sealed (no entries are published before).
    pub sealed: bool,
    /// The shard the entries chain into.
    pub shard: u32,
    /// The entries.
    pub entries: Vec<Entry>,
    /// The `from` of the next page, if there may be one.
    pub next: Option<u64>,
}

thread_local! {
    static TOLD: RefCell<Bounded<EventId, (Millis, Told)>> =
        RefCell::new(Bounded::new(MAX_CACHED));
    static GRANTS: RefCell<Bounded<EventId, Grant>> = RefCell::new(Bounded::new(MAX_CACHED));
}

fn busy() -> Outcome {
    Outcome::Busy {
        retry_after_secs: 1,
    }
}

/// Calls the room object named `name` (from the worker or from another object).
async fn fetch_object<T: serde::de::DeserializeOwned>(
    env: &Env,
    name: &str,
    call: &Call,
) -> worker::Result<T> {
    let stub = env
        .durable_object(BINDING)?
        .id_from_name(name)?
        .get_stub()?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_body(Some(serde_json::to_string(call)?.into()));
    let req = Request::new_with_init("https://room.invalid/", &init)?;
    let mut resp = stub.fetch_with_request(req).await?;
    if resp.status_code() != 200 {
        return Err(worker::Error::from(format!(
            "{name} answered {}",
            resp.status_code()
        )));
    }
    resp.json::<T>().await
}

/// Calls the room object named `name` of `event`; any failure is 503 busy (the object's
/// own error is in wrangler's log).
async fn call<T: serde::de::DeserializeOwned>(
    env: &Env,
    event: &EventId,
    name: &str,
    call: &Call,
) -> std::result::Result<T, Outcome> {
    fetch_object(env, name, call).await.map_err(|e| {
        worker::console_error!("room {event} ({name}): {e}");
        busy()
    })
}

/// The public answer's header naming its copy's [`Source`].
pub const SOURCE_HEADER: &str = "x-flashgate-room-source";

/// Where a copy of the room's public state came from (the answer's
/// `X-Flashgate-Room-Source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// This isolate's memory.
    Isolate,
    /// The location's cache, filled by another request there.
    Location,
    /// The event's object, read now.
    Room,
}

impl Source {
    /// The header's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Isolate => "isolate",
            Self::Location => "location",
            Self::Room => "room",
        }
    }
}

/// The room's public part of `told`: what any shopper may see, without the asking
/// user's own fields.
fn public_part(told: &Told) -> Told {
    Told {
        position: None,
        block: None,
        arrival: None,
        issued_at: None,
        ..told.clone()
    }
}

/// Keeps `told`, read from the object at `at`, in this isolate until `at + ttl`.
fn remember(event: &EventId, told: &Told, at: Millis, ttl: Millis) {
    TOLD.with(|c| {
        c.borrow_mut()
            .insert(event.clone(), (at, public_part(told)), |(then, _)| {
                at - then >= ttl
            })
    });
}

/// This isolate's copy of `event`'s room, if younger than `ttl`.
fn remembered(event: &EventId, now: Millis, ttl: Millis) -> Option<Told> {
    TOLD.with(|c| {
        c.borrow_mut()
            .get(event)
            .filter(|(at, _)| now - at < ttl)
            .map(|(_, t)| t.clone())
    })
}

/// Asks the event's object (sealing when due) and refreshes the isolate's and the
/// location's copies of the room's public state.
async fn ask(a: Ask, env: &Env, site: &Url, now: Millis, ttl: Millis) -> Result<Told, Outcome> {
    let event = a.event.clone();
    let told: Told = call(env, &event, event.as_str(), &Call::Ask(a)).await?;
    remember(&event, &told, now, ttl);
    location::put(site, &event, &public_part(&told), now, ttl).await;
    Ok(told)
}

/// The room's public state, from a copy younger than `ttl` when there is one, else from
/// the event's object (which advances its admissions, and seals its draw when due,
/// then): about one object read per location per `ttl`, however many shoppers ask.
/// `shared` reads the location's copy before the isolate's, so that every isolate of a
/// location answers the same state (the public answer); otherwise the isolate's own
/// copy saves a cache read (a purchase's gate). A copy that has not seen the sale sold
/// out is not taken from an isolate that has: the room learns it from that isolate.
pub async fn status(
    a: Ask,
    env: &Env,
    site: &Url,
    now: Millis,
    ttl: Millis,
    shared: bool,
) -> Result<(Told, Source), Outcome> {
    let usable = |t: &Told| t.sold_out || !a.sold_out;
    let isolate = || remembered(&a.event, now, ttl).filter(usable);
    if !shared {
        if let Some(told) = isolate() {
            return Ok((told, Source::Isolate));
        }
    }
    let located = location::get(site, &a.event, now, ttl).await;
    if let Some((at, told)) = located.filter(|(_, t)| usable(t)) {
        remember(&a.event, &told, at, ttl);
        return Ok((told, Source::Location));
    }
    if let Some(told) = isolate() {
        return Ok((told, Source::Isolate));
    }
    let told = ask(Ask { late: 0, ..a }, env, site, now, ttl).await?;
    Ok((told, Source::Room))
}

/// Joins `user` to the room of `a.event` (once; every call answers the same entry): in
/// the draw through their shard before `draw_at`, and, once sealed, at the place the
/// draw gave them or, for a later arrival, behind the draw. The answer carries the
/// position, or before the seal the arrival in the shard, and the room's public state.
pub async fn join(
    a: Ask,
    user: &UserId,
    fingerprint: &str,
    env: &Env,
    site: &Url,
    now: Millis,
    ttl: Millis,
) -> Result<Told, Outcome> {
    // The event's object first: its commitment exists before any registration.
    let public = Ask { late: 0, ..a };
    let (mut told, _) = status(public.clone(), env, site, now, ttl, false).await?;
    let due = |told: &Told| told.draw.record.is_none() && crate::now() >= told.draw.draw_at;
    if due(&told) {
        // Due to seal, and this isolate's copy is older: ask (and seal) now, so that a
        // later arrival's shard can take positions behind the draw.
        told = ask(public.clone(), env, site, crate::now(), ttl).await?;
    }
    // The room's own count, fixed on its first call: a later change of the setting
    // never sends a user to another shard.
    let shard = shard_of(user, told.draw.shards);
    let enter = Enter {
        event: public.event.clone(),
        shard,
        user: user.clone(),
        fingerprint: fingerprint.to_owned(),
        draw_at: told.draw.draw_at,
        room: public.clone(),
    };
    let event = &public.event;
    let entered: Entered = call(env, event, &shard_name(event, shard), &Call::Enter(enter)).await?;
    let Some(index) = entered.index else {
        // Not in the draw: a later arrival, placed by their shard behind it.
        told.position = Some(entered.position.ok_or_else(busy)?);
        told.issued_at = Some(crate::now());
        return Ok(told);
    };
    if due(&told) {
        told = ask(public, env, site, crate::now(), ttl).await?;
    }
    match &told.draw.record {
        Some(record) => {
            let drawn = Drawn::of(record).map_err(|e| {
                worker::console_error!("room {}: {e}", told.draw.commitment);
                busy()
            })?;
            told.position = drawn.position_in(&told.draw.sizes, shard, index);
            told.issued_at = Some(crate::now());
        }
        None => {
            told.arrival = Some(index);
            told.issued_at = Some(entered.at);
        }
    }
    Ok(told)
}

/// A page of the closed shard `shard` of `event`'s draw, from arrival index `from`.
pub async fn entries(
    env: &Env,
    event: &EventId,
    shard: u32,
    from: u64,
) -> Result<EntriesPage, Outcome> {
    let page = Call::Entries {
        event: event.clone(),
        shard,
        from,
        limit: MAX_PAGE,
    };
    call(env, event, &shard_name(event, shard), &page).await
}

/// Spends one of this isolate's forwards to the origin for `event`, asking the room for
/// a batch when none is left: the whole edge forwards at most the room's rate. 429 when
/// the room has none to give now.
pub async fn forward(
    env: &Env,
    event: &EventId,
    settings: RoomSettings,
    now: Millis,
) -> Result<(), Outcome> {
    let spent = |now| {
        GRANTS.with(|g| {
            g.borrow_mut()
                .get_mut(event)
                .is_some_and(|grant| grant.take(now))
        })
    };
    if spent(now) {
        return Ok(());
    }
    let want = forward::batch(&settings);
    let granted: Granted = call(
        env,
        event,
        event.as_str(),
        &Call::Forwards { settings, want },
    )
    .await?;
    let now = crate::now();
    GRANTS.with(|g| {
        g.borrow_mut()
            .insert(event.clone(), Grant::new(granted.count, now), |_| true)
    });
    if spent(now) {
        Ok(())
    } else {
        Err(Outcome::RateLimited {
            retry_after_secs: 1,
        })
    }
}
