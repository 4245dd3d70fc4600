//! flagd's gRPC API over the flag service, for OpenFeature's flagd
//! providers: `flagd.evaluation.v1.Service` and `flagd.evaluation.v2.Service`
//! (RPC mode: every evaluation a call, and an event stream of changes) and
//! `flagd.sync.v1.FlagSyncService` (in-process mode: the tenant's flags as
//! flagd JSON, sent again on every change).
//!
//! Converts and calls `flag::service`; what a context, a selector, a reason
//! or a type means is `flag::openfeature`, shared with OFREP. A missing flag
//! is NOT_FOUND, a type the flag does not have INVALID_ARGUMENT
//! (`TYPE_MISMATCH`), a context or selector naming no tenant
//! INVALID_ARGUMENT, as flagd answers; a whole view (`SyncFlags`,
//! `FetchAllFlags`, `ResolveAll`) over the message limit RESOURCE_EXHAUSTED.
//! Streams never end with OK: when the server stops they end UNAVAILABLE,
//! which every provider takes as "reconnect" (the JavaScript provider ignores
//! a stream that ends with OK).

use std::{
    collections::{BTreeMap, BTreeSet},
    pin::Pin,
    sync::Arc,
};

use bytes::Bytes;

use futures_util::{Stream, StreamExt, stream};
use serde_json::{Map, Value, json};
use tonic::{Request, Response, Status};

use super::status::{IntoStatus, OrStatus};
use super::{
    connection_key,
    convert::to_proto,
    frames::{self, Messages, Route},
    principal,
};
use switchyard_api::flagd::{
    evaluation::{v1, v2},
    sync::v1 as sync,
};
use switchyard_core::{
    error::{Error, ErrorKind},
    flag::{
        RuleError,
        openfeature::{self, Attribute, PerContext},
        service::{Audience, Evaluation, FlagService},
        watch::{Delivery, Memo, WatchItem},
    },
    service::cache::Recent,
};

/// The gRPC metadata header that carries a flagd selector.
pub const SELECTOR_HEADER: &str = "flagd-selector";

/// Watch items read together: the changes of one burst give one event.
const BURST: usize = 64;

/// A server stream of this module.
type Events<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// flagd's services over the flag service (one value serves all three).
#[derive(Debug, Clone)]
pub struct Flagd {
    flags: FlagService,
    /// The largest message sent (`max_message_bytes`).
    max_message_bytes: usize,
    /// The configurations the sync streams send, made once per view and
    /// revision for every stream of that view.
    configurations: Arc<Recent<Option<String>, Configuration>>,
}

/// A view's flagd configuration as `SyncFlags` sends it: the encoded
/// `SyncFlagsResponse`, and the memo of its compressed form.
#[derive(Debug)]
pub struct Configuration {
    encoded: Bytes,
    memo: Memo,
}

/// One evaluation, as every flagd resolution answers it.
struct Resolved {
    evaluation: Evaluation,
    per_context: PerContext,
}

impl Resolved {
    fn reason(&self) -> String {
        openfeature::reason(&self.evaluation, self.per_context).to_owned()
    }

    fn variant(&self) -> String {
        self.evaluation
            .resolution
            .variant
            .as_deref()
            .unwrap_or_default()
            .to_owned()
    }

    fn metadata(&self) -> Option<pbjson_types::Struct> {
        Some(fields(&Value::Object(self.evaluation.metadata.clone())))
    }

    /// The value (`Null`: none, the caller's own default applies).
    fn value(&self) -> &Value {
        &self.evaluation.resolution.value
    }

    fn key(&self) -> &str {
        &self.evaluation.key
    }
}

/// The gRPC status of a failed rule, as flagd answers it (its providers map
/// `DATA_LOSS` to `PARSE_ERROR` and `UNKNOWN` to `GENERAL`).
fn rule_failure(key: &str, code: RuleError, message: &str) -> Status {
    match code {
        RuleError::Parse => Status::data_loss(format!(
            "PARSE_ERROR: the targeting rule of flag {key:?} failed: {message}"
        )),
        RuleError::General => Status::unknown(format!("GENERAL: flag {key:?}: {message}")),
    }
}

