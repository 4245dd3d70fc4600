//! Feature flags: definitions, stored values, per-tenant overrides, effective
//! values with their source, and the watch.
//!
//! Every replica keeps the whole flag state in memory ([`FlagState`], behind
//! [`Flags`]) at a known revision; reads (get, list, evaluate, snapshots) never
//! touch the database. Writes go to the database (`store.rs`), each in one
//! transaction that takes the next global revision and appends a change-log
//! row whose JSON [`Payload`] is self-contained: from it alone, [`events_for`]
//! derives what any tenant's subscriber must see. The follower (`sync.rs`)
//! applies rows in revision order to the state and hands them to the watch
//! hub; a resuming subscriber replays rows from the database through the same
//! function.

pub mod store;
pub mod watch;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, RwLock},
};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::broadcast;

use crate::error::{Error, Result};

/// The largest flag value, as compact JSON.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// The longest flag key.
pub const MAX_KEY_LEN: usize = 128;
/// The longest description, in characters.
pub const MAX_DESCRIPTION_LEN: usize = 1000;
/// The page size of `ListFlags` when none is given.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// The largest page of `ListFlags`.
pub const MAX_PAGE_SIZE: usize = 1000;
/// The most value bytes (as JSON) in one page or one snapshot part, so that a
/// message stays well under the 4 MiB default limit of gRPC clients.
pub const MAX_PART_BYTES: usize = 1024 * 1024;

/// Returns the size of an effective value as JSON, plus its key.
pub fn approx_size(e: &Effective) -> usize {
    e.flag.len() + serde_json::to_string(&e.value).map_or(0, |s| s.len())
}

/// The type every value of a flag has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlagDef {
    /// The immutable key.
    pub key: String,
    /// The immutable type.
    #[serde(rename = "type")]
    pub value_type: FlagType,
    /// What the flag controls.
    #[serde(default)]
    pub description: String,
    /// The declared default.
    pub default: Value,
    /// The stored value, if any.
    #[serde(default)]
    pub stored: Option<Value>,
    /// The global revision of the flag's last change.
    pub revision: i64,
    /// Creation time, µs since the epoch.
    pub created_at_us: i64,
    /// Last change, µs since the epoch.
    pub updated_at_us: i64,
}

/// Where an effective value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// `SWITCHYARD_FLAG_<KEY>` on this replica.
    Env,
    /// The tenant's override.
    Tenant,
    /// The stored value.
    Store,
    /// The declared default.
    Default,
}

impl Source {
    /// Returns the name reported to clients.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Env => "env",
            Source::Tenant => "tenant",
            Source::Store => "store",
            Source::Default => "default",
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
    pub source: Source,
}

/// What a change-log row says happened, with everything a subscriber of any
/// tenant needs to derive its events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
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

/// A change-log row, parsed.
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
}

/// One event for one subscriber.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The flag's effective value is now this.
    Upsert(Effective),
    /// The flag was deleted.
    Delete(String),
}

/// The whole flag state of a replica at `revision`.
#[derive(Debug, Default, Clone)]
pub struct FlagState {
    /// Every change up to this revision is applied.
    pub revision: i64,
    /// Flags by key.
    pub flags: BTreeMap<String, FlagDef>,
    /// Overrides: tenant → flag → (value, revision of its last change).
    pub overrides: HashMap<String, HashMap<String, (Value, i64)>>,
}

impl FlagState {
    /// Applies one change. Changes must come in revision order.
    pub fn apply(&mut self, c: &Change) {
        debug_assert!(c.revision > self.revision, "changes are applied in order");
        let key = c.flag_key.clone().unwrap_or_default();
        let tenant = c.tenant_id.clone().unwrap_or_default();
        match &c.payload {
            Payload::FlagUpsert { flag, .. } => {
                self.flags.insert(flag.key.clone(), flag.clone());
            }
            Payload::FlagDelete => {
                self.flags.remove(&key);
                for o in self.overrides.values_mut() {
                    o.remove(&key);
                }
            }
            Payload::OverrideUpsert { value } => {
                self.overrides
                    .entry(tenant)
                    .or_default()
                    .insert(key, (value.clone(), c.revision));
            }
            Payload::OverrideDelete { .. } => {
                if let Some(o) = self.overrides.get_mut(&tenant) {
                    o.remove(&key);
                }
            }
            Payload::TenantDelete { .. } => {
                self.overrides.remove(&tenant);
            }
            Payload::Other => {}
        }
        self.revision = c.revision;
    }
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
        (v.clone(), Source::Env)
    } else if let Some(v) = tenant_value {
        (v.clone(), Source::Tenant)
    } else if let Some(v) = &def.stored {
        (v.clone(), Source::Store)
    } else {
        (def.default.clone(), Source::Default)
    };
    Effective {
        flag: def.key.clone(),
        value,
        source,
    }
}

