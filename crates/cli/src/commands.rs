//! `switchyard smoke` and `switchyard canary`: synthetic traffic against
//! running servers, judged by the same judge as GatingService, written as the
//! GATING.md documents and a Markdown summary.
//!
//! Exit codes (CONTRACT.md): 0 PASS, 1 FAIL, 2 a usage error or a run that
//! could not be made (nothing is written then), 3 INCONCLUSIVE or NO_DATA.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use clap::Args;
use tonic::{Code, Request, Status};

use crate::{
    progress::Progress,
    reflection::GrpcCall,
    summary,
    traffic::{
        self, Call, Expect, HttpCall, Mix, OwnCalls, PhaseResult, Shape, Side, Stop, Subjects,
    },
};
use switchyard_api::client::{Client, ClientError, Retry, TlsOptions, check_tls, endpoint_with};
use switchyard_api::v1::{
    self as pb, CompareCanaryRequest, CreateFlagRequest, CreateTenantRequest, EvaluateSmokeRequest,
    Flag, FlagType, GateRun, GetSmokeThresholdRequest, ListGateRunsRequest, Tenant,
};
use switchyard_core::gating::{
    document::{self, CanaryInput, RulesInput, SmokeInput},
    judge::num,
    report::{CanaryConfig, RunMetadata, SmokeConfig},
};
use switchyard_server::grpc::gating as convert;

/// Exit code: the run could not be made (usage, connection, setup).
pub const EXIT_USAGE: u8 = 2;

/// What the commands take from the process environment, read by the binary
/// (`main.rs` is the one reader of the environment).
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// `SWITCHYARD_TOKEN`: the token when `--token` is not given.
    pub token: Option<String>,
    /// `GITHUB_RUN_ID`: the run id when `--run-id` is not given.
    pub run_id: Option<String>,
    /// `GITHUB_SHA`: the commit when `--git-sha` is not given.
    pub git_sha: Option<String>,
    /// `GITHUB_STEP_SUMMARY`: where the Markdown summary is appended
    /// (printed when unset).
    pub step_summary: Option<PathBuf>,
    /// `CI` is set: no progress line, even on a terminal.
    pub ci: bool,
}

impl Environment {
    /// Fills what `t` leaves out from the environment.
    pub(crate) fn fill(&self, t: &mut RunArgs) {
        if t.token.is_empty()
            && let Some(token) = &self.token
        {
            t.token.clone_from(token);
        }
        if t.run_id.is_none() {
            t.run_id.clone_from(&self.run_id);
        }
        if t.git_sha.is_none() {
            t.git_sha.clone_from(&self.git_sha);
        }
    }
}

/// What every judged run takes (`smoke`, `canary`, `judge`): Switchyard's
/// token, the run's id and commit, and the history shown.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The bearer token of the calls to Switchyard (an admin token, or a
    /// gating token for the gating calls alone) [default: $SWITCHYARD_TOKEN].
    #[arg(long, default_value = "", hide_default_value = true)]
    pub token: String,
    /// The run's id in the reports [default: $GITHUB_RUN_ID, else random].
    #[arg(long)]
    pub run_id: Option<String>,
    /// The commit under test [default: $GITHUB_SHA, else `git rev-parse
    /// HEAD` here, else none].
    #[arg(long)]
    pub git_sha: Option<String>,
    /// Rows of the history table (the last runs of the same target).
    #[arg(long, default_value = "10", value_parser = clap::value_parser!(u16).range(0..=1000))]
    pub history: u16,
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// How `https://` servers are reached (every client command takes these).
#[derive(Debug, Clone, Default, Args)]
pub struct TlsArgs {
    /// The CA certificates (PEM) an https:// server's certificate must come
    /// from [default: the system's].
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// A client certificate (PEM), for a server that asks for one
    /// (tls_client_ca); with --client-key.
    #[arg(long, value_name = "FILE", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
}

impl TlsArgs {
    /// Refuses TLS options that no address uses (`addresses`: the servers
    /// and URLs the command calls), which would be silently ignored.
    pub fn used_by<'a>(&self, addresses: impl IntoIterator<Item = &'a str>) -> Result<(), String> {
        let given = [
            (self.ca_cert.is_some(), "--ca-cert"),
            (self.client_cert.is_some(), "--client-cert"),
        ];
        let Some((_, option)) = given.iter().find(|(set, _)| *set) else {
            return Ok(());
        };
        if addresses.into_iter().any(|a| a.starts_with("https://")) {
            return Ok(());
        }
        Err(format!(
            "{option} is for servers that speak TLS, and no address given is https://: \
             write the server's address as https://HOST:PORT"
        ))
    }

    /// The files read; a file that cannot be used is said here.
    pub fn options(&self) -> Result<TlsOptions, String> {
        TlsOptions::from_files(
            self.ca_cert.as_deref(),
            self.client_cert.as_deref(),
            self.client_key.as_deref(),
        )
        .map_err(|e| e.to_string())
    }
}

