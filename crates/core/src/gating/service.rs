//! The gating use cases, whatever the transport. Every call needs a gating or
//! admin token; inputs are checked whole before anything is judged, kept or
//! counted.

use std::sync::Arc;

pub use super::document::{
    CanaryInput, DEFAULT_MAX_ERROR_RATE, DEFAULT_MIN_REQUESTS, MAX_LABEL_LEN, RulesInput,
    SmokeInput,
};
use super::{
    budget::{self, BudgetQuery, Slo},
    document,
    nlp::{self, Outcome},
    report::{Budget, CanaryReport},
    store::{self, Cursor, GateRun, Kind, Report},
};
use crate::{
    auth::Principal,
    error::{Error, Result},
    flag::state::Flags,
    service::{
        Input,
        page::{self, Page, PageRequest},
    },
    store::Store,
    telemetry::metrics,
    tenant::Tenants,
};

/// The gating service of a replica. Cheap to clone.
#[derive(Clone)]
pub struct GatingService {
    store: Store,
    flags: Arc<Flags>,
    tenants: Arc<Tenants>,
    slos: Arc<Vec<Slo>>,
    default_slo: String,
    prometheus: Option<Arc<dyn BudgetQuery>>,
    /// The room for runs in one page (see [`page::byte_budget`]).
    page_budget: usize,
}

impl std::fmt::Debug for GatingService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatingService")
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
    /// The message limit answers stay within.
    pub max_message_bytes: usize,
}

impl GatingService {
    /// Creates the service.
    pub fn new(p: Parts) -> GatingService {
        GatingService {
            store: p.store,
            flags: p.flags,
            tenants: p.tenants,
            slos: Arc::new(p.slos),
            default_slo: p.default_slo,
            prometheus: p.prometheus,
            page_budget: page::byte_budget(p.max_message_bytes),
        }
    }

    fn slo(&self, name: &str) -> Result<&Slo> {
        let name = if name.is_empty() {
            self.default_slo.as_str()
        } else {
            name
        };
        self.slos.iter().find(|s| s.name == name).ok_or_else(|| {
            let known: Vec<&str> = self.slos.iter().map(|s| s.name.as_str()).collect();
            Error::new(
                crate::error::ErrorKind::NotFound,
                format!(
                    "SLO {name:?} not found; the SLOs are {} (slos in the configuration)",
                    known.join(", ")
                ),
            )
        })
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
        document::check_smoke(&i)?;
        let budget = self.threshold(&i.slo).await?;
        let target = i.target.clone();
        let run_id = i.run_id.clone();
        let summary = document::smoke_summary(i, budget)?;
        let status = summary.verdict.status;
        let run = store::insert(
            &self.store,
            Report::Smoke(Box::new(summary)),
            &run_id,
            &target,
            self.flags.revision(),
        )
        .await?;
        metrics::gate_run("smoke", status.as_str());
        Ok(run)
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
        let (runs, more) = page::fit(runs, more, self.page_budget, GateRun::encoded_bound);
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
        let record = i.record;
        let run_id = i.metadata.run_id.clone();
        let target = i.config.canary.clone();
        let report = document::canary_report(i)?;
        if !record {
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
            match self.flags.evaluate(
                nlp::THRESHOLD_FLAG,
                Some(tenant),
                &serde_json::Map::new(),
                false,
            ) {
                Ok(e) => e
                    .resolution
                    .value
                    .as_f64()
                    .unwrap_or(nlp::DEFAULT_THRESHOLD),
                Err(_) => nlp::DEFAULT_THRESHOLD,
            }
        });
        for ((tenant, intent), (n, f)) in &counts {
            metrics::nlp(tenant, intent, *n, *f);
        }
        Ok((outcomes.len() as u64, fallbacks))
    }
}
