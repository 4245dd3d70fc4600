//! The replica-local `env` overrides (`SWITCHYARD_FLAG_<KEY>`): emergency
//! values above everything else, read once at start.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::{FlagDef, FlagType};

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

/// The replica-local `env` overrides.
#[derive(Debug, Clone, Default)]
pub struct EnvOverrides(HashMap<String, Value>);

impl EnvOverrides {
    /// Builds the overrides from `SWITCHYARD_FLAG_*` variables (full names).
    /// A value is read as JSON; text that is not JSON is a string.
    pub fn new(vars: &BTreeMap<String, String>) -> EnvOverrides {
        EnvOverrides(
            vars.iter()
                .map(|(k, v)| {
                    let value =
                        serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.clone()));
                    (k.clone(), value)
                })
                .collect(),
        )
    }

    /// A digest of every override, in name order: replicas with the same
    /// overrides have the same one (part of every listing's entity tag).
    pub fn fingerprint(&self) -> [u8; 32] {
        use sha2::Digest;
        let mut names: Vec<&String> = self.0.keys().collect();
        names.sort();
        let mut h = sha2::Sha256::new();
        for n in names {
            h.update(n.as_bytes());
            h.update(b"\0");
            h.update(self.0[n].to_string().as_bytes());
            h.update(b"\0");
        }
        h.finalize().into()
    }

    /// Returns the override of `def` when one is set and has the flag's type.
    pub fn get(&self, def: &FlagDef) -> Option<&Value> {
        self.lookup(&def.key, def.value_type)
    }

    /// Returns the override of flag `key` when one is set and has type `ty`.
    pub(super) fn lookup(&self, key: &str, ty: FlagType) -> Option<&Value> {
        if self.0.is_empty() {
            return None;
        }
        let v = self.0.get(&env_name(key))?;
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
