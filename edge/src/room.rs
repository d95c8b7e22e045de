//! The room of an event: a Durable Object per event (binding `ROOM`, class [`Room`],
//! SQLite storage) that holds the arrivals and the pacing, and what an isolate keeps of
//! it (the public schedule, for `ROOM_CACHE_MS`). The object only stores and calls
//! `flashgate_core::room`; the settings, the event's start and its unsold units come with
//! each call from the worker, which reads them from its vars and the event cache.
//!
//! Every call reads and writes storage without awaiting in between, so the object's
//! input gate makes it atomic (an object serialises its requests): two arrivals never
//! get one position, and one user's second call finds their first.

use flashgate_core::ids::EventId;
use flashgate_core::room::pacing::{self, Pacing};
use flashgate_core::room::schedule::Schedule;
use flashgate_core::room::settings::RoomSettings;
use flashgate_core::wire::Outcome;
use flashgate_core::{bounded::Bounded, Millis};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use worker::{
    durable_object, DurableObject, Env, Method, Request, RequestInit, Response, Result, State,
};

/// The Durable Object binding (wrangler.toml `[[durable_objects.bindings]]`).
pub const BINDING: &str = "ROOM";

/// Most rooms whose schedule an isolate remembers.
const MAX_CACHED: usize = 1_024;

/// A call from the worker to an event's room.
#[derive(Debug, Serialize, Deserialize)]
pub struct Ask {
    /// The user joining; `None` only reads (and advances) the schedule.
    pub user: Option<String>,
    /// The room's settings.
    pub settings: RoomSettings,
    /// When the room begins admitting: the event's start.
    pub opened_at: Millis,
    /// Units not yet sold, as the edge last saw them.
    pub unsold: u64,
}

/// What the room answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Told {
    /// The joining user's position (the same on every call).
    pub position: Option<u64>,
    /// When the user first joined: their receipt's `issued_at`.
    pub issued_at: Option<Millis>,
    /// Positions handed out so far.
    pub queued: u64,
    /// The public schedule.
    pub schedule: Schedule,
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS entries (user TEXT PRIMARY KEY, position INTEGER NOT NULL, \
     issued_at INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS pacing (id INTEGER PRIMARY KEY CHECK (id = 1), state TEXT NOT NULL)",
    // Admissions handed out and not yet expired, as batches.
    "CREATE TABLE IF NOT EXISTS leases (expires_at INTEGER NOT NULL, count INTEGER NOT NULL)",
];

/// One event's room (the object named by the event id).
#[durable_object]
pub struct Room {
    state: State,
}

#[derive(Deserialize)]
struct Entry {
    position: u64,
    issued_at: Millis,
}

#[derive(Deserialize)]
struct Stored {
    state: String,
}

#[derive(Deserialize)]
struct Sum {
    n: u64,
}

fn int(v: u64) -> worker::SqlStorageValue {
    worker::SqlStorageValue::Integer(i64::try_from(v).unwrap_or(i64::MAX))
}

impl Room {
    /// Joins `ask.user` (once) and advances the admissions to `now`; synchronous, see the
    /// module doc.
    fn call(&self, ask: &Ask, now: Millis) -> Result<Told> {
        let sql = self.state.storage().sql();
        let mut pacing = match sql
            .exec("SELECT state FROM pacing WHERE id = 1", None)?
            .to_array::<Stored>()?
            .pop()
        {
            Some(s) => serde_json::from_str(&s.state)?,
            None => Pacing::new(&ask.settings, now),
        };
        let expired = sql
            .exec(
                "SELECT COALESCE(SUM(count), 0) AS n FROM leases WHERE expires_at <= ?",
                vec![now.into()],
            )?
            .one::<Sum>()?
            .n;
        if expired > 0 {
            sql.exec("DELETE FROM leases WHERE expires_at <= ?", vec![now.into()])?;
            pacing.ended(expired);
        }
        let mut entry = None;
        if let Some(user) = &ask.user {
            entry = sql
                .exec(
                    "SELECT position, issued_at FROM entries WHERE user = ?",
                    vec![user.as_str().into()],
                )?
                .to_array::<Entry>()?
                .pop();
            if entry.is_none() {
                // Arrival order for now; the fair-start draw comes later (docs/room.md).
                pacing.joined(1);
                let e = Entry {
                    position: pacing.queued(),
                    issued_at: now,
                };
                sql.exec(
                    "INSERT INTO entries (user, position, issued_at) VALUES (?, ?, ?)",
                    vec![user.as_str().into(), int(e.position), now.into()],
                )?;
                entry = Some(e);
            }
        }
        let lease = pacing::advance(&mut pacing, ask.opened_at, now, &ask.settings, ask.unsold);
        if lease.count > 0 {
            sql.exec(
                "INSERT INTO leases (expires_at, count) VALUES (?, ?)",
                vec![lease.expires_at.into(), int(lease.count)],
            )?;
        }
        sql.exec(
            "INSERT INTO pacing (id, state) VALUES (1, ?) \
             ON CONFLICT (id) DO UPDATE SET state = excluded.state",
            vec![serde_json::to_string(&pacing)?.into()],
        )?;
        Ok(Told {
            position: entry.as_ref().map(|e| e.position),
            issued_at: entry.as_ref().map(|e| e.issued_at),
            queued: pacing.queued(),
            schedule: Schedule::of(&ask.settings, &pacing, ask.opened_at, now),
        })
    }
}

