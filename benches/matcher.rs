//! In-process tenant resolution with 10, 10 000 and 100 000 patterns, on one
//! core: lookups per second and the cost ratio of 100 000 to 10 patterns.
//!
//! Patterns: 50 % exact (`h{i}.acme{i}.example`), 30 % suffix wildcards
//! (`*.s{i}.example`), 20 % prefix wildcards (`p{i}.*`), plus a catch-all.
//! Keys: a fixed set of 65 536, a third exact hits, a third suffix hits two
//! labels deep, a sixth prefix hits, a sixth falling through to the catch-all;
//! the same key shapes for every size, so only the table size changes.
//!
//! Also the layered matcher a replica runs between merges: the same base with
//! 256 of its tenants changed since (the most before a merge), so every
//! lookup asks two matchers.
//!
//! `cargo bench --bench matcher`

use std::{hint::black_box, time::Instant};

use switchyard::tenant::{
    TenantRecord,
    matcher::{Layered, Matcher},
    pattern::normalize_key,
};

fn patterns(n: usize) -> Vec<TenantRecord> {
    let mut out: Vec<TenantRecord> = (0..n)
        .map(|i| {
            let p = match i % 10 {
                0..=4 => format!("h{i}.acme{i}.example"),
                5..=7 => format!("*.s{i}.example"),
                _ => format!("p{i}.*"),
            };
            TenantRecord {
                id: format!("t{i}"),
                patterns: vec![p],
                ..TenantRecord::default()
            }
        })
        .collect();
    out.push(TenantRecord {
        id: "fallback".into(),
        patterns: vec!["*".into()],
        ..TenantRecord::default()
    });
    out
}

fn keys(n: usize) -> Vec<String> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..65_536)
        .map(|k| {
            // Pick a pattern index of the right kind.
            let base = (next() as usize % n.max(10)) / 10 * 10;
            match k % 6 {
                0 | 1 => format!(
                    "h{base}.acme{base}.example",
                    base = (base).min(n.saturating_sub(10))
                ),
                2 | 3 => format!(
                    "api.eu.s{i}.example",
                    i = (base + 5).min(n.saturating_sub(5))
                ),
                4 => format!(
                    "p{i}.internal.example",
                    i = (base + 8).min(n.saturating_sub(2))
                ),
                _ => format!("unknown{k}.nowhere.example"),
            }
        })
        .collect()
}

/// A lookup, in a plain or a layered matcher.
trait Lookup {
    fn hit(&self, key: &str) -> bool;
}

impl Lookup for Matcher {
    fn hit(&self, key: &str) -> bool {
        self.lookup(key).is_some()
    }
}

impl Lookup for Layered {
    fn hit(&self, key: &str) -> bool {
        self.lookup(key).is_some()
    }
}

fn measure(m: &impl Lookup, keys: &[String], rounds: usize, normalize: bool) -> f64 {
    let start = Instant::now();
    let mut hits = 0usize;
    for _ in 0..rounds {
        for k in keys {
            let found = if normalize {
                let key = normalize_key(black_box(k)).expect("valid key");
                m.hit(&key)
            } else {
                m.hit(black_box(k))
            };
            hits += usize::from(found);
        }
    }
    black_box(hits);
    (rounds * keys.len()) as f64 / start.elapsed().as_secs_f64()
}

/// The median of `v` (not empty).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    const ROUNDS: usize = 10;
    // Memory latency on a shared VM drifts (by 2x over an hour here), so the
    // sizes are measured in turn, REPETITIONS times, and the cost ratio is the
    // median of the ratios of the same repetition, not of medians taken at
    // different times.
    const REPETITIONS: usize = 15;
    let sizes = [10usize, 10_000, 100_000];
    let cases: Vec<(Matcher, Vec<String>)> = sizes
        .iter()
        .map(|&n| (Matcher::build(patterns(n)), keys(n)))
        .collect();
    for (m, ks) in &cases {
        measure(m, ks, 3, true); // warm-up
    }
    // [repetition][size] = (lookup, normalise+lookup) per second.
    let mut runs = Vec::with_capacity(REPETITIONS);
    for _ in 0..REPETITIONS {
        let run: Vec<(f64, f64)> = cases
            .iter()
            .map(|(m, ks)| (measure(m, ks, ROUNDS, false), measure(m, ks, ROUNDS, true)))
            .collect();
        runs.push(run);
    }
    for (i, (&n, (m, ks))) in sizes.iter().zip(&cases).enumerate() {
        let checked = ks
            .iter()
            .filter(|k| m.lookup(k).is_some_and(|e| e.tenant.id != "fallback"))
            .count();
        let lookup = median(runs.iter().map(|r| r[i].0).collect());
        let full = median(runs.iter().map(|r| r[i].1).collect());
        println!(
            "{n:>7} patterns: lookup {:>6.2} M/s ({:>5.0} ns), normalise+lookup {:>6.2} M/s ({:>5.0} ns); {:.0} % of keys hit a tenant pattern",
            lookup / 1e6,
            1e9 / lookup,
            full / 1e6,
            1e9 / full,
            100.0 * checked as f64 / ks.len() as f64
        );
        // 256 tenants changed (their patterns re-written as they were).
        let changed: Vec<(String, Option<TenantRecord>)> = patterns(n)
            .into_iter()
            .step_by((n / 256).max(1))
            .take(256)
            .map(|t| (t.id.clone(), Some(t)))
            .collect();
        let layered = Layered::new(Matcher::build(patterns(n)), 0).with_changes(changed, 1);
        let layered_lookup = median(
            (0..5)
                .map(|_| measure(&layered, ks, ROUNDS, false))
                .collect(),
        );
        println!(
            "{n:>7} patterns, 256 tenants changed since the base: lookup {:>6.2} M/s ({:>5.0} ns)",
            layered_lookup / 1e6,
            1e9 / layered_lookup
        );
    }
    let last = sizes.len() - 1;
    let ratios = |f: fn(&(f64, f64)) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(|r| f(&r[0]) / f(&r[last])).collect();
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[0], v[v.len() - 1])
    };
    let (lookup, lookup_min, lookup_max) = ratios(|r| r.0);
    let (full, full_min, full_max) = ratios(|r| r.1);
    println!(
        "cost ratio 100 000 / 10 patterns, median of {REPETITIONS} side-by-side repetitions: lookup {lookup:.2} ({lookup_min:.2}-{lookup_max:.2}), normalise+lookup {full:.2} ({full_min:.2}-{full_max:.2})"
    );
}
