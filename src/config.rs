//! Configuration in layers: defaults, then a TOML file, then `SWITCHYARD_*`
//! environment variables, then command-line flags; validated once at start-up.
//!
//! Every failure is a [`ConfigError`] whose `Display` is one line naming the
//! setting, so `main` can print it and exit non-zero without a backtrace.

use std::{collections::BTreeMap, fmt, net::SocketAddr, path::Path, time::Duration};

use serde::Deserialize;

/// The default listen address of the one gRPC + HTTP listener.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
/// The default database: a SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://switchyard.db";
/// The largest configuration file read (`serve --config`), in bytes.
pub const MAX_CONFIG_FILE_BYTES: u64 = 1024 * 1024;

/// Which release track this replica serves; every request metric carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Track {
    /// The normal production track.
    #[default]
    Stable,
    /// The baseline of a canary comparison.
    Baseline,
    /// The canary.
    Canary,
}

impl Track {
    /// Returns the label value used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Track::Stable => "stable",
            Track::Baseline => "baseline",
            Track::Canary => "canary",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "stable" => Some(Track::Stable),
            "baseline" => Some(Track::Baseline),
            "canary" => Some(Track::Canary),
            _ => None,
        }
    }
}

/// How log lines are written on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (ANSI colours on a terminal).
    #[default]
    Text,
    /// One JSON object per line, with the current span's fields (`trace_id`).
    Json,
}

/// Where finished spans go (`OTEL_TRACES_EXPORTER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TracesExporter {
    /// OTLP over gRPC to `OTEL_EXPORTER_OTLP_ENDPOINT`.
    Otlp,
    /// JSON-ish text on stdout (opentelemetry-stdout), for trying it out.
    Console,
    /// Nowhere: spans are still made for the trace id in logs, never exported.
    None,
}

/// Which new traces are kept (`OTEL_TRACES_SAMPLER`, the OpenTelemetry names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Sampler {
    /// Every trace.
    AlwaysOn,
    /// None.
    AlwaysOff,
    /// `OTEL_TRACES_SAMPLER_ARG` of all traces, whatever the caller decided.
    #[serde(rename = "traceidratio")]
    TraceIdRatio,
    /// The caller's decision, else every trace.
    ParentbasedAlwaysOn,
    /// The caller's decision, else none.
    ParentbasedAlwaysOff,
    /// The caller's decision, else `OTEL_TRACES_SAMPLER_ARG` of new traces
    /// (the default, at 0.01).
    #[default]
    #[serde(rename = "parentbased_traceidratio")]
    ParentbasedTraceIdRatio,
}

impl Sampler {
    fn parse(s: &str) -> Option<Sampler> {
        Some(match s {
            "always_on" => Sampler::AlwaysOn,
            "always_off" => Sampler::AlwaysOff,
            "traceidratio" => Sampler::TraceIdRatio,
            "parentbased_always_on" => Sampler::ParentbasedAlwaysOn,
            "parentbased_always_off" => Sampler::ParentbasedAlwaysOff,
            "parentbased_traceidratio" => Sampler::ParentbasedTraceIdRatio,
            _ => return None,
        })
    }
}

/// One tier of an SLO's table: with less budget left than `below`, the smoke
/// p95 threshold is `p95_ms`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    /// A budget-left ratio, above 0 and at most 1.
    pub below: f64,
    /// The threshold, ms.
    pub p95_ms: f64,
}

/// An SLO whose error budget sets the smoke threshold (`[[slos]]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SloConfig {
    /// Its name, as `GetSmokeThreshold` and `switchyard smoke --slo` give it.
    pub name: String,
    /// A PromQL instant query answering the budget left as a ratio (1: all
    /// left, 0: spent).
    pub query: String,
    /// The threshold while the budget is above every tier, ms.
    #[serde(default = "default_base_p95_ms")]
    pub base_p95_ms: f64,
    /// The tiers.
    #[serde(default)]
    pub tiers: Vec<TierConfig>,
}

fn default_base_p95_ms() -> f64 {
    450.0
}

/// The built-in SLO: 99.9 % of API requests not failing on the server over
/// 30 days, the budget series of `observability/prometheus/rules.yml`; base
/// 450 ms, below 0.80 ⇒ 420 ms, below 0.60 ⇒ 400 ms.
pub fn default_slos() -> Vec<SloConfig> {
    vec![SloConfig {
        name: "availability".into(),
        query: "slo:switchyard_error_budget:remaining_ratio{slo=\"availability\"}".into(),
        base_p95_ms: 450.0,
        tiers: vec![
            TierConfig {
                below: 0.8,
                p95_ms: 420.0,
            },
            TierConfig {
                below: 0.6,
                p95_ms: 400.0,
            },
        ],
    }]
}

