//! `switchyard.v1.GatingService`: converts, calls `gating::service`, converts.
//!
//! The conversions between the proto documents and the domain's are public:
//! the CLI converts its measurements with them, so the RPCs and the files it
//! writes carry the same fields.

use tonic::{Request, Response, Status};

use super::status::OrStatus;
use super::{
    convert::{page, timestamp},
    principal,
};
use switchyard_api::v1::{
    self as pb, CompareCanaryRequest, CompareCanaryResponse, EvaluateSmokeRequest,
    EvaluateSmokeResponse, GetSmokeThresholdRequest, GetSmokeThresholdResponse,
    ListGateRunsRequest, ListGateRunsResponse, RecordNlpOutcomesRequest, RecordNlpOutcomesResponse,
    gating_service_server,
};
use switchyard_core::gating::{
    nlp::Outcome,
    report as d,
    service::{CanaryInput, GatingService, RulesInput, SmokeInput},
    store::{self, Report},
};

/// The GatingService implementation.
#[derive(Debug, Clone)]
pub struct GatingApi {
    gating: GatingService,
}

impl GatingApi {
    /// Creates the service over the gating use cases.
    pub fn new(gating: GatingService) -> Self {
        GatingApi { gating }
    }
}

/// Microseconds since the epoch of a timestamp (0 when absent).
pub fn timestamp_us(t: Option<&pbjson_types::Timestamp>) -> i64 {
    t.map_or(0, |t| {
        t.seconds
            .saturating_mul(1_000_000)
            .saturating_add(i64::from(t.nanos) / 1000)
    })
}

/// A verdict's proto value.
pub fn verdict_to_proto(v: d::Verdict) -> pb::Verdict {
    match v {
        d::Verdict::Pass => pb::Verdict::Pass,
        d::Verdict::Fail => pb::Verdict::Fail,
        d::Verdict::Inconclusive => pb::Verdict::Inconclusive,
        d::Verdict::NoData => pb::Verdict::NoData,
    }
}

/// Statistics from their message.
pub fn stats_from_proto(s: &pb::TrafficStats) -> d::TrafficStats {
    let l = s.latency_ms.unwrap_or_default();
    d::TrafficStats {
        label: s.label.clone(),
        count: s.count,
        ok: s.ok,
        errors: s.errors,
        error_rate: s.error_rate,
        rps: s.rps,
        latency_ms: d::LatencyMs {
            min: l.min,
            med: l.med,
            avg: l.avg,
            p90: l.p90,
            p95: l.p95,
            p99: l.p99,
            max: l.max,
            p50: l.p50,
        },
        status_code_distribution: s.status_code_distribution.clone(),
        error_distribution: s.error_distribution.clone(),
        percentile_method: s.percentile_method.clone(),
        duration_s: s.duration_s,
    }
}

/// Statistics as their message.
pub fn stats_to_proto(s: &d::TrafficStats) -> pb::TrafficStats {
    let l = &s.latency_ms;
    pb::TrafficStats {
        label: s.label.clone(),
        count: s.count,
        ok: s.ok,
        errors: s.errors,
        error_rate: s.error_rate,
        rps: s.rps,
        latency_ms: Some(pb::LatencyMs {
            min: l.min,
            med: l.med,
            avg: l.avg,
            p90: l.p90,
            p95: l.p95,
            p99: l.p99,
            max: l.max,
            p50: l.p50,
        }),
        status_code_distribution: s.status_code_distribution.clone(),
        error_distribution: s.error_distribution.clone(),
        percentile_method: s.percentile_method.clone(),
        duration_s: s.duration_s,
    }
}

/// Run metadata from its message.
pub fn metadata_from_proto(m: &pb::RunMetadata) -> d::RunMetadata {
    d::RunMetadata {
        generated_at_us: timestamp_us(m.generated_at.as_ref()),
        tool_version: m.tool_version.clone(),
        git_sha: m.git_sha.clone(),
        run_id: m.run_id.clone(),
    }
}

/// Run metadata as its message.
pub fn metadata_to_proto(m: &d::RunMetadata) -> pb::RunMetadata {
    pb::RunMetadata {
        generated_at: Some(timestamp(m.generated_at_us)),
        tool_version: m.tool_version.clone(),
        git_sha: m.git_sha.clone(),
        run_id: m.run_id.clone(),
    }
}

