//! The configuration's sections: each declares its settings once
//! ([`settings!`]) and checks them itself; checks that span sections are
//! [`super::Config::validate`]'s.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use crate::flag::targeting::fractional::Bucketing;

use super::{
    ConfigError,
    settings::{
        bucketing, file_only, json_object, list, log_format, number, optional_number,
        optional_secret, optional_text, sampler, settings, switch, text, tokens, traces_exporter,
        track,
    },
    types::{
        LogFormat, Sampler, Secret, SloConfig, TokenConfig, TracesExporter, Track, default_slos,
    },
};

/// The default listen address of the one gRPC + HTTP listener.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
/// The default database: a SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://switchyard.db";

settings! {
    /// The listener: where it listens and what each connection and message
    /// may hold.
    pub struct Listener {
        /// `SWITCHYARD_LISTEN`: the address of the gRPC + HTTP listener.
        listen: String = DEFAULT_LISTEN.to_owned(), env ["SWITCHYARD_LISTEN"], text;
        /// `SWITCHYARD_METRICS_LISTEN`: an optional second address serving
        /// only `/metrics`.
        metrics_listen: Option<String> = None, env ["SWITCHYARD_METRICS_LISTEN"], optional_text;
        /// `SWITCHYARD_MAX_MESSAGE_BYTES`: the largest gRPC message accepted
        /// or sent.
        max_message_bytes: usize = 4 * 1024 * 1024, env ["SWITCHYARD_MAX_MESSAGE_BYTES"], number;
        /// `SWITCHYARD_HTTP2_KEEPALIVE_INTERVAL_S`: HTTP/2 PING interval on
        /// idle connections.
        http2_keepalive_interval_s: u64 = 30, env ["SWITCHYARD_HTTP2_KEEPALIVE_INTERVAL_S"], number;
        /// `SWITCHYARD_HTTP2_KEEPALIVE_TIMEOUT_S`: a PING unanswered this long
        /// closes the connection.
        http2_keepalive_timeout_s: u64 = 10, env ["SWITCHYARD_HTTP2_KEEPALIVE_TIMEOUT_S"], number;
        /// `SWITCHYARD_MAX_CONNECTIONS`: connections open at once on the
        /// listener; one more is closed as soon as it is accepted.
        max_connections: usize = 16_384, env ["SWITCHYARD_MAX_CONNECTIONS"], number;
        /// `SWITCHYARD_MAX_CONCURRENT_STREAMS`: the HTTP/2 streams (calls) one
        /// connection may have open at once, advertised to clients in
        /// SETTINGS.
        max_concurrent_streams: u32 = 1024, env ["SWITCHYARD_MAX_CONCURRENT_STREAMS"], number;
        /// `SWITCHYARD_CONNECTION_IDLE_TIMEOUT_S`: a connection that sends
        /// nothing (not even an answer to a keepalive PING) this long is
        /// closed; 0 never.
        connection_idle_timeout_s: u64 = 300, env ["SWITCHYARD_CONNECTION_IDLE_TIMEOUT_S"], number;
        /// `SWITCHYARD_CORS_ORIGINS`: the origins (`https://app.example.com`,
        /// comma-separated; `*` for any) whose browser pages may call the REST
        /// shims and gRPC-Web cross-origin. Empty: no CORS headers at all.
        cors_origins: Vec<String> = Vec::new(), env ["SWITCHYARD_CORS_ORIGINS"], list;
        /// `SWITCHYARD_SHUTDOWN_GRACE_S`: how long in-flight calls may run
        /// after a shutdown signal before the process stops anyway.
        shutdown_grace_s: u64 = 10, env ["SWITCHYARD_SHUTDOWN_GRACE_S"], number;
        /// `SWITCHYARD_TLS_CERT`: a PEM file holding the listener's
        /// certificate chain, its own certificate first. With `tls_key` the
        /// listener speaks TLS only (gRPC, REST, gRPC-Web, OFREP, `/metrics`);
        /// the files are read again within a second of changing.
        tls_cert: Option<String> = None, env ["SWITCHYARD_TLS_CERT"], optional_text;
        /// `SWITCHYARD_TLS_KEY`: a PEM file holding the private key of
        /// `tls_cert` (PKCS#8, PKCS#1 or SEC1).
        tls_key: Option<String> = None, env ["SWITCHYARD_TLS_KEY"], optional_text;
        /// `SWITCHYARD_TLS_CLIENT_CA`: a PEM file of CA certificates; when
        /// set, every client must present a certificate one of them signed.
        tls_client_ca: Option<String> = None, env ["SWITCHYARD_TLS_CLIENT_CA"], optional_text;
    }
}

