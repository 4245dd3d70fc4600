//! What trying the server as an adversary found (issue 19), each kept found:
//! malformed messages are the caller's error, values nest to a documented
//! depth on both transports, unknown methods are named, HEAD is served
//! wherever GET is, unreachable keys and forged page tokens are refused, and
//! the caller's scope is checked before its request.

use crate::common::*;
use bytes::{Buf, BufMut};
use pbjson_types::{ListValue, Struct, Value, value::Kind};
use prost::Message;
use switchyard::api::v1::{
    CreateFlagRequest, CreateTenantRequest, EvaluateFlagRequest, Flag, FlagType, ListFlagsRequest,
    ListTenantsRequest, Tenant,
};
use tonic::{
    Code, Request, Status,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
};

/// Sends and receives raw message bytes, so a test can send what no
/// generated client would.
#[derive(Debug, Clone, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(buf.copy_to_bytes(buf.remaining()).to_vec()))
    }
}

/// Calls `path` with `bytes` as the request message, as the admin.
async fn raw_call(server: &TestServer, path: &'static str, bytes: Vec<u8>) -> Status {
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    grpc.ready().await.unwrap();
    let mut req = Request::new(bytes);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {ADMIN}").parse().unwrap());
    match grpc
        .unary(req, http::uri::PathAndQuery::from_static(path), Raw)
        .await
    {
        Ok(_) => Status::ok(""),
        Err(s) => s,
    }
}

fn value_nested(levels: usize, list: bool) -> Value {
    (0..levels).fold(
        Value {
            kind: Some(Kind::BoolValue(true)),
        },
        |v, _| Value {
            kind: Some(if list {
                Kind::ListValue(ListValue { values: vec![v] })
            } else {
                Kind::StructValue(Struct {
                    fields: [("a".to_owned(), v)].into(),
                })
            }),
        },
    )
}

fn json_nested(levels: usize, list: bool) -> serde_json::Value {
    (0..levels).fold(serde_json::json!(true), |v, _| {
        if list {
            serde_json::json!([v])
        } else {
            serde_json::json!({ "a": v })
        }
    })
}

fn object_flag(key: &str, default: Value, ty: FlagType) -> CreateFlagRequest {
    CreateFlagRequest {
        flag: Some(Flag {
            key: key.into(),
            r#type: ty as i32,
            default_value: Some(default),
            ..Default::default()
        }),
    }
}