/// A smoke run's configuration from its message.
pub fn smoke_config_from_proto(c: &pb::SmokeConfig) -> d::SmokeConfig {
    d::SmokeConfig {
        target: c.target.clone(),
        calls: c.calls.clone(),
        rate: c.rate,
        duration_s: c.duration_s,
        warmup_s: c.warmup_s,
        percentile_method: c.percentile_method.clone(),
    }
}

/// A smoke run's configuration as its message.
pub fn smoke_config_to_proto(c: &d::SmokeConfig) -> pb::SmokeConfig {
    pb::SmokeConfig {
        target: c.target.clone(),
        calls: c.calls.clone(),
        rate: c.rate,
        duration_s: c.duration_s,
        warmup_s: c.warmup_s,
        percentile_method: c.percentile_method.clone(),
    }
}

/// The budget block as its message.
pub fn budget_to_proto(b: &d::Budget) -> pb::Budget {
    pb::Budget {
        source: b.source.as_str().to_owned(),
        slo: b.slo.clone(),
        query: b.query.clone(),
        evaluated_at: Some(timestamp(b.evaluated_at_us)),
        remaining_ratio: b.remaining_ratio,
        clamped_ratio: b.clamped_ratio,
        tiers: b
            .tiers
            .iter()
            .map(|t| pb::BudgetTier {
                below: t.below,
                p95_ms: t.p95_ms,
            })
            .collect(),
        base_p95_ms: b.base_p95_ms,
        applied_p95_ms: b.applied_p95_ms,
        tier: b.tier.clone(),
        reason: b.reason.clone(),
    }
}

/// The budget block from its message (as `GetSmokeThreshold` answers it);
/// an unknown source reads as the fallback.
pub fn budget_from_proto(b: &pb::Budget) -> d::Budget {
    d::Budget {
        source: match b.source.as_str() {
            "prometheus" => d::BudgetSource::Prometheus,
            "disabled" => d::BudgetSource::Disabled,
            _ => d::BudgetSource::Fallback,
        },
        slo: b.slo.clone(),
        query: b.query.clone(),
        evaluated_at_us: timestamp_us(b.evaluated_at.as_ref()),
        remaining_ratio: b.remaining_ratio,
        clamped_ratio: b.clamped_ratio,
        tiers: b
            .tiers
            .iter()
            .map(|t| d::BudgetTier {
                below: t.below,
                p95_ms: t.p95_ms,
            })
            .collect(),
        base_p95_ms: b.base_p95_ms,
        applied_p95_ms: b.applied_p95_ms,
        tier: b.tier.clone(),
        reason: b.reason.clone(),
    }
}

fn verdict_block_to_proto(v: &d::VerdictBlock) -> pb::VerdictBlock {
    pb::VerdictBlock {
        status: v.status.as_str().into(),
        reasons: v.reasons.clone(),
        exit_code: v.exit_code,
    }
}

/// A smoke summary as its message.
pub fn smoke_to_proto(s: &d::SmokeSummary) -> pb::SmokeSummary {
    pb::SmokeSummary {
        version: s.version.clone(),
        kind: "SmokeSummary".into(),
        metadata: Some(metadata_to_proto(&s.metadata)),
        config: Some(smoke_config_to_proto(&s.config)),
        budget: Some(budget_to_proto(&s.budget)),
        results: Some(stats_to_proto(&s.results)),
        thresholds: s
            .thresholds
            .iter()
            .map(|(k, t)| {
                (
                    k.clone(),
                    pb::ThresholdCheck {
                        ok: t.ok,
                        observed: t.observed,
                        limit: t.limit,
                        samples: t.samples,
                        reason: t.reason.clone(),
                    },
                )
            })
            .collect(),
        verdict: Some(verdict_block_to_proto(&s.verdict)),
        interrupted: s.interrupted,
    }
}

/// Canary rules as given, from their message.
pub fn rules_from_proto(p: Option<&pb::CanaryPolicy>) -> RulesInput {
    let Some(p) = p else {
        return RulesInput::default();
    };
    RulesInput {
        p95_ratio: p.p95_ratio,
        p95_floor_ms: p.p95_floor_ms,
        error_rate_ratio: p.error_rate_ratio,
        error_rate_floor: p.error_rate_floor,
        min_error_count: p.min_error_count,
        min_requests: p.min_requests,
    }
}

