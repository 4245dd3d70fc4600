//! The in-process matcher: one hash map per pattern kind, probed most specific
//! first. A lookup costs one probe for the exact map, at most one per label for
//! each wildcard map, and one read of the catch-all, so it grows with the
//! number of labels in the key (at most 127), never with the number of tenants
//! or patterns.
//!
//! A matcher is immutable. A replica's is a [`Layered`] one: a large base and
//! a small matcher of the tenants changed since it was built, which each
//! tenant change rebuilds and swaps in atomically (`Tenants::apply_changes`);
//! the two are merged into a new base in the background now and then.

use std::{collections::HashMap, hash::BuildHasher, sync::Arc};

use super::{TenantRecord, pattern::Pattern};

/// The maps a lookup reads by tenant id: foldhash (seeded per process), not
/// SipHash.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// What a pattern maps to.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The tenant owning the pattern (disabled tenants included: their patterns
    /// keep claiming their keys, so those keys never fall through to another
    /// tenant's wildcard).
    pub tenant: Arc<TenantRecord>,
    /// The pattern as stored.
    pub pattern: Arc<str>,
}

/// Pattern kinds; each hashes with its own seed, so one filter serves all.
#[derive(Clone, Copy)]
enum Kind {
    Exact = 0,
    Suffix = 1,
    Prefix = 2,
}

const SEEDS: [u64; 3] = [
    0x243f_6a88_85a3_08d3,
    0x1319_8a2e_0370_7344,
    0xa409_3822_299f_31d0,
];

fn hash(kind: Kind, s: &str) -> u64 {
    foldhash::fast::FixedState::with_seed(SEEDS[kind as usize]).hash_one(s)
}

/// A slot of a [`Table`], 32 bytes, two to a cache line: the low 32 bits of
/// a fixed part's hash, its entry's index, and the part itself when it is at
/// most [`INLINE`] bytes (zero-padded: no host name holds a NUL), so that a
/// hit reads the slot's line and nothing else. A longer part keeps its first
/// [`LONG_HEAD`] bytes and the arena offset of the rest (which ends at a NUL
/// there), and its index has [`LONG`] set.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(32))]
struct Slot {
    tag: u32,
    index: u32,
    data: [u8; INLINE],
}

/// The longest fixed part held whole in its slot.
const INLINE: usize = 24;
/// The bytes of a longer part held in its slot.
const LONG_HEAD: usize = INLINE - 4;
/// Marks the index of a slot whose part is longer than [`INLINE`].
const LONG: u32 = 1 << 31;

const EMPTY: Slot = Slot {
    tag: 0,
    index: u32::MAX,
    data: [0; INLINE],
};

impl Slot {
    /// The slot of the fixed part `fixed` (its hash `h`, its arena offset
    /// `start`) for entry `index` (below [`LONG`]).
    fn new(h: u64, index: u32, fixed: &[u8], start: u32) -> Slot {
        let mut data = [0u8; INLINE];
        if fixed.len() <= INLINE {
            data[..fixed.len()].copy_from_slice(fixed);
            return Slot {
                tag: h as u32,
                index,
                data,
            };
        }
        data[..LONG_HEAD].copy_from_slice(&fixed[..LONG_HEAD]);
        data[LONG_HEAD..].copy_from_slice(&(start + LONG_HEAD as u32).to_le_bytes());
        Slot {
            tag: h as u32,
            index: index | LONG,
            data,
        }
    }

    fn is_empty(&self) -> bool {
        self.index == u32::MAX
    }

    /// The entry's index.
    fn entry(&self) -> u32 {
        self.index & !LONG
    }

