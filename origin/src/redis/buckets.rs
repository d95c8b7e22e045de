//! A hot event's stock buckets in Redis (`core::stock_buckets`): bucket `k`'s keys carry
//! the hash tag `{E#k}`, so each bucket may live on its own master of a cluster. A
//! purchase is the reserve call on the user's home bucket (which writes a claim when that
//! bucket is empty), then the spill or fence calls (`lua/spill.lua`) and the settle call
//! (`lua/settle.lua`) that core's [`Purchase`] asks for. The steps and their proof are
//! core's; this file stores and calls.

use super::{Attempt, EventKeys, ReserveRules, Store};
use flashgate_core::ids::{EventId, OrderId};
use flashgate_core::stock_buckets::{self as sb, Call, Decision, Next, Purchase};
use flashgate_core::wire::MAX_STOCK_BUCKETS;
use flashgate_core::Millis;
use redis::{AsyncCommands, ErrorKind, RedisError, RedisResult};

/// How an event's stock is split: its units and its number of stock buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    /// The event's units.
    pub total: u64,
    /// Its stock buckets, at least 1.
    pub buckets: u16,
}

impl Split {
    /// The unit number before bucket `k`'s first (its units follow it).
    fn first(&self, k: u16) -> u64 {
        sb::units(self.total, self.buckets)
            .get(usize::from(k))
            .map_or(0, |r| r.start() - 1)
    }
}

/// The answer to a purchase attempt on an event split into stock buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BucketPurchase {
    /// Stock reserved under this new order.
    Reserved(OrderId),
    /// The user holds this order.
    AlreadyPurchased(String),
    /// Another purchase of the user's is between its steps, or this one's outcome is not
    /// known yet (its claim answers until resolved): busy, retry.
    InFlight,
    /// Every bucket was empty.
    SoldOut,
    /// The per-user window is full; retry after this many milliseconds.
    RateLimited(u64),
    /// This exact signed request was already seen.
    Replayed,
    /// The event has no stock buckets.
    NoEvent,
}

/// The version of a split event's buyers for the sold-out memo: its buckets are not read
/// at one instant, so the memo keeps them only while fresh (`serve::sold_out`).
pub const SPLIT_BUYERS_VERSION: &str = "split";

/// How a claim's mark begins (`lua/reserve.lua`): `claim:<order id>:<deadline>`.
pub(crate) const CLAIM: &str = "claim:";

fn answer_error(what: &'static str) -> RedisError {
    RedisError::from((ErrorKind::TypeError, what))
}

impl Store {
    /// The keys of stock bucket `k` of event `id`.
    pub fn bucket_keys(&self, id: &EventId, k: u16) -> EventKeys {
        EventKeys {
            base: format!("{}{{{id}#{k}}}", self.prefix),
        }
    }

    /// Puts the stock of an event that has not started into its buckets, each holding its
    /// range's units, none sold; with one bucket, none (the event's own keys hold it), and
    /// the buckets of an earlier split beyond `split`'s are dropped.
    pub async fn put_stock_buckets(&self, id: &EventId, split: Split) -> RedisResult<()> {
        let mut conn = self.conn();
        let ranges = match split.buckets {
            1 => Vec::new(),
            n => sb::units(split.total, n),
        };
        for k in 0..MAX_STOCK_BUCKETS {
            let keys = self.bucket_keys(id, k);
            conn.del::<_, ()>(&[keys.given_back(), keys.decisions()])
                .await?;
            match ranges.get(usize::from(k)) {
                Some(range) => conn.set::<_, _, ()>(keys.stock(), range.clone().count() as u64),
                None => conn.del::<_, ()>(keys.stock()),
            }
            .await?;
        }
        Ok(())
    }

    /// How an event's stock is split, as put (one bucket when it says nothing).
    pub async fn split(&self, id: &EventId) -> RedisResult<Split> {
        let (total, buckets): (Option<u64>, Option<u16>) = redis::cmd("HMGET")
            .arg(self.keys(id).info())
            .arg("stock_total")
            .arg("stock_buckets")
            .query_async(&mut self.conn())
            .await?;
        Ok(Split {
            total: total.unwrap_or(0),
            buckets: buckets.unwrap_or(1).max(1),
        })
    }

    /// The keys where `user`'s mark and order status live: their home bucket's, or the
    /// event's own for an event of one bucket.
    pub fn home_keys(&self, id: &EventId, split: Split, user: &str) -> EventKeys {
        match split.buckets {
            0 | 1 => self.keys(id),
            n => self.bucket_keys(id, sb::home(user, n)),
        }
    }

    /// The keys of every part of an event's stock: its own, or its buckets'.
    pub fn stock_keys(&self, id: &EventId, split: Split) -> Vec<EventKeys> {
        match split.buckets {
            0 | 1 => vec![self.keys(id)],
            n => (0..n).map(|k| self.bucket_keys(id, k)).collect(),
        }
    }

    /// One purchase attempt on an event split as `split`: the home call, then the calls
    /// core's [`Purchase`] asks for (at most one per other bucket), then the settle call. A
    /// claim written here waits `claim_ms` for this purchase before the user's next
    /// attempt resolves it. An error leaves at most a claim, resolved the same way.
    pub async fn purchase_in_buckets(
        &self,
        event: &EventId,
        split: Split,
        rules: ReserveRules,
        attempt: &Attempt,
        claim_ms: Millis,
    ) -> RedisResult<BucketPurchase> {
        let h = sb::home(attempt.user.as_str(), split.buckets);
        let attempts = std::slice::from_ref(attempt);
        let verdict = self
            .reserve_at_home(event, split, h, rules, attempts, claim_ms)
            .await?
            .pop()
            .ok_or_else(|| answer_error("reserve script answered no verdict"))?;
        self.after_home(event, split, rules, attempt, verdict).await
    }

