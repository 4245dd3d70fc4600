//! The rules and dashboards against a real Prometheus (Debian's `prometheus`,
//! started here on loopback with the repo's rule files): it scrapes a
//! `baseline` and a `canary` server, the canary made slower with the
//! drill-only `SWITCHYARD_FAULT_DELAY_MS`; after bounded traffic the
//! recording rules, the canary deltas and the error budget answer through the
//! HTTP API with the expected values, the soft latency alert is pending or
//! firing, and every query of every dashboard panel parses, evaluates and
//! names only metrics and recording rules that exist.
//!
//! Without a `prometheus` binary the test is skipped with a note, except under
//! `CI=true` (CI installs the package).

use std::{
    collections::BTreeSet,
    path::Path,
    time::{Duration, Instant},
};

use crate::common::*;
use serde_json::{Value as Json, json};
use switchyard::api::v1::EvaluateFlagRequest;

const REPO: &str = env!("CARGO_MANIFEST_DIR");
/// Calls per server, at [`RATE`] a second: bounded traffic, spread over
/// several scrapes (a counter must be seen rising, not just appearing).
const CALLS: usize = 720;
/// Calls a second to each server.
const RATE: u64 = 60;
/// The canary's injected delay.
const CANARY_DELAY_MS: u64 = 40;

