//! Switchyard's transports: serves the application on one listener (gRPC
//! services, health, reflection, gRPC-Web, the REST shims, OFREP, `/metrics`;
//! over TLS when configured) behind the auth middleware, with graceful
//! shutdown.
//!
//! `main` and the integration tests both call [`serve`]. The application
//! itself (state, services, background tasks) is built by
//! [`App::start`](switchyard_core::app::App::start); this crate wires it to
//! the transports: `grpc` and `rest` convert, the modules beside them are the
//! HTTP layers (`web`, `middleware`, `observe`, `conn` with `tls`, `health`), and the
//! outgoing adapters (`budget_reader`, Prometheus's budget; `telemetry`, the
//! tracer and its exporter).

#![forbid(unsafe_code)]

pub mod budget_reader;
pub mod conn;
pub mod grpc;
pub mod health;
pub mod middleware;
pub mod observe;
pub mod rest;
pub mod telemetry;
pub mod tls;
pub mod traces;
pub mod ui;
pub mod web;

use std::{future::Future, sync::Arc};

use axum::{body::Body, extract::Request, response::Response};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{codec::CompressionEncoding, server::NamedService, service::Routes, transport::Server};
use tower::Layer;

use crate::grpc::{
    audit::AuditApi,
    flag::{EncodedRoutes, FlagApi},
    flagd::{Flagd, SYNC_FLAGS, sync_route},
    gating::GatingApi,
    rollout::RolloutApi,
    tenant::TenantApi,
    token::TokenApi,
};
pub use health::{FLAGD_SERVICE_NAMES, Health, SERVICE_NAMES};
use switchyard_api::{
    self as api,
    flagd::{
        evaluation::{v1 as flagd_v1, v2 as flagd_v2},
        sync::v1 as flagd_sync,
    },
    health::health_server::HealthServer,
    v1::{
        audit_service_server::AuditServiceServer, flag_service_server::FlagServiceServer,
        gating_service_server::GatingServiceServer, rollout_service_server::RolloutServiceServer,
        tenant_service_server::TenantServiceServer, token_service_server::TokenServiceServer,
    },
};
pub use switchyard_core::app::generate_token;
use switchyard_core::{
    app::App,
    config::Config,
    error::{Error, ErrorKind},
};

/// The largest request message of the public services (health, reflection):
/// theirs are a service name or a symbol.
pub const PUBLIC_MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// The reflection services' names (each version lists both).
const REFLECTION_V1: &str = "grpc.reflection.v1.ServerReflection";
const REFLECTION_V1ALPHA: &str = "grpc.reflection.v1alpha.ServerReflection";

