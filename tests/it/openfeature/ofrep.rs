//! OFREP, the OpenFeature Remote Evaluation Protocol, as OpenFeature's
//! providers call it: OpenFeature's Python SDK with its OFREP provider
//! evaluates every type with the right value and reason, sees a tenant's
//! override only with that tenant's token, gets the code default with
//! FLAG_NOT_FOUND and TYPE_MISMATCH, and sees a write at its next evaluation
//! (`tests/openfeature/ofrep_python.py`, packages pinned in
//! `tests/openfeature/requirements.txt`, installed into
//! `tests/openfeature/.venv` on first use). Then the protocol's shapes: the
//! bulk answer's ETag follows the tenant's own view, 304, X-API-Key, the
//! error bodies, and the bulk answer's SSE event stream (OFREP ADR-0008):
//! a `refetchEvaluation` for each change of the tenant's view and none for
//! another's, resumed with `Last-Event-ID`.

use std::process::Command;

use crate::common::*;
use serde_json::{Value as Json, json};

on_both_backends!(
    the_python_sdk_evaluates_through_its_ofrep_provider,
    bulk_etags_follow_the_tenants_own_view,
    bad_input_gets_the_protocols_error_shapes,
    the_bulk_answers_event_stream_pushes_each_change_of_the_view,
);

async fn seed(server: &TestServer) {
    seed_openfeature_flags(server).await;
}

async fn the_python_sdk_evaluates_through_its_ofrep_provider(backend: Backend) {
    let Some(py) = python_project("openfeature") else {
        return;
    };
    let Some((server, _db)) = server_on(backend).await else {
        return;
    };
    seed(&server).await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/openfeature/ofrep_python.py"
    );
    let url = server.url();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(py)
            .arg(script)
            .arg(url)
            .arg(ADMIN)
            .arg(tenant_token("a"))
            .arg(tenant_token("b"))
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("ofrep python: all checks passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn bulk(server: &TestServer, token: &str, context: Json, etag: Option<&str>) -> HttpReply {
    let mut headers = vec![];
    if let Some(e) = etag {
        headers.push(("if-none-match", e));
    }
    http_raw_with(
        server,
        "POST",
        "/ofrep/v1/evaluate/flags",
        Some(token),
        Some((
            "application/json",
            json!({"context": context}).to_string().into_bytes(),
        )),
        &headers,
    )
    .await
}