impl Listener {
    /// Checks the section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_address(Self::name_of("listen"), &self.listen)?;
        if let Some(m) = &self.metrics_listen {
            check_address(Self::name_of("metrics_listen"), m)?;
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.max_message_bytes) {
            return Err(ConfigError::new(
                Self::name_of("max_message_bytes"),
                "must be between 1024 and 67108864",
            ));
        }
        for key in ["http2_keepalive_interval_s", "http2_keepalive_timeout_s"] {
            let value = if key == "http2_keepalive_interval_s" {
                self.http2_keepalive_interval_s
            } else {
                self.http2_keepalive_timeout_s
            };
            if value == 0 {
                return Err(ConfigError::new(
                    Self::name_of(key),
                    "must be at least 1 second",
                ));
            }
        }
        check_cors_origins(&self.cors_origins)?;
        if self.max_connections == 0 {
            return Err(ConfigError::new(
                Self::name_of("max_connections"),
                "must be at least 1",
            ));
        }
        let ping = self.http2_keepalive_interval_s + self.http2_keepalive_timeout_s;
        if self.connection_idle_timeout_s != 0 && self.connection_idle_timeout_s <= ping {
            return Err(ConfigError::new(
                Self::name_of("connection_idle_timeout_s"),
                format!(
                    "must be 0 (never) or above the keepalive interval plus its timeout \
                     ({ping} s), so that a healthy connection answering PINGs is never closed"
                ),
            ));
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => {
                return Err(ConfigError::new(
                    Self::name_of("tls_key"),
                    "is needed with tls_cert (the certificate's private key)",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    Self::name_of("tls_cert"),
                    "is needed with tls_key (the certificate the key belongs to)",
                ));
            }
            _ => {}
        }
        if self.tls_client_ca.is_some() && self.tls_cert.is_none() {
            return Err(ConfigError::new(
                Self::name_of("tls_client_ca"),
                "needs tls_cert and tls_key: client certificates are asked for in a TLS handshake",
            ));
        }
        if self.max_concurrent_streams == 0 {
            return Err(ConfigError::new(
                Self::name_of("max_concurrent_streams"),
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// Returns the listen address: `listen` as written (`127.0.0.1:50051`,
    /// `[::1]:50051`), or a host name resolved now (`localhost:50051`), its
    /// IPv4 addresses first.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        resolve_address(Self::name_of("listen"), &self.listen)
    }

    /// The idle timeout of connections, `None` when off.
    pub fn connection_idle_timeout(&self) -> Option<Duration> {
        (self.connection_idle_timeout_s > 0)
            .then(|| Duration::from_secs(self.connection_idle_timeout_s))
    }

    /// Returns the HTTP/2 keepalive interval.
    pub fn http2_keepalive_interval(&self) -> Duration {
        Duration::from_secs(self.http2_keepalive_interval_s)
    }

    /// Returns the HTTP/2 keepalive timeout.
    pub fn http2_keepalive_timeout(&self) -> Duration {
        Duration::from_secs(self.http2_keepalive_timeout_s)
    }

    /// Returns the shutdown grace period.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_s)
    }
}

settings! {
    /// Storage and replication: the database, Redis, and how a replica
    /// follows the change log.
    pub struct Storage {
        /// `SWITCHYARD_DATABASE_URL`: `sqlite://...` or `postgres://...`.
        database_url: String = DEFAULT_DATABASE_URL.to_owned(), env ["SWITCHYARD_DATABASE_URL"], text;
        /// `SWITCHYARD_REDIS_URL`: unset means the in-process cache and bus.
        redis_url: Option<String> = None, env ["SWITCHYARD_REDIS_URL"], optional_text;
        /// `SWITCHYARD_REDIS_PREFIX`: prepended to every Redis key and channel
        /// name (lets tests and several deployments share one Redis).
        redis_prefix: String = String::new(), env ["SWITCHYARD_REDIS_PREFIX"], text;
        /// `SWITCHYARD_SYNC_INTERVAL_MS`: how often a replica reads the change
        /// log even when the bus is silent (bounds how long a lost pub/sub
        /// message can delay a change).
        sync_interval_ms: u64 = 1000, env ["SWITCHYARD_SYNC_INTERVAL_MS"], number;
        /// `SWITCHYARD_CHANGE_LOG_RETENTION_S`: how long the change log keeps a
        /// change (subscribers resuming from older revisions get a snapshot).
        change_log_retention_s: u64 = 7 * 24 * 3600, env ["SWITCHYARD_CHANGE_LOG_RETENTION_S"], number;
    }
}

impl Storage {
    /// Checks the section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let db = &self.database_url;
        let name = Self::name_of("database_url");
        if !(db.starts_with("sqlite:")
            || db.starts_with("postgres://")
            || db.starts_with("postgresql://"))
        {
            return Err(ConfigError::new(
                name,
                "must start with sqlite:, postgres:// or postgresql://",
            ));
        }
        if is_sqlite_in_memory(db) {
            return Err(ConfigError::new(
                name,
                format!(
                    "{db:?} is an in-memory SQLite database, which each connection would see \
                     empty: use a file (sqlite://switchyard.db, or one under /tmp for a \
                     throwaway run)"
                ),
            ));
        }
        if let Some(r) = &self.redis_url
            && !(r.starts_with("redis://")
                || r.starts_with("rediss://")
                || r.starts_with("redis+unix://"))
        {
            return Err(ConfigError::new(
                Self::name_of("redis_url"),
                "must start with redis://, rediss:// or redis+unix://",
            ));
        }
        if !(10..=60_000).contains(&self.sync_interval_ms) {
            return Err(ConfigError::new(
                Self::name_of("sync_interval_ms"),
                "must be between 10 and 60000",
            ));
        }
        if self.change_log_retention_s < 60 {
            return Err(ConfigError::new(
                Self::name_of("change_log_retention_s"),
                "must be at least 60 seconds",
            ));
        }
        Ok(())
    }