    /// Whether the slot's part is `fixed` (no NUL in it), reading the rest
    /// of a long part in `arena`.
    fn holds(&self, fixed: &[u8], arena: &[u8]) -> bool {
        if self.index & LONG == 0 {
            if fixed.len() > INLINE {
                return false;
            }
            let mut padded = [0u8; INLINE];
            padded[..fixed.len()].copy_from_slice(fixed);
            return padded == self.data;
        }
        let Some((head, rest)) = fixed.split_at_checked(LONG_HEAD) else {
            return false;
        };
        if fixed.len() <= INLINE || *head != self.data[..LONG_HEAD] {
            return false;
        }
        let mut offset = [0u8; 4];
        offset.copy_from_slice(&self.data[LONG_HEAD..]);
        let start = u32::from_le_bytes(offset) as usize;
        arena
            .get(start..=start + rest.len())
            .is_some_and(|b| b[..rest.len()] == *rest && b[rest.len()] == 0)
    }
}

/// One pattern kind: its entries by the hash of their fixed part, in one
/// open-addressed array at most half full, probed linearly from the hash's
/// low bits (so a hit on a part of at most [`INLINE`] bytes reads one slot
/// line, nothing else; a longer one the arena too); the rare fixed parts
/// whose tag is another's go to `collided`.
#[derive(Debug, Default)]
struct Table {
    slots: Vec<Slot>,
    len: usize,
    collided: HashMap<Box<str>, u32>,
}

impl Table {
    fn is_empty(&self) -> bool {
        self.len == 0 && self.collided.is_empty()
    }

    /// The first slot with tag `tag`, if any.
    fn get(&self, tag: u32) -> Option<&Slot> {
        let mask = self.slots.len().checked_sub(1)?;
        let mut i = tag as usize & mask;
        loop {
            let s = &self.slots[i];
            if s.is_empty() {
                return None;
            }
            if s.tag == tag {
                return Some(s);
            }
            i = (i + 1) & mask;
        }
    }

    /// Puts `slot` in; the one already there when its tag is taken.
    fn insert(&mut self, slot: Slot) -> Result<(), Slot> {
        if let Some(existing) = self.get(slot.tag) {
            return Err(*existing);
        }
        if (self.len + 1) * 2 > self.slots.len() {
            let size = (self.slots.len() * 2).max(16);
            let old = std::mem::replace(&mut self.slots, vec![EMPTY; size]);
            for s in old.into_iter().filter(|s| !s.is_empty()) {
                self.place(s);
            }
        }
        self.place(slot);
        self.len += 1;
        Ok(())
    }

    fn place(&mut self, slot: Slot) {
        let mask = self.slots.len() - 1;
        let mut i = slot.tag as usize & mask;
        while !self.slots[i].is_empty() {
            i = (i + 1) & mask;
        }
        self.slots[i] = slot;
    }
}

/// An immutable snapshot of every pattern.
///
/// The layout is built for large tables: each table is one array of 32-byte
/// slots (a hash tag, the entry index, and the fixed part itself when it is
/// at most 24 bytes), entries sit in one vector and the longer parts' rests
/// in one arena, so a hit touches one slot line (and one arena line for a
/// long part) instead of scattered allocations. Before a table is probed, a
/// bit filter (16 bits per pattern, small enough to stay in a core's cache)
/// says whether the hash can be there at all; most probes of a lookup miss,
/// and the filter answers those without touching the tables.
#[derive(Debug)]
pub struct Matcher {
    tables: [Table; 3],
    tenants: Map<String, Arc<TenantRecord>>,
    /// Each tenant's number, in build order.
    ordinals: Map<String, u32>,
    entries: Vec<Entry>,
    /// The number of each entry's tenant.
    owners: Vec<u32>,
    /// The number of the catch-all's tenant.
    catch_all_owner: u32,
    /// `(start, len)` in `arena` of each entry's fixed part.
    fixed: Vec<(u32, u32)>,
    arena: String,
    catch_all: Option<Entry>,
    filter: Vec<u64>,
    filter_mask: u64,
}

