//! `switchyard.v1.FlagService`.

use std::{pin::Pin, sync::Arc};

use futures_util::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::{decode_page_token, encode_page_token, page_size};
use crate::{
    api::v1::{flag_service_server::FlagService, *},
    auth::{Principal, Scope, principal},
    bus::ChangeEvent,
    error::Error,
    flag::{
        self, Effective, FlagDef,
        store::FlagUpdate,
        watch::{self, WatchItem},
    },
    server::App,
    store::timestamp,
};

/// The FlagService implementation.
#[derive(Clone)]
pub struct FlagApi {
    app: Arc<App>,
}

impl FlagApi {
    /// Creates the service over the shared application state.
    pub fn new(app: Arc<App>) -> Self {
        FlagApi { app }
    }

    async fn committed(&self, revision: i64, entity: &str, tenant: Option<&str>, key: &str) {
        self.app
            .sync
            .committed(ChangeEvent {
                revision,
                entity: entity.into(),
                tenant_id: tenant.map(str::to_owned),
                flag_key: Some(key.to_owned()),
            })
            .await;
    }

    /// Returns the tenant a read is for: the one named, or a tenant token's
    /// own when none is named; checks the caller may read it and that it
    /// exists. `None`: values without any tenant override.
    async fn reading_tenant(
        &self,
        p: &Principal,
        named: &str,
        field: &str,
    ) -> Result<Option<String>, Status> {
        let tenant = match (named.is_empty(), p.scope()) {
            (_, Scope::Gating) => {
                return Err(Error::permission_denied("a gating token cannot read flags").into());
            }
            (true, Scope::Tenant(own)) => own.clone(),
            (true, Scope::Admin) => return Ok(None),
            (false, _) => {
                crate::tenant::validate_tenant_id_field(named, field)?;
                p.require_tenant(named)?;
                named.to_owned()
            }
        };
        if !self.app.tenants.exists(&tenant).await? {
            return Err(Error::not_found(format!("tenant {tenant:?}")).into());
        }
        Ok(Some(tenant))
    }
}

fn flag_type_to_proto(t: flag::FlagType) -> FlagType {
    match t {
        flag::FlagType::Bool => FlagType::Bool,
        flag::FlagType::Number => FlagType::Number,
        flag::FlagType::String => FlagType::String,
        flag::FlagType::List => FlagType::List,
        flag::FlagType::Object => FlagType::Object,
    }
}

fn flag_type_from_proto(t: i32) -> Result<flag::FlagType, Error> {
    Ok(match FlagType::try_from(t) {
        Ok(FlagType::Bool) => flag::FlagType::Bool,
        Ok(FlagType::Number) => flag::FlagType::Number,
        Ok(FlagType::String) => flag::FlagType::String,
        Ok(FlagType::List) => flag::FlagType::List,
        Ok(FlagType::Object) => flag::FlagType::Object,
        Ok(FlagType::Unspecified) => {
            return Err(Error::invalid_argument("flag.type", "is required"));
        }
        Err(_) => {
            return Err(Error::invalid_argument(
                "flag.type",
                format!("unknown type {t}"),
            ));
        }
    })
}

/// Converts a definition to its message.
pub fn def_to_proto(d: &FlagDef) -> Flag {
    Flag {
        key: d.key.clone(),
        r#type: flag_type_to_proto(d.value_type) as i32,
        description: d.description.clone(),
        default_value: Some(flag::to_proto(&d.default)),
        stored_value: d.stored.as_ref().map(flag::to_proto),
        revision: d.revision,
        create_time: Some(timestamp(d.created_at_us)),
        update_time: Some(timestamp(d.updated_at_us)),
    }
}

/// Converts an effective value to its message.
pub fn effective_to_proto(e: &Effective) -> EffectiveFlag {
    EffectiveFlag {
        flag: e.flag.clone(),
        value: Some(flag::to_proto(&e.value)),
        source: e.source.as_str().to_owned(),
    }
}

fn watch_to_proto(item: WatchItem) -> WatchFlagsResponse {
    match item {
        WatchItem::Snapshot {
            flags,
            revision,
            continues,
        } => WatchFlagsResponse {
            r#type: FlagEventType::Snapshot as i32,
            revision,
            flags: flags.iter().map(effective_to_proto).collect(),
            snapshot_continues: continues,
            ..Default::default()
        },
        WatchItem::Upsert {
            flag,
            revision,
            committed_at_us,
        } => WatchFlagsResponse {
            r#type: FlagEventType::Upsert as i32,
            revision,
            flag: Some(effective_to_proto(&flag)),
            commit_time: Some(timestamp(committed_at_us)),
            ..Default::default()
        },
        WatchItem::Delete {
            flag,
            revision,
            committed_at_us,
        } => WatchFlagsResponse {
            r#type: FlagEventType::Delete as i32,
            revision,
            flag: Some(EffectiveFlag {
                flag,
                value: None,
                source: String::new(),
            }),
            commit_time: Some(timestamp(committed_at_us)),
            ..Default::default()
        },
        WatchItem::Heartbeat { revision } => WatchFlagsResponse {
            r#type: FlagEventType::Heartbeat as i32,
            revision,
            ..Default::default()
        },
    }
}

