//! Assembles the application and serves it: one listener for gRPC and HTTP,
//! health, reflection, auth, and graceful shutdown.
//!
//! `main` and the integration tests both call [`serve`].

use std::{future::Future, sync::Arc, time::Duration};

use axum::{body::Body, extract::Request, response::Response};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{server::NamedService, service::Routes, transport::Server};
use tonic_health::ServingStatus;

use crate::{
    api::{
        self,
        v1::{
            flag_service_server::FlagServiceServer, gating_service_server::GatingServiceServer,
            tenant_service_server::TenantServiceServer,
        },
    },
    auth::{self, Authenticator, Scope},
    bus::Bus,
    cache::ResolutionCache,
    config::Config,
    error::{Error, ErrorKind},
    flag::{self, EnvOverrides, Flags, watch::WatcherLimit},
    grpc::{flag::FlagApi, gating::GatingApi, tenant::TenantApi},
    rest,
    store::{Backend, Store},
    sync::Sync,
    tenant::Tenants,
};

/// What every service shares. One per server.
#[derive(Debug)]
pub struct App {
    /// The validated configuration.
    pub config: Config,
    /// The database.
    pub store: Store,
    /// Tenants and their resolution.
    pub tenants: Arc<Tenants>,
    /// The flag state and the watch hub.
    pub flags: Arc<Flags>,
    /// The limit on open watch streams.
    pub watchers: WatcherLimit,
    /// The follower of the change log; announces local commits.
    pub sync: Arc<Sync>,
    /// Cancelled when shutdown begins: long-lived streams end on it.
    pub shutdown: CancellationToken,
}

/// The fully qualified names of the API services, for health.
pub const SERVICE_NAMES: [&str; 3] = [
    <TenantServiceServer<TenantApi> as NamedService>::NAME,
    <FlagServiceServer<FlagApi> as NamedService>::NAME,
    <GatingServiceServer<GatingApi> as NamedService>::NAME,
];