impl DurableObject for Room {
    fn new(state: State, _env: Env) -> Self {
        let sql = state.storage().sql();
        for ddl in SCHEMA {
            if let Err(e) = sql.exec(ddl, None) {
                worker::console_error!("room schema: {e}");
            }
        }
        Self { state }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let ask: Ask = req.json().await?;
        let told = self.call(&ask, crate::now())?;
        Response::from_json(&told)
    }
}

thread_local! {
    static SCHEDULES: RefCell<Bounded<EventId, (Millis, Told)>> =
        RefCell::new(Bounded::new(MAX_CACHED));
}

fn busy() -> Outcome {
    Outcome::Busy {
        retry_after_secs: 1,
    }
}

/// Calls the room of `event`; any failure is 503 busy (the object's own error is in
/// wrangler's log).
async fn ask(env: &Env, event: &EventId, ask: &Ask) -> std::result::Result<Told, Outcome> {
    let call = async {
        let stub = env
            .durable_object(BINDING)?
            .id_from_name(event.as_str())?
            .get_stub()?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_body(Some(serde_json::to_string(ask)?.into()));
        let req = Request::new_with_init("https://room.invalid/", &init)?;
        let mut resp = stub.fetch_with_request(req).await?;
        if resp.status_code() != 200 {
            return Err(worker::Error::from(format!(
                "answered {}",
                resp.status_code()
            )));
        }
        resp.json::<Told>().await
    };
    call.await.map_err(|e| {
        worker::console_error!("room {event}: {e}");
        busy()
    })
}

fn remember(event: &EventId, told: &Told, now: Millis, ttl: Millis) {
    SCHEDULES.with(|c| {
        c.borrow_mut()
            .insert(event.clone(), (now, told.clone()), |(at, _)| {
                now - at >= ttl
            })
    });
}

/// Joins `a.user` to the room of `event` (once; a second call answers the same
/// position), and refreshes the isolate's copy of the schedule.
pub async fn join(
    env: &Env,
    event: &EventId,
    a: &Ask,
    now: Millis,
    ttl: Millis,
) -> std::result::Result<Told, Outcome> {
    let told = ask(env, event, a).await?;
    remember(event, &told, now, ttl);
    Ok(told)
}

/// The room's public state, from the isolate's memory when younger than `ttl`, else
/// from the room (which advances its admissions then): about one object read per
/// isolate per `ttl`, however many shoppers ask. `a.user` is ignored.
pub async fn status(
    env: &Env,
    event: &EventId,
    a: Ask,
    now: Millis,
    ttl: Millis,
) -> std::result::Result<Told, Outcome> {
    let cached = SCHEDULES.with(|c| {
        c.borrow_mut()
            .get(event)
            .filter(|(at, _)| now - at < ttl)
            .map(|(_, t)| t.clone())
    });
    if let Some(told) = cached {
        return Ok(told);
    }
    let told = ask(env, event, &Ask { user: None, ..a }).await?;
    remember(event, &told, now, ttl);
    Ok(told)
}
