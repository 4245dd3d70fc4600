//! Unary RPC throughput and latency over gRPC on loopback, against
//! `grpc.health.v1.Health/Check` (the cheapest unary call) on the same server
//! and client.
//!
//! Starts the release `switchyard` binary on the embedded default, creates
//! 1 000 tenants (one exact and one suffix pattern each), 10 flags and an
//! override per tenant, then runs rounds of
//! each call, interleaved (health, resolve, health, resolve, ...), each for a
//! fixed time with a fixed number of calls in flight over 4 HTTP/2
//! connections. Reports calls/s and p50/p99 latency per call, and the ratio of
//! each call's throughput to health's.
//!
//! Calls: `ResolveTenant` (half exact, half suffix matches) and `EvaluateFlag`
//! (by tenant id).
//!
//! `cargo bench --bench grpc_unary [-- SECONDS_PER_ROUND]`

mod common;

use common::*;

use switchyard::api::health::HealthCheckRequest;
use switchyard::api::v1::{EvaluateFlagRequest, ResolveTenantRequest, evaluate_flag_request};
use switchyard::client::Client;

const IN_FLIGHT: usize = 32;
const CONNECTIONS: usize = 4;
const TENANTS: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Call {
    Health,
    Resolve,
    Evaluate,
}

async fn one(call: Call, ch: Client, i: usize) -> bool {
    match call {
        Call::Health => ch
            .health()
            .check(HealthCheckRequest::default())
            .await
            .is_ok(),
        Call::Resolve => {
            let key = if i.is_multiple_of(2) {
                format!("t{}.example", i % TENANTS)
            } else {
                format!("api.t{}.example", i % TENANTS)
            };
            ch.tenants()
                .resolve_tenant(ResolveTenantRequest { key })
                .await
                .is_ok()
        }
        Call::Evaluate => ch
            .flags()
            .evaluate_flag(EvaluateFlagRequest {
                flag_key: format!("flag{}", i % 10),
                target: Some(evaluate_flag_request::Target::TenantId(format!(
                    "t{}",
                    i % TENANTS
                ))),
            })
            .await
            .is_ok(),
    }
}

/// Runs `call` for `secs` with IN_FLIGHT workers over `channels`; returns
/// (calls/s, latencies in µs).
async fn round(call: Call, channels: &[Client], secs: u64) -> (f64, Vec<u32>) {
    let channels = channels.to_vec();
    closed_loop(IN_FLIGHT, secs, move |w, i| {
        one(call, channels[w % channels.len()].clone(), i)
    })
    .await
}

fn pct(sorted: &[u32], q: f64) -> f64 {
    f64::from(sorted[((sorted.len() - 1) as f64 * q).round() as usize]) / 1000.0
}

#[tokio::main]
async fn main() {
    let secs: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let server = spawn(dir.path(), port, &[]);
    let mut channels = Vec::new();
    for _ in 0..CONNECTIONS {
        channels.push(connect(port).await);
    }
    // 10 flags; every tenant overrides one of them.
    seed_tenants_and_flags(&channels[0], TENANTS, 10, |i| {
        vec![format!("t{i}.example"), format!("*.t{i}.example")]
    })
    .await;
    // Warm-up.
    for call in [Call::Health, Call::Resolve, Call::Evaluate] {
        round(call, &channels, 1).await;
    }

    let mut results: Vec<(Call, f64, Vec<u32>)> = Vec::new();
    for _ in 0..2 {
        for call in [Call::Health, Call::Resolve, Call::Evaluate] {
            let (rate, lat) = round(call, &channels, secs).await;
            results.push((call, rate, lat));
        }
    }
    let summary = |call: Call| {
        let mut lat = Vec::new();
        let mut rates = Vec::new();
        for (c, r, l) in &results {
            if *c == call {
                rates.push(*r);
                lat.extend_from_slice(l);
            }
        }
        lat.sort_unstable();
        (
            rates.iter().sum::<f64>() / rates.len() as f64,
            pct(&lat, 0.5),
            pct(&lat, 0.99),
        )
    };
    let (h_rate, h50, h99) = summary(Call::Health);
    println!(
        "{IN_FLIGHT} calls in flight over {CONNECTIONS} connections, 2 interleaved rounds of {secs} s each, client and server on the same 2 cores"
    );
    println!(
        "grpc.health.v1.Health/Check:            {h_rate:>8.0} calls/s, p50 {h50:.2} ms, p99 {h99:.2} ms"
    );
    let (r_rate, r50, r99) = summary(Call::Resolve);
    println!(
        "switchyard.v1.TenantService/ResolveTenant: {r_rate:>6.0} calls/s, p50 {r50:.2} ms, p99 {r99:.2} ms ({TENANTS} tenants); {:.2} of health's throughput",
        r_rate / h_rate
    );
    let (e_rate, e50, e99) = summary(Call::Evaluate);
    println!(
        "switchyard.v1.FlagService/EvaluateFlag:     {e_rate:>6.0} calls/s, p50 {e50:.2} ms, p99 {e99:.2} ms (10 flags, {TENANTS} tenants with overrides); {:.2} of health's throughput",
        e_rate / h_rate
    );
    stop(server);
}