    /// Returns the change-log poll interval.
    pub fn sync_interval(&self) -> Duration {
        Duration::from_millis(self.sync_interval_ms)
    }
}

settings! {
    /// Who may call: the tokens, and who a flagd call without one is.
    pub struct Auth {
        /// `SWITCHYARD_ADMIN_TOKEN`: the admin bearer token. Unset (and no
        /// `tokens`): `serve` generates one and prints it once.
        admin_token: Option<Secret> = None, env ["SWITCHYARD_ADMIN_TOKEN"], optional_secret;
        /// `SWITCHYARD_TOKENS` (`scope=secret,scope=secret`) or `[[tokens]]`
        /// tables.
        tokens: Vec<TokenConfig> = Vec::new(), env ["SWITCHYARD_TOKENS"], tokens;
        /// `SWITCHYARD_FLAGD_ANONYMOUS_TENANT`: a tenant id; flagd gRPC calls
        /// (`flagd.evaluation.*`, `flagd.sync.v1`) that carry no token act as
        /// that tenant's `tenant:<id>` token (for providers that cannot send a
        /// header, such as the JavaScript flagd provider). Unset: they need a
        /// token like every call.
        flagd_anonymous_tenant: Option<String> = None, env ["SWITCHYARD_FLAGD_ANONYMOUS_TENANT"], optional_text;
    }
}

impl Auth {
    /// Checks the section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(t) = &self.admin_token {
            check_secret(Self::name_of("admin_token"), &t.0)?;
        }
        let tokens = Self::name_of("tokens");
        for t in &self.tokens {
            check_secret(tokens, &t.secret.0)?;
            crate::auth::Scope::parse(&t.scope).map_err(|e| ConfigError::new(tokens, e))?;
        }
        if let Some(t) = &self.flagd_anonymous_tenant {
            crate::id::TenantId::parse(t, "tenant").map_err(|_| {
                ConfigError::new(
                    Self::name_of("flagd_anonymous_tenant"),
                    format!("{t:?} is not a valid tenant id"),
                )
            })?;
        }
        Ok(())
    }
}