/// Canary rules, every default filled in, as the policy message.
pub fn rules_to_proto(r: &d::CanaryRules) -> pb::CanaryPolicy {
    pb::CanaryPolicy {
        p95_ratio: Some(r.p95_ratio),
        p95_floor_ms: Some(r.p95_floor_ms),
        error_rate_ratio: Some(r.error_rate_ratio),
        error_rate_floor: Some(r.error_rate_floor),
        min_error_count: Some(r.min_error_count),
        min_requests: Some(r.min_requests),
    }
}

/// Rules as given, as the policy message (left out stays left out).
pub fn rules_input_to_proto(r: &RulesInput) -> pb::CanaryPolicy {
    pb::CanaryPolicy {
        p95_ratio: r.p95_ratio,
        p95_floor_ms: r.p95_floor_ms,
        error_rate_ratio: r.error_rate_ratio,
        error_rate_floor: r.error_rate_floor,
        min_error_count: r.min_error_count,
        min_requests: r.min_requests,
    }
}

/// A canary run's configuration from its message (its rules are separate).
pub fn canary_config_from_proto(c: &pb::CanaryConfig) -> d::CanaryConfig {
    d::CanaryConfig {
        interleaved: c.interleaved,
        percentile_method: c.percentile_method.clone(),
        rules: rules_from_proto(c.rules.as_ref()).resolve(),
        baseline: c.baseline.clone(),
        canary: c.canary.clone(),
    }
}

fn phase_to_proto(p: &d::PhaseStats) -> pb::PhaseStats {
    pb::PhaseStats {
        baseline: p.baseline.as_ref().map(stats_to_proto),
        canary: p.canary.as_ref().map(stats_to_proto),
    }
}

/// A canary run's configuration as its message.
pub fn canary_config_to_proto(c: &d::CanaryConfig) -> pb::CanaryConfig {
    pb::CanaryConfig {
        interleaved: c.interleaved,
        percentile_method: c.percentile_method.clone(),
        rules: Some(rules_to_proto(&c.rules)),
        baseline: c.baseline.clone(),
        canary: c.canary.clone(),
    }
}

/// A canary report as its message.
pub fn canary_to_proto(r: &d::CanaryReport) -> pb::CanaryReport {
    pb::CanaryReport {
        version: r.version.clone(),
        kind: "CanaryReport".into(),
        metadata: Some(metadata_to_proto(&r.metadata)),
        config: Some(canary_config_to_proto(&r.config)),
        phases: Some(pb::CanaryPhases {
            before: Some(phase_to_proto(&r.phases.before)),
            during: Some(phase_to_proto(&r.phases.during)),
        }),
        control: Some(stats_to_proto(&r.control)),
        experiment: Some(stats_to_proto(&r.experiment)),
        results: r.results.iter().map(check_to_proto).collect(),
        verdict: Some(verdict_block_to_proto(&r.verdict)),
        interrupted: r.interrupted,
    }
}

fn check_to_proto(c: &d::CanaryCheck) -> pb::CanaryCheck {
    pb::CanaryCheck {
        name: c.name.clone(),
        control: c.control,
        experiment: c.experiment,
        delta: c.delta,
        ratio: c.ratio,
        delta_pct: c.delta_pct,
        limit: Some(pb::CheckLimit {
            ratio: c.limit.ratio,
            floor: c.limit.floor,
        }),
        samples: Some(pb::CheckSamples {
            control: c.samples.control,
            experiment: c.samples.experiment,
            min: c.samples.min,
        }),
        classification: c.classification.as_str().into(),
        classification_reason: c.classification_reason.clone(),
        ok: c.ok,
    }
}

/// A kept gate run as its message.
pub fn run_to_proto(r: &store::GateRun) -> pb::GateRun {
    let (threshold_ms, reasons, report) = match &r.report {
        Report::Smoke(s) => (
            s.budget.applied_p95_ms,
            s.verdict.reasons.clone(),
            pb::gate_run::Report::Smoke(smoke_to_proto(s)),
        ),
        Report::Canary(c) => (
            0.0,
            c.verdict.reasons.clone(),
            pb::gate_run::Report::Canary(canary_to_proto(c)),
        ),
    };
    pb::GateRun {
        id: r.id.clone(),
        kind: r.report.kind().as_str().into(),
        verdict: verdict_to_proto(r.verdict()) as i32,
        reasons,
        threshold_ms,
        run_id: r.run_id.clone(),
        create_time: Some(timestamp(r.created_at_us)),
        target: r.target.clone(),
        revision: r.revision,
        report: Some(report),
    }
}

