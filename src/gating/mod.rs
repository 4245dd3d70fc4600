//! Release gating: adaptive smoke thresholds, smoke verdicts with history,
//! canary comparison, NLP fallback accounting.