/// Opens the store, checks or applies its schema, and serves on `listener`
/// until `shutdown` resolves.
///
/// On shutdown, health turns NOT_SERVING first (overall and per service),
/// streams are told to end, new connections are refused, and in-flight calls
/// get `shutdown_grace` to finish. SQLite databases are migrated here;
/// PostgreSQL ones must have been migrated with `switchyard migrate`.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    config
        .validate()
        .map_err(|e| Error::invalid_argument("configuration", e))?;
    let store = Store::connect(&config.database_url).await?;
    match store.backend() {
        Backend::Sqlite => store.migrate().await?,
        Backend::Postgres => store.check_schema().await?,
    }
    let authenticator = Arc::new(authenticator(&config));
    let shutdown_token = CancellationToken::new();
    let (bus, cache) = match &config.redis_url {
        None => (Bus::in_process(), ResolutionCache::Disabled),
        Some(url) => {
            let (client, conn) = connect_redis(url).await?;
            let bus = Bus::redis(
                client,
                conn.clone(),
                &config.redis_prefix,
                shutdown_token.clone(),
            );
            let cache = ResolutionCache::Redis {
                conn,
                prefix: config.redis_prefix.clone(),
            };
            (bus, cache)
        }
    };
    // The flag state is loaded before serving; its revision is where this
    // replica starts following the change log.
    let state = flag::store::load_state(&store).await?;
    let start_revision = state.revision;
    let flags = Arc::new(Flags::new(
        state,
        EnvOverrides::new(&config.flag_overrides),
        config.watch_queue,
    ));
    let generation = Tenants::stored_generation(&store).await?;
    let tenants = Arc::new(Tenants::new(store.clone(), cache, generation));
    let sync = Arc::new(Sync::new(
        store.clone(),
        bus,
        tenants.clone(),
        flags.clone(),
        start_revision,
    ));
    spawn_initial_load(tenants.clone(), shutdown_token.clone());
    sync.clone()
        .spawn(config.sync_interval(), shutdown_token.clone());
    spawn_heartbeats(
        flags.clone(),
        config.watch_heartbeat_s,
        shutdown_token.clone(),
    );
    spawn_pruning(
        store.clone(),
        config.change_log_retention_s,
        shutdown_token.clone(),
    );
    let app = Arc::new(App {
        watchers: WatcherLimit::new(config.max_watchers),
        config,
        store,
        tenants,
        flags,
        sync,
        shutdown: shutdown_token,
    });
    let config = &app.config;
    crate::telemetry::metrics_handle();
    metrics::gauge!(
        "switchyard_build_info",
        "version" => env!("CARGO_PKG_VERSION"),
        "track" => config.track.as_str()
    )
    .set(1.0);

    let (health, health_service) = tonic_health::server::health_reporter();
    for name in SERVICE_NAMES {
        health
            .set_service_status(name, ServingStatus::Serving)
            .await;
    }
    let reflection = |b: tonic_reflection::server::Builder<'static>| {
        // Both reflection versions list both reflection services, so every
        // grpcurl version sees the same list.
        b.include_reflection_service(false)
            .register_encoded_file_descriptor_set(api::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            )
    };
    let reflection_v1 = reflection(tonic_reflection::server::Builder::configure())
        .build_v1()
        .map_err(|e| Error::internal("building the reflection service", e))?;
    let reflection_v1alpha = reflection(tonic_reflection::server::Builder::configure())
        .build_v1alpha()
        .map_err(|e| Error::internal("building the reflection service", e))?;

    let max = config.max_message_bytes;
    let mut grpc = Routes::builder();
    grpc.add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            TenantServiceServer::new(TenantApi::new(app.clone()))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .add_service(
            FlagServiceServer::new(FlagApi::new(app.clone()))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .add_service(
            GatingServiceServer::new(GatingApi::new(app.clone()))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        );
    let grpc_router = grpc.routes().into_axum_router();
    let gateway = Arc::new(rest::Gateway::new(
        rest::route_table()?,
        grpc_router.clone(),
        max,
    ));
    let router = rest::router()
        .merge(grpc_router)
        .fallback(move |req: Request| unknown_route(gateway, req))
        .layer(axum::middleware::from_fn_with_state(
            authenticator,
            auth::authenticate,
        ));

    if let Some(addr) = &config.metrics_listen {
        spawn_metrics_listener(addr, app.shutdown.clone()).await?;
    }
    spawn_metrics_upkeep(app.shutdown.clone());

    let addr = listener
        .local_addr()
        .map_err(|e| Error::internal("reading the listen address", e))?;
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = {
        let app = app.clone();
        let health = health.clone();
        async move {
            shutdown.await;
            tracing::info!("shutting down: health NOT_SERVING, finishing in-flight calls");
            health
                .set_service_status("", ServingStatus::NotServing)
                .await;
            for name in SERVICE_NAMES {
                health
                    .set_service_status(name, ServingStatus::NotServing)
                    .await;
            }
            app.shutdown.cancel();
            let _ = stopping_tx.send(());
        }
    };
    let server = Server::builder()
        .accept_http1(true)
        .http2_keepalive_interval(Some(config.http2_keepalive_interval()))
        .http2_keepalive_timeout(Some(config.http2_keepalive_timeout()))
        .tcp_nodelay(true)
        .add_routes(Routes::from(router))
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            signal,
        );
    tracing::info!(%addr, database = ?app.store.backend(), "serving");

    let grace = config.shutdown_grace();
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
    app.store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Opens the Redis client and the shared command connection (with timeouts,
/// so a hung Redis cannot hang a call).
async fn connect_redis(url: &str) -> Result<(redis::Client, redis::aio::ConnectionManager), Error> {
    let client = redis::Client::open(url)
        .map_err(|_| Error::invalid_argument("SWITCHYARD_REDIS_URL", "is not a valid Redis URL"))?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(1)))
        .set_number_of_retries(2);
    let conn = redis::aio::ConnectionManager::new_with_config(client.clone(), config)
        .await
        .map_err(|e| Error::unavailable("Redis (SWITCHYARD_REDIS_URL)", e))?;
    Ok((client, conn))
}

