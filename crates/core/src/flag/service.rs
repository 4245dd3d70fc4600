//! The flag use cases, whatever the transport: each method takes the caller's
//! [`Principal`] and domain types, checks the caller's scope first, then the
//! input in the order of the rules, and announces every committed change.

use std::sync::Arc;

use futures_util::Stream;
use serde_json::{Map, Value};

use super::{
    DEFAULT_PAGE_SIZE, Effective, FlagDef, FlagType, MAX_DESCRIPTION_LEN, MAX_PAGE_SIZE,
    check_value,
    definition::{self, DefinitionUpdate},
    listing::{ListCache, ListKey, Listed},
    state::{Flags, ViewTag},
    store::{self, FlagUpdate},
    validate_key,
    watch::{self, Delivery, WatcherLimit},
};
use crate::{
    audit::Attribution,
    auth::{Principal, Scope},
    changelog::{Announce, Committed},
    error::{Error, Result},
    id::TenantId,
    service::{
        Input,
        mask::UpdateMask,
        page::{Page, PageRequest},
    },
    store::Store,
    tenant::{self, Tenants},
};

pub use super::resolve::Evaluation;

/// A flag to create, as the caller sent it.
#[derive(Debug, Clone)]
pub struct NewFlag {
    /// The key.
    pub key: String,
    /// The type.
    pub value_type: Input<FlagType>,
    /// What the flag controls.
    pub description: String,
    /// The declared default (the variant `default`); required unless
    /// `definition` gives the variants.
    pub default: Input<Option<Value>>,
    /// The stored value, if any.
    pub stored: Input<Option<Value>>,
    /// The flagd-model fields given.
    pub definition: Input<DefinitionUpdate>,
}

/// The fields of an update, as the caller sent them; the update mask says
/// which ones count.
#[derive(Debug, Clone)]
pub struct FlagChanges {
    /// The flag's key.
    pub key: String,
    /// The type the caller believes the flag has (`None`: not said).
    pub value_type: Input<Option<FlagType>>,
    /// A new description.
    pub description: String,
    /// A new default (`None`: not given).
    pub default: Input<Option<Value>>,
    /// A new stored value (`None` clears it).
    pub stored: Input<Option<Value>>,
    /// New flagd-model fields (each counts when the mask names it).
    pub definition: Input<DefinitionUpdate>,
}

/// Which tenant an evaluation is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// None named: a tenant token's own tenant, values without overrides
    /// for an admin.
    Caller,
    /// The tenant with this id.
    TenantId(String),
    /// The tenant this key (a host) resolves to.
    ResolveKey(String),
}

/// The tenant an evaluation is for, resolved and allowed for its caller by
/// [`Service::audience`] (so the evaluations that take one need no check of
/// their own). `None`: values without tenant overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audience(Option<String>);

impl Audience {
    /// The tenant, if any.
    pub fn tenant(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

/// Every effective flag of an audience, and the version of its view.
#[derive(Debug, Clone)]
pub struct Evaluations {
    /// The flags, by key.
    pub values: Vec<Effective>,
    /// The revision the values are at.
    pub revision: i64,
    /// The version of the audience's view (its tag changes exactly when one
    /// of these values may have).
    pub tag: ViewTag,
}

/// One page of `ListFlags`.
#[derive(Debug, Clone)]
pub struct FlagList {
    /// The effective values of the page.
    pub values: Page<Effective>,
    /// The definitions of the same flags, in the same order (only when
    /// asked for).
    pub definitions: Vec<FlagDef>,
    /// The version of the view the page shows: its revision is that of the
    /// view's last change.
    pub tag: ViewTag,
}

/// A `ListFlags` call as the caller sent it.
#[derive(Debug, Clone)]
pub struct ListRequest {
    /// The tenant named (empty: the caller's default, see [`Target::Caller`]).
    pub tenant: String,
    /// The page asked for.
    pub page: PageRequest,
    /// Whether definitions come with the values.
    pub with_definitions: Input<bool>,
    /// An entity tag of an earlier answer (or a list of them, or `*`, as in
    /// HTTP's `If-None-Match`): when it names the view's current version,
    /// the answer is [`Listed::NotModified`].
    pub if_none_match: String,
}

/// What an import did, flag by flag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// The revision of the last change written (0: none).
    pub revision: i64,
    /// The flags created.
    pub created: Vec<String>,
    /// The flags updated.
    pub updated: Vec<String>,
    /// The flags already as the file has them.
    pub unchanged: Vec<String>,
    /// The flags deleted (prune).
    pub deleted: Vec<String>,
    /// Where the file's rules break flagd's targeting schema (imported
    /// anyway: `allow_schema_violations`).
    pub warnings: Vec<String>,
}

fn same_definition(a: &FlagDef, b: &FlagDef) -> bool {
    a.status == b.status
        && a.variants == b.variants
        && a.default_variant == b.default_variant
        && a.targeting == b.targeting
        && a.metadata == b.metadata
}

/// The flag service of a replica.
#[derive(Clone)]
pub struct FlagService {
    store: Store,
    flags: Arc<Flags>,
    tenants: Arc<Tenants>,
    resolver: tenant::service::TenantService,
    watchers: WatcherLimit,
    announce: Arc<dyn Announce>,
    part_budget: usize,
    snapshots: Arc<watch::Snapshots>,
}

impl std::fmt::Debug for FlagService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlagService").finish_non_exhaustive()
    }
}

