//! The in-process matcher: one hash map per pattern kind, probed most specific
//! first. A lookup costs one probe for the exact map, at most one per label for
//! each wildcard map, and one read of the catch-all, so it grows with the
//! number of labels in the key (at most 127), never with the number of tenants
//! or patterns.
//!
//! A matcher is immutable; changes build a new one that replaces the old one
//! atomically (see `Tenants::reload`).

use std::{collections::HashMap, sync::Arc};

use super::{TenantRecord, pattern::Pattern};

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

/// An immutable snapshot of every pattern.
#[derive(Debug, Default)]
pub struct Matcher {
    exact: HashMap<Box<str>, Entry>,
    suffix: HashMap<Box<str>, Entry>,
    prefix: HashMap<Box<str>, Entry>,
    catch_all: Option<Entry>,
    patterns: usize,
}

impl Matcher {
    /// Builds a matcher over `tenants` (their stored, normalised patterns).
    /// A pattern that does not parse is skipped with a warning; the store
    /// only ever holds parsed patterns.
    pub fn build(tenants: impl IntoIterator<Item = TenantRecord>) -> Matcher {
        let mut m = Matcher::default();
        for t in tenants {
            let tenant = Arc::new(t);
            for text in &tenant.patterns {
                let entry = Entry {
                    tenant: tenant.clone(),
                    pattern: Arc::from(text.as_str()),
                };
                match Pattern::parse(text, "pattern") {
                    Ok(Pattern::Exact(h)) => {
                        m.exact.insert(h.into_boxed_str(), entry);
                    }
                    Ok(Pattern::Suffix(f)) => {
                        m.suffix.insert(f.into_boxed_str(), entry);
                    }
                    Ok(Pattern::Prefix(f)) => {
                        m.prefix.insert(f.into_boxed_str(), entry);
                    }
                    Ok(Pattern::CatchAll) => m.catch_all = Some(entry),
                    Err(e) => {
                        tracing::warn!(pattern = %text, error = %e, "skipping a stored pattern that does not parse");
                        continue;
                    }
                }
                m.patterns += 1;
            }
        }
        m
    }

    /// Returns the most specific entry matching the normalised `key`.
    pub fn lookup(&self, key: &str) -> Option<&Entry> {
        if let Some(e) = self.exact.get(key) {
            return Some(e);
        }
        if !self.suffix.is_empty() {
            // Left to right: the suffix after the first dot is the longest.
            for (i, b) in key.bytes().enumerate() {
                if b == b'.'
                    && let Some(e) = self.suffix.get(&key[i + 1..])
                {
                    return Some(e);
                }
            }
        }
        if !self.prefix.is_empty() {
            // Right to left: the prefix before the last dot is the longest.
            for (i, b) in key.bytes().enumerate().rev() {
                if b == b'.'
                    && let Some(e) = self.prefix.get(&key[..i])
                {
                    return Some(e);
                }
            }
        }
        self.catch_all.as_ref()
    }

    /// Returns the number of patterns.
    pub fn len(&self) -> usize {
        self.patterns
    }

    /// Returns whether there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.patterns == 0
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

        /// Few labels, so random patterns and keys overlap often.
        fn label() -> impl Strategy<Value = String> {
            prop::sample::select(vec!["a", "b", "c", "ab", "x-y"]).prop_map(str::to_owned)
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
                for key in &keys {
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
