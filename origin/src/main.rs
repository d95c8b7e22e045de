//! The `flashgate` command: a thin front over the library.

use anyhow::Context;
use clap::{Parser, Subcommand};
use flashgate_origin::config::Settings;
use flashgate_origin::{consumer, kafka, reconcile, startup, store, telemetry, users};
use secrecy::ExposeSecret;
use std::process::ExitCode;
use tokio::sync::watch;

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
    /// Create or update an event, or read its counters, through the admin API.
    Event {
        #[command(subcommand)]
        action: EventAction,
        /// Base URL of the origin (default: `ORIGIN_URL` from the environment or `.dev/env`, else http://<listen>).
        #[arg(long, global = true, env = "FLASHGATE_ORIGIN_URL")]
        origin: Option<String>,
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

#[derive(Subcommand)]
enum EventAction {
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
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or(());
    tracing::info!("shutdown requested");
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // Only the commands a person runs against the dev stack read its settings file.
    let dev_stack_command = matches!(cli.command, Command::Users { .. } | Command::Event { .. });
    let settings = Settings::load(dev_stack_command)?;
    match cli.command {
        Command::Serve => {
            let app = startup::Application::build(settings).await?;
            app.run(shutdown_signal()).await
        }
        Command::Consume => {
            let (tx, rx) = watch::channel(false);
            // Health and metrics answer from the start: waiting for the database below may
            // take a minute, and a probe must not take that for a dead process.
            if let Some(addr) = settings.consumer.listen {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} (consumer.listen)"))?;
                tracing::info!(%addr, "consumer health and metrics");
                // The recorder now: what the consumer counts is kept from its first batch.
                telemetry::metrics();
                telemetry::start_at_zero(telemetry::CONSUMER_COUNTERS);
                let stop = rx.clone();
                tokio::spawn(async move {
                    if let Err(e) = telemetry::serve_health(listener, stop).await {
                        tracing::error!(error = %e, "consumer health and metrics server failed");
                    }
                });
            }
            let store =
                store::Store::connect(settings.redis_url.expose_secret(), &settings.key_prefix)
                    .await?;
            let pool = consumer::connect_db_waiting(
                settings.mysql_url.expose_secret(),
                std::time::Duration::from_secs(60),
            )
            .await?;
            kafka::ensure_topic(
                &settings.kafka_brokers,
                &settings.orders_topic,
                settings.topic_partitions,
            )
            .await?;
            let c = consumer::OrderConsumer::new(
                &settings.kafka_brokers,
                &settings.orders_topic,
                pool,
                store,
                settings.consumer.clone(),
                settings.user_window_ms,
            )?;
            tokio::spawn(async move {
                shutdown_signal().await;
                let _ = tx.send(true);
            });
            tracing::info!(topic = %settings.orders_topic, "consumer started");
            c.run(rx).await
        }
        Command::Migrate => {
            consumer::connect_db(settings.mysql_url.expose_secret()).await?;
            kafka::ensure_topic(
                &settings.kafka_brokers,
                &settings.orders_topic,
                settings.topic_partitions,
            )
            .await?;
            println!("migrations applied; topic {} ready", settings.orders_topic);
            Ok(())
        }
        Command::Event { action, origin } => {
            let token =
                String::from_utf8_lossy(settings.secret(&settings.admin_token, "admin_token")?)
                    .into_owned();
            let base = origin
                .or_else(|| std::env::var("ORIGIN_URL").ok())
                .or_else(|| flashgate_origin::config::dev_env().remove("ORIGIN_URL"))
                .unwrap_or_else(|| format!("http://{}", settings.listen));
            let http = reqwest::Client::new();
            let req = match action {
                EventAction::Put {
                    id,
                    name,
                    stock,
                    starts_at,
                    ends_at,
                } => http
                    .put(format!("{base}/admin/events/{id}"))
                    .json(&serde_json::json!({"name": name, "stock": stock, "starts_at": starts_at, "ends_at": ends_at})),
                EventAction::Stats { id } => http.get(format!("{base}/admin/events/{id}/stats")),
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
        Command::Reconcile {
            event,
            grace_secs,
            repair,
        } => {
            let event = flashgate_core::ids::EventId::parse(&event)?;
            let store =
                store::Store::connect(settings.redis_url.expose_secret(), &settings.key_prefix)
                    .await?;
            let pool = consumer::connect_db(settings.mysql_url.expose_secret()).await?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis() as i64;
            let report =
                reconcile::reconcile(&store, &pool, &event, now, grace_secs * 1000).await?;
            print!("{}", report.render(&event));
            if repair && !report.missing.is_empty() {
                let n = kafka::publish(
                    &settings.kafka_brokers,
                    &settings.orders_topic,
                    &report.missing,
                )
                .await?;
                println!(
                    "repair: re-published {n} reservation(s) to {}",
                    settings.orders_topic
                );
            }
            if report.clean() {
                Ok(())
            } else {
                anyhow::bail!("reconcile found {} problem(s)", report.problems.len())
            }
        }
        Command::Users {
            count,
            out,
            prefix,
            ttl_hours,
        } => {
            let secret = settings.secret(&settings.auth_secret, "auth_secret")?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs() as i64;
            let mut w: Box<dyn std::io::Write> = if out == "-" {
                Box::new(std::io::stdout().lock())
            } else {
                Box::new(std::io::BufWriter::new(std::fs::File::create(&out)?))
            };
            let written = users::write_csv(&mut w, &prefix, count, secret, now, ttl_hours * 3600)
                .and_then(|()| Ok(w.flush()?));
            match written {
                // The reader stopped early (`flashgate users | head`): it has what it
                // wanted, as with any Unix tool.
                Err(e)
                    if e.downcast_ref::<std::io::Error>()
                        .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
                {
                    Ok(())
                }
                other => other,
            }
        }
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
