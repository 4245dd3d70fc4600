//! Synthetic traffic on an open model: calls are scheduled at a constant
//! arrival rate whatever the server does, and each call's latency is measured
//! from the time it was meant to be sent, so a server that stalls cannot hide
//! the queue it builds (coordinated omission corrected).
//!
//! The schedule runs on its own thread and sleeps with the operating
//! system's timer (tens of microseconds late at worst, where tokio's timer
//! rounds to milliseconds); each call runs as a task on the runtime. A call
//! that would exceed the cap on calls in flight is not sent and counts as an
//! error of its own cause: the schedule never slows down to suit the server.
//!
//! Latencies go into an HDR histogram (microseconds, three significant
//! digits); the percentiles reported are its (`percentileMethod: "hdr"`).

use std::{
    collections::BTreeMap,
    fmt,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::{
    client::legacy::{Client as HttpClient, connect::HttpConnector},
    rt::TokioExecutor,
};
use tonic::{Code, Request, Status};

use crate::reflection::{self, GrpcCall};
use switchyard_api::client::{Client, ClientError, TlsOptions, endpoint_with};
use switchyard_api::v1::{EvaluateFlagRequest, ListFlagsRequest, ResolveTenantRequest};
use switchyard_core::gating::report::{LatencyMs, TrafficStats};

/// The name of `code` as gRPC spells it (`UNAVAILABLE`).
pub fn code_name(code: Code) -> &'static str {
    switchyard_core::telemetry::metrics::code_name(code as i32)
}

/// The percentile method of the statistics this module makes.
pub const PERCENTILE_METHOD: &str = "hdr";

/// The most distinct error causes kept per side; the rest are counted
/// together.
const MAX_CAUSES: usize = 20;

/// One call of the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Call {
    /// `FlagService/EvaluateFlag` of the smoke flag.
    EvaluateFlag,
    /// `TenantService/ResolveTenant` of the smoke host.
    ResolveTenant,
    /// `FlagService/ListFlags`, the first page.
    ListFlags,
    /// `GET /admin/feature-flags`, the REST admin listing.
    AdminFeatureFlags,
    /// The `--http` call of this index (0-based; `http1` is 0): a call of
    /// the user's own service.
    Http(u8),
    /// The `--grpc` call of this index (0-based; `grpc1` is 0).
    Grpc(u8),
}

/// The most `--http` calls a run takes, and the most `--grpc` calls.
pub const MAX_OWN_CALLS: usize = 16;

/// The user's own calls (`--http`, `--grpc`), as `http1..` and `grpc1..`
/// of the mix name them.
#[derive(Debug, Clone, Default)]
pub struct OwnCalls {
    /// The `--http` calls.
    pub http: Vec<HttpCall>,
    /// The `--grpc` calls.
    pub grpc: Vec<GrpcCall>,
}

impl Call {
    /// Every call, in the order they are listed.
    pub const ALL: [Call; 4] = [
        Call::EvaluateFlag,
        Call::ResolveTenant,
        Call::ListFlags,
        Call::AdminFeatureFlags,
    ];

    /// The short name `--mix` takes (`http1` for the first `--http`).
    pub fn short(self) -> String {
        match self {
            Call::EvaluateFlag => "EvaluateFlag".into(),
            Call::ResolveTenant => "ResolveTenant".into(),
            Call::ListFlags => "ListFlags".into(),
            Call::AdminFeatureFlags => "AdminFeatureFlags".into(),
            Call::Http(i) => format!("http{}", u16::from(i) + 1),
            Call::Grpc(i) => format!("grpc{}", u16::from(i) + 1),
        }
    }

    /// The name reports carry: the gRPC method, the REST route, the
    /// `--http` call as given (`GET /health`) or the `--grpc` method.
    pub fn name(self, own: &OwnCalls) -> String {
        match self {
            Call::EvaluateFlag => "switchyard.v1.FlagService/EvaluateFlag".into(),
            Call::ResolveTenant => "switchyard.v1.TenantService/ResolveTenant".into(),
            Call::ListFlags => "switchyard.v1.FlagService/ListFlags".into(),
            Call::AdminFeatureFlags => "GET /admin/feature-flags".into(),
            Call::Http(i) => own
                .http
                .get(usize::from(i))
                .map_or_else(|| self.short(), |h| format!("{} {}", h.method, h.url)),
            Call::Grpc(i) => own
                .grpc
                .get(usize::from(i))
                .map_or_else(|| self.short(), GrpcCall::name),
        }
    }

    /// Whether it is one of Switchyard's own calls (not the user's).
    pub fn is_switchyard(self) -> bool {
        !matches!(self, Call::Http(_) | Call::Grpc(_))
    }

