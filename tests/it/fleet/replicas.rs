//! The fleet shape: replicas sharing PostgreSQL and Redis.

use std::{sync::Arc, time::Duration};

use crate::common::*;
use switchyard::{
    api::v1::*,
    store::Store,
    tenant::cache::ResolutionCache,
    tenant::{ResolvedFrom as Source, TenantFields, Tenants},
};
use tonic::Code;

/// Who the writes made directly through `Tenants` are, in the audit log.
fn by() -> switchyard::audit::Attribution {
    switchyard::audit::Attribution::automatic("test", String::new(), None)
}

async fn fleet() -> Option<(TestDb, String)> {
    let db = TestDb::new(Backend::Postgres).await?;
    db.migrate().await;
    let redis = redis_url().await?;
    Some((db, redis))
}

fn replica_config(db: &TestDb, redis: &str, prefix: &str) -> switchyard::config::Config {
    let mut c = test_config(db);
    c.storage.redis_url = Some(redis.to_owned());
    c.storage.redis_prefix = prefix.to_owned();
    // Poll once a minute only: what arrives sooner came through pub/sub.
    c.storage.sync_interval_ms = 60_000;
    c
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
    writer
        .create(&tenant_id("a"), &fields("*.a.example"), &by())
        .await
        .unwrap();
    let (b, _) = writer
        .create(&tenant_id("b"), &fields("*.b.example"), &by())
        .await
        .unwrap();

    // Two cold replicas (no matcher) start at the stored generation, the last
    // tenant change, and so share the cache.
    let generation = Tenants::stored_generation(&store).await.unwrap();
    assert_eq!(generation, b.revision);
    let cold1 = Arc::new(Tenants::new(store.clone(), cache(), generation));
    let cold2 = Arc::new(Tenants::new(store.clone(), cache(), generation));
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
    let revision = writer
        .delete(&tenant_id("a"), 0, &by())
        .await
        .unwrap()
        .0
        .revision;
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

async fn admin_watch(server: &TestServer, tenant: &str) -> tonic::Streaming<WatchFlagsResponse> {
    server
        .flags(ADMIN)
        .await
        .watch_flags(WatchFlagsRequest {
            tenant_id: tenant.into(),
            since_revision: 0,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

async fn next_change(s: &mut tonic::Streaming<WatchFlagsResponse>) -> WatchFlagsResponse {
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(15), s.message())
            .await
            .expect("an event within 15 s")
            .expect("no stream error")
            .expect("the stream goes on");
        if ev.r#type() != FlagEventType::Heartbeat {
            return ev;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_on_one_replica_receives_a_change_made_on_another() {
    let Some((db, redis)) = fleet().await else {
        return;
    };
    let prefix = unique_prefix();
    let one = TestServer::start(replica_config(&db, &redis, &prefix)).await;
    let two = TestServer::start(replica_config(&db, &redis, &prefix)).await;
    setup_tenants(&one, &["a"]).await;
    one.flags(ADMIN)
        .await
        .create_flag(new_flag("f", FlagType::Bool, v_bool(false)))
        .await
        .unwrap();
    wait_until(Duration::from_secs(10), || async {
        two.flags(ADMIN)
            .await
            .get_flag(GetFlagRequest {
                flag_key: "f".into(),
            })
            .await
            .is_ok()
    })
    .await;
    let mut s = admin_watch(&two, "a").await;
    assert_eq!(next_change(&mut s).await.r#type(), FlagEventType::Snapshot);
    let revision = set_override(&one, "a", "f", v_bool(true)).await;
    let ev = next_change(&mut s).await;
    assert_eq!(ev.r#type(), FlagEventType::Upsert);
    assert_eq!(ev.revision, revision);
    assert_eq!(ev.flag.unwrap().source, "tenant");
    one.shutdown().await.unwrap();
    two.shutdown().await.unwrap();
}

/// Redis drops pub/sub messages while a subscriber is disconnected. With every
/// pub/sub connection killed again and again while changes are made, every
/// replica and every subscriber still reaches the latest revision, in order,
/// with nothing delivered twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_pubsub_connections_lose_no_change_and_repeat_none() {
    let Some((db, redis)) = fleet().await else {
        return;
    };
    let prefix = unique_prefix();
    let one = TestServer::start(replica_config(&db, &redis, &prefix)).await;
    let two = TestServer::start(replica_config(&db, &redis, &prefix)).await;
    setup_tenants(&one, &["a"]).await;
    one.flags(ADMIN)
        .await
        .create_flag(new_flag("n", FlagType::Number, v_num(0.0)))
        .await
        .unwrap();
    wait_until(Duration::from_secs(10), || async {
        two.flags(ADMIN)
            .await
            .get_flag(GetFlagRequest {
                flag_key: "n".into(),
            })
            .await
            .is_ok()
    })
    .await;
    let mut s1 = admin_watch(&one, "a").await;
    let mut s2 = admin_watch(&two, "a").await;
    let start1 = next_change(&mut s1).await.revision;
    let start2 = next_change(&mut s2).await.revision;

    let client = redis::Client::open(redis.as_str()).unwrap();
    let mut kill = client.get_multiplexed_async_connection().await.unwrap();
    let changes = 12;
    let mut last = 0;
    for i in 1..=changes {
        // Kill both subscriptions before every change, so every change
        // (the last one too) is made while they are down: only the resync
        // after reconnecting finds it.
        let channel = format!("{prefix}feature_flags_events");
        wait_until(Duration::from_secs(10), || {
            let mut c = kill.clone();
            let channel = channel.clone();
            async move {
                let subs: (String, i64) = redis::cmd("PUBSUB")
                    .arg("NUMSUB")
                    .arg(&channel)
                    .query_async(&mut c)
                    .await
                    .unwrap();
                subs.1 >= 2
            }
        })
        .await;
        {
            let killed: i64 = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("TYPE")
                .arg("pubsub")
                .query_async(&mut kill)
                .await
                .unwrap();
            assert!(killed >= 2, "both replicas' subscriptions were killed");
        }
        last = set_override(&one, "a", "n", v_num(f64::from(i))).await;
    }
    // One deadline for everything, well under the 60 s poll: what arrives
    // came through the resync after reconnecting, not the poll.
    let collect = async {
        for (s, start) in [(&mut s1, start1), (&mut s2, start2)] {
            let mut revisions = Vec::new();
            let mut value = None;
            while revisions.last().copied().unwrap_or(start) < last {
                let ev = next_change(s).await;
                match ev.r#type() {
                    FlagEventType::Upsert => {
                        revisions.push(ev.revision);
                        value = ev.flag.and_then(|f| f.value);
                    }
                    // A replica may resync with a snapshot; it still moves forward.
                    FlagEventType::Snapshot => {
                        revisions.push(ev.revision);
                        value = ev.flags[0].value.clone();
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert!(
                revisions.windows(2).all(|w| w[0] < w[1]),
                "in order, none twice: {revisions:?}"
            );
            assert_eq!(revisions.last(), Some(&last));
            assert_eq!(value, Some(v_num(f64::from(changes))));
        }
    };
    tokio::time::timeout(Duration::from_secs(15), collect)
        .await
        .expect("every subscriber reaches the latest revision well before the poll");
    let e = two
        .flags(ADMIN)
        .await
        .evaluate_flag(EvaluateFlagRequest {
            flag_key: "n".into(),
            target: Some(evaluate_flag_request::Target::TenantId("a".into())),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (e.revision >= last, e.value),
        (true, Some(v_num(f64::from(changes))))
    );
    one.shutdown().await.unwrap();
    two.shutdown().await.unwrap();
}

/// The REST shims in the fleet shape: an override written over REST on one
/// replica shows in the other's `/admin/feature-flags` array, and its REST
/// watch receives it, through Redis pub/sub (the poll is a minute).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_writes_on_one_replica_show_in_the_others_admin_array_and_watch() {
    let Some((db, redis)) = fleet().await else {
        return;
    };
    let prefix = unique_prefix();
    let one = TestServer::start(replica_config(&db, &redis, &prefix)).await;
    let two = TestServer::start(replica_config(&db, &redis, &prefix)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let admin = Some(ADMIN);
    let body = |v: serde_json::Value| Some(v);
    let r = http(
        &one,
        "POST",
        "/v1/tenants",
        admin,
        body(serde_json::json!({"id": "a", "patterns": ["a.example"]})),
    )
    .await;
    assert_eq!(r.status, 200);
    let r = http(
        &one,
        "POST",
        "/v1/flags",
        admin,
        body(serde_json::json!({"key": "f", "type": "FLAG_TYPE_STRING", "defaultValue": "off"})),
    )
    .await;
    assert_eq!(r.status, 200);

    // Two has both (through pub/sub) before its watch opens.
    wait_until(Duration::from_secs(10), || async {
        let r = http(&two, "GET", "/admin/feature-flags?tenant=a", admin, None).await;
        r.status == 200
            && r.json() == serde_json::json!([{"flag": "f", "value": "off", "source": "default", "variant": "default", "targeting": false}])
    })
    .await;
    let watch = http_send(&two, "GET", "/v1/flags:watch?tenantId=a", admin, None).await;
    assert_eq!(watch.status(), 200);
    let mut stream = Lines::new(watch.into_body());

    let r = http(
        &one,
        "PUT",
        "/v1/tenants/a/flags/f",
        admin,
        body(serde_json::json!("on")),
    )
    .await;
    assert_eq!(r.status, 200);
    let revision = r.json()["revision"].clone();
    wait_until(Duration::from_secs(10), || async {
        http(&two, "GET", "/admin/feature-flags?tenant=a", admin, None)
            .await
            .json()
            == serde_json::json!([{"flag": "f", "value": "on", "source": "tenant", "variant": "tenant", "targeting": false}])
    })
    .await;
    // The watch on the other replica: the snapshot, then the override.
    let upsert = loop {
        let event = stream.next().await;
        if event["result"]["type"] == "FLAG_EVENT_TYPE_UPSERT" {
            break event;
        }
    };
    assert_eq!(upsert["result"]["revision"], revision);
    assert_eq!(upsert["result"]["flag"]["value"], "on");
    drop(stream);
    one.shutdown().await.unwrap();
    two.shutdown().await.unwrap();
}

/// The change log is the truth and Redis only a doorbell: with Redis killed,
/// and then frozen, a writer one call at a time goes on writing (it never
/// waits on the publish), and the other replica and its subscriber get every
/// change, in order, once by polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_go_on_while_redis_is_down_or_frozen_and_no_change_is_lost() {
    let Some((db, _)) = fleet().await else {
        return;
    };
    let port = free_port();
    let redis = OwnRedis::start(port);
    let prefix = unique_prefix();
    let config = || {
        let mut c = replica_config(&db, &redis.url(), &prefix);
        // The poll is what covers a lost doorbell.
        c.storage.sync_interval_ms = 200;
        c
    };
    let one = TestServer::start(config()).await;
    let two = TestServer::start(config()).await;
    one.flags(ADMIN)
        .await
        .create_flag(new_flag("n", FlagType::Number, v_num(-1.0)))
        .await
        .unwrap();
    wait_until(Duration::from_secs(10), || async {
        two.flags(ADMIN)
            .await
            .get_flag(GetFlagRequest {
                flag_key: "n".into(),
            })
            .await
            .is_ok()
    })
    .await;
    let mut watch = admin_watch(&two, "").await;
    let start = next_change(&mut watch).await.revision;

    let flags = one.flags(ADMIN).await;
    let write = |i: i32| {
        let req = UpdateFlagRequest {
            flag: Some(Flag {
                key: "n".into(),
                stored_value: Some(v_num(f64::from(i))),
                ..Default::default()
            }),
            update_mask: Some(pbjson_types::FieldMask {
                paths: vec!["stored_value".into()],
            }),
            ..Default::default()
        };
        let mut flags = flags.clone();
        async move {
            flags
                .update_flag(req)
                .await
                .unwrap()
                .into_inner()
                .flag
                .unwrap()
                .revision
        }
    };
    // 20 writes with Redis killed, 20 with a new Redis frozen. A write that
    // waited on its publish took about 0.5 s and 1 s here: 40 of them could
    // not end within the guard below (a hang guard, not a latency figure:
    // those are in `cargo bench --bench propagation`).
    let mut last = 0;
    let writes = async {
        redis.signal("-KILL");
        for i in 0..20 {
            last = write(i).await;
        }
        let frozen = OwnRedis::start(port);
        // The replicas reconnect to it before it freezes.
        tokio::time::sleep(Duration::from_millis(500)).await;
        frozen.signal("-STOP");
        for i in 20..40 {
            last = write(i).await;
        }
        frozen.signal("-CONT");
        frozen
    };
    let frozen = tokio::time::timeout(Duration::from_secs(8), writes)
        .await
        .expect("40 writes end while Redis is down and frozen: none waits on it");
    drop(flags);

    // Every change reaches the other replica's subscriber, in order, once.
    let collect = async {
        let mut revisions = Vec::new();
        let mut value = None;
        while revisions.last().copied().unwrap_or(start) < last {
            let ev = next_change(&mut watch).await;
            match ev.r#type() {
                FlagEventType::Upsert => value = ev.flag.and_then(|f| f.value),
                FlagEventType::Snapshot => value = ev.flags[0].value.clone(),
                other => panic!("unexpected {other:?}"),
            }
            revisions.push(ev.revision);
        }
        assert!(
            revisions.windows(2).all(|w| w[0] < w[1]),
            "in order, none twice: {revisions:?}"
        );
        assert_eq!(revisions.last(), Some(&last));
        assert_eq!(value, Some(v_num(39.0)));
    };
    tokio::time::timeout(Duration::from_secs(15), collect)
        .await
        .expect("the subscriber on the other replica gets every change");
    for server in [&one, &two] {
        let listed = server
            .flags(ADMIN)
            .await
            .list_flags(ListFlagsRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert!(listed.revision >= last);
        assert_eq!(listed.flags[0].value, Some(v_num(39.0)));
    }
    frozen.kill();
    one.shutdown().await.unwrap();
    two.shutdown().await.unwrap();
}
