//! How a setting is declared, once: its key (the TOML key and the field),
//! its type, its default, the variables it is read from and how a variable's
//! text is read ([`settings!`]). From that one declaration come the
//! section's struct, its defaults, the reading of a TOML table and of the
//! environment, and the registry ([`Setting`]) the docs are checked against.

use std::{collections::BTreeMap, fmt, str::FromStr};

use super::{
    ConfigError,
    types::{LogFormat, Sampler, Secret, TokenConfig, TracesExporter, Track},
};

/// One setting, as the registry lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// The TOML key (and the field's name in its section).
    pub key: &'static str,
    /// The variables it is read from, in order (a later one wins); none for
    /// a setting only a file sets.
    pub env: &'static [&'static str],
}

/// Declares a section of the configuration: a struct whose every field is a
/// setting, with the section's defaults, its reading of a TOML table's keys
/// and of the environment, and its registry.
///
/// ```text
/// settings! {
///     /// The section.
///     pub struct Name {
///         /// A setting.
///         key: Type = default, env ["SWITCHYARD_KEY"], reader;
///     }
/// }
/// ```
macro_rules! settings {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $(
                $(#[$doc:meta])*
                $key:ident : $ty:ty = $default:expr, env [$($env:literal),*], $read:path;
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name {
            $(
                $(#[$doc])*
                pub $key: $ty,
            )*
        }

        impl Default for $name {
            fn default() -> Self {
                $name { $($key: $default,)* }
            }
        }

        impl $name {
            /// The section's settings.
            pub const SETTINGS: &'static [$crate::config::settings::Setting] = &[
                $($crate::config::settings::Setting {
                    key: stringify!($key),
                    env: &[$($env),*],
                },)*
            ];

            /// Sets `key` from a TOML value; `None` when the key is not this
            /// section's.
            pub(super) fn set_toml(
                &mut self,
                key: &str,
                value: toml::Value,
            ) -> Option<Result<(), String>> {
                match key {
                    $(stringify!($key) => Some(
                        value
                            .try_into::<$ty>()
                            .map(|v| self.$key = v)
                            .map_err(|e| e.message().replace('\n', " ")),
                    ),)*
                    _ => None,
                }
            }

            /// Sets every setting whose variable `env` holds (the later of
            /// two wins).
            pub(super) fn set_env(
                &mut self,
                env: &std::collections::BTreeMap<String, String>,
            ) -> Result<(), $crate::config::ConfigError> {
                $(
                    for name in [$($env),*] {
                        if let Some(value) = $crate::config::settings::variable(env, name) {
                            self.$key = $read(name, value)?;
                        }
                    }
                )*
                Ok(())
            }

            /// The variable that names `key` in errors (the key itself for a
            /// setting only a file sets).
            #[allow(dead_code)]
            pub(super) fn name_of(key: &'static str) -> &'static str {
                Self::SETTINGS
                    .iter()
                    .find(|s| s.key == key)
                    .and_then(|s| s.env.last().copied())
                    .unwrap_or(key)
            }
        }
    };
}

pub(crate) use settings;

/// The value of variable `name`, as a setting reads it: `OTEL_*` ones
/// trimmed and ignored when empty (the OpenTelemetry convention); our own as
/// given.
pub(super) fn variable<'a>(env: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    let v = env.get(name)?;
    if name.starts_with("OTEL_") {
        let v = v.trim();
        (!v.is_empty()).then_some(v)
    } else {
        Some(v)
    }
}

// The readers of a variable's text, one per kind of setting.

/// Text as given.
pub(super) fn text(_: &str, v: &str) -> Result<String, ConfigError> {
    Ok(v.to_owned())
}

/// A JSON object (empty text: none).
pub(super) fn json_object(
    name: &str,
    v: &str,
) -> Result<std::collections::BTreeMap<String, serde_json::Value>, ConfigError> {
    if v.trim().is_empty() {
        return Ok(Default::default());
    }
    match serde_json::from_str(v) {
        Ok(serde_json::Value::Object(m)) => Ok(m.into_iter().collect()),
        Ok(_) => Err(ConfigError::new(name, "must be a JSON object")),
        Err(e) => Err(ConfigError::new(name, format!("is not JSON: {e}"))),
    }
}

/// Text, or unset when empty.
pub(super) fn optional_text(_: &str, v: &str) -> Result<Option<String>, ConfigError> {
    Ok((!v.is_empty()).then(|| v.to_owned()))
}

/// A secret, or unset when empty.
pub(super) fn optional_secret(_: &str, v: &str) -> Result<Option<Secret>, ConfigError> {
    Ok((!v.is_empty()).then(|| Secret(v.to_owned())))
}

/// A whole, non-negative number (or a ratio), surrounding spaces ignored.
pub(super) fn number<T: FromStr>(name: &str, v: &str) -> Result<T, ConfigError>
where
    T::Err: fmt::Display,
{
    v.trim()
        .parse()
        .map_err(|e| ConfigError::new(name, format!("{v:?}: {e}")))
}

/// A number, or unset when empty.
pub(super) fn optional_number<T: FromStr>(name: &str, v: &str) -> Result<Option<T>, ConfigError>
where
    T::Err: fmt::Display,
{
    if v.is_empty() {
        Ok(None)
    } else {
        number(name, v).map(Some)
    }
}

/// `on`/`off` (`true`, `1`, `yes` / `false`, `0`, `no`).
pub(super) fn switch(name: &str, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "1" | "yes" => Ok(true),
        "off" | "false" | "0" | "no" => Ok(false),
        _ => Err(ConfigError::new(name, format!("{v:?}: must be on or off"))),
    }
}