/// What the flag service is built over.
pub struct Parts {
    /// The database.
    pub store: Store,
    /// The replica's flag state.
    pub flags: Arc<Flags>,
    /// The replica's tenants.
    pub tenants: Arc<Tenants>,
    /// The tenant service, for evaluations by resolve key.
    pub resolver: tenant::service::TenantService,
    /// The limit on open watch streams.
    pub watchers: WatcherLimit,
    /// Told of every committed change.
    pub announce: Arc<dyn Announce>,
    /// The largest message sent (`max_message_bytes`): pages and snapshot
    /// parts are cut to fit it.
    pub max_message_bytes: usize,
}

impl FlagService {
    /// Creates the service.
    pub fn new(p: Parts) -> FlagService {
        FlagService {
            store: p.store,
            flags: p.flags,
            tenants: p.tenants,
            resolver: p.resolver,
            watchers: p.watchers,
            announce: p.announce,
            part_budget: super::part_budget(p.max_message_bytes),
            snapshots: Arc::new(watch::Snapshots::new(super::part_budget(
                p.max_message_bytes,
            ))),
        }
    }

    async fn announce(&self, c: &Committed) {
        self.announce.committed(c).await;
    }

    /// Returns the tenant a read is for: the one named, or a tenant token's
    /// own when none is named; checks the caller may read it and that it
    /// exists. `None`: values without any tenant override.
    async fn reading_tenant(
        &self,
        p: &Principal,
        named: &str,
        field: &str,
    ) -> Result<Option<String>> {
        let tenant = match (named.is_empty(), p.scope()) {
            (_, Scope::Gating) => return may_read_flags(p).map(|()| None),
            (true, Scope::Tenant(own)) => own.to_string(),
            (true, Scope::Admin) => return Ok(None),
            (false, _) => {
                let named = TenantId::parse(named, field)?;
                p.require_tenant(&named)?;
                named.into_string()
            }
        };
        if !self.tenants.exists(&tenant).await? {
            return Err(Error::not_found(format!("tenant {tenant:?}")));
        }
        Ok(Some(tenant))
    }

