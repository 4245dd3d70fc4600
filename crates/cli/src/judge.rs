//! `switchyard judge`: a verdict on statistics another load tool measured (a
//! k6 `--summary-export` JSON or a ghz `-O json` report), with the same
//! threshold, canary rules, history and step summary as `smoke` and
//! `canary`. One file is a smoke run; two (the baseline's, then the
//! canary's) are a canary comparison.

use std::path::{Path, PathBuf};

use clap::Args;
use switchyard_core::gating::{
    document::{CanaryInput, RulesInput},
    import,
    report::{CanaryConfig, SmokeConfig, TrafficStats},
};

use crate::commands::{
    self, Environment, RuleArgs, Run, RunArgs, SmokeRun, Usage, connect_gating, report_canary,
    report_smoke, say, smoke_threshold,
};

/// `switchyard judge`.
#[derive(Debug, Clone, Args)]
pub struct JudgeArgs {
    /// A k6 `--summary-export` JSON file: one to judge a smoke run, two (the
    /// baseline's, then the canary's) to compare a canary.
    #[arg(long, value_name = "FILE")]
    pub k6: Vec<PathBuf>,
    /// A ghz `-O json` report: one to judge a smoke run, two (the baseline's,
    /// then the canary's) to compare a canary.
    #[arg(long, value_name = "FILE")]
    pub ghz: Vec<PathBuf>,
    /// The GatingService that sets the smoke threshold and keeps the verdict
    /// (a smoke verdict needs one; a comparison without one is judged here
    /// and kept only in the file).
    #[arg(long, value_name = "ADDR")]
    pub gating: Option<String>,
    /// What was tested, as the report and its history name it [default: the
    /// file's name without its extension; for a comparison, the canary's].
    #[arg(long)]
    pub target: Option<String>,
    /// The SLO whose error budget sets the p95 threshold [default: the
    /// server's default SLO].
    #[arg(long, default_value = "", hide_default_value = true)]
    pub slo: String,
    /// The error-rate limit of a smoke verdict [default: 0.01].
    #[arg(long)]
    pub max_error_rate: Option<f64>,
    #[command(flatten)]
    pub rules: RuleArgs,
    /// Where the summary (smoke) or report (canary) is written [default:
    /// smoke-summary.json or canary-report.json].
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunArgs,
}

/// The tool a report came from.
#[derive(Debug, Clone, Copy)]
enum Tool {
    K6,
    Ghz,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::K6 => "k6",
            Tool::Ghz => "ghz",
        }
    }

    fn read(self, path: &Path, label: &str) -> Run<TrafficStats> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Usage(format!("reading {}: {e}", path.display())))?;
        let doc: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Usage(format!("{}: not JSON: {e}", path.display())))?;
        match self {
            Tool::K6 => import::from_k6(&doc, label),
            Tool::Ghz => import::from_ghz(&doc, label),
        }
        .map_err(|e| Usage(format!("{} ({} report): {e}", path.display(), self.name())))
    }
}

/// Runs `switchyard judge`; returns the exit code.
pub async fn judge(mut args: JudgeArgs, env: &Environment) -> u8 {
    env.fill(&mut args.run);
    match run(args, env).await {
        Ok(code) => code,
        Err(Usage(line)) => {
            say("judge", &line);
            commands::EXIT_USAGE
        }
    }
}

fn stem(path: &Path) -> String {
    path.file_stem().map_or_else(
        || path.display().to_string(),
        |s| s.to_string_lossy().into_owned(),
    )
}

