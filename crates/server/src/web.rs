//! What lets browsers and bandwidth-conscious clients in: CORS, gRPC-Web,
//! HTTP compression of the REST shims, and the refusal of protocols the
//! server does not speak.
//!
//! The layers sit outside the auth middleware (a CORS preflight carries no
//! token) and use maintained implementations: `tower-http` for CORS and HTTP
//! compression, `tonic-web` for the gRPC-Web translation. gRPC's own
//! compression (`grpc-encoding: gzip`) is the services' (see
//! [`super::grpc_routes`]).

use std::time::Duration;

use axum::{
    body::Body,
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use http::{HeaderName, HeaderValue, Method, StatusCode, header};
use tower::ServiceExt;
use tower_http::{
    compression::{
        CompressionLayer, DefaultPredicate, Predicate,
        predicate::{NotForContentType, SizeAbove},
    },
    cors::{AllowOrigin, CorsLayer},
};

use crate::rest::{Refusal, gateway::NEXT_PAGE_TOKEN_HEADER};

/// The CORS layer for `origins` (`*` for any), or none when the list is
/// empty (no CORS headers at all).
///
/// Preflights are answered here, before authentication, with the methods
/// and request headers the REST shims and gRPC-Web accept; answers expose
/// the headers clients read.
pub fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        // Checked when the configuration was read.
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect::<Vec<_>>(),
        )
    };
    let h = HeaderName::from_static;
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                Method::GET,
                Method::HEAD,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::IF_NONE_MATCH,
                header::CONTENT_ENCODING,
                h("last-event-id"),
                // OFREP providers send their key here.
                h("x-api-key"),
                // A write's reason, for the audit log.
                h(switchyard_core::auth::REASON_HEADER),
                // gRPC-Web clients (grpc-web, connect-web) send these.
                h("x-grpc-web"),
                h("x-user-agent"),
                h("grpc-timeout"),
                h("grpc-encoding"),
                h("grpc-accept-encoding"),
            ])
            .expose_headers([
                h(NEXT_PAGE_TOKEN_HEADER),
                header::ETAG,
                h("grpc-status"),
                h("grpc-message"),
                h("grpc-status-details-bin"),
                h("grpc-encoding"),
                h("grpc-accept-encoding"),
            ])
            .max_age(Duration::from_secs(3600)),
    )
}

/// `Accept-Encoding: gzip` on REST answers of at least
/// [`rest::COMPRESS_MIN_BYTES`](crate::rest::COMPRESS_MIN_BYTES) (those with
/// an entity tag arrive compressed already, once per version, from the
/// gateway). gRPC and gRPC-Web answers (compressed per message
/// by gRPC itself), and the streams (NDJSON and SSE, whose events must not
/// wait for a compression block to fill), are left alone.
pub fn compression() -> CompressionLayer<impl Predicate> {
    CompressionLayer::new().gzip(true).compress_when(
        DefaultPredicate::new()
            .and(SizeAbove::new(
                u16::try_from(crate::rest::COMPRESS_MIN_BYTES).unwrap_or(u16::MAX),
            ))
            // Without the exception `NotForContentType::GRPC` makes for gRPC-Web.
            .and(NotForContentType::const_new("application/grpc"))
            .and(NotForContentType::const_new("application/x-ndjson")),
    )
}

/// The wire protocol a request arrives in (before gRPC-Web is translated
/// to gRPC), from its path and `content-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// `application/grpc` (`+proto`).
    Grpc,
    /// `application/grpc-web` or `application/grpc-web-text` (`+proto`).
    GrpcWeb,
    /// Anything on a path that is not a gRPC method's: the REST shims and
    /// the fixed HTTP routes, which check their own media types.
    Http,
    /// A gRPC method's path in a protocol the server does not speak
    /// (Connect, JSON, a gRPC sub-type other than proto).
    Unsupported,
}

impl Wire {
    /// Classifies `req`.
    pub fn of(req: &Request) -> Wire {
        let raw = req
            .headers()
            .get(header::CONTENT_TYPE)
            .map_or(&b""[..], HeaderValue::as_bytes);
        let ct = raw.split(|b| *b == b';').next().unwrap_or(raw).trim_ascii();
        match (ct, raw) {
            (b"application/grpc" | b"application/grpc+proto", _) => Wire::Grpc,
            // Exactly as `tonic-web` recognises them (no parameters).
            (
                _,
                b"application/grpc-web"
                | b"application/grpc-web+proto"
                | b"application/grpc-web-text"
                | b"application/grpc-web-text+proto",
            ) => Wire::GrpcWeb,
            _ if is_grpc_path(req.uri().path()) => Wire::Unsupported,
            // `application/grpc+json` and the like on other paths: the
            // gRPC side answers UNIMPLEMENTED, as for any unknown method.
            _ => Wire::Http,
        }
    }
}

