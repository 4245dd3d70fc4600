//! The foundation as a user meets it: health, reflection, auth on every
//! service, graceful shutdown, and revisions that commit in order, on SQLite
//! and PostgreSQL.

use std::{collections::BTreeSet, time::Duration};

use crate::common::*;
use switchyard::api::health::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use switchyard::api::v1::*;
use tokio_stream::StreamExt;
use tonic::Code;

on_both_backends!(
    health_serves_overall_and_per_service,
    reflection_lists_every_service_in_both_versions,
    calls_without_a_valid_token_are_unauthenticated,
    scopes_confine_tokens,
    shutdown_turns_health_not_serving_and_stops,
    revisions_commit_in_order_under_concurrent_writers,
);

async fn health_serves_overall_and_per_service(backend: Backend) {
    let Some((server, _db)) = server_on(backend).await else {
        return;
    };
    let mut health = HealthClient::new(server.channel().await);
    for service in [
        "",
        "switchyard.v1.TenantService",
        "switchyard.v1.FlagService",
        "switchyard.v1.GatingService",
        "switchyard.v1.TokenService",
        "switchyard.v1.AuditService",
        "switchyard.v1.RolloutService",
        "flagd.evaluation.v1.Service",
        "flagd.evaluation.v2.Service",
        "flagd.sync.v1.FlagSyncService",
    ] {
        let resp = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("health of {service:?}: {e}"));
        assert_eq!(
            resp.get_ref().status(),
            ServingStatus::Serving,
            "{service:?}"
        );
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "switchyard.v1.NoSuchService".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    server.shutdown().await.unwrap();
}

async fn reflection_lists_every_service_in_both_versions(backend: Backend) {
    use tonic_reflection::pb::{v1, v1alpha};
    let Some((server, _db)) = server_on(backend).await else {
        return;
    };
    let expected: BTreeSet<String> = [
        "flagd.evaluation.v1.Service",
        "flagd.evaluation.v2.Service",
        "flagd.sync.v1.FlagSyncService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "switchyard.v1.AuditService",
        "switchyard.v1.FlagService",
        "switchyard.v1.GatingService",
        "switchyard.v1.RolloutService",
        "switchyard.v1.TenantService",
        "switchyard.v1.TokenService",
    ]
    .into_iter()
    .map(String::from)
    .collect();

    let mut client =
        v1::server_reflection_client::ServerReflectionClient::new(server.channel().await);
    let req = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .expect("reflection v1 needs no token")
        .into_inner();
    let resp = stream.next().await.unwrap().unwrap();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        resp.message_response
    else {
        panic!("unexpected reflection answer");
    };
    let got: BTreeSet<String> = list.service.into_iter().map(|s| s.name).collect();
    assert_eq!(got, expected);

    let mut client =
        v1alpha::server_reflection_client::ServerReflectionClient::new(server.channel().await);
    let req = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                "switchyard.v1.FlagService".into(),
            ),
        ),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .expect("reflection v1alpha needs no token")
        .into_inner();
    let resp = stream.next().await.unwrap().unwrap();
    match resp.message_response {
        Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(f)) => {
            assert!(!f.file_descriptor_proto.is_empty());
        }
        other => panic!("unexpected reflection answer: {other:?}"),
    }
    server.shutdown().await.unwrap();
}

async fn calls_without_a_valid_token_are_unauthenticated(backend: Backend) {
    let Some((server, _db)) = server_on(backend).await else {
        return;
    };
    for token in ["", "not-a-configured-token-at-all"] {
        let err = server
            .tenants(token)
            .await
            .list_tenants(ListTenantsRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "token {token:?}");
        let err = server
            .flags(token)
            .await
            .list_flags(ListFlagsRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "token {token:?}");
        let err = server
            .gating(token)
            .await
            .list_gate_runs(ListGateRunsRequest::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "token {token:?}");
    }

    // Over HTTP: 401 with a google.rpc.Status body and a Bearer challenge.
    let reply = http(&server, "GET", "/v1/tenants", None, None).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
    let body = reply.json();
    assert_eq!(body["code"], 16);
    assert!(
        body["message"].as_str().unwrap().contains("bearer"),
        "{body}"
    );

    // Metrics and health are public.
    let reply = http(&server, "GET", "/metrics", None, None).await;
    assert_eq!(reply.status, 200);
    let text = String::from_utf8_lossy(&reply.body);
    assert!(text.contains("switchyard_build_info"), "{text}");
    server.shutdown().await.unwrap();
}

