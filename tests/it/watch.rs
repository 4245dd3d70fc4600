//! WatchFlags as long-lived subscribers meet it.

use std::time::Duration;

use crate::common::*;
use switchyard::api::v1::*;
use switchyard::changelog::ChangeLog;
use tonic::{Code, Streaming};

on_both_backends!(
    a_watch_starts_with_a_snapshot_then_sees_only_its_tenants_changes,
    a_resumed_watch_gets_exactly_the_missed_changes_once,
    a_resume_from_a_pruned_revision_gets_a_snapshot,
    a_subscriber_that_stops_reading_gets_a_snapshot_instead_of_a_backlog,
    heartbeats_carry_the_current_revision_and_shutdown_ends_streams_cleanly,
    a_large_flag_set_is_sent_in_parts_that_fit_the_message_limit,
    an_upsert_is_sent_only_where_the_effective_value_changed,
    a_subscriber_cut_off_inside_a_change_to_several_flags_gets_all_of_it,
);

pub async fn watch(
    server: &TestServer,
    token: &str,
    tenant: &str,
    since: i64,
) -> Streaming<WatchFlagsResponse> {
    server
        .flags(token)
        .await
        .watch_flags(WatchFlagsRequest {
            tenant_id: tenant.into(),
            since_revision: since,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

/// The next event that is not a heartbeat.
pub async fn next(s: &mut Streaming<WatchFlagsResponse>) -> WatchFlagsResponse {
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), s.message())
            .await
            .expect("an event within 10 s")
            .expect("no stream error")
            .expect("the stream goes on");
        if ev.r#type() != FlagEventType::Heartbeat {
            return ev;
        }
    }
}