impl Matcher {
    /// Builds a matcher over `tenants` (their stored, normalised patterns).
    /// A pattern that does not parse is skipped with a warning; the store
    /// only ever holds parsed patterns.
    pub fn build(tenants: impl IntoIterator<Item = TenantRecord>) -> Matcher {
        let mut m = Matcher {
            tables: Default::default(),
            tenants: Map::default(),
            ordinals: Map::default(),
            entries: Vec::new(),
            owners: Vec::new(),
            catch_all_owner: 0,
            fixed: Vec::new(),
            arena: String::new(),
            catch_all: None,
            filter: Vec::new(),
            filter_mask: 0,
        };
        let mut hashes = Vec::new();
        for t in tenants {
            let tenant = Arc::new(t);
            m.tenants.insert(tenant.id.clone(), tenant.clone());
            let ordinal = u32::try_from(m.ordinals.len()).unwrap_or(u32::MAX);
            m.ordinals.insert(tenant.id.clone(), ordinal);
            for text in &tenant.patterns {
                let entry = Entry {
                    tenant: tenant.clone(),
                    pattern: Arc::from(text.as_str()),
                };
                let (kind, fixed) = match Pattern::parse(text, "pattern") {
                    Ok(Pattern::Exact(h)) => (Kind::Exact, h),
                    Ok(Pattern::Suffix(f)) => (Kind::Suffix, f),
                    Ok(Pattern::Prefix(f)) => (Kind::Prefix, f),
                    Ok(Pattern::CatchAll) => {
                        m.catch_all = Some(entry);
                        m.catch_all_owner = ordinal;
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(pattern = %text, error = %e, "skipping a stored pattern that does not parse");
                        continue;
                    }
                };
                // Indexes stay below the slots' LONG mark.
                let (Some(index), Ok(start), Ok(len)) = (
                    u32::try_from(m.entries.len()).ok().filter(|&i| i < LONG),
                    u32::try_from(m.arena.len()),
                    u32::try_from(fixed.len()),
                ) else {
                    tracing::error!("more than 4 GiB of patterns; ignoring the rest");
                    break;
                };
                let h = hash(kind, &fixed);
                hashes.push(h);
                m.arena.push_str(&fixed);
                // The end of the part: no host name holds a NUL.
                m.arena.push('\0');
                m.fixed.push((start, len));
                m.entries.push(entry);
                m.owners.push(ordinal);
                let slot = Slot::new(h, index, fixed.as_bytes(), start);
                if let Err(other) = m.tables[kind as usize].insert(slot)
                    && m.fixed_of(other.entry()) != fixed
                {
                    m.tables[kind as usize]
                        .collided
                        .insert(fixed.into_boxed_str(), index);
                }
            }
        }
        let bits = (hashes.len() * 16).next_power_of_two().max(1024);
        m.filter = vec![0u64; bits / 64];
        m.filter_mask = bits as u64 - 1;
        for h in &hashes {
            let bit = h & m.filter_mask;
            m.filter[(bit / 64) as usize] |= 1 << (bit % 64);
        }
        m.entries.shrink_to_fit();
        m.arena.shrink_to_fit();
        m
    }

    fn fixed_of(&self, index: u32) -> &str {
        let (start, len) = self.fixed[index as usize];
        &self.arena[start as usize..(start + len) as usize]
    }

    fn probe(&self, kind: Kind, fixed: &str) -> Option<&Entry> {
        self.probe_index(kind, fixed, hash(kind, fixed))
            .map(|i| &self.entries[i as usize])
    }

    /// The index of the entry of `fixed` (whose hash is `h`), if any.
    fn probe_index(&self, kind: Kind, fixed: &str, h: u64) -> Option<u32> {
        let bit = h & self.filter_mask;
        if self.filter[(bit / 64) as usize] & (1 << (bit % 64)) == 0 {
            return None;
        }
        let table = &self.tables[kind as usize];
        let index = match table.get(h as u32) {
            Some(slot) if slot.holds(fixed.as_bytes(), self.arena.as_bytes()) => slot.entry(),
            _ if table.collided.is_empty() => return None,
            _ => *table.collided.get(fixed)?,
        };
        Some(index)
    }

