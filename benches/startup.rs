//! Start-up to SERVING and idle memory of the `switchyard` binary on the
//! embedded default (a fresh SQLite file, no Redis).
//!
//! Each run spawns the binary in a fresh directory and polls
//! `grpc.health.v1.Health/Check` every millisecond; the time from `spawn` to
//! the first SERVING answer is the start-up time. After the last run the
//! server idles for 3 s and its resident memory (VmRSS) is read.
//!
//! `cargo bench --bench startup [-- RUNS]`

mod common;

use std::time::{Duration, Instant};

use common::*;

use switchyard::api::health::{HealthCheckRequest, health_check_response::ServingStatus};
use switchyard::client::Client;

async fn serving(port: u16) -> bool {
    let Ok(client) = Client::connect(&format!("127.0.0.1:{port}"), "").await else {
        return false;
    };
    client
        .health()
        .check(HealthCheckRequest::default())
        .await
        .is_ok_and(|r| r.get_ref().status() == ServingStatus::Serving)
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20);
    let mut times = Vec::with_capacity(runs);
    let mut last = None;
    for i in 0..runs {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let start = Instant::now();
        let child = spawn(dir.path(), port, &[]);
        while !serving(port).await {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "not SERVING within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        times.push(start.elapsed());
        if i + 1 == runs {
            last = Some((child, dir));
        } else {
            stop(child);
        }
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let pick = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    println!(
        "start to SERVING over {runs} runs (fresh SQLite each): min {:.1} ms, median {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        ms(times[0]),
        ms(pick(0.5)),
        ms(pick(0.9)),
        ms(times[times.len() - 1])
    );
    if let Some((child, _dir)) = last {
        tokio::time::sleep(Duration::from_secs(3)).await;
        match rss_kib(child.id()) {
            Some(kib) => println!(
                "idle resident memory after 3 s: {:.1} MiB",
                kib as f64 / 1024.0
            ),
            None => println!("idle resident memory: unavailable (no /proc)"),
        }
        stop(child);
    }
    let size = std::fs::metadata(BIN).map(|m| m.len()).unwrap_or(0);
    println!("binary {BIN}: {:.1} MiB", size as f64 / (1024.0 * 1024.0));
}
