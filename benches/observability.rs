//! What observability costs, side by side in one run: two release servers over
//! the same data, one with metrics on and tracing at the default (parent-based,
//! 1 % of new traces, spans exported by the console exporter to /dev/null), one
//! with both off (`SWITCHYARD_METRICS=off`, `OTEL_SDK_DISABLED=true`). Rounds
//! alternate between them:
//!
//! - `EvaluateFlag` over gRPC, 32 calls in flight over 4 connections;
//! - `GET /admin/feature-flags?tenant=t0` under `wrk -c32` (needs `wrk`).
//!
//! Then the scrape: `/metrics` size, series and render time (the GET, median
//! and p99 of 50) after traffic through every RPC and 100 tenants.
//!
//! `cargo bench --bench observability [-- SECONDS_PER_ROUND]`

mod common;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use common::*;
use switchyard::{
    api::v1::{EvaluateFlagRequest, ResolveTenantRequest, evaluate_flag_request},
    client::Client,
};

const IN_FLIGHT: usize = 32;
const CONNECTIONS: usize = 4;
const TENANTS: usize = 100;
const FLAGS: usize = 20;

/// EvaluateFlag for `secs` with IN_FLIGHT workers; returns calls/s.
async fn evaluate_round(clients: &[Client], secs: u64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for w in 0..IN_FLIGHT {
        let c = clients[w % clients.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            let mut i = w;
            while Instant::now() < deadline {
                c.flags()
                    .evaluate_flag(EvaluateFlagRequest {
                        flag_key: format!("flag{}", i % FLAGS),
                        target: Some(evaluate_flag_request::Target::TenantId(format!(
                            "t{}",
                            i % TENANTS
                        ))),
                        ..Default::default()
                    })
                    .await
                    .expect("evaluate");
                n += 1;
                i += IN_FLIGHT;
            }
            n
        }));
    }
    let start = Instant::now();
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("worker");
    }
    total as f64 / start.elapsed().as_secs_f64()
}

struct Server {
    port: u16,
    child: std::process::Child,
    clients: Vec<Client>,
    _dir: tempfile::TempDir,
}

async fn start(env: &[(&str, String)]) -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let child = spawn(dir.path(), port, env);
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        clients.push(connect(port).await);
    }
    seed_tenants_and_flags(&clients[0], TENANTS, FLAGS, |i| {
        vec![format!("t{i}.example")]
    })
    .await;
    Server {
        port,
        child,
        clients,
        _dir: dir,
    }
}

/// CPU seconds (user + system) a process has used, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is the
    // 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0);
    ticks / 100.0
}

/// One measured round: throughput and the server's CPU per call.
#[derive(Debug, Clone, Copy, Default)]
struct Round {
    rate: f64,
    cpu_us: f64,
}

async fn measure<F, Fut>(s: &Server, secs: u64, run: F) -> Round
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = f64>,
{
    let cpu = cpu_seconds(s.child.id());
    let rate = run().await;
    let used = cpu_seconds(s.child.id()) - cpu;
    Round {
        rate,
        cpu_us: used * 1e6 / (rate * secs as f64),
    }
}

fn summary(name: &str, on: &[Round], off: &[Round]) {
    let median = |v: &[Round], f: fn(&Round) -> f64| {
        let mut x: Vec<f64> = v.iter().map(f).collect();
        x.sort_by(f64::total_cmp);
        let n = x.len();
        if n % 2 == 1 {
            x[n / 2]
        } else {
            (x[n / 2 - 1] + x[n / 2]) / 2.0
        }
    };
    let mean = |v: &[Round], f: fn(&Round) -> f64| v.iter().map(f).sum::<f64>() / v.len() as f64;
    let (r_on, r_off) = (median(on, |r| r.rate), median(off, |r| r.rate));
    let (m_on, m_off) = (mean(on, |r| r.rate), mean(off, |r| r.rate));
    let (c_on, c_off) = (median(on, |r| r.cpu_us), median(off, |r| r.cpu_us));
    println!(
        "{name}: median on {r_on:>7.0}/s, off {r_off:>7.0}/s: on/off {:.3} (means: {:.3}); server CPU per call, median, on {c_on:.1} us, off {c_off:.1} us: off/on {:.3}",
        r_on / r_off,
        m_on / m_off,
        c_off / c_on
    );
    // The faster half of each side's processes: like against like, since a
    // process's fast or slow mode does not depend on the configuration.
    let top = |v: &[Round]| {
        let mut x: Vec<f64> = v.iter().map(|r| r.rate).collect();
        x.sort_by(|a, b| b.total_cmp(a));
        let half = &x[..x.len().div_ceil(2)];
        half.iter().sum::<f64>() / half.len() as f64
    };
    println!(
        "    faster half of the processes: on {:.0}/s, off {:.0}/s: on/off {:.3}",
        top(on),
        top(off),
        top(on) / top(off)
    );
    println!(
        "    rounds on  {:?}\n    rounds off {:?}",
        on.iter().map(|r| r.rate.round()).collect::<Vec<_>>(),
        off.iter().map(|r| r.rate.round()).collect::<Vec<_>>()
    );
}

