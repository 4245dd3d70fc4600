//! The audit log as an operator reads it: every change of a flag, an
//! override, a tenant and a token, with who made it (the token's name), the
//! reason its request gave, the revision, and what it was before and after;
//! filtered, paged and exported over gRPC and REST; a tenant token reads only
//! its tenant's entries; a refused write leaves no entry; pruning the change
//! log takes nothing from it.

use serde_json::json;
use switchyard::{
    api::v1::{
        AuditEntry, CreateTokenRequest, DeleteFlagRequest, ExportChangesRequest, FlagType,
        ListChangesRequest, ListChangesResponse, UpdateFlagRequest,
        audit_service_client::AuditServiceClient,
    },
    changelog::ChangeLog,
    client::Authed,
    store::Store,
};
use tonic::{Code, Request};

use crate::common::*;

on_both_backends!(every_change_is_in_the_audit_log_with_who_why_and_what);

/// `message` sent with `x-switchyard-reason: reason`.
fn because<T>(message: T, reason: &str) -> Request<T> {
    let mut r = Request::new(message);
    r.metadata_mut()
        .insert("x-switchyard-reason", reason.parse().unwrap());
    r
}

async fn list(
    audit: &mut AuditServiceClient<Authed>,
    r: ListChangesRequest,
) -> Result<ListChangesResponse, tonic::Status> {
    audit.list_changes(r).await.map(|r| r.into_inner())
}

/// Every entry `r` matches, page by page of `size`.
async fn all_pages(
    audit: &mut AuditServiceClient<Authed>,
    mut r: ListChangesRequest,
    size: i32,
) -> Vec<AuditEntry> {
    r.page_size = size;
    let mut out = Vec::new();
    loop {
        let page = list(audit, r.clone()).await.unwrap();
        assert!(page.changes.len() <= size as usize);
        out.extend(page.changes);
        if page.next_page_token.is_empty() {
            return out;
        }
        r.page_token = page.next_page_token;
    }
}

fn json_of(v: &Option<pbjson_types::Value>) -> serde_json::Value {
    v.as_ref().map_or(serde_json::Value::Null, |v| {
        serde_json::to_value(v).unwrap()
    })
}