/// `v2` or `v3`.
pub(super) fn bucketing(
    name: &str,
    v: &str,
) -> Result<crate::flag::targeting::fractional::Bucketing, ConfigError> {
    crate::flag::targeting::fractional::Bucketing::parse(v)
        .ok_or_else(|| ConfigError::new(name, format!("{v:?}: must be v2 or v3")))
}

/// `stable`, `baseline` or `canary`.
pub(super) fn track(name: &str, v: &str) -> Result<Track, ConfigError> {
    Track::parse(v)
        .ok_or_else(|| ConfigError::new(name, format!("{v:?}: must be stable, baseline or canary")))
}

/// `text` or `json`.
pub(super) fn log_format(name: &str, v: &str) -> Result<LogFormat, ConfigError> {
    match v {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(ConfigError::new(
            name,
            format!("{v:?}: must be text or json"),
        )),
    }
}

/// `otlp`, `console` or `none`.
pub(super) fn traces_exporter(name: &str, v: &str) -> Result<Option<TracesExporter>, ConfigError> {
    Ok(Some(match v {
        "otlp" => TracesExporter::Otlp,
        "console" => TracesExporter::Console,
        "none" => TracesExporter::None,
        _ => {
            return Err(ConfigError::new(
                name,
                format!("{v:?}: must be otlp, console or none"),
            ));
        }
    }))
}

/// One of OpenTelemetry's sampler names.
pub(super) fn sampler(name: &str, v: &str) -> Result<Sampler, ConfigError> {
    Sampler::parse(v).ok_or_else(|| {
        ConfigError::new(
            name,
            format!(
                "{v:?}: must be always_on, always_off, traceidratio, parentbased_always_on, \
                 parentbased_always_off or parentbased_traceidratio"
            ),
        )
    })
}

/// `scope=secret,scope=secret`; a secret may itself contain `=`.
pub(super) fn tokens(name: &str, v: &str) -> Result<Vec<TokenConfig>, ConfigError> {
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

/// A comma-separated list, spaces and empty entries dropped.
pub(super) fn list(_: &str, v: &str) -> Result<Vec<String>, ConfigError> {
    Ok(v.split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(str::to_owned)
        .collect())
}

/// For a setting no variable sets (`env []`): never called.
pub(super) fn file_only<T>(name: &str, _: &str) -> Result<T, ConfigError> {
    Err(ConfigError::new(
        name,
        "is set in a configuration file only",
    ))
}
