//! The smoke threshold from the error budget left: SLOs with their query and
//! tier table, and the rule that picks a tier from what Prometheus answered.
//!
//! Prometheus itself is behind [`BudgetQuery`], implemented at the edge
//! (`switchyard-server`'s `budget_reader.rs`); this module decides:
//! - no Prometheus configured: the base threshold, source `disabled`;
//! - no usable answer (unreachable, timeout, an HTTP or query error, no
//!   series, several series, NaN, an infinity): the strictest tier, source
//!   `fallback`, with the reason;
//! - a finite value: clamped to [0, 1] (only to pick the tier; the raw value
//!   is reported), the strictest tier whose `below` it is under, else the
//!   base; source `prometheus`.

use std::{future::Future, pin::Pin};

use super::report::{Budget, BudgetSource, BudgetTier};

/// The name of the SLO of the observability rules.
pub const DEFAULT_SLO: &str = "availability";

/// An SLO whose error budget sets the smoke threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Slo {
    /// Its name (`availability`).
    pub name: String,
    /// The PromQL instant query answering the budget left, a ratio.
    pub query: String,
    /// The threshold with budget above every tier, ms.
    pub base_p95_ms: f64,
    /// The tiers, any order (kept strictest last).
    pub tiers: Vec<BudgetTier>,
}

impl Slo {
    /// The default SLO: the budget series of `observability/prometheus/
    /// rules.yml`, base 450 ms, below 0.80 ⇒ 420 ms, below 0.60 ⇒ 400 ms.
    pub fn default_availability() -> Slo {
        Slo {
            name: DEFAULT_SLO.into(),
            query: "slo:switchyard_error_budget:remaining_ratio{slo=\"availability\"}".into(),
            base_p95_ms: 450.0,
            tiers: vec![
                BudgetTier {
                    below: 0.8,
                    p95_ms: 420.0,
                },
                BudgetTier {
                    below: 0.6,
                    p95_ms: 400.0,
                },
            ],
        }
    }

    /// The tiers, loosest first (highest `below` first).
    fn sorted_tiers(&self) -> Vec<BudgetTier> {
        let mut t = self.tiers.clone();
        t.sort_by(|a, b| b.below.total_cmp(&a.below));
        t
    }

    /// The strictest threshold: the lowest of the tiers' and the base.
    fn strictest(&self) -> (f64, String) {
        self.tiers
            .iter()
            .min_by(|a, b| a.p95_ms.total_cmp(&b.p95_ms))
            .filter(|t| t.p95_ms < self.base_p95_ms)
            .map_or((self.base_p95_ms, "base".into()), |t| {
                (t.p95_ms, tier_name(t.below))
            })
    }
}

fn tier_name(below: f64) -> String {
    format!("below_{}", super::judge::num(below))
}

/// What a budget query answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// One series with this value (possibly NaN or infinite).
    Value(f64),
    /// No usable answer, and why (in one sentence).
    Failed(String),
}

/// Evaluates a PromQL instant query for one value.
pub trait BudgetQuery: Send + Sync {
    /// Runs `query` now, within the configured timeout.
    fn instant<'a>(&'a self, query: &'a str) -> Pin<Box<dyn Future<Output = Answer> + Send + 'a>>;

    /// Where the queries go, for reasons (`http://127.0.0.1:9090`).
    fn describe(&self) -> String;
}

/// Picks the threshold of `slo` from `answer` (`None`: no Prometheus is
/// configured), at `now_us`.
pub fn choose(slo: &Slo, answer: Option<Answer>, now_us: i64) -> Budget {
    let tiers = slo.sorted_tiers();
    let mut budget = Budget {
        source: BudgetSource::Disabled,
        slo: slo.name.clone(),
        query: slo.query.clone(),
        evaluated_at_us: now_us,
        remaining_ratio: None,
        clamped_ratio: None,
        tiers: tiers.clone(),
        base_p95_ms: slo.base_p95_ms,
        applied_p95_ms: slo.base_p95_ms,
        tier: "base".into(),
        reason: String::new(),
    };
    let fallback = |budget: &mut Budget, reason: String| {
        let (ms, tier) = slo.strictest();
        budget.source = BudgetSource::Fallback;
        budget.applied_p95_ms = ms;
        budget.tier = tier;
        budget.reason = format!("{reason}: the strictest tier applies");
    };
    match answer {
        None => {
            budget.reason = "no Prometheus is configured (SWITCHYARD_PROMETHEUS_URL): the base threshold applies".into();
        }
        Some(Answer::Failed(reason)) => fallback(&mut budget, reason),
        Some(Answer::Value(v)) => {
            budget.remaining_ratio = Some(v);
            if v.is_finite() {
                let clamped = v.clamp(0.0, 1.0);
                budget.source = BudgetSource::Prometheus;
                budget.clamped_ratio = Some(clamped);
                // The strictest tier the value is under.
                if let Some(t) = tiers
                    .iter()
                    .filter(|t| clamped < t.below)
                    .min_by(|a, b| a.p95_ms.total_cmp(&b.p95_ms))
                {
                    budget.applied_p95_ms = t.p95_ms;
                    budget.tier = tier_name(t.below);
                }
            } else {
                fallback(
                    &mut budget,
                    format!("Prometheus answered {v} for the budget left"),
                );
            }
        }
    }
    budget
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(v: f64) -> Budget {
        choose(&Slo::default_availability(), Some(Answer::Value(v)), 0)
    }

    #[test]
    fn the_tiers_follow_the_budget_left() {
        for (v, ms, tier) in [
            (0.9, 450.0, "base"),
            (0.8, 450.0, "base"),
            (0.7, 420.0, "below_0.8"),
            (0.5, 400.0, "below_0.6"),
            (-3.0, 400.0, "below_0.6"),
            (7.0, 450.0, "base"),
        ] {
            let b = at(v);
            assert_eq!(
                (b.applied_p95_ms, b.tier.as_str(), b.source),
                (ms, tier, BudgetSource::Prometheus),
                "{v}"
            );
            assert_eq!(b.remaining_ratio, Some(v), "the raw value is reported");
            assert_eq!(b.clamped_ratio, Some(v.clamp(0.0, 1.0)));
        }
    }

    #[test]
    fn no_usable_answer_is_the_strictest_tier_with_its_reason() {
        for answer in [
            Answer::Value(f64::NAN),
            Answer::Value(f64::INFINITY),
            Answer::Failed("Prometheus at http://x is unreachable".into()),
        ] {
            let b = choose(&Slo::default_availability(), Some(answer.clone()), 0);
            assert_eq!(
                (b.applied_p95_ms, b.source),
                (400.0, BudgetSource::Fallback),
                "{answer:?}"
            );
            assert!(
                b.reason.ends_with("the strictest tier applies"),
                "{}",
                b.reason
            );
            assert_eq!(b.clamped_ratio, None);
        }
        let b = choose(&Slo::default_availability(), None, 0);
        assert_eq!(
            (b.applied_p95_ms, b.source, b.tier.as_str()),
            (450.0, BudgetSource::Disabled, "base")
        );
        assert!(
            b.reason.contains("SWITCHYARD_PROMETHEUS_URL"),
            "{}",
            b.reason
        );
    }
}
