//! What a run leaves behind: its JSON document (written the way the REST
//! shims write bodies, indented) and a Markdown summary for a CI job page
//! (GATING.md's "CI job summary": a verdict line, the checks table, the
//! budget tier applied, the last runs).

use std::{
    fmt::Write as _,
    io::Write as _,
    path::{Path, PathBuf},
};

use switchyard_api::v1::{
    Budget, CanaryReport, GateRun, SmokeSummary, TrafficStats, Verdict, gate_run,
};

/// Writes `json` to `path` indented, through a temporary file renamed into
/// place, so a reader never sees half a document.
pub fn write_document(path: &Path, json: &str) -> Result<(), String> {
    let mut text = indent(json);
    text.push('\n');
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report.json".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("cannot write {}: {e}", path.display())
        })
}

/// Appends `markdown` to `step_summary` (`$GITHUB_STEP_SUMMARY`) when there
/// is one (returning its path), or prints it.
pub fn publish(markdown: &str, step_summary: Option<&Path>) -> Result<Option<PathBuf>, String> {
    match step_summary.filter(|p| !p.as_os_str().is_empty()) {
        Some(path) => {
            let path = path.to_path_buf();
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .and_then(|mut f| f.write_all(markdown.as_bytes()))
                .map_err(|e| format!("cannot append to {}: {e}", path.display()))?;
            Ok(Some(path))
        }
        None => {
            print!("{markdown}");
            Ok(None)
        }
    }
}

/// Indents compact JSON by two spaces per level (strings are left as they
/// are; the input is valid JSON).
pub fn indent(json: &str) -> String {
    let mut out = String::with_capacity(json.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = json.chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        for _ in 0..depth {
            out.push_str("  ");
        }
    };
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                let close = if c == '{' { '}' } else { ']' };
                if chars.peek() == Some(&close) {
                    out.push(close);
                    chars.next();
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// A number of milliseconds the short way: `2.41 ms`, `420 ms`, `1e308 ms`.
fn ms(v: f64) -> String {
    if !v.is_finite() || v.abs() >= 1e9 {
        format!("{} ms", switchyard_core::gating::judge::num(v))
    } else if v >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0} ms")
    } else if v >= 10.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.2} ms")
    }
}

fn pct(v: f64) -> String {
    format!("{:.2} %", v * 100.0)
}

fn mark(ok: bool) -> &'static str {
    if ok { "✅ pass" } else { "❌ fail" }
}

fn when(run: &GateRun) -> String {
    run.create_time.as_ref().map_or_else(String::new, |t| {
        prost_types::Timestamp {
            seconds: t.seconds,
            nanos: 0,
        }
        .to_string()
    })
}

fn verdict_name(v: i32) -> &'static str {
    match Verdict::try_from(v) {
        Ok(Verdict::Pass) => "PASS",
        Ok(Verdict::Fail) => "FAIL",
        Ok(Verdict::Inconclusive) => "INCONCLUSIVE",
        Ok(Verdict::NoData) => "NO_DATA",
        _ => "?",
    }
}

/// The budget line: "budget 72 % left => p95 <= 420 ms".
fn budget_line(b: &Budget) -> String {
    let applied = ms(b.applied_p95_ms);
    match b.source.as_str() {
        "prometheus" => format!(
            "Budget {} => p95 <= {applied} (tier `{}`, read from Prometheus: `{}`).",
            budget_left(b.remaining_ratio.or(b.clamped_ratio)),
            b.tier,
            b.query
        ),
        "disabled" => format!(
            "Budget not read (no Prometheus configured) => p95 <= {applied} (the base threshold)."
        ),
        _ => format!(
            "Budget unknown ({}) => p95 <= {applied} (the strictest tier).",
            b.reason
        ),
    }
}

/// The budget left as Prometheus answered it: `72 % left`, or `-800 % left
/// (overspent)` rather than a clamped `0 %`.
fn budget_left(raw: Option<f64>) -> String {
    match raw {
        Some(r) if r < 0.0 => format!("{} % left (overspent)", pct_short(r)),
        Some(r) => format!("{} % left", pct_short(r)),
        None => "? left".into(),
    }
}

/// A ratio in percent, whole: `72`, `-800`, `-1.2e9`.
fn pct_short(r: f64) -> String {
    let p = r * 100.0;
    if p.is_finite() && p.abs() < 1e9 {
        format!("{p:.0}")
    } else {
        switchyard_core::gating::judge::num(p)
    }
}

fn stats_line(s: &TrafficStats) -> String {
    let l = s.latency_ms.unwrap_or_default();
    format!(
        "{} calls ({:.1}/s), p50 {}, p95 {}, p99 {}, max {}, {} errors",
        s.count,
        s.rps,
        ms(l.p50),
        ms(l.p95),
        ms(l.p99),
        ms(l.max),
        pct(s.error_rate)
    )
}

