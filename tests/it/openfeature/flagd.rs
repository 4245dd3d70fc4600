//! flagd's gRPC API as OpenFeature's flagd providers call it: OpenFeature's
//! Python SDK with its flagd provider in RPC mode and in in-process mode
//! (`tests/openfeature/flagd_python.py`: every type with its value and reason,
//! the override per tenant, FLAG_NOT_FOUND and TYPE_MISMATCH, the
//! configuration-changed event of a write, and a server restart survived with
//! the changes made meanwhile seen); then the protocol itself through the
//! generated clients: v1 and v2 answers, tenants by token, selector and
//! context, the error codes providers map, the event stream and the sync
//! stream of one tenant's view only, streams ending UNAVAILABLE (never OK)
//! when the server stops, and `flagd_anonymous_tenant`.

use std::{
    io::{BufRead, BufReader, Write},
    net::SocketAddr,
    process::{Command, Stdio},
    time::Duration,
};

use crate::common::*;
use serde_json::{Value as Json, json};
use switchyard::{
    api::flagd::{
        evaluation::{v1, v2},
        sync::v1 as sync,
    },
    client::Bearer,
    config::Config,
};
use tonic::{Code, Request, service::interceptor::InterceptedService, transport::Channel};

on_both_backends!(
    the_python_sdk_evaluates_through_its_flagd_provider_in_rpc_mode,
    the_python_sdk_evaluates_through_its_flagd_provider_in_process,
    resolutions_answer_every_type_with_reason_variant_and_metadata,
    the_event_stream_names_the_changes_of_the_tenants_view_only,
    sync_sends_the_tenants_whole_configuration_on_every_change,
    the_javascript_sdk_evaluates_through_its_flagd_and_ofrep_providers,
);

async fn seed(server: &TestServer) {
    seed_openfeature_flags(server).await;
}

