//! `switchyard flags import|export` (`flags`): flagd's flag-definition files.
//!
//! `switchyard smoke` and `switchyard canary`: open-model synthetic traffic
//! at a server (`traffic`), judged by its GatingService (or by the same
//! judge here, `switchyard_core::gating::document`), written as the GATING.md
//! documents and a Markdown job summary (`summary`), with a terminal line
//! while it runs (`progress`). The user's own gRPC methods are found through
//! their servers' reflection (`reflection`). The flows and their arguments are `commands`.
//!
//! `switchyard judge`: another load tool's report (k6, ghz), read by
//! `switchyard_core::gating::import` and judged as `smoke` and `canary`
//! judge theirs (`judge`).
//!
//! `switchyard token create|list|revoke`: named tokens (`token`).
//!
//! Nothing here reads the process environment: the binary passes what the
//! commands need of it (`commands::Environment`).

#![forbid(unsafe_code)]

pub mod commands;
pub mod flags;
pub mod judge;
pub mod progress;
pub mod reflection;
pub mod rollout;
pub mod summary;
pub mod token;
pub mod traffic;
