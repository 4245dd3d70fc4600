//! The gating documents in domain types: traffic statistics, the budget
//! block, smoke summaries and canary reports (GATING.md's shapes; the proto
//! messages of `gating.proto` mirror them field for field).
//!
//! Gate runs are stored as the serde JSON of these types, with the
//! document's `version` ("1"): a later release reads every version it wrote.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The version of the documents this release writes.
pub const DOCUMENT_VERSION: &str = "1";

/// The outcome of a gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    /// Every check passed.
    Pass,
    /// At least one check failed.
    Fail,
    /// Too few samples on a side to judge.
    Inconclusive,
    /// No requests on a side.
    NoData,
}

impl Verdict {
    /// Returns the CLI's exit code for the verdict: 0, 1, or 3.
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::Pass => 0,
            Verdict::Fail => 1,
            Verdict::Inconclusive | Verdict::NoData => 3,
        }
    }

    /// Returns the name used in metrics and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Inconclusive => "INCONCLUSIVE",
            Verdict::NoData => "NO_DATA",
        }
    }
}

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LatencyMs {
    /// The fastest.
    pub min: f64,
    /// The median.
    pub med: f64,
    /// The mean.
    pub avg: f64,
    /// The 90th percentile.
    pub p90: f64,
    /// The 95th percentile.
    pub p95: f64,
    /// The 99th percentile.
    pub p99: f64,
    /// The slowest.
    pub max: f64,
    /// The 50th percentile.
    pub p50: f64,
}

impl LatencyMs {
    /// Every value with its name, for validation.
    pub fn named(&self) -> [(&'static str, f64); 8] {
        [
            ("min", self.min),
            ("med", self.med),
            ("avg", self.avg),
            ("p(90)", self.p90),
            ("p(95)", self.p95),
            ("p(99)", self.p99),
            ("max", self.max),
            ("p(50)", self.p50),
        ]
    }
}

/// What one side of a run measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrafficStats {
    /// `baseline`, `canary` or the smoke target.
    pub label: String,
    /// Requests sent, errors included.
    pub count: i32,
    /// Requests answered OK.
    pub ok: i32,
    /// Requests that failed.
    pub errors: i32,
    /// `errors / count`.
    pub error_rate: f64,
    /// Requests per second.
    pub rps: f64,
    /// Latency percentiles.
    pub latency_ms: LatencyMs,
    /// Requests by status code name.
    pub status_code_distribution: BTreeMap<String, i32>,
    /// Failed requests by cause.
    pub error_distribution: BTreeMap<String, i32>,
    /// `hdr` or `nearest-rank`.
    pub percentile_method: String,
    /// The measured phase, seconds.
    pub duration_s: f64,
}

impl TrafficStats {
    /// `errors / count` (0 with no requests).
    pub fn observed_error_rate(&self) -> f64 {
        if self.count > 0 {
            f64::from(self.errors) / f64::from(self.count)
        } else {
            0.0
        }
    }
}

/// Who ran what.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunMetadata {
    /// When the report was made, µs since the epoch.
    pub generated_at_us: i64,
    /// The tool that made it.
    pub tool_version: String,
    /// The commit under test.
    pub git_sha: String,
    /// The caller's run id.
    pub run_id: String,
}

/// How a smoke run's traffic was generated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SmokeConfig {
    /// The server exercised.
    pub target: String,
    /// The RPCs in the mix.
    pub calls: Vec<String>,
    /// Requests per second scheduled.
    pub rate: f64,
    /// The measured phase, seconds.
    pub duration_s: f64,
    /// The warm-up, seconds.
    pub warmup_s: f64,
    /// `hdr` or `nearest-rank`.
    pub percentile_method: String,
}

/// One tier of an SLO's table.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BudgetTier {
    /// Budget left (0 to 1) under which the tier applies.
    pub below: f64,
    /// The tier's p95 threshold, ms.
    pub p95_ms: f64,
}