    fn parse(s: &str) -> Option<Call> {
        let lower = s.to_ascii_lowercase();
        for (prefix, make) in [("http", Call::Http as fn(u8) -> Call), ("grpc", Call::Grpc)] {
            if let Some(n) = lower.strip_prefix(prefix)
                && !n.is_empty()
                && !n.starts_with('0')
                && n.bytes().all(|b| b.is_ascii_digit())
            {
                let n: usize = n.parse().ok()?;
                return (1..=MAX_OWN_CALLS)
                    .contains(&n)
                    .then(|| make(u8::try_from(n - 1).unwrap_or(0)));
            }
        }
        Call::ALL
            .into_iter()
            .find(|c| c.short().eq_ignore_ascii_case(s) || c.name(&OwnCalls::default()) == s)
    }
}

/// A call of the user's own service over HTTP (`--http 'METHOD URL'`), with
/// the headers, body and expected statuses every such call shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCall {
    /// The method.
    pub method: http::Method,
    /// A path (`/health`: on each server under test) or an `http(s)://` URL.
    pub url: String,
    /// Headers sent (`--header`); Switchyard's token is never sent.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// The body (`--body`).
    pub body: Bytes,
    /// The statuses that are a success (`--expect-status`).
    pub expect: Expect,
}

impl HttpCall {
    /// Reads `METHOD URL` (`GET /health`, `POST http://host:8080/orders`).
    pub fn parse(s: &str) -> Result<HttpCall, String> {
        // Reports name the call as given, and keep at most this much of a name.
        if s.trim().len() > switchyard_core::gating::document::MAX_LABEL_LEN {
            return Err(format!(
                "--http: {} bytes; a call is at most {} bytes (METHOD URL)",
                s.trim().len(),
                switchyard_core::gating::document::MAX_LABEL_LEN
            ));
        }
        let (method, url) = s
            .trim()
            .split_once(char::is_whitespace)
            .ok_or_else(|| format!("--http {s:?}: give METHOD URL, such as 'GET /health'"))?;
        let method = http::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
            .map_err(|_| format!("--http {s:?}: {method:?} is not an HTTP method"))?;
        let url = url.trim();
        if !(url.starts_with('/') || url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "--http {s:?}: the URL is a path (/health, on each server under test) or an http:// or https:// URL"
            ));
        }
        url.parse::<http::Uri>()
            .map_err(|e| format!("--http {s:?}: {e}"))?;
        Ok(HttpCall {
            method,
            url: url.to_owned(),
            headers: Vec::new(),
            body: Bytes::new(),
            expect: Expect::default(),
        })
    }

    /// The URL on the server at `base` (`http(s)://host:port`).
    fn uri(&self, base: &str) -> Result<http::Uri, String> {
        let url = if self.url.starts_with('/') {
            format!("{}{}", base.trim_end_matches('/'), self.url)
        } else {
            self.url.clone()
        };
        url.parse().map_err(|e| format!("{url}: {e}"))
    }
}

/// Reads a `--header` (`Name: value`).
pub fn parse_header(s: &str) -> Result<(http::HeaderName, http::HeaderValue), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("--header {s:?}: give 'Name: value'"))?;
    let name = http::HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("--header {s:?}: {:?} is not a header name", name.trim()))?;
    let value = http::HeaderValue::from_str(value.trim())
        .map_err(|_| format!("--header {s:?}: the value is not a header value"))?;
    Ok((name, value))
}

/// The HTTP statuses that count as a success: a list of codes and classes
/// (`200,204`, `2xx`); by default every 2xx and 3xx.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect(Vec<(u16, u16)>);

impl Default for Expect {
    fn default() -> Expect {
        Expect(vec![(200, 399)])
    }
}

impl Expect {
    /// Reads `200,204,3xx`.
    pub fn parse(s: &str) -> Result<Expect, String> {
        let mut ranges = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad =
                || format!("--expect-status: {part:?} is not a status (200) or a class (2xx)");
            let range = match part.strip_suffix("xx").or_else(|| part.strip_suffix("XX")) {
                Some(class) => {
                    let c = match class.as_bytes() {
                        [d @ b'1'..=b'5'] => u16::from(d - b'0'),
                        _ => return Err(bad()),
                    };
                    (c * 100, c * 100 + 99)
                }
                None => {
                    let code: u16 = part.parse().map_err(|_| bad())?;
                    (code, code)
                }
            };
            if !(100..=599).contains(&range.0) || range.1 > 599 {
                return Err(bad());
            }
            ranges.push(range);
        }
        if ranges.is_empty() {
            return Err("--expect-status: give at least one status".into());
        }
        Ok(Expect(ranges))
    }

    fn accepts(&self, status: http::StatusCode) -> bool {
        let s = status.as_u16();
        self.0.iter().any(|(low, high)| (*low..=*high).contains(&s))
    }
}

