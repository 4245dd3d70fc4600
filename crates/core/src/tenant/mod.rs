//! Tenants: the persistent, pattern-based mapping from a request key to a
//! tenant.
//!
//! Writes go to the `tenants` and `tenant_patterns` tables in one transaction
//! that also takes the next global revision and records the change in the
//! change log (see `store.rs`). A replica applies a tenant change to its
//! matcher by rebuilding only that tenant's patterns ([`matcher::Layered`]).
//! Resolution never touches the database while the
//! in-process [`matcher::Matcher`] is loaded; until it is (the first seconds of
//! a replica over a large table), answers come from the shared Redis cache of
//! resolutions, then from a database query whose answer is cached there.

pub mod cache;
pub mod matcher;
pub mod pattern;
pub mod service;
mod store;

use std::{
    borrow::Cow,
    sync::{
        Arc,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
};

use arc_swap::ArcSwap;

use crate::{
    audit::Attribution,
    changelog::Committed,
    error::{Error, Result},
    id::TenantId,
    service::mask::UpdateMask as FieldMask,
    store::Store,
    telemetry::metrics,
};
use cache::{CachedHit, CachedResolution, CachedTenant, ResolutionCache};
use matcher::{Layered, Matcher};

/// The small matcher of changed tenants is merged into the base once it
/// holds more tenants than this …
const MERGE_AFTER_TENANTS: usize = 256;
/// … or more patterns than this.
const MERGE_AFTER_PATTERNS: usize = 2048;
use pattern::Pattern;

/// The longest display name, in characters.
pub const MAX_DISPLAY_NAME_LEN: usize = 200;
/// The most patterns one tenant may have.
pub const MAX_PATTERNS_PER_TENANT: usize = 100;
/// The largest page of `ListTenants`.
pub const MAX_PAGE_SIZE: usize = 1000;
/// The page size when none is given.
pub const DEFAULT_PAGE_SIZE: usize = 100;

/// A tenant as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantRecord {
    /// The immutable id.
    pub id: String,
    /// A human-readable name.
    pub display_name: String,
    /// Normalised patterns, in the order given.
    pub patterns: Vec<String>,
    /// A disabled tenant never resolves.
    pub disabled: bool,
    /// The global revision of the tenant's last change.
    pub revision: i64,
    /// Creation time, microseconds since the epoch.
    pub created_at_us: i64,
    /// Last change, microseconds since the epoch.
    pub updated_at_us: i64,
}

/// An upper bound of a tenant's protobuf encoding in a listing (a `Tenant`
/// with its tag and length in a repeated field): its strings, a tag and a
/// length prefix for each, and the fixed fields.
pub fn encoded_bound(t: &TenantRecord) -> usize {
    const FIELD: usize = 1 + 5;
    FIELD
        + FIELD
        + t.id.len()
        + FIELD
        + t.display_name.len()
        + t.patterns.iter().map(|p| FIELD + p.len()).sum::<usize>()
        + 2
        + 11
        + 2 * (FIELD + 11 + 6)
}

/// The fields a caller sets on create or update.
#[derive(Debug, Clone, Default)]
pub struct TenantFields {
    /// The display name.
    pub display_name: String,
    /// Raw patterns as given (validated and normalised by [`TenantFields::validate`]).
    pub patterns: Vec<String>,
    /// Whether the tenant is disabled.
    pub disabled: bool,
}

impl TenantFields {
    /// Validates every field and returns the normalised patterns. Field names in
    /// errors are those of the `Tenant` message (`tenant.patterns[2]`).
    pub fn validate(&self) -> Result<Vec<String>> {
        validate_display_name(&self.display_name)?;
        if self.patterns.len() > MAX_PATTERNS_PER_TENANT {
            return Err(Error::invalid_argument(
                "tenant.patterns",
                format!("at most {MAX_PATTERNS_PER_TENANT} patterns per tenant"),
            ));
        }
        let mut out: Vec<String> = Vec::with_capacity(self.patterns.len());
        for (i, raw) in self.patterns.iter().enumerate() {
            let field = format!("tenant.patterns[{i}]");
            let text = Pattern::parse(raw, &field)?.as_text();
            if let Some(j) = out.iter().position(|p| *p == text) {
                return Err(Error::invalid_argument(
                    &field,
                    format!("{raw:?} is the same pattern as tenant.patterns[{j}]"),
                ));
            }
            out.push(text);
        }
        Ok(out)
    }
}

