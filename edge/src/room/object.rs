//! The room's Durable Objects, one class in two roles, each with SQLite storage:
//!
//! - the **event's object** (named by the event id) holds the seed committed to on its
//!   first call, the sealed record, how many positions behind the draw the shards took,
//!   the pacing, the forwarding bucket and the admissions not yet expired;
//! - each **shard** (named `<event>/<k>`) takes the draw's registrations of its users and
//!   chains them, places its later arrivals from blocks of positions, and keeps which of
//!   its users spent their receipt on a purchase, so no single object takes every
//!   shopper.
//!
//! Each call reads and writes storage without awaiting in between, so an object's input
//! gate makes it atomic: two arrivals never get one index, one user's second call finds
//! their first. The seal happens on the event object's first call from `draw_at` (no
//! alarm: they are unreliable under `wrangler dev`): it closes every shard (a shard
//! registers nobody more once closed), then stores the record once, whichever of two
//! concurrent seals gets there first (both computed the same one).

use super::shard::Entering;
use super::{shard_name, Ask, Call, Closed, Draw, Enter, Entered, Granted, Told};
use flashgate_core::ids::EventId;
use flashgate_core::room::chain::ShardChain;
use flashgate_core::room::draw;
use flashgate_core::room::forward::Forwards;
use flashgate_core::room::late;
use flashgate_core::room::pacing::{self, Pacing};
use flashgate_core::room::schedule::{self, Schedule};
use flashgate_core::room::seal::{self, SealRecord};
use flashgate_core::room::settings::RoomSettings;
use flashgate_core::Millis;
use serde::Deserialize;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, SqlStorage, State};

/// How long a sold-out an isolate reported holds in the room.
const SOLD_OUT_MS: Millis = 5_000;

/// The version of [`SCHEMA`]: an object whose storage has another drops its tables and
/// starts afresh (rooms are short-lived: a room older than the worker's code is not
/// carried across a change of its tables).
const SCHEMA_VERSION: i64 = 5;

/// Every table the versions of [`SCHEMA`] have had.
const TABLES: &[&str] = &[
    "draw",
    "late",
    "pacing",
    "forwards",
    "sold_out",
    "leases",
    "admissions",
    "chain",
    "entries",
    "spent",
    "late_free",
    "late_arrivals",
];

const SCHEMA: &[&str] = &[
    // The event object: the draw (seed, record, shard sizes) and how many positions
    // behind it the shards took.
    "CREATE TABLE IF NOT EXISTS draw (id INTEGER PRIMARY KEY CHECK (id = 1), \
     seed TEXT NOT NULL, shards INTEGER NOT NULL, record TEXT, sizes TEXT, \
     late INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS pacing (id INTEGER PRIMARY KEY CHECK (id = 1), state TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS forwards (id INTEGER PRIMARY KEY CHECK (id = 1), \
     state TEXT NOT NULL)",
    // Until when the event counts as sold out (an isolate saw it; a returned unit
    // can undo it, so it lapses unless seen again).
    "CREATE TABLE IF NOT EXISTS sold_out (id INTEGER PRIMARY KEY CHECK (id = 1), \
     until INTEGER NOT NULL)",
    // Admissions handed out and not yet expired, as batches of positions first..=last.
    "CREATE TABLE IF NOT EXISTS admissions (last INTEGER NOT NULL, count INTEGER NOT NULL, \
     expires_at INTEGER NOT NULL)",
    // A shard: its chain, whether it closed, and its entries in arrival order.
    "CREATE TABLE IF NOT EXISTS chain (id INTEGER PRIMARY KEY CHECK (id = 1), \
     state TEXT NOT NULL, closed INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS entries (user TEXT PRIMARY KEY, idx INTEGER NOT NULL, \
     entrant TEXT NOT NULL, fingerprint TEXT NOT NULL, at INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS entries_by_index ON entries (idx)",
    // A shard: its later arrivals' places, the positions it holds for the next ones,
    // and its recent arrivals (`core::room::late`).
    "CREATE TABLE IF NOT EXISTS late (user TEXT PRIMARY KEY, position INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS late_free (position INTEGER PRIMARY KEY)",
    "CREATE TABLE IF NOT EXISTS late_arrivals (id INTEGER PRIMARY KEY CHECK (id = 1), \
     state TEXT NOT NULL)",
    // A shard: the receipts its users spent on a purchase (`core::room::spend`).
    "CREATE TABLE IF NOT EXISTS spent (user TEXT PRIMARY KEY, at INTEGER NOT NULL)",
];

