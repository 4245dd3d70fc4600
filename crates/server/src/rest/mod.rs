//! The HTTP side of the listener: the grpc-gateway-style REST shims, the
//! OpenAPI document, and `/metrics`.
//!
//! Routes come from the `google.api.http` annotations alone ([`routes`]), and
//! each calls its RPC through the same tonic services gRPC clients reach
//! ([`gateway`]). Errors are `google.rpc.Status` JSON with grpc-gateway's
//! HTTP statuses.

pub mod body;
pub mod gateway;
mod json;
pub mod ofrep;
mod request;
pub mod routes;

use axum::{
    Router,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};

pub use gateway::Gateway;
pub use routes::RouteTable;

use crate::grpc::status::{Codes, http_status_for};
use switchyard_core::error::Error;

pub use switchyard_api::OPENAPI_JSON;

/// The smallest REST answer worth compressing, in bytes: below it gzip's
/// header and the CPU cost more than they save.
pub const COMPRESS_MIN_BYTES: usize = 1024;

/// The path the OpenAPI document is served at (without a token).
pub const OPENAPI_PATH: &str = "/openapi.json";

/// Returns the fixed HTTP routes of the main listener: `/metrics` and the
/// OpenAPI document. The annotated routes are served by the [`Gateway`].
pub fn router() -> Router {
    metrics_router()
        .route(OPENAPI_PATH, get(openapi))
        .method_not_allowed_fallback(fixed_route_method_not_allowed)
}

/// The fixed routes are GET (and so HEAD) only; any other method gets the
/// same 405 as the annotated routes.
async fn fixed_route_method_not_allowed(method: http::Method, uri: http::Uri) -> Response {
    Refusal::method_not_allowed(
        &method,
        uri.path(),
        &[http::Method::GET, http::Method::HEAD],
    )
    .into_response()
}

/// Returns the routes of the optional metrics-only listener: `/metrics` alone.
pub fn metrics_router() -> Router {
    Router::new().route("/metrics", get(metrics))
}

/// Builds the route table of this build's API.
pub fn route_table() -> Result<RouteTable, Error> {
    RouteTable::from_descriptors(switchyard_api::FILE_DESCRIPTOR_SET, "switchyard.v1")
        .map_err(|e| Error::internal("building the REST routes", e))
}

async fn metrics() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        switchyard_core::telemetry::render_metrics(),
    )
        .into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response()
}

/// Writes `message` as the REST shims write their bodies: proto3 JSON with
/// every field present (defaults included), integral doubles without a
/// fraction, maps in key order, timestamps in UTC (`...Z`). The CLI's
/// reports are written this way, so a file and a REST answer read alike.
pub fn message_json<M: prost::Message>(full_name: &str, message: &M) -> Result<String, Error> {
    use std::sync::OnceLock;
    static POOL: OnceLock<Option<prost_reflect::DescriptorPool>> = OnceLock::new();
    let pool = POOL
        .get_or_init(|| {
            prost_reflect::DescriptorPool::decode(switchyard_api::FILE_DESCRIPTOR_SET).ok()
        })
        .as_ref()
        .ok_or_else(|| Error::internal("reading the descriptors", "not decodable"))?;
    let desc = pool
        .get_message_by_name(full_name)
        .ok_or_else(|| Error::internal("writing JSON", format!("no message {full_name}")))?;
    let bytes = message.encode_to_vec();
    let mut out = Vec::new();
    if json::write_message(&desc, &bytes, &mut out).is_some() {
        return String::from_utf8(out).map_err(|e| Error::internal("writing JSON", e));
    }
    let dynamic = prost_reflect::DynamicMessage::decode(desc, bytes.as_slice())
        .map_err(|e| Error::internal("writing JSON", e))?;
    json::to_json(&dynamic).map_err(|r| Error::internal("writing JSON", r.message))
}

/// Renders `e` as a `google.rpc.Status` JSON body with the grpc-gateway status.
pub fn error_response(e: &Error) -> Response {
    Refusal::new(e.kind().http_status(), e.kind().grpc_code(), e.message()).into_response()
}

/// The refusal of a body that could not be read: 413 RESOURCE_EXHAUSTED,
/// 415 or 400 INVALID_ARGUMENT.
pub fn body_refusal(e: &body::BodyError) -> Refusal {
    let (status, code) = match e {
        body::BodyError::TooLarge { .. } => (
            StatusCode::PAYLOAD_TOO_LARGE,
            tonic::Code::ResourceExhausted,
        ),
        body::BodyError::Unsupported(_) => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            tonic::Code::InvalidArgument,
        ),
        body::BodyError::Unreadable(_) => (StatusCode::BAD_REQUEST, tonic::Code::InvalidArgument),
    };
    Refusal::new(status, code, e.message())
}

/// A refused REST request: an HTTP status and the `google.rpc.Status` body.
#[derive(Debug, Clone)]
pub struct Refusal {
    status: StatusCode,
    code: tonic::Code,
    message: String,
    /// The `Allow` header of a 405.
    allow: Option<String>,
}

impl Refusal {
    /// A refusal with an HTTP status of its own (413, 414, 415, 405 ...).
    pub fn new(status: StatusCode, code: tonic::Code, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            code,
            message: message.into(),
            allow: None,
        }
    }

    /// INVALID_ARGUMENT, 400.
    pub fn invalid(message: impl Into<String>) -> Refusal {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            tonic::Code::InvalidArgument,
            message,
        )
    }

    /// The `google.rpc.Status` JSON body.
    pub fn body(&self) -> String {
        // In grpc-gateway's field order.
        format!(
            "{{\"code\":{},\"message\":{},\"details\":[]}}",
            self.code as i32,
            serde_json::Value::from(self.message.as_str())
        )
    }
}

impl From<tonic::Status> for Refusal {
    /// The refusal of an in-process call's status; tonic's own statuses as
    /// the gRPC face answers them ([`crate::grpc::status::from_tonic`]).
    fn from(s: tonic::Status) -> Refusal {
        match crate::grpc::status::from_tonic(s.code(), s.message()) {
            Some((code, message)) => Refusal::new(http_status_for(code), code, message),
            None => Refusal::new(http_status_for(s.code()), s.code(), s.message()),
        }
    }
}

impl From<Error> for Refusal {
    fn from(e: Error) -> Refusal {
        Refusal::new(e.kind().http_status(), e.kind().grpc_code(), e.message())
    }
}

/// Set on every refused REST response: the gRPC code of its
/// `google.rpc.Status` body, for the request layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusedWith(pub tonic::Code);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = self.body();
        let mut resp = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        resp.extensions_mut().insert(RefusedWith(self.code));
        if let Some(allow) = self.allow.and_then(|a| HeaderValue::from_str(&a).ok()) {
            resp.headers_mut().insert(header::ALLOW, allow);
        }
        resp
    }
}
