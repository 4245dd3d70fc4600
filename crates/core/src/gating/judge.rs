//! The judges: pure functions from statistics and rules to checks and a
//! verdict. `CompareCanary`, `EvaluateSmoke` and the CLI all call these, so a
//! verdict is the same wherever it is given.
//!
//! Verdicts, from the strongest: NO_DATA (no requests on a side), then
//! INCONCLUSIVE (fewer than the minimum on a side, or a value that is not a
//! number), then FAIL (a check failed), else PASS. So more samples, a faster
//! or a less failing canary can only move a verdict towards PASS, never away
//! from it, and nothing that is not a number passes.

use std::collections::BTreeMap;

use super::report::{
    CanaryCheck, CanaryRules, CheckLimit, CheckSamples, Classification, ThresholdCheck,
    TrafficStats, Verdict, VerdictBlock,
};
use crate::error::{Error, Result};

/// Checks that `s` (named `field` in errors) could have been measured: no
/// negative or non-finite number, no more errors (or OKs) than requests, an
/// error rate within [0, 1], and figures that agree with one another and are
/// there when the counts say they must be (see [`validate_consistency`]).
pub fn validate_stats(field: &str, s: &TrafficStats) -> Result<()> {
    for (name, v) in [("count", s.count), ("ok", s.ok), ("errors", s.errors)] {
        if v < 0 {
            return Err(Error::invalid_argument(
                &format!("{field}.{name}"),
                "must not be negative",
            ));
        }
    }
    if s.errors > s.count {
        return Err(Error::invalid_argument(
            &format!("{field}.errors"),
            format!("{} is more than {field}.count {}", s.errors, s.count),
        ));
    }
    if s.ok > s.count {
        return Err(Error::invalid_argument(
            &format!("{field}.ok"),
            format!("{} is more than {field}.count {}", s.ok, s.count),
        ));
    }
    for (name, v) in s.latency_ms.named() {
        check_number(&format!("{field}.latency_ms.{name}"), v, "ms")?;
    }
    for (name, v) in [("rps", s.rps), ("duration_s", s.duration_s)] {
        check_number(&format!("{field}.{name}"), v, "")?;
    }
    check_ratio(&format!("{field}.error_rate"), s.error_rate)?;
    validate_consistency(field, s)?;
    for (map, name) in [
        (&s.status_code_distribution, "status_code_distribution"),
        (&s.error_distribution, "error_distribution"),
    ] {
        if let Some((k, v)) = map.iter().find(|(_, v)| **v < 0) {
            return Err(Error::invalid_argument(
                &format!("{field}.{name}[{k:?}]"),
                format!("{v} must not be negative"),
            ));
        }
        if map.len() > 100 {
            return Err(Error::invalid_argument(
                &format!("{field}.{name}"),
                "at most 100 entries",
            ));
        }
    }
    Ok(())
}

/// Figures that disagree, or are missing where the counts say there must be
/// some, are refused rather than judged (a missing p95 reads as 0 ms, which
/// would pass any threshold). A zero is "not given" for `ok` (then `count -
/// errors`) and for `error_rate` (then `errors / count`), so a document
/// naming only `count` and `errors` is complete; but requests must be either
/// OK or failed, a given error rate must be `errors / count`, and requests
/// that were answered must come with their p95.
fn validate_consistency(field: &str, s: &TrafficStats) -> Result<()> {
    if s.count == 0 {
        return Ok(());
    }
    if s.ok == 0 && s.errors == 0 {
        return Err(Error::invalid_argument(
            &format!("{field}.ok"),
            format!(
                "{field}.count is {} but neither ok nor errors counts any request",
                s.count
            ),
        ));
    }
    if s.ok > 0 && i64::from(s.ok) + i64::from(s.errors) != i64::from(s.count) {
        return Err(Error::invalid_argument(
            &format!("{field}.ok"),
            format!(
                "ok {} and errors {} do not add up to count {}",
                s.ok, s.errors, s.count
            ),
        ));
    }
    let observed = s.observed_error_rate();
    if s.error_rate != 0.0 && (s.error_rate - observed).abs() > 1e-6 {
        return Err(Error::invalid_argument(
            &format!("{field}.error_rate"),
            format!(
                "{} is not errors / count = {} / {} = {}",
                num(s.error_rate),
                s.errors,
                s.count,
                num(observed)
            ),
        ));
    }
    let answered = if s.ok > 0 { s.ok } else { s.count - s.errors };
    if answered > 0 && s.latency_ms.p95 == 0.0 {
        return Err(Error::invalid_argument(
            &format!("{field}.latency_ms.p(95)"),
            format!("is missing: {answered} requests were answered, so their p95 is required"),
        ));
    }
    Ok(())
}

