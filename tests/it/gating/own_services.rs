//! `switchyard smoke` and `switchyard canary` against the user's own
//! services: a small HTTP service and a gRPC service with server reflection,
//! both started by the test on loopback, judged by a real Switchyard.

use std::{collections::BTreeMap, path::Path, process::Output, time::Duration};

use super::traffic::{cli, num, read_json, stderr, text, turn};
use crate::common::*;

/// A small HTTP service of the user's, on loopback: `GET /health` answers
/// 200, `POST /orders` 201 when it gets the key header and the body (else
/// 400), `GET /flaky` 503 on every tenth call, `GET /slow` after `delay`. It
/// counts what it was sent, and any `authorization` header (Switchyard's
/// token must never reach it).
struct UserService {
    addr: String,
    seen: std::sync::Arc<std::sync::Mutex<BTreeMap<String, u64>>>,
}

async fn user_service(delay: Duration) -> UserService {
    use axum::{
        Router,
        body::Bytes,
        extract::State,
        http::{HeaderMap, StatusCode},
        routing::{get, post},
    };
    type Seen = std::sync::Arc<std::sync::Mutex<BTreeMap<String, u64>>>;
    fn count(seen: &Seen, headers: &HeaderMap, what: &str) -> u64 {
        let mut s = seen.lock().unwrap();
        if headers.contains_key("authorization") {
            *s.entry("authorization".into()).or_default() += 1;
        }
        let n = s.entry(what.into()).or_default();
        *n += 1;
        *n
    }
    let seen: Seen = Default::default();
    let app = Router::new()
        .route(
            "/health",
            get(|State(s): State<Seen>, h: HeaderMap| async move {
                count(&s, &h, "GET /health");
                "ok"
            }),
        )
        .route(
            "/orders",
            post(
                |State(s): State<Seen>, h: HeaderMap, body: Bytes| async move {
                    count(&s, &h, "POST /orders");
                    if h.get("x-api-key").is_some_and(|k| k == "k1") && body == "{\"sku\":\"a\"}" {
                        StatusCode::CREATED
                    } else {
                        count(&s, &h, "bad order");
                        StatusCode::BAD_REQUEST
                    }
                },
            ),
        )
        .route(
            "/flaky",
            get(|State(s): State<Seen>, h: HeaderMap| async move {
                if count(&s, &h, "GET /flaky").is_multiple_of(10) {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                }
            }),
        )
        .route(
            "/slow",
            get(move |State(s): State<Seen>, h: HeaderMap| async move {
                count(&s, &h, "GET /slow");
                tokio::time::sleep(delay).await;
                "ok"
            }),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    UserService { addr, seen }
}

/// A short run judged by the Switchyard at `gating`: 100 calls/s for 2 s,
/// no warm-up, at least 10 calls.
fn short_run(gating: &str) -> [&str; 10] {
    [
        "--gating",
        gating,
        "--rate",
        "100",
        "--duration",
        "2s",
        "--warmup",
        "0",
        "--min-requests",
        "10",
    ]
}

/// Runs the CLI off the runtime (the user's service is served on it).
async fn cli_off_runtime(dir: &Path, args: &[&str]) -> Output {
    let dir = dir.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&dir, &args, &[])
    })
    .await
    .unwrap()
}

