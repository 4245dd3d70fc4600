//! `grpc.health.v1.Health`, as the health checking protocol says, from the
//! application's state.
//!
//! The services are the ones the server registers ([`Registered`]), and ""
//! for the server as a whole. Each is NOT_SERVING until the listener serves
//! every route; then SERVING, except that "" and the services that answer
//! from replicated state are NOT_SERVING while the replica is stuck before a
//! change it cannot decode; everything is NOT_SERVING once shutdown begins,
//! and `Watch` streams end after saying so. `Check` of a service the server
//! does not register is NOT_FOUND; `Watch` of one streams SERVICE_UNKNOWN
//! (and stays open); `List` answers every registered service.

use std::{collections::BTreeMap, pin::Pin, sync::Arc};

use futures_util::Stream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, server::NamedService};

use crate::grpc::{
    audit::AuditApi, flag::FlagApi, flagd::Flagd, gating::GatingApi, rollout::RolloutApi,
    tenant::TenantApi, token::TokenApi,
};
use switchyard_api::{
    flagd::{
        evaluation::{v1::service_server::ServiceServer, v2},
        sync::v1::flag_sync_service_server::FlagSyncServiceServer,
    },
    health::{
        HealthCheckRequest, HealthCheckResponse, HealthListRequest, HealthListResponse,
        health_check_response::ServingStatus,
        health_server::{self, HealthServer},
    },
    v1::{
        audit_service_server::AuditServiceServer, flag_service_server::FlagServiceServer,
        gating_service_server::GatingServiceServer, rollout_service_server::RolloutServiceServer,
        tenant_service_server::TenantServiceServer, token_service_server::TokenServiceServer,
    },
};
use switchyard_core::follower::Readiness;

/// The fully qualified names of the API services.
pub const SERVICE_NAMES: [&str; 6] = [
    <TenantServiceServer<TenantApi> as NamedService>::NAME,
    <FlagServiceServer<FlagApi> as NamedService>::NAME,
    <GatingServiceServer<GatingApi> as NamedService>::NAME,
    <TokenServiceServer<TokenApi> as NamedService>::NAME,
    <AuditServiceServer<AuditApi> as NamedService>::NAME,
    <RolloutServiceServer<RolloutApi> as NamedService>::NAME,
];

/// The fully qualified names of flagd's services (OpenFeature's flagd
/// providers), served over the flag service.
pub const FLAGD_SERVICE_NAMES: [&str; 3] = [
    <ServiceServer<Flagd> as NamedService>::NAME,
    <v2::service_server::ServiceServer<Flagd> as NamedService>::NAME,
    <FlagSyncServiceServer<Flagd> as NamedService>::NAME,
];

/// The services whose answers come from replicated state, and so depend on
/// following the change log (with the server as a whole, `""`).
const REPLICATED: [&str; 6] = [
    "",
    <TenantServiceServer<TenantApi> as NamedService>::NAME,
    <FlagServiceServer<FlagApi> as NamedService>::NAME,
    FLAGD_SERVICE_NAMES[0],
    FLAGD_SERVICE_NAMES[1],
    FLAGD_SERVICE_NAMES[2],
];

