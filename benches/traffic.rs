//! The traffic generator of `switchyard smoke` measured against itself and
//! against an independent tool, client and server on this machine.
//!
//! 1. **Rate accuracy.** `switchyard smoke` at rising target rates
//!    (EvaluateFlag, 10 s each after 2 s of warm-up): the achieved rate
//!    (calls ended per second, from the first call's intended send time to
//!    the last answer), errors, p50 and p99. The
//!    highest rate whose achieved rate is within 1 % of the target with no
//!    error is the rate this machine sustains.
//! 2. **Agreement with h2load** (Debian `nghttp2-client`): the same unary
//!    call (a framed gRPC `EvaluateFlagRequest` as h2load's POST body), the
//!    same rate, duration, warm-up and connections (one stream at a time on
//!    each, paced by `--rps`), alternating two rounds each; p50 and p95 of
//!    both, h2load's from its `--log-file` (nearest rank).
//! 3. **The user's own targets**, the same way: `--http` (HTTP/1.1, against
//!    `h2load --h1`) and `--grpc` through server reflection (against h2load's
//!    framed POST), each at the comparison rate: the achieved rate, p50, p95.
//!    Switchyard's own endpoints stand in for the user's service, so both
//!    targets do the same work: `GET /v1/flags/smoke:evaluate` and
//!    `switchyard.v1.FlagService/EvaluateFlag`.
//!
//! Starts the release `switchyard` binary on the embedded default.
//!
//! `cargo bench --bench traffic [-- RATE ...]` (default rates 1000 to
//! 32000; the comparisons run at 1000/s)

mod common;

use std::{path::Path, process::Command};

use common::*;
use prost::Message;
use serde_json::Value as Json;
use switchyard::api::v1::EvaluateFlagRequest;

const SECS: u64 = 10;
const WARMUP: u64 = 2;
const CONNECTIONS: usize = 2;
const COMPARE_RATE: u64 = 1000;
/// The REST route of EvaluateFlag, the `--http` target.
const EVALUATE_PATH: &str = "/v1/flags/smoke:evaluate";

