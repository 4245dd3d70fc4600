//! The request layer, outermost around the one router: every gRPC call and
//! every REST call gets one span and is counted once, when it ends.
//!
//! - gRPC: the service and method come from the path, the code from
//!   `grpc-status` (in the headers of a trailers-only answer, else in the
//!   trailers).
//! - REST: the service and method are those of the annotated RPC the route
//!   table finds for the request (before the auth middleware may refuse it),
//!   the code that of a refusal's `google.rpc.Status` ([`RefusedWith`]); the
//!   transcoded in-process call does not pass through this layer, so it is
//!   neither counted nor traced twice, and its work is inside the REST call's
//!   span.
//! - A request ends when its answer's body does: the last byte of a unary
//!   answer, or the end of a stream. A body dropped before its end (the
//!   client went away) ends as CANCELLED. Only unary calls go into the
//!   latency histogram.
//!
//! The span joins an incoming W3C `traceparent` (gRPC metadata and HTTP
//! headers are both headers here) and records the trace id for the logs.
//!
//! Beside the layer: what it knows of each RPC (`rpcs`), the statuses it
//! rewrites or writes (`statuses`), and the fault drill it applies (`fault`).

mod fault;
mod rpcs;
mod statuses;

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{body::Body, extract::Request, response::Response};
use futures_util::future::BoxFuture;
use http::HeaderMap;
use http_body::{Body as HttpBody, Frame, SizeHint};
use opentelemetry::propagation::Extractor;
use tracing::{Instrument, Span, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::rest::{RefusedWith, RouteTable, routes::Lookup};
use crate::traces::{Decider, REQUEST_TARGET, UNSAMPLED_TARGET};
use switchyard_core::telemetry::metrics::Protocol;

use fault::injected_refusal;
pub use fault::{FAULT_HEADER, Fault};
use rpcs::{Rpc, other, rpcs};
pub use statuses::{code_name, is_server_error};
use statuses::{translate_tonic_status, unknown_method_refusal};

/// The layer's settings.
#[derive(Debug, Clone)]
pub struct Observe {
    /// Record metrics (off: spans only).
    pub metrics: bool,
    /// The fault drill (off by default).
    pub fault: Fault,
    /// The REST routes, to name the RPC of a REST call.
    pub routes: Arc<RouteTable>,
    /// `fault` described, when it is on.
    pub fault_header: Option<http::HeaderValue>,
}

impl Observe {
    /// The layer's settings; `fault` is described in a header when on.
    pub fn new(metrics: bool, fault: Fault, routes: Arc<RouteTable>) -> Observe {
        if metrics {
            rpcs::zero_api_series(&routes);
        }
        let fault_header = fault
            .is_on()
            .then(|| http::HeaderValue::from_str(&fault.describe()).ok())
            .flatten();
        Observe {
            metrics,
            fault,
            routes,
            fault_header,
        }
    }
}

impl<S> tower::Layer<S> for Observe {
    type Service = Observed<S>;

    fn layer(&self, inner: S) -> Observed<S> {
        Observed {
            inner,
            settings: self.clone(),
        }
    }
}

/// The layer around a service.
#[derive(Debug, Clone)]
pub struct Observed<S> {
    inner: S,
    settings: Observe,
}

impl<S> tower::Service<Request> for Observed<S>
where
    S: tower::Service<Request, Response = Response, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<'static, Result<Response, std::convert::Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let start = Instant::now();
        let grpc = super::middleware::is_grpc(&req);
        let path = req.uri().path();
        let found = if grpc {
            rpcs().get(path)
        } else {
            match self.settings.routes.find(req.method(), path) {
                Lookup::Found(route, _) => rpcs().get(route.grpc_path.path()),
                _ => None,
            }
        };
        let rpc: &'static Rpc = found.unwrap_or_else(|| other(if grpc { "grpc" } else { path }));
        let span = request_span(&req, grpc, rpc);
        // A method no service has: tonic's own answer for an unknown method
        // of a known service says nothing, so it is answered here.
        let unknown_method = grpc && found.is_none();
        let fault = &self.settings.fault;
        let (delay, refuse) = if rpc.api {
            (fault.delay, fault.refuses())
        } else {
            (Duration::ZERO, false)
        };
        let fault_header = self.settings.fault_header.clone();
        let protocol = if grpc { Protocol::Grpc } else { Protocol::Http };
        let metrics_on = self.settings.metrics;
        // The service that was polled ready serves this call (tower's contract).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(
            async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let resp = if unknown_method {
                    let path = req.uri().path().to_owned();
                    drop(req);
                    unknown_method_refusal(&path)
                } else if refuse {
                    drop(req);
                    injected_refusal(grpc)
                } else {
                    inner.call(req).await?
                };
                let (mut parts, body) = resp.into_parts();
                if grpc {
                    translate_tonic_status(&mut parts.headers);
                }
                if let Some(v) = fault_header {
                    parts.headers.insert(FAULT_HEADER, v);
                }
                let code = if grpc {
                    parts
                        .headers
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<i32>().ok())
                } else {
                    Some(match parts.extensions.get::<RefusedWith>() {
                        Some(RefusedWith(c)) => *c as i32,
                        None => crate::grpc::status::code_for_http(parts.status) as i32,
                    })
                };
                let finish = Finish {
                    rpc,
                    protocol,
                    code,
                    start,
                    span: Span::current(),
                    metrics: metrics_on,
                };
                let body = ObservedBody {
                    inner: body,
                    finish: Some(finish),
                };
                Ok(Response::from_parts(parts, Body::new(body)))
            }
            .instrument(span),
        )
    }
}

