//! What an edge isolate remembers between requests: event windows, ids the origin does
//! not know, sold-out marks and buyers.
//!
//! Clients choose the keys (any slug is a valid event id, anyone may buy), so every map
//! is [`Bounded`]: full, it drops stale entries first, then the least recently used, and
//! never forgets everyone at once.
//!
//! - Event windows: only events the origin answered 200 for, fresh for the event cache
//!   time. Public event info uses them only once the event has started (before that an
//!   admin may still change it).
//! - Unknown ids: the origin's 404, remembered for the not-found cache time, for event
//!   info and gating alike; so a flood of one made-up id reaches the origin once per that
//!   time, and a flood of distinct ones costs at most [`MAX_UNKNOWN`] entries.
//! - Sold-out marks: until a given time.
//! - Buyers: a 64-bit keyed hash of (event, user), not the two strings, so the most
//!   [`MAX_BUYERS`] cost a few megabytes. A collision can only make the edge forward a
//!   purchase it could have answered sold_out itself; the origin then answers.

use crate::admission::Window;
use crate::bounded::Bounded;
use crate::buyers::BuyerFilter;
use crate::ids::{EventId, UserId};
use crate::wire::EventInfo;
use crate::Millis;
use std::hash::{BuildHasher, RandomState};

/// Most events whose window an isolate remembers.
pub const MAX_EVENTS: usize = 10_000;
/// Most ids an isolate remembers the origin did not know.
pub const MAX_UNKNOWN: usize = 10_000;
/// Most sold-out marks an isolate remembers.
pub const MAX_SOLD_OUT: usize = 10_000;
/// Most (event, user) orders an isolate remembers.
pub const MAX_BUYERS: usize = 200_000;

/// An event as the edge needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedEvent {
    /// Start, unix ms.
    pub starts_at: Millis,
    /// End, unix ms.
    pub ends_at: Millis,
    /// The origin's answer.
    pub info: EventInfo,
}

impl CachedEvent {
    /// The window the admission rules need.
    pub fn window(&self) -> Window {
        Window {
            starts_at: self.starts_at,
            ends_at: self.ends_at,
        }
    }
}

/// Which remembered answers a lookup may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// Any fresh one (the gating of purchases and tickets).
    Any,
    /// A fresh window only once the event has started, and a fresh unknown id (public
    /// event info: before its start an admin may still change an event).
    Started,
}

/// What the isolate knows about an event id.
// Returned once per request and matched at once: boxing the window would allocate on
// every request for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Recall {
    /// A fresh window.
    Known(CachedEvent),
    /// The origin did not know it, less than the not-found cache time ago.
    Unknown,
    /// Nothing usable: ask the origin.
    Ask,
}

/// How long answers are remembered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ttl {
    /// An event window (`EVENT_CACHE_MS`).
    pub event_ms: Millis,
    /// An unknown id (`NOT_FOUND_CACHE_MS`).
    pub not_found_ms: Millis,
}

/// An isolate's memory.
#[derive(Debug, Clone)]
pub struct Memory {
    events: Bounded<EventId, (Millis, CachedEvent)>,
    unknown: Bounded<EventId, Millis>,
    sold_out: Bounded<EventId, Millis>,
    buyers: Bounded<u64, ()>,
    buyer_key: RandomState,
    /// The origin's filter of a sold-out event's buyers, until when it holds.
    buyer_filters: Bounded<EventId, (Millis, BuyerFilter)>,
}

impl Default for Memory {
    fn default() -> Self {
        Self::with_caps(MAX_EVENTS, MAX_UNKNOWN, MAX_SOLD_OUT, MAX_BUYERS)
    }
}

/// How many entries each map holds (for the edge's stats).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Sizes {
    /// Event windows.
    pub events: usize,
    /// Unknown ids.
    pub unknown: usize,
    /// Sold-out marks.
    pub sold_out: usize,
    /// Buyers.
    pub buyers: usize,
}

impl Memory {
    /// A memory with the given caps (the default uses the `MAX_*` constants).
    pub fn with_caps(events: usize, unknown: usize, sold_out: usize, buyers: usize) -> Self {
        Self {
            events: Bounded::new(events),
            unknown: Bounded::new(unknown),
            sold_out: Bounded::new(sold_out),
            buyers: Bounded::new(buyers),
            buyer_key: RandomState::new(),
            buyer_filters: Bounded::new(sold_out),
        }
    }

