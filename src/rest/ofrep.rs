//! OFREP, the OpenFeature Remote Evaluation Protocol: the routes OpenFeature
//! SDKs' OFREP providers call, over the flag service's evaluations (no rule
//! of its own).
//!
//! - `POST /ofrep/v1/evaluate/flags/{key}`: one flag;
//! - `POST /ofrep/v1/evaluate/flags`: every flag, with an `ETag` (the
//!   tenant's view version) and 304 for `If-None-Match`.
//!
//! Which tenant: a `tenant:<id>` token's own; with an admin token, the
//! context's `tenantId`, else its `host` resolved through TenantService; with
//! neither, values without overrides. Reasons: a tenant override is
//! `TARGETING_MATCH` (the value was chosen for this tenant), an `env`
//! override or a stored value `STATIC`, the declared default `DEFAULT`; the
//! variant is the source's name, and `metadata` carries `source` and
//! `revision`. Errors take OFREP's shapes: `{key, errorCode, errorDetails}`.

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Request, State},
    response::{IntoResponse, Response},
    routing::post,
};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::{Map, Value, json};

use std::sync::Arc;

use crate::{
    auth::Principal,
    error::{Error, ErrorKind},
    flag::{
        Effective, ValueSource,
        service::{Audience, Service, Target},
    },
    service::cache::Bounded,
};

/// The largest OFREP request body, in bytes (413 beyond).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The context attribute that names the tenant (admin tokens).
pub const TENANT_ATTRIBUTE: &str = "tenantId";
/// The context attribute resolved through TenantService when no tenant is
/// named (admin tokens).
pub const HOST_ATTRIBUTE: &str = "host";

/// The OFREP routes over `flags`.
pub fn router(flags: Service) -> Router {
    Router::new()
        .route("/ofrep/v1/evaluate/flags/{key}", post(evaluate_one))
        .route("/ofrep/v1/evaluate/flags", post(evaluate_all))
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
    flags: Service,
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

/// Which tenant the context names (see the module's documentation).
fn target(ctx: &Map<String, Value>) -> Result<Target, Failure> {
    let text = |name: &str| -> Result<Option<String>, Failure> {
        match ctx.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(Failure::new(
                StatusCode::BAD_REQUEST,
                "INVALID_CONTEXT",
                format!("context.{name} must be a string"),
            )),
        }
    };
    Ok(match (text(TENANT_ATTRIBUTE)?, text(HOST_ATTRIBUTE)?) {
        (Some(t), _) => Target::TenantId(t),
        (None, Some(h)) => Target::ResolveKey(h),
        (None, None) => Target::Caller,
    })
}

async fn audience(
    flags: &Service,
    principal: Option<&Principal>,
    body: &Bytes,
) -> Result<Audience, Failure> {
    let p = principal
        .ok_or_else(|| Failure::new(StatusCode::UNAUTHORIZED, "GENERAL", "missing bearer token"))?;
    let target = target(&context(body)?)?;
    flags
        .audience(p, target)
        .await
        .map_err(|e| Failure::from_error(&e, false))
}

fn reason(source: ValueSource) -> &'static str {
    match source {
        ValueSource::Tenant => "TARGETING_MATCH",
        ValueSource::Env | ValueSource::Store => "STATIC",
        ValueSource::Default => "DEFAULT",
    }
}

/// `v` with integral numbers written without a fraction (`3`, not `3.0`),
/// as the REST shims write them: SDKs tell an integer from a float by it.
fn integral(v: &Value) -> Value {
    match v {
        Value::Number(n) => match n.as_f64() {
            // Exact below 2^53.
            #[allow(clippy::cast_possible_truncation)]
            Some(f) if f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 => json!(f as i64),
            _ => v.clone(),
        },
        Value::Array(items) => Value::Array(items.iter().map(integral).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), integral(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// One flag's OFREP success.
fn success(e: &Effective, revision: i64) -> Value {
    json!({
        "key": e.flag,
        "value": integral(&e.value),
        "reason": reason(e.source),
        "variant": e.source.as_str(),
        "metadata": {"source": e.source.as_str(), "revision": revision},
    })
}

async fn evaluate_one(
    State(Ofrep { flags, .. }): State<Ofrep>,
    Path(key): Path<String>,
    req: Request,
) -> Response {
    let principal = req.extensions().get::<Principal>().cloned();
    let body = match read(req).await {
        Ok(b) => b,
        Err(f) => return f.for_key(&key).into_response(),
    };
    let result = async {
        let audience = audience(&flags, principal.as_ref(), &body).await?;
        flags
            .evaluate_for(&audience, &key)
            .map_err(|e| Failure::from_error(&e, true))
    }
    .await;
    match result {
        Ok(e) => Json(success(&e.value, e.revision)).into_response(),
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
    let audience = match audience(&flags, principal.as_ref(), &body).await {
        Ok(a) => a,
        Err(f) => return f.into_response(),
    };
    // The caller's version first: a 304 evaluates nothing.
    let current = flags.view_tag(&audience);
    if if_none_match.is_some_and(|t| current.matches(&t)) {
        return (StatusCode::NOT_MODIFIED, etag_header(&current.etag)).into_response();
    }
    let (etag, body) = match bulk.get(&current.etag) {
        Some(body) => (current.etag, body),
        None => {
            // The tag is read before the values: a change landing in between
            // leaves the answer newer than its tag, never older.
            let all = flags.evaluate_all(&audience);
            let values: Vec<Value> = all
                .values
                .iter()
                .map(|e| success(e, all.revision))
                .collect();
            let body = Bytes::from(json!({"flags": values}).to_string());
            bulk.put(all.tag.etag.clone(), body.clone(), body.len(), |_| false);
            (all.tag.etag, body)
        }
    };
    (
        etag_header(&etag),
        [(header::CONTENT_TYPE, "application/json")],
        body,
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

/// The body, within [`MAX_BODY_BYTES`].
async fn read(req: Request) -> Result<Bytes, Failure> {
    use http_body_util::BodyExt;
    http_body_util::Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                Failure::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "GENERAL",
                    format!("the body exceeds {MAX_BODY_BYTES} bytes"),
                )
            } else {
                Failure::new(
                    StatusCode::BAD_REQUEST,
                    "PARSE_ERROR",
                    "the body could not be read",
                )
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_name_the_tenant_by_id_then_by_host() {
        let ctx = |v: Value| context(&Bytes::from(v.to_string()));
        assert_eq!(target(&ctx(json!({})).unwrap()).ok(), Some(Target::Caller));
        assert_eq!(
            target(&ctx(json!({"context": {"targetingKey": "u1"}})).unwrap()).ok(),
            Some(Target::Caller)
        );
        assert_eq!(
            target(&ctx(json!({"context": {"tenantId": "a", "host": "x.example"}})).unwrap()).ok(),
            Some(Target::TenantId("a".into()))
        );
        assert_eq!(
            target(&ctx(json!({"context": {"host": "x.example"}})).unwrap()).ok(),
            Some(Target::ResolveKey("x.example".into()))
        );
        assert!(context(&Bytes::new()).unwrap().is_empty());
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
        let f = target(&ctx(json!({"context": {"tenantId": 7}})).unwrap())
            .err()
            .unwrap();
        assert_eq!(f.code, "INVALID_CONTEXT");
    }
}
