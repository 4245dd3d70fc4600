//! The audit log: who changed what, when, why, and what it was before and
//! after.
//!
//! A change of a flag, an override or a tenant writes its audit entry in its
//! own write transaction, at its revision ([`crate::changelog::Append`]), so
//! there is never a change without its entry nor an entry without its
//! change. Tokens made or revoked, and a rollout's steps that change no
//! flag, are entries without a revision. The table is never pruned (the
//! change log is, once no watch needs to replay it).
//!
//! Who is an [`Attribution`]: the caller's token name (or the setting a
//! configured token came from) with the reason its request gave in the
//! `x-switchyard-reason` header, or `rollout:<id>` with the verdict that
//! moved it.

use std::sync::Arc;

use futures_util::{Stream, TryStreamExt};
use serde_json::Value as Json;
use sqlx::{AssertSqlSafe, Row, any::AnyRow};

use crate::{
    auth::{Principal, Scope},
    error::{Error, Result},
    service::page::{Page, PageRequest, fit},
    store::Store,
};

/// Who made a change and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribution {
    /// A token's name, a configured token's setting, or `rollout:<id>`.
    pub actor: Arc<str>,
    /// The reason or comment given (may be empty).
    pub reason: String,
    /// For an automatic step, the verdict that made it, with its figures.
    pub verdict: Option<Json>,
}

impl Attribution {
    /// The caller of a request, with the reason it gave; INVALID_ARGUMENT
    /// when that reason cannot be kept.
    pub fn of(p: &Principal) -> Result<Attribution> {
        Ok(Attribution {
            actor: p.caller().clone(),
            reason: p.reason()?.to_owned(),
            verdict: None,
        })
    }

    /// The server itself (`actor`: `rollout:<id>`, ...).
    pub fn automatic(actor: &str, reason: String, verdict: Option<Json>) -> Attribution {
        Attribution {
            actor: Arc::from(actor),
            reason,
            verdict,
        }
    }
}

/// What an entry is about, besides who and when.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// `flag.create`, `override.set`, `tenant.delete`, `token.create`,
    /// `rollout.pause`, ...
    pub action: String,
    /// The revision of the change, when it changed flags, overrides or
    /// tenants.
    pub revision: Option<i64>,
    /// The flag concerned, if any.
    pub flag_key: Option<String>,
    /// The tenant concerned, if any.
    pub tenant_id: Option<String>,
    /// What it was before (none: it did not exist).
    pub before: Option<Json>,
    /// What it is after (none: it no longer exists).
    pub after: Option<Json>,
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// Its position in the log: later entries have larger ids.
    pub id: i64,
    /// When, µs since the epoch.
    pub at_us: i64,
    /// Who and why.
    pub by: Attribution,
    /// What.
    pub record: Record,
}