    /// Creates a flag (admin).
    pub async fn create(&self, p: &Principal, flag: Input<NewFlag>) -> Result<FlagDef> {
        p.require_admin()?;
        let by = Attribution::of(p)?;
        let f = flag?;
        validate_key("flag.key", &f.key)?;
        let value_type = f.value_type?;
        check_description(&f.description)?;
        let default = f.default?;
        let stored = f.stored?;
        let mut definition = f.definition?;
        // On create, "none" is "not given" but for a flag given by variants.
        definition.default_variant = definition.default_variant.filter(Option::is_some);
        definition.targeting = definition.targeting.filter(Option::is_some);
        let mut def = match (default, &definition.variants) {
            (Some(default), None) => {
                check_value("flag.default_value", &default, value_type)?;
                if let Some(v) = &stored {
                    check_value("flag.stored_value", v, value_type)?;
                }
                FlagDef::legacy(f.key, value_type, f.description, default, stored)
            }
            (None, Some(_)) if stored.is_none() => {
                FlagDef::legacy(f.key, value_type, f.description, Value::Null, None)
            }
            (None, None) => {
                return Err(Error::invalid_argument(
                    "flag.default_value",
                    "is required (or give the flag's variants)",
                ));
            }
            (_, Some(_)) => {
                return Err(Error::invalid_argument(
                    "flag.variants",
                    "give either variants (with default_variant) or default_value and \
                     stored_value, not both",
                ));
            }
        };
        if definition.variants.is_some() && definition.default_variant.is_none() {
            // Variants without a default variant: none, as in flagd.
            def.default_variant = None;
        }
        definition.apply_to(&mut def)?;
        // A flag must fit in the answers that carry it (its definition,
        // the FULL listing): one that could never be read back is refused
        // before anything is written.
        let size = super::def_bound(&def);
        if size > self.part_budget {
            return Err(super::state::too_large(&def.key, size, self.part_budget));
        }
        let (def, committed) = store::create(&self.store, def, &by).await?;
        self.announce(&committed).await;
        Ok(def)
    }

    /// Returns a flag's definition (any token that may read flags).
    pub async fn get(&self, p: &Principal, key: &str) -> Result<FlagDef> {
        self.reading_tenant(p, "", "tenant").await?;
        validate_key("flag_key", key)?;
        self.flags.get(key)
    }

