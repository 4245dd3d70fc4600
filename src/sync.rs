//! Keeps a replica in step with the change log.
//!
//! The change log in the database is the truth; the bus is only a doorbell.
//! Whenever the bus rings (a change event with a revision this replica has not
//! applied, or a resync after a Redis reconnect), and at every poll interval
//! in any case, the follower reads the changes after the last revision it
//! applied, in order, and applies them: a tenant change swaps in a new matcher
//! and retires the Redis cache generation; every change goes to the flag state
//! and its watch hub. So a lost pub/sub message, a gap, or
//! a replica that heard nothing for a while all converge by the next poll.
//!
//! The replica that commits a change calls [`Sync::committed`], which
//! publishes it and catches up before returning, so a caller reads its own
//! writes on the replica it wrote to.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::{
    bus::{Bus, BusMessage, ChangeEvent},
    error::Result,
    flag::{self, Flags},
    store::Store,
    tenant::Tenants,
};

/// The most changes read from the log in one query.
const BATCH: i64 = 1000;

/// The follower of one replica.
pub struct Sync {
    store: Store,
    bus: Bus,
    tenants: Arc<Tenants>,
    flags: Arc<Flags>,
    applied: AtomicI64,
    lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Sync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sync")
            .field("applied", &self.applied.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Sync {
    /// Creates a follower that has applied everything up to `applied`.
    pub fn new(
        store: Store,
        bus: Bus,
        tenants: Arc<Tenants>,
        flags: Arc<Flags>,
        applied: i64,
    ) -> Sync {
        Sync {
            store,
            bus,
            tenants,
            flags,
            applied: AtomicI64::new(applied),
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Returns the last revision this replica has applied.
    pub fn applied(&self) -> i64 {
        self.applied.load(Ordering::SeqCst)
    }

    /// Announces a change this replica committed and applies it locally.
    pub async fn committed(&self, event: ChangeEvent) {
        self.bus.publish(&event).await;
        if let Err(e) = self.catch_up().await {
            tracing::warn!(error = %e, revision = event.revision, "catching up after a local commit failed; the poll will retry");
        }
    }

    /// Applies every change committed after the last applied revision.
    pub async fn catch_up(&self) -> Result<()> {
        let _one_at_a_time = self.lock.lock().await;
        let mut applied = self.applied();
        let mut tenant_change = None;
        loop {
            let mut changes = flag::store::changes_after(&self.store, applied, BATCH).await?;
            if changes.is_empty() && self.store.current_revision().await? > applied {
                // Committed revisions beyond ours but no rows: read again (a
                // commit may have landed in between); still nothing means
                // the log was pruned past this replica.
                changes = flag::store::changes_after(&self.store, applied, BATCH).await?;
                if changes.is_empty() {
                    applied = self.reload_all(&mut tenant_change).await?;
                    continue;
                }
            }
            // Revisions are dense and committed in order, so anything but
            // applied+1, applied+2, ... means rows were pruned under us.
            let contiguous = changes
                .iter()
                .zip(applied + 1..)
                .all(|((_, c), want)| c.revision == want);
            if !contiguous {
                applied = self.reload_all(&mut tenant_change).await?;
                continue;
            }
            let count = changes.len();
            for (entity, change) in changes {
                applied = change.revision;
                if entity == "tenant" {
                    tenant_change = Some(change.revision);
                }
                // The flag state and its subscribers see every revision, so
                // that their revision always names a complete prefix.
                self.flags.apply(change);
            }
            if (count as i64) < BATCH {
                break;
            }
        }
        if let Some(revision) = tenant_change {
            self.tenants.changed(revision);
            self.tenants.reload().await?;
        }
        self.applied.store(applied, Ordering::SeqCst);
        Ok(())
    }

    /// Reloads the whole state after the log was pruned past this replica;
    /// subscribers get a snapshot. Returns the revision reloaded.
    async fn reload_all(&self, tenant_change: &mut Option<i64>) -> Result<i64> {
        tracing::warn!(
            applied = self.applied(),
            "change log pruned past this replica; reloading all state"
        );
        let state = flag::store::load_state(&self.store).await?;
        let revision = state.revision;
        *tenant_change = Some(revision);
        self.flags.replace(state);
        Ok(revision)
    }

    /// Follows the bus and polls every `poll` until `stop` is cancelled.
    pub fn spawn(self: Arc<Self>, poll: Duration, stop: CancellationToken) {
        let mut rx = self.bus.subscribe();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(poll);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let due = tokio::select! {
                    () = stop.cancelled() => break,
                    _ = tick.tick() => true,
                    msg = rx.recv() => match msg {
                        Ok(BusMessage::Event(ev)) => ev.revision > self.applied(),
                        Ok(BusMessage::Resync) | Err(RecvError::Lagged(_)) => true,
                        Err(RecvError::Closed) => break,
                    },
                };
                if due
                    && let Err(e) = self.catch_up().await
                    && !stop.is_cancelled()
                {
                    tracing::warn!(error = %e, "catching up with the change log failed; retrying at the next poll");
                }
            }
        });
    }
}
