//! The flag model: a flag's type, its definition with its stored value,
//! where an effective value comes from, and the precedence that picks it
//! (`env` > tenant > stored > default, [`effective`]); with the conversions
//! from and to the change log's records.

use std::{collections::BTreeMap, sync::Arc};

use serde_json::{Map, Value};

use super::{
    EnvOverrides,
    resolve::resolve,
    targeting::logic::{self, CompileError, Program},
};
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

/// Whether a flag is served (flagd's `state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Status {
    /// Evaluated as its definition says.
    #[default]
    Enabled,
    /// Answers `DISABLED` with no value: the caller's own default applies.
    Disabled,
}

impl Status {
    /// Returns flagd's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Enabled => "ENABLED",
            Status::Disabled => "DISABLED",
        }
    }

    /// Parses flagd's name.
    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "ENABLED" => Some(Status::Enabled),
            "DISABLED" => Some(Status::Disabled),
            _ => None,
        }
    }
}

/// A flag's targeting rule: the JSON as written (what is stored, listed and
/// exported) and its compiled form, made once when the definition is built
/// (write, load or change-log row) and shared by every evaluation.
#[derive(Debug, Clone)]
pub struct Rule {
    source: Value,
    compiled: Arc<Program>,
}

impl Rule {
    /// Compiles `source` (the flag's `targeting`; positions in errors are
    /// JSON pointers from `/targeting`).
    pub fn compile(source: Value) -> std::result::Result<Rule, CompileError> {
        let compiled = Arc::new(logic::compile(&source, "/targeting")?);
        Ok(Rule { source, compiled })
    }

    /// The rule as written.
    pub fn source(&self) -> &Value {
        &self.source
    }

    /// A rule read back from the database or the change log: one that no
    /// longer compiles fails every evaluation (flagd's `PARSE_ERROR`).
    pub fn load(source: Value) -> Rule {
        let compiled = logic::compile(&source, "/targeting")
            .unwrap_or_else(|e| Program::invalid(format!("{}: {}", e.at, e.message)));
        Rule {
            source,
            compiled: Arc::new(compiled),
        }
    }

    /// The compiled rule.
    pub fn program(&self) -> &Program {
        &self.compiled
    }
}

impl PartialEq for Rule {
    fn eq(&self, other: &Rule) -> bool {
        self.source == other.source
    }
}

/// The variant a legacy `default_value` reads and writes.
pub const DEFAULT_VARIANT: &str = "default";
/// The variant a legacy `stored_value` reads and writes; setting it makes it
/// the default variant, clearing it makes [`DEFAULT_VARIANT`] the default.
pub const STORED_VARIANT: &str = "store";

/// A flag's definition, in flagd's model: a state, named variants of the
/// flag's type, the variant served when no rule picks one, an optional
/// targeting rule and scalar metadata.
///
/// Flags written with Switchyard's first API (a default and a stored value)
/// are the same model: their variants are `default` and, when a value is
/// stored, `store`, which is then the default variant.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagDef {
    /// The immutable key.
    pub key: String,
    /// The immutable type.
    pub value_type: FlagType,
    /// What the flag controls.
    pub description: String,
    /// Whether the flag is served.
    pub status: Status,
    /// The variants by name, each of the flag's type.
    pub variants: BTreeMap<String, Value>,
    /// The variant served when targeting picks none (`None`: no value, the
    /// caller's own default applies).
    pub default_variant: Option<String>,
    /// The targeting rule, if any.
    pub targeting: Option<Rule>,
    /// Scalar metadata (strings, numbers, booleans), returned with answers.
    pub metadata: Map<String, Value>,
    /// The global revision of the flag's last change.
    pub revision: i64,
    /// Creation time, µs since the epoch.
    pub created_at_us: i64,
    /// Last change, µs since the epoch.
    pub updated_at_us: i64,
}

