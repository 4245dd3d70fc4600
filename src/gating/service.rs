//! The gating use cases, whatever the transport. Every call needs a gating or
//! admin token; none is served by this version yet.

use std::convert::Infallible;

use crate::{
    auth::Principal,
    error::{Error, Result},
};

/// The gating service of a replica.
#[derive(Debug, Clone, Default)]
pub struct Service;

impl Service {
    /// Creates the service.
    pub fn new() -> Service {
        Service
    }

    /// `GetSmokeThreshold`: not served yet.
    pub async fn smoke_threshold(&self, p: &Principal) -> Result<Infallible> {
        unserved(p, "GatingService.GetSmokeThreshold")
    }

    /// `EvaluateSmoke`: not served yet.
    pub async fn evaluate_smoke(&self, p: &Principal) -> Result<Infallible> {
        unserved(p, "GatingService.EvaluateSmoke")
    }

    /// `ListGateRuns`: not served yet.
    pub async fn list_gate_runs(&self, p: &Principal) -> Result<Infallible> {
        unserved(p, "GatingService.ListGateRuns")
    }

    /// `CompareCanary`: not served yet.
    pub async fn compare_canary(&self, p: &Principal) -> Result<Infallible> {
        unserved(p, "GatingService.CompareCanary")
    }

    /// `RecordNlpOutcomes`: not served yet.
    pub async fn record_nlp_outcomes(&self, p: &Principal) -> Result<Infallible> {
        unserved(p, "GatingService.RecordNlpOutcomes")
    }
}

/// The scope check every gating call makes, then UNIMPLEMENTED (the
/// `Infallible` success type says no call answers yet).
fn unserved(p: &Principal, rpc: &str) -> Result<Infallible> {
    p.require_gating()?;
    Err(Error::unimplemented(rpc))
}
