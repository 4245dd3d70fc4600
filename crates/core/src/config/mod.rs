//! Configuration in layers: defaults, then a TOML file, then `SWITCHYARD_*`
//! environment variables, then command-line flags; validated once at start-up.
//!
//! The configuration is grouped in sections ([`sections`]), each declaring
//! its settings once (key, type, default, variables, reader: the
//! [`settings!`](settings) macro) and checking them itself. The TOML file's
//! keys stay flat (`max_message_bytes = ...`): each key goes to the section
//! that declares it. [`Config::settings`] lists every setting, which the
//! docs' tables are checked against.
//!
//! Every failure is a [`ConfigError`] whose `Display` is one line naming the
//! setting, so `main` can print it and exit non-zero without a backtrace.

mod sections;
#[macro_use]
mod settings;
mod types;

use std::{collections::BTreeMap, fmt, path::Path};

pub use sections::{
    Auth, DEFAULT_DATABASE_URL, DEFAULT_LISTEN, Drill, Flags, Gating, Listener, Storage, Telemetry,
    Watch, resolve_address,
};
pub use settings::Setting;
pub use types::{
    LogFormat, Sampler, Secret, SloConfig, TierConfig, TokenConfig, TracesExporter, Track,
    default_slos,
};

/// The largest configuration file read (`serve --config`), in bytes.
pub const MAX_CONFIG_FILE_BYTES: u64 = 1024 * 1024;

/// The whole configuration of a `switchyard serve` process, by section.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    /// The listener.
    pub listener: Listener,
    /// Storage and replication.
    pub storage: Storage,
    /// Tokens.
    pub auth: Auth,
    /// Error budgets and SLOs.
    pub gating: Gating,
    /// Logs, metrics, traces.
    pub telemetry: Telemetry,
    /// Watches and other long-lived streams.
    pub watch: Watch,
    /// The fault drill.
    pub drill: Drill,
    /// Replica-local flag values.
    pub flags: Flags,
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

/// The prefix of the replica-local flag overrides' variables.
const FLAG_PREFIX: &str = "SWITCHYARD_FLAG_";