/// The Markdown summary of a smoke run, with `history` (newest first) and
/// a note about where its verdict was judged.
pub fn smoke_markdown(s: &SmokeSummary, history: &[GateRun], note: Option<&str>) -> String {
    let verdict = s.verdict.clone().unwrap_or_default();
    let config = s.config.clone().unwrap_or_default();
    let results = s.results.clone().unwrap_or_default();
    let mut md = String::new();
    let _ = writeln!(md, "### switchyard smoke: {}\n", verdict.status);
    let _ = writeln!(
        md,
        "**{}** against `{}`: {} calls scheduled at {}/s for {} s ({}).{}\n",
        verdict.status,
        config.target,
        results.count,
        config.rate,
        config.duration_s,
        config.calls.join(", "),
        if s.interrupted {
            " **Interrupted** before its end."
        } else {
            ""
        }
    );
    let _ = writeln!(md, "| check | observed | limit | samples | result |");
    let _ = writeln!(md, "|---|---|---|---|---|");
    for (name, t) in &s.thresholds {
        let (observed, limit) = if name.starts_with("latency") {
            (ms(t.observed), ms(t.limit))
        } else {
            (format!("{:.4}", t.observed), format!("{}", t.limit))
        };
        let _ = writeln!(
            md,
            "| `{name}` | {observed} | {limit} | {} | {} |",
            t.samples,
            mark(t.ok)
        );
    }
    let _ = writeln!(md);
    if let Some(b) = &s.budget {
        let _ = writeln!(md, "{}\n", budget_line(b));
    }
    let _ = writeln!(md, "Measured: {}.\n", stats_line(&results));
    for r in &verdict.reasons {
        let _ = writeln!(md, "- {r}");
    }
    if !verdict.reasons.is_empty() {
        let _ = writeln!(md);
    }
    if let Some(note) = note {
        let _ = writeln!(md, "> {note}\n");
    }
    if !history.is_empty() {
        let _ = writeln!(md, "#### Last smoke runs of `{}`\n", config.target);
        let _ = writeln!(
            md,
            "| when (UTC) | verdict | p95 | error rate | threshold | revision | run |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|");
        for run in history {
            let (p95, rate) = match &run.report {
                Some(gate_run::Report::Smoke(s)) => {
                    let r = s.results.clone().unwrap_or_default();
                    (ms(r.latency_ms.unwrap_or_default().p95), pct(r.error_rate))
                }
                _ => (String::new(), String::new()),
            };
            let _ = writeln!(
                md,
                "| {} | {} | {p95} | {rate} | {} | {} | {} |",
                when(run),
                verdict_name(run.verdict),
                ms(run.threshold_ms),
                run.revision,
                run.run_id
            );
        }
        let _ = writeln!(md);
    }
    md
}

/// The Markdown summary of a canary report, with `history` (newest first).
pub fn canary_markdown(r: &CanaryReport, history: &[GateRun], note: Option<&str>) -> String {
    let verdict = r.verdict.clone().unwrap_or_default();
    let config = r.config.clone().unwrap_or_default();
    let mut md = String::new();
    let _ = writeln!(md, "### switchyard canary: {}\n", verdict.status);
    let control = r.control.clone().unwrap_or_default();
    let experiment = r.experiment.clone().unwrap_or_default();
    let _ = writeln!(
        md,
        "**{}**: canary `{}` against baseline `{}`, {} and {} calls{}.{}\n",
        verdict.status,
        config.canary,
        config.baseline,
        control.count,
        experiment.count,
        if config.interleaved {
            ", interleaved on one schedule"
        } else {
            ""
        },
        if r.interrupted {
            " **Interrupted** before its end."
        } else {
            ""
        }
    );
    let _ = writeln!(
        md,
        "| check | baseline | canary | delta | limit | samples | result |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    for c in &r.results {
        let latency = c.name.starts_with("latency");
        let show = |v: f64| {
            if latency { ms(v) } else { pct(v) }
        };
        let delta = format!(
            "{}{}{}",
            if c.delta >= 0.0 { "+" } else { "" },
            if latency { ms(c.delta) } else { pct(c.delta) },
            c.delta_pct
                .map_or_else(String::new, |p| format!(" ({p:+.1} %)"))
        );
        let limit = c.limit.unwrap_or_default();
        let limit = if latency {
            format!("x{} and +{}", limit.ratio, ms(limit.floor))
        } else {
            format!("x{} and above {}", limit.ratio, pct(limit.floor))
        };
        let samples = c.samples.unwrap_or_default();
        let _ = writeln!(
            md,
            "| `{}` | {} | {} | {delta} | {limit} | {} / {} (min {}) | {} {} |",
            c.name,
            show(c.control),
            show(c.experiment),
            samples.control,
            samples.experiment,
            samples.min,
            if c.ok { "✅" } else { "❌" },
            c.classification
        );
    }
    let _ = writeln!(md);
    for c in &r.results {
        let _ = writeln!(md, "- `{}`: {}", c.name, c.classification_reason);
    }
    let _ = writeln!(md);
    let _ = writeln!(md, "Baseline: {}.\n", stats_line(&control));
    let _ = writeln!(md, "Canary: {}.\n", stats_line(&experiment));
    if let Some(before) = r
        .phases
        .as_ref()
        .and_then(|p| p.before.as_ref())
        .and_then(|b| b.baseline.as_ref())
    {
        let _ = writeln!(md, "Baseline alone before: {}.\n", stats_line(before));
    }
    if let Some(note) = note {
        let _ = writeln!(md, "> {note}\n");
    }
    if !history.is_empty() {
        let _ = writeln!(md, "#### Last canary runs\n");
        let _ = writeln!(md, "| when (UTC) | verdict | canary | revision | run |");
        let _ = writeln!(md, "|---|---|---|---|---|");
        for run in history {
            let _ = writeln!(
                md,
                "| {} | {} | `{}` | {} | {} |",
                when(run),
                verdict_name(run.verdict),
                run.target,
                run.revision,
                run.run_id
            );
        }
        let _ = writeln!(md);
    }
    md
}