    /// Returns the most specific entry matching the normalised `key`.
    pub fn lookup(&self, key: &str) -> Option<&Entry> {
        search(
            key,
            self.has(Kind::Suffix),
            self.has(Kind::Prefix),
            |kind, fixed| self.probe(kind, fixed),
        )
        .or(self.catch_all.as_ref())
    }

    fn has(&self, kind: Kind) -> bool {
        !self.tables[kind as usize].is_empty()
    }

    /// Every tenant, patterns or not.
    pub fn tenants(&self) -> impl Iterator<Item = &Arc<TenantRecord>> {
        self.tenants.values()
    }

    /// Returns the tenant with `id`, patterns or not.
    pub fn tenant(&self, id: &str) -> Option<&Arc<TenantRecord>> {
        self.tenants.get(id)
    }

    /// Returns the number of patterns.
    pub fn len(&self) -> usize {
        self.entries.len() + usize::from(self.catch_all.is_some())
    }

    /// Returns whether there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Probes the places a pattern matching `key` could be, most specific first
/// (the exact key, suffixes longest first, prefixes longest first; not the
/// catch-all), and returns the first entry `probe` finds.
fn search<'a>(
    key: &str,
    suffixes: bool,
    prefixes: bool,
    mut probe: impl FnMut(Kind, &str) -> Option<&'a Entry>,
) -> Option<&'a Entry> {
    if let Some(e) = probe(Kind::Exact, key) {
        return Some(e);
    }
    if suffixes {
        // Left to right: the suffix after the first dot is the longest.
        for (i, b) in key.bytes().enumerate() {
            if b == b'.'
                && let Some(e) = probe(Kind::Suffix, &key[i + 1..])
            {
                return Some(e);
            }
        }
    }
    if prefixes {
        // Right to left: the prefix before the last dot is the longest.
        for (i, b) in key.bytes().enumerate().rev() {
            if b == b'.'
                && let Some(e) = probe(Kind::Prefix, &key[..i])
            {
                return Some(e);
            }
        }
    }
    None
}

/// The matcher of a replica: a large base, built off the hot path, and the
/// tenants changed since, in a small matcher of their own that each tenant
/// write rebuilds. A lookup asks both, pattern place by pattern place, and
/// skips the base's entries of changed tenants; the answer is the one a
/// matcher built over everything would give (a pattern belongs to one tenant).
#[derive(Debug)]
pub struct Layered {
    base: Arc<Matcher>,
    /// Every tenant changed since `base` was built: its record now (`None`:
    /// deleted) and the sequence number of the change that brought it.
    changed: Map<String, (u64, Option<Arc<TenantRecord>>)>,
    /// The patterns of the changed tenants that exist.
    delta: Matcher,
    /// One bit per base tenant number: set when the tenant changed, so its
    /// base entries no longer count.
    stale: Vec<u64>,
    /// Which full load the base descends from.
    epoch: u64,
}

impl Layered {
    /// A matcher of `base` alone, from full load `epoch`.
    pub fn new(base: Matcher, epoch: u64) -> Layered {
        Layered {
            base: Arc::new(base),
            changed: Map::default(),
            delta: Matcher::build([]),
            stale: Vec::new(),
            epoch,
        }
    }

    /// Returns the most specific entry matching the normalised `key`.
    pub fn lookup(&self, key: &str) -> Option<&Entry> {
        if self.changed.is_empty() {
            return self.base.lookup(key);
        }
        let live = |owner: u32| {
            self.stale
                .get(owner as usize / 64)
                .is_none_or(|w| w & (1 << (owner % 64)) == 0)
        };
        let (base, delta) = (&*self.base, &self.delta);
        search(
            key,
            base.has(Kind::Suffix) || delta.has(Kind::Suffix),
            base.has(Kind::Prefix) || delta.has(Kind::Prefix),
            |kind, fixed| {
                // One hash for both: they hash alike.
                let h = hash(kind, fixed);
                if let Some(i) = delta.probe_index(kind, fixed, h) {
                    return Some(&delta.entries[i as usize]);
                }
                let i = base.probe_index(kind, fixed, h)?;
                live(base.owners[i as usize]).then(|| &base.entries[i as usize])
            },
        )
        .or(delta.catch_all.as_ref())
        .or_else(|| {
            base.catch_all
                .as_ref()
                .filter(|_| live(base.catch_all_owner))
        })
    }