async fn every_change_is_in_the_audit_log_with_who_why_and_what(backend: Backend) {
    let Some((server, db)) = server_on(backend).await else {
        return;
    };
    let admin = server.client(ADMIN).await;

    // A named admin token, made by the configured one.
    let secret = admin
        .tokens()
        .create_token(because(
            CreateTokenRequest {
                name: "release-bot".into(),
                scope: "admin".into(),
                lifetime: None,
            },
            "the release pipeline",
        ))
        .await
        .unwrap()
        .into_inner()
        .secret;
    let bot = server.client(&secret).await;

    setup_tenants(&server, &["a", "b"]).await;
    let flag = bot
        .flags()
        .create_flag(because(
            new_flag("checkout", FlagType::Bool, v_bool(false)),
            "CHG-1: new checkout",
        ))
        .await
        .unwrap()
        .into_inner()
        .flag
        .unwrap();
    let updated = bot
        .flags()
        .update_flag(because(
            UpdateFlagRequest {
                flag: Some(switchyard::api::v1::Flag {
                    key: "checkout".into(),
                    description: "the new checkout".into(),
                    ..Default::default()
                }),
                update_mask: Some(pbjson_types::FieldMask {
                    paths: vec!["description".into()],
                }),
                expected_revision: flag.revision,
            },
            "describe it",
        ))
        .await
        .unwrap()
        .into_inner()
        .flag
        .unwrap();
    // A stale write is refused and leaves no entry.
    let stale = bot
        .flags()
        .update_flag(UpdateFlagRequest {
            flag: Some(switchyard::api::v1::Flag {
                key: "checkout".into(),
                description: "lost".into(),
                ..Default::default()
            }),
            update_mask: Some(pbjson_types::FieldMask {
                paths: vec!["description".into()],
            }),
            expected_revision: flag.revision,
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::FailedPrecondition);
    // A reason that cannot be kept refuses the write, which leaves nothing.
    let long = bot
        .flags()
        .delete_flag(because(
            DeleteFlagRequest {
                flag_key: "checkout".into(),
                expected_revision: 0,
            },
            &"x".repeat(1001),
        ))
        .await
        .unwrap_err();
    assert_eq!(long.code(), Code::InvalidArgument, "{long:?}");
    assert!(long.message().contains("x-switchyard-reason"), "{long:?}");

    let set = set_override(&server, "a", "checkout", v_bool(true)).await;
    // Over REST, with the reason in an HTTP header.
    let cleared = http_raw_with(
        &server,
        "DELETE",
        "/v1/tenants/a/flags/checkout",
        Some(&secret),
        None,
        &[("x-switchyard-reason", "rolled back by hand")],
    )
    .await;
    assert_eq!(cleared.status, 200, "{:?}", cleared.body);
    let deleted = bot
        .flags()
        .delete_flag(because(
            DeleteFlagRequest {
                flag_key: "checkout".into(),
                expected_revision: 0,
            },
            "CHG-2: retired",
        ))
        .await
        .unwrap()
        .into_inner()
        .revision;

    let mut audit = admin.audit();
    let everything = all_pages(&mut audit, ListChangesRequest::default(), 100).await;
    let actions: Vec<(&str, &str)> = everything
        .iter()
        .map(|e| (e.action.as_str(), e.actor.as_str()))
        .collect();
    // Newest first.
    assert_eq!(
        actions,
        [
            ("flag.delete", "release-bot"),
            ("override.clear", "release-bot"),
            ("override.set", "admin_token"),
            ("flag.update", "release-bot"),
            ("flag.create", "release-bot"),
            ("tenant.create", "admin_token"),
            ("tenant.create", "admin_token"),
            ("token.create", "admin_token"),
        ]
    );
    assert!(everything.windows(2).all(|w| w[0].id > w[1].id));
    let by_action = |a: &str| everything.iter().find(|e| e.action == a).unwrap();

    let token = by_action("token.create");
    assert_eq!(token.reason, "the release pipeline");
    assert_eq!(token.revision, 0);
    assert_eq!(json_of(&token.after)["name"], "release-bot");
    assert!(
        !serde_json::to_string(token).unwrap().contains(&secret),
        "the secret is never in the log"
    );

    let created = by_action("flag.create");
    assert_eq!(created.revision, flag.revision);
    assert_eq!(created.flag_key, "checkout");
    assert_eq!(created.tenant_id, "");
    assert_eq!(created.reason, "CHG-1: new checkout");
    assert_eq!(created.before, None);
    assert_eq!(
        json_of(&created.after)["variants"],
        json!({"default": false})
    );

    let update = by_action("flag.update");
    assert_eq!(update.revision, updated.revision);
    assert_eq!(json_of(&update.before).get("description"), None);
    assert_eq!(json_of(&update.after)["description"], "the new checkout");

    let set_entry = by_action("override.set");
    assert_eq!(
        (set_entry.revision, set_entry.tenant_id.as_str()),
        (set, "a")
    );
    assert_eq!(set_entry.reason, "");
    assert_eq!(json_of(&set_entry.after), json!(true));
    let clear_entry = by_action("override.clear");
    assert_eq!(clear_entry.reason, "rolled back by hand");
    assert_eq!(json_of(&clear_entry.before), json!(true));
    assert_eq!(clear_entry.after, None);

    let delete = by_action("flag.delete");
    assert_eq!(delete.revision, deleted);
    assert_eq!(json_of(&delete.before)["description"], "the new checkout");
    assert_eq!(delete.after, None);

    let tenant = everything
        .iter()
        .find(|e| e.action == "tenant.create" && e.tenant_id == "a")
        .unwrap();
    assert_eq!(
        json_of(&tenant.after),
        json!({"displayName": "", "patterns": ["a.example"], "disabled": false})
    );

    // Pages of two give the same entries.
    assert_eq!(
        all_pages(&mut audit, ListChangesRequest::default(), 2).await,
        everything
    );

    // Filters.
    let of = |r: ListChangesRequest| {
        let mut audit = audit.clone();
        async move {
            all_pages(&mut audit, r, 100)
                .await
                .into_iter()
                .map(|e| e.action)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        of(ListChangesRequest {
            flag_key: "checkout".into(),
            ..Default::default()
        })
        .await,
        [
            "flag.delete",
            "override.clear",
            "override.set",
            "flag.update",
            "flag.create"
        ]
    );
    assert_eq!(
        of(ListChangesRequest {
            tenant_id: "a".into(),
            ..Default::default()
        })
        .await,
        ["override.clear", "override.set", "tenant.create"]
    );
    assert_eq!(
        of(ListChangesRequest {
            actor: "admin_token".into(),
            flag_key: "checkout".into(),
            ..Default::default()
        })
        .await,
        ["override.set"]
    );
    assert_eq!(
        of(ListChangesRequest {
            start_time: set_entry.time,
            ..Default::default()
        })
        .await,
        ["flag.delete", "override.clear", "override.set"]
    );
    assert_eq!(
        of(ListChangesRequest {
            end_time: set_entry.time,
            actor: "release-bot".into(),
            ..Default::default()
        })
        .await,
        ["flag.update", "flag.create"]
    );
    let backwards = list(
        &mut audit,
        ListChangesRequest {
            start_time: set_entry.time,
            end_time: created.time,
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(backwards.code(), Code::InvalidArgument);
    let forged = list(
        &mut audit,
        ListChangesRequest {
            page_token: "not-a-token".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(forged.code(), Code::InvalidArgument);

    // A tenant token reads its tenant's entries only.
    let mut tenant_a = server.client(&tenant_token("a")).await.audit();
    let own = all_pages(&mut tenant_a, ListChangesRequest::default(), 100).await;
    assert_eq!(
        own.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        ["override.clear", "override.set", "tenant.create"]
    );
    assert!(own.iter().all(|e| e.tenant_id == "a"));
    let other = list(
        &mut tenant_a,
        ListChangesRequest {
            tenant_id: "b".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(other.code(), Code::PermissionDenied);
    let gating = list(
        &mut server.client(GATING).await.audit(),
        ListChangesRequest::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(gating.code(), Code::PermissionDenied);

    // REST: the same entries as JSON, and the export as NDJSON, oldest first.
    let rest = http(&server, "GET", "/v1/changes?tenant_id=a", Some(ADMIN), None).await;
    assert_eq!(rest.status, 200);
    let listed = rest.json();
    assert_eq!(
        listed["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["override.clear", "override.set", "tenant.create"]
    );
    assert_eq!(listed["changes"][0]["reason"], "rolled back by hand");
    assert_eq!(listed["changes"][0]["before"], true);
    let export = http(&server, "GET", "/v1/changes:export", Some(ADMIN), None).await;
    assert_eq!(export.status, 200);
    assert_eq!(export.header("content-type"), Some("application/x-ndjson"));
    let lines: Vec<serde_json::Value> = String::from_utf8(export.body.to_vec())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["result"]["change"].clone())
        .collect();
    let ids: Vec<i64> = everything.iter().rev().map(|e| e.id).collect();
    assert_eq!(
        lines
            .iter()
            .map(|l| l["id"].as_str().unwrap().parse::<i64>().unwrap())
            .collect::<Vec<_>>(),
        ids
    );
    // Resumed after an id; confined for a tenant token.
    let resumed: Vec<i64> = export_ids(&mut audit, ids[4]).await;
    assert_eq!(resumed, ids[5..]);
    let mut stream = tenant_a
        .export_changes(ExportChangesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut tenant_ids = Vec::new();
    while let Some(e) = stream.message().await.unwrap() {
        tenant_ids.push(e.change.unwrap().tenant_id);
    }
    assert_eq!(tenant_ids, ["a", "a", "a"]);

    // Pruning the change log (watch replay) takes nothing from the audit log.
    let store = Store::connect(&db.url).await.unwrap();
    assert!(store.prune_change_log(i64::MAX).await.unwrap() > 0);
    store.close().await;
    assert_eq!(
        all_pages(&mut audit, ListChangesRequest::default(), 100).await,
        everything
    );
}

async fn export_ids(audit: &mut AuditServiceClient<Authed>, after_id: i64) -> Vec<i64> {
    let mut stream = audit
        .export_changes(ExportChangesRequest {
            after_id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut ids = Vec::new();
    while let Some(e) = stream.message().await.unwrap() {
        ids.push(e.change.unwrap().id);
    }
    ids
}
