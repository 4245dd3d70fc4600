//! Statistics from other load tools' reports, so that a team that keeps its
//! load tool still gets the adaptive threshold, the judge, the history and
//! the step summary (`switchyard judge --k6 FILE`, `--ghz FILE`).
//!
//! - **k6**, the JSON `k6 run --summary-export FILE` writes (its legacy
//!   summary; the `--new-machine-readable-summary` schema is refused with
//!   what to do): HTTP requests are `http_reqs`, failures are
//!   `http_req_failed`'s `passes` (a request that failed is a "pass" of that
//!   rate), latencies are those of the requests that did not fail
//!   (`http_req_duration{expected_response:true}`, else `http_req_duration`),
//!   in ms. k6's gRPC module counts no requests and no failures, so a
//!   summary without `http_reqs` is refused.
//! - **ghz**, the JSON `ghz -O json` writes: `count` calls, of which those
//!   with status `OK` succeeded; durations in nanoseconds; the percentiles of
//!   `latencyDistribution` (of the calls that succeeded).
//!
//! What a report leaves out or contradicts is refused naming the field, as
//! the judge refuses statistics (a missing p95 never reads as 0 ms).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::report::{LatencyMs, TrafficStats};
use crate::telemetry::metrics::CODE_NAMES;

/// The most distinct error causes kept (the judge takes at most 100).
const MAX_CAUSES: usize = 50;

/// The statistics of a k6 `--summary-export` document, labelled `label`.
pub fn from_k6(doc: &Value, label: &str) -> Result<TrafficStats, String> {
    if doc.get("results").is_some() && doc.get("version").is_some() {
        return Err(
            "this is k6's new machine-readable summary: export the legacy one with `k6 run --summary-export FILE` (without --new-machine-readable-summary)".into(),
        );
    }
    let metrics = doc
        .get("metrics")
        .and_then(Value::as_object)
        .ok_or("no `metrics` object: not a k6 --summary-export document")?;
    let Some(reqs) = metrics.get("http_reqs") else {
        if metrics.contains_key("grpc_req_duration") {
            return Err(
                "metrics.http_reqs: missing: k6's gRPC module counts no requests and no failures; judge gRPC load with ghz (--ghz) or `switchyard smoke --grpc`".into(),
            );
        }
        return Err("metrics.http_reqs: missing: the summary holds no HTTP requests".into());
    };
    let count = whole(reqs, "metrics.http_reqs", "count")?;
    let failed = metrics
        .get("http_req_failed")
        .ok_or("metrics.http_req_failed: missing (k6 counts failed requests in it)")?;
    // k6's Rate counts a failed request as a "pass" of http_req_failed.
    let errors = whole(failed, "metrics.http_req_failed", "passes")?;
    let ok = whole(failed, "metrics.http_req_failed", "fails")?;
    if ok.checked_add(errors) != Some(count) {
        return Err(format!(
            "metrics.http_req_failed: {errors} failed and {ok} not failed are not metrics.http_reqs.count {count}"
        ));
    }
    let (name, trend) = match metrics.get("http_req_duration{expected_response:true}") {
        Some(t) => ("http_req_duration{expected_response:true}", t),
        None => (
            "http_req_duration",
            metrics
                .get("http_req_duration")
                .ok_or("metrics.http_req_duration: missing")?,
        ),
    };
    let at = format!("metrics.{name}");
    let trend = trend
        .as_object()
        .ok_or_else(|| format!("{at}: not an object"))?;
    let latency_ms = if ok > 0 {
        let p95 = stat(trend, &at, "p(95)")?
            .ok_or_else(|| format!("{at}.p(95): missing: keep p(95) in summaryTrendStats"))?;
        let med = stat(trend, &at, "med")?;
        LatencyMs {
            min: stat(trend, &at, "min")?.unwrap_or_default(),
            med: med.unwrap_or_default(),
            avg: stat(trend, &at, "avg")?.unwrap_or_default(),
            p90: stat(trend, &at, "p(90)")?.unwrap_or_default(),
            p95,
            p99: stat(trend, &at, "p(99)")?.unwrap_or_default(),
            max: stat(trend, &at, "max")?.unwrap_or_default(),
            p50: med.unwrap_or_default(),
        }
    } else {
        LatencyMs::default()
    };
    let rps = number(reqs, "metrics.http_reqs", "rate")?.unwrap_or_default();
    // The run's length: k6 writes no duration, but every counter's rate is
    // its count over it.
    let duration_s = metrics
        .get("iterations")
        .and_then(|i| Some(i.get("count")?.as_f64()? / i.get("rate")?.as_f64()?))
        .filter(|d| d.is_finite() && *d > 0.0)
        .or_else(|| (rps > 0.0).then(|| count as f64 / rps))
        .unwrap_or_default();
    let mut causes = BTreeMap::new();
    if errors > 0 {
        causes.insert("k6 http_req_failed".into(), clamp(errors));
    }
    Ok(TrafficStats {
        label: label.to_owned(),
        count: clamp(count),
        ok: clamp(ok),
        errors: clamp(errors),
        error_rate: rate(errors, count),
        rps,
        latency_ms,
        status_code_distribution: BTreeMap::new(),
        error_distribution: causes,
        percentile_method: "k6 (linear interpolation)".into(),
        duration_s,
    })
}

