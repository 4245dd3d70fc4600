//! The integration-test harness: starts the real server on `127.0.0.1:0` over a
//! fresh database and talks to it as a user would.
//!
//! - `db`: a fresh SQLite file or PostgreSQL database per test, Redis.
//! - `server`: the real `serve` with the test tokens.
//! - `clients`: gRPC clients from the library's own `switchyard::client`, a
//!   plain HTTP/1.1 client and an NDJSON reader for the REST suites.
//! - `binary`: the real binary as an operator runs it.
//! - `fixtures`: values and setups the suites share.
//! - `prometheus`: a real Prometheus with the repo's rules, and backfills.

pub mod binary;
pub mod clients;
pub mod db;
pub mod fixtures;
pub mod node;
pub mod own_redis;
pub mod prometheus;
pub mod server;
pub mod shop;

use std::future::Future;
use std::time::Duration;

pub use binary::*;
pub use clients::*;
pub use db::*;
pub use fixtures::*;
pub use node::{node_project, python_project};
pub use own_redis::OwnRedis;
pub use prometheus::Prometheus;
pub use server::*;

/// Polls `check` every 10 ms until it holds; panics after `timeout`.
pub async fn wait_until<F, Fut>(timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("condition not met within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs each named `async fn(Backend)` once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::common::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::common::Backend::Postgres).await
                }
            }
        )*
    };
}
