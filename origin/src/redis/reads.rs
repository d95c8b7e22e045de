//! What the API, the admin and `reconcile` read: an event, a buyer's order, counters.

use super::buckets::CLAIM;
use super::{Split, Store};
use flashgate_core::ids::{EventId, UserId};
use flashgate_core::room::settings::RoomSettings;
use flashgate_core::wire::OrderStatus;
use flashgate_core::Millis;
use redis::AsyncCommands;
use std::collections::HashMap;

/// The event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMeta {
    /// Display name.
    pub name: String,
    /// Units put on sale.
    pub stock_total: u64,
    /// Units left.
    pub stock_left: u64,
    /// Start.
    pub starts_at: Millis,
    /// End.
    pub ends_at: Millis,
    /// An operator paused the sale (`flashgate event pause`).
    pub paused: bool,
    /// The event's own room settings, if its spec gave some.
    pub room: Option<RoomSettings>,
    /// Its stock buckets (`core::stock_buckets`), at least 1.
    pub stock_buckets: u16,
}

impl EventMeta {
    /// How its stock is split.
    pub fn split(&self) -> Split {
        Split {
            total: self.stock_total,
            buckets: self.stock_buckets,
        }
    }
}

/// Counters of `GET /admin/events/{id}/stats`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Stats {
    /// Units put on sale.
    pub stock_total: u64,
    /// Units left.
    pub stock_left: u64,
    /// Reservations made.
    pub reserved: u64,
    /// Orders written to the orders table.
    pub confirmed: u64,
    /// Orders that could not be created.
    pub failed: u64,
    /// Units given back.
    pub compensated: u64,
    /// Reserved, neither confirmed nor failed yet.
    pub pending: u64,
}

impl Store {
    /// The event's info and stock, `None` when unknown.
    pub async fn event(&self, id: &EventId) -> redis::RedisResult<Option<EventMeta>> {
        let k = self.keys(id);
        let (info, stock): (HashMap<String, String>, Option<i64>) = redis::pipe()
            .hgetall(k.info())
            .get(k.stock())
            .query_async(&mut self.conn())
            .await?;
        let num = |f: &str| info.get(f).and_then(|v| v.parse::<i64>().ok());
        let stock_buckets = num("stock_buckets").map_or(1, |n| n.clamp(1, 1 << 15) as u16);
        let stock = match stock_buckets {
            1 => stock,
            n => Some(self.buckets_stock(id, n).await?),
        };
        let (Some(name), Some(total), Some(starts_at), Some(ends_at)) = (
            info.get("name"),
            num("stock_total"),
            num("starts_at"),
            num("ends_at"),
        ) else {
            return Ok(None);
        };
        Ok(Some(EventMeta {
            name: name.clone(),
            stock_total: total.max(0) as u64,
            stock_left: stock.unwrap_or(0).max(0) as u64,
            starts_at,
            ends_at,
            paused: num("paused").is_some_and(|p| p != 0),
            // Written by put_event from validated settings; one that no longer reads
            // (settings renamed since) counts as none, so the edge's defaults apply.
            room: info
                .get("room")
                .and_then(|r| serde_json::from_str::<RoomSettings>(r).ok())
                .filter(|r| r.validate().is_ok()),
            stock_buckets,
        }))
    }

    /// The units left in an event's `n` stock buckets: one read per bucket, all at once
    /// (each bucket is in its own slot).
    async fn buckets_stock(&self, id: &EventId, n: u16) -> redis::RedisResult<i64> {
        let reads = (0..n).map(|k| {
            let mut conn = self.conn();
            let stock = self.bucket_keys(id, k).stock();
            async move { conn.get::<_, Option<i64>>(stock).await }
        });
        let stocks = futures::future::try_join_all(reads).await?;
        Ok(stocks.into_iter().map(|s| s.unwrap_or(0).max(0)).sum())
    }

    /// The order the user holds for the event (what the reserve script answers as
    /// already purchased), if any.
    pub async fn order_of(
        &self,
        event: &EventId,
        split: Split,
        user: &UserId,
    ) -> redis::RedisResult<Option<String>> {
        let mark: Option<String> = self
            .conn()
            .hget(
                self.home_keys(event, split, user.as_str()).orders(),
                user.as_str(),
            )
            .await?;
        // A claim is a purchase in flight, not an order (core::stock_buckets).
        Ok(mark.filter(|m| !m.starts_with(CLAIM)))
    }