/// A finite, non-negative number.
fn check_number(field: &str, v: f64, unit: &str) -> Result<()> {
    if !v.is_finite() {
        return Err(Error::invalid_argument(
            field,
            format!(
                "must be a finite number{}, not {v}",
                if unit.is_empty() {
                    String::new()
                } else {
                    format!(" of {unit}")
                }
            ),
        ));
    }
    if v < 0.0 {
        return Err(Error::invalid_argument(field, "must not be negative"));
    }
    Ok(())
}

/// A ratio in [0, 1].
pub fn check_ratio(field: &str, v: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&v) {
        return Err(Error::invalid_argument(
            field,
            format!("must be a ratio between 0 and 1, not {v}"),
        ));
    }
    Ok(())
}

/// Checks a smoke run's configuration (named `field`): its numbers are
/// finite and not negative.
pub fn validate_smoke_config(field: &str, c: &crate::gating::report::SmokeConfig) -> Result<()> {
    for (name, v) in [
        ("rate", c.rate),
        ("duration_s", c.duration_s),
        ("warmup_s", c.warmup_s),
    ] {
        check_number(&format!("{field}.{name}"), v, "")?;
    }
    Ok(())
}

/// Checks the rules of a comparison (named `field`).
pub fn validate_rules(field: &str, r: &CanaryRules) -> Result<()> {
    for (name, v) in [
        ("p95_ratio", r.p95_ratio),
        ("p95_floor_ms", r.p95_floor_ms),
        ("error_rate_ratio", r.error_rate_ratio),
    ] {
        check_number(&format!("{field}.{name}"), v, "")?;
    }
    check_ratio(&format!("{field}.error_rate_floor"), r.error_rate_floor)?;
    for (name, v) in [
        ("min_error_count", r.min_error_count),
        ("min_requests", r.min_requests),
    ] {
        if v < 0 {
            return Err(Error::invalid_argument(
                &format!("{field}.{name}"),
                "must not be negative",
            ));
        }
    }
    Ok(())
}

/// Writes a number the short way: `420`, `0.01`, `1.136`.
pub fn num(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.is_finite() && v.abs() >= 1e15 {
        // `1e308`, not three hundred digits.
        format!("{v:e}")
    } else if v.is_finite() {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        format!("{v}")
    }
}

/// The samples' classification, before any value is looked at: NoData when
/// a side has no requests, Inconclusive when one has fewer than the minimum.
fn sampling(b: &TrafficStats, c: &TrafficStats, min: i32) -> Option<(Classification, String)> {
    match (b.count, c.count) {
        (0, _) => Some((Classification::NoData, "no requests on the baseline".into())),
        (_, 0) => Some((Classification::NoData, "no requests on the canary".into())),
        (bc, cc) if bc < min || cc < min => Some((
            Classification::Inconclusive,
            format!("too few requests to judge: baseline {bc}, canary {cc}, at least {min} each"),
        )),
        _ => None,
    }
}

