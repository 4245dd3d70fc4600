//! Guarded rollouts, for real: a real Prometheus scrapes a small service of
//! the test's own (`common::shop`) that evaluates the flag through
//! Switchyard on every request and exports per-variant request metrics.
//! With no fault the rollout completes every stage and the treatment
//! becomes the default; with latency injected only into the treatment the
//! first stage fails and the flag is put back at once; every step is in the
//! audit log with its verdict. And what a person does to a rollout: pause,
//! resume, skip, abort, the kill switch, the refusals; a Prometheus that
//! cannot be read holds a stage, then pauses the rollout.

use std::time::Duration;

use serde_json::json;
use switchyard::{
    api::v1::{
        AbortRolloutRequest, CreateFlagRequest, Flag, FlagType, GetFlagRequest, GetRolloutRequest,
        KillRolloutRequest, ListChangesRequest, PauseRolloutRequest, ResumeRolloutRequest, Rollout,
        RolloutStage, RolloutState, SkipStageRequest, StartRolloutRequest,
    },
    client::Client,
};
use tonic::Code;

use crate::common::{
    shop::{Load, Shop},
    *,
};

/// Creates the bool flag `key` with variants `on` and `off`, `off` the
/// default.
async fn create_flag(admin: &Client, key: &str) {
    admin
        .flags()
        .create_flag(CreateFlagRequest {
            flag: Some(Flag {
                key: key.into(),
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
}

fn stage(percent: f64, hold_s: i64, min_samples: i32) -> RolloutStage {
    RolloutStage {
        percent,
        hold: Some(pbjson_types::Duration {
            seconds: hold_s,
            nanos: 0,
        }),
        min_samples,
    }
}

/// A plan rolling `on` out over `stages`, latency judged with a 20 ms floor
/// (a loaded two-core machine's noise stays under it; an injected 100 ms
/// does not).
fn plan(flag: &str, stages: Vec<RolloutStage>) -> Rollout {
    Rollout {
        flag_key: flag.into(),
        treatment: "on".into(),
        stages,
        rules: Some(switchyard::api::v1::CanaryPolicy {
            p95_floor_ms: Some(20.0),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn start(admin: &Client, r: Rollout) -> Result<Rollout, tonic::Status> {
    admin
        .rollouts()
        .start_rollout(StartRolloutRequest { rollout: Some(r) })
        .await
        .map(|r| r.into_inner().rollout.unwrap())
}

async fn get(admin: &Client, id: &str) -> Rollout {
    admin
        .rollouts()
        .get_rollout(GetRolloutRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner()
        .rollout
        .unwrap()
}

/// Waits until rollout `id` is no longer running (at most `timeout`).
async fn settled(admin: &Client, id: &str, timeout: Duration) -> Rollout {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let r = get(admin, id).await;
        if r.state != RolloutState::Running as i32 {
            return r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still running after {timeout:?}: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn flag(admin: &Client, key: &str) -> Flag {
    admin
        .flags()
        .get_flag(GetFlagRequest {
            flag_key: key.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .flag
        .unwrap()
}

/// The audit log's entries by `actor`, oldest first: (action, verdict,
/// reason).
async fn steps_of(admin: &Client, actor: &str) -> Vec<(String, String, String)> {
    let mut all = admin
        .audit()
        .list_changes(ListChangesRequest {
            actor: actor.into(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .changes;
    all.reverse();
    all.into_iter()
        .map(|e| {
            let verdict = e
                .verdict
                .and_then(|v| v.fields.get("verdict").cloned())
                .map(|v| serde_json::to_value(v).unwrap())
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            (e.action, verdict, e.reason)
        })
        .collect()
}

/// A server judging on a Prometheus that scrapes the shop, the shop, its
/// callers, and the flag `checkout`.
struct Stand {
    admin: Client,
    target: String,
    shop: Shop,
    _load: Load,
    _prom: Prometheus,
    _server: TestServer,
    _db: TestDb,
}

async fn stand() -> Option<Stand> {
    if !crate::common::prometheus::available() {
        return None;
    }
    // The shop needs the server's address and Prometheus the shop's: the
    // server starts on a port chosen first.
    let port = free_port();
    let shop_clients_addr = format!("http://127.0.0.1:{port}");
    let db = TestDb::new(Backend::Sqlite).await?;
    let shop = Shop::start(
        "checkout",
        vec![
            Client::connect_lazy(
                switchyard::client::endpoint(&shop_clients_addr).unwrap(),
                ADMIN,
            )
            .expect("a client"),
        ],
        "on",
    )
    .await;
    let prom = Prometheus::start(&[shop.addr.to_string()], None)?;
    let mut config = test_config(&db);
    config.gating.prometheus_url = Some(prom.url());
    let server = TestServer::start_at(config, format!("127.0.0.1:{port}").parse().unwrap()).await;
    let admin = server.client(ADMIN).await;
    create_flag(&admin, "checkout").await;
    let load = Load::start(&shop, 100, 100_000);
    // Before the rollout, everyone gets `off`: wait until Prometheus has
    // scraped a few seconds of it, so that the first stage has a control.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while prom
        .query("sum(increase(http_server_request_duration_seconds_count[3s]))")
        .first()
        .is_none_or(|(_, v)| *v < 50.0)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "Prometheus never scraped the shop"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Some(Stand {
        admin,
        target: format!("127.0.0.1:{port}"),
        shop,
        _load: load,
        _prom: prom,
        _server: server,
        _db: db,
    })
}

/// `switchyard rollout ARGS` against the stand's server; its output.
async fn cli(s: &Stand, args: &[&str]) -> std::process::Output {
    let mut all = vec!["rollout"];
    all.extend_from_slice(args);
    let all: Vec<String> = all.iter().map(|a| a.to_string()).collect();
    let target = s.target.clone();
    tokio::task::spawn_blocking(move || {
        let mut args: Vec<&str> = all.iter().map(String::as_str).collect();
        args.extend(["--target", &target]);
        command(
            std::path::Path::new("."),
            &args,
            &[("SWITCHYARD_TOKEN", ADMIN)],
        )
        .output()
        .unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_fault_a_rollout_completes_every_stage() {
    let Some(s) = stand().await else { return };
    // Started and followed to its end with the CLI.
    let out = cli(
        &s,
        &[
            "start",
            "checkout",
            "--to",
            "on",
            "--stages",
            "10,50,100",
            "--hold",
            "4s",
            "--min-samples",
            "20",
            "--p95-floor-ms",
            "20",
            "--reason",
            "CHG-7 new checkout",
            "--watch",
        ],
    )
    .await;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let id = stdout.trim();
    // The display: each stage as it went, the cohorts, the verdicts.
    for shown in [
        "running  stage 1 of 3 at 10 %",
        "running  stage 2 of 3 at 50 %",
        "succeeded  stage 3 of 3 at 100 %",
        "treatment",
        "control",
        "last verdict PASS (stage 3)",
    ] {
        assert!(stderr.contains(shown), "{shown:?} not in\n{stderr}");
    }
    let r = get(&s.admin, id).await;
    let done = settled(&s.admin, &r.id, Duration::from_secs(90)).await;
    assert_eq!(
        done.state,
        RolloutState::Succeeded as i32,
        "{}: {:?}",
        done.reason,
        done.last_verdict
    );
    // The treatment is the default now, and the rule is gone.
    let f = flag(&s.admin, "checkout").await;
    assert_eq!(f.default_variant, "on");
    assert_eq!(f.targeting, None);
    // Both variants were served on the way.
    let served = s.shop.served();
    assert!(served.get("on").copied().unwrap_or(0) > 0, "{served:?}");
    assert!(served.get("off").copied().unwrap_or(0) > 0, "{served:?}");
    // Every stage passed once, in order, each step in the audit log.
    let steps = steps_of(&s.admin, &format!("rollout:{}", r.id)).await;
    let verdicts: Vec<&str> = steps.iter().map(|s| s.1.as_str()).collect();
    assert_eq!(verdicts, ["PASS", "PASS", "PASS"], "{steps:?}");
    assert!(steps.iter().all(|s| s.0 == "flag.update"));
    assert!(steps[0].2.contains("now stage 2 of 3 at 50 %"), "{steps:?}");
    assert!(steps[2].2.contains("every stage passed"), "{steps:?}");
    // The person's reason is on the start.
    let mine = steps_of(&s.admin, "admin_token").await;
    assert!(
        mine.iter()
            .any(|m| m.2.starts_with("CHG-7 new checkout (rollout ") && m.2.contains("started")),
        "{mine:?}"
    );
    let status = cli(&s, &["status", "--flag", "checkout"]).await;
    assert!(String::from_utf8_lossy(&status.stdout).contains("succeeded  stage 3 of 3 at 100 %"));
    let list = cli(&s, &["list"]).await;
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(list.contains(&r.id) && list.contains("succeeded"), "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_in_the_treatment_rolls_it_back_at_once() {
    let Some(s) = stand().await else { return };
    s.shop.inject(100);
    // A long hold, looked at every 2 s: the FAIL is found during the hold.
    let r = start(
        &s.admin,
        Rollout {
            check_interval: Some(pbjson_types::Duration {
                seconds: 2,
                nanos: 0,
            }),
            ..plan("checkout", vec![stage(20.0, 600, 20), stage(100.0, 5, 20)])
        },
    )
    .await
    .unwrap();
    let done = settled(&s.admin, &r.id, Duration::from_secs(120)).await;
    assert_eq!(
        done.state,
        RolloutState::Failed as i32,
        "{}: {:?}",
        done.reason,
        done.last_verdict
    );
    assert_eq!((done.stage, done.percent), (1, 0.0));
    assert!(
        done.reason.contains("stage 1 failed during its hold"),
        "{}",
        done.reason
    );
    let verdict = serde_json::to_value(done.last_verdict.unwrap()).unwrap();
    assert_eq!(verdict["verdict"], "FAIL");
    assert_eq!(verdict["early"], true);
    let (t, c) = (
        verdict["cohorts"]["treatment"]["p95_ms"].as_f64().unwrap(),
        verdict["cohorts"]["control"]["p95_ms"].as_f64().unwrap(),
    );
    assert!(t > c + 20.0, "treatment p95 {t} ms, control {c} ms");
    // Put back as it was: no rule, the control the default.
    let f = flag(&s.admin, "checkout").await;
    assert_eq!((f.default_variant.as_str(), f.targeting), ("off", None));
    // Nothing advanced: the stage failed (after holds, if the first window
    // had too little traffic) and the flag was put back in the same step.
    let steps = steps_of(&s.admin, &format!("rollout:{}", r.id)).await;
    let (last, before) = steps.split_last().unwrap();
    assert_eq!(
        (last.0.as_str(), last.1.as_str()),
        ("flag.update", "FAIL"),
        "{steps:?}"
    );
    assert!(before.iter().all(|s| s.0 == "rollout.hold"), "{steps:?}");
}

on_both_backends!(a_person_steers_a_rollout_and_an_unreadable_prometheus_holds_it);

async fn a_person_steers_a_rollout_and_an_unreadable_prometheus_holds_it(backend: Backend) {
    // Prometheus at an address where nothing listens: every judgment fails
    // to read, so stages hold and then pause; nothing advances.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let Some((server, _db)) = server_with(backend, |c| c.gating.prometheus_url = Some(dead)).await
    else {
        return;
    };
    let admin = server.client(ADMIN).await;
    create_flag(&admin, "banner").await;

    // Refusals.
    let e = start(
        &admin,
        Rollout {
            treatment: "blue".into(),
            ..plan("banner", vec![stage(10.0, 1, 10)])
        },
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("no variant \"blue\""), "{e:?}");
    let e = start(
        &admin,
        plan("banner", vec![stage(50.0, 1, 10), stage(10.0, 1, 10)]),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("stages[1].percent"), "{e:?}");
    let e = start(&admin, plan("nope", vec![stage(10.0, 1, 10)]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = start(
        &server.client(GATING).await,
        plan("banner", vec![stage(10.0, 1, 10)]),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    // Started at 10 %: the flag has the rollout's rule.
    let r = start(
        &admin,
        Rollout {
            max_holds: 2,
            ..plan(
                "banner",
                vec![stage(10.0, 1, 10), stage(60.0, 1, 10), stage(100.0, 1, 10)],
            )
        },
    )
    .await
    .unwrap();
    let f = flag(&admin, "banner").await;
    let rule = serde_json::to_value(f.targeting.unwrap()).unwrap();
    assert_eq!(
        rule,
        json!({"fractional": [["on", 1000.0], ["off", 9000.0]]})
    );
    let e = start(&admin, plan("banner", vec![stage(10.0, 1, 10)]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);

    // Prometheus cannot be read: two holds, then paused, still at stage 1.
    let paused = settled(&admin, &r.id, Duration::from_secs(30)).await;
    assert_eq!(paused.state, RolloutState::Paused as i32, "{paused:?}");
    assert_eq!((paused.stage, paused.percent, paused.holds), (1, 10.0, 2));
    assert!(paused.reason.contains("inconclusive"), "{}", paused.reason);
    assert!(paused.reason.contains("Prometheus"), "{}", paused.reason);
    let steps = steps_of(&admin, &format!("rollout:{}", r.id)).await;
    assert_eq!(
        steps
            .iter()
            .map(|s| (s.0.as_str(), s.1.as_str()))
            .collect::<Vec<_>>(),
        [
            ("rollout.hold", "INCONCLUSIVE"),
            ("rollout.pause", "INCONCLUSIVE")
        ]
    );

    let act = |verb: &'static str, token: &'static str| {
        let server = &server;
        let id = r.id.clone();
        async move {
            let mut c = server.client(token).await.rollouts();
            match verb {
                "pause" => c
                    .pause_rollout(PauseRolloutRequest { id })
                    .await
                    .map(|r| r.into_inner().rollout),
                "resume" => c
                    .resume_rollout(ResumeRolloutRequest { id })
                    .await
                    .map(|r| r.into_inner().rollout),
                "skip" => c
                    .skip_stage(SkipStageRequest { id })
                    .await
                    .map(|r| r.into_inner().rollout),
                "abort" => c
                    .abort_rollout(AbortRolloutRequest { id })
                    .await
                    .map(|r| r.into_inner().rollout),
                _ => c
                    .kill_rollout(KillRolloutRequest { id })
                    .await
                    .map(|r| r.into_inner().rollout),
            }
            .map(Option::unwrap)
        }
    };
    assert_eq!(
        act("pause", ADMIN).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    // Skipped by a person: stage 2 at once, paused still.
    let skipped = act("skip", ADMIN).await.unwrap();
    assert_eq!((skipped.stage, skipped.percent), (2, 60.0));
    let rule = serde_json::to_value(flag(&admin, "banner").await.targeting.unwrap()).unwrap();
    assert_eq!(
        rule,
        json!({"fractional": [["on", 6000.0], ["off", 4000.0]]})
    );
    let resumed = act("resume", ADMIN).await.unwrap();
    assert_eq!(resumed.state, RolloutState::Running as i32);
    let paused = act("pause", ADMIN).await.unwrap();
    assert_eq!(paused.state, RolloutState::Paused as i32);
    // A gating token may not pause or resume, but may pull the kill switch.
    assert_eq!(
        act("resume", GATING).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let killed = act("kill", GATING).await.unwrap();
    assert_eq!(
        (killed.state, killed.percent),
        (RolloutState::Aborted as i32, 0.0)
    );
    assert!(
        killed.reason.contains("killed by tokens[0]"),
        "{}",
        killed.reason
    );
    let f = flag(&admin, "banner").await;
    assert_eq!((f.default_variant.as_str(), f.targeting), ("off", None));
    assert_eq!(
        act("abort", ADMIN).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    // Each person's step is in the audit log under their name.
    let mine = steps_of(&admin, "admin_token").await;
    let flag_steps: Vec<&str> = mine
        .iter()
        .filter(|s| s.2.contains(&r.id))
        .map(|s| s.0.as_str())
        .collect();
    assert_eq!(
        flag_steps,
        ["flag.update", "flag.update", "flag.update", "rollout.pause"],
        "{mine:?}"
    );
    let gate = steps_of(&admin, "tokens[0]").await;
    assert_eq!(gate.len(), 1);
    assert!(gate[0].2.contains("killed"), "{gate:?}");

    // A new rollout of the flag may start once the last has ended.
    let again = start(&admin, plan("banner", vec![stage(5.0, 60, 10)]))
        .await
        .unwrap();
    let aborted = act_on(&server, &again.id).await;
    assert_eq!(aborted.state, RolloutState::Aborted as i32);
}

async fn act_on(server: &TestServer, id: &str) -> Rollout {
    server
        .client(ADMIN)
        .await
        .rollouts()
        .abort_rollout(AbortRolloutRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner()
        .rollout
        .unwrap()
}

/// `owner`'s process id: leases are named `<host>-<pid>-<random>`.
fn pid_of(owner: &str) -> u32 {
    let mut parts = owner.rsplit('-');
    parts.next();
    parts.next().unwrap().parse().unwrap()
}

/// On PostgreSQL with two replicas, the one driving a rollout is killed
/// (SIGKILL) mid-rollout: the other takes it over once the lease expires and
/// finishes it, and every stage is passed and written exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_driving_replica_neither_repeats_nor_skips_a_stage() {
    if !crate::common::prometheus::available() {
        return;
    }
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    db.migrate().await;
    let shop = Shop::start("checkout", Vec::new(), "on").await;
    let prom = Prometheus::start(&[shop.addr.to_string()], None).unwrap();
    let prom_url = prom.url();
    let env = [
        ("SWITCHYARD_DATABASE_URL", db.url.as_str()),
        ("SWITCHYARD_PROMETHEUS_URL", prom_url.as_str()),
        ("SWITCHYARD_LOG", "warn"),
    ];
    let mut replicas = [
        Some(Running::start_with(&[], &env)),
        Some(Running::start_with(&[], &env)),
    ];
    let mut clients = Vec::new();
    for r in replicas.iter().flatten() {
        clients.push(r.client(ADMIN).await);
    }
    shop.evaluate_through(clients.clone());
    let admin = clients[0].clone();
    create_flag(&admin, "checkout").await;
    let _load = Load::start(&shop, 100, 100_000);
    tokio::time::sleep(Duration::from_secs(4)).await;

    let r = start(
        &admin,
        plan(
            "checkout",
            vec![
                stage(10.0, 4, 20),
                stage(30.0, 4, 20),
                stage(60.0, 4, 20),
                stage(100.0, 4, 20),
            ],
        ),
    )
    .await
    .unwrap();
    // Once stage 2 runs, kill whoever drives.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while get(&admin, &r.id).await.stage < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "stage 1 never passed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let store = switchyard::store::Store::connect(&db.url).await.unwrap();
    let owner = || {
        let store = store.clone();
        let id = r.id.clone();
        async move {
            sqlx::query_scalar::<_, Option<String>>(
                "SELECT lease_owner FROM rollouts WHERE id = $1",
            )
            .bind(id)
            .fetch_one(store.pool())
            .await
            .unwrap()
            .unwrap()
        }
    };
    let driver = pid_of(&owner().await);
    let killed = replicas
        .iter()
        .position(|r| r.as_ref().unwrap().child.id() == driver)
        .expect("the lease names one of the replicas");
    let mut gone = replicas[killed].take().unwrap();
    gone.child.kill().unwrap();
    gone.child.wait().unwrap();
    let survivor = replicas[1 - killed].as_ref().unwrap();
    let admin = survivor.client(ADMIN).await;

    let done = settled(&admin, &r.id, Duration::from_secs(120)).await;
    assert_eq!(
        done.state,
        RolloutState::Succeeded as i32,
        "{}: {:?}",
        done.reason,
        done.last_verdict
    );
    assert_eq!(
        pid_of(&owner().await),
        survivor.child.id(),
        "the survivor took it over"
    );
    // Each stage passed once, in order: no step repeated, none skipped.
    let steps = steps_of(&admin, &format!("rollout:{}", r.id)).await;
    let passes: Vec<&str> = steps
        .iter()
        .filter(|s| s.0 == "flag.update")
        .map(|s| s.2.as_str())
        .collect();
    assert_eq!(passes.len(), 4, "{steps:?}");
    for (i, want) in [
        "stage 1 of 4 passed",
        "stage 2 of 4 passed",
        "stage 3 of 4 passed",
        "stage 4 of 4 passed",
    ]
    .iter()
    .enumerate()
    {
        assert!(passes[i].contains(want), "{i}: {passes:?}");
    }
    assert!(
        steps
            .iter()
            .filter(|s| s.0 == "flag.update")
            .all(|s| s.1 == "PASS")
    );
    store.close().await;
}
