//! `flashgate room verify`: recomputes a sealed draw from what the edge publishes (the
//! room's record and its entries), so anyone can check that the seed matches the
//! commitment made before registration opened, that the entries chain to the published
//! root, and where every entrant, or one shopper, stands.

use anyhow::{bail, Context};
use flashgate_core::ids::{EventId, UserId};
use flashgate_core::room::chain::Entry;
use flashgate_core::room::draw::{self, holds_position};
use flashgate_core::room::receipt;
use flashgate_core::room::seal::{verify_record, SealRecord};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// What to do with a room.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Check a sealed draw: commitment, root and every position; exit 1 if it does
    /// not check out.
    Verify(Verify),
}

/// Where the draw comes from, and what to print.
#[derive(Debug, clap::Args)]
pub struct Verify {
    /// Event id (slug).
    #[arg(long)]
    pub event: String,
    /// The edge's base URL to read the record and entries from (unused with `--from`).
    #[arg(long, env = "EDGE_URL")]
    pub edge: Option<String>,
    /// Read `record.json` and `entries.json` from this directory instead.
    #[arg(long)]
    pub from: Option<PathBuf>,
    /// Save what was read as `record.json` and `entries.json` (one list per shard) in
    /// this directory.
    #[arg(long)]
    pub save: Option<PathBuf>,
    /// Also show where this user stands.
    #[arg(long)]
    pub user: Option<String>,
    /// Also check this receipt (its user's entry and, once drawn, its position).
    #[arg(long)]
    pub receipt: Option<String>,
    /// Print every entrant's position as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The draw as `GET /api/events/{id}/room` publishes it.
#[derive(Debug, Deserialize)]
struct PublishedDraw {
    draw_at: i64,
    commitment: String,
    sealed: bool,
    entrants: Option<u64>,
    shard_roots: Option<Vec<String>>,
    seed: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RoomAnswer {
    draw: PublishedDraw,
}

#[derive(Debug, Deserialize)]
struct EntriesAnswer {
    entries: Vec<Entry>,
    next: Option<u64>,
}

/// Runs `flashgate room <action>`.
pub async fn run(action: Action) -> anyhow::Result<()> {
    match action {
        Action::Verify(v) => verify(v).await,
    }
}

async fn fetch(
    edge: &str,
    event: &EventId,
) -> anyhow::Result<(serde_json::Value, Vec<Vec<Entry>>)> {
    let http = reqwest::Client::new();
    let base = format!("{}/api/events/{event}/room", edge.trim_end_matches('/'));
    let get = |url: String| {
        let http = http.clone();
        async move {
            let resp = http.get(&url).send().await.with_context(|| url.clone())?;
            let status = resp.status();
            let body = resp.text().await?;
            if !status.is_success() {
                bail!("{url} answered {status}: {body}");
            }
            Ok::<_, anyhow::Error>(body)
        }
    };
    let room: serde_json::Value = serde_json::from_str(&get(base.clone()).await?)?;
    let shards = room["draw"]["shard_roots"]
        .as_array()
        .map_or(0, |roots| roots.len());
    let mut entries = Vec::new();
    for shard in 0..shards {
        let mut from = Some(0);
        let mut list = Vec::new();
        while let Some(f) = from {
            let url = format!("{base}/entries?shard={shard}&from={f}");
            let page: EntriesAnswer = serde_json::from_str(&get(url).await?)?;
            list.extend(page.entries);
            from = page.next;
        }
        entries.push(list);
    }
    Ok((room, entries))
}

fn read(dir: &Path) -> anyhow::Result<(serde_json::Value, Vec<Vec<Entry>>)> {
    let load = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).with_context(|| path.display().to_string())
    };
    Ok((
        serde_json::from_str(&load("record.json")?).context("record.json")?,
        serde_json::from_str(&load("entries.json")?).context("entries.json")?,
    ))
}

async fn verify(v: Verify) -> anyhow::Result<()> {
    let event = EventId::parse(&v.event).map_err(|e| anyhow::anyhow!("--event: {e}"))?;
    let (room, entries) = match (&v.from, &v.edge) {
        (Some(dir), _) => read(dir)?,
        (None, Some(edge)) => fetch(edge, &event).await?,
        (None, None) => bail!("say where the draw is: --edge URL (or EDGE_URL) or --from DIR"),
    };
    if let Some(dir) = &v.save {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("record.json"), serde_json::to_vec_pretty(&room)?)?;
        std::fs::write(
            dir.join("entries.json"),
            serde_json::to_vec_pretty(&entries)?,
        )?;
    }
    let answer: RoomAnswer = serde_json::from_value(room).context("the room's answer")?;
    let d = answer.draw;
    let (true, Some(entrants), Some(shard_roots), Some(seed_hex)) =
        (d.sealed, d.entrants, d.shard_roots, d.seed)
    else {
        bail!(
            "the draw of {event} is not sealed yet (it seals from {})",
            d.draw_at
        );
    };
    let record = SealRecord {
        event: event.clone(),
        entrants,
        shard_roots,
        seed_hex,
        commitment: d.commitment,
        beacon_round: None,
    };
    let positions = verify_record(&record, &entries)
        .map_err(|e| anyhow::anyhow!("the draw of {event} does not check out: {e}"))?;

    // Every entry in the draw's global order (shard by shard), as `positions` is.
    let entries: Vec<Entry> = entries.into_iter().flatten().collect();
    let mut user = v.user.clone();
    if let Some(token) = &v.receipt {
        let r = receipt::read_unverified(token).context("the receipt is not readable")?;
        if r.event != event {
            bail!("the receipt is for event {}, not {event}", r.event);
        }
        let index = place(&event, &r.user, &entries)
            .with_context(|| format!("the receipt's user {} is not in the draw", r.user))?;
        if holds_position(r.issued_at, d.draw_at) && positions[index] != r.position_or_arrival {
            bail!(
                "the receipt says position {} but the draw gives {}",
                r.position_or_arrival,
                positions[index]
            );
        }
        user.get_or_insert(r.user.as_str().to_owned());
    }
    if v.json {
        let all: Vec<_> = entries
            .iter()
            .zip(&positions)
            .map(|(e, p)| serde_json::json!({"entrant": e.user.as_str(), "position": p}))
            .collect();
        println!(
            "{}",
            serde_json::json!({"event": event.as_str(), "entrants": entrants,
                "commitment": record.commitment, "shard_roots": record.shard_roots,
                "positions": all})
        );
    } else {
        println!(
            "the draw of {event} checks out: {entrants} entrants, the seed matches commitment \
             {}, the entries chain to {}",
            record.commitment,
            record.shard_roots.join(", ")
        );
    }
    if let Some(u) = user {
        let u = UserId::parse(&u).map_err(|e| anyhow::anyhow!("--user: {e}"))?;
        match place(&event, &u, &entries) {
            Some(i) => eprintln!(
                "user {u}: entrant {}, arrival {i}, position {} of {entrants}",
                draw::entrant(&event, &u),
                positions[i]
            ),
            None => eprintln!("user {u} is not in the draw (a later arrival queues behind it)"),
        }
    }
    Ok(())
}

/// Where `user`'s entry is among `entries`.
fn place(event: &EventId, user: &UserId, entries: &[Entry]) -> Option<usize> {
    let name = draw::entrant(event, user);
    entries.iter().position(|e| e.user == name)
}
