//! `flashgate event`: events through the admin API (put, stats, list, show, end, pause, resume).

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
}

/// Sends `action` to the admin API at `origin` (default: `ORIGIN_URL`, from the
/// environment or the dev stack's file, else the listen address) and prints the answer.
pub async fn run(settings: Settings, action: Action, origin: Option<String>) -> anyhow::Result<()> {
    let token =
        String::from_utf8_lossy(settings.secret(&settings.secrets.admin_token, "admin_token")?)
            .into_owned();
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
        } => http.put(format!("{base}/admin/events/{id}")).json(
            &serde_json::json!({"name": name, "stock": stock, "starts_at": starts_at, "ends_at": ends_at}),
        ),
        Action::Stats { id } => http.get(format!("{base}/admin/events/{id}/stats")),
        Action::List => http.get(format!("{base}/admin/events")),
        Action::Show { id } => {
            // Its line of the list: info and counters in one answer.
            let resp = http
                .get(format!("{base}/admin/events"))
                .bearer_auth(&token)
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("cannot reach the origin at {base}: {e}"))?;
            let status = resp.status();
            let body: serde_json::Value = resp.json().await?;
            if !status.is_success() {
                anyhow::bail!("the origin answered {status}: {body}");
            }
            let event = body["events"]
                .as_array()
                .and_then(|all| all.iter().find(|e| e["event_id"] == id.as_str()))
                .ok_or_else(|| anyhow::anyhow!("no event {id}"))?;
            println!("{}", serde_json::to_string_pretty(event)?);
            return Ok(());
        }
        Action::End { id } => http.post(format!("{base}/admin/events/{id}/end")),
        Action::Pause { id } => http.post(format!("{base}/admin/events/{id}/pause")),
        Action::Resume { id } => http.post(format!("{base}/admin/events/{id}/resume")),
    };
    let resp = req
        .bearer_auth(token)
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
