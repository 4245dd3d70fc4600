//! Targeting in flagd's dialect of JsonLogic: the rule compiler and
//! evaluator (`logic.rs`) and flagd's own operations (`fractional.rs`,
//! `semver.rs`).

pub mod fractional;
pub mod logic;
pub mod semver;
