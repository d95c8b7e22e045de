//! `flashgate event`: events through the admin API (put, stats, list, show, watch, end,
//! pause, resume), and the fairness report of a sale from the orders table (`report`).

use crate::config::{dev_env, Settings};

/// What to do with the event.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Create or update an event that has not started, and pre-warm its stock.
    Put {
        /// Event id (slug).
        id: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Units on sale.
        #[arg(long)]
        stock: u64,
        /// Start, RFC 3339.
        #[arg(long)]
        starts_at: String,
        /// End, RFC 3339.
        #[arg(long)]
        ends_at: String,
        /// The event's room settings, a JSON object, e.g. '{"admit_per_second": 500}'
        /// (fields of docs/room.md; missing ones default). Without it, the edge's vars.
        #[arg(long, value_parser = room_json)]
        room: Option<serde_json::Value>,
        /// Split the stock into this many stock buckets, each on its own Redis slot
        /// (docs/scaling.md); 1 when absent.
        #[arg(long)]
        stock_buckets: Option<u16>,
    },
    /// Print an event's counters.
    Stats {
        /// Event id (slug).
        id: String,
    },
    /// Print every event with its state and counters.
    List,
    /// Print an event's info and counters.
    Show {
        /// Event id (slug).
        id: String,
    },
    /// End a live sale now (stock and orders stay as they are).
    End {
        /// Event id (slug).
        id: String,
    },
    /// Pause a sale: purchases answer 503 paused until it resumes.
    Pause {
        /// Event id (slug).
        id: String,
    },
    /// Resume a paused sale.
    Resume {
        /// Event id (slug).
        id: String,
    },
    /// The fairness of a sale, from its orders (MariaDB): wins by arrival decile of their
    /// room positions, with a chi-square test against winning regardless of arrival.
    Report {
        /// Event id (slug).
        id: String,
        /// How many shoppers joined the room (the span of the deciles; default: the
        /// highest position among the orders).
        #[arg(long)]
        entrants: Option<u64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Watch a sale: state, stock and the rates of reservations and orders, a line a
    /// second until Ctrl-C (or `--count` lines).
    Watch {
        /// Event id (slug).
        id: String,
        /// Stop after this many lines.
        #[arg(long)]
        count: Option<u32>,
        /// Milliseconds between lines.
        #[arg(long, default_value_t = 1000)]
        every_ms: u64,
    },
}

/// Sends `action` to the admin API at `origin` (default: `ORIGIN_URL`, from the
/// environment or the dev stack's file, else the listen address) and prints the answer;
/// `report` reads the orders table instead.
pub async fn run(settings: Settings, action: Action, origin: Option<String>) -> anyhow::Result<()> {
    // Read when the admin API is asked (the report reads the database instead).
    let token = || -> anyhow::Result<String> {
        let secret = settings.secret(&settings.secrets.admin_token, "admin_token")?;
        Ok(String::from_utf8_lossy(secret).into_owned())
    };
    let base = origin
        .or_else(|| std::env::var("ORIGIN_URL").ok())
        .or_else(|| dev_env().remove("ORIGIN_URL"))
        .unwrap_or_else(|| format!("http://{}", settings.listen));
    let http = reqwest::Client::new();
    let req = match action {
        Action::Put {
            id,
            name,
            stock,
            starts_at,
            ends_at,
            room,
            stock_buckets,
        } => {
            let mut spec = serde_json::json!({"name": name, "stock": stock, "starts_at": starts_at, "ends_at": ends_at});
            if let Some(room) = room {
                spec["room"] = room;
            }
            if let Some(n) = stock_buckets {
                spec["stock_buckets"] = n.into();
            }
            http.put(format!("{base}/admin/events/{id}")).json(&spec)
        }
        Action::Stats { id } => http.get(format!("{base}/admin/events/{id}/stats")),
        Action::List => http.get(format!("{base}/admin/events")),
        Action::Show { id } => {
            let event = listed(&http, &base, &token()?, &id).await?;
            println!("{}", serde_json::to_string_pretty(&event)?);
            return Ok(());
        }
        Action::Watch {
            id,
            count,
            every_ms,
        } => return watch(&http, &base, &token()?, &id, count, every_ms).await,
        Action::End { id } => http.post(format!("{base}/admin/events/{id}/end")),
        Action::Pause { id } => http.post(format!("{base}/admin/events/{id}/pause")),
        Action::Resume { id } => http.post(format!("{base}/admin/events/{id}/resume")),
        Action::Report { id, entrants, json } => {
            return super::report::run(&settings, &id, entrants, json).await
        }
    };
    let resp = req
        .bearer_auth(token()?)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the origin at {base}: {e}"))?;
    let status = resp.status();
    println!("{}", resp.text().await?);
    if !status.is_success() {
        anyhow::bail!("the origin answered {status}");
    }
    Ok(())
}

/// `--room`: JSON text, checked here so a typo is named before anything is sent (the
/// origin checks the settings themselves).
fn room_json(text: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))
}

/// `id`'s entry of `GET /admin/events`: its info and counters.
async fn listed(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    id: &str,
) -> anyhow::Result<serde_json::Value> {
    let resp = http
        .get(format!("{base}/admin/events"))
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the origin at {base}: {e}"))?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await?;
    if !status.is_success() {
        anyhow::bail!("the origin answered {status}: {body}");
    }
    body["events"]
        .as_array()
        .and_then(|all| all.iter().find(|e| e["event_id"] == id))
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no event {id}"))
}

/// A line per `every_ms` about `id`: state, stock, and reservations and orders per second
/// since the line before.
async fn watch(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    id: &str,
    count: Option<u32>,
    every_ms: u64,
) -> anyhow::Result<()> {
    let every = std::time::Duration::from_millis(every_ms.max(100));
    let mut before: Option<(std::time::Instant, u64, u64)> = None;
    let mut lines = 0;
    loop {
        let e = listed(http, base, token, id).await?;
        let n = |f: &str| e[f].as_u64().unwrap_or(0);
        let now = std::time::Instant::now();
        let rate = |was: u64, is: u64, since: std::time::Instant| {
            is.saturating_sub(was) as f64 / now.duration_since(since).as_secs_f64().max(0.001)
        };
        let (reserved_rate, confirmed_rate) = match before {
            Some((at, r, c)) => (rate(r, n("reserved"), at), rate(c, n("confirmed"), at)),
            None => (0.0, 0.0),
        };
        println!(
            "{} {:<8}{} stock {}/{} reserved {} ({:.0}/s) confirmed {} ({:.0}/s) pending {} failed {}",
            e["server_time"].as_str().unwrap_or("-"),
            e["state"].as_str().unwrap_or("-"),
            if e["paused"] == true { " PAUSED" } else { "" },
            n("stock_left"),
            n("stock_total"),
            n("reserved"),
            reserved_rate,
            n("confirmed"),
            confirmed_rate,
            n("pending"),
            n("failed"),
        );
        before = Some((now, n("reserved"), n("confirmed")));
        lines += 1;
        if count.is_some_and(|c| lines >= c) {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}