    /// What the isolate knows about `id` at `now`, as `usage` allows.
    ///
    /// ```
    /// use flashgate_core::isolate::{Memory, Recall, Ttl, Use};
    /// let id = flashgate_core::ids::EventId::parse("no-such-sale").unwrap();
    /// let ttl = Ttl { event_ms: 1000, not_found_ms: 2000 };
    /// let mut m = Memory::default();
    /// assert_eq!(m.event(&id, 0, ttl, Use::Started), Recall::Ask);
    /// m.remember(&id, None, 0, ttl);
    /// assert_eq!(m.event(&id, 1999, ttl, Use::Started), Recall::Unknown);
    /// assert_eq!(m.event(&id, 2000, ttl, Use::Started), Recall::Ask);
    /// ```
    pub fn event(&mut self, id: &EventId, now: Millis, ttl: Ttl, usage: Use) -> Recall {
        if let Some((at, w)) = self.events.get(id) {
            let fresh = now - at < ttl.event_ms;
            let usable = usage == Use::Any || now >= w.starts_at;
            if fresh && usable {
                return Recall::Known(w.clone());
            }
        }
        match self.unknown.get(id) {
            Some(until) if now < *until => Recall::Unknown,
            _ => Recall::Ask,
        }
    }

    /// Remembers the origin's answer about `id` at `now`: its window, or `None` for a 404.
    pub fn remember(&mut self, id: &EventId, window: Option<CachedEvent>, now: Millis, ttl: Ttl) {
        match window {
            Some(w) => {
                self.unknown.remove(id);
                self.events
                    .insert(id.clone(), (now, w), |(at, _)| now - at >= ttl.event_ms);
            }
            None => {
                self.events.remove(id);
                let until = now.saturating_add(ttl.not_found_ms);
                self.unknown
                    .insert(id.clone(), until, |until| now >= *until);
            }
        }
    }

    /// Remembers that `id` is sold out until `until`.
    pub fn mark_sold_out(&mut self, id: &EventId, until: Millis, now: Millis) {
        self.sold_out
            .insert(id.clone(), until, |until| now >= *until);
    }

    /// Whether the edge should answer sold_out for `id` itself at `now`.
    pub fn sold_out(&self, id: &EventId, now: Millis) -> bool {
        self.sold_out.peek(id).is_some_and(|until| now < *until)
    }

    fn buyer(&self, id: &EventId, user: &UserId) -> u64 {
        self.buyer_key.hash_one((id, user))
    }

    /// Remembers that the origin gave `user` an order for `id` (so a sold-out mark does
    /// not hide their `already_purchased`).
    pub fn record_buyer(&mut self, id: &EventId, user: &UserId) {
        let key = self.buyer(id, user);
        self.buyers.insert(key, (), |_| false);
    }

    /// Whether the isolate saw the origin give `user` an order for `id`, or the origin's
    /// filter of the sold-out event's buyers (see [`Memory::remember_buyers`]) may hold
    /// them.
    pub fn holds_order(&mut self, id: &EventId, user: &UserId) -> bool {
        let key = self.buyer(id, user);
        self.buyers.get(&key).is_some()
            || self
                .buyer_filters
                .peek(id)
                .is_some_and(|(_, f)| f.holds(user))
    }

    /// Keeps the origin's filter of `id`'s buyers until `until` (the sold-out mark's
    /// end), so a buyer whose order another isolate saw is forwarded, not told sold out.
    ///
    /// ```
    /// use flashgate_core::buyers::BuyerFilter;
    /// use flashgate_core::ids::{EventId, UserId};
    /// use flashgate_core::isolate::Memory;
    /// let (e, u) = (EventId::parse("phone").unwrap(), UserId::parse("alice").unwrap());
    /// let mut m = Memory::default();
    /// assert!(!m.holds_order(&e, &u));
    /// m.remember_buyers(&e, BuyerFilter::of(["alice"]), 2_000, 1_000);
    /// assert!(m.holds_order(&e, &u));
    /// assert!(!m.wants_buyers(&e, 1_500));
    /// assert!(m.wants_buyers(&e, 2_000));
    /// ```
    pub fn remember_buyers(
        &mut self,
        id: &EventId,
        filter: BuyerFilter,
        until: Millis,
        now: Millis,
    ) {
        self.buyer_filters
            .insert(id.clone(), (until, filter), |(until, _)| now >= *until);
    }

    /// Whether the isolate has no current filter of `id`'s buyers at `now`.
    pub fn wants_buyers(&self, id: &EventId, now: Millis) -> bool {
        self.buyer_filters
            .peek(id)
            .is_none_or(|(until, _)| now >= *until)
    }

