//! `switchyard.v1.FlagService`: converts, calls `flag::service`, converts.

use std::{borrow::Cow, pin::Pin, sync::Arc};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use prost::Message;
use tonic::{Request, Response, Status};

use super::status::{IntoStatus, OrStatus};
use super::{
    connection_key,
    convert::{from_proto, page, struct_into_json, timestamp, to_proto},
    frames::{self, Messages, Route},
    principal, principal_in,
};
use switchyard_api::{
    codec::{Encoded, EncodedCodec},
    v1::{flag_service_server, *},
};
use switchyard_core::{
    error::Error,
    flag::{
        self, Effective, FlagDef,
        definition::DefinitionUpdate,
        listing::{DEFAULT_CACHE_BYTES, ListCache, Listed},
        service::{FlagChanges, FlagList, FlagService, ListRequest, NewFlag, Target},
        targeting::logic::Step,
        watch::WatchItem,
    },
    service::Input,
};

/// The FlagService implementation.
#[derive(Debug, Clone)]
pub struct FlagApi {
    flags: FlagService,
    /// Encoded `ListFlags` answers, by request and view version.
    listings: Arc<ListCache<Encoded>>,
}

impl FlagApi {
    /// Creates the service over the flag use cases.
    pub fn new(flags: FlagService) -> Self {
        FlagApi {
            flags,
            listings: Arc::new(ListCache::new(DEFAULT_CACHE_BYTES)),
        }
    }

    /// `WatchFlags`: the items with the memos by which the streams given
    /// the same item share its encoding (an event per audience, a snapshot
    /// per view and revision).
    async fn watch_items(&self, req: Request<WatchFlagsRequest>) -> Result<Items, Status> {
        let r = req.get_ref();
        let context = match &r.context {
            Some(c) => Some(from_struct("context", c).or_status()?),
            None => None,
        };
        let stream = self
            .flags
            .watch(
                principal(&req)?,
                &r.tenant_id,
                r.since_revision,
                context.as_ref(),
                connection_key(&req),
            )
            .await
            .or_status()?;
        Ok(Box::pin(stream.map(|d| match d.item {
            WatchItem::Failed(e) => Err(e.into_status()),
            item => Ok((item, d.memo)),
        })))
    }

    /// `ListFlags`, encoded: from the cache when the view has not changed
    /// since the same request was last answered.
    async fn list_encoded(&self, req: Request<ListFlagsRequest>) -> Result<Encoded, Status> {
        let r = req.get_ref();
        let full = match FlagView::try_from(r.view) {
            Ok(FlagView::Full) => Ok(true),
            Ok(FlagView::Basic | FlagView::Unspecified) => Ok(false),
            Err(_) => Err(Error::invalid_argument(
                "view",
                format!(
                    "unknown view {}; the views are BASIC (1) and FULL (2)",
                    r.view
                ),
            )),
        };
        let request = ListRequest {
            tenant: r.tenant.clone(),
            page: page(r.page_size, &r.page_token),
            with_definitions: full,
            if_none_match: r.if_none_match.clone(),
        };
        let listed = self
            .flags
            .list(principal(&req)?, request, &self.listings, |list| {
                let bytes = Bytes::from(list_to_proto(list).encode_to_vec());
                let n = bytes.len();
                (Encoded(bytes), n)
            })
            .await
            .or_status()?;
        Ok(match listed {
            Listed::Page(_, encoded) => encoded,
            Listed::NotModified(tag) => Encoded(Bytes::from(
                ListFlagsResponse {
                    revision: tag.revision,
                    etag: tag.etag,
                    not_modified: true,
                    ..Default::default()
                }
                .encode_to_vec(),
            )),
        })
    }
}

/// Converts a page of `ListFlags`.
fn list_to_proto(list: &FlagList) -> ListFlagsResponse {
    ListFlagsResponse {
        flags: list.values.items.iter().map(effective_to_proto).collect(),
        next_page_token: list.values.next_token.clone(),
        revision: list.tag.revision,
        definitions: list.definitions.iter().map(def_to_proto).collect(),
        etag: list.tag.etag.clone(),
        not_modified: false,
    }
}

/// `FlagService/ListFlags` and `FlagService/WatchFlags` as the server routes
/// them: the same calls as [`flag_service_server::FlagService::list_flags`] and
/// [`flag_service_server::FlagService::watch_flags`], but answers are written from encodings made
/// once (a listing per view version, a watch event per audience) instead of
/// being encoded again for each caller. Mounted at [`Self::PATHS`], in front
/// of the generated service.
#[derive(Debug, Clone)]
pub struct EncodedRoutes {
    api: FlagApi,
    max_message_bytes: usize,
}