/// One event's room object, or one of its shards.
#[durable_object]
pub struct Room {
    state: State,
    env: Env,
}

#[derive(Deserialize)]
struct StoredDraw {
    seed: String,
    shards: u32,
    record: Option<String>,
    sizes: Option<String>,
    late: u64,
}

#[derive(Deserialize)]
struct Stored {
    state: String,
}

#[derive(Deserialize)]
struct Expired {
    last: u64,
    n: u64,
}

#[derive(Deserialize)]
struct Until {
    until: Millis,
}

fn int(v: u64) -> worker::SqlStorageValue {
    worker::SqlStorageValue::Integer(i64::try_from(v).unwrap_or(i64::MAX))
}

fn error(e: impl std::fmt::Display) -> worker::Error {
    worker::Error::from(e.to_string())
}

/// The event object's draw: the seed (hex), the record and shard sizes once sealed.
struct DrawState {
    seed_hex: String,
    /// The shards registrations go to, fixed on the room's first call.
    shards: u32,
    record: Option<SealRecord>,
    sizes: Vec<u64>,
    late: u64,
}

impl DrawState {
    /// The stored draw; on the room's first call, a new one over `shards` shards.
    fn load(sql: &SqlStorage, shards: u32) -> Result<Self> {
        let stored = sql
            .exec(
                "SELECT seed, shards, record, sizes, late FROM draw WHERE id = 1",
                None,
            )?
            .to_array::<StoredDraw>()?
            .pop();
        if let Some(d) = stored {
            return Ok(Self {
                seed_hex: d.seed,
                shards: d.shards,
                record: d.record.map(|r| serde_json::from_str(&r)).transpose()?,
                sizes: d
                    .sizes
                    .map(|s| serde_json::from_str(&s))
                    .transpose()?
                    .unwrap_or_default(),
                late: d.late,
            });
        }
        // The first call ever: commit to a seed before anyone can register.
        let seed: [u8; 32] = crate::random::bytes()?;
        let d = Self {
            seed_hex: seed.iter().map(|b| format!("{b:02x}")).collect(),
            shards,
            record: None,
            sizes: Vec::new(),
            late: 0,
        };
        d.save(sql)?;
        Ok(d)
    }

    fn save(&self, sql: &SqlStorage) -> Result<()> {
        let record = match &self.record {
            Some(r) => serde_json::to_string(r)?.into(),
            None => worker::SqlStorageValue::Null,
        };
        sql.exec(
            "INSERT INTO draw (id, seed, shards, record, sizes, late) VALUES (1, ?, ?, ?, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET record = excluded.record, \
             sizes = excluded.sizes, late = excluded.late",
            vec![
                self.seed_hex.as_str().into(),
                i64::from(self.shards).into(),
                record,
                serde_json::to_string(&self.sizes)?.into(),
                int(self.late),
            ],
        )?;
        Ok(())
    }

    fn seed(&self) -> Vec<u8> {
        (0..self.seed_hex.len())
            .step_by(2)
            .filter_map(|i| u8::from_str_radix(self.seed_hex.get(i..i + 2)?, 16).ok())
            .collect()
    }

    fn public(&self, draw_at: Millis) -> Draw {
        Draw {
            draw_at,
            commitment: seal::commitment(&self.seed()),
            shards: self.shards,
            record: self.record.clone(),
            sizes: self.sizes.clone(),
        }
    }
}

impl Room {
    /// Calls the room object named `name` from this one.
    async fn call<T: serde::de::DeserializeOwned>(&self, name: &str, call: &Call) -> Result<T> {
        super::fetch_object(&self.env, name, call).await
    }

