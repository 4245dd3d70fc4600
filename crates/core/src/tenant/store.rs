//! Tenant queries, shared by SQLite and PostgreSQL.
//!
//! Every write runs in a [`WriteTx`], which holds the next global revision and
//! serialises writers; that is what makes the claim check on patterns (read,
//! then insert) race-free, and a failed check roll everything back.

use std::collections::HashMap;

use sqlx::{AssertSqlSafe, Row, any::AnyRow};

use super::{TenantFields, TenantRecord, UpdatedFields, matcher};
use crate::{
    audit::Attribution,
    changelog::{Append, Audit, Change, Committed},
    error::{Error, Result},
    store::{Store, WriteTx, placeholders},
};

const TENANT_COLUMNS: &str = "id, display_name, disabled, revision, created_at_us, updated_at_us";

/// A tenant as the audit log shows it.
fn audited(t: &TenantRecord) -> serde_json::Value {
    serde_json::json!({
        "displayName": t.display_name,
        "patterns": t.patterns,
        "disabled": t.disabled,
    })
}

fn tenant_from_row(row: &AnyRow) -> Result<TenantRecord> {
    Ok(TenantRecord {
        id: row.try_get("id")?,
        display_name: row.try_get("display_name")?,
        patterns: Vec::new(),
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        revision: row.try_get("revision")?,
        created_at_us: row.try_get("created_at_us")?,
        updated_at_us: row.try_get("updated_at_us")?,
    })
}

pub(super) async fn create(
    store: &Store,
    id: &str,
    fields: &TenantFields,
    patterns: &[String],
    by: &Attribution,
) -> Result<(TenantRecord, Committed)> {
    let mut w = store.begin_write().await?;
    let exists = sqlx::query("SELECT 1 FROM tenants WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *w.tx)
        .await?;
    if exists.is_some() {
        return Err(Error::already_exists(format!(
            "tenant {id:?} already exists"
        )));
    }
    sqlx::query(
        "INSERT INTO tenants (id, display_name, disabled, revision, created_at_us, updated_at_us) \
         VALUES ($1, $2, $3, $4, $5, $5)",
    )
    .bind(id)
    .bind(&fields.display_name)
    .bind(i64::from(fields.disabled))
    .bind(w.revision)
    .bind(w.now_us)
    .execute(&mut *w.tx)
    .await?;
    claim_patterns(&mut w, id, patterns).await?;
    bump_generation(&mut w).await?;
    let record = TenantRecord {
        id: id.to_owned(),
        display_name: fields.display_name.clone(),
        patterns: patterns.to_vec(),
        disabled: fields.disabled,
        revision: w.revision,
        created_at_us: w.now_us,
        updated_at_us: w.now_us,
    };
    let audit = Audit {
        by,
        before: None,
        after: Some(audited(&record)),
    };
    let committed = w
        .commit_change(
            Change::TenantUpsert {
                tenant: id.to_owned(),
            },
            audit,
        )
        .await?;
    Ok((record, committed))
}

/// Inserts `patterns` for `id`, refusing any already claimed by another tenant.
async fn claim_patterns(w: &mut WriteTx, id: &str, patterns: &[String]) -> Result<()> {
    if patterns.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "SELECT pattern, tenant_id FROM tenant_patterns WHERE pattern IN ({})",
        placeholders(1, patterns.len())
    );
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for p in patterns {
        q = q.bind(p.clone());
    }
    if let Some(row) = q.fetch_all(&mut *w.tx).await?.first() {
        let pattern: String = row.try_get(0)?;
        let owner: String = row.try_get(1)?;
        return Err(Error::already_exists(format!(
            "pattern {pattern:?} already belongs to tenant {owner:?}"
        )));
    }
    for (i, p) in patterns.iter().enumerate() {
        sqlx::query(
            "INSERT INTO tenant_patterns (pattern, tenant_id, position) VALUES ($1, $2, $3)",
        )
        .bind(p.clone())
        .bind(id)
        .bind(i as i64)
        .execute(&mut *w.tx)
        .await?;
    }
    Ok(())
}