settings! {
    /// Gating: where error budgets are read, and the SLOs they belong to.
    pub struct Gating {
        /// `SWITCHYARD_PROMETHEUS_URL`: where the error budget is read from
        /// (`http://host:9090`).
        prometheus_url: Option<String> = None, env ["SWITCHYARD_PROMETHEUS_URL"], optional_text;
        /// `SWITCHYARD_PROMETHEUS_TIMEOUT_MS`: the longest a budget query may
        /// take before the fallback tier applies.
        prometheus_timeout_ms: u64 = 2000, env ["SWITCHYARD_PROMETHEUS_TIMEOUT_MS"], number;
        /// `[[slos]]` (file only): the SLOs whose budget sets the smoke
        /// threshold.
        slos: Vec<SloConfig> = default_slos(), env [], file_only;
        /// `SWITCHYARD_DEFAULT_SLO`: the SLO of a request that names none.
        default_slo: String = "availability".to_owned(), env ["SWITCHYARD_DEFAULT_SLO"], text;
    }
}

impl Gating {
    /// Checks the section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(p) = &self.prometheus_url {
            let name = Self::name_of("prometheus_url");
            if p.starts_with("https://") {
                return Err(ConfigError::new(
                    name,
                    "https is not supported: reach Prometheus over http (on loopback, or \
                     through a TLS-terminating proxy)",
                ));
            }
            if !p.starts_with("http://")
                || p.len() <= "http://".len()
                || p.contains(char::is_whitespace)
            {
                return Err(ConfigError::new(name, "must be an http:// URL"));
            }
        }
        if !(10..=60_000).contains(&self.prometheus_timeout_ms) {
            return Err(ConfigError::new(
                Self::name_of("prometheus_timeout_ms"),
                "must be between 10 and 60000",
            ));
        }
        self.validate_slos()
    }

    fn validate_slos(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::BTreeSet::new();
        for (i, slo) in self.slos.iter().enumerate() {
            let field = format!("slos[{i}]");
            if slo.name.is_empty() || !names.insert(slo.name.as_str()) {
                return Err(ConfigError::new(
                    format!("{field}.name"),
                    format!("{:?}: must be a name no other SLO has", slo.name),
                ));
            }
            if slo.query.trim().is_empty() {
                return Err(ConfigError::new(
                    format!("{field}.query"),
                    "must not be empty",
                ));
            }
            if !(slo.base_p95_ms.is_finite() && slo.base_p95_ms > 0.0) {
                return Err(ConfigError::new(
                    format!("{field}.base_p95_ms"),
                    "must be a positive number of ms",
                ));
            }
            for (j, t) in slo.tiers.iter().enumerate() {
                if !(t.below > 0.0 && t.below <= 1.0) {
                    return Err(ConfigError::new(
                        format!("{field}.tiers[{j}].below"),
                        "must be a ratio above 0 and at most 1",
                    ));
                }
                if !(t.p95_ms.is_finite() && t.p95_ms > 0.0) {
                    return Err(ConfigError::new(
                        format!("{field}.tiers[{j}].p95_ms"),
                        "must be a positive number of ms",
                    ));
                }
            }
            Self::validate_tightening(&field, slo)?;
        }
        if !names.contains(self.default_slo.as_str()) {
            return Err(ConfigError::new(
                Self::name_of("default_slo"),
                format!("{:?} is not one of the configured SLOs", self.default_slo),
            ));
        }
        Ok(())
    }

    /// A gate must never loosen as the budget runs out: each tier's
    /// threshold is at most the base's and at most that of every tier that
    /// applies with more budget left (a higher `below`), and no two tiers
    /// share a `below` (which of them applies would be a matter of order).
    fn validate_tightening(field: &str, slo: &SloConfig) -> Result<(), ConfigError> {
        let mut tiers: Vec<(usize, &super::types::TierConfig)> =
            slo.tiers.iter().enumerate().collect();
        tiers.sort_by(|a, b| b.1.below.total_cmp(&a.1.below));
        for pair in tiers.windows(2) {
            let ((i, a), (j, b)) = (pair[0], pair[1]);
            if a.below == b.below {
                let (i, j) = (i.min(j), i.max(j));
                return Err(ConfigError::new(
                    format!("{field}.tiers[{j}].below"),
                    format!(
                        "{} is also tiers[{i}]'s: each tier needs a below of its own",
                        crate::gating::judge::num(b.below)
                    ),
                ));
            }
        }
        let mut looser = ("base_p95_ms".to_owned(), slo.base_p95_ms);
        for (j, t) in tiers {
            if t.p95_ms > looser.1 {
                return Err(ConfigError::new(
                    format!("{field}.tiers[{j}].p95_ms"),
                    format!(
                        "{} ms is above {}'s {} ms: the gate would loosen as the budget runs out",
                        crate::gating::judge::num(t.p95_ms),
                        looser.0,
                        crate::gating::judge::num(looser.1)
                    ),
                ));
            }
            looser = (
                format!("tiers[{j}] (below {})", crate::gating::judge::num(t.below)),
                t.p95_ms,
            );
        }
        Ok(())
    }

    /// The longest a budget query may take.
    pub fn prometheus_timeout(&self) -> Duration {
        Duration::from_millis(self.prometheus_timeout_ms)
    }
}

