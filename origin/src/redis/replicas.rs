//! Reserve calls that wait for replicas (`WAIT` in one pipeline with the script), and
//! the short waits while replicas fall behind.

use super::clock_sync::mono_ms;
use super::conn::{Client, Conn};
use super::Store;
use std::sync::Arc;

/// How reserve calls wait for Redis replicas ([`Store::wait_for_replicas`]).
pub(super) struct Replicas {
    /// Replicas that must acknowledge a reservation's writes.
    count: u32,
    /// The longest wait, ms.
    timeout_ms: u64,
    /// Strict mode: a reservation not acknowledged in time is answered 503, and the relay
    /// sends only what the replicas hold.
    pub(super) strict: bool,
    /// Idle connections of the reserve calls' own: a call takes one (or opens one when
    /// none is idle) and gives it back once answered, so a `WAIT`, which blocks the
    /// connection it is sent on, holds up no other call and nothing else of the process. A
    /// connection whose call failed is dropped, and [`Store::reconnect`] drops them all.
    pub(super) idle: std::sync::Mutex<Vec<Conn>>,
    /// Since when the waits fall short (replicas behind or away), [`mono_ms`]; `None`
    /// while they succeed. Meanwhile calls wait 1 ms only, and one a second the whole
    /// timeout, which ends the state when it succeeds.
    short_since: std::sync::Mutex<Option<(i64, i64)>>,
}

impl Replicas {
    /// An idle reserve connection, or a new one.
    pub(super) async fn take(&self, client: &Client) -> redis::RedisResult<Conn> {
        let idle = crate::locks::lock(&self.idle).pop();
        match idle {
            Some(conn) => Ok(conn),
            None => client.connect().await,
        }
    }

    /// Gives back a connection whose call was answered.
    pub(super) fn give_back(&self, conn: Conn) {
        crate::locks::lock(&self.idle).push(conn);
    }

    /// The `WAIT` timeout for the next call: the whole one, or 1 ms while waits fall short
    /// (the whole one again once a second, to find out whether they still do).
    pub(super) fn next_timeout(&self) -> u64 {
        let mut short = crate::locks::lock(&self.short_since);
        match short.as_mut() {
            None => self.timeout_ms,
            Some((_, probed)) if mono_ms() - *probed >= 1000 => {
                *probed = mono_ms();
                self.timeout_ms
            }
            Some(_) => 1,
        }
    }

    /// The reserve call and its `WAIT` in one pipeline, so the `WAIT` goes on the very
    /// connection that carried the script, whatever reconnects, and counts its writes (on
    /// a cluster: the connection to the master of the event's slot, and its replicas).
    /// On one server each has its own result: a failing `WAIT` does not hide the script's
    /// verdicts; a cluster connection fails the whole pipeline on any error answer.
    pub(super) async fn reserve_and_wait(
        &self,
        conn: &mut Conn,
        call: &redis::ScriptInvocation<'_>,
        timeout_ms: u64,
    ) -> redis::RedisResult<(redis::RedisResult<Vec<String>>, redis::RedisResult<u32>)> {
        use redis::aio::ConnectionLike;
        let mut pipeline = redis::pipe();
        pipeline
            .invoke_script(call)
            .cmd("WAIT")
            .arg(self.count)
            .arg(timeout_ms);
        let mut answers = conn.req_packed_commands(&pipeline, 0, 2).await?.into_iter();
        let mut next = || -> redis::RedisResult<redis::Value> {
            match answers.next() {
                Some(redis::Value::ServerError(e)) => Err(e.into()),
                Some(v) => Ok(v),
                None => Err((redis::ErrorKind::TypeError, "a pipeline answer is missing").into()),
            }
        };
        let verdicts = next().and_then(redis::from_owned_redis_value);
        let acked = next().and_then(redis::from_owned_redis_value);
        Ok((verdicts, acked))
    }

    /// Whether a `WAIT` that answered `acked` saw enough replicas.
    pub(super) fn enough(&self, acked: &redis::RedisResult<u32>) -> bool {
        acked.as_ref().is_ok_and(|n| *n >= self.count)
    }

    /// Records how a wait of `timeout_ms` went: `acked` replicas (an error counts as
    /// none) for `reserved` reservations; true when enough acknowledged. Only a whole wait
    /// that fell short makes the next ones short (a 1 ms one sent before the replicas were
    /// found back proves nothing); any that succeeds ends that.
    pub(super) fn record(
        &self,
        acked: &redis::RedisResult<u32>,
        reserved: usize,
        timeout_ms: u64,
    ) -> bool {
        let enough = self.enough(acked);
        if !enough {
            metrics::counter!("flashgate_reservations_unreplicated_total")
                .increment(reserved as u64);
        }
        let whole = timeout_ms >= self.timeout_ms;
        let mut short = crate::locks::lock(&self.short_since);
        match (short.is_some(), enough) {
            (false, false) if whole => {
                tracing::warn!(
                    acked = ?acked,
                    replicas = self.count,
                    timeout_ms = self.timeout_ms,
                    strict = self.strict,
                    "Redis replicas did not acknowledge reservations in time; answering them \
                     anyway (503 busy in strict mode; flashgate_reservations_unreplicated_total) \
                     and waiting 1 ms until they catch up"
                );
                *short = Some((mono_ms(), mono_ms()));
            }
            (true, true) => {
                let (since, _) = short.take().unwrap_or_default();
                tracing::info!(
                    short_for_ms = mono_ms() - since,
                    "Redis replicas acknowledge reservations again"
                );
            }
            _ => {}
        }
        enough
    }

