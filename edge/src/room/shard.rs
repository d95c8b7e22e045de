//! A shard of a room: it takes the draw's registrations of its users and chains them
//! (`core::room::chain`), closes when the event's object seals the draw, and pages its
//! entries for anyone verifying the draw. After the draw it places its later arrivals
//! behind it, from blocks of positions the event's object hands it (`core::room::late`),
//! and keeps the receipts its users spent (`core::room::spend`).

use super::{Closed, Enter, Entered, EntriesPage, Mark, Spent, MAX_PAGE};
use flashgate_core::ids::{EventId, UserId};
use flashgate_core::room::chain::{Entry, ShardChain};
use flashgate_core::room::late::{self, Arrivals};
use flashgate_core::room::{draw, spend};
use flashgate_core::Millis;
use serde::Deserialize;
use worker::{Result, SqlStorage};

#[derive(Deserialize)]
struct StoredChain {
    state: String,
    closed: i64,
}

#[derive(Deserialize)]
struct StoredState {
    state: String,
}

#[derive(Deserialize)]
struct StoredEntry {
    idx: u64,
    at: Millis,
}

#[derive(Deserialize)]
struct StoredEntrant {
    entrant: String,
    fingerprint: String,
    idx: u64,
    at: Millis,
}

fn int(v: u64) -> worker::SqlStorageValue {
    worker::SqlStorageValue::Integer(i64::try_from(v).unwrap_or(i64::MAX))
}

/// A shard's chain and whether it closed.
fn load_chain(sql: &SqlStorage, event: &EventId, shard: u32) -> Result<(ShardChain, bool)> {
    Ok(
        match sql
            .exec("SELECT state, closed FROM chain WHERE id = 1", None)?
            .to_array::<StoredChain>()?
            .pop()
        {
            Some(c) => (serde_json::from_str(&c.state)?, c.closed != 0),
            None => (ShardChain::new(event, shard), false),
        },
    )
}

fn save_chain(sql: &SqlStorage, chain: &ShardChain, closed: bool) -> Result<()> {
    sql.exec(
        "INSERT INTO chain (id, state, closed) VALUES (1, ?, ?) \
         ON CONFLICT (id) DO UPDATE SET state = excluded.state, closed = excluded.closed",
        vec![
            serde_json::to_string(chain)?.into(),
            i64::from(closed).into(),
        ],
    )?;
    Ok(())
}

/// What a shard's [`enter`] came to.
pub(super) enum Entering {
    /// The user's entry or place.
    Done(Entered),
    /// A later arrival, and the shard has no position left: take this many from the
    /// event's object ([`stock`]), then enter again.
    Block(u64),
}

#[derive(Deserialize)]
struct Position {
    position: u64,
}

fn late_position(sql: &SqlStorage, user: &UserId) -> Result<Option<u64>> {
    Ok(sql
        .exec(
            "SELECT position FROM late WHERE user = ?",
            vec![user.as_str().into()],
        )?
        .to_array::<Position>()?
        .pop()
        .map(|p| p.position))
}

fn arrivals(sql: &SqlStorage) -> Result<Arrivals> {
    Ok(
        match sql
            .exec("SELECT state FROM late_arrivals WHERE id = 1", None)?
            .to_array::<StoredState>()?
            .pop()
        {
            Some(a) => serde_json::from_str(&a.state)?,
            None => Arrivals::default(),
        },
    )
}

/// A shard: the user's entry in the draw, registering it while the shard is open and
/// before `draw_at`; after that, a later arrival's place behind the draw, from the
/// positions the shard holds (`core::room::late`).
pub(super) fn enter(sql: &SqlStorage, e: &Enter, now: Millis) -> Result<Entering> {
    let found = sql
        .exec(
            "SELECT idx, at FROM entries WHERE user = ?",
            vec![e.user.as_str().into()],
        )?
        .to_array::<StoredEntry>()?
        .pop();
    if let Some(f) = found {
        return Ok(Entering::Done(Entered {
            index: Some(f.idx),
            position: None,
            at: f.at,
        }));
    }
    let (mut chain, closed) = load_chain(sql, &e.event, e.shard)?;
    if closed || now >= e.draw_at {
        return late(sql, &e.user, now);
    }
    let entrant = draw::entrant(&e.event, &e.user);
    let entry = chain.register(entrant.clone(), e.fingerprint.clone(), now);
    save_chain(sql, &chain, false)?;
    sql.exec(
        "INSERT INTO entries (user, idx, entrant, fingerprint, at) VALUES (?, ?, ?, ?, ?)",
        vec![
            e.user.as_str().into(),
            int(entry.arrival_index_in_shard),
            entrant.as_str().into(),
            e.fingerprint.as_str().into(),
            now.into(),
        ],
    )?;
    Ok(Entering::Done(Entered {
        index: Some(entry.arrival_index_in_shard),
        position: None,
        at: now,
    }))
}

