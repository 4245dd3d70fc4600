//! A rollout as written and stored: its plan ([`Spec`]), where it is
//! ([`Rollout`]), and the flag rule each stage writes ([`rule`]).
//!
//! A stage is a `fractional` split of the flag's units between the
//! treatment and the control variant, the treatment listed first, over a
//! constant total of [`TOTAL_WEIGHT`]. flagd's bucket of a unit is
//! `hash × total >> 32`, which does not depend on the split, and a unit gets
//! the treatment exactly when its bucket is below the treatment's weight: so
//! raising the percentage only adds units (those whose buckets lie between
//! the old and the new weight), and lowering it takes back the most recently
//! added first. Remote evaluation and an in-process flagd provider read the
//! same rule, so they agree.

use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use crate::{
    error::{Error, Result},
    gating::report::CanaryRules,
};

/// The weights of a stage add up to this: a percentage in steps of 0.01.
pub const TOTAL_WEIGHT: u32 = 10_000;

/// At most this many stages.
pub const MAX_STAGES: usize = 20;

/// At most this many tenants in one rollout.
pub const MAX_TENANTS: usize = 1000;

/// What units are bucketed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// The evaluation context's `targetingKey` (flagd's default): each user
    /// on their own.
    #[default]
    TargetingKey,
    /// The tenant evaluated for (`tenantId`): a tenant's users move together.
    Tenant,
}

impl Unit {
    /// `targeting_key` or `tenant`.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::TargetingKey => "targeting_key",
            Unit::Tenant => "tenant",
        }
    }
}

/// One stage of the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    /// The treatment's share, in hundredths of a percent (0 to 10 000).
    pub weight: u32,
    /// How long the stage runs before it is judged, seconds.
    pub hold_s: u64,
    /// Fewer requests than this in either cohort over the stage is
    /// INCONCLUSIVE.
    pub min_samples: i32,
}

/// The PromQL each cohort is read with. `{{flag}}`, `{{variant}}`,
/// `{{window}}` (the stage's window, `90s`) and `{{match}}` (the rollout's
/// extra label matchers, with a leading comma when there are any) are
/// replaced before the query is sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Queries {
    /// Requests of a cohort over the window.
    pub requests: String,
    /// Failed requests of a cohort over the window.
    pub errors: String,
    /// A cohort's p95 latency over the window, in milliseconds.
    pub p95_ms: String,
    /// Extra label matchers for the user's service (`job="checkout"`).
    pub matchers: String,
}

/// OpenTelemetry's HTTP server duration histogram, as Prometheus names it,
/// labelled with the feature-flag attributes (`feature_flag.key`,
/// `feature_flag.result.variant`, which Prometheus writes with `_`).
const SERIES: &str = "http_server_request_duration_seconds";

impl Default for Queries {
    fn default() -> Self {
        let labels =
            r#"feature_flag_key="{{flag}}",feature_flag_result_variant="{{variant}}"{{match}}"#;
        Queries {
            requests: format!(
                "sum(increase({SERIES}_count{{{labels}}}[{{{{window}}}}])) or vector(0)"
            ),
            errors: format!(
                r#"sum(increase({SERIES}_count{{{labels},http_response_status_code=~"5.."}}[{{{{window}}}}])) or vector(0)"#
            ),
            p95_ms: format!(
                "1000 * histogram_quantile(0.95, sum by (le) (rate({SERIES}_bucket{{{labels}}}[{{{{window}}}}])))"
            ),
            matchers: String::new(),
        }
    }
}

/// The placeholders a query template may hold.
const PLACEHOLDERS: [&str; 4] = ["flag", "variant", "window", "match"];

impl Queries {
    /// `template` with the placeholders of `flag`'s `variant` over
    /// `window_s` seconds replaced, in one pass (a value is never read
    /// again as a template); `{{flag}}` and `{{variant}}` are written with
    /// PromQL's string escapes.
    pub fn render(&self, template: &str, flag: &str, variant: &str, window_s: u64) -> String {
        let matchers = self.matchers.trim();
        let matchers = if matchers.is_empty() {
            String::new()
        } else {
            format!(",{}", matchers.trim_start_matches(','))
        };
        let mut out = String::with_capacity(template.len() + 64);
        let mut rest = template;
        while let Some(i) = placeholder_at(rest) {
            out.push_str(&rest[..i]);
            let after = &rest[i + 2..];
            let Some(j) = after.find("}}") else {
                break;
            };
            match &after[..j] {
                "flag" => out.push_str(&escape(flag)),
                "variant" => out.push_str(&escape(variant)),
                "window" => out.push_str(&format!("{}s", window_s.max(1))),
                "match" => out.push_str(&matchers),
                _ => out.push_str(&rest[i..i + j + 4]),
            }
            rest = &after[j + 2..];
        }
        out.push_str(rest);
        out
    }
}

