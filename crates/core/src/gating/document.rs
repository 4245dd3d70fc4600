//! The gating documents built from what a caller measured: the checks of a
//! smoke run's input and its summary, a canary comparison's report. Pure:
//! the service keeps what these build, and the CLI builds the same documents
//! itself when no server judges for it.

use super::{
    judge,
    report::{
        Budget, CanaryConfig, CanaryPhases, CanaryReport, CanaryRules, DOCUMENT_VERSION,
        PhaseStats, RunMetadata, SmokeConfig, SmokeSummary, TrafficStats, Verdict, VerdictBlock,
    },
};
use crate::error::{Error, Result};

/// The error-rate limit of a smoke run when none is given.
pub const DEFAULT_MAX_ERROR_RATE: f64 = 0.01;
/// The fewest requests a smoke run needs when none is given.
pub const DEFAULT_MIN_REQUESTS: i32 = 200;
/// The longest string a kept document holds: a target, a run id, a label,
/// a commit, a tool version, a percentile method, a call's name.
pub const MAX_LABEL_LEN: usize = 256;
/// The longest key of a kept map (a status code's or an error cause's name).
pub const MAX_KEY_LEN: usize = 64;
/// The most calls a smoke run's configuration lists.
pub const MAX_CALLS: usize = 64;

/// A smoke run to judge, as the caller sent it.
#[derive(Debug, Clone, Default)]
pub struct SmokeInput {
    /// What it measured (required).
    pub results: Option<TrafficStats>,
    /// The target exercised.
    pub target: String,
    /// The caller's run id.
    pub run_id: String,
    /// The SLO whose budget sets the threshold (empty: the default).
    pub slo: String,
    /// The error-rate limit.
    pub max_error_rate: Option<f64>,
    /// The fewest requests to judge.
    pub min_requests: Option<i32>,
    /// How the traffic was generated.
    pub config: SmokeConfig,
    /// Who ran it.
    pub metadata: RunMetadata,
    /// The run was stopped before its end (never a PASS).
    pub interrupted: bool,
}

/// A canary comparison, as the caller sent it.
#[derive(Debug, Clone, Default)]
pub struct CanaryInput {
    /// The baseline's statistics (required).
    pub baseline: Option<TrafficStats>,
    /// The canary's (required).
    pub canary: Option<TrafficStats>,
    /// Rules given; the rest take their defaults.
    pub rules: RulesInput,
    /// Keep the verdict as a gate run.
    pub record: bool,
    /// The baseline before the canary.
    pub baseline_before: Option<TrafficStats>,
    /// How the traffic was generated (its `rules` are ignored).
    pub config: CanaryConfig,
    /// Who ran it.
    pub metadata: RunMetadata,
    /// The run was stopped before its end (never a PASS).
    pub interrupted: bool,
}

/// Canary rules as given: each left out takes its default.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RulesInput {
    /// See [`CanaryRules::p95_ratio`].
    pub p95_ratio: Option<f64>,
    /// See [`CanaryRules::p95_floor_ms`].
    pub p95_floor_ms: Option<f64>,
    /// See [`CanaryRules::error_rate_ratio`].
    pub error_rate_ratio: Option<f64>,
    /// See [`CanaryRules::error_rate_floor`].
    pub error_rate_floor: Option<f64>,
    /// See [`CanaryRules::min_error_count`].
    pub min_error_count: Option<i32>,
    /// See [`CanaryRules::min_requests`].
    pub min_requests: Option<i32>,
}

impl RulesInput {
    /// The rules, defaults filled in.
    pub fn resolve(self) -> CanaryRules {
        let d = CanaryRules::default();
        CanaryRules {
            p95_ratio: self.p95_ratio.unwrap_or(d.p95_ratio),
            p95_floor_ms: self.p95_floor_ms.unwrap_or(d.p95_floor_ms),
            error_rate_ratio: self.error_rate_ratio.unwrap_or(d.error_rate_ratio),
            error_rate_floor: self.error_rate_floor.unwrap_or(d.error_rate_floor),
            min_error_count: self.min_error_count.unwrap_or(d.min_error_count),
            min_requests: self.min_requests.unwrap_or(d.min_requests),
        }
    }
}

