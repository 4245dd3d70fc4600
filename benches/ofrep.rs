//! OFREP against the flag service's own evaluation, on loopback, side by side
//! in one run.
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
//! Reports requests/s and p50/p99, and OFREP single's throughput as a share of
//! `EvaluateFlag`'s. `SWITCHYARD_BENCH_BIN=<binary>` runs another build.
//!
//! Needs `wrk` (Debian package `wrk`).
//! `cargo bench --bench ofrep [-- SECONDS_PER_ROUND]`

mod common;

use std::process::Command;

use common::*;
use switchyard::api::v1::{
    CreateFlagRequest, CreateTenantRequest, Flag, SetTenantOverrideRequest, Tenant,
};
use switchyard::client::Client;

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
    stop(s100);
    stop(s1000);
}