/// The gRPC code an HTTP status that is not a success is counted as (as
/// grpc-gateway maps them the other way).
fn code_of_http(status: http::StatusCode) -> Code {
    match status.as_u16() {
        400 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        408 | 504 => Code::DeadlineExceeded,
        409 => Code::Aborted,
        412 => Code::FailedPrecondition,
        429 => Code::ResourceExhausted,
        499 => Code::Cancelled,
        500 => Code::Internal,
        501 => Code::Unimplemented,
        502 | 503 => Code::Unavailable,
        _ => Code::Unknown,
    }
}

/// A weighted mix of calls, taken in a fixed, evenly spread order (smooth
/// weighted round robin), so any stretch of the schedule has the mix's
/// proportions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    weights: Vec<(Call, u32)>,
    order: Vec<Call>,
}

impl Mix {
    /// Reads `EvaluateFlag=8,ResolveTenant=1,...` (a call without `=N`
    /// weighs 1).
    pub fn parse(s: &str) -> Result<Mix, String> {
        let mut weights: Vec<(Call, u32)> = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = match part.split_once('=') {
                Some((n, w)) => {
                    let w: u32 = w.trim().parse().map_err(|_| {
                        format!("--mix: the weight of {:?} is not a whole number", n.trim())
                    })?;
                    (n.trim(), w)
                }
                None => (part, 1),
            };
            let call = Call::parse(name).ok_or_else(|| {
                format!(
                    "--mix: unknown call {name:?}; the calls are {}, http1, http2, ... for the --http calls and grpc1, grpc2, ... for the --grpc calls",
                    Call::ALL.map(Call::short).join(", ")
                )
            })?;
            if weight > 1000 {
                return Err(format!("--mix: the weight of {name} is above 1000"));
            }
            if weights.iter().any(|(c, _)| *c == call) {
                return Err(format!("--mix: {name} is listed twice"));
            }
            if weight > 0 {
                weights.push((call, weight));
            }
        }
        if weights.is_empty() {
            return Err("--mix: no call with a weight above 0".into());
        }
        Ok(Mix::new(weights))
    }

    fn new(weights: Vec<(Call, u32)>) -> Mix {
        let total: i64 = weights.iter().map(|(_, w)| i64::from(*w)).sum();
        let mut current = vec![0i64; weights.len()];
        let mut order = Vec::new();
        for _ in 0..total {
            for (c, (_, w)) in current.iter_mut().zip(&weights) {
                *c += i64::from(*w);
            }
            let best = (0..weights.len())
                .max_by_key(|&i| (current[i], std::cmp::Reverse(i)))
                .unwrap_or(0);
            current[best] -= total;
            order.push(weights[best].0);
        }
        Mix { weights, order }
    }

    /// The call at position `i` of the schedule.
    pub fn pick(&self, i: u64) -> Call {
        self.order[(i % self.order.len() as u64) as usize]
    }

    /// The calls with a weight, in the order given.
    pub fn calls(&self) -> Vec<Call> {
        self.weights.iter().map(|(c, _)| *c).collect()
    }

    /// Every one of the user's calls, with the same weight.
    pub fn own(own: &OwnCalls) -> Mix {
        let index = |i: usize| u8::try_from(i).unwrap_or(0);
        let http = (0..own.http.len().min(MAX_OWN_CALLS)).map(|i| (Call::Http(index(i)), 1));
        let grpc = (0..own.grpc.len().min(MAX_OWN_CALLS)).map(|i| (Call::Grpc(index(i)), 1));
        Mix::new(http.chain(grpc).collect())
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .weights
            .iter()
            .map(|(c, w)| format!("{}={w}", c.short()))
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// How calls are sent.
#[derive(Debug, Clone)]
pub struct Shape {
    /// Calls per second to each side.
    pub rate: f64,
    /// The calls sent.
    pub mix: Mix,
    /// At most this many calls in flight per side; one more is not sent and
    /// counts as an error.
    pub max_in_flight: usize,
    /// Each call's deadline (sent as `grpc-timeout` and enforced here).
    pub deadline: Duration,
}

/// The HTTP calls' connections: TCP, and TLS for https:// URLs.
type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// The calls' subjects on a server.
#[derive(Debug, Clone)]
pub struct Subjects {
    /// The flag `EvaluateFlag` evaluates.
    pub flag: String,
    /// The host `ResolveTenant` resolves.
    pub host: String,
    /// The user's own calls (`--http`, `--grpc`).
    pub own: OwnCalls,
}

/// A server under test: its connections and what the calls ask of it.
pub struct Side {
    label: String,
    address: String,
    channels: Vec<Client>,
    rest: Rest,
    /// The `--http` calls' requests on this side, and their client.
    http: Vec<(HttpCall, http::Uri)>,
    http_client: HttpClient<Connector, Full<Bytes>>,
    /// The `--grpc` calls as this side's reflection describes them (after
    /// [`Side::resolve_grpc`]).
    grpc: Vec<reflection::Resolved>,
    subjects: Subjects,
    in_flight: AtomicUsize,
    next_channel: AtomicU64,
}

impl fmt::Debug for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Side")
            .field("label", &self.label)
            .field("address", &self.address)
            .field("connections", &self.channels.len())
            .finish_non_exhaustive()
    }
}

