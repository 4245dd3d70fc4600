//! The change log: one row per committed write, numbered by the global
//! revision. It is the replication backbone: every replica follows it in
//! revision order (`follower.rs`), and a resuming watch replays it
//! (`flag/watch/`).
//!
//! This module owns the rows: their typed [`Change`], the versioned payload
//! format ([`wire`]), appending ([`Append::commit_change`]), reading in order
//! with the contiguity check ([`ChangeLog::changes_after`]) and pruning. The
//! capabilities convert their domain types to and from [`wire`] records; no
//! domain struct is ever stored as is.
//!
//! Reading never skips a row. A row that cannot be decoded ends the batch at
//! that revision ([`Batch::undecodable`]); a log pruned past the reader is
//! [`Read::Pruned`].

pub mod wire;

use std::{future::Future, pin::Pin};

use serde_json::Value as Json;
use sqlx::Row;

pub use wire::{FlagRecord, ValueType};

use crate::{
    audit::{self, Attribution},
    error::Result,
    store::{Store, WriteTx},
};
use wire::Payload;

/// What kind of change a row records; stored as the `entity` and `op` columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// A flag was created or updated.
    FlagUpsert,
    /// A flag and its overrides were deleted.
    FlagDelete,
    /// A tenant's override of a flag was set.
    OverrideSet,
    /// A tenant's override of a flag was removed.
    OverrideClear,
    /// A tenant was created or updated.
    TenantUpsert,
    /// A tenant, its patterns and its overrides were deleted.
    TenantDelete,
}

impl ChangeKind {
    /// Every kind.
    pub const ALL: [ChangeKind; 6] = [
        ChangeKind::FlagUpsert,
        ChangeKind::FlagDelete,
        ChangeKind::OverrideSet,
        ChangeKind::OverrideClear,
        ChangeKind::TenantUpsert,
        ChangeKind::TenantDelete,
    ];

    /// Returns the `(entity, op)` columns of this kind.
    pub fn columns(self) -> (&'static str, &'static str) {
        match self {
            ChangeKind::FlagUpsert => ("flag", "upsert"),
            ChangeKind::FlagDelete => ("flag", "delete"),
            ChangeKind::OverrideSet => ("override", "upsert"),
            ChangeKind::OverrideClear => ("override", "delete"),
            ChangeKind::TenantUpsert => ("tenant", "upsert"),
            ChangeKind::TenantDelete => ("tenant", "delete"),
        }
    }

    /// Returns the kind stored as `(entity, op)`, if any.
    pub fn from_columns(entity: &str, op: &str) -> Option<ChangeKind> {
        ChangeKind::ALL
            .into_iter()
            .find(|k| k.columns() == (entity, op))
    }

    /// Returns the entity name (`flag`, `override`, `tenant`), as announced on the bus.
    pub fn entity(self) -> &'static str {
        self.columns().0
    }
}

/// One change, typed, with everything a replica or a subscriber of any tenant
/// needs to derive its state and events from the row alone.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A flag was created or changed; `overridden` lists the tenants whose
    /// override of it hides the change.
    FlagUpsert {
        /// The flag after the change.
        flag: FlagRecord,
        /// Tenants with an override of this flag at this revision, sorted.
        overridden: Vec<String>,
    },
    /// A flag and every override of it were deleted.
    FlagDelete {
        /// The flag's key.
        key: String,
    },
    /// A tenant's override was set.
    OverrideSet {
        /// The tenant.
        tenant: String,
        /// The flag.
        key: String,
        /// The override's value.
        value: Json,
    },
    /// A tenant's override was removed; the tenant sees `flag`'s stored value
    /// or default again.
    OverrideClear {
        /// The tenant.
        tenant: String,
        /// The flag at this revision.
        flag: FlagRecord,
    },
    /// A tenant was created or updated (the matcher reloads from the tables).
    TenantUpsert {
        /// The tenant.
        tenant: String,
    },
    /// A tenant was deleted with its overrides of `restored`.
    TenantDelete {
        /// The tenant.
        tenant: String,
        /// The flags it had overrides of, at this revision.
        restored: Vec<FlagRecord>,
    },
}

impl Change {
    /// Returns the kind.
    pub fn kind(&self) -> ChangeKind {
        match self {
            Change::FlagUpsert { .. } => ChangeKind::FlagUpsert,
            Change::FlagDelete { .. } => ChangeKind::FlagDelete,
            Change::OverrideSet { .. } => ChangeKind::OverrideSet,
            Change::OverrideClear { .. } => ChangeKind::OverrideClear,
            Change::TenantUpsert { .. } => ChangeKind::TenantUpsert,
            Change::TenantDelete { .. } => ChangeKind::TenantDelete,
        }
    }

