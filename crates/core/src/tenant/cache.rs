//! The shared cache of tenant resolutions in Redis (60 s TTL), used while a
//! replica's matcher is not loaded. Without Redis it is disabled and those
//! resolutions go to the database.
//!
//! Keys are `{prefix}tenants:resolve:v1:{generation}:{key}`, where the
//! generation is the revision of the last tenant change the replica knows of:
//! a tenant change makes every older entry unreachable at once, and the TTL
//! removes them within 60 s. A Redis failure is a cache miss, never a failed
//! call.
//!
//! Entries are a wire format of their own ([`CachedResolution`], JSON),
//! separate from the domain types; its version is part of the key (`v1`), so
//! releases that write different versions share a Redis without reading each
//! other's entries. An entry that does not decode is a miss.

use std::time::Duration;

use redis::{AsyncCommands, aio::ConnectionManager};
use serde::{Deserialize, Serialize};

/// The version of [`CachedResolution`] this release writes, part of every key.
pub const FORMAT_VERSION: &str = "v1";

/// A cached answer (format version 1): the pattern and tenant a key maps
/// to, or none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CachedResolution {
    /// The matching pattern and its tenant; `None` when nothing matches.
    pub hit: Option<CachedHit>,
}

/// A key that resolves (format version 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CachedHit {
    /// The normalised pattern that matched.
    pub pattern: String,
    /// Its tenant.
    pub tenant: CachedTenant,
}

/// A tenant as the cache records it (format version 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CachedTenant {
    /// The id.
    pub id: String,
    /// The display name.
    pub display_name: String,
    /// Normalised patterns, in the order given.
    pub patterns: Vec<String>,
    /// Whether the tenant is disabled.
    pub disabled: bool,
    /// The revision of its last change.
    pub revision: i64,
    /// Creation time, µs since the epoch.
    pub created_at_us: i64,
    /// Last change, µs since the epoch.
    pub updated_at_us: i64,
}

/// How long a resolution stays in Redis.
pub const RESOLUTION_TTL: Duration = Duration::from_secs(60);

/// The resolution cache.
#[derive(Clone)]
pub enum ResolutionCache {
    /// No shared cache (embedded mode).
    Disabled,
    /// Redis.
    Redis {
        /// The shared command connection.
        conn: ConnectionManager,
        /// The key prefix.
        prefix: String,
    },
}

impl ResolutionCache {
    fn key(prefix: &str, generation: i64, key: &str) -> String {
        format!("{prefix}tenants:resolve:{FORMAT_VERSION}:{generation}:{key}")
    }

    /// Returns whether there is a shared cache (Redis) at all.
    pub fn is_enabled(&self) -> bool {
        matches!(self, ResolutionCache::Redis { .. })
    }

    /// Returns the cached resolution of `key` at `generation`, if any.
    pub async fn get(&self, generation: i64, key: &str) -> Option<CachedResolution> {
        let ResolutionCache::Redis { conn, prefix } = self else {
            return None;
        };
        let mut conn = conn.clone();
        let raw: Option<String> = match conn.get(Self::key(prefix, generation, key)).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "redis get failed; treating as a cache miss");
                return None;
            }
        };
        raw.and_then(|s| serde_json::from_str(&s).ok())
    }

    /// Caches the resolution of `key` at `generation` for [`RESOLUTION_TTL`].
    pub async fn put(&self, generation: i64, key: &str, value: &CachedResolution) {
        let ResolutionCache::Redis { conn, prefix } = self else {
            return;
        };
        let Ok(json) = serde_json::to_string(value) else {
            return;
        };
        let mut conn = conn.clone();
        let r: redis::RedisResult<()> = conn
            .set_ex(
                Self::key(prefix, generation, key),
                json,
                RESOLUTION_TTL.as_secs(),
            )
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "redis set failed; resolution not cached");
        }
    }
}