/// A token secret; its `Debug` never shows the value, so configuration can be
/// logged.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A bearer token and the scope it grants.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// `admin`, `gating` or `tenant:<id>`.
    pub scope: String,
    /// The secret presented as `authorization: Bearer <secret>`.
    pub secret: Secret,
}

/// The whole configuration of a `switchyard serve` process.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `SWITCHYARD_LISTEN`: the address of the gRPC + HTTP listener.
    pub listen: String,
    /// `SWITCHYARD_METRICS_LISTEN`: an optional second address serving only `/metrics`.
    pub metrics_listen: Option<String>,
    /// `SWITCHYARD_DATABASE_URL`: `sqlite://...` or `postgres://...`.
    pub database_url: String,
    /// `SWITCHYARD_REDIS_URL`: unset means the in-process cache and bus.
    pub redis_url: Option<String>,
    /// `SWITCHYARD_REDIS_PREFIX`: prepended to every Redis key and channel name
    /// (lets tests and several deployments share one Redis).
    pub redis_prefix: String,
    /// `SWITCHYARD_ADMIN_TOKEN`: the admin bearer token. Unset (and no `tokens`):
    /// `serve` generates one and prints it once.
    pub admin_token: Option<Secret>,
    /// `SWITCHYARD_TOKENS` (`scope=secret,scope=secret`) or `[[tokens]]` tables.
    pub tokens: Vec<TokenConfig>,
    /// `SWITCHYARD_PROMETHEUS_URL`: where the error budget is read from
    /// (`http://host:9090`).
    pub prometheus_url: Option<String>,
    /// `SWITCHYARD_PROMETHEUS_TIMEOUT_MS`: the longest a budget query may
    /// take before the fallback tier applies.
    pub prometheus_timeout_ms: u64,
    /// `[[slos]]` (file only): the SLOs whose budget sets the smoke threshold.
    pub slos: Vec<SloConfig>,
    /// `SWITCHYARD_DEFAULT_SLO`: the SLO of a request that names none.
    pub default_slo: String,
    /// `SWITCHYARD_TRACK`: `stable`, `baseline` or `canary`.
    pub track: Track,
    /// `SWITCHYARD_LOG`: a tracing filter such as `info` or `switchyard=debug`.
    pub log: String,
    /// `SWITCHYARD_LOG_FORMAT`: `text` or `json`.
    pub log_format: LogFormat,
    /// `SWITCHYARD_METRICS`: `on` or `off`: request metrics and every other
    /// series of `/metrics` (off: `/metrics` is empty).
    pub metrics: bool,
    /// `SWITCHYARD_FAULT_DELAY_MS` (`serve --fault-delay-ms`): a delay added
    /// before every call to the `switchyard.v1` API is served. A drill tool
    /// (rehearsing a release pipeline against a slow canary); 0 in production.
    pub fault_delay_ms: u64,
    /// `SWITCHYARD_FAULT_ERROR_RATE` (`serve --fault-error-rate`): the share of
    /// `switchyard.v1` calls refused as UNAVAILABLE ("injected fault"), 0 to
    /// 1. A drill tool; 0 in production.
    pub fault_error_rate: f64,
    /// `OTEL_SDK_DISABLED`: `true` turns tracing off entirely.
    pub otel_sdk_disabled: bool,
    /// `OTEL_TRACES_EXPORTER`: `otlp`, `console` or `none`; unset means `otlp`
    /// when an OTLP endpoint is set, `none` otherwise.
    pub otel_traces_exporter: Option<TracesExporter>,
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, else `OTEL_EXPORTER_OTLP_ENDPOINT`:
    /// the collector's OTLP/gRPC address (`http://host:4317`).
    pub otel_exporter_otlp_endpoint: Option<String>,
    /// `OTEL_SERVICE_NAME`: the `service.name` resource of every span.
    pub otel_service_name: String,
    /// `OTEL_TRACES_SAMPLER`: which new traces are kept.
    pub otel_traces_sampler: Sampler,
    /// `OTEL_TRACES_SAMPLER_ARG`: the ratio of the ratio samplers, 0 to 1.
    pub otel_traces_sampler_arg: f64,
    /// `OTEL_BSP_SCHEDULE_DELAY`: milliseconds between span exports.
    pub otel_bsp_schedule_delay_ms: u64,
    /// `SWITCHYARD_MAX_MESSAGE_BYTES`: the largest gRPC message accepted or sent.
    pub max_message_bytes: usize,
    /// `SWITCHYARD_HTTP2_KEEPALIVE_INTERVAL_S`: HTTP/2 PING interval on idle connections.
    pub http2_keepalive_interval_s: u64,
    /// `SWITCHYARD_HTTP2_KEEPALIVE_TIMEOUT_S`: a PING unanswered this long closes the connection.
    pub http2_keepalive_timeout_s: u64,
    /// `SWITCHYARD_MAX_CONNECTIONS`: connections open at once on the listener;
    /// one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// `SWITCHYARD_CONNECTION_IDLE_TIMEOUT_S`: a connection that sends nothing
    /// (not even an answer to a keepalive PING) this long is closed; 0 never.
    pub connection_idle_timeout_s: u64,
    /// `SWITCHYARD_CORS_ORIGINS`: the origins (`https://app.example.com`,
    /// comma-separated; `*` for any) whose browser pages may call the REST
    /// shims and gRPC-Web cross-origin. Empty: no CORS headers at all.
    pub cors_origins: Vec<String>,
    /// `SWITCHYARD_FLAGD_ANONYMOUS_TENANT`: a tenant id; flagd gRPC calls
    /// (`flagd.evaluation.*`, `flagd.sync.v1`) that carry no token act as that
    /// tenant's `tenant:<id>` token (for providers that cannot send a header,
    /// such as the JavaScript flagd provider). Unset: they need a token like
    /// every call.
    pub flagd_anonymous_tenant: Option<String>,
    /// `SWITCHYARD_SHUTDOWN_GRACE_S`: how long in-flight calls may run after a
    /// shutdown signal before the process stops anyway.
    pub shutdown_grace_s: u64,
    /// `SWITCHYARD_SYNC_INTERVAL_MS`: how often a replica reads the change log
    /// even when the bus is silent (bounds how long a lost pub/sub message can
    /// delay a change).
    pub sync_interval_ms: u64,
    /// `SWITCHYARD_FLAG_<KEY>` variables (full names): replica-local emergency
    /// overrides of flag values, source `env`.
    pub flag_overrides: BTreeMap<String, String>,
    /// `SWITCHYARD_WATCH_HEARTBEAT_S`: the interval of HEARTBEAT events.
    pub watch_heartbeat_s: u64,
    /// `SWITCHYARD_WATCH_QUEUE`: how many changes a watch subscriber may fall
    /// behind before its backlog is replaced by a snapshot.
    pub watch_queue: usize,
    /// `SWITCHYARD_MAX_WATCHERS`: the most long-lived streams (watches, OFREP
    /// event streams, flagd event and sync streams) one replica serves.
    pub max_watchers: usize,
    /// `SWITCHYARD_MAX_WATCHERS_PER_CALLER`: the most of those one caller
    /// (one token; every anonymous flagd call together) holds at once on a
    /// replica. Unset: a fifth of `max_watchers`.
    pub max_watchers_per_caller: Option<usize>,
    /// `SWITCHYARD_MAX_CONCURRENT_STREAMS`: the HTTP/2 streams (calls) one
    /// connection may have open at once, advertised to clients in SETTINGS.
    pub max_concurrent_streams: u32,
    /// `SWITCHYARD_CHANGE_LOG_RETENTION_S`: how long the change log keeps a
    /// change (subscribers resuming from older revisions get a snapshot).
    pub change_log_retention_s: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN.to_owned(),
            metrics_listen: None,
            database_url: DEFAULT_DATABASE_URL.to_owned(),
            redis_url: None,
            redis_prefix: String::new(),
            admin_token: None,
            tokens: Vec::new(),
            prometheus_url: None,
            prometheus_timeout_ms: 2000,
            slos: default_slos(),
            default_slo: "availability".to_owned(),
            track: Track::Stable,
            log: "info".to_owned(),
            log_format: LogFormat::Text,
            metrics: true,
            fault_delay_ms: 0,
            fault_error_rate: 0.0,
            otel_sdk_disabled: false,
            otel_traces_exporter: None,
            otel_exporter_otlp_endpoint: None,
            otel_service_name: "switchyard".to_owned(),
            otel_traces_sampler: Sampler::ParentbasedTraceIdRatio,
            otel_traces_sampler_arg: 0.01,
            otel_bsp_schedule_delay_ms: 5000,
            max_message_bytes: 4 * 1024 * 1024,
            http2_keepalive_interval_s: 30,
            http2_keepalive_timeout_s: 10,
            max_connections: 16_384,
            cors_origins: Vec::new(),
            flagd_anonymous_tenant: None,
            connection_idle_timeout_s: 300,
            shutdown_grace_s: 10,
            sync_interval_ms: 1000,
            flag_overrides: BTreeMap::new(),
            watch_heartbeat_s: 15,
            watch_queue: 1024,
            max_watchers: 50_000,
            max_watchers_per_caller: None,
            max_concurrent_streams: 1024,
            change_log_retention_s: 7 * 24 * 3600,
        }
    }
}