/// The traffic options `smoke` and `canary` share.
#[derive(Debug, Clone, Args)]
pub struct TrafficArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Calls per second (to each server), sent on schedule whatever the
    /// server does.
    #[arg(long, default_value = "200", value_parser = parse_rate)]
    pub rate: f64,
    /// How long the measured phase lasts (`30s`, `500ms`, `2m`; a bare number
    /// is seconds).
    #[arg(long, default_value = "30s", value_parser = parse_positive_duration)]
    pub duration: Duration,
    /// Traffic sent before measuring, at the same rate, then discarded (0 for
    /// none).
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// HTTP/2 connections per server; calls take them in turn.
    #[arg(long, default_value = "2", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub connections: u16,
    /// At most this many calls in flight per server; a call due beyond it is
    /// not sent and counts as an error of its own cause.
    #[arg(long, default_value = "1000", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_in_flight: u32,
    /// Each call's deadline; a call not answered within it is a
    /// DEADLINE_EXCEEDED error.
    #[arg(long, default_value = "5s", value_parser = parse_positive_duration)]
    pub deadline: Duration,
    /// The calls and their weights: EvaluateFlag, ResolveTenant, ListFlags,
    /// AdminFeatureFlags, http1, http2, ... for the --http calls and grpc1,
    /// grpc2, ... for the --grpc calls (`EvaluateFlag=8,ResolveTenant=1`; no
    /// `=N` weighs 1) [default: EvaluateFlag, or every --http and --grpc
    /// call alike].
    #[arg(long, value_parser = Mix::parse)]
    pub mix: Option<Mix>,
    /// A call of your own service over HTTP: `METHOD URL`, the URL a path
    /// (`/health`, on each server under test) or, for smoke, an http(s):// URL.
    /// Repeatable; named http1, http2, ... in --mix.
    #[arg(long = "http", value_name = "'METHOD URL'", value_parser = HttpCall::parse)]
    pub http: Vec<HttpCall>,
    /// A unary method of your own gRPC service, `package.Service/Method`,
    /// on each server under test, found through its server reflection (no
    /// .proto files needed); a success when its status is OK. Repeatable;
    /// named grpc1, grpc2, ... in --mix.
    #[arg(long = "grpc", value_name = "package.Service/Method", value_parser = GrpcCall::parse)]
    pub grpc: Vec<GrpcCall>,
    /// The request of the --grpc calls in protobuf JSON (`@FILE`: a file's
    /// text). Given once, every --grpc call sends it; given once per --grpc
    /// call, each sends its own, in order [default: {}].
    #[arg(long = "data", value_name = "JSON")]
    pub data: Vec<String>,
    /// A header sent with every --http call, and as metadata with every
    /// --grpc call, `Name: value` (Switchyard's token is never sent to
    /// them). Repeatable.
    #[arg(long = "header", value_name = "'NAME: VALUE'", value_parser = traffic::parse_header)]
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// The body sent with every --http call (`@FILE`: a file's bytes).
    #[arg(long)]
    pub body: Option<String>,
    /// The statuses of an --http call that are a success: codes and classes
    /// (`200,204`, `2xx`) [default: 2xx and 3xx].
    #[arg(long, value_parser = Expect::parse)]
    pub expect_status: Option<Expect>,
    /// The flag EvaluateFlag evaluates.
    #[arg(long, default_value = "smoke")]
    pub flag: String,
    /// The host ResolveTenant resolves.
    #[arg(long, default_value = "smoke.switchyard.test")]
    pub host: String,
    /// Create the flag (bool, true) and a tenant `smoke` for the host first,
    /// if they do not exist.
    #[arg(long)]
    pub setup: bool,
}

/// `switchyard smoke`.
#[derive(Debug, Clone, Args)]
pub struct SmokeArgs {
    /// The server under test (`host:port`, `http://host:port` or `https://host:port`).
    #[arg(long, value_name = "ADDR", required = true)]
    pub target: Option<String>,
    /// The GatingService that sets the threshold and keeps the verdict
    /// [default: the target].
    #[arg(long, value_name = "ADDR")]
    pub gating: Option<String>,
    /// The SLO whose error budget sets the p95 threshold [default: the
    /// server's default SLO].
    #[arg(long, default_value = "", hide_default_value = true)]
    pub slo: String,
    /// The error-rate limit [default: 0.01].
    #[arg(long)]
    pub max_error_rate: Option<f64>,
    /// The fewest requests to judge; fewer is INCONCLUSIVE [default: 200].
    #[arg(long)]
    pub min_requests: Option<i32>,
    /// Where the summary is written.
    #[arg(long, default_value = "smoke-summary.json", value_name = "FILE")]
    pub out: PathBuf,
    #[command(flatten)]
    pub traffic: TrafficArgs,
}

/// `switchyard canary`.
#[derive(Debug, Clone, Args)]
pub struct CanaryArgs {
    /// The baseline (`host:port`, `http://host:port` or `https://host:port`).
    #[arg(long, value_name = "ADDR", required = true)]
    pub baseline: Option<String>,
    /// The canary.
    #[arg(long, value_name = "ADDR", required = true)]
    pub canary: Option<String>,
    /// A GatingService that keeps the verdict as a gate run (without it the
    /// report is judged here and kept only in the file).
    #[arg(long, value_name = "ADDR")]
    pub gating: Option<String>,
    /// The "before" phase, against the baseline alone, after the warm-up
    /// (0 for none).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub before: Duration,
    #[command(flatten)]
    pub rules: RuleArgs,
    /// Where the report is written.
    #[arg(long, default_value = "canary-report.json", value_name = "FILE")]
    pub out: PathBuf,
    #[command(flatten)]
    pub traffic: TrafficArgs,
}