/// `/package.Service/Method`: two segments, the first a dotted name.
fn is_grpc_path(path: &str) -> bool {
    let mut parts = path.trim_start_matches('/').split('/');
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(service), Some(method), None)
            if service.contains('.') && !method.is_empty()
    )
}

/// The message of the 415 for a protocol the server does not speak.
pub const UNSUPPORTED_PROTOCOL: &str = "this server speaks gRPC (application/grpc), gRPC-Web \
     (application/grpc-web, application/grpc-web-text) and REST JSON (the routes in \
     /openapi.json); the Connect protocol and other encodings are not supported";

/// The middleware: gRPC-Web requests go through `tonic-web`'s translation to
/// `web` (the same routes, as gRPC), gRPC and HTTP requests go on, and a gRPC
/// method called in any other protocol gets 415.
///
/// Nothing is read or inflated here, before authentication: an HTTP body's
/// `Content-Encoding` is undone by the handler that reads it
/// ([`crate::rest::body`]), and a gRPC or gRPC-Web call that carries one is
/// refused at once (INVALID_ARGUMENT): gRPC compresses each message and says
/// so in `grpc-encoding`, never with the HTTP coding of the whole body.
pub async fn protocols(
    State(web): State<tonic_web::GrpcWebService<axum::Router>>,
    req: Request,
    next: Next,
) -> Response {
    let protocol = Wire::of(&req);
    if matches!(protocol, Wire::Grpc | Wire::GrpcWeb)
        && let Some(coding) = http_coding(&req)
    {
        let status = tonic::Status::invalid_argument(format!(
            "Content-Encoding {coding}: a gRPC call compresses its messages with \
             grpc-encoding (gzip is accepted), not the HTTP body"
        ));
        let content_type = req.headers().get(header::CONTENT_TYPE).cloned();
        super::middleware::drain_http1(req).await;
        let mut resp = status.into_http::<Body>();
        if let (Wire::GrpcWeb, Some(ct)) = (protocol, content_type) {
            resp.headers_mut().insert(header::CONTENT_TYPE, ct);
        }
        return resp;
    }
    match protocol {
        Wire::Grpc | Wire::Http => next.run(req).await,
        Wire::GrpcWeb => match web.oneshot(req).await {
            Ok(resp) => resp.map(Body::new),
            Err(never) => match never {},
        },
        Wire::Unsupported => {
            super::middleware::drain_http1(req).await;
            Refusal::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                tonic::Code::InvalidArgument,
                UNSUPPORTED_PROTOCOL,
            )
            .into_response()
        }
    }
}

/// The request's HTTP `Content-Encoding`, unless it is absent or identity.
fn http_coding(req: &Request) -> Option<String> {
    let v = req
        .headers()
        .get(header::CONTENT_ENCODING)?
        .as_bytes()
        .trim_ascii();
    (!v.is_empty() && !v.eq_ignore_ascii_case(b"identity"))
        .then(|| String::from_utf8_lossy(v).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: &str, ct: Option<&str>) -> Request {
        let mut b = http::Request::builder().method("POST").uri(path);
        if let Some(ct) = ct {
            b = b.header(header::CONTENT_TYPE, ct);
        }
        b.body(Body::empty()).unwrap()
    }

    #[test]
    fn protocols_are_told_apart_by_content_type_and_path() {
        let m = "/switchyard.v1.FlagService/EvaluateFlag";
        let cases = [
            (m, Some("application/grpc"), Wire::Grpc),
            (m, Some("application/grpc+proto"), Wire::Grpc),
            (m, Some("application/grpc-web"), Wire::GrpcWeb),
            (m, Some("application/grpc-web+proto"), Wire::GrpcWeb),
            (m, Some("application/grpc-web-text"), Wire::GrpcWeb),
            (
                m,
                Some("application/grpc-web-text+proto; charset=x"),
                Wire::Unsupported,
            ),
            (m, Some("application/proto"), Wire::Unsupported),
            (m, Some("application/connect+proto"), Wire::Unsupported),
            (m, Some("application/json"), Wire::Unsupported),
            (m, Some("application/grpc+json"), Wire::Unsupported),
            (m, None, Wire::Unsupported),
            ("/v1/flags", Some("application/json"), Wire::Http),
            ("/v1/flags/a.b", None, Wire::Http),
            ("/admin/feature-flags", None, Wire::Http),
            ("/openapi.json", None, Wire::Http),
            ("/v1/flags/x:evaluate", None, Wire::Http),
        ];
        for (path, ct, want) in cases {
            assert_eq!(Wire::of(&req(path, ct)), want, "{path} {ct:?}");
        }
    }
}
