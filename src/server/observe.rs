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

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{body::Body, extract::Request, response::Response};
use futures_util::future::BoxFuture;
use http::HeaderMap;
use http_body::{Body as HttpBody, Frame, SizeHint};
use opentelemetry::propagation::Extractor;
use prost_reflect::DescriptorPool;
use tracing::{Instrument, Span, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::{
    api,
    rest::{RefusedWith, RouteTable, routes::Lookup},
    telemetry::{
        metrics::{CODE_NAMES, Protocol, RequestSeries},
        traces::{Decider, REQUEST_TARGET, UNSAMPLED_TARGET},
    },
};

/// What the layer knows of an RPC (or of a route that is not one).
#[derive(Debug)]
struct Rpc {
    /// `service/method`, the span's name.
    name: &'static str,
    service: &'static str,
    method: &'static str,
    streaming: bool,
    /// One of the `switchyard.v1` services (what the fault drill delays and
    /// refuses).
    api: bool,
    series: RequestSeries,
}

impl Rpc {
    fn new(service: &'static str, method: &'static str, streaming: bool, api: bool) -> Rpc {
        Rpc {
            name: Box::leak(format!("{service}/{method}").into_boxed_str()),
            service,
            method,
            streaming,
            api,
            series: RequestSeries::new(service, method),
        }
    }
}

/// What is not an RPC: a gRPC path nobody serves, the fixed HTTP routes
/// (OFREP's under service `ofrep`), anything else over HTTP.
fn other(kind: &str) -> &'static Rpc {
    static OTHER: OnceLock<[Rpc; 7]> = OnceLock::new();
    let o = OTHER.get_or_init(|| {
        [
            Rpc::new("unknown", "unknown", false, false),
            Rpc::new("http", "metrics", false, false),
            Rpc::new("http", "openapi", false, false),
            Rpc::new("http", "unrouted", false, false),
            Rpc::new("ofrep", "EvaluateFlag", false, false),
            Rpc::new("ofrep", "EvaluateFlags", false, false),
            Rpc::new("ofrep", "EventStream", true, false),
        ]
    });
    match kind {
        "grpc" => &o[0],
        "/metrics" => &o[1],
        "/openapi.json" => &o[2],
        "/ofrep/v1/evaluate/flags" => &o[5],
        "/ofrep/v1/events" => &o[6],
        k if k.starts_with("/ofrep/v1/evaluate/flags/") => &o[4],
        _ => &o[3],
    }
}

/// Every RPC this binary serves, by gRPC path; built once per process.
fn rpcs() -> &'static HashMap<&'static str, Rpc> {
    static RPCS: OnceLock<HashMap<&'static str, Rpc>> = OnceLock::new();
    RPCS.get_or_init(|| {
        let mut table = HashMap::new();
        for set in [
            api::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ] {
            let Ok(pool) = DescriptorPool::decode(set) else {
                continue;
            };
            for service in pool.services() {
                let name: &'static str = Box::leak(service.full_name().into());
                for m in service.methods() {
                    let path: &'static str = Box::leak(format!("/{name}/{}", m.name()).into());
                    table.insert(
                        path,
                        Rpc::new(
                            name,
                            Box::leak(m.name().into()),
                            m.is_server_streaming() || m.is_client_streaming(),
                            service.package_name() == "switchyard.v1",
                        ),
                    );
                }
            }
        }
        table
    })
}

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

    fn refuses(&self) -> bool {
        self.error_rate > 0.0 && rand::random::<f64>() < self.error_rate
    }
}

/// The refusal of a call the drill fails: UNAVAILABLE, as a trailers-only
/// gRPC answer or a REST `google.rpc.Status`.
fn injected_refusal(grpc: bool) -> Response {
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
        crate::rest::error_response(&crate::error::Error::new(
            crate::error::ErrorKind::Unavailable,
            MESSAGE,
        ))
    }
}

/// Rewrites a status tonic made itself (`grpc-status` and `grpc-message`
/// of a trailers-only answer's headers, or of trailers) as this server
/// answers it ([`crate::grpc::status::from_tonic`]: a caller's malformed or
/// oversize request is the caller's fault, an oversize answer the server's).
fn translate_tonic_status(h: &mut HeaderMap) {
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
fn unknown_method_refusal(path: &str) -> Response {
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
            ),
            None => tracing::info_span!(target: UNSAMPLED_TARGET, "request", rpc = rpc.name),
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

/// The canonical name of a gRPC code, as in `grpc-status` documentation.
pub fn code_name(code: i32) -> &'static str {
    usize::try_from(code)
        .ok()
        .and_then(|c| CODE_NAMES.get(c))
        .copied()
        .unwrap_or("UNKNOWN")
}

/// Whether a code means the server failed, by OpenTelemetry's gRPC server
/// convention: these spans are marked as errors. (The error budget counts the
/// same codes but UNIMPLEMENTED, see `observability/prometheus/rules.yml`.)
pub fn is_server_error(code: i32) -> bool {
    matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
}
