//! Events' metadata as the process last read it, bounded: a client asking about ids that
//! do not exist cannot grow it past [`MAX_CACHED`] entries.

use crate::redis::EventMeta;
use flashgate_core::ids::EventId;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The most events kept. Unknown ids (negative entries) are dropped first when it fills,
/// so a flood of made-up ids costs one sweep per this many of them.
pub(crate) const MAX_CACHED: usize = 10_000;

/// Event id → when it was read and what (`None`: no such event).
#[derive(Default)]
pub(crate) struct EventCache {
    entries: HashMap<EventId, (Instant, Option<Arc<EventMeta>>)>,
}

impl EventCache {
    /// The event as read within `ttl`: `Some(None)` when it was known not to exist.
    pub(crate) fn get(&self, id: &EventId, ttl: Duration) -> Option<Option<Arc<EventMeta>>> {
        self.entries
            .get(id)
            .filter(|(at, _)| at.elapsed() < ttl)
            .map(|(_, meta)| meta.clone())
    }

    /// Keeps what was just read of `id`; when full, drops the unknown ids first, then
    /// everything (only with more than [`MAX_CACHED`] real events).
    pub(crate) fn insert(&mut self, id: EventId, meta: Option<Arc<EventMeta>>) {
        if self.entries.len() >= MAX_CACHED && !self.entries.contains_key(&id) {
            self.entries.retain(|_, (_, meta)| meta.is_some());
            if self.entries.len() >= MAX_CACHED {
                self.entries.clear();
            }
        }
        self.entries.insert(id, (Instant::now(), meta));
    }

    /// Forgets `id` (it changed).
    pub(crate) fn remove(&mut self, id: &EventId) {
        self.entries.remove(id);
    }

    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Arc<EventMeta> {
        Arc::new(EventMeta {
            name: "phone".into(),
            stock_total: 1,
            stock_left: 1,
            starts_at: 0,
            ends_at: 1,
            paused: false,
            room: None,
            stock_buckets: 1,
        })
    }

    #[test]
    fn made_up_ids_never_grow_it_past_its_cap_nor_push_out_real_events() {
        let mut cache = EventCache::default();
        let real = EventId::parse("phone-sale").expect("id");
        cache.insert(real.clone(), Some(meta()));
        for n in 0..200_000 {
            let id = EventId::parse(&format!("nope-{n}")).expect("id");
            cache.insert(id, None);
            assert!(cache.len() <= MAX_CACHED);
        }
        let hour = Duration::from_secs(3600);
        assert!(matches!(cache.get(&real, hour), Some(Some(_))));
        let recent = EventId::parse("nope-199999").expect("id");
        assert!(matches!(cache.get(&recent, hour), Some(None)));
        assert_eq!(cache.get(&recent, Duration::ZERO), None, "expired");
    }
}
