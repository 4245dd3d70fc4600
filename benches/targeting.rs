//! Targeting, timed: server-side evaluation of a flag whose rule has five
//! clauses and a `fractional` split, against Unleash's own Rust engine
//! (crates.io `unleash-yggdrasil`) evaluating the equivalent toggle (five
//! constraints and a 50 % gradual rollout) in the same run and process; a
//! static flag's evaluation; and compiling 10 000 flags with rules.
//!
//! `cargo bench --bench targeting` (`TARGETING_ITERS` sets the evaluations
//! per round, default 200 000; five rounds, the median reported;
//! `TARGETING_ONLY=switchyard` times ours alone, for a profiler).

use std::{collections::HashMap, hint::black_box, time::Instant};

use serde_json::{Map, Value, json};
use switchyard::flag::{
    EnvOverrides, FlagDef, FlagType, Rule, Status, definition::parse_file, resolve,
};
use unleash_yggdrasil::{Context, EngineState, UpdateMessage};

const ROUNDS: usize = 5;

/// The five clauses, then the split.
fn rule() -> Value {
    json!({"if": [
        {"and": [
            {"==": [{"var": "country"}, "NO"]},
            {"in": [{"var": "plan"}, ["pro", "enterprise"]]},
            {"ends_with": [{"var": "email"}, "@example.com"]},
            {"sem_ver": [{"var": "version"}, ">", "1.9.9"]},
            {"in": [{"var": "tenantId"}, ["a", "b", "c"]]}
        ]},
        {"fractional": [["on", 50], ["off", 50]]},
        "off"
    ]})
}

/// The same toggle in Unleash: five constraints on a flexible rollout.
fn unleash() -> EngineState {
    let features = json!({"version": 2, "features": [{
        "name": "checkout",
        "enabled": true,
        "strategies": [{
            "name": "flexibleRollout",
            "parameters": {"rollout": "50", "stickiness": "userId", "groupId": "checkout"},
            "constraints": [
                {"contextName": "country", "operator": "IN", "values": ["NO"]},
                {"contextName": "plan", "operator": "IN", "values": ["pro", "enterprise"]},
                {"contextName": "email", "operator": "STR_ENDS_WITH", "values": ["@example.com"]},
                {"contextName": "version", "operator": "SEMVER_GT", "value": "1.9.9"},
                {"contextName": "tenantId", "operator": "IN", "values": ["a", "b", "c"]}
            ]
        }]
    }]});
    let mut engine = EngineState::default();
    let message: UpdateMessage =
        serde_json::from_value(features).expect("a client features document");
    if let Some(warnings) = engine.take_state(message) {
        panic!("unleash refused the toggle: {warnings:?}");
    }
    engine
}

/// `n` contexts that pass every clause (so both engines reach the split).
fn contexts(n: usize) -> Vec<(Map<String, Value>, Context)> {
    (0..n)
        .map(|i| {
            let key = format!("user-{i}");
            let ours = json!({"targetingKey": key, "country": "NO", "plan": "pro",
                "email": format!("u{i}@example.com"), "version": "2.1.0"});
            let props: HashMap<String, String> = [
                ("country", "NO".to_owned()),
                ("plan", "pro".to_owned()),
                ("email", format!("u{i}@example.com")),
                ("version", "2.1.0".to_owned()),
                ("tenantId", "a".to_owned()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
            let theirs = Context {
                user_id: Some(key),
                properties: Some(props),
                ..Context::default()
            };
            (ours.as_object().cloned().unwrap_or_default(), theirs)
        })
        .collect()
}

/// The median over [`ROUNDS`] of `iters` calls of `f`, in ns per call.
fn median_ns(iters: usize, mut f: impl FnMut(usize)) -> f64 {
    let mut rounds: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            for i in 0..iters {
                f(i);
            }
            start.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[ROUNDS / 2]
}

fn main() {
    let iters: usize = std::env::var("TARGETING_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let env = EnvOverrides::default();
    let mut def = FlagDef::legacy(
        "checkout".into(),
        FlagType::Bool,
        String::new(),
        json!(false),
        None,
    );
    def.variants = [
        ("on".to_owned(), json!(true)),
        ("off".to_owned(), json!(false)),
    ]
    .into();
    def.default_variant = Some("off".into());
    def.targeting = Some(Rule::compile(rule()).expect("the rule compiles"));
    let engine = unleash();
    let ctxs = contexts(
        std::env::var("TARGETING_CONTEXTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1024),
    );

    // Both engines answer alike: about half of the contexts are on.
    let ours_on = ctxs
        .iter()
        .filter(|(c, _)| {
            resolve(&env, &def, Some("a"), None, c, 0, None)
                .value
                .as_ref()
                == &json!(true)
        })
        .count();
    let theirs_on = ctxs
        .iter()
        .filter(|(_, c)| engine.is_enabled("checkout", c, &None))
        .count();
    println!("contexts on: switchyard {ours_on}/1024, unleash {theirs_on}/1024");

    let ours = median_ns(iters, |i| {
        let (c, _) = &ctxs[i % ctxs.len()];
        black_box(resolve(&env, &def, Some("a"), None, black_box(c), 0, None));
    });
    // `TARGETING_ONLY=switchyard`: ours alone (to profile it).
    let only_ours = std::env::var("TARGETING_ONLY").is_ok_and(|v| v == "switchyard");
    let theirs = median_ns(if only_ours { 1 } else { iters }, |i| {
        let (_, c) = &ctxs[i % ctxs.len()];
        black_box(engine.is_enabled("checkout", black_box(c), &None));
    });
    println!(
        "five clauses + fractional, per evaluation: switchyard {ours:.0} ns, unleash-yggdrasil {theirs:.0} ns (ratio {:.2}; goal <= 0.50)",
        ours / theirs
    );

    let static_def = FlagDef::legacy(
        "banner".into(),
        FlagType::String,
        String::new(),
        json!("hello"),
        Some(json!("hi")),
    );
    let empty = Map::new();
    let fixed = median_ns(iters, |_| {
        black_box(resolve(
            &env,
            &static_def,
            Some("a"),
            None,
            black_box(&empty),
            0,
            None,
        ));
    });
    println!("a static flag, per evaluation: switchyard {fixed:.0} ns");
    if only_ours {
        return;
    }

    // 10 000 flags with rules: parsing and compiling a flagd file, and
    // compiling the rules alone (what a replica does when it loads them).
    let flags: Map<String, Value> = (0..10_000)
        .map(|i| {
            (
                format!("flag-{i}"),
                json!({"state": "ENABLED", "variants": {"on": true, "off": false},
                       "defaultVariant": "off", "targeting": rule()}),
            )
        })
        .collect();
    let file = json!({"flags": flags});
    let start = Instant::now();
    let parsed = parse_file(&file, false).expect("the file parses").flags;
    let whole = start.elapsed();
    let start = Instant::now();
    for d in &parsed {
        black_box(
            Rule::compile(d.targeting.as_ref().expect("a rule").source().clone())
                .expect("compiles"),
        );
    }
    let rules = start.elapsed();
    assert!(parsed.iter().all(|d| d.status == Status::Enabled));
    println!(
        "10 000 flags with rules: file checked and compiled in {:.1} ms, rules compiled in {:.1} ms ({:.1} µs per flag)",
        whole.as_secs_f64() * 1e3,
        rules.as_secs_f64() * 1e3,
        rules.as_secs_f64() * 1e6 / 10_000.0
    );
}
