//! `switchyard rollout start|status|list|pause|resume|abort|skip|kill`: the
//! server's RolloutService from the command line, with a live display of a
//! rollout as it goes (`--watch`): its stage and percentage, each cohort's
//! requests, error rate and p95 at the last verdict, and that verdict.
//!
//! Exit codes: 0 done (with `--watch`: the rollout succeeded), 1 the server
//! refused (its message on stderr) or, with `--watch`, the rollout failed or
//! was aborted, 2 usage, 3 with `--watch`: it paused.

use std::{io::IsTerminal, time::Duration};

use clap::{Args, Subcommand, ValueEnum};
use switchyard_api::{
    client::Client,
    v1::{
        AbortRolloutRequest, CanaryPolicy, GetRolloutRequest, KillRolloutRequest,
        ListRolloutsRequest, PauseRolloutRequest, ResumeRolloutRequest, Rollout, RolloutQueries,
        RolloutStage, RolloutState, RolloutUnit, SkipStageRequest, StartRolloutRequest,
    },
};
use tonic::Request;

use crate::{
    commands::{EXIT_USAGE, Environment},
    flags::{ClientArgs, connect, refused},
    token::{parse_lifetime, print_table},
};

/// What `rollout` does.
#[derive(Debug, Clone, Subcommand)]
pub enum RolloutCommand {
    /// Start a rollout of a flag's variant; prints its id (and with
    /// --watch, follows it to its end).
    Start(Box<StartArgs>),
    /// Show a rollout (by id, or the latest of --flag); --watch follows it.
    Status(StatusArgs),
    /// List rollouts, newest first.
    List(ListArgs),
    /// Hold a running rollout at its stage.
    Pause(ActArgs),
    /// Resume a paused rollout (its stage is judged after a full hold).
    Resume(ActArgs),
    /// Stop a rollout and put the flag back as it was (the treatment at 0 %).
    Abort(ActArgs),
    /// Move to the next stage now, without judging this one.
    Skip(ActArgs),
    /// The kill switch: the treatment to 0 % at once (a gating token may).
    Kill(ActArgs),
}

/// What units are bucketed by.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum By {
    /// Each targeting key on its own.
    TargetingKey,
    /// Whole tenants.
    Tenant,
}

