//! The fleet fault test: two replicas on PostgreSQL and a Redis of the
//! test's own, a writer on each, a subscriber on each with and without a
//! tenant; during the writes Redis is killed and restarted, then frozen and
//! thawed, one replica is restarted (its subscribers resume with their last
//! revision), and PostgreSQL's backends are terminated. At the end nothing is
//! lost, repeated or out of order, every subscriber's state equals ListFlags
//! on both replicas, and writes went on during the Redis outage.
//!
//! Bounded: about 25 s of writes at about 20 writes/s per writer, then at
//! most 30 s to converge.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

use crate::common::*;
use switchyard::{
    api::v1::*,
    client::{Client, Retry},
};
use tokio::sync::watch;

const FLAGS: usize = 5;

/// The phase writes are made in, for their latencies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Normal,
    RedisDown,
    RedisFrozen,
    Other,
}

/// What a subscriber holds: flag → value, and the revision it holds whole.
#[derive(Debug, Default, Clone)]
struct Held {
    values: BTreeMap<String, Option<pbjson_types::Value>>,
    revision: i64,
    /// Problems seen: a revision going back, an event repeated.
    faults: Vec<String>,
    resumes: u32,
}

/// Follows `tenant`'s watch on whichever address `addr` holds now, resuming
/// with the last revision on every disconnect, until `stop`.
async fn subscribe(
    addr: watch::Receiver<String>,
    tenant: &'static str,
    held: Arc<Mutex<Held>>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::SeqCst) {
        let url = addr.borrow().clone();
        let since = held.lock().unwrap().revision;
        let Ok(client) = Client::connect(&url, ADMIN).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let stream = client
            .flags()
            .watch_flags(WatchFlagsRequest {
                tenant_id: tenant.into(),
                since_revision: since,
                ..Default::default()
            })
            .await;
        let Ok(stream) = stream else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        held.lock().unwrap().resumes += 1;
        let mut stream = stream.into_inner();
        let mut snapshot: Option<BTreeMap<String, Option<pbjson_types::Value>>> = None;
        loop {
            let ev = tokio::select! {
                ev = stream.message() => ev,
                () = tokio::time::sleep(Duration::from_millis(200)) => {
                    if stop.load(Ordering::SeqCst) { return; }
                    continue;
                }
            };
            let Ok(Some(ev)) = ev else { break };
            let mut h = held.lock().unwrap();
            match ev.r#type() {
                FlagEventType::Snapshot => {
                    let part = snapshot.get_or_insert_with(BTreeMap::new);
                    for f in ev.flags {
                        part.insert(f.flag, f.value);
                    }
                    if !ev.snapshot_continues {
                        h.values = snapshot.take().unwrap_or_default();
                        if ev.revision < h.revision {
                            let r = (ev.revision, h.revision);
                            h.faults.push(format!("snapshot at {} after {}", r.0, r.1));
                        }
                        h.revision = ev.revision;
                    }
                }
                FlagEventType::Upsert | FlagEventType::Delete => {
                    if ev.revision <= h.revision {
                        let r = (ev.revision, h.revision);
                        h.faults.push(format!("event at {} after {}", r.0, r.1));
                    }
                    let upsert = ev.r#type() == FlagEventType::Upsert;
                    let f = ev.flag.unwrap_or_default();
                    if upsert {
                        h.values.insert(f.flag, f.value);
                    } else {
                        h.values.remove(&f.flag);
                    }
                    h.revision = h.revision.max(ev.revision);
                }
                FlagEventType::Heartbeat => h.revision = h.revision.max(ev.revision),
                FlagEventType::Unspecified => h.faults.push("an unspecified event".into()),
            }
        }
    }
}

fn number(n: f64) -> pbjson_types::Value {
    pbjson_types::Value {
        kind: Some(pbjson_types::value::Kind::NumberValue(n)),
    }
}

