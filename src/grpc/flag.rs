//! `switchyard.v1.FlagService`.

use std::{pin::Pin, sync::Arc};

use futures_util::Stream;
use tonic::{Request, Response, Status};

use super::unimplemented;
use crate::{
    api::v1::{flag_service_server::FlagService, *},
    auth::{Principal, principal},
    server::App,
};

/// The FlagService implementation.
#[derive(Clone)]
pub struct FlagApi {
    #[allow(dead_code)]
    app: Arc<App>,
}

impl FlagApi {
    /// Creates the service over the shared application state.
    pub fn new(app: Arc<App>) -> Self {
        FlagApi { app }
    }
}

/// Checks that the caller may read `tenant` (empty: values without a tenant,
/// which any admin or tenant token may read).
fn require_read(p: &Principal, tenant: &str) -> Result<(), Status> {
    if tenant.is_empty() {
        if p.is_admin() || p.tenant().is_some() {
            return Ok(());
        }
        return Err(crate::error::Error::permission_denied(
            "this call needs an admin or tenant token",
        )
        .into());
    }
    Ok(p.require_tenant(tenant)?)
}

#[tonic::async_trait]
impl FlagService for FlagApi {
    type WatchFlagsStream =
        Pin<Box<dyn Stream<Item = Result<WatchFlagsResponse, Status>> + Send + 'static>>;

    async fn create_flag(
        &self,
        req: Request<CreateFlagRequest>,
    ) -> Result<Response<CreateFlagResponse>, Status> {
        principal(&req)?.require_admin()?;
        Err(unimplemented("FlagService.CreateFlag"))
    }

    async fn get_flag(
        &self,
        req: Request<GetFlagRequest>,
    ) -> Result<Response<GetFlagResponse>, Status> {
        require_read(principal(&req)?, "")?;
        Err(unimplemented("FlagService.GetFlag"))
    }

    async fn list_flags(
        &self,
        req: Request<ListFlagsRequest>,
    ) -> Result<Response<ListFlagsResponse>, Status> {
        require_read(principal(&req)?, &req.get_ref().tenant)?;
        Err(unimplemented("FlagService.ListFlags"))
    }

    async fn update_flag(
        &self,
        req: Request<UpdateFlagRequest>,
    ) -> Result<Response<UpdateFlagResponse>, Status> {
        principal(&req)?.require_admin()?;
        Err(unimplemented("FlagService.UpdateFlag"))
    }

    async fn delete_flag(
        &self,
        req: Request<DeleteFlagRequest>,
    ) -> Result<Response<DeleteFlagResponse>, Status> {
        principal(&req)?.require_admin()?;
        Err(unimplemented("FlagService.DeleteFlag"))
    }

    async fn set_tenant_override(
        &self,
        req: Request<SetTenantOverrideRequest>,
    ) -> Result<Response<SetTenantOverrideResponse>, Status> {
        principal(&req)?.require_admin()?;
        Err(unimplemented("FlagService.SetTenantOverride"))
    }

    async fn clear_tenant_override(
        &self,
        req: Request<ClearTenantOverrideRequest>,
    ) -> Result<Response<ClearTenantOverrideResponse>, Status> {
        principal(&req)?.require_admin()?;
        Err(unimplemented("FlagService.ClearTenantOverride"))
    }

    async fn evaluate_flag(
        &self,
        req: Request<EvaluateFlagRequest>,
    ) -> Result<Response<EvaluateFlagResponse>, Status> {
        let tenant = match &req.get_ref().target {
            Some(evaluate_flag_request::Target::TenantId(t)) => t.as_str(),
            _ => "",
        };
        require_read(principal(&req)?, tenant)?;
        Err(unimplemented("FlagService.EvaluateFlag"))
    }

    async fn watch_flags(
        &self,
        req: Request<WatchFlagsRequest>,
    ) -> Result<Response<Self::WatchFlagsStream>, Status> {
        require_read(principal(&req)?, &req.get_ref().tenant_id)?;
        Err(unimplemented("FlagService.WatchFlags"))
    }
}