fn validate_display_name(name: &str) -> Result<()> {
    if name.chars().count() > MAX_DISPLAY_NAME_LEN {
        return Err(Error::invalid_argument(
            "tenant.display_name",
            format!("must be at most {MAX_DISPLAY_NAME_LEN} characters"),
        ));
    }
    Ok(())
}

/// Which fields an update changes.
#[derive(Debug, Clone, Copy, Default)]
pub struct UpdatedFields {
    /// Change the display name.
    pub display_name: bool,
    /// Replace the patterns.
    pub patterns: bool,
    /// Change `disabled`.
    pub disabled: bool,
}

impl UpdatedFields {
    /// Every updatable field.
    pub const ALL: UpdatedFields = UpdatedFields {
        display_name: true,
        patterns: true,
        disabled: true,
    };

    /// Parses field-mask paths; an empty list means every field.
    pub fn parse(paths: &[String]) -> Result<UpdatedFields> {
        let m = FieldMask::parse(
            paths,
            &[
                &["display_name", "displayName"],
                &["patterns"],
                &["disabled"],
            ],
            &["id", "revision", "create_time", "update_time"],
        )?;
        Ok(UpdatedFields {
            display_name: m.covers("display_name"),
            patterns: m.covers("patterns"),
            disabled: m.covers("disabled"),
        })
    }
}

/// Where a resolution was answered from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolvedFrom {
    /// The in-process matcher.
    Local,
    /// The shared Redis cache.
    Redis,
    /// The database (matcher not loaded yet).
    Database,
}

/// A key resolved to a tenant.
#[derive(Debug, Clone)]
pub struct Resolution {
    /// The tenant.
    pub tenant: Arc<TenantRecord>,
    /// The pattern that matched.
    pub pattern: Arc<str>,
    /// The normalised key.
    pub key: String,
    /// Where the answer came from.
    pub source: ResolvedFrom,
}

impl From<CachedTenant> for TenantRecord {
    fn from(t: CachedTenant) -> TenantRecord {
        TenantRecord {
            id: t.id,
            display_name: t.display_name,
            patterns: t.patterns,
            disabled: t.disabled,
            revision: t.revision,
            created_at_us: t.created_at_us,
            updated_at_us: t.updated_at_us,
        }
    }
}

impl From<&TenantRecord> for CachedTenant {
    fn from(t: &TenantRecord) -> CachedTenant {
        CachedTenant {
            id: t.id.clone(),
            display_name: t.display_name.clone(),
            patterns: t.patterns.clone(),
            disabled: t.disabled,
            revision: t.revision,
            created_at_us: t.created_at_us,
            updated_at_us: t.updated_at_us,
        }
    }
}

/// The tenant component of a replica: storage, the matcher, and the caches.
pub struct Tenants {
    store: Store,
    cache: ResolutionCache,
    matcher: ArcSwap<Option<Layered>>,
    /// Held while a new matcher is made from the current one and stored.
    swapping: std::sync::Mutex<()>,
    /// Numbers the tenant changes applied to the matcher.
    seq: AtomicU64,
    /// Full loads so far.
    epoch: AtomicU64,
    /// A merge of the changes into the base runs.
    merging: Arc<std::sync::atomic::AtomicBool>,
    /// The revision of the last tenant change this replica knows of; part of
    /// every Redis cache key, so a change makes older entries unreachable.
    generation: AtomicI64,
    reload_requested: AtomicU64,
    reload_done: tokio::sync::Mutex<u64>,
}

