//! `switchyard.v1.AuditService`: converts, calls `audit::AuditService`,
//! converts.

use std::pin::Pin;

use futures_util::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::status::OrStatus;
use super::{
    convert::{page, timestamp, to_proto},
    gating::timestamp_us,
    principal,
};
use switchyard_api::v1::{audit_service_server, *};
use switchyard_core::audit::{self as d, AuditService};

/// The AuditService implementation.
#[derive(Debug, Clone)]
pub struct AuditApi {
    audit: AuditService,
}

impl AuditApi {
    /// Creates the service over the audit log's use cases.
    pub fn new(audit: AuditService) -> Self {
        AuditApi { audit }
    }
}

/// The filters of both requests (fields 1 to 5).
fn filter(
    flag_key: &str,
    tenant_id: &str,
    actor: &str,
    start: Option<&pbjson_types::Timestamp>,
    end: Option<&pbjson_types::Timestamp>,
) -> d::Filter {
    let given = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    d::Filter {
        flag_key: given(flag_key),
        tenant_id: given(tenant_id),
        actor: given(actor),
        since_us: start.map(|t| timestamp_us(Some(t))),
        until_us: end.map(|t| timestamp_us(Some(t))),
    }
}

/// An entry's message.
fn to_message(e: &d::AuditEntry) -> AuditEntry {
    AuditEntry {
        id: e.id,
        time: Some(timestamp(e.at_us)),
        actor: e.by.actor.to_string(),
        action: e.record.action.clone(),
        revision: e.record.revision.unwrap_or(0),
        flag_key: e.record.flag_key.clone().unwrap_or_default(),
        tenant_id: e.record.tenant_id.clone().unwrap_or_default(),
        before: e.record.before.as_ref().map(to_proto),
        after: e.record.after.as_ref().map(to_proto),
        reason: e.by.reason.clone(),
        verdict: e.by.verdict.as_ref().and_then(|v| match to_proto(v).kind {
            Some(pbjson_types::value::Kind::StructValue(s)) => Some(s),
            _ => None,
        }),
    }
}

#[tonic::async_trait]
impl audit_service_server::AuditService for AuditApi {
    async fn list_changes(
        &self,
        req: Request<ListChangesRequest>,
    ) -> Result<Response<ListChangesResponse>, Status> {
        let r = req.get_ref();
        let f = filter(
            &r.flag_key,
            &r.tenant_id,
            &r.actor,
            r.start_time.as_ref(),
            r.end_time.as_ref(),
        );
        let page = self
            .audit
            .list(principal(&req)?, f, &page(r.page_size, &r.page_token))
            .await
            .or_status()?;
        Ok(Response::new(ListChangesResponse {
            changes: page.items.iter().map(to_message).collect(),
            next_page_token: page.next_token,
        }))
    }

    type ExportChangesStream =
        Pin<Box<dyn Stream<Item = Result<ExportChangesResponse, Status>> + Send>>;

    async fn export_changes(
        &self,
        req: Request<ExportChangesRequest>,
    ) -> Result<Response<Self::ExportChangesStream>, Status> {
        let r = req.get_ref();
        let f = filter(
            &r.flag_key,
            &r.tenant_id,
            &r.actor,
            r.start_time.as_ref(),
            r.end_time.as_ref(),
        );
        let entries = self
            .audit
            .export(principal(&req)?, f, r.after_id)
            .or_status()?;
        Ok(Response::new(Box::pin(entries.map(|e| {
            e.map(|e| ExportChangesResponse {
                change: Some(to_message(&e)),
            })
            .or_status()
        }))))
    }
}
