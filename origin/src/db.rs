//! MariaDB: the pool and its migrations, shared by `consume`, `migrate` and `reconcile`.

use anyhow::Context;
use sqlx::mysql::MySqlPool;
use std::time::{Duration, Instant};

/// Connects to MariaDB and applies the migrations.
pub async fn connect(url: &str) -> anyhow::Result<MySqlPool> {
    let pool = sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .context("cannot reach MariaDB (check FLASHGATE_MYSQL_URL)")?;
    sqlx::migrate!("./migrations")
        .run(&pool)
        .await
        .context("cannot apply database migrations")?;
    Ok(pool)
}

/// [`connect`], waiting up to `patience` for a database that does not answer yet (a
/// consumer restarted while the database restarts): connection failures are retried
/// with backoff, anything else (a bad URL, refused credentials, a failed migration) stops
/// at once.
pub async fn connect_waiting(url: &str, patience: Duration) -> anyhow::Result<MySqlPool> {
    let started = Instant::now();
    let mut wait = Duration::from_millis(200);
    loop {
        match connect(url).await {
            Ok(pool) => return Ok(pool),
            Err(e) if started.elapsed() < patience && unreachable(&e) => {
                tracing::warn!(error = %format!("{e:#}"), retry_in_ms = wait.as_millis() as u64, "MariaDB not reachable yet; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The database did not answer (as opposed to answering no).
fn unreachable(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<sqlx::Error>(),
            Some(sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut)
        )
    })
}
