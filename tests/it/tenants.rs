//! TenantService as its users meet it, on SQLite and on PostgreSQL (+ Redis for
//! the replica tests).

use std::time::Duration;

use crate::common::*;
use switchyard::api::v1::*;
use tonic::Code;

on_both_backends!(
    patterns_resolve_with_the_documented_precedence,
    crud_with_paging_and_revisions,
    bad_input_is_refused_precisely_and_loses_nothing,
    tenants_are_isolated,
    tenant_tokens_cannot_cross_tenants,
    the_mapping_survives_a_restart,
    replicas_without_a_shared_bus_converge_by_polling,
    a_long_run_of_writes_resolves_as_a_full_rebuild_would,
    deleting_a_tenant_says_how_many_overrides_went_with_it,
);

/// DeleteTenant answers its revision and how many of the tenant's overrides
/// were deleted with it; the other tenant's stay.
async fn deleting_a_tenant_says_how_many_overrides_went_with_it(backend: Backend) {
    let Some((server, _db)) = server_on(backend).await else {
        return;
    };
    setup_tenants(&server, &["a", "b"]).await;
    let client = server.client(ADMIN).await;
    for key in ["f1", "f2", "f3"] {
        create_bool_flag(&client, key, false).await;
    }
    set_override(&server, "a", "f1", v_bool(true)).await;
    set_override(&server, "a", "f2", v_bool(true)).await;
    let last = set_override(&server, "b", "f1", v_bool(true)).await;
    let mut t = server.tenants(ADMIN).await;
    let r = t
        .delete_tenant(DeleteTenantRequest {
            tenant_id: "a".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.deleted_overrides, r.revision), (2, last + 1));
    let r = t
        .delete_tenant(DeleteTenantRequest {
            tenant_id: "b".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.deleted_overrides, 1);
}

fn tenant(id: &str, patterns: &[&str]) -> CreateTenantRequest {
    CreateTenantRequest {
        tenant: Some(Tenant {
            id: id.into(),
            display_name: format!("Tenant {id}"),
            patterns: patterns.iter().map(|p| p.to_string()).collect(),
            ..Default::default()
        }),
    }
}

async fn resolve(
    server: &TestServer,
    token: &str,
    key: &str,
) -> Result<ResolveTenantResponse, tonic::Status> {
    server
        .tenants(token)
        .await
        .resolve_tenant(ResolveTenantRequest { key: key.into() })
        .await
        .map(|r| r.into_inner())
}

async fn patterns_resolve_with_the_documented_precedence(backend: Backend) {
    let Some((server, _db)) = server_on(backend).await else {
        return;
    };
    let mut admin = server.tenants(ADMIN).await;
    for t in [
        tenant("exact", &["api.acme.example"]),
        tenant("eu", &["*.eu.acme.example"]),
        tenant("acme", &["*.acme.example"]),
        tenant("acme-eu-any", &["acme.eu.*"]),
        tenant("acme-any", &["acme.*"]),
        tenant("fallback", &["*"]),
    ] {
        admin.create_tenant(t).await.unwrap();
    }
    let cases = [
        ("api.acme.example", "exact", "api.acme.example"),
        ("API.Acme.Example.:443", "exact", "api.acme.example"),
        ("x.eu.acme.example", "eu", "*.eu.acme.example"),
        ("a.b.eu.acme.example", "eu", "*.eu.acme.example"),
        ("eu.acme.example", "acme", "*.acme.example"),
        ("www.acme.example", "acme", "*.acme.example"),
        ("acme.eu.internal", "acme-eu-any", "acme.eu.*"),
        ("acme.internal", "acme-any", "acme.*"),
        ("acme.example", "acme-any", "acme.*"),
        ("unrelated.example", "fallback", "*"),
    ];
    for (key, want, pattern) in cases {
        let r = resolve(&server, ADMIN, key)
            .await
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!(r.tenant.as_ref().unwrap().id, want, "{key}");
        assert_eq!(r.matched_pattern, pattern, "{key}");
        assert_eq!(r.source(), ResolutionSource::Local, "{key}");
    }
    let r = resolve(&server, ADMIN, "Bücher.Example").await.unwrap();
    assert_eq!(r.normalized_key, "xn--bcher-kva.example");
    server.shutdown().await.unwrap();
}

async fn crud_with_paging_and_revisions(backend: Backend) {
    let Some((server, _db)) = server_on(backend).await else {
        return;
    };
    let mut admin = server.tenants(ADMIN).await;
    for i in 0..7 {
        admin
            .create_tenant(tenant(&format!("t{i}"), &[&format!("t{i}.example")]))
            .await
            .unwrap();
    }
    // Paging: 3 + 3 + 1, in id order, no duplicates.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = admin
            .list_tenants(ListTenantsRequest {
                page_size: 3,
                page_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.tenants.iter().map(|t| t.id.clone()));
        assert!(page.tenants.iter().all(|t| t.patterns.len() == 1));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, (0..7).map(|i| format!("t{i}")).collect::<Vec<_>>());

    // Update with the revision last seen; a stale one is refused and nothing changes.
    let t = admin
        .get_tenant(GetTenantRequest {
            tenant_id: "t1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    let updated = admin
        .update_tenant(UpdateTenantRequest {
            tenant: Some(Tenant {
                id: "t1".into(),
                patterns: vec!["*.t1.example".into()],
                ..Default::default()
            }),
            update_mask: Some(pbjson_types::FieldMask {
                paths: vec!["patterns".into()],
            }),
            expected_revision: t.revision,
        })
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    assert!(updated.revision > t.revision);
    assert_eq!(
        updated.display_name, "Tenant t1",
        "fields outside the mask are kept"
    );
    assert_eq!(updated.patterns, vec!["*.t1.example"]);
    assert_eq!(
        resolved_id(&server, "a.t1.example").await.as_deref(),
        Some("t1")
    );
    assert_eq!(resolved_id(&server, "t1.example").await, None);

    let stale = admin
        .update_tenant(UpdateTenantRequest {
            tenant: Some(Tenant {
                id: "t1".into(),
                display_name: "lost update".into(),
                ..Default::default()
            }),
            update_mask: Some(pbjson_types::FieldMask {
                paths: vec!["display_name".into()],
            }),
            expected_revision: t.revision,
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::FailedPrecondition, "{stale:?}");
    let now = admin
        .get_tenant(GetTenantRequest {
            tenant_id: "t1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    assert_eq!(now, updated, "a refused update writes nothing");

    // Delete with a stale revision is refused; with the right one it goes.
    let e = admin
        .delete_tenant(DeleteTenantRequest {
            tenant_id: "t1".into(),
            expected_revision: t.revision,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    admin
        .delete_tenant(DeleteTenantRequest {
            tenant_id: "t1".into(),
            expected_revision: updated.revision,
        })
        .await
        .unwrap();
    let e = admin
        .get_tenant(GetTenantRequest {
            tenant_id: "t1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(resolved_id(&server, "a.t1.example").await, None);
    server.shutdown().await.unwrap();
}

async fn bad_input_is_refused_precisely_and_loses_nothing(backend: Backend) {
    let Some((server, _db)) = server_on(backend).await else {
        return;
    };
    let mut admin = server.tenants(ADMIN).await;
    admin
        .create_tenant(tenant("a", &["a.example", "*.a.example"]))
        .await
        .unwrap();

    let long = format!("{}.example", "x".repeat(250));
    let bad_patterns: &[(&str, &str)] = &[
        ("", "tenant.patterns[0]"),
        ("a.*.example", "tenant.patterns[0]"),
        ("*a.example", "tenant.patterns[0]"),
        ("a..example", "tenant.patterns[0]"),
        ("a b.example", "tenant.patterns[0]"),
        (&long, "tenant.patterns[0]"),
    ];
    for (p, field) in bad_patterns {
        let e = admin.create_tenant(tenant("b", &[p])).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{p:?}: {e:?}");
        assert!(e.message().starts_with(field), "{p:?}: {}", e.message());
    }
    for id in ["", "B", "-b", "b.c"] {
        let e = admin
            .create_tenant(tenant(id, &["b.example"]))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{id:?}");
        assert!(e.message().starts_with("tenant.id"), "{}", e.message());
    }
    let e = admin
        .create_tenant(CreateTenantRequest { tenant: None })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // A pattern belongs to one tenant; the whole create is refused.
    let e = admin
        .create_tenant(tenant("b", &["b.example", "A.Example"]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    assert!(e.message().contains("a.example"), "{}", e.message());
    let e = admin
        .get_tenant(GetTenantRequest {
            tenant_id: "b".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Code::NotFound,
        "nothing of the refused create was written"
    );
    assert_eq!(resolved_id(&server, "b.example").await, None);
    let e = admin
        .create_tenant(tenant("a", &["other.example"]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);

    // An update that would steal a pattern changes nothing.
    admin
        .create_tenant(tenant("b", &["b.example"]))
        .await
        .unwrap();
    let e = admin
        .update_tenant(UpdateTenantRequest {
            tenant: Some(Tenant {
                id: "b".into(),
                display_name: "renamed".into(),
                patterns: vec!["c.example".into(), "*.a.example".into()],
                ..Default::default()
            }),
            update_mask: None,
            expected_revision: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    let b = admin
        .get_tenant(GetTenantRequest {
            tenant_id: "b".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .tenant
        .unwrap();
    assert_eq!(b.display_name, "Tenant b");
    assert_eq!(b.patterns, vec!["b.example"]);

    let e = admin
        .update_tenant(UpdateTenantRequest {
            tenant: Some(Tenant {
                id: "b".into(),
                ..Default::default()
            }),
            update_mask: Some(pbjson_types::FieldMask {
                paths: vec!["colour".into()],
            }),
            expected_revision: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("update_mask"), "{}", e.message());

    for key in ["", "a..example", "a b", "a.example:99999999", "*.a.example"] {
        let e = resolve(&server, ADMIN, key).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{key:?}");
        assert!(e.message().starts_with("key"), "{key:?}: {}", e.message());
    }
    let e = admin
        .list_tenants(ListTenantsRequest {
            page_size: -1,
            page_token: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = admin
        .list_tenants(ListTenantsRequest {
            page_size: 0,
            page_token: "zz".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    server.shutdown().await.unwrap();
}

async fn tenants_are_isolated(backend: Backend) {
    let Some((server, _db)) = server_on(backend).await else {
        return;
    };
    let mut admin = server.tenants(ADMIN).await;
    admin
        .create_tenant(tenant("a", &["a.example", "*.a.example"]))
        .await
        .unwrap();
    admin
        .create_tenant(tenant("b", &["b.example", "*.b.example"]))
        .await
        .unwrap();
    admin
        .create_tenant(tenant("c", &["c.example"]))
        .await
        .unwrap();

    for (key, want) in [
        ("a.example", "a"),
        ("x.a.example", "a"),
        ("b.example", "b"),
        ("x.b.example", "b"),
    ] {
        assert_eq!(
            resolved_id(&server, key).await.as_deref(),
            Some(want),
            "{key}"
        );
    }
    // Disabling b: its keys stop resolving (and do not fall through to anyone
    // else), the others are untouched.
    admin
        .update_tenant(UpdateTenantRequest {
            tenant: Some(Tenant {
                id: "b".into(),
                disabled: true,
                ..Default::default()
            }),
            update_mask: Some(pbjson_types::FieldMask {
                paths: vec!["disabled".into()],
            }),
            expected_revision: 0,
        })
        .await
        .unwrap();
    let e = resolve(&server, ADMIN, "x.b.example").await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(
        resolved_id(&server, "x.a.example").await.as_deref(),
        Some("a")
    );
    assert_eq!(
        resolved_id(&server, "c.example").await.as_deref(),
        Some("c")
    );

    // Deleting a leaves b's and c's data as they were.
    let b_before = admin
        .get_tenant(GetTenantRequest {
            tenant_id: "b".into(),
        })
        .await
        .unwrap()
        .into_inner();
    admin
        .delete_tenant(DeleteTenantRequest {
            tenant_id: "a".into(),
            expected_revision: 0,
        })
        .await
        .unwrap();
    assert_eq!(resolved_id(&server, "a.example").await, None);
    let b_after = admin
        .get_tenant(GetTenantRequest {
            tenant_id: "b".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(b_before, b_after);
    assert_eq!(
        resolved_id(&server, "c.example").await.as_deref(),
        Some("c")
    );

    // A catch-all added later never captures a disabled tenant's keys.
    admin.create_tenant(tenant("d", &["*"])).await.unwrap();
    assert_eq!(
        resolve(&server, ADMIN, "x.b.example")
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    assert_eq!(
        resolved_id(&server, "a.example").await.as_deref(),
        Some("d")
    );
    server.shutdown().await.unwrap();
}

async fn tenant_tokens_cannot_cross_tenants(backend: Backend) {
    let Some((server, _db)) = server_on(backend).await else {
        return;
    };
    let mut admin = server.tenants(ADMIN).await;
    admin
        .create_tenant(tenant("a", &["a.example"]))
        .await
        .unwrap();
    admin
        .create_tenant(tenant("b", &["b.example"]))
        .await
        .unwrap();
    let a = tenant_token("a");
    let mut as_a = server.tenants(&a).await;

    assert_eq!(
        resolve(&server, &a, "a.example")
            .await
            .unwrap()
            .tenant
            .unwrap()
            .id,
        "a"
    );
    let e = resolve(&server, &a, "b.example").await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "a cannot resolve into b");
    assert!(
        !e.message().contains("\"b\""),
        "does not reveal b: {}",
        e.message()
    );
    let e = as_a
        .get_tenant(GetTenantRequest {
            tenant_id: "b".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = as_a
        .update_tenant(UpdateTenantRequest {
            tenant: Some(Tenant {
                id: "b".into(),
                disabled: true,
                ..Default::default()
            }),
            update_mask: None,
            expected_revision: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = as_a
        .delete_tenant(DeleteTenantRequest {
            tenant_id: "b".into(),
            expected_revision: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = as_a
        .create_tenant(tenant("e", &["b2.example"]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = resolve(&server, GATING, "a.example").await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    // b is unchanged and still resolves.
    assert_eq!(
        resolved_id(&server, "b.example").await.as_deref(),
        Some("b")
    );
    server.shutdown().await.unwrap();
}

async fn the_mapping_survives_a_restart(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    if backend == Backend::Postgres {
        db.migrate().await;
    }
    let server = TestServer::start(test_config(&db)).await;
    server
        .tenants(ADMIN)
        .await
        .create_tenant(tenant("a", &["*.a.example"]))
        .await
        .unwrap();
    server.shutdown().await.unwrap();

    let server = TestServer::start(test_config(&db)).await;
    wait_until(Duration::from_secs(5), || async {
        resolved_id(&server, "x.a.example").await.as_deref() == Some("a")
    })
    .await;
    server.shutdown().await.unwrap();
}

/// Two replicas on one database whose buses are not connected (different
/// Redis prefixes, or in-process buses): every change still arrives through
/// the change-log poll.
async fn replicas_without_a_shared_bus_converge_by_polling(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    db.migrate().await;
    let mut c1 = test_config(&db);
    c1.storage.sync_interval_ms = 200;
    let mut c2 = c1.clone();
    if let Some(url) = redis_url().await {
        c1.storage.redis_url = Some(url.clone());
        c1.storage.redis_prefix = unique_prefix();
        c2.storage.redis_url = Some(url);
        c2.storage.redis_prefix = unique_prefix();
    } else if backend == Backend::Postgres {
        return;
    }
    let one = TestServer::start(c1).await;
    let two = TestServer::start(c2).await;
    one.tenants(ADMIN)
        .await
        .create_tenant(tenant("a", &["a.example"]))
        .await
        .unwrap();
    wait_until(Duration::from_secs(3), || async {
        resolved_id(&two, "a.example").await.as_deref() == Some("a")
    })
    .await;
    two.tenants(ADMIN)
        .await
        .delete_tenant(DeleteTenantRequest {
            tenant_id: "a".into(),
            expected_revision: 0,
        })
        .await
        .unwrap();
    wait_until(Duration::from_secs(3), || async {
        resolved_id(&one, "a.example").await.is_none()
    })
    .await;
    one.shutdown().await.unwrap();
    two.shutdown().await.unwrap();
}

/// Hundreds of tenant writes, each applied to the matcher by itself (and
/// merged into its base in the background now and then): every key resolves
/// as the written patterns say, on the replica that wrote them and, after a
/// restart (one full build), the same.
async fn a_long_run_of_writes_resolves_as_a_full_rebuild_would(backend: Backend) {
    let Some((server, db)) = server_on(backend).await else {
        return;
    };
    const N: usize = 300;
    let mut admin = server.tenants(ADMIN).await;
    admin
        .create_tenant(tenant("wide", &["*.example"]))
        .await
        .unwrap();
    for i in 0..N {
        let exact = format!("t{i}.example");
        let wild = format!("*.t{i}.example");
        admin
            .create_tenant(tenant(&format!("t{i}"), &[&exact, &wild]))
            .await
            .unwrap();
    }
    for i in 0..50 {
        let moved = format!("moved{i}.example");
        admin
            .update_tenant(UpdateTenantRequest {
                tenant: Some(Tenant {
                    id: format!("t{i}"),
                    patterns: vec![moved],
                    ..Default::default()
                }),
                update_mask: Some(pbjson_types::FieldMask {
                    paths: vec!["patterns".into()],
                }),
                expected_revision: 0,
            })
            .await
            .unwrap();
    }
    for i in 50..70 {
        admin
            .delete_tenant(DeleteTenantRequest {
                tenant_id: format!("t{i}"),
                expected_revision: 0,
            })
            .await
            .unwrap();
    }
    // A pattern of a deleted tenant goes to another.
    admin
        .update_tenant(UpdateTenantRequest {
            tenant: Some(Tenant {
                id: "t70".into(),
                patterns: vec![
                    "t70.example".into(),
                    "*.t70.example".into(),
                    "t50.example".into(),
                ],
                ..Default::default()
            }),
            update_mask: Some(pbjson_types::FieldMask {
                paths: vec!["patterns".into()],
            }),
            expected_revision: 0,
        })
        .await
        .unwrap();
    let keys: Vec<String> = (0..N)
        .flat_map(|i| [format!("t{i}.example"), format!("x.t{i}.example")])
        .chain((0..50).map(|i| format!("moved{i}.example")))
        .collect();
    resolves_as_written(&server, &keys).await;
    server.shutdown().await.unwrap();
    let server = TestServer::start(test_config(&db)).await;
    wait_until(Duration::from_secs(10), || async {
        resolved_id(&server, "t299.example").await.as_deref() == Some("t299")
    })
    .await;
    resolves_as_written(&server, &keys).await;
    server.shutdown().await.unwrap();
}

/// Checks every key against what the writes of the long run say.
async fn resolves_as_written(server: &TestServer, keys: &[String]) {
    let expected = |key: &str| -> String {
        if key == "t50.example" {
            return "t70".into();
        }
        if let Some(i) = key
            .strip_prefix("moved")
            .and_then(|k| k.strip_suffix(".example"))
        {
            return format!("t{i}");
        }
        let label = key.trim_end_matches(".example").rsplit('.').next().unwrap();
        match label[1..].parse::<usize>().unwrap() {
            0..70 => "wide".to_owned(),
            i => format!("t{i}"),
        }
    };
    for key in keys {
        assert_eq!(
            resolved_id(server, key).await.as_deref(),
            Some(expected(key).as_str()),
            "{key}"
        );
    }
}

/// A tenant holds at most 100 patterns; one more is refused and nothing of
/// it is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_holds_at_most_100_patterns() {
    let Some((server, _db)) = server_on(Backend::Sqlite).await else {
        return;
    };
    let patterns =
        |n: usize| -> Vec<String> { (0..n).map(|i| format!("h{i}.many.example")).collect() };
    let mut t = server.tenants(ADMIN).await;
    let refs = patterns(101);
    let e = t
        .create_tenant(tenant(
            "many",
            &refs.iter().map(String::as_str).collect::<Vec<_>>(),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("at most 100 patterns"), "{e:?}");
    assert_eq!(
        resolve(&server, ADMIN, "h0.many.example")
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    let refs = patterns(100);
    t.create_tenant(tenant(
        "many",
        &refs.iter().map(String::as_str).collect::<Vec<_>>(),
    ))
    .await
    .unwrap();
    let r = resolve(&server, ADMIN, "h99.many.example").await.unwrap();
    assert_eq!(r.tenant.unwrap().id, "many");
}
