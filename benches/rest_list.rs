//! `GET /admin/feature-flags` over REST (load from `wrk`) against the same
//! data through gRPC `ListFlags` (load from a tonic client), on loopback.
//!
//! Starts the release `switchyard` binary on the embedded default with 1 000
//! flags (bool, number and string, a third each), a tenant overriding 100 of
//! them and an env override, and a second one with 5 flags, then runs
//! interleaved rounds of the tenant's effective values:
//! - gRPC `ListFlags`, all 1 000 in one response;
//! - REST `GET /admin/feature-flags?tenant=t0`, the same 1 000;
//! - the same GET with `If-None-Match` holding the answer's `ETag` (a 304
//!   each), when the server answers with one;
//! - the same GET against the 5-flag server;
//! - the 1 000-flag GET with `Accept-Encoding: gzip` (compressed answers),
//!   beside the plain one: requests/s and the bytes each answer takes on the
//!   wire.
//!
//! All use 32 requests in flight: `wrk -t2 -c32` (32 HTTP/1.1 connections)
//! and 32 tonic workers over 4 HTTP/2 connections. Reports requests/s,
//! p50/p99 and the response size. `SWITCHYARD_BENCH_BIN=<older binary>` runs
//! the same rounds against another build.
//!
//! Needs `wrk` (Debian package `wrk`).
//! `cargo bench --bench rest_list [-- SECONDS_PER_ROUND]`

mod common;

use std::{
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use common::*;
use switchyard::api::v1::{
    CreateFlagRequest, CreateTenantRequest, Flag, ListFlagsRequest, SetTenantOverrideRequest,
    Tenant,
};
use switchyard::client::Client;

const FLAGS: usize = 1000;
const IN_FLIGHT: usize = 32;
const CONNECTIONS: usize = 4;

async fn seed(ch: Client, flags_n: usize) {
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
    for i in 0..flags_n {
        flags
            .create_flag(CreateFlagRequest {
                flag: Some(Flag {
                    key: format!("flag-{i:04}"),
                    r#type: mixed_type(i) as i32,
                    description: format!("Benchmark flag {i}"),
                    default_value: Some(mixed_value(i)),
                    ..Default::default()
                }),
            })
            .await
            .expect("create flag");
    }
    for i in (0..flags_n).step_by((flags_n / 100).max(1)) {
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

/// ListFlags for `secs` with IN_FLIGHT workers; returns (requests/s, sorted
/// latencies in µs).
async fn grpc_round(channels: &[Client], secs: u64) -> (f64, Vec<i64>) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let failures = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for w in 0..IN_FLIGHT {
        let mut client = channels[w % channels.len()]
            .flags()
            .max_decoding_message_size(16 * 1024 * 1024);
        let failures = failures.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(100_000);
            while Instant::now() < deadline {
                let t = Instant::now();
                let ok = client
                    .list_flags(ListFlagsRequest {
                        tenant: "t0".into(),
                        page_size: FLAGS as i32,
                        ..Default::default()
                    })
                    .await
                    .is_ok_and(|r| r.get_ref().flags.len() == FLAGS);
                if !ok {
                    failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                lat.push(t.elapsed().as_micros() as i64);
            }
            lat
        }));
    }
    let start = Instant::now();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("worker"));
    }
    let elapsed = start.elapsed().as_secs_f64();
    let failed = failures.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(failed, 0, "{failed} ListFlags calls failed");
    all.sort_unstable();
    (all.len() as f64 / elapsed, all)
}