impl std::fmt::Debug for Tenants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenants")
            .field("generation", &self.generation.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Tenants {
    /// Returns the revision of the last committed tenant change: the Redis
    /// cache generation a replica starts with.
    pub async fn stored_generation(store: &Store) -> Result<i64> {
        store::generation(store).await
    }

    /// Creates the component with no matcher loaded yet; `generation` is the
    /// revision of the last tenant change known ([`Tenants::stored_generation`]).
    pub fn new(store: Store, cache: ResolutionCache, generation: i64) -> Tenants {
        Tenants {
            store,
            cache,
            matcher: ArcSwap::from_pointee(None),
            swapping: std::sync::Mutex::new(()),
            seq: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            merging: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            generation: AtomicI64::new(generation),
            reload_requested: AtomicU64::new(0),
            reload_done: tokio::sync::Mutex::new(0),
        }
    }

    /// Rebuilds the matcher from the database and swaps it in. Concurrent
    /// callers share one reload that started after their call.
    pub async fn reload(&self) -> Result<()> {
        let ticket = self.reload_requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut done = self.reload_done.lock().await;
        if *done >= ticket {
            return Ok(());
        }
        let covers = self.reload_requested.load(Ordering::SeqCst);
        let tenants = store::load_all(&self.store).await?;
        let matcher = tokio::task::spawn_blocking(move || Matcher::build(tenants))
            .await
            .map_err(|e| Error::internal("building the tenant matcher", e))?;
        tracing::debug!(patterns = matcher.len(), "tenant matcher reloaded");
        {
            let _swap = self.swapping.lock().unwrap_or_else(|p| p.into_inner());
            let epoch = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
            self.matcher
                .store(Arc::new(Some(Layered::new(matcher, epoch))));
        }
        *done = covers;
        Ok(())
    }

    /// Applies the changes of tenants `ids` to the matcher: their records are
    /// read again and only they are rebuilt, the rest of the matcher is
    /// shared (a reload when none is loaded yet). Once enough changes add up,
    /// one matcher over everything is built in the background and swapped
    /// in; lookups never wait for it.
    pub async fn apply_changes(self: &Arc<Self>, ids: &[String]) -> Result<()> {
        if !self.is_loaded() {
            return self.reload().await;
        }
        let mut records = Vec::with_capacity(ids.len());
        for id in ids {
            records.push((id.clone(), store::get(&self.store, id).await?));
        }
        let pending = {
            let _swap = self.swapping.lock().unwrap_or_else(|p| p.into_inner());
            let current = self.matcher.load();
            let Some(m) = current.as_ref() else {
                return Ok(());
            };
            let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
            let next = m.with_changes(records, seq);
            let pending = next.pending();
            self.matcher.store(Arc::new(Some(next)));
            pending
        };
        if pending.0 > MERGE_AFTER_TENANTS || pending.1 > MERGE_AFTER_PATTERNS {
            self.merge_in_background();
        }
        Ok(())
    }

    /// Builds one matcher over the base and the changes, off the async
    /// workers, and swaps it in with the changes made meanwhile on top.
    fn merge_in_background(self: &Arc<Self>) {
        if self.merging.swap(true, Ordering::SeqCst) {
            return;
        }
        let snapshot = self.matcher.load_full();
        if snapshot.is_none() {
            self.merging.store(false, Ordering::SeqCst);
            return;
        }
        let merging = self.merging.clone();
        let this = self.clone();
        tokio::spawn(async move {
            let snap = snapshot.clone();
            let merged =
                tokio::task::spawn_blocking(move || snap.as_ref().as_ref().map(Layered::merged))
                    .await;
            if let (Ok(Some((merged, upto))), Some(snapshot)) = (merged, snapshot.as_ref()) {
                let _swap = this.swapping.lock().unwrap_or_else(|p| p.into_inner());
                let current = this.matcher.load();
                // A full reload meanwhile replaced the base: drop this one.
                if let Some(m) = current.as_ref()
                    && m.epoch() == snapshot.epoch()
                {
                    let next = m.rebased(merged, upto);
                    tracing::debug!(patterns = next.len(), "tenant matcher merged");
                    this.matcher.store(Arc::new(Some(next)));
                }
            }
            merging.store(false, Ordering::SeqCst);
        });
    }

    /// Records that a tenant change at `revision` is committed: Redis entries of
    /// older generations stop being read at once.
    pub fn changed(&self, revision: i64) {
        self.generation.fetch_max(revision, Ordering::SeqCst);
    }

    /// Returns whether the matcher is loaded.
    pub fn is_loaded(&self) -> bool {
        self.matcher.load().is_some()
    }

    /// Resolves a raw key to its tenant.
    ///
    /// NOT_FOUND when no pattern matches or the matching tenant is disabled;
    /// INVALID_ARGUMENT (naming `key`) for a malformed key.
    pub async fn resolve(&self, raw_key: &str) -> Result<Resolution> {
        let key = pattern::normalize_key(raw_key)?;
        let guard = self.matcher.load();
        metrics::tenant_cache("local", guard.is_some());
        if let Some(m) = guard.as_ref() {
            return match m.lookup(&key) {
                Some(e) => enabled(Resolution {
                    tenant: e.tenant.clone(),
                    pattern: e.pattern.clone(),
                    key: key.into_owned(),
                    source: ResolvedFrom::Local,
                }),
                None => Err(no_tenant(&key)),
            };
        }
        drop(guard);
        self.resolve_cold(key).await
    }

    /// Resolution without the matcher: Redis, then the database.
    async fn resolve_cold(&self, key: Cow<'_, str>) -> Result<Resolution> {
        let generation = self.generation.load(Ordering::SeqCst);
        let cached = self.cache.get(generation, &key).await;
        if self.cache.is_enabled() {
            metrics::tenant_cache("redis", cached.is_some());
        }
        let (cached, source) = match cached {
            Some(c) => (c, ResolvedFrom::Redis),
            None => {
                let hit = store::resolve(&self.store, &key).await?;
                let c = CachedResolution {
                    hit: hit.map(|(pattern, tenant)| CachedHit {
                        pattern,
                        tenant: CachedTenant::from(&tenant),
                    }),
                };
                self.cache.put(generation, &key, &c).await;
                (c, ResolvedFrom::Database)
            }
        };
        match cached.hit {
            Some(CachedHit { pattern, tenant }) => enabled(Resolution {
                tenant: Arc::new(tenant.into()),
                pattern: Arc::from(pattern.as_str()),
                key: key.into_owned(),
                source,
            }),
            None => Err(no_tenant(&key)),
        }
    }

    /// Returns whether tenant `id` exists, from the matcher when it is loaded
    /// (the database otherwise).
    pub async fn exists(&self, id: &str) -> Result<bool> {
        if let Some(m) = self.matcher.load().as_ref() {
            return Ok(m.tenant(id).is_some());
        }
        Ok(store::get(&self.store, id).await?.is_some())
    }

    /// Creates a tenant; returns it as stored.
    pub async fn create(
        &self,
        id: &TenantId,
        fields: &TenantFields,
        by: &Attribution,
    ) -> Result<(TenantRecord, Committed)> {
        let patterns = fields.validate()?;
        store::create(&self.store, id, fields, &patterns, by).await
    }

    /// Returns one tenant.
    pub async fn get(&self, id: &TenantId) -> Result<TenantRecord> {
        store::get(&self.store, id)
            .await?
            .ok_or_else(|| Error::not_found(format!("tenant {id:?}")))
    }

    /// Returns up to `page_size` tenants with ids after `after`, and whether
    /// more follow.
    pub async fn list(&self, after: &str, page_size: usize) -> Result<(Vec<TenantRecord>, bool)> {
        store::list(&self.store, after, page_size.clamp(1, MAX_PAGE_SIZE)).await
    }

    /// Updates the masked fields; refuses a stale `expected_revision` (non-zero).
    pub async fn update(
        &self,
        id: &TenantId,
        fields: &TenantFields,
        mask: UpdatedFields,
        expected_revision: i64,
        by: &Attribution,
    ) -> Result<(TenantRecord, Committed)> {
        if mask.display_name {
            validate_display_name(&fields.display_name)?;
        }
        let patterns = if mask.patterns {
            Some(fields.validate()?)
        } else {
            None
        };
        store::update(
            &self.store,
            id,
            fields,
            patterns.as_deref(),
            mask,
            expected_revision,
            by,
        )
        .await
    }

    /// Deletes a tenant, its patterns and its overrides; returns the change
    /// and how many overrides went with it.
    pub async fn delete(
        &self,
        id: &TenantId,
        expected_revision: i64,
        by: &Attribution,
    ) -> Result<(Committed, usize)> {
        store::delete(&self.store, id, expected_revision, by).await
    }
}

fn enabled(r: Resolution) -> Result<Resolution> {
    if r.tenant.disabled {
        Err(Error::not_found(format!(
            "tenant for key {:?} (the matching tenant is disabled)",
            r.key
        )))
    } else {
        Ok(r)
    }
}

fn no_tenant(key: &str) -> Error {
    Error::not_found(format!("tenant for key {key:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_validate_and_name_the_field() {
        let f = TenantFields {
            patterns: vec!["a.example".into(), "b.*.example".into()],
            ..Default::default()
        };
        let e = f.validate().unwrap_err();
        assert!(
            e.message().starts_with("tenant.patterns[1]: "),
            "{}",
            e.message()
        );
        let f = TenantFields {
            patterns: vec!["A.example".into(), "a.example.".into()],
            ..Default::default()
        };
        assert!(f.validate().unwrap_err().message().contains("same pattern"));
    }
}