/// One `switchyard smoke` run; returns its summary.
fn smoke(dir: &Path, port: u16, rate: u64, secs: u64, extra: &[&str]) -> Json {
    let out = dir.join(format!("smoke-{rate}.json"));
    let status = Command::new(BIN)
        .current_dir(dir)
        .env("SWITCHYARD_TOKEN", TOKEN)
        .env("CI", "true")
        .args([
            "smoke",
            "--target",
            &format!("127.0.0.1:{port}"),
            "--rate",
            &rate.to_string(),
            "--duration",
            &format!("{secs}s"),
            "--warmup",
            &format!("{WARMUP}s"),
            "--connections",
            &CONNECTIONS.to_string(),
            "--history",
            "0",
            "--out",
            out.to_str().expect("a UTF-8 path"),
        ])
        .args(extra)
        .stdout(std::process::Stdio::null())
        .output()
        .expect("switchyard smoke runs");
    assert!(
        matches!(status.status.code(), Some(0 | 1 | 3)),
        "switchyard smoke could not run: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(&out).expect("the summary")).expect("JSON")
}

fn f(doc: &Json, path: &[&str]) -> f64 {
    path.iter()
        .fold(doc, |v, k| &v[*k])
        .as_f64()
        .unwrap_or(f64::NAN)
}

/// A gRPC message frame: no compression, length, bytes.
fn grpc_frame(m: &impl Message) -> Vec<u8> {
    let body = m.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(body.len()).expect("small").to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// What h2load sends: HTTP/1.1 `GET` of a path, or EvaluateFlag over
/// HTTP/2 as a framed gRPC POST.
#[derive(Clone, Copy)]
enum H2Target {
    Http1Get(&'static str),
    GrpcEvaluate,
}

/// What one run achieved: calls ended per second, p50 and p95 in ms, and
/// the calls measured.
struct Measured {
    rate: f64,
    p50: f64,
    p95: f64,
    calls: f64,
}

/// One h2load run at `rate` calls/s, or None when h2load is not installed.
/// The rate is h2load's (requests over the measured phase); the
/// percentiles are those of the calls in its `--log-file`.
fn h2load(dir: &Path, port: u16, rate: u64, target: H2Target) -> Option<Measured> {
    let log = dir.join("h2load.tsv");
    let _ = std::fs::remove_file(&log);
    let rps = (rate / CONNECTIONS as u64).to_string();
    let (secs, warmup, connections) = (
        SECS.to_string(),
        WARMUP.to_string(),
        CONNECTIONS.to_string(),
    );
    let authorization = format!("authorization: Bearer {TOKEN}");
    let mut args: Vec<String> = [
        "-c",
        &connections,
        // One stream at a time per connection: with more, h2load's --rps
        // pacing itself added about 10 ms to every call here, even at
        // 100 calls/s.
        "-m",
        "1",
        "--rps",
        &rps,
        "-D",
        &secs,
        "--warm-up-time",
        &warmup,
        "-H",
        &authorization,
        "--log-file",
        log.to_str()?,
    ]
    .iter()
    .map(|a| (*a).to_owned())
    .collect();
    match target {
        H2Target::Http1Get(path) => {
            args.extend(["--h1".into(), format!("http://127.0.0.1:{port}{path}")]);
        }
        H2Target::GrpcEvaluate => {
            let body = dir.join("evaluate.bin");
            std::fs::write(
                &body,
                grpc_frame(&EvaluateFlagRequest {
                    flag_key: "smoke".into(),
                    target: None,
                    ..Default::default()
                }),
            )
            .expect("write the body");
            args.extend([
                "-d".into(),
                body.to_str()?.to_owned(),
                "-H".into(),
                "content-type: application/grpc".into(),
                "-H".into(),
                "te: trailers".into(),
                format!("http://127.0.0.1:{port}/switchyard.v1.FlagService/EvaluateFlag"),
            ]);
        }
    }
    let out = Command::new("h2load").args(&args).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "h2load failed: {text}");
    // "finished in 10.00s, 999.90 req/s, 80.11KB/s"
    let achieved = text
        .lines()
        .find_map(|l| l.strip_prefix("finished in "))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|r| r.strip_suffix(" req/s"))
        .and_then(|r| r.parse().ok())
        .unwrap_or(f64::NAN);
    // Columns: start (µs since the epoch), status, duration (µs); the
    // measured phase's calls only.
    let mut us: Vec<i64> = std::fs::read_to_string(&log)
        .expect("h2load's log")
        .lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            (cols.get(1) == Some(&"200")).then(|| cols.get(2)?.parse().ok())?
        })
        .collect();
    us.sort_unstable();
    Some(Measured {
        rate: achieved,
        p50: pct_ms(&us, 0.50),
        p95: pct_ms(&us, 0.95),
        calls: us.len() as f64,
    })
}

/// What a `switchyard smoke` summary says it achieved.
fn measured(s: &Json) -> Measured {
    Measured {
        rate: f(s, &["results", "rps"]),
        p50: f(s, &["results", "latency_ms", "p(50)"]),
        p95: f(s, &["results", "latency_ms", "p(95)"]),
        calls: f(s, &["results", "count"]),
    }
}

fn row(target: &str, tool: &str, m: Option<Measured>) {
    match m {
        Some(m) => println!(
            "{target:>10} {tool:>16} {:>10.1} {:>9.3} {:>9.3} {:>8}",
            m.rate, m.p50, m.p95, m.calls
        ),
        None => println!("{target:>10} {tool:>16} not installed (apt-get install nghttp2-client)"),
    }
}

fn header() {
    println!(
        "{:>10} {:>16} {:>10} {:>9} {:>9} {:>8}",
        "target", "tool", "achieved", "p50 ms", "p95 ms", "calls"
    );
}

