//! The REST shims as curl users meet them, on SQLite and PostgreSQL: the
//! `/admin/feature-flags` array, refusals, the watch as NDJSON, bare-array
//! paging, and the annotations and routes never drifting apart.

use std::collections::BTreeSet;

use crate::common::*;
use prost_reflect::DescriptorPool;
use serde_json::{Value as Json, json};
use switchyard::api::{google_api::HttpRule, google_api::http_rule::Pattern, v1::*};

on_both_backends!(
    admin_feature_flags_is_the_bare_array_with_each_value_and_its_source,
    refusals_have_precise_statuses_and_write_nothing,
    watch_streams_newline_delimited_json,
    the_bare_array_is_the_whole_collection_unless_a_page_is_asked_for,
    patch_changes_only_the_fields_it_sends,
    the_sse_watch_carries_revisions_as_ids_and_resumes_from_last_event_id,
);

const ADMIN_FLAGS: &str = "/admin/feature-flags";

async fn admin_feature_flags_is_the_bare_array_with_each_value_and_its_source(backend: Backend) {
    let Some((server, _db)) =
        server_with(backend, |c| with_env_flag(c, "kill-switch", "true")).await
    else {
        return;
    };
    let admin = Some(ADMIN);
    for id in ["a", "b"] {
        let r = http(
            &server,
            "POST",
            "/v1/tenants",
            admin,
            Some(json!({"id": id, "patterns": [format!("{id}.example")]})),
        )
        .await;
        assert_eq!(r.status, 200, "{:?}", r.json());
    }
    for (key, ty, default) in [
        ("banner", "FLAG_TYPE_STRING", json!("hello")),
        ("kill-switch", "FLAG_TYPE_BOOL", json!(false)),
        ("limit", "FLAG_TYPE_NUMBER", json!(10)),
        ("theme", "FLAG_TYPE_OBJECT", json!({"dark": true})),
    ] {
        let r = http(
            &server,
            "POST",
            "/v1/flags",
            admin,
            Some(json!({"key": key, "type": ty, "defaultValue": default})),
        )
        .await;
        assert_eq!(r.status, 200, "{:?}", r.json());
    }
    let r = http(
        &server,
        "PATCH",
        "/v1/flags/limit?updateMask=storedValue",
        admin,
        Some(json!({"storedValue": 20})),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let r = http(
        &server,
        "PUT",
        "/v1/tenants/a/flags/banner",
        admin,
        Some(json!("hi a")),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.json());

    // Without a token: 401, a google.rpc.Status body and a Bearer challenge.
    let r = http(&server, "GET", ADMIN_FLAGS, None, None).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert_eq!(
        r.json(),
        json!({"code": 16, "message": "missing bearer token", "details": []})
    );

    // A tenant token for another tenant: 403, whichever way the tenant is named.
    let b = tenant_token("b");
    let r = http(
        &server,
        "GET",
        &format!("{ADMIN_FLAGS}?tenant=a"),
        Some(&b),
        None,
    )
    .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["code"], 7);
    // The gating token reads no flags at all.
    let r = http(&server, "GET", ADMIN_FLAGS, Some(GATING), None).await;
    assert_eq!(r.status, 403);

    // The admin token: the bare array, defaults, stored values, tenant
    // overrides and env overrides alike.
    let r = http(
        &server,
        "GET",
        &format!("{ADMIN_FLAGS}?tenant=a"),
        admin,
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("x-next-page-token"), None);
    assert_eq!(
        r.json(),
        json!([
            {"flag": "banner", "value": "hi a", "source": "tenant", "variant": "tenant", "targeting": false},
            {"flag": "kill-switch", "value": true, "source": "env", "variant": "env", "targeting": false},
            {"flag": "limit", "value": 20, "source": "store", "variant": "store", "targeting": false},
            {"flag": "theme", "value": {"dark": true}, "source": "default", "variant": "default", "targeting": false},
        ])
    );
    // The exact bytes: no envelope, integral numbers without a fraction.
    assert_eq!(
        std::str::from_utf8(&r.body).unwrap(),
        r#"[{"flag":"banner","value":"hi a","source":"tenant","variant":"tenant","targeting":false},{"flag":"kill-switch","value":true,"source":"env","variant":"env","targeting":false},{"flag":"limit","value":20,"source":"store","variant":"store","targeting":false},{"flag":"theme","value":{"dark":true},"source":"default","variant":"default","targeting":false}]"#
    );
    // No tenant: nobody's override.
    let r = http(&server, "GET", ADMIN_FLAGS, admin, None).await;
    assert_eq!(
        r.json()[0],
        json!({"flag": "banner", "value": "hello", "source": "default", "variant": "default", "targeting": false})
    );
    // A tenant token lists its own tenant, named or not.
    let a = tenant_token("a");
    let own = http(
        &server,
        "GET",
        &format!("{ADMIN_FLAGS}?tenant=a"),
        Some(&a),
        None,
    )
    .await;
    let implied = http(&server, "GET", ADMIN_FLAGS, Some(&a), None).await;
    assert_eq!(own.status, 200);
    assert_eq!(own.json(), implied.json());
    assert_eq!(own.json()[0]["source"], "tenant");

    // The same data through gRPC ListFlags: one source of truth.
    let grpc = server
        .flags(ADMIN)
        .await
        .list_flags(ListFlagsRequest {
            tenant: "a".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let sources: Vec<&str> = grpc.flags.iter().map(|f| f.source.as_str()).collect();
    assert_eq!(sources, ["tenant", "env", "store", "default"]);
    server.shutdown().await.unwrap();
}

/// (method, path, (content type, body), HTTP status, gRPC code, text in the message)
type Refused = (
    &'static str,
    &'static str,
    Option<(&'static str, Vec<u8>)>,
    u16,
    i32,
    &'static str,
);

async fn refusals_have_precise_statuses_and_write_nothing(backend: Backend) {
    let Some((server, _db)) = server_on(backend).await else {
        return;
    };
    let admin = Some(ADMIN);
    let r = http(
        &server,
        "POST",
        "/v1/tenants",
        admin,
        Some(json!({"id": "a", "patterns": ["a.example"]})),
    )
    .await;
    assert_eq!(r.status, 200);
    let r = http(
        &server,
        "POST",
        "/v1/flags",
        admin,
        Some(json!({"key": "f", "type": "FLAG_TYPE_BOOL", "defaultValue": false})),
    )
    .await;
    assert_eq!(r.status, 200);
    let before = state(&server).await;

    let cases: Vec<Refused> = vec![
        // Routing.
        (
            "GET",
            "/v1/nothing",
            None,
            404,
            5,
            "no route for GET /v1/nothing",
        ),
        ("GET", "/v1/flags/f/extra", None, 404, 5, "no route"),
        ("POST", ADMIN_FLAGS, None, 405, 12, "allowed: GET, HEAD"),
        (
            "PUT",
            "/v1/flags/f",
            Some(("application/json", b"{}".to_vec())),
            405,
            12,
            "allowed: GET, HEAD, PATCH, DELETE",
        ),
        // Media type and size.
        (
            "POST",
            "/v1/flags",
            Some(("text/plain", b"{}".to_vec())),
            415,
            3,
            "must be application/json",
        ),
        (
            "POST",
            "/v1/flags",
            Some(("application/xml", b"<flag/>".to_vec())),
            415,
            3,
            "not application/xml",
        ),
        (
            "POST",
            "/v1/flags",
            Some(("application/json", vec![b' '; 4 * 1024 * 1024 + 1])),
            413,
            8,
            "exceeds 4194304 bytes",
        ),
        // Bodies.
        (
            "POST",
            "/v1/flags",
            Some(("application/json", b"{\"key\":".to_vec())),
            400,
            3,
            "not valid JSON",
        ),
        (
            "POST",
            "/v1/flags",
            Some(("application/json", Vec::new())),
            400,
            3,
            "a JSON body is required",
        ),
        (
            "POST",
            "/v1/flags",
            Some(("application/json", b"{\"key\":\"g\",\"tpye\":1}".to_vec())),
            400,
            3,
            "tpye",
        ),
        (
            "POST",
            "/v1/flags",
            Some((
                "application/json",
                b"{\"key\":\"g\",\"type\":\"FLAG_TYPE_BOGUS\",\"defaultValue\":1}".to_vec(),
            )),
            400,
            3,
            "type",
        ),
        // An unknown enum name lists the values.
        (
            "POST",
            "/v1/flags",
            Some((
                "application/json",
                b"{\"key\":\"g\",\"type\":\"bool\",\"defaultValue\":true}".to_vec(),
            )),
            400,
            3,
            "the values are FLAG_TYPE_BOOL, FLAG_TYPE_NUMBER, FLAG_TYPE_STRING, FLAG_TYPE_LIST, FLAG_TYPE_OBJECT",
        ),
        // A bare word where a JSON value goes: how to quote it.
        (
            "PUT",
            "/v1/tenants/a/flags/f",
            Some(("application/json", b"yes".to_vec())),
            400,
            3,
            "a string is quoted JSON: send \"yes\" (with the quotes)",
        ),
        (
            "POST",
            "/v1/flags",
            Some((
                "application/json",
                b"{\"key\":\"g\",\"type\":\"FLAG_TYPE_BOOL\",\"defaultValue\":\"yes\"}".to_vec(),
            )),
            400,
            3,
            "flag.default_value",
        ),
        (
            "GET",
            "/v1/flags/f",
            Some(("application/json", b"{\"x\":1}".to_vec())),
            400,
            3,
            "takes no body",
        ),
        (
            "PATCH",
            "/v1/tenants/a",
            Some((
                "application/json",
                b"{\"id\":\"b\",\"disabled\":true}".to_vec(),
            )),
            400,
            3,
            "tenant.id: the path says \"a\" but the body says \"b\"",
        ),
        (
            "POST",
            "/v1/gating/smoke:evaluate?x=1",
            Some(("application/json", b"{}".to_vec())),
            400,
            3,
            "query parameters are not accepted",
        ),
        // Query parameters.
        (
            "GET",
            "/v1/flags?tenent=a",
            None,
            400,
            3,
            "tenent: no such query parameter",
        ),
        ("GET", "/v1/flags?pageSize=ten", None, 400, 3, "page_size"),
        (
            "GET",
            "/v1/flags?pageSize=1&pageSize=2",
            None,
            400,
            3,
            "more than once",
        ),
        (
            "GET",
            "/v1/flags?view=FLAG_VIEW_BOGUS",
            None,
            400,
            3,
            "view",
        ),
        (
            "PATCH",
            "/v1/flags/f?flag.key=g",
            Some(("application/json", b"{}".to_vec())),
            400,
            3,
            "set by the path or the body",
        ),
        (
            "GET",
            "/v1/flags/f:evaluate?tenantId=a&resolveKey=a.example",
            None,
            400,
            3,
            "oneof",
        ),
        ("GET", "/v1/flags/%zz", None, 400, 3, "flag_key"),
        (
            "PATCH",
            "/v1/flags/f",
            Some(("application/json", b"{\"descripton\":\"x\"}".to_vec())),
            400,
            3,
            "flag.descripton: no such field",
        ),
        ("POST", "/openapi.json", None, 405, 12, "allowed: GET, HEAD"),
        // Rules enforced by the service, reached through the shim.
        ("DELETE", "/v1/tenants/nobody", None, 404, 5, "not found"),
        (
            "PUT",
            "/v1/tenants/a/flags/f",
            Some(("application/json", b"\"on\"".to_vec())),
            400,
            3,
            "bool",
        ),
        (
            "PATCH",
            "/v1/tenants/a?expectedRevision=99",
            Some(("application/json", b"{\"disabled\":true}".to_vec())),
            400,
            9,
            "not the expected 99",
        ),
        (
            "PATCH",
            "/v1/tenants/a",
            Some(("application/json", b"{}".to_vec())),
            400,
            3,
            "the body names no field to update",
        ),
    ];
    for (method, path, body, status, code, needle) in cases {
        let r = http_raw(&server, method, path, admin, body).await;
        let what = format!("{method} {path}");
        assert_eq!(
            r.status,
            status,
            "{what}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.header("content-type"), Some("application/json"), "{what}");
        let j = r.json();
        assert_eq!(j["code"], code, "{what}: {j}");
        assert_eq!(j["details"], json!([]), "{what}");
        let message = j["message"].as_str().unwrap();
        assert!(
            message.contains(needle),
            "{what}: {message:?} lacks {needle:?}"
        );
        assert!(
            !message.to_ascii_lowercase().contains("select "),
            "{what}: {message}"
        );
        if status == 405 {
            let allow = r.header("allow").unwrap_or_default();
            assert!(needle.ends_with(allow), "{what}: Allow {allow:?}");
        }
    }
    // The evaluate route's path belongs to it alone: OPTIONS lists its GET
    // and POST, not the methods of a flag named "f:evaluate".
    let r = http(&server, "OPTIONS", "/v1/flags/f:evaluate", admin, None).await;
    assert_eq!(
        (r.status, r.header("allow")),
        (405, Some("GET, HEAD, POST"))
    );
    // A URL over 8 KiB: 414.
    let long = format!("/v1/flags?tenant={}", "a".repeat(9000));
    let r = http(&server, "GET", &long, admin, None).await;
    assert_eq!(r.status, 414);
    assert_eq!(r.json()["code"], 3);
    // curl -d sends application/x-www-form-urlencoded; it is read as JSON.
    let r = http_raw(
        &server,
        "POST",
        "/v1/flags",
        admin,
        Some((
            "application/x-www-form-urlencoded",
            b"{\"key\":\"g\"}".to_vec(),
        )),
    )
    .await;
    assert_eq!(r.status, 400, "the body was read as JSON and validated");
    assert!(r.json()["message"].as_str().unwrap().contains("type"));

    assert_eq!(
        state(&server).await,
        before,
        "no refused request wrote anything"
    );
    server.shutdown().await.unwrap();
}

async fn patch_changes_only_the_fields_it_sends(backend: Backend) {
    let Some((server, _db)) = server_on(backend).await else {
        return;
    };
    let admin = Some(ADMIN);
    let r = http(
        &server,
        "POST",
        "/v1/tenants",
        admin,
        Some(json!({"id": "a", "displayName": "A", "patterns": ["a.example", "*.a.example"]})),
    )
    .await;
    assert_eq!(r.status, 200);
    // No updateMask: the body's fields are the mask (grpc-gateway's PATCH).
    let r = http(
        &server,
        "PATCH",
        "/v1/tenants/a",
        admin,
        Some(json!({"id": "a", "displayName": "Acme"})),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let t = r.json()["tenant"].clone();
    assert_eq!(t["displayName"], "Acme");
    assert_eq!(
        t["patterns"],
        json!(["a.example", "*.a.example"]),
        "untouched"
    );
    // An empty mask is no mask: still only what the body sends.
    let r = http(
        &server,
        "PATCH",
        "/v1/tenants/a?updateMask=",
        admin,
        Some(json!({"displayName": "Acme 2"})),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(
        r.json()["tenant"]["patterns"],
        json!(["a.example", "*.a.example"])
    );
    // An explicit mask wins: here it clears the display name the body omits.
    let r = http(
        &server,
        "PATCH",
        "/v1/tenants/a?updateMask=display_name,disabled",
        admin,
        Some(json!({"disabled": true})),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let t = r.json()["tenant"].clone();
    assert_eq!(
        (t["displayName"].clone(), t["disabled"].clone()),
        (json!(""), json!(true))
    );
    assert_eq!(t["patterns"], json!(["a.example", "*.a.example"]));
    // The same for flags: setting the stored value leaves the description.
    http(
        &server,
        "POST",
        "/v1/flags",
        admin,
        Some(
            json!({"key": "f", "type": "FLAG_TYPE_NUMBER", "description": "d", "defaultValue": 1}),
        ),
    )
    .await;
    let r = http(
        &server,
        "PATCH",
        "/v1/flags/f",
        admin,
        Some(json!({"storedValue": 2})),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(r.json()["flag"]["description"], "d");
    assert_eq!(r.json()["flag"]["storedValue"], 2);
    server.shutdown().await.unwrap();
}

/// Tenants and flags as the admin sees them, and the revision.
async fn state(server: &TestServer) -> (Json, Json) {
    let t = http(server, "GET", "/v1/tenants", Some(ADMIN), None)
        .await
        .json();
    let f = http(
        server,
        "GET",
        "/v1/flags?view=FLAG_VIEW_FULL&tenant=a",
        Some(ADMIN),
        None,
    )
    .await
    .json();
    (t, f)
}

/// The first server-sent event of `resp`: its `id` and the JSON of its `data`.
async fn first_event(resp: http::Response<hyper::body::Incoming>) -> (Option<String>, Json) {
    use http_body_util::BodyExt;
    let mut body = resp.into_body();
    let mut text = String::new();
    while !text.contains("\n\n") {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(10), body.frame())
            .await
            .expect("an event within 10 s")
            .expect("the stream goes on")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(std::str::from_utf8(&data).unwrap());
        }
    }
    let event = text.split("\n\n").next().unwrap();
    let field = |name: &str| {
        event
            .lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
    };
    let data = field("data:").expect("a data line");
    (field("id:"), serde_json::from_str(&data).unwrap())
}

async fn the_sse_watch_carries_revisions_as_ids_and_resumes_from_last_event_id(backend: Backend) {
    let Some((server, _db)) = server_on(backend).await else {
        return;
    };
    for (i, body) in [
        json!({"key": "sse", "type": "FLAG_TYPE_NUMBER", "defaultValue": 0}),
        json!({"storedValue": 1}),
        json!({"storedValue": 2}),
    ]
    .into_iter()
    .enumerate()
    {
        let (method, path) = if i == 0 {
            ("POST", "/v1/flags")
        } else {
            ("PATCH", "/v1/flags/sse")
        };
        assert_eq!(
            http(&server, method, path, Some(ADMIN), Some(body))
                .await
                .status,
            200
        );
    }
    let sse = |path: &'static str, last: Option<&'static str>| {
        let server = &server;
        async move {
            let mut headers = vec![("accept", "text/event-stream")];
            if let Some(l) = last {
                headers.push(("last-event-id", l));
            }
            http_send_with(server, "GET", path, Some(ADMIN), None, &headers).await
        }
    };
    // From the start: a SNAPSHOT whose id is its revision.
    let resp = sse("/v1/flags:watch", None).await;
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let (id, event) = first_event(resp).await;
    assert_eq!(event["type"], "FLAG_EVENT_TYPE_SNAPSHOT");
    assert_eq!(id.as_deref(), Some("3"), "{event}");
    assert_eq!(event["revision"], "3");
    // sinceRevision alone: the changes after it.
    let (id, event) = first_event(sse("/v1/flags:watch?sinceRevision=1", None).await).await;
    assert_eq!(
        (id.as_deref(), &event["type"]),
        (Some("2"), &json!("FLAG_EVENT_TYPE_UPSERT"))
    );
    // A reconnecting EventSource sends its URL again and the last id: the id wins.
    let (id, event) = first_event(sse("/v1/flags:watch?sinceRevision=1", Some("2")).await).await;
    assert_eq!(id.as_deref(), Some("3"), "{event}");
    assert_eq!(event["flag"]["value"], 2);
    // Not a revision: 400 before the stream starts.
    let r = http_raw_with(
        &server,
        "GET",
        "/v1/flags:watch",
        Some(ADMIN),
        None,
        &[
            ("accept", "text/event-stream"),
            ("last-event-id", "yesterday"),
        ],
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["code"], 3);
    // NDJSON is still the default, and what a client asking for both gets.
    let both = http_send_with(
        &server,
        "GET",
        "/v1/flags:watch",
        Some(ADMIN),
        None,
        &[("accept", "application/x-ndjson, text/event-stream")],
    )
    .await;
    assert_eq!(both.headers()["content-type"], "application/x-ndjson");
}

async fn watch_streams_newline_delimited_json(backend: Backend) {
    let Some((server, _db)) = server_on(backend).await else {
        return;
    };
    setup_tenants(&server, &["a", "b"]).await;
    let a = tenant_token("a");
    let resp = http_send(&server, "GET", "/v1/flags:watch", Some(&a), None).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "application/x-ndjson"
    );
    let mut lines = Lines::new(resp.into_body());
    let snapshot = lines.next().await;
    assert_eq!(
        snapshot["result"]["type"], "FLAG_EVENT_TYPE_SNAPSHOT",
        "{snapshot}"
    );
    assert_eq!(snapshot["result"]["flags"], json!([]));

    let r = http(
        &server,
        "POST",
        "/v1/flags",
        Some(ADMIN),
        Some(json!({"key": "f", "type": "FLAG_TYPE_NUMBER", "defaultValue": 1.5})),
    )
    .await;
    let created_at = r.json()["flag"]["revision"].clone();
    // b's override is not a's business; a's own is.
    http(
        &server,
        "PUT",
        "/v1/tenants/b/flags/f",
        Some(ADMIN),
        Some(json!(2)),
    )
    .await;
    let r = http(
        &server,
        "PUT",
        "/v1/tenants/a/flags/f",
        Some(ADMIN),
        Some(json!(3)),
    )
    .await;
    let a_rev = r.json()["revision"].clone();

    let upsert = lines.next().await;
    assert_eq!(upsert["result"]["type"], "FLAG_EVENT_TYPE_UPSERT");
    assert_eq!(
        upsert["result"]["revision"], created_at,
        "64-bit revisions are strings"
    );
    assert_eq!(
        upsert["result"]["flag"],
        json!({"flag": "f", "value": 1.5, "source": "default", "variant": "default", "targeting": false})
    );
    let commit_time = upsert["result"]["commitTime"].as_str().unwrap();
    assert!(commit_time.ends_with('Z'), "{commit_time}");
    let own = lines.next().await;
    assert_eq!(own["result"]["revision"], a_rev);
    assert_eq!(
        own["result"]["flag"],
        json!({"flag": "f", "value": 3, "source": "tenant", "variant": "tenant", "targeting": false})
    );

    // Resuming from a revision over REST replays what came after it.
    let resp = http_send(
        &server,
        "GET",
        &format!(
            "/v1/flags:watch?sinceRevision={}",
            created_at.as_str().unwrap()
        ),
        Some(&a),
        None,
    )
    .await;
    let mut resumed = Lines::new(resp.into_body());
    assert_eq!(resumed.next().await["result"]["revision"], a_rev);

    // A refusal before the stream starts is a plain status.
    let r = http(&server, "GET", "/v1/flags:watch?tenantId=b", Some(&a), None).await;
    assert_eq!(r.status, 403);
    server.shutdown().await.unwrap();
}

async fn the_bare_array_is_the_whole_collection_unless_a_page_is_asked_for(backend: Backend) {
    let Some((server, _db)) = server_on(backend).await else {
        return;
    };
    let mut flags = server.flags(ADMIN).await;
    for i in 0..250 {
        flags
            .create_flag(new_flag(
                &format!("f{i:03}"),
                FlagType::Number,
                v_num(f64::from(i)),
            ))
            .await
            .unwrap();
    }
    let all = http(&server, "GET", ADMIN_FLAGS, Some(ADMIN), None).await;
    assert_eq!(all.header("x-next-page-token"), None);
    let all = all.json();
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 250, "more than one page of ListFlags, all of it");
    assert_eq!(
        all[249],
        json!({"flag": "f249", "value": 249, "source": "default", "variant": "default", "targeting": false})
    );

    // Asking for a page: that page, and the next one's token in a header.
    let mut pages = Vec::new();
    let mut path = format!("{ADMIN_FLAGS}?pageSize=100");
    loop {
        let r = http(&server, "GET", &path, Some(ADMIN), None).await;
        assert_eq!(r.status, 200);
        let page = r.json();
        pages.extend(page.as_array().unwrap().iter().cloned());
        match r.header("x-next-page-token") {
            Some(token) => path = format!("{ADMIN_FLAGS}?pageSize=100&pageToken={token}"),
            None => break,
        }
        assert_eq!(page.as_array().unwrap().len(), 100);
    }
    assert_eq!(&pages, all);
    // pageSize=0 asks for a page of the default size for this route, 1000.
    let r = http(
        &server,
        "GET",
        &format!("{ADMIN_FLAGS}?pageSize=0"),
        Some(ADMIN),
        None,
    )
    .await;
    assert_eq!(
        (
            r.json().as_array().unwrap().len(),
            r.header("x-next-page-token")
        ),
        (250, None)
    );
    server.shutdown().await.unwrap();
}

/// The annotations in the descriptors, read independently of the server's
/// router: (HTTP method, path template, `Service/Method`).
fn annotated_bindings() -> (BTreeSet<(String, String, String)>, Vec<String>) {
    let pool = DescriptorPool::decode(switchyard::api::FILE_DESCRIPTOR_SET).unwrap();
    let ext = pool
        .get_extension_by_name("google.api.http")
        .expect("the descriptors carry the google.api.http option");
    let mut bindings = BTreeSet::new();
    let mut unannotated = Vec::new();
    for service in pool
        .services()
        .filter(|s| s.package_name() == "switchyard.v1")
    {
        for method in service.methods() {
            let rpc = format!("{}/{}", service.name(), method.name());
            let options = method.options();
            if !options.has_extension(&ext) {
                unannotated.push(rpc);
                continue;
            }
            let prost_reflect::Value::Message(m) = options.get_extension(&ext).into_owned() else {
                panic!("{rpc}: the option is not a message");
            };
            let rule: HttpRule = m.transcode_to().unwrap();
            for r in std::iter::once(&rule).chain(rule.additional_bindings.iter()) {
                let (verb, path) = match r.pattern.clone().expect("a pattern") {
                    Pattern::Get(p) => ("GET", p),
                    Pattern::Put(p) => ("PUT", p),
                    Pattern::Post(p) => ("POST", p),
                    Pattern::Delete(p) => ("DELETE", p),
                    Pattern::Patch(p) => ("PATCH", p),
                    Pattern::Custom(c) => panic!("{rpc}: custom method {}", c.kind),
                };
                bindings.insert((verb.to_owned(), path, rpc.clone()));
            }
        }
    }
    (bindings, unannotated)
}

/// Fails when an annotated RPC has no route, or a route (or a documented
/// path) has no annotation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_annotated_rpc_has_a_route_and_every_route_an_annotation() {
    let (expected, unannotated) = annotated_bindings();
    assert!(
        unannotated.is_empty(),
        "RPCs without a google.api.http annotation: {unannotated:?}"
    );
    assert!(expected.contains(&(
        "GET".into(),
        ADMIN_FLAGS.into(),
        "FlagService/ListFlags".into()
    )));

    // The router's table holds exactly the annotated bindings.
    let table = switchyard::rest::route_table().unwrap();
    let routed: BTreeSet<(String, String, String)> = table
        .routes()
        .iter()
        .map(|r| {
            (
                r.method.to_string(),
                r.template.to_string(),
                format!("{}/{}", r.rpc.parent_service().name(), r.rpc.name()),
            )
        })
        .collect();
    assert_eq!(routed, expected, "routes and annotations differ");

    let Some((server, _db)) = server_on(Backend::Sqlite).await else {
        return;
    };
    // The served OpenAPI document describes exactly the annotated bindings.
    let doc = http(&server, "GET", "/openapi.json", None, None)
        .await
        .json();
    let mut documented = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            // OFREP's routes are not bindings of the API's RPCs.
            let Some(rpc) = op["x-grpc-method"].as_str() else {
                assert!(path.starts_with("/ofrep/"), "{path} names no RPC");
                continue;
            };
            let rpc = rpc.trim_start_matches("switchyard.v1.");
            let id = op["operationId"].as_str().unwrap();
            assert!(
                rpc.ends_with(&format!("/{id}")) || id.starts_with(rpc.split('/').nth(1).unwrap()),
                "{id} names {rpc}"
            );
            documented.insert((method.to_ascii_uppercase(), path.clone(), rpc.to_owned()));
        }
    }
    let expected_doc: BTreeSet<(String, String, String)> = expected
        .iter()
        .map(|(m, p, rpc)| {
            let t = switchyard::api::template::Template::parse(p).unwrap();
            (m.clone(), t.openapi_path(), rpc.clone())
        })
        .collect();
    assert_eq!(
        documented, expected_doc,
        "the OpenAPI document and the annotations differ"
    );

    // Every binding reaches its RPC on the live server: the answer comes from
    // the service (a validation error, NOT_FOUND for the probe, UNIMPLEMENTED
    // for gating), never from the router.
    for (method, path, rpc) in &expected {
        let concrete = path
            .split('/')
            .map(|s| match s.find('{') {
                Some(i) => {
                    let close = s.find('}').unwrap();
                    format!("{}probe{}", &s[..i], &s[close + 1..])
                }
                None => s.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("/");
        let body = matches!(method.as_str(), "POST" | "PUT" | "PATCH").then(|| json!({}));
        let what = format!("{method} {concrete} ({rpc})");
        // The streams (an empty export is an empty body).
        if rpc == "FlagService/WatchFlags" || rpc == "AuditService/ExportChanges" {
            let body = body.map(|b| ("application/json", b.to_string().into_bytes()));
            let resp = http_send(&server, method, &concrete, Some(ADMIN), body).await;
            assert_eq!(resp.status(), 200, "{what}");
            continue;
        }
        let r = http(&server, method, &concrete, Some(ADMIN), body).await;
        let j = r.json();
        assert_ne!(r.status, 405, "{what}: {j}");
        assert!(
            !j["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with("no route"),
            "{what}: {j}"
        );
        assert_ne!(r.status, 501, "every RPC is served: {what}: {j}");
    }
    server.shutdown().await.unwrap();
}
