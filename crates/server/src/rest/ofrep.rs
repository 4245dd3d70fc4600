//! OFREP, the OpenFeature Remote Evaluation Protocol: the routes OpenFeature
//! SDKs' OFREP providers call, over the flag service's evaluations (no rule
//! of its own; OpenFeature's reading of contexts, reasons and variants is
//! `flag::openfeature`, shared with flagd's gRPC API).
//!
//! - `POST /ofrep/v1/evaluate/flags/{key}`: one flag;
//! - `POST /ofrep/v1/evaluate/flags`: every flag, with an `ETag` (the
//!   tenant's view version) and 304 for `If-None-Match`, and an SSE event
//!   stream in `eventStreams` (OFREP ADR-0008);
//! - `GET /ofrep/v1/events?tenantId=&since=`: that stream: a
//!   `refetchEvaluation` event after every change to the tenant's view, and at
//!   once when the view changed since the client's `Last-Event-ID` or `since`.
//!
//! Which tenant: a `tenant:<id>` token's own; with an admin token, the
//! context's `tenantId`, else its `host` resolved through TenantService; with
//! neither, values without overrides. Reasons: a tenant override is
//! `TARGETING_MATCH`, the declared default `DEFAULT`, a stored value or an
//! `env` override `STATIC` for a tenant token (whose tenant is fixed) and
//! `TARGETING_MATCH` for an admin (whose contexts choose the tenant); the
//! variant is the source's name, and `metadata` carries `source` and
//! `revision`. Errors take OFREP's shapes: `{key, errorCode, errorDetails}`.

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{
        Path, Query, Request, State,
        rejection::{PathRejection, QueryRejection},
    },
    response::{IntoResponse, Response},
    routing::{any, get, post},
};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Map, Value, json};

use std::{collections::HashMap, sync::Arc};

use futures_util::StreamExt;

use switchyard_core::{
    auth::Principal,
    error::{Error, ErrorKind},
    flag::{
        openfeature::{self, Attribute, PerContext},
        service::{Audience, Evaluation, FlagService, Target},
        state::ViewTag,
        watch::WatchItem,
    },
    service::cache::Bounded,
};

/// The largest OFREP request body, in bytes (413 beyond).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The path of the bulk answers' event stream.
pub const EVENTS_PATH: &str = "/ofrep/v1/events";

/// The inactivity delay the bulk answers advertise for their event stream
/// (OFREP's default): a provider whose application is inactive this long
/// closes the stream.
const INACTIVITY_DELAY_S: u32 = 120;

/// The OFREP routes over `flags`. Every answer but a success, 401 and 403
/// carries OFREP's error body, a wrong method or an unknown OFREP path too.
pub fn router(flags: FlagService) -> Router {
    Router::new()
        .route(
            "/ofrep/v1/evaluate/flags/{key}",
            post(evaluate_one).fallback(|| not_allowed("POST")),
        )
        .route(
            "/ofrep/v1/evaluate/flags",
            post(evaluate_all).fallback(|| not_allowed("POST")),
        )
        .route(EVENTS_PATH, get(events).fallback(|| not_allowed("GET")))
        .route("/ofrep/{*rest}", any(not_found))
        .with_state(Ofrep {
            flags,
            bulk: Arc::new(Bounded::new(BULK_BYTES)),
        })
}

/// The routes' state: the flag service, and the bulk answers by the tag of
/// the view they show (the tag names the tenant and the view's version, so
/// an answer is written once per version, not once per request).
#[derive(Clone)]
struct Ofrep {
    flags: FlagService,
    bulk: Arc<Bounded<String, Bytes>>,
}

/// At most this many bytes of bulk answers are kept.
const BULK_BYTES: usize = 16 * 1024 * 1024;

/// An OFREP failure: the HTTP status and, except for 401/403, the body.
#[derive(Debug)]
struct Failure {
    status: StatusCode,
    key: Option<String>,
    code: &'static str,
    details: String,
}

impl Failure {
    fn new(status: StatusCode, code: &'static str, details: impl Into<String>) -> Failure {
        Failure {
            status,
            key: None,
            code,
            details: details.into(),
        }
    }

