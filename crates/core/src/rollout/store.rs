//! Rollouts' SQL, shared by SQLite and PostgreSQL. Every write of a row is
//! a compare-and-set on its `version`; a step that changes the flag writes
//! the flag, the row and the audit entry in one transaction.

use sqlx::{AssertSqlSafe, Row, any::AnyRow};

use super::model::{Rollout, Spec, State};
use crate::{
    error::{Error, Result},
    store::{Store, WriteTx},
};

const COLUMNS: &str = "id, spec, state, stage, weight, stage_started_us, holds, flag_revision, last_verdict, baseline, reason, version, created_by, created_at_us, updated_at_us";

fn from_row(row: &AnyRow) -> Result<Rollout> {
    let spec: String = row.try_get("spec")?;
    let spec: Spec = serde_json::from_str(&spec)
        .map_err(|e| Error::internal("reading a stored rollout's plan", e))?;
    let state: String = row.try_get("state")?;
    let json = |col: &str| -> Result<Option<serde_json::Value>> {
        row.try_get::<Option<String>, _>(col)?
            .map(|v| serde_json::from_str(&v))
            .transpose()
            .map_err(|e| Error::internal("reading a stored rollout's verdict", e))
    };
    Ok(Rollout {
        id: row.try_get("id")?,
        spec,
        state: State::parse(&state).ok_or_else(|| {
            Error::internal(
                "reading a stored rollout",
                format!("unknown state {state:?}"),
            )
        })?,
        stage: usize::try_from(row.try_get::<i64, _>("stage")?).unwrap_or(0),
        weight: u32::try_from(row.try_get::<i64, _>("weight")?).unwrap_or(0),
        stage_started_us: row.try_get("stage_started_us")?,
        holds: u32::try_from(row.try_get::<i64, _>("holds")?).unwrap_or(0),
        flag_revision: row.try_get("flag_revision")?,
        last_verdict: json("last_verdict")?,
        baseline: json("baseline")?,
        reason: row.try_get("reason")?,
        version: row.try_get("version")?,
        created_by: row.try_get("created_by")?,
        created_at_us: row.try_get("created_at_us")?,
        updated_at_us: row.try_get("updated_at_us")?,
    })
}

/// ALREADY_EXISTS when `flag_key` has a running or paused rollout (read in
/// the write `w`, which serialises writers).
pub async fn refuse_second(w: &mut WriteTx, flag_key: &str) -> Result<()> {
    let active = sqlx::query(
        "SELECT id FROM rollouts WHERE flag_key = $1 AND state IN ('running', 'paused')",
    )
    .bind(flag_key.to_owned())
    .fetch_optional(&mut *w.tx)
    .await?;
    if let Some(row) = active {
        let id: String = row.try_get(0)?;
        return Err(Error::already_exists(format!(
            "flag {flag_key:?} has a rollout in progress ({id}): abort it first"
        )));
    }
    Ok(())
}

/// Inserts a new rollout in `w` (which also writes its first stage), after
/// [`refuse_second`].
pub async fn insert(w: &mut WriteTx, r: &Rollout) -> Result<()> {
    let spec = serde_json::to_string(&r.spec)
        .map_err(|e| Error::internal("writing a rollout's plan", e))?;
    sqlx::query(
        "INSERT INTO rollouts (id, flag_key, spec, state, stage, weight, stage_started_us, holds, flag_revision, last_verdict, baseline, reason, version, created_by, created_at_us, updated_at_us) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, NULL, $10, $11, $12, $13, $13)",
    )
    .bind(r.id.clone())
    .bind(r.spec.flag_key.clone())
    .bind(spec)
    .bind(r.state.as_str())
    .bind(r.stage as i64)
    .bind(i64::from(r.weight))
    .bind(r.stage_started_us)
    .bind(i64::from(r.holds))
    .bind(r.flag_revision)
    .bind(r.reason.clone())
    .bind(r.version)
    .bind(r.created_by.clone())
    .bind(r.created_at_us)
    .execute(&mut *w.tx)
    .await?;
    Ok(())
}

/// Reads one rollout.
pub async fn get(store: &Store, id: &str) -> Result<Rollout> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM rollouts WHERE id = $1"
    )))
    .bind(id.to_owned())
    .fetch_optional(store.pool())
    .await?
    .ok_or_else(|| Error::not_found(format!("rollout {id:?}")))?;
    from_row(&row)
}

/// One page of rollouts, newest first (ids after `after` in that order),
/// of `flag_key` when given; and whether more follow.
pub async fn list(
    store: &Store,
    flag_key: Option<&str>,
    after: Option<(i64, String)>,
    size: usize,
) -> Result<(Vec<Rollout>, bool)> {
    let mut sql = format!("SELECT {COLUMNS} FROM rollouts WHERE 1 = 1");
    let mut n = 0;
    let mut next = || {
        n += 1;
        format!("${n}")
    };
    if flag_key.is_some() {
        sql.push_str(&format!(" AND flag_key = {}", next()));
    }
    if after.is_some() {
        let (a, b, c) = (next(), next(), next());
        sql.push_str(&format!(
            " AND (created_at_us < {a} OR (created_at_us = {b} AND id < {c}))"
        ));
    }
    sql.push_str(&format!(
        " ORDER BY created_at_us DESC, id DESC LIMIT {}",
        size + 1
    ));
    let mut q = sqlx::query(AssertSqlSafe(sql));
    if let Some(f) = flag_key {
        q = q.bind(f.to_owned());
    }
    if let Some((at, id)) = after {
        q = q.bind(at).bind(at).bind(id);
    }
    let rows = q.fetch_all(store.pool()).await?;
    let mut items = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
    let more = items.len() > size;
    items.truncate(size);
    Ok((items, more))
}

