//! `switchyard.v1.TenantService`: converts, calls `tenant::service`, converts.

use tonic::{Request, Response, Status};

use super::status::OrStatus;
use super::{
    convert::{page, timestamp},
    principal,
};
use switchyard_api::v1::{tenant_service_server, *};
use switchyard_core::{
    error::Error,
    service::Input,
    tenant::{
        ResolvedFrom, TenantFields, TenantRecord,
        service::{TenantInput, TenantService},
    },
};

/// The TenantService implementation.
#[derive(Debug, Clone)]
pub struct TenantApi {
    tenants: TenantService,
}

impl TenantApi {
    /// Creates the service over the tenant use cases.
    pub fn new(tenants: TenantService) -> Self {
        TenantApi { tenants }
    }
}

/// Converts a stored tenant to its message.
pub fn to_proto(t: &TenantRecord) -> Tenant {
    Tenant {
        id: t.id.clone(),
        display_name: t.display_name.clone(),
        patterns: t.patterns.clone(),
        disabled: t.disabled,
        revision: t.revision,
        create_time: Some(timestamp(t.created_at_us)),
        update_time: Some(timestamp(t.updated_at_us)),
    }
}

/// Converts the request's `tenant`, which is required.
fn input(t: Option<Tenant>) -> Input<TenantInput> {
    let t = t.ok_or_else(|| Error::invalid_argument("tenant", "is required"))?;
    Ok(TenantInput {
        id: t.id,
        fields: TenantFields {
            display_name: t.display_name,
            patterns: t.patterns,
            disabled: t.disabled,
        },
    })
}

#[tonic::async_trait]
impl tenant_service_server::TenantService for TenantApi {
    async fn create_tenant(
        &self,
        req: Request<CreateTenantRequest>,
    ) -> Result<Response<CreateTenantResponse>, Status> {
        let p = principal(&req)?.clone();
        let t = input(req.into_inner().tenant);
        let rec = self.tenants.create(&p, t).await.or_status()?;
        Ok(Response::new(CreateTenantResponse {
            tenant: Some(to_proto(&rec)),
        }))
    }

    async fn get_tenant(
        &self,
        req: Request<GetTenantRequest>,
    ) -> Result<Response<GetTenantResponse>, Status> {
        let rec = self
            .tenants
            .get(principal(&req)?, &req.get_ref().tenant_id)
            .await
            .or_status()?;
        Ok(Response::new(GetTenantResponse {
            tenant: Some(to_proto(&rec)),
        }))
    }

    async fn list_tenants(
        &self,
        req: Request<ListTenantsRequest>,
    ) -> Result<Response<ListTenantsResponse>, Status> {
        let r = req.get_ref();
        let page = self
            .tenants
            .list(principal(&req)?, &page(r.page_size, &r.page_token))
            .await
            .or_status()?;
        Ok(Response::new(ListTenantsResponse {
            tenants: page.items.iter().map(to_proto).collect(),
            next_page_token: page.next_token,
        }))
    }

    async fn update_tenant(
        &self,
        req: Request<UpdateTenantRequest>,
    ) -> Result<Response<UpdateTenantResponse>, Status> {
        let p = principal(&req)?.clone();
        let r = req.into_inner();
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let rec = self
            .tenants
            .update(&p, input(r.tenant), &paths, r.expected_revision)
            .await
            .or_status()?;
        Ok(Response::new(UpdateTenantResponse {
            tenant: Some(to_proto(&rec)),
        }))
    }

    async fn delete_tenant(
        &self,
        req: Request<DeleteTenantRequest>,
    ) -> Result<Response<DeleteTenantResponse>, Status> {
        let r = req.get_ref();
        let (revision, overrides) = self
            .tenants
            .delete(principal(&req)?, &r.tenant_id, r.expected_revision)
            .await
            .or_status()?;
        Ok(Response::new(DeleteTenantResponse {
            revision,
            deleted_overrides: i32::try_from(overrides).unwrap_or(i32::MAX),
        }))
    }

    async fn resolve_tenant(
        &self,
        req: Request<ResolveTenantRequest>,
    ) -> Result<Response<ResolveTenantResponse>, Status> {
        let res = self
            .tenants
            .resolve(principal(&req)?, &req.get_ref().key)
            .await
            .or_status()?;
        Ok(Response::new(ResolveTenantResponse {
            tenant: Some(to_proto(&res.tenant)),
            matched_pattern: res.pattern.to_string(),
            normalized_key: res.key,
            source: match res.source {
                ResolvedFrom::Local => ResolutionSource::Local,
                ResolvedFrom::Redis => ResolutionSource::Redis,
                ResolvedFrom::Database => ResolutionSource::Database,
            } as i32,
        }))
    }
}
