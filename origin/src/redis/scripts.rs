//! The atomic scripts (`lua/`): reserve a batch of attempts, confirm and compensate
//! orders, put an event. Each touches one event's slot only.

use super::clock_sync::mono_ms;
use super::Store;
use flashgate_core::ids::{EventId, OrderId, UserId};
pub use flashgate_core::reservation::Reservation;
use flashgate_core::Millis;
use redis::AsyncCommands;
use std::sync::atomic::Ordering;

/// How long after it is sent a reserve call may still reserve: Redis refuses it, untouched,
/// once this has passed on its clock. Well inside the connection's response timeout
/// (2 s), after which the origin answers 503 without the verdict.
pub(crate) const RESERVE_BUDGET_MS: i64 = 1000;

/// One purchase attempt of a reserve call.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The buyer.
    pub user: UserId,
    /// The order id to use if stock is reserved.
    pub new_order: OrderId,
    /// The edge signature of the request (replay guard).
    pub signature: String,
    /// The time the edge signed the request at, unix ms (the replay guard's time slice).
    pub signed_at: Millis,
    /// The room position the edge admitted the purchase at, if any (goes with the order).
    pub room_position: Option<u64>,
    /// The network of the buyer's client, if the edge sent it (goes with the order).
    pub client_net: Option<String>,
}

/// What every attempt of one reserve call shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReserveRules {
    /// Now, unix ms (the reservation time of the call's orders).
    pub now: Millis,
    /// Per-user window, ms.
    pub window_ms: u64,
    /// Tries allowed per window (see `EventKeys::window`).
    pub limit: u32,
    /// How long signatures are remembered, ms.
    pub replay_window_ms: u64,
}

/// What the database said of a refused order ([`Store::compensate`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Refused<'a> {
    /// The order's unit number, if it has one.
    pub unit: Option<u64>,
    /// Whether its unit goes back (`core::fence::Refusal::gives_back`).
    pub give_back: bool,
    /// The buyer's order in the database, if they hold one.
    pub holder: Option<&'a str>,
}

/// Result of `end_event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndOutcome {
    /// No such event.
    Unknown,
    /// It has not started (edit it instead).
    Upcoming,
    /// It had ended already.
    AlreadyEnded,
    /// Its sale window closed now.
    Ended,
}

/// Result of `put_event`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// A new event.
    Created,
    /// An upcoming event changed.
    Updated,
    /// Refused: the event has started.
    Started,
}

impl Store {
    /// Creates or updates an upcoming event and pre-warms its stock.
    pub async fn put_event(
        &self,
        id: &EventId,
        w: &flashgate_core::wire::ValidEventSpec,
        now: Millis,
    ) -> redis::RedisResult<PutOutcome> {
        let k = self.keys(id);
        // The index first, on its own (it is in another slot than the event's keys): an
        // event is never without it, and an id whose event was not created is skipped by
        // whoever reads the index.
        self.conn()
            .sadd::<_, _, ()>(self.events_key(), id.as_str())
            .await?;
        let room = match &w.room {
            Some(room) => serde_json::to_string(room).map_err(|e| {
                redis::RedisError::from((
                    redis::ErrorKind::TypeError,
                    "room settings",
                    e.to_string(),
                ))
            })?,
            None => String::new(),
        };
        let r: String = self
            .put_event
            .key(k.info())
            .key(k.stock())
            .arg(now)
            .arg(&w.name)
            .arg(w.stock)
            .arg(w.starts_at)
            .arg(w.ends_at)
            .arg(room)
            .arg(w.stock_buckets)
            .invoke_async(&mut self.conn())
            .await?;
        if r != "started" {
            // The event has not started: nothing is sold, so its stock is split anew.
            let split = super::Split {
                total: w.stock,
                buckets: w.stock_buckets,
            };
            self.put_stock_buckets(id, split).await?;
        }
        Ok(match r.as_str() {
            "started" => PutOutcome::Started,
            "updated" => PutOutcome::Updated,
            _ => PutOutcome::Created,
        })
    }

    /// Pauses (`true`) or resumes an event's sale; `false` when there is no such event.
    pub async fn pause_event(&self, id: &EventId, paused: bool) -> redis::RedisResult<bool> {
        let r: String = self
            .pause_event
            .key(self.keys(id).info())
            .arg(u8::from(paused))
            .invoke_async(&mut self.conn())
            .await?;
        Ok(r == "ok")
    }

    /// Ends a live event at `now`: its window closes, its stock and orders stay.
    pub async fn end_event(&self, id: &EventId, now: Millis) -> redis::RedisResult<EndOutcome> {
        let r: String = self
            .end_event
            .key(self.keys(id).info())
            .arg(now)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(match r.as_str() {
            "unknown" => EndOutcome::Unknown,
            "upcoming" => EndOutcome::Upcoming,
            "ended" => EndOutcome::AlreadyEnded,
            _ => EndOutcome::Ended,
        })
    }

