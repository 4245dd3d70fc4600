//! Feature flags: definitions, stored values, per-tenant overrides, effective
//! values with their source, and the watch.
//!
//! Every replica keeps the whole flag state in memory ([`state::FlagState`],
//! behind [`state::Flags`]) at a known revision; reads (get, list, evaluate,
//! snapshots) never touch the database. Writes go to the database
//! (`store.rs`), each in one transaction that takes the next global revision
//! and appends a change-log row that is self-contained: from it alone,
//! [`events_for`] derives what any tenant's subscriber must see. The follower
//! (`follower.rs`) applies rows in revision order to the state and hands them
//! to the watch hub; a resuming subscriber replays rows from the database
//! through the same function. `service.rs` holds the rules of every flag use
//! case, whatever the transport.

pub mod fanout;
pub mod hub;
pub mod listing;
pub mod openfeature;
pub mod service;
pub mod state;
pub mod store;
pub mod watch;

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use crate::{
    changelog::{self, Entry, FlagRecord, ValueType},
    error::{Error, Result},
};

/// The largest flag value, as compact JSON.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// The deepest a value may nest objects and lists (`{"a":{"b":1}}` is 2),
/// on every transport.
pub const MAX_VALUE_DEPTH: usize = 32;

/// How deep `v` nests objects and lists (a scalar is 0).
fn depth(v: &Value) -> usize {
    // Iterative, so a hostile value cannot overflow the stack here.
    let mut deepest = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((v, d)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(a) => Box::new(a.iter()),
            Value::Object(o) => Box::new(o.values()),
            _ => continue,
        };
        deepest = deepest.max(d + 1);
        stack.extend(children.map(|c| (c, d + 1)));
    }
    deepest
}
/// The longest flag key.
pub const MAX_KEY_LEN: usize = 128;
/// The longest description, in characters.
pub const MAX_DESCRIPTION_LEN: usize = 1000;
/// The page size of `ListFlags` when none is given.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// The largest page of `ListFlags`.
pub const MAX_PAGE_SIZE: usize = 1000;
/// The most bytes one page or one snapshot part holds, counted by
/// [`encoded_bound`] and [`def_bound`], when the message limit allows more:
/// about 1 MiB, well under the 4 MiB default limit of gRPC clients.
pub const MAX_PART_BYTES: usize = 1024 * 1024;

/// What a message holds besides its flags (revision, page token, framing):
/// a page or part is cut at the message limit minus this.
pub const ENVELOPE_BYTES: usize = 1024;

/// The room for flags in one message under a limit of `max_message_bytes`.
pub fn part_budget(max_message_bytes: usize) -> usize {
    max_message_bytes
        .saturating_sub(ENVELOPE_BYTES)
        .clamp(1, MAX_PART_BYTES)
}

/// A field's tag and length prefix at most.
const FIELD: usize = 1 + 5;

/// An upper bound of the protobuf encoding of `v` as a
/// `google.protobuf.Value` (a number is 9 bytes there, where its JSON may be
/// one), without its own tag and length.
fn value_bound(v: &Value) -> usize {
    // Iterative: values nest at most 32 deep, but this must not care.
    let mut total = 0;
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        total += FIELD
            + match v {
                Value::Null | Value::Bool(_) => 2,
                Value::Number(_) => 9,
                Value::String(s) => FIELD + s.len(),
                Value::Array(a) => {
                    stack.extend(a.iter());
                    FIELD + a.len() * FIELD
                }
                Value::Object(o) => {
                    stack.extend(o.values());
                    FIELD + o.keys().map(|k| 2 * FIELD + k.len() + FIELD).sum::<usize>()
                }
            };
    }
    total
}

/// An upper bound of the protobuf encoding of an effective flag (an
/// `EffectiveFlag` with its tag and length in a repeated field).
pub fn encoded_bound(e: &Effective) -> usize {
    FIELD + FIELD + e.flag.len() + FIELD + value_bound(&e.value) + FIELD + 8
}