/// Loads the tenant matcher in the background, retrying every second until it
/// succeeds; until then resolutions go to Redis and the database.
fn spawn_initial_load(tenants: Arc<Tenants>, stop: CancellationToken) {
    tokio::spawn(async move {
        loop {
            match tenants.reload().await {
                Ok(()) => return,
                Err(e) => tracing::warn!(error = %e, "loading the tenant matcher failed; retrying"),
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {},
                () = stop.cancelled() => return,
            }
        }
    });
}

/// Runs `job` every `period` (the first time at once) until `stop` is cancelled.
fn spawn_every<F, Fut>(period: Duration, stop: CancellationToken, mut job: F)
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tokio::select! {
                _ = tick.tick() => job().await,
                () = stop.cancelled() => break,
            }
        }
    });
}

/// Sends a heartbeat to every watch stream every `secs` seconds.
fn spawn_heartbeats(flags: Arc<Flags>, secs: u64, stop: CancellationToken) {
    spawn_every(Duration::from_secs(secs), stop, move || {
        flags.heartbeat();
        std::future::ready(())
    });
}

/// Deletes change-log rows older than the retention window, once a minute.
fn spawn_pruning(store: Store, retention_s: u64, stop: CancellationToken) {
    let retention_us = i64::try_from(retention_s)
        .unwrap_or(i64::MAX / 2)
        .saturating_mul(1_000_000);
    spawn_every(Duration::from_secs(60), stop, move || {
        let store = store.clone();
        async move {
            let before = crate::store::now_us().saturating_sub(retention_us);
            match store.prune_change_log(before).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "pruned the change log"),
                Err(e) => tracing::warn!(error = %e, "pruning the change log failed"),
            }
        }
    });
}

/// Builds the token table. With no token configured at all, generates an admin
/// token and prints it once on stderr.
fn authenticator(config: &Config) -> Authenticator {
    let mut tokens: Vec<(String, Scope)> = config
        .tokens
        .iter()
        .filter_map(|t| Scope::parse(&t.scope).ok().map(|s| (t.secret.0.clone(), s)))
        .collect();
    match &config.admin_token {
        Some(t) => tokens.push((t.0.clone(), Scope::Admin)),
        None if tokens.is_empty() => {
            let secret = generate_token();
            eprintln!(
                "switchyard: no token configured; this run's admin token (shown once): {secret}"
            );
            tokens.push((secret, Scope::Admin));
        }
        None => {}
    }
    Authenticator::new(tokens.iter().map(|(s, scope)| (s.as_str(), scope.clone())))
}

/// Returns 32 random bytes as hex.
pub fn generate_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Everything that is not a gRPC method or a fixed HTTP route: a gRPC call to
/// an unknown method is UNIMPLEMENTED; anything else goes to the REST shims.
async fn unknown_route(gateway: Arc<rest::Gateway>, req: Request) -> Response {
    if auth::is_grpc(&req) {
        tonic::Status::unimplemented(format!("unknown method {}", req.uri().path()))
            .into_http::<Body>()
    } else {
        gateway.handle(req).await
    }
}

async fn spawn_metrics_listener(addr: &str, stop: CancellationToken) -> Result<(), Error> {
    let listener = TcpListener::bind(addr).await.map_err(|e| {
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

fn spawn_metrics_upkeep(stop: CancellationToken) {
    spawn_every(Duration::from_secs(5), stop, || {
        if let Some(h) = crate::telemetry::metrics_handle() {
            h.run_upkeep();
        }
        std::future::ready(())
    });
}
