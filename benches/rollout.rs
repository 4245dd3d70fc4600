//! A guarded rollout's rollback, measured end to end on one machine: a real
//! Prometheus (Debian's `prometheus`) scrapes a service of the bench's own
//! (the tests' `shop`: it evaluates the flag through Switchyard on every
//! request and exports OpenTelemetry's HTTP duration histogram by
//! feature-flag variant), driven at RATE requests per second; STREAMS
//! `WatchFlags` streams (100 per HTTP/2 connection) follow the flag.
//!
//! Each round starts a rollout (20 % at the first stage, a long hold,
//! looked at every CHECK seconds for an early FAIL), lets it run clean for a
//! few seconds, then injects 100 ms into the treatment's requests. Two
//! figures per round:
//!
//! - **FAIL verdict → the rollback's revision at every stream**: the
//!   arrival of the rollback's event at each stream minus the verdict's
//!   `judged_at` (same machine, same clock);
//! - **injection → rollback**: the rollback's commit time minus the moment
//!   the delay was switched on. It is bounded by the look interval (CHECK),
//!   Prometheus's scrape interval (SCRAPE) and the samples a window needs;
//!   docs/rollouts.md says how to shorten it.
//!
//! `cargo bench --bench rollout [-- ROUNDS [STREAMS [CHECK_S [SCRAPE_S [RATE]]]]]`
//! (defaults 5, 10 000, 2, 1, 200).

mod common;

#[allow(dead_code)]
#[path = "../tests/it/common/shop.rs"]
mod shop;

