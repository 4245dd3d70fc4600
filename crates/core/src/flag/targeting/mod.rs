//! Targeting in flagd's dialect of JsonLogic: the rule compiler and
//! evaluator (`logic.rs`) and flagd's own operations (`fractional.rs`,
//! `semver.rs`), and flagd's published schema every rule written is checked
//! against (`schema.rs`).

pub mod fractional;
pub mod logic;
pub mod schema;
pub mod semver;