/// Where the budget came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetSource {
    /// Read from Prometheus.
    Prometheus,
    /// Could not be read: the strictest tier.
    Fallback,
    /// No Prometheus configured: the base threshold.
    Disabled,
}

impl BudgetSource {
    /// Returns the name reported.
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetSource::Prometheus => "prometheus",
            BudgetSource::Fallback => "fallback",
            BudgetSource::Disabled => "disabled",
        }
    }
}

/// How the smoke threshold was chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// Where the value came from.
    pub source: BudgetSource,
    /// The SLO.
    pub slo: String,
    /// The PromQL query.
    pub query: String,
    /// When it was evaluated, µs since the epoch.
    pub evaluated_at_us: i64,
    /// The value Prometheus answered, not clamped (NaN and infinities are
    /// kept, as strings in JSON).
    #[serde(with = "float_or_text")]
    pub remaining_ratio: Option<f64>,
    /// The finite value clamped to [0, 1], used to pick the tier.
    pub clamped_ratio: Option<f64>,
    /// The tiers, strictest last.
    pub tiers: Vec<BudgetTier>,
    /// The base threshold, ms.
    pub base_p95_ms: f64,
    /// The threshold applied, ms.
    pub applied_p95_ms: f64,
    /// `base` or `below_<ratio>`.
    pub tier: String,
    /// Why the fallback or disabled source; empty when read.
    pub reason: String,
}

/// One smoke threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdCheck {
    /// The observed value is below the limit.
    pub ok: bool,
    /// The value measured.
    pub observed: f64,
    /// The limit.
    pub limit: f64,
    /// The requests behind the value.
    pub samples: i32,
    /// Why, in one sentence.
    pub reason: String,
}

/// A verdict with its reasons.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerdictBlock {
    /// The verdict.
    pub status: Verdict,
    /// One sentence per check that did not pass.
    pub reasons: Vec<String>,
    /// 0, 1 or 3.
    pub exit_code: i32,
}

impl VerdictBlock {
    /// The block of `status` with `reasons`.
    pub fn new(status: Verdict, reasons: Vec<String>) -> VerdictBlock {
        VerdictBlock {
            status,
            reasons,
            exit_code: status.exit_code(),
        }
    }
}

/// `smoke-summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SmokeSummary {
    /// "1".
    pub version: String,
    /// Who ran it.
    pub metadata: RunMetadata,
    /// How the traffic was generated.
    pub config: SmokeConfig,
    /// How the threshold was chosen.
    pub budget: Budget,
    /// What was measured.
    pub results: TrafficStats,
    /// Each threshold by its k6-style name.
    pub thresholds: BTreeMap<String, ThresholdCheck>,
    /// The verdict.
    pub verdict: VerdictBlock,
    /// The run was stopped before its end.
    #[serde(default)]
    pub interrupted: bool,
}

/// The rules of a canary comparison, every default filled in.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CanaryRules {
    /// Latency fails above the baseline's p95 times this ...
    pub p95_ratio: f64,
    /// ... and by more than this many ms.
    pub p95_floor_ms: f64,
    /// Errors fail above the baseline's rate times this ...
    pub error_rate_ratio: f64,
    /// ... and above this rate ...
    pub error_rate_floor: f64,
    /// ... and with at least this many canary errors.
    pub min_error_count: i32,
    /// Fewer requests on either side: INCONCLUSIVE.
    pub min_requests: i32,
}

impl Default for CanaryRules {
    /// CONTRACT.md's defaults: 1.10, 5 ms, 1.5, 0.005, 5 errors, 200 requests.
    fn default() -> Self {
        CanaryRules {
            p95_ratio: 1.10,
            p95_floor_ms: 5.0,
            error_rate_ratio: 1.5,
            error_rate_floor: 0.005,
            min_error_count: 5,
            min_requests: 200,
        }
    }
}

