//! The fault drill (`serve --fault-delay-ms`, `--fault-error-rate`): calls
//! to `switchyard.v1` delayed or refused on purpose, to rehearse a release
//! pipeline against a bad canary, and said so on every answer.

use std::time::Duration;

use axum::{body::Body, response::Response};

/// Faults injected on purpose, to rehearse a release pipeline against a bad
/// canary: every `switchyard.v1` call is delayed, and a share of them refused
/// as UNAVAILABLE. Every response (health included) then carries
/// `x-switchyard-fault-injection` saying so.
#[derive(Debug, Clone, Default)]
pub struct Fault {
    /// Added before each call is served.
    pub delay: Duration,
    /// The share of calls refused, 0 to 1.
    pub error_rate: f64,
}

/// The header naming the faults injected.
pub const FAULT_HEADER: &str = "x-switchyard-fault-injection";

impl Fault {
    /// Whether any fault is injected.
    pub fn is_on(&self) -> bool {
        !self.delay.is_zero() || self.error_rate > 0.0
    }

    /// What the header says: `delay_ms=20, error_rate=0.05`.
    pub fn describe(&self) -> String {
        format!(
            "delay_ms={}, error_rate={}",
            self.delay.as_millis(),
            self.error_rate
        )
    }

    pub(super) fn refuses(&self) -> bool {
        self.error_rate > 0.0 && rand::random::<f64>() < self.error_rate
    }
}

/// The refusal of a call the drill fails: UNAVAILABLE, as a trailers-only
/// gRPC answer or a REST `google.rpc.Status`.
pub(super) fn injected_refusal(grpc: bool) -> Response {
    const MESSAGE: &str = "injected fault (serve --fault-error-rate)";
    if grpc {
        let mut resp = Response::new(Body::empty());
        let h = resp.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/grpc"),
        );
        h.insert("grpc-status", http::HeaderValue::from_static("14"));
        h.insert(
            "grpc-message",
            http::HeaderValue::from_static("injected%20fault%20(serve%20--fault-error-rate)"),
        );
        resp
    } else {
        crate::rest::error_response(&switchyard_core::error::Error::new(
            switchyard_core::error::ErrorKind::Unavailable,
            MESSAGE,
        ))
    }
}
