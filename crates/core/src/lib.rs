//! Switchyard's core: tenants, flags and gating as use cases (each
//! capability's `service.rs`, taking the caller's `Principal` and domain
//! types), over the store, the change log, the bus and the follower, built
//! into one application by `app`. It names no transport: Cargo keeps gRPC,
//! HTTP and the generated proto types out of this crate (see
//! `ARCHITECTURE.md`).

#![forbid(unsafe_code)]

pub mod app;
pub mod audit;
pub mod auth;
pub mod bus;
pub mod changelog;
pub mod config;
pub mod error;
pub mod flag;
pub mod follower;
pub mod gating;
pub mod id;
pub mod json;
pub mod rollout;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod tenant;
pub mod token;
