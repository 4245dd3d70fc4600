//! The gating use cases, whatever the transport. Every call needs a gating or
//! admin token; inputs are checked whole before anything is judged, kept or
//! counted.

use std::sync::Arc;

use super::{
    budget::{self, BudgetQuery, Slo},
    judge,
    nlp::{self, Outcome},
    report::{
        Budget, CanaryConfig, CanaryPhases, CanaryReport, CanaryRules, DOCUMENT_VERSION,
        PhaseStats, RunMetadata, SmokeConfig, SmokeSummary, TrafficStats,
    },
    store::{self, Cursor, GateRun, Kind, Report},
};
use crate::{
    auth::Principal,
    error::{Error, Result},
    flag::state::Flags,
    service::{
        Input,
        page::{Page, PageRequest},
    },
    store::Store,
    telemetry::metrics,
    tenant::Tenants,
};

/// The error-rate limit of a smoke run when none is given.
pub const DEFAULT_MAX_ERROR_RATE: f64 = 0.01;
/// The fewest requests a smoke run needs when none is given.
pub const DEFAULT_MIN_REQUESTS: i32 = 200;
/// The longest target or run id kept.
pub const MAX_LABEL_LEN: usize = 256;

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

/// The gating service of a replica. Cheap to clone.
#[derive(Clone)]
pub struct Service {
    store: Store,
    flags: Arc<Flags>,
    tenants: Arc<Tenants>,
    slos: Arc<Vec<Slo>>,
    default_slo: String,
    prometheus: Option<Arc<dyn BudgetQuery>>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("gating::Service")
            .field(
                "slos",
                &self.slos.iter().map(|s| &s.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// What the gating service is built over.
pub struct Parts {
    /// The database (gate runs).
    pub store: Store,
    /// The replica's flags (the NLP threshold, the revision in force).
    pub flags: Arc<Flags>,
    /// The replica's tenants (NLP outcomes name one).
    pub tenants: Arc<Tenants>,
    /// The SLOs.
    pub slos: Vec<Slo>,
    /// The SLO of a request that names none.
    pub default_slo: String,
    /// Where budgets are read; `None` without Prometheus.
    pub prometheus: Option<Arc<dyn BudgetQuery>>,
}

fn check_label(field: &str, v: &str) -> Result<()> {
    if v.len() > MAX_LABEL_LEN {
        return Err(Error::invalid_argument(
            field,
            format!("must be at most {MAX_LABEL_LEN} bytes"),
        ));
    }
    Ok(())
}

impl Service {
    /// Creates the service.
    pub fn new(p: Parts) -> Service {
        Service {
            store: p.store,
            flags: p.flags,
            tenants: p.tenants,
            slos: Arc::new(p.slos),
            default_slo: p.default_slo,
            prometheus: p.prometheus,
        }
    }

    fn slo(&self, name: &str) -> Result<&Slo> {
        let name = if name.is_empty() {
            self.default_slo.as_str()
        } else {
            name
        };
        self.slos
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| Error::not_found(format!("SLO {name:?}")))
    }

    /// Reads the budget of `slo` now and picks its threshold.
    async fn threshold(&self, slo: &str) -> Result<Budget> {
        let slo = self.slo(slo)?;
        let answer = match &self.prometheus {
            None => None,
            Some(q) => Some(q.instant(&slo.query).await),
        };
        let b = budget::choose(slo, answer, crate::store::now_us());
        metrics::budget(
            &b.slo,
            b.source.as_str(),
            b.applied_p95_ms,
            b.remaining_ratio,
        );
        Ok(b)
    }

    /// Reads every SLO's budget, for the gauges (a background task calls it).
    pub async fn refresh(&self) {
        for slo in self.slos.iter() {
            let _ = self.threshold(&slo.name).await;
        }
    }

    /// `GetSmokeThreshold`: the threshold that applies now.
    pub async fn smoke_threshold(&self, p: &Principal, slo: &str) -> Result<Budget> {
        p.require_gating()?;
        self.threshold(slo).await
    }

    /// `EvaluateSmoke`: judges a smoke run against the threshold that applies
    /// now and keeps it.
    pub async fn evaluate_smoke(&self, p: &Principal, input: Input<SmokeInput>) -> Result<GateRun> {
        p.require_gating()?;
        let i = input?;
        let mut results = i
            .results
            .ok_or_else(|| Error::invalid_argument("results", "is required"))?;
        judge::validate_stats("results", &results)?;
        let max_error_rate = i.max_error_rate.unwrap_or(DEFAULT_MAX_ERROR_RATE);
        if !(max_error_rate > 0.0 && max_error_rate <= 1.0) {
            return Err(Error::invalid_argument(
                "max_error_rate",
                format!("must be a ratio above 0 and at most 1, not {max_error_rate}"),
            ));
        }
        let min_requests = i.min_requests.unwrap_or(DEFAULT_MIN_REQUESTS);
        if min_requests < 0 {
            return Err(Error::invalid_argument(
                "min_requests",
                "must not be negative",
            ));
        }
        judge::validate_smoke_config("config", &i.config)?;
        check_label("target", &i.target)?;
        check_label("run_id", &i.run_id)?;
        let budget = self.threshold(&i.slo).await?;
        if results.label.is_empty() {
            results.label.clone_from(&i.target);
        }
        let (thresholds, verdict) = judge::smoke(
            &results,
            budget.applied_p95_ms,
            max_error_rate,
            min_requests,
        );
        let mut config = i.config;
        if config.target.is_empty() {
            config.target.clone_from(&i.target);
        }
        let summary = SmokeSummary {
            version: DOCUMENT_VERSION.into(),
            metadata: self.metadata(i.metadata, &i.run_id),
            config,
            budget,
            results,
            thresholds,
            verdict,
        };
        let status = summary.verdict.status;
        let run = store::insert(
            &self.store,
            Report::Smoke(Box::new(summary)),
            &i.run_id,
            &i.target,
            self.flags.revision(),
        )
        .await?;
        metrics::gate_run("smoke", status.as_str());
        Ok(run)
    }

    fn metadata(&self, mut m: RunMetadata, run_id: &str) -> RunMetadata {
        if m.generated_at_us == 0 {
            m.generated_at_us = crate::store::now_us();
        }
        if m.run_id.is_empty() {
            m.run_id = run_id.to_owned();
        }
        if m.tool_version.is_empty() {
            m.tool_version = concat!("switchyard ", env!("CARGO_PKG_VERSION")).to_owned();
        }
        m
    }

    /// `ListGateRuns`: newest first, of `kind` and `target` when given.
    pub async fn list_gate_runs(
        &self,
        p: &Principal,
        kind: &str,
        target: &str,
        page: &PageRequest,
    ) -> Result<Page<GateRun>> {
        p.require_gating()?;
        let kind = match kind {
            "" => None,
            k => Some(Kind::parse(k).ok_or_else(|| {
                Error::invalid_argument("kind", format!("{k:?}: must be smoke or canary"))
            })?),
        };
        let (size, after) = page.resolve(50, 1000)?;
        let after = Cursor::parse(&after)?;
        let (runs, more) = store::list(&self.store, kind, target, after.as_ref(), size).await?;
        let keys: Vec<String> = runs
            .iter()
            .map(|r| {
                Cursor {
                    created_at_us: r.created_at_us,
                    id: r.id.clone(),
                }
                .key()
            })
            .collect();
        let next = Page::new(keys, more, |k| k).next_token;
        Ok(Page {
            items: runs,
            next_token: next,
        })
    }

    /// `CompareCanary`: the whole report, and the kept run when `record`.
    pub async fn compare_canary(
        &self,
        p: &Principal,
        input: Input<CanaryInput>,
    ) -> Result<(CanaryReport, Option<GateRun>)> {
        p.require_gating()?;
        let i = input?;
        let mut baseline = i
            .baseline
            .ok_or_else(|| Error::invalid_argument("baseline", "is required"))?;
        judge::validate_stats("baseline", &baseline)?;
        let mut canary = i
            .canary
            .ok_or_else(|| Error::invalid_argument("canary", "is required"))?;
        judge::validate_stats("canary", &canary)?;
        if let Some(before) = &i.baseline_before {
            judge::validate_stats("baseline_before", before)?;
        }
        let rules = i.rules.resolve();
        judge::validate_rules("policy", &rules)?;
        check_label("config.canary", &i.config.canary)?;
        check_label("metadata.run_id", &i.metadata.run_id)?;
        for (s, label) in [(&mut baseline, "baseline"), (&mut canary, "canary")] {
            if s.label.is_empty() {
                s.label = label.into();
            }
        }
        let (results, verdict) = judge::compare(&baseline, &canary, &rules);
        let run_id = i.metadata.run_id.clone();
        let target = i.config.canary.clone();
        let report = CanaryReport {
            version: DOCUMENT_VERSION.into(),
            metadata: self.metadata(i.metadata, &run_id),
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
            verdict,
        };
        if !i.record {
            return Ok((report, None));
        }
        let status = report.verdict.status;
        let run = store::insert(
            &self.store,
            Report::Canary(Box::new(report.clone())),
            &run_id,
            &target,
            self.flags.revision(),
        )
        .await?;
        metrics::gate_run("canary", status.as_str());
        Ok((report, Some(run)))
    }

    /// `RecordNlpOutcomes`: counts a batch; returns (recorded, fallbacks).
    pub async fn record_nlp_outcomes(
        &self,
        p: &Principal,
        outcomes: Input<Vec<Outcome>>,
    ) -> Result<(u64, u64)> {
        p.require_gating()?;
        let outcomes = outcomes?;
        nlp::validate(&outcomes)?;
        let mut known = std::collections::BTreeSet::new();
        for (i, o) in outcomes.iter().enumerate() {
            if !known.contains(o.tenant_id.as_str()) {
                if !self.tenants.exists(&o.tenant_id).await? {
                    return Err(Error::not_found(format!(
                        "outcomes[{i}].tenant_id: tenant {:?}",
                        o.tenant_id
                    )));
                }
                known.insert(o.tenant_id.as_str());
            }
        }
        let (counts, fallbacks) = nlp::count(&outcomes, |tenant| {
            match self.flags.evaluate(nlp::THRESHOLD_FLAG, Some(tenant)) {
                Ok((e, _)) => e.value.as_f64().unwrap_or(nlp::DEFAULT_THRESHOLD),
                Err(_) => nlp::DEFAULT_THRESHOLD,
            }
        });
        for ((tenant, intent), (n, f)) in &counts {
            metrics::nlp(tenant, intent, *n, *f);
        }
        Ok((outcomes.len() as u64, fallbacks))
    }
}
