//! Release gating: adaptive smoke thresholds, smoke verdicts with history,
//! canary comparison, NLP fallback accounting.
//!
//! Only the slot exists so far: [`service::Service`] checks the caller's
//! scope and answers UNIMPLEMENTED, until the gating issue fills it in.

pub mod service;
