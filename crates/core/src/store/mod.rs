//! Persistent storage on SQLite (the embedded default) or PostgreSQL, through
//! one interface.
//!
//! Both backends share one schema (see `migrations/`) and one set of queries,
//! run through sqlx's `Any` driver; the only per-backend code is connecting and
//! migrating. Write transactions start by incrementing the global revision
//! counter (see [`Store::begin_write`]), which serialises writers on both
//! backends: revision N+1 cannot be taken, let alone committed, before N's
//! transaction has ended.

use std::{str::FromStr, time::Duration};

use sqlx::{
    AnyPool, Row,
    any::{AnyConnectOptions, AnyPoolOptions},
    migrate::Migrator,
};

use crate::error::{Error, ErrorKind, Result};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/postgres");

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file (or memory).
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// A connection pool and the backend behind it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// A write transaction holding the next global revision.
pub struct WriteTx {
    /// The open transaction.
    pub tx: sqlx::Transaction<'static, sqlx::Any>,
    /// The revision this transaction's changes get if it commits.
    pub revision: i64,
    /// The commit time recorded with the changes, microseconds since the epoch.
    pub now_us: i64,
}

impl Store {
    /// Connects to `url` (`sqlite://path`, `postgres://...`; configuration
    /// refuses an in-memory SQLite database).
    /// A SQLite file is created when missing.
    pub async fn connect(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") && !url.contains(":memory:") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_owned(),
        };
        let options = AnyConnectOptions::from_str(&url)
            .map_err(|e| Error::invalid_argument("SWITCHYARD_DATABASE_URL", redact(&e)))?;
        let pool = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite => 4,
                Backend::Postgres => 16,
            })
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        sqlx::query("PRAGMA synchronous = NORMAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout = 5000")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|e| {
                refusal(&url, &e).unwrap_or_else(|| Error::unavailable("the database", e))
            })?;
        if backend == Backend::Sqlite {
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
        }
        Ok(Store { pool, backend })
    }

    /// [`Store::connect`], creating the PostgreSQL database of `url` first
    /// when it does not exist (through the server's `postgres` database,
    /// with the same role, which must have `CREATEDB`); returns the store
    /// and whether it created the database.
    pub async fn connect_creating(url: &str) -> Result<(Store, bool)> {
        match Store::connect(url).await {
            Err(e)
                if e.kind() == ErrorKind::FailedPrecondition
                    && e.message().contains(MISSING_DATABASE) =>
            {
                let Some(name) = database_name(url) else {
                    return Err(e);
                };
                let maintenance = with_database(url, "postgres");
                let options = AnyConnectOptions::from_str(&maintenance)
                    .map_err(|e| Error::invalid_argument("SWITCHYARD_DATABASE_URL", redact(&e)))?;
                let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect_with(&options)
                    .await
                    .map_err(|_| e.clone())?;
                let created = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "CREATE DATABASE \"{}\"",
                    name.replace('"', "\"\"")
                )))
                .execute(&mut conn)
                .await;
                let _ = sqlx::Connection::close(conn).await;
                match created {
                    Ok(_) => Ok((Store::connect(url).await?, true)),
                    // Made by another process meanwhile.
                    Err(sqlx::Error::Database(d)) if d.code().as_deref() == Some("42P04") => {
                        Ok((Store::connect(url).await?, false))
                    }
                    Err(sqlx::Error::Database(d)) if d.code().as_deref() == Some("42501") => {
                        Err(Error::failed_precondition(format!(
                            "{} (this role may not create databases)",
                            e.message()
                        )))
                    }
                    Err(other) => Err(Error::internal("creating the database", other)),
                }
            }
            other => other.map(|s| (s, false)),
        }
    }

    fn migrator(&self) -> &'static Migrator {
        match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    /// Applies the migrations of this backend that have not been applied yet.
    /// Safe to run from several processes at once (PostgreSQL takes an
    /// advisory lock).
    pub async fn migrate(&self) -> Result<()> {
        self.migrator()
            .run(&self.pool)
            .await
            .map_err(|e| Error::internal("applying database migrations", e))
    }

    /// Fails with FAILED_PRECONDITION unless every migration has been applied.
    pub async fn check_schema(&self) -> Result<()> {
        let latest = self.migrator().iter().map(|m| m.version).max().unwrap_or(0);
        let applied: Option<i64> =
            sqlx::query("SELECT MAX(version) FROM _sqlx_migrations WHERE success = TRUE")
                .fetch_one(&self.pool)
                .await
                .ok()
                .and_then(|row| row.try_get::<Option<i64>, _>(0).ok().flatten());
        if applied.unwrap_or(0) < latest {
            return Err(Error::failed_precondition(
                "the database schema is not up to date: run `switchyard migrate` first",
            ));
        }
        Ok(())
    }

    /// Returns the backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Returns the pool, for the capability modules' queries.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Returns the latest committed global revision.
    pub async fn current_revision(&self) -> Result<i64> {
        let row = sqlx::query("SELECT value FROM revision_counter WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>(0)?)
    }

    /// Begins a write transaction and takes the next global revision.
    ///
    /// Taking the revision is the transaction's first statement: it locks the
    /// counter row (PostgreSQL) or the database (SQLite) until the transaction
    /// ends, so revisions are committed strictly in order. A transaction that
    /// rolls back gives its revision back.
    pub async fn begin_write(&self) -> Result<WriteTx> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "UPDATE revision_counter SET value = value + 1 WHERE id = 1 RETURNING value",
        )
        .fetch_one(&mut *tx)
        .await?;
        let revision: i64 = row.try_get(0)?;
        Ok(WriteTx {
            tx,
            revision,
            now_us: now_us(),
        })
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