#[tokio::main]
async fn main() {
    let secs: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5);
    let wrk = Command::new("wrk").arg("--version").output().is_ok();
    let on_env: Vec<(&str, String)> = match std::env::var("BENCH_BOTH_OFF") {
        Ok(_) => vec![
            ("SWITCHYARD_METRICS", "off".into()),
            ("OTEL_SDK_DISABLED", "true".into()),
        ],
        Err(_) => vec![("OTEL_TRACES_EXPORTER", "console".into())],
    };
    let off_env: Vec<(&str, String)> = vec![
        ("SWITCHYARD_METRICS", "off".into()),
        ("OTEL_SDK_DISABLED", "true".into()),
    ];
    // A server process is either fast or slow for its whole life on this
    // 2-core machine (about 20 % apart, with or without observability): so
    // every pair of rounds gets a fresh pair of servers.
    let pairs = std::env::var("BENCH_PAIRS")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8);
    let (mut eval_on, mut eval_off, mut rest_on, mut rest_off) = (vec![], vec![], vec![], vec![]);
    let mut scrape_server = None;
    for pair in 0..pairs {
        let on = start(&on_env).await;
        let off = start(&off_env).await;
        for s in [&on, &off] {
            evaluate_round(&s.clients, 1).await;
        }
        // Alternate which goes first.
        let order: [(&Server, bool); 2] = if pair % 2 == 0 {
            [(&on, true), (&off, false)]
        } else {
            [(&off, false), (&on, true)]
        };
        for (s, is_on) in order {
            let r = measure(s, secs, || evaluate_round(&s.clients, secs)).await;
            if is_on {
                eval_on.push(r)
            } else {
                eval_off.push(r)
            }
        }
        if wrk {
            for (s, is_on) in order {
                let url = format!("http://127.0.0.1:{}/admin/feature-flags?tenant=t0", s.port);
                let r = measure(s, secs, || async { wrk_round(&url, secs, IN_FLIGHT).0 }).await;
                if is_on {
                    rest_on.push(r)
                } else {
                    rest_off.push(r)
                }
            }
        }
        stop(off.child);
        if pair + 1 == pairs {
            scrape_server = Some(on);
        } else {
            stop(on.child);
        }
    }
    println!(
        "{IN_FLIGHT} in flight; {pairs} fresh server pairs, one {secs} s round each per server, alternating; client and servers on the same 2 cores"
    );
    println!(
        "on: metrics, tracing parent-based at 1 % (console exporter); off: SWITCHYARD_METRICS=off, OTEL_SDK_DISABLED=true"
    );
    summary("EvaluateFlag (gRPC)", &eval_on, &eval_off);
    if wrk {
        summary(
            "GET /admin/feature-flags?tenant=t0 (wrk)",
            &rest_on,
            &rest_off,
        );
    } else {
        println!("GET /admin/feature-flags: skipped (no wrk; apt-get install wrk)");
    }
    let on = scrape_server.expect("a server");

    // The scrape, after traffic through every tenant and the REST shims.
    let c = &on.clients[0];
    for i in 0..TENANTS {
        let _ = c
            .tenants()
            .resolve_tenant(ResolveTenantRequest {
                key: format!("t{i}.example"),
            })
            .await;
    }
    let mut times = Vec::new();
    let mut body = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        body = http_get(on.port, "/metrics");
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let text = String::from_utf8_lossy(&body);
    let series = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count();
    times.sort_by(f64::total_cmp);
    println!(
        "/metrics after {TENANTS} tenants' traffic: {} bytes, {series} series; GET median {:.2} ms, p99 {:.2} ms (50 scrapes)",
        body.len(),
        times[times.len() / 2],
        times[(times.len() - 1) * 99 / 100],
    );
    stop(on.child);
}
