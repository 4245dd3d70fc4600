//! OpenFeature's two protocols against the flag service's own evaluation, on
//! loopback, side by side in one run.
//!
//! Starts the release `switchyard` binary twice on the embedded default: one
//! with 100 flags, one with 1 000 (bool, number and string, a third each),
//! each with tenant `t0` overriding one flag in a hundred. Then interleaved
//! rounds, all with 32 requests in flight from `wrk -t2 -c32` (HTTP/1.1, the
//! transport OFREP providers use):
//! - REST `GET /v1/flags/{key}:evaluate?tenantId=t0` (the `EvaluateFlag` RPC);
//! - OFREP `POST /ofrep/v1/evaluate/flags/{key}` with `{"context":
//!   {"tenantId": "t0"}}`;
//! - OFREP bulk `POST /ofrep/v1/evaluate/flags` for t0, 100 and 1 000 flags;
//! - the bulk with `If-None-Match` holding its ETag (a 304 each).
//!
//! Then, over gRPC on the 1 000-flag server (32 calls in flight over 4
//! HTTP/2 connections, interleaved rounds): `EvaluateFlag` of a bool flag for
//! t0 against flagd's `ResolveBoolean` (v2, the providers' RPC mode) of the
//! same flags with the context `{"tenantId": "t0"}`. Last, the OFREP event
//! stream: from a write of t0's override to the `refetchEvaluation` event on
//! t0's stream (100 writes, one at a time).
//!
//! Reports requests/s and p50/p99, and OFREP single's and flagd's throughput
//! as a share of `EvaluateFlag`'s. `SWITCHYARD_BENCH_BIN=<binary>` runs
//! another build.
//!
//! Needs `wrk` (Debian package `wrk`).
//! `cargo bench --bench ofrep [-- SECONDS_PER_ROUND]`

mod common;

use std::{process::Command, time::Instant};

use common::*;
use switchyard::api::flagd::evaluation::v2::{
    ResolveBooleanRequest, service_client::ServiceClient,
};
use switchyard::api::v1::{
    CreateFlagRequest, CreateTenantRequest, EvaluateFlagRequest, Flag, SetTenantOverrideRequest,
    Tenant, evaluate_flag_request,
};
use switchyard::client::{Bearer, Client};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const IN_FLIGHT: usize = 32;

async fn seed(ch: Client, n: usize) {
    ch.clone()
        .tenants()
        .create_tenant(CreateTenantRequest {
            tenant: Some(Tenant {
                id: "t0".into(),
                patterns: vec!["t0.example".into()],
                ..Default::default()
            }),
        })
        .await
        .expect("create tenant");
    let mut flags = ch.flags();
    for i in 0..n {
        flags
            .create_flag(CreateFlagRequest {
                flag: Some(Flag {
                    key: format!("flag-{i:04}"),
                    r#type: mixed_type(i) as i32,
                    default_value: Some(mixed_value(i)),
                    ..Default::default()
                }),
            })
            .await
            .expect("create flag");
    }
    for i in (0..n).step_by(100) {
        flags
            .set_tenant_override(SetTenantOverrideRequest {
                tenant_id: "t0".into(),
                flag_key: format!("flag-{i:04}"),
                value: Some(mixed_value(i + 3)),
                expected_revision: 0,
            })
            .await
            .expect("set override");
    }
}

type Round = (f64, f64, f64);

fn summary(rounds: &[Round]) -> Round {
    let rate = rounds.iter().map(|r| r.0).sum::<f64>() / rounds.len() as f64;
    let p50 = rounds.iter().map(|r| r.1).fold(0.0, f64::max);
    let p99 = rounds.iter().map(|r| r.2).fold(0.0, f64::max);
    (rate, p50, p99)
}

/// The ETag of the bulk answer on `port`.
fn bulk_etag(port: u16, body: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "-D", "-", "-o", "/dev/null", "-X", "POST"])
        .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
        .args(["-H", "Content-Type: application/json", "-d", body])
        .arg(format!("http://127.0.0.1:{port}/ofrep/v1/evaluate/flags"))
        .output()
        .expect("curl runs");
    header_value(&String::from_utf8_lossy(&out.stdout), "etag").expect("an ETag")
}

