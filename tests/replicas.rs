//! The fleet shape: replicas sharing PostgreSQL and Redis.

mod common;

use std::{sync::Arc, time::Duration};

use common::*;
use switchyard::{
    api::v1::*,
    cache::ResolutionCache,
    store::Store,
    tenant::{Source, TenantFields, Tenants},
};
use tonic::Code;

async fn fleet() -> Option<(TestDb, String)> {
    let db = TestDb::new(Backend::Postgres).await?;
    db.migrate().await;
    let redis = redis_url().await?;
    Some((db, redis))
}

fn replica_config(db: &TestDb, redis: &str, prefix: &str) -> switchyard::config::Config {
    let mut c = test_config(db);
    c.redis_url = Some(redis.to_owned());
    c.redis_prefix = prefix.to_owned();
    // Poll once a minute only: what arrives sooner came through pub/sub.
    c.sync_interval_ms = 60_000;
    c
}

async fn resolved_id(server: &TestServer, key: &str) -> Option<String> {
    server
        .tenants(ADMIN)
        .await
        .resolve_tenant(ResolveTenantRequest { key: key.into() })
        .await
        .ok()
        .and_then(|r| r.into_inner().tenant.map(|t| t.id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_on_one_replica_reaches_the_other_through_redis_pubsub() {
    let Some((db, redis)) = fleet().await else {
        return;
    };
    let prefix = unique_prefix();
    let one = TestServer::start(replica_config(&db, &redis, &prefix)).await;
    let two = TestServer::start(replica_config(&db, &redis, &prefix)).await;
    // Both subscribed before the change (the subscription is asynchronous).
    tokio::time::sleep(Duration::from_millis(300)).await;

    one.tenants(ADMIN)
        .await
        .create_tenant(CreateTenantRequest {
            tenant: Some(Tenant {
                id: "a".into(),
                patterns: vec!["*.a.example".into()],
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    wait_until(Duration::from_secs(10), || async {
        resolved_id(&two, "x.a.example").await.as_deref() == Some("a")
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
    wait_until(Duration::from_secs(10), || async {
        resolved_id(&one, "x.a.example").await.is_none()
    })
    .await;
    let e = one
        .tenants(ADMIN)
        .await
        .resolve_tenant(ResolveTenantRequest {
            key: "x.a.example".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    one.shutdown().await.unwrap();
    two.shutdown().await.unwrap();
}

/// Before its matcher is loaded a replica answers from Redis, then from the
/// database (caching the answer in Redis); a tenant change retires every
/// cached answer at once; entries never answer for another key's tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_cache_serves_cold_replicas_and_is_retired_by_changes() {
    let Some((db, redis)) = fleet().await else {
        return;
    };
    let store = Store::connect(&db.url).await.unwrap();
    let client = redis::Client::open(redis.as_str()).unwrap();
    let conn = redis::aio::ConnectionManager::new(client).await.unwrap();
    let prefix = unique_prefix();
    let cache = || ResolutionCache::Redis {
        conn: conn.clone(),
        prefix: prefix.clone(),
    };

    let writer = Tenants::new(store.clone(), cache(), 0);
    let fields = |p: &str| TenantFields {
        patterns: vec![p.to_owned()],
        ..Default::default()
    };
    writer.create("a", &fields("*.a.example")).await.unwrap();
    let b = writer.create("b", &fields("*.b.example")).await.unwrap();

    // Two cold replicas (no matcher) at the same generation share the cache.
    let cold1 = Arc::new(Tenants::new(store.clone(), cache(), b.revision));
    let cold2 = Arc::new(Tenants::new(store.clone(), cache(), b.revision));
    let r = cold1.resolve("x.a.example").await.unwrap();
    assert_eq!((r.tenant.id.as_str(), r.source), ("a", Source::Database));
    let r = cold2.resolve("x.a.example").await.unwrap();
    assert_eq!((r.tenant.id.as_str(), r.source), ("a", Source::Redis));
    let r = cold2.resolve("y.b.example").await.unwrap();
    assert_eq!((r.tenant.id.as_str(), r.source), ("b", Source::Database));
    let r = cold1.resolve("y.b.example").await.unwrap();
    assert_eq!(
        (r.tenant.id.as_str(), &*r.pattern, r.source),
        ("b", "*.b.example", Source::Redis)
    );

    // A change (here: a is deleted) retires the cached answers at once.
    let revision = writer.delete("a", 0).await.unwrap();
    cold1.changed(revision);
    let e = cold1.resolve("x.a.example").await.unwrap_err();
    assert_eq!(e.kind(), switchyard::error::ErrorKind::NotFound);
    cold2.changed(revision);
    assert!(
        cold2.resolve("x.a.example").await.is_err(),
        "the cached answer is not served"
    );

    // Every cached entry expires within 60 s.
    let mut c = conn.clone();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(!keys.is_empty());
    for k in keys {
        let ttl: i64 = redis::cmd("TTL").arg(&k).query_async(&mut c).await.unwrap();
        assert!((1..=60).contains(&ttl), "{k}: ttl {ttl}");
    }

    // Once loaded, answers are local.
    cold1.reload().await.unwrap();
    assert_eq!(
        cold1.resolve("y.b.example").await.unwrap().source,
        Source::Local
    );
    store.close().await;
}
