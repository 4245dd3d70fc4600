//! Unary RPC throughput and latency over gRPC on loopback, against
//! `grpc.health.v1.Health/Check` (the cheapest unary call) on the same server
//! and client.
//!
//! Starts the release `switchyard` binary on the embedded default, creates
//! 1 000 tenants (one exact and one suffix pattern each), 10 flags and an
//! override per tenant, then runs rounds of
//! each call, interleaved (health, resolve, health, resolve, ...), each for a
//! fixed time with a fixed number of calls in flight over 4 HTTP/2
//! connections. Reports calls/s, p50/p99 latency and the server's CPU time per
//! call (user + system, from `/proc`; steadier than throughput on a machine
//! the client shares), and the ratio of each call's throughput to health's.
//!
//! Calls: `ResolveTenant` (half exact, half suffix matches), `EvaluateFlag`
//! (by tenant id) and `EvaluateFlag` of a flag whose rule has five clauses
//! and a `fractional` split, in a context of five attributes (`targeted`).
//!
//! `cargo bench --bench grpc_unary [-- SECONDS_PER_ROUND]` (`GRPC_UNARY_ROUNDS`,
//! default 2: how many interleaved rounds of each call).
//!
//! `GRPC_UNARY_ONLY=health|resolve|evaluate|targeted` runs one round of that call alone,
//! without warm-up, and prints how many calls it made (`idle`: no calls, the
//! same time): for a profiler around
//! the server (`scripts/unary-cost.sh` counts its instructions and
//! allocations per call under callgrind).

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
    Targeted,
}

const ALL: [Call; 4] = [Call::Health, Call::Resolve, Call::Evaluate, Call::Targeted];

/// The rule of the `targeted` flag: five clauses, then a split.
fn rule() -> serde_json::Value {
    serde_json::json!({"if": [
        {"and": [
            {"==": [{"var": "country"}, "NO"]},
            {"in": [{"var": "plan"}, ["pro", "enterprise"]]},
            {"ends_with": [{"var": "email"}, "@example.com"]},
            {"sem_ver": [{"var": "version"}, ">", "1.9.9"]},
            {"in": [{"var": "tenantId"}, ["t1", "t2", "t3"]]}
        ]},
        {"fractional": [["on", 50], ["off", 50]]},
        "off"
    ]})
}

fn targeted_request(i: usize) -> EvaluateFlagRequest {
    let context = serde_json::json!({"targetingKey": format!("user-{i}"), "country": "NO",
        "plan": "pro", "email": format!("u{i}@example.com"), "version": "2.1.0"});
    EvaluateFlagRequest {
        flag_key: "targeted".into(),
        target: Some(evaluate_flag_request::Target::TenantId(format!(
            "t{}",
            1 + i % 3
        ))),
        context: Some(switchyard::grpc::flag::to_struct(&context)),
        explain: false,
    }
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
                ..Default::default()
            })
            .await
            .is_ok(),
        Call::Targeted => ch.flags().evaluate_flag(targeted_request(i)).await.is_ok(),
    }
}

/// One round of one call.
struct Round {
    call: Call,
    /// Calls per second.
    rate: f64,
    /// The server's CPU time per call, in µs.
    cpu_us: f64,
    /// Every call's latency, in µs.
    latencies: Vec<u32>,
}

