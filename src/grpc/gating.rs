//! `switchyard.v1.GatingService`.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::unimplemented;
use crate::{
    api::v1::{gating_service_server::GatingService, *},
    auth::principal,
    server::App,
};

/// The GatingService implementation.
#[derive(Clone)]
pub struct GatingApi {
    #[allow(dead_code)]
    app: Arc<App>,
}

impl GatingApi {
    /// Creates the service over the shared application state.
    pub fn new(app: Arc<App>) -> Self {
        GatingApi { app }
    }
}

#[tonic::async_trait]
impl GatingService for GatingApi {
    async fn get_smoke_threshold(
        &self,
        req: Request<GetSmokeThresholdRequest>,
    ) -> Result<Response<GetSmokeThresholdResponse>, Status> {
        principal(&req)?.require_gating()?;
        Err(unimplemented("GatingService.GetSmokeThreshold"))
    }

    async fn evaluate_smoke(
        &self,
        req: Request<EvaluateSmokeRequest>,
    ) -> Result<Response<EvaluateSmokeResponse>, Status> {
        principal(&req)?.require_gating()?;
        Err(unimplemented("GatingService.EvaluateSmoke"))
    }

    async fn list_gate_runs(
        &self,
        req: Request<ListGateRunsRequest>,
    ) -> Result<Response<ListGateRunsResponse>, Status> {
        principal(&req)?.require_gating()?;
        Err(unimplemented("GatingService.ListGateRuns"))
    }

    async fn compare_canary(
        &self,
        req: Request<CompareCanaryRequest>,
    ) -> Result<Response<CompareCanaryResponse>, Status> {
        principal(&req)?.require_gating()?;
        Err(unimplemented("GatingService.CompareCanary"))
    }

    async fn record_nlp_outcomes(
        &self,
        req: Request<RecordNlpOutcomesRequest>,
    ) -> Result<Response<RecordNlpOutcomesResponse>, Status> {
        principal(&req)?.require_gating()?;
        Err(unimplemented("GatingService.RecordNlpOutcomes"))
    }
}
