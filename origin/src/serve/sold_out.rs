//! The sold-out memo: a storm on a sold-out event is answered from memory, and a
//! buyer's retry still gets their order.

use crate::locks::lock;
use crate::redis::Store;
use flashgate_core::ids::EventId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A sold-out event's buyers: user id → order id.
pub(crate) type Buyers = Arc<HashMap<String, String>>;

/// The most buyers of a sold-out event a process keeps in memory; beyond, a purchase on
/// it reads the buyer's own order from Redis.
pub(crate) const MAX_BUYERS_KEPT: u64 = 50_000;

/// How long loaded buyers serve the memo's renewals before they are loaded again (a
/// compensated buyer may be answered already_purchased, and a buyer of a returned unit
/// through another process sold_out, for at most this long).
pub(crate) const BUYERS_FRESH: Duration = Duration::from_secs(10);

/// Memos unused this long are dropped with their buyers.
const MEMO_KEPT: Duration = Duration::from_secs(600);

/// What the process remembers of a sold-out event.
struct SoldOut {
    /// When Redis last said sold out (the memo holds for `sold_out_cache_ms` from then).
    at: Instant,
    buyers: Option<Buyers>,
    /// When `buyers` were read; `None` while no load has finished.
    loaded_at: Option<Instant>,
    /// The version of the buyers `buyers` holds (see `lua/reserve.lua`).
    version: String,
    /// A load is running.
    loading: bool,
}

/// The events recently seen sold out in Redis, for `ttl` (`sold_out_cache_ms`) each.
pub(crate) struct SoldOutMemo {
    ttl: Duration,
    memos: Arc<Mutex<HashMap<EventId, SoldOut>>>,
}

impl SoldOutMemo {
    /// An empty memo whose marks hold for `ttl`.
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            memos: Arc::default(),
        }
    }

    /// `Some` when `id` was seen sold out within `sold_out_cache_ms`, with its buyers (user
    /// → order id) once they are loaded (`None` before, or when there are more than
    /// [`MAX_BUYERS_KEPT`]).
    pub(crate) fn get(&self, id: &EventId) -> Option<Option<Buyers>> {
        let ttl = self.ttl;
        lock(&self.memos)
            .get(id)
            .filter(|memo| memo.at.elapsed() < ttl)
            .map(|memo| memo.buyers.clone())
    }

    /// Remembers that `id` is sold out (compensation may bring a unit back, so only for
    /// `sold_out_cache_ms`), and has its buyers loaded in the background, so that a buyer's
    /// retry is answered already_purchased without asking Redis. Renewals of the memo keep
    /// the buyers for [`BUYERS_FRESH`] (a storm does not reload them every second) while
    /// Redis gives the same `version` of them; a changed version (a compensation, a unit
    /// given back and sold again, through any process) drops them at once, and until they
    /// are loaded again each buyer's own order is read. One load runs at a time.
    pub(crate) fn mark(&self, store: &Store, id: &EventId, version: &str) {
        let ttl = self.ttl;
        let now = Instant::now();
        let mut memos = lock(&self.memos);
        memos.retain(|_, m| m.at.elapsed() < MEMO_KEPT.max(ttl));
        let memo = memos.entry(id.clone()).or_insert(SoldOut {
            at: now,
            buyers: None,
            loaded_at: None,
            version: String::new(),
            loading: false,
        });
        memo.at = now;
        if memo.loaded_at.is_some() && memo.version != version {
            memo.buyers = None;
            memo.loaded_at = None;
        }
        let fresh = memo.loaded_at.is_some_and(|t| t.elapsed() < BUYERS_FRESH);
        if fresh || memo.loading {
            return;
        }
        memo.loading = true;
        drop(memos);
        let (store, memos, id) = (store.clone(), self.memos.clone(), id.clone());
        tokio::spawn(async move {
            let loaded =
                tokio::time::timeout(Duration::from_secs(5), store.buyers(&id, MAX_BUYERS_KEPT))
                    .await;
            let mut memos = lock(&memos);
            if let Some(memo) = memos.get_mut(&id) {
                memo.loading = false;
                // If Redis did not answer, the next renewal tries again; `None` (too many
                // to keep) means buyers are read one by one.
                if let Ok(Ok(loaded)) = loaded {
                    let (version, buyers) = match loaded {
                        Some((version, buyers)) => (version, Some(Arc::new(buyers))),
                        None => (String::new(), None),
                    };
                    memo.buyers = buyers;
                    memo.version = version;
                    memo.loaded_at = Some(Instant::now());
                }
            }
        });
    }

    /// Forgets a sold-out mark (the event changed).
    pub(crate) fn clear(&self, id: &EventId) {
        lock(&self.memos).remove(id);
    }
}