    /// How many entries each map holds.
    pub fn sizes(&self) -> Sizes {
        Sizes {
            events: self.events.len(),
            unknown: self.unknown.len(),
            sold_out: self.sold_out.len(),
            buyers: self.buyers.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::EventState;

    const TTL: Ttl = Ttl {
        event_ms: 1000,
        not_found_ms: 3000,
    };

    fn id(s: &str) -> EventId {
        EventId::parse(s).expect("slug")
    }

    fn window(starts_at: Millis) -> CachedEvent {
        CachedEvent {
            starts_at,
            ends_at: starts_at + 60_000,
            info: EventInfo {
                event_id: "sale".into(),
                name: "sale".into(),
                stock_total: 5,
                stock_left: 5,
                starts_at: String::new(),
                ends_at: String::new(),
                server_time: String::new(),
                state: EventState::Upcoming,
                paused: false,
                room: None,
            },
        }
    }

    #[test]
    fn an_unknown_id_is_answered_from_memory_until_the_not_found_time() {
        let mut m = Memory::default();
        let x = id("made-up");
        m.remember(&x, None, 100, TTL);
        for usage in [Use::Any, Use::Started] {
            assert_eq!(m.event(&x, 100, TTL, usage), Recall::Unknown);
            assert_eq!(m.event(&x, 3099, TTL, usage), Recall::Unknown);
            assert_eq!(m.event(&x, 3100, TTL, usage), Recall::Ask);
        }
    }

    #[test]
    fn a_created_event_replaces_its_unknown_entry() {
        let mut m = Memory::default();
        let x = id("sale");
        m.remember(&x, None, 0, TTL);
        m.remember(&x, Some(window(0)), 10, TTL);
        assert_eq!(m.event(&x, 20, TTL, Use::Started), Recall::Known(window(0)));
        assert_eq!(m.sizes().unknown, 0);
        // And a deleted one its window.
        m.remember(&x, None, 30, TTL);
        assert_eq!(m.event(&x, 40, TTL, Use::Any), Recall::Unknown);
        assert_eq!(m.sizes().events, 0);
    }

    #[test]
    fn public_info_of_an_upcoming_event_is_always_asked() {
        let mut m = Memory::default();
        let x = id("soon");
        m.remember(&x, Some(window(500)), 0, TTL);
        assert_eq!(m.event(&x, 100, TTL, Use::Started), Recall::Ask);
        assert_eq!(m.event(&x, 100, TTL, Use::Any), Recall::Known(window(500)));
        assert_eq!(
            m.event(&x, 600, TTL, Use::Started),
            Recall::Known(window(500))
        );
        assert_eq!(m.event(&x, 1000, TTL, Use::Any), Recall::Ask, "stale");
    }

    #[test]
    fn a_flood_of_distinct_unknown_ids_is_bounded_and_keeps_live_events() {
        let mut m = Memory::default();
        let live = id("live-sale");
        m.remember(&live, Some(window(0)), 0, TTL);
        for i in 0..5 * MAX_UNKNOWN {
            let now = i as Millis / 10; // 10 made-up ids a millisecond
            m.remember(&id(&format!("made-up-{i}")), None, now, TTL);
            assert!(m.sizes().unknown <= MAX_UNKNOWN);
            if i % 1000 == 0 {
                let fresh_live = Some(window(0));
                m.remember(&live, fresh_live, now, TTL);
            }
        }
        let now = (5 * MAX_UNKNOWN) as Millis / 10;
        assert_eq!(m.sizes().events, 1);
        assert!(matches!(
            m.event(&live, now, TTL, Use::Any),
            Recall::Known(_)
        ));
        // The latest made-up ids are still answered from memory.
        let last = id(&format!("made-up-{}", 5 * MAX_UNKNOWN - 1));
        assert_eq!(m.event(&last, now, TTL, Use::Started), Recall::Unknown);
    }

    #[test]
    fn buyers_are_bounded_and_the_recent_ones_kept() {
        let mut m = Memory::with_caps(8, 8, 8, 1000);
        let sale = id("sale");
        let user = |i: usize| UserId::parse(&format!("u{i}")).expect("user id");
        for i in 0..5000 {
            m.record_buyer(&sale, &user(i));
            assert!(m.sizes().buyers <= 1000);
        }
        assert!(m.holds_order(&sale, &user(4999)));
        assert!(!m.holds_order(&sale, &user(0)));
        assert!(!m.holds_order(&id("other"), &user(4999)));
    }

    #[test]
    fn sold_out_marks_expire_and_are_bounded() {
        let mut m = Memory::with_caps(8, 8, 8, 8);
        for i in 0..100 {
            m.mark_sold_out(&id(&format!("sale-{i}")), i + 10, i);
            assert!(m.sizes().sold_out <= 8);
        }
        assert!(m.sold_out(&id("sale-99"), 108));
        assert!(!m.sold_out(&id("sale-99"), 109));
    }
}
