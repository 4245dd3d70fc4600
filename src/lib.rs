//! Switchyard: a gRPC control plane for multi-tenant fleets.
//!
//! See `ARCHITECTURE.md` for the map. The binary (`main.rs`) parses the command
//! line, loads [`config::Config`] and calls [`server::serve`]; tests call the
//! same function.

#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod auth;
pub mod bus;
pub mod cache;
pub mod changelog;
pub mod client;
pub mod config;
pub mod error;
pub mod flag;
pub mod follower;
pub mod gating;
pub mod grpc;
pub mod prometheus;
pub mod rest;
pub mod server;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod tenant;

pub use server::serve;