/// How a canary's traffic was generated and judged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CanaryConfig {
    /// Both sides were driven interleaved on one schedule.
    pub interleaved: bool,
    /// `hdr` or `nearest-rank`.
    pub percentile_method: String,
    /// The rules applied.
    pub rules: CanaryRules,
    /// The baseline server.
    pub baseline: String,
    /// The canary server.
    pub canary: String,
}

/// The statistics of one phase.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PhaseStats {
    /// The baseline's.
    pub baseline: Option<TrafficStats>,
    /// The canary's.
    pub canary: Option<TrafficStats>,
}

/// The phases of a canary run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CanaryPhases {
    /// Before the canary took traffic.
    pub before: PhaseStats,
    /// With the canary.
    pub during: PhaseStats,
}

/// What a canary check's value may reach.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CheckLimit {
    /// The ratio.
    pub ratio: f64,
    /// The floor it must also exceed to fail.
    pub floor: f64,
}

/// The samples behind a check.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CheckSamples {
    /// The baseline's requests.
    pub control: i32,
    /// The canary's requests.
    pub experiment: i32,
    /// The fewest either side needs.
    pub min: i32,
}

/// How a check came out (Kayenta's classification).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Classification {
    /// Within the limit.
    Pass,
    /// The canary is worse than the limit allows.
    High,
    /// Too few samples.
    Inconclusive,
    /// No requests.
    NoData,
}

impl Classification {
    /// Returns the name reported.
    pub fn as_str(self) -> &'static str {
        match self {
            Classification::Pass => "Pass",
            Classification::High => "High",
            Classification::Inconclusive => "Inconclusive",
            Classification::NoData => "NoData",
        }
    }
}

/// One check of a canary comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanaryCheck {
    /// `latency_p95` or `error_rate`.
    pub name: String,
    /// The baseline's value.
    pub control: f64,
    /// The canary's value.
    pub experiment: f64,
    /// `experiment - control`.
    pub delta: f64,
    /// `experiment / control`; `None` when `control` is 0.
    pub ratio: Option<f64>,
    /// `(ratio - 1) * 100`; `None` when `control` is 0.
    pub delta_pct: Option<f64>,
    /// The limit.
    pub limit: CheckLimit,
    /// The samples.
    pub samples: CheckSamples,
    /// How it came out.
    pub classification: Classification,
    /// Why, in one sentence.
    pub classification_reason: String,
    /// Whether it passed.
    pub ok: bool,
}

/// `canary-report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanaryReport {
    /// "1".
    pub version: String,
    /// Who ran it.
    pub metadata: RunMetadata,
    /// How it was generated and judged.
    pub config: CanaryConfig,
    /// The phases.
    pub phases: CanaryPhases,
    /// The baseline judged.
    pub control: TrafficStats,
    /// The canary judged.
    pub experiment: TrafficStats,
    /// One result per check.
    pub results: Vec<CanaryCheck>,
    /// The verdict.
    pub verdict: VerdictBlock,
    /// The run was stopped before its end.
    #[serde(default)]
    pub interrupted: bool,
}

/// Serialises an optional float that may be NaN or infinite (which JSON
/// numbers cannot carry) as a number, or as `"NaN"`, `"Infinity"`,
/// `"-Infinity"` (proto3 JSON's spelling).
mod float_or_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            None => s.serialize_none(),
            Some(x) if x.is_nan() => s.serialize_str("NaN"),
            Some(x) if x.is_infinite() && *x > 0.0 => s.serialize_str("Infinity"),
            Some(x) if x.is_infinite() => s.serialize_str("-Infinity"),
            Some(x) => s.serialize_f64(*x),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum F {
            N(f64),
            S(String),
        }
        Ok(match Option::<F>::deserialize(d)? {
            None => None,
            Some(F::N(x)) => Some(x),
            Some(F::S(s)) => Some(match s.as_str() {
                "Infinity" => f64::INFINITY,
                "-Infinity" => f64::NEG_INFINITY,
                _ => f64::NAN,
            }),
        })
    }
}