    /// The home calls of `attempts` whose home is bucket `h`, in one reserve call, in
    /// order: each attempt's verdict and its detail, as `lua/reserve.lua` answers them.
    /// A claim written waits `claim_ms` from `rules.now`.
    pub async fn reserve_at_home(
        &self,
        event: &EventId,
        split: Split,
        h: u16,
        rules: ReserveRules,
        attempts: &[Attempt],
        claim_ms: Millis,
    ) -> RedisResult<Vec<(String, String)>> {
        let keys = self.bucket_keys(event, h);
        let claim_until = rules.now + claim_ms;
        let call = self.reserve_call(
            &keys,
            event,
            rules,
            attempts,
            split.first(h),
            Some(claim_until),
        );
        let r: Vec<String> = call.invoke_async(&mut self.conn()).await?;
        if r.len() != 2 * attempts.len() {
            return Err(answer_error(
                "reserve script answered the wrong number of verdicts",
            ));
        }
        if r.first().is_some_and(|v| v == "late") {
            return Err(RedisError::from((
                ErrorKind::IoError,
                "the reserve call reached Redis after its deadline; nothing was reserved",
            )));
        }
        let mut r = r.into_iter();
        Ok(std::iter::from_fn(|| Some((r.next()?, r.next()?))).collect())
    }

    /// The rest of an attempt's purchase after its home call answered `verdict`.
    pub async fn after_home(
        &self,
        event: &EventId,
        split: Split,
        rules: ReserveRules,
        attempt: &Attempt,
        (verdict, detail): (String, String),
    ) -> RedisResult<BucketPurchase> {
        let user = attempt.user.as_str();
        let h = sb::home(user, split.buckets);
        let keys = self.bucket_keys(event, h);
        let (order, mut purchase, resolving) = match verdict.as_str() {
            "reserved" => return Ok(BucketPurchase::Reserved(attempt.new_order.clone())),
            "already_purchased" => return Ok(BucketPurchase::AlreadyPurchased(detail)),
            "in_flight" => return Ok(BucketPurchase::InFlight),
            "sold_out" => return Ok(BucketPurchase::SoldOut),
            "rate_limited" => {
                return Ok(BucketPurchase::RateLimited(detail.parse().unwrap_or(1000)))
            }
            "replayed" => return Ok(BucketPurchase::Replayed),
            "no_event" => return Ok(BucketPurchase::NoEvent),
            "claimed" => (
                attempt.new_order.as_str().to_owned(),
                Purchase::spilling(h, split.buckets),
                false,
            ),
            "resolve" => (detail, Purchase::resolving(h, split.buckets), true),
            _ => return Err(answer_error("reserve script answered an unknown verdict")),
        };
        loop {
            match purchase.next() {
                Next::Bucket(k, call) => {
                    let (position, net) = (attempt.room_position, attempt.client_net.as_deref());
                    let spilled = self
                        .spill(
                            event, split, k, &order, user, rules.now, call, position, net,
                        )
                        .await?;
                    // Late: nothing changed there, and the claim stands until resolved.
                    let Some(decision) = spilled else {
                        return Ok(BucketPurchase::InFlight);
                    };
                    purchase.answer(k, decision);
                }
                Next::Settle(took) => {
                    let settled: String = self
                        .settle
                        .key(keys.orders())
                        .key(keys.status())
                        .arg(user)
                        .arg(&order)
                        .arg(u8::from(took.is_some()))
                        .invoke_async(&mut self.conn())
                        .await?;
                    return Ok(match (took, resolving) {
                        (Some(_), false) => BucketPurchase::Reserved(attempt.new_order.clone()),
                        (Some(_), true) => BucketPurchase::AlreadyPurchased(order),
                        (None, false) if settled == "dropped" => BucketPurchase::SoldOut,
                        (None, _) => BucketPurchase::InFlight,
                    });
                }
            }
        }
    }

    /// A spill or fence call (`lua/spill.lua`) for `order` at bucket `k`: its decision,
    /// or `None` when the call reached Redis after its deadline and changed nothing.
    #[allow(clippy::too_many_arguments)]
    pub async fn spill(
        &self,
        event: &EventId,
        split: Split,
        k: u16,
        order: &str,
        user: &str,
        now: Millis,
        call: Call,
        room_position: Option<u64>,
        client_net: Option<&str>,
    ) -> RedisResult<Option<Decision>> {
        let keys = self.bucket_keys(event, k);
        let r: String = self
            .spill
            .key(keys.stock())
            .key(keys.given_back())
            .key(keys.outbox())
            .key(keys.stats())
            .key(keys.decisions())
            .arg(order)
            .arg(user)
            .arg(now)
            .arg(split.first(k))
            .arg(match call {
                Call::Spill => "spill",
                Call::Fence => "fence",
            })
            .arg(room_position.map(|p| p.to_string()).unwrap_or_default())
            .arg(self.deadline())
            .arg(client_net.unwrap_or_default())
            .invoke_async(&mut self.conn())
            .await?;
        match r.as_str() {
            "late" => Ok(None),
            "passed" => Ok(Some(Decision::Passed)),
            unit => unit
                .parse()
                .map(|u| Some(Decision::Took(u)))
                .map_err(|_| answer_error("spill script answered no unit number")),
        }
    }
}