/// An evaluation context as JSON (none: empty).
fn context_map(context: Option<&pbjson_types::Struct>) -> serde_json::Map<String, Value> {
    match context {
        Some(c) => super::flag::from_struct("context", c).unwrap_or_default(),
        None => serde_json::Map::new(),
    }
}

/// A JSON object's fields as a protobuf `Struct` (anything else: empty).
fn fields(v: &Value) -> pbjson_types::Struct {
    match to_proto(v).kind {
        Some(pbjson_types::value::Kind::StructValue(s)) => s,
        _ => pbjson_types::Struct::default(),
    }
}

/// The tenant a flagd selector names: the `Flagd-Selector` header, else the
/// sync requests' deprecated field.
fn selector<T>(req: &Request<T>, field: &str) -> Result<Option<String>, Status> {
    let header = req
        .metadata()
        .get(SELECTOR_HEADER)
        .map(|v| {
            v.to_str()
                .map_err(|_| Error::invalid_argument("selector", "must be text"))
        })
        .transpose()
        .or_status()?
        .unwrap_or_default();
    let named = if header.trim().is_empty() {
        field
    } else {
        header
    };
    openfeature::selector_tenant(named).or_status()
}

/// An audience's failure as flagd answers it: a tenant the context or the
/// selector names that does not exist is the request's fault
/// (INVALID_ARGUMENT), not a missing flag (NOT_FOUND would read as
/// FLAG_NOT_FOUND to a provider).
fn audience_error(e: Error) -> Status {
    match e.kind() {
        ErrorKind::NotFound => Error::new(
            ErrorKind::InvalidArgument,
            format!("context: {}", e.message()),
        )
        .into_status(),
        _ => e.into_status(),
    }
}

impl Flagd {
    /// The services over `flags`, sending messages of at most
    /// `max_message_bytes`.
    pub fn new(flags: FlagService, max_message_bytes: usize) -> Flagd {
        Flagd {
            flags,
            max_message_bytes,
            configurations: Arc::default(),
        }
    }

    /// Refuses an answer of `bytes` that would not fit in one message (a
    /// whole view goes in one: `SyncFlags`, `FetchAllFlags`, `ResolveAll`).
    fn fits(&self, bytes: usize, audience: &Audience) -> Result<(), Status> {
        too_large(bytes, self.max_message_bytes, audience.tenant()).map_or(Ok(()), Err)
    }

    /// The tenant a request is for (see `flag::openfeature::context_target`),
    /// resolved and allowed for the caller, and whether the caller's answers
    /// depend on the context.
    async fn audience<T>(
        &self,
        req: &Request<T>,
        context: Option<&pbjson_types::Struct>,
        selector_field: &str,
    ) -> Result<(Audience, PerContext), Status> {
        let p = principal(req)?;
        let selector = selector(req, selector_field)?;
        // Only the two attributes the rule reads are looked at.
        let attribute = |name: &str| {
            use pbjson_types::value::Kind;
            match context
                .and_then(|c| c.fields.get(name))
                .and_then(|v| v.kind.as_ref())
            {
                None | Some(Kind::NullValue(_)) => Attribute::Absent,
                Some(Kind::StringValue(s)) => Attribute::text(s),
                Some(_) => Attribute::Other,
            }
        };
        let (target, per_context) = openfeature::context_target(
            attribute(openfeature::TENANT_ATTRIBUTE),
            attribute(openfeature::HOST_ATTRIBUTE),
            selector,
        )
        .or_status()?;
        let audience = self
            .flags
            .audience(p, target)
            .await
            .map_err(audience_error)?;
        Ok((audience, per_context.for_caller(p)))
    }

    async fn resolve<T>(
        &self,
        req: &Request<T>,
        key: &str,
        context: Option<&pbjson_types::Struct>,
    ) -> Result<Resolved, Status> {
        let (audience, per_context) = self.audience(req, context, "").await?;
        let ctx = context_map(context);
        let evaluation = self.flags.evaluate_for(&audience, key, &ctx).or_status()?;
        if let Some((code, message)) = &evaluation.resolution.error {
            return Err(rule_failure(key, *code, message));
        }
        Ok(Resolved {
            evaluation,
            per_context,
        })
    }