    /// The event's buyers (user → order id), or `None` when there are more than `max`.
    ///
    /// With them, their version as the reserve script gives it with `sold_out`, read in
    /// the same atomic step.
    pub async fn buyers(
        &self,
        event: &EventId,
        max: u64,
    ) -> redis::RedisResult<Option<(String, HashMap<String, String>)>> {
        let split = self.split(event).await?;
        if split.buckets > 1 {
            return self.buckets_buyers(event, split, max).await;
        }
        let k = self.keys(event);
        let mut conn = self.conn();
        let n: u64 = conn.hlen(k.orders()).await?;
        if n > max {
            return Ok(None);
        }
        let (reserved, buyers): (Option<u64>, HashMap<String, String>) = redis::pipe()
            .atomic()
            .hget(k.stats(), "reserved")
            .hgetall(k.orders())
            .query_async(&mut conn)
            .await?;
        let version = format!("{}:{}", reserved.unwrap_or(0), buyers.len());
        Ok(Some((version, buyers)))
    }

    /// The buyers of an event split into stock buckets, each bucket's read on its own (so
    /// not at one instant), under [`SPLIT_BUYERS_VERSION`](super::SPLIT_BUYERS_VERSION).
    async fn buckets_buyers(
        &self,
        event: &EventId,
        split: Split,
        max: u64,
    ) -> redis::RedisResult<Option<(String, HashMap<String, String>)>> {
        let mut buyers = HashMap::new();
        for k in self.stock_keys(event, split) {
            let marks: HashMap<String, String> = self.conn().hgetall(k.orders()).await?;
            buyers.extend(marks.into_iter().filter(|(_, m)| !m.starts_with(CLAIM)));
            if buyers.len() as u64 > max {
                return Ok(None);
            }
        }
        Ok(Some((super::SPLIT_BUYERS_VERSION.to_owned(), buyers)))
    }

    /// The user's order and its status.
    pub async fn order_status(
        &self,
        event: &EventId,
        split: Split,
        user: &UserId,
    ) -> redis::RedisResult<Option<(OrderStatus, String)>> {
        let v: Option<String> = self
            .conn()
            .hget(
                self.home_keys(event, split, user.as_str()).status(),
                user.as_str(),
            )
            .await?;
        Ok(v.and_then(|v| {
            let (status, order) = v.split_once(':')?;
            Some((OrderStatus::parse(status)?, order.to_owned()))
        }))
    }

    /// Every event id known to this prefix.
    pub async fn event_ids(&self) -> redis::RedisResult<Vec<EventId>> {
        let ids: Vec<String> = self.conn().smembers(self.events_key()).await?;
        Ok(ids.iter().filter_map(|s| EventId::parse(s).ok()).collect())
    }

    /// The admin counters of an event, `None` when unknown.
    pub async fn stats(&self, id: &EventId) -> redis::RedisResult<Option<Stats>> {
        Ok(self.event_and_stats(id).await?.map(|(_, stats)| stats))
    }

    /// The event and its admin counters (one read of each), `None` when unknown.
    pub async fn event_and_stats(
        &self,
        id: &EventId,
    ) -> redis::RedisResult<Option<(EventMeta, Stats)>> {
        let Some(meta) = self.event(id).await? else {
            return Ok(None);
        };
        let split = Split {
            total: meta.stock_total,
            buckets: meta.stock_buckets,
        };
        let mut c: HashMap<String, u64> = HashMap::new();
        for k in self.stock_keys(id, split) {
            let part: HashMap<String, u64> = self.conn().hgetall(k.stats()).await?;
            for (f, v) in part {
                *c.entry(f).or_default() += v;
            }
        }
        let get = |f: &str| c.get(f).copied().unwrap_or(0);
        let (reserved, confirmed, failed) = (get("reserved"), get("confirmed"), get("failed"));
        let stats = Stats {
            stock_total: meta.stock_total,
            stock_left: meta.stock_left,
            reserved,
            confirmed,
            failed,
            compensated: get("compensated"),
            pending: reserved.saturating_sub(confirmed + failed),
        };
        Ok(Some((meta, stats)))
    }
}