impl EncodedRoutes {
    /// The methods' paths.
    pub const PATHS: [&'static str; 2] = [LIST_FLAGS, WATCH_FLAGS];

    /// The routes over `api` (the one the generated service also serves),
    /// within the message limit.
    pub fn new(api: FlagApi, max_message_bytes: usize) -> Self {
        EncodedRoutes {
            api,
            max_message_bytes,
        }
    }
}

const LIST_FLAGS: &str = "/switchyard.v1.FlagService/ListFlags";
const WATCH_FLAGS: &str = "/switchyard.v1.FlagService/WatchFlags";

impl EncodedRoutes {
    /// The route of [`Self::PATHS`].
    pub fn route(self) -> Route {
        Route::new(move |req: http::Request<axum::body::Body>| {
            let api = self.api.clone();
            let limit = self.max_message_bytes;
            async move {
                if req.uri().path() == WATCH_FLAGS {
                    // Written from the encodings the streams share.
                    frames::serve(req, limit, move |req| watch_items(api, req), encode_item).await
                } else {
                    tonic::server::Grpc::new(EncodedCodec::<ListFlagsRequest>::default())
                        .apply_compression_config(gzip(), gzip())
                        .apply_max_message_size_config(Some(limit), Some(limit))
                        .unary(ListFlagsCall(api), req)
                        .await
                }
            }
        })
    }
}

/// gzip, as the generated services accept and send it (accepted always,
/// sent when the client advertises it).
fn gzip() -> tonic::codec::EnabledCompressionEncodings {
    let mut e = tonic::codec::EnabledCompressionEncodings::default();
    e.enable(tonic::codec::CompressionEncoding::Gzip);
    e
}

/// A watch's items, each with the memo of its encoding.
type Items = Messages<WatchItem>;

async fn watch_items(api: FlagApi, req: Request<WatchFlagsRequest>) -> Result<Items, Status> {
    api.watch_items(req).await
}

struct ListFlagsCall(FlagApi);

impl tonic::server::UnaryService<ListFlagsRequest> for ListFlagsCall {
    type Response = Encoded;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Response<Encoded>, Status>> + Send>>;