fn describe(ev: &WatchFlagsResponse) -> (FlagEventType, String, String) {
    let f = ev.flag.clone().unwrap_or_default();
    (ev.r#type(), f.flag, f.source)
}

async fn a_watch_starts_with_a_snapshot_then_sees_only_its_tenants_changes(backend: Backend) {
    let Some((server, _db)) = server_on(backend).await else {
        return;
    };
    setup_tenants(&server, &["a", "b"]).await;
    let mut admin = server.flags(ADMIN).await;
    admin
        .create_flag(new_flag("one", FlagType::Bool, v_bool(false)))
        .await
        .unwrap();

    let mut s = watch(&server, &tenant_token("a"), "", 0).await;
    let snap = next(&mut s).await;
    assert_eq!(snap.r#type(), FlagEventType::Snapshot);
    assert_eq!(snap.flags.len(), 1);
    assert_eq!(snap.flags[0].flag, "one");

    admin
        .create_flag(new_flag("two", FlagType::String, v_str("x")))
        .await
        .unwrap();
    set_override(&server, "b", "one", v_bool(true)).await; // not a's
    set_override(&server, "a", "one", v_bool(true)).await;
    admin
        .delete_flag(DeleteFlagRequest {
            flag_key: "two".into(),
            expected_revision: 0,
        })
        .await
        .unwrap();

    let e1 = next(&mut s).await;
    assert_eq!(
        describe(&e1),
        (FlagEventType::Upsert, "two".into(), "default".into())
    );
    let e2 = next(&mut s).await;
    assert_eq!(
        describe(&e2),
        (FlagEventType::Upsert, "one".into(), "tenant".into())
    );
    assert_eq!(e2.flag.as_ref().unwrap().value, Some(v_bool(true)));
    assert_eq!(
        e2.revision,
        e1.revision + 2,
        "b's override (in between) was not sent to a"
    );
    let e3 = next(&mut s).await;
    assert_eq!(describe(&e3).0, FlagEventType::Delete);
    assert_eq!(e3.flag.unwrap().flag, "two");

    // A tenant token cannot watch another tenant.
    let e = server
        .flags(&tenant_token("a"))
        .await
        .watch_flags(WatchFlagsRequest {
            tenant_id: "b".into(),
            since_revision: 0,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = server
        .flags(ADMIN)
        .await
        .watch_flags(WatchFlagsRequest {
            tenant_id: "a".into(),
            since_revision: -1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = server
        .flags(ADMIN)
        .await
        .watch_flags(WatchFlagsRequest {
            tenant_id: "a".into(),
            since_revision: 1_000_000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    drop(s);
    server.shutdown().await.unwrap();
}

async fn a_resumed_watch_gets_exactly_the_missed_changes_once(backend: Backend) {
    let Some((server, _db)) = server_on(backend).await else {
        return;
    };
    setup_tenants(&server, &["a"]).await;
    let mut admin = server.flags(ADMIN).await;
    admin
        .create_flag(new_flag("f", FlagType::Number, v_num(0.0)))
        .await
        .unwrap();
    let mut s = watch(&server, ADMIN, "a", 0).await;
    let last = next(&mut s).await.revision;
    drop(s);

    for i in 1..=3 {
        set_override(&server, "a", "f", v_num(f64::from(i))).await;
    }
    let mut s = watch(&server, ADMIN, "a", last).await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let ev = next(&mut s).await;
        assert_eq!(ev.r#type(), FlagEventType::Upsert);
        seen.push((ev.revision, ev.flag.unwrap().value));
    }
    let revisions: Vec<i64> = seen.iter().map(|(r, _)| *r).collect();
    assert_eq!(revisions, vec![last + 1, last + 2, last + 3]);
    let values: Vec<_> = seen.into_iter().map(|(_, v)| v).collect();
    assert_eq!(
        values,
        vec![Some(v_num(1.0)), Some(v_num(2.0)), Some(v_num(3.0))]
    );

    // Nothing is delivered twice: the next event is the next change.
    set_override(&server, "a", "f", v_num(4.0)).await;
    let ev = next(&mut s).await;
    assert_eq!(
        (ev.revision, ev.flag.unwrap().value),
        (last + 4, Some(v_num(4.0)))
    );

    // Resuming at the current revision sends nothing old.
    let mut s2 = watch(&server, ADMIN, "a", last + 4).await;
    set_override(&server, "a", "f", v_num(5.0)).await;
    assert_eq!(next(&mut s2).await.revision, last + 5);
    drop(s2);
    drop(s);

    // A resume far behind (several replay pages) still gets every change, once.
    let from = last + 5;
    let missed = 250;
    for i in 0..missed {
        set_override(&server, "a", "f", v_num(f64::from(100 + i))).await;
    }
    let mut s3 = watch(&server, ADMIN, "a", from).await;
    for i in 0..missed {
        let ev = next(&mut s3).await;
        assert_eq!(ev.r#type(), FlagEventType::Upsert);
        assert_eq!(ev.revision, from + 1 + i64::from(i));
        assert_eq!(ev.flag.unwrap().value, Some(v_num(f64::from(100 + i))));
    }
    server.shutdown().await.unwrap();
}

async fn a_resume_from_a_pruned_revision_gets_a_snapshot(backend: Backend) {
    let Some((server, db)) = server_on(backend).await else {
        return;
    };
    setup_tenants(&server, &["a"]).await;
    let mut admin = server.flags(ADMIN).await;
    admin
        .create_flag(new_flag("f", FlagType::Number, v_num(0.0)))
        .await
        .unwrap();
    set_override(&server, "a", "f", v_num(1.0)).await;
    let store = switchyard::store::Store::connect(&db.url).await.unwrap();
    assert!(store.prune_change_log(i64::MAX).await.unwrap() > 0);
    store.close().await;

    let mut s = watch(&server, ADMIN, "a", 1).await;
    let ev = next(&mut s).await;
    assert_eq!(ev.r#type(), FlagEventType::Snapshot);
    assert_eq!(ev.flags[0].value, Some(v_num(1.0)));
    server.shutdown().await.unwrap();
}

async fn a_subscriber_that_stops_reading_gets_a_snapshot_instead_of_a_backlog(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    if backend == Backend::Postgres {
        db.migrate().await;
    }
    let mut config = test_config(&db);
    config.watch.watch_queue = 16;
    let server = TestServer::start(config).await;
    setup_tenants(&server, &["a"]).await;
    let mut admin = server.flags(ADMIN).await;
    admin
        .create_flag(new_flag("f", FlagType::String, v_str("")))
        .await
        .unwrap();
    // A client with the HTTP/2 default windows of 64 KiB (hyper's client
    // advertises 2 MiB, which would let the client itself buffer the backlog).
    let endpoint = switchyard::client::endpoint(&server.url())
        .unwrap()
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535);
    let mut client = switchyard::client::Client::connect_to(endpoint, ADMIN)
        .await
        .unwrap()
        .flags();
    let mut s = client
        .watch_flags(WatchFlagsRequest {
            tenant_id: "a".into(),
            since_revision: 0,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next(&mut s).await.r#type(), FlagEventType::Snapshot);

    // 400 changes of 4 KiB each while the subscriber does not read: far more
    // than the HTTP/2 windows, the server's send buffer and the hub's 16
    // messages can hold.
    let changes = 400;
    let big = "x".repeat(4096);
    for i in 0..changes {
        set_override(&server, "a", "f", v_str(&format!("{i}{big}"))).await;
    }
    let last_value = format!("{}{big}", changes - 1);
    let mut upserts = 0;
    let mut snapshot_seen = false;
    loop {
        let ev = next(&mut s).await;
        match ev.r#type() {
            FlagEventType::Upsert => {
                upserts += 1;
                if ev.flag.unwrap().value == Some(v_str(&last_value)) {
                    break;
                }
            }
            FlagEventType::Snapshot => {
                snapshot_seen = true;
                if ev.flags[0].value == Some(v_str(&last_value)) {
                    break;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(snapshot_seen, "the backlog was replaced by a snapshot");
    assert!(upserts < changes, "not every change was queued: {upserts}");
    server.shutdown().await.unwrap();
}

async fn heartbeats_carry_the_current_revision_and_shutdown_ends_streams_cleanly(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    if backend == Backend::Postgres {
        db.migrate().await;
    }
    let mut config = test_config(&db);
    config.watch.watch_heartbeat_s = 1;
    let server = TestServer::start(config).await;
    setup_tenants(&server, &["a", "b"]).await;
    server
        .flags(ADMIN)
        .await
        .create_flag(new_flag("f", FlagType::Bool, v_bool(false)))
        .await
        .unwrap();
    let mut s = watch(&server, ADMIN, "a", 0).await;
    let snap = next(&mut s).await;
    // A change a does not see still moves the revision its heartbeats carry.
    let rev = set_override(&server, "b", "f", v_bool(true)).await;
    let hb = loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), s.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if ev.r#type() == FlagEventType::Heartbeat && ev.revision >= rev {
            break ev;
        }
        assert_eq!(ev.r#type(), FlagEventType::Heartbeat, "{ev:?}");
    };
    assert!(hb.revision > snap.revision);

    let result = tokio::spawn(async move {
        loop {
            match s.message().await {
                Ok(Some(_)) => continue,
                other => return other.map(|_| ()),
            }
        }
    });
    server.shutdown().await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(10), result)
        .await
        .unwrap()
        .unwrap();
    assert!(end.is_ok(), "the stream ends with OK on shutdown: {end:?}");
}

async fn a_large_flag_set_is_sent_in_parts_that_fit_the_message_limit(backend: Backend) {
    let Some((server, _db)) = server_on(backend).await else {
        return;
    };
    let mut admin = server.flags(ADMIN).await;
    let value = "v".repeat(60 * 1024);
    let count = 80; // 4.8 MB of values: more than one 4 MiB message
    for i in 0..count {
        admin
            .create_flag(new_flag(
                &format!("big{i:02}"),
                FlagType::String,
                v_str(&value),
            ))
            .await
            .unwrap();
    }
    let mut s = watch(&server, ADMIN, "", 0).await;
    let mut flags = 0;
    let mut parts = 0;
    loop {
        let ev = next(&mut s).await;
        assert_eq!(ev.r#type(), FlagEventType::Snapshot);
        parts += 1;
        flags += ev.flags.len();
        if !ev.snapshot_continues {
            assert!(ev.revision >= count as i64, "the last part completes it");
            break;
        }
        // A part before the last completes nothing: resuming from it (0, a
        // fresh watch) gives a new snapshot, never a half cache.
        assert_eq!(ev.revision, 0);
    }
    assert_eq!(flags, count);
    assert!(parts >= 5, "about 1 MiB per part: {parts} parts");

    let mut listed = 0;
    let mut token = String::new();
    loop {
        let page = admin
            .list_flags(ListFlagsRequest {
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        listed += page.flags.len();
        assert!(page.flags.len() < count, "pages end early by size");
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(listed, count);
    server.shutdown().await.unwrap();
}

/// UPSERT means "created or its effective value changed": a description-only
/// update, or a new default under a stored value, is heard by nobody (the
/// revision still moves, as heartbeats show); a stored value is heard by
/// every audience without an override of it.
async fn an_upsert_is_sent_only_where_the_effective_value_changed(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    if backend == Backend::Postgres {
        db.migrate().await;
    }
    let mut config = test_config(&db);
    config.watch.watch_heartbeat_s = 1;
    let server = TestServer::start(config).await;
    setup_tenants(&server, &["a"]).await;
    let mut flags = server.flags(ADMIN).await;
    flags
        .create_flag(new_flag("f", FlagType::Number, v_num(1.0)))
        .await
        .unwrap();
    let update = |flag: Flag, path: &str| UpdateFlagRequest {
        flag: Some(Flag {
            key: "f".into(),
            ..flag
        }),
        update_mask: Some(pbjson_types::FieldMask {
            paths: vec![path.into()],
        }),
        ..Default::default()
    };
    let set = |flags: &mut switchyard::api::v1::flag_service_client::FlagServiceClient<_>, req| {
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
    set(
        &mut flags,
        update(
            Flag {
                stored_value: Some(v_num(5.0)),
                ..Default::default()
            },
            "stored_value",
        ),
    )
    .await;
    let mut none = watch(&server, ADMIN, "", 0).await;
    let mut a = watch(&server, ADMIN, "a", 0).await;
    next(&mut none).await;
    next(&mut a).await;

    set(
        &mut flags,
        update(
            Flag {
                description: "documented".into(),
                ..Default::default()
            },
            "description",
        ),
    )
    .await;
    let quiet = set(
        &mut flags,
        update(
            Flag {
                default_value: Some(v_num(2.0)),
                ..Default::default()
            },
            "default_value",
        ),
    )
    .await;
    // Both subscribers hear only heartbeats up to that revision.
    for s in [&mut none, &mut a] {
        loop {
            let ev = tokio::time::timeout(Duration::from_secs(10), s.message())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!(
                ev.r#type(),
                FlagEventType::Heartbeat,
                "nothing changed: {ev:?}"
            );
            if ev.revision >= quiet {
                break;
            }
        }
    }
    let loud = set(
        &mut flags,
        update(
            Flag {
                stored_value: Some(v_num(6.0)),
                ..Default::default()
            },
            "stored_value",
        ),
    )
    .await;
    for s in [&mut none, &mut a] {
        let ev = next(s).await;
        assert_eq!(
            (ev.r#type(), ev.revision, ev.flag.unwrap().value),
            (FlagEventType::Upsert, loud, Some(v_num(6.0)))
        );
    }
    server.shutdown().await.unwrap();
}

/// Deleting a tenant restores every flag it overrode, at one revision. A
/// subscriber cut off after the first of those events and resuming from the
/// last revision it received gets every one of them.
async fn a_subscriber_cut_off_inside_a_change_to_several_flags_gets_all_of_it(backend: Backend) {
    let Some((server, _db)) = server_on(backend).await else {
        return;
    };
    setup_tenants(&server, &["a"]).await;
    let mut flags = server.flags(ADMIN).await;
    for key in ["f1", "f2", "f3"] {
        flags
            .create_flag(new_flag(key, FlagType::Bool, v_bool(false)))
            .await
            .unwrap();
        set_override(&server, "a", key, v_bool(true)).await;
    }
    let mut s = watch(&server, ADMIN, "a", 0).await;
    let snap = next(&mut s).await;
    server
        .tenants(ADMIN)
        .await
        .delete_tenant(DeleteTenantRequest {
            tenant_id: "a".into(),
            expected_revision: 0,
        })
        .await
        .unwrap();
    // The first event of the group; then the subscriber goes away.
    let first = next(&mut s).await;
    assert_eq!(first.r#type(), FlagEventType::Upsert);
    assert_eq!(
        first.revision, snap.revision,
        "an event that does not complete its revision carries the one before"
    );
    drop(s);
    // (Created again, so that it can be watched: a deleted tenant cannot.)
    setup_tenants(&server, &["a"]).await;
    let mut resumed = watch(&server, ADMIN, "a", first.revision).await;
    let mut got = Vec::new();
    let last = loop {
        let ev = next(&mut resumed).await;
        assert_eq!(ev.r#type(), FlagEventType::Upsert, "{ev:?}");
        let f = ev.flag.unwrap();
        assert_eq!(
            (f.value, f.source.as_str()),
            (Some(v_bool(false)), "default")
        );
        got.push(f.flag);
        if ev.revision > snap.revision {
            break ev.revision;
        }
    };
    assert_eq!(got, ["f1", "f2", "f3"], "the whole change, once");
    assert_eq!(last, snap.revision + 1);
    server.shutdown().await.unwrap();
}

/// A replica serves at most `max_watchers` streams: one more is
/// RESOURCE_EXHAUSTED, and a stream that ends frees its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_serves_at_most_max_watchers_streams() {
    let Some((server, _db)) = server_with(Backend::Sqlite, |c| {
        c.watch.max_watchers = 2;
        c.watch.max_watchers_per_caller = Some(2);
    })
    .await
    else {
        return;
    };
    let open = || async {
        server
            .flags(ADMIN)
            .await
            .watch_flags(WatchFlagsRequest {
                tenant_id: String::new(),
                since_revision: 0,
                ..Default::default()
            })
            .await
            .map(tonic::Response::into_inner)
    };
    let mut first = open().await.unwrap();
    let mut second = open().await.unwrap();
    next(&mut first).await;
    next(&mut second).await;
    let e = open().await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    drop(first);
    wait_until(Duration::from_secs(10), || async { open().await.is_ok() }).await;
}