settings! {
    /// Telemetry: the release track every metric carries, logs, metrics and
    /// traces.
    pub struct Telemetry {
        /// `SWITCHYARD_TRACK`: `stable`, `baseline` or `canary`.
        track: Track = Track::Stable, env ["SWITCHYARD_TRACK"], track;
        /// `SWITCHYARD_LOG`: a tracing filter such as `info` or
        /// `switchyard=debug`.
        log: String = "info".to_owned(), env ["SWITCHYARD_LOG"], text;
        /// `SWITCHYARD_LOG_FORMAT`: `text` or `json`.
        log_format: LogFormat = LogFormat::Text, env ["SWITCHYARD_LOG_FORMAT"], log_format;
        /// `SWITCHYARD_METRICS`: `on` or `off`: request metrics and every other
        /// series of `/metrics` (off: `/metrics` is empty).
        metrics: bool = true, env ["SWITCHYARD_METRICS"], switch;
        /// `OTEL_SDK_DISABLED`: `true` turns tracing off entirely.
        otel_sdk_disabled: bool = false, env ["OTEL_SDK_DISABLED"], switch;
        /// `OTEL_TRACES_EXPORTER`: `otlp`, `console` or `none`; unset means
        /// `otlp` when an OTLP endpoint is set, `none` otherwise.
        otel_traces_exporter: Option<TracesExporter> = None, env ["OTEL_TRACES_EXPORTER"], traces_exporter;
        /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, else
        /// `OTEL_EXPORTER_OTLP_ENDPOINT`: the collector's OTLP/gRPC address
        /// (`http://host:4317`).
        otel_exporter_otlp_endpoint: Option<String> = None,
            env ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"], optional_text;
        /// `OTEL_SERVICE_NAME`: the `service.name` resource of every span.
        otel_service_name: String = "switchyard".to_owned(), env ["OTEL_SERVICE_NAME"], text;
        /// `OTEL_TRACES_SAMPLER`: which new traces are kept.
        otel_traces_sampler: Sampler = Sampler::ParentbasedTraceIdRatio, env ["OTEL_TRACES_SAMPLER"], sampler;
        /// `OTEL_TRACES_SAMPLER_ARG`: the ratio of the ratio samplers, 0 to 1.
        otel_traces_sampler_arg: f64 = 0.01, env ["OTEL_TRACES_SAMPLER_ARG"], number;
        /// `OTEL_BSP_SCHEDULE_DELAY`: milliseconds between span exports.
        otel_bsp_schedule_delay_ms: u64 = 5000, env ["OTEL_BSP_SCHEDULE_DELAY"], number;
    }
}

impl Telemetry {
    /// Checks the section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log) {
            return Err(ConfigError::new(Self::name_of("log"), e));
        }
        if !(0.0..=1.0).contains(&self.otel_traces_sampler_arg) {
            return Err(ConfigError::new(
                Self::name_of("otel_traces_sampler_arg"),
                "must be a ratio between 0 and 1",
            ));
        }
        if let Some(e) = &self.otel_exporter_otlp_endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            return Err(ConfigError::new(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "must start with http:// or https://",
            ));
        }
        if self.traces_exporter() == TracesExporter::Otlp
            && self.otel_exporter_otlp_endpoint.is_none()
        {
            return Err(ConfigError::new(
                Self::name_of("otel_traces_exporter"),
                "otlp needs OTEL_EXPORTER_OTLP_ENDPOINT",
            ));
        }
        if self.otel_service_name.is_empty() {
            return Err(ConfigError::new(
                Self::name_of("otel_service_name"),
                "must not be empty",
            ));
        }
        Ok(())
    }

    /// Returns the span exporter in effect: the one configured, else OTLP
    /// when an endpoint is set, else none; none when the SDK is disabled.
    pub fn traces_exporter(&self) -> TracesExporter {
        if self.otel_sdk_disabled {
            return TracesExporter::None;
        }
        match (self.otel_traces_exporter, &self.otel_exporter_otlp_endpoint) {
            (Some(e), _) => e,
            (None, Some(_)) => TracesExporter::Otlp,
            (None, None) => TracesExporter::None,
        }
    }
}