#[tokio::main]
async fn main() {
    let secs: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10);
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("ofrep needs wrk: apt-get install wrk");
        std::process::exit(2);
    }
    let dir100 = tempfile::tempdir().expect("temp dir");
    let dir1000 = tempfile::tempdir().expect("temp dir");
    let (p100, p1000) = (free_port(), free_port());
    let s100 = spawn(dir100.path(), p100, &[]);
    let s1000 = spawn(dir1000.path(), p1000, &[]);
    seed(connect(p100).await, 100).await;
    seed(connect(p1000).await, 1000).await;

    let context = r#"{"context":{"tenantId":"t0"}}"#;
    let base = format!("http://127.0.0.1:{p1000}");
    let evaluate = format!("{base}/v1/flags/flag-0001:evaluate?tenantId=t0");
    let single = format!("{base}/ofrep/v1/evaluate/flags/flag-0001");
    let bulk = |port: u16| format!("http://127.0.0.1:{port}/ofrep/v1/evaluate/flags");
    let etag = vec![format!("If-None-Match: {}", bulk_etag(p1000, context))];

    // Warm-up, then interleaved rounds.
    wrk_round(&evaluate, 1, IN_FLIGHT);
    wrk_post(&single, 1, IN_FLIGHT, &[], context);
    let (mut rest, mut ofrep, mut b100, mut b1000, mut not_modified) =
        (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..2 {
        rest.push(wrk_round(&evaluate, secs, IN_FLIGHT));
        ofrep.push(wrk_post(&single, secs, IN_FLIGHT, &[], context));
        b100.push(wrk_post(&bulk(p100), secs, IN_FLIGHT, &[], context));
        b1000.push(wrk_post(&bulk(p1000), secs, IN_FLIGHT, &[], context));
        not_modified.push(wrk_post(&bulk(p1000), secs, IN_FLIGHT, &etag, context));
    }
    println!(
        "tenant t0, {IN_FLIGHT} requests in flight (wrk -t2 -c{IN_FLIGHT}, HTTP/1.1), 2 interleaved rounds of {secs} s, client and server on the same 2 cores"
    );
    let (r_rate, r50, r99) = summary(&rest);
    println!(
        "REST GET /v1/flags/{{key}}:evaluate (EvaluateFlag): {r_rate:>7.0} req/s, p50 {r50:.2} ms, p99 {r99:.2} ms (worst round)"
    );
    let (o_rate, o50, o99) = summary(&ofrep);
    println!(
        "OFREP POST /ofrep/v1/evaluate/flags/{{key}}:       {o_rate:>7.0} req/s, p50 {o50:.2} ms, p99 {o99:.2} ms; {:.2} of EvaluateFlag's throughput",
        o_rate / r_rate
    );
    for (name, rounds) in [
        ("OFREP bulk, 100 flags:                   ", &b100),
        ("OFREP bulk, 1 000 flags:                 ", &b1000),
        (
            "OFREP bulk, 1 000 flags, If-None-Match (304):",
            &not_modified,
        ),
    ] {
        let (rate, p50, p99) = summary(rounds);
        println!("{name} {rate:>7.0} req/s, p50 {p50:.2} ms, p99 {p99:.2} ms (worst round)");
    }
    grpc_rounds(p1000, secs).await;
    push_latency(p100).await;
    stop(s100);
    stop(s1000);
}

/// A bool flag of the mixed set (every third).
fn bool_flag(i: usize) -> String {
    format!("flag-{:04}", (i % 333) * 3)
}

