//! The room's Durable Object: one per event (named by the event id), SQLite storage.
//!
//! It holds the draw (the seed committed to on the first call, the chain of entries,
//! the sealed record), the entries (user → arrival index or late arrival), the pacing
//! and the admissions not yet expired. Every call reads and writes storage without
//! awaiting in between, so the object's input gate makes it atomic: two arrivals never
//! get one index, one user's second call finds their first, and the seal happens once,
//! on the first call from `draw_at` (no alarm: they are unreliable under `wrangler dev`).

use super::{Ask, Call, Draw, EntriesPage, Granted, Told, MAX_PAGE};
use flashgate_core::ids::{EventId, UserId};
use flashgate_core::room::chain::{Entry, ShardChain};
use flashgate_core::room::draw::{self, Drawn};
use flashgate_core::room::forward::Forwards;
use flashgate_core::room::pacing::{self, Pacing};
use flashgate_core::room::schedule::Schedule;
use flashgate_core::room::seal::{self, SealRecord};
use flashgate_core::room::settings::RoomSettings;
use flashgate_core::Millis;
use serde::Deserialize;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, SqlStorage, State};

/// The only shard for now: every entry chains into shard 0's root.
const SHARD: u32 = 0;

/// How long a sold-out an isolate reported holds in the room.
const SOLD_OUT_MS: Millis = 5_000;

const SCHEMA: &[&str] = &[
    // `drawn` = 1: registered before draw_at, `idx` its arrival index in the shard;
    // 0: came later, `idx` its arrival among the late ones.
    "CREATE TABLE IF NOT EXISTS entries (user TEXT PRIMARY KEY, drawn INTEGER NOT NULL, \
     idx INTEGER NOT NULL, entrant TEXT NOT NULL, fingerprint TEXT NOT NULL, \
     at INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS entries_by_index ON entries (drawn, idx)",
    "CREATE TABLE IF NOT EXISTS draw (id INTEGER PRIMARY KEY CHECK (id = 1), \
     seed TEXT NOT NULL, chain TEXT NOT NULL, record TEXT, late INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS pacing (id INTEGER PRIMARY KEY CHECK (id = 1), state TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS forwards (id INTEGER PRIMARY KEY CHECK (id = 1), \
     state TEXT NOT NULL)",
    // Until when the event counts as sold out (an isolate saw it; a returned unit
    // can undo it, so it lapses unless seen again).
    "CREATE TABLE IF NOT EXISTS sold_out (id INTEGER PRIMARY KEY CHECK (id = 1), \
     until INTEGER NOT NULL)",
    // Admissions handed out and not yet expired, as batches.
    "CREATE TABLE IF NOT EXISTS leases (expires_at INTEGER NOT NULL, count INTEGER NOT NULL)",
];

/// One event's room.
#[durable_object]
pub struct Room {
    state: State,
}

#[derive(Deserialize)]
struct StoredEntry {
    drawn: i64,
    idx: u64,
    at: Millis,
}

#[derive(Deserialize)]
struct StoredDraw {
    seed: String,
    chain: String,
    record: Option<String>,
    late: u64,
}

#[derive(Deserialize)]
struct StoredEntrant {
    entrant: String,
    fingerprint: String,
    idx: u64,
    at: Millis,
}

#[derive(Deserialize)]
struct Stored {
    state: String,
}

#[derive(Deserialize)]
struct Sum {
    n: u64,
}

#[derive(Deserialize)]
struct Until {
    until: Millis,
}

fn int(v: u64) -> worker::SqlStorageValue {
    worker::SqlStorageValue::Integer(i64::try_from(v).unwrap_or(i64::MAX))
}

/// The draw as stored: the seed (hex), the chain of entries, the record once sealed.
struct DrawState {
    seed_hex: String,
    chain: ShardChain,
    record: Option<SealRecord>,
    late: u64,
}

