//! The integration-test harness: starts the real server on `127.0.0.1:0` over a
//! fresh database and talks to it with the generated clients.
//!
//! PostgreSQL: each test gets its own database, created on the server named by
//! `SWITCHYARD_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`)
//! and dropped afterwards. When it is unreachable the PostgreSQL variant of a
//! test is skipped with a note, except under `CI=true`, where it fails.
//! Redis works the same way (`SWITCHYARD_TEST_REDIS_URL`, default
//! `redis://127.0.0.1:6379`), with a fresh key prefix per test.

#![allow(dead_code)]

use std::{future::Future, net::SocketAddr, time::Duration};

use pbjson_types::{Value, value::Kind};
use sqlx::{Connection, Executor, PgConnection};
use switchyard::api::v1::{
    CreateFlagRequest, CreateTenantRequest, Flag, FlagType, SetTenantOverrideRequest, Tenant,
};
use switchyard::{
    api::v1::{
        flag_service_client::FlagServiceClient, gating_service_client::GatingServiceClient,
        tenant_service_client::TenantServiceClient,
    },
    config::{Config, Secret, TokenConfig},
};
use tokio::{sync::oneshot, task::JoinHandle};
use tonic::{
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Channel, Endpoint},
};

/// The admin token of every test server.
pub const ADMIN: &str = "test-admin-token-0123456789";
/// A gating-scoped token.
pub const GATING: &str = "test-gating-token-0123456789";

/// Returns the token scoped to `tenant` (every test server accepts it for
/// tenants `a`, `b` and `c`).
pub fn tenant_token(tenant: &str) -> String {
    format!("test-tenant-{tenant}-token-0123456789")
}

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

fn in_ci() -> bool {
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
        switchyard::server::generate_token()
            .get(..12)
            .unwrap_or("x")
    )
}

/// A fresh database, removed when dropped.
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
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
                    backend,
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
                let name = format!("sytest_{}", &switchyard::server::generate_token()[..16]);
                conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .await
                    .expect("create test database");
                let _ = conn.close().await;
                let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
                Some(TestDb {
                    url: format!("{base}/{name}"),
                    backend,
                    _dir: None,
                    pg_name: Some(name),
                })
            }
        }
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
    Config {
        listen: "127.0.0.1:0".into(),
        database_url: db.url.clone(),
        admin_token: Some(Secret(ADMIN.into())),
        tokens,
        log: "warn".into(),
        shutdown_grace_s: 5,
        ..Config::default()
    }
}

/// A running server.
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), switchyard::error::Error>>>,
}