impl Config {
    /// Every setting, section by section.
    pub fn settings() -> impl Iterator<Item = &'static Setting> {
        [
            Listener::SETTINGS,
            Storage::SETTINGS,
            Auth::SETTINGS,
            Gating::SETTINGS,
            Telemetry::SETTINGS,
            Watch::SETTINGS,
            Drill::SETTINGS,
            Flags::SETTINGS,
        ]
        .into_iter()
        .flatten()
    }

    /// Builds the configuration from every layer and validates it.
    ///
    /// `env` is the process environment (passed in so tests never touch the
    /// real one); only `SWITCHYARD_*` and `OTEL_*` names are read.
    pub fn load(
        file: Option<&Path>,
        env: &BTreeMap<String, String>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        if let Some(path) = file {
            config.apply_file(path)?;
        }
        config.apply_env(env)?;
        config.apply_overrides(overrides)?;
        config.validate()?;
        Ok(config)
    }

    /// Sets `key` from the file's value, in the section that declares it;
    /// `None` when none does.
    fn set_toml(&mut self, key: &str, value: toml::Value) -> Option<Result<(), String>> {
        let has = |settings: &[Setting]| settings.iter().any(|s| s.key == key);
        if has(Listener::SETTINGS) {
            self.listener.set_toml(key, value)
        } else if has(Storage::SETTINGS) {
            self.storage.set_toml(key, value)
        } else if has(Auth::SETTINGS) {
            self.auth.set_toml(key, value)
        } else if has(Gating::SETTINGS) {
            self.gating.set_toml(key, value)
        } else if has(Telemetry::SETTINGS) {
            self.telemetry.set_toml(key, value)
        } else if has(Watch::SETTINGS) {
            self.watch.set_toml(key, value)
        } else if has(Drill::SETTINGS) {
            self.drill.set_toml(key, value)
        } else if has(Flags::SETTINGS) {
            self.flags.set_toml(key, value)
        } else {
            None
        }
    }

    fn apply_file(&mut self, path: &Path) -> Result<(), ConfigError> {
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
        let line_of = |start: usize| text.get(..start).unwrap_or(&text).matches('\n').count() + 1;
        let table: BTreeMap<String, toml::Spanned<toml::Value>> =
            toml::from_str(&text).map_err(|e: toml::de::Error| {
                let reason = e.message().replace('\n', " ");
                match e.span() {
                    Some(s) => {
                        ConfigError::new(format!("{setting} line {}", line_of(s.start)), reason)
                    }
                    None => ConfigError::new(&setting, reason),
                }
            })?;
        for (key, value) in table {
            let at = format!("{setting} line {}", line_of(value.span().start));
            match self.set_toml(&key, value.into_inner()) {
                Some(Ok(())) => {}
                Some(Err(reason)) => return Err(ConfigError::new(at, format!("{key}: {reason}"))),
                None => return Err(ConfigError::new(at, format!("unknown field `{key}`"))),
            }
        }
        Ok(())
    }

    fn apply_env(&mut self, env: &BTreeMap<String, String>) -> Result<(), ConfigError> {
        self.listener.set_env(env)?;
        self.storage.set_env(env)?;
        self.auth.set_env(env)?;
        self.gating.set_env(env)?;
        self.telemetry.set_env(env)?;
        self.watch.set_env(env)?;
        self.drill.set_env(env)?;
        self.flags.set_env(env)?;
        // `SWITCHYARD_FLAG_<KEY>`: a setting per flag, by prefix.
        for (name, value) in env.range(FLAG_PREFIX.to_owned()..) {
            if !name.starts_with(FLAG_PREFIX) {
                break;
            }
            self.flags
                .flag_overrides
                .insert(name.clone(), value.clone());
        }
        Ok(())
    }

    fn apply_overrides(&mut self, o: &Overrides) -> Result<(), ConfigError> {
        if let Some(v) = &o.listen {
            self.listener.listen = v.clone();
        }
        if let Some(v) = &o.database_url {
            self.storage.database_url = v.clone();
        }
        if let Some(v) = &o.redis_url {
            self.storage.redis_url = (!v.is_empty()).then(|| v.clone());
        }
        if let Some(v) = &o.track {
            self.telemetry.track = settings::track("--track", v)?;
        }
        if let Some(v) = &o.log {
            self.telemetry.log = v.clone();
        }
        if let Some(v) = o.fault_delay_ms {
            if v > 60_000 {
                return Err(ConfigError::new(
                    "--fault-delay-ms",
                    "must be at most 60000",
                ));
            }
            self.drill.fault_delay_ms = v;
        }
        if let Some(v) = o.fault_error_rate {
            if !(0.0..=1.0).contains(&v) {
                return Err(ConfigError::new(
                    "--fault-error-rate",
                    format!("{v}: must be between 0 and 1"),
                ));
            }
            self.drill.fault_error_rate = v;
        }
        Ok(())
    }

    /// Checks every section, then what spans sections; the first problem
    /// found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listener.validate()?;
        self.storage.validate()?;
        self.gating.validate()?;
        self.auth.validate()?;
        self.telemetry.validate()?;
        self.watch.validate()?;
        self.drill.validate()?;
        if let Some(t) = &self.auth.flagd_anonymous_tenant
            && self.listener.cors_origins.iter().any(|o| o == "*")
        {
            return Err(ConfigError::new(
                Listener::name_of("cors_origins"),
                format!(
                    "\"*\" with flagd_anonymous_tenant ({t:?}) would let any web page read that \
                     tenant's flags without a token: list the origins allowed instead"
                ),
            ));
        }
        Ok(())
    }
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
        assert_eq!(c.listener.listen, DEFAULT_LISTEN);
        assert_eq!(c.storage.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(c.storage.redis_url, None);
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
            load("acme").unwrap().auth.flagd_anonymous_tenant.as_deref(),
            Some("acme")
        );
        assert_eq!(load("").unwrap().auth.flagd_anonymous_tenant, None);
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
        assert_eq!(
            c.listener.listen, "127.0.0.1:3",
            "flag beats env beats file"
        );
        assert_eq!(c.telemetry.track, Track::Baseline, "env beats file");
        assert_eq!(c.telemetry.log, "debug", "file beats default");
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
    fn every_setting_is_declared_once_and_named_by_its_variables() {
        let mut keys = std::collections::BTreeSet::new();
        let mut vars = std::collections::BTreeSet::new();
        for s in Config::settings() {
            assert!(keys.insert(s.key), "{} declared twice", s.key);
            for v in s.env {
                assert!(vars.insert(*v), "{v} read by two settings");
            }
        }
        assert!(keys.len() >= 40, "{} settings", keys.len());
        // The file takes every key, under its own name.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "max_watchers = 7\nmax_connections = 9\nredis_prefix = \"p:\"\nmetrics = false\n\
             [flag_overrides]\nSWITCHYARD_FLAG_X = \"1\"\n",
        )
        .unwrap();
        let c = Config::load(Some(&path), &env(&[]), &Overrides::default()).unwrap();
        assert_eq!(c.watch.max_watchers, 7);
        assert_eq!(c.listener.max_connections, 9);
        assert_eq!(c.storage.redis_prefix, "p:");
        assert!(!c.telemetry.metrics);
        assert_eq!(c.flags.flag_overrides["SWITCHYARD_FLAG_X"], "1");
        // The traces endpoint's own variable wins over the generic one.
        let c = Config::load(
            None,
            &env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4317"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4317"),
                ("OTEL_TRACES_SAMPLER_ARG", " "),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            c.telemetry.otel_exporter_otlp_endpoint.as_deref(),
            Some("http://traces:4317")
        );
        assert_eq!(
            c.telemetry.otel_traces_sampler_arg, 0.01,
            "an empty OTEL_ is unset"
        );
    }

    /// `listen` and `metrics_listen` take a host name as well as an IP
    /// address; what is neither is refused, naming the setting.
    #[test]
    fn listen_addresses_take_host_names() {
        let load = |listen: &str| {
            Config::load(
                None,
                &env(&[
                    ("SWITCHYARD_LISTEN", listen),
                    ("SWITCHYARD_METRICS_LISTEN", listen),
                ]),
                &Overrides::default(),
            )
        };
        for good in [
            "localhost:50051",
            "127.0.0.1:0",
            "[::1]:50051",
            "my-host.internal:9",
        ] {
            assert!(load(good).is_ok(), "{good} was refused");
        }
        let c = load("localhost:50051").unwrap();
        let addr = c.listener.listen_addr().unwrap();
        assert!(addr.ip().is_loopback() && addr.port() == 50051, "{addr}");
        assert!(addr.is_ipv4(), "IPv4 first: {addr}");
        for bad in [
            "localhost",
            "localhost:http",
            "local_host:1",
            "-a:1",
            ":50051",
            "a b:1",
        ] {
            let e = load(bad).unwrap_err();
            assert_eq!(e.setting(), "SWITCHYARD_LISTEN", "{bad}");
            assert!(e.to_string().contains("give host:port"), "{bad}: {e}");
        }
    }

    /// A tier table that would loosen the gate as the budget runs out, or
    /// that has two tiers with the same `below`, is refused at start-up,
    /// naming the tier.
    #[test]
    fn tiers_that_would_loosen_the_gate_are_refused() {
        let load = |tiers: &str| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("c.toml");
            std::fs::write(
                &path,
                format!(
                    "[[slos]]\nname = \"availability\"\nquery = \"q\"\nbase_p95_ms = 450\ntiers = [{tiers}]\n"
                ),
            )
            .unwrap();
            Config::load(Some(&path), &env(&[]), &Overrides::default())
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        let refused = [
            (
                "{below = 0.8, p95_ms = 500}",
                "slos[0].tiers[0].p95_ms: 500 ms is above base_p95_ms's 450 ms",
            ),
            (
                "{below = 0.6, p95_ms = 400}, {below = 0.8, p95_ms = 380}",
                "slos[0].tiers[0].p95_ms: 400 ms is above tiers[1] (below 0.8)'s 380 ms",
            ),
            (
                "{below = 0.6, p95_ms = 400}, {below = 0.6, p95_ms = 380}",
                "slos[0].tiers[1].below: 0.6 is also tiers[0]'s",
            ),
        ];
        for (tiers, want) in refused {
            let got = load(tiers);
            assert!(
                got.as_ref().is_err_and(|e| e.contains(want)),
                "{tiers}: {got:?}, want {want}"
            );
        }
        assert_eq!(
            load(
                "{below = 0.6, p95_ms = 400}, {below = 0.8, p95_ms = 420}, {below = 0.3, p95_ms = 400}"
            ),
            Ok(())
        );
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
            auth: Auth {
                admin_token: Some(Secret("adminsecretvalue456".into())),
                tokens: vec![TokenConfig {
                    scope: "admin".into(),
                    secret: Secret("supersecretvalue123".into()),
                }],
                ..Auth::default()
            },
            ..Config::default()
        };
        let printed = format!("{c:?}");
        assert!(!printed.contains("supersecretvalue123"), "{printed}");
        assert!(!printed.contains("adminsecretvalue456"), "{printed}");
    }

    #[test]
    fn cors_origins_are_checked_as_browsers_send_them() {
        let ok = |o: &[&str]| {
            sections::check_cors_origins(&o.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
        };
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
