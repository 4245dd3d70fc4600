//! Watch fan-out on one replica: STREAMS concurrent `WatchFlags` streams
//! (default 10 000, 100 per HTTP/2 connection), then CHANGES flag updates
//! one after another. For every (stream, change) the latency is the arrival
//! time at the subscriber minus the change's commit time carried in the event
//! (same machine, same clock); "all" is the arrival at the last stream.
//! Memory per idle stream is the server's resident memory with the streams
//! open and idle, minus before, divided by the number of streams.
//!
//! Client and server share the machine's 2 cores, so the client's work of
//! receiving 10 000 events per change is in the figures too. The
//! machine-independent figure is the server's CPU per delivered event against
//! its CPU per `grpc.health.v1.Health/Check` call, measured in the same run
//! (20 000 calls, 32 in flight over 4 connections).
//!
//! `cargo bench --bench watch_fanout [-- STREAMS [CHANGES [STREAMS_PER_CONNECTION]]]`
//! (defaults 10 000, 20, 100; 1 stream per connection is the shape of a fleet of
//! services that each keep one subscription).

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use common::*;

use switchyard::api::v1::{CreateFlagRequest, Flag, FlagEventType, FlagType, WatchFlagsRequest};
use tokio::sync::mpsc;

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let streams = args.first().copied().unwrap_or(10_000);
    let changes = args.get(1).copied().unwrap_or(20);
    let per_connection = args.get(2).copied().unwrap_or(100).max(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let server = spawn(dir.path(), port, &[]);
    let admin_channel = connect(port).await;
    let mut admin = admin_channel.flags();
    admin
        .create_flag(CreateFlagRequest {
            flag: Some(Flag {
                key: "bench".into(),
                r#type: FlagType::Number as i32,
                default_value: Some(number(0.0)),
                ..Default::default()
            }),
        })
        .await
        .expect("create flag");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss_kib(server.id());

    // Open the streams; each reports its snapshot, then (arrival - commit) per change.
    let ready = Arc::new(AtomicUsize::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel::<(i64, i64)>();
    let mut channels = Vec::new();
    for _ in 0..streams.div_ceil(per_connection) {
        channels.push(connect(port).await);
    }
    for i in 0..streams {
        let ch = channels[i / per_connection].clone();
        let ready = ready.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut client = ch.flags();
            let mut s = client
                .watch_flags(WatchFlagsRequest {
                    tenant_id: String::new(),
                    since_revision: 0,
                    ..Default::default()
                })
                .await
                .expect("watch")
                .into_inner();
            while let Ok(Some(ev)) = s.message().await {
                match ev.r#type() {
                    FlagEventType::Snapshot => {
                        ready.fetch_add(1, Ordering::SeqCst);
                    }
                    FlagEventType::Upsert => {
                        let _ = tx.send((ev.revision, since_commit_us(&ev)));
                    }
                    _ => {}
                }
            }
        });
    }
    drop(tx);
    while ready.load(Ordering::SeqCst) < streams {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle = rss_kib(server.id());

    let server_pid = server.id().to_string();
    let (server_cpu0, client_cpu0) = (cpu_ms(&server_pid), cpu_ms("self"));
    let mut per_stream = Vec::with_capacity(streams * changes);
    let mut to_all = Vec::with_capacity(changes);
    for c in 1..=changes {
        let revision = set_stored_number(&mut admin, "bench", c as f64).await;
        let mut got = 0;
        let mut worst = 0;
        while got < streams {
            let (arrived_revision, latency) =
                tokio::time::timeout(Duration::from_secs(30), rx.recv())
                    .await
                    .expect("every stream receives the change within 30 s")
                    .expect("streams open");
            assert_eq!(arrived_revision, revision, "in order, one change at a time");
            per_stream.push(latency);
            worst = worst.max(latency);
            got += 1;
        }
        to_all.push(worst);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let server_cpu = (cpu_ms(&server_pid) - server_cpu0) / changes as f64;
    let client_cpu = (cpu_ms("self") - client_cpu0) / changes as f64;
    let health_us = health_cpu_us(&server_pid, &channels[..channels.len().min(4)]).await;
    let event_us = server_cpu * 1000.0 / streams as f64;
    per_stream.sort_unstable();
    to_all.sort_unstable();
    println!(
        "{streams} watch streams over {} connections, {changes} changes",
        channels.len()
    );
    println!(
        "commit -> arrival at a stream: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        pct_ms(&per_stream, 0.5),
        pct_ms(&per_stream, 0.99),
        pct_ms(&per_stream, 1.0)
    );
    println!(
        "commit -> arrival at all {streams} streams: p50 {:.1} ms, p99 {:.1} ms",
        pct_ms(&to_all, 0.5),
        pct_ms(&to_all, 0.99)
    );
    println!(
        "CPU per change (includes the 100 ms pauses' idle work): server {server_cpu:.0} ms, client {client_cpu:.0} ms"
    );
    println!(
        "server CPU per delivered event {event_us:.2} µs; per Health/Check call {health_us:.2} µs; ratio {:.2} (goal at most 0.25)",
        event_us / health_us
    );
    println!(
        "server resident memory: {:.1} MiB before, {:.1} MiB with the streams idle: {:.1} KiB per idle stream",
        rss_before as f64 / 1024.0,
        rss_idle as f64 / 1024.0,
        (rss_idle.saturating_sub(rss_before)) as f64 / streams as f64
    );
    stop(server);
}