/// Starts a rollout of a flag of two variants on `server`.
async fn start_manual_rollout(server: &Running) {
    use switchyard::api::v1::{
        CreateFlagRequest, Flag, FlagType, Rollout, RolloutStage, StartRolloutRequest,
    };
    let client = server.client(ADMIN).await;
    client
        .flags()
        .create_flag(CreateFlagRequest {
            flag: Some(Flag {
                key: "rollout-demo".into(),
                r#type: FlagType::Bool as i32,
                variants: [
                    ("on".to_owned(), v_bool(true)),
                    ("off".to_owned(), v_bool(false)),
                ]
                .into_iter()
                .collect(),
                default_variant: "off".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    client
        .rollouts()
        .start_rollout(StartRolloutRequest {
            rollout: Some(Rollout {
                flag_key: "rollout-demo".into(),
                treatment: "on".into(),
                stages: vec![RolloutStage {
                    percent: 10.0,
                    hold: Some(pbjson_types::Duration {
                        seconds: 1,
                        nanos: 0,
                    }),
                    min_samples: 10,
                }],
                max_holds: 100,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
}

async fn drive(server: &Running) {
    let client = server.client(ADMIN).await;
    create_bool_flag(&client, "new-ui", true).await;
    // Open model: one call every 1/RATE s, whatever the server's pace.
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / RATE));
    let mut calls = Vec::with_capacity(CALLS);
    for _ in 0..CALLS {
        tick.tick().await;
        let client = client.clone();
        calls.push(tokio::spawn(async move {
            client
                .flags()
                .evaluate_flag(EvaluateFlagRequest {
                    flag_key: "new-ui".into(),
                    target: None,
                    ..Default::default()
                })
                .await
                .unwrap();
        }));
    }
    for c in calls {
        c.await.unwrap();
    }
}

/// The metric and recording-rule names a PromQL expression refers to
/// (everything that is not a function, keyword, label, string, number or
/// duration).
fn names_in(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "inf",
        "nan",
        // Aggregation operators, which may be followed by `by (...)` rather
        // than their parenthesis.
        "sum",
        "avg",
        "min",
        "max",
        "count",
        "group",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
    ];
    let c: Vec<char> = expr.chars().collect();
    let mut out = BTreeSet::new();
    let mut i = 0;
    // Skip the parenthesised label list after these keywords.
    let mut skip_list = false;
    while i < c.len() {
        match c[i] {
            '"' | '\'' | '`' => {
                let q = c[i];
                i += 1;
                while i < c.len() && c[i] != q {
                    if c[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            '{' => {
                while i < c.len() && c[i] != '}' {
                    if c[i] == '"' {
                        i += 1;
                        while i < c.len() && c[i] != '"' {
                            if c[i] == '\\' {
                                i += 1;
                            }
                            i += 1;
                        }
                    }
                    i += 1;
                }
                i += 1;
            }
            '[' => {
                while i < c.len() && c[i] != ']' {
                    i += 1;
                }
                i += 1;
            }
            '(' if skip_list => {
                while i < c.len() && c[i] != ')' {
                    i += 1;
                }
                i += 1;
                skip_list = false;
            }
            ch if ch.is_ascii_alphabetic() || ch == '_' || ch == ':' => {
                let start = i;
                while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '_' || c[i] == ':') {
                    i += 1;
                }
                let word: String = c[start..i].iter().collect();
                let mut j = i;
                while j < c.len() && c[j] == ' ' {
                    j += 1;
                }
                let lower = word.to_ascii_lowercase();
                if KEYWORDS.contains(&lower.as_str()) {
                    skip_list = matches!(
                        lower.as_str(),
                        "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
                    );
                } else if c.get(j) != Some(&'(') {
                    out.insert(word);
                }
            }
            ch if ch.is_ascii_digit() => {
                while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '.') {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    out
}

#[test]
fn the_name_reader_finds_metrics_and_nothing_else() {
    let names = names_in(
        "sum by (track, le) (rate(a_bucket{service=~\"x\\\\.y\",le!=\"1\"}[5m])) / on () group_left () b:c:d offset 5m > 1e3 and ALERTS",
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["ALERTS", "a_bucket", "b:c:d"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_alerts_and_dashboards_answer_from_a_real_prometheus() {
    let delay = CANARY_DELAY_MS.to_string();
    let baseline = Running::start(&[("SWITCHYARD_TRACK", "baseline")]);
    let canary = Running::start(&[
        ("SWITCHYARD_TRACK", "canary"),
        ("SWITCHYARD_FAULT_DELAY_MS", &delay),
    ]);
    let Some(prom) = Prometheus::start(&[baseline.addr(), canary.addr()], None) else {
        return;
    };
    // Prometheus up and both targets scraped before the traffic starts.
    let deadline = Instant::now() + Duration::from_secs(30);
    while prom.query("up == 1").len() < 2 {
        assert!(Instant::now() < deadline, "prometheus scrapes both servers");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A rollout on the baseline (no prometheus_url: judged INCONCLUSIVE
    // every second), so that its series exist for the rollout dashboard.
    start_manual_rollout(&baseline).await;
    tokio::join!(drive(&baseline), drive(&canary));

    // Poll until every figure is in (rules evaluate every second).
    let deadline = Instant::now() + Duration::from_secs(60);
    let alert = loop {
        let p95 = |t| prom.on_track("track:switchyard_request_duration_seconds:p95_rate5m", t);
        let rate = |t| prom.on_track("track:switchyard_requests:rate5m", t);
        let errors = |t| prom.on_track("track:switchyard_request_errors:ratio_rate5m", t);
        let delta = prom.on_track(
            "track:switchyard_request_duration_seconds:p95_rate5m_baseline_delta_percent",
            "canary",
        );
        let budget = prom
            .query("slo:switchyard_error_budget:remaining_ratio")
            .first()
            .map(|(_, v)| *v);
        let alerts = prom.api("alerts", &[]);
        let alert = alerts["data"]["alerts"].as_array().and_then(|a| {
            a.iter()
                .find(|x| x["labels"]["alertname"] == "SwitchyardCanaryLatencyAboveBaseline")
                .cloned()
        });
        let ready = p95("canary").is_some_and(|v| v >= CANARY_DELAY_MS as f64 / 1000.0)
            && p95("baseline").is_some_and(|v| v < 0.02)
            && rate("canary").is_some_and(|v| v > 1.0)
            && rate("baseline").is_some_and(|v| v > 1.0)
            && delta.is_some_and(|v| v > 10.0)
            && errors("canary") == Some(0.0)
            && errors("baseline") == Some(0.0)
            // The SLO counts the stable track only: a canary and its
            // baseline spend no budget (there is none to read here).
            && budget.is_none()
            && alert.is_some();
        if ready {
            break alert.unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "within 60 s: p95 {:?}/{:?}, rate {:?}/{:?}, delta {delta:?}, errors {:?}/{:?}, budget {budget:?}, alert {alert:?}",
            p95("baseline"),
            p95("canary"),
            rate("baseline"),
            rate("canary"),
            errors("baseline"),
            errors("canary"),
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let state = alert["state"].as_str().unwrap_or("");
    assert!(matches!(state, "pending" | "firing"), "{alert}");
    assert_eq!(alert["labels"]["severity"], "warning");
    assert_eq!(alert["labels"]["track"], "canary");
    // The error-ratio alert has nothing to say: no server-side errors.
    let alerts = prom.api("alerts", &[]);
    assert!(
        !alerts["data"]["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["labels"]["alertname"] == "SwitchyardCanaryErrorRatioAboveBaseline"),
        "{alerts}"
    );

    // Every dashboard query parses and evaluates, and names only what exists.
    let mut known: BTreeSet<String> = ["ALERTS".to_owned()].into();
    for server in [&baseline, &canary] {
        for line in server.get("/metrics", None).1.lines() {
            if let Some(name) = line
                .split(['{', ' '])
                .next()
                .filter(|n| !n.is_empty() && !line.starts_with('#'))
            {
                known.insert(name.to_owned());
            }
        }
    }
    // What the rollout dashboard reads of the user's own service (the
    // rollouts' default queries: OpenTelemetry's HTTP server duration
    // histogram by feature-flag variant), exported by no server here.
    for name in [
        "http_server_request_duration_seconds_bucket",
        "http_server_request_duration_seconds_count",
    ] {
        known.insert(name.to_owned());
    }
    for file in ["rules.yml", "alerts.yml"] {
        let text =
            std::fs::read_to_string(Path::new(REPO).join("observability/prometheus").join(file))
                .unwrap();
        for line in text.lines() {
            if let Some(r) = line.trim().strip_prefix("- record: ") {
                known.insert(r.trim().to_owned());
            }
        }
    }
    let dir = Path::new(REPO).join("observability/grafana");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let dash: Json = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let annotations = dash["annotations"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["expr"].is_string())
            .map(|a| (a["name"].clone(), a.clone()));
        let panels = dash["panels"].as_array().unwrap().iter().flat_map(|p| {
            p["targets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| (p["title"].clone(), t.clone()))
        });
        for (title, target) in panels.chain(annotations) {
            let panel = json!({"title": title});
            {
                let expr = target["expr"]
                    .as_str()
                    .unwrap()
                    .replace("$track", ".+")
                    .replace("$rollout", "ro-000000000000")
                    .replace("$flag", "rollout-demo");
                let r = prom.api("query", &[("query", &expr)]);
                assert_eq!(
                    r["status"],
                    "success",
                    "{} panel {:?}: {expr}: {r}",
                    path.display(),
                    panel["title"]
                );
                for name in names_in(&expr) {
                    assert!(
                        known.contains(&name),
                        "{} panel {:?} names {name:?}, which no server exports and no rule records",
                        path.display(),
                        panel["title"]
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 20,
        "every panel's queries were checked ({checked})"
    );
}

/// The failures of a replica's first calls spend the budget: its error series
/// exist at 0 from its start (before, the series was born holding its first
/// errors and `rate()` never saw them, leaving the budget untouched). A
/// healthy stable replica serves a steady stream while a second one, failing
/// every call with the drill, gets a burst of [`FIRST_ERRORS`] calls; the
/// budget then stands where those failures put it, computed from the two
/// replicas' own counters. A canary's drill errors and the GatingService's
/// calls spend nothing (promtool's cases).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicas_first_errors_spend_the_budget() {
    const FIRST_ERRORS: usize = 20;
    const OK_CALLS: usize = 600;
    let healthy = Running::start(&[]);
    let failing = Running::start(&[("SWITCHYARD_FAULT_ERROR_RATE", "1")]);
    // Before any call, the failing replica already shows its error series.
    let metrics = failing.get("/metrics", None).1;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("switchyard_requests_total{")
                && l.contains("service=\"switchyard.v1.FlagService\"")
                && l.contains("method=\"EvaluateFlag\"")
                && l.contains("code=\"UNAVAILABLE\"")
                && l.ends_with(" 0")),
        "{metrics}"
    );
    let Some(prom) = Prometheus::start(&[healthy.addr(), failing.addr()], None) else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while prom
        .query("switchyard_requests_total{code=\"UNAVAILABLE\",method=\"EvaluateFlag\"}")
        .len()
        < 4
    {
        assert!(
            Instant::now() < deadline,
            "prometheus scrapes both servers' zeros"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ok = healthy.client(ADMIN).await;
    create_bool_flag(&ok, "new-ui", true).await;
    let bad = failing.client(ADMIN).await;
    let evaluate = |c: switchyard::client::Client| async move {
        c.flags()
            .evaluate_flag(EvaluateFlagRequest {
                flag_key: "new-ui".into(),
                ..Default::default()
            })
            .await
    };
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / RATE));
    for i in 0..OK_CALLS {
        tick.tick().await;
        evaluate(ok.clone()).await.unwrap();
        if i == OK_CALLS / 2 {
            for _ in 0..FIRST_ERRORS {
                assert!(evaluate(bad.clone()).await.is_err());
            }
        }
    }
    // What the counters say: FIRST_ERRORS of (OK_CALLS + FIRST_ERRORS + the
    // flag's creation) API calls failed on the server.
    let total = (OK_CALLS + FIRST_ERRORS + 1) as f64;
    let want = 1.0 - (FIRST_ERRORS as f64 / total) / (1.0 - 0.999);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let budget = prom
            .query("slo:switchyard_error_budget:remaining_ratio")
            .first()
            .map(|(_, v)| *v);
        // The rules sum 5-minute rates, so the figure is the counters' within
        // what the rates' extrapolation makes of calls spread over 10 s.
        if budget.is_some_and(|b| (b - want).abs() <= 0.3 * want.abs()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "within 30 s the budget is about {want:.1} (from the counters), got {budget:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
