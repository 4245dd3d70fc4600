//! The tenant use cases, whatever the transport: each method takes the
//! caller's [`Principal`] and domain types, checks the caller's scope first,
//! and announces every committed change.

use std::sync::Arc;

use super::{
    DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Resolution, TenantFields, TenantRecord, Tenants,
    UpdatedFields,
};
use crate::{
    audit::Attribution,
    auth::{Principal, Scope},
    changelog::Announce,
    error::{Error, ErrorKind, Result},
    id::TenantId,
    service::{
        Input,
        page::{self, Page, PageRequest},
    },
};

/// A tenant's id and fields, as the caller sent them (create and update).
#[derive(Debug, Clone, Default)]
pub struct TenantInput {
    /// The tenant's id.
    pub id: String,
    /// Its fields.
    pub fields: TenantFields,
}

/// The tenant service of a replica. Cheap to clone.
#[derive(Clone)]
pub struct TenantService {
    tenants: Arc<Tenants>,
    announce: Arc<dyn Announce>,
    /// The room for tenants in one page (see [`page::byte_budget`]).
    page_budget: usize,
}

impl std::fmt::Debug for TenantService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantService").finish_non_exhaustive()
    }
}

impl TenantService {
    /// Creates the service over the replica's tenants, its answers within
    /// `max_message_bytes`.
    pub fn new(
        tenants: Arc<Tenants>,
        announce: Arc<dyn Announce>,
        max_message_bytes: usize,
    ) -> TenantService {
        TenantService {
            tenants,
            announce,
            page_budget: page::byte_budget(max_message_bytes),
        }
    }

    /// Creates a tenant (admin).
    pub async fn create(&self, p: &Principal, tenant: Input<TenantInput>) -> Result<TenantRecord> {
        p.require_admin()?;
        let by = Attribution::of(p)?;
        let t = tenant?;
        let id = TenantId::parse(&t.id, "tenant.id")?;
        let (record, committed) = self.tenants.create(&id, &t.fields, &by).await?;
        self.announce.committed(&committed).await;
        Ok(record)
    }

    /// Returns a tenant (admin, or that tenant's token).
    pub async fn get(&self, p: &Principal, id: &str) -> Result<TenantRecord> {
        p.require_tenant(id)?;
        self.tenants.get(&TenantId::parse(id, "tenant_id")?).await
    }

    /// Returns one page of tenants by id (admin).
    pub async fn list(&self, p: &Principal, page: &PageRequest) -> Result<Page<TenantRecord>> {
        p.require_admin()?;
        let (size, after) = page.resolve(DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        let (tenants, more) = self.tenants.list(&after, size).await?;
        // A tenant takes up to about 26 KiB (100 patterns): a page of 1 000
        // is cut by bytes too.
        let (tenants, more) = page::fit(tenants, more, self.page_budget, super::encoded_bound);
        Ok(Page::new(tenants, more, |t| &t.id))
    }

    /// Updates the fields `mask` names (all when empty); refuses a stale
    /// `expected` revision (non-zero). Admin.
    pub async fn update(
        &self,
        p: &Principal,
        tenant: Input<TenantInput>,
        mask: &[String],
        expected: i64,
    ) -> Result<TenantRecord> {
        p.require_admin()?;
        let by = Attribution::of(p)?;
        let t = tenant?;
        let mask = UpdatedFields::parse(mask)?;
        let id = TenantId::parse(&t.id, "tenant.id")?;
        let (record, committed) = self
            .tenants
            .update(&id, &t.fields, mask, expected, &by)
            .await?;
        self.announce.committed(&committed).await;
        Ok(record)
    }

    /// Deletes a tenant with its patterns and overrides; returns the
    /// revision and how many overrides went with it. Admin.
    pub async fn delete(&self, p: &Principal, id: &str, expected: i64) -> Result<(i64, usize)> {
        p.require_admin()?;
        let by = Attribution::of(p)?;
        let id = TenantId::parse(id, "tenant_id")?;
        let (committed, overrides) = self.tenants.delete(&id, expected, &by).await?;
        self.announce.committed(&committed).await;
        Ok((committed.revision, overrides))
    }

    /// Resolves `key` for the caller. A gating token may not resolve. For a
    /// `tenant:<id>` token every answer other than "resolves to `<id>`"
    /// (another tenant, a disabled tenant, no tenant) is the same
    /// PERMISSION_DENIED, so the token learns nothing about other tenants'
    /// keys; a malformed key is still INVALID_ARGUMENT.
    pub async fn resolve(&self, p: &Principal, key: &str) -> Result<Resolution> {
        if *p.scope() == Scope::Gating {
            return Err(Error::permission_denied(
                "a gating token cannot resolve tenants",
            ));
        }
        let result = self.tenants.resolve(key).await;
        let Some(own) = p.tenant() else { return result };
        match result {
            Ok(r) if r.tenant.id == own => Ok(r),
            Err(e) if e.kind() == ErrorKind::InvalidArgument => Err(e),
            _ => Err(Error::permission_denied(
                "this key does not resolve to the token's tenant",
            )),
        }
    }
}
