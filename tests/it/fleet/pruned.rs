//! The follower when the change log has been pruned past a replica.

use std::sync::Arc;

use crate::common::*;
use serde_json::json;
use switchyard::{
    audit::Attribution,
    bus::Bus,
    changelog::ChangeLog,
    flag::{
        self, EnvOverrides, FlagDef, FlagType,
        state::{FlagState, Flags},
    },
    follower::Follower,
    store::Store,
    tenant::Tenants,
    tenant::cache::ResolutionCache,
};

on_both_backends!(
    a_replica_whose_changes_were_all_pruned_reloads_instead_of_believing_itself_current
);

async fn a_replica_whose_changes_were_all_pruned_reloads_instead_of_believing_itself_current(
    backend: Backend,
) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    db.migrate().await;
    let store = Store::connect(&db.url).await.unwrap();
    // A replica that has applied nothing yet (revision 0)...
    let flags = Arc::new(Flags::new(
        FlagState::default(),
        EnvOverrides::default(),
        16,
    ));
    let tenants = Arc::new(Tenants::new(store.clone(), ResolutionCache::Disabled, 0));
    let sync = Follower::new(store.clone(), Bus::in_process(), tenants, flags.clone(), 0);
    // ...while three changes are committed elsewhere and the log is pruned.
    for (i, key) in ["a", "b", "c"].iter().enumerate() {
        flag::store::create(
            &store,
            FlagDef::legacy(
                key.to_string(),
                FlagType::Number,
                String::new(),
                json!(i),
                None,
            ),
            &Attribution::automatic("test", String::new(), None),
        )
        .await
        .unwrap();
    }
    assert_eq!(store.prune_change_log(i64::MAX).await.unwrap(), 3);

    sync.catch_up().await.unwrap();
    assert_eq!(sync.applied(), 3);
    assert_eq!(flags.revision(), 3);
    let (all, _) = flags.snapshot(None);
    assert_eq!(
        all.iter().map(|e| e.flag.as_str()).collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    store.close().await;
}
