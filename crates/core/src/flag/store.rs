//! Flag queries, shared by SQLite and PostgreSQL.
//!
//! Each write is one [`WriteTx`]: it takes the next global revision, checks
//! the caller's expected revision, writes, and appends the typed change-log
//! row ([`Append::commit_change`]); a refused check rolls everything back.

use sqlx::{AssertSqlSafe, Row, any::AnyRow};

use super::{FlagDef, FlagType, Rule, Status, check_value, state::FlagState};
use crate::{
    audit::Attribution,
    changelog::{Append, Audit, Change, Committed, FlagRecord},
    error::{Error, Result},
    json::integral,
    store::{Backend, Store, WriteTx},
};

const FLAG_COLUMNS: &str = "key, value_type, description, default_value, stored_value, definition, revision, created_at_us, updated_at_us";

fn json(field: &str, text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| Error::internal(&format!("reading stored {field}"), e))
}

/// The `definition` column: a flag's flagd-model fields beyond its key,
/// type and description.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Definition {
    state: String,
    variants: std::collections::BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    default_variant: Option<String>,
    #[serde(default)]
    targeting: Option<serde_json::Value>,
    #[serde(default)]
    metadata: serde_json::Map<String, serde_json::Value>,
}

fn def_from_row(row: &AnyRow) -> Result<FlagDef> {
    let ty: String = row.try_get("value_type")?;
    let value_type = FlagType::parse(&ty)
        .ok_or_else(|| Error::internal("reading a flag", format!("unknown type {ty:?}")))?;
    let definition: Option<String> = row.try_get("definition")?;
    let mut def = match definition {
        Some(text) => {
            let d: Definition = serde_json::from_str(&text)
                .map_err(|e| Error::internal("reading a stored flag definition", e))?;
            FlagDef {
                key: row.try_get("key")?,
                value_type,
                description: row.try_get("description")?,
                status: Status::parse(&d.state).unwrap_or(Status::Enabled),
                variants: d.variants,
                default_variant: d.default_variant,
                targeting: d.targeting.map(Rule::load),
                metadata: d.metadata,
                revision: 0,
                created_at_us: 0,
                updated_at_us: 0,
            }
        }
        None => {
            let stored: Option<String> = row.try_get("stored_value")?;
            // Written before numbers were kept as written: `3.0` for 3.
            FlagDef::legacy(
                row.try_get("key")?,
                value_type,
                row.try_get("description")?,
                integral(&json(
                    "default_value",
                    &row.try_get::<String, _>("default_value")?,
                )?),
                stored
                    .as_deref()
                    .map(|s| json("stored_value", s).map(|v| integral(&v)))
                    .transpose()?,
            )
        }
    };
    def.revision = row.try_get("revision")?;
    def.created_at_us = row.try_get("created_at_us")?;
    def.updated_at_us = row.try_get("updated_at_us")?;
    Ok(def)
}

/// A flag as the audit log shows it: flagd's flag definition, with its
/// description when it has one.
fn audited(def: &FlagDef) -> serde_json::Value {
    let mut v = super::definition::flagd_flag(def);
    if let (Some(m), false) = (v.as_object_mut(), def.description.is_empty()) {
        m.insert(
            "description".into(),
            serde_json::Value::String(def.description.clone()),
        );
    }
    v
}

fn to_text(v: &serde_json::Value) -> String {
    v.to_string()
}

/// The columns a definition is written to: `default_value`,
/// `stored_value` (the legacy view) and `definition`.
fn columns(def: &FlagDef) -> (String, Option<String>, String) {
    let definition = Definition {
        state: def.status.as_str().to_owned(),
        variants: def.variants.clone(),
        default_variant: def.default_variant.clone(),
        targeting: def.targeting.as_ref().map(|r| r.source().clone()),
        metadata: def.metadata.clone(),
    };
    (
        def.default_value()
            .map_or_else(|| "null".to_owned(), to_text),
        def.stored_value().map(to_text),
        serde_json::to_string(&definition).unwrap_or_default(),
    )
}