/// Starts the application and serves it on `listener` until `shutdown`
/// resolves.
///
/// On shutdown, health turns NOT_SERVING first (overall and per service),
/// streams are told to end, new connections are refused, and in-flight calls
/// get `shutdown_grace` to finish.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    // TLS files that cannot be used stop the start before anything else.
    let tls = tls::TlsFiles::from_settings(&config.listener)
        .map(tls::Tls::load)
        .transpose()?;
    let budget = config.gating.prometheus_url.as_deref().map(|url| {
        Arc::new(budget_reader::Prometheus::new(
            url,
            std::time::Duration::from_millis(config.gating.prometheus_timeout_ms),
        )) as Arc<dyn switchyard_core::gating::budget::BudgetQuery>
    });
    let app = Arc::new(App::start(config, budget).await?);
    let config = &app.config;

    let health = Health::new(&health::Registered::new(
        [
            <HealthServer<Health> as NamedService>::NAME,
            REFLECTION_V1,
            REFLECTION_V1ALPHA,
        ]
        .into_iter()
        .chain(SERVICE_NAMES)
        .chain(FLAGD_SERVICE_NAMES),
    ));
    let stopping = CancellationToken::new();
    let grpc_router = grpc_routes(&app, health.service())?.into_axum_router();
    let routes = rest::route_table()?;
    let fault = observe::Fault {
        delay: std::time::Duration::from_millis(config.drill.fault_delay_ms),
        error_rate: config.drill.fault_error_rate,
    };
    if fault.is_on() {
        tracing::warn!(
            fault = %fault.describe(),
            "FAULT INJECTION IS ON: switchyard.v1 calls are delayed and/or refused on purpose \
             (a drill tool: --fault-delay-ms, --fault-error-rate); never run a production \
             replica like this"
        );
    }
    let gateway = Arc::new(rest::Gateway::new(
        routes.clone(),
        grpc_router.clone(),
        config.listener.max_message_bytes,
    ));
    let inner = rest::router()
        .merge(ui::router())
        .merge(rest::ofrep::router(app.flags.clone()))
        .merge(grpc_router)
        .fallback(move |req: Request| unknown_route(gateway, req))
        .layer(axum::middleware::from_fn_with_state(
            app.authenticator.clone(),
            middleware::authenticate,
        ))
        .layer(observe::Observe::new(
            config.telemetry.metrics,
            fault,
            Arc::new(routes),
        ));
    // Outside authentication: CORS (a preflight has no token), compression
    // of answers, and the protocol switch (gRPC-Web translated to gRPC,
    // unsupported protocols refused).
    let grpc_web = tonic_web::GrpcWebLayer::new().layer(inner.clone());
    let router = axum::Router::new()
        .fallback_service(inner)
        .layer(axum::middleware::from_fn_with_state(
            grpc_web,
            web::protocols,
        ))
        .layer(web::compression())
        .layer(tower::util::option_layer(web::cors(
            &config.listener.cors_origins,
        )));

    if let Some(addr) = &config.listener.metrics_listen {
        spawn_metrics_listener(addr, app.shutdown.clone()).await?;
    }

    let addr = listener
        .local_addr()
        .map_err(|e| Error::internal("reading the listen address", e))?;
    if let Some(tls) = &tls {
        tls.clone().watch(app.shutdown.clone());
    }
    // Every route is built and the listener is open: health may say SERVING.
    let health_task = health.start(app.readiness(), stopping.clone());
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = {
        let app = app.clone();
        async move {
            shutdown.await;
            tracing::info!("shutting down: health NOT_SERVING, finishing in-flight calls");
            stopping.cancel();
            let _ = health_task.await;
            app.shutdown.cancel();
            let _ = stopping_tx.send(());
        }
    };
    let server = Server::builder()
        .accept_http1(true)
        .http2_keepalive_interval(Some(config.listener.http2_keepalive_interval()))
        .http2_keepalive_timeout(Some(config.listener.http2_keepalive_timeout()))
        .max_concurrent_streams(Some(config.listener.max_concurrent_streams))
        .tcp_nodelay(true)
        .add_routes(Routes::from(router))
        .serve_with_incoming_shutdown(
            conn::incoming(
                listener,
                conn::Limits {
                    max_connections: config.listener.max_connections,
                    idle_timeout: config.listener.connection_idle_timeout(),
                },
                tls.clone(),
            ),
            signal,
        );
    tracing::info!(%addr, tls = tls.is_some(), database = ?app.store.backend(), "serving");

    let grace = config.listener.shutdown_grace();
    let deadline = async move {
        if stopping_rx.await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = server => result.map_err(|e| Error::internal("serving", e))?,
        () = deadline => tracing::warn!(?grace, "in-flight calls did not finish within the grace period"),
    }
    app.stop().await;
    tracing::info!("stopped");
    Ok(())
}

