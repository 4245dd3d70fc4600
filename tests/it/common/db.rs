//! Databases and Redis for the suites: a fresh SQLite file or PostgreSQL
//! database per test, a fresh Redis key prefix per test.
//!
//! PostgreSQL: each test gets its own database, created on the server named by
//! `SWITCHYARD_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`)
//! and dropped afterwards. When it is unreachable the PostgreSQL variant of a
//! test is skipped with a note, except under `CI=true`, where it fails.
//! Redis works the same way (`SWITCHYARD_TEST_REDIS_URL`, default
//! `redis://127.0.0.1:6379`).

use std::time::Duration;

use sqlx::{Connection, Executor, PgConnection};

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn postgres_admin_url() -> String {
    std::env::var("SWITCHYARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Returns the Redis URL tests use, or `None` (skip) when Redis does not answer
/// outside CI. Under CI an unreachable Redis fails the test.
pub async fn redis_url() -> Option<String> {
    let url = std::env::var("SWITCHYARD_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let reachable = async {
        let client = redis::Client::open(url.as_str()).ok()?;
        let mut conn = tokio::time::timeout(
            Duration::from_secs(3),
            client.get_multiplexed_async_connection(),
        )
        .await
        .ok()?
        .ok()?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .ok()
    }
    .await
    .is_some();
    if reachable {
        return Some(url);
    }
    if in_ci() {
        panic!("Redis at {url} is unreachable and CI=true: the Redis suites must run");
    }
    eprintln!(
        "note: Redis at {url} is unreachable; skipping this Redis test (set CI=true to fail instead)"
    );
    None
}

/// Returns a key prefix no other test uses.
pub fn unique_prefix() -> String {
    format!(
        "sytest:{}:",
        switchyard::app::generate_token().get(..12).unwrap_or("x")
    )
}

/// A fresh database, removed when dropped.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg_name: Option<String>,
}

impl TestDb {
    /// Creates an empty database, or `None` when PostgreSQL is unreachable outside CI.
    pub async fn new(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("switchyard.db").display());
                Some(TestDb {
                    url,
                    _dir: Some(dir),
                    pg_name: None,
                })
            }
            Backend::Postgres => {
                let admin = postgres_admin_url();
                let mut conn = match tokio::time::timeout(
                    Duration::from_secs(5),
                    PgConnection::connect(&admin),
                )
                .await
                {
                    Ok(Ok(c)) => c,
                    Ok(Err(e)) if !in_ci() => {
                        eprintln!(
                            "note: PostgreSQL at {admin} is unreachable ({e}); skipping (set CI=true to fail instead)"
                        );
                        return None;
                    }
                    Err(_) if !in_ci() => {
                        eprintln!("note: PostgreSQL at {admin} timed out; skipping");
                        return None;
                    }
                    other => panic!(
                        "PostgreSQL at {admin} is unreachable and CI=true: {:?}",
                        other.err().map(|_| "timeout")
                    ),
                };
                let name = format!("sytest_{}", &switchyard::app::generate_token()[..16]);
                conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .await
                    .expect("create test database");
                let _ = conn.close().await;
                let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
                Some(TestDb {
                    url: format!("{base}/{name}"),
                    _dir: None,
                    pg_name: Some(name),
                })
            }
        }
    }

    /// Terminates every PostgreSQL backend connected to this database (what
    /// a failover or an operator's `pg_terminate_backend` does); returns how
    /// many.
    pub async fn terminate_backends(&self) -> u64 {
        let Some(name) = &self.pg_name else { return 0 };
        let mut conn = PgConnection::connect(&postgres_admin_url())
            .await
            .expect("connect as admin");
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()) t",
        )
        .bind(name)
        .fetch_one(&mut conn)
        .await
        .expect("terminate backends");
        let _ = conn.close().await;
        u64::try_from(n).unwrap_or(0)
    }

    /// Applies the migrations (what `switchyard migrate` does).
    pub async fn migrate(&self) {
        let store = switchyard::store::Store::connect(&self.url)
            .await
            .expect("connect");
        store.migrate().await.expect("migrate");
        store.close().await;
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        let admin = postgres_admin_url();
        // Drop from a plain thread: this may run inside or outside a runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async move {
                let mut conn = PgConnection::connect(&admin).await.ok()?;
                conn.execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .await
                .ok()
            })
        })
        .join();
    }
}