/// The statistics of a ghz `-O json` report, labelled `label`.
pub fn from_ghz(doc: &Value, label: &str) -> Result<TrafficStats, String> {
    let report = doc
        .as_object()
        .filter(|o| o.contains_key("count") && o.contains_key("total"))
        .ok_or("no `count` and `total`: not a ghz JSON report (ghz -O json)")?;
    let count = whole(doc, "", "count")?;
    let codes: BTreeMap<String, u64> = match report.get("statusCodeDistribution") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                v.as_u64()
                    .map(|n| (code_name(k), n))
                    .ok_or_else(|| format!("statusCodeDistribution[{k:?}]: not a count"))
            })
            .try_fold(BTreeMap::new(), |mut acc, r| {
                let (k, n) = r?;
                let total: &mut u64 = acc.entry(k).or_insert(0);
                *total = total.saturating_add(n);
                Ok::<_, String>(acc)
            })?,
        Some(_) => return Err("statusCodeDistribution: not an object".into()),
    };
    let causes: Vec<(String, u64)> = match report.get("errorDistribution") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                v.as_u64()
                    .map(|n| (super::document::fit_key(k), n))
                    .ok_or_else(|| format!("errorDistribution[{k:?}]: not a count"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("errorDistribution: not an object".into()),
    };
    let (ok, errors) = if codes.is_empty() {
        let errors = causes
            .iter()
            .try_fold(0u64, |a, (_, n)| a.checked_add(*n))
            .ok_or("errorDistribution: its counts overflow")?;
        (count.saturating_sub(errors), errors)
    } else {
        let total = codes
            .values()
            .try_fold(0u64, |a, n| a.checked_add(*n))
            .ok_or("statusCodeDistribution: its counts overflow")?;
        if total != count {
            return Err(format!(
                "statusCodeDistribution: its counts add up to {total}, not count {count}"
            ));
        }
        let ok = codes.get("OK").copied().unwrap_or(0);
        (ok, count - ok)
    };
    if errors > count {
        return Err(format!(
            "errorDistribution: {errors} errors, more than count {count}"
        ));
    }
    let ns = |field: &str| -> Result<f64, String> {
        Ok(number(doc, "", field)?.unwrap_or_default() / 1e6)
    };
    let mut percentiles = BTreeMap::new();
    if let Some(list) = report.get("latencyDistribution").and_then(Value::as_array) {
        for (i, entry) in list.iter().enumerate() {
            let at = format!("latencyDistribution[{i}]");
            let p = entry
                .get("percentage")
                .and_then(Value::as_u64)
                .ok_or_else(|| format!("{at}.percentage: not a whole number"))?;
            let l = entry
                .get("latency")
                .and_then(Value::as_f64)
                .filter(|l| l.is_finite() && *l >= 0.0)
                .ok_or_else(|| format!("{at}.latency: not a number of nanoseconds"))?;
            percentiles.insert(p, l / 1e6);
        }
    }
    let latency_ms = if ok > 0 {
        let p95 = percentiles
            .get(&95)
            .copied()
            .ok_or("latencyDistribution: no 95th percentile for the calls that succeeded")?;
        LatencyMs {
            min: ns("fastest")?,
            med: percentiles.get(&50).copied().unwrap_or_default(),
            avg: ns("average")?,
            p90: percentiles.get(&90).copied().unwrap_or_default(),
            p95,
            p99: percentiles.get(&99).copied().unwrap_or_default(),
            max: ns("slowest")?,
            p50: percentiles.get(&50).copied().unwrap_or_default(),
        }
    } else {
        LatencyMs::default()
    };
    let mut error_distribution: BTreeMap<String, i32> = BTreeMap::new();
    let mut sorted = causes;
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    for (i, (cause, n)) in sorted.into_iter().enumerate() {
        let key = if i < MAX_CAUSES {
            cause
        } else {
            "other causes".to_owned()
        };
        *error_distribution.entry(key).or_insert(0) += clamp(n);
    }
    Ok(TrafficStats {
        label: label.to_owned(),
        count: clamp(count),
        ok: clamp(ok),
        errors: clamp(errors),
        error_rate: rate(errors, count),
        rps: number(doc, "", "rps")?.unwrap_or_default(),
        latency_ms,
        status_code_distribution: codes.into_iter().map(|(k, v)| (k, clamp(v))).collect(),
        error_distribution,
        percentile_method: "ghz (nearest rank)".into(),
        duration_s: ns("total")? / 1e3,
    })
}

