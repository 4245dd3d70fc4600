//! `switchyard.v1.GatingService`: converts, calls `gating::service`, converts.

use tonic::{Request, Response, Status};

use super::principal;
use crate::{
    api::v1::{gating_service_server::GatingService, *},
    gating::service::Service,
};

/// The GatingService implementation.
#[derive(Debug, Clone)]
pub struct GatingApi {
    gating: Service,
}

impl GatingApi {
    /// Creates the service over the gating use cases.
    pub fn new(gating: Service) -> Self {
        GatingApi { gating }
    }
}

#[tonic::async_trait]
impl GatingService for GatingApi {
    async fn get_smoke_threshold(
        &self,
        req: Request<GetSmokeThresholdRequest>,
    ) -> Result<Response<GetSmokeThresholdResponse>, Status> {
        match self.gating.smoke_threshold(principal(&req)?).await? {}
    }

    async fn evaluate_smoke(
        &self,
        req: Request<EvaluateSmokeRequest>,
    ) -> Result<Response<EvaluateSmokeResponse>, Status> {
        match self.gating.evaluate_smoke(principal(&req)?).await? {}
    }

    async fn list_gate_runs(
        &self,
        req: Request<ListGateRunsRequest>,
    ) -> Result<Response<ListGateRunsResponse>, Status> {
        match self.gating.list_gate_runs(principal(&req)?).await? {}
    }

    async fn compare_canary(
        &self,
        req: Request<CompareCanaryRequest>,
    ) -> Result<Response<CompareCanaryResponse>, Status> {
        match self.gating.compare_canary(principal(&req)?).await? {}
    }

    async fn record_nlp_outcomes(
        &self,
        req: Request<RecordNlpOutcomesRequest>,
    ) -> Result<Response<RecordNlpOutcomesResponse>, Status> {
        match self.gating.record_nlp_outcomes(principal(&req)?).await? {}
    }
}