/// Writes until `stop`: stored values and tenant `a`'s overrides, by turns;
/// returns each write's latency with its phase, and the highest revision.
async fn writer(
    addr: watch::Receiver<String>,
    id: u32,
    phase: Arc<Mutex<Phase>>,
    stop: Arc<AtomicBool>,
    last: Arc<AtomicI64>,
) -> Vec<(Phase, Duration)> {
    let mut latencies = Vec::new();
    let retry = Retry {
        attempts: 200,
        backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
    };
    let mut i: u32 = 0;
    while !stop.load(Ordering::SeqCst) {
        i += 1;
        let key = format!("f{}", i as usize % FLAGS);
        let value = number(f64::from(id * 100_000 + i));
        let url = addr.borrow().clone();
        let Ok(client) = Client::connect_patiently(&url, ADMIN, Duration::from_secs(10)).await
        else {
            continue;
        };
        let at = *phase.lock().unwrap();
        let started = Instant::now();
        let revision = if i.is_multiple_of(2) {
            retry
                .call(|| {
                    let mut flags = client.flags();
                    let req = UpdateFlagRequest {
                        flag: Some(Flag {
                            key: key.clone(),
                            stored_value: Some(value.clone()),
                            ..Default::default()
                        }),
                        update_mask: Some(pbjson_types::FieldMask {
                            paths: vec!["stored_value".into()],
                        }),
                        ..Default::default()
                    };
                    async move { flags.update_flag(req).await }
                })
                .await
                .map(|r| r.into_inner().flag.unwrap_or_default().revision)
        } else {
            retry
                .call(|| {
                    let mut flags = client.flags();
                    let req = SetTenantOverrideRequest {
                        tenant_id: "a".into(),
                        flag_key: key.clone(),
                        value: Some(value.clone()),
                        ..Default::default()
                    };
                    async move { flags.set_tenant_override(req).await }
                })
                .await
                .map(|r| r.into_inner().revision)
        };
        let took = started.elapsed();
        match revision {
            Ok(r) => {
                last.fetch_max(r, Ordering::SeqCst);
                latencies.push((at, took));
            }
            // The replica it wrote to was being restarted: refused
            // (UNAVAILABLE), or the connection closed under the call (a
            // transport error, outcome unknown). The next write goes to the
            // new one; what committed is in the log either way.
            Err(s) if s.code() == tonic::Code::Unavailable || connection_lost(&s) => {}
            Err(s) => panic!("writer {id}: write {i} failed: {s:?}"),
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    latencies
}

/// Whether the call failed in the client's transport (the connection closed
/// under it) rather than with an answer from the server.
fn connection_lost(s: &tonic::Status) -> bool {
    std::error::Error::source(s).is_some_and(|e| e.is::<tonic::transport::Error>())
}

fn p99(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get((v.len() * 99).div_ceil(100).saturating_sub(1))
        .copied()
        .unwrap_or_default()
}

/// The values `ListFlags` gives for `tenant` on `url`, and the revision the
/// replica is at (an evaluation's: a listing's own revision is that of its
/// view's last change, which another tenant's writes do not move).
async fn listed(url: &str, tenant: &str) -> (BTreeMap<String, Option<pbjson_types::Value>>, i64) {
    let client = Client::connect(url, ADMIN).await.unwrap();
    let r = client
        .flags()
        .list_flags(ListFlagsRequest {
            tenant: tenant.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let first = r.flags.first().expect("the fleet has flags").flag.clone();
    let at = client
        .flags()
        .evaluate_flag(EvaluateFlagRequest {
            flag_key: first,
            target: None,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .revision;
    assert!(
        r.revision <= at,
        "a view's revision is one the replica reached"
    );
    (r.flags.into_iter().map(|f| (f.flag, f.value)).collect(), at)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_loses_repeats_and_reorders_nothing_under_faults() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    db.migrate().await;
    let port = free_port();
    let mut redis = Some(OwnRedis::start(port));
    let redis_url = redis.as_ref().unwrap().url();
    let prefix = unique_prefix();
    let config = || {
        let mut c = test_config(&db);
        c.storage.redis_url = Some(redis_url.clone());
        c.storage.redis_prefix = prefix.clone();
        c.storage.sync_interval_ms = 200;
        c.watch.watch_heartbeat_s = 1;
        c
    };
    let one = TestServer::start(config()).await;
    let mut two = Some(TestServer::start(config()).await);
    setup_tenants(&one, &["a"]).await;
    for k in 0..FLAGS {
        one.flags(ADMIN)
            .await
            .create_flag(new_flag(&format!("f{k}"), FlagType::Number, v_num(0.0)))
            .await
            .unwrap();
    }
    let (_tx_one, addr_one) = watch::channel(one.url());
    let (tx_two, addr_two) = watch::channel(two.as_ref().unwrap().url());

    let stop_writes = Arc::new(AtomicBool::new(false));
    let stop_watch = Arc::new(AtomicBool::new(false));
    let phase = Arc::new(Mutex::new(Phase::Normal));
    let last = Arc::new(AtomicI64::new(0));
    let mut subscribers = Vec::new();
    for (addr, name) in [(&addr_one, "one"), (&addr_two, "two")] {
        for tenant in ["", "a"] {
            let held = Arc::new(Mutex::new(Held::default()));
            let task = tokio::spawn(subscribe(
                addr.clone(),
                tenant,
                held.clone(),
                stop_watch.clone(),
            ));
            subscribers.push((name, tenant, held, task));
        }
    }
    let writers: Vec<_> = [(&addr_one, 1), (&addr_two, 2)]
        .into_iter()
        .map(|(addr, id)| {
            tokio::spawn(writer(
                addr.clone(),
                id,
                phase.clone(),
                stop_writes.clone(),
                last.clone(),
            ))
        })
        .collect();

    let set = |p: Phase| *phase.lock().unwrap() = p;
    let pause = |s: u64| tokio::time::sleep(Duration::from_secs(s));
    pause(3).await;
    // Redis killed, then restarted on the same port.
    set(Phase::RedisDown);
    redis.take().unwrap().kill();
    pause(3).await;
    set(Phase::Other);
    let restarted = OwnRedis::start(port);
    pause(2).await;
    // Frozen, then thawed.
    set(Phase::RedisFrozen);
    restarted.signal("-STOP");
    pause(3).await;
    restarted.signal("-CONT");
    set(Phase::Other);
    pause(2).await;
    // Replica two restarted: its subscribers resume on the new one.
    two.take().unwrap().shutdown().await.unwrap();
    let new_two = TestServer::start(config()).await;
    tx_two.send(new_two.url()).unwrap();
    pause(2).await;
    // PostgreSQL's backends of this database terminated.
    let terminated = db.terminate_backends().await;
    assert!(terminated > 0, "there were backends to terminate");
    pause(3).await;
    stop_writes.store(true, Ordering::SeqCst);
    let mut latencies = Vec::new();
    for w in writers {
        latencies.extend(w.await.unwrap());
    }
    let last = last.load(Ordering::SeqCst);

    // Every subscriber converges to the last revision.
    let deadline = Instant::now() + Duration::from_secs(30);
    for (name, tenant, held, _) in &subscribers {
        while held.lock().unwrap().revision < last {
            assert!(
                Instant::now() < deadline,
                "{name}/{tenant:?} stuck at {} of {last}",
                held.lock().unwrap().revision
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    stop_watch.store(true, Ordering::SeqCst);
    for (name, tenant, held, task) in subscribers {
        task.await.unwrap();
        let h = held.lock().unwrap().clone();
        assert!(h.faults.is_empty(), "{name}/{tenant:?}: {:?}", h.faults);
        for url in [one.url(), new_two.url()] {
            let (values, revision) = listed(&url, tenant).await;
            assert!(revision >= last);
            assert_eq!(h.values, values, "{name}/{tenant:?} against {url}");
        }
        if name == "two" {
            assert!(
                h.resumes >= 2,
                "{name}/{tenant:?} resumed after the restart"
            );
        }
    }

    // Writes never waited on Redis.
    let by = |p: Phase| -> Vec<Duration> {
        latencies
            .iter()
            .filter(|(q, _)| *q == p)
            .map(|(_, d)| *d)
            .collect()
    };
    let normal = p99(by(Phase::Normal));
    let down = p99(by(Phase::RedisDown));
    let frozen = p99(by(Phase::RedisFrozen));
    eprintln!(
        "writes: {} in all, last revision {last}; p99 normal {normal:?}, Redis down {down:?}, frozen {frozen:?}",
        latencies.len()
    );
    // Writes went on while Redis was down or frozen (a write that waited on
    // its publish would take the 250 ms publish timeout each). The latencies
    // printed above are figures, not assertions: timings belong in benches.
    assert!(by(Phase::RedisDown).len() >= 20 && by(Phase::RedisFrozen).len() >= 20);
    restarted.kill();
    one.shutdown().await.unwrap();
    new_two.shutdown().await.unwrap();
}