/// Loads the whole flag state as of one revision, in one read snapshot.
pub async fn load_state(store: &Store) -> Result<FlagState> {
    let mut tx = store.pool().begin().await?;
    if store.backend() == Backend::Postgres {
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .execute(&mut *tx)
            .await?;
    }
    let revision: i64 = sqlx::query_scalar("SELECT value FROM revision_counter WHERE id = 1")
        .fetch_one(&mut *tx)
        .await?;
    let mut state = FlagState::loaded(revision);
    let rows = sqlx::query(AssertSqlSafe(format!("SELECT {FLAG_COLUMNS} FROM flags")))
        .fetch_all(&mut *tx)
        .await?;
    for row in &rows {
        let def = def_from_row(row)?;
        state.flags.insert(def.key.clone(), def);
    }
    let rows = sqlx::query("SELECT tenant_id, flag_key, value, revision FROM tenant_overrides")
        .fetch_all(&mut *tx)
        .await?;
    for row in &rows {
        let tenant: String = row.try_get(0)?;
        let key: String = row.try_get(1)?;
        // Overrides are written through protobuf: integral numbers are
        // integers (rows written before were not).
        let value = integral(&json("override", &row.try_get::<String, _>(2)?)?);
        state.put_override(tenant, key, value, row.try_get(3)?);
    }
    tx.commit().await?;
    Ok(state)
}

/// The flag `key` as the write `w` reads it; NOT_FOUND when there is none.
pub async fn current(w: &mut WriteTx, key: &str) -> Result<FlagDef> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {FLAG_COLUMNS} FROM flags WHERE key = $1"
    )))
    .bind(key)
    .fetch_optional(&mut *w.tx)
    .await?
    .ok_or_else(|| Error::not_found(format!("flag {key:?}")))?;
    def_from_row(&row)
}

async fn overridden_by(w: &mut WriteTx, key: &str) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT tenant_id FROM tenant_overrides WHERE flag_key = $1 ORDER BY tenant_id",
    )
    .bind(key)
    .fetch_all(&mut *w.tx)
    .await?)
}

/// Creates a flag. The definition is validated by the caller.
pub async fn create(
    store: &Store,
    mut def: FlagDef,
    by: &Attribution,
) -> Result<(FlagDef, Committed)> {
    let mut w = store.begin_write().await?;
    let exists = sqlx::query("SELECT 1 FROM flags WHERE key = $1")
        .bind(def.key.clone())
        .fetch_optional(&mut *w.tx)
        .await?;
    if exists.is_some() {
        return Err(Error::already_exists(format!(
            "flag {:?} already exists",
            def.key
        )));
    }
    def.revision = w.revision;
    def.created_at_us = w.now_us;
    def.updated_at_us = w.now_us;
    let (default_value, stored_value, definition) = columns(&def);
    sqlx::query(
        "INSERT INTO flags (key, value_type, description, default_value, stored_value, definition, revision, created_at_us, updated_at_us) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
    )
    .bind(def.key.clone())
    .bind(def.value_type.as_str())
    .bind(def.description.clone())
    .bind(default_value)
    .bind(stored_value)
    .bind(definition)
    .bind(def.revision)
    .bind(def.created_at_us)
    .execute(&mut *w.tx)
    .await?;
    let audit = Audit {
        by,
        before: None,
        after: Some(audited(&def)),
    };
    let committed = w
        .commit_change(
            Change::FlagUpsert {
                flag: FlagRecord::from(&def),
                overridden: Vec::new(),
            },
            audit,
        )
        .await?;
    Ok((def, committed))
}

/// What an update changes; `None` leaves a field alone. `stored` is
/// `Some(None)` to clear the stored value.
#[derive(Debug, Default, Clone)]
pub struct FlagUpdate {
    /// A new description.
    pub description: Option<String>,
    /// A new default.
    pub default: Option<serde_json::Value>,
    /// A new stored value, or `Some(None)` to clear it.
    pub stored: Option<Option<serde_json::Value>>,
    /// The type the caller believes the flag has; another one is refused.
    pub value_type: Option<FlagType>,
    /// New flagd-model fields, checked against the flag as it is.
    pub definition: Option<super::definition::DefinitionUpdate>,
}