    fn for_key(mut self, key: &str) -> Failure {
        self.key = Some(key.to_owned());
        self
    }

    /// The OFREP form of a service error. A missing flag is FLAG_NOT_FOUND
    /// (404) only when `flag_lookup`: a tenant the context names that does
    /// not exist is the context's fault.
    fn from_error(e: &Error, flag_lookup: bool) -> Failure {
        let (status, code) = match e.kind() {
            ErrorKind::NotFound if flag_lookup => (StatusCode::NOT_FOUND, "FLAG_NOT_FOUND"),
            ErrorKind::NotFound | ErrorKind::InvalidArgument | ErrorKind::FailedPrecondition => {
                (StatusCode::BAD_REQUEST, "INVALID_CONTEXT")
            }
            ErrorKind::Unauthenticated => (StatusCode::UNAUTHORIZED, "GENERAL"),
            ErrorKind::PermissionDenied => (StatusCode::FORBIDDEN, "GENERAL"),
            ErrorKind::ResourceExhausted => (StatusCode::TOO_MANY_REQUESTS, "GENERAL"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "GENERAL"),
        };
        Failure::new(status, code, e.message())
    }
}

impl Failure {
    /// The failure as an entry of a bulk answer.
    fn entry(self) -> Value {
        json!({
            "key": self.key.unwrap_or_default(),
            "errorCode": self.code,
            "errorDetails": self.details,
        })
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        if matches!(
            self.status,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) {
            return self.status.into_response();
        }
        let mut body = Map::new();
        if let Some(k) = self.key {
            body.insert("key".into(), Value::String(k));
        }
        body.insert("errorCode".into(), json!(self.code));
        body.insert("errorDetails".into(), Value::String(self.details));
        let mut resp = (self.status, Json(Value::Object(body))).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

/// The evaluation context of a request body: `{}` or `{"context": {...}}`
/// (an empty body is no context too).
fn context(body: &Bytes) -> Result<Map<String, Value>, Failure> {
    if body.len() > MAX_BODY_BYTES {
        return Err(Failure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "GENERAL",
            format!("the body exceeds {MAX_BODY_BYTES} bytes"),
        ));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    let parsed: Value = serde_json::from_slice(body).map_err(|e| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            "PARSE_ERROR",
            format!("the body is not JSON: {e}"),
        )
    })?;
    let Value::Object(mut top) = parsed else {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "INVALID_CONTEXT",
            "the body must be an object: {\"context\": {...}}",
        ));
    };
    match top.remove("context") {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(c)) => Ok(c),
        Some(_) => Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "INVALID_CONTEXT",
            "context must be an object",
        )),
    }
}

/// The tenant the request's context names, resolved and allowed for the
/// caller, and whether the caller's answers depend on the context (an admin
/// names the tenant in it; a tenant token's is fixed).
async fn audience(
    flags: &FlagService,
    principal: Option<&Principal>,
    body: &Bytes,
) -> Result<(Audience, PerContext, Map<String, Value>), Failure> {
    let p = principal
        .ok_or_else(|| Failure::new(StatusCode::UNAUTHORIZED, "GENERAL", "missing bearer token"))?;
    let context = context(body)?;
    let (target, per_context) = openfeature::context_target(
        Attribute::of(&context, openfeature::TENANT_ATTRIBUTE),
        Attribute::of(&context, openfeature::HOST_ATTRIBUTE),
        None,
    )
    .map_err(|e| Failure::from_error(&e, false))?;
    let audience = flags
        .audience(p, target)
        .await
        .map_err(|e| Failure::from_error(&e, false))?;
    Ok((audience, per_context.for_caller(p), context))
}

/// One flag's OFREP answer, as flagd gives it: a success (without `value`
/// and `variant` when there is no value: a disabled flag, or none picked
/// and no default variant), or the failure of its rule (`PARSE_ERROR`,
/// `GENERAL`).
fn answer(e: &Evaluation, per_context: PerContext) -> Result<Value, Failure> {
    let r = &e.resolution;
    if let Some((code, message)) = &r.error {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            code.as_str(),
            format!("the targeting rule of flag {:?} failed: {message}", e.key),
        )
        .for_key(&e.key));
    }
    let mut out = json!({
        "key": e.key,
        "reason": openfeature::reason(e, per_context),
        "metadata": e.metadata,
    });
    if !r.value.is_null() {
        out["value"] = r.value.clone().into_owned();
        out["variant"] = json!(r.variant.as_deref().unwrap_or_default());
    }
    Ok(out)
}

