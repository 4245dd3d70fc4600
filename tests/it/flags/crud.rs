//! FlagService as its users meet it, on SQLite and PostgreSQL.

use crate::common::*;
use pbjson_types::Value;
use switchyard::api::v1::*;
use tonic::Code;

on_both_backends!(
    values_report_their_source_with_env_over_tenant_over_store_over_default,
    writes_are_typed_conditional_and_paged,
    bad_input_is_refused_precisely_and_loses_nothing,
    overrides_stay_with_their_tenant,
);

async fn evaluate(
    server: &TestServer,
    token: &str,
    key: &str,
    tenant: Option<&str>,
) -> Result<EvaluateFlagResponse, tonic::Status> {
    server
        .flags(token)
        .await
        .evaluate_flag(EvaluateFlagRequest {
            flag_key: key.into(),
            target: tenant.map(|t| evaluate_flag_request::Target::TenantId(t.into())),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

async fn values_report_their_source_with_env_over_tenant_over_store_over_default(backend: Backend) {
    let Some((server, _db)) =
        server_with(backend, |c| with_env_flag(c, "kill-switch", "true")).await
    else {
        return;
    };
    setup_tenants(&server, &["a", "b"]).await;
    let mut admin = server.flags(ADMIN).await;
    admin
        .create_flag(new_flag("banner", FlagType::String, v_str("hello")))
        .await
        .unwrap();
    admin
        .create_flag(new_flag("kill-switch", FlagType::Bool, v_bool(false)))
        .await
        .unwrap();

    let e = evaluate(&server, ADMIN, "banner", Some("a")).await.unwrap();
    assert_eq!(
        (e.source.as_str(), e.value),
        ("default", Some(v_str("hello")))
    );
    admin
        .update_flag(UpdateFlagRequest {
            flag: Some(Flag {
                key: "banner".into(),
                stored_value: Some(v_str("stored")),
                ..Default::default()
            }),
            update_mask: Some(pbjson_types::FieldMask {
                paths: vec!["stored_value".into()],
            }),
            expected_revision: 0,
        })
        .await
        .unwrap();
    let e = evaluate(&server, ADMIN, "banner", Some("a")).await.unwrap();
    assert_eq!(
        (e.source.as_str(), e.value),
        ("store", Some(v_str("stored")))
    );
    let rev = set_override(&server, "a", "banner", v_str("for a")).await;
    let e = evaluate(&server, ADMIN, "banner", Some("a")).await.unwrap();
    assert_eq!(
        (e.source.as_str(), e.value.clone()),
        ("tenant", Some(v_str("for a")))
    );
    assert!(e.revision >= rev);
    let e = evaluate(&server, ADMIN, "banner", Some("b")).await.unwrap();
    assert_eq!(e.source, "store", "b has no override");

    // env beats everything, also a tenant override.
    set_override(&server, "a", "kill-switch", v_bool(false)).await;
    let e = evaluate(&server, ADMIN, "kill-switch", Some("a"))
        .await
        .unwrap();
    assert_eq!((e.source.as_str(), e.value), ("env", Some(v_bool(true))));

    // Listing gives the same answers.
    let list = admin
        .list_flags(ListFlagsRequest {
            tenant: "a".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let got: Vec<(String, String)> = list
        .flags
        .iter()
        .map(|f| (f.flag.clone(), f.source.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("banner".into(), "tenant".into()),
            ("kill-switch".into(), "env".into())
        ]
    );

    // Clearing the override: the stored value again.
    admin
        .clear_tenant_override(ClearTenantOverrideRequest {
            tenant_id: "a".into(),
            flag_key: "banner".into(),
            expected_revision: 0,
        })
        .await
        .unwrap();
    let e = evaluate(&server, ADMIN, "banner", Some("a")).await.unwrap();
    assert_eq!(e.source, "store");

    // Evaluation through a resolved key.
    let e = server
        .flags(&tenant_token("b"))
        .await
        .evaluate_flag(EvaluateFlagRequest {
            flag_key: "banner".into(),
            target: Some(evaluate_flag_request::Target::ResolveKey(
                "B.Example:443".into(),
            )),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((e.tenant_id.as_str(), e.source.as_str()), ("b", "store"));
    server.shutdown().await.unwrap();
}

async fn writes_are_typed_conditional_and_paged(backend: Backend) {
    let Some((server, _db)) = server_on(backend).await else {
        return;
    };
    let mut admin = server.flags(ADMIN).await;
    let created = admin
        .create_flag(new_flag("limit", FlagType::Number, v_num(10.0)))
        .await
        .unwrap()
        .into_inner()
        .flag
        .unwrap();
    // A stale revision is refused and nothing is overwritten.
    let updated = admin
        .update_flag(UpdateFlagRequest {
            flag: Some(Flag {
                key: "limit".into(),
                default_value: Some(v_num(20.0)),
                ..Default::default()
            }),
            update_mask: Some(pbjson_types::FieldMask {
                paths: vec!["default_value".into()],
            }),
            expected_revision: created.revision,
        })
        .await
        .unwrap()
        .into_inner()
        .flag
        .unwrap();
    let e = admin
        .update_flag(UpdateFlagRequest {
            flag: Some(Flag {
                key: "limit".into(),
                default_value: Some(v_num(30.0)),
                ..Default::default()
            }),
            update_mask: Some(pbjson_types::FieldMask {
                paths: vec!["default_value".into()],
            }),
            expected_revision: created.revision,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let now = admin
        .get_flag(GetFlagRequest {
            flag_key: "limit".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .flag
        .unwrap();
    assert_eq!(now.default_value, Some(v_num(20.0)));
    assert_eq!(now.revision, updated.revision);
    let e = admin
        .delete_flag(DeleteFlagRequest {
            flag_key: "limit".into(),
            expected_revision: created.revision,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);

    // Paging over 25 flags, 10 at a time, in key order.
    for i in 0..25 {
        admin
            .create_flag(new_flag(&format!("f{i:02}"), FlagType::Bool, v_bool(false)))
            .await
            .unwrap();
    }
    let mut keys = Vec::new();
    let mut token = String::new();
    let mut revisions = Vec::new();
    loop {
        let page = admin
            .list_flags(ListFlagsRequest {
                page_size: 10,
                page_token: token.clone(),
                view: FlagView::Full as i32,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.flags.len(), page.definitions.len());
        keys.extend(page.flags.iter().map(|f| f.flag.clone()));
        revisions.push(page.revision);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut want: Vec<String> = (0..25).map(|i| format!("f{i:02}")).collect();
    want.push("limit".into());
    assert_eq!(keys, want);
    assert!(
        revisions.iter().all(|r| *r == revisions[0]),
        "no writes in between"
    );

    let r = admin
        .delete_flag(DeleteFlagRequest {
            flag_key: "limit".into(),
            expected_revision: updated.revision,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.revision > updated.revision);
    let e = admin
        .get_flag(GetFlagRequest {
            flag_key: "limit".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    server.shutdown().await.unwrap();
}

async fn bad_input_is_refused_precisely_and_loses_nothing(backend: Backend) {
    let Some((server, _db)) = server_on(backend).await else {
        return;
    };
    setup_tenants(&server, &["a"]).await;
    let mut admin = server.flags(ADMIN).await;
    admin
        .create_flag(new_flag("on", FlagType::Bool, v_bool(false)))
        .await
        .unwrap();

    let cases: Vec<(CreateFlagRequest, Code, &str)> = vec![
        (
            CreateFlagRequest { flag: None },
            Code::InvalidArgument,
            "flag",
        ),
        (
            new_flag("", FlagType::Bool, v_bool(true)),
            Code::InvalidArgument,
            "flag.key",
        ),
        (
            new_flag("a b", FlagType::Bool, v_bool(true)),
            Code::InvalidArgument,
            "flag.key",
        ),
        (
            new_flag(&"k".repeat(129), FlagType::Bool, v_bool(true)),
            Code::InvalidArgument,
            "flag.key",
        ),
        (
            new_flag("x", FlagType::Unspecified, v_bool(true)),
            Code::InvalidArgument,
            "flag.type",
        ),
        (
            new_flag("x", FlagType::Bool, v_str("yes")),
            Code::InvalidArgument,
            "flag.default_value",
        ),
        (
            new_flag("x", FlagType::Number, v_num(f64::NAN)),
            Code::InvalidArgument,
            "flag.default_value",
        ),
        (
            new_flag("x", FlagType::String, v_str(&"x".repeat(70_000))),
            Code::InvalidArgument,
            "flag.default_value",
        ),
        (
            new_flag("on", FlagType::Bool, v_bool(true)),
            Code::AlreadyExists,
            "flag",
        ),
    ];
    for (req, code, field) in cases {
        let e = admin.create_flag(req).await.unwrap_err();
        assert_eq!(e.code(), code, "{field}: {e:?}");
        assert!(e.message().starts_with(field), "{field}: {}", e.message());
    }
    let e = admin
        .create_flag(CreateFlagRequest {
            flag: Some(Flag {
                key: "x".into(),
                r#type: FlagType::Bool as i32,
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert!(
        e.message().starts_with("flag.default_value: is required"),
        "{}",
        e.message()
    );

    let over = |tenant: &str, key: &str, value: Option<Value>| SetTenantOverrideRequest {
        tenant_id: tenant.into(),
        flag_key: key.into(),
        value,
        expected_revision: 0,
    };
    let e = admin
        .set_tenant_override(over("a", "on", Some(v_num(1.0))))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("value"), "{}", e.message());
    let e = admin
        .set_tenant_override(over("a", "on", None))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = admin
        .set_tenant_override(over("zz", "on", Some(v_bool(true))))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "unknown tenant");
    let e = admin
        .set_tenant_override(over("a", "nope", Some(v_bool(true))))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "unknown flag");
    let e = admin
        .set_tenant_override(over("A!", "on", Some(v_bool(true))))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = admin
        .clear_tenant_override(ClearTenantOverrideRequest {
            tenant_id: "a".into(),
            flag_key: "on".into(),
            expected_revision: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "no override to clear");
    let e = admin
        .update_flag(UpdateFlagRequest {
            flag: Some(Flag {
                key: "on".into(),
                r#type: FlagType::String as i32,
                ..Default::default()
            }),
            update_mask: Some(pbjson_types::FieldMask {
                paths: vec!["type".into()],
            }),
            expected_revision: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = admin
        .update_flag(UpdateFlagRequest {
            flag: Some(Flag {
                key: "on".into(),
                stored_value: Some(v_str("no")),
                ..Default::default()
            }),
            update_mask: Some(pbjson_types::FieldMask {
                paths: vec!["stored_value".into()],
            }),
            expected_revision: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().starts_with("flag.stored_value"),
        "{}",
        e.message()
    );
    let e = evaluate(&server, ADMIN, "nope", None).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = evaluate(&server, ADMIN, "on", Some("zz"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    // Nothing of the refused writes is visible.
    let list = admin
        .list_flags(ListFlagsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.flags.len(), 1);
    assert_eq!(
        (list.flags[0].source.as_str(), list.flags[0].value.clone()),
        ("default", Some(v_bool(false)))
    );
    let e = evaluate(&server, ADMIN, "on", Some("a")).await.unwrap();
    assert_eq!(e.source, "default");
    server.shutdown().await.unwrap();
}

async fn overrides_stay_with_their_tenant(backend: Backend) {
    let Some((server, _db)) = server_on(backend).await else {
        return;
    };
    setup_tenants(&server, &["a", "b"]).await;
    let mut admin = server.flags(ADMIN).await;
    admin
        .create_flag(new_flag("plan", FlagType::String, v_str("free")))
        .await
        .unwrap();
    set_override(&server, "a", "plan", v_str("enterprise")).await;

    let a = tenant_token("a");
    let b = tenant_token("b");
    assert_eq!(
        evaluate(&server, &a, "plan", None).await.unwrap().value,
        Some(v_str("enterprise")),
        "a token defaults to a"
    );
    assert_eq!(
        evaluate(&server, &b, "plan", None).await.unwrap().value,
        Some(v_str("free"))
    );
    assert_eq!(
        evaluate(&server, &b, "plan", Some("a"))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    let list = server
        .flags(&b)
        .await
        .list_flags(ListFlagsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.flags[0].value, Some(v_str("free")));
    assert_eq!(list.flags[0].source, "default");
    let e = server
        .flags(&b)
        .await
        .list_flags(ListFlagsRequest {
            tenant: "a".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = server
        .flags(&b)
        .await
        .evaluate_flag(EvaluateFlagRequest {
            flag_key: "plan".into(),
            target: Some(evaluate_flag_request::Target::ResolveKey(
                "a.example".into(),
            )),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Code::PermissionDenied,
        "b cannot evaluate through a's host"
    );
    let e = server
        .flags(&b)
        .await
        .set_tenant_override(SetTenantOverrideRequest {
            tenant_id: "b".into(),
            flag_key: "plan".into(),
            value: Some(v_str("enterprise")),
            expected_revision: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Code::PermissionDenied,
        "tenant tokens cannot write"
    );
    let e = server
        .flags(GATING)
        .await
        .list_flags(ListFlagsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    // Deleting a takes its override with it; b is untouched.
    server
        .tenants(ADMIN)
        .await
        .delete_tenant(DeleteTenantRequest {
            tenant_id: "a".into(),
            expected_revision: 0,
        })
        .await
        .unwrap();
    assert_eq!(
        evaluate(&server, ADMIN, "plan", Some("a"))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    assert_eq!(
        evaluate(&server, ADMIN, "plan", Some("b"))
            .await
            .unwrap()
            .source,
        "default"
    );
    server.shutdown().await.unwrap();
}