/// Compares a canary with its baseline under `rules`: a latency check (p95)
/// and an error-rate check, and the verdict with one reason per check that
/// did not pass.
pub fn compare(
    baseline: &TrafficStats,
    canary: &TrafficStats,
    rules: &CanaryRules,
) -> (Vec<CanaryCheck>, VerdictBlock) {
    let samples = CheckSamples {
        control: baseline.count,
        experiment: canary.count,
        min: rules.min_requests,
    };
    let sampled = sampling(baseline, canary, rules.min_requests);
    let latency = {
        let (control, experiment) = (baseline.latency_ms.p95, canary.latency_ms.p95);
        let ratio = experiment / control;
        let delta = experiment - control;
        let (classification, reason) = match &sampled {
            Some(s) => s.clone(),
            None if !control.is_finite() || !experiment.is_finite() => {
                (Classification::Inconclusive, "a p95 is not a number".into())
            }
            None if experiment > control * rules.p95_ratio && delta > rules.p95_floor_ms => (
                Classification::High,
                format!(
                    "p95 ratio {} > {} and +{} ms > {} ms floor",
                    num(ratio),
                    num(rules.p95_ratio),
                    num(delta),
                    num(rules.p95_floor_ms)
                ),
            ),
            None if experiment > control * rules.p95_ratio => (
                Classification::Pass,
                format!(
                    "p95 ratio {} > {}, but +{} ms is within the {} ms floor",
                    num(ratio),
                    num(rules.p95_ratio),
                    num(delta),
                    num(rules.p95_floor_ms)
                ),
            ),
            None => (
                Classification::Pass,
                format!(
                    "p95 {} ms against {} ms: ratio {} <= {}",
                    num(experiment),
                    num(control),
                    if control > 0.0 {
                        num(ratio)
                    } else {
                        "-".into()
                    },
                    num(rules.p95_ratio)
                ),
            ),
        };
        check(
            "latency_p95",
            control,
            experiment,
            CheckLimit {
                ratio: rules.p95_ratio,
                floor: rules.p95_floor_ms,
            },
            samples,
            classification,
            reason,
        )
    };
    let errors = {
        let (control, experiment) = (baseline.observed_error_rate(), canary.observed_error_rate());
        let above_floor = experiment > rules.error_rate_floor;
        let above_ratio = control == 0.0 || experiment > control * rules.error_rate_ratio;
        let enough = canary.errors >= rules.min_error_count;
        let (classification, reason) = match &sampled {
            Some(s) => s.clone(),
            None if above_floor && above_ratio && enough => (
                Classification::High,
                if control == 0.0 {
                    format!(
                        "error rate {} > {} floor with a zero baseline, {} errors >= {}",
                        num(experiment),
                        num(rules.error_rate_floor),
                        canary.errors,
                        rules.min_error_count
                    )
                } else {
                    format!(
                        "error rate {} > {} x {} and > {} floor, {} errors >= {}",
                        num(experiment),
                        num(rules.error_rate_ratio),
                        num(control),
                        num(rules.error_rate_floor),
                        canary.errors,
                        rules.min_error_count
                    )
                },
            ),
            None if !above_floor => (
                Classification::Pass,
                format!(
                    "error rate {} <= {} floor",
                    num(experiment),
                    num(rules.error_rate_floor)
                ),
            ),
            None if !above_ratio => (
                Classification::Pass,
                format!(
                    "error rate {} <= {} x baseline {}",
                    num(experiment),
                    num(rules.error_rate_ratio),
                    num(control)
                ),
            ),
            None => (
                Classification::Pass,
                format!(
                    "{} canary errors < {} needed to fail",
                    canary.errors, rules.min_error_count
                ),
            ),
        };
        check(
            "error_rate",
            control,
            experiment,
            CheckLimit {
                ratio: rules.error_rate_ratio,
                floor: rules.error_rate_floor,
            },
            samples,
            classification,
            reason,
        )
    };
    let checks = vec![latency, errors];
    let verdict = verdict_of(&checks);
    (checks, verdict)
}

fn check(
    name: &str,
    control: f64,
    experiment: f64,
    limit: CheckLimit,
    samples: CheckSamples,
    classification: Classification,
    reason: String,
) -> CanaryCheck {
    // A ratio or percentage too large for a double is left out, like one
    // against a zero baseline: a report holds finite numbers only.
    let finite = |v: f64| v.is_finite().then_some(v);
    let ratio = (control != 0.0)
        .then(|| experiment / control)
        .and_then(finite);
    CanaryCheck {
        name: name.into(),
        control,
        experiment,
        delta: experiment - control,
        ratio,
        delta_pct: ratio.map(|r| (r - 1.0) * 100.0).and_then(finite),
        limit,
        samples,
        ok: classification == Classification::Pass,
        classification,
        classification_reason: reason,
    }
}

fn verdict_of(checks: &[CanaryCheck]) -> VerdictBlock {
    let has = |c: Classification| checks.iter().any(|x| x.classification == c);
    let status = if has(Classification::NoData) {
        Verdict::NoData
    } else if has(Classification::Inconclusive) {
        Verdict::Inconclusive
    } else if has(Classification::High) {
        Verdict::Fail
    } else {
        Verdict::Pass
    };
    let reasons = checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{}: {}", c.name, c.classification_reason))
        .collect();
    VerdictBlock::new(status, reasons)
}