/// The canary rules a command takes (CompareCanary's policy; unset: its
/// defaults), and the fewest requests to judge.
#[derive(Debug, Clone, Default, Args)]
pub struct RuleArgs {
    /// The latency check fails above the baseline's p95 times this [1.10] ...
    #[arg(long)]
    pub p95_ratio: Option<f64>,
    /// ... and by more than this many ms [5].
    #[arg(long)]
    pub p95_floor_ms: Option<f64>,
    /// The error check fails above the baseline's error rate times this [1.5] ...
    #[arg(long)]
    pub error_rate_ratio: Option<f64>,
    /// ... and above this rate [0.005] ...
    #[arg(long)]
    pub error_rate_floor: Option<f64>,
    /// ... with at least this many canary errors [5].
    #[arg(long)]
    pub min_error_count: Option<i32>,
    /// The fewest requests on each side to judge; fewer is INCONCLUSIVE [200].
    #[arg(long)]
    pub min_requests: Option<i32>,
}

impl RuleArgs {
    /// The rules as the judge takes them.
    pub fn input(&self) -> RulesInput {
        RulesInput {
            p95_ratio: self.p95_ratio,
            p95_floor_ms: self.p95_floor_ms,
            error_rate_ratio: self.error_rate_ratio,
            error_rate_floor: self.error_rate_floor,
            min_error_count: self.min_error_count,
            min_requests: self.min_requests,
        }
    }
}

/// Why a command ended without a verdict: one line for standard error.
#[derive(Debug)]
pub(crate) struct Usage(pub(crate) String);

impl From<String> for Usage {
    fn from(s: String) -> Usage {
        Usage(s)
    }
}

pub(crate) type Run<T> = Result<T, Usage>;

