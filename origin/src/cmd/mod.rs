//! One module per subcommand of `flashgate`; each has a `run` that `main.rs` calls.

pub mod consume;
pub mod event;
pub mod migrate;
pub mod reconcile;
pub mod report;
pub mod room;
pub mod serve;
pub mod users;

use crate::shutdown::{self, Shutdown};

/// A shutdown signal fired by SIGINT or SIGTERM.
fn on_signal() -> Shutdown {
    let (trigger, shutdown) = shutdown::channel();
    tokio::spawn(async move {
        signal().await;
        tracing::info!("shutdown requested");
        trigger.fire();
    });
    shutdown
}

/// Waits for SIGINT or SIGTERM.
async fn signal() {
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
}

/// Unix time now, milliseconds.
fn now_ms() -> anyhow::Result<i64> {
    Ok(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64)
}