/// An upper bound of the protobuf encoding of a flag's definition (a `Flag`
/// with its tag and length in a repeated field).
pub fn def_bound(d: &FlagDef) -> usize {
    FIELD
        + FIELD
        + d.key.len()
        + 2
        + FIELD
        + d.description.len()
        + FIELD
        + value_bound(&d.default)
        + d.stored.as_ref().map_or(0, |v| FIELD + value_bound(v))
        + 11
        + 2 * (FIELD + 11 + 6)
}

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

/// Checks that `v` has type `ty` and fits the size limit; `field` names it.
pub fn check_value(field: &str, v: &Value, ty: FlagType) -> Result<()> {
    match FlagType::of(v) {
        Some(t) if t == ty => {}
        Some(t) => {
            return Err(Error::invalid_argument(
                field,
                format!(
                    "is a {}, but the flag's type is {}",
                    t.as_str(),
                    ty.as_str()
                ),
            ));
        }
        None => {
            return Err(Error::invalid_argument(
                field,
                format!("must be a {}, not null", ty.as_str()),
            ));
        }
    }
    let nesting = depth(v);
    if nesting > MAX_VALUE_DEPTH {
        return Err(Error::invalid_argument(
            field,
            format!("nests objects and lists {nesting} deep; the limit is {MAX_VALUE_DEPTH}"),
        ));
    }
    let size = serde_json::to_string(v)
        .map(|s| s.len())
        .unwrap_or(usize::MAX);
    if size > MAX_VALUE_BYTES {
        return Err(Error::invalid_argument(
            field,
            format!("is {size} bytes as JSON; the limit is {MAX_VALUE_BYTES}"),
        ));
    }
    Ok(())
}

/// Checks a flag key: 1 to 128 characters of `A-Z a-z 0-9 . _ -`.
pub fn validate_key(field: &str, key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::invalid_argument(field, "must not be empty"));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(Error::invalid_argument(
            field,
            format!("must be at most {MAX_KEY_LEN} characters"),
        ));
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(Error::invalid_argument(
            field,
            "may contain only A-Z, a-z, 0-9, '.', '_' and '-'",
        ));
    }
    // A URL path segment of "." or ".." is removed by HTTP clients before it
    // is sent, so such a flag could never be reached over REST.
    if key == "." || key == ".." {
        return Err(Error::invalid_argument(
            field,
            "must not be \".\" or \"..\" (HTTP clients remove such path segments)",
        ));
    }
    Ok(())
}

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

/// What a change-log row says happened, in domain types, with everything a
/// subscriber of any tenant needs to derive its events.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// A flag was created or changed; `overridden` lists the tenants whose
    /// override of it hides the change.
    FlagUpsert {
        /// The flag after the change.
        flag: FlagDef,
        /// Tenants with an override of this flag at this revision.
        overridden: Vec<String>,
    },
    /// A flag and all its overrides were deleted.
    FlagDelete,
    /// A tenant's override was set.
    OverrideUpsert {
        /// The override's value.
        value: Value,
    },
    /// A tenant's override was removed; the tenant sees `flag`'s stored value or
    /// default again.
    OverrideDelete {
        /// The flag at this revision.
        flag: FlagDef,
    },
    /// A tenant was deleted with its overrides of `restored`.
    TenantDelete {
        /// The flags the tenant had overrides of, at this revision.
        restored: Vec<FlagDef>,
    },
    /// A change that does not affect flags (a tenant created or updated).
    Other,
}

/// A change-log row, in domain types.
#[derive(Debug, Clone)]
pub struct Change {
    /// Its global revision.
    pub revision: i64,
    /// Commit time, µs since the epoch.
    pub committed_at_us: i64,
    /// The tenant the change is confined to, if any.
    pub tenant_id: Option<String>,
    /// The flag concerned, if any.
    pub flag_key: Option<String>,
    /// What happened.
    pub payload: Payload,
    /// What the replica's state held before it, filled in as the change is
    /// applied; `None` for a change read back from the log (a resumed
    /// watch's replay), whose events are then sent as if every value had
    /// changed.
    pub prior: Option<Prior>,
}