/// Runs `call` for `secs` with IN_FLIGHT workers over `channels` against the
/// server `pid`.
async fn round(call: Call, channels: &[Client], secs: u64, pid: &str) -> Round {
    let channels = channels.to_vec();
    let cpu = cpu_ms(pid);
    let (rate, latencies) = closed_loop(IN_FLIGHT, secs, move |w, i| {
        one(call, channels[w % channels.len()].clone(), i)
    })
    .await;
    let calls = latencies.len().max(1) as f64;
    Round {
        call,
        rate,
        cpu_us: (cpu_ms(pid) - cpu) * 1000.0 / calls,
        latencies,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
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
    let pid = server.id().to_string();
    let mut channels = Vec::new();
    for _ in 0..CONNECTIONS {
        channels.push(connect(port).await);
    }
    // 10 flags; every tenant overrides one of them.
    seed_tenants_and_flags(&channels[0], TENANTS, 10, |i| {
        vec![format!("t{i}.example"), format!("*.t{i}.example")]
    })
    .await;
    let file = serde_json::json!({"flags": {"targeted": {"state": "ENABLED",
        "variants": {"on": true, "off": false}, "defaultVariant": "off", "targeting": rule()}}});
    channels[0]
        .flags()
        .import_flags(switchyard::api::v1::ImportFlagsRequest {
            configuration: Some(switchyard::grpc::flag::to_struct(&file)),
            ..Default::default()
        })
        .await
        .expect("the targeted flag is imported");
    if let Ok(only) = std::env::var("GRPC_UNARY_ONLY") {
        if only == "idle" {
            // What the server does in that time without calls (its timers).
            tokio::time::sleep(std::time::Duration::from_secs(secs)).await;
            println!("idle: 0 calls in {secs} s");
            stop(server);
            return;
        }
        let call = match only.as_str() {
            "health" => Call::Health,
            "resolve" => Call::Resolve,
            "evaluate" => Call::Evaluate,
            "targeted" => Call::Targeted,
            other => panic!("GRPC_UNARY_ONLY={other}: health, resolve, evaluate or targeted"),
        };
        let r = round(call, &channels, secs, &pid).await;
        println!("{only}: {} calls in {secs} s", r.latencies.len());
        stop(server);
        return;
    }
    // Warm-up.
    for call in ALL {
        round(call, &channels, 1, &pid).await;
    }

    let rounds: usize = std::env::var("GRPC_UNARY_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let mut results: Vec<Round> = Vec::new();
    for _ in 0..rounds {
        for call in ALL {
            results.push(round(call, &channels, secs, &pid).await);
        }
    }
    // Per call: mean calls/s, p50 and p99 over every round's latencies, and
    // the median of the rounds' CPU per call.
    let summary = |call: Call| {
        let mine: Vec<&Round> = results.iter().filter(|r| r.call == call).collect();
        let mut lat: Vec<u32> = mine
            .iter()
            .flat_map(|r| r.latencies.iter().copied())
            .collect();
        lat.sort_unstable();
        (
            mine.iter().map(|r| r.rate).sum::<f64>() / mine.len() as f64,
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            median(mine.iter().map(|r| r.cpu_us).collect()),
        )
    };
    let (h_rate, h50, h99, h_cpu) = summary(Call::Health);
    println!(
        "{IN_FLIGHT} calls in flight over {CONNECTIONS} connections, {rounds} interleaved rounds of {secs} s each, client and server on the same 2 cores"
    );
    println!(
        "grpc.health.v1.Health/Check:               {h_rate:>6.0} calls/s, p50 {h50:.2} ms, p99 {h99:.2} ms, server CPU {h_cpu:.1} µs/call"
    );
    let (r_rate, r50, r99, r_cpu) = summary(Call::Resolve);
    println!(
        "switchyard.v1.TenantService/ResolveTenant: {r_rate:>6.0} calls/s, p50 {r50:.2} ms, p99 {r99:.2} ms, server CPU {r_cpu:.1} µs/call ({TENANTS} tenants); {:.2} of health's throughput, {:+.1} µs/call",
        r_rate / h_rate,
        r_cpu - h_cpu
    );
    let (e_rate, e50, e99, e_cpu) = summary(Call::Evaluate);
    println!(
        "switchyard.v1.FlagService/EvaluateFlag:    {e_rate:>6.0} calls/s, p50 {e50:.2} ms, p99 {e99:.2} ms, server CPU {e_cpu:.1} µs/call (10 flags, {TENANTS} tenants with overrides); {:.2} of health's throughput, {:+.1} µs/call",
        e_rate / h_rate,
        e_cpu - h_cpu
    );
    let (t_rate, t50, t99, t_cpu) = summary(Call::Targeted);
    println!(
        "EvaluateFlag, five clauses + fractional:   {t_rate:>6.0} calls/s, p50 {t50:.2} ms, p99 {t99:.2} ms, server CPU {t_cpu:.1} µs/call (a context of five attributes); {:.2} of health's throughput (goal >= 0.85), {:+.1} µs/call",
        t_rate / h_rate,
        t_cpu - h_cpu
    );
    stop(server);
}