/// Where the next placeholder's `{{` is: in `x{{{match}}}` the first brace
/// is PromQL's own.
fn placeholder_at(s: &str) -> Option<usize> {
    let mut i = s.find("{{")?;
    while s[i + 2..].starts_with('{') {
        i += 1;
    }
    Some(i)
}

/// The placeholders of `template` that are not [`PLACEHOLDERS`].
fn unknown_placeholders(template: &str) -> Vec<&str> {
    let mut unknown = Vec::new();
    let mut rest = template;
    while let Some(i) = placeholder_at(rest) {
        let after = &rest[i + 2..];
        let Some(j) = after.find("}}") else { break };
        if !PLACEHOLDERS.contains(&&after[..j]) {
            unknown.push(&after[..j]);
        }
        rest = &after[j + 2..];
    }
    unknown
}

/// A PromQL string literal's content: Go's escapes, as JSON writes them.
fn escape(s: &str) -> String {
    let quoted = serde_json::to_string(s).unwrap_or_default();
    quoted
        .get(1..quoted.len().saturating_sub(1))
        .unwrap_or_default()
        .to_owned()
}

/// What a rollout was started with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    /// The flag.
    pub flag_key: String,
    /// The variant rolled out.
    pub treatment: String,
    /// The variant the others keep (the flag's default variant).
    pub control: String,
    /// What is bucketed.
    pub unit: Unit,
    /// The tenants it applies to; empty: every tenant.
    pub tenants: Vec<String>,
    /// The stages, in order.
    pub stages: Vec<Stage>,
    /// How cohorts are read from Prometheus.
    pub queries: Queries,
    /// How they are judged (`min_requests` comes from each stage).
    pub rules: CanaryRules,
    /// INCONCLUSIVE verdicts in a row at one stage before the rollout pauses.
    pub max_holds: u32,
    /// How often a stage is looked at during its hold, for an early FAIL
    /// (never an early PASS), seconds; 0: every 10 s, or the hold when
    /// shorter.
    #[serde(default)]
    pub check_every_s: u64,
    /// When the flag was created (set when the rollout starts): a flag
    /// deleted and created again under its key is not the rollout's.
    #[serde(default)]
    pub flag_created_us: i64,
    /// The flag's targeting before the rollout (set when it starts): what
    /// the tenants outside it keep, and what a rollback restores.
    #[serde(default)]
    pub otherwise: Option<Json>,
}

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Stages advance as they are judged.
    Running,
    /// Held where it is until resumed (by a person, or after too many
    /// INCONCLUSIVE verdicts, or after the flag was changed by someone
    /// else).
    Paused,
    /// Every stage passed: the treatment is the flag's default variant.
    Succeeded,
    /// A stage failed: the treatment is back at 0 %.
    Failed,
    /// Stopped by a person: the treatment is back at 0 %.
    Aborted,
}

impl State {
    /// Every state.
    pub const ALL: [State; 5] = [
        State::Running,
        State::Paused,
        State::Succeeded,
        State::Failed,
        State::Aborted,
    ];

    /// `running`, `paused`, `succeeded`, `failed`, `aborted`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Paused => "paused",
            State::Succeeded => "succeeded",
            State::Failed => "failed",
            State::Aborted => "aborted",
        }
    }

    /// The state stored as `s`.
    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether it has ended (nothing moves it any more).
    pub fn is_final(self) -> bool {
        matches!(self, State::Succeeded | State::Failed | State::Aborted)
    }
}