async fn scopes_confine_tokens(backend: Backend) {
    let Some((server, _db)) = server_on(backend).await else {
        return;
    };
    let a = tenant_token("a");

    // A tenant token on another tenant: PERMISSION_DENIED.
    let err = server
        .tenants(&a)
        .await
        .get_tenant(GetTenantRequest {
            tenant_id: "b".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let err = server
        .flags(&a)
        .await
        .list_flags(ListFlagsRequest {
            tenant: "b".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    // A tenant token cannot administer, nor gate.
    let err = server
        .tenants(&a)
        .await
        .list_tenants(ListTenantsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = server
        .gating(&a)
        .await
        .list_gate_runs(ListGateRunsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // A gating token cannot read tenants.
    let err = server
        .tenants(GATING)
        .await
        .get_tenant(GetTenantRequest {
            tenant_id: "a".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // The right tokens get past authorization (whatever the call then answers).
    for (code, what) in [
        (
            server
                .tenants(&a)
                .await
                .get_tenant(GetTenantRequest {
                    tenant_id: "a".into(),
                })
                .await
                .err()
                .map(|e| e.code()),
            "tenant token on its own tenant",
        ),
        (
            server
                .gating(GATING)
                .await
                .list_gate_runs(ListGateRunsRequest::default())
                .await
                .err()
                .map(|e| e.code()),
            "gating token on gating",
        ),
        (
            server
                .tenants(ADMIN)
                .await
                .get_tenant(GetTenantRequest {
                    tenant_id: "b".into(),
                })
                .await
                .err()
                .map(|e| e.code()),
            "admin token anywhere",
        ),
    ] {
        assert!(
            !matches!(code, Some(Code::PermissionDenied | Code::Unauthenticated)),
            "{what}: {code:?}"
        );
    }
    server.shutdown().await.unwrap();
}

async fn shutdown_turns_health_not_serving_and_stops(backend: Backend) {
    let Some((mut server, _db)) = server_on(backend).await else {
        return;
    };
    let mut health = HealthClient::new(server.channel().await);
    let mut watch = health
        .watch(HealthCheckRequest {
            service: "switchyard.v1.FlagService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);

    server.signal_shutdown();
    let next = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("health changes on shutdown")
        .expect("an update before the stream ends")
        .expect("not an error");
    assert_eq!(next.status(), ServingStatus::NotServing);
    drop(watch);
    server
        .shutdown()
        .await
        .expect("serve returns Ok after a clean shutdown");
}

async fn revisions_commit_in_order_under_concurrent_writers(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    db.migrate().await;
    let store = switchyard::store::Store::connect(&db.url).await.unwrap();
    let writers = 40;
    let mut tasks = Vec::new();
    for i in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut w = store.begin_write().await.unwrap();
            sqlx::query(
                "INSERT INTO change_log (revision, entity, op, committed_at_us) VALUES ($1, 'test', 'upsert', $2)",
            )
            .bind(w.revision)
            .bind(w.now_us)
            .execute(&mut *w.tx)
            .await
            .unwrap();
            // Every other writer rolls back: its revision must be given back.
            if i % 2 == 0 {
                w.tx.commit().await.unwrap();
                true
            } else {
                w.tx.rollback().await.unwrap();
                false
            }
        }));
    }
    let mut committed = 0;
    for t in tasks {
        committed += usize::from(t.await.unwrap());
    }
    let revisions: Vec<i64> =
        sqlx::query_scalar("SELECT revision FROM change_log ORDER BY revision")
            .fetch_all(store.pool())
            .await
            .unwrap();
    let expected: Vec<i64> = (1..=committed as i64).collect();
    assert_eq!(revisions, expected, "revisions are dense and in order");
    assert_eq!(store.current_revision().await.unwrap(), committed as i64);
    store.close().await;
}