impl FlagDef {
    /// A flag as Switchyard's first API wrote it: variant `default`, and
    /// `store` (the default variant) when a value is stored.
    pub fn legacy(
        key: String,
        value_type: FlagType,
        description: String,
        default: Value,
        stored: Option<Value>,
    ) -> FlagDef {
        let mut variants = BTreeMap::new();
        variants.insert(DEFAULT_VARIANT.to_owned(), default);
        let default_variant = match stored {
            Some(v) => {
                variants.insert(STORED_VARIANT.to_owned(), v);
                STORED_VARIANT
            }
            None => DEFAULT_VARIANT,
        };
        FlagDef {
            key,
            value_type,
            description,
            status: Status::Enabled,
            variants,
            default_variant: Some(default_variant.to_owned()),
            targeting: None,
            metadata: Map::new(),
            revision: 0,
            created_at_us: 0,
            updated_at_us: 0,
        }
    }

    /// The legacy `default_value`: the variant `default`.
    pub fn default_value(&self) -> Option<&Value> {
        self.variants.get(DEFAULT_VARIANT)
    }

    /// The legacy `stored_value`: the variant `store` when it is the
    /// default variant.
    pub fn stored_value(&self) -> Option<&Value> {
        match self.default_variant.as_deref() {
            Some(STORED_VARIANT) => self.variants.get(STORED_VARIANT),
            _ => None,
        }
    }

    /// Sets the legacy stored value (`None` clears it).
    pub fn set_stored(&mut self, stored: Option<Value>) {
        match stored {
            Some(v) => {
                self.variants.insert(STORED_VARIANT.to_owned(), v);
                self.default_variant = Some(STORED_VARIANT.to_owned());
            }
            None => {
                if self.default_variant.as_deref() == Some(STORED_VARIANT) {
                    self.variants.remove(STORED_VARIANT);
                    self.default_variant = self
                        .variants
                        .contains_key(DEFAULT_VARIANT)
                        .then(|| DEFAULT_VARIANT.to_owned());
                }
            }
        }
    }

    /// Whether the flag is exactly what `default_value` and `stored_value`
    /// say: variants `default` and maybe `store`, the latter the default
    /// variant when present, and no rule. Such a flag's answers list no
    /// variants (they would repeat the two values).
    pub fn is_legacy_shaped(&self) -> bool {
        let stored = self.variants.contains_key(STORED_VARIANT);
        let expected_default = if stored {
            STORED_VARIANT
        } else {
            DEFAULT_VARIANT
        };
        self.targeting.is_none()
            && self.variants.contains_key(DEFAULT_VARIANT)
            && self.variants.len() == 1 + usize::from(stored)
            && self.default_variant.as_deref() == Some(expected_default)
    }

    /// The value of the default variant, if there is one.
    pub fn default_variant_value(&self) -> Option<(&str, &Value)> {
        let name = self.default_variant.as_deref()?;
        self.variants.get(name).map(|v| (name, v))
    }
}

/// Where an effective value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueSource {
    /// `SWITCHYARD_FLAG_<KEY>` on this replica.
    Env,
    /// The flag is disabled: no value.
    Disabled,
    /// The tenant's override.
    Tenant,
    /// The variant the targeting rule picked.
    Targeting,
    /// The stored value (the variant `store`, the default variant).
    Store,
    /// The default variant (or no value when the flag has none).
    Default,
    /// The targeting rule failed: no value.
    Error,
}

impl ValueSource {
    /// Returns the name reported to clients.
    pub fn as_str(self) -> &'static str {
        match self {
            ValueSource::Env => "env",
            ValueSource::Disabled => "disabled",
            ValueSource::Tenant => "tenant",
            ValueSource::Targeting => "targeting",
            ValueSource::Store => "store",
            ValueSource::Default => "default",
            ValueSource::Error => "error",
        }
    }
}

/// A flag's effective value for one tenant (or none), in the default
/// evaluation context (the tenant's id, no targeting key).
#[derive(Debug, Clone, PartialEq)]
pub struct Effective {
    /// The flag's key.
    pub flag: String,
    /// The value (`Null`: none; the caller's own default applies).
    pub value: Value,
    /// Where it comes from.
    pub source: ValueSource,
    /// The variant served (`None`: no value).
    pub variant: Option<String>,
    /// Whether the flag has a targeting rule (other contexts may get other
    /// values).
    pub targeting: bool,
}