/// ghz's code names (Go's `codes.Code.String()`: `DeadlineExceeded`,
/// `Canceled`) as gRPC spells them (`DEADLINE_EXCEEDED`, `CANCELLED`).
fn code_name(go: &str) -> String {
    if go == "OK" {
        return go.to_owned();
    }
    let mut out = String::new();
    for (i, c) in go.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    match out.as_str() {
        "CANCELED" => "CANCELLED".into(),
        "" => "UNKNOWN".into(),
        known if CODE_NAMES.contains(&known) => out,
        _ => format!("UNKNOWN ({go})"),
    }
}

/// A whole, non-negative number at `at.key`.
fn whole(v: &Value, at: &str, key: &str) -> Result<u64, String> {
    v.get(key)
        .and_then(Value::as_f64)
        .filter(|n| n.is_finite() && *n >= 0.0 && n.fract() == 0.0 && *n <= u64::MAX as f64)
        .map(|n| n as u64)
        .ok_or_else(|| format!("{}: missing or not a whole number", path(at, key)))
}

/// A finite, non-negative number at `at.key`, if there is one.
fn number(v: &Value, at: &str, key: &str) -> Result<Option<f64>, String> {
    non_negative(v.get(key), || {
        format!("{}: not a non-negative number", path(at, key))
    })
}

fn stat(trend: &Map<String, Value>, at: &str, key: &str) -> Result<Option<f64>, String> {
    non_negative(trend.get(key), || {
        format!("{at}.{key}: not a non-negative number of ms")
    })
}

/// A finite number at or above 0, none when absent or null.
fn non_negative(
    found: Option<&Value>,
    refusal: impl FnOnce() -> String,
) -> Result<Option<f64>, String> {
    match found {
        None | Some(Value::Null) => Ok(None),
        Some(n) => n
            .as_f64()
            .filter(|n| n.is_finite() && *n >= 0.0)
            .map(Some)
            .ok_or_else(refusal),
    }
}

fn path(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_owned()
    } else {
        format!("{at}.{key}")
    }
}