async fn bulk_etags_follow_the_tenants_own_view(backend: Backend) {
    let Some((server, _db)) = server_on(backend).await else {
        return;
    };
    seed(&server).await;
    let a = tenant_token("a");
    let first = bulk(&server, &a, json!({}), None).await;
    assert_eq!(first.status, 200);
    let flags = first.json()["flags"].as_array().unwrap().clone();
    assert_eq!(flags.len(), 6);
    let of_bool = flags.iter().find(|f| f["key"] == "of-bool").unwrap();
    assert_eq!(of_bool["value"], true);
    assert_eq!(of_bool["reason"], "TARGETING_MATCH");
    let etag = first.header("etag").unwrap().to_owned();
    // Unchanged: 304 with no body.
    let again = bulk(&server, &a, json!({}), Some(&etag)).await;
    assert_eq!((again.status, again.body.len()), (304, 0));
    // An admin naming the tenant sees the same values under another tag:
    // its contexts choose the tenant, so a stored value is not STATIC to it.
    let admin = bulk(&server, ADMIN, json!({"tenantId": "a"}), Some(&etag)).await;
    assert_eq!(admin.status, 200);
    let admin_etag = admin.header("etag").unwrap().to_owned();
    assert_ne!(admin_etag, etag);
    let again = bulk(&server, ADMIN, json!({"tenantId": "a"}), Some(&admin_etag)).await;
    assert_eq!(again.status, 304);
    // A write for another tenant leaves this view (and its tag) alone.
    let r = http(
        &server,
        "PUT",
        "/v1/tenants/b/flags/of-int",
        Some(ADMIN),
        Some(json!(4)),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(bulk(&server, &a, json!({}), Some(&etag)).await.status, 304);
    // A write this view shows: a new tag, and the new value.
    let r = http(
        &server,
        "PUT",
        "/v1/tenants/a/flags/of-int",
        Some(ADMIN),
        Some(json!(5)),
    )
    .await;
    assert_eq!(r.status, 200);
    let changed = bulk(&server, &a, json!({}), Some(&etag)).await;
    assert_eq!(changed.status, 200);
    assert_ne!(changed.header("etag"), Some(etag.as_str()));
    let of_int = changed.json()["flags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["key"] == "of-int")
        .unwrap()
        .clone();
    assert_eq!(of_int["value"], 5, "{of_int}");
    assert_eq!(of_int["variant"], "tenant");
    // X-API-Key works like a bearer token.
    let r = http_raw_with(
        &server,
        "POST",
        "/ofrep/v1/evaluate/flags/of-bool",
        None,
        Some(("application/json", b"{}".to_vec())),
        &[("x-api-key", a.as_str())],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["value"], true);
}

async fn bad_input_gets_the_protocols_error_shapes(backend: Backend) {
    let Some((server, _db)) = server_on(backend).await else {
        return;
    };
    seed(&server).await;
    let one = |token: Option<&'static str>, body: Vec<u8>| {
        let server = &server;
        async move {
            http_raw(
                server,
                "POST",
                "/ofrep/v1/evaluate/flags/of-bool",
                token,
                Some(("application/json", body)),
            )
            .await
        }
    };
    for (body, status, code) in [
        (b"{not json".to_vec(), 400, "PARSE_ERROR"),
        (b"[1, 2]".to_vec(), 400, "INVALID_CONTEXT"),
        (br#"{"context": "x"}"#.to_vec(), 400, "INVALID_CONTEXT"),
        (
            br#"{"context": {"tenantId": 5}}"#.to_vec(),
            400,
            "INVALID_CONTEXT",
        ),
        (
            br#"{"context": {"tenantId": "nope"}}"#.to_vec(),
            400,
            "INVALID_CONTEXT",
        ),
        (vec![b' '; 70 * 1024], 413, "GENERAL"),
    ] {
        let r = one(Some(ADMIN), body).await;
        assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
        let j = r.json();
        assert_eq!(
            (j["key"].as_str(), j["errorCode"].as_str()),
            (Some("of-bool"), Some(code)),
            "{j}"
        );
        assert!(
            j["errorDetails"].as_str().is_some_and(|d| !d.is_empty()),
            "{j}"
        );
    }
    // No context at all, or an empty body: values without overrides.
    for body in [b"{}".to_vec(), Vec::new()] {
        let r = one(Some(ADMIN), body).await;
        assert_eq!(r.status, 200);
        // Not STATIC: tenant a overrides the flag, and another context of
        // the admin's could name it.
        assert_eq!(
            (&r.json()["value"], &r.json()["reason"]),
            (&json!(false), &json!("TARGETING_MATCH"))
        );
    }
    let missing = http(
        &server,
        "POST",
        "/ofrep/v1/evaluate/flags/nope",
        Some(ADMIN),
        Some(json!({})),
    )
    .await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["errorCode"], "FLAG_NOT_FOUND");
    // 401 and 403 without a body.
    let r = one(Some("wrong-token-0123456789"), b"{}".to_vec()).await;
    assert_eq!((r.status, r.body.len()), (401, 0));
    let r = one(None, b"{}".to_vec()).await;
    assert_eq!((r.status, r.body.len()), (401, 0));
    let token = tenant_token("a");
    let r = http(
        &server,
        "POST",
        "/ofrep/v1/evaluate/flags",
        Some(&token),
        Some(json!({"context": {"tenantId": "b"}})),
    )
    .await;
    assert_eq!((r.status, r.body.len()), (403, 0));
    let r = http_raw_with(
        &server,
        "POST",
        "/ofrep/v1/evaluate/flags/of-bool",
        Some(GATING),
        None,
        &[],
    )
    .await;
    assert_eq!((r.status, r.body.len()), (403, 0));
}

/// Reads server-sent events from a streaming body.
struct Events {
    body: hyper::body::Incoming,
    buf: String,
}

impl Events {
    /// The next block (up to a blank line), within 10 s.
    async fn block(&mut self) -> String {
        use http_body_util::BodyExt;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                return self.buf.drain(..end + 2).collect();
            }
            let frame = tokio::time::timeout(std::time::Duration::from_secs(10), self.body.frame())
                .await
                .expect("a block within 10 s")
                .expect("the stream continues")
                .expect("a frame");
            if let Ok(data) = frame.into_data() {
                self.buf
                    .push_str(std::str::from_utf8(&data).expect("UTF-8"));
            }
        }
    }

    /// The id of the next keep-alive (a block with no data).
    async fn keep_alive_id(&mut self) -> i64 {
        loop {
            let block = self.block().await;
            if block.lines().any(|l| l.starts_with(": keep-alive")) {
                let id = block.lines().find_map(|l| l.strip_prefix("id: "));
                return id.expect("an id").trim().parse().expect("a revision");
            }
        }
    }

    /// The next event with data (comments skipped): its id and its data as
    /// JSON, within 10 s.
    async fn next(&mut self) -> (i64, Json) {
        loop {
            let block = self.block().await;
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(name).map(str::trim).map(str::to_owned))
            };
            if let Some(data) = field("data:") {
                assert_eq!(field("event:").as_deref(), Some("message"), "{block}");
                let id = field("id:").expect("an id").parse().expect("a revision");
                return (id, serde_json::from_str(&data).expect("JSON data"));
            }
        }
    }
}