async fn malformed_messages_are_invalid_argument_with_a_short_message(backend: Backend) {
    let Some((server, _db)) = server_on(backend).await else {
        return;
    };
    const EVALUATE: &str = "/switchyard.v1.FlagService/EvaluateFlag";
    for (what, bytes, says) in [
        (
            "invalid UTF-8 in a string",
            vec![0x0a, 0x02, 0xff, 0xfe],
            "data is not UTF-8 encoded (in EvaluateFlagRequest.flag_key)",
        ),
        (
            "a truncated field",
            vec![0x0a, 0x05, b'a'],
            "buffer underflow",
        ),
        (
            "a wrong wire type",
            vec![0x08, 0x01],
            "invalid wire type: Varint (expected LengthDelimited) (in EvaluateFlagRequest.flag_key)",
        ),
    ] {
        let s = raw_call(&server, EVALUATE, bytes).await;
        assert_eq!(s.code(), Code::InvalidArgument, "{what}: {s:?}");
        assert!(s.message().contains(says), "{what}: {}", s.message());
        assert!(s.message().len() < 200, "{what}: {}", s.message());
    }

    // Values: 32 levels of objects or lists are a flag; 33 are refused by
    // name, short, on gRPC and REST alike; nothing is created.
    let mut flags = server.flags(ADMIN).await;
    for list in [false, true] {
        let ty = if list {
            FlagType::List
        } else {
            FlagType::Object
        };
        let key = if list { "deep-list" } else { "deep-object" };
        flags
            .create_flag(object_flag(key, value_nested(32, list), ty))
            .await
            .unwrap_or_else(|e| panic!("32 deep ({key}): {e:?}"));
        let e = flags
            .create_flag(object_flag(&format!("{key}-2"), value_nested(33, list), ty))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{key}: {e:?}");
        assert!(e.message().len() < 200, "{}", e.message());
        assert!(
            e.message().contains("32"),
            "the limit is named: {}",
            e.message()
        );
        // A hundred levels: beyond the decoder's own limit.
        let e = flags
            .create_flag(object_flag(
                &format!("{key}-3"),
                value_nested(100, list),
                ty,
            ))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{key}: {e:?}");
        assert!(e.message().len() < 200, "{}", e.message());

        for (levels, status) in [(33, 400), (60, 400), (120, 400)] {
            let body = serde_json::json!({
                "key": format!("{key}-rest-{levels}"),
                "type": if list { "FLAG_TYPE_LIST" } else { "FLAG_TYPE_OBJECT" },
                "defaultValue": json_nested(levels, list),
            });
            let r = http(&server, "POST", "/v1/flags", Some(ADMIN), Some(body)).await;
            assert_eq!(r.status, status, "REST {levels} deep: {:?}", r.body);
            assert_eq!(r.json()["code"], 3, "{:?}", r.body);
            assert!(r.json()["message"].as_str().unwrap().len() < 200);
        }
        let body = serde_json::json!({
            "key": format!("{key}-rest-32"),
            "type": if list { "FLAG_TYPE_LIST" } else { "FLAG_TYPE_OBJECT" },
            "defaultValue": json_nested(32, list),
        });
        let r = http(&server, "POST", "/v1/flags", Some(ADMIN), Some(body)).await;
        assert_eq!(r.status, 200, "REST 32 deep: {:?}", r.body);
    }
    let listed: Vec<String> = flags
        .list_flags(ListFlagsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .flags
        .into_iter()
        .map(|f| f.flag)
        .collect();
    assert_eq!(
        listed,
        [
            "deep-list",
            "deep-list-rest-32",
            "deep-object",
            "deep-object-rest-32"
        ]
    );
    server.shutdown().await.unwrap();
}

async fn small_findings_are_refused_precisely(backend: Backend) {
    let Some((server, _db)) = server_on(backend).await else {
        return;
    };
    let mut flags = server.flags(ADMIN).await;
    // "." and ".." cannot be reached over REST: they are not keys.
    for key in [".", ".."] {
        let e = flags
            .create_flag(object_flag(key, value_nested(0, false), FlagType::Bool))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{key:?}");
        assert!(e.message().starts_with("flag.key: "), "{}", e.message());
    }
    // Host labels follow the DNS rules, and errors quote the pattern given.
    let mut tenants = server.tenants(ADMIN).await;
    for (pattern, says) in [
        (
            "-a.example",
            "\"-a.example\": label \"-a\" starts or ends with '-'",
        ),
        (
            "a_b.example",
            "\"a_b.example\": character '_' is not allowed",
        ),
        (
            "xn--zz.example",
            "\"xn--zz.example\": label \"xn--zz\" is not valid punycode",
        ),
        ("*.*", "\"*.*\": a wildcard may only be"),
        ("*.*.example", "\"*.*.example\": a wildcard may only be"),
        ("*.", "\"*.\": a wildcard needs a host name"),
    ] {
        let e = tenants
            .create_tenant(CreateTenantRequest {
                tenant: Some(Tenant {
                    id: "t".into(),
                    patterns: vec![pattern.into()],
                    ..Default::default()
                }),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{pattern}");
        assert!(e.message().contains(says), "{pattern}: {}", e.message());
    }
    // A page token this server did not hand out (the hex of a key, which is
    // what tokens used to be) and an unknown view.
    let e = tenants
        .list_tenants(ListTenantsRequest {
            page_token: hex::encode("a"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (
            Code::InvalidArgument,
            "page_token: is not a token returned by this server"
        )
    );
    let e = flags
        .list_flags(ListFlagsRequest {
            view: 7,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().starts_with("view: unknown view 7"),
        "{}",
        e.message()
    );
    let r = http(&server, "GET", "/v1/flags?view=7", Some(ADMIN), None).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    // Scope before the request: a gating token with a bad key is refused
    // for its scope.
    let e = server
        .flags(GATING)
        .await
        .evaluate_flag(EvaluateFlagRequest {
            flag_key: "not a key!".into(),
            target: None,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    // An unknown method of a known service, and an unknown service, are named.
    let s = raw_call(&server, "/switchyard.v1.FlagService/Nope", Vec::new()).await;
    assert_eq!(
        (s.code(), s.message()),
        (
            Code::Unimplemented,
            "switchyard.v1.FlagService has no method \"Nope\""
        )
    );
    let s = raw_call(&server, "/nope.v1.Nothing/Call", Vec::new()).await;
    assert_eq!(
        (s.code(), s.message()),
        (Code::Unimplemented, "unknown service \"nope.v1.Nothing\"")
    );
    // HEAD is served wherever GET is: GET's status and headers, no body.
    let get = http(&server, "GET", "/admin/feature-flags", Some(ADMIN), None).await;
    let head = http(&server, "HEAD", "/admin/feature-flags", Some(ADMIN), None).await;
    assert_eq!((head.status, get.status), (200, 200));
    assert!(head.body.is_empty());
    assert_eq!(
        head.headers.get("content-type"),
        get.headers.get("content-type")
    );
    for path in ["/openapi.json", "/v1/flags"] {
        let head = http(&server, "HEAD", path, Some(ADMIN), None).await;
        assert_eq!(head.status, 200, "HEAD {path}");
    }
    let r = http(&server, "PUT", "/admin/feature-flags", Some(ADMIN), None).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    server.shutdown().await.unwrap();
}

/// Whether the server closed `s` within `within` (EOF or an error), rather
/// than keeping it open.
async fn closed_within(s: &mut tokio::net::TcpStream, within: std::time::Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(within, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            // The server's side of an HTTP/2 handshake, or the GOAWAY it
            // sends on closing: read on.
            Ok(Ok(_)) => {}
        }
    }
}

/// A socket that never speaks is closed after the idle timeout while a quiet
/// watch on another connection (whose client only answers PINGs) lives on;
/// at the connection limit a new connection is closed at once, and once one
/// goes away a new one is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_and_connections_are_limited() {
    use std::time::Duration;
    let Some((server, _db)) = server_with(Backend::Sqlite, |c| {
        c.listener.max_connections = 3;
        c.listener.connection_idle_timeout_s = 3;
        c.listener.http2_keepalive_interval_s = 1;
        c.listener.http2_keepalive_timeout_s = 1;
        c.watch.watch_heartbeat_s = 1;
    })
    .await
    else {
        return;
    };
    let mut watch = server
        .flags(ADMIN)
        .await
        .watch_flags(switchyard::api::v1::WatchFlagsRequest::default())
        .await
        .unwrap()
        .into_inner();
    watch.message().await.unwrap().unwrap();
    let mut silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    assert!(
        closed_within(&mut silent, Duration::from_secs(15)).await,
        "a socket that sends nothing is closed"
    );
    // The watch outlived it: its connection answered PINGs all along.
    let after = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .expect("the watch goes on")
        .unwrap()
        .expect("still open");
    assert_eq!(
        after.r#type(),
        switchyard::api::v1::FlagEventType::Heartbeat
    );

    // The watch's connection and two more: the next one is closed at once.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        assert!(
            !closed_within(&mut s, Duration::from_millis(300)).await,
            "within the limit"
        );
        held.push(s);
    }
    let mut over = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    assert!(
        closed_within(&mut over, Duration::from_secs(2)).await,
        "beyond the limit: closed at once"
    );
    drop(held.pop());
    wait_until(Duration::from_secs(5), || async {
        match switchyard::client::Client::connect(&server.url(), "").await {
            Ok(c) => c
                .health()
                .check(switchyard::api::health::HealthCheckRequest::default())
                .await
                .is_ok(),
            Err(_) => false,
        }
    })
    .await;
    server.shutdown().await.unwrap();
}

/// An HTTP/1.1 stream, whose client sends nothing after its request (a
/// browser's SSE watch), outlives the idle timeout on its heartbeats: bytes
/// written count as much as bytes read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_sse_watch_outlives_the_idle_timeout() {
    use http_body_util::BodyExt;
    use std::time::{Duration, Instant};
    let Some((server, _db)) = server_with(Backend::Sqlite, |c| {
        c.listener.connection_idle_timeout_s = 3;
        c.listener.http2_keepalive_interval_s = 1;
        c.listener.http2_keepalive_timeout_s = 1;
        c.watch.watch_heartbeat_s = 1;
    })
    .await
    else {
        return;
    };
    let resp = http_send_with(
        &server,
        "GET",
        "/v1/flags:watch",
        Some(ADMIN),
        None,
        &[("accept", "text/event-stream")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    let start = Instant::now();
    let mut heartbeats = 0;
    // Twice the idle timeout, event by event.
    while start.elapsed() < Duration::from_secs(6) {
        let frame = tokio::time::timeout(Duration::from_secs(3), body.frame())
            .await
            .expect("an event within 3 s")
            .expect("the stream is still open")
            .expect("no error on the stream");
        if let Ok(data) = frame.into_data() {
            heartbeats += String::from_utf8_lossy(&data)
                .matches("FLAG_EVENT_TYPE_HEARTBEAT")
                .count();
        }
    }
    assert!(heartbeats >= 3, "{heartbeats} heartbeats");
    server.shutdown().await.unwrap();
}

/// With a message limit well under the default, pages and snapshot parts are
/// cut by it, counting everything encoded (the FULL view's definitions too),
/// on gRPC and REST; a flag that alone cannot fit is named; a request over the
/// limit is RESOURCE_EXHAUSTED.
async fn pages_and_parts_are_cut_by_the_configured_message_limit(backend: Backend) {
    const LIMIT: usize = 256 * 1024;
    let Some((server, _db)) = server_with(backend, |c| c.listener.max_message_bytes = LIMIT).await
    else {
        return;
    };
    let mut flags = server.flags(ADMIN).await;
    let big = "v".repeat(60 * 1024);
    let count = 12; // 720 KiB of values, twice that with definitions
    for i in 0..count {
        flags
            .create_flag(CreateFlagRequest {
                flag: Some(Flag {
                    key: format!("big{i:02}"),
                    r#type: FlagType::String as i32,
                    default_value: Some(Value {
                        kind: Some(Kind::StringValue(big.clone())),
                    }),
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
    }
    for view in [1, 2] {
        let (mut listed, mut defs, mut pages) = (0, 0, 0);
        let mut token = String::new();
        loop {
            let page = flags
                .list_flags(ListFlagsRequest {
                    page_token: token.clone(),
                    view,
                    ..Default::default()
                })
                .await
                .unwrap_or_else(|e| panic!("view {view}, page {pages}: {e:?}"))
                .into_inner();
            assert!(page.encoded_len() <= LIMIT, "{} bytes", page.encoded_len());
            pages += 1;
            listed += page.flags.len();
            defs += page.definitions.len();
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        assert_eq!(listed, count, "view {view}");
        assert_eq!(defs, if view == 2 { count } else { 0 });
        assert!(
            pages >= if view == 2 { 6 } else { 3 },
            "view {view}: {pages} pages"
        );
    }
    let r = http(&server, "GET", "/admin/feature-flags", Some(ADMIN), None).await;
    assert_eq!(
        r.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&r.body[..200.min(r.body.len())])
    );
    assert_eq!(r.json().as_array().unwrap().len(), count);
    // The watch's snapshot comes in parts that each fit.
    let mut watch = flags
        .watch_flags(switchyard::api::v1::WatchFlagsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut seen = 0;
    loop {
        let ev = watch.message().await.unwrap().unwrap();
        assert!(ev.encoded_len() <= LIMIT);
        seen += ev.flags.len();
        if !ev.snapshot_continues {
            break;
        }
    }
    assert_eq!(seen, count);
    drop(watch);

    // Under a limit of 100 KiB a 60 KiB flag fits alone, but not with its
    // definition: the FULL view names it.
    server.shutdown().await.unwrap();
    let Some((server, _db)) =
        server_with(backend, |c| c.listener.max_message_bytes = 100 * 1024).await
    else {
        return;
    };
    let mut flags = server.flags(ADMIN).await;
    let huge = "v".repeat(40 * 1024);
    flags
        .create_flag(CreateFlagRequest {
            flag: Some(Flag {
                key: "huge".into(),
                r#type: FlagType::String as i32,
                default_value: Some(Value {
                    kind: Some(Kind::StringValue(huge.clone())),
                }),
                stored_value: Some(Value {
                    kind: Some(Kind::StringValue(huge.clone())),
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let basic = flags.list_flags(ListFlagsRequest::default()).await.unwrap();
    assert_eq!(basic.into_inner().flags.len(), 1);
    let e = flags
        .list_flags(ListFlagsRequest {
            view: 2,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(
        e.message().starts_with("flag \"huge\" takes up to"),
        "{}",
        e.message()
    );
    // A request over the limit.
    let e = flags
        .create_flag(CreateFlagRequest {
            flag: Some(Flag {
                key: "over".into(),
                r#type: FlagType::String as i32,
                description: "d".repeat(120 * 1024),
                default_value: Some(Value {
                    kind: Some(Kind::StringValue("x".into())),
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("max_message_bytes"), "{}", e.message());
    server.shutdown().await.unwrap();
}

on_both_backends!(
    pages_and_parts_are_cut_by_the_configured_message_limit,
    malformed_messages_are_invalid_argument_with_a_short_message,
    small_findings_are_refused_precisely,
);