async fn run(args: JudgeArgs, env: &Environment) -> Run<u8> {
    let (tool, files) = match (args.k6.is_empty(), args.ghz.is_empty()) {
        (false, true) => (Tool::K6, &args.k6),
        (true, false) => (Tool::Ghz, &args.ghz),
        (true, true) => {
            return Err(Usage(
                "give a report to judge: --k6 FILE or --ghz FILE (twice, baseline then canary, to compare)".into(),
            ));
        }
        (false, false) => {
            return Err(Usage(
                "give the reports of one tool: --k6 or --ghz, not both".into(),
            ));
        }
    };
    args.run
        .tls
        .used_by(args.gating.as_deref())
        .map_err(Usage)?;
    let run_id = commands::run_id(args.run.run_id.as_deref());
    let meta = commands::metadata(&run_id, args.run.git_sha.as_deref());
    match files.as_slice() {
        [file] => {
            let target = args.target.clone().unwrap_or_else(|| stem(file));
            let results = tool.read(file, &target)?;
            let addr = args.gating.as_deref().ok_or_else(|| {
                Usage("--gating ADDR is required to judge a smoke run (it sets the threshold and keeps the verdict)".into())
            })?;
            let gating = connect_gating(addr, &args.run).await?;
            let threshold = smoke_threshold(&gating, &args.slo, args.run.token.is_empty()).await?;
            say(
                "judge",
                &format!(
                    "{target}: {} calls from {} ({}); p95 must stay under {} ms ({}, {})",
                    results.count,
                    file.display(),
                    tool.name(),
                    threshold.threshold_ms,
                    threshold.tier,
                    threshold.source
                ),
            );
            let config = SmokeConfig {
                target: target.clone(),
                calls: vec![switchyard_core::gating::document::fit_label(&format!(
                    "{} report {}",
                    tool.name(),
                    file.display()
                ))],
                rate: results.rps,
                duration_s: results.duration_s,
                warmup_s: 0.0,
                percentile_method: results.percentile_method.clone(),
            };
            let out = args
                .out
                .clone()
                .unwrap_or_else(|| PathBuf::from("smoke-summary.json"));
            report_smoke(
                SmokeRun {
                    gating: &gating,
                    target,
                    slo: args.slo.clone(),
                    max_error_rate: args.max_error_rate,
                    min_requests: args.rules.min_requests,
                    config,
                    meta,
                    interrupted: false,
                    threshold,
                    out: &out,
                    history: args.run.history,
                    command: "judge",
                },
                results,
                env,
            )
            .await
        }
        [baseline_file, canary_file] => {
            let canary_name = args.target.clone().unwrap_or_else(|| stem(canary_file));
            let baseline = tool.read(baseline_file, "baseline")?;
            let canary = tool.read(canary_file, "canary")?;
            let rules: RulesInput = args.rules.input();
            switchyard_core::gating::judge::validate_rules("policy", &rules.resolve())
                .map_err(|e| Usage(format!("canary rules: {}", e.message())))?;
            let gating = match &args.gating {
                Some(addr) => Some(connect_gating(addr, &args.run).await?),
                None => None,
            };
            say(
                "judge",
                &format!(
                    "baseline {} ({} calls) vs canary {} ({} calls), {} reports",
                    baseline_file.display(),
                    baseline.count,
                    canary_file.display(),
                    canary.count,
                    tool.name()
                ),
            );
            let config = CanaryConfig {
                interleaved: false,
                percentile_method: canary.percentile_method.clone(),
                rules: rules.resolve(),
                baseline: stem(baseline_file),
                canary: canary_name.clone(),
            };
            let input = CanaryInput {
                baseline: Some(baseline),
                canary: Some(canary),
                rules,
                record: gating.is_some(),
                baseline_before: None,
                config,
                metadata: meta,
                interrupted: false,
            };
            let out = args
                .out
                .clone()
                .unwrap_or_else(|| PathBuf::from("canary-report.json"));
            report_canary(
                input,
                gating.as_ref(),
                &canary_name,
                &out,
                args.run.history,
                "judge",
                env,
            )
            .await
        }
        _ => Err(Usage(format!(
            "--{} takes one report (a smoke verdict) or two (baseline, then canary), not {}",
            tool.name(),
            files.len()
        ))),
    }
}