    fn call(&mut self, req: Request<ListFlagsRequest>) -> Self::Future {
        let api = self.0.clone();
        Box::pin(async move { api.list_encoded(req).await.map(Response::new) })
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

/// Converts a type; `None` for FLAG_TYPE_UNSPECIFIED.
fn flag_type_from_proto(t: i32) -> Input<Option<flag::FlagType>> {
    Ok(Some(match FlagType::try_from(t) {
        Ok(FlagType::Bool) => flag::FlagType::Bool,
        Ok(FlagType::Number) => flag::FlagType::Number,
        Ok(FlagType::String) => flag::FlagType::String,
        Ok(FlagType::List) => flag::FlagType::List,
        Ok(FlagType::Object) => flag::FlagType::Object,
        Ok(FlagType::Unspecified) => return Ok(None),
        Err(_) => {
            return Err(Error::invalid_argument(
                "flag.type",
                format!(
                    "unknown type {t}; the types are FLAG_TYPE_BOOL (1), FLAG_TYPE_NUMBER (2), FLAG_TYPE_STRING (3), FLAG_TYPE_LIST (4) and FLAG_TYPE_OBJECT (5)"
                ),
            ));
        }
    }))
}

/// Converts a definition to its message.
pub fn def_to_proto(d: &FlagDef) -> Flag {
    Flag {
        key: d.key.clone(),
        r#type: flag_type_to_proto(d.value_type) as i32,
        description: d.description.clone(),
        default_value: d.default_value().map(to_proto),
        stored_value: d.stored_value().map(to_proto),
        revision: d.revision,
        create_time: Some(timestamp(d.created_at_us)),
        update_time: Some(timestamp(d.updated_at_us)),
        state: d.status.as_str().to_owned(),
        // A flag given by its two legacy values lists no variants.
        variants: if d.is_legacy_shaped() {
            Default::default()
        } else {
            d.variants
                .iter()
                .map(|(k, v)| (k.clone(), to_proto(v)))
                .collect()
        },
        default_variant: if d.is_legacy_shaped() {
            String::new()
        } else {
            d.default_variant.clone().unwrap_or_default()
        },
        targeting: d.targeting.as_ref().map(|r| to_struct(r.source())),
        metadata: (!d.metadata.is_empty())
            .then(|| to_struct(&serde_json::Value::Object(d.metadata.clone()))),
    }
}

/// A JSON object as a protobuf `Struct` (anything else: empty).
pub fn to_struct(v: &serde_json::Value) -> pbjson_types::Struct {
    match to_proto(v).kind {
        Some(pbjson_types::value::Kind::StructValue(s)) => s,
        _ => pbjson_types::Struct::default(),
    }
}

/// A protobuf `Struct` as JSON, integral numbers written as integers (as
/// rules and flagd files have them); `field` names it in errors.
pub fn from_struct(
    field: &str,
    s: &pbjson_types::Struct,
) -> switchyard_core::error::Result<serde_json::Map<String, serde_json::Value>> {
    struct_into_json(field, s.clone())
}

/// Converts an effective value to its message.
pub fn effective_to_proto(e: &Effective) -> EffectiveFlag {
    EffectiveFlag {
        flag: e.flag.clone(),
        value: (!e.value.is_null()).then(|| to_proto(&e.value)),
        source: e.source.as_str().to_owned(),
        variant: e.variant.clone().unwrap_or_default(),
        targeting: e.targeting,
    }
}

/// The flagd-model fields of a `Flag` message, each as given: see
/// [`DefinitionUpdate`] (an empty `state` or `variants` is not given; an
/// empty `default_variant` or a missing `targeting` is "none" where the
/// update mask names it).
fn definition(f: &Flag) -> Input<DefinitionUpdate> {
    let state = match f.state.as_str() {
        "" => None,
        s => Some(flag::Status::parse(s).ok_or_else(|| {
            Error::invalid_argument("flag.state", format!("is {s:?}; it is ENABLED or DISABLED"))
        })?),
    };
    let variants = if f.variants.is_empty() {
        None
    } else {
        Some(
            f.variants
                .iter()
                .map(|(k, v)| {
                    let field = format!("flag.variants.{k}");
                    Ok((k.clone(), from_proto(&field, Some(v))?))
                })
                .collect::<switchyard_core::error::Result<_>>()?,
        )
    };
    Ok(DefinitionUpdate {
        state,
        variants,
        default_variant: Some((!f.default_variant.is_empty()).then(|| f.default_variant.clone())),
        targeting: Some(
            f.targeting
                .as_ref()
                .map(|t| from_struct("flag.targeting", t).map(serde_json::Value::Object))
                .transpose()?,
        ),
        metadata: f
            .metadata
            .as_ref()
            .map(|m| from_struct("flag.metadata", m))
            .transpose()?,
    })
}

/// Converts a rule's steps.
fn steps_to_proto(steps: &[Step]) -> Vec<RuleStep> {
    steps
        .iter()
        .map(|s| match s {
            Step::If { at, condition } => RuleStep {
                at: at.clone(),
                operation: "if".into(),
                condition: condition.map_or(-1, |c| i32::try_from(c).unwrap_or(i32::MAX)),
                ..Default::default()
            },
            Step::Fractional {
                at,
                value,
                bucket,
                weights,
                picked,
            } => RuleStep {
                at: at.clone(),
                operation: "fractional".into(),
                bucketing_value: value.clone(),
                bucket: *bucket,
                weights: weights
                    .iter()
                    .map(|(v, w)| FractionalWeight {
                        variant: Some(to_proto(v)),
                        weight: *w,
                    })
                    .collect(),
                picked: Some(to_proto(picked)),
                ..Default::default()
            },
        })
        .collect()
}

fn watch_to_proto(item: &WatchItem) -> Result<WatchFlagsResponse, Status> {
    Ok(match item {
        WatchItem::Snapshot {
            flags,
            revision,
            continues,
        } => WatchFlagsResponse {
            r#type: FlagEventType::Snapshot as i32,
            revision: *revision,
            flags: flags.iter().map(effective_to_proto).collect(),
            snapshot_continues: *continues,
            ..Default::default()
        },
        WatchItem::Upsert {
            flag,
            revision,
            committed_at_us,
        } => WatchFlagsResponse {
            r#type: FlagEventType::Upsert as i32,
            revision: *revision,
            flag: Some(effective_to_proto(flag)),
            commit_time: Some(timestamp(*committed_at_us)),
            ..Default::default()
        },
        WatchItem::Delete {
            flag,
            revision,
            committed_at_us,
        } => WatchFlagsResponse {
            r#type: FlagEventType::Delete as i32,
            revision: *revision,
            flag: Some(EffectiveFlag {
                flag: flag.clone(),
                ..Default::default()
            }),
            commit_time: Some(timestamp(*committed_at_us)),
            ..Default::default()
        },
        WatchItem::Heartbeat { revision } => WatchFlagsResponse {
            r#type: FlagEventType::Heartbeat as i32,
            revision: *revision,
            ..Default::default()
        },
        WatchItem::Failed(e) => return Err(e.clone().into_status()),
    })
}

/// A watch item, encoded: once for all the streams that share it.
/// The encoding of a watch item.
fn encode_item(item: &WatchItem) -> Result<Bytes, Status> {
    watch_to_proto(item).map(|m| Bytes::from(m.encode_to_vec()))
}

/// Converts an optional stored value: absent is none, present must convert.
fn stored(v: Option<&pbjson_types::Value>) -> Input<Option<serde_json::Value>> {
    optional("flag.stored_value", v)
}

/// Converts an optional value: absent is `None`, present must convert.
fn optional(field: &str, v: Option<&pbjson_types::Value>) -> Input<Option<serde_json::Value>> {
    v.map(|v| from_proto(field, Some(v))).transpose()
}

/// Converts the request's `flag`, which is required, for a create.
fn new_flag(f: Option<Flag>) -> Input<NewFlag> {
    let f = f.ok_or_else(|| Error::invalid_argument("flag", "is required"))?;
    Ok(NewFlag {
        value_type: flag_type_from_proto(f.r#type)
            .and_then(|t| t.ok_or_else(|| Error::invalid_argument("flag.type", "is required"))),
        default: optional("flag.default_value", f.default_value.as_ref()),
        stored: stored(f.stored_value.as_ref()),
        definition: definition(&f),
        key: f.key,
        description: f.description,
    })
}

/// Converts the request's `flag`, which is required, for an update.
fn changes(f: Option<Flag>) -> Input<FlagChanges> {
    let f = f.ok_or_else(|| Error::invalid_argument("flag", "is required"))?;
    Ok(FlagChanges {
        value_type: flag_type_from_proto(f.r#type),
        default: optional("flag.default_value", f.default_value.as_ref()),
        stored: stored(f.stored_value.as_ref()),
        definition: definition(&f),
        key: f.key,
        description: f.description,
    })
}

#[tonic::async_trait]
impl flag_service_server::FlagService for FlagApi {
    type WatchFlagsStream =
        Pin<Box<dyn Stream<Item = Result<WatchFlagsResponse, Status>> + Send + 'static>>;

    async fn create_flag(
        &self,
        req: Request<CreateFlagRequest>,
    ) -> Result<Response<CreateFlagResponse>, Status> {
        let p = principal(&req)?.clone();
        let def = self
            .flags
            .create(&p, new_flag(req.into_inner().flag))
            .await
            .or_status()?;
        Ok(Response::new(CreateFlagResponse {
            flag: Some(def_to_proto(&def)),
        }))
    }

    async fn get_flag(
        &self,
        req: Request<GetFlagRequest>,
    ) -> Result<Response<GetFlagResponse>, Status> {
        let def = self
            .flags
            .get(principal(&req)?, &req.get_ref().flag_key)
            .await
            .or_status()?;
        Ok(Response::new(GetFlagResponse {
            flag: Some(def_to_proto(&def)),
        }))
    }

    /// Served by [`ListFlagsRoute`] on the server; this is the same call,
    /// decoded, for whoever calls the trait directly.
    async fn list_flags(
        &self,
        req: Request<ListFlagsRequest>,
    ) -> Result<Response<ListFlagsResponse>, Status> {
        let encoded = self.list_encoded(req).await?;
        ListFlagsResponse::decode(encoded.0)
            .map(Response::new)
            .map_err(|e| Error::internal("decoding a cached listing", e).into_status())
    }

    async fn update_flag(
        &self,
        req: Request<UpdateFlagRequest>,
    ) -> Result<Response<UpdateFlagResponse>, Status> {
        let p = principal(&req)?.clone();
        let r = req.into_inner();
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let def = self
            .flags
            .update(&p, changes(r.flag), &paths, r.expected_revision)
            .await
            .or_status()?;
        Ok(Response::new(UpdateFlagResponse {
            flag: Some(def_to_proto(&def)),
        }))
    }

    async fn delete_flag(
        &self,
        req: Request<DeleteFlagRequest>,
    ) -> Result<Response<DeleteFlagResponse>, Status> {
        let r = req.get_ref();
        let revision = self
            .flags
            .delete(principal(&req)?, &r.flag_key, r.expected_revision)
            .await
            .or_status()?;
        Ok(Response::new(DeleteFlagResponse { revision }))
    }

    async fn set_tenant_override(
        &self,
        req: Request<SetTenantOverrideRequest>,
    ) -> Result<Response<SetTenantOverrideResponse>, Status> {
        let r = req.get_ref();
        let revision = self
            .flags
            .set_override(
                principal(&req)?,
                &r.tenant_id,
                &r.flag_key,
                from_proto("value", r.value.as_ref()),
                r.expected_revision,
            )
            .await
            .or_status()?;
        Ok(Response::new(SetTenantOverrideResponse { revision }))
    }

    async fn clear_tenant_override(
        &self,
        req: Request<ClearTenantOverrideRequest>,
    ) -> Result<Response<ClearTenantOverrideResponse>, Status> {
        let r = req.get_ref();
        let revision = self
            .flags
            .clear_override(
                principal(&req)?,
                &r.tenant_id,
                &r.flag_key,
                r.expected_revision,
            )
            .await
            .or_status()?;
        Ok(Response::new(ClearTenantOverrideResponse { revision }))
    }

    async fn evaluate_flag(
        &self,
        req: Request<EvaluateFlagRequest>,
    ) -> Result<Response<EvaluateFlagResponse>, Status> {
        let (_, extensions, r) = req.into_parts();
        let p = principal_in(&extensions)?;
        // The request's strings are moved into the call, not copied.
        let target = match r.target {
            Some(evaluate_flag_request::Target::ResolveKey(key)) => Target::ResolveKey(key),
            Some(evaluate_flag_request::Target::TenantId(t)) => Target::TenantId(t),
            None => Target::Caller,
        };
        let context = match r.context {
            Some(c) => struct_into_json("context", c).or_status()?,
            None => serde_json::Map::new(),
        };
        let e = self
            .flags
            .evaluate(p, &r.flag_key, target, &context, r.explain)
            .await
            .or_status()?;
        let res = e.resolution;
        let (error_code, error_message) = res
            .error
            .map(|(code, m)| (code.as_str().to_owned(), m))
            .unwrap_or_default();
        Ok(Response::new(EvaluateFlagResponse {
            flag: e.key,
            value: (!res.value.is_null()).then(|| to_proto(&res.value)),
            source: res.source.as_str().to_owned(),
            revision: e.revision,
            tenant_id: e.tenant.unwrap_or_default(),
            variant: res.variant.map(Cow::into_owned).unwrap_or_default(),
            reason: res.reason.as_str().to_owned(),
            error_code,
            error_message,
            metadata: (!e.metadata.is_empty())
                .then(|| to_struct(&serde_json::Value::Object(e.metadata))),
            explanation: steps_to_proto(&e.explanation),
        }))
    }

    async fn import_flags(
        &self,
        req: Request<ImportFlagsRequest>,
    ) -> Result<Response<ImportFlagsResponse>, Status> {
        let p = principal(&req)?.clone();
        let r = req.into_inner();
        let file = match (r.configuration.as_ref(), r.configuration_text.as_str()) {
            (Some(c), "") => from_struct("configuration", c).map(serde_json::Value::Object),
            (None, text) if !text.is_empty() => serde_json::from_str(text).map_err(|e| {
                Error::invalid_argument("configuration_text", format!("is not JSON: {e}"))
            }),
            (None, _) => Err(Error::invalid_argument(
                "configuration",
                "is required (or configuration_text)",
            )),
            (Some(_), _) => Err(Error::invalid_argument(
                "configuration_text",
                "give configuration or configuration_text, not both",
            )),
        };
        let report = self
            .flags
            .import(&p, file, r.prune, r.allow_schema_violations)
            .await
            .or_status()?;
        Ok(Response::new(ImportFlagsResponse {
            revision: report.revision,
            created: report.created,
            updated: report.updated,
            unchanged: report.unchanged,
            deleted: report.deleted,
            warnings: report.warnings,
        }))
    }

    async fn export_flags(
        &self,
        req: Request<ExportFlagsRequest>,
    ) -> Result<Response<ExportFlagsResponse>, Status> {
        let file = self.flags.export(principal(&req)?).await.or_status()?;
        Ok(Response::new(ExportFlagsResponse {
            configuration: Some(to_struct(&file)),
            configuration_text: file.to_string(),
        }))
    }

    /// Served by [`EncodedRoutes`] on the server; this is the same stream,
    /// decoded, for whoever calls the trait directly.
    async fn watch_flags(
        &self,
        req: Request<WatchFlagsRequest>,
    ) -> Result<Response<Self::WatchFlagsStream>, Status> {
        let stream = self.watch_items(req).await?;
        Ok(Response::new(Box::pin(stream.map(|item| {
            item.and_then(|(item, _)| watch_to_proto(&item))
        }))))
    }
}
