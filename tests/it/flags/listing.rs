//! Listings answered by version, on SQLite and PostgreSQL: every answer of
//! `ListFlags` and `/admin/feature-flags` carries an entity tag of the
//! tenant's view; the tag held is answered with 304 (REST) or `not_modified`
//! (gRPC) for as long as the view is unchanged, whatever else changes; and
//! answers served again from the replica's encoded-answer cache are never
//! another view's.

use crate::common::*;
use serde_json::json;
use switchyard::api::v1::*;

on_both_backends!(
    rest_listings_carry_the_view_tag_and_answer_304_until_the_view_changes,
    grpc_list_flags_answers_not_modified_for_the_current_tag,
    cached_answers_are_never_another_views,
);

const ADMIN_FLAGS: &str = "/admin/feature-flags";

async fn get(
    server: &TestServer,
    path: &str,
    token: &str,
    if_none_match: Option<&str>,
) -> HttpReply {
    let headers: Vec<(&str, &str)> = if_none_match
        .map(|t| vec![("if-none-match", t)])
        .unwrap_or_default();
    http_raw_with(server, "GET", path, Some(token), None, &headers).await
}

fn etag(r: &HttpReply) -> String {
    r.header("etag")
        .unwrap_or_else(|| panic!("no ETag on {} {:?}", r.status, r.headers))
        .to_owned()
}

async fn rest_listings_carry_the_view_tag_and_answer_304_until_the_view_changes(backend: Backend) {
    let Some((server, _db)) = server_on(backend).await else {
        return;
    };
    setup_tenants(&server, &["a", "b"]).await;
    let admin = server.client(ADMIN).await;
    create_bool_flag(&admin, "beta", false).await;
    create_bool_flag(&admin, "dark", false).await;
    let path_a = format!("{ADMIN_FLAGS}?tenant=a");

    let first = get(&server, &path_a, ADMIN, None).await;
    assert_eq!(first.status, 200);
    let tag_a = etag(&first);
    assert!(
        tag_a.starts_with('"') && tag_a.ends_with('"'),
        "a strong tag, quoted: {tag_a}"
    );

    // The tag held: 304, no body, the same tag.
    let again = get(&server, &path_a, ADMIN, Some(&tag_a)).await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty(), "{:?}", again.body);
    assert_eq!(etag(&again), tag_a);
    // HTTP's list form and `*` too; a weak form of the tag compares equal.
    for header in [
        format!("\"other\", {tag_a}"),
        "*".to_owned(),
        format!("W/{tag_a}"),
    ] {
        let r = get(&server, &path_a, ADMIN, Some(&header)).await;
        assert_eq!(r.status, 304, "If-None-Match: {header}");
    }
    let stale = get(&server, &path_a, ADMIN, Some("\"1-0000000000000000\"")).await;
    assert_eq!(stale.status, 200);
    assert_eq!(stale.body, first.body);

    // Views have their own tags.
    let b = get(&server, &format!("{ADMIN_FLAGS}?tenant=b"), ADMIN, None).await;
    let none = get(&server, ADMIN_FLAGS, ADMIN, None).await;
    assert_ne!(etag(&b), tag_a);
    assert_ne!(etag(&none), tag_a);
    assert_ne!(etag(&none), etag(&b));
    let tag_b = etag(&b);

    // Another tenant's override leaves a's view, and its tag, as they were.
    set_override(&server, "b", "beta", v_bool(true)).await;
    let r = get(&server, &path_a, ADMIN, Some(&tag_a)).await;
    assert_eq!(r.status, 304, "b's override does not change a's view");
    let r = get(
        &server,
        &format!("{ADMIN_FLAGS}?tenant=b"),
        ADMIN,
        Some(&tag_b),
    )
    .await;
    assert_eq!(r.status, 200, "b's own view changed");
    assert_ne!(etag(&r), tag_b);
    assert!(
        r.json()
            .as_array()
            .unwrap()
            .contains(&json!({"flag": "beta", "value": true, "source": "tenant", "variant": "tenant", "targeting": false})),
        "{}",
        r.json()
    );

    // a's own override changes its view: a new tag and the new value.
    set_override(&server, "a", "dark", v_bool(true)).await;
    let r = get(&server, &path_a, ADMIN, Some(&tag_a)).await;
    assert_eq!(r.status, 200);
    let tag_a2 = etag(&r);
    assert_ne!(tag_a2, tag_a);
    assert!(
        r.json()
            .as_array()
            .unwrap()
            .contains(&json!({"flag": "dark", "value": true, "source": "tenant", "variant": "tenant", "targeting": false})),
        "{}",
        r.json()
    );

    // A flag change changes every view.
    let none_tag = etag(&none);
    create_bool_flag(&admin, "gamma", true).await;
    for (path, tag) in [(path_a.as_str(), &tag_a2), (ADMIN_FLAGS, &none_tag)] {
        let r = get(&server, path, ADMIN, Some(tag)).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.json().as_array().unwrap().len(), 3, "{path}");
    }

    // The resource with the message around the array carries the same tag
    // in its body and its header.
    let r = get(&server, "/v1/flags?tenant=a", ADMIN, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["etag"], json!(etag(&r)));
    let again = get(&server, "/v1/flags?tenant=a", ADMIN, Some(&etag(&r))).await;
    assert_eq!(again.status, 304);

    // A refusal is a refusal whatever the caller holds.
    let r = get(
        &server,
        "/admin/feature-flags?tenant=nobody",
        ADMIN,
        Some("*"),
    )
    .await;
    assert_eq!(r.status, 404);
    let r = get(&server, &path_a, &tenant_token("b"), Some(&tag_a2)).await;
    assert_eq!(r.status, 403);
}