/// The gRPC services: health, reflection (v1 and v1alpha) and the API, each
/// within the configured message size.
fn grpc_routes(app: &App, health: HealthServer<Health>) -> Result<Routes, Error> {
    let reflection_v1 = reflection()
        .build_v1()
        .map_err(|e| Error::internal("building the reflection service", e))?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| Error::internal("building the reflection service", e))?;
    let max = app.config.listener.max_message_bytes;
    // gzip: accepted always, sent when the client advertises it
    // (`grpc-accept-encoding`); a message is limited to `max` decompressed.
    let gzip = CompressionEncoding::Gzip;
    let flag_api = FlagApi::new(app.flags.clone());
    // The public services (no token) take small requests: a compressed
    // message is inflated no further than that.
    let public = PUBLIC_MAX_MESSAGE_BYTES.min(max);
    let mut grpc = Routes::builder();
    grpc.add_service(
        health
            .accept_compressed(gzip)
            .send_compressed(gzip)
            .max_decoding_message_size(public),
    )
    .add_service(
        reflection_v1
            .accept_compressed(gzip)
            .send_compressed(gzip)
            .max_decoding_message_size(public),
    )
    .add_service(
        reflection_v1alpha
            .accept_compressed(gzip)
            .send_compressed(gzip)
            .max_decoding_message_size(public),
    )
    .add_service(
        TenantServiceServer::new(TenantApi::new(app.tenants.clone()))
            .accept_compressed(gzip)
            .send_compressed(gzip)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max),
    )
    .add_service(
        FlagServiceServer::new(flag_api.clone())
            .accept_compressed(gzip)
            .send_compressed(gzip)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max),
    )
    .add_service(
        GatingServiceServer::new(GatingApi::new(app.gating.clone()))
            .accept_compressed(gzip)
            .send_compressed(gzip)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max),
    )
    .add_service(
        TokenServiceServer::new(TokenApi::new(app.tokens.clone()))
            .accept_compressed(gzip)
            .send_compressed(gzip)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max),
    )
    .add_service(
        AuditServiceServer::new(AuditApi::new(app.audit.clone()))
            .accept_compressed(gzip)
            .send_compressed(gzip)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max),
    )
    .add_service(
        RolloutServiceServer::new(RolloutApi::new(app.rollouts.clone()))
            .accept_compressed(gzip)
            .send_compressed(gzip)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max),
    );
    // flagd's packages, for OpenFeature's flagd providers.
    let flagd = Flagd::new(app.flags.clone(), max);
    let sync = sync_route(flagd.clone());
    grpc.add_service(
        flagd_v1::service_server::ServiceServer::new(flagd.clone())
            .accept_compressed(gzip)
            .send_compressed(gzip)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max),
    )
    .add_service(
        flagd_v2::service_server::ServiceServer::new(flagd.clone())
            .accept_compressed(gzip)
            .send_compressed(gzip)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max),
    )
    .add_service(
        flagd_sync::flag_sync_service_server::FlagSyncServiceServer::new(flagd)
            .accept_compressed(gzip)
            .send_compressed(gzip)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max),
    );
    // ListFlags, WatchFlags and flagd's SyncFlags answer from encodings made once (more
    // specific routes than the service's own, so they are the ones matched).
    let encoded = EncodedRoutes::new(flag_api, max).route();
    let mut router = grpc.routes().into_axum_router();
    for path in EncodedRoutes::PATHS {
        router = router.route_service(path, encoded.clone());
    }
    router = router.route_service(SYNC_FLAGS, sync);
    Ok(Routes::from(router))
}

/// A reflection builder with every descriptor set served. Both reflection
/// versions list both reflection services, so every grpcurl version sees the
/// same list.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .include_reflection_service(false)
        .register_encoded_file_descriptor_set(api::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
}

/// Everything that is not a gRPC method or a fixed HTTP route: a gRPC call to
/// an unknown method is UNIMPLEMENTED; anything else goes to the REST shims.
async fn unknown_route(gateway: Arc<rest::Gateway>, req: Request) -> Response {
    if middleware::is_grpc(&req) {
        tonic::Status::unimplemented(format!("unknown method {}", req.uri().path()))
            .into_http::<Body>()
    } else {
        gateway.handle(req).await
    }
}

async fn spawn_metrics_listener(addr: &str, stop: CancellationToken) -> Result<(), Error> {
    let resolved = switchyard_core::config::resolve_address("SWITCHYARD_METRICS_LISTEN", addr)
        .map_err(|e| Error::new(ErrorKind::InvalidArgument, e.to_string()))?;
    let listener = TcpListener::bind(resolved).await.map_err(|e| {
        Error::new(
            ErrorKind::Unavailable,
            format!("cannot listen on SWITCHYARD_METRICS_LISTEN {addr}: {e}"),
        )
    })?;
    tokio::spawn(async move {
        let r = axum::serve(listener, rest::metrics_router())
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "metrics listener stopped");
        }
    });
    Ok(())
}