/// A digest of an evaluation context: bulk answers in different contexts
/// are cached apart.
fn context_digest(context: &Map<String, Value>) -> String {
    use sha2::Digest;
    if context.is_empty() {
        return String::new();
    }
    // serde_json's map is ordered by key: equal contexts write the same.
    let digest = sha2::Sha256::digest(Value::Object(context.clone()).to_string().as_bytes());
    hex::encode(&digest[..8])
}

/// The bulk answers' tag: the view's, marked when the answer is an admin's
/// (whose reasons differ from a tenant token's for the same view), and with
/// the context's digest (rules answer each context differently).
fn bulk_tag(view: ViewTag, per_context: PerContext, context: &str) -> ViewTag {
    let marked = match per_context {
        PerContext::No => view,
        PerContext::Yes => ViewTag {
            etag: format!("{}-ctx\"", view.etag.trim_end_matches('"')),
            ..view
        },
    };
    if context.is_empty() {
        return marked;
    }
    ViewTag {
        etag: format!("{}-{context}\"", marked.etag.trim_end_matches('"')),
        ..marked
    }
}

/// The event stream a bulk answer advertises: the same tenant's from the
/// revision of the view the answer shows (a change between the answer and
/// the stream is announced when it opens), under the same credentials (the
/// request URI names no secret).
fn event_streams(audience: &Audience, since: i64) -> Value {
    let mut query = form_urlencoded::Serializer::new(String::new());
    if let Some(t) = audience.tenant() {
        query.append_pair(openfeature::TENANT_ATTRIBUTE, t);
    }
    let uri = format!(
        "{EVENTS_PATH}?{}",
        query.append_pair("since", &since.to_string()).finish()
    );
    json!([{
        "type": "sse",
        "endpoint": {"requestUri": uri},
        "inactivityDelaySec": INACTIVITY_DELAY_S,
    }])
}

/// 405 for another method than `allow`.
async fn not_allowed(allow: &'static str) -> Response {
    let mut resp = Failure::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "GENERAL",
        format!("this OFREP route takes {allow}"),
    )
    .into_response();
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    resp
}

/// 404 for a path under `/ofrep/` that OFREP does not have.
async fn not_found(req: Request) -> Response {
    Failure::new(
        StatusCode::NOT_FOUND,
        "GENERAL",
        format!(
            "no OFREP route {}: the routes are POST /ofrep/v1/evaluate/flags[/{{key}}] and \
             GET {EVENTS_PATH}",
            req.uri().path()
        ),
    )
    .into_response()
}

async fn evaluate_one(
    State(Ofrep { flags, .. }): State<Ofrep>,
    key: Result<Path<String>, PathRejection>,
    req: Request,
) -> Response {
    let key = match key {
        Ok(Path(key)) => key,
        Err(e) => {
            return Failure::new(
                StatusCode::BAD_REQUEST,
                "GENERAL",
                format!("the flag key in the path cannot be read: {}", e.body_text()),
            )
            .into_response();
        }
    };
    let principal = req.extensions().get::<Principal>().cloned();
    let body = match read(req).await {
        Ok(b) => b,
        Err(f) => return f.for_key(&key).into_response(),
    };
    let result = async {
        let (audience, per_context, context) = audience(&flags, principal.as_ref(), &body).await?;
        let e = flags
            .evaluate_for(&audience, &key, &context)
            .map_err(|e| Failure::from_error(&e, true))?;
        answer(&e, per_context)
    }
    .await;
    match result {
        Ok(answer) => Json(answer).into_response(),
        Err(f) => f.for_key(&key).into_response(),
    }
}

