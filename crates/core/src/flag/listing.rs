//! Listings encoded once per version of their view: a transport keeps its
//! encoded `ListFlags` answers here, by request, and serves one again for as
//! long as the view it shows has not changed (another tenant's override, for
//! one, leaves it as it is).

use super::state::ViewTag;
use crate::service::cache::Bounded;

/// What an answer depends on besides the state: the request, once checked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListKey {
    /// The tenant whose view it is (`None`: values without overrides).
    pub tenant: Option<String>,
    /// The key the page starts after.
    pub after: String,
    /// The most flags on the page.
    pub size: usize,
    /// Whether definitions come with the values.
    pub with_definitions: bool,
}

/// An answer to a listing.
#[derive(Debug, Clone)]
pub enum Listed<E> {
    /// The caller's tag is the view's current one: nothing to send again.
    NotModified(ViewTag),
    /// The page, encoded, and the version of the view it shows.
    Page(ViewTag, E),
}

/// Encoded listings by request, each with the view version it shows.
#[derive(Debug)]
pub struct ListCache<E>(Bounded<ListKey, (ViewTag, E)>);

/// What the caches of one replica hold at most, in bytes of encodings.
pub const DEFAULT_CACHE_BYTES: usize = 32 * 1024 * 1024;

impl<E: Clone> ListCache<E> {
    /// An empty cache holding at most `max_bytes` of encodings.
    pub fn new(max_bytes: usize) -> ListCache<E> {
        ListCache(Bounded::new(max_bytes))
    }

    /// The encoded answer to `key` when it shows the view at `tag`.
    pub fn get(&self, key: &ListKey, tag: &ViewTag) -> Option<E> {
        self.0.get(key).and_then(|(t, e)| (t == *tag).then_some(e))
    }

    /// Keeps `encoded` (`size` bytes) as the answer to `key` at `tag`,
    /// unless a newer version's is there already (a slower call encoded an
    /// older one).
    pub fn put(&self, key: ListKey, tag: ViewTag, encoded: E, size: usize) {
        let revision = tag.revision;
        self.0.put(key, (tag, encoded), size, |(old, _)| {
            old.revision > revision
        });
    }

    /// How many answers and bytes the cache holds.
    pub fn usage(&self) -> (usize, usize) {
        self.0.usage()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(after: &str) -> ListKey {
        ListKey {
            tenant: None,
            after: after.into(),
            size: 10,
            with_definitions: false,
        }
    }

    fn tag(revision: i64) -> ViewTag {
        ViewTag {
            revision,
            etag: format!("\"{revision}\""),
        }
    }

    #[test]
    fn an_answer_is_served_only_for_the_version_it_shows() {
        let c = ListCache::new(100);
        c.put(key(""), tag(3), "three", 5);
        assert_eq!(c.get(&key(""), &tag(3)), Some("three"));
        assert_eq!(c.get(&key(""), &tag(4)), None);
        assert_eq!(c.get(&key("a"), &tag(3)), None);
        c.put(key(""), tag(4), "four", 4);
        assert_eq!(c.get(&key(""), &tag(4)), Some("four"));
        // An older encoding arriving late does not replace a newer one.
        c.put(key(""), tag(3), "three", 5);
        assert_eq!(c.get(&key(""), &tag(4)), Some("four"));
        assert_eq!(c.usage(), (1, 4));
    }
}