/// The state a change replaced, so that an audience hears of it only when
/// its effective value changed.
#[derive(Debug, Clone, Default)]
pub struct Prior {
    /// The flag's definition before (`None`: it did not exist).
    pub flag: Option<FlagDef>,
    /// The tenant's overrides before: of the flag concerned, or all of them
    /// for a tenant deletion, by flag key.
    pub overrides: BTreeMap<String, Value>,
}

impl From<Entry> for Change {
    fn from(e: Entry) -> Change {
        let tenant_id = e.change.tenant_id().map(str::to_owned);
        let flag_key = e.change.flag_key().map(str::to_owned);
        let payload = match e.change {
            changelog::Change::FlagUpsert { flag, overridden } => Payload::FlagUpsert {
                flag: flag.into(),
                overridden,
            },
            changelog::Change::FlagDelete { .. } => Payload::FlagDelete,
            changelog::Change::OverrideSet { value, .. } => Payload::OverrideUpsert { value },
            changelog::Change::OverrideClear { flag, .. } => {
                Payload::OverrideDelete { flag: flag.into() }
            }
            changelog::Change::TenantUpsert { .. } => Payload::Other,
            changelog::Change::TenantDelete { restored, .. } => Payload::TenantDelete {
                restored: restored.into_iter().map(FlagDef::from).collect(),
            },
        };
        Change {
            revision: e.revision,
            committed_at_us: e.committed_at_us,
            tenant_id,
            flag_key,
            payload,
            prior: None,
        }
    }
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

/// One event for one subscriber.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The flag's effective value is now this.
    Upsert(Effective),
    /// The flag was deleted.
    Delete(String),
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
    fn lookup(&self, key: &str, ty: FlagType) -> Option<&Value> {
        if self.0.is_empty() {
            return None;
        }
        let v = self.0.get(&env_name(key))?;
        (FlagType::of(v) == Some(ty)).then_some(v)
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

/// Returns the events a subscriber of `tenant` (`None`: no tenant) sees for
/// `c`: an UPSERT only where the flag is new or its effective value (or the
/// value's source) changed for that audience, when the prior state is known.
pub fn events_for(env: &EnvOverrides, c: &Change, tenant: Option<&str>) -> Vec<Event> {
    let mine = c.tenant_id.as_deref().is_some_and(|t| Some(t) == tenant);
    let prior = c.prior.as_ref();
    // The audience's value of `key` before the change, when known: `None`
    // when unknown, `Some(None)` when the flag did not exist.
    let before = |key: &str, tenant_override: Option<&Value>| -> Option<Option<Effective>> {
        let p = prior?;
        Some(p.flag.as_ref().map(|d| {
            debug_assert_eq!(d.key, key);
            effective(env, d, tenant_override)
        }))
    };
    let upsert_if_changed = |old: Option<Option<Effective>>, new: Effective| match old {
        Some(Some(old)) if old == new => None,
        _ => Some(Event::Upsert(new)),
    };
    match &c.payload {
        Payload::FlagUpsert { flag, overridden } => {
            // A tenant whose override hides the change sees nothing (with an
            // env override its value is the env value either way).
            if tenant.is_some_and(|t| overridden.iter().any(|o| o == t)) {
                Vec::new()
            } else {
                upsert_if_changed(before(&flag.key, None), effective(env, flag, None))
                    .into_iter()
                    .collect()
            }
        }
        Payload::FlagDelete => c.flag_key.clone().map(Event::Delete).into_iter().collect(),
        Payload::OverrideUpsert { value } if mine => {
            let key = c.flag_key.clone().unwrap_or_default();
            let old = prior.map(|p| p.overrides.get(&key));
            let new = env_first(
                env,
                Effective {
                    flag: key.clone(),
                    value: value.clone(),
                    source: ValueSource::Tenant,
                },
            );
            upsert_if_changed(old.and_then(|o| before(&key, o)), new)
                .into_iter()
                .collect()
        }
        Payload::OverrideDelete { flag } if mine => {
            let old = prior.map(|p| p.overrides.get(&flag.key));
            upsert_if_changed(
                old.and_then(|o| before(&flag.key, o)),
                effective(env, flag, None),
            )
            .into_iter()
            .collect()
        }
        Payload::TenantDelete { restored } if mine => restored
            .iter()
            .filter_map(|f| {
                let old =
                    prior.map(|p| p.overrides.get(&f.key).map(|v| effective(env, f, Some(v))));
                upsert_if_changed(old, effective(env, f, None))
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The audience whose events a subscriber of `tenant` gets for `c`: its own
/// tenant when the change concerns it (an override or deletion of that
/// tenant, or a flag change its override hides), otherwise no tenant —
/// `events_for(env, c, tenant) == events_for(env, c, audience(c, tenant))`,
/// so subscribers of one audience can share the events and their encoding.
pub fn audience<'a>(c: &Change, tenant: Option<&'a str>) -> Option<&'a str> {
    let t = tenant?;
    let concerned = c.tenant_id.as_deref() == Some(t)
        || matches!(&c.payload, Payload::FlagUpsert { overridden, .. } if overridden.iter().any(|o| o == t));
    concerned.then_some(t)
}

/// Replaces a tenant value by the env override of the same flag, when set
/// (and of the same type).
fn env_first(env: &EnvOverrides, eff: Effective) -> Effective {
    let env_value = FlagType::of(&eff.value).and_then(|ty| env.lookup(&eff.flag, ty));
    match env_value {
        Some(v) => Effective {
            value: v.clone(),
            source: ValueSource::Env,
            flag: eff.flag,
        },
        None => eff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(key: &str, default: Value, stored: Option<Value>) -> FlagDef {
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

    #[test]
    fn env_names() {
        assert_eq!(env_name("new-ui.v2"), "SWITCHYARD_FLAG_NEW_UI_V2");
    }

    #[test]
    fn values_are_type_checked_and_bounded() {
        assert!(check_value("v", &json!(1.5), FlagType::Number).is_ok());
        let e = check_value("v", &json!("x"), FlagType::Bool).unwrap_err();
        assert!(e.message().starts_with("v: is a string"), "{}", e.message());
        assert!(check_value("v", &Value::Null, FlagType::Bool).is_err());
        let big = Value::String("x".repeat(MAX_VALUE_BYTES));
        assert!(check_value("v", &big, FlagType::String).is_err());
    }

    fn nested(levels: usize, list: bool) -> Value {
        (0..levels).fold(json!(true), |v, _| {
            if list { json!([v]) } else { json!({ "a": v }) }
        })
    }

    #[test]
    fn values_nest_at_most_32_deep_in_objects_and_lists() {
        assert_eq!(depth(&json!(1)), 0);
        assert_eq!(depth(&json!({"a": [1, {"b": 2}], "c": 3})), 3);
        for list in [false, true] {
            let ty = if list {
                FlagType::List
            } else {
                FlagType::Object
            };
            assert!(check_value("v", &nested(MAX_VALUE_DEPTH, list), ty).is_ok());
            let e = check_value("v", &nested(MAX_VALUE_DEPTH + 1, list), ty).unwrap_err();
            assert_eq!(
                e.message(),
                "v: nests objects and lists 33 deep; the limit is 32"
            );
        }
    }

    #[test]
    fn dot_segments_are_not_keys() {
        for key in [".", ".."] {
            let e = validate_key("flag.key", key).unwrap_err();
            assert!(e.message().contains("HTTP clients"), "{}", e.message());
        }
        for key in ["...", ".a", "a.", "a..b"] {
            assert!(validate_key("flag.key", key).is_ok(), "{key}");
        }
    }

    #[test]
    fn an_upsert_is_sent_only_where_the_effective_value_changed() {
        let env = EnvOverrides::default();
        let old = def("f", json!(1), Some(json!(5)));
        let upsert = |flag: FlagDef, prior: &FlagDef| Change {
            revision: 7,
            committed_at_us: 0,
            tenant_id: None,
            flag_key: Some("f".into()),
            payload: Payload::FlagUpsert {
                flag,
                overridden: Vec::new(),
            },
            prior: Some(Prior {
                flag: Some(prior.clone()),
                overrides: BTreeMap::new(),
            }),
        };
        // The description, or the default under a stored value: nobody's
        // value changed.
        let mut described = old.clone();
        described.description = "now documented".into();
        assert!(events_for(&env, &upsert(described, &old), None).is_empty());
        let new_default = def("f", json!(2), Some(json!(5)));
        assert!(events_for(&env, &upsert(new_default, &old), Some("a")).is_empty());
        // The stored value: everyone's did.
        let stored = def("f", json!(1), Some(json!(6)));
        assert_eq!(
            events_for(&env, &upsert(stored.clone(), &old), None).len(),
            1
        );
        // A replayed change (prior unknown) is sent.
        let mut replayed = upsert(def("f", json!(2), Some(json!(5))), &old);
        replayed.prior = None;
        assert_eq!(events_for(&env, &replayed, None).len(), 1);
        // An override set to the value the tenant already had from the store
        // changes its source, so it is sent; set again to the same, it is not.
        let set = |prior_override: Option<Value>| Change {
            revision: 8,
            committed_at_us: 0,
            tenant_id: Some("a".into()),
            flag_key: Some("f".into()),
            payload: Payload::OverrideUpsert { value: json!(6) },
            prior: Some(Prior {
                flag: Some(stored.clone()),
                overrides: prior_override
                    .map(|v| ("f".to_owned(), v))
                    .into_iter()
                    .collect(),
            }),
        };
        assert_eq!(events_for(&env, &set(None), Some("a")).len(), 1);
        assert!(events_for(&env, &set(Some(json!(6))), Some("a")).is_empty());
        // A tenant deletion restores only the flags whose value differs.
        let other = def("g", json!("x"), None);
        let deleted = Change {
            revision: 9,
            committed_at_us: 0,
            tenant_id: Some("a".into()),
            flag_key: None,
            payload: Payload::TenantDelete {
                restored: vec![stored.clone(), other.clone()],
            },
            prior: Some(Prior {
                flag: None,
                overrides: [("f".to_owned(), json!(6)), ("g".to_owned(), json!("y"))].into(),
            }),
        };
        let events = events_for(&env, &deleted, Some("a"));
        assert_eq!(
            events.len(),
            2,
            "sources change from tenant back to store/default"
        );
        let mut same_source = deleted.clone();
        same_source.payload = Payload::TenantDelete {
            restored: vec![other],
        };
        same_source.prior = Some(Prior {
            flag: None,
            overrides: [("g".to_owned(), json!("y"))].into(),
        });
        assert_eq!(events_for(&env, &same_source, Some("a")).len(), 1);
        // Every subscriber gets its audience's events.
        for c in [
            upsert(stored.clone(), &old),
            set(None),
            deleted.clone(),
            same_source,
        ] {
            for t in [None, Some("a"), Some("b")] {
                assert_eq!(
                    events_for(&env, &c, t),
                    events_for(&env, &c, audience(&c, t)),
                    "{t:?} at {}",
                    c.revision
                );
            }
        }
    }

    #[test]
    fn subscribers_see_only_their_tenant() {
        let env = EnvOverrides::default();
        let c = Change {
            revision: 5,
            committed_at_us: 0,
            tenant_id: Some("a".into()),
            flag_key: Some("f".into()),
            payload: Payload::OverrideUpsert { value: json!(true) },
            prior: None,
        };
        assert_eq!(events_for(&env, &c, Some("a")).len(), 1);
        assert!(events_for(&env, &c, Some("b")).is_empty());
        assert!(events_for(&env, &c, None).is_empty());
        let c = Change {
            revision: 6,
            committed_at_us: 0,
            tenant_id: None,
            flag_key: Some("f".into()),
            payload: Payload::FlagUpsert {
                flag: def("f", json!(false), Some(json!(true))),
                overridden: vec!["a".into()],
            },
            prior: None,
        };
        assert!(
            events_for(&env, &c, Some("a")).is_empty(),
            "a's override hides it"
        );
        assert_eq!(events_for(&env, &c, Some("b")).len(), 1);
        assert_eq!(audience(&c, Some("a")), Some("a"));
        assert_eq!(audience(&c, Some("b")), None);
        for t in [None, Some("a"), Some("b")] {
            assert_eq!(
                events_for(&env, &c, t),
                events_for(&env, &c, audience(&c, t))
            );
        }
    }
}