/// The REST admin listing of a side.
struct Rest {
    client: HttpClient<Connector, Empty<Bytes>>,
    uri: http::Uri,
    authorization: Option<http::HeaderValue>,
}

impl Side {
    /// Opens `connections` HTTP/2 connections to `address` (each call takes
    /// the next, round robin); `label` names the side in reports. With
    /// `switchyard` false (a mix of the user's own calls alone) the gRPC
    /// connections are made only if a call needs them.
    pub async fn connect(
        label: &str,
        address: &str,
        token: &str,
        tls: &TlsOptions,
        connections: usize,
        subjects: Subjects,
        switchyard: bool,
    ) -> Result<Side, ClientError> {
        let endpoint = endpoint_with(address, tls)?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        let mut channels = Vec::with_capacity(connections);
        for _ in 0..connections.max(1) {
            channels.push(if switchyard {
                Client::connect_to(endpoint.clone(), token).await?
            } else {
                Client::connect_lazy(endpoint.clone(), token)?
            });
        }
        let base = endpoint.uri().to_string();
        let uri: http::Uri = format!("{}/admin/feature-flags", base.trim_end_matches('/'))
            .parse()
            .map_err(|_| ClientError::BadAddress(address.to_owned()))?;
        let authorization = if token.is_empty() {
            None
        } else {
            Some(
                format!("Bearer {token}")
                    .parse()
                    .map_err(|_| ClientError::BadToken)?,
            )
        };
        let mut tcp = HttpConnector::new();
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(Duration::from_secs(5)));
        // https:// URLs (the server's own REST shims when it is, or the
        // user's --http URLs) through TLS with the same CAs; http:// as is.
        tcp.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(
                tls.rustls(
                    base.starts_with("https://")
                        || subjects
                            .own
                            .http
                            .iter()
                            .any(|h| h.url.starts_with("https://")),
                )?,
            )
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let http = subjects
            .own
            .http
            .iter()
            .map(|h| Ok((h.clone(), h.uri(&base).map_err(ClientError::BadAddress)?)))
            .collect::<Result<_, ClientError>>()?;
        Ok(Side {
            label: label.to_owned(),
            address: address.to_owned(),
            channels,
            rest: Rest {
                client: HttpClient::builder(TokioExecutor::new()).build(connector.clone()),
                uri,
                authorization,
            },
            http,
            http_client: HttpClient::builder(TokioExecutor::new()).build(connector),
            grpc: Vec::new(),
            subjects,
            in_flight: AtomicUsize::new(0),
            next_channel: AtomicU64::new(0),
        })
    }

    /// Finds the `--grpc` calls' methods through this side's server
    /// reflection and makes their requests.
    pub async fn resolve_grpc(&mut self) -> Result<(), String> {
        let channel = self.channels[0].channel();
        let mut resolved = Vec::with_capacity(self.subjects.own.grpc.len());
        for call in &self.subjects.own.grpc {
            resolved.push(reflection::resolve(&channel, call, &self.address).await?);
        }
        self.grpc = resolved;
        Ok(())
    }

    /// The side's label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The user's own calls this side makes.
    pub fn own(&self) -> &OwnCalls {
        &self.subjects.own
    }

    /// The side's address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// A client of the side (its first connection), for the calls around a
    /// run.
    pub fn client(&self) -> &Client {
        &self.channels[0]
    }

    /// Makes one call within `deadline`.
    pub async fn call(&self, call: Call, deadline: Duration) -> Result<(), Status> {
        let i = self.next_channel.fetch_add(1, Ordering::Relaxed);
        let client = &self.channels[(i % self.channels.len() as u64) as usize];
        let fut = async {
            match call {
                Call::EvaluateFlag => {
                    let mut req = Request::new(EvaluateFlagRequest {
                        flag_key: self.subjects.flag.clone(),
                        target: None,
                        ..Default::default()
                    });
                    req.set_timeout(deadline);
                    client.flags().evaluate_flag(req).await.map(drop)
                }
                Call::ResolveTenant => {
                    let mut req = Request::new(ResolveTenantRequest {
                        key: self.subjects.host.clone(),
                    });
                    req.set_timeout(deadline);
                    client.tenants().resolve_tenant(req).await.map(drop)
                }
                Call::ListFlags => {
                    let mut req = Request::new(ListFlagsRequest::default());
                    req.set_timeout(deadline);
                    client.flags().list_flags(req).await.map(drop)
                }
                Call::AdminFeatureFlags => self.rest_listing().await,
                Call::Http(i) => self.http_call(usize::from(i)).await,
                Call::Grpc(i) => match self.grpc.get(usize::from(i)) {
                    Some(resolved) => reflection::call(&client.channel(), resolved, deadline).await,
                    None => Err(Status::invalid_argument(format!(
                        "{} is not one of the --grpc calls",
                        call.short()
                    ))),
                },
            }
        };
        match tokio::time::timeout(deadline, fut).await {
            Ok(r) => r,
            Err(_) => Err(Status::deadline_exceeded(format!(
                "no answer within the {} ms deadline",
                deadline.as_millis()
            ))),
        }
    }

    /// One `--http` call: a success when its status is expected, after its
    /// whole body is read.
    async fn http_call(&self, i: usize) -> Result<(), Status> {
        let Some((call, uri)) = self.http.get(i) else {
            return Err(Status::invalid_argument(format!(
                "http{} is not one of the --http calls",
                i + 1
            )));
        };
        let mut req = http::Request::builder()
            .method(call.method.clone())
            .uri(uri.clone());
        for (name, value) in &call.headers {
            req = req.header(name, value);
        }
        let req = req
            .body(Full::new(call.body.clone()))
            .map_err(|e| Status::invalid_argument(format!("building the request: {e}")))?;
        let resp = self
            .http_client
            .request(req)
            .await
            .map_err(|e| Status::unavailable(format!("HTTP: {}", error_chain(&e))))?;
        let status = resp.status();
        resp.into_body()
            .collect()
            .await
            .map_err(|e| Status::unavailable(format!("HTTP body: {e}")))?;
        if call.expect.accepts(status) {
            Ok(())
        } else {
            Err(Status::new(code_of_http(status), format!("HTTP {status}")))
        }
    }

    async fn rest_listing(&self) -> Result<(), Status> {
        let mut req = http::Request::get(self.rest.uri.clone());
        if let Some(auth) = &self.rest.authorization {
            req = req.header(http::header::AUTHORIZATION, auth.clone());
        }
        let req = req
            .body(Empty::new())
            .map_err(|e| Status::internal(format!("building the request: {e}")))?;
        let resp = self
            .rest
            .client
            .request(req)
            .await
            .map_err(|e| Status::unavailable(format!("HTTP: {e}")))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| Status::unavailable(format!("HTTP body: {e}")))?
            .to_bytes();
        if status.is_success() {
            return Ok(());
        }
        // A refusal is a google.rpc.Status body; anything else is named by
        // its HTTP status.
        let parsed: Option<(i32, String)> = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                let code = i32::try_from(v.get("code")?.as_i64()?).ok()?;
                let message = v.get("message")?.as_str()?.to_owned();
                Some((code, message))
            });
        Err(match parsed {
            Some((code, message)) => Status::new(Code::from_i32(code), message),
            None => Status::unknown(format!("HTTP {status}")),
        })
    }
}