/// Judges a smoke run: its p95 must stay below `threshold_ms` and its error
/// rate below `max_error_rate`, with at least `min_requests` requests.
/// Returns the thresholds by their k6-style names and the verdict.
pub fn smoke(
    results: &TrafficStats,
    threshold_ms: f64,
    max_error_rate: f64,
    min_requests: i32,
) -> (BTreeMap<String, ThresholdCheck>, VerdictBlock) {
    let p95 = results.latency_ms.p95;
    let rate = results.observed_error_rate();
    let answered = if results.ok > 0 {
        results.ok
    } else {
        results.count - results.errors
    };
    let latency = ThresholdCheck {
        ok: p95 < threshold_ms,
        observed: p95,
        limit: threshold_ms,
        samples: answered,
        reason: if p95 < threshold_ms {
            format!("p95 {} ms < {} ms", num(p95), num(threshold_ms))
        } else {
            format!("p95 {} ms is not below {} ms", num(p95), num(threshold_ms))
        },
    };
    let errors = ThresholdCheck {
        ok: rate < max_error_rate,
        observed: rate,
        limit: max_error_rate,
        samples: results.count,
        reason: if rate < max_error_rate {
            format!("error rate {} < {}", num(rate), num(max_error_rate))
        } else {
            format!(
                "error rate {} ({} of {}) is not below {}",
                num(rate),
                results.errors,
                results.count,
                num(max_error_rate)
            )
        },
    };
    let thresholds: BTreeMap<String, ThresholdCheck> = [
        (format!("latency_ms.p(95)<{}", num(threshold_ms)), latency),
        (format!("error_rate<{}", num(max_error_rate)), errors),
    ]
    .into();
    let verdict = if results.count == 0 {
        VerdictBlock::new(Verdict::NoData, vec!["no requests were measured".into()])
    } else if results.count < min_requests {
        VerdictBlock::new(
            Verdict::Inconclusive,
            vec![format!(
                "too few requests to judge: {} of at least {min_requests}",
                results.count
            )],
        )
    } else {
        let failed: Vec<String> = thresholds
            .iter()
            .filter(|(_, t)| !t.ok)
            .map(|(name, t)| format!("{name}: {}", t.reason))
            .collect();
        if failed.is_empty() {
            VerdictBlock::new(Verdict::Pass, Vec::new())
        } else {
            VerdictBlock::new(Verdict::Fail, failed)
        }
    };
    (thresholds, verdict)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::gating::report::LatencyMs;

    fn stats(count: i32, errors: i32, p95: f64) -> TrafficStats {
        TrafficStats {
            count,
            errors,
            ok: (count - errors).max(0),
            latency_ms: LatencyMs {
                p95,
                ..LatencyMs::default()
            },
            ..TrafficStats::default()
        }
    }

    fn status(b: &TrafficStats, c: &TrafficStats) -> Verdict {
        compare(b, c, &CanaryRules::default()).1.status
    }

    #[test]
    fn the_contract_cases() {
        let base = stats(6000, 3, 210.0);
        assert_eq!(
            status(&base, &stats(6000, 3, 210.0)),
            Verdict::Pass,
            "same latency"
        );
        let (checks, v) = compare(&base, &stats(5995, 3, 238.5), &CanaryRules::default());
        assert_eq!(v.status, Verdict::Fail);
        assert_eq!(
            checks[0].classification_reason,
            "p95 ratio 1.1357 > 1.1 and +28.5 ms > 5 ms floor"
        );
        assert!(v.reasons[0].starts_with("latency_p95: "), "{v:?}");
        // 15 % slower but within the 5 ms floor: a fast service is not failed
        // for a few microseconds.
        assert_eq!(
            status(&stats(6000, 0, 2.0), &stats(6000, 0, 2.3)),
            Verdict::Pass
        );
        assert_eq!(status(&base, &stats(150, 0, 210.0)), Verdict::Inconclusive);
        assert_eq!(status(&base, &stats(0, 0, 0.0)), Verdict::NoData);
        // A zero-error baseline and a canary below the floor: PASS.
        assert_eq!(
            status(&stats(6000, 0, 210.0), &stats(6000, 20, 210.0)),
            Verdict::Pass
        );
        // Above the floor with enough errors: FAIL, judged against the floor alone.
        let (checks, v) = compare(
            &stats(6000, 0, 210.0),
            &stats(6000, 60, 210.0),
            &CanaryRules::default(),
        );
        assert_eq!(v.status, Verdict::Fail);
        assert!(
            checks[1].classification_reason.contains("zero baseline"),
            "{checks:?}"
        );
        assert_eq!(checks[1].ratio, None, "no ratio against a zero baseline");
        // Above the floor and the ratio, but too few errors to fail.
        assert_eq!(
            status(&stats(200, 0, 1.0), &stats(200, 4, 1.0)),
            Verdict::Pass
        );
    }

    #[test]
    fn smoke_thresholds_are_named_and_judged() {
        let (t, v) = smoke(&stats(6000, 6, 2.4), 420.0, 0.01, 200);
        assert_eq!(v.status, Verdict::Pass);
        assert_eq!(
            t.keys().cloned().collect::<Vec<_>>(),
            ["error_rate<0.01", "latency_ms.p(95)<420"]
        );
        assert_eq!(t["latency_ms.p(95)<420"].samples, 5994);
        let (_, v) = smoke(&stats(6000, 6, 432.0), 420.0, 0.01, 200);
        assert_eq!((v.status, v.exit_code), (Verdict::Fail, 1));
        assert!(v.reasons[0].contains("432"), "{v:?}");
        assert_eq!(
            smoke(&stats(10, 0, 1.0), 420.0, 0.01, 200).1.status,
            Verdict::Inconclusive
        );
        assert_eq!(smoke(&stats(0, 0, 0.0), 420.0, 0.01, 200).1.exit_code, 3);
        assert_eq!(
            smoke(&stats(6000, 0, f64::NAN), 420.0, 0.01, 200).1.status,
            Verdict::Fail
        );
    }

    /// Figures that are missing or disagree are refused, naming the field,
    /// instead of passing: no p95 where requests were answered, requests
    /// neither OK nor failed, an error rate that is not errors / count.
    #[test]
    fn missing_or_inconsistent_statistics_never_pass() {
        let with = |f: fn(&mut TrafficStats)| {
            let mut s = stats(6000, 3, 210.0);
            f(&mut s);
            validate_stats("canary", &s).map_err(|e| e.message().to_owned())
        };
        let refused = [
            (
                with(|s| s.latency_ms = LatencyMs::default()),
                "canary.latency_ms.p(95): is missing: 5997 requests were answered",
            ),
            (
                with(|s| (s.ok, s.errors) = (0, 0)),
                "canary.ok: canary.count is 6000 but neither ok nor errors counts any request",
            ),
            (
                with(|s| s.ok = 10),
                "canary.ok: ok 10 and errors 3 do not add up to count 6000",
            ),
            (
                with(|s| (s.errors, s.ok, s.error_rate) = (0, 6000, 0.9)),
                "canary.error_rate: 0.9 is not errors / count = 0 / 6000 = 0",
            ),
        ];
        for (got, want) in refused.into_iter().chain([(
            with(|s| (s.count, s.ok, s.errors) = (i32::MAX, i32::MAX, 1)),
            "canary.ok: ok 2147483647 and errors 1 do not add up to count 2147483647",
        )]) {
            assert!(
                got.as_ref().is_err_and(|m| m.starts_with(want)),
                "{got:?}, want {want}"
            );
        }
        // Complete documents: every figure given; `ok` and `error_rate` left
        // out (zero); every request failed (no latency to give).
        assert_eq!(with(|s| s.error_rate = 0.0005), Ok(()));
        assert_eq!(with(|s| s.ok = 0), Ok(()));
        assert_eq!(
            with(|s| {
                (s.ok, s.errors, s.error_rate) = (0, 6000, 1.0);
                s.latency_ms = LatencyMs::default();
            }),
            Ok(())
        );
    }

    #[test]
    fn bad_statistics_are_refused_by_name() {
        for (s, field) in [
            (stats(-1, 0, 1.0), "results.count: must not be negative"),
            (
                stats(10, 11, 1.0),
                "results.errors: 11 is more than results.count 10",
            ),
            (
                stats(10, 0, f64::NAN),
                "results.latency_ms.p(95): must be a finite number of ms",
            ),
            (
                stats(10, 0, -1.0),
                "results.latency_ms.p(95): must not be negative",
            ),
        ] {
            let e = validate_stats("results", &s).unwrap_err();
            assert!(e.message().starts_with(field), "{}", e.message());
        }
        let mut s = stats(10, 0, 1.0);
        s.error_rate = 1.5;
        assert!(
            validate_stats("results", &s)
                .unwrap_err()
                .message()
                .starts_with("results.error_rate")
        );
    }

    fn arb_stats() -> impl Strategy<Value = TrafficStats> {
        (0i32..5000, 0.0f64..1.0, 0.0f64..2000.0).prop_map(|(count, err, p95)| {
            let errors = (f64::from(count) * err * 0.2) as i32;
            stats(count, errors, p95)
        })
    }

    fn rank(v: Verdict) -> u8 {
        match v {
            Verdict::Pass => 3,
            Verdict::Fail => 2,
            Verdict::Inconclusive => 1,
            Verdict::NoData => 0,
        }
    }

    proptest! {
        /// A slower or more failing canary never turns a FAIL into a PASS.
        #[test]
        fn a_worse_canary_never_passes_where_a_better_one_failed(
            b in arb_stats(), c in arb_stats(), slower in 0.0f64..500.0, more in 0i32..100
        ) {
            let mut worse = c.clone();
            worse.latency_ms.p95 += slower;
            worse.errors = (worse.errors + more).min(worse.count);
            if status(&b, &c) == Verdict::Fail {
                prop_assert_ne!(status(&b, &worse), Verdict::Pass);
            }
        }

        /// Fewer samples never turn an INCONCLUSIVE into a PASS.
        #[test]
        fn fewer_samples_never_pass_where_more_were_inconclusive(
            b in arb_stats(), c in arb_stats(), fewer in 0i32..5000
        ) {
            let mut less = c.clone();
            less.count = (less.count - fewer).max(0);
            less.errors = less.errors.min(less.count);
            if status(&b, &c) == Verdict::Inconclusive {
                prop_assert_ne!(status(&b, &less), Verdict::Pass);
            }
        }

        /// The verdict does not depend on the order the maps of a side were
        /// filled in, nor on labels.
        #[test]
        fn the_order_of_inputs_does_not_matter(b in arb_stats(), c in arb_stats(), codes in proptest::collection::vec(("[A-Z_]{2,8}", 0i32..100), 0..8)) {
            let mut b2 = b.clone();
            let mut c2 = c.clone();
            for (k, v) in codes.iter().rev() {
                b2.status_code_distribution.insert(k.clone(), *v);
                c2.error_distribution.insert(k.clone(), *v);
            }
            b2.label = "other".into();
            prop_assert_eq!(compare(&b, &c, &CanaryRules::default()), compare(&b2, &c2, &CanaryRules::default()));
            prop_assert_eq!(rank(status(&b, &c)), rank(status(&b2, &c2)));
        }

        /// Any pair of valid sides, however far apart, gives checks of finite
        /// numbers that read back from the JSON they are kept as.
        #[test]
        fn checks_hold_finite_numbers_that_read_back(
            b in 0.0f64..f64::MAX, c in 0.0f64..f64::MAX, tiny in any::<bool>()
        ) {
            let b = if tiny { b * f64::MIN_POSITIVE } else { b };
            let (checks, _) = compare(&stats(6000, 0, b), &stats(6000, 0, c), &CanaryRules::default());
            for check in &checks {
                let json = serde_json::to_string(check).unwrap();
                let back: CanaryCheck = serde_json::from_str(&json).unwrap();
                prop_assert_eq!(&back.ratio, &check.ratio);
                prop_assert!(check.ratio.is_none_or(f64::is_finite), "{check:?}");
                prop_assert!(check.delta_pct.is_none_or(f64::is_finite), "{check:?}");
            }
        }

        /// Nothing that is not a number passes.
        #[test]
        fn nan_never_passes(b in arb_stats(), c in arb_stats(), which in 0..3) {
            let mut b = b;
            let mut c = c;
            match which {
                0 => b.latency_ms.p95 = f64::NAN,
                1 => c.latency_ms.p95 = f64::NAN,
                _ => { b.latency_ms.p95 = f64::NAN; c.latency_ms.p95 = f64::INFINITY }
            }
            prop_assert_ne!(status(&b, &c), Verdict::Pass);
            if !c.latency_ms.p95.is_finite() {
                prop_assert_ne!(smoke(&c, 420.0, 0.01, 0).1.status, Verdict::Pass);
            }
        }
    }
}
