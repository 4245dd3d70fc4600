//! A committed change as the flags see it ([`FlagChange`], from a change-log
//! row), and what each subscriber sees of it ([`events_for`], the one
//! function that says so, and [`audience`], which subscribers see the same).

use std::collections::BTreeMap;

use serde_json::Value;

use super::{Effective, EnvOverrides, FlagDef, FlagType, ValueSource, effective};
use crate::changelog::{self, Entry};

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

/// A change-log row as the flags see it, in domain types (the typed row the
/// store writes is [`crate::changelog::Change`]; this is what a replica
/// applies and derives watch events from).
#[derive(Debug, Clone)]
pub struct FlagChange {
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
    /// For a flag upsert: every tenant's override of the flag, by tenant
    /// (a state change shows or hides them).
    pub flag_overrides: BTreeMap<String, Value>,
}

impl From<Entry> for FlagChange {
    fn from(e: Entry) -> FlagChange {
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
        FlagChange {
            revision: e.revision,
            committed_at_us: e.committed_at_us,
            tenant_id,
            flag_key,
            payload,
            prior: None,
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

/// Returns the events a subscriber of `tenant` (`None`: no tenant) sees for
/// `c`: an UPSERT only where the flag is new or its effective value (or the
/// value's source) changed for that audience, when the prior state is known.
pub fn events_for(env: &EnvOverrides, c: &FlagChange, tenant: Option<&str>) -> Vec<Event> {
    let mine = c.tenant_id.as_deref().is_some_and(|t| Some(t) == tenant);
    let prior = c.prior.as_ref();
    // The audience's value of `key` before the change, when known: `None`
    // when unknown, `Some(None)` when the flag did not exist.
    let before = |key: &str, tenant_override: Option<&Value>| -> Option<Option<Effective>> {
        let p = prior?;
        Some(p.flag.as_ref().map(|d| {
            debug_assert_eq!(d.key, key);
            effective(env, d, tenant, tenant_override)
        }))
    };
    let upsert_if_changed = |old: Option<Option<Effective>>, new: Effective| match old {
        Some(Some(old)) if old == new => None,
        _ => Some(Event::Upsert(new)),
    };
    match &c.payload {
        Payload::FlagUpsert { flag, overridden } => {
            // A tenant whose override hides the change sees nothing (with an
            // env override its value is the env value either way), unless
            // the flag's state changed: disabling it hides the override.
            if let Some(t) = tenant.filter(|t| overridden.iter().any(|o| o == t)) {
                let Some(p) = prior else { return Vec::new() };
                let Some(v) = p.flag_overrides.get(t) else {
                    return Vec::new();
                };
                upsert_if_changed(
                    before(&flag.key, Some(v)),
                    effective(env, flag, tenant, Some(v)),
                )
                .into_iter()
                .collect()
            } else {
                upsert_if_changed(before(&flag.key, None), effective(env, flag, tenant, None))
                    .into_iter()
                    .collect()
            }
        }
        Payload::FlagDelete => c.flag_key.clone().map(Event::Delete).into_iter().collect(),
        Payload::OverrideUpsert { value } if mine => {
            let key = c.flag_key.clone().unwrap_or_default();
            let old = prior.map(|p| p.overrides.get(&key));
            // With the flag known, as any evaluation (a disabled flag hides
            // the override); else the override itself.
            let new = match prior.and_then(|p| p.flag.as_ref()) {
                Some(d) => effective(env, d, tenant, Some(value)),
                None => env_first(
                    env,
                    Effective {
                        flag: key.clone(),
                        value: value.clone(),
                        source: ValueSource::Tenant,
                        variant: Some("tenant".into()),
                        targeting: false,
                    },
                ),
            };
            upsert_if_changed(old.and_then(|o| before(&key, o)), new)
                .into_iter()
                .collect()
        }
        Payload::OverrideDelete { flag } if mine => {
            let old = prior.map(|p| p.overrides.get(&flag.key));
            upsert_if_changed(
                old.and_then(|o| before(&flag.key, o)),
                effective(env, flag, tenant, None),
            )
            .into_iter()
            .collect()
        }
        Payload::TenantDelete { restored } if mine => restored
            .iter()
            .filter_map(|f| {
                let old = prior.map(|p| {
                    p.overrides
                        .get(&f.key)
                        .map(|v| effective(env, f, tenant, Some(v)))
                });
                upsert_if_changed(old, effective(env, f, tenant, None))
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
pub fn audience<'a>(c: &FlagChange, tenant: Option<&'a str>) -> Option<&'a str> {
    let t = tenant?;
    // A flag with a rule may answer each tenant differently (rules read
    // `tenantId`): its changes are every tenant's own.
    let ruled = |d: &FlagDef| d.targeting.is_some();
    let concerned = c.tenant_id.as_deref() == Some(t)
        || matches!(&c.payload, Payload::FlagUpsert { overridden, flag } if ruled(flag) || overridden.iter().any(|o| o == t))
        || c.prior
            .as_ref()
            .and_then(|p| p.flag.as_ref())
            .is_some_and(ruled);
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
            variant: Some("env".into()),
            targeting: eff.targeting,
        },
        None => eff,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::flag::model::tests::def;

    #[test]
    fn a_ruled_flags_changes_are_each_tenants_own() {
        // A rule reads tenantId: tenants' answers differ, so their events
        // cannot be shared with the audience without a tenant.
        let env = EnvOverrides::default();
        let mut ruled = def("f", json!(false), None);
        ruled.variants.insert("on".into(), json!(true));
        ruled.targeting = Some(
            crate::flag::Rule::compile(
                json!({"if": [{"==": [{"var": "tenantId"}, "a"]}, "on", null]}),
            )
            .unwrap(),
        );
        let c = FlagChange {
            revision: 2,
            committed_at_us: 0,
            tenant_id: None,
            flag_key: Some("f".into()),
            payload: Payload::FlagUpsert {
                flag: ruled,
                overridden: Vec::new(),
            },
            prior: Some(Prior::default()),
        };
        assert_eq!(audience(&c, Some("a")), Some("a"));
        assert_eq!(audience(&c, Some("b")), Some("b"));
        let value = |t| match events_for(&env, &c, t).as_slice() {
            [Event::Upsert(e)] => e.value.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            (value(Some("a")), value(Some("b")), value(None)),
            (json!(true), json!(false), json!(false))
        );
        // A flag without a rule: shared as before.
        let plain = FlagChange {
            payload: Payload::FlagUpsert {
                flag: def("g", json!(1), None),
                overridden: Vec::new(),
            },
            ..c
        };
        assert_eq!(audience(&plain, Some("a")), None);
    }

    #[test]
    fn an_upsert_is_sent_only_where_the_effective_value_changed() {
        let env = EnvOverrides::default();
        let old = def("f", json!(1), Some(json!(5)));
        let upsert = |flag: FlagDef, prior: &FlagDef| FlagChange {
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
                flag_overrides: Default::default(),
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
        let set = |prior_override: Option<Value>| FlagChange {
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
                flag_overrides: Default::default(),
            }),
        };
        assert_eq!(events_for(&env, &set(None), Some("a")).len(), 1);
        assert!(events_for(&env, &set(Some(json!(6))), Some("a")).is_empty());
        // A tenant deletion restores only the flags whose value differs.
        let other = def("g", json!("x"), None);
        let deleted = FlagChange {
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
                flag_overrides: Default::default(),
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
            flag_overrides: Default::default(),
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
        let c = FlagChange {
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
        let c = FlagChange {
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
