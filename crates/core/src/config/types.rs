//! The values settings take beyond numbers and text: the release track, the
//! log format, the trace exporter and sampler, SLOs and their tiers, token
//! secrets.

use std::fmt;

use serde::Deserialize;

/// Which release track this replica serves; every request metric carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Track {
    /// The normal production track.
    #[default]
    Stable,
    /// The baseline of a canary comparison.
    Baseline,
    /// The canary.
    Canary,
}

impl Track {
    /// Returns the label value used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Track::Stable => "stable",
            Track::Baseline => "baseline",
            Track::Canary => "canary",
        }
    }

    pub(super) fn parse(s: &str) -> Option<Self> {
        match s {
            "stable" => Some(Track::Stable),
            "baseline" => Some(Track::Baseline),
            "canary" => Some(Track::Canary),
            _ => None,
        }
    }
}

/// How log lines are written on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (ANSI colours on a terminal).
    #[default]
    Text,
    /// One JSON object per line, with the current span's fields (`trace_id`).
    Json,
}

/// Where finished spans go (`OTEL_TRACES_EXPORTER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TracesExporter {
    /// OTLP over gRPC to `OTEL_EXPORTER_OTLP_ENDPOINT`.
    Otlp,
    /// JSON-ish text on stdout (opentelemetry-stdout), for trying it out.
    Console,
    /// Nowhere: spans are still made for the trace id in logs, never exported.
    None,
}

/// Which new traces are kept (`OTEL_TRACES_SAMPLER`, the OpenTelemetry names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Sampler {
    /// Every trace.
    AlwaysOn,
    /// None.
    AlwaysOff,
    /// `OTEL_TRACES_SAMPLER_ARG` of all traces, whatever the caller decided.
    #[serde(rename = "traceidratio")]
    TraceIdRatio,
    /// The caller's decision, else every trace.
    ParentbasedAlwaysOn,
    /// The caller's decision, else none.
    ParentbasedAlwaysOff,
    /// The caller's decision, else `OTEL_TRACES_SAMPLER_ARG` of new traces
    /// (the default, at 0.01).
    #[default]
    #[serde(rename = "parentbased_traceidratio")]
    ParentbasedTraceIdRatio,
}

impl Sampler {
    pub(super) fn parse(s: &str) -> Option<Sampler> {
        Some(match s {
            "always_on" => Sampler::AlwaysOn,
            "always_off" => Sampler::AlwaysOff,
            "traceidratio" => Sampler::TraceIdRatio,
            "parentbased_always_on" => Sampler::ParentbasedAlwaysOn,
            "parentbased_always_off" => Sampler::ParentbasedAlwaysOff,
            "parentbased_traceidratio" => Sampler::ParentbasedTraceIdRatio,
            _ => return None,
        })
    }
}

/// One tier of an SLO's table: with less budget left than `below`, the smoke
/// p95 threshold is `p95_ms`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    /// A budget-left ratio, above 0 and at most 1.
    pub below: f64,
    /// The threshold, ms.
    pub p95_ms: f64,
}

/// An SLO whose error budget sets the smoke threshold (`[[slos]]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SloConfig {
    /// Its name, as `GetSmokeThreshold` and `switchyard smoke --slo` give it.
    pub name: String,
    /// A PromQL instant query answering the budget left as a ratio (1: all
    /// left, 0: spent).
    pub query: String,
    /// The threshold while the budget is above every tier, ms.
    #[serde(default = "default_base_p95_ms")]
    pub base_p95_ms: f64,
    /// The tiers.
    #[serde(default)]
    pub tiers: Vec<TierConfig>,
}

fn default_base_p95_ms() -> f64 {
    450.0
}

/// The built-in SLO: 99.9 % of API requests not failing on the server over
/// 30 days, the budget series of `observability/prometheus/rules.yml`; base
/// 450 ms, below 0.80 ⇒ 420 ms, below 0.60 ⇒ 400 ms.
pub fn default_slos() -> Vec<SloConfig> {
    vec![SloConfig {
        name: "availability".into(),
        query: "slo:switchyard_error_budget:remaining_ratio{slo=\"availability\"}".into(),
        base_p95_ms: 450.0,
        tiers: vec![
            TierConfig {
                below: 0.8,
                p95_ms: 420.0,
            },
            TierConfig {
                below: 0.6,
                p95_ms: 400.0,
            },
        ],
    }]
}

/// A token secret; its `Debug` never shows the value, so configuration can be
/// logged.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A bearer token and the scope it grants.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// `admin`, `gating` or `tenant:<id>`.
    pub scope: String,
    /// The secret presented as `authorization: Bearer <secret>`.
    pub secret: Secret,
}
