//! Security and limits II (issue 30): nothing expensive before
//! authentication, no caller crowding out another, stored documents bounded.
//!
//! - An HTTP `Content-Encoding` on a gRPC or gRPC-Web call is refused before
//!   its body is read (the answer comes while the client is still sending),
//!   token or not; public services inflate a compressed message no further
//!   than their small limit; REST and OFREP bodies are inflated only once
//!   the token is checked, within the limit (`src/rest/body.rs` counts the
//!   bytes inflated).
//! - A caller at its quota of long-lived streams is refused and leaves the
//!   others theirs; HTTP/2 connections advertise `max_concurrent_streams`.
//! - Gate documents are bounded field by field; gate runs, tenants and
//!   flags are paged within the message limit; an answer over the limit is
//!   the server's failure (INTERNAL, 500), never the caller's.

use std::io::Write;

use crate::common::*;
use pbjson_types::{Value, value::Kind};
use switchyard::api::v1::{
    CompareCanaryRequest, CreateFlagRequest, CreateTenantRequest, EvaluateSmokeRequest, Flag,
    FlagType, GetFlagRequest, LatencyMs, ListGateRunsRequest, ListTenantsRequest, RunMetadata,
    SmokeConfig, Tenant, TrafficStats, UpdateFlagRequest, WatchFlagsRequest,
};
use tonic::Code;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// 64 MiB of zeros as about 64 KiB of gzip.
fn bomb() -> bytes::Bytes {
    bytes::Bytes::from(gzip(&vec![0u8; 64 << 20]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_coded_grpc_call_is_refused_before_its_body_is_read() {
    let Some((server, _db)) = server_with(Backend::Sqlite, |c| {
        c.auth.flagd_anonymous_tenant = Some("a".into());
    })
    .await
    else {
        return;
    };
    let channel = server.channel().await;
    let bomb = bomb();
    let admin = format!("Bearer {ADMIN}");
    let cases: [(&str, &str, Option<&str>); 6] = [
        ("/grpc.health.v1.Health/Check", "application/grpc", None),
        (
            "/flagd.evaluation.v1.Service/ResolveBoolean",
            "application/grpc",
            None,
        ),
        (
            "/switchyard.v1.FlagService/EvaluateFlag",
            "application/grpc",
            None,
        ),
        (
            "/switchyard.v1.FlagService/EvaluateFlag",
            "application/grpc",
            Some(admin.as_str()),
        ),
        ("/grpc.health.v1.Health/Check", "application/grpc-web", None),
        (
            "/switchyard.v1.FlagService/WatchFlags",
            "application/grpc-web-text",
            Some(admin.as_str()),
        ),
    ];
    for (path, content_type, auth) in cases {
        // The body stays open: an answer proves nothing waited for it.
        let (body, still_sending) = open_body(bomb.clone());
        let mut headers = vec![("content-encoding", "gzip")];
        if let Some(a) = auth {
            headers.push(("authorization", a));
        }
        let r = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            grpc_raw(&channel, path, content_type, &headers, body),
        )
        .await
        .unwrap_or_else(|_| panic!("{path} {content_type}: no answer while the body was open"));
        assert_eq!(
            r.code(),
            Code::InvalidArgument,
            "{path} {content_type}: {r:?}"
        );
        assert!(r.message().contains("grpc-encoding"), "{}", r.message());
        assert_eq!(r.content_type, content_type, "{path}");
        assert_eq!(
            r.http, 200,
            "{path}: a gRPC answer, its status in grpc-status"
        );
        drop(still_sending);
    }
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_service_inflates_a_message_no_further_than_its_small_limit() {
    let Some((server, _db)) = server_with(Backend::Sqlite, |_| {}).await else {
        return;
    };
    let channel = server.channel().await;
    // A health request whose one message inflates to 1 MiB.
    let message = grpc_frame(1, &gzip(&vec![0u8; 1 << 20]));
    let r = grpc_raw(
        &channel,
        "/grpc.health.v1.Health/Check",
        "application/grpc",
        &[("grpc-encoding", "gzip")],
        tonic::body::Body::new(http_body_util::Full::new(message)),
    )
    .await;
    assert_eq!(r.code(), Code::ResourceExhausted, "{r:?}");
    assert!(r.message().contains("65536"), "{}", r.message());
    // A small compressed request is served.
    let message = grpc_frame(1, &gzip(b""));
    let r = grpc_raw(
        &channel,
        "/grpc.health.v1.Health/Check",
        "application/grpc",
        &[("grpc-encoding", "gzip")],
        tonic::body::Body::new(http_body_util::Full::new(message)),
    )
    .await;
    assert_eq!(r.code(), Code::Ok, "{r:?}");
    server.shutdown().await.unwrap();
}

async fn flag_count(server: &TestServer) -> usize {
    server
        .flags(ADMIN)
        .await
        .list_flags(switchyard::api::v1::ListFlagsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .flags
        .len()
}

/// REST and OFREP bodies: inflated after the token is checked, within the
/// limit counted inflated, codings case-insensitive, every refusal in the
/// protocol's own error shape.
async fn rest_and_ofrep_bodies_are_inflated_after_the_token_and_within_the_limit(backend: Backend) {
    let Some((server, _db)) = server_with(backend, |_| {}).await else {
        return;
    };
    let bomb = bomb().to_vec();
    let gz = [("content-encoding", "gzip")];
    // No token: refused, nothing inflated.
    let r = http_raw_with(
        &server,
        "POST",
        "/v1/flags",
        None,
        Some(("application/json", bomb.clone())),
        &gz,
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["code"], 16);
    // With a token: inflated up to 4 MiB, then refused; nothing written.
    let r = http_raw_with(
        &server,
        "POST",
        "/v1/flags",
        Some(ADMIN),
        Some(("application/json", bomb.clone())),
        &gz,
    )
    .await;
    assert_eq!(r.status, 413, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["code"], 8);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("counted once inflated")
    );
    assert_eq!(flag_count(&server).await, 0, "the bomb wrote nothing");
    // Content codings are case-insensitive.
    let body = gzip(br#"{"key": "upper", "type": "FLAG_TYPE_BOOL", "defaultValue": true}"#);
    let r = http_raw_with(
        &server,
        "POST",
        "/v1/flags",
        Some(ADMIN),
        Some(("application/json", body)),
        &[("content-encoding", "GZIP")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // Another coding: 415 with a google.rpc.Status body.
    let r = http_raw_with(
        &server,
        "POST",
        "/v1/flags",
        Some(ADMIN),
        Some(("application/json", b"{}".to_vec())),
        &[("content-encoding", "BR")],
    )
    .await;
    assert_eq!(r.status, 415);
    assert_eq!(r.json()["code"], 3);
    assert!(r.json()["message"].as_str().unwrap().contains("gzip"));
    assert_eq!(flag_count(&server).await, 1);

    // OFREP: the same, in OFREP's shape.
    let r = http_raw_with(
        &server,
        "POST",
        "/ofrep/v1/evaluate/flags/upper",
        Some(ADMIN),
        Some(("application/json", bomb)),
        &gz,
    )
    .await;
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["errorCode"], "GENERAL", "{}", r.json());
    let ofrep_shape = |r: &HttpReply| {
        assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
        let j = r.json();
        assert!(
            j["errorCode"].is_string() && j["errorDetails"].is_string(),
            "{j}"
        );
    };
    let r = http_raw(
        &server,
        "POST",
        "/ofrep/v1/evaluate/flags/%ff",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(r.status, 400);
    ofrep_shape(&r);
    let r = http_raw(
        &server,
        "GET",
        "/ofrep/v1/evaluate/flags/upper",
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("POST"));
    ofrep_shape(&r);
    let r = http_raw(&server, "POST", "/ofrep/v1/nothing", Some(ADMIN), None).await;
    assert_eq!(r.status, 404);
    ofrep_shape(&r);
    server.shutdown().await.unwrap();
}

fn watch_req() -> WatchFlagsRequest {
    WatchFlagsRequest::default()
}

/// A caller at its quota of long-lived streams (any kind: the gRPC watch,
/// the REST watch, OFREP's and flagd's event streams) is refused, and every
/// other caller still opens theirs; the replica's limit is below.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_caller_at_its_quota_leaves_the_others_their_streams() {
    let Some((server, _db)) = server_with(Backend::Sqlite, |c| {
        c.watch.max_watchers = 8;
        c.watch.max_watchers_per_caller = Some(3);
        c.auth.flagd_anonymous_tenant = Some("c".into());
    })
    .await
    else {
        return;
    };
    setup_tenants(&server, &["a", "b", "c"]).await;
    let (a, b) = (tenant_token("a"), tenant_token("b"));
    let mut held = Vec::new();
    for _ in 0..3 {
        let s = server
            .flags(&a)
            .await
            .watch_flags(watch_req())
            .await
            .unwrap();
        held.push(s.into_inner());
    }
    // `a` is at its quota, whatever kind of stream it asks for.
    let e = server
        .flags(&a)
        .await
        .watch_flags(watch_req())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(e.message().contains("max_watchers_per_caller"), "{e:?}");
    let sse = http_send_with(
        &server,
        "GET",
        "/v1/flags:watch",
        Some(&a),
        None,
        &[("accept", "text/event-stream")],
    )
    .await;
    assert_eq!(sse.status(), 429);
    let ofrep = http_send(&server, "GET", "/ofrep/v1/events", Some(&a), None).await;
    assert_eq!(ofrep.status(), 429);
    let flagd = switchyard::api::flagd::evaluation::v2::service_client::ServiceClient::new(
        server.client(&a).await.channel(),
    );
    let mut flagd_req =
        tonic::Request::new(switchyard::api::flagd::evaluation::v2::EventStreamRequest {});
    flagd_req
        .metadata_mut()
        .insert("authorization", format!("Bearer {a}").parse().unwrap());
    let e = flagd.clone().event_stream(flagd_req).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");

    // The others are not affected: `b`, the admin, the anonymous flagd
    // callers (one caller together).
    for _ in 0..3 {
        held.push(
            server
                .flags(&b)
                .await
                .watch_flags(watch_req())
                .await
                .unwrap()
                .into_inner(),
        );
    }
    held.push(
        server
            .flags(ADMIN)
            .await
            .watch_flags(watch_req())
            .await
            .unwrap()
            .into_inner(),
    );
    let anonymous = flagd
        .clone()
        .event_stream(switchyard::api::flagd::evaluation::v2::EventStreamRequest {})
        .await
        .unwrap()
        .into_inner();
    // 8 open: the replica's limit, for anyone.
    let e = server
        .flags(ADMIN)
        .await
        .watch_flags(watch_req())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(e.message().contains("max_watchers)"), "{e:?}");
    // A closed stream gives its place back to its caller.
    drop(anonymous);
    held.remove(0);
    wait_until(std::time::Duration::from_secs(10), || async {
        server
            .flags(&a)
            .await
            .watch_flags(watch_req())
            .await
            .is_ok()
    })
    .await;
    drop(held);
    server.shutdown().await.unwrap();
}

/// Each HTTP/2 connection may carry `max_concurrent_streams` calls at once,
/// as the server's SETTINGS say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_carries_at_most_max_concurrent_streams() {
    let Some((server, _db)) =
        server_with(Backend::Sqlite, |c| c.listener.max_concurrent_streams = 7).await
    else {
        return;
    };
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    // SETTINGS arrive with the server's preface; a ping round trip later
    // they have been applied.
    let req = http::Request::builder()
        .method("POST")
        .uri(format!(
            "http://{}/grpc.health.v1.Health/Check",
            server.addr
        ))
        .header("content-type", "application/grpc")
        .body(())
        .unwrap();
    let (resp, mut send) = client.send_request(req, false).unwrap();
    send.send_data(grpc_frame(0, b""), true).unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(client.current_max_send_streams(), 7);
    server.shutdown().await.unwrap();
}

fn big_stats(label: &str) -> TrafficStats {
    let keys = |prefix: &str| {
        (0..100)
            .map(|i| (format!("{prefix}-{i:02}-{}", "k".repeat(50)), 1))
            .collect()
    };
    TrafficStats {
        label: label.into(),
        count: 1000,
        ok: 1000,
        errors: 0,
        rps: 10.0,
        duration_s: 100.0,
        latency_ms: Some(LatencyMs {
            p50: 10.0,
            p95: 20.0,
            ..Default::default()
        }),
        status_code_distribution: keys("code"),
        error_distribution: keys("cause"),
        percentile_method: "m".repeat(256),
        ..Default::default()
    }
}

/// Every string and map of a gate document is bounded, named when over;
/// a history of runs as large as allowed is read back whole, page by page,
/// each page within the message limit, on gRPC and REST.
async fn gate_documents_are_bounded_and_their_history_is_paged_by_bytes(backend: Backend) {
    const LIMIT: usize = 256 * 1024;
    let Some((server, _db)) = server_with(backend, |c| c.listener.max_message_bytes = LIMIT).await
    else {
        return;
    };
    let mut gating = server.gating(GATING).await;
    let long = "x".repeat(300);
    let metadata = |field: &str| {
        let mut m = RunMetadata::default();
        match field {
            "git_sha" => m.git_sha = long.clone(),
            "tool_version" => m.tool_version = long.clone(),
            _ => m.run_id = long.clone(),
        }
        m
    };
    // One field over at a time, each named.
    let mut smoke_cases: Vec<(EvaluateSmokeRequest, &str)> = Vec::new();
    for field in ["git_sha", "tool_version", "run_id"] {
        smoke_cases.push((
            EvaluateSmokeRequest {
                results: Some(big_stats("s")),
                metadata: Some(metadata(field)),
                ..Default::default()
            },
            field,
        ));
    }
    let mut stats = big_stats("s");
    stats.label = long.clone();
    smoke_cases.push((
        EvaluateSmokeRequest {
            results: Some(stats),
            ..Default::default()
        },
        "results.label",
    ));
    let mut stats = big_stats("s");
    stats.percentile_method.push('m');
    smoke_cases.push((
        EvaluateSmokeRequest {
            results: Some(stats),
            ..Default::default()
        },
        "results.percentile_method",
    ));
    let mut stats = big_stats("s");
    stats.error_distribution.insert("k".repeat(65), 1);
    smoke_cases.push((
        EvaluateSmokeRequest {
            results: Some(stats),
            ..Default::default()
        },
        "results.error_distribution",
    ));
    smoke_cases.push((
        EvaluateSmokeRequest {
            results: Some(big_stats("s")),
            config: Some(SmokeConfig {
                calls: vec![long.clone()],
                ..Default::default()
            }),
            ..Default::default()
        },
        "config.calls[0]",
    ));
    for (req, field) in smoke_cases {
        let e = gating.evaluate_smoke(req).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{field}: {e:?}");
        assert!(e.message().contains(field), "{field}: {}", e.message());
    }
    let e = gating
        .compare_canary(CompareCanaryRequest {
            baseline: Some(big_stats("b")),
            canary: Some(big_stats("c")),
            metadata: Some(metadata("git_sha")),
            record: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("metadata.git_sha"), "{}", e.message());
    let r = http(
        &server,
        "POST",
        "/v1/gating/smoke:evaluate",
        Some(GATING),
        Some(serde_json::json!({"results": {"count": 10, "ok": 10, "label": long}})),
    )
    .await;
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));

    // Runs as large as the bounds allow, kept on both kinds.
    let max_meta = RunMetadata {
        git_sha: "g".repeat(256),
        tool_version: "t".repeat(256),
        run_id: "r".repeat(256),
        ..Default::default()
    };
    let runs = 30;
    for i in 0..runs {
        if i % 2 == 0 {
            gating
                .evaluate_smoke(EvaluateSmokeRequest {
                    results: Some(big_stats(&"l".repeat(256))),
                    target: "t".repeat(256),
                    run_id: "r".repeat(256),
                    metadata: Some(max_meta.clone()),
                    ..Default::default()
                })
                .await
                .unwrap();
        } else {
            gating
                .compare_canary(CompareCanaryRequest {
                    baseline: Some(big_stats("b")),
                    canary: Some(big_stats("c")),
                    baseline_before: Some(big_stats("bb")),
                    metadata: Some(max_meta.clone()),
                    record: true,
                    ..Default::default()
                })
                .await
                .unwrap();
        }
    }
    let (seen, pages) = all_pages(LIMIT, |token| {
        let mut gating = gating.clone();
        async move {
            let page = gating
                .list_gate_runs(ListGateRunsRequest {
                    page_size: 1000,
                    page_token: token,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            (
                prost::Message::encoded_len(&page),
                page.runs.len(),
                page.next_page_token,
            )
        }
    })
    .await;
    assert_eq!(seen, runs);
    assert!(pages > 1, "{pages} page(s)");
    let r = http(
        &server,
        "GET",
        "/v1/gating/runs?pageSize=1000",
        Some(GATING),
        None,
    )
    .await;
    assert_eq!(
        r.status,
        200,
        "{}",
        String::from_utf8_lossy(&r.body[..200.min(r.body.len())])
    );
    server.shutdown().await.unwrap();
}

/// Reads every page of a listing: `fetch` answers a page token with the
/// page's encoded size, its number of items and the next token. Asserts every
/// page fits in `limit`; returns the items and the pages read.
async fn all_pages<F, Fut>(limit: usize, mut fetch: F) -> (usize, usize)
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = (usize, usize, String)>,
{
    let (mut items, mut pages, mut token) = (0, 0, String::new());
    loop {
        let (bytes, n, next) = fetch(token).await;
        assert!(bytes <= limit, "page {pages}: {bytes} bytes");
        pages += 1;
        items += n;
        if next.is_empty() {
            return (items, pages);
        }
        token = next;
    }
}

/// Tenants with as many long patterns as allowed are listed whole, page by
/// page within the limit.
async fn tenants_are_paged_by_bytes(backend: Backend) {
    const LIMIT: usize = 256 * 1024;
    let Some((server, _db)) = server_with(backend, |c| c.listener.max_message_bytes = LIMIT).await
    else {
        return;
    };
    let mut tenants = server.tenants(ADMIN).await;
    let count = 25; // about 20 KiB each
    let label = "h".repeat(60);
    for t in 0..count {
        let patterns = (0..100)
            .map(|p| format!("{label}.{label}.{label}.p{p:02}.t{t:02}.example"))
            .collect();
        tenants
            .create_tenant(CreateTenantRequest {
                tenant: Some(Tenant {
                    id: format!("t{t:02}"),
                    display_name: "d".repeat(200),
                    patterns,
                    ..Default::default()
                }),
            })
            .await
            .unwrap();
    }
    let (seen, pages) = all_pages(LIMIT, |token| {
        let mut tenants = tenants.clone();
        async move {
            let page = tenants
                .list_tenants(ListTenantsRequest {
                    page_size: 1000,
                    page_token: token,
                })
                .await
                .unwrap()
                .into_inner();
            (
                prost::Message::encoded_len(&page),
                page.tenants.len(),
                page.next_page_token,
            )
        }
    })
    .await;
    assert_eq!(seen, count);
    assert!(pages > 1, "{pages} page(s)");
    server.shutdown().await.unwrap();
}

fn string(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.into())),
    }
}

/// A flag that could never be read back is refused before it is written;
/// an answer over the limit all the same (the limit was lowered after the
/// flag was written) is the server's failure: INTERNAL over gRPC, 500 over
/// REST, naming the limit.
async fn an_answer_over_the_limit_is_a_server_error(backend: Backend) {
    const LIMIT: usize = 4096;
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    if backend == Backend::Postgres {
        db.migrate().await;
    }
    let mut config = test_config(&db);
    config.listener.max_message_bytes = LIMIT;
    let server = TestServer::start(config.clone()).await;
    let mut flags = server.flags(ADMIN).await;
    let half = "v".repeat(2500);
    let wide = |stored: Option<Value>| CreateFlagRequest {
        flag: Some(Flag {
            key: "wide".into(),
            r#type: FlagType::String as i32,
            default_value: Some(string(&half)),
            stored_value: stored,
            ..Default::default()
        }),
    };
    let e = flags
        .create_flag(wide(Some(string(&half))))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    flags.create_flag(wide(None)).await.unwrap();
    let store_half = || UpdateFlagRequest {
        flag: Some(Flag {
            key: "wide".into(),
            stored_value: Some(string(&half)),
            ..Default::default()
        }),
        update_mask: Some(pbjson_types::FieldMask {
            paths: vec!["stored_value".into()],
        }),
        expected_revision: 0,
    };
    let e = flags.update_flag(store_half()).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    let e = flags
        .set_tenant_override(switchyard::api::v1::SetTenantOverrideRequest {
            tenant_id: "a".into(),
            flag_key: "wide".into(),
            value: Some(string(&"o".repeat(3500))),
            expected_revision: 0,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(e.code(), Code::ResourceExhausted),
        "an override that no listing could carry: {e:?}"
    );
    let kept = flags
        .get_flag(GetFlagRequest {
            flag_key: "wide".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(kept.flag.unwrap().stored_value.is_none(), "nothing written");
    server.shutdown().await.unwrap();

    // Written under a larger limit, read under a smaller one.
    let mut larger = config.clone();
    larger.listener.max_message_bytes = 64 * 1024;
    let server = TestServer::start(larger).await;
    let mut flags = server.flags(ADMIN).await;
    flags.update_flag(store_half()).await.unwrap();
    server.shutdown().await.unwrap();
    let server = TestServer::start(config).await;
    let mut flags = server.flags(ADMIN).await;
    let e = flags
        .get_flag(GetFlagRequest {
            flag_key: "wide".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Internal, "{e:?}");
    assert!(e.message().contains("max_message_bytes"), "{}", e.message());
    let r = http(&server, "GET", "/v1/flags/wide", Some(ADMIN), None).await;
    assert_eq!(r.status, 500, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["code"], 13);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("max_message_bytes")
    );
    server.shutdown().await.unwrap();
}

on_both_backends!(
    rest_and_ofrep_bodies_are_inflated_after_the_token_and_within_the_limit,
    gate_documents_are_bounded_and_their_history_is_paged_by_bytes,
    tenants_are_paged_by_bytes,
    an_answer_over_the_limit_is_a_server_error,
);
