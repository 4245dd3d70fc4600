//! `switchyard smoke` and `switchyard canary` as CI runs them: the real
//! binary driving real servers (one of them drilled with `--fault-delay-ms` or
//! `--fault-error-rate`), a real Prometheus for the budget, and the documents
//! and exit codes they leave.
//!
//! The runs are short (a few seconds at 100 calls/s) and take turns (one
//! lock), so two of them never share the machine's two cores.

use std::{
    path::{Path, PathBuf},
    process::{Output, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::common::*;
use serde_json::Value as Json;

/// One traffic run at a time.
static TURN: Mutex<()> = Mutex::new(());

/// Held for a whole test. The async tests hold it across their awaits on
/// purpose: each test has its own runtime, so nothing inside a runtime ever
/// waits on it.
pub(super) fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs the CLI in `dir` with the admin token and `env`.
pub(super) fn cli(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut all = vec![("SWITCHYARD_TOKEN", ADMIN)];
    all.extend_from_slice(env);
    command(dir, args, &all)
        .env_remove("GITHUB_STEP_SUMMARY")
        .env_remove("GITHUB_RUN_ID")
        .env_remove("GITHUB_SHA")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

pub(super) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub(super) fn read_json(path: &Path) -> Json {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The value at `path` (`a.b.c`; keys may hold dots when given whole in
/// `[..]`), or a panic naming what is missing.
fn at<'a>(doc: &'a Json, path: &[&str]) -> &'a Json {
    let mut v = doc;
    for k in path {
        v = v
            .get(*k)
            .unwrap_or_else(|| panic!("{path:?}: no {k:?} in {v}"));
    }
    v
}

pub(super) fn num(doc: &Json, path: &[&str]) -> f64 {
    at(doc, path)
        .as_f64()
        .unwrap_or_else(|| panic!("{path:?} is not a number"))
}

pub(super) fn text<'a>(doc: &'a Json, path: &[&str]) -> &'a str {
    at(doc, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path:?} is not a string"))
}

const SHORT: &[&str] = &["--rate", "100", "--duration", "3s", "--warmup", "1s"];

#[allow(clippy::await_holding_lock)] // see `turn`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_passes_with_every_gating_field_and_keeps_its_history() {
    if !crate::common::prometheus::available() {
        return;
    }
    let _turn = turn();
    // 0.03 % of requests failing against the 0.1 % allowed: 70 % of the
    // budget left, so the 420 ms tier applies.
    let data = tempfile::tempdir().unwrap();
    crate::common::prometheus::backfill_rates(data.path(), 10.0, 0.003);
    let prom = Prometheus::start(&[], Some(&data.path().join("data"))).unwrap();
    prom.wait_for("slo:switchyard_error_budget:remaining_ratio", 30)
        .await;
    let server = Running::start(&[("SWITCHYARD_PROMETHEUS_URL", &prom.url())]);
    let dir = tempfile::tempdir().unwrap();
    let summary_md = dir.path().join("step-summary.md");
    let out = dir.path().join("smoke-summary.json");
    let target = server.addr();

    let mut args = vec![
        "smoke",
        "--target",
        &target,
        "--setup",
        "--min-requests",
        "100",
    ];
    args.extend_from_slice(SHORT);
    args.extend_from_slice(&[
        "--mix",
        "EvaluateFlag=3,ResolveTenant,ListFlags,AdminFeatureFlags",
    ]);
    let md = summary_md.to_str().unwrap();
    for run in ["run-1", "run-2"] {
        let o = cli(
            dir.path(),
            &args,
            &[
                ("GITHUB_STEP_SUMMARY", md),
                ("GITHUB_RUN_ID", run),
                ("GITHUB_SHA", "0123abc"),
            ],
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }

    let doc = read_json(&out);
    // Every field GATING.md lists, with what this run did.
    assert_eq!(text(&doc, &["version"]), "1");
    assert_eq!(text(&doc, &["kind"]), "SmokeSummary");
    assert!(text(&doc, &["metadata", "generatedAt"]).ends_with('Z'));
    assert!(text(&doc, &["metadata", "toolVersion"]).starts_with("switchyard "));
    assert_eq!(text(&doc, &["metadata", "gitSha"]), "0123abc");
    assert_eq!(text(&doc, &["metadata", "runId"]), "run-2");
    assert_eq!(text(&doc, &["config", "target"]), target);
    assert_eq!(
        at(&doc, &["config", "calls"]),
        &serde_json::json!([
            "switchyard.v1.FlagService/EvaluateFlag",
            "switchyard.v1.TenantService/ResolveTenant",
            "switchyard.v1.FlagService/ListFlags",
            "GET /admin/feature-flags"
        ])
    );
    assert_eq!(num(&doc, &["config", "rate"]), 100.0);
    assert_eq!(num(&doc, &["config", "duration_s"]), 3.0);
    assert_eq!(num(&doc, &["config", "warmup_s"]), 1.0);
    assert_eq!(text(&doc, &["config", "percentileMethod"]), "hdr");
    assert_eq!(text(&doc, &["budget", "source"]), "prometheus");
    assert!(text(&doc, &["budget", "query"]).contains("remaining_ratio"));
    assert!(text(&doc, &["budget", "evaluatedAt"]).ends_with('Z'));
    assert!((num(&doc, &["budget", "remainingRatio"]) - 0.7).abs() < 1e-9);
    assert!((num(&doc, &["budget", "clampedRatio"]) - 0.7).abs() < 1e-9);
    assert_eq!(
        at(&doc, &["budget", "tiers"]),
        &serde_json::json!([{"below": 0.8, "p95_ms": 420}, {"below": 0.6, "p95_ms": 400}])
    );
    assert_eq!(num(&doc, &["budget", "base_p95_ms"]), 450.0);
    assert_eq!(num(&doc, &["budget", "applied_p95_ms"]), 420.0);
    let count = num(&doc, &["results", "count"]);
    assert_eq!(count, 300.0, "3 s at 100/s, each call scheduled");
    assert_eq!(num(&doc, &["results", "ok"]), 300.0);
    assert_eq!(num(&doc, &["results", "errors"]), 0.0);
    assert_eq!(num(&doc, &["results", "error_rate"]), 0.0);
    let rps = num(&doc, &["results", "rps"]);
    assert!((90.0..=110.0).contains(&rps), "rps {rps}");
    let l = |k: &str| num(&doc, &["results", "latency_ms", k]);
    for k in ["min", "med", "avg", "p(90)", "p(95)", "p(99)", "max"] {
        assert!(l(k) > 0.0, "{k}");
    }
    assert!(l("min") <= l("med") && l("med") <= l("p(95)") && l("p(95)") <= l("max"));
    assert_eq!(
        at(&doc, &["results", "statusCodeDistribution"]),
        &serde_json::json!({"OK": 300})
    );
    assert_eq!(
        at(&doc, &["results", "errorDistribution"]),
        &serde_json::json!({})
    );
    let thresholds = at(&doc, &["thresholds"]).as_object().unwrap();
    let p95 = &thresholds["latency_ms.p(95)<420"];
    assert_eq!(p95["ok"], true);
    assert_eq!(p95["observed"].as_f64(), Some(l("p(95)")));
    assert_eq!(p95["limit"], 420);
    assert_eq!(p95["samples"], 300);
    let errors = &thresholds["error_rate<0.01"];
    assert_eq!(
        (errors["ok"].as_bool(), errors["samples"].as_i64()),
        (Some(true), Some(300))
    );
    assert_eq!(text(&doc, &["verdict", "status"]), "PASS");
    assert_eq!(at(&doc, &["verdict", "reasons"]), &serde_json::json!([]));
    assert_eq!(num(&doc, &["verdict", "exitCode"]), 0.0);
    assert_eq!(at(&doc, &["interrupted"]), false);

    // The job summary: two blocks, the second with both runs in its history.
    let md = std::fs::read_to_string(&summary_md).unwrap();
    assert_eq!(md.matches("### switchyard smoke: PASS").count(), 2, "{md}");
    let last = md.rsplit("### switchyard smoke").next().unwrap();
    assert!(
        last.contains("| check | observed | limit | samples | result |"),
        "{last}"
    );
    assert!(last.contains("Budget 70 % left => p95 <= 420 ms"), "{last}");
    assert!(last.contains("run-1") && last.contains("run-2"), "{last}");

    // The verdicts are the server's, kept as gate runs.
    let client = server.client(ADMIN).await;
    let runs = client
        .gating()
        .list_gate_runs(switchyard::api::v1::ListGateRunsRequest {
            kind: "smoke".into(),
            target: target.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .runs;
    let ids: Vec<&str> = runs.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(ids, ["run-2", "run-1"]);
    prom.stop();
}

/// Runs a canary comparison of `canary` against `baseline`; returns the exit
/// code, the report and standard error.
fn canary(
    dir: &Path,
    baseline: &str,
    canary: &str,
    extra: &[&str],
) -> (Option<i32>, Option<Json>, String) {
    let out = dir.join(format!("canary-{}.json", canary.replace([':', '.'], "-")));
    let _ = std::fs::remove_file(&out);
    let o = out.to_str().unwrap();
    let mut args = vec![
        "canary",
        "--baseline",
        baseline,
        "--canary",
        canary,
        "--setup",
        "--out",
        o,
        "--before",
        "1s",
    ];
    args.extend_from_slice(extra);
    let output = cli(dir, &args, &[]);
    let doc = out.exists().then(|| read_json(&out));
    (output.status.code(), doc, stderr(&output))
}

#[allow(clippy::await_holding_lock)] // see `turn`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_verdicts_against_real_servers_drilled_with_faults() {
    let _turn = turn();
    let baseline = Running::start(&[]);
    let same = Running::start(&[]);
    let slow = Running::start_with(&["serve", "--fault-delay-ms", "20"], &[]);
    let failing = Running::start(&[("SWITCHYARD_FAULT_ERROR_RATE", "0.05")]);
    let dir = tempfile::tempdir().unwrap();
    let b = baseline.addr();
    let run = ["--rate", "100", "--duration", "4s", "--warmup", "1s"];

    // The drill is said loudly: a warning at start, a header on every
    // response, health included.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !slow
        .stderr
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("FAULT INJECTION IS ON"))
    {
        assert!(
            Instant::now() < deadline,
            "no warning: {:?}",
            slow.stderr.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    for (server, says) in [
        (&slow, Some("delay_ms=20, error_rate=0")),
        (&failing, Some("delay_ms=0, error_rate=0.05")),
        (&baseline, None),
    ] {
        let health = server
            .client("")
            .await
            .health()
            .check(switchyard::api::health::HealthCheckRequest::default())
            .await
            .unwrap();
        let header = health
            .metadata()
            .get("x-switchyard-fault-injection")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(header.as_deref(), says);
    }

    // Identical servers: PASS, kept as a gate run with --gating.
    let mut extra = run.to_vec();
    extra.extend_from_slice(&["--gating", &b]);
    let (code, doc, err) = canary(dir.path(), &b, &same.addr(), &extra);
    assert_eq!(code, Some(0), "{err}");
    let doc = doc.unwrap();
    assert_eq!(text(&doc, &["kind"]), "CanaryReport");
    assert_eq!(text(&doc, &["verdict", "status"]), "PASS");
    assert_eq!(at(&doc, &["config", "interleaved"]), true);
    assert_eq!(text(&doc, &["config", "percentileMethod"]), "hdr");
    assert_eq!(num(&doc, &["config", "rules", "min_requests"]), 200.0);
    assert_eq!(num(&doc, &["phases", "before", "baseline", "count"]), 100.0);
    assert_eq!(num(&doc, &["phases", "during", "baseline", "count"]), 400.0);
    assert_eq!(num(&doc, &["phases", "during", "canary", "count"]), 400.0);
    assert_eq!(text(&doc, &["control", "label"]), "baseline");
    assert_eq!(text(&doc, &["experiment", "label"]), "canary");
    let checks: Vec<&str> = at(&doc, &["results"])
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(checks, ["latency_p95", "error_rate"]);
    for c in at(&doc, &["results"]).as_array().unwrap() {
        for k in [
            "control",
            "experiment",
            "delta",
            "limit",
            "samples",
            "classification",
            "classificationReason",
        ] {
            assert!(c.get(k).is_some(), "{k} in {c}");
        }
    }
    let runs = baseline
        .client(ADMIN)
        .await
        .gating()
        .list_gate_runs(switchyard::api::v1::ListGateRunsRequest {
            kind: "canary".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .runs;
    assert_eq!(runs.len(), 1, "the PASS is kept on the gating server");
    assert_eq!(runs[0].target, same.addr());

    // 20 ms slower: FAIL on latency, exit 1.
    let (code, doc, err) = canary(dir.path(), &b, &slow.addr(), &run);
    assert_eq!(code, Some(1), "{err}");
    let doc = doc.unwrap();
    assert_eq!(text(&doc, &["verdict", "status"]), "FAIL");
    let reasons = at(&doc, &["verdict", "reasons"]).to_string();
    assert!(reasons.contains("latency_p95"), "{reasons}");
    assert!(!reasons.contains("error_rate"), "{reasons}");
    assert!(num(&doc, &["experiment", "latency_ms", "p(95)"]) >= 20.0);

    // 5 % refused: FAIL on errors, with the injected cause counted.
    let (code, doc, err) = canary(dir.path(), &b, &failing.addr(), &run);
    assert_eq!(code, Some(1), "{err}");
    let doc = doc.unwrap();
    let reasons = at(&doc, &["verdict", "reasons"]).to_string();
    assert!(reasons.contains("error_rate"), "{reasons}");
    let by_cause = at(&doc, &["phases", "during", "canary", "errorDistribution"]);
    assert!(
        by_cause
            .get("UNAVAILABLE: injected fault (serve --fault-error-rate)")
            .is_some_and(|n| n.as_i64() > Some(0)),
        "{by_cause}"
    );
    assert_eq!(
        num(
            &doc,
            &[
                "phases",
                "during",
                "canary",
                "statusCodeDistribution",
                "UNAVAILABLE"
            ]
        ),
        num(&doc, &["experiment", "errors"])
    );

    // Too few calls for the minimum sample: INCONCLUSIVE, exit 3.
    let (code, doc, err) = canary(
        dir.path(),
        &b,
        &same.addr(),
        &["--rate", "20", "--duration", "2s", "--warmup", "0"],
    );
    assert_eq!(code, Some(3), "{err}");
    assert_eq!(text(&doc.unwrap(), &["verdict", "status"]), "INCONCLUSIVE");
}

/// Starts `switchyard smoke` at 100 calls/s with no warm-up against
/// `target`, with `extra` options, and returns once its run has started
/// (its first line), with its standard error's lines.
fn start_smoke(
    dir: &Path,
    target: &str,
    extra: &[&str],
) -> (std::process::Child, std::sync::Arc<Mutex<Vec<String>>>) {
    let mut args = vec![
        "smoke", "--target", target, "--setup", "--rate", "100", "--warmup", "0",
    ];
    args.extend_from_slice(extra);
    let mut child = command(dir, &args, &[("SWITCHYARD_TOKEN", ADMIN)])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = collect_lines(child.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !lines.lock().unwrap().iter().any(|l| l.contains("warm-up")) {
        assert!(Instant::now() < deadline, "{:?}", lines.lock().unwrap());
        std::thread::sleep(Duration::from_millis(10));
    }
    (child, lines)
}

#[test]
fn a_server_that_stalls_shows_in_p99_and_max() {
    let _turn = turn();
    let server = Running::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("stall.json");
    let target = server.addr();
    // Freeze the server for 2 s two seconds into the run.
    let (mut child, lines) = start_smoke(
        dir.path(),
        &target,
        &["--duration", "6s", "--out", out.to_str().unwrap()],
    );
    std::thread::sleep(Duration::from_secs(2));
    let pid = server.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        std::process::Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{:?}", lines.lock().unwrap());

    let doc = read_json(&out);
    let l = |k: &str| num(&doc, &["results", "latency_ms", k]);
    // The calls due while it was frozen waited for it: measured from when
    // they were due, the longest waited about the whole stall.
    assert!(l("max") >= 1500.0, "max {} ms", l("max"));
    assert!(l("p(99)") >= 1000.0, "p99 {} ms", l("p(99)"));
    assert!(l("p(95)") > 450.0, "p95 {} ms", l("p(95)"));
    assert_eq!(
        num(&doc, &["results", "count"]),
        600.0,
        "the schedule kept going"
    );
    assert_eq!(text(&doc, &["verdict", "status"]), "FAIL");
}

#[test]
fn ctrl_c_writes_an_interrupted_report_that_is_never_a_pass() {
    let _turn = turn();
    let server = Running::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("interrupted.json");
    let target = server.addr();
    let (mut child, lines) = start_smoke(
        dir.path(),
        &target,
        &[
            "--duration",
            "30s",
            "--min-requests",
            "10",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    std::thread::sleep(Duration::from_secs(2));
    let started = Instant::now();
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "it stops promptly"
    );
    assert_eq!(status.code(), Some(3), "{:?}", lines.lock().unwrap());
    let doc = read_json(&out);
    assert_eq!(at(&doc, &["interrupted"]), true);
    assert_eq!(text(&doc, &["verdict", "status"]), "INCONCLUSIVE");
    assert!(
        at(&doc, &["verdict", "reasons"])
            .to_string()
            .contains("interrupted")
    );
    let count = num(&doc, &["results", "count"]);
    assert!(
        (100.0..3000.0).contains(&count),
        "{count} calls before the stop"
    );
}

#[test]
fn bad_input_is_one_line_exit_2_and_no_report() {
    let _turn = turn();
    let server = Running::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let target = server.addr();
    let nowhere = format!("127.0.0.1:{}", free_port());
    let out: PathBuf = dir.path().join("smoke-summary.json");
    let o = out.to_str().unwrap();
    let smoke = |rest: &[&str]| {
        let mut a = vec!["smoke", "--out", o];
        a.extend_from_slice(rest);
        a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    /// Arguments, environment, and what the one line must say.
    type Case<'a> = (Vec<String>, &'a [(&'a str, &'a str)], &'a str);
    let cases: Vec<Case> = vec![
        (
            smoke(&[]),
            &[],
            "required arguments were not provided: --target <ADDR>",
        ),
        (smoke(&["--target", &nowhere]), &[], "cannot reach"),
        (smoke(&["--target", "not a host"]), &[], "not host:port"),
        (
            smoke(&["--target", &target, "--mix", "Bogus"]),
            &[],
            "unknown call \"Bogus\"",
        ),
        (smoke(&["--target", &target, "--rate", "0"]), &[], "--rate"),
        (
            smoke(&["--target", &target, "--duration", "0s"]),
            &[],
            "--duration",
        ),
        (
            smoke(&["--target", &target, "--deadline", "soon"]),
            &[],
            "--deadline",
        ),
        (
            smoke(&["--target", &target, "--no-such-flag"]),
            &[],
            "--no-such-flag",
        ),
        (
            smoke(&["--target", &target, "--max-error-rate", "2"]),
            &[],
            "--max-error-rate",
        ),
        // The flag does not exist and --setup was not given.
        (smoke(&["--target", &target]), &[], "pass --setup"),
        (
            smoke(&["--target", &target, "--setup"]),
            &[("SWITCHYARD_TOKEN", "")],
            "--token",
        ),
        (
            smoke(&["--target", &target, "--setup", "--slo", "nope"]),
            &[],
            "GetSmokeThreshold: NOT_FOUND",
        ),
        (
            ["canary", "--baseline", &target, "--out", o]
                .map(String::from)
                .to_vec(),
            &[],
            "required arguments were not provided: --canary <ADDR>",
        ),
        (
            [
                "canary",
                "--baseline",
                &target,
                "--canary",
                &target,
                "--p95-ratio=-1",
                "--duration",
                "1s",
                "--out",
                o,
            ]
            .map(String::from)
            .to_vec(),
            &[],
            "p95_ratio",
        ),
    ];
    for (args, env, says) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = cli(dir.path(), &args, env);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(!out.exists(), "{args:?} wrote a report");
        assert!(output.stdout.is_empty(), "{args:?}: nothing on stdout");
    }
}

/// On a terminal the progress line is drawn through every phase, the
/// measured one included: before, it was drawn during the warm-up, cleared at
/// its end and never drawn again, so the measured seconds were silent.
/// `script` gives the CLI a terminal and keeps what it showed.
#[allow(clippy::await_holding_lock)] // see `turn`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_progress_line_is_drawn_in_every_phase() {
    let _turn = turn();
    let server = Running::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    // A terminal wide enough for the whole line (`script`'s has no size).
    let line = format!(
        "stty cols 200 rows 40; exec {BIN} smoke --target {} --setup --min-requests 10 --rate 100 --duration 3s --warmup 1s",
        server.addr()
    );
    let mut cmd = std::process::Command::new("script");
    cmd.current_dir(dir.path())
        .args(["-qefc", &line, "/dev/null"])
        .env_remove("CI")
        .env_remove("GITHUB_STEP_SUMMARY")
        .env("SWITCHYARD_TOKEN", ADMIN)
        .stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("SWITCHYARD_TEST_") || k.starts_with("OTEL_") {
            cmd.env_remove(k);
        }
    }
    let o = cmd.output().unwrap();
    let shown = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{shown}");
    assert!(shown.contains("warm-up ["), "{shown}");
    // The measured phase is drawn with its own name, length and figures.
    let measured: Vec<&str> = shown
        .split(['\r', '\n'])
        .filter(|l| l.contains("smoke [") && l.contains(" of 3s"))
        .collect();
    assert!(
        measured.iter().any(|l| l.contains("/s, 0 errors, p95 ")),
        "{shown}"
    );
}

/// `switchyard judge` on another tool's reports: a k6 summary is a smoke run
/// judged and kept by the GatingService (in the history, with the file's
/// figures); two ghz reports are a canary comparison with the canary rules;
/// a report missing what the judge needs is one line naming the field, exit
/// 2, and nothing written.
#[allow(clippy::await_holding_lock)] // see `turn`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judge_reads_k6_and_ghz_reports_and_judges_them_as_its_own() {
    let _turn = turn();
    let server = Running::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples");
    let file = |name: &str| examples.join(name).to_str().unwrap().to_owned();
    let target = server.addr();

    let k6 = file("k6-summary.json");
    let o = cli(
        dir.path(),
        &[
            "judge", "--k6", &k6, "--gating", &target, "--target", "checkout",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let doc = read_json(&dir.path().join("smoke-summary.json"));
    assert_eq!(text(&doc, &["verdict", "status"]), "PASS");
    assert_eq!(num(&doc, &["results", "count"]), 6000.0);
    assert_eq!(num(&doc, &["results", "errors"]), 6.0);
    assert_eq!(num(&doc, &["results", "latency_ms", "p(95)"]), 130.2);
    assert_eq!(text(&doc, &["config", "target"]), "checkout");
    // Kept: the next judgement of the same target shows it in its history.
    let o = cli(
        dir.path(),
        &[
            "judge", "--k6", &k6, "--gating", &target, "--target", "checkout",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let runs = server
        .client(ADMIN)
        .await
        .gating()
        .list_gate_runs(switchyard::api::v1::ListGateRunsRequest {
            kind: "smoke".into(),
            target: "checkout".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .runs;
    assert_eq!(runs.len(), 2);

    let (b, c) = (file("ghz-baseline.json"), file("ghz-canary.json"));
    let o = cli(
        dir.path(),
        &["judge", "--ghz", &b, "--ghz", &c, "--gating", &target],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let doc = read_json(&dir.path().join("canary-report.json"));
    assert_eq!(text(&doc, &["verdict", "status"]), "FAIL");
    assert!(
        doc["verdict"]["reasons"][0]
            .as_str()
            .is_some_and(|r| r.starts_with("latency_p95: ")),
        "{doc}"
    );
    assert_eq!(num(&doc, &["experiment", "latency_ms", "p(95)"]), 53.9);
    assert_eq!(num(&doc, &["control", "latency_ms", "p(95)"]), 41.2);

    // A summary without the p95: refused by field, nothing written.
    let mut broken: Json = serde_json::from_str(&std::fs::read_to_string(&k6).unwrap()).unwrap();
    broken["metrics"]["http_req_duration{expected_response:true}"]
        .as_object_mut()
        .unwrap()
        .remove("p(95)");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, broken.to_string()).unwrap();
    let out = dir.path().join("bad-summary.json");
    let o = cli(
        dir.path(),
        &[
            "judge",
            "--k6",
            bad.to_str().unwrap(),
            "--gating",
            &target,
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.contains("metrics.http_req_duration{expected_response:true}.p(95): missing"),
        "{e}"
    );
    assert!(!out.exists());
}