/// An admin's REST write, which must succeed.
async fn rest(server: &TestServer, method: &str, path: &str, body: Json) {
    let r = http(server, method, path, Some(ADMIN), Some(body)).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

type V2 = v2::service_client::ServiceClient<InterceptedService<Channel, Bearer>>;
type V1 = v1::service_client::ServiceClient<InterceptedService<Channel, Bearer>>;
type Sync =
    sync::flag_sync_service_client::FlagSyncServiceClient<InterceptedService<Channel, Bearer>>;

async fn v2_client(server: &TestServer, token: &str) -> V2 {
    v2::service_client::ServiceClient::with_interceptor(server.channel().await, Bearer::new(token))
}

async fn v1_client(server: &TestServer, token: &str) -> V1 {
    v1::service_client::ServiceClient::with_interceptor(server.channel().await, Bearer::new(token))
}

async fn sync_client(server: &TestServer, token: &str) -> Sync {
    sync::flag_sync_service_client::FlagSyncServiceClient::with_interceptor(
        server.channel().await,
        Bearer::new(token),
    )
}

/// `ResolveBoolean` (v2) of `key` for `token`, with a selector and a context.
async fn boolean(
    server: &TestServer,
    token: &str,
    key: &str,
    selector: Option<&str>,
    ctx: Json,
) -> Result<v2::ResolveBooleanResponse, tonic::Status> {
    let req = v2::ResolveBooleanRequest {
        flag_key: key.into(),
        context: context(ctx),
    };
    v2_client(server, token)
        .await
        .resolve_boolean(with(req, selector))
        .await
        .map(tonic::Response::into_inner)
}

/// `ResolveString` (v2), likewise.
async fn string(
    server: &TestServer,
    token: &str,
    key: &str,
    selector: Option<&str>,
    ctx: Json,
) -> Result<v2::ResolveStringResponse, tonic::Status> {
    let req = v2::ResolveStringRequest {
        flag_key: key.into(),
        context: context(ctx),
    };
    v2_client(server, token)
        .await
        .resolve_string(with(req, selector))
        .await
        .map(tonic::Response::into_inner)
}

/// A request with a context and an optional selector header.
fn with<T>(message: T, selector: Option<&str>) -> Request<T> {
    let mut req = Request::new(message);
    if let Some(s) = selector {
        req.metadata_mut()
            .insert("flagd-selector", s.parse().unwrap());
    }
    req
}

fn context(v: Json) -> Option<pbjson_types::Struct> {
    match serde_json::from_value::<pbjson_types::Value>(v)
        .unwrap()
        .kind
    {
        Some(pbjson_types::value::Kind::StructValue(s)) => Some(s),
        _ => None,
    }
}

fn to_json(s: &pbjson_types::Struct) -> Json {
    serde_json::to_value(s).unwrap()
}

/// Runs the Python provider script in `mode` against a server on a fixed
/// port; when it asks, restarts the server on the same port, changes two
/// values, and lets it go on.
async fn python_provider(backend: Backend, mode: &'static str) {
    let Some(py) = python_project("openfeature") else {
        return;
    };
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    if backend == Backend::Postgres {
        db.migrate().await;
    }
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let server = TestServer::start_at(test_config(&db), addr).await;
    seed(&server).await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/openfeature/flagd_python.py"
    );
    let mut child = Command::new(py)
        .arg(script)
        .arg(mode)
        .arg("127.0.0.1")
        .arg(addr.port().to_string())
        .arg(server.url())
        .arg(ADMIN)
        .arg(tenant_token("a"))
        .arg(tenant_token("b"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut out = Vec::new();
    let mut server = Some(server);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while let Ok(Some(line)) = tokio::time::timeout_at(deadline, lines.recv()).await {
        if line == "RESTART" {
            server.take().unwrap().shutdown().await.unwrap();
            let restarted = TestServer::start_at(test_config(&db), addr).await;
            rest(
                &restarted,
                "PATCH",
                "/v1/flags/of-string?updateMask=storedValue",
                json!({"key": "of-string", "storedValue": "purple"}),
            )
            .await;
            rest(&restarted, "PUT", "/v1/tenants/a/flags/of-int", json!(42)).await;
            server = Some(restarted);
            stdin.write_all(b"GO\n").unwrap();
            stdin.flush().unwrap();
        }
        out.push(line);
    }
    let status = tokio::task::spawn_blocking(move || {
        let _ = child.kill();
        let stderr = child.stderr.take().map(|mut e| {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut e, &mut s);
            s
        });
        (child.wait().unwrap(), stderr.unwrap_or_default())
    })
    .await
    .unwrap();
    let out = out.join("\n");
    eprintln!("{out}");
    assert!(
        out.contains(&format!("flagd python {mode}: all checks passed")),
        "{out}\n{}\n{:?}",
        status.1,
        status.0
    );
}

async fn the_python_sdk_evaluates_through_its_flagd_provider_in_rpc_mode(backend: Backend) {
    python_provider(backend, "rpc").await;
}

async fn the_python_sdk_evaluates_through_its_flagd_provider_in_process(backend: Backend) {
    python_provider(backend, "in-process").await;
}

async fn the_javascript_sdk_evaluates_through_its_flagd_and_ofrep_providers(backend: Backend) {
    let Some(dir) = node_project("openfeature-js") else {
        return;
    };
    // The JavaScript flagd provider sends no header: its calls act for `a`.
    let Some((server, _db)) = server_with(backend, |c: &mut Config| {
        c.auth.flagd_anonymous_tenant = Some("a".into());
    })
    .await
    else {
        return;
    };
    seed(&server).await;
    let config = sync_client(&server, ADMIN)
        .await
        .fetch_all_flags(with(sync::FetchAllFlagsRequest::default(), Some("a")))
        .await
        .unwrap()
        .into_inner()
        .flag_configuration;
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), config).unwrap();
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("providers.mjs"))
        .env("SWITCHYARD_URL", server.url())
        .env("SWITCHYARD_ADMIN", ADMIN)
        .env("SWITCHYARD_TENANT_TOKEN", tenant_token("a"))
        .env("FLAGD_CONFIG", file.path());
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("openfeature js: all checks passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn resolutions_answer_every_type_with_reason_variant_and_metadata(backend: Backend) {
    let Some((server, _db)) = server_on(backend).await else {
        return;
    };
    seed(&server).await;
    let a = tenant_token("a");
    let mut mine = v2_client(&server, &a).await;
    let r = boolean(&server, &a, "of-bool", None, json!({}))
        .await
        .unwrap();
    assert_eq!(
        (r.value, r.reason.as_str(), r.variant.as_deref()),
        (Some(true), "TARGETING_MATCH", Some("tenant"))
    );
    // The flag's metadata, and where an override's value comes from.
    let meta = to_json(&r.metadata.unwrap());
    assert_eq!(meta, json!({"source": "tenant"}));
    // A stored value is STATIC for a tenant token (its tenant is fixed).
    rest(
        &server,
        "PATCH",
        "/v1/flags/of-string?updateMask=storedValue",
        json!({"key": "of-string", "storedValue": "green"}),
    )
    .await;
    let s = string(&server, &a, "of-string", None, json!({}))
        .await
        .unwrap();
    assert_eq!(
        (s.value.as_deref(), s.reason.as_str(), s.variant.as_deref()),
        (Some("green"), "STATIC", Some("store"))
    );
    // Numbers: integer resolution only of an integral value.
    let i = mine
        .resolve_int(with(
            v2::ResolveIntRequest {
                flag_key: "of-int".into(),
                context: None,
            },
            None,
        ))
        .await
        .unwrap()
        .into_inner();
    // A flag without targeting is STATIC, as flagd answers.
    assert_eq!((i.value, i.reason.as_str()), (Some(3), "STATIC"));
    let f = mine
        .resolve_float(with(
            v2::ResolveFloatRequest {
                flag_key: "of-int".into(),
                context: None,
            },
            None,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(f.value, Some(3.0));
    let e = mine
        .resolve_int(with(
            v2::ResolveIntRequest {
                flag_key: "of-float".into(),
                context: None,
            },
            None,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("TYPE_MISMATCH"), "{e:?}");
    // Objects, and a list as {"items": [...]}.
    for (key, want) in [
        ("of-object", json!({"a": 1.0})),
        ("of-list", json!({"items": ["x", 2.0]})),
    ] {
        let o = mine
            .resolve_object(with(
                v2::ResolveObjectRequest {
                    flag_key: key.into(),
                    context: None,
                },
                None,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(to_json(&o.value.unwrap()), want, "{key}");
    }
    // Errors as providers map them: NOT_FOUND is FLAG_NOT_FOUND,
    // INVALID_ARGUMENT TYPE_MISMATCH.
    let missing = boolean(&server, &a, "of-missing", None, json!({}))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let mismatch = string(&server, &a, "of-bool", None, json!({}))
        .await
        .unwrap_err();
    assert_eq!(mismatch.code(), Code::InvalidArgument);

    // The tenant: another tenant's token, an admin's selector, an admin's
    // context (whose answers are never STATIC), a host resolved.
    let b = tenant_token("b");
    let r = boolean(&server, &b, "of-bool", None, json!({}))
        .await
        .unwrap();
    assert_eq!((r.value, r.reason.as_str()), (Some(false), "STATIC"));
    for (selector, ctx) in [
        (Some("a"), json!({})),
        (Some("flagSetId=a"), json!({"tenantId": "b"})),
        (None, json!({"tenantId": "a", "targetingKey": "u1"})),
        (None, json!({"host": "a.example"})),
    ] {
        let r = boolean(&server, ADMIN, "of-bool", selector, ctx.clone())
            .await
            .unwrap();
        assert_eq!(r.value, Some(true), "{selector:?} {ctx}");
    }
    let admin_string = string(&server, ADMIN, "of-string", None, json!({"tenantId": "a"}))
        .await
        .unwrap();
    // No tenant overrides of-string: every context gets the same answer, so
    // it is STATIC even for an admin; of-bool, which a overrides, is not.
    assert_eq!(admin_string.reason, "STATIC");
    let admin_bool = boolean(&server, ADMIN, "of-bool", None, json!({"tenantId": "b"}))
        .await
        .unwrap();
    assert_eq!(
        (admin_bool.value, admin_bool.reason.as_str()),
        (Some(false), "TARGETING_MATCH")
    );
    // Refusals: another tenant named by a tenant token, a selector of
    // another kind, a context naming no tenant, no token.
    for (token, selector, ctx, code) in [
        (b.clone(), Some("a"), json!({}), Code::PermissionDenied),
        (
            a.clone(),
            None,
            json!({"tenantId": "b"}),
            Code::PermissionDenied,
        ),
        (
            ADMIN.into(),
            Some("source=x.json"),
            json!({}),
            Code::InvalidArgument,
        ),
        (
            ADMIN.into(),
            None,
            json!({"tenantId": "nope"}),
            Code::InvalidArgument,
        ),
        (
            ADMIN.into(),
            None,
            json!({"tenantId": 3}),
            Code::InvalidArgument,
        ),
        (String::new(), None, json!({}), Code::Unauthenticated),
        (GATING.into(), None, json!({}), Code::PermissionDenied),
    ] {
        let e = boolean(&server, &token, "of-bool", selector, ctx.clone())
            .await
            .unwrap_err();
        assert_eq!(e.code(), code, "{selector:?} {ctx}: {e:?}");
    }

    // A request over the message limit (4 MiB): RESOURCE_EXHAUSTED.
    let e = v2_client(&server, ADMIN)
        .await
        .resolve_boolean(v2::ResolveBooleanRequest {
            flag_key: "of-bool".into(),
            context: context(json!({"blob": "x".repeat(5 * 1024 * 1024)})),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{:?}", e.message());

    // v1: the same answers with plain fields, and ResolveAll.
    let mut v1 = v1_client(&server, &a).await;
    let r = v1
        .resolve_boolean(v1::ResolveBooleanRequest {
            flag_key: "of-bool".into(),
            context: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.value, r.variant.as_str()), (true, "tenant"));
    let all = v1
        .resolve_all(v1::ResolveAllRequest { context: None })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.flags.len(), 6);
    assert_eq!(
        all.flags["of-bool"].value,
        Some(v1::any_flag::Value::BoolValue(true))
    );
    assert_eq!(
        all.flags["of-int"].value,
        Some(v1::any_flag::Value::DoubleValue(3.0))
    );
    assert_eq!(to_json(&all.metadata.unwrap())["tenantId"], "a");
}

/// The next event of a flagd event stream, within 10 s.
async fn next_event(
    s: &mut tonic::Streaming<v2::EventStreamResponse>,
) -> Result<(String, Json), tonic::Status> {
    let ev = tokio::time::timeout(Duration::from_secs(10), s.message())
        .await
        .expect("an event within 10 s")?
        .expect("the stream goes on");
    let data = ev.data.as_ref().map_or(Json::Null, to_json);
    Ok((ev.r#type, data))
}

async fn the_event_stream_names_the_changes_of_the_tenants_view_only(backend: Backend) {
    let Some((mut server, _db)) = server_with(backend, |c| c.watch.watch_heartbeat_s = 1).await
    else {
        return;
    };
    seed(&server).await;
    let mut s = v2_client(&server, &tenant_token("a"))
        .await
        .event_stream(v2::EventStreamRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next_event(&mut s).await.unwrap().0, "provider_ready");
    // Then every flag of the view (a reconnecting provider drops what it
    // held).
    let (kind, data) = next_event(&mut s).await.unwrap();
    assert_eq!(kind, "configuration_change");
    assert_eq!(data["flags"].as_object().unwrap().len(), 6, "{data}");
    // Another tenant's override is not this view's change; this tenant's
    // is, and so is a new flag and a deletion.
    rest(&server, "PUT", "/v1/tenants/b/flags/of-int", json!(9)).await;
    rest(
        &server,
        "PUT",
        "/v1/tenants/a/flags/of-string",
        json!("red"),
    )
    .await;
    let change = loop {
        let (kind, data) = next_event(&mut s).await.unwrap();
        match kind.as_str() {
            "keep_alive" => continue,
            "configuration_change" => break data,
            other => panic!("unexpected {other}"),
        }
    };
    assert_eq!(change, json!({"flags": {"of-string": {"type": "update"}}}));
    rest(
        &server,
        "POST",
        "/v1/flags",
        json!({"key": "of-new", "type": "FLAG_TYPE_BOOL", "defaultValue": true}),
    )
    .await;
    let r = http(&server, "DELETE", "/v1/flags/of-float", Some(ADMIN), None).await;
    assert_eq!(r.status, 200);
    let mut seen = serde_json::Map::new();
    while seen.len() < 2 {
        let (kind, data) = next_event(&mut s).await.unwrap();
        if kind == "configuration_change" {
            seen.extend(data["flags"].as_object().unwrap().clone());
        }
    }
    assert_eq!(
        Json::Object(seen),
        json!({"of-new": {"type": "write"}, "of-float": {"type": "delete"}})
    );
    // Heartbeats are keep-alives.
    loop {
        if next_event(&mut s).await.unwrap().0 == "keep_alive" {
            break;
        }
    }
    // Stopping ends the stream UNAVAILABLE: providers reconnect (the
    // JavaScript one would not notice an OK).
    server.signal_shutdown();
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(10), s.message())
            .await
            .expect("the stream ends within 10 s")
        {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the stream ended OK"),
            Err(e) => break e,
        }
    };
    assert_eq!(end.code(), Code::Unavailable, "{end:?}");
}

async fn sync_sends_the_tenants_whole_configuration_on_every_change(backend: Backend) {
    let Some((server, _db)) = server_on(backend).await else {
        return;
    };
    seed(&server).await;
    let parse = |c: &str| serde_json::from_str::<Json>(c).unwrap();
    // The selector, in the header (the deprecated field as well).
    let req = with(
        sync::SyncFlagsRequest {
            provider_id: "test".into(),
            ..Default::default()
        },
        Some("a"),
    );
    let mut s = sync_client(&server, ADMIN)
        .await
        .sync_flags(req)
        .await
        .unwrap()
        .into_inner();
    let first = s.message().await.unwrap().unwrap();
    let config = parse(&first.flag_configuration);
    assert_eq!(
        config["flags"]["of-bool"],
        json!({"state": "ENABLED", "variants": {"tenant": true}, "defaultVariant": "tenant",
               "metadata": {"source": "tenant"}, "targeting": {"if": [true, "tenant"]}})
    );
    assert_eq!(config["flags"]["of-int"]["variants"]["default"], json!(3));
    assert_eq!(
        config["flags"]["of-list"]["variants"]["default"],
        json!({"items": ["x", 2]})
    );
    // No flag-set metadata (a provider merges it into every flag's); the
    // tenant travels in the sync context, which in-process rules read.
    assert_eq!(config.get("metadata"), None);
    assert_eq!(
        to_json(&first.sync_context.unwrap()),
        json!({"tenantId": "a"})
    );
    // Another tenant's change sends nothing; this tenant's, the whole
    // configuration again.
    rest(&server, "PUT", "/v1/tenants/b/flags/of-int", json!(9)).await;
    rest(&server, "PUT", "/v1/tenants/a/flags/of-int", json!(10)).await;
    let next = tokio::time::timeout(Duration::from_secs(10), s.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let config = parse(&next.flag_configuration);
    assert_eq!(config["flags"]["of-int"]["variants"]["tenant"], json!(10));
    assert_eq!(config["flags"].as_object().unwrap().len(), 6);

    // FetchAllFlags with the deprecated field; GetMetadata always has
    // metadata (the Python provider fails without it).
    #[allow(deprecated)]
    let all = sync_client(&server, ADMIN)
        .await
        .fetch_all_flags(sync::FetchAllFlagsRequest {
            provider_id: String::new(),
            selector: "tenantId=b".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let config = parse(&all.flag_configuration);
    assert_eq!(config["flags"]["of-int"]["variants"]["tenant"], json!(9));
    assert_eq!(
        config["flags"]["of-bool"]["variants"]["default"],
        json!(false)
    );
    #[allow(deprecated)]
    let meta = sync_client(&server, &tenant_token("b"))
        .await
        .get_metadata(sync::GetMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(to_json(&meta.metadata.unwrap())["tenantId"], "b");
    // An unknown tenant or selector: INVALID_ARGUMENT, never a 5xx.
    for selector in ["nope", "source=x"] {
        let e = sync_client(&server, ADMIN)
            .await
            .sync_flags(with(sync::SyncFlagsRequest::default(), Some(selector)))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{selector}: {e:?}");
    }
}

/// `flagd_anonymous_tenant`: flagd calls without a token act as that tenant;
/// a wrong token is still refused, and so is everything else without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anonymous_flagd_tenant_serves_providers_that_send_no_header() {
    let Some((server, _db)) = server_with(Backend::Sqlite, |c: &mut Config| {
        c.auth.flagd_anonymous_tenant = Some("a".into());
    })
    .await
    else {
        return;
    };
    seed(&server).await;
    rest(
        &server,
        "PATCH",
        "/v1/flags/of-string?updateMask=storedValue",
        json!({"key": "of-string", "storedValue": "green"}),
    )
    .await;
    let r = boolean(&server, "", "of-bool", None, json!({}))
        .await
        .unwrap();
    assert_eq!(
        (r.value, r.reason.as_str()),
        (Some(true), "TARGETING_MATCH")
    );
    // As a tenant token: the tenant is fixed, a stored value STATIC (an
    // admin's would be TARGETING_MATCH).
    let r = string(&server, "", "of-string", None, json!({}))
        .await
        .unwrap();
    assert_eq!(
        (r.value.as_deref(), r.reason.as_str()),
        (Some("green"), "STATIC")
    );
    let e = boolean(&server, "", "of-bool", Some("b"), json!({}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = boolean(
        &server,
        "wrong-token-0123456789",
        "of-bool",
        None,
        json!({}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    // A header that is there but unreadable is a wrong token, not none.
    let mut req = Request::new(v2::ResolveBooleanRequest {
        flag_key: "of-bool".into(),
        context: None,
    });
    req.metadata_mut().insert(
        "authorization",
        tonic::metadata::MetadataValue::try_from(&b"Bearer \xff"[..]).unwrap(),
    );
    let e = v2_client(&server, "")
        .await
        .resolve_boolean(req)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    // Nothing but flagd's packages is served without a token.
    let e = server
        .flags("")
        .await
        .evaluate_flag(switchyard::api::v1::EvaluateFlagRequest {
            flag_key: "of-bool".into(),
            target: None,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let r = http(&server, "GET", "/v1/flags", None, None).await;
    assert_eq!(r.status, 401);
}

/// A whole view that does not fit in one message is refused with a reason,
/// not cut off by the transport.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_over_the_message_limit_is_refused_whole() {
    let Some((server, _db)) = server_with(Backend::Sqlite, |c: &mut Config| {
        c.listener.max_message_bytes = 4096;
    })
    .await
    else {
        return;
    };
    seed(&server).await;
    for i in 0..3 {
        rest(
            &server,
            "POST",
            "/v1/flags",
            json!({"key": format!("big-{i}"), "type": "FLAG_TYPE_STRING",
                   "defaultValue": "x".repeat(1500)}),
        )
        .await;
    }
    let e = sync_client(&server, ADMIN)
        .await
        .fetch_all_flags(sync::FetchAllFlagsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("max_message_bytes"), "{e:?}");
    let e = v1_client(&server, ADMIN)
        .await
        .resolve_all(v1::ResolveAllRequest { context: None })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    let mut s = sync_client(&server, ADMIN)
        .await
        .sync_flags(sync::SyncFlagsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let e = s.message().await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    // One flag at a time still works.
    let r = string(&server, ADMIN, "big-0", None, json!({}))
        .await
        .unwrap();
    assert_eq!(r.value.map(|v| v.len()), Some(1500));
}