async fn events(server: &TestServer, uri: &str, token: &str, last: Option<&str>) -> Events {
    let mut headers = vec![("x-api-key", token), ("accept", "text/event-stream")];
    if let Some(l) = last {
        headers.push(("last-event-id", l));
    }
    let resp = http_send_with(server, "GET", uri, None, None, &headers).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    Events {
        body: resp.into_body(),
        buf: String::new(),
    }
}

async fn the_bulk_answers_event_stream_pushes_each_change_of_the_view(backend: Backend) {
    let Some((server, _db)) = server_with(backend, |c| c.watch.watch_heartbeat_s = 1).await else {
        return;
    };
    seed(&server).await;
    let a = tenant_token("a");
    let put = |tenant: &'static str, value: i64| {
        let server = &server;
        async move {
            let path = format!("/v1/tenants/{tenant}/flags/of-int");
            let r = http(server, "PUT", &path, Some(ADMIN), Some(json!(value))).await;
            assert_eq!(r.status, 200);
            r.json()["revision"]
                .as_str()
                .unwrap()
                .parse::<i64>()
                .unwrap()
        }
    };
    let first = bulk(&server, &a, json!({}), None).await;
    let etag = first.header("etag").unwrap().to_owned();
    let shown: i64 = etag
        .trim_matches('"')
        .split('-')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let streams = first.json()["eventStreams"].clone();
    let uri = format!("/ofrep/v1/events?tenantId=a&since={shown}");
    assert_eq!(
        streams,
        json!([{"type": "sse", "endpoint": {"requestUri": uri}, "inactivityDelaySec": 120}])
    );
    // A change between the bulk answer and the stream is announced when the
    // stream opens; then each change of this view, none of another's, each
    // with the tag the next bulk answer has.
    let between = put("a", 8).await;
    let mut stream = events(&server, &uri, &a, None).await;
    let (id, data) = stream.next().await;
    assert!(id >= between, "{id} < {between}");
    assert_eq!(data["type"], "refetchEvaluation");
    put("b", 8).await;
    let mine = put("a", 9).await;
    let (id, data) = stream.next().await;
    assert_eq!(id, mine);
    let refetched = http_raw_with(
        &server,
        "POST",
        &format!(
            "/ofrep/v1/evaluate/flags?flagConfigEtag={}",
            form_urlencoded::byte_serialize(data["etag"].as_str().unwrap().as_bytes())
                .collect::<String>()
        ),
        Some(&a),
        Some(("application/json", b"{}".to_vec())),
        &[],
    )
    .await;
    assert_eq!(refetched.status, 200);
    assert_eq!(refetched.header("etag"), data["etag"].as_str());
    assert!(
        data["lastModified"].as_i64().unwrap() > 1_700_000_000,
        "{data}"
    );
    // Keep-alives carry an id too, so a client always has a Last-Event-ID.
    let kept = stream.keep_alive_id().await;
    assert!(kept >= mine, "{kept} < {mine}");
    // Away, then back with Last-Event-ID: a change missed meanwhile is
    // announced at once; nothing missed, nothing announced (the next event
    // is the next change's).
    drop(stream);
    let missed = put("a", 10).await;
    let mut stream = events(&server, &uri, &a, Some(&mine.to_string())).await;
    assert!(stream.next().await.0 >= missed);
    drop(stream);
    let mut stream = events(&server, &uri, &a, Some(&missed.to_string())).await;
    let next = put("a", 11).await;
    assert_eq!(stream.next().await.0, next);
    // A revision this server never reached (a restored database): refetch.
    let mut stream = events(&server, &uri, &a, Some("99999999")).await;
    assert!(stream.next().await.0 >= next);
    // Refusals: a bad Last-Event-ID, another tenant's stream, no token.
    let r = http_raw_with(
        &server,
        "GET",
        &uri,
        None,
        None,
        &[("x-api-key", a.as_str()), ("last-event-id", "later")],
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["errorCode"], "PARSE_ERROR");
    let r = http_raw_with(
        &server,
        "GET",
        "/ofrep/v1/events?tenantId=b",
        Some(&a),
        None,
        &[],
    )
    .await;
    assert_eq!((r.status, r.body.len()), (403, 0));
    let r = http_raw_with(&server, "GET", &uri, None, None, &[]).await;
    assert_eq!((r.status, r.body.len()), (401, 0));
}