impl WriteTx {
    /// Checks a caller's expected revision of `what` (0: no expectation)
    /// against its `actual` revision (`None`: it does not exist):
    /// FAILED_PRECONDITION when they differ, and the transaction is dropped,
    /// rolling back.
    pub fn expect_revision(&self, what: &str, actual: Option<i64>, expected: i64) -> Result<()> {
        if expected == 0 || actual == Some(expected) {
            return Ok(());
        }
        Err(Error::failed_precondition(match actual {
            Some(actual) => format!(
                "{what} is at revision {actual}, not the expected {expected}: re-read it and retry"
            ),
            None => format!(
                "there is no {} at revision {expected}",
                what.strip_prefix("the ").unwrap_or(what)
            ),
        }))
    }
}

/// Returns `$start, $start+1, ...` (`n` placeholders) for an `IN (...)` list.
pub fn placeholders(start: usize, n: usize) -> String {
    (start..start + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Returns the current time in microseconds since the Unix epoch.
pub fn now_us() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// What a missing database's refusal says, to tell it from the others.
const MISSING_DATABASE: &str = "does not exist on the server";

/// A connection refusal an operator can fix, in words that say how; none
/// for anything else (then the database is unavailable, retry later).
fn refusal(url: &str, e: &sqlx::Error) -> Option<Error> {
    let sqlx::Error::Database(d) = e else {
        return None;
    };
    let user = user_name(url).unwrap_or_default();
    let name = database_name(url).unwrap_or_default();
    let message = match d.code().as_deref() {
        Some("3D000") => format!(
            "the database {name:?} {MISSING_DATABASE}: create it (`createdb {name}`, or `CREATE DATABASE \"{name}\";` in psql), or run `switchyard migrate` as a role that may create databases (CREATEDB), which creates it"
        ),
        Some("28000") if d.message().contains("role") => format!(
            "the role {user:?} does not exist on the server: create it (`createuser --pwprompt {user}`, or `CREATE ROLE \"{user}\" LOGIN PASSWORD '...';` in psql), or put an existing role in SWITCHYARD_DATABASE_URL"
        ),
        Some("28P01") => format!(
            "the server refused the password of role {user:?}: check the user and password in SWITCHYARD_DATABASE_URL"
        ),
        Some("28000") => format!(
            "the server refused role {user:?} ({}): check pg_hba.conf and SWITCHYARD_DATABASE_URL",
            d.message()
        ),
        _ => return None,
    };
    Some(Error::failed_precondition(message))
}

/// The part of a `postgres://` URL after its authority (the path and
/// query), and where it starts.
fn path_start(url: &str) -> Option<usize> {
    let authority = url.find("://")? + 3;
    Some(authority + url[authority..].find('/')?)
}

/// The database a `postgres://` URL names.
fn database_name(url: &str) -> Option<String> {
    let path = &url[path_start(url)? + 1..];
    let name = path.split(['?', '#']).next()?;
    (!name.is_empty()).then(|| name.to_owned())
}

/// The role a `postgres://` URL names.
fn user_name(url: &str) -> Option<String> {
    let authority = &url[url.find("://")? + 3..path_start(url).unwrap_or(url.len())];
    let (userinfo, _) = authority.rsplit_once('@')?;
    let user = userinfo.split(':').next()?;
    (!user.is_empty()).then(|| user.to_owned())
}

/// `url` naming the database `name` instead, with its query kept.
fn with_database(url: &str, name: &str) -> String {
    match path_start(url) {
        Some(start) => {
            let rest = &url[start + 1..];
            let query = rest.find(['?', '#']).map_or("", |i| &rest[i..]);
            format!("{}/{name}{query}", &url[..start])
        }
        None => format!("{url}/{name}"),
    }
}

/// Strips anything that looks like a password from a URL-parsing error.
fn redact(e: &impl std::fmt::Display) -> String {
    let s = e.to_string();
    if s.contains('@') {
        "is not a valid database URL".to_owned()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_urls_database_and_role_are_read_and_replaced() {
        let url = "postgres://app:secret@db.internal:5432/switchyard?sslmode=disable";
        assert_eq!(database_name(url).as_deref(), Some("switchyard"));
        assert_eq!(user_name(url).as_deref(), Some("app"));
        assert_eq!(
            with_database(url, "postgres"),
            "postgres://app:secret@db.internal:5432/postgres?sslmode=disable"
        );
        assert_eq!(database_name("postgres://h/"), None);
        assert_eq!(database_name("postgres://h"), None);
        assert_eq!(user_name("postgres://h/db"), None);
        assert_eq!(
            with_database("postgres://h", "postgres"),
            "postgres://h/postgres"
        );
    }
}