    /// Returns the tenant the change is confined to, if any.
    pub fn tenant_id(&self) -> Option<&str> {
        match self {
            Change::OverrideSet { tenant, .. }
            | Change::OverrideClear { tenant, .. }
            | Change::TenantUpsert { tenant }
            | Change::TenantDelete { tenant, .. } => Some(tenant),
            Change::FlagUpsert { .. } | Change::FlagDelete { .. } => None,
        }
    }

    /// Returns the flag concerned, if any.
    pub fn flag_key(&self) -> Option<&str> {
        match self {
            Change::FlagUpsert { flag, .. } | Change::OverrideClear { flag, .. } => Some(&flag.key),
            Change::FlagDelete { key } | Change::OverrideSet { key, .. } => Some(key),
            Change::TenantUpsert { .. } | Change::TenantDelete { .. } => None,
        }
    }

    /// Returns whether the change concerns tenants (their matcher reloads).
    pub fn is_tenant_change(&self) -> bool {
        matches!(
            self,
            Change::TenantUpsert { .. } | Change::TenantDelete { .. }
        )
    }

    fn payload(&self) -> Option<Payload> {
        Some(match self {
            Change::FlagUpsert { flag, overridden } => Payload::FlagUpsert {
                flag: flag.clone(),
                overridden: overridden.clone(),
            },
            Change::FlagDelete { .. } => Payload::FlagDelete {},
            Change::OverrideSet { value, .. } => Payload::OverrideUpsert {
                value: value.clone(),
            },
            Change::OverrideClear { flag, .. } => Payload::OverrideDelete { flag: flag.clone() },
            Change::TenantUpsert { .. } => return None,
            Change::TenantDelete { restored, .. } => Payload::TenantDelete {
                restored: restored.clone(),
            },
        })
    }
}

/// A row of the change log, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Its global revision.
    pub revision: i64,
    /// Commit time, µs since the epoch.
    pub committed_at_us: i64,
    /// What happened.
    pub change: Change,
}

/// A committed change, as the writer announces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// Its revision.
    pub revision: i64,
    /// Its kind.
    pub kind: ChangeKind,
    /// The tenant it is confined to, if any.
    pub tenant_id: Option<String>,
    /// The flag concerned, if any.
    pub flag_key: Option<String>,
}

/// Told of every change this replica commits, right after the commit.
///
/// The follower implements it: it rings the bus and applies the change on
/// this replica before returning, so a caller reads its own writes. The
/// capabilities' services know only this trait, not the follower.
pub trait Announce: Send + Sync {
    /// Announces `change`; never fails (a lost announcement costs latency,
    /// since every replica also polls the log).
    fn committed<'a>(
        &'a self,
        change: &'a Committed,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
}

/// A row that cannot be decoded: the reader stops before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecodable {
    /// The row's revision.
    pub revision: i64,
    /// Why, for the log (never for clients).
    pub reason: String,
}

/// Consecutive rows read after a revision.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// The decoded rows, exactly `after + 1, after + 2, ...`; empty when
    /// nothing was committed after `after`.
    pub entries: Vec<Entry>,
    /// Set when the row after the last entry could not be decoded.
    pub undecodable: Option<Undecodable>,
    /// Whether the read stopped at its limit (more rows may follow).
    pub full: bool,
}

/// What reading after a revision found.
#[derive(Debug, Clone)]
pub enum Read {
    /// The rows that follow, in order, with no gap.
    Batch(Batch),
    /// Rows after the revision are gone (pruned): the reader must start over
    /// from a snapshot of the tables.
    Pruned,
}

/// The change log's reads and pruning.
pub trait ChangeLog {
    /// Reads up to `limit` rows after revision `after`, in order.
    ///
    /// [`Read::Pruned`] when the rows do not continue at `after + 1` (a
    /// prefix was pruned), or when none are left although later revisions
    /// are committed.
    fn changes_after(&self, after: i64, limit: i64) -> impl Future<Output = Result<Read>> + Send;

    /// Deletes the rows up to the last one committed before `before_us`;
    /// returns how many. Always a prefix by revision (replicas' clocks may
    /// disagree, revisions do not), so the log never has a hole. Subscribers
    /// resuming from before the oldest kept row get a snapshot.
    fn prune_change_log(&self, before_us: i64) -> impl Future<Output = Result<u64>> + Send;
}

/// Appending a change in a write transaction.
pub trait Append {
    /// Records `change` at this transaction's revision, with its audit
    /// entry, commits, and returns what was committed.
    fn commit_change(
        self,
        change: Change,
        audit: Audit<'_>,
    ) -> impl Future<Output = Result<Committed>> + Send;
}

