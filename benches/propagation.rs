//! Cross-replica propagation through Redis on loopback: a change committed on
//! replica A, to its arrival at a subscriber on replica B (and, for
//! comparison, at a subscriber on A itself). Latency is the arrival time minus
//! the commit time carried in the event (same machine, same clock).
//!
//! Needs PostgreSQL (`SWITCHYARD_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`; a fresh database is created
//! and dropped) and Redis (`SWITCHYARD_TEST_REDIS_URL`, default
//! `redis://127.0.0.1:6379`). The replicas poll the change log only once a
//! minute, so what arrives sooner came through pub/sub.
//!
//! `cargo bench --bench propagation [-- CHANGES]`

mod common;

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use common::*;

use sqlx::{Connection, Executor, PgConnection};
use switchyard::api::v1::{CreateFlagRequest, Flag, FlagEventType, FlagType, WatchFlagsRequest};
use switchyard::client::Client;
use tokio::sync::mpsc;

fn subscribe(ch: Client, tx: mpsc::UnboundedSender<(i64, i64)>) {
    tokio::spawn(async move {
        let mut s = ch
            .flags()
            .watch_flags(WatchFlagsRequest {
                tenant_id: String::new(),
                since_revision: 0,
                ..Default::default()
            })
            .await
            .expect("watch")
            .into_inner();
        while let Ok(Some(ev)) = s.message().await {
            if ev.r#type() == FlagEventType::Upsert {
                let _ = tx.send((ev.revision, since_commit_us(&ev)));
            }
        }
    });
}

#[tokio::main]
async fn main() {
    let changes: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200);
    let admin_url = std::env::var("SWITCHYARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let redis = std::env::var("SWITCHYARD_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let name = format!("sybench_{}", std::process::id());
    let mut admin_conn = PgConnection::connect(&admin_url).await.expect("PostgreSQL");
    admin_conn
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .expect("create database");
    let base = admin_url
        .rsplit_once('/')
        .map(|(b, _)| b)
        .unwrap_or(&admin_url);
    let db = format!("{base}/{name}");
    let env = vec![
        ("SWITCHYARD_DATABASE_URL", db.clone()),
        ("SWITCHYARD_REDIS_URL", redis),
        ("SWITCHYARD_REDIS_PREFIX", format!("{name}:")),
        // Poll once a minute only: what arrives sooner came through pub/sub.
        ("SWITCHYARD_SYNC_INTERVAL_MS", "60000".to_owned()),
    ];
    let status = Command::new(BIN)
        .arg("migrate")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .status()
        .expect("migrate");
    assert!(status.success());
    let (pa, pb) = (free_port(), free_port());
    let dir = tempfile::tempdir().expect("temp dir");
    let a = spawn(dir.path(), pa, &env);
    let b = spawn(dir.path(), pb, &env);
    let (cha, chb) = (connect(pa).await, connect(pb).await);
    let mut writer = cha.clone().flags();
    writer
        .create_flag(CreateFlagRequest {
            flag: Some(Flag {
                key: "p".into(),
                r#type: FlagType::Number as i32,
                default_value: Some(number(0.0)),
                ..Default::default()
            }),
        })
        .await
        .expect("create");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (tx_b, mut rx_b) = mpsc::unbounded_channel();
    let (tx_a, mut rx_a) = mpsc::unbounded_channel();
    subscribe(chb, tx_b);
    subscribe(cha, tx_a);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (mut on_b, mut on_a) = (Vec::new(), Vec::new());
    for c in 1..=changes {
        let revision = set_stored_number(&mut writer, "p", c as f64).await;
        for (rx, out) in [(&mut rx_b, &mut on_b), (&mut rx_a, &mut on_a)] {
            let (r, lat) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("within 10 s")
                .expect("open");
            assert_eq!(r, revision);
            out.push(lat);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    on_b.sort_unstable();
    on_a.sort_unstable();
    println!("{changes} changes committed on replica A (PostgreSQL + Redis pub/sub on loopback)");
    println!(
        "commit on A -> event at a subscriber on B: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct_ms(&on_b, 0.5),
        pct_ms(&on_b, 0.99),
        pct_ms(&on_b, 1.0)
    );
    println!(
        "commit on A -> event at a subscriber on A: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct_ms(&on_a, 0.5),
        pct_ms(&on_a, 0.99),
        pct_ms(&on_a, 1.0)
    );
    stop(a);
    stop(b);
    let _ = admin_conn
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .await;
}