/// Writes an entry on `conn` (a write's own transaction).
pub async fn insert(
    conn: &mut sqlx::AnyConnection,
    at_us: i64,
    by: &Attribution,
    record: &Record,
) -> Result<()> {
    let text = |v: &Option<Json>| v.as_ref().map(Json::to_string);
    // PostgreSQL numbers rows when they are inserted, not when they commit:
    // entries are written one transaction at a time (the lock is held to the
    // commit), so ids are in commit order and a reader paging by id (an
    // export resumed after an id) never passes one that commits later.
    // SQLite has one writer at a time anyway.
    if conn.backend_name() == "PostgreSQL" {
        sqlx::query("SELECT pg_advisory_xact_lock(7355608)")
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query(
        "INSERT INTO audit_log (at_us, actor, action, revision, flag_key, tenant_id, before_json, after_json, reason, verdict) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(at_us)
    .bind(by.actor.to_string())
    .bind(record.action.clone())
    .bind(record.revision)
    .bind(record.flag_key.clone())
    .bind(record.tenant_id.clone())
    .bind(text(&record.before))
    .bind(text(&record.after))
    .bind(by.reason.clone())
    .bind(text(&by.verdict))
    .execute(conn)
    .await?;
    Ok(())
}

/// Which entries a read wants; `None` matches any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Entries about this flag.
    pub flag_key: Option<String>,
    /// Entries about this tenant.
    pub tenant_id: Option<String>,
    /// Entries by this actor.
    pub actor: Option<String>,
    /// Entries at or after this time (µs since the epoch).
    pub since_us: Option<i64>,
    /// Entries before this time (µs since the epoch).
    pub until_us: Option<i64>,
}

const COLUMNS: &str = "id, at_us, actor, action, revision, flag_key, tenant_id, before_json, after_json, reason, verdict";

fn entry(row: &AnyRow) -> Result<AuditEntry> {
    let json = |col: &str| -> Result<Option<Json>> {
        row.try_get::<Option<String>, _>(col)?
            .map(|t| {
                serde_json::from_str(&t).map_err(|e| Error::internal("reading an audit entry", e))
            })
            .transpose()
    };
    Ok(AuditEntry {
        id: row.try_get("id")?,
        at_us: row.try_get("at_us")?,
        by: Attribution {
            actor: Arc::from(row.try_get::<String, _>("actor")?),
            reason: row.try_get("reason")?,
            verdict: json("verdict")?,
        },
        record: Record {
            action: row.try_get("action")?,
            revision: row.try_get("revision")?,
            flag_key: row.try_get("flag_key")?,
            tenant_id: row.try_get("tenant_id")?,
            before: json("before_json")?,
            after: json("after_json")?,
        },
    })
}

/// An upper bound of an entry's encoded size, by which pages are cut.
fn size_bound(e: &AuditEntry) -> usize {
    let json = |v: &Option<Json>| v.as_ref().map_or(0, |v| v.to_string().len() * 2);
    256 + e.by.actor.len()
        + e.by.reason.len()
        + e.record.action.len()
        + e.record.flag_key.as_ref().map_or(0, String::len)
        + e.record.tenant_id.as_ref().map_or(0, String::len)
        + json(&e.record.before)
        + json(&e.record.after)
        + json(&e.by.verdict)
}

/// Which way a read goes through the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    /// Newest first, ids below the cursor (listing).
    Newest,
    /// Oldest first, ids above the cursor (export).
    Oldest,
}

async fn select(
    store: &Store,
    filter: &Filter,
    cursor: Option<i64>,
    order: Order,
    limit: usize,
) -> Result<Vec<AuditEntry>> {
    let mut clauses = Vec::new();
    let mut binds: Vec<Bind> = Vec::new();
    enum Bind {
        Text(String),
        Int(i64),
    }
    let mut push = |clause: &str, b: Bind| {
        binds.push(b);
        clauses.push(format!("{clause} ${}", binds.len()));
    };
    if let Some(f) = &filter.flag_key {
        push("flag_key =", Bind::Text(f.clone()));
    }
    if let Some(t) = &filter.tenant_id {
        push("tenant_id =", Bind::Text(t.clone()));
    }
    if let Some(a) = &filter.actor {
        push("actor =", Bind::Text(a.clone()));
    }
    if let Some(s) = filter.since_us {
        push("at_us >=", Bind::Int(s));
    }
    if let Some(u) = filter.until_us {
        push("at_us <", Bind::Int(u));
    }
    if let Some(c) = cursor {
        match order {
            Order::Newest => push("id <", Bind::Int(c)),
            Order::Oldest => push("id >", Bind::Int(c)),
        }
    }
    let filter_sql = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM audit_log {filter_sql} ORDER BY id {} LIMIT {}",
        match order {
            Order::Newest => "DESC",
            Order::Oldest => "ASC",
        },
        limit
    );
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for b in binds {
        q = match b {
            Bind::Text(t) => q.bind(t),
            Bind::Int(i) => q.bind(i),
        };
    }
    q.fetch_all(store.pool()).await?.iter().map(entry).collect()
}

/// The audit log's use cases: reading it, as a page or whole.
#[derive(Debug, Clone)]
pub struct AuditService {
    store: Store,
    /// The bytes a page may take.
    page_budget: usize,
}

/// A page holds at most this many entries.
pub const MAX_PAGE_SIZE: usize = 1000;
/// An export reads this many entries at a time.
const EXPORT_CHUNK: usize = 500;