/// Validates a new flag's fields and builds its definition.
fn new_def(f: &Flag) -> Result<FlagDef, Error> {
    flag::validate_key("flag.key", &f.key)?;
    let value_type = flag_type_from_proto(f.r#type)?;
    check_description(&f.description)?;
    let default = flag::from_proto("flag.default_value", f.default_value.as_ref())?;
    flag::check_value("flag.default_value", &default, value_type)?;
    let stored = match &f.stored_value {
        None => None,
        Some(v) => {
            let v = flag::from_proto("flag.stored_value", Some(v))?;
            flag::check_value("flag.stored_value", &v, value_type)?;
            Some(v)
        }
    };
    Ok(FlagDef {
        key: f.key.clone(),
        value_type,
        description: f.description.clone(),
        default,
        stored,
        revision: 0,
        created_at_us: 0,
        updated_at_us: 0,
    })
}

fn check_description(d: &str) -> Result<(), Error> {
    if d.chars().count() > flag::MAX_DESCRIPTION_LEN {
        return Err(Error::invalid_argument(
            "flag.description",
            format!("must be at most {} characters", flag::MAX_DESCRIPTION_LEN),
        ));
    }
    Ok(())
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
        let f = req
            .into_inner()
            .flag
            .ok_or_else(|| Error::invalid_argument("flag", "is required"))?;
        let def = flag::store::create(&self.app.store, new_def(&f)?).await?;
        self.committed(def.revision, "flag", None, &def.key).await;
        Ok(Response::new(CreateFlagResponse {
            flag: Some(def_to_proto(&def)),
        }))
    }

    async fn get_flag(
        &self,
        req: Request<GetFlagRequest>,
    ) -> Result<Response<GetFlagResponse>, Status> {
        self.reading_tenant(principal(&req)?, "", "tenant").await?;
        let key = &req.get_ref().flag_key;
        flag::validate_key("flag_key", key)?;
        let def = self.app.flags.get(key)?;
        Ok(Response::new(GetFlagResponse {
            flag: Some(def_to_proto(&def)),
        }))
    }

    async fn list_flags(
        &self,
        req: Request<ListFlagsRequest>,
    ) -> Result<Response<ListFlagsResponse>, Status> {
        let r = req.get_ref();
        let tenant = self
            .reading_tenant(principal(&req)?, &r.tenant, "tenant")
            .await?;
        let size = page_size(r.page_size, flag::DEFAULT_PAGE_SIZE, flag::MAX_PAGE_SIZE)?;
        let after = decode_page_token(&r.page_token)?;
        let (values, defs, more, revision) = self.app.flags.list(tenant.as_deref(), &after, size);
        let next_page_token = match values.last() {
            Some(last) if more => encode_page_token(&last.flag),
            _ => String::new(),
        };
        let full = r.view == FlagView::Full as i32;
        Ok(Response::new(ListFlagsResponse {
            flags: values.iter().map(effective_to_proto).collect(),
            next_page_token,
            revision,
            definitions: if full {
                defs.iter().map(def_to_proto).collect()
            } else {
                Vec::new()
            },
        }))
    }

    async fn update_flag(
        &self,
        req: Request<UpdateFlagRequest>,
    ) -> Result<Response<UpdateFlagResponse>, Status> {
        principal(&req)?.require_admin()?;
        let r = req.into_inner();
        let f = r
            .flag
            .ok_or_else(|| Error::invalid_argument("flag", "is required"))?;
        flag::validate_key("flag.key", &f.key)?;
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let all = paths.is_empty();
        let mut u = FlagUpdate::default();
        for p in &paths {
            match p.as_str() {
                "description" | "default_value" | "defaultValue" | "stored_value"
                | "storedValue" => {}
                "key" | "type" | "revision" | "create_time" | "update_time" => {
                    return Err(Error::invalid_argument(
                        "update_mask",
                        format!("{p:?} cannot be changed"),
                    )
                    .into());
                }
                _ => {
                    return Err(Error::invalid_argument(
                        "update_mask",
                        format!("unknown field {p:?} (description, default_value, stored_value)"),
                    )
                    .into());
                }
            }
        }
        let has = |a: &str, b: &str| all || paths.iter().any(|p| p == a || p == b);
        if has("description", "description") {
            check_description(&f.description)?;
            u.description = Some(f.description.clone());
        }
        if has("default_value", "defaultValue") {
            u.default = Some(flag::from_proto(
                "flag.default_value",
                f.default_value.as_ref(),
            )?);
        }
        if has("stored_value", "storedValue") {
            u.stored = Some(match &f.stored_value {
                None => None,
                Some(v) => Some(flag::from_proto("flag.stored_value", Some(v))?),
            });
        }
        if f.r#type != 0 {
            // Checked against the stored flag inside the write transaction.
            u.value_type = Some(flag_type_from_proto(f.r#type)?);
        }
        let def = flag::store::update(&self.app.store, &f.key, u, r.expected_revision).await?;
        self.committed(def.revision, "flag", None, &def.key).await;
        Ok(Response::new(UpdateFlagResponse {
            flag: Some(def_to_proto(&def)),
        }))
    }

    async fn delete_flag(
        &self,
        req: Request<DeleteFlagRequest>,
    ) -> Result<Response<DeleteFlagResponse>, Status> {
        principal(&req)?.require_admin()?;
        let r = req.get_ref();
        flag::validate_key("flag_key", &r.flag_key)?;
        let revision =
            flag::store::delete(&self.app.store, &r.flag_key, r.expected_revision).await?;
        self.committed(revision, "flag", None, &r.flag_key).await;
        Ok(Response::new(DeleteFlagResponse { revision }))
    }

    async fn set_tenant_override(
        &self,
        req: Request<SetTenantOverrideRequest>,
    ) -> Result<Response<SetTenantOverrideResponse>, Status> {
        principal(&req)?.require_admin()?;
        let r = req.into_inner();
        crate::tenant::validate_tenant_id(&r.tenant_id)?;
        flag::validate_key("flag_key", &r.flag_key)?;
        let value = flag::from_proto("value", r.value.as_ref())?;
        let revision = flag::store::set_override(
            &self.app.store,
            &r.tenant_id,
            &r.flag_key,
            value,
            r.expected_revision,
        )
        .await?;
        self.committed(revision, "override", Some(&r.tenant_id), &r.flag_key)
            .await;
        Ok(Response::new(SetTenantOverrideResponse { revision }))
    }

    async fn clear_tenant_override(
        &self,
        req: Request<ClearTenantOverrideRequest>,
    ) -> Result<Response<ClearTenantOverrideResponse>, Status> {
        principal(&req)?.require_admin()?;
        let r = req.get_ref();
        crate::tenant::validate_tenant_id(&r.tenant_id)?;
        flag::validate_key("flag_key", &r.flag_key)?;
        let revision = flag::store::clear_override(
            &self.app.store,
            &r.tenant_id,
            &r.flag_key,
            r.expected_revision,
        )
        .await?;
        self.committed(revision, "override", Some(&r.tenant_id), &r.flag_key)
            .await;
        Ok(Response::new(ClearTenantOverrideResponse { revision }))
    }

    async fn evaluate_flag(
        &self,
        req: Request<EvaluateFlagRequest>,
    ) -> Result<Response<EvaluateFlagResponse>, Status> {
        let p = principal(&req)?;
        let r = req.get_ref();
        flag::validate_key("flag_key", &r.flag_key)?;
        let tenant = match &r.target {
            Some(evaluate_flag_request::Target::ResolveKey(key)) => Some(
                super::resolve_for(&self.app, p, key)
                    .await?
                    .tenant
                    .id
                    .clone(),
            ),
            Some(evaluate_flag_request::Target::TenantId(t)) => {
                self.reading_tenant(p, t, "tenant_id").await?
            }
            None => self.reading_tenant(p, "", "tenant_id").await?,
        };
        let (e, revision) = self.app.flags.evaluate(&r.flag_key, tenant.as_deref())?;
        Ok(Response::new(EvaluateFlagResponse {
            flag: e.flag,
            value: Some(flag::to_proto(&e.value)),
            source: e.source.as_str().to_owned(),
            revision,
            tenant_id: tenant.unwrap_or_default(),
        }))
    }

    async fn watch_flags(
        &self,
        req: Request<WatchFlagsRequest>,
    ) -> Result<Response<Self::WatchFlagsStream>, Status> {
        let r = req.get_ref();
        let tenant = self
            .reading_tenant(principal(&req)?, &r.tenant_id, "tenant_id")
            .await?;
        let slot = self.app.watchers.acquire()?;
        let stream = watch::open(
            self.app.flags.clone(),
            &self.app.store,
            tenant,
            r.since_revision,
            slot,
            self.app.shutdown.clone(),
        )
        .await?;
        Ok(Response::new(Box::pin(
            stream.map(|item| Ok(watch_to_proto(item))),
        )))
    }
}