/// A rollout as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollout {
    /// `ro-` and 12 hex digits.
    pub id: String,
    /// Its plan.
    pub spec: Spec,
    /// Where it is.
    pub state: State,
    /// The current stage (an index into `spec.stages`).
    pub stage: usize,
    /// The treatment's weight the flag has now (of [`TOTAL_WEIGHT`]).
    pub weight: u32,
    /// When the current stage (or its last hold) began, µs.
    pub stage_started_us: i64,
    /// INCONCLUSIVE verdicts in a row at this stage.
    pub holds: u32,
    /// The flag's revision as the rollout last wrote it: a step is refused
    /// when the flag is at another one (someone else changed it).
    pub flag_revision: i64,
    /// The last verdict, with its figures.
    pub last_verdict: Option<Json>,
    /// The control cohort as the last passed stage measured it: what a
    /// stage at 100 % of every tenant (where there is no control traffic)
    /// is judged against. Holds never replace it.
    pub baseline: Option<Json>,
    /// Why it is in its state (a pause, a failure, an abort).
    pub reason: String,
    /// Bumped by every write: each is a compare-and-set on it.
    pub version: i64,
    /// Who started it.
    pub created_by: String,
    /// When it started, µs.
    pub created_at_us: i64,
    /// When it last changed, µs.
    pub updated_at_us: i64,
}

impl Rollout {
    /// The actor its automatic steps are recorded under.
    pub fn actor(&self) -> String {
        format!("rollout:{}", self.id)
    }

    /// How often the current stage is looked at for an early FAIL, µs.
    pub fn check_every_us(&self) -> i64 {
        let every = match self.spec.check_every_s {
            0 => self.current().hold_s.min(10),
            s => s,
        };
        i64::try_from(every.max(1)).unwrap_or(i64::MAX / 2) * 1_000_000
    }

    /// The current stage's plan.
    pub fn current(&self) -> &Stage {
        &self.spec.stages[self.stage.min(self.spec.stages.len() - 1)]
    }
}

/// The flag's targeting at `weight` (of [`TOTAL_WEIGHT`]) for the
/// treatment: a `fractional` split, confined to the spec's tenants when it
/// names some (the others get `otherwise`, the flag's targeting from before
/// the rollout, or its default variant).
pub fn rule(spec: &Spec, weight: u32, otherwise: Option<&Json>) -> Json {
    let weight = weight.min(TOTAL_WEIGHT);
    let mut args = Vec::with_capacity(3);
    if spec.unit == Unit::Tenant {
        args.push(json!({"cat": [{"var": "$flagd.flagKey"}, {"var": "tenantId"}]}));
    }
    args.push(json!([spec.treatment, weight]));
    args.push(json!([spec.control, TOTAL_WEIGHT - weight]));
    let split = json!({ "fractional": args });
    if spec.tenants.is_empty() {
        split
    } else {
        json!({"if": [
            {"in": [{"var": "tenantId"}, spec.tenants]},
            split,
            otherwise.cloned().unwrap_or(Json::Null),
        ]})
    }
}

/// A percentage (0 to 100) as a weight; INVALID_ARGUMENT naming `field`
/// when out of range or finer than 0.01.
pub fn weight_of(field: &str, percent: f64) -> Result<u32> {
    if !percent.is_finite() || !(0.0..=100.0).contains(&percent) {
        return Err(Error::invalid_argument(field, "must be between 0 and 100"));
    }
    let w = percent * 100.0;
    if (w - w.round()).abs() > 1e-6 {
        return Err(Error::invalid_argument(
            field,
            "is a percentage in steps of 0.01",
        ));
    }
    Ok(w.round() as u32)
}

/// A weight as a percentage.
pub fn percent_of(weight: u32) -> f64 {
    f64::from(weight) / 100.0
}