    /// Whether the replicas acknowledged every write made so far on `conn` to the master
    /// of `key` (`WAIT`): the relay's check, in strict mode, that the entries it read
    /// survive a failover. The `WAIT` goes in one pipeline with a read of `key`, so that
    /// on a cluster it goes to that master alone (alone, a cluster client sends it to
    /// every master).
    pub(super) async fn hold(&self, conn: &mut Conn, key: &str) -> redis::RedisResult<bool> {
        let (_, acked): (u64, u32) = redis::pipe()
            .cmd("XLEN")
            .arg(key)
            .cmd("WAIT")
            .arg(self.count)
            // The whole timeout: the relay waits in the background, and must not spend
            // the reserve calls' probe of the short waits (`next_timeout`).
            .arg(self.timeout_ms)
            .query_async(conn)
            .await?;
        Ok(acked >= self.count)
    }
}

impl Store {
    /// In strict mode, a connection of the reserve calls' own for the relay's reads of
    /// one outbox, so that [`Store::replicas_hold`] counts what they read; `None` outside
    /// strict mode.
    pub async fn strict_conn(&self) -> redis::RedisResult<Option<Conn>> {
        match &self.replicas {
            Some(r) if r.strict => r.take(&self.client).await.map(Some),
            _ => Ok(None),
        }
    }

    /// Whether the replicas hold every write made on `conn` (taken by
    /// [`Store::strict_conn`]) that read `entries` entries of `outbox` (no wait for none);
    /// the connection goes back to the idle ones once answered.
    pub async fn replicas_hold(
        &self,
        mut conn: Conn,
        outbox: &str,
        entries: usize,
    ) -> redis::RedisResult<bool> {
        let Some(replicas) = &self.replicas else {
            return Ok(true);
        };
        let held = entries == 0 || replicas.hold(&mut conn, outbox).await?;
        replicas.give_back(conn);
        Ok(held)
    }

    /// Makes every reserve call wait (Redis `WAIT`, in one pipeline with the script, on a
    /// connection of the reserve calls' own; `connections` of them opened now) until `replicas` replicas have its writes, or
    /// `timeout_ms` passed, before its verdicts are answered: a 202 then survives a
    /// failover to one of them. A reservation that was not acknowledged in time is still
    /// answered (it is real on the primary), 202, or in `strict` mode 503 busy
    /// ([`Reservation::Unreplicated`](super::Reservation::Unreplicated)), and counted in
    /// `flashgate_reservations_unreplicated_total`; while that goes on, calls wait 1 ms
    /// only (see `Replicas`). `0` waits for none.
    pub async fn wait_for_replicas(
        mut self,
        replicas: u32,
        timeout_ms: u64,
        strict: bool,
        connections: usize,
    ) -> redis::RedisResult<Self> {
        if replicas == 0 {
            return Ok(self);
        }
        let mut idle = Vec::new();
        for _ in 0..connections.max(1) {
            idle.push(self.client.connect().await?);
        }
        // On a cluster, each master has replicas of its own: the fewest count.
        let infos = self
            .conn()
            .on_every_master(redis::cmd("INFO").arg("replication"))
            .await?;
        let connected = infos
            .into_iter()
            .map(|(_, info)| {
                let info: String = redis::from_owned_redis_value(info).unwrap_or_default();
                info.lines()
                    .find_map(|l| l.strip_prefix("connected_slaves:"))
                    .and_then(|n| n.trim().parse::<u32>().ok())
                    .unwrap_or(0)
            })
            .min()
            .unwrap_or(0);
        if connected < replicas {
            tracing::warn!(
                connected,
                replicas,
                "fewer Redis replicas than redis_wait_replicas are connected: reservations \
                 will be answered unreplicated until enough are"
            );
        }
        self.replicas = Some(Arc::new(Replicas {
            count: replicas,
            timeout_ms,
            strict,
            idle: std::sync::Mutex::new(idle),
            short_since: std::sync::Mutex::new(None),
        }));
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::Replicas;

    #[test]
    fn waits_go_short_only_after_a_whole_one_fell_short_and_back_after_any_success() {
        let replicas = Replicas {
            count: 1,
            timeout_ms: 100,
            strict: false,
            idle: Default::default(),
            short_since: Default::default(),
        };
        assert_eq!(replicas.next_timeout(), 100);
        // A whole wait that fell short (or failed): the next ones wait 1 ms.
        replicas.record(&Ok(0), 3, 100);
        assert_eq!(replicas.next_timeout(), 1);
        assert_eq!(replicas.next_timeout(), 1);
        // Any success ends it.
        replicas.record(&Ok(1), 3, 1);
        assert_eq!(replicas.next_timeout(), 100);
        // A 1 ms wait sent before that success and answered after it proves nothing.
        replicas.record(&Ok(0), 3, 1);
        assert_eq!(replicas.next_timeout(), 100);
        let failed: redis::RedisResult<u32> =
            Err((redis::ErrorKind::IoError, "connection lost").into());
        replicas.record(&failed, 1, 100);
        assert_eq!(replicas.next_timeout(), 1);
    }
}
