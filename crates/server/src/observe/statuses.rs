//! The statuses the request layer writes or rewrites: tonic's own as this
//! server answers them, an unknown method by name, and the names and
//! classes of gRPC codes.

use axum::{body::Body, response::Response};
use http::HeaderMap;

use super::rpcs::rpcs;

/// Rewrites a status tonic made itself (`grpc-status` and `grpc-message`
/// of a trailers-only answer's headers, or of trailers) as this server
/// answers it ([`crate::grpc::status::from_tonic`]: a caller's malformed or
/// oversize request is the caller's fault, an oversize answer the server's).
pub(super) fn translate_tonic_status(h: &mut HeaderMap) {
    let Some(code) = h
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
    else {
        return;
    };
    let message = h
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(percent_decode)
        .unwrap_or_default();
    let Some((code, text)) = crate::grpc::status::from_tonic(tonic::Code::from(code), &message)
    else {
        return;
    };
    h.insert("grpc-status", http::HeaderValue::from(code as i32));
    if let Ok(v) = http::HeaderValue::from_str(&percent_encode(&text)) {
        h.insert("grpc-message", v);
    }
}

/// Decodes gRPC's percent-encoding of `grpc-message`.
fn percent_decode(m: &str) -> String {
    let bytes = m.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Ok(b) = u8::from_str_radix(m.get(i + 1..i + 3).unwrap_or(""), 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// gRPC's percent-encoding of `grpc-message`: printable ASCII but `%` as is.
fn percent_encode(m: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(m.len());
    for b in m.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// UNIMPLEMENTED for a gRPC path no service serves, naming it.
pub(super) fn unknown_method_refusal(path: &str) -> Response {
    let (service, method) = path
        .trim_start_matches('/')
        .split_once('/')
        .unwrap_or((path, ""));
    let message = if method.is_empty() {
        format!("{path:?} is not a gRPC method path (/package.Service/Method)")
    } else if rpcs()
        .keys()
        .any(|p| p.starts_with(&format!("/{service}/")))
    {
        format!("{service} has no method {method:?}")
    } else {
        format!("unknown service {service:?}")
    };
    tonic::Status::unimplemented(message).into_http::<Body>()
}

pub use switchyard_core::telemetry::metrics::code_name;

/// Whether a code means the server failed, by OpenTelemetry's gRPC server
/// convention: these spans are marked as errors. (The error budget counts the
/// same codes but UNIMPLEMENTED, see `observability/prometheus/rules.yml`.)
pub fn is_server_error(code: i32) -> bool {
    matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
}
