//! `switchyard.v1.TenantService`.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::unimplemented;
use crate::{
    api::v1::{tenant_service_server::TenantService, *},
    auth::principal,
    server::App,
};

/// The TenantService implementation.
#[derive(Clone)]
pub struct TenantApi {
    #[allow(dead_code)]
    app: Arc<App>,
}

impl TenantApi {
    /// Creates the service over the shared application state.
    pub fn new(app: Arc<App>) -> Self {
        TenantApi { app }
    }
}

#[tonic::async_trait]
impl TenantService for TenantApi {
    async fn create_tenant(
        &self,
        req: Request<CreateTenantRequest>,
    ) -> Result<Response<CreateTenantResponse>, Status> {
        principal(&req)?.require_admin()?;
        Err(unimplemented("TenantService.CreateTenant"))
    }

    async fn get_tenant(
        &self,
        req: Request<GetTenantRequest>,
    ) -> Result<Response<GetTenantResponse>, Status> {
        principal(&req)?.require_tenant(&req.get_ref().tenant_id)?;
        Err(unimplemented("TenantService.GetTenant"))
    }

    async fn list_tenants(
        &self,
        req: Request<ListTenantsRequest>,
    ) -> Result<Response<ListTenantsResponse>, Status> {
        principal(&req)?.require_admin()?;
        Err(unimplemented("TenantService.ListTenants"))
    }

    async fn update_tenant(
        &self,
        req: Request<UpdateTenantRequest>,
    ) -> Result<Response<UpdateTenantResponse>, Status> {
        principal(&req)?.require_admin()?;
        Err(unimplemented("TenantService.UpdateTenant"))
    }

    async fn delete_tenant(
        &self,
        req: Request<DeleteTenantRequest>,
    ) -> Result<Response<DeleteTenantResponse>, Status> {
        principal(&req)?.require_admin()?;
        Err(unimplemented("TenantService.DeleteTenant"))
    }

    async fn resolve_tenant(
        &self,
        req: Request<ResolveTenantRequest>,
    ) -> Result<Response<ResolveTenantResponse>, Status> {
        principal(&req)?;
        Err(unimplemented("TenantService.ResolveTenant"))
    }
}
