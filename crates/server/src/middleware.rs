//! The authentication middleware in front of every route.
//!
//! It runs once per request, gRPC or HTTP: health, reflection, `/metrics` and
//! the OpenAPI document pass without a token; a missing or unknown bearer
//! token is refused (UNAUTHENTICATED, or 401 with a `google.rpc.Status` body);
//! otherwise the caller's [`Principal`] is attached to the request for the
//! services to check scopes against.

use std::sync::Arc;

use axum::{
    body::Body,
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::rest;
use switchyard_core::{
    auth::{Authenticator, Principal, REASON_HEADER},
    error::{Error, ErrorKind},
};

/// Returns whether `path` is served without a token.
pub fn is_public(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/")
        || path.starts_with("/grpc.reflection.v1.ServerReflection/")
        || path.starts_with("/grpc.reflection.v1alpha.ServerReflection/")
        || path == "/metrics"
        || path == rest::OPENAPI_PATH
        || crate::ui::is_console(path)
}

/// The middleware: attaches a [`Principal`] or refuses the request.
pub async fn authenticate(
    State(auth): State<Arc<Authenticator>>,
    mut req: Request,
    next: Next,
) -> Response {
    if is_public(req.uri().path()) {
        return next.run(req).await;
    }
    let grpc = is_grpc(&req);
    let ofrep = req.uri().path().starts_with(OFREP_PREFIX);
    // flagd providers that cannot send a header (flagd_anonymous_tenant); a
    // header that is there but unreadable is a wrong token, not none.
    if !req.headers().contains_key(http::header::AUTHORIZATION)
        && req.uri().path().starts_with(FLAGD_PREFIX)
        && let Some(p) = auth.flagd_anonymous()
    {
        tracing::Span::current().record("enduser.id", &**p.caller());
        req.extensions_mut().insert::<Principal>(p.clone());
        return next.run(req).await;
    }
    let header = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    // OFREP's own header: the same secrets, in `X-API-Key`. Borrowed, not
    // copied: this runs on every call.
    let header: Option<std::borrow::Cow<'_, str>> = match (header, ofrep) {
        (None, true) => req
            .headers()
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(|k| format!("Bearer {}", k.trim()).into()),
        (h, _) => h.map(Into::into),
    };
    let outcome = match header.as_deref() {
        None => Err("missing bearer token"),
        // `Bearer ` and nothing (HTTP drops the trailing space): a token
        // variable that was empty or unset.
        Some(h) if h.trim().eq_ignore_ascii_case("bearer") => Err(
            "the bearer token is empty: authorization: Bearer <token>, with the token (is the variable holding it set?)",
        ),
        // The scheme is case-insensitive (RFC 7235).
        Some(h) => match (h.get(..7), h.get(7..)) {
            (Some(scheme), Some(rest)) if scheme.eq_ignore_ascii_case("bearer ") => {
                auth.authenticate(rest.trim()).ok_or("invalid bearer token")
            }
            _ => Err("authorization must be \"Bearer <token>\""),
        },
    };
    drop(header);
    let refusal = match outcome {
        Ok(p) => {
            // Who called, in the request's span (logs and traces): a token's
            // name or its setting, never its secret.
            tracing::Span::current().record("enduser.id", &**p.caller());
            let p = match req.headers().get(REASON_HEADER) {
                Some(reason) => p.with_reason(reason.as_bytes()),
                None => p,
            };
            req.extensions_mut().insert::<Principal>(p);
            return next.run(req).await;
        }
        Err(refusal) => refusal,
    };
    drain_http1(req).await;
    if ofrep {
        // OFREP: 401 with no body.
        return http::StatusCode::UNAUTHORIZED.into_response();
    }
    refuse(grpc, refusal)
}

/// The paths of OFREP, which takes `X-API-Key` as well as a bearer token.
const OFREP_PREFIX: &str = "/ofrep/";

/// The paths of flagd's gRPC packages, which may be let through without a
/// token (see [`Authenticator::flagd_anonymous`]).
const FLAGD_PREFIX: &str = "/flagd.";

/// The most of a refused HTTP/1.x request's body read before answering.
const DRAIN_BYTES: usize = 64 * 1024;

/// The longest a refused HTTP/1.x request's body is waited for.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(1);

/// Reads (and drops, frame by frame) the body of a request refused before its
/// handler ran, when it came over HTTP/1.x: otherwise the connection cannot be
/// reused, and a client still writing its body (a gRPC-Web client sends the
/// last chunk on its own) fails with a broken pipe instead of reading the
/// refusal. At most [`DRAIN_BYTES`] within [`DRAIN_TIME`]: a body announced
/// larger, or slower, is left unread (hyper then closes the connection), so
/// an unauthenticated client cannot hold a task or memory with it.
pub async fn drain_http1(req: Request) {
    use http_body_util::BodyExt;
    if req.version() >= http::Version::HTTP_2 {
        return;
    }
    let announced = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if announced.is_some_and(|n| n > DRAIN_BYTES) {
        return;
    }
    let mut body = req.into_body();
    let drain = async {
        let mut read = 0;
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, bytes::Bytes::len);
            if read > DRAIN_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
}

/// Returns whether `req` is a gRPC call (so refusals are gRPC statuses, not
/// JSON bodies).
pub fn is_grpc(req: &Request) -> bool {
    req.headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

fn refuse(grpc: bool, message: &str) -> Response {
    if grpc {
        tonic::Status::unauthenticated(message).into_http::<Body>()
    } else {
        let mut resp = rest::error_response(&Error::new(ErrorKind::Unauthenticated, message));
        resp.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer"),
        );
        resp.into_response()
    }
}