/// `key` cut to fit a distribution's key ([`MAX_KEY_LEN`] bytes, at a
/// character boundary, ending in `…` when cut), so that a long error message
/// names its cause instead of getting the whole document refused.
pub fn fit_key(key: &str) -> String {
    fit(key, MAX_KEY_LEN)
}

/// `label` cut to fit a kept label ([`MAX_LABEL_LEN`] bytes), as
/// [`fit_key`] cuts a key.
pub fn fit_label(label: &str) -> String {
    fit(label, MAX_LABEL_LEN)
}

fn fit(key: &str, max: usize) -> String {
    if key.len() <= max {
        return key.to_owned();
    }
    let mut end = max - '…'.len_utf8();
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &key[..end])
}

fn check_label(field: &str, v: &str) -> Result<()> {
    if v.len() > MAX_LABEL_LEN {
        return Err(Error::invalid_argument(
            field,
            format!("is {} bytes; at most {MAX_LABEL_LEN} are kept", v.len()),
        ));
    }
    Ok(())
}

/// Bounds every string a caller's statistics put into a kept document (the
/// judge checks their numbers and how many entries the maps have).
fn check_stats_text(field: &str, s: &TrafficStats) -> Result<()> {
    check_label(&format!("{field}.label"), &s.label)?;
    check_label(&format!("{field}.percentile_method"), &s.percentile_method)?;
    for (map, name) in [
        (&s.status_code_distribution, "status_code_distribution"),
        (&s.error_distribution, "error_distribution"),
    ] {
        if let Some(k) = map.keys().find(|k| k.len() > MAX_KEY_LEN) {
            return Err(Error::invalid_argument(
                &format!("{field}.{name}"),
                format!("a key is {} bytes; keys are at most {MAX_KEY_LEN}", k.len()),
            ));
        }
    }
    Ok(())
}

/// Bounds the strings of who ran a run.
fn check_metadata(field: &str, m: &RunMetadata) -> Result<()> {
    check_label(&format!("{field}.tool_version"), &m.tool_version)?;
    check_label(&format!("{field}.git_sha"), &m.git_sha)?;
    check_label(&format!("{field}.run_id"), &m.run_id)
}

/// The metadata kept: `m` with the time, run id and tool filled in when
/// left out.
pub fn metadata(mut m: RunMetadata, run_id: &str) -> RunMetadata {
    if m.generated_at_us == 0 {
        m.generated_at_us = crate::store::now_us();
    }
    if m.run_id.is_empty() {
        m.run_id = run_id.to_owned();
    }
    if m.tool_version.is_empty() {
        m.tool_version = TOOL_VERSION.to_owned();
    }
    m
}

/// The tool named in the documents this build writes.
pub const TOOL_VERSION: &str = concat!("switchyard ", env!("CARGO_PKG_VERSION"));

/// A verdict of a run stopped before its end: never a PASS (what was not
/// measured may have failed), a FAIL stays one.
fn interrupted(v: VerdictBlock) -> VerdictBlock {
    if v.status != Verdict::Pass {
        let mut reasons = v.reasons;
        reasons.push("the run was interrupted before its end".into());
        return VerdictBlock::new(v.status, reasons);
    }
    VerdictBlock::new(
        Verdict::Inconclusive,
        vec!["the run was interrupted before its end: what it measured passed, the rest was not measured".into()],
    )
}