/// Every running rollout (the driver's candidates).
pub async fn running(store: &Store) -> Result<Vec<Rollout>> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM rollouts WHERE state = 'running' ORDER BY created_at_us"
    )))
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(from_row).collect()
}

/// Every running or paused rollout, and those changed since `since_us`
/// (for the metrics: an ended rollout's gauges show how it ended).
pub async fn recent(store: &Store, since_us: i64) -> Result<Vec<Rollout>> {
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM rollouts WHERE state IN ('running', 'paused') OR updated_at_us >= $1"
    )))
    .bind(since_us)
    .fetch_all(store.pool())
    .await?;
    rows.iter().map(from_row).collect()
}

/// Takes or renews the lease of rollout `id` for `owner` until `until_us`,
/// when it is free, expired at `now_us`, or `owner`'s already; returns
/// whether `owner` holds it.
pub async fn lease(
    store: &Store,
    id: &str,
    owner: &str,
    now_us: i64,
    until_us: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE rollouts SET lease_owner = $1, lease_until_us = $2 \
         WHERE id = $3 AND state = 'running' \
         AND (lease_owner IS NULL OR lease_owner = $1 OR lease_until_us < $4)",
    )
    .bind(owner.to_owned())
    .bind(until_us)
    .bind(id.to_owned())
    .bind(now_us)
    .execute(store.pool())
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Gives up `owner`'s leases (at shutdown), so another replica takes over
/// at once.
pub async fn release(store: &Store, owner: &str) -> Result<()> {
    sqlx::query(
        "UPDATE rollouts SET lease_owner = NULL, lease_until_us = NULL WHERE lease_owner = $1",
    )
    .bind(owner.to_owned())
    .execute(store.pool())
    .await?;
    Ok(())
}

/// Who a write of a row must be: anyone (a person's action), or the holder
/// of a lease that has not expired (the driver).
#[derive(Debug, Clone, Copy)]
pub enum Writer<'a> {
    /// A person: only the version is compared.
    Person,
    /// The driver `owner`, which must still hold the lease (no other
    /// replica took it over); its lease is renewed until `lease_until_us`.
    Driver {
        /// The lease's owner.
        owner: &'a str,
        /// The renewed lease's end, µs.
        lease_until_us: i64,
    },
}

/// Writes `r`'s moving parts on `conn` (the caller's transaction: a
/// flag's write transaction when the step changes the flag, a plain one
/// otherwise, which takes no revision) if the stored row is still at
/// `r.version - 1` (and, for the driver, it still owns the lease);
/// FAILED_PRECONDITION otherwise, and the caller's transaction rolls back.
pub async fn save(conn: &mut sqlx::AnyConnection, r: &Rollout, writer: Writer<'_>) -> Result<()> {
    let text = |v: &Option<serde_json::Value>| v.as_ref().map(serde_json::Value::to_string);
    // The driver's write also renews its lease: a slow judgment does not
    // lose it unless another replica has taken it meanwhile.
    let sql = match writer {
        Writer::Person => {
            "UPDATE rollouts SET state = $1, stage = $2, weight = $3, stage_started_us = $4, holds = $5, \
             flag_revision = $6, last_verdict = $7, reason = $8, version = $9, updated_at_us = $10, baseline = $13 \
             WHERE id = $11 AND version = $12"
        }
        Writer::Driver { .. } => {
            "UPDATE rollouts SET state = $1, stage = $2, weight = $3, stage_started_us = $4, holds = $5, \
             flag_revision = $6, last_verdict = $7, reason = $8, version = $9, updated_at_us = $10, baseline = $13, \
             lease_until_us = $15 \
             WHERE id = $11 AND version = $12 AND lease_owner = $14"
        }
    };
    let mut q = sqlx::query(sql)
        .bind(r.state.as_str())
        .bind(r.stage as i64)
        .bind(i64::from(r.weight))
        .bind(r.stage_started_us)
        .bind(i64::from(r.holds))
        .bind(r.flag_revision)
        .bind(text(&r.last_verdict))
        .bind(r.reason.clone())
        .bind(r.version)
        .bind(r.updated_at_us)
        .bind(r.id.clone())
        .bind(r.version - 1)
        .bind(text(&r.baseline));
    if let Writer::Driver {
        owner,
        lease_until_us,
    } = writer
    {
        q = q.bind(owner.to_owned()).bind(lease_until_us);
    }
    let done = q.execute(conn).await?;
    if done.rows_affected() != 1 {
        return Err(Error::failed_precondition(format!(
            "rollout {:?} changed meanwhile: read it again",
            r.id
        )));
    }
    Ok(())
}