    /// Closes every shard of `event` and answers their chains, shard 0 first.
    async fn close_shards(&self, event: &EventId, shards: u32) -> Result<Vec<ShardChain>> {
        let mut chains = Vec::new();
        for shard in 0..shards {
            let close = Call::Close {
                event: event.clone(),
                shard,
            };
            let closed: Closed = self.call(&shard_name(event, shard), &close).await?;
            chains.push(closed.chain);
        }
        Ok(chains)
    }

    /// A shard: the user's entry or place; a later arrival when the shard holds no
    /// position takes a block from the event's object first. No position before the
    /// seal (the worker seals first).
    async fn enter(&self, e: &Enter) -> Result<Entered> {
        let sql = self.state.storage().sql();
        let want = match super::shard::enter(&sql, e, crate::now())? {
            Entering::Done(entered) => return Ok(entered),
            Entering::Block(want) => want,
        };
        let ask = Call::Ask(Ask {
            late: want,
            ..e.room.clone()
        });
        let told: Told = self.call(e.event.as_str(), &ask).await?;
        if let Some(first) = told.block {
            super::shard::stock(&sql, first, want.min(late::MAX_BLOCK))?;
        }
        match super::shard::enter(&sql, e, crate::now())? {
            Entering::Done(entered) => Ok(entered),
            Entering::Block(_) => Ok(Entered {
                index: None,
                position: None,
                at: crate::now(),
            }),
        }
    }

    /// The event object: seals when due, joins a later arrival, advances the admissions.
    async fn ask(&self, ask: &Ask) -> Result<Told> {
        let draw_at = ask.settings.draw_at(ask.starts_at);
        let first = DrawState::load(&self.state.storage().sql(), ask.settings.shards)?;
        let chains = if draw::seals_now(first.record.is_some(), draw_at, crate::now()) {
            Some(self.close_shards(&ask.event, first.shards).await?)
        } else {
            None
        };
        // From here on no await: the rest is atomic.
        let now = crate::now();
        let sql = self.state.storage().sql();
        let mut d = DrawState::load(&sql, ask.settings.shards)?;
        let mut pacing = match sql
            .exec("SELECT state FROM pacing WHERE id = 1", None)?
            .to_array::<Stored>()?
            .pop()
        {
            Some(s) => serde_json::from_str(&s.state)?,
            None => Pacing::new(&ask.settings, now),
        };
        if let (Some(chains), None) = (chains, &d.record) {
            let record = SealRecord::seal(&ask.event, &chains, &d.seed(), None).map_err(error)?;
            d.sizes = chains.iter().map(ShardChain::len).collect();
            pacing.joined(record.entrants);
            d.record = Some(record);
            d.save(&sql)?;
        }
        let expired = sql
            .exec(
                "SELECT COALESCE(MAX(last), 0) AS last, COALESCE(SUM(count), 0) AS n \
                 FROM admissions WHERE expires_at <= ?",
                vec![now.into()],
            )?
            .one::<Expired>()?;
        if expired.n > 0 {
            sql.exec(
                "DELETE FROM admissions WHERE expires_at <= ?",
                vec![now.into()],
            )?;
            pacing.expire(expired.last, expired.n);
        }
        if ask.sold_out {
            sql.exec(
                "INSERT INTO sold_out (id, until) VALUES (1, ?) \
                 ON CONFLICT (id) DO UPDATE SET until = excluded.until",
                vec![(now + SOLD_OUT_MS).into()],
            )?;
        }
        let sold_out_until = sql
            .exec("SELECT until FROM sold_out WHERE id = 1", None)?
            .to_array::<Until>()?
            .pop()
            .map_or(0, |u| u.until);

        // A shard's block of positions behind the draw, for its later arrivals.
        let mut block = None;
        if let (true, Some(record)) = (ask.late > 0, &d.record) {
            let want = ask.late.min(late::MAX_BLOCK);
            block = Some(schedule::late_position(record.entrants, d.late));
            d.late += want;
            d.save(&sql)?;
            pacing.joined(want);
        }
        let lease = pacing::advance(&mut pacing, draw_at, now, &ask.settings, ask.unsold);
        if lease.count > 0 {
            sql.exec(
                "INSERT INTO admissions (last, count, expires_at) VALUES (?, ?, ?)",
                vec![
                    int(lease.first_position + lease.count - 1),
                    int(lease.count),
                    lease.expires_at.into(),
                ],
            )?;
        }
        sql.exec(
            "INSERT INTO pacing (id, state) VALUES (1, ?) \
             ON CONFLICT (id) DO UPDATE SET state = excluded.state",
            vec![serde_json::to_string(&pacing)?.into()],
        )?;
        Ok(Told {
            position: None,
            block,
            arrival: None,
            issued_at: None,
            queued: pacing.queued(),
            schedule: Schedule::of(&ask.settings, &pacing, draw_at, now),
            draw: d.public(draw_at),
            sold_out: now < sold_out_until,
        })
    }