impl AuditService {
    /// The service over `store`; a page is cut to `page_budget` bytes.
    pub fn new(store: Store, page_budget: usize) -> AuditService {
        AuditService { store, page_budget }
    }

    /// Checks who may read what: admins anything, a tenant token only its
    /// tenant's entries (the filter is confined to it), a gating token
    /// nothing.
    fn confine(p: &Principal, mut filter: Filter) -> Result<Filter> {
        match p.scope() {
            Scope::Admin => {}
            Scope::Gating => {
                return Err(Error::permission_denied(
                    "a gating token cannot read the audit log",
                ));
            }
            Scope::Tenant(own) => match &filter.tenant_id {
                Some(t) if t != own.as_str() => {
                    return Err(Error::permission_denied(
                        "this token is scoped to another tenant",
                    ));
                }
                _ => filter.tenant_id = Some(own.as_str().to_owned()),
            },
        }
        if let (Some(s), Some(u)) = (filter.since_us, filter.until_us)
            && u <= s
        {
            return Err(Error::invalid_argument(
                "end_time",
                "must be after start_time",
            ));
        }
        Ok(filter)
    }

    /// One page of the entries `filter` matches, newest first.
    pub async fn list(
        &self,
        p: &Principal,
        filter: Filter,
        page: &PageRequest,
    ) -> Result<Page<AuditEntry>> {
        let filter = Self::confine(p, filter)?;
        let (size, after) = page.resolve(100, MAX_PAGE_SIZE)?;
        let cursor = cursor(&after)?;
        let mut items = select(&self.store, &filter, cursor, Order::Newest, size + 1).await?;
        let more = items.len() > size;
        items.truncate(size);
        let (items, more) = fit(items, more, self.page_budget, size_bound);
        let ids: Vec<String> = items.iter().map(|e| e.id.to_string()).collect();
        let page = Page::new(ids.clone(), more, String::as_str);
        Ok(Page {
            items,
            next_token: page.next_token,
        })
    }

    /// Every entry `filter` matches, oldest first, read a chunk at a time;
    /// `after_id` resumes after an entry already exported.
    pub fn export(
        &self,
        p: &Principal,
        filter: Filter,
        after_id: i64,
    ) -> Result<impl Stream<Item = Result<AuditEntry>> + Send + 'static> {
        let filter = Self::confine(p, filter)?;
        if after_id < 0 {
            return Err(Error::invalid_argument("after_id", "must not be negative"));
        }
        let store = self.store.clone();
        Ok(futures_util::stream::try_unfold(
            (store, filter, after_id, false),
            |(store, filter, cursor, done)| async move {
                if done {
                    return Ok(None);
                }
                let chunk =
                    select(&store, &filter, Some(cursor), Order::Oldest, EXPORT_CHUNK).await?;
                let last = chunk.last().map_or(cursor, |e| e.id);
                let done = chunk.len() < EXPORT_CHUNK;
                Ok::<_, Error>(Some((
                    futures_util::stream::iter(chunk.into_iter().map(Ok)),
                    (store, filter, last, done),
                )))
            },
        )
        .try_flatten())
    }
}

/// A page token's cursor: the id of the last entry given.
fn cursor(after: &str) -> Result<Option<i64>> {
    if after.is_empty() {
        return Ok(None);
    }
    after.parse().map(Some).map_err(|_| {
        Error::invalid_argument("page_token", "is not a token returned by this server")
    })
}

/// `us` (µs since the epoch) as an RFC 3339 UTC time with microseconds,
/// as protobuf's JSON writes a `Timestamp`: for times inside the entries'
/// JSON (a token's expiry).
pub fn rfc3339(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let micros = us.rem_euclid(1_000_000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days to a civil date (Howard Hinnant's `civil_from_days`).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_as_rfc_3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000Z");
        // 2026-12-07T11:19:40.5Z, a leap day, and a time before the epoch.
        assert_eq!(
            rfc3339(1_796_642_380_500_000),
            "2026-12-07T11:19:40.500000Z"
        );
        assert_eq!(rfc3339(951_782_400_000_001), "2000-02-29T00:00:00.000001Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999999Z");
    }
}