pub(super) async fn get(store: &Store, id: &str) -> Result<Option<TenantRecord>> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(store.pool())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let mut t = tenant_from_row(&row)?;
    t.patterns = patterns_of(store.pool(), id).await?;
    Ok(Some(t))
}

pub(super) async fn list(
    store: &Store,
    after: &str,
    page_size: usize,
) -> Result<(Vec<TenantRecord>, bool)> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {TENANT_COLUMNS} FROM tenants WHERE id > $1 ORDER BY id LIMIT $2"
    )))
    .bind(after)
    .bind(page_size as i64 + 1)
    .fetch_all(store.pool())
    .await?;
    let more = rows.len() > page_size;
    let mut tenants = rows
        .iter()
        .take(page_size)
        .map(tenant_from_row)
        .collect::<Result<Vec<_>>>()?;
    if let (Some(first), Some(last)) = (tenants.first(), tenants.last()) {
        let rows = sqlx::query(
            "SELECT tenant_id, pattern FROM tenant_patterns \
             WHERE tenant_id >= $1 AND tenant_id <= $2 ORDER BY tenant_id, position",
        )
        .bind(first.id.clone())
        .bind(last.id.clone())
        .fetch_all(store.pool())
        .await?;
        attach_patterns(&mut tenants, &rows)?;
    }
    Ok((tenants, more))
}

fn attach_patterns(tenants: &mut [TenantRecord], rows: &[AnyRow]) -> Result<()> {
    let index: HashMap<String, usize> = tenants
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.clone(), i))
        .collect();
    for row in rows {
        let tenant_id: String = row.try_get(0)?;
        if let Some(&i) = index.get(&tenant_id) {
            tenants[i].patterns.push(row.try_get(1)?);
        }
    }
    Ok(())
}

/// Loads every tenant with its patterns (for the matcher).
pub(super) async fn load_all(store: &Store) -> Result<Vec<TenantRecord>> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {TENANT_COLUMNS} FROM tenants ORDER BY id"
    )))
    .fetch_all(store.pool())
    .await?;
    let mut tenants = rows
        .iter()
        .map(tenant_from_row)
        .collect::<Result<Vec<_>>>()?;
    let rows =
        sqlx::query("SELECT tenant_id, pattern FROM tenant_patterns ORDER BY tenant_id, position")
            .fetch_all(store.pool())
            .await?;
    attach_patterns(&mut tenants, &rows)?;
    Ok(tenants)
}

/// Resolves a normalised key with one query over the patterns that could match.
pub(super) async fn resolve(store: &Store, key: &str) -> Result<Option<(String, TenantRecord)>> {
    let candidates = matcher::candidate_patterns(key);
    let sql = format!(
        "SELECT p.pattern, t.id, t.display_name, t.disabled, t.revision, t.created_at_us, t.updated_at_us \
         FROM tenant_patterns p JOIN tenants t ON t.id = p.tenant_id WHERE p.pattern IN ({})",
        placeholders(1, candidates.len())
    );
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for c in candidates {
        q = q.bind(c);
    }
    let rows = q.fetch_all(store.pool()).await?;
    let found = rows
        .iter()
        .map(|r| Ok((r.try_get::<String, _>(0)?, tenant_from_row(r)?)))
        .collect::<Result<Vec<_>>>()?;
    let Some((pattern, mut tenant)) = matcher::most_specific(found) else {
        return Ok(None);
    };
    tenant.patterns = patterns_of(store.pool(), &tenant.id).await?;
    Ok(Some((pattern, tenant)))
}

/// Locks the tenant's row for this transaction and checks `expected_revision`.
async fn current(w: &mut WriteTx, id: &str, expected_revision: i64) -> Result<TenantRecord> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *w.tx)
    .await?
    .ok_or_else(|| Error::not_found(format!("tenant {id:?}")))?;
    let t = tenant_from_row(&row)?;
    w.expect_revision(
        &format!("tenant {id:?}"),
        Some(t.revision),
        expected_revision,
    )?;
    Ok(t)
}