    /// `EventStream` (both versions): `provider_ready` once the view is
    /// loaded, then `configuration_change` naming every flag of it (a
    /// provider that reconnects may still hold answers from before: the
    /// Python provider keeps its cache of STATIC answers across a short
    /// outage), then one naming the keys each burst of changes touched, and
    /// `keep_alive` at every watch heartbeat.
    async fn events<T, E>(
        &self,
        req: &Request<T>,
        make: fn(&str, Option<Value>) -> E,
    ) -> Result<Events<E>, Status>
    where
        E: Send + 'static,
    {
        let (audience, _) = self.audience(req, None, "").await?;
        let watch = self
            .flags
            .watch(
                principal(req)?,
                audience.tenant().unwrap_or_default(),
                0,
                None,
                connection_key(req),
            )
            .await
            .or_status()?;
        let mut known = Known::default();
        let events = watch
            .ready_chunks(BURST)
            .flat_map(move |burst| stream::iter(known.events(burst, make)));
        Ok(Box::pin(
            events.chain(stream::once(async { Err(stopping()) })),
        ))
    }

    /// `SyncFlags`: the configuration once the view is loaded, then again
    /// after each burst of changes.
    /// `SyncFlags`: the view's whole configuration at once, and again after
    /// every change to it. What a stream sends is the configuration of its
    /// view as the state holds it when a change arrives (never a view that
    /// did not exist), made once per view and revision for all its streams
    /// ([`Self::shared_configuration`]); the stream itself holds only the
    /// revision it sent last.
    async fn sync(
        &self,
        req: &Request<sync::SyncFlagsRequest>,
    ) -> Result<Messages<Arc<Configuration>>, Status> {
        #[allow(deprecated)]
        let field = req.get_ref().selector.clone();
        let (audience, _) = self.audience(req, None, &field).await?;
        let watch = self
            .flags
            .watch(
                principal(req)?,
                audience.tenant().unwrap_or_default(),
                0,
                None,
                connection_key(req),
            )
            .await
            .or_status()?;
        let this = self.clone();
        let mut sent = -1;
        let configurations = watch.ready_chunks(BURST).filter_map(move |burst| {
            let failed = burst.iter().find_map(|d| match &d.item {
                WatchItem::Failed(e) => Some(e.clone()),
                _ => None,
            });
            let changed = burst
                .iter()
                .any(|d| !matches!(d.item, WatchItem::Heartbeat { .. }));
            let next = match failed {
                Some(e) => Some(Err(e.into_status())),
                None if changed => match this.shared_configuration(&audience) {
                    Ok((c, revision)) if revision > sent => {
                        sent = revision;
                        let memo = c.memo.clone();
                        Some(Ok((c, memo)))
                    }
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                },
                None => None,
            };
            std::future::ready(next)
        });
        Ok(Box::pin(
            configurations.chain(stream::once(async { Err(stopping()) })),
        ))
    }

    /// The configuration of `audience`'s view now, and the view's revision:
    /// the one made already for that revision, else made now (and refused
    /// when it would not fit in one message).
    fn shared_configuration(
        &self,
        audience: &Audience,
    ) -> Result<(Arc<Configuration>, i64), Status> {
        let key = audience.tenant().map(str::to_owned);
        let now = self.flags.view_tag(audience).revision;
        if let Some(c) = self.configurations.get(&key, now) {
            return Ok((c, now));
        }
        let (flags, tag) = self.flags.flagd_view(audience);
        let revision = tag.revision;
        let configuration = openfeature::flagd_configuration(flags);
        self.fits(configuration.len(), audience)?;
        let response = sync::SyncFlagsResponse {
            flag_configuration: configuration,
            sync_context: Some(fields(&Value::Object(self.flags.sync_context(audience)))),
        };
        let c = Arc::new(Configuration {
            encoded: Bytes::from(prost::Message::encode_to_vec(&response)),
            memo: Memo::shared(),
        });
        self.configurations.put(key, revision, &c);
        Ok((c, revision))
    }