use std::{
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use common::*;
use shop::{Load, Shop};
use switchyard::api::v1::{
    CanaryPolicy, CreateFlagRequest, Flag, FlagEventType, FlagType, GetRolloutRequest, Rollout,
    RolloutStage, RolloutState, StartRolloutRequest, WatchFlagsRequest,
};
use tokio::sync::mpsc;

fn duration(seconds: i64) -> Option<pbjson_types::Duration> {
    Some(pbjson_types::Duration { seconds, nanos: 0 })
}

#[tokio::main]
async fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let rounds = args.first().copied().unwrap_or(5) as usize;
    let streams = args.get(1).copied().unwrap_or(10_000) as usize;
    let check_s = args.get(2).copied().unwrap_or(2) as i64;
    let scrape_s = args.get(3).copied().unwrap_or(1);
    let rate = args.get(4).copied().unwrap_or(200) as u32;
    if Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("prometheus is not installed (apt-get install prometheus): nothing measured");
        return;
    }

    // The service, Prometheus scraping it, and Switchyard judging on it.
    let port = free_port();
    let target = format!("http://127.0.0.1:{port}");
    let lazy = switchyard::client::Client::connect_lazy(
        switchyard::client::endpoint(&target).unwrap(),
        TOKEN,
    )
    .unwrap();
    let shop = Shop::start("checkout", vec![lazy], "on").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let prom_port = free_port();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: {scrape_s}s\nscrape_configs:\n  - job_name: shop\n    static_configs:\n      - targets: ['{}']\n",
            shop.addr
        ),
    )
    .unwrap();
    let mut prom = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus");
    let server = spawn(
        dir.path(),
        port,
        &[(
            "SWITCHYARD_PROMETHEUS_URL",
            format!("http://127.0.0.1:{prom_port}"),
        )],
    );
    let admin = connect(port).await;
    admin
        .flags()
        .create_flag(CreateFlagRequest {
            flag: Some(Flag {
                key: "checkout".into(),
                r#type: FlagType::Bool as i32,
                variants: [
                    ("on".to_owned(), boolean(true)),
                    ("off".to_owned(), boolean(false)),
                ]
                .into_iter()
                .collect(),
                default_variant: "off".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("create flag");
    let _load = Load::start(&shop, rate, u64::MAX);

    // The streams: each reports (revision, arrival µs) of every change.
    let ready = Arc::new(AtomicUsize::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel::<(i64, i64)>();
    let mut channels = Vec::new();
    for _ in 0..streams.div_ceil(100) {
        channels.push(connect(port).await);
    }
    for i in 0..streams {
        let ch = channels[i / 100].clone();
        let (ready, tx) = (ready.clone(), tx.clone());
        tokio::spawn(async move {
            let mut s = ch
                .flags()
                .watch_flags(WatchFlagsRequest::default())
                .await
                .expect("watch")
                .into_inner();
            while let Ok(Some(ev)) = s.message().await {
                match ev.r#type() {
                    FlagEventType::Snapshot => {
                        ready.fetch_add(1, Ordering::SeqCst);
                    }
                    FlagEventType::Upsert => {
                        let _ = tx.send((ev.revision, now_us()));
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
    // A few scrapes of the service before the first rollout.
    tokio::time::sleep(Duration::from_secs(4 * scrape_s)).await;

    let mut per_stream = Vec::new();
    let mut to_all = Vec::new();
    let mut detection = Vec::new();
    for round in 1..=rounds {
        shop.inject(0);
        let r = admin
            .rollouts()
            .start_rollout(StartRolloutRequest {
                rollout: Some(Rollout {
                    flag_key: "checkout".into(),
                    treatment: "on".into(),
                    stages: vec![
                        RolloutStage {
                            percent: 20.0,
                            hold: duration(3600),
                            min_samples: 20,
                        },
                        RolloutStage {
                            percent: 100.0,
                            hold: duration(3600),
                            min_samples: 20,
                        },
                    ],
                    check_interval: duration(check_s),
                    rules: Some(CanaryPolicy {
                        p95_floor_ms: Some(20.0),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            })
            .await
            .expect("start a rollout")
            .into_inner()
            .rollout
            .unwrap();
        // Clean for a few looks, then the fault.
        tokio::time::sleep(Duration::from_secs(2 * check_s as u64 + 1)).await;
        let injected = now_us();
        shop.inject(100);
        let ended = loop {
            let now = admin
                .rollouts()
                .get_rollout(GetRolloutRequest { id: r.id.clone() })
                .await
                .expect("get")
                .into_inner()
                .rollout
                .unwrap();
            if now.state != RolloutState::Running as i32 {
                break now;
            }
            assert!(
                now_us() - injected < 120_000_000,
                "no rollback within 120 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(ended.state, RolloutState::Failed as i32, "{}", ended.reason);
        let verdict = serde_json::to_value(ended.last_verdict.clone().unwrap()).unwrap();
        let judged: pbjson_types::Timestamp =
            serde_json::from_value(verdict["judged_at"].clone()).expect("judged_at");
        let judged_us = timestamp_us(Some(judged)).unwrap();
        // Every stream's arrival of the rollback's revision.
        let rollback = ended.flag_revision;
        let mut got = 0;
        let mut worst = 0;
        let mut committed = i64::MAX;
        while got < streams {
            let (revision, arrived) = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .expect("every stream receives the rollback within 30 s")
                .expect("streams open");
            if revision != rollback {
                continue;
            }
            per_stream.push(arrived - judged_us);
            worst = worst.max(arrived - judged_us);
            committed = committed.min(arrived);
            got += 1;
        }
        to_all.push(worst);
        detection.push(committed - injected);
        println!(
            "round {round}: injection -> FAIL verdict {:.2} s, verdict -> all {streams} streams {:.1} ms",
            (judged_us - injected) as f64 / 1e6,
            worst as f64 / 1000.0
        );
        // The window of the next stage starts afresh; let the stage end.
        shop.inject(0);
        tokio::time::sleep(Duration::from_secs(scrape_s * 2)).await;
    }
    per_stream.sort_unstable();
    to_all.sort_unstable();
    detection.sort_unstable();
    println!(
        "{rounds} rollbacks, {streams} watch streams over {} connections, {rate} requests/s, scrape every {scrape_s} s, looked at every {check_s} s",
        channels.len()
    );
    println!(
        "FAIL verdict -> rollback at a stream: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        pct_ms(&per_stream, 0.5),
        pct_ms(&per_stream, 0.99),
        pct_ms(&per_stream, 1.0)
    );
    println!(
        "FAIL verdict -> rollback at all {streams} streams: p50 {:.1} ms, max {:.1} ms (goal p99 < 1 s)",
        pct_ms(&to_all, 0.5),
        pct_ms(&to_all, 1.0)
    );
    println!(
        "latency injected -> rollback at the first stream: min {:.2} s, median {:.2} s, max {:.2} s",
        detection[0] as f64 / 1e6,
        detection[detection.len() / 2] as f64 / 1e6,
        detection[detection.len() - 1] as f64 / 1e6
    );
    stop(server);
    let _ = prom.kill();
    let _ = prom.wait();
}