#[tokio::main]
async fn main() {
    let secs: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10);
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("rest_list needs wrk: apt-get install wrk");
        std::process::exit(2);
    }
    let env = [("SWITCHYARD_FLAG_FLAG_0001", "99".to_owned())];
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let server = spawn(dir.path(), port, &env);
    let small_dir = tempfile::tempdir().expect("temp dir");
    let small_port = free_port();
    let small = spawn(small_dir.path(), small_port, &env);
    let mut channels = Vec::new();
    for _ in 0..CONNECTIONS {
        channels.push(connect(port).await);
    }
    seed(channels[0].clone(), FLAGS).await;
    seed(connect(small_port).await, 5).await;

    let path = "/admin/feature-flags?tenant=t0";
    let url = format!("http://127.0.0.1:{port}{path}");
    let small_url = format!("http://127.0.0.1:{small_port}{path}");
    let (head, rest_body) = http_get_with(port, path, &[]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let array: serde_json::Value = serde_json::from_slice(&rest_body).expect("JSON");
    let array = array.as_array().expect("a bare array");
    assert_eq!(array.len(), FLAGS);
    let sources = |s: &str| array.iter().filter(|f| f["source"] == s).count();
    let small_body = http_get(small_port, path);
    // The 304 round, when the server tags its answers.
    let conditional = header_value(&head, "etag").map(|etag| {
        let h = vec![format!("If-None-Match: {etag}")];
        let (head, _) = http_get_with(port, path, &h);
        assert!(head.starts_with("HTTP/1.1 304"), "{head}");
        h
    });
    let gzip = vec!["Accept-Encoding: gzip".to_owned()];
    let (plain_head, plain_wire) = http_wire_bytes(port, path, &[]);
    let (gzip_head, gzip_wire) = http_wire_bytes(port, path, &gzip);
    assert_eq!(header_value(&plain_head, "content-encoding"), None);
    assert_eq!(
        header_value(&gzip_head, "content-encoding").as_deref(),
        Some("gzip"),
        "{gzip_head}"
    );
    let grpc_bytes = {
        use prost::Message;
        channels[0]
            .clone()
            .flags()
            .list_flags(ListFlagsRequest {
                tenant: "t0".into(),
                page_size: FLAGS as i32,
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner()
            .encoded_len()
    };

    // Warm-up, then interleaved rounds.
    grpc_round(&channels, 1).await;
    wrk_round(&url, 1, IN_FLIGHT);
    wrk_round(&small_url, 1, IN_FLIGHT);
    let mut grpc = Vec::new();
    let mut rest = Vec::new();
    let mut not_modified = Vec::new();
    let mut five = Vec::new();
    let mut gzipped = Vec::new();
    for _ in 0..2 {
        grpc.push(grpc_round(&channels, secs).await);
        rest.push(wrk_round(&url, secs, IN_FLIGHT));
        if let Some(h) = &conditional {
            not_modified.push(wrk_round_with(&url, secs, IN_FLIGHT, h));
        }
        five.push(wrk_round(&small_url, secs, IN_FLIGHT));
        gzipped.push(wrk_round_with(&url, secs, IN_FLIGHT, &gzip));
    }
    let mut lat: Vec<i64> = grpc.iter().flat_map(|(_, l)| l.iter().copied()).collect();
    lat.sort_unstable();
    let g_rate = grpc.iter().map(|(r, _)| r).sum::<f64>() / grpc.len() as f64;
    type Round = (f64, f64, f64);
    let summary = |rounds: &[Round]| {
        let rate = rounds.iter().map(|(r, _, _)| r).sum::<f64>() / rounds.len() as f64;
        let p50 = rounds.iter().map(|(_, p, _)| *p).fold(0.0, f64::max);
        let p99 = rounds.iter().map(|(_, _, p)| *p).fold(0.0, f64::max);
        (rate, p50, p99)
    };
    let (r_rate, r50, r99) = summary(&rest);
    let (f_rate, f50, f99) = summary(&five);
    println!(
        "{FLAGS} flags for tenant t0 ({} tenant, {} env, {} default), {IN_FLIGHT} requests in flight, 2 interleaved rounds of {secs} s, client and server on the same 2 cores",
        sources("tenant"),
        sources("env"),
        sources("default"),
    );
    println!(
        "gRPC ListFlags (page_size {FLAGS}):            {g_rate:>7.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {grpc_bytes} bytes of protobuf",
        pct_ms(&lat, 0.5),
        pct_ms(&lat, 0.99)
    );
    println!(
        "REST GET /admin/feature-flags?tenant=t0 (wrk): {r_rate:>7.0} req/s, p50 {r50:.2} ms, p99 {r99:.2} ms (worst round), {} bytes of JSON; {:.2} of gRPC's throughput",
        rest_body.len(),
        r_rate / g_rate
    );
    if !not_modified.is_empty() {
        let (n_rate, n50, n99) = summary(&not_modified);
        println!(
            "REST, If-None-Match: the ETag (304):          {n_rate:>7.0} req/s, p50 {n50:.2} ms, p99 {n99:.2} ms (worst round); {:.2} of the 5-flag listing's throughput",
            n_rate / f_rate
        );
    } else {
        println!("REST, If-None-Match: no ETag in the answer, no 304 round");
    }
    println!(
        "REST, the same GET with 5 flags:              {f_rate:>7.0} req/s, p50 {f50:.2} ms, p99 {f99:.2} ms (worst round), {} bytes of JSON",
        small_body.len()
    );
    let (z_rate, z50, z99) = summary(&gzipped);
    println!(
        "REST, Accept-Encoding: gzip, 1 000 flags:     {z_rate:>7.0} req/s, p50 {z50:.2} ms, p99 {z99:.2} ms (worst round), {gzip_wire} bytes on the wire against {plain_wire} plain ({:.1}x smaller); {:.2} of the plain GET's throughput",
        plain_wire as f64 / gzip_wire as f64,
        z_rate / r_rate
    );
    stop(server);
    stop(small);
}