    /// Every flag of the request's view, as flagd JSON.
    async fn configuration<T>(
        &self,
        req: &Request<T>,
        selector_field: &str,
    ) -> Result<String, Status> {
        let (audience, _) = self.audience(req, None, selector_field).await?;
        let (flags, _) = self.flags.flagd_view(&audience);
        let configuration = openfeature::flagd_configuration(flags);
        self.fits(configuration.len(), &audience)?;
        Ok(configuration)
    }
}

/// RESOURCE_EXHAUSTED for a whole view of `bytes` over `max` (a few bytes of
/// framing counted), else nothing.
fn too_large(bytes: usize, max: usize, tenant: Option<&str>) -> Option<Status> {
    (bytes + 64 > max).then(|| {
        Error::new(
            ErrorKind::ResourceExhausted,
            format!(
                "the flags of {} take {bytes} bytes, over the message limit of {max} \
                 (max_message_bytes): evaluate them one by one, or raise the limit",
                tenant.map_or_else(|| "the view".to_owned(), |t| format!("tenant {t:?}")),
            ),
        )
        .into_status()
    })
}

/// How a stream ends when the server stops.
fn stopping() -> Status {
    Status::unavailable("the server is stopping; reconnect")
}

/// What an event stream knows of the view: which keys it holds, so that a
/// snapshot after a lag names every key that may have changed.
#[derive(Default)]
struct Known {
    ready: bool,
    keys: BTreeSet<String>,
    /// The keys of a snapshot whose parts are still arriving.
    parts: BTreeSet<String>,
}

impl Known {
    fn events<E>(
        &mut self,
        burst: Vec<Delivery>,
        make: fn(&str, Option<Value>) -> E,
    ) -> Vec<Result<E, Status>> {
        let mut out = Vec::new();
        let mut changed: BTreeMap<String, &'static str> = BTreeMap::new();
        let mut alive = false;
        for d in burst {
            match d.item {
                WatchItem::Snapshot {
                    flags, continues, ..
                } => {
                    self.parts.extend(flags.iter().map(|f| f.flag.clone()));
                    if continues {
                        continue;
                    }
                    let keys = std::mem::take(&mut self.parts);
                    if !self.ready {
                        self.ready = true;
                        out.push(Ok(make("provider_ready", None)));
                    }
                    // Whatever it held or holds now may have changed: after
                    // a lag, and also at the start (a provider that
                    // reconnects keeps answers from before it was away).
                    for k in self.keys.iter().chain(&keys) {
                        changed.insert(k.clone(), "update");
                    }
                    self.keys = keys;
                }
                WatchItem::Upsert { flag, .. } => {
                    let kind = if self.keys.insert(flag.flag.clone()) {
                        "write"
                    } else {
                        "update"
                    };
                    changed.insert(flag.flag, kind);
                }
                WatchItem::Delete { flag, .. } => {
                    self.keys.remove(&flag);
                    changed.insert(flag, "delete");
                }
                WatchItem::Heartbeat { .. } => alive = true,
                WatchItem::Failed(e) => {
                    out.push(Err(e.into_status()));
                    return out;
                }
            }
        }
        if !changed.is_empty() {
            let flags: Map<String, Value> = changed
                .into_iter()
                .map(|(k, kind)| (k, json!({ "type": kind })))
                .collect();
            out.push(Ok(make(
                "configuration_change",
                Some(json!({ "flags": flags })),
            )));
        } else if alive && self.ready {
            out.push(Ok(make("keep_alive", None)));
        }
        out
    }
}

fn event_v1(kind: &str, data: Option<Value>) -> v1::EventStreamResponse {
    v1::EventStreamResponse {
        r#type: kind.to_owned(),
        data: data.as_ref().map(fields),
    }
}

fn event_v2(kind: &str, data: Option<Value>) -> v2::EventStreamResponse {
    v2::EventStreamResponse {
        r#type: kind.to_owned(),
        data: data.as_ref().map(fields),
    }
}