impl TestServer {
    /// Starts a server with `config` and waits until it accepts connections.
    pub async fn start(config: Config) -> TestServer {
        switchyard::telemetry::init_logging(&config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(switchyard::serve(config, listener, async move {
            let _ = stopped.await;
        }));
        let server = TestServer {
            addr,
            stop: Some(stop),
            task: Some(task),
        };
        wait_until(Duration::from_secs(10), || async {
            Endpoint::from_shared(server.url())
                .unwrap()
                .connect()
                .await
                .is_ok()
        })
        .await;
        server
    }

    /// Returns `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Opens a new channel (a new HTTP/2 connection).
    pub async fn channel(&self) -> Channel {
        Endpoint::from_shared(self.url())
            .unwrap()
            .connect()
            .await
            .expect("connect")
    }

    pub async fn tenants(
        &self,
        token: &str,
    ) -> TenantServiceClient<InterceptedService<Channel, Bearer>> {
        TenantServiceClient::with_interceptor(self.channel().await, Bearer::new(token))
    }

    pub async fn flags(
        &self,
        token: &str,
    ) -> FlagServiceClient<InterceptedService<Channel, Bearer>> {
        FlagServiceClient::with_interceptor(self.channel().await, Bearer::new(token))
    }

    pub async fn gating(
        &self,
        token: &str,
    ) -> GatingServiceClient<InterceptedService<Channel, Bearer>> {
        GatingServiceClient::with_interceptor(self.channel().await, Bearer::new(token))
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

/// Adds `authorization: Bearer <token>` to every call (nothing when empty).
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    pub fn new(token: &str) -> Self {
        Bearer((!token.is_empty()).then(|| format!("Bearer {token}").parse().expect("ascii token")))
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

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

/// Sets the replica-local env override of flag `key`, as
/// `SWITCHYARD_FLAG_<KEY>=value` would.
pub fn with_env_flag(config: &mut Config, key: &str, value: &str) {
    let name: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    config
        .flag_overrides
        .insert(format!("SWITCHYARD_FLAG_{name}"), value.into());
}

// Flag helpers shared by the flag and watch suites.

pub fn v_bool(b: bool) -> Value {
    Value {
        kind: Some(Kind::BoolValue(b)),
    }
}
pub fn v_str(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.into())),
    }
}
pub fn v_num(n: f64) -> Value {
    Value {
        kind: Some(Kind::NumberValue(n)),
    }
}

pub fn new_flag(key: &str, ty: FlagType, default: Value) -> CreateFlagRequest {
    CreateFlagRequest {
        flag: Some(Flag {
            key: key.into(),
            r#type: ty as i32,
            default_value: Some(default),
            ..Default::default()
        }),
    }
}

pub async fn setup_tenants(server: &TestServer, ids: &[&str]) {
    let mut t = server.tenants(ADMIN).await;
    for id in ids {
        t.create_tenant(CreateTenantRequest {
            tenant: Some(Tenant {
                id: id.to_string(),
                patterns: vec![format!("{id}.example")],
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    }
}

pub async fn set_override(server: &TestServer, tenant: &str, key: &str, value: Value) -> i64 {
    server
        .flags(ADMIN)
        .await
        .set_tenant_override(SetTenantOverrideRequest {
            tenant_id: tenant.into(),
            flag_key: key.into(),
            value: Some(value),
            expected_revision: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .revision
}

/// Returns the id of the tenant `key` resolves to (as admin), or `None`.
pub async fn resolved_id(server: &TestServer, key: &str) -> Option<String> {
    server
        .tenants(ADMIN)
        .await
        .resolve_tenant(switchyard::api::v1::ResolveTenantRequest { key: key.into() })
        .await
        .ok()
        .and_then(|r| r.into_inner().tenant.map(|t| t.id))
}

// A plain HTTP/1.1 client for the REST shims, one connection per request, as
// curl would do.

/// A REST response: status, headers and the whole body.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: bytes::Bytes,
}

impl HttpReply {
    /// Parses the body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Returns a header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends `method path` with an optional bearer token and JSON body, and
/// returns the streaming response.
pub async fn http_send(
    server: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<(&str, Vec<u8>)>,
) -> http::Response<hyper::body::Incoming> {
    let stream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", server.addr.to_string());
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let payload = match body {
        Some((content_type, bytes)) => {
            req = req.header("content-type", content_type);
            bytes
        }
        None => Vec::new(),
    };
    let req = req
        .body(http_body_util::Full::new(bytes::Bytes::from(payload)))
        .expect("request");
    sender.send_request(req).await.expect("send")
}

/// Sends a request and reads the whole response.
pub async fn http(
    server: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    json: Option<serde_json::Value>,
) -> HttpReply {
    let body = json.map(|j| ("application/json", j.to_string().into_bytes()));
    http_raw(server, method, path, token, body).await
}

/// Sends a request with a body of any media type and reads the whole response.
pub async fn http_raw(
    server: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<(&str, Vec<u8>)>,
) -> HttpReply {
    use http_body_util::BodyExt;
    let resp = http_send(server, method, path, token, body).await;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    HttpReply {
        status,
        headers,
        body,
    }
}

/// Reads newline-delimited JSON (the REST watch) from a streaming body.
pub struct Lines {
    body: hyper::body::Incoming,
    buf: Vec<u8>,
}

impl Lines {
    pub fn new(body: hyper::body::Incoming) -> Lines {
        Lines {
            body,
            buf: Vec::new(),
        }
    }

    /// The next line as JSON, within 10 s.
    pub async fn next(&mut self) -> serde_json::Value {
        use http_body_util::BodyExt;
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return serde_json::from_slice(&line).expect("a JSON line");
            }
            let frame = tokio::time::timeout(Duration::from_secs(10), self.body.frame())
                .await
                .expect("a line within 10 s")
                .expect("the stream continues")
                .expect("a frame");
            if let Ok(data) = frame.into_data() {
                self.buf.extend_from_slice(&data);
            }
        }
    }
}