fn main() {
    let rates: Vec<u64> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .filter_map(|a| a.parse().ok())
        .collect();
    let rates = if rates.is_empty() {
        vec![1000, 2000, 4000, 8000, 12000, 16000, 24000, 32000]
    } else {
        rates
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let port = free_port();
    let server = spawn(dir.path(), port, &[]);
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    rt.block_on(connect(port));
    // The smoke flag, and a short first run that warms the server.
    smoke(dir.path(), port, 100, 1, &["--setup"]);

    println!(
        "rate accuracy: switchyard smoke, EvaluateFlag, {SECS} s after {WARMUP} s of warm-up, {CONNECTIONS} connections"
    );
    println!(
        "{:>8} {:>10} {:>8} {:>8} {:>9} {:>9}",
        "target", "achieved", "error", "errors", "p50 ms", "p99 ms"
    );
    let mut sustained = None;
    for &rate in &rates {
        let s = smoke(dir.path(), port, rate, SECS, &["--min-requests", "0"]);
        let errors = f(&s, &["results", "errors"]);
        // Calls ended per second, from the first call's intended send time
        // to the last answer: a schedule that falls behind stretches it.
        let achieved = f(&s, &["results", "rps"]);
        let off = (achieved - rate as f64) / rate as f64;
        println!(
            "{rate:>8} {achieved:>10.1} {:>7.2}% {errors:>8} {:>9.3} {:>9.3}",
            off * 100.0,
            f(&s, &["results", "latency_ms", "p(50)"]),
            f(&s, &["results", "latency_ms", "p(99)"]),
        );
        if errors == 0.0 && off.abs() <= 0.01 {
            sustained = Some(rate);
        }
    }
    match sustained {
        Some(r) => println!("highest rate within 1 % with no error: {r}/s"),
        None => println!("no rate was within 1 % with no error"),
    }

    println!(
        "\nagreement: EvaluateFlag at {COMPARE_RATE}/s for {SECS} s after {WARMUP} s, {CONNECTIONS} connections, two rounds each, alternating"
    );
    header();
    for _ in 0..2 {
        let s = smoke(dir.path(), port, COMPARE_RATE, SECS, &[]);
        row("gRPC", "switchyard smoke", Some(measured(&s)));
        let m = h2load(dir.path(), port, COMPARE_RATE, H2Target::GrpcEvaluate);
        row("gRPC", "h2load", m);
    }

    println!(
        "\nthe user's own targets at {COMPARE_RATE}/s for {SECS} s after {WARMUP} s, {CONNECTIONS} connections, two rounds each, alternating"
    );
    println!("  --http 'GET {EVALUATE_PATH}' (HTTP/1.1) against h2load --h1");
    println!(
        "  --grpc switchyard.v1.FlagService/EvaluateFlag (through server reflection) against h2load's framed POST"
    );
    header();
    let gating = format!("127.0.0.1:{port}");
    let authorization = format!("authorization: Bearer {TOKEN}");
    let own = |extra: &[&str]| {
        let mut args = vec!["--gating", &gating, "--header", &authorization];
        args.extend_from_slice(extra);
        smoke(dir.path(), port, COMPARE_RATE, SECS, &args)
    };
    for _ in 0..2 {
        let s = own(&["--http", &format!("GET {EVALUATE_PATH}")]);
        row("--http", "switchyard smoke", Some(measured(&s)));
        let m = h2load(
            dir.path(),
            port,
            COMPARE_RATE,
            H2Target::Http1Get(EVALUATE_PATH),
        );
        row("--http", "h2load --h1", m);
        let s = own(&[
            "--grpc",
            "switchyard.v1.FlagService/EvaluateFlag",
            "--data",
            r#"{"flagKey": "smoke"}"#,
        ]);
        row("--grpc", "switchyard smoke", Some(measured(&s)));
        let m = h2load(dir.path(), port, COMPARE_RATE, H2Target::GrpcEvaluate);
        row("--grpc", "h2load", m);
    }
    stop(server);
}