/// What the audit log keeps of a change besides the change itself.
#[derive(Debug, Clone)]
pub struct Audit<'a> {
    /// Who made it and why.
    pub by: &'a Attribution,
    /// What it changed, before (none: it did not exist).
    pub before: Option<Json>,
    /// What it changed, after (none: it no longer exists).
    pub after: Option<Json>,
}

impl Change {
    /// The audit log's name of this change: `flag.create`, `flag.update`,
    /// `flag.delete`, `override.set`, `override.clear`, `tenant.create`,
    /// `tenant.update`, `tenant.delete`. An upsert is a create when there
    /// was nothing `before`.
    fn action(&self, existed: bool) -> &'static str {
        match (self.kind(), existed) {
            (ChangeKind::FlagUpsert, false) => "flag.create",
            (ChangeKind::FlagUpsert, true) => "flag.update",
            (ChangeKind::FlagDelete, _) => "flag.delete",
            (ChangeKind::OverrideSet, _) => "override.set",
            (ChangeKind::OverrideClear, _) => "override.clear",
            (ChangeKind::TenantUpsert, false) => "tenant.create",
            (ChangeKind::TenantUpsert, true) => "tenant.update",
            (ChangeKind::TenantDelete, _) => "tenant.delete",
        }
    }
}

/// A row as stored.
struct RawRow {
    revision: i64,
    entity: String,
    op: String,
    tenant_id: Option<String>,
    flag_key: Option<String>,
    payload: Option<String>,
    committed_at_us: i64,
}

async fn select_after(store: &Store, after: i64, limit: i64) -> Result<Vec<RawRow>> {
    let rows = sqlx::query(
        "SELECT revision, entity, op, tenant_id, flag_key, payload, committed_at_us FROM change_log \
         WHERE revision > $1 ORDER BY revision LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(RawRow {
                revision: r.try_get(0)?,
                entity: r.try_get(1)?,
                op: r.try_get(2)?,
                tenant_id: r.try_get(3)?,
                flag_key: r.try_get(4)?,
                payload: r.try_get(5)?,
                committed_at_us: r.try_get(6)?,
            })
        })
        .collect()
}

impl ChangeLog for Store {
    async fn changes_after(&self, after: i64, limit: i64) -> Result<Read> {
        let mut rows = select_after(self, after, limit).await?;
        if rows.is_empty() && self.current_revision().await? > after {
            // Committed revisions beyond `after` but no rows: read again (a
            // commit may have landed in between); still nothing means the log
            // was pruned past `after`.
            rows = select_after(self, after, limit).await?;
            if rows.is_empty() {
                return Ok(Read::Pruned);
            }
        }
        // Revisions are dense and committed in order, so anything but
        // after+1, after+2, ... means rows were pruned under the reader.
        if !rows
            .iter()
            .zip(after + 1..)
            .all(|(r, want)| r.revision == want)
        {
            return Ok(Read::Pruned);
        }
        let full = i64::try_from(rows.len()).is_ok_and(|n| n >= limit);
        let mut batch = Batch {
            full,
            ..Batch::default()
        };
        for row in rows {
            match decode(&row) {
                Ok(change) => batch.entries.push(Entry {
                    revision: row.revision,
                    committed_at_us: row.committed_at_us,
                    change,
                }),
                Err(reason) => {
                    batch.undecodable = Some(Undecodable {
                        revision: row.revision,
                        reason,
                    });
                    batch.full = false;
                    break;
                }
            }
        }
        Ok(Read::Batch(batch))
    }

    async fn prune_change_log(&self, before_us: i64) -> Result<u64> {
        let r = sqlx::query(
            "DELETE FROM change_log WHERE revision <= \
             (SELECT MAX(revision) FROM change_log WHERE committed_at_us < $1)",
        )
        .bind(before_us)
        .execute(self.pool())
        .await?;
        Ok(r.rows_affected())
    }
}