    /// Returns the tenant with `id`, patterns or not.
    pub fn tenant(&self, id: &str) -> Option<&Arc<TenantRecord>> {
        match self.changed.get(id) {
            Some((_, t)) => t.as_ref(),
            None => self.base.tenant(id),
        }
    }

    /// The number of patterns.
    pub fn len(&self) -> usize {
        let stale: usize = self
            .changed
            .keys()
            .filter_map(|id| self.base.tenant(id))
            .map(|t| t.patterns.len())
            .sum();
        self.base.len() + self.delta.len() - stale.min(self.base.len())
    }

    /// Whether there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many tenants changed since the base was built, and how many
    /// patterns the small matcher holds.
    pub fn pending(&self) -> (usize, usize) {
        (self.changed.len(), self.delta.len())
    }

    /// Which full load the base descends from.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// This matcher with `records` (each tenant's record now, `None` when it
    /// no longer exists) applied as change `seq`: the small matcher is
    /// rebuilt, the base is shared.
    pub fn with_changes(&self, records: Vec<(String, Option<TenantRecord>)>, seq: u64) -> Layered {
        let mut changed = self.changed.clone();
        for (id, r) in records {
            changed.insert(id, (seq, r.map(Arc::new)));
        }
        self.over(self.base.clone(), changed)
    }

    fn over(
        &self,
        base: Arc<Matcher>,
        changed: Map<String, (u64, Option<Arc<TenantRecord>>)>,
    ) -> Layered {
        let delta = Matcher::build(changed.values().filter_map(|(_, t)| t.as_deref().cloned()));
        let mut stale = vec![0u64; base.ordinals.len().div_ceil(64)];
        for n in changed.keys().filter_map(|id| base.ordinals.get(id)) {
            stale[*n as usize / 64] |= 1 << (n % 64);
        }
        Layered {
            base,
            changed,
            delta,
            stale,
            epoch: self.epoch,
        }
    }

    /// One matcher over everything, and the last change it holds. It costs
    /// what a full build does: call it off the async workers.
    pub fn merged(&self) -> (Matcher, u64) {
        let upto = self.changed.values().map(|(s, _)| *s).max().unwrap_or(0);
        let unchanged = self
            .base
            .tenants()
            .filter(|t| !self.changed.contains_key(&t.id))
            .map(|t| (**t).clone());
        let changed = self
            .changed
            .values()
            .filter_map(|(_, t)| t.as_deref().cloned());
        (Matcher::build(unchanged.chain(changed)), upto)
    }

    /// `merged` (holding every change up to `upto`) as the new base, with the
    /// changes since in the small matcher.
    pub fn rebased(&self, merged: Matcher, upto: u64) -> Layered {
        let later = self
            .changed
            .iter()
            .filter(|(_, (s, _))| *s > upto)
            .map(|(id, v)| (id.clone(), v.clone()))
            .collect();
        self.over(Arc::new(merged), later)
    }
}

/// The patterns that could match `key`, for a database lookup without the
/// matcher: the key itself, `*.<suffix>` for each suffix, `<prefix>.*` for each
/// prefix, and `*`.
pub fn candidate_patterns(key: &str) -> Vec<String> {
    let mut out = vec![key.to_owned(), "*".to_owned()];
    for (i, b) in key.bytes().enumerate() {
        if b == b'.' {
            out.push(format!("*.{}", &key[i + 1..]));
            out.push(format!("{}.*", &key[..i]));
        }
    }
    out
}