/// Checks a plan's own rules (the flag is checked against it when the
/// rollout starts).
pub fn check(spec: &Spec) -> Result<()> {
    if spec.treatment.is_empty() {
        return Err(Error::invalid_argument("rollout.treatment", "is required"));
    }
    if spec.control.is_empty() {
        return Err(Error::invalid_argument("rollout.control", "is required"));
    }
    if spec.treatment == spec.control {
        return Err(Error::invalid_argument(
            "rollout.treatment",
            "must differ from the control variant",
        ));
    }
    if spec.stages.is_empty() || spec.stages.len() > MAX_STAGES {
        return Err(Error::invalid_argument(
            "rollout.stages",
            format!("must hold 1 to {MAX_STAGES} stages"),
        ));
    }
    if spec.stages[0].weight >= TOTAL_WEIGHT {
        return Err(Error::invalid_argument(
            "rollout.stages[0].percent",
            "must be below 100: a stage is judged against the control cohort, and at 100 % there is none yet",
        ));
    }
    let mut last = 0;
    for (i, s) in spec.stages.iter().enumerate() {
        let field = format!("rollout.stages[{i}]");
        if s.weight == 0 || s.weight <= last {
            return Err(Error::invalid_argument(
                &format!("{field}.percent"),
                "must be above 0 and above the stage before",
            ));
        }
        last = s.weight;
        if s.hold_s == 0 || s.hold_s > 7 * 86_400 {
            return Err(Error::invalid_argument(
                &format!("{field}.hold"),
                "must be at least one second and at most seven days",
            ));
        }
        if s.min_samples < 1 {
            return Err(Error::invalid_argument(
                &format!("{field}.min_samples"),
                "must be at least 1",
            ));
        }
    }
    if spec.tenants.len() > MAX_TENANTS {
        return Err(Error::invalid_argument(
            "rollout.tenants",
            format!("at most {MAX_TENANTS}"),
        ));
    }
    for (name, q) in [
        ("requests", &spec.queries.requests),
        ("errors", &spec.queries.errors),
        ("p95_ms", &spec.queries.p95_ms),
    ] {
        if q.trim().is_empty() || q.len() > 4096 {
            return Err(Error::invalid_argument(
                &format!("rollout.queries.{name}"),
                "must be a PromQL query of at most 4096 bytes",
            ));
        }
    }
    for (name, q) in [
        ("requests", &spec.queries.requests),
        ("errors", &spec.queries.errors),
        ("p95_ms", &spec.queries.p95_ms),
    ] {
        if let Some(p) = unknown_placeholders(q).first() {
            return Err(Error::invalid_argument(
                &format!("rollout.queries.{name}"),
                format!(
                    "has the placeholder {{{{{p}}}}}; the placeholders are {{{{flag}}}}, {{{{variant}}}}, {{{{window}}}} and {{{{match}}}}"
                ),
            ));
        }
    }
    if spec.queries.matchers.len() > 1024 {
        return Err(Error::invalid_argument(
            "rollout.queries.matchers",
            "at most 1024 bytes",
        ));
    }
    if !spec.queries.matchers.trim().is_empty()
        && ![
            &spec.queries.requests,
            &spec.queries.errors,
            &spec.queries.p95_ms,
        ]
        .iter()
        .any(|q| q.contains("{{match}}"))
    {
        return Err(Error::invalid_argument(
            "rollout.queries.matchers",
            "is used by none of the queries: put {{match}} in their label matchers",
        ));
    }
    if spec.check_every_s > 86_400 {
        return Err(Error::invalid_argument(
            "rollout.check_interval",
            "at most a day",
        ));
    }
    crate::gating::judge::validate_rules("rollout.rules", &spec.rules)?;
    if spec.max_holds == 0 || spec.max_holds > 100 {
        return Err(Error::invalid_argument(
            "rollout.max_holds",
            "must be 1 to 100",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flag::{FlagDef, FlagType, Rule, env::EnvOverrides, resolve::resolve};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn spec(unit: Unit, tenants: &[&str]) -> Spec {
        Spec {
            flag_key: "checkout".into(),
            treatment: "new".into(),
            control: "old".into(),
            unit,
            tenants: tenants.iter().map(|t| t.to_string()).collect(),
            stages: vec![Stage {
                weight: 100,
                hold_s: 60,
                min_samples: 10,
            }],
            queries: Queries::default(),
            rules: CanaryRules::default(),
            max_holds: 3,
            check_every_s: 0,
            flag_created_us: 0,
            otherwise: None,
        }
    }

    /// The variant the flag answers at `weight` for `key` in `tenant`,
    /// through the evaluation every caller gets.
    fn variant(spec: &Spec, weight: u32, tenant: &str, key: &str) -> Option<String> {
        let mut variants = BTreeMap::new();
        variants.insert("new".to_owned(), json!(true));
        variants.insert("old".to_owned(), json!(false));
        let mut def = FlagDef::legacy(
            spec.flag_key.clone(),
            FlagType::Bool,
            String::new(),
            json!(false),
            None,
        );
        def.variants = variants;
        def.default_variant = Some("old".into());
        def.targeting = Some(Rule::load(rule(spec, weight, None)));
        let ctx = json!({"targetingKey": key, "tenantId": tenant});
        let env = EnvOverrides::default();
        let r = resolve(
            &env,
            &def,
            Some(tenant),
            None,
            ctx.as_object().unwrap(),
            0,
            None,
        );
        r.variant.map(|v| v.into_owned())
    }

    proptest! {
        /// Raising the percentage only adds units; lowering it takes back
        /// the most recently added first: the treatment's units at a lower
        /// weight are a subset of those at a higher one, whatever the keys.
        #[test]
        fn assignment_is_monotone(
            keys in proptest::collection::vec("[a-z0-9@.]{1,24}", 50..200),
            a in 0u32..=TOTAL_WEIGHT,
            b in 0u32..=TOTAL_WEIGHT,
            by_tenant in any::<bool>(),
        ) {
            let (low, high) = (a.min(b), a.max(b));
            let unit = if by_tenant { Unit::Tenant } else { Unit::TargetingKey };
            let s = spec(unit, &[]);
            for k in &keys {
                let (tenant, key) = if by_tenant { (k.as_str(), "u") } else { ("t", k.as_str()) };
                let at_low = variant(&s, low, tenant, key);
                let at_high = variant(&s, high, tenant, key);
                prop_assert!(at_low.is_some() && at_high.is_some());
                if at_low.as_deref() == Some("new") {
                    prop_assert_eq!(at_high.as_deref(), Some("new"), "{} left at {} -> {}", k, low, high);
                }
            }
        }
    }

    #[test]
    fn the_ends_give_everyone_one_variant_and_a_stage_about_its_share() {
        let s = spec(Unit::TargetingKey, &[]);
        let keys: Vec<String> = (0..4000).map(|i| format!("user-{i}")).collect();
        let share = |w: u32| {
            keys.iter()
                .filter(|k| variant(&s, w, "t", k).as_deref() == Some("new"))
                .count()
        };
        assert_eq!(share(0), 0);
        assert_eq!(share(TOTAL_WEIGHT), keys.len());
        let quarter = share(2500);
        assert!((800..1200).contains(&quarter), "{quarter} of 4000 at 25 %");
    }

    #[test]
    fn by_tenant_a_tenant_moves_whole_and_others_keep_their_rule() {
        let s = spec(Unit::Tenant, &[]);
        for tenant in ["acme", "globex", "initech", "umbrella"] {
            let first = variant(&s, 5000, tenant, "user-1");
            for u in 0..50 {
                assert_eq!(variant(&s, 5000, tenant, &format!("user-{u}")), first);
            }
        }
        let confined = spec(Unit::TargetingKey, &["acme"]);
        assert_eq!(
            variant(&confined, TOTAL_WEIGHT, "acme", "u1").as_deref(),
            Some("new")
        );
        assert_eq!(
            variant(&confined, TOTAL_WEIGHT, "globex", "u1").as_deref(),
            Some("old")
        );
    }

    #[test]
    fn queries_are_rendered_with_the_cohort_and_window() {
        let q = Queries {
            matchers: r#"job="checkout""#.into(),
            ..Queries::default()
        };
        let r = q.render(&q.requests, "check\"out", "new", 90);
        assert_eq!(
            r,
            r#"sum(increase(http_server_request_duration_seconds_count{feature_flag_key="check\"out",feature_flag_result_variant="new",job="checkout"}[90s])) or vector(0)"#
        );
        let plain = Queries::default();
        assert!(
            plain
                .render(&plain.p95_ms, "f", "v", 30)
                .contains(r#"{feature_flag_key="f",feature_flag_result_variant="v"}[30s]"#)
        );
    }

    #[test]
    fn values_are_rendered_once_and_escaped() {
        let q = Queries::default();
        let r = q.render(
            "{{variant}} {{flag}} {{other}} {{window}}",
            "a\nb{{window}}",
            "{{match}}",
            5,
        );
        assert_eq!(r, "{{match}} a\\nb{{window}} {{other}} 5s");
        let mut s = spec(Unit::TargetingKey, &[]);
        s.queries.requests = "sum(x{{{match}}}[{{windows}}])".into();
        assert!(check(&s).unwrap_err().message().contains("{{windows}}"));
        let mut s = spec(Unit::TargetingKey, &[]);
        s.queries = Queries {
            requests: "a".into(),
            errors: "b".into(),
            p95_ms: "c".into(),
            matchers: "job=\"x\"".into(),
        };
        assert!(check(&s).unwrap_err().message().contains("{{match}}"));
    }

    #[test]
    fn plans_are_checked() {
        let mut s = spec(Unit::TargetingKey, &[]);
        assert!(check(&s).is_ok());
        s.stages.push(Stage {
            weight: 100,
            hold_s: 60,
            min_samples: 10,
        });
        assert!(
            check(&s)
                .unwrap_err()
                .message()
                .contains("stages[1].percent")
        );
        assert_eq!(weight_of("p", 12.5).unwrap(), 1250);
        assert!(weight_of("p", 12.345).is_err());
        assert!(weight_of("p", 101.0).is_err());
        assert!(weight_of("p", f64::NAN).is_err());
    }
}