impl DrawState {
    fn load(sql: &SqlStorage, event: &EventId) -> Result<Self> {
        let stored = sql
            .exec(
                "SELECT seed, chain, record, late FROM draw WHERE id = 1",
                None,
            )?
            .to_array::<StoredDraw>()?
            .pop();
        if let Some(d) = stored {
            return Ok(Self {
                seed_hex: d.seed,
                chain: serde_json::from_str(&d.chain)?,
                record: d.record.map(|r| serde_json::from_str(&r)).transpose()?,
                late: d.late,
            });
        }
        // The first call ever: commit to a seed before anyone can register.
        let seed: [u8; 32] = crate::random::bytes()?;
        let d = Self {
            seed_hex: seed.iter().map(|b| format!("{b:02x}")).collect(),
            chain: ShardChain::new(event, SHARD),
            record: None,
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
            "INSERT INTO draw (id, seed, chain, record, late) VALUES (1, ?, ?, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET chain = excluded.chain, \
             record = excluded.record, late = excluded.late",
            vec![
                self.seed_hex.as_str().into(),
                serde_json::to_string(&self.chain)?.into(),
                record,
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
            record: self.record.clone(),
        }
    }
}

impl Room {
    fn call(&self, ask: &Ask, now: Millis) -> Result<Told> {
        let sql = self.state.storage().sql();
        let draw_at = ask.settings.draw_at(ask.starts_at);
        let mut d = DrawState::load(&sql, &ask.event)?;
        if draw::seals_now(d.record.is_some(), draw_at, now) {
            let record = SealRecord::seal(&ask.event, &[d.chain.clone()], &d.seed(), None)
                .map_err(|e| worker::Error::from(e.to_string()))?;
            d.record = Some(record);
            d.save(&sql)?;
        }
        let drawn = d
            .record
            .as_ref()
            .map(Drawn::of)
            .transpose()
            .map_err(|e| worker::Error::from(e.to_string()))?;

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
        let mut told = Told {
            position: None,
            arrival: None,
            issued_at: None,
            queued: 0,
            schedule: Schedule::of(&ask.settings, &pacing, draw_at, now),
            draw: d.public(draw_at),
            sold_out: now < sold_out_until,
        };
        if let (Some(user), Some(fingerprint)) = (&ask.user, &ask.fingerprint) {
            let entry = self.join(&sql, &mut d, &mut pacing, ask, user, fingerprint, now)?;
            match (entry.drawn == 1, &drawn) {
                // Registered, not drawn yet: the receipt holds the arrival.
                (true, None) => {
                    told.arrival = Some(entry.idx);
                    told.issued_at = Some(entry.at);
                }
                (true, Some(drawn)) => {
                    told.position = drawn.position(entry.idx);
                    told.issued_at = Some(now);
                }
                (false, Some(drawn)) => {
                    told.position = Some(drawn.late_position(entry.idx));
                    told.issued_at = Some(now);
                }
                (false, None) => {
                    return Err(worker::Error::from("a late arrival before the seal"));
                }
            }
        }
        let lease = pacing::advance(&mut pacing, draw_at, now, &ask.settings, ask.unsold);
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
        told.queued = pacing.queued();
        told.schedule = Schedule::of(&ask.settings, &pacing, draw_at, now);
        Ok(told)
    }

    /// The user's entry, registering it on their first call: into the draw before
    /// `draw_at`, behind the draw after.
    #[allow(clippy::too_many_arguments)]
    fn join(
        &self,
        sql: &SqlStorage,
        d: &mut DrawState,
        pacing: &mut Pacing,
        ask: &Ask,
        user: &UserId,
        fingerprint: &str,
        now: Millis,
    ) -> Result<StoredEntry> {
        let found = sql
            .exec(
                "SELECT drawn, idx, at FROM entries WHERE user = ?",
                vec![user.as_str().into()],
            )?
            .to_array::<StoredEntry>()?
            .pop();
        if let Some(e) = found {
            return Ok(e);
        }
        let entrant = draw::entrant(&ask.event, user);
        let (drawn, idx) = if d.record.is_none() {
            let e = d
                .chain
                .register(entrant.clone(), fingerprint.to_owned(), now);
            (1, e.arrival_index_in_shard)
        } else {
            d.late += 1;
            (0, d.late - 1)
        };
        d.save(sql)?;
        sql.exec(
            "INSERT INTO entries (user, drawn, idx, entrant, fingerprint, at) \
             VALUES (?, ?, ?, ?, ?, ?)",
            vec![
                user.as_str().into(),
                drawn.into(),
                int(idx),
                entrant.as_str().into(),
                fingerprint.into(),
                now.into(),
            ],
        )?;
        pacing.joined(1);
        Ok(StoredEntry {
            drawn,
            idx,
            at: now,
        })
    }

    /// Up to `want` forwards from the room's bucket.
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

    /// A page of the sealed draw's entries, in chain order (empty before the seal).
    fn entries(&self, event: &EventId, from: u64, limit: u64) -> Result<EntriesPage> {
        let sql = self.state.storage().sql();
        let sealed = DrawState::load(&sql, event)?.record.is_some();
        let limit = limit.clamp(1, MAX_PAGE);
        let entries = if sealed {
            sql.exec(
                "SELECT entrant, fingerprint, idx, at FROM entries WHERE drawn = 1 \
                 AND idx >= ? ORDER BY idx LIMIT ?",
                vec![int(from), int(limit)],
            )?
            .to_array::<StoredEntrant>()?
            .into_iter()
            .map(|e| {
                Ok(Entry {
                    user: UserId::parse(&e.entrant)
                        .map_err(|_| worker::Error::from("a stored entrant is not an id"))?,
                    fingerprint_hash: e.fingerprint,
                    shard: SHARD,
                    arrival_index_in_shard: e.idx,
                    registered_at: e.at,
                })
            })
            .collect::<Result<Vec<_>>>()?
        } else {
            Vec::new()
        };
        let next = (entries.len() as u64 == limit).then(|| from + limit);
        Ok(EntriesPage {
            sealed,
            shard: SHARD,
            entries,
            next,
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
        match req.json::<Call>().await? {
            Call::Ask(ask) => Response::from_json(&self.call(&ask, crate::now())?),
            Call::Forwards { settings, want } => {
                Response::from_json(&self.forwards(&settings, want, crate::now())?)
            }
            Call::Entries { event, from, limit } => {
                Response::from_json(&self.entries(&event, from, limit)?)
            }
        }
    }
}
