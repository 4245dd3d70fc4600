//! The HTTP side of the listener: `/metrics` and (later) the grpc-gateway-style
//! REST shims. Errors are `google.rpc.Status` JSON with grpc-gateway's statuses.

use axum::{
    Json, Router,
    http::header,
    response::{IntoResponse, Response},
    routing::get,
};

use crate::error::Error;

/// Returns the HTTP routes of the main listener.
pub fn router() -> Router {
    metrics_router()
}

/// Returns the routes of the optional metrics-only listener: `/metrics` alone.
pub fn metrics_router() -> Router {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::telemetry::render_metrics(),
    )
        .into_response()
}

/// Renders `e` as a `google.rpc.Status` JSON body with the grpc-gateway status.
pub fn error_response(e: &Error) -> Response {
    let body = serde_json::json!({
        "code": e.kind().grpc_code() as i32,
        "message": e.message(),
        "details": [],
    });
    (e.kind().http_status(), Json(body)).into_response()
}
