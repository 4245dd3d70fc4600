//! A replica's flag state: every flag and override at one revision, behind a
//! lock, with the watch hub that carries each applied change to the streams.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, RwLock},
};

use serde_json::Value;

use super::watch::{Fanout, Subscriber};
use super::watch::{HubMessage, Memo};
use super::{
    Effective, EnvOverrides, FlagChange, FlagDef, Payload, Prior, ValueSource, def_bound,
    effective_in, encoded_bound,
    resolve::{Evaluation, now_s, resolve},
};
use crate::error::{Error, Result};

/// The maps every evaluation reads: hashed with foldhash (seeded per
/// process), not SipHash; the keys are tenant ids and flag keys an admin
/// wrote.
pub type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The whole flag state of a replica at `revision`.
#[derive(Debug, Default, Clone)]
pub struct FlagState {
    /// Every change up to this revision is applied.
    pub revision: i64,
    /// Flags by key.
    pub flags: BTreeMap<String, FlagDef>,
    /// Overrides: tenant → flag → (value, revision of its last change).
    pub overrides: Map<String, Map<String, (Value, i64)>>,
    /// The revision this state was loaded at: every view is at least this
    /// recent (what changed before it is not known one by one).
    pub loaded_at: i64,
    /// The last revision that created, changed or deleted a flag: every
    /// view changes with it.
    pub flags_changed: i64,
    /// Per tenant, the last revision that changed one of its overrides or
    /// deleted it: only that tenant's view changes with it.
    pub tenant_changed: Map<String, i64>,
    /// Per flag, how many tenants override it (absent: none).
    pub override_count: Map<String, usize>,
}

impl FlagState {
    /// The state loaded at `revision`, before anything is put in it.
    pub fn loaded(revision: i64) -> FlagState {
        FlagState {
            revision,
            loaded_at: revision,
            ..FlagState::default()
        }
    }

    /// The revision of the last change to `tenant`'s view (`None`: values
    /// without overrides): its answers at the current revision are the same
    /// as at this one.
    pub fn view_revision(&self, tenant: Option<&str>) -> i64 {
        let own = tenant
            .and_then(|t| self.tenant_changed.get(t))
            .copied()
            .unwrap_or(0);
        self.loaded_at.max(self.flags_changed).max(own)
    }

    /// What `c` replaces in this state (read before applying it).
    pub fn prior(&self, c: &FlagChange) -> Prior {
        let key = c.flag_key.as_deref().unwrap_or_default();
        let tenant = self
            .overrides
            .get(c.tenant_id.as_deref().unwrap_or_default());
        let overrides = match (&c.payload, tenant) {
            (Payload::TenantDelete { .. }, Some(o)) => {
                o.iter().map(|(k, (v, _))| (k.clone(), v.clone())).collect()
            }
            (Payload::OverrideUpsert { .. } | Payload::OverrideDelete { .. }, Some(o)) => o
                .get(key)
                .map(|(v, _)| (key.to_owned(), v.clone()))
                .into_iter()
                .collect(),
            _ => Default::default(),
        };
        let flag_overrides = match &c.payload {
            Payload::FlagUpsert { overridden, .. } => overridden
                .iter()
                .filter_map(|t| {
                    let (v, _) = self.overrides.get(t)?.get(key)?;
                    Some((t.clone(), v.clone()))
                })
                .collect(),
            _ => Default::default(),
        };
        Prior {
            flag: self.flags.get(key).cloned(),
            overrides,
            flag_overrides,
        }
    }