/// Returns the events a subscriber of `tenant` (`None`: no tenant) sees for `c`.
pub fn events_for(env: &EnvOverrides, c: &Change, tenant: Option<&str>) -> Vec<Event> {
    let mine = c.tenant_id.as_deref().is_some_and(|t| Some(t) == tenant);
    match &c.payload {
        Payload::FlagUpsert { flag, overridden } => {
            // A tenant whose override hides the change sees nothing (with an
            // env override its value is the env value either way).
            if tenant.is_some_and(|t| overridden.iter().any(|o| o == t)) {
                Vec::new()
            } else {
                vec![Event::Upsert(effective(env, flag, None))]
            }
        }
        Payload::FlagDelete => c.flag_key.clone().map(Event::Delete).into_iter().collect(),
        Payload::OverrideUpsert { value } if mine => vec![Event::Upsert(env_first(
            env,
            Effective {
                flag: c.flag_key.clone().unwrap_or_default(),
                value: value.clone(),
                source: Source::Tenant,
            },
        ))],
        Payload::OverrideDelete { flag } if mine => vec![Event::Upsert(effective(env, flag, None))],
        Payload::TenantDelete { restored } if mine => restored
            .iter()
            .map(|f| Event::Upsert(effective(env, f, None)))
            .collect(),
        _ => Vec::new(),
    }
}

/// Replaces a tenant value by the env override of the same flag, when set
/// (and of the same type).
fn env_first(env: &EnvOverrides, eff: Effective) -> Effective {
    let env_value = FlagType::of(&eff.value).and_then(|ty| env.lookup(&eff.flag, ty));
    match env_value {
        Some(v) => Effective {
            value: v.clone(),
            source: Source::Env,
            flag: eff.flag,
        },
        None => eff,
    }
}

/// What the watch hub broadcasts to every subscriber of a replica.
#[derive(Debug, Clone)]
pub enum HubMessage {
    /// A change, applied to the state before it is sent.
    Change(Arc<Change>),
    /// Nothing to report; every change up to this revision has been sent.
    Heartbeat(i64),
    /// The state was reloaded whole: every subscriber takes a new snapshot.
    Reset,
}

/// The flag component of a replica: the in-memory state, the `env` overrides
/// and the watch hub.
pub struct Flags {
    state: RwLock<FlagState>,
    env: EnvOverrides,
    hub: broadcast::Sender<HubMessage>,
}

impl std::fmt::Debug for Flags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flags")
            .field("revision", &self.revision())
            .finish_non_exhaustive()
    }
}

