//! Retrying a batch's database and Redis work, and the connections kept between batches.

use crate::shutdown::Shutdown;
use anyhow::Context;
use sqlx::mysql::MySqlPool;
use sqlx::pool::PoolConnection;
use sqlx::MySql;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a database call may take before it counts as failed (and is retried on a
/// fresh connection: a connection cut without a word could otherwise hang a query until
/// the kernel gives up on it, many minutes later).
pub(super) const DB_ANSWER: Duration = Duration::from_secs(30);

/// A connection kept out of the pool between uses, while it stays busy: one that worked
/// is kept for the next use; one that failed is dropped (the pool checks it before
/// lending it again); one idle for more than [`KEEP_IDLE`] goes back to the pool, which
/// pings it before lending it (a quiet topic may outlive the server's or a NAT's idle
/// timeout).
#[derive(Default)]
pub(super) struct Kept(Mutex<Option<(Instant, PoolConnection<MySql>)>>);

/// See [`Kept`].
const KEEP_IDLE: Duration = Duration::from_secs(10);

impl Kept {
    /// The kept connection if it was used lately, else one from the pool.
    pub(super) async fn take_or_acquire(
        &self,
        pool: &MySqlPool,
    ) -> anyhow::Result<PoolConnection<MySql>> {
        let kept = self.0.lock().ok().and_then(|mut db| db.take());
        match kept {
            Some((used, db)) if used.elapsed() < KEEP_IDLE => Ok(db),
            _ => pool.acquire().await.context("mariadb"),
        }
    }

    /// Keeps a connection that just worked.
    pub(super) fn keep(&self, db: PoolConnection<MySql>) {
        if let Ok(mut kept) = self.0.lock() {
            *kept = Some((Instant::now(), db));
        }
    }
}

/// Runs `attempt` until it succeeds, with backoff from 100 ms to 5 s, or until shutdown
/// (the batch is then consumed again by whoever reads its partitions next).
pub(super) async fn retrying<T, F, Fut>(
    shutdown: &mut Shutdown,
    mut attempt: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut backoff = Duration::from_millis(100);
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), retry_in_ms = backoff.as_millis() as u64, "batch failed; will retry");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.recv() => anyhow::bail!("stopped with an unfinished batch; it will be consumed again"),
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// A settling task's outcome.
pub(super) fn joined(r: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Result<()> {
    r.map_err(|e| anyhow::anyhow!("settling a batch failed: {e}"))?
}
