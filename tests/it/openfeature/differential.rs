//! One answer on the server and in-process: for 10 000 random contexts over
//! rules that use every operator, the server's answers (OFREP bulk) equal
//! those of OpenFeature's own in-process evaluators, fed the definitions the
//! server exports: JavaScript's `@openfeature/flagd-core` 4.0.1
//! (`tests/openfeature-js/differential.mjs`, every operator) and Python's
//! `openfeature-flagd-core` 2.0.0 (`tests/openfeature/differential_python.py`,
//! every operator but `fractional`, which it hashes as flagd's v3: see
//! docs/openfeature.md, "Known divergences"; and, against a server serving
//! `fractional_bucketing = "v3"`, every operator). Each script generates its
//! rules and contexts from the seed and exits 1 on any difference.

use std::process::Command;

use crate::common::*;

const SEED: &str = "20261206";
const CONTEXTS: &str = "10000";

async fn run(cmd: Command, what: &str) {
    let mut cmd = cmd;
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{what}: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("differential"))
        .unwrap_or_default();
    assert!(
        summary.contains(" answers, 0 differences"),
        "{what}: {stdout}"
    );
    eprintln!("{summary}");
}

#[tokio::test]
async fn the_servers_answers_equal_the_javascript_in_process_evaluators() {
    let Some(dir) = node_project("openfeature-js") else {
        return;
    };
    let Some((server, _db)) = server_on(Backend::Sqlite).await else {
        return;
    };
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("differential.mjs"))
        .args([server.url().as_str(), ADMIN, SEED, CONTEXTS]);
    run(cmd, "differential.mjs").await;
}

/// Runs the Python twin against `server`, with `env` set.
async fn python(server: &TestServer, env: &[(&str, &str)], what: &str) {
    let Some(py) = python_project("openfeature") else {
        return;
    };
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/openfeature/differential_python.py"
    );
    let mut cmd = Command::new(py);
    cmd.arg(script)
        .args([server.url().as_str(), ADMIN, SEED, CONTEXTS])
        .envs(env.iter().copied());
    run(cmd, what).await;
}

#[tokio::test]
async fn the_servers_answers_equal_the_python_in_process_evaluators() {
    let Some((server, _db)) = server_on(Backend::Sqlite).await else {
        return;
    };
    python(&server, &[], "differential_python.py").await;
}

#[tokio::test]
async fn a_server_serving_fractional_v3_answers_as_the_python_in_process_evaluator() {
    let Some((server, _db)) = server_with(Backend::Sqlite, |c| {
        c.flags.fractional_bucketing = switchyard::flag::targeting::fractional::Bucketing::V3;
    })
    .await
    else {
        return;
    };
    python(
        &server,
        &[("DIFF_FRACTIONAL", "v3")],
        "differential_python.py (fractional v3)",
    )
    .await;
}