/// The names of the services a router was built with, `""` first.
#[derive(Debug, Clone)]
pub struct Registered(Vec<&'static str>);

impl Registered {
    /// The server as a whole and `names`.
    pub fn new(names: impl IntoIterator<Item = &'static str>) -> Registered {
        let mut all = vec![""];
        all.extend(names);
        all.dedup();
        Registered(all)
    }
}

/// What `Watch` and `Check` read: each registered service's status, and
/// whether shutdown has begun.
#[derive(Debug, Clone)]
struct Statuses {
    by_service: BTreeMap<&'static str, ServingStatus>,
    stopped: bool,
}

/// The health service and the handle that sets its statuses.
#[derive(Debug, Clone)]
pub struct Health {
    statuses: Arc<watch::Sender<Statuses>>,
}

impl Health {
    /// Every service in `registered` NOT_SERVING.
    pub fn new(registered: &Registered) -> Health {
        let by_service = registered
            .0
            .iter()
            .map(|n| (*n, ServingStatus::NotServing))
            .collect();
        let (tx, _) = watch::channel(Statuses {
            by_service,
            stopped: false,
        });
        Health {
            statuses: Arc::new(tx),
        }
    }

    /// The `grpc.health.v1.Health` service.
    pub fn service(&self) -> HealthServer<Health> {
        HealthServer::new(self.clone())
    }

    /// Once every route serves: spawns the task that reports SERVING, follows
    /// `readiness` until `stopping` is cancelled, and then reports
    /// NOT_SERVING for everything before it ends.
    pub fn start(
        &self,
        readiness: watch::Receiver<Readiness>,
        stopping: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        // The first report is made before the server answers anything, so
        // the first Check already sees it.
        self.report(&mut readiness.clone());
        tokio::spawn(self.clone().follow(readiness, stopping))
    }

    /// Reports the statuses `readiness` implies; watchers are woken only
    /// when one changes.
    fn report(&self, readiness: &mut watch::Receiver<Readiness>) {
        let ready = matches!(&*readiness.borrow_and_update(), Readiness::Ready);
        self.statuses.send_if_modified(|s| {
            let mut changed = false;
            for (name, status) in &mut s.by_service {
                let now = if ready || !REPLICATED.contains(name) {
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                };
                changed |= *status != now;
                *status = now;
            }
            changed
        });
    }

    async fn follow(self, mut readiness: watch::Receiver<Readiness>, stopping: CancellationToken) {
        loop {
            self.report(&mut readiness);
            tokio::select! {
                changed = readiness.changed() => if changed.is_err() { break },
                () = stopping.cancelled() => break,
            }
        }
        self.statuses.send_modify(|s| {
            s.stopped = true;
            for status in s.by_service.values_mut() {
                *status = ServingStatus::NotServing;
            }
        });
    }
}

fn answer(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse {
        status: status as i32,
    }
}

#[tonic::async_trait]
impl health_server::Health for Health {
    type WatchStream =
        Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send + 'static>>;

    async fn check(
        &self,
        req: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let service = req.into_inner().service;
        match self.statuses.borrow().by_service.get(service.as_str()) {
            Some(status) => Ok(Response::new(answer(*status))),
            None => Err(Status::not_found(format!(
                "unknown service {service:?}: List names the services this server registers"
            ))),
        }
    }

    async fn list(
        &self,
        _: Request<HealthListRequest>,
    ) -> Result<Response<HealthListResponse>, Status> {
        let statuses = self
            .statuses
            .borrow()
            .by_service
            .iter()
            .map(|(name, status)| ((*name).to_owned(), answer(*status)))
            .collect();
        Ok(Response::new(HealthListResponse { statuses }))
    }

    async fn watch(
        &self,
        req: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let service = req.into_inner().service;
        let rx = self.statuses.subscribe();
        let stream = futures_util::stream::unfold(
            (rx, service, None::<ServingStatus>, false),
            |(mut rx, service, mut last, done)| async move {
                if done {
                    return None;
                }
                loop {
                    let (now, stopped) = {
                        let s = rx.borrow_and_update();
                        let now = s
                            .by_service
                            .get(service.as_str())
                            .copied()
                            .unwrap_or(ServingStatus::ServiceUnknown);
                        (now, s.stopped)
                    };
                    if last != Some(now) {
                        last = Some(now);
                        return Some((Ok(answer(now)), (rx, service, last, stopped)));
                    }
                    if stopped || rx.changed().await.is_err() {
                        return None;
                    }
                }
            },
        );
        Ok(Response::new(Box::pin(stream)))
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;
    use health_server::Health as _;

    use super::*;

    fn registered() -> Registered {
        Registered::new(SERVICE_NAMES)
    }

    async fn watch(h: &Health, service: &str) -> <Health as health_server::Health>::WatchStream {
        h.watch(Request::new(HealthCheckRequest {
            service: service.into(),
        }))
        .await
        .unwrap()
        .into_inner()
    }

    async fn next(s: &mut <Health as health_server::Health>::WatchStream) -> Option<i32> {
        tokio::time::timeout(std::time::Duration::from_secs(5), s.next())
            .await
            .expect("a health event within 5 s")
            .map(|r| r.unwrap().status)
    }

    #[tokio::test]
    async fn not_serving_until_started_then_serving_then_not_serving_on_shutdown() {
        let h = Health::new(&registered());
        let (ready_tx, ready_rx) = watch::channel(Readiness::Ready);
        let mut flag = watch(&h, SERVICE_NAMES[1]).await;
        assert_eq!(
            next(&mut flag).await,
            Some(ServingStatus::NotServing as i32)
        );
        let stopping = CancellationToken::new();
        let task = h.start(ready_rx, stopping.clone());
        assert_eq!(next(&mut flag).await, Some(ServingStatus::Serving as i32));

        // A stuck replica: replicated services and "" go NOT_SERVING, gating stays.
        ready_tx
            .send(Readiness::Stuck {
                revision: 7,
                reason: "x".into(),
            })
            .unwrap();
        assert_eq!(
            next(&mut flag).await,
            Some(ServingStatus::NotServing as i32)
        );
        let list = h
            .list(Request::new(HealthListRequest {}))
            .await
            .unwrap()
            .into_inner()
            .statuses;
        assert_eq!(list.len(), 1 + SERVICE_NAMES.len(), "{list:?}");
        assert_eq!(list[""].status, ServingStatus::NotServing as i32);
        assert_eq!(list[SERVICE_NAMES[2]].status, ServingStatus::Serving as i32);

        stopping.cancel();
        task.await.unwrap();
        let gating = h
            .check(Request::new(HealthCheckRequest {
                service: SERVICE_NAMES[2].into(),
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(gating.status, ServingStatus::NotServing as i32);
        assert_eq!(next(&mut flag).await, None, "the watch ends after shutdown");
    }

    #[tokio::test]
    async fn an_unknown_service_is_not_found_on_check_and_service_unknown_on_watch() {
        let h = Health::new(&registered());
        let err = h
            .check(Request::new(HealthCheckRequest {
                service: "no.such.Service".into(),
            }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
        let mut w = watch(&h, "no.such.Service").await;
        assert_eq!(
            next(&mut w).await,
            Some(ServingStatus::ServiceUnknown as i32)
        );
        let (_tx, rx) = watch::channel(Readiness::Ready);
        let _task = h.start(rx, CancellationToken::new());
        // Other services' changes send nothing more to this watch.
        let more = tokio::time::timeout(std::time::Duration::from_millis(200), w.next()).await;
        assert!(
            more.is_err(),
            "no second event for an unknown service: {more:?}"
        );
    }
}