/// A configuration problem, displayed as one line that names the setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    setting: String,
    reason: String,
}

impl ConfigError {
    fn new(setting: impl Into<String>, reason: impl fmt::Display) -> Self {
        ConfigError {
            setting: setting.into(),
            reason: reason.to_string(),
        }
    }

    /// Returns the name of the offending setting.
    pub fn setting(&self) -> &str {
        &self.setting
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid configuration: {}: {}",
            self.setting, self.reason
        )
    }
}

impl std::error::Error for ConfigError {}

/// Values given on the command line; `None` leaves the lower layers alone.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<String>,
    /// `--database-url`.
    pub database_url: Option<String>,
    /// `--redis-url`.
    pub redis_url: Option<String>,
    /// `--track`.
    pub track: Option<String>,
    /// `--log`.
    pub log: Option<String>,
    /// `serve --fault-delay-ms`.
    pub fault_delay_ms: Option<u64>,
    /// `serve --fault-error-rate`.
    pub fault_error_rate: Option<f64>,
}

impl Config {
    /// Builds the configuration from every layer and validates it.
    ///
    /// `env` is the process environment (passed in so tests never touch the
    /// real one); only `SWITCHYARD_*` names are read.
    pub fn load(
        file: Option<&Path>,
        env: &BTreeMap<String, String>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut config = match file {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        config.apply_env(env)?;
        config.apply_overrides(overrides)?;
        config.validate()?;
        Ok(config)
    }

    fn from_file(path: &Path) -> Result<Config, ConfigError> {
        use std::io::Read as _;
        let setting = format!("--config {}", path.display());
        let file = std::fs::File::open(path).map_err(|e| ConfigError::new(&setting, e))?;
        let mut text = String::new();
        file.take(MAX_CONFIG_FILE_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|e| ConfigError::new(&setting, e))?;
        if text.len() as u64 > MAX_CONFIG_FILE_BYTES {
            return Err(ConfigError::new(
                &setting,
                format!("a configuration file is at most {MAX_CONFIG_FILE_BYTES} bytes"),
            ));
        }
        toml::from_str(&text).map_err(|e: toml::de::Error| {
            let line = e
                .span()
                .map(|s| text.get(..s.start).unwrap_or(&text).matches('\n').count() + 1);
            let reason = e.message().replace('\n', " ");
            match line {
                Some(line) => ConfigError::new(format!("{setting} line {line}"), reason),
                None => ConfigError::new(setting, reason),
            }
        })
    }

    fn apply_env(&mut self, env: &BTreeMap<String, String>) -> Result<(), ConfigError> {
        for (name, value) in env.range("SWITCHYARD_".to_owned()..) {
            let Some(key) = name.strip_prefix("SWITCHYARD_") else {
                break;
            };
            let v = value.clone();
            match key {
                "LISTEN" => self.listen = v,
                "METRICS_LISTEN" => self.metrics_listen = non_empty(v),
                "DATABASE_URL" => self.database_url = v,
                "REDIS_URL" => self.redis_url = non_empty(v),
                "REDIS_PREFIX" => self.redis_prefix = v,
                "ADMIN_TOKEN" => self.admin_token = non_empty(v).map(Secret),
                "TOKENS" => self.tokens = parse_tokens(name, &v)?,
                "PROMETHEUS_URL" => self.prometheus_url = non_empty(v),
                "PROMETHEUS_TIMEOUT_MS" => self.prometheus_timeout_ms = parse_num(name, &v)?,
                "DEFAULT_SLO" => self.default_slo = v,
                "TRACK" => self.track = parse_track(name, &v)?,
                "LOG" => self.log = v,
                "LOG_FORMAT" => {
                    self.log_format = match v.as_str() {
                        "text" => LogFormat::Text,
                        "json" => LogFormat::Json,
                        _ => {
                            return Err(ConfigError::new(
                                name,
                                format!("{v:?}: must be text or json"),
                            ));
                        }
                    }
                }
                "METRICS" => self.metrics = parse_switch(name, &v)?,
                "FAULT_DELAY_MS" => self.fault_delay_ms = parse_num(name, &v)?,
                "FAULT_ERROR_RATE" => self.fault_error_rate = parse_num(name, &v)?,
                "MAX_MESSAGE_BYTES" => self.max_message_bytes = parse_num(name, &v)?,
                "HTTP2_KEEPALIVE_INTERVAL_S" => {
                    self.http2_keepalive_interval_s = parse_num(name, &v)?
                }
                "HTTP2_KEEPALIVE_TIMEOUT_S" => {
                    self.http2_keepalive_timeout_s = parse_num(name, &v)?
                }
                "SHUTDOWN_GRACE_S" => self.shutdown_grace_s = parse_num(name, &v)?,
                "MAX_CONNECTIONS" => self.max_connections = parse_num(name, &v)?,
                "CORS_ORIGINS" => {
                    self.cors_origins = v
                        .split(',')
                        .map(str::trim)
                        .filter(|o| !o.is_empty())
                        .map(str::to_owned)
                        .collect();
                }
                "FLAGD_ANONYMOUS_TENANT" => self.flagd_anonymous_tenant = non_empty(v),
                "CONNECTION_IDLE_TIMEOUT_S" => {
                    self.connection_idle_timeout_s = parse_num(name, &v)?
                }
                "SYNC_INTERVAL_MS" => self.sync_interval_ms = parse_num(name, &v)?,
                "WATCH_HEARTBEAT_S" => self.watch_heartbeat_s = parse_num(name, &v)?,
                "WATCH_QUEUE" => self.watch_queue = parse_num(name, &v)?,
                "MAX_WATCHERS" => self.max_watchers = parse_num(name, &v)?,
                "MAX_WATCHERS_PER_CALLER" => {
                    self.max_watchers_per_caller = match non_empty(v) {
                        Some(v) => Some(parse_num(name, &v)?),
                        None => None,
                    }
                }
                "MAX_CONCURRENT_STREAMS" => self.max_concurrent_streams = parse_num(name, &v)?,
                "CHANGE_LOG_RETENTION_S" => self.change_log_retention_s = parse_num(name, &v)?,
                k if k.starts_with("FLAG_") => {
                    self.flag_overrides.insert(name.clone(), v);
                }
                // Flag overrides (`SWITCHYARD_FLAG_*`) and client settings
                // (`SWITCHYARD_TOKEN`) belong to other readers.
                _ => {}
            }
        }
        let otel = |k: &str| env.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        if let Some(v) = otel("OTEL_SDK_DISABLED") {
            self.otel_sdk_disabled = parse_switch("OTEL_SDK_DISABLED", v)?;
        }
        if let Some(v) = otel("OTEL_TRACES_EXPORTER") {
            self.otel_traces_exporter = Some(match v {
                "otlp" => TracesExporter::Otlp,
                "console" => TracesExporter::Console,
                "none" => TracesExporter::None,
                _ => {
                    return Err(ConfigError::new(
                        "OTEL_TRACES_EXPORTER",
                        format!("{v:?}: must be otlp, console or none"),
                    ));
                }
            });
        }
        for name in [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        ] {
            if let Some(v) = otel(name) {
                self.otel_exporter_otlp_endpoint = Some(v.to_owned());
            }
        }
        if let Some(v) = otel("OTEL_SERVICE_NAME") {
            self.otel_service_name = v.to_owned();
        }
        if let Some(v) = otel("OTEL_TRACES_SAMPLER") {
            self.otel_traces_sampler = Sampler::parse(v).ok_or_else(|| {
                ConfigError::new(
                    "OTEL_TRACES_SAMPLER",
                    format!(
                        "{v:?}: must be always_on, always_off, traceidratio, parentbased_always_on, \
                         parentbased_always_off or parentbased_traceidratio"
                    ),
                )
            })?;
        }
        if let Some(v) = otel("OTEL_TRACES_SAMPLER_ARG") {
            self.otel_traces_sampler_arg = parse_num("OTEL_TRACES_SAMPLER_ARG", v)?;
        }
        if let Some(v) = otel("OTEL_BSP_SCHEDULE_DELAY") {
            self.otel_bsp_schedule_delay_ms = parse_num("OTEL_BSP_SCHEDULE_DELAY", v)?;
        }
        Ok(())
    }

    /// The most long-lived streams one caller may hold: the configured
    /// quota, else a fifth of `max_watchers` (at least one).
    pub fn watchers_per_caller(&self) -> usize {
        self.max_watchers_per_caller
            .unwrap_or((self.max_watchers / 5).max(1))
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

    fn apply_overrides(&mut self, o: &Overrides) -> Result<(), ConfigError> {
        if let Some(v) = &o.listen {
            self.listen = v.clone();
        }
        if let Some(v) = &o.database_url {
            self.database_url = v.clone();
        }
        if let Some(v) = &o.redis_url {
            self.redis_url = non_empty(v.clone());
        }
        if let Some(v) = &o.track {
            self.track = parse_track("--track", v)?;
        }
        if let Some(v) = &o.log {
            self.log = v.clone();
        }
        if let Some(v) = o.fault_delay_ms {
            if v > 60_000 {
                return Err(ConfigError::new(
                    "--fault-delay-ms",
                    "must be at most 60000",
                ));
            }
            self.fault_delay_ms = v;
        }
        if let Some(v) = o.fault_error_rate {
            if !(0.0..=1.0).contains(&v) {
                return Err(ConfigError::new(
                    "--fault-error-rate",
                    format!("{v}: must be between 0 and 1"),
                ));
            }
            self.fault_error_rate = v;
        }
        Ok(())
    }

    /// Checks every setting; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        if let Some(m) = &self.metrics_listen {
            m.parse::<SocketAddr>().map_err(|e| {
                ConfigError::new("SWITCHYARD_METRICS_LISTEN", format!("{m:?}: {e}"))
            })?;
        }
        let db = &self.database_url;
        if !(db.starts_with("sqlite:")
            || db.starts_with("postgres://")
            || db.starts_with("postgresql://"))
        {
            return Err(ConfigError::new(
                "SWITCHYARD_DATABASE_URL",
                "must start with sqlite:, postgres:// or postgresql://",
            ));
        }
        if is_sqlite_in_memory(db) {
            return Err(ConfigError::new(
                "SWITCHYARD_DATABASE_URL",
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
                "SWITCHYARD_REDIS_URL",
                "must start with redis://, rediss:// or redis+unix://",
            ));
        }
        if let Some(p) = &self.prometheus_url {
            if p.starts_with("https://") {
                return Err(ConfigError::new(
                    "SWITCHYARD_PROMETHEUS_URL",
                    "https is not supported: reach Prometheus over http (on loopback, or through a TLS-terminating proxy)",
                ));
            }
            if !p.starts_with("http://")
                || p.len() <= "http://".len()
                || p.contains(char::is_whitespace)
            {
                return Err(ConfigError::new(
                    "SWITCHYARD_PROMETHEUS_URL",
                    "must be an http:// URL",
                ));
            }
        }
        if !(10..=60_000).contains(&self.prometheus_timeout_ms) {
            return Err(ConfigError::new(
                "SWITCHYARD_PROMETHEUS_TIMEOUT_MS",
                "must be between 10 and 60000",
            ));
        }
        self.validate_slos()?;
        if let Some(t) = &self.admin_token {
            check_secret("SWITCHYARD_ADMIN_TOKEN", &t.0)?;
        }
        for t in &self.tokens {
            check_secret("SWITCHYARD_TOKENS", &t.secret.0)?;
            crate::auth::Scope::parse(&t.scope)
                .map_err(|e| ConfigError::new("SWITCHYARD_TOKENS", e))?;
        }
        if let Some(t) = &self.flagd_anonymous_tenant {
            crate::auth::Scope::parse(&format!("tenant:{t}")).map_err(|_| {
                ConfigError::new(
                    "SWITCHYARD_FLAGD_ANONYMOUS_TENANT",
                    format!("{t:?} is not a valid tenant id"),
                )
            })?;
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log) {
            return Err(ConfigError::new("SWITCHYARD_LOG", e));
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.max_message_bytes) {
            return Err(ConfigError::new(
                "SWITCHYARD_MAX_MESSAGE_BYTES",
                "must be between 1024 and 67108864",
            ));
        }
        if self.http2_keepalive_interval_s == 0 {
            return Err(ConfigError::new(
                "SWITCHYARD_HTTP2_KEEPALIVE_INTERVAL_S",
                "must be at least 1 second",
            ));
        }
        if self.http2_keepalive_timeout_s == 0 {
            return Err(ConfigError::new(
                "SWITCHYARD_HTTP2_KEEPALIVE_TIMEOUT_S",
                "must be at least 1 second",
            ));
        }
        check_cors_origins(&self.cors_origins)?;
        if let Some(t) = &self.flagd_anonymous_tenant
            && self.cors_origins.iter().any(|o| o == "*")
        {
            return Err(ConfigError::new(
                "SWITCHYARD_CORS_ORIGINS",
                format!(
                    "\"*\" with flagd_anonymous_tenant ({t:?}) would let any web page read that \
                     tenant's flags without a token: list the origins allowed instead"
                ),
            ));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::new(
                "SWITCHYARD_MAX_CONNECTIONS",
                "must be at least 1",
            ));
        }
        let ping = self.http2_keepalive_interval_s + self.http2_keepalive_timeout_s;
        if self.connection_idle_timeout_s != 0 && self.connection_idle_timeout_s <= ping {
            return Err(ConfigError::new(
                "SWITCHYARD_CONNECTION_IDLE_TIMEOUT_S",
                format!(
                    "must be 0 (never) or above the keepalive interval plus its timeout \
                     ({ping} s), so that a healthy connection answering PINGs is never closed"
                ),
            ));
        }
        if self.watch_heartbeat_s == 0 {
            return Err(ConfigError::new(
                "SWITCHYARD_WATCH_HEARTBEAT_S",
                "must be at least 1 second",
            ));
        }
        if !(1..=1_000_000).contains(&self.watch_queue) {
            return Err(ConfigError::new(
                "SWITCHYARD_WATCH_QUEUE",
                "must be between 1 and 1000000",
            ));
        }
        if self.max_watchers == 0 {
            return Err(ConfigError::new(
                "SWITCHYARD_MAX_WATCHERS",
                "must be at least 1",
            ));
        }
        if let Some(n) = self.max_watchers_per_caller
            && !(1..=self.max_watchers).contains(&n)
        {
            return Err(ConfigError::new(
                "SWITCHYARD_MAX_WATCHERS_PER_CALLER",
                format!("must be between 1 and max_watchers ({})", self.max_watchers),
            ));
        }
        if self.max_concurrent_streams == 0 {
            return Err(ConfigError::new(
                "SWITCHYARD_MAX_CONCURRENT_STREAMS",
                "must be at least 1",
            ));
        }
        if self.change_log_retention_s < 60 {
            return Err(ConfigError::new(
                "SWITCHYARD_CHANGE_LOG_RETENTION_S",
                "must be at least 60 seconds",
            ));
        }
        if !(0.0..=1.0).contains(&self.otel_traces_sampler_arg) {
            return Err(ConfigError::new(
                "OTEL_TRACES_SAMPLER_ARG",
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
                "OTEL_TRACES_EXPORTER",
                "otlp needs OTEL_EXPORTER_OTLP_ENDPOINT",
            ));
        }
        if self.otel_service_name.is_empty() {
            return Err(ConfigError::new("OTEL_SERVICE_NAME", "must not be empty"));
        }
        if self.fault_delay_ms > 60_000 {
            return Err(ConfigError::new(
                "SWITCHYARD_FAULT_DELAY_MS",
                "must be at most 60000",
            ));
        }
        if !(0.0..=1.0).contains(&self.fault_error_rate) {
            return Err(ConfigError::new(
                "SWITCHYARD_FAULT_ERROR_RATE",
                format!("{}: must be between 0 and 1", self.fault_error_rate),
            ));
        }
        if !(10..=60_000).contains(&self.sync_interval_ms) {
            return Err(ConfigError::new(
                "SWITCHYARD_SYNC_INTERVAL_MS",
                "must be between 10 and 60000",
            ));
        }
        Ok(())
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
        }
        if !names.contains(self.default_slo.as_str()) {
            return Err(ConfigError::new(
                "SWITCHYARD_DEFAULT_SLO",
                format!("{:?} is not one of the configured SLOs", self.default_slo),
            ));
        }
        Ok(())
    }

    /// Returns the parsed listen address.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen
            .parse()
            .map_err(|e| ConfigError::new("SWITCHYARD_LISTEN", format!("{:?}: {e}", self.listen)))
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

    /// Returns the change-log poll interval.
    pub fn sync_interval(&self) -> Duration {
        Duration::from_millis(self.sync_interval_ms)
    }

    /// Returns the shutdown grace period.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_s)
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

