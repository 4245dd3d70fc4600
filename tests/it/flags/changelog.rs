//! The change log's history stays readable, and a row that is not is never
//! skipped.
//!
//! `tests/golden/changelog/v<N>.json` holds real rows written by the release
//! that introduced payload format N. Each is loaded into a fresh database on
//! both backends, where a replica must decode and apply all of them, and the
//! state and events they give are checked. A row this release cannot decode
//! makes a replica stop before it and report NOT_SERVING until it can be read.

use std::{sync::Arc, time::Duration};

use crate::common::*;
use serde::Deserialize;
use serde_json::json;
use switchyard::api::health::{HealthCheckRequest, health_check_response::ServingStatus};
use switchyard::{
    api::v1::{GetFlagRequest, GetTenantRequest},
    bus::Bus,
    changelog::{ChangeKind, ChangeLog, Read, wire},
    flag::{
        self, EnvOverrides, Event,
        state::{FlagState, Flags},
    },
    follower::{Follower, Readiness},
    store::Store,
    tenant::Tenants,
    tenant::cache::ResolutionCache,
};
use tonic::Code;

#[derive(Debug, Deserialize)]
struct Golden {
    format_version: u64,
    written_by: String,
    rows: Vec<GoldenRow>,
}

#[derive(Debug, Deserialize)]
struct GoldenRow {
    revision: i64,
    entity: String,
    op: String,
    tenant_id: Option<String>,
    flag_key: Option<String>,
    payload: Option<String>,
    committed_at_us: i64,
}

fn golden(version: u64) -> Golden {
    let path = format!(
        "{}/tests/golden/changelog/v{version}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("{path}: {e}: every payload format needs golden rows written by its release")
    });
    let g: Golden = serde_json::from_str(&text).expect("golden rows parse");
    assert_eq!(g.format_version, version, "{path}");
    assert!(!g.written_by.is_empty());
    g
}

