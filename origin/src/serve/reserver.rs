//! Coalesced reserve calls. The purchase attempts that arrive while calls to Redis are in
//! flight go together in the next call: one `EVALSHA` of `lua/reserve.lua` for many
//! attempts, each still decided atomically and in arrival order. Redis and the origin then
//! pay the round trip, the script call and the wake-ups once per batch instead of once per
//! purchase, which is where a single connection spent its time under a flash crowd.
//!
//! Nothing waits for a batch to fill: an attempt that finds a free call slot goes at once,
//! alone, so an idle origin answers as fast as before. The caller's deadline covers only
//! the wait in the queue: an attempt still queued at its deadline is withdrawn and never
//! reaches Redis (the caller answers 503 and nothing was reserved), while one already sent
//! waits for its verdict. That wait is bounded by the connection's timeouts (a reconnect
//! under way, 2 s, then the response, 2 s; see `Store::manager`); a
//! call that reaches Redis so late that the origin may have given up on it is refused by
//! the script itself, untouched (its deadline, `redis::RESERVE_BUDGET_MS` after it was
//! sent, on Redis's clock). Only an answer held back for longer than the rest of that
//! timeout, after the script ran in time, becomes a 503 for a reservation that was made
//! (the shopper's retry then gets it back as already purchased). Batches are per event (all keys in the event's slot), so the
//! design stays valid on Redis Cluster.

use crate::redis::{Attempt, Reservation, ReserveRules, Store};
use flashgate_core::ids::EventId;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Up to this many attempts wait for a call slot; more wait for room (the adaptive limit
/// and the admission bucket keep the queue far below this).
const QUEUE: usize = 4096;

/// Where a job is: waiting in the queue, taken into a call, or withdrawn by its caller.
const QUEUED: u8 = 0;
const TAKEN: u8 = 1;
const WITHDRAWN: u8 = 2;

struct Job {
    event: EventId,
    rules: ReserveRules,
    attempt: Attempt,
    state: Arc<AtomicU8>,
    reply: oneshot::Sender<redis::RedisResult<Reservation>>,
}

impl Job {
    /// Claims the job for a call; false when its caller withdrew it.
    fn take(&self) -> bool {
        self.state
            .compare_exchange(QUEUED, TAKEN, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// Hands purchase attempts to the coalescing task (cheap to clone).
#[derive(Clone)]
pub(crate) struct Reserver {
    tx: mpsc::Sender<Job>,
}

impl Reserver {
    /// Starts the coalescing task: at most `inflight` calls at once, at most `max_batch`
    /// attempts per call.
    pub(crate) fn start(store: Store, max_batch: usize, inflight: usize) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(store, rx, max_batch.max(1), inflight.max(1)));
        Self { tx }
    }

    /// Decides one attempt in the next call to Redis that has room. If no call has taken
    /// it within `deadline`, it is withdrawn (a timed-out error, nothing reserved); once
    /// taken, its verdict is awaited whatever the deadline.
    pub(crate) async fn reserve(
        &self,
        event: &EventId,
        rules: ReserveRules,
        attempt: Attempt,
        deadline: Duration,
    ) -> redis::RedisResult<Reservation> {
        let (reply, mut answer) = oneshot::channel();
        let state = Arc::new(AtomicU8::new(QUEUED));
        let job = Job {
            event: event.clone(),
            rules,
            attempt,
            state: state.clone(),
            reply,
        };
        let gone = || redis::RedisError::from((redis::ErrorKind::IoError, "reserve task stopped"));
        let timed_out = || {
            redis::RedisError::from((redis::ErrorKind::IoError, "reserve queue deadline passed"))
        };
        let until = tokio::time::Instant::now() + deadline;
        let queued = tokio::time::timeout_at(until, self.tx.send(job)).await;
        match queued {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(gone()),
            // Never queued: nothing can be reserved.
            Err(_) => return Err(timed_out()),
        }
        match tokio::time::timeout_at(until, &mut answer).await {
            Ok(verdict) => verdict.map_err(|_| gone())?,
            Err(_) => {
                let withdrawn = state
                    .compare_exchange(QUEUED, WITHDRAWN, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok();
                if withdrawn {
                    Err(timed_out())
                } else {
                    // Already in a call: the verdict is the truth, whenever it comes.
                    answer.await.map_err(|_| gone())?
                }
            }
        }
    }
}

async fn run(store: Store, mut rx: mpsc::Receiver<Job>, max_batch: usize, inflight: usize) {
    let slots = Arc::new(Semaphore::new(inflight));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        // While every slot was busy, attempts queued up: take what is there.
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut jobs = vec![first];
        while jobs.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        // A caller that is gone (its client hung up) gets nothing reserved either.
        jobs.retain(|j| !j.reply.is_closed() && j.take());
        metrics::histogram!("flashgate_reserve_batch_size").record(jobs.len() as f64);
        let slot = Arc::new(slot);
        for (event, group) in by_event(jobs) {
            let (store, slot) = (store.clone(), slot.clone());
            tokio::spawn(async move {
                call(&store, &event, group).await;
                drop(slot);
            });
        }
    }
}

/// The jobs grouped by event, events in order of first arrival, jobs in arrival order.
fn by_event(jobs: Vec<Job>) -> Vec<(EventId, Vec<Job>)> {
    let mut groups: Vec<(EventId, Vec<Job>)> = Vec::new();
    for job in jobs {
        match groups.iter_mut().find(|(e, _)| *e == job.event) {
            Some((_, g)) => g.push(job),
            None => groups.push((job.event.clone(), vec![job])),
        }
    }
    groups
}

async fn call(store: &Store, event: &EventId, jobs: Vec<Job>) {
    let Some(rules) = jobs.last().map(|j| j.rules) else {
        return;
    };
    let attempts: Vec<Attempt> = jobs.iter().map(|j| j.attempt.clone()).collect();
    match store.reserve(event, rules, &attempts).await {
        Ok(verdicts) => {
            for (job, verdict) in jobs.into_iter().zip(verdicts) {
                let _ = job.reply.send(Ok(verdict));
            }
        }
        Err(e) => {
            let (kind, text) = (e.kind(), e.to_string());
            for job in jobs {
                let _ = job
                    .reply
                    .send(Err((kind, "reserve call failed", text.clone()).into()));
            }
        }
    }
}
