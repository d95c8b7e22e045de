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
//! design stays valid on Redis Cluster; for an event split into stock buckets, per home
//! bucket (the home calls: `redis::buckets`), each bucket's keys in its own slot.

use crate::redis::{Attempt, Reservation, ReserveRules, Split, Store};
use flashgate_core::ids::EventId;
use flashgate_core::Millis;
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
    /// For an event split into stock buckets: the home call at this bucket.
    home: Option<Home>,
    rules: ReserveRules,
    attempt: Attempt,
    state: Arc<AtomicU8>,
    reply: oneshot::Sender<redis::RedisResult<Verdict>>,
}

/// A home call: the event's split, the user's home bucket, how long a claim waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Home {
    split: Split,
    bucket: u16,
    claim_ms: Millis,
}

/// A reserve call's answer to one attempt.
enum Verdict {
    /// At the event's own keys.
    Event(Reservation),
    /// At a home bucket: the verdict and its detail, as `lua/reserve.lua` answers them.
    Home((String, String)),
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
        match self.decide(event, None, rules, attempt, deadline).await? {
            Verdict::Event(r) => Ok(r),
            Verdict::Home(_) => Err(wrong_verdict()),
        }
    }

    /// As [`Reserver::reserve`], the home call of an attempt on an event split as `split`
    /// (at the user's home bucket `bucket`; a claim waits `claim_ms`): its verdict and
    /// detail, for `Store::after_home`.
    pub(crate) async fn reserve_at_home(
        &self,
        event: &EventId,
        (split, bucket, claim_ms): (Split, u16, Millis),
        rules: ReserveRules,
        attempt: Attempt,
        deadline: Duration,
    ) -> redis::RedisResult<(String, String)> {
        let home = Home {
            split,
            bucket,
            claim_ms,
        };
        match self
            .decide(event, Some(home), rules, attempt, deadline)
            .await?
        {
            Verdict::Home(v) => Ok(v),
            Verdict::Event(_) => Err(wrong_verdict()),
        }
    }

    async fn decide(
        &self,
        event: &EventId,
        home: Option<Home>,
        rules: ReserveRules,
        attempt: Attempt,
        deadline: Duration,
    ) -> redis::RedisResult<Verdict> {
        let (reply, mut answer) = oneshot::channel();
        let state = Arc::new(AtomicU8::new(QUEUED));
        let job = Job {
            event: event.clone(),
            home,
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
        for ((event, home), group) in by_slot(jobs) {
            let (store, slot) = (store.clone(), slot.clone());
            tokio::spawn(async move {
                call(&store, &event, home, group).await;
                drop(slot);
            });
        }
    }
}

/// Where a reserve call goes: an event's keys, or one of its stock buckets'.
type Slot = (EventId, Option<Home>);

/// The jobs grouped by slot, slots in order of first arrival, jobs in arrival order.
fn by_slot(jobs: Vec<Job>) -> Vec<(Slot, Vec<Job>)> {
    let mut groups: Vec<(Slot, Vec<Job>)> = Vec::new();
    for job in jobs {
        match groups
            .iter_mut()
            .find(|((e, h), _)| *e == job.event && *h == job.home)
        {
            Some((_, g)) => g.push(job),
            None => groups.push(((job.event.clone(), job.home), vec![job])),
        }
    }
    groups
}

fn wrong_verdict() -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::TypeError,
        "a reserve call of the other kind",
    ))
}

async fn call(store: &Store, event: &EventId, home: Option<Home>, jobs: Vec<Job>) {
    let Some(rules) = jobs.last().map(|j| j.rules) else {
        return;
    };
    let attempts: Vec<Attempt> = jobs.iter().map(|j| j.attempt.clone()).collect();
    let verdicts = match home {
        None => store
            .reserve(event, rules, &attempts)
            .await
            .map(|v| v.into_iter().map(Verdict::Event).collect::<Vec<_>>()),
        Some(h) => store
            .reserve_at_home(event, h.split, h.bucket, rules, &attempts, h.claim_ms)
            .await
            .map(|v| v.into_iter().map(Verdict::Home).collect()),
    };
    match verdicts {
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
