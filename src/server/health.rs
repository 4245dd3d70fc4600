//! `grpc.health.v1.Health` from the application's state: SERVING while the
//! replica follows the change log, NOT_SERVING (overall and for the services
//! that serve replicated state) while it is stuck before a row it cannot
//! decode, and for everything once shutdown begins.

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::{
    api::v1::{
        flag_service_server::FlagServiceServer, gating_service_server::GatingServiceServer,
        tenant_service_server::TenantServiceServer,
    },
    follower::Readiness,
    grpc::{flag::FlagApi, gating::GatingApi, tenant::TenantApi},
};

/// The fully qualified names of the API services, for health.
pub const SERVICE_NAMES: [&str; 3] = [
    <TenantServiceServer<TenantApi> as NamedService>::NAME,
    <FlagServiceServer<FlagApi> as NamedService>::NAME,
    <GatingServiceServer<GatingApi> as NamedService>::NAME,
];

/// The services whose answers come from replicated state, and so depend on
/// following the change log (with the overall status, `""`).
const REPLICATED: [&str; 3] = [
    "",
    <TenantServiceServer<TenantApi> as NamedService>::NAME,
    <FlagServiceServer<FlagApi> as NamedService>::NAME,
];

/// Reports SERVING for every service, then spawns the task that follows
/// `readiness` until `stopping` is cancelled and reports NOT_SERVING for
/// everything before it ends.
pub async fn start(
    health: HealthReporter,
    readiness: watch::Receiver<Readiness>,
    stopping: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    for name in SERVICE_NAMES {
        health
            .set_service_status(name, ServingStatus::Serving)
            .await;
    }
    tokio::spawn(follow(health, readiness, stopping))
}

async fn follow(
    health: HealthReporter,
    mut readiness: watch::Receiver<Readiness>,
    stopping: CancellationToken,
) {
    // Watchers of a service are woken by every report, so only changes are
    // reported.
    let mut reported = ServingStatus::Serving;
    loop {
        let status = match &*readiness.borrow_and_update() {
            Readiness::Ready => ServingStatus::Serving,
            Readiness::Stuck { .. } => ServingStatus::NotServing,
        };
        if status != reported {
            for name in REPLICATED {
                health.set_service_status(name, status).await;
            }
            reported = status;
        }
        tokio::select! {
            changed = readiness.changed() => if changed.is_err() { break },
            () = stopping.cancelled() => break,
        }
    }
    for name in SERVICE_NAMES.iter().chain(&[""]) {
        health
            .set_service_status(*name, ServingStatus::NotServing)
            .await;
    }
}