/// Inserts one row as it is, in `tx`.
async fn insert_row(tx: &mut sqlx::Transaction<'static, sqlx::Any>, r: &GoldenRow) {
    sqlx::query(
        "INSERT INTO change_log (revision, entity, op, tenant_id, flag_key, payload, committed_at_us) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(r.revision)
    .bind(r.entity.clone())
    .bind(r.op.clone())
    .bind(r.tenant_id.clone())
    .bind(r.flag_key.clone())
    .bind(r.payload.clone())
    .bind(r.committed_at_us)
    .execute(&mut **tx)
    .await
    .unwrap();
}

/// Inserts `rows` as another replica's commits, with the revision counter.
async fn insert(store: &Store, rows: &[GoldenRow]) {
    let mut tx = store.pool().begin().await.unwrap();
    for r in rows {
        insert_row(&mut tx, r).await;
    }
    let last = rows.last().map_or(0, |r| r.revision);
    sqlx::query("UPDATE revision_counter SET value = $1 WHERE id = 1")
        .bind(last)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

/// One effective value as `key=value (source)`.
fn shown(e: &flag::Effective) -> String {
    format!("{}={} ({})", e.flag, e.value, e.source.as_str())
}

#[test]
fn every_payload_format_this_release_writes_has_golden_rows() {
    for version in 1..=wire::VERSION {
        golden(version);
    }
}

on_both_backends!(
    rows_written_by_0_1_0_decode_and_apply,
    rows_in_the_flagd_model_decode_and_apply,
    a_replica_stops_before_an_undecodable_row_and_goes_on_once_it_reads,
);

async fn rows_written_by_0_1_0_decode_and_apply(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    db.migrate().await;
    let store = Store::connect(&db.url).await.unwrap();
    let g = golden(1);
    insert(&store, &g.rows).await;

    // Every row decodes, to the kind its columns say.
    let Read::Batch(batch) = store.changes_after(0, 100).await.unwrap() else {
        panic!("the golden rows are contiguous");
    };
    assert_eq!(batch.undecodable, None);
    let kinds: Vec<ChangeKind> = batch.entries.iter().map(|e| e.change.kind()).collect();
    use ChangeKind::*;
    assert_eq!(
        kinds,
        [
            TenantUpsert,
            TenantUpsert,
            FlagUpsert,
            FlagUpsert,
            FlagUpsert,
            FlagUpsert,
            FlagUpsert,
            OverrideSet,
            OverrideSet,
            OverrideSet,
            FlagUpsert,
            OverrideClear,
            TenantDelete,
            FlagDelete,
            TenantUpsert,
        ]
    );

    // Each subscriber sees what those writes meant for it.
    let env = EnvOverrides::default();
    let events = |tenant: Option<&str>| -> Vec<String> {
        batch
            .entries
            .iter()
            .flat_map(|e| {
                let c = flag::FlagChange::from(e.clone());
                flag::events_for(&env, &c, tenant)
                    .into_iter()
                    .map(move |ev| match ev {
                        Event::Upsert(v) => format!("{} {}", e.revision, shown(&v)),
                        Event::Delete(k) => format!("{} delete {k}", e.revision),
                    })
            })
            .collect()
    };
    // Version 1 wrote integral numbers as doubles (`10.0`): they read back
    // as the integers they were sent as.
    let common = [
        "3 new-ui=false (default)",
        "4 banner=\"welcome\" (store)",
        "5 limits={\"limit\":10,\"name\":\"x\"} (default)",
        "6 regions=[\"eu\",1.5,true] (default)",
        "7 rate=0.25 (default)",
    ];
    let mut none: Vec<&str> = common.to_vec();
    none.extend(["11 new-ui=true (store)", "14 delete rate"]);
    assert_eq!(events(None), none);
    let mut a: Vec<&str> = common.to_vec();
    a.extend([
        "8 new-ui=true (tenant)",
        "9 banner=\"hi a\" (tenant)",
        "12 new-ui=true (store)",
        "14 delete rate",
    ]);
    assert_eq!(events(Some("a")), a);
    let mut b: Vec<&str> = common.to_vec();
    b.extend([
        "10 new-ui=true (tenant)",
        "13 new-ui=true (store)",
        "14 delete rate",
    ]);
    assert_eq!(events(Some("b")), b);

    // A replica that has applied nothing follows them all and ends in the
    // state the writes made.
    let flags = Arc::new(Flags::new(
        FlagState::default(),
        EnvOverrides::default(),
        64,
    ));
    let tenants = Arc::new(Tenants::new(store.clone(), ResolutionCache::Disabled, 0));
    let follower = Follower::new(store.clone(), Bus::in_process(), tenants, flags.clone(), 0);
    follower.catch_up().await.unwrap();
    assert_eq!(*follower.readiness().borrow(), Readiness::Ready);
    assert_eq!((follower.applied(), flags.revision()), (15, 15));
    let state = |tenant| -> Vec<String> { flags.snapshot(tenant).0.iter().map(shown).collect() };
    assert_eq!(
        state(None),
        [
            "banner=\"welcome\" (store)",
            "limits={\"limit\":10,\"name\":\"x\"} (default)",
            "new-ui=true (store)",
            "regions=[\"eu\",1.5,true] (default)",
        ]
    );
    assert_eq!(
        state(Some("a")),
        [
            "banner=\"hi a\" (tenant)",
            "limits={\"limit\":10,\"name\":\"x\"} (default)",
            "new-ui=true (store)",
            "regions=[\"eu\",1.5,true] (default)",
        ]
    );
    assert_eq!(state(Some("b")), state(None), "b's overrides left with b");
    let def = flags.get("new-ui").unwrap();
    assert_eq!(
        (
            def.description.as_str(),
            def.revision,
            def.default_value().unwrap()
        ),
        ("The new UI", 11, &json!(false))
    );
    store.close().await;
}

/// Format 2 (flagd's model): variants, a default variant or none, a rule
/// with `$evaluators` substituted, metadata, a disabled flag hiding a
/// tenant's override. Every row decodes and applies; each audience sees what
/// the writes meant for it, the rule evaluated for its tenant.
async fn rows_in_the_flagd_model_decode_and_apply(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    db.migrate().await;
    let store = Store::connect(&db.url).await.unwrap();
    let g = golden(2);
    insert(&store, &g.rows).await;
    let Read::Batch(batch) = store.changes_after(0, 100).await.unwrap() else {
        panic!("the golden rows are contiguous");
    };
    assert_eq!(batch.undecodable, None);
    let env = EnvOverrides::default();
    // The events, each as `revision key=value (source, variant)`.
    let events = |tenant: Option<&str>| -> Vec<String> {
        let mut state = FlagState::default();
        let mut out = Vec::new();
        for e in &batch.entries {
            // As a replica derives them: the prior state from its own.
            let mut c = flag::FlagChange::from(e.clone());
            c.prior = Some(state.prior(&c));
            state.apply(&c);
            out.extend(
                flag::events_for(&env, &c, tenant)
                    .into_iter()
                    .map(|ev| match ev {
                        Event::Upsert(v) => format!(
                            "{} {} ({})",
                            e.revision,
                            shown(&v),
                            v.variant.as_deref().unwrap_or("-")
                        ),
                        Event::Delete(k) => format!("{} delete {k}", e.revision),
                    }),
            );
        }
        out
    };
    // Tenant b: checkout's rule buckets b by its id ("old", a's is "new");
    // b's override
    // shows, is hidden while checkout is disabled (clearing it then changes
    // nothing b sees), and shows again; b's deletion restores the rule's
    // answer.
    assert_eq!(
        events(Some("b")),
        [
            "3 new-ui=false (default) (default)",
            "4 checkout=\"v1\" (targeting) (old)",
            "5 no-default=null (default) (-)",
            "7 checkout=\"v3\" (tenant) (tenant)",
            "8 checkout=null (disabled) (-)",
            "9 new-ui=true (store) (store)",
            "11 checkout=\"v1\" (targeting) (old)",
            "12 checkout=\"v3\" (tenant) (tenant)",
            "13 checkout=\"v1\" (targeting) (old)",
            "14 delete no-default",
        ]
    );
    // No tenant: the rule has no tenantId to bucket, so the default variant.
    assert_eq!(
        events(None),
        [
            "3 new-ui=false (default) (default)",
            "4 checkout=\"v1\" (default) (old)",
            "5 no-default=null (default) (-)",
            "8 checkout=null (disabled) (-)",
            "9 new-ui=true (store) (store)",
            "11 checkout=\"v1\" (default) (old)",
            "14 delete no-default",
        ]
    );

    // A replica that has applied nothing follows them all.
    let flags = Arc::new(Flags::new(
        FlagState::default(),
        EnvOverrides::default(),
        64,
    ));
    let tenants = Arc::new(Tenants::new(store.clone(), ResolutionCache::Disabled, 0));
    let follower = Follower::new(store.clone(), Bus::in_process(), tenants, flags.clone(), 0);
    follower.catch_up().await.unwrap();
    assert_eq!((follower.applied(), flags.revision()), (14, 14));
    let state = |tenant| -> Vec<String> { flags.snapshot(tenant).0.iter().map(shown).collect() };
    assert_eq!(
        state(Some("a")),
        ["checkout=\"v2\" (targeting)", "new-ui=true (tenant)"]
    );
    let def = flags.get("checkout").unwrap();
    assert_eq!(
        def.targeting.as_ref().unwrap().source()["if"][0],
        json!({"ends_with": [{"var": "email"}, "@beta.example"]}),
        "$evaluators were substituted when the rule was written"
    );
    assert_eq!(def.metadata["tier"], json!(1));
    store.close().await;
}

/// Commits `change_log` row `(entity, op, tenant, key, payload)` at the next
/// revision, as another replica (of another release) would; returns it.
async fn commit_row(
    store: &Store,
    entity: &str,
    op: &str,
    tenant: Option<&str>,
    key: Option<&str>,
    payload: Option<String>,
) -> i64 {
    let mut w = store.begin_write().await.unwrap();
    let row = GoldenRow {
        revision: w.revision,
        entity: entity.to_owned(),
        op: op.to_owned(),
        tenant_id: tenant.map(str::to_owned),
        flag_key: key.map(str::to_owned),
        payload,
        committed_at_us: w.now_us,
    };
    insert_row(&mut w.tx, &row).await;
    let revision = w.revision;
    w.tx.commit().await.unwrap();
    revision
}

/// A version 1 flag upsert of `key` at `revision`.
fn flag_upsert(key: &str, revision: i64) -> String {
    json!({"v": 1, "kind": "flag_upsert", "overridden": [], "flag": {
        "key": key, "type": "bool", "description": "", "default": true, "stored": null,
        "revision": revision, "created_at_us": 0, "updated_at_us": 0}})
    .to_string()
}

async fn health_of(server: &TestServer, service: &str) -> ServingStatus {
    server
        .client("")
        .await
        .health()
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status()
}

async fn wait_for_health(server: &TestServer, want: ServingStatus) {
    wait_until(Duration::from_secs(10), || async {
        health_of(server, "").await == want
            && health_of(server, "switchyard.v1.FlagService").await == want
            && health_of(server, "switchyard.v1.TenantService").await == want
    })
    .await;
}

async fn flag_exists(server: &TestServer, key: &str) -> Result<(), Code> {
    server
        .flags(ADMIN)
        .await
        .get_flag(GetFlagRequest {
            flag_key: key.into(),
        })
        .await
        .map(|_| ())
        .map_err(|s| s.code())
}

async fn a_replica_stops_before_an_undecodable_row_and_goes_on_once_it_reads(backend: Backend) {
    let Some((server, db)) = server_with(backend, |c| c.storage.sync_interval_ms = 50).await else {
        return;
    };
    let store = Store::connect(&db.url).await.unwrap();
    assert_eq!(health_of(&server, "").await, ServingStatus::Serving);

    // A flag change in a payload format from a newer release, then a
    // readable change after it.
    let bad = commit_row(
        &store,
        "flag",
        "upsert",
        None,
        Some("from-the-future"),
        Some(r#"{"v":2,"kind":"flag_upsert"}"#.into()),
    )
    .await;
    let after = commit_row(&store, "flag", "upsert", None, Some("after"), None).await;
    sqlx::query("UPDATE change_log SET payload = $1 WHERE revision = $2")
        .bind(flag_upsert("after", after))
        .bind(after)
        .execute(store.pool())
        .await
        .unwrap();
    wait_for_health(&server, ServingStatus::NotServing).await;
    assert_eq!(
        health_of(&server, "switchyard.v1.GatingService").await,
        ServingStatus::Serving,
        "gating does not serve replicated state"
    );
    // Nothing at or after the bad row is applied: it is not skipped.
    assert_eq!(flag_exists(&server, "after").await, Err(Code::NotFound));

    // Once the row reads (here: rewritten in a format this release reads),
    // the replica applies it and everything after, and serves again.
    sqlx::query("UPDATE change_log SET payload = $1 WHERE revision = $2")
        .bind(flag_upsert("from-the-future", bad))
        .bind(bad)
        .execute(store.pool())
        .await
        .unwrap();
    wait_for_health(&server, ServingStatus::Serving).await;
    assert_eq!(flag_exists(&server, "from-the-future").await, Ok(()));
    assert_eq!(flag_exists(&server, "after").await, Ok(()));

    // The same for a tenant change: a tenant deleted with a payload this
    // release cannot read.
    setup_tenants(&server, &["a"]).await;
    let bad = commit_row(
        &store,
        "tenant",
        "delete",
        Some("a"),
        None,
        Some(r#"{"kind":"tenant_delete","restored":[{"key":1}]}"#.into()),
    )
    .await;
    wait_for_health(&server, ServingStatus::NotServing).await;
    sqlx::query("DELETE FROM tenants WHERE id = 'a'")
        .execute(store.pool())
        .await
        .unwrap();
    sqlx::query("UPDATE change_log SET payload = $1 WHERE revision = $2")
        .bind(r#"{"v":1,"kind":"tenant_delete","restored":[]}"#)
        .bind(bad)
        .execute(store.pool())
        .await
        .unwrap();
    wait_for_health(&server, ServingStatus::Serving).await;
    let gone = server
        .tenants(ADMIN)
        .await
        .get_tenant(GetTenantRequest {
            tenant_id: "a".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    store.close().await;
    server.shutdown().await.unwrap();
}