/// A later arrival's place: theirs if they have one, else the lowest the shard holds.
fn late(sql: &SqlStorage, user: &UserId, now: Millis) -> Result<Entering> {
    let placed = |position| {
        Entering::Done(Entered {
            index: None,
            position: Some(position),
            at: now,
        })
    };
    if let Some(p) = late_position(sql, user)? {
        return Ok(placed(p));
    }
    let mut seen = arrivals(sql)?;
    seen.arrive(now);
    let free = sql
        .exec(
            "SELECT position FROM late_free ORDER BY position LIMIT 1",
            None,
        )?
        .to_array::<Position>()?
        .pop();
    let Some(Position { position }) = free else {
        return Ok(Entering::Block(late::block(&seen)));
    };
    sql.exec(
        "DELETE FROM late_free WHERE position = ?",
        vec![int(position)],
    )?;
    sql.exec(
        "INSERT INTO late (user, position) VALUES (?, ?)",
        vec![user.as_str().into(), int(position)],
    )?;
    sql.exec(
        "INSERT INTO late_arrivals (id, state) VALUES (1, ?) \
         ON CONFLICT (id) DO UPDATE SET state = excluded.state",
        vec![serde_json::to_string(&seen)?.into()],
    )?;
    Ok(placed(position))
}

/// A shard: keeps the positions `first..first + count`, handed to it by the event's
/// object, for its later arrivals.
pub(super) fn stock(sql: &SqlStorage, first: u64, count: u64) -> Result<()> {
    for position in first..first.saturating_add(count) {
        sql.exec(
            "INSERT OR IGNORE INTO late_free (position) VALUES (?)",
            vec![int(position)],
        )?;
    }
    Ok(())
}

#[derive(Deserialize)]
struct At {
    at: Millis,
}

fn spent_at(sql: &SqlStorage, m: &Mark) -> Result<Option<Millis>> {
    Ok(sql
        .exec(
            "SELECT at FROM spent WHERE user = ?",
            vec![m.user.as_str().into()],
        )?
        .to_array::<At>()?
        .pop()
        .map(|a| a.at))
}

/// A shard: spends the user's receipt, unless it was spent already.
pub(super) fn spend(sql: &SqlStorage, m: &Mark) -> Result<Spent> {
    let first = spend::takes(spent_at(sql, m)?);
    if first {
        sql.exec(
            "INSERT INTO spent (user, at) VALUES (?, ?)",
            vec![m.user.as_str().into(), m.at.into()],
        )?;
    }
    Ok(Spent { first })
}

/// A shard: gives back the receipt the spend `m` took (nothing if another spend holds it).
pub(super) fn give_back(sql: &SqlStorage, m: &Mark) -> Result<Spent> {
    if spend::gives_back(spent_at(sql, m)?, m.at) {
        sql.exec(
            "DELETE FROM spent WHERE user = ?",
            vec![m.user.as_str().into()],
        )?;
    }
    Ok(Spent { first: false })
}

/// A shard: closes it (idempotent) and answers its chain.
pub(super) fn close(sql: &SqlStorage, event: &EventId, shard: u32) -> Result<Closed> {
    let (chain, _) = load_chain(sql, event, shard)?;
    save_chain(sql, &chain, true)?;
    Ok(Closed { chain })
}

/// A shard: a page of its entries in chain order, once closed (none before).
pub(super) fn entries(
    sql: &SqlStorage,
    event: &EventId,
    shard: u32,
    from: u64,
    limit: u64,
) -> Result<EntriesPage> {
    let (_, closed) = load_chain(sql, event, shard)?;
    let limit = limit.clamp(1, MAX_PAGE);
    let entries = if closed {
        sql.exec(
            "SELECT entrant, fingerprint, idx, at FROM entries WHERE idx >= ? \
             ORDER BY idx LIMIT ?",
            vec![int(from), int(limit)],
        )?
        .to_array::<StoredEntrant>()?
        .into_iter()
        .map(|e| {
            Ok(Entry {
                user: UserId::parse(&e.entrant)
                    .map_err(|_| worker::Error::from("a stored entrant is not an id"))?,
                fingerprint_hash: e.fingerprint,
                shard,
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
        sealed: closed,
        shard,
        entries,
        next,
    })
}
