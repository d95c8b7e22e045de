//! `flashgate event report E`: the fairness of a sale, from its orders in MariaDB: wins
//! by arrival decile of the room positions they were admitted at, with the χ² test of
//! `flashgate_core::report`, and wins by client network (/24 or /64).
//!
//! How long each shopper's requests took to reach the edge is not known to the origin,
//! so the report has no latency-against-win figure.

use crate::config::Settings;
use crate::db;
use flashgate_core::ids::EventId;
use flashgate_core::report::{by_decile, by_network, DecileTable, NetworkTable};
use secrecy::ExposeSecret;
use serde::Serialize;
use sqlx::mysql::MySqlPool;
use std::fmt::Write;

/// What the report says about one event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fairness {
    /// The event.
    pub event_id: String,
    /// Its orders in the orders table.
    pub orders: u64,
    /// Those that carry a room position.
    pub with_position: u64,
    /// Wins by arrival decile; `None` without positions.
    pub by_decile: Option<DecileTable>,
    /// Wins by client network; `None` when no order carries one.
    pub by_network: Option<NetworkTable>,
    /// Why part of the report is missing, in a sentence each.
    pub notes: Vec<String>,
}

const NO_LATENCY: &str =
    "latency against wins is not reported: the origin does not know how long shoppers' \
     requests took to reach the edge";

/// Reads `event`'s orders and measures them; `entrants` (the shoppers who joined the
/// room, if known) sets the span of the deciles, else the highest position does.
pub async fn fairness(
    pool: &MySqlPool,
    event: &EventId,
    entrants: Option<u64>,
) -> anyhow::Result<Fairness> {
    let rows: Vec<(Option<u64>, Option<String>)> =
        sqlx::query_as("SELECT room_position, client_net FROM orders WHERE event_id = ?")
            .bind(event.as_str())
            .fetch_all(pool)
            .await?;
    let positions: Vec<u64> = rows.iter().filter_map(|(p, _)| *p).collect();
    let by_decile = by_decile(&positions, entrants.unwrap_or(0));
    let nets: Vec<&str> = rows.iter().filter_map(|(_, n)| n.as_deref()).collect();
    let by_network = by_network(&nets);
    let mut notes = Vec::new();
    if by_decile.is_none() {
        notes.push(format!(
            "no order of {event} carries a room position (the room was off, or the orders \
             predate it): there is nothing to measure"
        ));
    }
    if by_network.is_none() {
        notes.push(format!(
            "no order of {event} carries a client network (the edge knew no address, or \
             the orders predate it)"
        ));
    }
    notes.push(NO_LATENCY.to_owned());
    Ok(Fairness {
        event_id: event.to_string(),
        orders: rows.len() as u64,
        with_position: positions.len() as u64,
        by_decile,
        by_network,
        notes,
    })
}

impl Fairness {
    /// The printed report.
    pub fn render(&self) -> String {
        let mut out = format!(
            "report {}: {} order(s), {} with a room position\n",
            self.event_id, self.orders, self.with_position
        );
        if let Some(t) = &self.by_decile {
            let _ = writeln!(out, "wins by arrival decile of positions 1-{}:", t.span);
            let _ = writeln!(
                out,
                "  {:>6}  {:>23}  {:>8}  {:>10}",
                "decile", "positions", "wins", "expected"
            );
            for d in &t.deciles {
                let _ = writeln!(
                    out,
                    "  {:>6}  {:>23}  {:>8}  {:>10.1}",
                    d.decile,
                    format!("{}-{}", d.from, d.to),
                    d.wins,
                    d.expected
                );
            }
            let p = if t.p_value >= 0.001 {
                format!("{:.3}", t.p_value)
            } else {
                format!("{:.1e}", t.p_value)
            };
            let _ = writeln!(
                out,
                "chi-square {:.2} with {} degree(s) of freedom: p = {p}",
                t.chi_square, t.degrees_of_freedom
            );
            out.push_str(
                "(a small p says winning followed arrival; positions in arrival order, \
                 the room without its draw, make the first deciles win by design)\n",
            );
        }
        if let Some(n) = &self.by_network {
            let _ = writeln!(
                out,
                "wins by client network: {} order(s) from {} network(s); the most:",
                n.orders, n.networks
            );
            for w in &n.top {
                let _ = writeln!(out, "  {:>8}  {}", w.wins, w.network);
            }
        }
        for note in &self.notes {
            let _ = writeln!(out, "{note}");
        }
        out
    }
}

/// `flashgate event report`: prints the report of `event` (JSON with `json`).
pub async fn run(
    settings: &Settings,
    event: &str,
    entrants: Option<u64>,
    json: bool,
) -> anyhow::Result<()> {
    let event = EventId::parse(event)
        .map_err(|_| anyhow::anyhow!("{event:?} is not an event id ([a-z0-9-]{{1,64}})"))?;
    let pool = db::connect(settings.db.url.expose_secret()).await?;
    let report = fairness(&pool, &event, entrants).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render());
    }
    Ok(())
}
