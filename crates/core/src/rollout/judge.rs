//! A stage's verdict: each cohort's requests, errors and p95 read from
//! Prometheus over the stage's window, judged by the canary judge
//! (`gating::judge::compare`, the one place verdicts are computed) with the
//! control as the baseline and the treatment as the canary.

use serde::Serialize;
use serde_json::{Value as Json, json};

use super::model::{Rollout, TOTAL_WEIGHT, percent_of};
use crate::gating::{
    budget::{Answer, BudgetQuery},
    judge,
    report::{CanaryRules, LatencyMs, TrafficStats, Verdict},
};

/// One cohort over a window, as Prometheus answered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cohort {
    /// Its variant.
    pub variant: String,
    /// Requests.
    pub requests: f64,
    /// Failed requests.
    pub errors: f64,
    /// Failed over all (0 with no requests).
    pub error_rate: f64,
    /// p95 latency, ms (NaN when there were none).
    pub p95_ms: f64,
}

/// A judgment: the verdict and the document the audit log and the status
/// keep.
#[derive(Debug, Clone)]
pub struct Judgment {
    /// PASS, FAIL, INCONCLUSIVE or NO_DATA.
    pub verdict: Verdict,
    /// `{verdict, reasons, stage, percent, window_s, cohorts, checks,
    /// queries}`.
    pub document: Json,
}

async fn value(prom: &dyn BudgetQuery, query: &str) -> Result<f64, String> {
    match prom.instant(query).await {
        Answer::Value(v) => Ok(v),
        Answer::Failed(why) => Err(why),
    }
}

/// Reads `variant`'s cohort of `r` over the last `window_s` seconds.
async fn read(
    prom: &dyn BudgetQuery,
    r: &Rollout,
    variant: &str,
    window_s: u64,
) -> Result<(Cohort, [String; 3]), String> {
    let q = &r.spec.queries;
    let flag = &r.spec.flag_key;
    let queries = [
        q.render(&q.requests, flag, variant, window_s),
        q.render(&q.errors, flag, variant, window_s),
        q.render(&q.p95_ms, flag, variant, window_s),
    ];
    let (requests, errors, p95) = tokio::join!(
        value(prom, &queries[0]),
        value(prom, &queries[1]),
        value(prom, &queries[2])
    );
    let (requests, errors) = (requests?, errors?);
    // No requests: no latency series either (and nothing to judge).
    let p95_ms = match p95 {
        Ok(v) => v,
        Err(_) if requests < 1.0 => f64::NAN,
        Err(why) => return Err(why),
    };
    let requests = if requests.is_finite() {
        requests.max(0.0)
    } else {
        0.0
    };
    let errors = if errors.is_finite() {
        errors.clamp(0.0, requests)
    } else {
        0.0
    };
    Ok((
        Cohort {
            variant: variant.to_owned(),
            requests,
            errors,
            error_rate: if requests > 0.0 {
                errors / requests
            } else {
                0.0
            },
            p95_ms,
        },
        queries,
    ))
}

/// The control cohort as the last passed stage measured it.
fn baseline(r: &Rollout) -> Option<Cohort> {
    let c = r.baseline.as_ref()?;
    Some(Cohort {
        variant: r.spec.control.clone(),
        requests: c.get("requests")?.as_f64()?,
        errors: c.get("errors")?.as_f64()?,
        error_rate: c.get("error_rate")?.as_f64()?,
        p95_ms: c.get("p95_ms")?.as_f64()?,
    })
}

fn stats(label: &str, c: &Cohort, window_s: u64) -> TrafficStats {
    let count = c.requests.round().min(f64::from(i32::MAX)) as i32;
    let errors = (c.errors.round() as i32).min(count);
    TrafficStats {
        label: label.to_owned(),
        count,
        ok: count - errors,
        errors,
        error_rate: c.error_rate,
        rps: c.requests / window_s.max(1) as f64,
        latency_ms: LatencyMs {
            p95: c.p95_ms,
            ..LatencyMs::default()
        },
        percentile_method: "prometheus histogram_quantile".into(),
        duration_s: window_s as f64,
        ..TrafficStats::default()
    }
}

/// Judges `r`'s current stage over the last `window_s` seconds. A read that
/// fails (Prometheus unreachable, a query that answers no number) is
/// INCONCLUSIVE with the reason: the rollout holds, it never advances on
/// figures it could not read.
/// Without a Prometheus (no `prometheus_url`) every stage is INCONCLUSIVE:
/// the rollout holds, pauses, and moves only when a person skips a stage.
pub async fn judge_stage(prom: Option<&dyn BudgetQuery>, r: &Rollout, window_s: u64) -> Judgment {
    let stage = r.current();
    let mut doc = json!({
        "stage": r.stage + 1,
        "stages": r.spec.stages.len(),
        "percent": percent_of(r.weight),
        "window_s": window_s,
    });
    let Some(prom) = prom else {
        doc["verdict"] = json!("INCONCLUSIVE");
        doc["reasons"] = json!([
            "no prometheus_url is configured, so no stage can be judged: skip stages by hand, or configure it"
        ]);
        return Judgment {
            verdict: Verdict::Inconclusive,
            document: doc,
        };
    };
    doc["source"] = json!(prom.describe());
    let read_both = async {
        let (control, treatment) = tokio::join!(
            read(prom, r, &r.spec.control, window_s),
            read(prom, r, &r.spec.treatment, window_s)
        );
        Ok::<_, String>((control?, treatment?))
    };
    let ((mut control, cq), (treatment, tq)) = match read_both.await {
        Ok(both) => both,
        Err(why) => {
            let reason = format!("reading the cohorts from Prometheus failed: {why}");
            doc["verdict"] = json!("INCONCLUSIVE");
            doc["reasons"] = json!([reason]);
            return Judgment {
                verdict: Verdict::Inconclusive,
                document: doc,
            };
        }
    };
    // At 100 % of every tenant there is no control traffic (what trickles
    // in is stragglers): the treatment is judged against the control as the
    // last passed stage measured it.
    if r.weight == TOTAL_WEIGHT && r.spec.tenants.is_empty() {
        match baseline(r) {
            Some(before) => {
                control = before;
                doc["control_from"] =
                    json!("the last passed stage's window: there is no control traffic at 100 %");
            }
            None => {
                doc["verdict"] = json!("INCONCLUSIVE");
                doc["reasons"] = json!([
                    "no stage passed before 100 %, so there is no control to judge against (a skipped stage measures none)"
                ]);
                doc["cohorts"] = json!({"treatment": treatment, "control": control});
                return Judgment {
                    verdict: Verdict::Inconclusive,
                    document: doc,
                };
            }
        }
    }
    let rules = CanaryRules {
        min_requests: stage.min_samples,
        ..r.spec.rules
    };
    let (checks, block) = judge::compare(
        &stats("control", &control, window_s),
        &stats("treatment", &treatment, window_s),
        &rules,
    );
    doc["verdict"] = json!(block.status.as_str());
    doc["judged_at"] = json!(crate::audit::rfc3339(crate::store::now_us()));
    doc["reasons"] = json!(block.reasons);
    doc["cohorts"] = json!({"treatment": treatment, "control": control});
    doc["checks"] = serde_json::to_value(&checks).unwrap_or(Json::Null);
    doc["queries"] = json!({"treatment": tq, "control": cq});
    Judgment {
        verdict: block.status,
        document: doc,
    }
}