#[cfg(test)]
mod tests {
    /// The JSON blocks of `docs/reports.md`, in order.
    fn documented() -> Vec<serde_json::Value> {
        let text = include_str!("../../../docs/reports.md");
        text.split("```json\n")
            .skip(1)
            .map(|block| {
                let json = block.split("\n```").next().unwrap_or_default();
                serde_json::from_str(json).expect("a documented report is JSON")
            })
            .collect()
    }

    /// `v` with every number as a float (`30` and `30.0` are one value).
    fn floats(v: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match v {
            Value::Number(n) => n.as_f64().map_or(Value::Null, Value::from),
            Value::Array(a) => Value::Array(a.into_iter().map(floats).collect()),
            Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k, floats(v))).collect()),
            other => other,
        }
    }

    /// Each documented report reads as its message (no field the message
    /// does not have) and is written back, as the commands write their
    /// files, exactly as documented (no field missing).
    #[test]
    fn the_documented_reports_are_the_real_shapes() {
        let docs = documented();
        let names = ["switchyard.v1.SmokeSummary", "switchyard.v1.CanaryReport"];
        assert_eq!(
            docs.len(),
            names.len(),
            "a smoke summary and a canary report"
        );
        let pool = prost_reflect::DescriptorPool::decode(switchyard_api::FILE_DESCRIPTOR_SET)
            .expect("the descriptors");
        for (doc, name) in docs.into_iter().zip(names) {
            let desc = pool.get_message_by_name(name).expect(name);
            let message = prost_reflect::DynamicMessage::deserialize(desc, doc.clone())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let written = switchyard_server::rest::message_json(name, &message).unwrap();
            let written: serde_json::Value = serde_json::from_str(&written).unwrap();
            assert_eq!(floats(written), floats(doc), "{name}");
        }
    }

    use super::*;

    /// An overspent budget shows what Prometheus answered, not a clamped
    /// 0 %; a huge p95 is written short.
    #[test]
    fn budgets_and_latencies_are_shown_as_measured() {
        let b = |raw: f64| Budget {
            source: "prometheus".into(),
            remaining_ratio: Some(raw),
            clamped_ratio: Some(raw.clamp(0.0, 1.0)),
            applied_p95_ms: 400.0,
            tier: "below_0.6".into(),
            ..Budget::default()
        };
        assert!(
            budget_line(&b(-7.94)).starts_with("Budget -794 % left (overspent) => p95 <= 400 ms"),
            "{}",
            budget_line(&b(-7.94))
        );
        assert!(budget_line(&b(0.72)).starts_with("Budget 72 % left => p95 <= 400 ms"));
        assert_eq!(ms(1e308), "1e308 ms");
        assert_eq!(ms(f64::INFINITY), "inf ms");
        assert_eq!(ms(2.414), "2.41 ms");
        assert_eq!(ms(420.0), "420 ms");
    }

    #[test]
    fn indenting_keeps_the_json_and_its_strings() {
        let compact = r#"{"a":[1,{"b":"x, {y}: \"z\""}],"c":{},"d":[]}"#;
        let pretty = indent(compact);
        assert_eq!(
            pretty,
            "{\n  \"a\": [\n    1,\n    {\n      \"b\": \"x, {y}: \\\"z\\\"\"\n    }\n  ],\n  \"c\": {},\n  \"d\": []\n}"
        );
        let a: serde_json::Value = serde_json::from_str(compact).unwrap();
        let b: serde_json::Value = serde_json::from_str(&pretty).unwrap();
        assert_eq!(a, b);
    }
}
