//! The application, built in one place: storage, cache and bus, the
//! replica's tenant and flag state, the follower of the change log, the
//! capabilities' services, and the background tasks they need. Nothing here
//! knows a transport; `switchyard-server` puts the services on the listener.

use std::{future::Future, sync::Arc, time::Duration};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    audit,
    auth::{Authenticator, Scope},
    bus::Bus,
    changelog::{Announce, ChangeLog},
    config::Config,
    error::{Error, Result},
    flag::{self, EnvOverrides, state::Flags, watch::WatcherLimit},
    follower::{Follower, Readiness},
    gating,
    id::TenantId,
    rollout,
    store::{Backend, Store},
    tenant::{self, Tenants, cache::ResolutionCache},
    token,
};

/// A running application: what every transport serves. One per server.
#[derive(Debug)]
pub struct App {
    /// The validated configuration.
    pub config: Config,
    /// The database.
    pub store: Store,
    /// The token table.
    pub authenticator: Arc<Authenticator>,
    /// TokenService's use cases (the stored tokens).
    pub tokens: token::TokenService,
    /// AuditService's use cases (reading the audit log).
    pub audit: audit::AuditService,
    /// RolloutService's use cases, and the driver every replica runs.
    pub rollouts: rollout::RolloutService,
    /// TenantService's use cases.
    pub tenants: tenant::service::TenantService,
    /// FlagService's use cases.
    pub flags: flag::service::FlagService,
    /// GatingService's use cases.
    pub gating: gating::service::GatingService,
    follower: Arc<Follower>,
    /// Cancelled when shutdown begins: background tasks and long-lived
    /// streams end on it.
    pub shutdown: CancellationToken,
}

impl App {
    /// Validates the configuration, opens the store (migrating SQLite; on
    /// PostgreSQL checking that `switchyard migrate` has run), connects Redis
    /// when configured, loads the replica's state, and starts the background
    /// tasks: the initial tenant load, the follower, watch heartbeats,
    /// change-log pruning and metrics upkeep. They stop when
    /// [`App::shutdown`] is cancelled.
    ///
    /// `budget` is where gating reads error budgets (the server's Prometheus
    /// client, when `prometheus_url` is set): an outgoing adapter the core
    /// only knows through its trait.
    pub async fn start(
        config: Config,
        budget: Option<Arc<dyn gating::budget::BudgetQuery>>,
    ) -> Result<App> {
        config
            .validate()
            .map_err(|e| Error::invalid_argument("configuration", e))?;
        let store = Store::connect(&config.storage.database_url).await?;
        match store.backend() {
            Backend::Sqlite => store.migrate().await?,
            Backend::Postgres => store.check_schema().await?,
        }
        let shutdown = CancellationToken::new();
        let (bus, cache) = match &config.storage.redis_url {
            None => (Bus::in_process(), ResolutionCache::Disabled),
            Some(url) => {
                let (client, conn) = connect_redis(url).await?;
                let bus = Bus::redis(
                    client,
                    conn.clone(),
                    &config.storage.redis_prefix,
                    shutdown.clone(),
                );
                let cache = ResolutionCache::Redis {
                    conn,
                    prefix: config.storage.redis_prefix.clone(),
                };
                (bus, cache)
            }
        };
        // The flag state is loaded before serving; its revision is where this
        // replica starts following the change log.
        let state = flag::store::load_state(&store).await?;
        let start_revision = state.revision;
        let flag_state = Arc::new(Flags::new(
            state,
            EnvOverrides::new(&config.flags.flag_overrides)
                .with_context_values(config.flags.context_values.clone().into_iter().collect())
                .with_bucketing(config.flags.fractional_bucketing),
            config.watch.watch_queue,
        ));
        let generation = Tenants::stored_generation(&store).await?;
        let tenant_state = Arc::new(Tenants::new(store.clone(), cache, generation));
        let follower = Arc::new(Follower::new(
            store.clone(),
            bus,
            tenant_state.clone(),
            flag_state.clone(),
            start_revision,
        ));
        let announce: Arc<dyn Announce> = follower.clone();
        let tenants = tenant::service::TenantService::new(
            tenant_state.clone(),
            announce.clone(),
            config.listener.max_message_bytes,
        );
        let flags = flag::service::FlagService::new(flag::service::Parts {
            store: store.clone(),
            flags: flag_state.clone(),
            tenants: tenant_state.clone(),
            resolver: tenants.clone(),
            watchers: WatcherLimit::new(
                config.watch.max_watchers,
                config.watch.watchers_per_caller(),
            ),
            announce: announce.clone(),
            max_message_bytes: config.listener.max_message_bytes,
        });
        let rollouts = rollout::RolloutService::new(
            store.clone(),
            announce,
            budget.clone(),
            config.listener.max_message_bytes,
        );

        let gating = gating::service::GatingService::new(gating::service::Parts {
            store: store.clone(),
            flags: flag_state.clone(),
            tenants: tenant_state.clone(),
            slos: config
                .gating
                .slos
                .iter()
                .map(|s| gating::budget::Slo {
                    name: s.name.clone(),
                    query: s.query.clone(),
                    base_p95_ms: s.base_p95_ms,
                    tiers: s
                        .tiers
                        .iter()
                        .map(|t| gating::report::BudgetTier {
                            below: t.below,
                            p95_ms: t.p95_ms,
                        })
                        .collect(),
                })
                .collect(),
            default_slo: config.gating.default_slo.clone(),
            max_message_bytes: config.listener.max_message_bytes,
            prometheus: budget,
        });

        let authenticator = Arc::new(authenticator(&config));
        let tokens = token::TokenService::new(store.clone(), authenticator.clone());
        if !authenticator.has_configured()
            && let Some(secret) = token::bootstrap(&store).await?
        {
            // On stdout, apart from the logs, once: only its digest is kept.
            println!(
                "switchyard: the database had no token; made the admin token {:?} (shown once, kept only as a digest): {secret}",
                token::BOOTSTRAP_NAME
            );
        }
        tokens.reload().await?;
        {
            let tokens = tokens.clone();
            spawn_every(token::RELOAD_EVERY, shutdown.clone(), move || {
                let tokens = tokens.clone();
                async move {
                    if let Err(e) = tokens.reload().await {
                        tracing::warn!(error = %e, "reloading the stored tokens failed; the last ones loaded stay in force");
                    }
                }
            });
        }

        spawn_initial_load(tenant_state, shutdown.clone());
        follower
            .clone()
            .spawn(config.storage.sync_interval(), shutdown.clone());
        spawn_heartbeats(flag_state, config.watch.watch_heartbeat_s, shutdown.clone());
        spawn_pruning(
            store.clone(),
            config.storage.change_log_retention_s,
            shutdown.clone(),
        );
        crate::telemetry::start_metrics(&config);
        {
            // The smoke threshold and budget gauges, for dashboard lines.
            let gating = gating.clone();
            spawn_every(Duration::from_secs(30), shutdown.clone(), move || {
                let gating = gating.clone();
                async move { gating.refresh().await }
            });
        }
        {
            // Every replica looks at the running rollouts; the one holding a
            // rollout's lease drives it.
            let driver = rollouts.clone();
            spawn_every(rollout::TICK, shutdown.clone(), move || {
                let driver = driver.clone();
                async move { driver.drive().await }
            });
            let gauges = rollouts.clone();
            spawn_every(Duration::from_secs(5), shutdown.clone(), move || {
                let gauges = gauges.clone();
                async move { gauges.refresh_metrics().await }
            });
        }
        spawn_every(Duration::from_secs(5), shutdown.clone(), || {
            crate::telemetry::metrics_upkeep();
            std::future::ready(())
        });

        Ok(App {
            authenticator,
            tokens,
            rollouts,
            audit: audit::AuditService::new(
                store.clone(),
                crate::service::page::byte_budget(config.listener.max_message_bytes),
            ),
            config,
            store,
            tenants,
            flags,
            gating,
            follower,
            shutdown,
        })
    }

