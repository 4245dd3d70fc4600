//! The flag model: a flag's type, its definition with its stored value,
//! where an effective value comes from, and the precedence that picks it
//! (`env` > tenant > stored > default, [`effective`]); with the conversions
//! from and to the change log's records.

use serde_json::Value;

use super::EnvOverrides;
use crate::changelog::{FlagRecord, ValueType};

/// The type every value of a flag has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagType {
    /// `true` / `false`.
    Bool,
    /// A finite double.
    Number,
    /// A string.
    String,
    /// A JSON array.
    List,
    /// A JSON object.
    Object,
}

impl FlagType {
    /// Returns the stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            FlagType::Bool => "bool",
            FlagType::Number => "number",
            FlagType::String => "string",
            FlagType::List => "list",
            FlagType::Object => "object",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<FlagType> {
        Some(match s {
            "bool" => FlagType::Bool,
            "number" => FlagType::Number,
            "string" => FlagType::String,
            "list" => FlagType::List,
            "object" => FlagType::Object,
            _ => return None,
        })
    }

    /// Returns the type of a JSON value (`None` for null).
    pub fn of(v: &Value) -> Option<FlagType> {
        Some(match v {
            Value::Null => return None,
            Value::Bool(_) => FlagType::Bool,
            Value::Number(_) => FlagType::Number,
            Value::String(_) => FlagType::String,
            Value::Array(_) => FlagType::List,
            Value::Object(_) => FlagType::Object,
        })
    }
}

/// A flag's definition and stored value.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagDef {
    /// The immutable key.
    pub key: String,
    /// The immutable type.
    pub value_type: FlagType,
    /// What the flag controls.
    pub description: String,
    /// The declared default.
    pub default: Value,
    /// The stored value, if any.
    pub stored: Option<Value>,
    /// The global revision of the flag's last change.
    pub revision: i64,
    /// Creation time, µs since the epoch.
    pub created_at_us: i64,
    /// Last change, µs since the epoch.
    pub updated_at_us: i64,
}

/// Where an effective value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueSource {
    /// `SWITCHYARD_FLAG_<KEY>` on this replica.
    Env,
    /// The tenant's override.
    Tenant,
    /// The stored value.
    Store,
    /// The declared default.
    Default,
}

impl ValueSource {
    /// Returns the name reported to clients.
    pub fn as_str(self) -> &'static str {
        match self {
            ValueSource::Env => "env",
            ValueSource::Tenant => "tenant",
            ValueSource::Store => "store",
            ValueSource::Default => "default",
        }
    }
}

/// A flag's effective value for one tenant (or none).
#[derive(Debug, Clone, PartialEq)]
pub struct Effective {
    /// The flag's key.
    pub flag: String,
    /// The value.
    pub value: Value,
    /// Where it comes from.
    pub source: ValueSource,
}

impl From<FlagRecord> for FlagDef {
    fn from(r: FlagRecord) -> FlagDef {
        FlagDef {
            key: r.key,
            value_type: r.value_type.into(),
            description: r.description,
            default: r.default,
            stored: r.stored,
            revision: r.revision,
            created_at_us: r.created_at_us,
            updated_at_us: r.updated_at_us,
        }
    }
}

impl From<&FlagDef> for FlagRecord {
    fn from(d: &FlagDef) -> FlagRecord {
        FlagRecord {
            key: d.key.clone(),
            value_type: d.value_type.into(),
            description: d.description.clone(),
            default: d.default.clone(),
            stored: d.stored.clone(),
            revision: d.revision,
            created_at_us: d.created_at_us,
            updated_at_us: d.updated_at_us,
        }
    }
}

impl From<ValueType> for FlagType {
    fn from(t: ValueType) -> FlagType {
        match t {
            ValueType::Bool => FlagType::Bool,
            ValueType::Number => FlagType::Number,
            ValueType::String => FlagType::String,
            ValueType::List => FlagType::List,
            ValueType::Object => FlagType::Object,
        }
    }
}

impl From<FlagType> for ValueType {
    fn from(t: FlagType) -> ValueType {
        match t {
            FlagType::Bool => ValueType::Bool,
            FlagType::Number => ValueType::Number,
            FlagType::String => ValueType::String,
            FlagType::List => ValueType::List,
            FlagType::Object => ValueType::Object,
        }
    }
}

/// Returns `def`'s effective value for a tenant whose override is `tenant_value`.
pub fn effective(env: &EnvOverrides, def: &FlagDef, tenant_value: Option<&Value>) -> Effective {
    let (value, source) = if let Some(v) = env.get(def) {
        (v.clone(), ValueSource::Env)
    } else if let Some(v) = tenant_value {
        (v.clone(), ValueSource::Tenant)
    } else if let Some(v) = &def.stored {
        (v.clone(), ValueSource::Store)
    } else {
        (def.default.clone(), ValueSource::Default)
    };
    Effective {
        flag: def.key.clone(),
        value,
        source,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;

    pub(crate) fn def(key: &str, default: Value, stored: Option<Value>) -> FlagDef {
        FlagDef {
            key: key.into(),
            value_type: FlagType::of(&default).unwrap(),
            description: String::new(),
            default,
            stored,
            revision: 1,
            created_at_us: 0,
            updated_at_us: 0,
        }
    }

    #[test]
    fn precedence_is_env_tenant_store_default() {
        let env =
            EnvOverrides::new(&[("SWITCHYARD_FLAG_NEW_UI".to_string(), "true".to_string())].into());
        let d = def("new-ui", json!(false), None);
        let none = EnvOverrides::default();
        assert_eq!(effective(&none, &d, None).source, ValueSource::Default);
        let s = def("new-ui", json!(false), Some(json!(true)));
        assert_eq!(effective(&none, &s, None).source, ValueSource::Store);
        assert_eq!(
            effective(&none, &s, Some(&json!(false))).source,
            ValueSource::Tenant
        );
        let e = effective(&env, &s, Some(&json!(false)));
        assert_eq!((e.source, e.value), (ValueSource::Env, json!(true)));
        // An env value of the wrong type is ignored.
        let env = EnvOverrides::new(
            &[("SWITCHYARD_FLAG_NEW_UI".to_string(), "maybe".to_string())].into(),
        );
        assert_eq!(effective(&env, &s, None).source, ValueSource::Store);
    }
}