impl Append for WriteTx {
    async fn commit_change(mut self, change: Change, audit: Audit<'_>) -> Result<Committed> {
        let (entity, op) = change.kind().columns();
        let payload = change
            .payload()
            .map(|p| wire::encode(&p))
            .transpose()
            .map_err(|e| crate::error::Error::internal("encoding a change", e))?;
        let committed = Committed {
            revision: self.revision,
            kind: change.kind(),
            tenant_id: change.tenant_id().map(str::to_owned),
            flag_key: change.flag_key().map(str::to_owned),
        };
        sqlx::query(
            "INSERT INTO change_log (revision, entity, op, tenant_id, flag_key, payload, committed_at_us) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(self.revision)
        .bind(entity)
        .bind(op)
        .bind(committed.tenant_id.clone())
        .bind(committed.flag_key.clone())
        .bind(payload)
        .bind(self.now_us)
        .execute(&mut *self.tx)
        .await?;
        let record = audit::Record {
            action: change.action(audit.before.is_some()).to_owned(),
            revision: Some(self.revision),
            flag_key: committed.flag_key.clone(),
            tenant_id: committed.tenant_id.clone(),
            before: audit.before,
            after: audit.after,
        };
        audit::insert(&mut self.tx, self.now_us, audit.by, &record).await?;
        self.tx.commit().await?;
        Ok(committed)
    }
}

/// Decodes a row: its kind from the columns, the payload in any version this
/// release reads, and checks that columns and payload agree.
fn decode(row: &RawRow) -> Result<Change, String> {
    let kind = ChangeKind::from_columns(&row.entity, &row.op)
        .ok_or_else(|| format!("unknown change kind {:?}/{:?}", row.entity, row.op))?;
    let tenant = || {
        row.tenant_id
            .clone()
            .ok_or_else(|| format!("a {}/{} row without a tenant", row.entity, row.op))
    };
    let key = || {
        row.flag_key
            .clone()
            .ok_or_else(|| format!("a {}/{} row without a flag key", row.entity, row.op))
    };
    let payload = row.payload.as_deref().map(wire::decode).transpose()?;
    let change = match (kind, payload) {
        (ChangeKind::FlagUpsert, Some(Payload::FlagUpsert { flag, overridden })) => {
            same_key(&key()?, &flag)?;
            Change::FlagUpsert { flag, overridden }
        }
        (ChangeKind::FlagDelete, Some(Payload::FlagDelete {})) => {
            Change::FlagDelete { key: key()? }
        }
        (ChangeKind::OverrideSet, Some(Payload::OverrideUpsert { value })) => Change::OverrideSet {
            tenant: tenant()?,
            key: key()?,
            value,
        },
        (ChangeKind::OverrideClear, Some(Payload::OverrideDelete { flag })) => {
            same_key(&key()?, &flag)?;
            Change::OverrideClear {
                tenant: tenant()?,
                flag,
            }
        }
        (ChangeKind::TenantUpsert, None) => Change::TenantUpsert { tenant: tenant()? },
        (ChangeKind::TenantDelete, Some(Payload::TenantDelete { restored })) => {
            Change::TenantDelete {
                tenant: tenant()?,
                restored,
            }
        }
        (kind, payload) => {
            return Err(format!(
                "a {}/{} row with {}",
                row.entity,
                row.op,
                match payload {
                    None => "no payload".to_owned(),
                    Some(p) => format!("a payload of another kind ({kind:?}: {p:?})"),
                }
            ));
        }
    };
    Ok(change)
}

fn same_key(column: &str, flag: &FlagRecord) -> Result<(), String> {
    if column == flag.key {
        Ok(())
    } else {
        Err(format!(
            "the row is for flag {column:?} but its payload for {:?}",
            flag.key
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(
        entity: &str,
        op: &str,
        tenant: Option<&str>,
        key: Option<&str>,
        payload: Option<&str>,
    ) -> RawRow {
        RawRow {
            revision: 7,
            entity: entity.into(),
            op: op.into(),
            tenant_id: tenant.map(Into::into),
            flag_key: key.map(Into::into),
            payload: payload.map(Into::into),
            committed_at_us: 0,
        }
    }

    #[test]
    fn kinds_round_trip_through_their_columns() {
        for k in ChangeKind::ALL {
            let (entity, op) = k.columns();
            assert_eq!(ChangeKind::from_columns(entity, op), Some(k));
        }
        assert_eq!(ChangeKind::from_columns("flag", "rename"), None);
    }

    #[test]
    fn rows_whose_columns_and_payload_disagree_do_not_decode() {
        let flag = r#"{"kind":"flag_upsert","flag":{"key":"a","type":"bool","default":true,"revision":1,"created_at_us":0,"updated_at_us":0},"overridden":[]}"#;
        assert!(decode(&raw("flag", "upsert", None, Some("a"), Some(flag))).is_ok());
        for (row, reason) in [
            (
                raw("flag", "upsert", None, Some("b"), Some(flag)),
                "payload for",
            ),
            (
                raw("flag", "upsert", None, None, Some(flag)),
                "without a flag key",
            ),
            (
                raw("override", "upsert", None, Some("a"), Some(flag)),
                "another kind",
            ),
            (
                raw("tenant", "upsert", None, None, None),
                "without a tenant",
            ),
            (raw("tenant", "delete", Some("t"), None, None), "no payload"),
            (
                raw("flag", "merge", None, Some("a"), Some(flag)),
                "unknown change kind",
            ),
        ] {
            let e = decode(&row).unwrap_err();
            assert!(e.contains(reason), "{e}");
        }
    }
}
