//! Caches of answers made once for many callers.
//!
//! - [`Bounded`]: a map of encoded answers bounded by the bytes it holds:
//!   when a new entry does not fit, arbitrary entries leave until it does.
//!   Both encoded-answer caches (the gRPC listings, the REST transcodings)
//!   are built on it.
//! - [`Recent`]: the newest value of each view, shared by the streams that
//!   start from it (watch snapshots, flagd sync configurations).

use std::{
    collections::HashMap,
    hash::Hash,
    sync::{Arc, Mutex, RwLock, Weak},
    time::{Duration, Instant},
};

/// The newest value of each key at its revision, shared by whoever asks for
/// that key at that revision: the value lives while someone holds it, and
/// [`Recent::GRACE`] after it was made, since the callers of a burst arrive
/// one after another, each often done with the value before the next asks.
/// A newer revision replaces it.
#[derive(Debug)]
pub struct Recent<K, V: ?Sized> {
    entries: Mutex<HashMap<K, Newest<V>>>,
}

#[derive(Debug)]
struct Newest<V: ?Sized> {
    revision: i64,
    value: Weak<V>,
    kept: Option<(Arc<V>, Instant)>,
}

impl<K: Hash + Eq + Clone, V: ?Sized> Default for Recent<K, V> {
    fn default() -> Self {
        Recent {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Clone, V: ?Sized> Recent<K, V> {
    /// How long the newest value of a key is kept after it was made.
    pub const GRACE: Duration = Duration::from_secs(5);

    /// The value of `key` at `revision`, if one is alive.
    pub fn get(&self, key: &K, revision: i64) -> Option<Arc<V>> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        Self::sweep(&mut entries);
        entries
            .get(key)
            .filter(|n| n.revision == revision)
            .and_then(|n| n.value.upgrade())
    }

    /// Keeps `value`, made at `revision`, as the newest of `key` (unless a
    /// newer one is there).
    pub fn put(&self, key: K, revision: i64, value: &Arc<V>) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.get(&key).is_some_and(|n| n.revision > revision) {
            return;
        }
        entries.insert(
            key,
            Newest {
                revision,
                value: Arc::downgrade(value),
                kept: Some((value.clone(), Instant::now() + Self::GRACE)),
            },
        );
    }

    /// Lets go of values kept past their grace, and forgets those nobody
    /// holds any more.
    fn sweep(entries: &mut HashMap<K, Newest<V>>) {
        let now = Instant::now();
        entries.retain(|_, n| {
            if n.kept.as_ref().is_some_and(|(_, until)| *until <= now) {
                n.kept = None;
            }
            n.kept.is_some() || n.value.strong_count() > 0
        });
    }
}

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
    fn the_newest_value_is_shared_while_held_and_replaced_by_a_newer_revision() {
        let recent: Recent<&str, str> = Recent::default();
        let v3: Arc<str> = Arc::from("at 3");
        recent.put("a", 3, &v3);
        assert!(Arc::ptr_eq(&recent.get(&"a", 3).unwrap(), &v3));
        assert!(recent.get(&"a", 4).is_none(), "another revision");
        assert!(recent.get(&"b", 3).is_none(), "another key");
        let v5: Arc<str> = Arc::from("at 5");
        recent.put("a", 5, &v5);
        recent.put("a", 4, &Arc::from("late"));
        assert!(recent.get(&"a", 3).is_none(), "replaced");
        assert!(recent.get(&"a", 4).is_none(), "an older one is not kept");
        assert_eq!(&*recent.get(&"a", 5).unwrap(), "at 5");
    }

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