    /// Returns one page of flags with their effective values for the
    /// tenant `r` names, encoded by `encode` (which also gives the size of
    /// the encoding), or [`Listed::NotModified`]. The encoding is kept in
    /// `cache` and served again until the view changes.
    pub async fn list<E: Clone>(
        &self,
        p: &Principal,
        r: ListRequest,
        cache: &ListCache<E>,
        encode: impl FnOnce(&FlagList) -> (E, usize),
    ) -> Result<Listed<E>> {
        let tenant = self.reading_tenant(p, &r.tenant, "tenant").await?;
        let with_definitions = r.with_definitions?;
        let (size, after) = r.page.resolve(DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        let tag = self.flags.view_tag(tenant.as_deref());
        if !r.if_none_match.is_empty() && tag.matches(&r.if_none_match) {
            return Ok(Listed::NotModified(tag));
        }
        let key = ListKey {
            tenant,
            after,
            size,
            with_definitions,
        };
        if let Some(encoded) = cache.get(&key, &tag) {
            return Ok(Listed::Page(tag, encoded));
        }
        let (values, definitions, more, tag) = self.flags.list(
            key.tenant.as_deref(),
            &key.after,
            size,
            self.part_budget,
            with_definitions,
        )?;
        let list = FlagList {
            values: Page::new(values, more, |e| &e.flag),
            definitions,
            tag,
        };
        let (encoded, bytes) = encode(&list);
        cache.put(key, list.tag.clone(), encoded.clone(), bytes);
        Ok(Listed::Page(list.tag, encoded))
    }

    /// Updates the fields `mask` names (all when empty); refuses a stale
    /// `expected` revision (non-zero). Admin.
    pub async fn update(
        &self,
        p: &Principal,
        changes: Input<FlagChanges>,
        mask: &[String],
        expected: i64,
    ) -> Result<FlagDef> {
        p.require_admin()?;
        let by = Attribution::of(p)?;
        let f = changes?;
        validate_key("flag.key", &f.key)?;
        let mask_in = mask;
        let mask = UpdateMask::parse(
            mask,
            &[
                &["description"],
                &["default_value", "defaultValue"],
                &["stored_value", "storedValue"],
                &["state"],
                &["variants"],
                &["default_variant", "defaultVariant"],
                &["targeting"],
                &["metadata"],
            ],
            &["key", "type", "revision", "create_time", "update_time"],
        )?;
        let mut u = FlagUpdate::default();
        if mask.covers("description") {
            check_description(&f.description)?;
            u.description = Some(f.description);
        }
        // An empty mask names every legacy field, and the flagd-model
        // fields that were given.
        let explicit = !mask_in.is_empty();
        if mask.covers("default_value") {
            match f.default? {
                Some(v) => u.default = Some(v),
                None if explicit => {
                    return Err(Error::invalid_argument("flag.default_value", "is required"));
                }
                None => {}
            }
        }
        if mask.covers("stored_value") {
            u.stored = Some(f.stored?);
        }
        let given = f.definition?;
        let named = |field: &str| explicit && mask.covers(field);
        let d = DefinitionUpdate {
            state: given.state.filter(|_| mask.covers("state")),
            variants: given.variants.filter(|_| mask.covers("variants")),
            default_variant: if named("default_variant") {
                Some(given.default_variant.flatten())
            } else {
                given.default_variant.filter(Option::is_some)
            },
            targeting: if named("targeting") {
                Some(given.targeting.flatten())
            } else {
                given.targeting.filter(Option::is_some)
            },
            metadata: if named("metadata") {
                Some(given.metadata.unwrap_or_default())
            } else {
                given.metadata.filter(|m| !m.is_empty())
            },
        };
        if !d.is_empty() {
            u.definition = Some(d);
        }
        // Checked against the stored flag inside the write transaction.
        u.value_type = f.value_type?;
        let (def, committed) =
            store::update(&self.store, &f.key, u, expected, self.part_budget, &by).await?;
        self.announce(&committed).await;
        Ok(def)
    }

    /// Imports a flagd flag-definition file (see [`definition::parse_file`]):
    /// every flag is checked before anything is written; then each is
    /// created, or updated when its definition differs (compare-and-set on
    /// the revision read), and with `prune` every other flag is deleted.
    /// Admin.
    pub async fn import(
        &self,
        p: &Principal,
        file: Input<Value>,
        prune: bool,
        allow_schema_violations: bool,
    ) -> Result<ImportReport> {
        p.require_admin()?;
        let by = Attribution::of(p)?;
        // Checking and compiling a large file takes a while (about 100 µs
        // per rule, most of it flagd's schema): off the async workers.
        let file = file?;
        let definition::FileFlags { flags, violations } = tokio::task::spawn_blocking(move || {
            definition::parse_file(&file, allow_schema_violations)
        })
        .await
        .map_err(|e| Error::internal("checking the flag file", e))??;
        let current: std::collections::BTreeMap<String, FlagDef> = self
            .flags
            .definitions()
            .into_iter()
            .map(|d| (d.key.clone(), d))
            .collect();
        for def in &flags {
            let size = super::def_bound(def);
            if size > self.part_budget {
                return Err(super::state::too_large(&def.key, size, self.part_budget));
            }
            if let Some(cur) = current.get(&def.key)
                && cur.value_type != def.value_type
            {
                return Err(Error::invalid_argument(
                    &format!("configuration/flags/{}/variants", def.key),
                    format!(
                        "are {}s, but the existing flag is a {} (a flag's type cannot change; \
                         delete it first)",
                        def.value_type.as_str(),
                        cur.value_type.as_str()
                    ),
                ));
            }
        }
        let mut report = ImportReport {
            warnings: violations,
            ..ImportReport::default()
        };
        let keys: std::collections::BTreeSet<String> =
            flags.iter().map(|d| d.key.clone()).collect();
        for def in flags {
            let committed = match current.get(&def.key) {
                None => {
                    let key = def.key.clone();
                    let (_, c) = store::create(&self.store, def, &by).await?;
                    report.created.push(key);
                    c
                }
                Some(cur) if same_definition(cur, &def) => {
                    report.unchanged.push(def.key);
                    continue;
                }
                Some(cur) => {
                    let u = FlagUpdate {
                        definition: Some(DefinitionUpdate {
                            state: Some(def.status),
                            variants: Some(def.variants),
                            default_variant: Some(def.default_variant),
                            targeting: Some(def.targeting.map(|r| r.source().clone())),
                            metadata: Some(def.metadata),
                        }),
                        ..FlagUpdate::default()
                    };
                    let (_, c) = store::update(
                        &self.store,
                        &def.key,
                        u,
                        cur.revision,
                        self.part_budget,
                        &by,
                    )
                    .await?;
                    report.updated.push(def.key);
                    c
                }
            };
            report.revision = committed.revision;
            self.announce(&committed).await;
        }
        if prune {
            for (key, cur) in current.iter().filter(|(k, _)| !keys.contains(*k)) {
                let committed = store::delete(&self.store, key, cur.revision, &by).await?;
                report.revision = committed.revision;
                report.deleted.push(key.clone());
                self.announce(&committed).await;
            }
        }
        Ok(report)
    }

    /// Every flag as a flagd flag-definition file. Admin.
    pub async fn export(&self, p: &Principal) -> Result<Value> {
        p.require_admin()?;
        Ok(definition::to_file(&self.flags.definitions()))
    }

    /// Deletes a flag and its overrides; returns the revision. Admin.
    pub async fn delete(&self, p: &Principal, key: &str, expected: i64) -> Result<i64> {
        p.require_admin()?;
        let by = Attribution::of(p)?;
        validate_key("flag_key", key)?;
        let committed = store::delete(&self.store, key, expected, &by).await?;
        self.announce(&committed).await;
        Ok(committed.revision)
    }

    /// Sets a tenant's override of a flag; returns the revision. Admin.
    pub async fn set_override(
        &self,
        p: &Principal,
        tenant: &str,
        key: &str,
        value: Input<Value>,
        expected: i64,
    ) -> Result<i64> {
        p.require_admin()?;
        let by = Attribution::of(p)?;
        let tenant = TenantId::parse(tenant, "tenant_id")?;
        validate_key("flag_key", key)?;
        let value = value?;
        let size = super::encoded_bound(&super::Effective {
            flag: key.to_owned(),
            value: value.clone(),
            source: super::ValueSource::Tenant,
            variant: Some("tenant".into()),
            targeting: false,
        });
        if size > self.part_budget {
            return Err(super::state::too_large(key, size, self.part_budget));
        }
        let committed =
            store::set_override(&self.store, &tenant, key, value, expected, &by).await?;
        self.announce(&committed).await;
        Ok(committed.revision)
    }

    /// Removes a tenant's override of a flag; returns the revision. Admin.
    pub async fn clear_override(
        &self,
        p: &Principal,
        tenant: &str,
        key: &str,
        expected: i64,
    ) -> Result<i64> {
        p.require_admin()?;
        let by = Attribution::of(p)?;
        let tenant = TenantId::parse(tenant, "tenant_id")?;
        validate_key("flag_key", key)?;
        let committed = store::clear_override(&self.store, &tenant, key, expected, &by).await?;
        self.announce(&committed).await;
        Ok(committed.revision)
    }

    /// Evaluates a flag for `target` in `context` (with its steps when
    /// `explain`).
    pub async fn evaluate(
        &self,
        p: &Principal,
        key: &str,
        target: Target,
        context: &Map<String, Value>,
        explain: bool,
    ) -> Result<Evaluation> {
        // The caller's scope first, then the request (as every call does).
        may_read_flags(p)?;
        validate_key("flag_key", key)?;
        let audience = self.audience(p, target).await?;
        self.evaluate_checked(audience, key, context, explain)
    }

    /// Resolves `target` for the caller: the tenant it names (or a host
    /// resolves to), allowed for `p`, or the caller's default (see
    /// [`Target::Caller`]).
    pub async fn audience(&self, p: &Principal, target: Target) -> Result<Audience> {
        may_read_flags(p)?;
        Ok(Audience(match target {
            Target::ResolveKey(k) => Some(self.resolver.resolve(p, &k).await?.tenant.id.clone()),
            Target::TenantId(t) => self.reading_tenant(p, &t, "tenant_id").await?,
            Target::Caller => self.reading_tenant(p, "", "tenant_id").await?,
        }))
    }

    /// Evaluates a flag for an audience already resolved, in `context`.
    pub fn evaluate_for(
        &self,
        audience: &Audience,
        key: &str,
        context: &Map<String, Value>,
    ) -> Result<Evaluation> {
        validate_key("flag_key", key)?;
        self.evaluate_checked(audience.clone(), key, context, false)
    }

    /// [`Self::evaluate_for`] of a key already checked.
    fn evaluate_checked(
        &self,
        audience: Audience,
        key: &str,
        context: &Map<String, Value>,
        explain: bool,
    ) -> Result<Evaluation> {
        let mut e = self
            .flags
            .evaluate(key, audience.tenant(), context, explain)?;
        e.tenant = audience.0;
        Ok(e)
    }

    /// The tag of an audience's view as it is now: whether an answer the
    /// caller holds is still current, without evaluating anything.
    pub fn view_tag(&self, audience: &Audience) -> ViewTag {
        self.flags.view_tag(audience.tenant())
    }

    /// Evaluates every flag for an audience already resolved, with the tag of
    /// its view.
    pub fn evaluate_all(&self, audience: &Audience) -> Evaluations {
        // The tag first: a change landing in between then makes the tag
        // older than the values (the next request sees a new tag), never
        // newer (which would hide the change behind a 304).
        let tag = self.flags.view_tag(audience.tenant());
        let (values, revision) = self.flags.snapshot(audience.tenant());
        Evaluations {
            values,
            revision,
            tag,
        }
    }

    /// Evaluates every flag for an audience already resolved, in `context`,
    /// with the revision they are at.
    pub fn evaluate_all_in(
        &self,
        audience: &Audience,
        context: &Map<String, Value>,
    ) -> (Vec<Evaluation>, i64) {
        let (mut all, revision) = self.flags.evaluate_all(audience.tenant(), context);
        for e in &mut all {
            e.tenant = audience.0.clone();
        }
        (all, revision)
    }

    /// What in-process providers add to every evaluation context of an
    /// audience's view (flagd's `sync_context`): the static context values
    /// and the tenant's id, as the server's own evaluations have them.
    pub fn sync_context(&self, audience: &Audience) -> Map<String, Value> {
        let mut m = self.flags.env().context_values().clone();
        if let Some(t) = audience.tenant() {
            m.insert(
                super::resolve::TENANT_ATTRIBUTE.into(),
                Value::String(t.to_owned()),
            );
        }
        m
    }

    /// An audience's view as flagd's flag configuration holds it (see
    /// [`super::flagd::view_flag`]), with the tag of the view.
    pub fn flagd_view(&self, audience: &Audience) -> (Vec<(String, Value)>, ViewTag) {
        // The tag first, as in `evaluate_all`.
        let tag = self.flags.view_tag(audience.tenant());
        let (flags, _) = self.flags.flagd_view(audience.tenant());
        (flags, tag)
    }

    /// Opens a watch of `tenant` (empty: the caller's default) from `since`
    /// (0: a snapshot first); see [`watch::open`]. `connection` identifies
    /// the caller's connection: the watches of one connection are woken
    /// together.
    pub async fn watch(
        &self,
        p: &Principal,
        tenant: &str,
        since: i64,
        context: Option<&Map<String, Value>>,
        connection: u64,
    ) -> Result<impl Stream<Item = Delivery> + Send + 'static> {
        let tenant = self.reading_tenant(p, tenant, "tenant_id").await?;
        let slot = self.watchers.acquire(p.caller())?;
        let subscription = watch::Subscription {
            tenant,
            since,
            context: context.map(|c| self.flags.env().context(c).into_owned()),
        };
        watch::open(
            self.flags.clone(),
            &self.store,
            subscription,
            slot,
            connection,
            self.snapshots.clone(),
        )
        .await
    }
}

/// Refuses gating tokens, which read no flags.
fn may_read_flags(p: &Principal) -> Result<()> {
    match p.scope() {
        Scope::Gating => Err(Error::permission_denied("a gating token cannot read flags")),
        _ => Ok(()),
    }
}

fn check_description(d: &str) -> Result<()> {
    if d.chars().count() > MAX_DESCRIPTION_LEN {
        return Err(Error::invalid_argument(
            "flag.description",
            format!("must be at most {MAX_DESCRIPTION_LEN} characters"),
        ));
    }
    Ok(())
}