/// The request's span. A sampled one (the caller's decision, else the
/// configured ratio) is exported, joined to the caller's trace; any other is
/// a plain span for the logs, with the caller's trace id when there is one.
fn request_span(req: &Request, grpc: bool, rpc: &'static Rpc) -> Span {
    let parent = opentelemetry::global::get_text_map_propagator(|p| {
        p.extract(&HeaderExtractor(req.headers()))
    });
    let caller = {
        use opentelemetry::trace::TraceContextExt as _;
        let span = parent.span();
        let cx = span.span_context();
        cx.is_valid().then(|| (cx.trace_id(), cx.is_sampled()))
    };
    let system = if grpc { "grpc" } else { "http" };
    if !Decider::sample(caller.map(|(_, sampled)| sampled)) {
        return match caller {
            Some((trace_id, _)) => tracing::info_span!(
                target: UNSAMPLED_TARGET,
                "request",
                rpc = rpc.name,
                trace_id = %trace_id,
                enduser.id = Empty,
            ),
            None => tracing::info_span!(
                target: UNSAMPLED_TARGET,
                "request",
                rpc = rpc.name,
                enduser.id = Empty,
            ),
        };
    }
    let span = tracing::info_span!(
        target: REQUEST_TARGET,
        "request",
        otel.name = rpc.name,
        otel.kind = "server",
        otel.status_code = Empty,
        rpc.system = system,
        rpc.service = rpc.service,
        rpc.method = rpc.method,
        rpc.grpc.status_code = Empty,
        http.request.method = %req.method(),
        url.path = %req.uri().path(),
        trace_id = Empty,
        enduser.id = Empty,
    );
    let _ = span.set_parent(parent);
    let trace_id = {
        use opentelemetry::trace::TraceContextExt as _;
        span.context().span().span_context().trace_id()
    };
    span.record("trace_id", tracing::field::display(trace_id));
    span
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// What is recorded when a request ends.
struct Finish {
    rpc: &'static Rpc,
    protocol: Protocol,
    /// The gRPC code once known (headers, trailers, or the REST outcome).
    code: Option<i32>,
    start: Instant,
    span: Span,
    metrics: bool,
}

impl Finish {
    /// Records the request with `code` (missing: UNKNOWN, as gRPC clients
    /// read an answer without a status).
    fn done(self, code: Option<i32>) {
        let code = code.unwrap_or(2);
        if self.metrics {
            let duration = (!self.rpc.streaming).then(|| self.start.elapsed());
            self.rpc.series.record(self.protocol, code, duration);
        }
        self.span.record("rpc.grpc.status_code", code);
        if is_server_error(code) {
            self.span.record("otel.status_code", "ERROR");
        }
        tracing::debug!(
            parent: &self.span,
            code = code_name(code),
            elapsed_ms = self.start.elapsed().as_secs_f64() * 1e3,
            "request finished"
        );
    }
}

pin_project_lite::pin_project! {
    /// An answer's body that records its request when it ends.
    struct ObservedBody {
        #[pin]
        inner: Body,
        finish: Option<Finish>,
    }

    impl PinnedDrop for ObservedBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(f) = this.finish.take() {
                // Never polled to its end: complete if there was nothing left
                // to send, else the client went away.
                let code = if this.inner.is_end_stream() { f.code } else { Some(1) };
                f.done(code);
            }
        }
    }
}

impl HttpBody for ObservedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let mut polled = this.inner.as_mut().poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &mut polled
            && let Some(trailers) = frame.trailers_mut()
        {
            translate_tonic_status(trailers);
        }
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref()
                    && let Some(f) = this.finish.as_mut()
                    && let Some(code) = trailers
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<i32>().ok())
                {
                    f.code = Some(code);
                }
                if this.inner.is_end_stream()
                    && let Some(f) = this.finish.take()
                {
                    let code = f.code;
                    f.done(code);
                }
            }
            Poll::Ready(None) => {
                if let Some(f) = this.finish.take() {
                    let code = f.code;
                    f.done(code);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(f) = this.finish.take() {
                    f.done(Some(2));
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