/// Reads `30s`, `500ms`, `2m`, `1h` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration such as 30s, 500ms or 2m"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: the unit must be ms, s, m or h")),
    };
    if !secs.is_finite() || secs > 86_400.0 {
        return Err(format!("{s:?}: at most 24h"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `d` as the options take it: `30s`, `1.5s`, `250ms`, `0s`.
fn show(d: Duration) -> String {
    if d.subsec_millis() == 0 || d >= Duration::from_secs(10) {
        format!("{}s", d.as_secs_f64().round())
    } else if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!(
            "{}s",
            format!("{:.3}", d.as_secs_f64()).trim_end_matches('0')
        )
    }
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(1) {
        return Err(format!("{s:?}: must be above zero"));
    }
    Ok(d)
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let r: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of calls per second"))?;
    if !(r > 0.0 && r <= 100_000.0) {
        return Err(format!("{s:?}: must be above 0 and at most 100000"));
    }
    Ok(r)
}

/// The address of a required option, or the line saying it is missing.
fn required(value: Option<&String>, option: &str) -> Run<String> {
    match value.map(|v| v.trim()) {
        Some(v) if !v.is_empty() => Ok(v.to_owned()),
        _ => Err(Usage(format!("{option} ADDR is required"))),
    }
}

/// The mix a run sends: `--mix`, else every `--http` and `--grpc` call
/// alike, else `EvaluateFlag`.
fn mix(t: &TrafficArgs) -> Mix {
    match &t.mix {
        Some(m) => m.clone(),
        None if !(t.http.is_empty() && t.grpc.is_empty()) => Mix::own(&OwnCalls {
            http: t.http.clone(),
            grpc: t.grpc.clone(),
        }),
        None => Mix::parse("EvaluateFlag").unwrap_or_else(|_| Mix::own(&OwnCalls::default())),
    }
}

/// The `--http` calls with the headers, body and statuses they share and
/// the `--grpc` calls with their requests and metadata, after checking that
/// the mix names only calls that were given and that `canary` (`relative`
/// true) has paths, so each side gets its own host.
fn own_calls(t: &TrafficArgs, relative: bool) -> Run<OwnCalls> {
    for (option, n) in [("--http", t.http.len()), ("--grpc", t.grpc.len())] {
        if n > traffic::MAX_OWN_CALLS {
            return Err(Usage(format!(
                "{option}: at most {} calls",
                traffic::MAX_OWN_CALLS
            )));
        }
    }
    for call in mix(t).calls() {
        let (option, given) = match call {
            Call::Http(i) => ("--http", (usize::from(i), t.http.len())),
            Call::Grpc(i) => ("--grpc", (usize::from(i), t.grpc.len())),
            _ => continue,
        };
        if given.0 >= given.1 {
            return Err(Usage(format!(
                "--mix names {} but {} {option} call{} given",
                call.short(),
                given.1,
                if given.1 == 1 { " was" } else { "s were" }
            )));
        }
    }
    Ok(OwnCalls {
        http: http_calls(t, relative)?,
        grpc: grpc_calls(t)?,
    })
}

/// The `--grpc` calls with their `--data` and `--header`s.
fn grpc_calls(t: &TrafficArgs) -> Run<Vec<GrpcCall>> {
    if !t.data.is_empty() && t.grpc.is_empty() {
        return Err(Usage(
            "--data is the request of a --grpc call; give --grpc".into(),
        ));
    }
    if t.data.len() > 1 && t.data.len() != t.grpc.len() {
        return Err(Usage(format!(
            "--data given {} times for {} --grpc calls: give it once for all, or once per --grpc call in order",
            t.data.len(),
            t.grpc.len()
        )));
    }
    let data = t
        .data
        .iter()
        .map(|d| match d.strip_prefix('@') {
            Some(path) => {
                std::fs::read_to_string(path).map_err(|e| Usage(format!("--data @{path}: {e}")))
            }
            None => Ok(d.clone()),
        })
        .collect::<Run<Vec<String>>>()?;
    let headers: http::HeaderMap = t.headers.iter().cloned().collect();
    Ok(t.grpc
        .iter()
        .enumerate()
        .map(|(i, g)| GrpcCall {
            data: data
                .get(i)
                .or(data.first())
                .cloned()
                .unwrap_or_else(|| "{}".into()),
            headers: headers.clone(),
            ..g.clone()
        })
        .collect())
}

/// The `--http` calls with the headers, body and statuses they share.
fn http_calls(t: &TrafficArgs, relative: bool) -> Run<Vec<HttpCall>> {
    let body = match t.body.as_deref() {
        Some(b) => match b.strip_prefix('@') {
            Some(path) => std::fs::read(path)
                .map_err(|e| Usage(format!("--body @{path}: {e}")))?
                .into(),
            None => bytes::Bytes::from(b.to_owned()),
        },
        None => bytes::Bytes::new(),
    };
    t.http
        .iter()
        .map(|h| {
            if relative && !h.url.starts_with('/') {
                return Err(Usage(format!(
                    "--http '{} {}': give a path, so that the baseline and the canary each get the call on their own host",
                    h.method, h.url
                )));
            }
            Ok(HttpCall {
                headers: t.headers.clone(),
                body: body.clone(),
                expect: t.expect_status.clone().unwrap_or_default(),
                ..h.clone()
            })
        })
        .collect()
}

fn shape(t: &TrafficArgs) -> Shape {
    Shape {
        rate: t.rate,
        mix: mix(t),
        max_in_flight: t.max_in_flight as usize,
        deadline: t.deadline,
    }
}

/// The run's id: the one given, else a random one.
pub(crate) fn run_id(given: Option<&str>) -> String {
    match given.map(str::trim) {
        Some(id) if !id.is_empty() => id.to_owned(),
        _ => hex::encode(rand::random::<[u8; 8]>()),
    }
}

fn git_sha(given: Option<&str>) -> String {
    if let Some(sha) = given.map(str::trim).filter(|s| !s.is_empty()) {
        return sha.to_owned();
    }
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Who ran what: this tool, the commit under test (`git_sha`, else `git
/// rev-parse HEAD` here) and the run's id.
pub(crate) fn metadata(run_id: &str, git_sha: Option<&str>) -> RunMetadata {
    RunMetadata {
        generated_at_us: switchyard_core::store::now_us(),
        tool_version: document::TOOL_VERSION.into(),
        git_sha: self::git_sha(git_sha),
        run_id: run_id.to_owned(),
    }
}

/// A status as one line.
fn status_line(s: &Status) -> String {
    let message = s.message().replace('\n', " ");
    if message.is_empty() {
        format!("{:?}", s.code())
    } else {
        format!("{}: {message}", traffic::code_name(s.code()))
    }
}

async fn connect_side(
    label: &str,
    address: &str,
    t: &TrafficArgs,
    own: &OwnCalls,
) -> Run<Arc<Side>> {
    let subjects = Subjects {
        flag: t.flag.clone(),
        host: t.host.clone(),
        own: own.clone(),
    };
    let switchyard = mix(t).calls().iter().any(|c| c.is_switchyard());
    let tls = t.run.tls.options().map_err(Usage)?;
    check_tls(address, &tls)
        .await
        .map_err(|e| Usage(e.to_string()))?;
    let side = Side::connect(
        label,
        address,
        &t.run.token,
        &tls,
        t.connections.into(),
        subjects,
        switchyard,
    )
    .await
    .map_err(|e| match e {
        ClientError::Connect(e) => Usage(format!("cannot reach {address}: {e}")),
        e => Usage(format!("{address}: {e}")),
    })?;
    let mut side = side;
    side.resolve_grpc().await.map_err(Usage)?;
    Ok(Arc::new(side))
}

pub(crate) async fn connect_gating(address: &str, run: &RunArgs) -> Run<Client> {
    let tls = run.tls.options().map_err(Usage)?;
    check_tls(address, &tls)
        .await
        .map_err(|e| Usage(e.to_string()))?;
    let token = &run.token;
    let endpoint = endpoint_with(address, &tls)
        .map_err(|e| Usage(e.to_string()))?
        .connect_timeout(Duration::from_secs(5));
    Client::connect_to(endpoint, token)
        .await
        .map_err(|e| match e {
            ClientError::Connect(e) => Usage(format!("cannot reach {address}: {e}")),
            e => Usage(format!("{address}: {e}")),
        })
}

/// Creates the smoke flag and tenant on `side` unless they exist.
async fn setup(side: &Side, t: &TrafficArgs) -> Run<()> {
    let client = side.client();
    let flag = CreateFlagRequest {
        flag: Some(Flag {
            key: t.flag.clone(),
            r#type: FlagType::Bool as i32,
            description: "Evaluated by switchyard smoke and canary runs.".into(),
            default_value: Some(pbjson_types::Value {
                kind: Some(pbjson_types::value::Kind::BoolValue(true)),
            }),
            ..Default::default()
        }),
    };
    let created = Retry::default()
        .call(|| {
            let mut flags = client.flags();
            let req = flag.clone();
            async move { flags.create_flag(req).await.map(drop) }
        })
        .await;
    setup_outcome(created, side, &format!("creating flag {:?}", t.flag), t)?;
    let tenant = CreateTenantRequest {
        tenant: Some(Tenant {
            id: "smoke".into(),
            display_name: "switchyard smoke runs".into(),
            patterns: vec![t.host.clone()],
            ..Default::default()
        }),
    };
    let created = Retry::default()
        .call(|| {
            let mut tenants = client.tenants();
            let req = tenant.clone();
            async move { tenants.create_tenant(req).await.map(drop) }
        })
        .await;
    setup_outcome(created, side, "creating tenant \"smoke\"", t)
}

fn setup_outcome(r: Result<(), Status>, side: &Side, what: &str, t: &TrafficArgs) -> Run<()> {
    match r {
        Ok(()) => Ok(()),
        Err(s) if s.code() == Code::AlreadyExists => Ok(()),
        Err(s) => Err(Usage(format!(
            "--setup: {what} on {}: {}{}",
            side.address(),
            status_line(&s),
            token_hint(&s, t.run.token.is_empty())
        ))),
    }
}

fn token_hint(s: &Status, no_token: bool) -> &'static str {
    match s.code() {
        Code::Unauthenticated if no_token => {
            "; pass the server's admin token with --token or SWITCHYARD_TOKEN"
        }
        Code::Unauthenticated | Code::PermissionDenied => {
            "; smoke and canary runs need an admin token (--token or SWITCHYARD_TOKEN)"
        }
        _ => "",
    }
}

/// One call of each kind in the mix, so a run that cannot succeed stops
/// before it starts (with what to do about it).
async fn preflight(side: &Side, t: &TrafficArgs) -> Run<()> {
    for call in mix(t).calls() {
        let r = Retry::default().call(|| side.call(call, t.deadline)).await;
        if let Err(s) = r {
            let hint = match (s.code(), call) {
                (Code::NotFound, Call::EvaluateFlag) => format!(
                    "; create flag {:?} on it, pass --setup, or choose another with --flag",
                    t.flag
                ),
                (Code::NotFound, Call::ResolveTenant) => format!(
                    "; give a tenant a pattern for {:?}, pass --setup, or choose another with --host",
                    t.host
                ),
                _ => token_hint(&s, t.run.token.is_empty()).to_owned(),
            };
            let hint = if call.is_switchyard() {
                hint
            } else {
                String::new()
            };
            return Err(Usage(format!(
                "{} {} on {}: {}{hint}",
                side.label(),
                call.name(side.own()),
                side.address(),
                status_line(&s)
            )));
        }
    }
    Ok(())
}

/// Stops the run on the first Ctrl-C; a second one ends the process.
fn stop_on_ctrl_c() -> Stop {
    let stop = Stop::new();
    let s = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!(
                "switchyard: interrupted; finishing the calls in flight (Ctrl-C again to quit)"
            );
            s.stop();
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    stop
}

async fn phase(
    name: &str,
    sides: &[Arc<Side>],
    shape: &Shape,
    length: Duration,
    stop: &Stop,
    progress: &Progress,
) -> PhaseResult {
    progress.phase(name, length);
    let labels: Vec<String> = sides.iter().map(|s| s.label().to_owned()).collect();
    let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
    let result = traffic::run_phase(sides, shape, length, stop, |glances, elapsed| {
        progress.show(&labels, glances, elapsed, length);
    })
    .await;
    progress.finish();
    result
}

/// The last runs of `kind` on `target`, newest first, or a note why not.
async fn history(
    client: &Client,
    kind: &str,
    target: &str,
    rows: u16,
) -> (Vec<GateRun>, Option<String>) {
    if rows == 0 {
        return (Vec::new(), None);
    }
    let req = ListGateRunsRequest {
        page_size: rows.into(),
        page_token: String::new(),
        kind: kind.into(),
        target: target.into(),
    };
    let r = Retry::default()
        .call(|| {
            let mut gating = client.gating();
            let req = req.clone();
            async move { gating.list_gate_runs(req).await }
        })
        .await;
    match r {
        Ok(resp) => (resp.into_inner().runs, None),
        Err(s) => (
            Vec::new(),
            Some(format!(
                "the history could not be read: {}",
                status_line(&s)
            )),
        ),
    }
}

fn join_notes(notes: &[Option<String>]) -> Option<String> {
    let notes: Vec<&str> = notes.iter().flatten().map(String::as_str).collect();
    (!notes.is_empty()).then(|| notes.join(" "))
}

fn write_json<M: prost::Message>(full_name: &str, message: &M, out: &Path) -> Run<()> {
    let json = switchyard_server::rest::message_json(full_name, message)
        .map_err(|e| Usage(format!("writing {}: {}", out.display(), e.message())))?;
    summary::write_document(out, &json).map_err(Usage)
}

/// Prints `line` to standard error with the command's name.
pub(crate) fn say(command: &str, line: &str) {
    eprintln!("switchyard {command}: {line}");
}

/// The smoke threshold of `slo` that applies now, as `gating` answers it.
pub(crate) async fn smoke_threshold(
    gating: &Client,
    slo: &str,
    no_token: bool,
) -> Run<pb::GetSmokeThresholdResponse> {
    Ok(Retry::default()
        .call(|| {
            let mut g = gating.gating();
            let slo = slo.to_owned();
            async move {
                g.get_smoke_threshold(GetSmokeThresholdRequest { slo })
                    .await
            }
        })
        .await
        .map_err(|s| {
            Usage(format!(
                "GetSmokeThreshold: {}{}",
                status_line(&s),
                token_hint(&s, no_token)
            ))
        })?
        .into_inner())
}

/// Runs `switchyard smoke`; returns the exit code.
pub async fn smoke(mut args: SmokeArgs, env: &Environment) -> u8 {
    env.fill(&mut args.traffic.run);
    match run_smoke(args, env).await {
        Ok(code) => code,
        Err(Usage(line)) => {
            say("smoke", &line);
            EXIT_USAGE
        }
    }
}

async fn run_smoke(args: SmokeArgs, env: &Environment) -> Run<u8> {
    let target = required(args.target.as_ref(), "--target")?;
    let t = &args.traffic;
    if let Some(r) = args.max_error_rate
        && !(r > 0.0 && r <= 1.0)
    {
        return Err(Usage(format!(
            "--max-error-rate: must be a ratio above 0 and at most 1, not {r}"
        )));
    }
    if args.min_requests.is_some_and(|n| n < 0) {
        return Err(Usage("--min-requests: must not be negative".into()));
    }
    let own = own_calls(t, false)?;
    t.run
        .tls
        .used_by(
            [target.as_str()]
                .into_iter()
                .chain(args.gating.as_deref())
                .chain(t.http.iter().map(|h| h.url.as_str())),
        )
        .map_err(Usage)?;
    if mix(t).calls().iter().any(|c| !c.is_switchyard()) && args.gating.is_none() {
        return Err(Usage(
            "--gating ADDR is required with --http and --grpc: the Switchyard server that sets the threshold and keeps the verdict".into(),
        ));
    }
    let side = connect_side("target", &target, t, &own).await?;
    let gating = match &args.gating {
        Some(addr) => connect_gating(addr, &t.run).await?,
        None => side.client().clone(),
    };
    if t.setup && mix(t).calls().iter().any(|c| c.is_switchyard()) {
        setup(&side, t).await?;
    }
    preflight(&side, t).await?;
    let threshold = smoke_threshold(&gating, &args.slo, t.run.token.is_empty()).await?;
    say(
        "smoke",
        &format!(
            "{target}: {} at {}/s for {} after {} of warm-up; p95 must stay under {} ms ({}, {})",
            mix(t),
            t.rate,
            show(t.duration),
            show(t.warmup),
            threshold.threshold_ms,
            threshold.tier,
            threshold.source
        ),
    );

    let stop = stop_on_ctrl_c();
    let progress = Progress::for_terminal(env.ci);
    let shape = shape(t);
    let sides = [side.clone()];
    let mut interrupted = false;
    if !t.warmup.is_zero() {
        interrupted = phase("warm-up", &sides, &shape, t.warmup, &stop, &progress)
            .await
            .interrupted;
    }
    let measured = if interrupted {
        None
    } else {
        Some(phase("smoke", &sides, &shape, t.duration, &stop, &progress).await)
    };
    interrupted |= measured.as_ref().is_some_and(|m| m.interrupted);
    let results = match &measured {
        Some(m) => m.stats(0, &target),
        None => switchyard_core::gating::report::TrafficStats {
            label: target.clone(),
            percentile_method: traffic::PERCENTILE_METHOD.into(),
            ..Default::default()
        },
    };

    let run_id = run_id(t.run.run_id.as_deref());
    let config = SmokeConfig {
        target: target.clone(),
        calls: mix(t).calls().iter().map(|c| c.name(&own)).collect(),
        rate: t.rate,
        duration_s: t.duration.as_secs_f64(),
        warmup_s: t.warmup.as_secs_f64(),
        percentile_method: traffic::PERCENTILE_METHOD.into(),
    };
    report_smoke(
        SmokeRun {
            gating: &gating,
            target,
            slo: args.slo.clone(),
            max_error_rate: args.max_error_rate,
            min_requests: args.min_requests,
            config,
            meta: metadata(&run_id, t.run.git_sha.as_deref()),
            interrupted,
            threshold,
            out: &args.out,
            history: t.run.history,
            command: "smoke",
        },
        results,
        env,
    )
    .await
}

/// A smoke run to judge, whoever measured it.
pub(crate) struct SmokeRun<'a> {
    pub gating: &'a Client,
    pub target: String,
    pub slo: String,
    pub max_error_rate: Option<f64>,
    pub min_requests: Option<i32>,
    pub config: SmokeConfig,
    pub meta: RunMetadata,
    pub interrupted: bool,
    /// The threshold announced before the run.
    pub threshold: pb::GetSmokeThresholdResponse,
    pub out: &'a Path,
    pub history: u16,
    /// The command saying it (`smoke`, `judge`).
    pub command: &'static str,
}

/// Judges `results` with `EvaluateSmoke` (here, with the threshold
/// announced, if the server cannot), writes the summary, shows the history
/// and the Markdown, and returns the exit code.
pub(crate) async fn report_smoke(
    run: SmokeRun<'_>,
    results: switchyard_core::gating::report::TrafficStats,
    env: &Environment,
) -> Run<u8> {
    let SmokeRun {
        gating,
        target,
        slo,
        max_error_rate,
        min_requests,
        config,
        meta,
        interrupted,
        threshold,
        out,
        history: history_rows,
        command,
    } = run;
    let budget = threshold.budget.clone().unwrap_or_default();
    let run_id = meta.run_id.clone();
    let request = EvaluateSmokeRequest {
        results: Some(convert::stats_to_proto(&results)),
        target: target.clone(),
        run_id: run_id.clone(),
        slo: slo.clone(),
        max_error_rate,
        min_requests,
        config: Some(convert::smoke_config_to_proto(&config)),
        metadata: Some(convert::metadata_to_proto(&meta)),
        interrupted,
    };
    let kept = Retry::default()
        .call(|| {
            let mut g = gating.gating();
            let req = request.clone();
            async move { g.evaluate_smoke(req).await }
        })
        .await;
    let (summary, note) = match kept.map(|r| r.into_inner().run.and_then(|run| run.report)) {
        Ok(Some(pb::gate_run::Report::Smoke(s))) => (s, None),
        other => {
            let why = match other {
                Err(s) => status_line(&s),
                Ok(_) => "the answer held no smoke summary".into(),
            };
            let input = SmokeInput {
                results: Some(results),
                target: target.clone(),
                run_id: run_id.clone(),
                slo,
                max_error_rate,
                min_requests,
                config,
                metadata: meta,
                interrupted,
            };
            let local = document::smoke_summary(input, convert::budget_from_proto(&budget))
                .map_err(|e| Usage(format!("judging the run: {}", e.message())))?;
            (
                convert::smoke_to_proto(&local),
                Some(format!(
                    "EvaluateSmoke failed ({why}): this verdict was judged here with the threshold read before the run, and not kept."
                )),
            )
        }
    };
    write_json("switchyard.v1.SmokeSummary", &summary, out)?;
    let moved = threshold_moved(&threshold, summary.budget.as_ref());
    if let Some(m) = &moved {
        say(command, m);
    }
    let (runs, history_note) = history(gating, "smoke", &target, history_rows).await;
    let markdown = summary::smoke_markdown(
        &summary,
        &runs,
        join_notes(&[moved, note, history_note]).as_deref(),
    );
    finish(
        command,
        &markdown,
        summary.verdict.unwrap_or_default(),
        out,
        env,
    )
}

/// What to say when the threshold the run was judged against is not the one
/// announced at its start: the server reads the error budget again when it
/// judges, and the budget (or Prometheus' answer) changed meanwhile.
fn threshold_moved(
    announced: &pb::GetSmokeThresholdResponse,
    judged: Option<&pb::Budget>,
) -> Option<String> {
    let judged = judged?;
    (judged.applied_p95_ms != announced.threshold_ms).then(|| {
        format!(
            "the threshold moved during the run: {} ms ({}, {}) when it started, {} ms ({}, {}) when it was judged, because the error budget is read again when the run is judged; the verdict is against {} ms.",
            num(announced.threshold_ms),
            announced.tier,
            announced.source,
            num(judged.applied_p95_ms),
            judged.tier,
            judged.source,
            num(judged.applied_p95_ms)
        )
    })
}

/// Publishes the Markdown, says the verdict in one line and returns its exit
/// code.
fn finish(
    command: &str,
    markdown: &str,
    verdict: pb::VerdictBlock,
    out: &Path,
    env: &Environment,
) -> Run<u8> {
    let published = summary::publish(markdown, env.step_summary.as_deref()).map_err(Usage)?;
    say(
        command,
        &format!(
            "{}{} — wrote {}{}",
            verdict.status,
            reasons(&verdict.reasons),
            out.display(),
            published.map_or_else(String::new, |p| format!(", appended to {}", p.display()))
        ),
    );
    Ok(exit_code(verdict.exit_code))
}

fn reasons(r: &[String]) -> String {
    if r.is_empty() {
        String::new()
    } else {
        format!(": {}", r.join("; "))
    }
}

fn exit_code(code: i32) -> u8 {
    u8::try_from(code).unwrap_or(EXIT_USAGE)
}

/// Runs `switchyard canary`; returns the exit code.
pub async fn canary(mut args: CanaryArgs, env: &Environment) -> u8 {
    env.fill(&mut args.traffic.run);
    match run_canary(args, env).await {
        Ok(code) => code,
        Err(Usage(line)) => {
            say("canary", &line);
            EXIT_USAGE
        }
    }
}

async fn run_canary(args: CanaryArgs, env: &Environment) -> Run<u8> {
    let baseline_addr = required(args.baseline.as_ref(), "--baseline")?;
    let canary_addr = required(args.canary.as_ref(), "--canary")?;
    let t = &args.traffic;
    let rules = args.rules.input();
    switchyard_core::gating::judge::validate_rules("policy", &rules.resolve())
        .map_err(|e| Usage(format!("canary rules: {}", e.message())))?;
    let own = own_calls(t, true)?;
    t.run
        .tls
        .used_by(
            [baseline_addr.as_str(), canary_addr.as_str()]
                .into_iter()
                .chain(args.gating.as_deref()),
        )
        .map_err(Usage)?;
    let baseline = connect_side("baseline", &baseline_addr, t, &own).await?;
    let canary = connect_side("canary", &canary_addr, t, &own).await?;
    let gating = match &args.gating {
        Some(addr) => Some(connect_gating(addr, &t.run).await?),
        None => None,
    };
    if t.setup && mix(t).calls().iter().any(|c| c.is_switchyard()) {
        setup(&baseline, t).await?;
        setup(&canary, t).await?;
    }
    preflight(&baseline, t).await?;
    preflight(&canary, t).await?;
    say(
        "canary",
        &format!(
            "baseline {baseline_addr} vs canary {canary_addr}: {} at {}/s each, interleaved, for {} after {} of warm-up and {} of baseline alone",
            mix(t),
            t.rate,
            show(t.duration),
            show(t.warmup),
            show(args.before)
        ),
    );

    let stop = stop_on_ctrl_c();
    let progress = Progress::for_terminal(env.ci);
    let shape = shape(t);
    let both = [baseline.clone(), canary.clone()];
    let mut interrupted = false;
    if !t.warmup.is_zero() {
        interrupted = phase("warm-up", &both, &shape, t.warmup, &stop, &progress)
            .await
            .interrupted;
    }
    let mut before = None;
    if !interrupted && !args.before.is_zero() {
        let b = phase(
            "before",
            std::slice::from_ref(&baseline),
            &shape,
            args.before,
            &stop,
            &progress,
        )
        .await;
        interrupted = b.interrupted;
        before = Some(b.stats(0, "baseline"));
    }
    let during = if interrupted {
        None
    } else {
        Some(phase("during", &both, &shape, t.duration, &stop, &progress).await)
    };
    interrupted |= during.as_ref().is_some_and(|d| d.interrupted);
    let empty = |label: &str| switchyard_core::gating::report::TrafficStats {
        label: label.into(),
        percentile_method: traffic::PERCENTILE_METHOD.into(),
        ..Default::default()
    };
    let (b, c) = match &during {
        Some(d) => (d.stats(0, "baseline"), d.stats(1, "canary")),
        None => (empty("baseline"), empty("canary")),
    };

    let run_id = run_id(t.run.run_id.as_deref());
    let config = CanaryConfig {
        interleaved: true,
        percentile_method: traffic::PERCENTILE_METHOD.into(),
        rules: rules.resolve(),
        baseline: baseline_addr.clone(),
        canary: canary_addr.clone(),
    };
    let meta = metadata(&run_id, t.run.git_sha.as_deref());
    let input = CanaryInput {
        baseline: Some(b),
        canary: Some(c),
        rules,
        record: gating.is_some(),
        baseline_before: before,
        config,
        metadata: meta,
        interrupted,
    };
    report_canary(
        input,
        gating.as_ref(),
        &canary_addr,
        &args.out,
        t.run.history,
        "canary",
        env,
    )
    .await
}

/// Compares `input` with `CompareCanary` on `gating` (here, without one or
/// if it fails), writes the report, shows the history of `canary_name` and
/// the Markdown, and returns the exit code.
pub(crate) async fn report_canary(
    input: CanaryInput,
    gating: Option<&Client>,
    canary_name: &str,
    out: &Path,
    history_rows: u16,
    command: &'static str,
    env: &Environment,
) -> Run<u8> {
    let interrupted = input.interrupted;
    let mut note = None;
    let mut report = None;
    if let Some(g) = gating {
        let request = CompareCanaryRequest {
            baseline: input.baseline.as_ref().map(convert::stats_to_proto),
            canary: input.canary.as_ref().map(convert::stats_to_proto),
            policy: Some(convert::rules_input_to_proto(&input.rules)),
            record: true,
            baseline_before: input.baseline_before.as_ref().map(convert::stats_to_proto),
            config: Some(convert::canary_config_to_proto(&input.config)),
            metadata: Some(convert::metadata_to_proto(&input.metadata)),
            interrupted,
        };
        let r = Retry::default()
            .call(|| {
                let mut g = g.gating();
                let req = request.clone();
                async move { g.compare_canary(Request::new(req)).await }
            })
            .await;
        match r.map(|r| r.into_inner().report) {
            Ok(Some(r)) => report = Some(r),
            Ok(None) => {
                note = Some(
                    "CompareCanary answered no report: this verdict was judged here and not kept."
                        .to_owned(),
                )
            }
            Err(s) => {
                note = Some(format!(
                    "CompareCanary failed ({}): this verdict was judged here and not kept.",
                    status_line(&s)
                ))
            }
        }
    }
    let report = match report {
        Some(r) => r,
        None => convert::canary_to_proto(
            &document::canary_report(input)
                .map_err(|e| Usage(format!("judging the run: {}", e.message())))?,
        ),
    };
    write_json("switchyard.v1.CanaryReport", &report, out)?;
    let (runs, history_note) = match gating {
        Some(g) => history(g, "canary", canary_name, history_rows).await,
        None => (Vec::new(), None),
    };
    let markdown =
        summary::canary_markdown(&report, &runs, join_notes(&[note, history_note]).as_deref());
    finish(
        command,
        &markdown,
        report.verdict.unwrap_or_default(),
        out,
        env,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run judged against another threshold than the one it announced
    /// says both, and why; the same threshold says nothing.
    #[test]
    fn a_threshold_that_moved_is_shown_with_both_values() {
        let announced = pb::GetSmokeThresholdResponse {
            threshold_ms: 400.0,
            tier: "below_0.6".into(),
            source: "fallback".into(),
            ..Default::default()
        };
        let judged = |ms: f64| pb::Budget {
            applied_p95_ms: ms,
            tier: "base".into(),
            source: "prometheus".into(),
            ..Default::default()
        };
        let said = threshold_moved(&announced, Some(&judged(450.0))).unwrap();
        assert!(
            said.contains("400 ms (below_0.6, fallback) when it started, 450 ms (base, prometheus) when it was judged"),
            "{said}"
        );
        assert_eq!(threshold_moved(&announced, Some(&judged(400.0))), None);
    }

    #[test]
    fn durations_take_a_unit_or_mean_seconds() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("1d").unwrap_err().contains("ms, s, m or h"));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("25h").is_err());
        assert!(
            parse_positive_duration("0s")
                .unwrap_err()
                .contains("above zero")
        );
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("NaN").is_err());
        assert!(parse_rate("1e9").is_err());
        assert_eq!(parse_rate("0.5"), Ok(0.5));
        for d in ["30s", "0s", "250ms", "1.5s", "2m"] {
            let parsed = parse_duration(d).unwrap();
            assert_eq!(parse_duration(&show(parsed)), Ok(parsed), "{d}");
        }
        assert_eq!(show(Duration::from_millis(1500)), "1.5s");
    }
}