/// `switchyard rollout start`.
#[derive(Debug, Clone, Args)]
pub struct StartArgs {
    /// The flag.
    #[arg(value_name = "FLAG")]
    pub flag: String,
    /// The variant to roll out.
    #[arg(long = "to", value_name = "VARIANT")]
    pub treatment: String,
    /// The stages' percentages, each above the one before (`5,25,50,100`).
    #[arg(long, value_delimiter = ',', required = true)]
    pub stages: Vec<f64>,
    /// How long each stage runs before it is judged (`10m`, `1h`).
    #[arg(long, value_parser = parse_lifetime, default_value = "10m")]
    pub hold: Duration,
    /// Fewer requests than this in either cohort over a stage: INCONCLUSIVE.
    #[arg(long, default_value_t = 200)]
    pub min_samples: i32,
    /// Bucket by targeting key or by whole tenant.
    #[arg(long, value_enum, default_value = "targeting-key")]
    pub by: By,
    /// Only these tenants (the others keep the flag as it is).
    #[arg(long, value_delimiter = ',')]
    pub tenants: Vec<String>,
    /// Extra PromQL label matchers for your service (`job="checkout"`).
    #[arg(long, default_value = "")]
    pub matchers: String,
    /// PromQL of a cohort's requests over the window [default: OpenTelemetry's
    /// HTTP server duration histogram by feature_flag_key and
    /// feature_flag_result_variant].
    #[arg(long, default_value = "")]
    pub requests_query: String,
    /// PromQL of a cohort's failed requests over the window.
    #[arg(long, default_value = "")]
    pub errors_query: String,
    /// PromQL of a cohort's p95 latency over the window, in ms.
    #[arg(long, default_value = "")]
    pub p95_query: String,
    /// Latency fails above the control's p95 times this ...
    #[arg(long)]
    pub p95_ratio: Option<f64>,
    /// ... and by more than this many ms.
    #[arg(long)]
    pub p95_floor_ms: Option<f64>,
    /// How often a stage is also judged during its hold, for an early FAIL
    /// (`10s`) [default: 10 s, or the hold when shorter].
    #[arg(long, value_parser = parse_lifetime)]
    pub check_every: Option<Duration>,
    /// INCONCLUSIVE verdicts in a row before the rollout pauses.
    #[arg(long, default_value_t = 3)]
    pub max_holds: i32,
    /// Why, for the audit log.
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Follow it to its end (exit 0 succeeded, 1 failed or aborted, 3
    /// paused).
    #[arg(long)]
    pub watch: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `switchyard rollout status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// The rollout's id.
    #[arg(value_name = "ID", required_unless_present = "flag")]
    pub id: Option<String>,
    /// The latest rollout of this flag instead.
    #[arg(long, conflicts_with = "id")]
    pub flag: Option<String>,
    /// Follow it to its end (exit 0 succeeded, 1 failed or aborted, 3
    /// paused).
    #[arg(long)]
    pub watch: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `switchyard rollout list`.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Only this flag's rollouts.
    #[arg(long)]
    pub flag: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `switchyard rollout pause|resume|abort|skip|kill`.
#[derive(Debug, Clone, Args)]
pub struct ActArgs {
    /// The rollout's id.
    #[arg(value_name = "ID")]
    pub id: String,
    /// Why, for the audit log.
    #[arg(long, default_value = "")]
    pub reason: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Runs a `rollout` command; returns the exit code.
pub async fn rollout(cmd: RolloutCommand, env: &Environment) -> u8 {
    match run(cmd, env).await {
        Ok(code) => code,
        Err((code, message)) => {
            eprintln!("switchyard: {message}");
            code
        }
    }
}

/// `message` with `--reason` as the audit log's reason.
fn with_reason<T>(message: T, reason: &str) -> Result<Request<T>, (u8, String)> {
    let mut r = Request::new(message);
    if !reason.is_empty() {
        let v = tonic::metadata::MetadataValue::try_from(reason.as_bytes())
            .map_err(|_| (EXIT_USAGE, "--reason: no control characters".to_owned()))?;
        r.metadata_mut().insert("x-switchyard-reason", v);
    }
    Ok(r)
}

async fn run(cmd: RolloutCommand, env: &Environment) -> Result<u8, (u8, String)> {
    match cmd {
        RolloutCommand::Start(a) => {
            let client = connect(&a.client, env).await?;
            let plan = Rollout {
                flag_key: a.flag.clone(),
                treatment: a.treatment.clone(),
                unit: match a.by {
                    By::TargetingKey => RolloutUnit::TargetingKey,
                    By::Tenant => RolloutUnit::Tenant,
                } as i32,
                tenants: a.tenants.clone(),
                stages: a
                    .stages
                    .iter()
                    .map(|p| RolloutStage {
                        percent: *p,
                        hold: Some(pbjson_types::Duration {
                            seconds: i64::try_from(a.hold.as_secs()).unwrap_or(i64::MAX),
                            nanos: 0,
                        }),
                        min_samples: a.min_samples,
                    })
                    .collect(),
                queries: Some(RolloutQueries {
                    requests: a.requests_query.clone(),
                    errors: a.errors_query.clone(),
                    p95_ms: a.p95_query.clone(),
                    matchers: a.matchers.clone(),
                }),
                rules: Some(CanaryPolicy {
                    p95_ratio: a.p95_ratio,
                    p95_floor_ms: a.p95_floor_ms,
                    ..CanaryPolicy::default()
                }),
                max_holds: a.max_holds,
                check_interval: a.check_every.map(|d| pbjson_types::Duration {
                    seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                    nanos: 0,
                }),
                ..Rollout::default()
            };
            let r = client
                .rollouts()
                .start_rollout(with_reason(
                    StartRolloutRequest {
                        rollout: Some(plan),
                    },
                    &a.reason,
                )?)
                .await
                .map_err(refused)?
                .into_inner()
                .rollout
                .unwrap_or_default();
            eprintln!(
                "switchyard: rollout {} of {} started: {} at {} %",
                r.id,
                r.flag_key,
                stage_of(&r),
                r.percent
            );
            println!("{}", r.id);
            if a.watch {
                return watch(&client, &r.id, env).await;
            }
            Ok(0)
        }
        RolloutCommand::Status(a) => {
            let client = connect(&a.client, env).await?;
            let id = match (a.id, a.flag) {
                (Some(id), _) => id,
                (None, Some(flag)) => client
                    .rollouts()
                    .list_rollouts(ListRolloutsRequest {
                        flag_key: flag.clone(),
                        page_size: 1,
                        page_token: String::new(),
                    })
                    .await
                    .map_err(refused)?
                    .into_inner()
                    .rollouts
                    .into_iter()
                    .next()
                    .map(|r| r.id)
                    .ok_or_else(|| (1, format!("flag {flag:?} has no rollout")))?,
                (None, None) => return Err((EXIT_USAGE, "give a rollout id or --flag".into())),
            };
            if a.watch {
                return watch(&client, &id, env).await;
            }
            let r = get(&client, &id).await?;
            println!("{}", render(&r).join("\n"));
            Ok(0)
        }
        RolloutCommand::List(a) => {
            let client = connect(&a.client, env).await?;
            let mut rows = vec![[
                "ID".to_owned(),
                "FLAG".to_owned(),
                "STATE".to_owned(),
                "STAGE".to_owned(),
                "PERCENT".to_owned(),
                "CREATED BY".to_owned(),
            ]];
            let mut page_token = String::new();
            loop {
                let page = client
                    .rollouts()
                    .list_rollouts(ListRolloutsRequest {
                        flag_key: a.flag.clone().unwrap_or_default(),
                        page_size: 500,
                        page_token,
                    })
                    .await
                    .map_err(refused)?
                    .into_inner();
                for r in page.rollouts {
                    rows.push([
                        r.id.clone(),
                        r.flag_key.clone(),
                        state_name(r.state).to_owned(),
                        stage_of(&r),
                        format!("{} %", r.percent),
                        r.created_by.clone(),
                    ]);
                }
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            print_table(&rows);
            Ok(0)
        }
        RolloutCommand::Pause(a) => act(a, Act::Pause, env).await,
        RolloutCommand::Resume(a) => act(a, Act::Resume, env).await,
        RolloutCommand::Abort(a) => act(a, Act::Abort, env).await,
        RolloutCommand::Skip(a) => act(a, Act::Skip, env).await,
        RolloutCommand::Kill(a) => act(a, Act::Kill, env).await,
    }
}

#[derive(Clone, Copy)]
enum Act {
    Pause,
    Resume,
    Abort,
    Skip,
    Kill,
}

async fn act(a: ActArgs, what: Act, env: &Environment) -> Result<u8, (u8, String)> {
    let client = connect(&a.client, env).await?;
    let mut c = client.rollouts();
    let id = a.id.clone();
    let r = match what {
        Act::Pause => c
            .pause_rollout(with_reason(PauseRolloutRequest { id }, &a.reason)?)
            .await
            .map(|r| r.into_inner().rollout),
        Act::Resume => c
            .resume_rollout(with_reason(ResumeRolloutRequest { id }, &a.reason)?)
            .await
            .map(|r| r.into_inner().rollout),
        Act::Abort => c
            .abort_rollout(with_reason(AbortRolloutRequest { id }, &a.reason)?)
            .await
            .map(|r| r.into_inner().rollout),
        Act::Skip => c
            .skip_stage(with_reason(SkipStageRequest { id }, &a.reason)?)
            .await
            .map(|r| r.into_inner().rollout),
        Act::Kill => c
            .kill_rollout(with_reason(KillRolloutRequest { id }, &a.reason)?)
            .await
            .map(|r| r.into_inner().rollout),
    }
    .map_err(refused)?
    .unwrap_or_default();
    println!("{}", render(&r).join("\n"));
    Ok(0)
}

async fn get(client: &Client, id: &str) -> Result<Rollout, (u8, String)> {
    Ok(client
        .rollouts()
        .get_rollout(GetRolloutRequest { id: id.to_owned() })
        .await
        .map_err(refused)?
        .into_inner()
        .rollout
        .unwrap_or_default())
}

/// Follows rollout `id` until it is no longer running, redrawing its
/// display every second on a terminal (a line per change elsewhere);
/// returns the exit code of how it ended.
async fn watch(client: &Client, id: &str, env: &Environment) -> Result<u8, (u8, String)> {
    let live = std::io::stderr().is_terminal() && !env.ci;
    let mut shown: Vec<String> = Vec::new();
    loop {
        let r = get(client, id).await?;
        let lines = render(&r);
        if live {
            // Up over the last display and clear it, then draw this one.
            if !shown.is_empty() {
                eprint!("\x1b[{}A\x1b[J", shown.len());
            }
            eprintln!("{}", lines.join("\n"));
        } else if lines != shown {
            eprintln!("{}", lines.join("\n"));
        }
        shown = lines;
        match RolloutState::try_from(r.state) {
            Ok(RolloutState::Running) => {}
            Ok(RolloutState::Succeeded) => return Ok(0),
            Ok(RolloutState::Paused) => return Ok(3),
            _ => return Ok(1),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `stage 2 of 4`.
fn stage_of(r: &Rollout) -> String {
    format!("stage {} of {}", r.stage, r.stages.len())
}

fn state_name(state: i32) -> &'static str {
    match RolloutState::try_from(state) {
        Ok(RolloutState::Running) => "running",
        Ok(RolloutState::Paused) => "paused",
        Ok(RolloutState::Succeeded) => "succeeded",
        Ok(RolloutState::Failed) => "failed",
        Ok(RolloutState::Aborted) => "aborted",
        _ => "unknown",
    }
}

/// A rollout as the display shows it: what, where, each cohort at the last
/// verdict, the verdict.
fn render(r: &Rollout) -> Vec<String> {
    let mut lines = vec![
        format!(
            "{}  {}: {} for {} of {}, from {}",
            r.id,
            r.flag_key,
            r.treatment,
            if r.tenants.is_empty() {
                "every tenant".to_owned()
            } else {
                format!("tenants {}", r.tenants.join(", "))
            },
            if r.unit == RolloutUnit::Tenant as i32 {
                "tenants"
            } else {
                "targeting keys"
            },
            r.control
        ),
        format!(
            "{}  {} at {} %{}",
            state_name(r.state),
            stage_of(r),
            r.percent,
            match (&r.next_judgment_time, RolloutState::try_from(r.state)) {
                (Some(t), Ok(RolloutState::Running)) => {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs() as i64);
                    format!("  judged in {} s", (t.seconds - now).max(0))
                }
                _ => String::new(),
            }
        ),
    ];
    if !r.reason.is_empty() {
        lines.push(format!("  {}", r.reason));
    }
    if let Some(v) = &r.last_verdict {
        let v = serde_json::to_value(v).unwrap_or_default();
        let cohorts = &v["cohorts"];
        if cohorts.is_object() {
            lines.push(format!(
                "  {:<10} {:>10} {:>8} {:>10}",
                "cohort", "requests", "errors", "p95"
            ));
            for name in ["treatment", "control"] {
                let c = &cohorts[name];
                lines.push(format!(
                    "  {:<10} {:>10} {:>7.2}% {:>10}",
                    name,
                    c["requests"]
                        .as_f64()
                        .map_or("-".into(), |n| format!("{n:.0}")),
                    c["error_rate"].as_f64().unwrap_or(0.0) * 100.0,
                    c["p95_ms"]
                        .as_f64()
                        .map_or("-".into(), |p| format!("{p:.1} ms")),
                ));
            }
        }
        let reasons: Vec<&str> = v["reasons"]
            .as_array()
            .map(|a| a.iter().filter_map(|r| r.as_str()).collect())
            .unwrap_or_default();
        lines.push(format!(
            "  last verdict {} (stage {}){}",
            v["verdict"].as_str().unwrap_or("-"),
            v["stage"].as_f64().map_or(0, |s| s as i64),
            if reasons.is_empty() {
                String::new()
            } else {
                format!(": {}", reasons.join("; "))
            }
        ));
    }
    lines
}