    /// Applies one change. Changes must come in revision order.
    pub fn apply(&mut self, c: &FlagChange) {
        debug_assert!(c.revision > self.revision, "changes are applied in order");
        let key = c.flag_key.clone().unwrap_or_default();
        let tenant = c.tenant_id.clone().unwrap_or_default();
        match &c.payload {
            Payload::FlagUpsert { .. } | Payload::FlagDelete => self.flags_changed = c.revision,
            Payload::OverrideUpsert { .. }
            | Payload::OverrideDelete { .. }
            | Payload::TenantDelete { .. } => {
                self.tenant_changed.insert(tenant.clone(), c.revision);
            }
            Payload::Other => {}
        }
        match &c.payload {
            Payload::FlagUpsert { flag, .. } => {
                self.flags.insert(flag.key.clone(), flag.clone());
            }
            Payload::FlagDelete => {
                self.flags.remove(&key);
                for o in self.overrides.values_mut() {
                    o.remove(&key);
                }
                self.override_count.remove(&key);
            }
            Payload::OverrideUpsert { value } => {
                self.put_override(tenant, key, value.clone(), c.revision);
            }
            Payload::OverrideDelete { .. } => {
                if let Some(o) = self.overrides.get_mut(&tenant)
                    && o.remove(&key).is_some()
                {
                    self.uncount(&key);
                }
            }
            Payload::TenantDelete { .. } => {
                if let Some(o) = self.overrides.remove(&tenant) {
                    for k in o.keys() {
                        self.uncount(k);
                    }
                }
            }
            Payload::Other => {}
        }
        self.revision = c.revision;
    }

    /// Sets `tenant`'s override of `key`, counting it.
    pub fn put_override(&mut self, tenant: String, key: String, value: Value, revision: i64) {
        let o = self.overrides.entry(tenant).or_default();
        if o.insert(key.clone(), (value, revision)).is_none() {
            *self.override_count.entry(key).or_default() += 1;
        }
    }

    fn uncount(&mut self, key: &str) {
        if let Some(n) = self.override_count.get_mut(key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.override_count.remove(key);
            }
        }
    }
}

/// Which version of a view an answer shows: the revision of the view's
/// last change and an entity tag that names the view (which tenant, this
/// replica's version and `env` overrides) at that revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewTag {
    /// The revision of the view's last change: the answer is the same at
    /// every revision from this one to the current.
    pub revision: i64,
    /// A strong entity tag, quoted as HTTP writes it.
    pub etag: String,
}

impl ViewTag {
    /// Whether an `If-None-Match` value (one tag, a comma-separated list,
    /// or `*`) names this tag; weak tags (`W/"..."`) compare by their value.
    pub fn matches(&self, if_none_match: &str) -> bool {
        if_none_match
            .split(',')
            .map(str::trim)
            .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == self.etag)
    }
}

/// The flag component of a replica: the in-memory state, the `env` overrides
/// and the watch hub.
pub struct Flags {
    state: RwLock<FlagState>,
    env: EnvOverrides,
    /// What every entity tag of this replica's listings starts from: the
    /// server version and the `env` overrides.
    tag_seed: [u8; 32],
    hub: Arc<Fanout<HubMessage>>,
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
        use sha2::Digest;
        let tag_seed = sha2::Sha256::new()
            .chain_update(b"switchyard listing v1\0")
            .chain_update(env!("CARGO_PKG_VERSION").as_bytes())
            .chain_update(env.fingerprint())
            .finalize()
            .into();
        Flags {
            state: RwLock::new(state),
            tag_seed,
            env,
            hub: Arc::new(Fanout::new(queue)),
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

    /// Returns the tag of `tenant`'s view (`None`: values without overrides)
    /// as it is now.
    pub fn view_tag(&self, tenant: Option<&str>) -> ViewTag {
        let revision = self.read().view_revision(tenant);
        self.tag(tenant, revision)
    }

    fn tag(&self, tenant: Option<&str>, revision: i64) -> ViewTag {
        use sha2::Digest;
        let digest = sha2::Sha256::new()
            .chain_update(self.tag_seed)
            .chain_update(match tenant {
                Some(t) => [b"t:", t.as_bytes()].concat(),
                None => b"-".to_vec(),
            })
            .finalize();
        ViewTag {
            revision,
            etag: format!("\"{revision}-{}\"", hex::encode(&digest[..8])),
        }
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
    /// message is pushed under the state lock, so the hub carries changes in
    /// revision order and a heartbeat never overtakes a change; the
    /// subscribers are woken after the lock is released (readers do not wait
    /// for the fan-out).
    pub fn apply(&self, mut change: FlagChange) {
        {
            let mut state = self.write();
            if change.revision <= state.revision {
                return;
            }
            change.prior = Some(state.prior(&change));
            state.apply(&change);
            self.hub
                .push(HubMessage::Change(Arc::new(change), Arc::default()));
        }
        self.hub.wake_all();
    }

    /// Replaces the whole state (after the change log was pruned past this
    /// replica's revision) and tells every subscriber to take a snapshot.
    pub fn replace(&self, new: FlagState) {
        {
            let mut state = self.write();
            *state = new;
            self.hub.push(HubMessage::Reset);
        }
        self.hub.wake_all();
    }

    /// Sends a heartbeat with the state's revision.
    pub fn heartbeat(&self) {
        {
            let state = self.read();
            self.hub
                .push(HubMessage::Heartbeat(state.revision, Memo::shared()));
        }
        self.hub.wake_all();
    }

    /// Subscribes to the hub; subscribe before reading a snapshot so that
    /// nothing after it is missed. `group` is the subscriber's connection:
    /// a change wakes one connection's subscribers together.
    pub fn subscribe(&self, group: u64) -> Subscriber<HubMessage> {
        self.hub.subscribe(group)
    }

    /// Ends every watch: the server is stopping.
    pub fn close_watches(&self) {
        self.hub.close();
    }

    /// Returns every flag's definition, in key order.
    pub fn definitions(&self) -> Vec<FlagDef> {
        self.read().flags.values().cloned().collect()
    }

    /// Returns a flag's definition.
    pub fn get(&self, key: &str) -> Result<FlagDef> {
        self.read()
            .flags
            .get(key)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("flag {key:?}")))
    }