settings! {
    /// The watch and the other long-lived streams.
    pub struct Watch {
        /// `SWITCHYARD_WATCH_HEARTBEAT_S`: the interval of HEARTBEAT events.
        watch_heartbeat_s: u64 = 15, env ["SWITCHYARD_WATCH_HEARTBEAT_S"], number;
        /// `SWITCHYARD_WATCH_QUEUE`: how many changes a watch subscriber may
        /// fall behind before its backlog is replaced by a snapshot.
        watch_queue: usize = 1024, env ["SWITCHYARD_WATCH_QUEUE"], number;
        /// `SWITCHYARD_MAX_WATCHERS`: the most long-lived streams (watches,
        /// OFREP event streams, flagd event and sync streams) one replica
        /// serves.
        max_watchers: usize = 50_000, env ["SWITCHYARD_MAX_WATCHERS"], number;
        /// `SWITCHYARD_MAX_WATCHERS_PER_CALLER`: the most of those one caller
        /// (one token; every anonymous flagd call together) holds at once on a
        /// replica. Unset: a fifth of `max_watchers`.
        max_watchers_per_caller: Option<usize> = None, env ["SWITCHYARD_MAX_WATCHERS_PER_CALLER"], optional_number;
    }
}

impl Watch {
    /// Checks the section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.watch_heartbeat_s == 0 {
            return Err(ConfigError::new(
                Self::name_of("watch_heartbeat_s"),
                "must be at least 1 second",
            ));
        }
        if !(1..=1_000_000).contains(&self.watch_queue) {
            return Err(ConfigError::new(
                Self::name_of("watch_queue"),
                "must be between 1 and 1000000",
            ));
        }
        if self.max_watchers == 0 {
            return Err(ConfigError::new(
                Self::name_of("max_watchers"),
                "must be at least 1",
            ));
        }
        if let Some(n) = self.max_watchers_per_caller
            && !(1..=self.max_watchers).contains(&n)
        {
            return Err(ConfigError::new(
                Self::name_of("max_watchers_per_caller"),
                format!("must be between 1 and max_watchers ({})", self.max_watchers),
            ));
        }
        Ok(())
    }

    /// The most long-lived streams one caller may hold: the configured
    /// quota, else a fifth of `max_watchers` (at least one).
    pub fn watchers_per_caller(&self) -> usize {
        self.max_watchers_per_caller
            .unwrap_or((self.max_watchers / 5).max(1))
    }
}

settings! {
    /// The fault drill: a tool for rehearsing a release pipeline, never for
    /// production.
    pub struct Drill {
        /// `SWITCHYARD_FAULT_DELAY_MS` (`serve --fault-delay-ms`): a delay
        /// added before every call to the `switchyard.v1` API is served.
        fault_delay_ms: u64 = 0, env ["SWITCHYARD_FAULT_DELAY_MS"], number;
        /// `SWITCHYARD_FAULT_ERROR_RATE` (`serve --fault-error-rate`): the
        /// share of `switchyard.v1` calls refused as UNAVAILABLE ("injected
        /// fault"), 0 to 1.
        fault_error_rate: f64 = 0.0, env ["SWITCHYARD_FAULT_ERROR_RATE"], number;
    }
}

impl Drill {
    /// Checks the section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.fault_delay_ms > 60_000 {
            return Err(ConfigError::new(
                Self::name_of("fault_delay_ms"),
                "must be at most 60000",
            ));
        }
        if !(0.0..=1.0).contains(&self.fault_error_rate) {
            return Err(ConfigError::new(
                Self::name_of("fault_error_rate"),
                format!("{}: must be between 0 and 1", self.fault_error_rate),
            ));
        }
        Ok(())
    }
}