    /// Returns a receiver of whether this replica follows the change log.
    pub fn readiness(&self) -> watch::Receiver<Readiness> {
        self.follower.readiness()
    }

    /// Stops the background tasks and closes the store, waiting for its
    /// connections to be returned.
    pub async fn stop(&self) {
        self.shutdown.cancel();
        // Another replica takes this one's rollouts over at its next tick.
        self.rollouts.release().await;
        self.store.close().await;
    }
}

/// Opens the Redis client and the shared command connection (with timeouts,
/// so a hung Redis cannot hang a call).
async fn connect_redis(url: &str) -> Result<(redis::Client, redis::aio::ConnectionManager)> {
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

/// Sends a heartbeat to every watch stream every `secs` seconds, and ends
/// every watch when shutdown begins.
fn spawn_heartbeats(flags: Arc<Flags>, secs: u64, stop: CancellationToken) {
    tokio::spawn({
        let (flags, stop) = (flags.clone(), stop.clone());
        async move {
            stop.cancelled().await;
            flags.close_watches();
        }
    });
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

/// Builds the table of configured tokens (the stored ones are loaded into
/// it after).
fn authenticator(config: &Config) -> Authenticator {
    let mut tokens: Vec<(String, Scope, String)> = config
        .auth
        .tokens
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            Scope::parse(&t.scope)
                .ok()
                .map(|s| (t.secret.0.clone(), s, format!("tokens[{i}]")))
        })
        .collect();
    if let Some(t) = &config.auth.admin_token {
        tokens.push((t.0.clone(), Scope::Admin, "admin_token".into()));
    }
    Authenticator::new(
        tokens
            .iter()
            .map(|(s, scope, caller)| (s.as_str(), scope.clone(), caller.as_str())),
    )
    .with_flagd_anonymous(
        config
            .auth
            .flagd_anonymous_tenant
            .as_deref()
            .and_then(|t| TenantId::parse(t, "flagd_anonymous_tenant").ok()),
    )
}

/// Returns 32 random bytes as hex.
pub fn generate_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}
