//! NLP low-confidence fallback accounting: an outcome whose confidence is
//! below its tenant's threshold (the number flag [`THRESHOLD_FLAG`], with its
//! tenant overrides; [`DEFAULT_THRESHOLD`] without such a flag) is a
//! fallback. Outcomes are counted on `/metrics` by tenant and intent; a
//! recording rule gives the 5-minute fallback ratio per tenant.

use std::{
    collections::{BTreeMap, HashSet},
    sync::Mutex,
};

use crate::{
    error::{Error, Result},
    id::TenantId,
};

/// The flag holding a tenant's confidence threshold.
pub const THRESHOLD_FLAG: &str = "nlp.min_confidence";
/// The threshold without that flag.
pub const DEFAULT_THRESHOLD: f64 = 0.5;
/// The most outcomes in one batch.
pub const MAX_BATCH: usize = 1000;
/// The longest intent.
pub const MAX_INTENT_LEN: usize = 64;
/// The most distinct intents labelled in metrics per process; later ones are
/// counted as `other`, so a model cannot grow the series without bound.
pub const MAX_INTENTS: usize = 50;

/// One outcome, as the caller sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The tenant.
    pub tenant_id: String,
    /// The model's confidence.
    pub confidence: f64,
    /// The intent (empty: `unknown`).
    pub intent: String,
}

/// Checks every outcome of a batch, naming the first bad field
/// (`outcomes[3].confidence`). Nothing is counted unless all pass.
pub fn validate(outcomes: &[Outcome]) -> Result<()> {
    if outcomes.is_empty() {
        return Err(Error::invalid_argument("outcomes", "must not be empty"));
    }
    if outcomes.len() > MAX_BATCH {
        return Err(Error::invalid_argument(
            "outcomes",
            format!(
                "at most {MAX_BATCH} outcomes in one batch, not {}",
                outcomes.len()
            ),
        ));
    }
    for (i, o) in outcomes.iter().enumerate() {
        TenantId::parse(&o.tenant_id, &format!("outcomes[{i}].tenant_id"))?;
        if !(0.0..=1.0).contains(&o.confidence) {
            return Err(Error::invalid_argument(
                &format!("outcomes[{i}].confidence"),
                format!("must be between 0 and 1, not {}", o.confidence),
            ));
        }
        if o.intent.len() > MAX_INTENT_LEN
            || !o.intent.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            })
        {
            return Err(Error::invalid_argument(
                &format!("outcomes[{i}].intent"),
                format!("at most {MAX_INTENT_LEN} characters of a-z, 0-9, '.', '_' and '-'"),
            ));
        }
    }
    Ok(())
}

/// Outcomes and fallbacks of a batch by (tenant, intent label).
pub type Counts = BTreeMap<(String, String), (u64, u64)>;

/// Counts a validated batch: `threshold(tenant)` is the tenant's threshold.
/// Returns the counts by tenant and intent label, and the fallbacks in all.
pub fn count(outcomes: &[Outcome], mut threshold: impl FnMut(&str) -> f64) -> (Counts, u64) {
    let mut counts = Counts::new();
    let mut fallbacks = 0;
    let mut thresholds: BTreeMap<&str, f64> = BTreeMap::new();
    for o in outcomes {
        let t = *thresholds
            .entry(o.tenant_id.as_str())
            .or_insert_with(|| threshold(&o.tenant_id));
        let fallback = o.confidence < t;
        fallbacks += u64::from(fallback);
        let c = counts
            .entry((o.tenant_id.clone(), intent_label(&o.intent)))
            .or_default();
        c.0 += 1;
        c.1 += u64::from(fallback);
    }
    (counts, fallbacks)
}

/// The label of an intent: itself among the first [`MAX_INTENTS`] seen by
/// this process, `unknown` when empty, `other` beyond.
fn intent_label(intent: &str) -> String {
    static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    if intent.is_empty() {
        return "unknown".into();
    }
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    let seen = seen.get_or_insert_with(HashSet::new);
    if seen.contains(intent) || seen.len() < MAX_INTENTS {
        seen.insert(intent.to_owned());
        intent.to_owned()
    } else {
        "other".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(t: &str, c: f64, i: &str) -> Outcome {
        Outcome {
            tenant_id: t.into(),
            confidence: c,
            intent: i.into(),
        }
    }

    #[test]
    fn below_the_tenant_threshold_is_a_fallback() {
        let batch = [
            o("a", 0.4, "billing"),
            o("a", 0.5, "billing"),
            o("b", 0.7, ""),
            o("b", 0.95, ""),
        ];
        let (counts, fallbacks) = count(&batch, |t| if t == "b" { 0.9 } else { 0.5 });
        assert_eq!(fallbacks, 2);
        assert_eq!(counts[&("a".into(), "billing".into())], (2, 1));
        assert_eq!(counts[&("b".into(), "unknown".into())], (2, 1));
    }

    #[test]
    fn bad_outcomes_name_the_field() {
        for (batch, msg) in [
            (vec![], "outcomes: must not be empty"),
            (
                vec![o("a", 0.5, ""), o("a", f64::NAN, "")],
                "outcomes[1].confidence: must be between 0 and 1",
            ),
            (vec![o("a", 1.5, "")], "outcomes[0].confidence"),
            (vec![o("a", -0.1, "")], "outcomes[0].confidence"),
            (vec![o("A!", 0.5, "")], "outcomes[0].tenant_id"),
            (vec![o("a", 0.5, "Bad Intent")], "outcomes[0].intent"),
        ] {
            let e = validate(&batch).unwrap_err();
            assert!(e.message().starts_with(msg), "{}", e.message());
        }
        let big = vec![o("a", 0.5, ""); MAX_BATCH + 1];
        assert!(
            validate(&big)
                .unwrap_err()
                .message()
                .contains("at most 1000")
        );
    }
}
