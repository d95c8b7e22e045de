//! The `flashgate` command: its arguments, each subcommand handed to `cmd::<name>::run`.

use clap::{Parser, Subcommand};
use flashgate_origin::config::Settings;
use flashgate_origin::{cmd, telemetry};
use std::process::ExitCode;

// mimalloc instead of glibc malloc: allocation was about a tenth of the origin's CPU on
// the purchase path (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "flashgate",
    version,
    about = "flashgate origin: flash-sale API, relay and order consumer"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the origin API (with the outbox relay).
    Serve,
    /// Consume orders from Kafka into MariaDB.
    Consume,
    /// Apply database migrations and create the orders topic.
    Migrate,
    /// Create or update an event, or read its counters, through the admin API; report
    /// the fairness of a sale from the orders table.
    Event {
        #[command(subcommand)]
        action: cmd::event::Action,
        /// Base URL of the origin (default: `ORIGIN_URL` from the environment or `.dev/env`, else http://LISTEN, the listen address).
        #[arg(long, global = true, env = "FLASHGATE_ORIGIN_URL")]
        origin: Option<String>,
    },
    /// Check an event room's draw from what the edge publishes (no settings needed).
    Room {
        #[command(subcommand)]
        action: cmd::room::Action,
    },
    /// Compare Redis and the orders table for one event; exit 1 on any mismatch.
    Reconcile {
        /// Event id.
        #[arg(long)]
        event: String,
        /// Reservations younger than this may still be on their way.
        #[arg(long, default_value_t = 30)]
        grace_secs: i64,
        /// Re-publish reservations that have no order to the orders topic.
        #[arg(long)]
        repair: bool,
    },
    /// Write `userId,authToken` CSV rows for demos and load tests.
    Users {
        /// How many users.
        #[arg(long, default_value_t = 1000)]
        count: u32,
        /// Output file ("-" for stdout).
        #[arg(long, default_value = "-")]
        out: String,
        /// User id prefix.
        #[arg(long, default_value = "user")]
        prefix: String,
        /// Token lifetime, hours.
        #[arg(long, default_value_t = 24)]
        ttl_hours: i64,
    },
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // Only the commands a person runs against the dev stack read its settings file.
    // A shopper checks a draw without any of the operator's settings.
    let command = match cli.command {
        Command::Room { action } => return cmd::room::run(action).await,
        other => other,
    };
    let dev_stack_command = matches!(command, Command::Users { .. } | Command::Event { .. });
    let settings = Settings::load(dev_stack_command)?;
    match command {
        Command::Serve => cmd::serve::run(settings).await,
        Command::Consume => cmd::consume::run(settings).await,
        Command::Migrate => cmd::migrate::run(settings).await,
        Command::Event { action, origin } => cmd::event::run(settings, action, origin).await,
        Command::Reconcile {
            event,
            grace_secs,
            repair,
        } => cmd::reconcile::run(settings, &event, grace_secs, repair).await,
        Command::Users {
            count,
            out,
            prefix,
            ttl_hours,
        } => cmd::users::run(settings, count, &out, &prefix, ttl_hours),
        Command::Room { action } => cmd::room::run(action).await,
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    telemetry::init_logs();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flashgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}
