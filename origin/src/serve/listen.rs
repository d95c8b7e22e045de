//! The HTTP server loop: hyper with a timer, so a client that never finishes its headers
//! is cut off, a cap on connections served at once, and a graceful shutdown that lets
//! requests in flight finish.

use crate::shutdown::Shutdown;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How long a shutdown waits for requests in flight before it drops them: inside a pod's
/// grace period, with time left for the relay's flush.
const DRAIN: Duration = Duration::from_secs(15);

/// What bounds a connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnLimits {
    /// Time to send a request's headers, on a new connection and between requests.
    pub(crate) header_timeout: Duration,
    /// Connections served at once; more wait in the listen queue.
    pub(crate) max_connections: usize,
}

/// Serves `router` on `listener` until `shutdown` fires, then waits (at most [`DRAIN`])
/// for the requests in flight.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    mut shutdown: Shutdown,
) -> std::io::Result<()> {
    // HTTP/1 only: the edge and every probe speak it, and guessing the version would
    // read a connection's first bytes with no timer running (a silent client would
    // keep its slot for ever).
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        // A slot first: past the cap, connections wait in the kernel's listen queue.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = shutdown.recv() => break,
        };
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was
                    // taken: wait a moment rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.recv() => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // A client that went away or timed out is no error of the server's.
            let _ = conn.await;
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            drain_s = DRAIN.as_secs(),
            "requests still in flight after the drain; dropped"
        );
    }
    Ok(())
}
