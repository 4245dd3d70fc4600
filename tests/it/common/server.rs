//! The real server on `127.0.0.1:0` over a test database, with the test
//! tokens.

use std::{net::SocketAddr, time::Duration};

use switchyard::{
    client::Client,
    config::{Config, Secret, TokenConfig},
};
use tokio::{sync::oneshot, task::JoinHandle};

use super::db::{Backend, TestDb};

/// The admin token of every test server.
pub const ADMIN: &str = "test-admin-token-0123456789";
/// A gating-scoped token.
pub const GATING: &str = "test-gating-token-0123456789";

/// Returns the token scoped to `tenant` (every test server accepts it for
/// tenants `a`, `b` and `c`).
pub fn tenant_token(tenant: &str) -> String {
    format!("test-tenant-{tenant}-token-0123456789")
}

/// Returns a configuration for a test server over `db`.
pub fn test_config(db: &TestDb) -> Config {
    let mut tokens = vec![TokenConfig {
        scope: "gating".into(),
        secret: Secret(GATING.into()),
    }];
    for t in ["a", "b", "c"] {
        tokens.push(TokenConfig {
            scope: format!("tenant:{t}"),
            secret: Secret(tenant_token(t)),
        });
    }
    let mut c = Config::default();
    c.listener.listen = "127.0.0.1:0".into();
    c.listener.shutdown_grace_s = 5;
    c.storage.database_url = db.url.clone();
    c.auth.admin_token = Some(Secret(ADMIN.into()));
    c.auth.tokens = tokens;
    c.telemetry.log = "warn".into();
    c
}

/// A running server.
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), switchyard::error::Error>>>,
}

impl TestServer {
    /// Starts a server with `config` and waits until it answers a health
    /// check (the listener is bound before `serve` runs, so a connection
    /// alone does not prove the application started).
    pub async fn start(config: Config) -> TestServer {
        TestServer::start_at(config, "127.0.0.1:0".parse().expect("an address")).await
    }

    /// Like [`TestServer::start`], on `addr` (a restart on the same port).
    pub async fn start_at(config: Config, addr: SocketAddr) -> TestServer {
        switchyard::telemetry::init_logging(&config);
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(switchyard::serve(config, listener, async move {
            let _ = stopped.await;
        }));
        let mut server = TestServer {
            addr,
            stop: Some(stop),
            task: Some(task),
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if server.task.as_ref().is_some_and(JoinHandle::is_finished) {
                let ended = server.task.take().expect("task").await;
                panic!("the server stopped while starting: {ended:?}");
            }
            let client = Client::connect(&server.url(), "").await;
            if let Ok(c) = client
                && c.health()
                    .check(switchyard::api::health::HealthCheckRequest::default())
                    .await
                    .is_ok()
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the server answers a health check within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server
    }

    /// Returns `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends the shutdown signal without waiting.
    pub fn signal_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Signals shutdown and returns what `serve` returned.
    pub async fn shutdown(mut self) -> Result<(), switchyard::error::Error> {
        self.signal_shutdown();
        let task = self.task.take().expect("task");
        tokio::time::timeout(Duration::from_secs(15), task)
            .await
            .expect("serve stops within 15 s")
            .expect("serve did not panic")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.signal_shutdown();
    }
}

/// Creates a fresh database for `backend`, migrated, and starts a server on it;
/// `None` when the backend is unavailable outside CI (the test then returns).
pub async fn server_on(backend: Backend) -> Option<(TestServer, TestDb)> {
    server_with(backend, |_| {}).await
}

/// Like [`server_on`], with the test configuration adjusted by `configure`.
pub async fn server_with(
    backend: Backend,
    configure: impl FnOnce(&mut Config),
) -> Option<(TestServer, TestDb)> {
    let db = TestDb::new(backend).await?;
    if backend == Backend::Postgres {
        db.migrate().await;
    }
    let mut config = test_config(&db);
    configure(&mut config);
    let server = TestServer::start(config).await;
    Some((server, db))
}