/// `ResolveAll`'s form of a value: by its JSON type (a number is a double, a
/// list the object `{"items": [...]}`).
fn any_value(v: &Value) -> Option<v1::any_flag::Value> {
    use v1::any_flag::Value as V;
    Some(match v {
        Value::Bool(b) => V::BoolValue(*b),
        Value::String(s) => V::StringValue(s.clone()),
        Value::Number(n) => V::DoubleValue(n.as_f64()?),
        Value::Array(_) | Value::Object(_) => V::ObjectValue(fields(&openfeature::object_value(v))),
        Value::Null => return None,
    })
}

/// The answer of one resolution: the flag evaluated for the request, its
/// value as `$value` makes it of the evaluation `$e`, with reason, variant
/// and metadata (`$some`: `Some` in v2, where they are optional).
macro_rules! resolved {
    ($self:ident, $req:ident, $v:ident :: $answer:ident, $some:path, |$e:ident| $value:expr) => {{
        let r = $req.get_ref();
        let $e = $self
            .resolve(&$req, &r.flag_key, r.context.as_ref())
            .await?;
        // No value (a disabled flag, none picked and no default variant):
        // the reason alone, as flagd answers.
        let none = $e.value().is_null();
        Ok(Response::new($v::$answer {
            value: if none { Default::default() } else { $value },
            reason: $e.reason(),
            variant: if none {
                Default::default()
            } else {
                $some($e.variant())
            },
            metadata: $e.metadata(),
        }))
    }};
}

/// The five resolutions and the event stream, the same in both versions but
/// for `optional` (`$some`: `Some` in v2, nothing in v1).
macro_rules! evaluation_service {
    ($v:ident, $event:ident, $some:path, { $($extra:tt)* }) => {
        #[tonic::async_trait]
        impl $v::service_server::Service for Flagd {
            type EventStreamStream = Events<$v::EventStreamResponse>;

            async fn resolve_boolean(
                &self,
                req: Request<$v::ResolveBooleanRequest>,
            ) -> Result<Response<$v::ResolveBooleanResponse>, Status> {
                resolved!(self, req, $v::ResolveBooleanResponse, $some, |e| {
                    $some(openfeature::as_bool(e.key(), e.value()).or_status()?)
                })
            }

            async fn resolve_string(
                &self,
                req: Request<$v::ResolveStringRequest>,
            ) -> Result<Response<$v::ResolveStringResponse>, Status> {
                resolved!(self, req, $v::ResolveStringResponse, $some, |e| {
                    $some(openfeature::as_string(e.key(), e.value()).or_status()?)
                })
            }

            async fn resolve_float(
                &self,
                req: Request<$v::ResolveFloatRequest>,
            ) -> Result<Response<$v::ResolveFloatResponse>, Status> {
                resolved!(self, req, $v::ResolveFloatResponse, $some, |e| {
                    $some(openfeature::as_float(e.key(), e.value()).or_status()?)
                })
            }

            async fn resolve_int(
                &self,
                req: Request<$v::ResolveIntRequest>,
            ) -> Result<Response<$v::ResolveIntResponse>, Status> {
                resolved!(self, req, $v::ResolveIntResponse, $some, |e| {
                    $some(openfeature::as_int(e.key(), e.value()).or_status()?)
                })
            }

            async fn resolve_object(
                &self,
                req: Request<$v::ResolveObjectRequest>,
            ) -> Result<Response<$v::ResolveObjectResponse>, Status> {
                resolved!(self, req, $v::ResolveObjectResponse, $some, |e| {
                    Some(fields(&Value::Object(openfeature::as_object(e.key(), e.value()).or_status()?)))
                })
            }

            async fn event_stream(
                &self,
                req: Request<$v::EventStreamRequest>,
            ) -> Result<Response<Self::EventStreamStream>, Status> {
                self.events(&req, $event).await.map(Response::new)
            }

            $($extra)*
        }
    };
}