async fn grpc_list_flags_answers_not_modified_for_the_current_tag(backend: Backend) {
    let Some((server, _db)) = server_on(backend).await else {
        return;
    };
    setup_tenants(&server, &["a", "b"]).await;
    let admin = server.client(ADMIN).await;
    create_bool_flag(&admin, "beta", false).await;
    let mut flags = admin.flags();
    let list = |if_none_match: &str| ListFlagsRequest {
        tenant: "a".into(),
        if_none_match: if_none_match.into(),
        ..Default::default()
    };
    let first = flags.list_flags(list("")).await.unwrap().into_inner();
    assert!(!first.not_modified);
    assert_eq!(first.flags.len(), 1);
    assert!(!first.etag.is_empty());
    let created_at = first.revision;

    let same = flags
        .list_flags(list(&first.etag))
        .await
        .unwrap()
        .into_inner();
    assert!(same.not_modified);
    assert!(same.flags.is_empty(), "{same:?}");
    assert_eq!(
        (same.etag.as_str(), same.revision),
        (first.etag.as_str(), created_at)
    );

    // The revision is that of the view's last change: b's override moves
    // the global revision, not a's view.
    let b_rev = set_override(&server, "b", "beta", v_bool(true)).await;
    assert!(b_rev > created_at);
    let after = flags.list_flags(list("")).await.unwrap().into_inner();
    assert_eq!(
        (after.revision, after.etag.as_str()),
        (created_at, first.etag.as_str())
    );
    let a_rev = set_override(&server, "a", "beta", v_bool(true)).await;
    let changed = flags
        .list_flags(list(&first.etag))
        .await
        .unwrap()
        .into_inner();
    assert!(!changed.not_modified);
    assert_eq!(changed.revision, a_rev);
    assert_ne!(changed.etag, first.etag);
    assert_eq!(changed.flags[0].source, "tenant");
}

/// The same request from callers who see different views (an admin without
/// a tenant, each tenant's own token) is answered for each caller's view,
/// however often it is repeated and in whatever order: the cache is keyed by
/// the view, not by the request's bytes.
async fn cached_answers_are_never_another_views(backend: Backend) {
    let Some((server, _db)) = server_on(backend).await else {
        return;
    };
    setup_tenants(&server, &["a", "b"]).await;
    let admin = server.client(ADMIN).await;
    create_bool_flag(&admin, "beta", false).await;
    set_override(&server, "a", "beta", v_bool(true)).await;
    let callers = [
        (ADMIN.to_owned(), "default", false),
        (tenant_token("a"), "tenant", true),
        (tenant_token("b"), "default", false),
    ];
    for round in 0..3 {
        for (token, source, value) in &callers {
            // gRPC: the same request bytes from each caller.
            let r = server
                .flags(token)
                .await
                .list_flags(ListFlagsRequest::default())
                .await
                .unwrap()
                .into_inner();
            let v = r.flags[0].value.clone().unwrap();
            assert_eq!(
                (r.flags[0].source.as_str(), v),
                (*source, v_bool(*value)),
                "gRPC, round {round}"
            );
            // REST: the same URL.
            let r = get(&server, ADMIN_FLAGS, token, None).await;
            assert_eq!(
                r.json(),
                json!([{"flag": "beta", "value": value, "source": source, "variant": source, "targeting": false}]),
                "REST, round {round}"
            );
        }
    }
    // Each caller's tag is its own: one's tag is no 304 for another.
    let a = get(&server, ADMIN_FLAGS, &tenant_token("a"), None).await;
    let r = get(&server, ADMIN_FLAGS, &tenant_token("b"), Some(&etag(&a))).await;
    assert_eq!(r.status, 200);
}
