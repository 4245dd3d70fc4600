//! The proto works for generated clients in other languages: a Python
//! subscriber generated from `proto/` with grpcio-tools receives the snapshot
//! and a later change.
//!
//! Needs `python3` with `grpcio` and `grpcio-tools` (PyPI); `.ci/run` installs
//! them. Without them the test is skipped with a note, except under `CI=true`.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use crate::common::*;
use switchyard::api::v1::FlagType;

fn python_ready() -> bool {
    Command::new("python3")
        .args(["-c", "import grpc, grpc_tools.protoc"])
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_subscriber_generated_from_the_protos_sees_the_snapshot_and_a_change() {
    subscriber_sees_the_snapshot_and_a_change("").await;
}

/// The same with grpcio compressing its messages with gzip: the server
/// accepts them (and compresses its own, since grpcio advertises gzip).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_subscriber_sending_gzip_sees_the_snapshot_and_a_change() {
    subscriber_sees_the_snapshot_and_a_change("gzip").await;
}

async fn subscriber_sees_the_snapshot_and_a_change(compression: &str) {
    if !python_ready() {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "CI=true but python3 lacks grpcio / grpcio-tools"
        );
        eprintln!("note: python3 with grpcio and grpcio-tools not found; skipping");
        return;
    }
    let generated = tempfile::tempdir().unwrap();
    let proto = concat!(env!("CARGO_MANIFEST_DIR"), "/proto");
    let status = Command::new("python3")
        .args(["-m", "grpc_tools.protoc", &format!("-I{proto}")])
        .arg(format!("--python_out={}", generated.path().display()))
        .arg(format!("--grpc_python_out={}", generated.path().display()))
        .args([
            "google/api/http.proto",
            "google/api/annotations.proto",
            "switchyard/v1/flag.proto",
        ])
        .current_dir(proto)
        .status()
        .unwrap();
    assert!(status.success(), "grpc_tools.protoc compiles proto/");

    let Some((server, _db)) = server_on(Backend::Sqlite).await else {
        return;
    };
    setup_tenants(&server, &["a"]).await;
    server
        .flags(ADMIN)
        .await
        .create_flag(new_flag("py-flag", FlagType::Bool, v_bool(false)))
        .await
        .unwrap();

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/watch_flags.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg(generated.path())
        .arg(server.addr.to_string())
        .arg(tenant_token("a"))
        .arg("a")
        .arg("py-flag")
        .env("COMPRESSION", compression)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::task::spawn_blocking(move || {
        let l = lines.next();
        (l, lines)
    });
    let (first, mut lines) = tokio::time::timeout(Duration::from_secs(30), first)
        .await
        .unwrap()
        .unwrap();
    let first = first.expect("a line").unwrap();
    assert!(first.starts_with("SNAPSHOT "), "{first}");
    assert!(first.ends_with(" 1"), "one flag in the snapshot: {first}");

    let revision = set_override(&server, "a", "py-flag", v_bool(true)).await;
    let rest = tokio::task::spawn_blocking(move || lines.next());
    let line = tokio::time::timeout(Duration::from_secs(30), rest)
        .await
        .unwrap()
        .unwrap()
        .expect("a line")
        .unwrap();
    assert_eq!(line, format!("UPSERT py-flag tenant true {revision}"));
    let status = child.wait().unwrap();
    assert!(status.success());
    server.shutdown().await.unwrap();
}