impl Flags {
    /// Creates the component over a loaded state; the hub keeps at most
    /// `queue` messages for a subscriber that falls behind.
    pub fn new(state: FlagState, env: EnvOverrides, queue: usize) -> Flags {
        Flags {
            state: RwLock::new(state),
            env,
            hub: broadcast::channel(queue.max(1)).0,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, FlagState> {
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Returns the revision of the state.
    pub fn revision(&self) -> i64 {
        self.read().revision
    }

    /// Returns the `env` overrides.
    pub fn env(&self) -> &EnvOverrides {
        &self.env
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, FlagState> {
        self.state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies a change to the state and sends it to every subscriber. The
    /// send happens under the state lock, so the hub carries changes in
    /// revision order and a heartbeat never overtakes a change.
    pub fn apply(&self, change: Change) {
        let mut state = self.write();
        if change.revision <= state.revision {
            return;
        }
        state.apply(&change);
        let _ = self.hub.send(HubMessage::Change(Arc::new(change)));
    }

    /// Replaces the whole state (after the change log was pruned past this
    /// replica's revision) and tells every subscriber to take a snapshot.
    pub fn replace(&self, new: FlagState) {
        let mut state = self.write();
        *state = new;
        let _ = self.hub.send(HubMessage::Reset);
    }

    /// Sends a heartbeat with the state's revision.
    pub fn heartbeat(&self) {
        let state = self.read();
        let _ = self.hub.send(HubMessage::Heartbeat(state.revision));
    }

    /// Subscribes to the hub; subscribe before reading a snapshot so that
    /// nothing after it is missed.
    pub fn subscribe(&self) -> broadcast::Receiver<HubMessage> {
        self.hub.subscribe()
    }

    /// Returns a flag's definition.
    pub fn get(&self, key: &str) -> Result<FlagDef> {
        self.read()
            .flags
            .get(key)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("flag {key:?}")))
    }

    /// Evaluates a flag for `tenant`; returns the value and the revision.
    pub fn evaluate(&self, key: &str, tenant: Option<&str>) -> Result<(Effective, i64)> {
        let state = self.read();
        let def = state
            .flags
            .get(key)
            .ok_or_else(|| Error::not_found(format!("flag {key:?}")))?;
        let over = tenant
            .and_then(|t| state.overrides.get(t))
            .and_then(|o| o.get(key))
            .map(|(v, _)| v);
        Ok((effective(&self.env, def, over), state.revision))
    }

    /// Returns every effective flag of `tenant` and the revision they are at.
    pub fn snapshot(&self, tenant: Option<&str>) -> (Vec<Effective>, i64) {
        let state = self.read();
        let overrides = tenant.and_then(|t| state.overrides.get(t));
        let flags = state
            .flags
            .values()
            .map(|def| {
                effective(
                    &self.env,
                    def,
                    overrides.and_then(|o| o.get(&def.key)).map(|(v, _)| v),
                )
            })
            .collect();
        (flags, state.revision)
    }

    /// Returns one page of flags after `after` (by key): effective values for
    /// `tenant`, definitions, whether more follow, and the revision.
    pub fn list(
        &self,
        tenant: Option<&str>,
        after: &str,
        limit: usize,
    ) -> (Vec<Effective>, Vec<FlagDef>, bool, i64) {
        let state = self.read();
        let overrides = tenant.and_then(|t| state.overrides.get(t));
        let mut range = state
            .flags
            .range::<str, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
            .peekable();
        let mut values = Vec::new();
        let mut defs = Vec::new();
        let mut bytes = 0;
        while values.len() < limit && bytes < MAX_PART_BYTES {
            let Some((_, def)) = range.next() else { break };
            let e = effective(
                &self.env,
                def,
                overrides.and_then(|o| o.get(&def.key)).map(|(v, _)| v),
            );
            bytes += approx_size(&e);
            values.push(e);
            defs.push(def.clone());
        }
        let more = range.peek().is_some();
        (values, defs, more, state.revision)
    }
}

/// Converts a protobuf `Value` to JSON; `field` names it in errors. Numbers
/// must be finite; a missing value is INVALID_ARGUMENT.
pub fn from_proto(field: &str, v: Option<&pbjson_types::Value>) -> Result<Value> {
    use pbjson_types::value::Kind;
    let Some(v) = v else {
        return Err(Error::invalid_argument(field, "is required"));
    };
    Ok(match &v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::NumberValue(n)) => serde_json::Number::from_f64(*n)
            .map(Value::Number)
            .ok_or_else(|| Error::invalid_argument(field, "numbers must be finite"))?,
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::StructValue(s)) => Value::Object(
            s.fields
                .iter()
                .map(|(k, v)| Ok((k.clone(), from_proto(field, Some(v))?)))
                .collect::<Result<_>>()?,
        ),
        Some(Kind::ListValue(l)) => Value::Array(
            l.values
                .iter()
                .map(|v| from_proto(field, Some(v)))
                .collect::<Result<_>>()?,
        ),
    })
}

/// Converts JSON to a protobuf `Value`.
pub fn to_proto(v: &Value) -> pbjson_types::Value {
    use pbjson_types::value::Kind;
    let kind = match v {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(a) => Kind::ListValue(pbjson_types::ListValue {
            values: a.iter().map(to_proto).collect(),
        }),
        Value::Object(o) => Kind::StructValue(pbjson_types::Struct {
            fields: o.iter().map(|(k, v)| (k.clone(), to_proto(v))).collect(),
        }),
    };
    pbjson_types::Value { kind: Some(kind) }
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
        assert_eq!(effective(&none, &d, None).source, Source::Default);
        let s = def("new-ui", json!(false), Some(json!(true)));
        assert_eq!(effective(&none, &s, None).source, Source::Store);
        assert_eq!(
            effective(&none, &s, Some(&json!(false))).source,
            Source::Tenant
        );
        let e = effective(&env, &s, Some(&json!(false)));
        assert_eq!((e.source, e.value), (Source::Env, json!(true)));
        // An env value of the wrong type is ignored.
        let env = EnvOverrides::new(
            &[("SWITCHYARD_FLAG_NEW_UI".to_string(), "maybe".to_string())].into(),
        );
        assert_eq!(effective(&env, &s, None).source, Source::Store);
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

    #[test]
    fn subscribers_see_only_their_tenant() {
        let env = EnvOverrides::default();
        let c = Change {
            revision: 5,
            committed_at_us: 0,
            tenant_id: Some("a".into()),
            flag_key: Some("f".into()),
            payload: Payload::OverrideUpsert { value: json!(true) },
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
        };
        assert!(
            events_for(&env, &c, Some("a")).is_empty(),
            "a's override hides it"
        );
        assert_eq!(events_for(&env, &c, Some("b")).len(), 1);
    }
}