    /// The event object: up to `want` forwards from its bucket.
    fn forwards(&self, settings: &RoomSettings, want: u64, now: Millis) -> Result<Granted> {
        let sql = self.state.storage().sql();
        let mut bucket = match sql
            .exec("SELECT state FROM forwards WHERE id = 1", None)?
            .to_array::<Stored>()?
            .pop()
        {
            Some(s) => serde_json::from_str(&s.state)?,
            None => Forwards::new(settings, now),
        };
        let count = bucket.grant(want, settings, now);
        sql.exec(
            "INSERT INTO forwards (id, state) VALUES (1, ?) \
             ON CONFLICT (id) DO UPDATE SET state = excluded.state",
            vec![serde_json::to_string(&bucket)?.into()],
        )?;
        Ok(Granted { count })
    }
}

#[derive(Deserialize)]
struct Version {
    version: i64,
}

/// Creates the tables of [`SCHEMA_VERSION`], dropping those of another version first.
fn prepare(sql: &SqlStorage) -> Result<()> {
    sql.exec(
        "CREATE TABLE IF NOT EXISTS schema (id INTEGER PRIMARY KEY CHECK (id = 1), \
         version INTEGER NOT NULL)",
        None,
    )?;
    let version = sql
        .exec("SELECT version FROM schema WHERE id = 1", None)?
        .to_array::<Version>()?
        .pop()
        .map(|v| v.version);
    if version == Some(SCHEMA_VERSION) {
        return Ok(());
    }
    for table in TABLES {
        sql.exec(&format!("DROP TABLE IF EXISTS {table}"), None)?;
    }
    for ddl in SCHEMA {
        sql.exec(ddl, None)?;
    }
    sql.exec(
        "INSERT INTO schema (id, version) VALUES (1, ?) \
         ON CONFLICT (id) DO UPDATE SET version = excluded.version",
        vec![SCHEMA_VERSION.into()],
    )?;
    Ok(())
}

impl DurableObject for Room {
    fn new(state: State, env: Env) -> Self {
        if let Err(e) = prepare(&state.storage().sql()) {
            worker::console_error!("room schema: {e}");
        }
        Self { state, env }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        match req.json::<Call>().await? {
            Call::Ask(ask) => Response::from_json(&self.ask(&ask).await?),
            Call::Enter(e) => Response::from_json(&self.enter(&e).await?),
            Call::Close { event, shard } => Response::from_json(&super::shard::close(
                &self.state.storage().sql(),
                &event,
                shard,
            )?),
            Call::Spend(m) => {
                Response::from_json(&super::shard::spend(&self.state.storage().sql(), &m)?)
            }
            Call::GiveBack(m) => {
                Response::from_json(&super::shard::give_back(&self.state.storage().sql(), &m)?)
            }
            Call::Forwards { settings, want } => {
                Response::from_json(&self.forwards(&settings, want, crate::now())?)
            }
            Call::Entries {
                event,
                shard,
                from,
                limit,
            } => Response::from_json(&super::shard::entries(
                &self.state.storage().sql(),
                &event,
                shard,
                from,
                limit,
            )?),
        }
    }
}