pub(super) async fn update(
    store: &Store,
    id: &str,
    fields: &TenantFields,
    patterns: Option<&[String]>,
    mask: UpdatedFields,
    expected_revision: i64,
    by: &Attribution,
) -> Result<(TenantRecord, Committed)> {
    let mut w = store.begin_write().await?;
    let mut t = current(&mut w, id, expected_revision).await?;
    t.patterns = patterns_of(&mut *w.tx, id).await?;
    let before = audited(&t);
    if mask.display_name {
        t.display_name = fields.display_name.clone();
    }
    if mask.disabled {
        t.disabled = fields.disabled;
    }
    sqlx::query(
        "UPDATE tenants SET display_name = $1, disabled = $2, revision = $3, updated_at_us = $4 WHERE id = $5",
    )
    .bind(t.display_name.clone())
    .bind(i64::from(t.disabled))
    .bind(w.revision)
    .bind(w.now_us)
    .bind(id)
    .execute(&mut *w.tx)
    .await?;
    if let Some(patterns) = patterns {
        sqlx::query("DELETE FROM tenant_patterns WHERE tenant_id = $1")
            .bind(id)
            .execute(&mut *w.tx)
            .await?;
        claim_patterns(&mut w, id, patterns).await?;
        t.patterns = patterns.to_vec();
    }
    bump_generation(&mut w).await?;
    t.revision = w.revision;
    t.updated_at_us = w.now_us;
    let audit = Audit {
        by,
        before: Some(before),
        after: Some(audited(&t)),
    };
    let committed = w
        .commit_change(
            Change::TenantUpsert {
                tenant: id.to_owned(),
            },
            audit,
        )
        .await?;
    Ok((t, committed))
}

/// Deletes a tenant; returns the change and how many of its overrides went
/// with it.
pub(super) async fn delete(
    store: &Store,
    id: &str,
    expected_revision: i64,
    by: &Attribution,
) -> Result<(Committed, usize)> {
    let mut w = store.begin_write().await?;
    let mut t = current(&mut w, id, expected_revision).await?;
    t.patterns = patterns_of(&mut *w.tx, id).await?;
    let restored = crate::flag::store::take_overrides_of(&mut w, id).await?;
    let overrides = restored.len();
    sqlx::query("DELETE FROM tenant_patterns WHERE tenant_id = $1")
        .bind(id)
        .execute(&mut *w.tx)
        .await?;
    sqlx::query("DELETE FROM tenants WHERE id = $1")
        .bind(id)
        .execute(&mut *w.tx)
        .await?;
    bump_generation(&mut w).await?;
    let audit = Audit {
        by,
        before: Some(audited(&t)),
        after: None,
    };
    let committed = w
        .commit_change(
            Change::TenantDelete {
                tenant: id.to_owned(),
                restored,
            },
            audit,
        )
        .await?;
    Ok((committed, overrides))
}

/// Records this transaction's revision as the last tenant change.
async fn bump_generation(w: &mut WriteTx) -> Result<()> {
    sqlx::query("UPDATE tenant_generation SET value = $1 WHERE id = 1")
        .bind(w.revision)
        .execute(&mut *w.tx)
        .await?;
    Ok(())
}

/// Returns the revision of the last committed tenant change.
pub(super) async fn generation(store: &Store) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT value FROM tenant_generation WHERE id = 1")
            .fetch_one(store.pool())
            .await?,
    )
}

/// Returns a tenant's patterns in the order given.
async fn patterns_of<'e, E>(executor: E, tenant_id: &str) -> Result<Vec<String>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    Ok(sqlx::query_scalar(
        "SELECT pattern FROM tenant_patterns WHERE tenant_id = $1 ORDER BY position",
    )
    .bind(tenant_id.to_owned())
    .fetch_all(executor)
    .await?)
}