settings! {
    /// Flags set on this replica alone.
    pub struct Flags {
        /// `SWITCHYARD_FLAG_<KEY>` variables (full names): replica-local
        /// emergency overrides of flag values, source `env`. Read from every
        /// variable of that prefix ([`super::Config::load`]).
        flag_overrides: BTreeMap<String, String> = BTreeMap::new(), env [], file_only;
        /// `SWITCHYARD_CONTEXT_VALUES`: attributes added to every evaluation
        /// context, over the caller's (flagd's `--context-value`), and sent
        /// to in-process providers in `sync_context`: a JSON object (a table
        /// in the file).
        context_values: BTreeMap<String, serde_json::Value> = BTreeMap::new(), env ["SWITCHYARD_CONTEXT_VALUES"], json_object;
        /// `SWITCHYARD_FRACTIONAL_BUCKETING`: what `fractional` hashes,
        /// `v2` (flagd (Go) today: the UTF-8 of a string) or `v3` (flagd's
        /// next: the deterministic CBOR of any value, the Python provider
        /// 0.6.x's in-process bucketing). Set it alike on every replica.
        fractional_bucketing: Bucketing = Bucketing::V2, env ["SWITCHYARD_FRACTIONAL_BUCKETING"], bucketing;
    }
}

/// Whether `url` names an in-memory SQLite database (`sqlite::memory:`,
/// `sqlite://:memory:`, `mode=memory`).
fn is_sqlite_in_memory(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("sqlite:") else {
        return false;
    };
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let path = path.trim_start_matches('/');
    path == ":memory:"
        || path.is_empty()
        || query
            .split('&')
            .any(|kv| kv.eq_ignore_ascii_case("mode=memory"))
}

/// Each origin is `*` (alone) or `http(s)://host[:port]`, as browsers send
/// it in `Origin`: no path, no trailing slash.
pub(super) fn check_cors_origins(origins: &[String]) -> Result<(), ConfigError> {
    let name = Listener::name_of("cors_origins");
    if origins.iter().any(|o| o == "*") {
        return if origins.len() == 1 {
            Ok(())
        } else {
            Err(ConfigError::new(
                name,
                "\"*\" allows every origin and stands alone",
            ))
        };
    }
    for o in origins {
        let host = o
            .strip_prefix("https://")
            .or_else(|| o.strip_prefix("http://"));
        let ok = host.is_some_and(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.:[]".contains(&b))
        });
        if !ok {
            return Err(ConfigError::new(
                name,
                format!(
                    "{o:?}: an origin is scheme://host[:port] in lowercase (http or https, \
                     no path), or *"
                ),
            ));
        }
        // Browsers leave the default port out of `Origin`: with it the entry
        // would match nothing.
        if o.starts_with("https://") && o.ends_with(":443")
            || o.starts_with("http://") && o.ends_with(":80")
        {
            return Err(ConfigError::new(
                name,
                format!("{o:?}: leave the default port out, as browsers do in Origin"),
            ));
        }
    }
    Ok(())
}

fn check_secret(name: &str, secret: &str) -> Result<(), ConfigError> {
    if secret.len() < 16 {
        return Err(ConfigError::new(
            name,
            "a token must be at least 16 characters",
        ));
    }
    if !secret.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::new(
            name,
            "a token may contain only printable ASCII without spaces",
        ));
    }
    Ok(())
}

/// Checks `host:port`: an IP address and port, or a host name (RFC 1123
/// labels) and port. A name is resolved only when the listener opens.
fn check_address(setting: &str, value: &str) -> Result<(), ConfigError> {
    if value.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let bad = |why: &str| {
        ConfigError::new(
            setting,
            format!(
                "{value:?}: {why}; give host:port, such as 127.0.0.1:50051, [::1]:50051 or localhost:50051"
            ),
        )
    };
    let (host, port) = value.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    port.parse::<u16>()
        .map_err(|_| bad("the port is not a number from 0 to 65535"))?;
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
        return Err(bad("the host is neither an IP address nor a host name"));
    }
    Ok(())
}

/// Resolves a checked `host:port`: the address as written, or the first
/// IPv4 address the name resolves to (else its first address).
pub fn resolve_address(setting: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    check_address(setting, value)?;
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let addrs: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(value)
        .map_err(|e| ConfigError::new(setting, format!("{value:?}: cannot resolve the host: {e}")))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| {
            ConfigError::new(
                setting,
                format!("{value:?}: the host resolves to no address"),
            )
        })
}