async fn evaluate_all(State(Ofrep { flags, bulk }): State<Ofrep>, req: Request) -> Response {
    let principal = req.extensions().get::<Principal>().cloned();
    let if_none_match = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = match read(req).await {
        Ok(b) => b,
        Err(f) => return f.into_response(),
    };
    let (audience, per_context, context) = match audience(&flags, principal.as_ref(), &body).await {
        Ok(a) => a,
        Err(f) => return f.into_response(),
    };
    let digest = context_digest(&context);
    // The caller's version first: a 304 evaluates nothing.
    let current = bulk_tag(flags.view_tag(&audience), per_context, &digest);
    if if_none_match.is_some_and(|t| current.matches(&t)) {
        return (StatusCode::NOT_MODIFIED, etag_header(&current.etag)).into_response();
    }
    let (etag, body) = match bulk.get(&current.etag) {
        Some(body) => (current.etag, body),
        None => {
            // The tag is read before the values: a change landing in between
            // leaves the answer newer than its tag, never older.
            let view = flags.view_tag(&audience);
            let (all, _) = flags.evaluate_all_in(&audience, &context);
            let tag = bulk_tag(view, per_context, &digest);
            let values: Vec<Value> = all
                .iter()
                .map(|e| answer(e, per_context).unwrap_or_else(|f| f.entry()))
                .collect();
            let body = Bytes::from(
                json!({"flags": values, "eventStreams": event_streams(&audience, tag.revision)})
                    .to_string(),
            );
            bulk.put(tag.etag.clone(), body.clone(), body.len(), |_| false);
            (tag.etag, body)
        }
    };
    (
        etag_header(&etag),
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// The event stream of a tenant's view (`?tenantId=`; none: values without
/// overrides, or a tenant token's own): a `refetchEvaluation` event after
/// every change to the view, several changes that arrive together giving
/// one.
///
/// Where the client stands: its `Last-Event-ID` (a reconnect), else the
/// `since` the bulk answer put in the stream's URI (the revision of the view
/// it showed). When the view has changed since then, or the client names a
/// revision this replica has not reached (a restored database), the stream
/// opens with a `refetchEvaluation`: nothing that happened between the bulk
/// answer and the stream, or while the client was away, goes unsaid. Every
/// frame carries an `id` (the revision it covers), keep-alive comments at
/// every watch heartbeat included, so a client that reconnects always has a
/// `Last-Event-ID`. The stream ends when the server stops; SSE clients
/// reconnect.
async fn events(
    State(Ofrep { flags, .. }): State<Ofrep>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    req: Request,
) -> Response {
    let query = match query {
        Ok(Query(q)) => q,
        Err(e) => {
            return Failure::new(
                StatusCode::BAD_REQUEST,
                "GENERAL",
                format!("the query cannot be read: {}", e.body_text()),
            )
            .into_response();
        }
    };
    let Some(p) = req.extensions().get::<Principal>().cloned() else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let revision = |v: Option<&str>, what: &str| match v {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(Some)
            .ok_or_else(|| {
                Failure::new(
                    StatusCode::BAD_REQUEST,
                    "PARSE_ERROR",
                    format!("{what} must be a revision (a non-negative integer)"),
                )
            }),
    };
    let last_event_id = req
        .headers()
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("not text"));
    let client_at = match (
        revision(last_event_id, "Last-Event-ID"),
        revision(query.get("since").map(String::as_str), "since"),
    ) {
        (Ok(Some(at)), _) | (Ok(None), Ok(Some(at))) => Some(at),
        (Ok(None), Ok(None)) => None,
        (Err(f), _) | (_, Err(f)) => return f.into_response(),
    };
    let target = match query.get(openfeature::TENANT_ATTRIBUTE) {
        Some(t) if !t.is_empty() => Target::TenantId(t.clone()),
        _ => Target::Caller,
    };
    let audience = match flags.audience(&p, target).await {
        Ok(a) => a,
        Err(e) => return Failure::from_error(&e, false).into_response(),
    };
    let per_context = PerContext::Yes.for_caller(&p);
    let watch = match flags
        .watch(&p, audience.tenant().unwrap_or_default(), 0, None, 0)
        .await
    {
        Ok(w) => w,
        Err(e) => return Failure::from_error(&e, false).into_response(),
    };
    let mut opened = false;
    let frames = watch
        .ready_chunks(64)
        .map(move |items| {
            // The revision the frame covers, and the change to announce.
            let mut covered = None;
            let mut changed: Option<(i64, i64)> = None;
            for d in &items {
                match &d.item {
                    WatchItem::Snapshot {
                        continues: false,
                        revision,
                        ..
                    } => {
                        // The first snapshot is the view now: a change only
                        // if the view moved since the client's revision. A
                        // later one (after a lag) may hide any change.
                        let moved = client_at.is_some_and(|at| {
                            at > *revision || flags.view_tag(&audience).revision > at
                        });
                        if opened || moved {
                            changed = Some((*revision, 0));
                        }
                        opened = true;
                        covered = Some(*revision);
                    }
                    WatchItem::Upsert {
                        revision,
                        committed_at_us,
                        ..
                    }
                    | WatchItem::Delete {
                        revision,
                        committed_at_us,
                        ..
                    } => {
                        changed = Some((*revision, *committed_at_us));
                        covered = Some(*revision);
                    }
                    WatchItem::Heartbeat { revision } => covered = Some(*revision),
                    WatchItem::Snapshot { .. } | WatchItem::Failed(_) => {}
                }
            }
            let frame = match (changed, covered) {
                (Some((revision, at_us)), _) => {
                    // The view's tag (a bulk answer in a context adds its
                    // digest, so a client refetches either way).
                    let etag = bulk_tag(flags.view_tag(&audience), per_context, "").etag;
                    let mut data = json!({"type": "refetchEvaluation", "etag": etag});
                    if at_us > 0 {
                        data["lastModified"] = json!(at_us / 1_000_000);
                    }
                    let id = covered.unwrap_or(revision).max(revision);
                    format!("id: {id}\nevent: message\ndata: {data}\n\n")
                }
                // An id without data moves the client's Last-Event-ID.
                (None, Some(id)) => format!("id: {id}\n: keep-alive\n\n"),
                (None, None) => String::new(),
            };
            Ok::<_, std::convert::Infallible>(Bytes::from(frame))
        })
        .filter(|b| std::future::ready(!matches!(b, Ok(b) if b.is_empty())));
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(frames),
    )
        .into_response()
}

