//! Tenant writes at 100 000 patterns, and resolution while they go on.
//!
//! Starts the release `switchyard` binary on the embedded default with 1 000
//! tenants of 100 exact patterns each, then:
//! 1. resolves for a few seconds with nothing else going on (the baseline);
//! 2. writes tenants one after another for the same time — each write creates
//!    a tenant with a new pattern and counts as done when `ResolveTenant`
//!    finds that pattern on the replica — while the same resolvers run.
//!
//! Reports writes/s (done as above), write → resolvable p50/p99, and the
//! resolvers' p50/p99/max with and without the writes. Resolvers: 8 calls in
//! flight over 2 HTTP/2 connections, keys drawn from the seeded patterns.
//! `SWITCHYARD_BENCH_BIN=<older binary>` runs the same against another build.
//!
//! `cargo bench --bench tenant_writes [-- SECONDS]`

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use common::*;
use switchyard::api::v1::{CreateTenantRequest, ResolveTenantRequest, Tenant};

const TENANTS: usize = 1000;
const PATTERNS: usize = 100;
const RESOLVERS: usize = 8;

fn key(i: usize) -> String {
    let t = i % TENANTS;
    let p = (i / TENANTS) % PATTERNS;
    format!("h{p}.t{t}.example")
}

/// Resolves until `stop`; returns sorted latencies in µs.
async fn resolvers(channels: Vec<switchyard::client::Client>, stop: Arc<AtomicBool>) -> Vec<i64> {
    let mut tasks = Vec::new();
    for w in 0..RESOLVERS {
        let mut client = channels[w % channels.len()].tenants();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = w * 7919;
            while !stop.load(Ordering::Relaxed) {
                i = i.wrapping_mul(31).wrapping_add(17) % (TENANTS * PATTERNS);
                let t = Instant::now();
                let r = client
                    .resolve_tenant(ResolveTenantRequest { key: key(i) })
                    .await
                    .expect("a seeded key resolves");
                assert!(r.get_ref().tenant.is_some());
                lat.push(t.elapsed().as_micros() as i64);
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("resolver"));
    }
    all.sort_unstable();
    all
}

fn summary(lat: &[i64]) -> String {
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} calls)",
        pct_ms(lat, 0.5),
        pct_ms(lat, 0.99),
        pct_ms(lat, 1.0),
        lat.len()
    )
}

#[tokio::main]
async fn main() {
    let secs: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let server = spawn(dir.path(), port, &[]);
    let admin = connect(port).await;
    let seeding = Instant::now();
    for t in 0..TENANTS {
        admin
            .tenants()
            .create_tenant(CreateTenantRequest {
                tenant: Some(Tenant {
                    id: format!("t{t}"),
                    patterns: (0..PATTERNS)
                        .map(|p| format!("h{p}.t{t}.example"))
                        .collect(),
                    ..Default::default()
                }),
            })
            .await
            .expect("create tenant");
    }
    // Every seeded pattern resolves before the rounds start.
    let last = format!("h{}.t{}.example", PATTERNS - 1, TENANTS - 1);
    let mut resolver = admin.tenants();
    while resolver
        .resolve_tenant(ResolveTenantRequest { key: last.clone() })
        .await
        .is_err()
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "{} patterns over {TENANTS} tenants, seeded in {:.1} s",
        TENANTS * PATTERNS,
        seeding.elapsed().as_secs_f64()
    );
    let channels = vec![connect(port).await, connect(port).await];

    // 1. Resolution alone.
    let stop = Arc::new(AtomicBool::new(false));
    let run = tokio::spawn(resolvers(channels.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let alone = run.await.expect("resolvers");

    // 2. Writes, each done once it resolves, with the resolvers running.
    let stop = Arc::new(AtomicBool::new(false));
    let run = tokio::spawn(resolvers(channels.clone(), stop.clone()));
    let mut writer = admin.tenants();
    let mut visible = Vec::new();
    let start = Instant::now();
    let mut n = 0usize;
    while start.elapsed() < Duration::from_secs(secs) {
        let t = Instant::now();
        let pattern = format!("w{n}.writes.example");
        writer
            .create_tenant(CreateTenantRequest {
                tenant: Some(Tenant {
                    id: format!("w{n}"),
                    patterns: vec![pattern.clone()],
                    ..Default::default()
                }),
            })
            .await
            .expect("create tenant");
        loop {
            let r = resolver
                .resolve_tenant(ResolveTenantRequest {
                    key: pattern.clone(),
                })
                .await;
            if r.is_ok_and(|r| {
                r.get_ref()
                    .tenant
                    .as_ref()
                    .is_some_and(|t| t.id == format!("w{n}"))
            }) {
                break;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        visible.push(t.elapsed().as_micros() as i64);
        n += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let during = run.await.expect("resolvers");
    visible.sort_unstable();
    println!(
        "tenant writes, each until it resolves: {:.1} writes/s; write -> resolvable p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({n} writes in {elapsed:.1} s)",
        n as f64 / elapsed,
        pct_ms(&visible, 0.5),
        pct_ms(&visible, 0.99),
        pct_ms(&visible, 1.0),
    );
    println!("ResolveTenant alone:        {}", summary(&alone));
    println!("ResolveTenant during writes: {}", summary(&during));
    common::stop(server);
}