    /// Evaluates a flag for `tenant` in `context` (with the rule's steps
    /// when `explain`); the evaluation's `tenant` is left for the caller.
    pub fn evaluate(
        &self,
        key: &str,
        tenant: Option<&str>,
        context: &serde_json::Map<String, Value>,
        explain: bool,
    ) -> Result<Evaluation> {
        let state = self.read();
        let def = state
            .flags
            .get(key)
            .ok_or_else(|| Error::not_found(format!("flag {key:?}")))?;
        let context = self.env.context(context);
        let mut explanation = Vec::new();
        let mut e = self.evaluation(
            &state,
            def,
            tenant,
            &context,
            now_s(),
            explain.then_some(&mut explanation),
        );
        e.explanation = explanation;
        Ok(e)
    }

    /// One flag's evaluation in `state` for `tenant` (its override looked
    /// up here) in `context` (the static context values already in it).
    fn evaluation(
        &self,
        state: &FlagState,
        def: &FlagDef,
        tenant: Option<&str>,
        context: &serde_json::Map<String, Value>,
        now_s: i64,
        trace: Option<&mut super::resolve::Explanation>,
    ) -> Evaluation {
        let over = tenant
            .and_then(|t| state.overrides.get(t))
            .and_then(|o| o.get(&def.key))
            .map(|(v, _)| v);
        let resolution = resolve(&self.env, def, tenant, over, context, now_s, trace).into_owned();
        let mut metadata = def.metadata.clone();
        if matches!(resolution.source, ValueSource::Env | ValueSource::Tenant) {
            metadata.insert(
                "source".into(),
                Value::String(resolution.source.as_str().to_owned()),
            );
        }
        Evaluation {
            key: def.key.clone(),
            resolution,
            metadata,
            overridden: state.override_count.get(&def.key).is_some_and(|n| *n > 0),
            revision: state.revision,
            tenant: None,
            explanation: Vec::new(),
        }
    }

    /// Evaluates every flag for `tenant` in `context`, in key order; the
    /// evaluations' `tenant` is left for the caller.
    pub fn evaluate_all(
        &self,
        tenant: Option<&str>,
        context: &serde_json::Map<String, Value>,
    ) -> (Vec<Evaluation>, i64) {
        let state = self.read();
        let now = now_s();
        let context = self.env.context(context);
        let all = state
            .flags
            .values()
            .map(|def| self.evaluation(&state, def, tenant, &context, now, None))
            .collect();
        (all, state.revision)
    }

