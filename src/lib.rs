//! Switchyard: a gRPC control plane for multi-tenant fleets.
//!
//! See `ARCHITECTURE.md` for the map. The binary (`main.rs`) parses the command
//! line, loads [`config::Config`] and calls [`server::serve`]; tests call the
//! same function.

#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod bus;
pub mod cache;
pub mod config;
pub mod error;
pub mod flag;
pub mod gating;
pub mod grpc;
pub mod rest;
pub mod server;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod tenant;

pub use server::serve;
