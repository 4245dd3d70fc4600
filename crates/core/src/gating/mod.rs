//! Release gating: adaptive smoke thresholds, smoke verdicts with history,
//! canary comparison, NLP fallback accounting.
//!
//! - `report.rs`: the documents (smoke summary, canary report, budget).
//! - `judge.rs`: the pure judges every verdict comes from.
//! - `document.rs`: the summary and report built from a caller's input.
//! - `import.rs`: statistics from other load tools' reports (k6, ghz).
//! - `budget.rs`: SLOs, tiers, and the threshold from the budget left.
//! - `store.rs`: gate runs kept for history.
//! - `nlp.rs`: low-confidence fallback counting.
//! - `service.rs`: the use cases, with their scope checks.

pub mod budget;
pub mod document;
pub mod import;
pub mod judge;
pub mod nlp;
pub mod report;
pub mod service;
pub mod store;