/// Checks a smoke run's input whole, before its threshold is read.
pub fn check_smoke(i: &SmokeInput) -> Result<()> {
    let results = i
        .results
        .as_ref()
        .ok_or_else(|| Error::invalid_argument("results", "is required"))?;
    judge::validate_stats("results", results)?;
    let max_error_rate = i.max_error_rate.unwrap_or(DEFAULT_MAX_ERROR_RATE);
    if !(max_error_rate > 0.0 && max_error_rate <= 1.0) {
        return Err(Error::invalid_argument(
            "max_error_rate",
            format!("must be a ratio above 0 and at most 1, not {max_error_rate}"),
        ));
    }
    if i.min_requests.unwrap_or(DEFAULT_MIN_REQUESTS) < 0 {
        return Err(Error::invalid_argument(
            "min_requests",
            "must not be negative",
        ));
    }
    judge::validate_smoke_config("config", &i.config)?;
    check_stats_text("results", results)?;
    check_label("target", &i.target)?;
    check_label("run_id", &i.run_id)?;
    check_label("slo", &i.slo)?;
    check_label("config.target", &i.config.target)?;
    check_label("config.percentile_method", &i.config.percentile_method)?;
    if i.config.calls.len() > MAX_CALLS {
        return Err(Error::invalid_argument(
            "config.calls",
            format!(
                "lists {} calls; at most {MAX_CALLS} are kept",
                i.config.calls.len()
            ),
        ));
    }
    for (n, call) in i.config.calls.iter().enumerate() {
        check_label(&format!("config.calls[{n}]"), call)?;
    }
    check_metadata("metadata", &i.metadata)
}

/// The summary of a smoke run judged against `budget`'s threshold.
pub fn smoke_summary(i: SmokeInput, budget: Budget) -> Result<SmokeSummary> {
    check_smoke(&i)?;
    let Some(mut results) = i.results else {
        return Err(Error::invalid_argument("results", "is required"));
    };
    if results.label.is_empty() {
        results.label.clone_from(&i.target);
    }
    let (thresholds, verdict) = judge::smoke(
        &results,
        budget.applied_p95_ms,
        i.max_error_rate.unwrap_or(DEFAULT_MAX_ERROR_RATE),
        i.min_requests.unwrap_or(DEFAULT_MIN_REQUESTS),
    );
    let mut config = i.config;
    if config.target.is_empty() {
        config.target.clone_from(&i.target);
    }
    Ok(SmokeSummary {
        version: DOCUMENT_VERSION.into(),
        metadata: metadata(i.metadata, &i.run_id),
        config,
        budget,
        results,
        thresholds,
        verdict: if i.interrupted {
            interrupted(verdict)
        } else {
            verdict
        },
        interrupted: i.interrupted,
    })
}

/// The report of a canary comparison.
pub fn canary_report(i: CanaryInput) -> Result<CanaryReport> {
    let mut baseline = i
        .baseline
        .ok_or_else(|| Error::invalid_argument("baseline", "is required"))?;
    judge::validate_stats("baseline", &baseline)?;
    check_stats_text("baseline", &baseline)?;
    let mut canary = i
        .canary
        .ok_or_else(|| Error::invalid_argument("canary", "is required"))?;
    judge::validate_stats("canary", &canary)?;
    check_stats_text("canary", &canary)?;
    if let Some(before) = &i.baseline_before {
        judge::validate_stats("baseline_before", before)?;
        check_stats_text("baseline_before", before)?;
    }
    let rules: CanaryRules = i.rules.resolve();
    judge::validate_rules("policy", &rules)?;
    check_label("config.canary", &i.config.canary)?;
    check_label("config.baseline", &i.config.baseline)?;
    check_label("config.percentile_method", &i.config.percentile_method)?;
    check_metadata("metadata", &i.metadata)?;
    for (s, label) in [(&mut baseline, "baseline"), (&mut canary, "canary")] {
        if s.label.is_empty() {
            s.label = label.into();
        }
    }
    let (results, verdict) = judge::compare(&baseline, &canary, &rules);
    let run_id = i.metadata.run_id.clone();
    Ok(CanaryReport {
        version: DOCUMENT_VERSION.into(),
        metadata: metadata(i.metadata, &run_id),
        config: CanaryConfig { rules, ..i.config },
        phases: CanaryPhases {
            before: PhaseStats {
                baseline: i.baseline_before,
                canary: None,
            },
            during: PhaseStats {
                baseline: Some(baseline.clone()),
                canary: Some(canary.clone()),
            },
        },
        control: baseline,
        experiment: canary,
        results,
        verdict: if i.interrupted {
            interrupted(verdict)
        } else {
            verdict
        },
        interrupted: i.interrupted,
    })
}
