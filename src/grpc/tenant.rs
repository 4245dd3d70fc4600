//! `switchyard.v1.TenantService`.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{decode_page_token, encode_page_token, page_size};
use crate::{
    api::v1::{tenant_service_server::TenantService, *},
    auth::principal,
    bus::ChangeEvent,
    error::Error,
    server::App,
    store::timestamp,
    tenant::{self, TenantFields, TenantRecord, UpdateMask},
};

/// The TenantService implementation.
#[derive(Clone)]
pub struct TenantApi {
    app: Arc<App>,
}

impl TenantApi {
    /// Creates the service over the shared application state.
    pub fn new(app: Arc<App>) -> Self {
        TenantApi { app }
    }

    async fn committed(&self, revision: i64, tenant_id: &str) {
        self.app
            .sync
            .committed(ChangeEvent {
                revision,
                entity: "tenant".into(),
                tenant_id: Some(tenant_id.to_owned()),
                flag_key: None,
            })
            .await;
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

fn fields(t: &Tenant) -> TenantFields {
    TenantFields {
        display_name: t.display_name.clone(),
        patterns: t.patterns.clone(),
        disabled: t.disabled,
    }
}

#[tonic::async_trait]
impl TenantService for TenantApi {
    async fn create_tenant(
        &self,
        req: Request<CreateTenantRequest>,
    ) -> Result<Response<CreateTenantResponse>, Status> {
        principal(&req)?.require_admin()?;
        let t = req
            .into_inner()
            .tenant
            .ok_or_else(|| Error::invalid_argument("tenant", "is required"))?;
        let rec = self.app.tenants.create(&t.id, &fields(&t)).await?;
        self.committed(rec.revision, &rec.id).await;
        Ok(Response::new(CreateTenantResponse {
            tenant: Some(to_proto(&rec)),
        }))
    }

    async fn get_tenant(
        &self,
        req: Request<GetTenantRequest>,
    ) -> Result<Response<GetTenantResponse>, Status> {
        principal(&req)?.require_tenant(&req.get_ref().tenant_id)?;
        let rec = self.app.tenants.get(&req.get_ref().tenant_id).await?;
        Ok(Response::new(GetTenantResponse {
            tenant: Some(to_proto(&rec)),
        }))
    }

    async fn list_tenants(
        &self,
        req: Request<ListTenantsRequest>,
    ) -> Result<Response<ListTenantsResponse>, Status> {
        principal(&req)?.require_admin()?;
        let r = req.get_ref();
        let size = page_size(
            r.page_size,
            tenant::DEFAULT_PAGE_SIZE,
            tenant::MAX_PAGE_SIZE,
        )?;
        let after = decode_page_token(&r.page_token)?;
        let (tenants, more) = self.app.tenants.list(&after, size).await?;
        let next_page_token = match tenants.last() {
            Some(last) if more => encode_page_token(&last.id),
            _ => String::new(),
        };
        Ok(Response::new(ListTenantsResponse {
            tenants: tenants.iter().map(to_proto).collect(),
            next_page_token,
        }))
    }

    async fn update_tenant(
        &self,
        req: Request<UpdateTenantRequest>,
    ) -> Result<Response<UpdateTenantResponse>, Status> {
        principal(&req)?.require_admin()?;
        let r = req.into_inner();
        let t = r
            .tenant
            .ok_or_else(|| Error::invalid_argument("tenant", "is required"))?;
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let mask = UpdateMask::parse(&paths)?;
        let rec = self
            .app
            .tenants
            .update(&t.id, &fields(&t), mask, r.expected_revision)
            .await?;
        self.committed(rec.revision, &rec.id).await;
        Ok(Response::new(UpdateTenantResponse {
            tenant: Some(to_proto(&rec)),
        }))
    }

    async fn delete_tenant(
        &self,
        req: Request<DeleteTenantRequest>,
    ) -> Result<Response<DeleteTenantResponse>, Status> {
        principal(&req)?.require_admin()?;
        let r = req.get_ref();
        let revision = self
            .app
            .tenants
            .delete(&r.tenant_id, r.expected_revision)
            .await?;
        self.committed(revision, &r.tenant_id).await;
        Ok(Response::new(DeleteTenantResponse {}))
    }

    async fn resolve_tenant(
        &self,
        req: Request<ResolveTenantRequest>,
    ) -> Result<Response<ResolveTenantResponse>, Status> {
        let res = super::resolve_for(&self.app, principal(&req)?, &req.get_ref().key).await?;
        Ok(Response::new(ResolveTenantResponse {
            tenant: Some(to_proto(&res.tenant)),
            matched_pattern: res.pattern.to_string(),
            normalized_key: res.key,
            source: match res.source {
                tenant::Source::Local => ResolutionSource::Local,
                tenant::Source::Redis => ResolutionSource::Redis,
                tenant::Source::Database => ResolutionSource::Database,
            } as i32,
        }))
    }
}
