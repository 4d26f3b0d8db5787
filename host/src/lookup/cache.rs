//! Per-table cache of looked-up values: bounded in entries and in bytes, each entry
//! kept for the TTL, misses (a key the table does not have) cached like values.

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use bytes::Bytes;
use lru::LruCache;

/// Bytes an entry costs beyond its key and value (the map's own bookkeeping).
const ENTRY_OVERHEAD: usize = 64;

/// How much one table's cache may hold, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// How long a value (or a miss) is served without asking the table again; zero
    /// turns the cache off.
    pub ttl: Duration,
    /// Entries kept at most.
    pub entries: usize,
    /// Bytes of keys and values kept at most.
    pub bytes: usize,
}

struct Cached {
    /// `None`: the table has no such key.
    value: Option<Bytes>,
    expires: Instant,
}

/// One table's cache; the least recently used entries go first.
pub(super) struct Cache {
    limits: CacheLimits,
    entries: Option<LruCache<String, Cached>>,
    bytes: usize,
}

impl Cache {
    pub(super) fn new(limits: CacheLimits) -> Self {
        let entries = NonZeroUsize::new(limits.entries)
            .filter(|_| !limits.ttl.is_zero() && limits.bytes > 0)
            .map(LruCache::new);
        Self {
            limits,
            entries,
            bytes: 0,
        }
    }

    /// What the cache knows of `key` now: `Some(None)` is a cached miss.
    pub(super) fn get(&mut self, key: &str, now: Instant) -> Option<Option<Bytes>> {
        let entries = self.entries.as_mut()?;
        match entries.get(key) {
            Some(cached) if cached.expires > now => Some(cached.value.clone()),
            Some(_) => {
                if let Some((key, gone)) = entries.pop_entry(key) {
                    self.bytes -= cost(&key, &gone.value);
                }
                None
            }
            None => None,
        }
    }

    /// Keeps `value` for `key` (an entry larger than the whole cache is not kept).
    pub(super) fn put(&mut self, key: &str, value: Option<Bytes>, now: Instant) {
        let Some(entries) = self.entries.as_mut() else {
            return;
        };
        let size = cost(key, &value);
        if size > self.limits.bytes {
            return;
        }
        if let Some(old) = entries.pop(key) {
            self.bytes -= cost(key, &old.value);
        }
        while self.bytes + size > self.limits.bytes || entries.len() >= self.limits.entries {
            match entries.pop_lru() {
                Some((key, gone)) => self.bytes -= cost(&key, &gone.value),
                None => break,
            }
        }
        let expires = now + self.limits.ttl;
        entries.put(key.to_owned(), Cached { value, expires });
        self.bytes += size;
    }

    /// Entries and bytes held now.
    #[cfg(test)]
    fn held(&self) -> (usize, usize) {
        (self.entries.as_ref().map_or(0, LruCache::len), self.bytes)
    }
}

fn cost(key: &str, value: &Option<Bytes>) -> usize {
    key.len() + value.as_ref().map_or(0, Bytes::len) + ENTRY_OVERHEAD
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(entries: usize, bytes: usize) -> CacheLimits {
        CacheLimits {
            ttl: Duration::from_secs(60),
            entries,
            bytes,
        }
    }

    #[test]
    fn values_and_misses_are_served_until_they_expire() {
        let mut cache = Cache::new(limits(10, 10_000));
        let now = Instant::now();
        cache.put("u1", Some(Bytes::from_static(b"{}")), now);
        cache.put("u2", None, now);
        assert_eq!(cache.get("u1", now), Some(Some(Bytes::from_static(b"{}"))));
        assert_eq!(cache.get("u2", now), Some(None));
        assert_eq!(cache.get("u3", now), None);
        let later = now + Duration::from_secs(61);
        assert_eq!(cache.get("u1", later), None);
        assert_eq!(cache.held().0, 1, "the expired entry went");
    }

    #[test]
    fn the_least_recently_used_go_first_by_entries_and_by_bytes() {
        let now = Instant::now();
        let mut cache = Cache::new(limits(2, 10_000));
        cache.put("a", None, now);
        cache.put("b", None, now);
        cache.get("a", now);
        cache.put("c", None, now);
        assert_eq!(cache.get("b", now), None, "b was the least recently used");
        assert!(cache.get("a", now).is_some());
        // Bytes: two values of 100 fit in 2 * (100 + 1 + 64) bytes, a third evicts one.
        let mut cache = Cache::new(limits(100, 2 * 165));
        let value = Some(Bytes::from(vec![0u8; 100]));
        for key in ["a", "b", "c"] {
            cache.put(key, value.clone(), now);
        }
        assert_eq!(cache.held(), (2, 2 * 165));
        assert_eq!(cache.get("a", now), None);
        // Larger than the whole cache: not kept, nothing evicted for it.
        cache.put("big", Some(Bytes::from(vec![0u8; 1000])), now);
        assert_eq!(cache.held().0, 2);
    }

    #[test]
    fn a_zero_ttl_keeps_nothing() {
        let mut cache = Cache::new(CacheLimits {
            ttl: Duration::ZERO,
            ..limits(10, 10_000)
        });
        let now = Instant::now();
        cache.put("a", None, now);
        assert_eq!(cache.get("a", now), None);
    }
}