fn clamp(n: u64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn rate(errors: u64, count: u64) -> f64 {
    if count > 0 {
        errors as f64 / count as f64
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::gating::judge::validate_stats;

    fn k6() -> Value {
        json!({
            "root_group": {"name": "", "path": "", "id": "d41d8cd98f00b204e9800998ecf8427e", "groups": {}, "checks": {}},
            "metrics": {
                "http_reqs": {"count": 1500, "rate": 49.98000799680128},
                "http_req_failed": {"passes": 12, "fails": 1488, "value": 0.008},
                "http_req_duration": {"avg": 112.4, "min": 41.2, "med": 98.7, "max": 1203.5, "p(90)": 180.3, "p(95)": 240.9},
                "http_req_duration{expected_response:true}": {"avg": 110.9, "min": 41.2, "med": 98.1, "max": 1203.5, "p(90)": 178.8, "p(95)": 236.2},
                "iterations": {"count": 1500, "rate": 49.98000799680128},
                "vus": {"value": 30, "min": 30, "max": 30}
            }
        })
    }

    fn ghz() -> Value {
        json!({
            "date": "2026-05-01T10:15:30Z",
            "endReason": "normal",
            "options": {"call": "helloworld.Greeter.SayHello", "host": "0.0.0.0:50051"},
            "count": 1000,
            "total": 10_050_123_456_u64,
            "average": 9_876_543,
            "fastest": 1_234_567,
            "slowest": 45_678_901,
            "rps": 99.50126527082534,
            "errorDistribution": {
                "rpc error: code = Unavailable desc = connection refused": 3,
                "rpc error: code = DeadlineExceeded desc = context deadline exceeded": 2
            },
            "statusCodeDistribution": {"OK": 995, "Unavailable": 3, "DeadlineExceeded": 2},
            "latencyDistribution": [
                {"percentage": 10, "latency": 4_012_345}, {"percentage": 25, "latency": 6_123_456},
                {"percentage": 50, "latency": 8_765_432}, {"percentage": 75, "latency": 12_345_678},
                {"percentage": 90, "latency": 17_654_321}, {"percentage": 95, "latency": 21_987_654},
                {"percentage": 99, "latency": 33_456_789}
            ],
            "histogram": null,
            "details": null
        })
    }

    #[test]
    fn a_k6_summary_reads_as_the_requests_it_counted() {
        let s = from_k6(&k6(), "checkout").unwrap();
        assert_eq!((s.count, s.ok, s.errors), (1500, 1488, 12));
        assert_eq!(s.error_rate, 0.008);
        // The latencies of the requests that did not fail.
        assert_eq!(s.latency_ms.p95, 236.2);
        assert_eq!(s.latency_ms.p50, 98.1);
        assert!((s.duration_s - 30.012).abs() < 1e-9, "{}", s.duration_s);
        validate_stats("results", &s).unwrap();
    }

    #[test]
    fn a_ghz_report_reads_as_the_calls_it_made() {
        let s = from_ghz(&ghz(), "greeter").unwrap();
        assert_eq!((s.count, s.ok, s.errors), (1000, 995, 5));
        assert_eq!(s.latency_ms.p95, 21.987654);
        assert_eq!(s.latency_ms.min, 1.234567);
        assert_eq!(s.status_code_distribution["UNAVAILABLE"], 3);
        assert_eq!(s.status_code_distribution["DEADLINE_EXCEEDED"], 2);
        assert!((s.duration_s - 10.050123456).abs() < 1e-9);
        validate_stats("results", &s).unwrap();
        // Every call failed: no latencies, and none needed.
        let mut all_failed = ghz();
        all_failed["statusCodeDistribution"] = json!({"Unavailable": 1000});
        all_failed["latencyDistribution"] = Value::Null;
        let s = from_ghz(&all_failed, "greeter").unwrap();
        assert_eq!((s.ok, s.errors), (0, 1000));
        validate_stats("results", &s).unwrap();
    }

    #[test]
    fn reports_missing_what_the_judge_needs_are_refused_by_field() {
        let refused = |doc: Value, k6_doc: bool| {
            if k6_doc {
                from_k6(&doc, "x").unwrap_err()
            } else {
                from_ghz(&doc, "x").unwrap_err()
            }
        };
        let mut no_p95 = k6();
        no_p95["metrics"]["http_req_duration{expected_response:true}"]
            .as_object_mut()
            .unwrap()
            .remove("p(95)");
        assert!(
            refused(no_p95, true)
                .starts_with("metrics.http_req_duration{expected_response:true}.p(95): missing")
        );
        let mut grpc_only = k6();
        let m = grpc_only["metrics"].as_object_mut().unwrap();
        m.remove("http_reqs");
        m.insert(
            "grpc_req_duration".into(),
            json!({"avg": 1.0, "p(95)": 2.0}),
        );
        assert!(refused(grpc_only, true).contains("gRPC module counts no requests"));
        let mut disagree = k6();
        disagree["metrics"]["http_req_failed"]["fails"] = json!(1000);
        assert!(refused(disagree, true).starts_with("metrics.http_req_failed: 12 failed"));
        assert!(refused(json!({"version": "1", "results": {}}), true).contains("legacy"));
        let mut huge = k6();
        huge["metrics"]["http_req_failed"]["passes"] = json!(u64::MAX as f64);
        huge["metrics"]["http_req_failed"]["fails"] = json!(u64::MAX as f64);
        assert!(refused(huge, true).starts_with("metrics.http_req_failed: "));
        let mut no_p95 = ghz();
        no_p95["latencyDistribution"] = json!([{"percentage": 50, "latency": 1}]);
        assert!(refused(no_p95, false).starts_with("latencyDistribution: no 95th"));
        let mut codes = ghz();
        codes["statusCodeDistribution"]["OK"] = json!(10);
        assert!(
            refused(codes, false).starts_with("statusCodeDistribution: its counts add up to 15")
        );
        assert!(refused(json!({"metrics": {}}), false).contains("not a ghz JSON report"));
    }

    #[test]
    fn ghz_code_names_are_grpcs() {
        assert_eq!(code_name("DeadlineExceeded"), "DEADLINE_EXCEEDED");
        assert_eq!(code_name("Canceled"), "CANCELLED");
        assert_eq!(code_name("OK"), "OK");
        assert_eq!(code_name(""), "UNKNOWN");
        assert_eq!(code_name("Weird"), "UNKNOWN (Weird)");
    }
}
