//! Switchyard: a gRPC control plane for multi-tenant fleets.
//!
//! The application lives in the workspace's crates, one a layer (see
//! `ARCHITECTURE.md`): `switchyard-api` (the contract: protos, codecs, the
//! typed client), `switchyard-core` (the capabilities, storage, the change
//! log; no transport), `switchyard-server` (gRPC, REST, OFREP, flagd on one
//! listener) and `switchyard-cli` (the client commands). This package is the
//! binary (`main.rs`), and this library names the layers under the paths the
//! integration tests and the benches use.

#![forbid(unsafe_code)]

pub use switchyard_api as api;
pub use switchyard_api::client;
pub use switchyard_cli as cli;
pub use switchyard_core::{
    app, audit, auth, bus, changelog, config, error, flag, follower, gating, id, service, store,
    telemetry, tenant,
};
pub use switchyard_server::{self as server, grpc, rest, serve};