/// Picks the most specific of `found` (pattern text, value) pairs.
pub fn most_specific<T>(found: Vec<(String, T)>) -> Option<(String, T)> {
    found
        .into_iter()
        .filter_map(|(p, v)| {
            Pattern::parse(&p, "pattern")
                .ok()
                .map(|parsed| (parsed.rank(), p, v))
        })
        .max_by_key(|(rank, _, _)| *rank)
        .map(|(_, p, v)| (p, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(id: &str, patterns: &[&str]) -> TenantRecord {
        TenantRecord {
            id: id.into(),
            patterns: patterns.iter().map(|p| p.to_string()).collect(),
            ..TenantRecord::default()
        }
    }

    /// Two parts whose hashes share their low 32 bits meet at the same
    /// slot; the slot's bytes (and a long part's rest) tell them apart.
    #[test]
    fn a_slot_tells_its_part_from_any_other_with_the_same_tag() {
        let arena = b"abcdefghijklmnopqrstuvwxyz.example\0";
        let long = &arena[..arena.len() - 1];
        let slot = Slot::new(7, 3, long, 0);
        assert_eq!(slot.entry(), 3);
        assert!(slot.holds(long, arena));
        let refuses = |slot: &Slot, others: &[&[u8]]| {
            for other in others {
                assert!(
                    !slot.holds(other, arena),
                    "{}",
                    String::from_utf8_lossy(other)
                );
            }
        };
        refuses(
            &slot,
            &[
                b"abcdefghijklmnopqrstuvwxyz.exampl",
                b"abcdefghijklmnopqrstuvwxyz.examplee",
                b"abcdefghijklmnopqrstuvwxyz.exbmple",
                b"abcdefghijklmnopqrstuvwx",
                b"abcdefghijklmnopqrst",
            ],
        );
        let whole = Slot::new(7, 1, b"abcdefghijklmnopqrstuvwx", 0);
        assert!(whole.holds(b"abcdefghijklmnopqrstuvwx", arena));
        refuses(
            &whole,
            &[
                b"abcdefghijklmnopqrstuvw",
                b"abcdefghijklmnopqrstuvwxy",
                b"abcdefghijklmnopqrstuvwxyz.example",
            ],
        );
    }

    #[test]
    fn precedence_is_exact_then_longest_suffix_then_longest_prefix_then_catch_all() {
        let m = Matcher::build([
            tenant("exact", &["api.acme.example"]),
            tenant("long-suffix", &["*.eu.acme.example"]),
            tenant("short-suffix", &["*.example"]),
            tenant("long-prefix", &["acme.eu.*"]),
            tenant("short-prefix", &["acme.*"]),
            tenant("all", &["*"]),
        ]);
        let who = |k: &str| m.lookup(k).map(|e| e.tenant.id.clone());
        assert_eq!(who("api.acme.example").as_deref(), Some("exact"));
        assert_eq!(who("x.eu.acme.example").as_deref(), Some("long-suffix"));
        assert_eq!(who("x.acme.example").as_deref(), Some("short-suffix"));
        assert_eq!(who("acme.eu.internal").as_deref(), Some("long-prefix"));
        assert_eq!(who("acme.internal").as_deref(), Some("short-prefix"));
        assert_eq!(who("other").as_deref(), Some("all"));
        assert_eq!(
            m.lookup("acme.eu.example").map(|e| &*e.pattern),
            Some("*.example")
        );
    }

    #[test]
    fn candidates_cover_every_pattern_that_matches() {
        let key = "a.b.c";
        let c = candidate_patterns(key);
        for p in ["a.b.c", "*.b.c", "*.c", "a.b.*", "a.*", "*"] {
            assert!(c.contains(&p.to_string()), "{p}");
        }
    }

    mod property {
        use proptest::prelude::*;

        use super::super::*;
        use crate::tenant::pattern::Pattern;

        /// Few labels, so random patterns and keys overlap often; two long
        /// ones with a common start, so that fixed parts are held whole in
        /// their slots or not, and long ones share their slots' first bytes.
        fn label() -> impl Strategy<Value = String> {
            prop::sample::select(vec![
                "a",
                "b",
                "c",
                "ab",
                "x-y",
                "abcdefghijklmnopqrstuvw",
                "abcdefghijklmnopqrstuvwxyz",
            ])
            .prop_map(str::to_owned)
        }

        fn host() -> impl Strategy<Value = String> {
            prop::collection::vec(label(), 1..5).prop_map(|l| l.join("."))
        }

        fn pattern() -> impl Strategy<Value = String> {
            prop_oneof![
                host(),
                host().prop_map(|h| format!("*.{h}")),
                host().prop_map(|h| format!("{h}.*")),
                Just("*".to_owned()),
            ]
        }

        /// The reference: try every pattern, keep the highest rank.
        fn reference<'a>(patterns: &'a [(String, String)], key: &str) -> Option<&'a str> {
            patterns
                .iter()
                .filter_map(|(p, t)| {
                    let parsed = Pattern::parse(p, "p").ok()?;
                    parsed.matches(key).then_some((parsed.rank(), t.as_str()))
                })
                .max_by_key(|(rank, _)| *rank)
                .map(|(_, t)| t)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]
            #[test]
            fn matcher_agrees_with_the_reference(
                raw in prop::collection::btree_set(pattern(), 0..25),
                keys in prop::collection::vec(host(), 1..20),
            ) {
                // One tenant per pattern, so the tenant names the pattern.
                let patterns: Vec<(String, String)> = raw
                    .into_iter()
                    .enumerate()
                    .map(|(i, p)| (p, format!("t{i}")))
                    .collect();
                let m = Matcher::build(patterns.iter().map(|(p, t)| TenantRecord {
                    id: t.clone(),
                    patterns: vec![p.clone()],
                    ..TenantRecord::default()
                }));
                // The same answers from a layered matcher that got half of
                // the tenants (and a deleted one) as changes after its base.
                let (first, second) = patterns.split_at(patterns.len() / 2);
                let record = |(p, t): &(String, String)| TenantRecord {
                    id: t.clone(),
                    patterns: vec![p.clone()],
                    ..TenantRecord::default()
                };
                let mut base: Vec<TenantRecord> = first.iter().map(record).collect();
                base.push(TenantRecord {
                    id: "gone".into(),
                    patterns: second.first().map(|(p, _)| p.clone()).into_iter().collect(),
                    ..TenantRecord::default()
                });
                let layered = Layered::new(Matcher::build(base), 0).with_changes(
                    second
                        .iter()
                        .map(|pt| (pt.1.clone(), Some(record(pt))))
                        .chain([("gone".to_owned(), None)])
                        .collect(),
                    1,
                );
                let (merged, upto) = layered.merged();
                prop_assert_eq!(upto, 1);
                let rebased = layered.rebased(merged, upto);
                prop_assert_eq!(rebased.pending(), (0, 0));
                for key in &keys {
                    for l in [&layered, &rebased] {
                        let got = l.lookup(key).map(|e| e.tenant.id.as_str());
                        prop_assert_eq!(got, reference(&patterns, key), "layered, key {}", key);
                    }
                    prop_assert_eq!(layered.len(), m.len());
                    let got = m.lookup(key).map(|e| e.tenant.id.as_str());
                    prop_assert_eq!(got, reference(&patterns, key), "key {}", key);
                    // The database path picks the same answer from its candidates.
                    let candidates = candidate_patterns(key);
                    let found: Vec<(String, String)> = patterns
                        .iter()
                        .filter(|(p, _)| candidates.contains(p))
                        .cloned()
                        .collect();
                    let db = most_specific(found).map(|(_, t)| t);
                    prop_assert_eq!(db.as_deref(), reference(&patterns, key), "db path, key {}", key);
                }
            }
        }
    }
}
