//! GatingService as a user sees it: the smoke threshold from a real
//! Prometheus (tiers, fallbacks), canary verdicts, smoke runs kept across a
//! restart with their revision, NLP fallback counting with its recording
//! rule, and bad input refused whole.

use std::time::Duration;

use crate::common::*;
use switchyard::{
    api::v1::*,
    config::{SloConfig, TierConfig},
};
use tonic::Code;

fn stats(count: i32, errors: i32, p95: f64) -> TrafficStats {
    TrafficStats {
        count,
        errors,
        ok: (count - errors).max(0),
        latency_ms: Some(LatencyMs {
            p95,
            p50: p95 / 2.0,
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn threshold(server: &TestServer, slo: &str) -> GetSmokeThresholdResponse {
    server
        .gating(GATING)
        .await
        .get_smoke_threshold(GetSmokeThresholdRequest { slo: slo.into() })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_threshold_follows_the_budget_prometheus_reports_and_falls_back_to_the_strictest() {
    if !crate::common::prometheus::available() {
        return;
    }
    // 10 requests/s; 0.001, 0.003 and 0.005 of them fail on the server: 0.01 %,
    // 0.03 % and 0.05 % against the 0.1 % allowed, so 90 %, 70 % and 50 % of
    // the budget left.
    for (errors, left, ms, tier) in [
        (0.001, 0.9, 450.0, "base"),
        (0.003, 0.7, 420.0, "below_0.8"),
        (0.005, 0.5, 400.0, "below_0.6"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        crate::common::prometheus::backfill_rates(dir.path(), 10.0, errors);
        let prom = Prometheus::start(&[], Some(&dir.path().join("data"))).unwrap();
        let budget = prom
            .wait_for("slo:switchyard_error_budget:remaining_ratio", 30)
            .await;
        assert!(
            (budget - left).abs() < 1e-9,
            "the rules give {budget}, not {left}"
        );

        let Some((server, _db)) = server_with(Backend::Sqlite, |c| {
            c.gating.prometheus_url = Some(prom.url());
            c.gating.slos.push(SloConfig {
                name: "nothing".into(),
                query: "switchyard_no_such_series".into(),
                base_p95_ms: 500.0,
                tiers: vec![TierConfig {
                    below: 0.5,
                    p95_ms: 300.0,
                }],
            });
        })
        .await
        else {
            return;
        };
        let t = threshold(&server, "").await;
        assert_eq!(
            (t.threshold_ms, t.source.as_str(), t.tier.as_str()),
            (ms, "prometheus", tier)
        );
        assert!((t.error_budget_remaining - left).abs() < 1e-9, "{t:?}");
        let b = t.budget.unwrap();
        assert_eq!(b.slo, "availability");
        assert_eq!(
            b.query,
            "slo:switchyard_error_budget:remaining_ratio{slo=\"availability\"}"
        );
        assert!(b.clamped_ratio.is_some_and(|c| (c - left).abs() < 1e-9));
        assert_eq!(b.tiers.len(), 2);
        assert!(b.reason.is_empty(), "{}", b.reason);

        // A query that returns nothing: that SLO's strictest tier, and why.
        let t = threshold(&server, "nothing").await;
        assert_eq!((t.threshold_ms, t.source.as_str()), (300.0, "fallback"));
        let reason = t.budget.unwrap().reason;
        assert!(reason.contains("no series"), "{reason}");

        // Prometheus stopped: the strictest tier, and why.
        prom.stop();
        let t = threshold(&server, "").await;
        assert_eq!((t.threshold_ms, t.source.as_str()), (400.0, "fallback"));
        assert!(t.error_budget_remaining.is_nan(), "no value was read");
        let reason = t.budget.unwrap().reason;
        assert!(reason.contains("unreachable"), "{reason}");
        server.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_slo_is_not_found_and_no_prometheus_is_the_base_said_plainly() {
    let Some((server, _db)) = server_on(Backend::Sqlite).await else {
        return;
    };
    let t = threshold(&server, "").await;
    assert_eq!((t.threshold_ms, t.source.as_str()), (450.0, "disabled"));
    assert!(
        t.budget
            .unwrap()
            .reason
            .contains("no Prometheus is configured")
    );
    let e = server
        .gating(GATING)
        .await
        .get_smoke_threshold(GetSmokeThresholdRequest {
            slo: "latency".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (
            Code::NotFound,
            "SLO \"latency\" not found; the SLOs are availability (slos in the configuration)"
        )
    );
    let e = server
        .gating(&tenant_token("a"))
        .await
        .get_smoke_threshold(GetSmokeThresholdRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
}

async fn compare(
    server: &TestServer,
    baseline: TrafficStats,
    canary: TrafficStats,
) -> CompareCanaryResponse {
    server
        .gating(GATING)
        .await
        .compare_canary(CompareCanaryRequest {
            baseline: Some(baseline),
            canary: Some(canary),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_verdicts_follow_the_contract() {
    let Some((server, _db)) = server_on(Backend::Sqlite).await else {
        return;
    };
    let same = compare(&server, stats(6000, 3, 210.0), stats(6000, 3, 210.0)).await;
    assert_eq!(same.verdict(), Verdict::Pass);
    let report = same.report.unwrap();
    assert_eq!(report.verdict.unwrap().status, "PASS");
    assert_eq!(
        report.config.unwrap().rules.unwrap().p95_ratio,
        Some(1.10),
        "defaults filled in"
    );

    // 15 % slower and by more than the 5 ms floor.
    let slow = compare(&server, stats(6000, 3, 200.0), stats(6000, 3, 230.0)).await;
    assert_eq!(slow.verdict(), Verdict::Fail);
    let latency = &slow.checks[0];
    assert_eq!(
        (latency.name.as_str(), latency.classification.as_str()),
        ("latency_p95", "High")
    );
    assert!((latency.ratio.unwrap() - 1.15).abs() < 1e-9);
    assert!((latency.delta_pct.unwrap() - 15.0).abs() < 1e-9);
    let verdict = slow.report.unwrap().verdict.unwrap();
    assert_eq!(
        verdict.reasons,
        ["latency_p95: p95 ratio 1.15 > 1.1 and +30 ms > 5 ms floor"]
    );
    assert_eq!(verdict.exit_code, 1);

    let few = compare(&server, stats(6000, 3, 200.0), stats(150, 0, 200.0)).await;
    assert_eq!(few.verdict(), Verdict::Inconclusive);
    assert_eq!(few.report.unwrap().verdict.unwrap().exit_code, 3);

    // A zero-error baseline and a canary below the 0.5 % error floor.
    let quiet = compare(&server, stats(6000, 0, 200.0), stats(6000, 20, 200.0)).await;
    assert_eq!(quiet.verdict(), Verdict::Pass, "{:?}", quiet.checks);
    assert_eq!(
        quiet.checks[1].ratio, None,
        "no ratio against a zero baseline"
    );

    let none = compare(&server, stats(0, 0, 0.0), stats(6000, 0, 200.0)).await;
    assert_eq!(none.verdict(), Verdict::NoData);

    // A stricter policy, as given.
    let strict = server
        .gating(GATING)
        .await
        .compare_canary(CompareCanaryRequest {
            baseline: Some(stats(6000, 3, 200.0)),
            canary: Some(stats(6000, 3, 204.0)),
            policy: Some(CanaryPolicy {
                p95_ratio: Some(1.01),
                p95_floor_ms: Some(0.0),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(strict.verdict(), Verdict::Fail);
}

on_both_backends!(smoke_runs_are_kept_with_their_revision_across_a_restart);

async fn evaluate(server: &TestServer, target: &str, run_id: &str, s: TrafficStats) -> GateRun {
    server
        .gating(GATING)
        .await
        .evaluate_smoke(EvaluateSmokeRequest {
            results: Some(s),
            target: target.into(),
            run_id: run_id.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap()
}

async fn runs(server: &TestServer, r: ListGateRunsRequest) -> ListGateRunsResponse {
    server
        .gating(GATING)
        .await
        .list_gate_runs(r)
        .await
        .unwrap()
        .into_inner()
}

async fn smoke_runs_are_kept_with_their_revision_across_a_restart(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    if backend == Backend::Postgres {
        db.migrate().await;
    }
    let server = TestServer::start(test_config(&db)).await;
    setup_tenants(&server, &["a"]).await;
    let first = evaluate(&server, "eu-1", "ci-1", stats(6000, 6, 2.4)).await;
    assert_eq!(
        (first.kind.as_str(), first.verdict(), first.revision),
        ("smoke", Verdict::Pass, 1)
    );
    create_bool_flag(&server.client(ADMIN).await, "new-ui", false).await;
    let second = evaluate(&server, "eu-1", "ci-2", stats(6000, 6, 460.0)).await;
    assert_eq!((second.verdict(), second.revision), (Verdict::Fail, 2));
    assert_eq!(second.threshold_ms, 450.0);
    assert!(
        second.reasons[0].starts_with("latency_ms.p(95)<450: "),
        "{:?}",
        second.reasons
    );
    evaluate(&server, "us-1", "ci-3", stats(10, 0, 1.0)).await;
    server.shutdown().await.unwrap();

    // After a restart, newest first, with what they were judged at.
    let server = TestServer::start(test_config(&db)).await;
    let all = runs(&server, ListGateRunsRequest::default()).await;
    let ids: Vec<&str> = all.runs.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(ids, ["ci-3", "ci-2", "ci-1"]);
    assert_eq!(all.runs[0].verdict(), Verdict::Inconclusive);
    assert_eq!(all.runs[1], second, "kept as it was answered");
    let Some(gate_run::Report::Smoke(summary)) = &all.runs[2].report else {
        panic!("a smoke summary");
    };
    assert_eq!(summary.results.as_ref().unwrap().count, 6000);
    assert_eq!(summary.budget.as_ref().unwrap().source, "disabled");

    // Filtered by target, and paged.
    let eu = runs(
        &server,
        ListGateRunsRequest {
            target: "eu-1".into(),
            kind: "smoke".into(),
            page_size: 1,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(eu.runs.len(), 1);
    assert_eq!(eu.runs[0].run_id, "ci-2");
    let rest = runs(
        &server,
        ListGateRunsRequest {
            target: "eu-1".into(),
            page_size: 1,
            page_token: eu.next_page_token,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(rest.runs[0].run_id, "ci-1");
    assert!(rest.next_page_token.is_empty());
    let canaries = runs(
        &server,
        ListGateRunsRequest {
            kind: "canary".into(),
            ..Default::default()
        },
    )
    .await;
    assert!(canaries.runs.is_empty());

    // A recorded canary verdict is kept too.
    let recorded = server
        .gating(GATING)
        .await
        .compare_canary(CompareCanaryRequest {
            baseline: Some(stats(6000, 3, 200.0)),
            canary: Some(stats(6000, 3, 201.0)),
            record: true,
            config: Some(CanaryConfig {
                canary: "10.0.0.2:50051".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let run = recorded.run.unwrap();
    assert_eq!(
        (run.kind.as_str(), run.target.as_str(), run.verdict()),
        ("canary", "10.0.0.2:50051", Verdict::Pass)
    );
    let canaries = runs(
        &server,
        ListGateRunsRequest {
            kind: "canary".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(canaries.runs, [run]);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_by_field_and_nothing_of_it_is_kept() {
    let Some((server, _db)) = server_on(Backend::Sqlite).await else {
        return;
    };
    let mut nan = stats(100, 0, 1.0);
    nan.latency_ms.as_mut().unwrap().p99 = f64::NAN;
    let mut rate = stats(100, 0, 1.0);
    rate.error_rate = 1.2;
    let mut dist = stats(100, 0, 1.0);
    dist.status_code_distribution.insert("OK".into(), -1);
    for (results, max_error_rate, message) in [
        (None, None, "results: is required"),
        (
            Some(stats(-1, 0, 1.0)),
            None,
            "results.count: must not be negative",
        ),
        (
            Some(stats(10, 11, 1.0)),
            None,
            "results.errors: 11 is more than results.count 10",
        ),
        (
            Some(stats(100, 0, -5.0)),
            None,
            "results.latency_ms.p(95): must not be negative",
        ),
        (
            Some(nan),
            None,
            "results.latency_ms.p(99): must be a finite number of ms, not NaN",
        ),
        (
            Some(rate),
            None,
            "results.error_rate: must be a ratio between 0 and 1, not 1.2",
        ),
        (
            Some(dist),
            None,
            "results.status_code_distribution[\"OK\"]: -1 must not be negative",
        ),
        (
            Some(stats(100, 0, 1.0)),
            Some(f64::INFINITY),
            "max_error_rate: must be a ratio above 0 and at most 1, not inf",
        ),
        (
            Some(stats(100, 0, 1.0)),
            Some(0.0),
            "max_error_rate: must be a ratio above 0 and at most 1, not 0",
        ),
    ] {
        let e = server
            .gating(GATING)
            .await
            .evaluate_smoke(EvaluateSmokeRequest {
                results,
                max_error_rate,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!((e.code(), e.message()), (Code::InvalidArgument, message));
    }
    // The run's configuration is kept with it, so it is checked too.
    let e = server
        .gating(GATING)
        .await
        .evaluate_smoke(EvaluateSmokeRequest {
            results: Some(stats(100, 0, 1.0)),
            config: Some(SmokeConfig {
                warmup_s: f64::NEG_INFINITY,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (
            Code::InvalidArgument,
            "config.warmup_s: must be a finite number, not -inf"
        )
    );
    let e = server
        .gating(GATING)
        .await
        .compare_canary(CompareCanaryRequest {
            baseline: Some(stats(100, 0, 1.0)),
            canary: Some(stats(100, 0, 1.0)),
            policy: Some(CanaryPolicy {
                p95_ratio: Some(f64::NAN),
                ..Default::default()
            }),
            record: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (
            Code::InvalidArgument,
            "policy.p95_ratio: must be a finite number, not NaN"
        )
    );
    assert!(
        runs(&server, ListGateRunsRequest::default())
            .await
            .runs
            .is_empty(),
        "no refused run was kept"
    );

    // NLP: one bad outcome refuses the batch, which then counts nothing.
    setup_tenants(&server, &["a"]).await;
    let outcome = |tenant: &str, confidence: f64| NlpOutcome {
        tenant_id: tenant.into(),
        confidence,
        intent: "billing".into(),
    };
    for (outcomes, code, message) in [
        (
            vec![],
            Code::InvalidArgument,
            "outcomes: must not be empty".to_owned(),
        ),
        (
            vec![outcome("a", 0.1), outcome("a", 1.01)],
            Code::InvalidArgument,
            "outcomes[1].confidence: must be between 0 and 1, not 1.01".to_owned(),
        ),
        (
            vec![outcome("a", 0.1), outcome("a", f64::NAN)],
            Code::InvalidArgument,
            "outcomes[1].confidence: must be between 0 and 1, not NaN".to_owned(),
        ),
        (
            vec![outcome("a", 0.1), outcome("zz", 0.5)],
            Code::NotFound,
            "outcomes[1].tenant_id: tenant \"zz\" not found".to_owned(),
        ),
        (
            vec![outcome("a", 0.5); 1001],
            Code::InvalidArgument,
            "outcomes: at most 1000 outcomes in one batch, not 1001".to_owned(),
        ),
    ] {
        let e = server
            .gating(GATING)
            .await
            .record_nlp_outcomes(RecordNlpOutcomesRequest { outcomes })
            .await
            .unwrap_err();
        assert_eq!((e.code(), e.message()), (code, message.as_str()));
    }
    let metrics = http(&server, "GET", "/metrics", None, None).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("switchyard_nlp_") && l.contains("tenant=\"a\"")),
        "a refused batch counts nothing: {text}"
    );
}

/// The value of the counter `name` with `tenant` (summed over intents).
fn counter(text: &str, name: &str, tenant: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(&format!("tenant=\"{tenant}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nlp_fallbacks_are_counted_per_tenant_threshold_and_the_rule_gives_their_ratio() {
    let tokens = format!("gating={GATING}");
    let server = Running::start(&[("SWITCHYARD_TOKENS", &tokens)]);
    let admin = server.client(ADMIN).await;
    for id in ["acme", "globex"] {
        admin
            .tenants()
            .create_tenant(CreateTenantRequest {
                tenant: Some(Tenant {
                    id: id.into(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
    }
    // The threshold flag: 0.5 for everyone, 0.8 for acme.
    admin
        .flags()
        .create_flag(new_flag("nlp.min_confidence", FlagType::Number, v_num(0.5)))
        .await
        .unwrap();
    admin
        .flags()
        .set_tenant_override(SetTenantOverrideRequest {
            tenant_id: "acme".into(),
            flag_key: "nlp.min_confidence".into(),
            value: Some(v_num(0.8)),
            expected_revision: 0,
        })
        .await
        .unwrap();
    let gating = server.client(GATING).await;
    let record = |batch: Vec<(&'static str, f64, &'static str)>| {
        let gating = gating.clone();
        async move {
            gating
                .gating()
                .record_nlp_outcomes(RecordNlpOutcomesRequest {
                    outcomes: batch
                        .into_iter()
                        .map(|(t, c, i)| NlpOutcome {
                            tenant_id: t.into(),
                            confidence: c,
                            intent: i.into(),
                        })
                        .collect(),
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    // acme: 0.7 is below its 0.8; globex: 0.4 is below the default 0.5.
    let r = record(vec![
        ("acme", 0.7, "billing"),
        ("acme", 0.85, "billing"),
        ("acme", 0.9, "refund"),
        ("globex", 0.4, ""),
        ("globex", 0.6, ""),
    ])
    .await;
    assert_eq!((r.recorded, r.fallbacks), (5, 2));
    let text = server.get("/metrics", None).1;
    assert_eq!(counter(&text, "switchyard_nlp_outcomes_total", "acme"), 3.0);
    assert_eq!(
        counter(&text, "switchyard_nlp_fallbacks_total", "acme"),
        1.0
    );
    assert_eq!(
        counter(&text, "switchyard_nlp_outcomes_total", "globex"),
        2.0
    );
    assert_eq!(
        counter(&text, "switchyard_nlp_fallbacks_total", "globex"),
        1.0
    );
    assert!(
        text.contains(
            "switchyard_nlp_outcomes_total{track=\"stable\",tenant=\"globex\",intent=\"unknown\"} 2"
        ),
        "{text}"
    );

    // The recording rule over a real Prometheus: once it has seen the series,
    // a second batch at a known ratio (acme: 3 of 10 below 0.8).
    let Some(prom) = Prometheus::start(&[server.addr()], None) else {
        return;
    };
    prom.wait_for("switchyard_nlp_outcomes_total{tenant=\"acme\"}", 30)
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut batch = vec![("acme", 0.5, "billing"); 3];
    batch.extend(vec![("acme", 0.95, "billing"); 7]);
    let r = record(batch).await;
    assert_eq!((r.recorded, r.fallbacks), (10, 3));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ratio = prom
            .query("tenant:switchyard_nlp_fallbacks:ratio_rate5m{tenant=\"acme\"}")
            .first()
            .map(|(_, v)| *v);
        if ratio.is_some_and(|v| (v - 0.3).abs() < 1e-9) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the rule gives 0.3 within 30 s, not {ratio:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