fn non_empty(v: String) -> Option<String> {
    (!v.is_empty()).then_some(v)
}

fn parse_num<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, ConfigError>
where
    T::Err: fmt::Display,
{
    v.trim()
        .parse()
        .map_err(|e| ConfigError::new(name, format!("{v:?}: {e}")))
}

fn parse_switch(name: &str, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "1" | "yes" => Ok(true),
        "off" | "false" | "0" | "no" => Ok(false),
        _ => Err(ConfigError::new(name, format!("{v:?}: must be on or off"))),
    }
}

fn parse_track(name: &str, v: &str) -> Result<Track, ConfigError> {
    Track::parse(v)
        .ok_or_else(|| ConfigError::new(name, format!("{v:?}: must be stable, baseline or canary")))
}

/// Parses `scope=secret,scope=secret`; a secret may itself contain `=`.
fn parse_tokens(name: &str, v: &str) -> Result<Vec<TokenConfig>, ConfigError> {
    v.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|entry| {
            let (scope, secret) = entry.trim().split_once('=').ok_or_else(|| {
                ConfigError::new(name, "each entry must be scope=secret (secret not shown)")
            })?;
            Ok(TokenConfig {
                scope: scope.to_owned(),
                secret: Secret(secret.to_owned()),
            })
        })
        .collect()
}

