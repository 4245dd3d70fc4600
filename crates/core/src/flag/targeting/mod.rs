//! Targeting in flagd's dialect of JsonLogic (issue 32, in progress): the
//! custom operations first.

pub mod fractional;
pub mod logic;
pub mod semver;
