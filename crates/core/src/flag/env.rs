//! The replica-local `env` overrides (`SWITCHYARD_FLAG_<KEY>`): emergency
//! values above everything else, read once at start.

use std::{
    borrow::Cow,
    collections::{BTreeMap, HashMap},
};

use serde_json::{Map, Value};

use super::{FlagDef, FlagType, targeting::fractional::Bucketing};

/// Returns the environment variable that overrides `key` on this replica:
/// `SWITCHYARD_FLAG_` and the key upper-cased, every character other than a
/// letter or digit turned into `_`.
pub fn env_name(key: &str) -> String {
    let mut s = String::from("SWITCHYARD_FLAG_");
    s.extend(key.chars().map(|c| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_uppercase()
        } else {
            '_'
        }
    }));
    s
}

/// What this replica alone sets: the `env` overrides of flag values, the
/// static context values added to every evaluation context, and the
/// `fractional` bucketing it serves.
#[derive(Debug, Clone, Default)]
pub struct EnvOverrides {
    /// Values by variable name (`SWITCHYARD_FLAG_<KEY>`).
    values: HashMap<String, Value>,
    /// The static context values (`context_values`).
    context: Map<String, Value>,
    /// The `fractional` bucketing (`fractional_bucketing`).
    bucketing: Bucketing,
}

impl EnvOverrides {
    /// Builds the overrides from `SWITCHYARD_FLAG_*` variables (full names).
    /// A value is read as JSON; text that is not JSON is a string.
    pub fn new(vars: &BTreeMap<String, String>) -> EnvOverrides {
        EnvOverrides {
            values: vars
                .iter()
                .map(|(k, v)| {
                    let value =
                        serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.clone()));
                    (k.clone(), value)
                })
                .collect(),
            context: Map::new(),
            bucketing: Bucketing::default(),
        }
    }

    /// The same, with `values` added to every evaluation context over the
    /// caller's (`context_values`, flagd's `--context-value`).
    pub fn with_context_values(mut self, values: Map<String, Value>) -> EnvOverrides {
        self.context = values;
        self
    }

    /// The same, serving `bucketing` for `fractional`
    /// (`fractional_bucketing`).
    pub fn with_bucketing(mut self, bucketing: Bucketing) -> EnvOverrides {
        self.bucketing = bucketing;
        self
    }

    /// The `fractional` bucketing served.
    pub fn bucketing(&self) -> Bucketing {
        self.bucketing
    }

    /// The static context values.
    pub fn context_values(&self) -> &Map<String, Value> {
        &self.context
    }

    /// `context` with the static context values over it (borrowed when
    /// there are none).
    pub fn context<'c>(&self, context: &'c Map<String, Value>) -> Cow<'c, Map<String, Value>> {
        if self.context.is_empty() {
            return Cow::Borrowed(context);
        }
        let mut m = context.clone();
        m.extend(self.context.iter().map(|(k, v)| (k.clone(), v.clone())));
        Cow::Owned(m)
    }

    /// A digest of every override, in name order: replicas with the same
    /// overrides have the same one (part of every listing's entity tag).
    pub fn fingerprint(&self) -> [u8; 32] {
        use sha2::Digest;
        let mut names: Vec<&String> = self.values.keys().collect();
        names.sort();
        let mut h = sha2::Sha256::new();
        for n in names {
            h.update(n.as_bytes());
            h.update(b"\0");
            h.update(self.values[n].to_string().as_bytes());
            h.update(b"\0");
        }
        // Answers depend on the static context values too.
        h.update(Value::Object(self.context.clone()).to_string().as_bytes());
        // And on the bucketing (v2 keeps the digest it had before v3).
        if self.bucketing != Bucketing::V2 {
            h.update(self.bucketing.as_str().as_bytes());
        }
        h.finalize().into()
    }

    /// Returns the override of `def` when one is set and has the flag's type.
    pub fn get(&self, def: &FlagDef) -> Option<&Value> {
        self.lookup(&def.key, def.value_type)
    }

    /// Returns the override of flag `key` when one is set and has type `ty`.
    pub(super) fn lookup(&self, key: &str, ty: FlagType) -> Option<&Value> {
        if self.values.is_empty() {
            return None;
        }
        let v = self.values.get(&env_name(key))?;
        (FlagType::of(v) == Some(ty)).then_some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names() {
        assert_eq!(env_name("new-ui.v2"), "SWITCHYARD_FLAG_NEW_UI_V2");
    }
}