fn etag_header(etag: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, v);
    }
    headers
}

/// The body, within [`MAX_BODY_BYTES`] once inflated.
async fn read(req: Request) -> Result<Bytes, Failure> {
    let (parts, body) = req.into_parts();
    super::body::read(&parts.headers, body, MAX_BODY_BYTES)
        .await
        .map_err(|e| {
            let status = match e {
                super::body::BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                super::body::BodyError::Unsupported(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                super::body::BodyError::Unreadable(_) => StatusCode::BAD_REQUEST,
            };
            let code = match e {
                super::body::BodyError::Unreadable(_) => "PARSE_ERROR",
                _ => "GENERAL",
            };
            Failure::new(status, code, e.message())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_a_context_or_nothing() {
        assert!(context(&Bytes::new()).unwrap().is_empty());
        assert_eq!(
            context(&Bytes::from(r#"{"context": {"tenantId": "a"}}"#)).unwrap()["tenantId"],
            "a"
        );
        for (body, code) in [
            ("not json", "PARSE_ERROR"),
            ("[1]", "INVALID_CONTEXT"),
            ("{\"context\": 3}", "INVALID_CONTEXT"),
        ] {
            let f = context(&Bytes::from(body)).err().unwrap();
            assert_eq!(
                (f.status, f.code),
                (StatusCode::BAD_REQUEST, code),
                "{body}"
            );
        }
    }

    #[test]
    fn an_admins_bulk_tag_differs_from_a_tenant_tokens() {
        let view = ViewTag {
            revision: 3,
            etag: "\"3-ab\"".into(),
        };
        assert_eq!(bulk_tag(view.clone(), PerContext::No, ""), view);
        let admin = bulk_tag(view.clone(), PerContext::Yes, "");
        assert_eq!(admin.etag, "\"3-ab-ctx\"");
        assert!(!admin.matches(&view.etag) && admin.matches(&admin.etag));
        let in_context = bulk_tag(view.clone(), PerContext::No, "d1");
        assert_eq!(in_context.etag, "\"3-ab-d1\"");
    }
}