/// `EvaluateFlag` against flagd's `ResolveBoolean`, interleaved.
async fn grpc_rounds(port: u16, secs: u64) {
    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(connect(port).await);
    }
    let context: pbjson_types::Struct =
        serde_json::from_value(serde_json::json!({"tenantId": "t0"})).expect("a Struct");
    let evaluate = |secs| {
        let channels = channels.clone();
        closed_loop(IN_FLIGHT, secs, move |w, i| {
            let mut flags = channels[w % channels.len()].flags();
            async move {
                flags
                    .evaluate_flag(EvaluateFlagRequest {
                        flag_key: bool_flag(i),
                        target: Some(evaluate_flag_request::Target::TenantId("t0".into())),
                        ..Default::default()
                    })
                    .await
                    .is_ok()
            }
        })
    };
    let resolve = |secs| {
        let clients: Vec<_> = channels
            .iter()
            .map(|c| ServiceClient::with_interceptor(c.channel(), Bearer::new(TOKEN)))
            .collect();
        let context = context.clone();
        closed_loop(IN_FLIGHT, secs, move |w, i| {
            let mut flagd = clients[w % clients.len()].clone();
            let context = Some(context.clone());
            async move {
                flagd
                    .resolve_boolean(ResolveBooleanRequest {
                        flag_key: bool_flag(i),
                        context,
                    })
                    .await
                    .is_ok()
            }
        })
    };
    evaluate(1).await;
    resolve(1).await;
    let (mut e, mut r) = ((vec![], vec![]), (vec![], vec![]));
    for _ in 0..2 {
        let (rate, lat) = evaluate(secs).await;
        e.0.push(rate);
        e.1.extend(lat);
        let (rate, lat) = resolve(secs).await;
        r.0.push(rate);
        r.1.extend(lat);
    }
    let show = |(rates, mut lat): (Vec<f64>, Vec<u32>)| {
        lat.sort_unstable();
        let at = |q: f64| f64::from(lat[((lat.len() - 1) as f64 * q).round() as usize]) / 1000.0;
        (
            rates.iter().sum::<f64>() / rates.len() as f64,
            at(0.5),
            at(0.99),
        )
    };
    let (e_rate, e50, e99) = show(e);
    let (r_rate, r50, r99) = show(r);
    println!(
        "gRPC, {IN_FLIGHT} calls in flight over 4 connections, 2 interleaved rounds of {secs} s"
    );
    println!(
        "switchyard.v1.FlagService/EvaluateFlag:        {e_rate:>7.0} calls/s, p50 {e50:.2} ms, p99 {e99:.2} ms"
    );
    println!(
        "flagd.evaluation.v2.Service/ResolveBoolean:    {r_rate:>7.0} calls/s, p50 {r50:.2} ms, p99 {r99:.2} ms; {:.2} of EvaluateFlag's throughput",
        r_rate / e_rate
    );
}

/// From a write of t0's override to its `refetchEvaluation` on t0's OFREP
/// event stream.
async fn push_latency(port: u16) {
    const WRITES: usize = 100;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream
        .write_all(
            format!(
                "GET /ofrep/v1/events?tenantId=t0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                 Authorization: Bearer {TOKEN}\r\nAccept: text/event-stream\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .expect("request");
    let mut lines = BufReader::new(stream).lines();
    let (tx, mut ids) = tokio::sync::mpsc::unbounded_channel::<(i64, Instant)>();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            // Chunked framing lines are not `id: ` lines.
            if let Some(id) = line
                .strip_prefix("id: ")
                .and_then(|v| v.trim().parse().ok())
            {
                let _ = tx.send((id, Instant::now()));
            }
        }
    });
    let client = connect(port).await;
    let mut flags = client.flags();
    let mut lat = Vec::new();
    for n in 0..WRITES {
        let sent = Instant::now();
        let revision = flags
            .set_tenant_override(SetTenantOverrideRequest {
                tenant_id: "t0".into(),
                flag_key: "flag-0001".into(),
                value: Some(mixed_value(n * 3 + 1)),
                expected_revision: 0,
            })
            .await
            .expect("set override")
            .into_inner()
            .revision;
        loop {
            let (id, at) = tokio::time::timeout(std::time::Duration::from_secs(10), ids.recv())
                .await
                .expect("an event within 10 s")
                .expect("the stream goes on");
            if id >= revision {
                lat.push(at.duration_since(sent).as_micros() as i64);
                break;
            }
        }
    }
    lat.sort_unstable();
    println!(
        "OFREP event stream, write of t0's override -> refetchEvaluation ({WRITES} writes, one at a time): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct_ms(&lat, 0.5),
        pct_ms(&lat, 0.99),
        lat.last().copied().unwrap_or_default() as f64 / 1000.0
    );
}