/// A write made in a transaction and not committed yet: the change the
/// change log records and what the audit log keeps of it.
#[derive(Debug)]
pub struct Written {
    /// The flag after the write.
    pub def: FlagDef,
    /// The change-log row.
    pub change: Change,
    /// The flag before, as the audit log shows it.
    pub before: serde_json::Value,
    /// The flag after, as the audit log shows it.
    pub after: serde_json::Value,
}

/// Updates a flag; values are type-checked against the stored type here,
/// and the flag as updated must encode within `max_def_bytes`
/// ([`super::def_bound`]), or nothing is written.
pub async fn update(
    store: &Store,
    key: &str,
    u: FlagUpdate,
    expected: i64,
    max_def_bytes: usize,
    by: &Attribution,
) -> Result<(FlagDef, Committed)> {
    let mut w = store.begin_write().await?;
    let written = update_in(&mut w, key, u, expected, max_def_bytes).await?;
    let audit = Audit {
        by,
        before: Some(written.before),
        after: Some(written.after),
    };
    let committed = w.commit_change(written.change, audit).await?;
    Ok((written.def, committed))
}

/// [`update`] within the write `w`, which the caller commits (a rollout's
/// step commits it with its own row).
pub async fn update_in(
    w: &mut WriteTx,
    key: &str,
    u: FlagUpdate,
    expected: i64,
    max_def_bytes: usize,
) -> Result<Written> {
    let mut def = current(w, key).await?;
    let before = audited(&def);
    w.expect_revision(&format!("flag {key:?}"), Some(def.revision), expected)?;
    if u.value_type.is_some_and(|t| t != def.value_type) {
        return Err(Error::invalid_argument(
            "flag.type",
            format!(
                "cannot be changed (the flag is a {})",
                def.value_type.as_str()
            ),
        ));
    }
    if let Some(d) = u.description {
        def.description = d;
    }
    if let Some(v) = u.default {
        check_value("flag.default_value", &v, def.value_type)?;
        def.variants.insert(super::DEFAULT_VARIANT.to_owned(), v);
        if def.default_variant.is_none() {
            def.default_variant = Some(super::DEFAULT_VARIANT.to_owned());
        }
    }
    if let Some(v) = u.stored {
        if let Some(v) = &v {
            check_value("flag.stored_value", v, def.value_type)?;
        }
        def.set_stored(v);
    }
    if let Some(d) = u.definition {
        d.apply_to(&mut def)?;
    }
    let size = super::def_bound(&def);
    if size > max_def_bytes {
        return Err(super::state::too_large(key, size, max_def_bytes));
    }
    def.revision = w.revision;
    def.updated_at_us = w.now_us;
    let (default_value, stored_value, definition) = columns(&def);
    sqlx::query(
        "UPDATE flags SET description = $1, default_value = $2, stored_value = $3, definition = $4, revision = $5, updated_at_us = $6 WHERE key = $7",
    )
    .bind(def.description.clone())
    .bind(default_value)
    .bind(stored_value)
    .bind(definition)
    .bind(def.revision)
    .bind(def.updated_at_us)
    .bind(key)
    .execute(&mut *w.tx)
    .await?;
    let overridden = overridden_by(w, key).await?;
    Ok(Written {
        change: Change::FlagUpsert {
            flag: FlagRecord::from(&def),
            overridden,
        },
        before,
        after: audited(&def),
        def,
    })
}

/// Deletes a flag and every override of it.
pub async fn delete(
    store: &Store,
    key: &str,
    expected: i64,
    by: &Attribution,
) -> Result<Committed> {
    let mut w = store.begin_write().await?;
    let def = current(&mut w, key).await?;
    w.expect_revision(&format!("flag {key:?}"), Some(def.revision), expected)?;
    sqlx::query("DELETE FROM tenant_overrides WHERE flag_key = $1")
        .bind(key)
        .execute(&mut *w.tx)
        .await?;
    sqlx::query("DELETE FROM flags WHERE key = $1")
        .bind(key)
        .execute(&mut *w.tx)
        .await?;
    let audit = Audit {
        by,
        before: Some(audited(&def)),
        after: None,
    };
    w.commit_change(
        Change::FlagDelete {
            key: key.to_owned(),
        },
        audit,
    )
    .await
}