evaluation_service!(v1, event_v1, std::convert::identity, {
    async fn resolve_all(
        &self,
        req: Request<v1::ResolveAllRequest>,
    ) -> Result<Response<v1::ResolveAllResponse>, Status> {
        let (audience, per_context) = self
            .audience(&req, req.get_ref().context.as_ref(), "")
            .await?;
        let ctx = context_map(req.get_ref().context.as_ref());
        let (all, revision) = self.flags.evaluate_all_in(&audience, &ctx);
        // As flagd: a flag without a value (disabled, failed, or none
        // picked and no default variant) is left out.
        let flags = all
            .iter()
            .filter(|e| !e.resolution.value.is_null())
            .map(|e| {
                let flag = v1::AnyFlag {
                    reason: openfeature::reason(e, per_context).to_owned(),
                    variant: e
                        .resolution
                        .variant
                        .as_deref()
                        .unwrap_or_default()
                        .to_owned(),
                    value: any_value(&e.resolution.value),
                    metadata: Some(fields(&Value::Object(e.metadata.clone()))),
                };
                (e.key.clone(), flag)
            })
            .collect();
        let mut set = json!({"revision": revision});
        if let Some(t) = audience.tenant() {
            set[openfeature::TENANT_ATTRIBUTE] = json!(t);
        }
        let answer = v1::ResolveAllResponse {
            flags,
            metadata: Some(fields(&set)),
        };
        self.fits(prost::Message::encoded_len(&answer), &audience)?;
        Ok(Response::new(answer))
    }
});

evaluation_service!(v2, event_v2, Some, {});

#[tonic::async_trait]
#[allow(deprecated)]
impl sync::flag_sync_service_server::FlagSyncService for Flagd {
    type SyncFlagsStream = Events<sync::SyncFlagsResponse>;

    /// Served by [`sync_route`] on the server, written from the shared
    /// encodings; this is the same stream, decoded, for whoever calls the
    /// trait directly.
    async fn sync_flags(
        &self,
        req: Request<sync::SyncFlagsRequest>,
    ) -> Result<Response<Self::SyncFlagsStream>, Status> {
        let items = self.sync(&req).await?;
        Ok(Response::new(Box::pin(items.map(|item| {
            item.and_then(|(c, _)| {
                <sync::SyncFlagsResponse as prost::Message>::decode(c.encoded.clone())
                    .map_err(|e| Error::internal("decoding a sync message", e).into_status())
            })
        }))))
    }

    async fn fetch_all_flags(
        &self,
        req: Request<sync::FetchAllFlagsRequest>,
    ) -> Result<Response<sync::FetchAllFlagsResponse>, Status> {
        let field = req.get_ref().selector.clone();
        Ok(Response::new(sync::FetchAllFlagsResponse {
            flag_configuration: self.configuration(&req, &field).await?,
        }))
    }

    /// Deprecated in flagd, still called first by the Python provider in
    /// in-process mode (which fails on an answer without `metadata`): the
    /// view's revision, and its tenant when there is one.
    async fn get_metadata(
        &self,
        req: Request<sync::GetMetadataRequest>,
    ) -> Result<Response<sync::GetMetadataResponse>, Status> {
        let (audience, _) = self.audience(&req, None, "").await?;
        // As flagd: the sync context (the static context values, here with
        // the tenant's id too).
        Ok(Response::new(sync::GetMetadataResponse {
            metadata: Some(fields(&Value::Object(self.flags.sync_context(&audience)))),
        }))
    }
}

/// `flagd.sync.v1.FlagSyncService/SyncFlags` as the server routes it: the
/// same stream as [`sync::flag_sync_service_server::FlagSyncService::sync_flags`],
/// written from the configurations its streams share (`frames.rs`), never
/// copied per stream. Mounted at [`SYNC_FLAGS`], in front of the generated
/// service.
pub fn sync_route(flagd: Flagd) -> Route {
    Route::new(move |req: http::Request<axum::body::Body>| {
        let flagd = flagd.clone();
        let max = flagd.max_message_bytes;
        async move { frames::serve(req, max, move |req| sync_items(flagd, req), encoded).await }
    })
}

/// The path of `SyncFlags`.
pub const SYNC_FLAGS: &str = "/flagd.sync.v1.FlagSyncService/SyncFlags";

async fn sync_items(
    flagd: Flagd,
    req: Request<sync::SyncFlagsRequest>,
) -> Result<Messages<Arc<Configuration>>, Status> {
    flagd.sync(&req).await
}

fn encoded(c: &Arc<Configuration>) -> Result<Bytes, Status> {
    Ok(c.encoded.clone())
}