/// An error with its causes, on one line (`client error (Connect): tcp
/// connect error: Connection refused`).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// What happened to one scheduled call.
enum Outcome {
    /// Answered OK after this long (from the intended send time).
    Ok(Duration),
    /// Failed with this status.
    Failed(Status),
    /// Not sent: the cap on calls in flight was reached.
    CapReached(usize),
}

/// What one side measured in one phase.
#[derive(Debug)]
pub struct Recorder {
    tally: Mutex<Tally>,
}

#[derive(Debug)]
struct Tally {
    latency_us: Histogram<u64>,
    count: u64,
    ok: u64,
    errors: u64,
    codes: BTreeMap<&'static str, u64>,
    causes: BTreeMap<String, u64>,
    last_done: Option<Instant>,
}

/// A glance at a phase in progress.
#[derive(Debug, Clone, Copy, Default)]
pub struct Glance {
    /// Calls finished (answered or refused) or not sent.
    pub count: u64,
    /// Of which failed.
    pub errors: u64,
    /// The p95 so far, ms.
    pub p95_ms: f64,
}

impl Recorder {
    fn new() -> Recorder {
        Recorder {
            tally: Mutex::new(Tally {
                // 1 µs to 1 h, 3 significant digits.
                latency_us: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                    .expect("valid histogram bounds"),
                count: 0,
                ok: 0,
                errors: 0,
                codes: BTreeMap::new(),
                causes: BTreeMap::new(),
                last_done: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tally> {
        // A panic while holding the lock cannot leave a tally half-updated
        // in a way that matters more than losing it.
        self.tally.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, outcome: Outcome) {
        let mut t = self.lock();
        t.count += 1;
        match outcome {
            Outcome::Ok(latency) => {
                t.ok += 1;
                *t.codes.entry("OK").or_default() += 1;
                let us = u64::try_from(latency.as_micros())
                    .unwrap_or(u64::MAX)
                    .max(1);
                t.latency_us.saturating_record(us);
            }
            Outcome::Failed(status) => {
                t.errors += 1;
                let code = code_name(status.code());
                *t.codes.entry(code).or_default() += 1;
                let mut message: String = status.message().chars().take(120).collect();
                if message.is_empty() {
                    message = "(no message)".into();
                }
                t.cause(format!("{code}: {message}"));
            }
            Outcome::CapReached(cap) => {
                t.errors += 1;
                t.cause(format!(
                    "client: {cap} calls in flight (--max-in-flight), not sent"
                ));
            }
        }
        t.last_done = Some(Instant::now());
    }

    /// Counts and the p95 so far.
    pub fn glance(&self) -> Glance {
        let t = self.lock();
        Glance {
            count: t.count,
            errors: t.errors,
            p95_ms: if t.latency_us.is_empty() {
                0.0
            } else {
                t.latency_us.value_at_quantile(0.95) as f64 / 1000.0
            },
        }
    }

    /// The statistics of the phase, labelled `label`, over `elapsed`.
    pub fn stats(&self, label: &str, elapsed: Duration) -> TrafficStats {
        let t = self.lock();
        let h = &t.latency_us;
        let ms = |us: u64| us as f64 / 1000.0;
        let latency_ms = if h.is_empty() {
            LatencyMs::default()
        } else {
            LatencyMs {
                min: ms(h.min()),
                med: ms(h.value_at_quantile(0.5)),
                avg: h.mean() / 1000.0,
                p90: ms(h.value_at_quantile(0.90)),
                p95: ms(h.value_at_quantile(0.95)),
                p99: ms(h.value_at_quantile(0.99)),
                max: ms(h.max()),
                p50: ms(h.value_at_quantile(0.5)),
            }
        };
        let count = clamp(t.count);
        let errors = clamp(t.errors);
        let secs = elapsed.as_secs_f64();
        TrafficStats {
            label: label.to_owned(),
            count,
            ok: clamp(t.ok),
            errors,
            error_rate: if count > 0 {
                f64::from(errors) / f64::from(count)
            } else {
                0.0
            },
            rps: if secs > 0.0 {
                t.count as f64 / secs
            } else {
                0.0
            },
            latency_ms,
            status_code_distribution: t
                .codes
                .iter()
                .map(|(k, v)| ((*k).to_owned(), clamp(*v)))
                .collect(),
            error_distribution: t
                .causes
                .iter()
                .map(|(k, v)| (k.clone(), clamp(*v)))
                .collect(),
            percentile_method: PERCENTILE_METHOD.into(),
            duration_s: secs,
        }
    }
}

impl Tally {
    fn cause(&mut self, cause: String) {
        let cause = switchyard_core::gating::document::fit_key(&cause);
        if self.causes.contains_key(&cause) || self.causes.len() < MAX_CAUSES - 1 {
            *self.causes.entry(cause).or_default() += 1;
        } else {
            *self.causes.entry("(other causes)".into()).or_default() += 1;
        }
    }
}

fn clamp(v: u64) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// Asks a run to stop early (Ctrl-C); cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    /// A stop not yet asked for.
    pub fn new() -> Stop {
        Stop::default()
    }

    /// Asks the run to stop.
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether the run was asked to stop.
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// One phase as it ended.
#[derive(Debug)]
pub struct PhaseResult {
    /// Each side's recorder, in the order the sides were given.
    pub recorders: Vec<Arc<Recorder>>,
    /// From the phase's start to its last answer.
    pub elapsed: Duration,
    /// The phase was stopped before its end.
    pub interrupted: bool,
    /// Calls actually sent per second (all sides), for rate accuracy.
    pub sent_rate: f64,
}

impl PhaseResult {
    /// The statistics of side `i`.
    pub fn stats(&self, i: usize, label: &str) -> TrafficStats {
        self.recorders[i].stats(label, self.elapsed)
    }
}

/// Calls still running, and a way to wait for none.
#[derive(Default)]
struct Pending {
    count: AtomicUsize,
    idle: tokio::sync::Notify,
}

impl Pending {
    fn done(&self) {
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }

    async fn wait(&self) {
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }
}

/// Runs one phase: `shape.rate` calls per second to each of `sides` for
/// `length`, the sides interleaved call by call on one schedule. `watch` is
/// called about four times a second with each side's glance and the time
/// gone. Returns once every call sent has ended (each within its deadline).
pub async fn run_phase(
    sides: &[Arc<Side>],
    shape: &Shape,
    length: Duration,
    stop: &Stop,
    mut watch: impl FnMut(&[Glance], Duration),
) -> PhaseResult {
    let n_sides = sides.len().max(1);
    let total_rate = shape.rate * n_sides as f64;
    let calls = (total_rate * length.as_secs_f64()).round() as u64;
    let recorders: Vec<Arc<Recorder>> = sides.iter().map(|_| Arc::new(Recorder::new())).collect();
    let pending = Arc::new(Pending::default());
    let handle = tokio::runtime::Handle::current();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    // A little ahead, so the first call is not already late.
    let start = Instant::now() + Duration::from_millis(5);
    {
        let sides: Vec<Arc<Side>> = sides.to_vec();
        let recorders = recorders.clone();
        let pending = pending.clone();
        let stop = stop.clone();
        let shape = shape.clone();
        std::thread::Builder::new()
            .name("switchyard-schedule".into())
            .spawn(move || {
                let mut interrupted = false;
                let mut sent = 0u64;
                let mut first_sent = None;
                let mut last_sent = start;
                for k in 0..calls {
                    if stop.is_stopped() {
                        interrupted = true;
                        break;
                    }
                    let intended = start + Duration::from_secs_f64(k as f64 / total_rate);
                    let now = Instant::now();
                    if intended > now {
                        std::thread::sleep(intended - now);
                    }
                    let s = (k % n_sides as u64) as usize;
                    let side = sides[s].clone();
                    let recorder = recorders[s].clone();
                    let call = shape.mix.pick(k / n_sides as u64);
                    if side.in_flight.fetch_add(1, Ordering::AcqRel) >= shape.max_in_flight {
                        side.in_flight.fetch_sub(1, Ordering::AcqRel);
                        recorder.record(Outcome::CapReached(shape.max_in_flight));
                        continue;
                    }
                    pending.count.fetch_add(1, Ordering::AcqRel);
                    let pending = pending.clone();
                    let deadline = shape.deadline;
                    handle.spawn(async move {
                        let result = side.call(call, deadline).await;
                        let outcome = match result {
                            Ok(()) => Outcome::Ok(intended.elapsed()),
                            Err(status) => Outcome::Failed(status),
                        };
                        side.in_flight.fetch_sub(1, Ordering::AcqRel);
                        recorder.record(outcome);
                        pending.done();
                    });
                    sent += 1;
                    last_sent = Instant::now();
                    first_sent.get_or_insert(last_sent);
                }
                let sent_rate = match first_sent {
                    Some(first) if sent > 1 => {
                        (sent - 1) as f64 / last_sent.duration_since(first).as_secs_f64()
                    }
                    _ => 0.0,
                };
                let _ = done_tx.send((interrupted, sent_rate));
            })
            .expect("spawning the schedule thread");
    }
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    tokio::pin!(done_rx);
    let (interrupted, sent_rate) = loop {
        tokio::select! {
            done = &mut done_rx => break done.unwrap_or((true, 0.0)),
            _ = ticker.tick() => {
                let glances: Vec<Glance> = recorders.iter().map(|r| r.glance()).collect();
                watch(&glances, start.elapsed());
            }
        }
    };
    pending.wait().await;
    let last = recorders
        .iter()
        .filter_map(|r| r.lock().last_done)
        .max()
        .unwrap_or_else(Instant::now);
    PhaseResult {
        recorders,
        elapsed: last.saturating_duration_since(start),
        interrupted,
        sent_rate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mix_is_spread_evenly_in_its_proportions() {
        let mix = Mix::parse("EvaluateFlag=3, ResolveTenant").unwrap();
        let order: Vec<Call> = (0..8).map(|i| mix.pick(i)).collect();
        assert_eq!(
            order,
            [
                Call::EvaluateFlag,
                Call::EvaluateFlag,
                Call::ResolveTenant,
                Call::EvaluateFlag,
                Call::EvaluateFlag,
                Call::EvaluateFlag,
                Call::ResolveTenant,
                Call::EvaluateFlag,
            ]
        );
        let big = Mix::parse("EvaluateFlag=8,ListFlags=1,AdminFeatureFlags=1").unwrap();
        let counts = (0..1000).fold(BTreeMap::new(), |mut m, i| {
            *m.entry(big.pick(i)).or_insert(0) += 1;
            m
        });
        assert_eq!(counts[&Call::EvaluateFlag], 800);
        assert_eq!(counts[&Call::ListFlags], 100);
        assert_eq!(
            big.to_string(),
            "EvaluateFlag=8,ListFlags=1,AdminFeatureFlags=1"
        );
        assert_eq!(
            Mix::parse("switchyard.v1.FlagService/EvaluateFlag")
                .unwrap()
                .calls(),
            [Call::EvaluateFlag]
        );
    }

    #[test]
    fn a_bad_mix_is_named() {
        for (mix, message) in [
            (
                "Evaluate",
                "--mix: unknown call \"Evaluate\"; the calls are EvaluateFlag, ResolveTenant, ListFlags, AdminFeatureFlags, http1, http2, ... for the --http calls and grpc1, grpc2, ... for the --grpc calls",
            ),
            (
                "EvaluateFlag=x",
                "--mix: the weight of \"EvaluateFlag\" is not a whole number",
            ),
            ("EvaluateFlag=0", "--mix: no call with a weight above 0"),
            ("", "--mix: no call with a weight above 0"),
            ("ListFlags,ListFlags=2", "--mix: ListFlags is listed twice"),
        ] {
            assert_eq!(Mix::parse(mix).unwrap_err(), message, "{mix}");
        }
    }

    #[test]
    fn statistics_count_errors_by_code_and_cause() {
        let r = Recorder::new();
        for ms in 1..=100 {
            r.record(Outcome::Ok(Duration::from_millis(ms)));
        }
        r.record(Outcome::Failed(Status::unavailable("down")));
        r.record(Outcome::Failed(Status::unavailable("down")));
        r.record(Outcome::CapReached(10));
        let s = r.stats("x", Duration::from_secs(2));
        assert_eq!((s.count, s.ok, s.errors), (103, 100, 3));
        assert_eq!(s.status_code_distribution["OK"], 100);
        assert_eq!(s.status_code_distribution["UNAVAILABLE"], 2);
        assert_eq!(s.error_distribution["UNAVAILABLE: down"], 2);
        assert_eq!(
            s.error_distribution["client: 10 calls in flight (--max-in-flight), not sent"],
            1
        );
        assert!((s.latency_ms.p95 - 95.0).abs() < 0.1, "{:?}", s.latency_ms);
        assert!((s.latency_ms.max - 100.0).abs() < 0.1, "{:?}", s.latency_ms);
        assert!((s.rps - 51.5).abs() < 1e-9);
        assert_eq!(s.percentile_method, "hdr");
    }

    /// `--expect-status`, `--mix` names of `--http` calls and `--http`
    /// itself are read as written or refused, never wrapped or guessed.
    #[test]
    fn http_options_are_read_as_written() {
        let ok = |s: &str| Expect::parse(s).unwrap();
        assert!(ok("2xx").accepts(http::StatusCode::OK));
        assert!(!ok("2xx").accepts(http::StatusCode::MOVED_PERMANENTLY));
        assert!(ok("200,3XX").accepts(http::StatusCode::FOUND));
        assert!(!ok("201").accepts(http::StatusCode::OK));
        for bad in ["656xx", "657xx", "0xx", "6xx", "22xx", "99", "600", "", "x"] {
            assert!(Expect::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Call::parse("HTTP1"), Some(Call::Http(0)));
        assert_eq!(Call::parse("http16"), Some(Call::Http(15)));
        assert_eq!(Call::parse("GRPC2"), Some(Call::Grpc(1)));
        for bad in [
            "http01", "http+1", "http17", "http0", "http", "grpc0", "grpc17", "grpc",
        ] {
            assert_eq!(Call::parse(bad), None, "{bad}");
        }
        assert!(HttpCall::parse("get /health").is_ok_and(|h| h.method == http::Method::GET));
        assert!(HttpCall::parse(&format!("GET /{}", "q".repeat(300))).is_err());
        assert!(HttpCall::parse("GET https://x/").is_ok());
        assert!(HttpCall::parse("GET ftp://x/").is_err());
        assert!(HttpCall::parse("GET health").is_err());
    }

    #[test]
    fn long_causes_are_cut_to_what_a_report_keeps() {
        let r = Recorder::new();
        r.record(Outcome::Failed(Status::unavailable("é".repeat(100))));
        let s = r.stats("x", Duration::from_secs(1));
        let (cause, n) = s.error_distribution.iter().next().unwrap();
        assert_eq!(*n, 1);
        assert!(
            cause.starts_with("UNAVAILABLE: éé") && cause.ends_with('…'),
            "{cause}"
        );
        assert!(cause.len() <= switchyard_core::gating::document::MAX_KEY_LEN);
    }

    #[test]
    fn causes_beyond_the_cap_are_counted_together() {
        let r = Recorder::new();
        for i in 0..50 {
            r.record(Outcome::Failed(Status::internal(format!("cause {i}"))));
        }
        let s = r.stats("x", Duration::from_secs(1));
        assert_eq!(s.error_distribution.len(), MAX_CAUSES);
        assert_eq!(
            s.error_distribution["(other causes)"],
            50 - (MAX_CAUSES as i32 - 1)
        );
        assert_eq!(s.error_distribution.values().sum::<i32>(), 50);
    }
}