    /// A reserve call (`lua/reserve.lua`) on keys `k`: those of an event, or of a stock
    /// bucket whose units follow `first` and where an empty stock writes a claim valid
    /// until `claim_until`.
    pub(super) fn reserve_call(
        &self,
        k: &super::EventKeys,
        event: &EventId,
        rules: ReserveRules,
        attempts: &[Attempt],
        first: u64,
        claim_until: Option<Millis>,
    ) -> redis::ScriptInvocation<'_> {
        let mut call = self.reserve.prepare_invoke();
        call.key(k.stock())
            .key(k.orders())
            .key(k.status())
            .key(k.outbox())
            .key(k.stats())
            .key(k.given_back())
            .arg(rules.now)
            .arg(rules.window_ms)
            .arg(rules.limit)
            .arg(event.as_str())
            .arg(rules.replay_window_ms)
            .arg(self.deadline())
            .arg(first)
            .arg(claim_until.map(|t| t.to_string()).unwrap_or_default());
        // The attempts of a call were signed within moments of each other: their slice's
        // key is made once, not per attempt.
        let mut slice: Option<(Millis, String)> = None;
        for a in attempts {
            let end = super::keys::slice_end(a.signed_at);
            let signatures = match slice {
                Some((at, ref key)) if at == end => key,
                _ => &slice.insert((end, k.signatures(a.signed_at))).1,
            };
            call.key(k.window(&a.user)).key(signatures);
            call.arg(a.user.as_str()).arg(a.new_order.as_str());
            match a.room_position {
                Some(position) => call.arg(position),
                None => call.arg(""),
            };
            call.arg(a.client_net.as_deref().unwrap_or_default())
                .arg(&a.signature);
        }
        call
    }

    /// The deadline of a call sent now, on Redis's clock (see [`RESERVE_BUDGET_MS`]).
    pub(super) fn deadline(&self) -> Millis {
        mono_ms() + self.clock_offset.load(Ordering::Relaxed) + RESERVE_BUDGET_MS
    }

    /// Runs the reserve script for attempts on one event, in order, in one atomic call:
    /// one verdict per attempt. Every key is in the event's slot, so this is one call on
    /// Redis Cluster too.
    pub async fn reserve(
        &self,
        event: &EventId,
        rules: ReserveRules,
        attempts: &[Attempt],
    ) -> redis::RedisResult<Vec<Reservation>> {
        let call = self.reserve_call(&self.keys(event), event, rules, attempts, 0, None);
        let mut unreplicated = false;
        let r: Vec<String> = match &self.replicas {
            None => call.invoke_async(&mut self.conn()).await?,
            Some(replicas) => {
                // One pipeline: the WAIT goes on the very connection that carried the
                // script, whatever reconnects, and counts its writes.
                let mut conn = replicas.take(&self.client).await?;
                let timeout_ms = replicas.next_timeout();
                let no_script = |e: &redis::RedisError| e.kind() == redis::ErrorKind::NoScriptError;
                let mut answer = replicas
                    .reserve_and_wait(&mut conn, &call, timeout_ms)
                    .await;
                // On a cluster, the pipeline as a whole fails with the script's error.
                if matches!(&answer, Err(e) | Ok((Err(e), _)) if no_script(e)) {
                    // Redis lost its scripts (a restart, a failover): nothing ran. Load the
                    // script and send the pipeline again.
                    call.load_async(&mut conn).await?;
                    answer = replicas
                        .reserve_and_wait(&mut conn, &call, timeout_ms)
                        .await;
                }
                let answer = answer?;
                // Answered: the connection works (a transport error above drops it).
                replicas.give_back(conn);
                let (r, acked) = answer;
                let r = r?;
                let count = |verdict: &str| r.iter().step_by(2).filter(|v| *v == verdict).count();
                let reserved = count("reserved");
                if reserved > 0 {
                    unreplicated =
                        !replicas.record(&acked, reserved, timeout_ms) && replicas.strict;
                } else if replicas.strict && count("already_purchased") > 0 {
                    // A holder's order may be one no replica holds yet (its 202 was a
                    // 503): busy again until a replica does, so no success a failover
                    // could take back is ever reported.
                    unreplicated = !replicas.enough(&acked);
                }
                r
            }
        };
        if r.len() != 2 * attempts.len() {
            return Err(redis::RedisError::from((
                redis::ErrorKind::TypeError,
                "reserve script answered the wrong number of verdicts",
            )));
        }
        if r.first().is_some_and(|v| v == "late") {
            // Nothing was reserved. The clock may have moved: measure it again.
            if !self.clock_resync.swap(true, Ordering::AcqRel) {
                let store = self.clone();
                tokio::spawn(async move {
                    let _ = store.sync_clock().await;
                    store.clock_resync.store(false, Ordering::Release);
                });
            }
            return Err(redis::RedisError::from((
                redis::ErrorKind::IoError,
                "the reserve call reached Redis after its deadline; nothing was reserved",
            )));
        }
        Ok(r.chunks(2)
            .zip(attempts)
            .map(|(v, a)| match v[0].as_str() {
                "reserved" if unreplicated => Reservation::Unreplicated(a.new_order.clone()),
                "reserved" => Reservation::Reserved(a.new_order.clone()),
                "already_purchased" if unreplicated => {
                    // The holder's order id, as the script wrote it (else this attempt's).
                    let held = OrderId::parse(&v[1]).unwrap_or_else(|_| a.new_order.clone());
                    Reservation::Unreplicated(held)
                }
                "already_purchased" => Reservation::AlreadyPurchased(v[1].clone()),
                "sold_out" => Reservation::SoldOut(v[1].clone()),
                "rate_limited" => Reservation::RateLimited(v[1].parse().unwrap_or(1000)),
                "replayed" => Reservation::Replayed,
                _ => Reservation::NoEvent,
            })
            .collect())
    }

    /// Marks an order confirmed (idempotent); true when it changed.
    pub async fn confirm(
        &self,
        event: &EventId,
        user: &UserId,
        order: &str,
    ) -> redis::RedisResult<bool> {
        let k = self.keys(event);
        let changed: i64 = self
            .confirm
            .key(k.status())
            .key(k.stats())
            .arg(user.as_str())
            .arg(order)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(changed == 1)
    }

    /// Marks many orders of one event confirmed in one call (idempotent); returns how many
    /// changed.
    pub async fn confirm_many(
        &self,
        event: &EventId,
        orders: &[(&UserId, &str)],
    ) -> redis::RedisResult<u64> {
        if orders.is_empty() {
            return Ok(0);
        }
        // One call per home bucket: a buyer's status lives there (one, the event's own
        // keys, for an event of one bucket).
        let split = self.split(event).await?;
        let mut by_home: std::collections::BTreeMap<String, Vec<&(&UserId, &str)>> =
            std::collections::BTreeMap::new();
        for o in orders {
            let k = self.home_keys(event, split, o.0.as_str());
            by_home.entry(k.base.clone()).or_default().push(o);
        }
        let mut changed = 0;
        for (base, list) in by_home {
            let k = super::EventKeys { base };
            let mut inv = self.confirm_many.key(k.status());
            inv.key(k.stats()).key(k.orders());
            for (user, order) in list {
                inv.arg(user.as_str()).arg(*order);
            }
            changed += inv.invoke_async::<u64>(&mut self.conn()).await?;
        }
        Ok(changed)
    }

    /// Fails an order, once per order id; true when it did. Its unit (`unit`, when the
    /// order has one) goes back to stock if `give_back` and this Redis counted the order
    /// (`lua/compensate.lua`); a buyer who holds another order in the database (`holder`)
    /// is shown it. The order's try then counts in the user's window of `window_ms`.
    pub async fn compensate(
        &self,
        event: &EventId,
        user: &UserId,
        order: &str,
        refused: Refused<'_>,
        window_ms: u64,
    ) -> redis::RedisResult<bool> {
        let split = self.split(event).await?;
        let k = self.home_keys(event, split, user.as_str());
        // A spilled order's unit belongs to another bucket than the buyer's home: the
        // order fails at home, and the unit goes back to its bucket on its own.
        let home = flashgate_core::stock_buckets::home(user.as_str(), split.buckets);
        let owner = refused
            .unit
            .and_then(|u| flashgate_core::stock_buckets::bucket_of(u, split.total, split.buckets))
            .filter(|b| split.buckets > 1 && *b != home);
        let give_back_here = refused.give_back && owner.is_none();
        let changed: i64 = self
            .compensate
            .key(k.stock())
            .key(k.orders())
            .key(k.status())
            .key(k.stats())
            .key(k.compensated())
            .key(k.window(user))
            .key(k.given_back())
            .arg(user.as_str())
            .arg(order)
            .arg(window_ms)
            .arg(refused.unit.map(|u| u.to_string()).unwrap_or_default())
            .arg(u8::from(give_back_here))
            .arg(refused.holder.unwrap_or_default())
            .invoke_async(&mut self.conn())
            .await?;
        if let (Some(b), Some(unit), true) = (owner, refused.unit, refused.give_back) {
            let kb = self.bucket_keys(event, b);
            self.give_back
                .key(kb.stock())
                .key(kb.given_back())
                .key(kb.stats())
                .key(kb.compensated())
                .key(kb.decisions())
                .arg(order)
                .arg(unit)
                .invoke_async::<i64>(&mut self.conn())
                .await?;
        }
        Ok(changed == 1)
    }
}