    /// Every flag of `tenant`'s view as flagd's JSON flag configuration
    /// holds it (for in-process providers), in key order, and the revision:
    /// see [`super::flagd::view_flag`].
    pub fn flagd_view(&self, tenant: Option<&str>) -> (Vec<(String, Value)>, i64) {
        let state = self.read();
        let overrides = tenant.and_then(|t| state.overrides.get(t));
        let flags = state
            .flags
            .values()
            .map(|def| {
                let over = overrides.and_then(|o| o.get(&def.key)).map(|(v, _)| v);
                (
                    def.key.clone(),
                    super::flagd::view_flag(&self.env, def, over),
                )
            })
            .collect();
        (flags, state.revision)
    }

    /// Returns every effective flag of `tenant` and the revision they are at.
    pub fn snapshot(&self, tenant: Option<&str>) -> (Vec<Effective>, i64) {
        self.snapshot_in(tenant, &self.env.context(&serde_json::Map::new()))
    }

    /// [`Self::snapshot`] in `context` (the static context values already
    /// in it).
    pub fn snapshot_in(
        &self,
        tenant: Option<&str>,
        context: &serde_json::Map<String, Value>,
    ) -> (Vec<Effective>, i64) {
        let state = self.read();
        let overrides = tenant.and_then(|t| state.overrides.get(t));
        let flags = state
            .flags
            .values()
            .map(|def| {
                let over = overrides.and_then(|o| o.get(&def.key)).map(|(v, _)| v);
                effective_in(&self.env, def, tenant, over, context)
            })
            .collect();
        (flags, state.revision)
    }

    /// `key`'s effective value for `tenant` in `context` (the static context
    /// values already in it) now; `None` when there is no such flag.
    pub fn effective_in(
        &self,
        key: &str,
        tenant: Option<&str>,
        context: &serde_json::Map<String, Value>,
    ) -> Option<Effective> {
        let state = self.read();
        let def = state.flags.get(key)?;
        let over = tenant
            .and_then(|t| state.overrides.get(t))
            .and_then(|o| o.get(key))
            .map(|(v, _)| v);
        Some(effective_in(&self.env, def, tenant, over, context))
    }

    /// Returns one page of flags after `after` (by key): effective values for
    /// `tenant`, definitions, whether more follow, and the revision. The page
    /// holds at most `limit` flags and `budget` bytes of their encoding
    /// (definitions counted when `with_definitions`); a flag that alone does
    /// not fit is RESOURCE_EXHAUSTED, naming it.
    pub fn list(
        &self,
        tenant: Option<&str>,
        after: &str,
        limit: usize,
        budget: usize,
        with_definitions: bool,
    ) -> Result<(Vec<Effective>, Vec<FlagDef>, bool, ViewTag)> {
        let state = self.read();
        let overrides = tenant.and_then(|t| state.overrides.get(t));
        let mut range = state
            .flags
            .range::<str, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
            .peekable();
        let mut values = Vec::new();
        let mut defs = Vec::new();
        let mut bytes = 0;
        // The default context, made once for the page.
        let empty = serde_json::Map::new();
        let context = self.env.context(&empty);
        while values.len() < limit {
            let Some((_, def)) = range.peek() else { break };
            let e = effective_in(
                &self.env,
                def,
                tenant,
                overrides.and_then(|o| o.get(&def.key)).map(|(v, _)| v),
                &context,
            );
            let size = encoded_bound(&e) + if with_definitions { def_bound(def) } else { 0 };
            if bytes + size > budget {
                if values.is_empty() {
                    return Err(too_large(&def.key, size, budget));
                }
                break;
            }
            bytes += size;
            values.push(e);
            if with_definitions {
                defs.push((*def).clone());
            }
            range.next();
        }
        let more = range.peek().is_some();
        let tag = self.tag(tenant, state.view_revision(tenant));
        Ok((values, defs, more, tag))
    }
}

/// RESOURCE_EXHAUSTED for a flag that does not fit in one message.
pub fn too_large(key: &str, size: usize, budget: usize) -> Error {
    Error::new(
        crate::error::ErrorKind::ResourceExhausted,
        format!(
            "flag {key:?} takes up to {size} bytes encoded, more than one message holds \
             ({budget} bytes under max_message_bytes): raise max_message_bytes, or make \
             the value smaller"
        ),
    )
}