#[tonic::async_trait]
impl gating_service_server::GatingService for GatingApi {
    async fn get_smoke_threshold(
        &self,
        req: Request<GetSmokeThresholdRequest>,
    ) -> Result<Response<GetSmokeThresholdResponse>, Status> {
        let b = self
            .gating
            .smoke_threshold(principal(&req)?, &req.get_ref().slo)
            .await
            .or_status()?;
        Ok(Response::new(GetSmokeThresholdResponse {
            threshold_ms: b.applied_p95_ms,
            error_budget_remaining: b.remaining_ratio.unwrap_or(f64::NAN),
            tier: b.tier.clone(),
            source: b.source.as_str().into(),
            query: b.query.clone(),
            evaluate_time: Some(timestamp(b.evaluated_at_us)),
            budget: Some(budget_to_proto(&b)),
        }))
    }

    async fn evaluate_smoke(
        &self,
        req: Request<EvaluateSmokeRequest>,
    ) -> Result<Response<EvaluateSmokeResponse>, Status> {
        let p = principal(&req)?.clone();
        let r = req.into_inner();
        let input = SmokeInput {
            results: r.results.as_ref().map(stats_from_proto),
            target: r.target,
            run_id: r.run_id,
            slo: r.slo,
            max_error_rate: r.max_error_rate,
            min_requests: r.min_requests,
            config: r
                .config
                .as_ref()
                .map(smoke_config_from_proto)
                .unwrap_or_default(),
            metadata: r
                .metadata
                .as_ref()
                .map(metadata_from_proto)
                .unwrap_or_default(),
            interrupted: r.interrupted,
        };
        let run = self
            .gating
            .evaluate_smoke(&p, Ok(input))
            .await
            .or_status()?;
        Ok(Response::new(EvaluateSmokeResponse {
            run: Some(run_to_proto(&run)),
        }))
    }

    async fn list_gate_runs(
        &self,
        req: Request<ListGateRunsRequest>,
    ) -> Result<Response<ListGateRunsResponse>, Status> {
        let r = req.get_ref();
        let page = self
            .gating
            .list_gate_runs(
                principal(&req)?,
                &r.kind,
                &r.target,
                &page(r.page_size, &r.page_token),
            )
            .await
            .or_status()?;
        Ok(Response::new(ListGateRunsResponse {
            runs: page.items.iter().map(run_to_proto).collect(),
            next_page_token: page.next_token,
        }))
    }

    async fn compare_canary(
        &self,
        req: Request<CompareCanaryRequest>,
    ) -> Result<Response<CompareCanaryResponse>, Status> {
        let p = principal(&req)?.clone();
        let r = req.into_inner();
        let input = CanaryInput {
            baseline: r.baseline.as_ref().map(stats_from_proto),
            canary: r.canary.as_ref().map(stats_from_proto),
            rules: rules_from_proto(r.policy.as_ref()),
            record: r.record,
            baseline_before: r.baseline_before.as_ref().map(stats_from_proto),
            config: r
                .config
                .as_ref()
                .map(canary_config_from_proto)
                .unwrap_or_default(),
            metadata: r
                .metadata
                .as_ref()
                .map(metadata_from_proto)
                .unwrap_or_default(),
            interrupted: r.interrupted,
        };
        let (report, run) = self
            .gating
            .compare_canary(&p, Ok(input))
            .await
            .or_status()?;
        let report_verdict = report.verdict.status;
        let report = canary_to_proto(&report);
        Ok(Response::new(CompareCanaryResponse {
            verdict: verdict_to_proto(report_verdict) as i32,
            checks: report.results.clone(),
            report: Some(report),
            run: run.as_ref().map(run_to_proto),
        }))
    }

    async fn record_nlp_outcomes(
        &self,
        req: Request<RecordNlpOutcomesRequest>,
    ) -> Result<Response<RecordNlpOutcomesResponse>, Status> {
        let p = principal(&req)?.clone();
        let outcomes = req
            .into_inner()
            .outcomes
            .into_iter()
            .map(|o| Outcome {
                tenant_id: o.tenant_id,
                confidence: o.confidence,
                intent: o.intent,
            })
            .collect();
        let (recorded, fallbacks) = self
            .gating
            .record_nlp_outcomes(&p, Ok(outcomes))
            .await
            .or_status()?;
        Ok(Response::new(RecordNlpOutcomesResponse {
            recorded: i32::try_from(recorded).unwrap_or(i32::MAX),
            fallbacks: i32::try_from(fallbacks).unwrap_or(i32::MAX),
        }))
    }
}
