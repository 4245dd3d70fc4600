//! Switchyard's integration tests: one test crate, by subject, over one
//! harness (`common`). Each starts the real server (in process, or the real
//! binary where the process matters) on `127.0.0.1:0`, on a fresh database,
//! and talks to it as a user would: generated clients, HTTP, the binary's
//! command line, and the real clients of other languages.
//!
//! Run one subject with a filter: `cargo test --test it watch::`.

#[macro_use]
mod common;

mod architecture;
mod audit;
mod cli;
mod docs;
mod foundation;
mod rollouts;
mod tenants;
mod tls;
mod tokens;
mod watch;

/// Clients of other languages and browsers, generated from `proto/` and
/// `/openapi.json`.
mod clients {
    mod browser;
    mod console;
    mod openapi;
    mod python;
    mod typescript;
}

/// Replicas together: the fault test, propagation, a pruned change log.
mod fleet {
    mod faults;
    mod pruned;
    mod replicas;
}

/// Flags: their calls, listings, the change log's formats.
mod flags {
    mod changelog;
    mod crud;
    mod listing;
    mod targeting;
}

/// Gating: verdicts, the traffic CLI, a real Prometheus.
mod gating {
    mod own_services;
    mod prometheus;
    mod traffic;
    mod verdicts;
}

/// What an adversary tries: malformed input, limits, abuse.
mod hardening {
    mod adversarial;
    mod limits;
}

/// Metrics and traces of the real binary.
mod observability {
    mod metrics;
    mod traces;
}

/// OpenFeature's protocols with OpenFeature's own providers.
mod openfeature {
    mod differential;
    mod flagd;
    mod ofrep;
}

/// The REST shims, their golden bodies, compression and gRPC-Web.
mod rest {
    mod compression;
    mod golden;
    mod grpc_web;
    mod shims;
}
