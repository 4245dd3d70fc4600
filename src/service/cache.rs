//! A map of encoded answers bounded by the bytes it holds: when a new entry
//! does not fit, arbitrary entries leave until it does. Both encoded-answer
//! caches (the gRPC listings, the REST transcodings) are built on it.

use std::{collections::HashMap, hash::Hash, sync::RwLock};

/// Entries `K → V`, each with its size, at most `max_bytes` in all.
#[derive(Debug)]
pub struct Bounded<K, V> {
    entries: RwLock<Entries<K, V>>,
    max_bytes: usize,
}

#[derive(Debug)]
struct Entries<K, V> {
    map: HashMap<K, (V, usize)>,
    bytes: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> Bounded<K, V> {
    /// An empty map holding at most `max_bytes`.
    pub fn new(max_bytes: usize) -> Self {
        Bounded {
            entries: RwLock::new(Entries {
                map: HashMap::new(),
                bytes: 0,
            }),
            max_bytes,
        }
    }

    /// The entry of `key`.
    pub fn get(&self, key: &K) -> Option<V> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        entries.map.get(key).map(|(v, _)| v.clone())
    }

    /// Puts `value` (`size` bytes) at `key` unless `keep_old` says the entry
    /// there is to stay; a value larger than the whole map is not kept.
    pub fn put(&self, key: K, value: V, size: usize, keep_old: impl FnOnce(&V) -> bool) {
        if size > self.max_bytes {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if let Some((old, n)) = entries.map.get(&key) {
            if keep_old(old) {
                return;
            }
            let n = *n;
            entries.bytes -= n;
            entries.map.remove(&key);
        }
        while entries.bytes + size > self.max_bytes {
            let Some(victim) = entries.map.keys().next().cloned() else {
                break;
            };
            if let Some((_, n)) = entries.map.remove(&victim) {
                entries.bytes -= n;
            }
        }
        entries.bytes += size;
        entries.map.insert(key, (value, size));
    }

    /// How many entries and bytes the map holds.
    pub fn usage(&self) -> (usize, usize) {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        (entries.map.len(), entries.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_map_stays_within_its_bytes() {
        let c = Bounded::new(10);
        for k in ["a", "b", "c", "d"] {
            c.put(k, k, 4, |_| false);
            assert!(c.usage().1 <= 10, "{:?}", c.usage());
        }
        assert_eq!(c.usage(), (2, 8));
        assert_eq!(c.get(&"d"), Some("d"));
        c.put("big", "big", 11, |_| false);
        assert_eq!(c.get(&"big"), None);
        c.put("d", "D", 3, |_| true);
        assert_eq!(c.get(&"d"), Some("d"));
        c.put("d", "D", 3, |_| false);
        assert_eq!(c.get(&"d"), Some("D"));
        assert_eq!(c.usage(), (2, 7));
    }
}