/// Each origin is `*` (alone) or `http(s)://host[:port]`, as browsers send
/// it in `Origin`: no path, no trailing slash.
fn check_cors_origins(origins: &[String]) -> Result<(), ConfigError> {
    const NAME: &str = "SWITCHYARD_CORS_ORIGINS";
    if origins.iter().any(|o| o == "*") {
        return if origins.len() == 1 {
            Ok(())
        } else {
            Err(ConfigError::new(
                NAME,
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
                NAME,
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
                NAME,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_need_nothing() {
        let c = Config::load(None, &env(&[]), &Overrides::default()).unwrap();
        assert_eq!(c.listen, DEFAULT_LISTEN);
        assert_eq!(c.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(c.redis_url, None);
    }

    #[test]
    fn the_anonymous_flagd_tenant_is_a_tenant_id() {
        let load = |v: &str| {
            Config::load(
                None,
                &env(&[("SWITCHYARD_FLAGD_ANONYMOUS_TENANT", v)]),
                &Overrides::default(),
            )
        };
        assert_eq!(
            load("acme").unwrap().flagd_anonymous_tenant.as_deref(),
            Some("acme")
        );
        assert_eq!(load("").unwrap().flagd_anonymous_tenant, None);
        let e = load("Not A Tenant").unwrap_err().to_string();
        assert!(e.contains("SWITCHYARD_FLAGD_ANONYMOUS_TENANT"), "{e}");
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:1\"\ntrack = \"canary\"\nlog = \"debug\"\n",
        )
        .unwrap();
        let e = env(&[
            ("SWITCHYARD_LISTEN", "127.0.0.1:2"),
            ("SWITCHYARD_TRACK", "baseline"),
        ]);
        let o = Overrides {
            listen: Some("127.0.0.1:3".into()),
            ..Default::default()
        };
        let c = Config::load(Some(&path), &e, &o).unwrap();
        assert_eq!(c.listen, "127.0.0.1:3", "flag beats env beats file");
        assert_eq!(c.track, Track::Baseline, "env beats file");
        assert_eq!(c.log, "debug", "file beats default");
    }

    #[test]
    fn bad_values_name_the_setting_in_one_line() {
        let cases = [
            ("SWITCHYARD_LISTEN", "not-an-address"),
            ("SWITCHYARD_DATABASE_URL", "mysql://x"),
            ("SWITCHYARD_REDIS_URL", "http://x"),
            ("SWITCHYARD_TRACK", "blue"),
            ("SWITCHYARD_ADMIN_TOKEN", "short"),
            ("SWITCHYARD_TOKENS", "tenant:=abcdefghijklmnopq"),
            ("SWITCHYARD_MAX_MESSAGE_BYTES", "lots"),
        ];
        for (name, value) in cases {
            let err =
                Config::load(None, &env(&[(name, value)]), &Overrides::default()).unwrap_err();
            let line = err.to_string();
            assert!(line.contains(name), "{line}");
            assert!(!line.contains('\n'), "{line}");
        }
    }

    #[test]
    fn a_bad_file_names_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:1\"\nlisten_addr = 3\n").unwrap();
        let err = Config::load(Some(&path), &env(&[]), &Overrides::default()).unwrap_err();
        let line = err.to_string();
        assert!(line.contains("line 2"), "{line}");
        assert!(line.contains("listen_addr"), "{line}");
        assert!(!line.contains('\n'), "{line}");
    }

    #[test]
    fn token_secrets_are_not_printed() {
        let c = Config {
            admin_token: Some(Secret("adminsecretvalue456".into())),
            tokens: vec![TokenConfig {
                scope: "admin".into(),
                secret: Secret("supersecretvalue123".into()),
            }],
            ..Config::default()
        };
        let printed = format!("{c:?}");
        assert!(!printed.contains("supersecretvalue123"), "{printed}");
        assert!(!printed.contains("adminsecretvalue456"), "{printed}");
    }

    #[test]
    fn cors_origins_are_checked_as_browsers_send_them() {
        let ok =
            |o: &[&str]| check_cors_origins(&o.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        assert!(ok(&[]).is_ok());
        assert!(ok(&["*"]).is_ok());
        assert!(
            ok(&[
                "https://app.example.com",
                "http://127.0.0.1:5173",
                "http://[::1]:8080"
            ])
            .is_ok()
        );
        for bad in [
            &["*", "https://a.example"][..],
            &["https://App.example.com"],
            &["https://a.example/"],
            &["https://a.example/path"],
            &["ftp://a.example"],
            &["a.example"],
            &["https://a.example:443"],
            &["http://a.example:80"],
        ] {
            let e = ok(bad).unwrap_err().to_string();
            assert!(e.contains("SWITCHYARD_CORS_ORIGINS"), "{bad:?}: {e}");
        }
    }
}