/// `smoke` and `canary` against the user's own HTTP service: the calls are
/// sent as given (method, path, headers, body) in the mix's proportions,
/// judged with Switchyard's threshold and rules, and named in the reports;
/// statuses outside `--expect-status` are errors by their gRPC-mapped code;
/// Switchyard's token never reaches the service.
#[allow(clippy::await_holding_lock)] // see `turn`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_and_canary_drive_the_users_own_http_service() {
    let _turn = turn();
    let gating = Running::start(&[]);
    let service = user_service(Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let gating_addr = gating.addr();
    let common = short_run(&gating_addr);
    let mut args = vec![
        "smoke",
        "--target",
        &service.addr,
        "--http",
        "GET /health",
        "--http",
        "post /orders",
        "--header",
        "x-api-key: k1",
        "--header",
        "content-type: application/json",
        "--body",
        "{\"sku\":\"a\"}",
        "--expect-status",
        "200,201",
        "--mix",
        "http1=3,http2=1",
    ];
    args.extend_from_slice(&common);
    let o = cli_off_runtime(dir.path(), &args).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let doc = read_json(&dir.path().join("smoke-summary.json"));
    assert_eq!(text(&doc, &["verdict", "status"]), "PASS");
    assert_eq!(num(&doc, &["results", "count"]), 200.0);
    assert_eq!(num(&doc, &["results", "errors"]), 0.0);
    assert_eq!(
        doc["config"]["calls"],
        serde_json::json!(["GET /health", "POST /orders"])
    );
    {
        let seen = service.seen.lock().unwrap();
        // The mix's proportions, plus one preflight call of each.
        assert_eq!(seen.get("GET /health"), Some(&151), "{seen:?}");
        assert_eq!(seen.get("POST /orders"), Some(&51), "{seen:?}");
        assert_eq!(seen.get("bad order"), None, "headers and body as given");
        assert_eq!(seen.get("authorization"), None, "no Switchyard token sent");
    }

    // One call in ten answered 503: errors, counted as UNAVAILABLE; a FAIL.
    let mut args = vec!["smoke", "--target", &service.addr, "--http", "GET /flaky"];
    args.extend_from_slice(&common);
    let o = cli_off_runtime(dir.path(), &args).await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let doc = read_json(&dir.path().join("smoke-summary.json"));
    assert_eq!(num(&doc, &["results", "errors"]), 20.0);
    assert_eq!(
        num(&doc, &["results", "statusCodeDistribution", "UNAVAILABLE"]),
        20.0
    );

    // A canary 25 ms slower than its baseline on the same path: FAIL.
    let slow = user_service(Duration::from_millis(25)).await;
    let mut args = vec![
        "canary",
        "--baseline",
        &service.addr,
        "--canary",
        &slow.addr,
        "--http",
        "GET /health",
        "--before",
        "0",
    ];
    args.extend_from_slice(&common);
    // /health is fast on both: a PASS...
    let o = cli_off_runtime(dir.path(), &args).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // ... /slow is slow on the canary only.
    let fast = user_service(Duration::ZERO).await;
    args[2] = &fast.addr;
    args[6] = "GET /slow";
    let o = cli_off_runtime(dir.path(), &args).await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let doc = read_json(&dir.path().join("canary-report.json"));
    assert!(num(&doc, &["experiment", "latency_ms", "p(95)"]) >= 25.0);
    assert_eq!(doc["config"]["canary"], serde_json::json!(slow.addr));

    // A mix naming an --http call that was not given: one line, exit 2.
    let o = cli_off_runtime(
        dir.path(),
        &[
            "smoke",
            "--target",
            &service.addr,
            "--gating",
            &gating.addr(),
            "--http",
            "GET /health",
            "--mix",
            "http2",
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--mix names http2 but 1 --http call was given"),
        "{}",
        stderr(&o)
    );
}

/// The messages of the user's gRPC service `demo.v1.Orders`, as its own
/// generated code would have them.
mod demo {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Order {
        #[prost(string, tag = "1")]
        pub sku: String,
        #[prost(int32, tag = "2")]
        pub quantity: i32,
        #[prost(message, optional, tag = "3")]
        pub at: Option<pbjson_types::Timestamp>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Placed {
        #[prost(string, tag = "1")]
        pub id: String,
    }

    /// `demo/v1/types.proto` (its messages, importing Timestamp) and
    /// `demo/v1/orders.proto` (the service, importing types.proto): what
    /// protoc would make of them, for the service's reflection.
    pub fn descriptors() -> prost_types::FileDescriptorSet {
        use prost_types::{
            DescriptorProto, FieldDescriptorProto, FileDescriptorProto, MethodDescriptorProto,
            ServiceDescriptorProto,
            field_descriptor_proto::{Label, Type},
        };
        let field =
            |name: &str, number: i32, ty: Type, type_name: Option<&str>| FieldDescriptorProto {
                name: Some(name.into()),
                number: Some(number),
                label: Some(Label::Optional as i32),
                r#type: Some(ty as i32),
                type_name: type_name.map(Into::into),
                json_name: Some(name.into()),
                ..Default::default()
            };
        let message = |name: &str, field: Vec<FieldDescriptorProto>| DescriptorProto {
            name: Some(name.into()),
            field,
            ..Default::default()
        };
        let method = |name: &str, input: &str, streaming: bool| MethodDescriptorProto {
            name: Some(name.into()),
            input_type: Some(format!(".demo.v1.{input}")),
            output_type: Some(".demo.v1.Placed".into()),
            server_streaming: Some(streaming),
            ..Default::default()
        };
        let types = FileDescriptorProto {
            name: Some("demo/v1/types.proto".into()),
            package: Some("demo.v1".into()),
            dependency: vec!["google/protobuf/timestamp.proto".into()],
            message_type: vec![
                message(
                    "Order",
                    vec![
                        field("sku", 1, Type::String, None),
                        field("quantity", 2, Type::Int32, None),
                        field("at", 3, Type::Message, Some(".google.protobuf.Timestamp")),
                    ],
                ),
                message("Placed", vec![field("id", 1, Type::String, None)]),
                message("Ping", vec![]),
            ],
            syntax: Some("proto3".into()),
            ..Default::default()
        };
        let orders = FileDescriptorProto {
            name: Some("demo/v1/orders.proto".into()),
            package: Some("demo.v1".into()),
            dependency: vec!["demo/v1/types.proto".into()],
            service: vec![ServiceDescriptorProto {
                name: Some("Orders".into()),
                method: vec![
                    method("Place", "Order", false),
                    method("Flaky", "Ping", false),
                    method("Slow", "Ping", false),
                    method("Watch", "Ping", true),
                ],
                ..Default::default()
            }],
            syntax: Some("proto3".into()),
            ..Default::default()
        };
        prost_types::FileDescriptorSet {
            file: vec![types, orders],
        }
    }
}

type Seen = std::sync::Arc<std::sync::Mutex<BTreeMap<String, u64>>>;

/// `demo.v1.Orders`: `Place` answers OK for the order the tests send with
/// `x-api-key: k1` (else INVALID_ARGUMENT), `Flaky` UNAVAILABLE on every
/// tenth call, `Slow` after `delay`. It counts its calls, and any
/// `authorization` metadata (Switchyard's token must never reach it).
#[derive(Clone)]
struct Orders {
    seen: Seen,
    delay: Duration,
}

impl tonic::server::NamedService for Orders {
    const NAME: &'static str = "demo.v1.Orders";
}

/// One call of `Orders`, by method name.
struct OrdersCall(Orders, String);

impl tonic::server::UnaryService<demo::Order> for OrdersCall {
    type Response = demo::Placed;
    type Future = std::pin::Pin<
        Box<dyn Future<Output = Result<tonic::Response<demo::Placed>, tonic::Status>> + Send>,
    >;

    fn call(&mut self, req: tonic::Request<demo::Order>) -> Self::Future {
        let (orders, method) = (self.0.clone(), self.1.clone());
        Box::pin(async move {
            let n = count(
                &orders.seen,
                req.metadata().contains_key("authorization"),
                &method,
            );
            match method.as_str() {
                "Place" => {
                    let key = req.metadata().get("x-api-key").is_some_and(|k| k == "k1");
                    let o = req.get_ref();
                    if !(key
                        && o.sku == "a"
                        && o.quantity == 2
                        && o.at.as_ref().is_some_and(|t| t.seconds == 1_796_601_600))
                    {
                        count(&orders.seen, false, "bad order");
                        return Err(tonic::Status::invalid_argument("not the order sent"));
                    }
                }
                "Flaky" if n.is_multiple_of(10) => {
                    return Err(tonic::Status::unavailable("every tenth"));
                }
                "Slow" => tokio::time::sleep(orders.delay).await,
                _ => {}
            }
            Ok(tonic::Response::new(demo::Placed { id: n.to_string() }))
        })
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for Orders {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let method = req.uri().path().rsplit('/').next().unwrap_or("").to_owned();
        let handler = OrdersCall(self.clone(), method);
        Box::pin(async move {
            let codec = tonic_prost::ProstCodec::<demo::Placed, demo::Order>::default();
            Ok(tonic::server::Grpc::new(codec).unary(handler, req).await)
        })
    }
}

fn count(seen: &Seen, authorization: bool, what: &str) -> u64 {
    let mut s = seen.lock().unwrap();
    if authorization {
        *s.entry("authorization".into()).or_default() += 1;
    }
    let n = s.entry(what.into()).or_default();
    *n += 1;
    *n
}

/// Which reflection service the user's gRPC server runs.
#[derive(Clone, Copy)]
enum Reflection {
    V1,
    V1Alpha,
    None,
}

/// Serves `demo.v1.Orders` (with `Slow` taking `delay`) and `reflection`
/// on loopback; returns its address and what it was sent.
async fn grpc_service(delay: Duration, reflection: Reflection) -> (String, Seen) {
    let seen: Seen = Default::default();
    let orders = Orders {
        seen: seen.clone(),
        delay,
    };
    let builder = tonic_reflection::server::Builder::configure()
        .register_file_descriptor_set(demo::descriptors());
    let mut server = tonic::transport::Server::builder();
    let router = match reflection {
        Reflection::V1 => server
            .add_service(builder.build_v1().unwrap())
            .add_service(orders),
        Reflection::V1Alpha => server
            .add_service(builder.build_v1alpha().unwrap())
            .add_service(orders),
        Reflection::None => server.add_service(orders),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(
        router.serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (addr, seen)
}

/// `smoke` and `canary` against the user's own gRPC service, described only
/// by its server reflection (v1 on one server, v1alpha on another): the
/// methods called with the `--data` and metadata given, in the mix's
/// proportions beside an `--http` call, judged and named in the reports;
/// statuses other than OK are errors by their code; what cannot be called
/// as asked is refused before the run, with the reason.
#[allow(clippy::await_holding_lock)] // see `turn`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke_and_canary_drive_the_users_own_grpc_service() {
    let _turn = turn();
    let gating = Running::start(&[]);
    let (addr, seen) = grpc_service(Duration::ZERO, Reflection::V1).await;
    let web = user_service(Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let health = format!("GET {}/health", web.addr);
    let order = r#"{"sku": "a", "quantity": 2, "at": "2026-12-07T00:00:00Z"}"#;
    let gating_addr = gating.addr();
    let common = short_run(&gating_addr);
    let mut args = vec![
        "smoke",
        "--target",
        &addr,
        "--grpc",
        "demo.v1.Orders/Place",
        "--grpc",
        "/demo.v1.Orders/Slow",
        "--data",
        order,
        "--data",
        "{}",
        "--header",
        "x-api-key: k1",
        "--http",
        &health,
        "--mix",
        "grpc1=2,grpc2=1,http1=1",
    ];
    args.extend_from_slice(&common);
    let o = cli_off_runtime(dir.path(), &args).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let doc = read_json(&dir.path().join("smoke-summary.json"));
    assert_eq!(text(&doc, &["verdict", "status"]), "PASS");
    assert_eq!(num(&doc, &["results", "count"]), 200.0);
    assert_eq!(num(&doc, &["results", "errors"]), 0.0);
    assert_eq!(
        doc["config"]["calls"],
        serde_json::json!([
            "demo.v1.Orders/Place",
            "demo.v1.Orders/Slow",
            format!("GET {}/health", web.addr)
        ])
    );
    {
        let seen = seen.lock().unwrap();
        // The mix's proportions, plus one preflight call of each.
        assert_eq!(seen.get("Place"), Some(&101), "{seen:?}");
        assert_eq!(seen.get("Slow"), Some(&51), "{seen:?}");
        assert_eq!(seen.get("bad order"), None, "data and metadata as given");
        assert_eq!(seen.get("authorization"), None, "no Switchyard token sent");
        assert_eq!(web.seen.lock().unwrap().get("GET /health"), Some(&51));
    }

    // One call in ten answered UNAVAILABLE: errors by their code; a FAIL.
    let mut args = vec!["smoke", "--target", &addr, "--grpc", "demo.v1.Orders/Flaky"];
    args.extend_from_slice(&common);
    let o = cli_off_runtime(dir.path(), &args).await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let doc = read_json(&dir.path().join("smoke-summary.json"));
    assert_eq!(num(&doc, &["results", "errors"]), 20.0);
    assert_eq!(
        num(&doc, &["results", "statusCodeDistribution", "UNAVAILABLE"]),
        20.0
    );

    // A canary (reflection v1alpha only) 25 ms slower on Slow: Place passes,
    // Slow fails.
    let (slow, slow_seen) = grpc_service(Duration::from_millis(25), Reflection::V1Alpha).await;
    let mut args = vec![
        "canary",
        "--baseline",
        &addr,
        "--canary",
        &slow,
        "--grpc",
        "demo.v1.Orders/Place",
        "--data",
        order,
        "--header",
        "x-api-key: k1",
        "--before",
        "0",
    ];
    args.extend_from_slice(&common);
    let o = cli_off_runtime(dir.path(), &args).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(slow_seen.lock().unwrap().get("Place"), Some(&201));
    args[6] = "demo.v1.Orders/Slow";
    args[8] = "{}";
    let o = cli_off_runtime(dir.path(), &args).await;
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let doc = read_json(&dir.path().join("canary-report.json"));
    assert!(num(&doc, &["experiment", "latency_ms", "p(95)"]) >= 25.0);

    // What cannot be called as asked: one line naming why, exit 2, and no
    // call of the method made.
    let (bare, bare_seen) = grpc_service(Duration::ZERO, Reflection::None).await;
    let before = seen.lock().unwrap().clone();
    for (target, method, data, expected) in [
        (
            &addr,
            "demo.v1.Orders/Cancel",
            "{}",
            "demo.v1.Orders on ADDR has no method Cancel (its methods: Place, Flaky, Slow, Watch)",
        ),
        (
            &addr,
            "demo.v1.Billing/Charge",
            "{}",
            "ADDR does not serve demo.v1.Billing (its services: grpc.reflection.v1.ServerReflection, demo.v1.Orders)",
        ),
        (
            &addr,
            "demo.v1.Orders/Watch",
            "{}",
            "a streaming method; --grpc calls unary methods",
        ),
        (
            &addr,
            "demo.v1.Orders/Place",
            r#"{"sku": 5}"#,
            "--data for demo.v1.Orders/Place: not a demo.v1.Order in protobuf JSON",
        ),
        (
            &addr,
            "demo.v1.Orders/Place",
            r#"{"color": "red"}"#,
            "--data for demo.v1.Orders/Place: not a demo.v1.Order in protobuf JSON",
        ),
        (
            &addr,
            "demo.v1.Orders/Place",
            r#"{"sku": "a"} trailing"#,
            "--data for demo.v1.Orders/Place: not a demo.v1.Order in protobuf JSON",
        ),
        (
            &bare,
            "demo.v1.Orders/Place",
            "{}",
            "ADDR serves no server reflection (grpc.reflection.v1 or v1alpha)",
        ),
    ] {
        let o = cli_off_runtime(
            dir.path(),
            &[
                "smoke",
                "--target",
                target,
                "--gating",
                &gating.addr(),
                "--grpc",
                method,
                "--data",
                data,
            ],
        )
        .await;
        let expected = expected.replace("ADDR", target);
        assert_eq!(o.status.code(), Some(2), "{method} {data}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(&expected),
            "{method} {data}: {}",
            stderr(&o)
        );
        assert_eq!(stderr(&o).trim().lines().count(), 1, "{}", stderr(&o));
    }
    assert_eq!(*seen.lock().unwrap(), before);
    assert!(bare_seen.lock().unwrap().is_empty());

    // --data that pairs with no --grpc call, or with some of them only.
    for (extra, expected) in [
        (
            vec!["--data", "{}"],
            "--data is the request of a --grpc call; give --grpc",
        ),
        (
            vec![
                "--grpc",
                "demo.v1.Orders/Place",
                "--grpc",
                "demo.v1.Orders/Slow",
                "--data",
                "{}",
                "--data",
                "{}",
                "--data",
                "{}",
            ],
            "--data given 3 times for 2 --grpc calls",
        ),
        (
            vec!["--grpc", "demo.v1.Orders/Place", "--mix", "grpc2"],
            "--mix names grpc2 but 1 --grpc call was given",
        ),
    ] {
        let gating_addr = gating.addr();
        let mut args = vec!["smoke", "--target", &addr, "--gating", &gating_addr];
        args.extend(extra);
        let o = cli_off_runtime(dir.path(), &args).await;
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains(expected), "{}", stderr(&o));
    }
}