impl From<FlagRecord> for FlagDef {
    /// A recorded rule that this release no longer compiles evaluates to
    /// flagd's `PARSE_ERROR` rather than making the row unreadable.
    fn from(r: FlagRecord) -> FlagDef {
        FlagDef {
            key: r.key,
            value_type: r.value_type.into(),
            description: r.description,
            status: Status::parse(&r.state).unwrap_or(Status::Enabled),
            variants: r.variants,
            default_variant: r.default_variant,
            targeting: r.targeting.map(Rule::load),
            metadata: r.metadata,
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
            state: d.status.as_str().to_owned(),
            variants: d.variants.clone(),
            default_variant: d.default_variant.clone(),
            targeting: d.targeting.as_ref().map(|r| r.source().clone()),
            metadata: d.metadata.clone(),
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

/// Returns `def`'s effective value for `tenant` (whose override is
/// `tenant_value`) in the default evaluation context: the tenant's id and
/// the static context values, so a rule on the targeting key gives its
/// default.
pub fn effective(
    env: &EnvOverrides,
    def: &FlagDef,
    tenant: Option<&str>,
    tenant_value: Option<&Value>,
) -> Effective {
    effective_in(env, def, tenant, tenant_value, &env.context(&Map::new()))
}

/// [`effective`] in `context` (the static context values already in it).
pub fn effective_in(
    env: &EnvOverrides,
    def: &FlagDef,
    tenant: Option<&str>,
    tenant_value: Option<&Value>,
    context: &Map<String, Value>,
) -> Effective {
    let r = resolve(
        env,
        def,
        tenant,
        tenant_value,
        context,
        super::resolve::now_s(),
        None,
    );
    Effective {
        flag: def.key.clone(),
        value: r.value.into_owned(),
        source: r.source,
        variant: r.variant.map(std::borrow::Cow::into_owned),
        targeting: def.targeting.is_some(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;

    pub(crate) fn def(key: &str, default: Value, stored: Option<Value>) -> FlagDef {
        let mut d = FlagDef::legacy(
            key.into(),
            FlagType::of(&default).unwrap(),
            String::new(),
            default,
            stored,
        );
        d.revision = 1;
        d
    }

    #[test]
    fn precedence_is_env_tenant_store_default() {
        let env =
            EnvOverrides::new(&[("SWITCHYARD_FLAG_NEW_UI".to_string(), "true".to_string())].into());
        let d = def("new-ui", json!(false), None);
        let none = EnvOverrides::default();
        assert_eq!(
            effective(&none, &d, None, None).source,
            ValueSource::Default
        );
        let s = def("new-ui", json!(false), Some(json!(true)));
        assert_eq!(effective(&none, &s, None, None).source, ValueSource::Store);
        assert_eq!(
            effective(&none, &s, Some("a"), Some(&json!(false))).source,
            ValueSource::Tenant
        );
        let e = effective(&env, &s, Some("a"), Some(&json!(false)));
        assert_eq!((e.source, e.value), (ValueSource::Env, json!(true)));
        // An env value of the wrong type is ignored.
        let env = EnvOverrides::new(
            &[("SWITCHYARD_FLAG_NEW_UI".to_string(), "maybe".to_string())].into(),
        );
        assert_eq!(effective(&env, &s, None, None).source, ValueSource::Store);
    }

    #[test]
    fn legacy_values_are_the_default_and_stored_variants() {
        let mut d = def("k", json!(1), None);
        assert_eq!(d.default_value(), Some(&json!(1)));
        assert_eq!(d.stored_value(), None);
        d.set_stored(Some(json!(2)));
        assert_eq!(d.default_variant.as_deref(), Some(STORED_VARIANT));
        assert_eq!(d.stored_value(), Some(&json!(2)));
        d.set_stored(None);
        assert_eq!(d.default_variant.as_deref(), Some(DEFAULT_VARIANT));
        assert!(!d.variants.contains_key(STORED_VARIANT));
    }
}