/// A tenant's override of a flag: its revision and value.
async fn override_of(
    w: &mut WriteTx,
    tenant: &str,
    key: &str,
) -> Result<Option<(i64, serde_json::Value)>> {
    let row = sqlx::query(
        "SELECT revision, value FROM tenant_overrides WHERE tenant_id = $1 AND flag_key = $2",
    )
    .bind(tenant)
    .bind(key)
    .fetch_optional(&mut *w.tx)
    .await?;
    row.map(|r| {
        Ok((
            r.try_get(0)?,
            integral(&json("override", &r.try_get::<String, _>(1)?)?),
        ))
    })
    .transpose()
}

/// Sets a tenant's override.
pub async fn set_override(
    store: &Store,
    tenant: &str,
    key: &str,
    value: serde_json::Value,
    expected: i64,
    by: &Attribution,
) -> Result<Committed> {
    let mut w = store.begin_write().await?;
    let tenant_exists = sqlx::query("SELECT 1 FROM tenants WHERE id = $1")
        .bind(tenant)
        .fetch_optional(&mut *w.tx)
        .await?;
    if tenant_exists.is_none() {
        return Err(Error::not_found(format!("tenant {tenant:?}")));
    }
    let def = current(&mut w, key).await?;
    check_value("value", &value, def.value_type)?;
    let existing = override_of(&mut w, tenant, key).await?;
    w.expect_revision("the override", existing.as_ref().map(|e| e.0), expected)?;
    sqlx::query(
        "INSERT INTO tenant_overrides (tenant_id, flag_key, value, revision, updated_at_us) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (tenant_id, flag_key) DO UPDATE SET value = excluded.value, revision = excluded.revision, updated_at_us = excluded.updated_at_us",
    )
    .bind(tenant)
    .bind(key)
    .bind(to_text(&value))
    .bind(w.revision)
    .bind(w.now_us)
    .execute(&mut *w.tx)
    .await?;
    let audit = Audit {
        by,
        before: existing.map(|e| e.1),
        after: Some(value.clone()),
    };
    w.commit_change(
        Change::OverrideSet {
            tenant: tenant.to_owned(),
            key: key.to_owned(),
            value,
        },
        audit,
    )
    .await
}

/// Removes a tenant's override.
pub async fn clear_override(
    store: &Store,
    tenant: &str,
    key: &str,
    expected: i64,
    by: &Attribution,
) -> Result<Committed> {
    let mut w = store.begin_write().await?;
    let def = current(&mut w, key).await?;
    let (existing, before) = override_of(&mut w, tenant, key).await?.ok_or_else(|| {
        Error::not_found(format!("override of flag {key:?} for tenant {tenant:?}"))
    })?;
    w.expect_revision("the override", Some(existing), expected)?;
    sqlx::query("DELETE FROM tenant_overrides WHERE tenant_id = $1 AND flag_key = $2")
        .bind(tenant)
        .bind(key)
        .execute(&mut *w.tx)
        .await?;
    let audit = Audit {
        by,
        before: Some(before),
        after: None,
    };
    w.commit_change(
        Change::OverrideClear {
            tenant: tenant.to_owned(),
            flag: FlagRecord::from(&def),
        },
        audit,
    )
    .await
}

/// Removes every override of `tenant` within the deletion's transaction
/// `w`, and returns the flags it had overrides of, as the change log records
/// them: what the tenant's subscribers see again once it is gone. The one
/// place the overrides of a deleted tenant go, so the tenant store runs no
/// flag SQL.
pub async fn take_overrides_of(w: &mut WriteTx, tenant: &str) -> Result<Vec<FlagRecord>> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {FLAG_COLUMNS} FROM flags WHERE key IN (SELECT flag_key FROM tenant_overrides WHERE tenant_id = $1) ORDER BY key"
    )))
    .bind(tenant)
    .fetch_all(&mut *w.tx)
    .await?;
    let restored = rows
        .iter()
        .map(|r| def_from_row(r).map(|d| FlagRecord::from(&d)))
        .collect::<Result<Vec<_>>>()?;
    sqlx::query("DELETE FROM tenant_overrides WHERE tenant_id = $1")
        .bind(tenant)
        .execute(&mut *w.tx)
        .await?;
    Ok(restored)
}
