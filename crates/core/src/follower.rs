//! Keeps a replica in step with the change log.
//!
//! The change log in the database is the truth; the bus is only a doorbell.
//! Whenever the bus rings (a change event with a revision this replica has not
//! applied, or a resync after a Redis reconnect), and at every poll interval
//! in any case, the [`Follower`] reads the changes after the last revision it
//! applied, in order, and applies them: a tenant change swaps in a new matcher
//! and retires the Redis cache generation; every change goes to the flag state
//! and its watch hub. So a lost pub/sub message, a gap, or a replica that
//! heard nothing for a while all converge by the next poll.
//!
//! The replica that commits a change announces it ([`Announce`]): the
//! follower catches up before returning, so a caller reads its own writes on
//! the replica it wrote to, then publishes it in the background within a
//! bounded time: a write never waits on Redis.
//!
//! A row this release cannot decode is never skipped: the follower stops
//! before it, reports [`Readiness::Stuck`] (health turns NOT_SERVING) and logs
//! the revision, and tries again at every poll, so it goes on by itself once
//! the row is readable (or after a reload by a newer release).

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use tokio::sync::{broadcast::error::RecvError, watch};
use tokio_util::sync::CancellationToken;

use crate::{
    bus::{Bus, BusMessage, ChangeEvent},
    changelog::{Announce, ChangeLog, Committed, Read, Undecodable},
    error::Result,
    flag::{self, state::Flags},
    store::Store,
    telemetry::metrics,
    tenant::Tenants,
};

/// The most changes read from the log in one query.
const BATCH: i64 = 1000;

/// Whether this replica is following the change log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Every readable change is applied (or about to be).
    Ready,
    /// The change at `revision` cannot be decoded; nothing after it is
    /// applied until it can be.
    Stuck {
        /// The first revision not applied.
        revision: i64,
        /// Why it cannot be decoded (for the log).
        reason: String,
    },
}

/// The follower of one replica.
pub struct Follower {
    store: Store,
    bus: Bus,
    tenants: Arc<Tenants>,
    flags: Arc<Flags>,
    applied: AtomicI64,
    /// The highest revision this replica has heard of (bus events, rows read).
    latest_known: AtomicI64,
    lock: tokio::sync::Mutex<()>,
    readiness: watch::Sender<Readiness>,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("applied", &self.applied.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Follower {
    /// Creates a follower that has applied everything up to `applied`.
    pub fn new(
        store: Store,
        bus: Bus,
        tenants: Arc<Tenants>,
        flags: Arc<Flags>,
        applied: i64,
    ) -> Follower {
        Follower {
            store,
            bus,
            tenants,
            flags,
            applied: AtomicI64::new(applied),
            latest_known: AtomicI64::new(applied),
            lock: tokio::sync::Mutex::new(()),
            readiness: watch::Sender::new(Readiness::Ready),
        }
    }

    /// Returns the last revision this replica has applied.
    pub fn applied(&self) -> i64 {
        self.applied.load(Ordering::SeqCst)
    }

    /// Returns a receiver of this replica's readiness.
    pub fn readiness(&self) -> watch::Receiver<Readiness> {
        self.readiness.subscribe()
    }

    /// Applies every readable change committed after the last applied
    /// revision. Stopping before an undecodable row is not an error here: it
    /// is reported through [`Follower::readiness`] and the log.
    pub async fn catch_up(&self) -> Result<()> {
        let _one_at_a_time = self.lock.lock().await;
        let mut applied = self.applied();
        let mut tenant_change = None;
        // The tenants changed, to apply to the matcher one by one; `None`
        // after a full reload (the matcher is loaded whole).
        let mut changed_tenants: Option<Vec<String>> = Some(Vec::new());
        let mut stuck = None;
        loop {
            let batch = match self.store.changes_after(applied, BATCH).await? {
                Read::Pruned => {
                    applied = self.reload_all(&mut tenant_change).await?;
                    changed_tenants = None;
                    continue;
                }
                Read::Batch(batch) => batch,
            };
            let now_us = crate::store::now_us();
            for entry in batch.entries {
                applied = entry.revision;
                let lag_us = now_us.saturating_sub(entry.committed_at_us).max(0);
                metrics::propagation(Duration::from_micros(lag_us.unsigned_abs()));
                if entry.change.is_tenant_change() {
                    tenant_change = Some(entry.revision);
                    if let (Some(ids), Some(id)) =
                        (changed_tenants.as_mut(), entry.change.tenant_id())
                        && !ids.iter().any(|i| i == id)
                    {
                        ids.push(id.to_owned());
                    }
                }
                // The flag state and its subscribers see every revision, so
                // that their revision always names a complete prefix.
                self.flags.apply(flag::FlagChange::from(entry));
            }
            if batch.undecodable.is_some() {
                stuck = batch.undecodable;
                break;
            }
            if !batch.full {
                break;
            }
        }
        if let Some(revision) = tenant_change {
            self.tenants.changed(revision);
            match &changed_tenants {
                Some(ids) => self.tenants.apply_changes(ids).await?,
                None => self.tenants.reload().await?,
            }
        }
        self.applied.store(applied, Ordering::SeqCst);
        let mut latest = self
            .latest_known
            .fetch_max(applied, Ordering::SeqCst)
            .max(applied);
        if stuck.is_some() {
            // Nothing after the stuck row is read: ask how far the log goes.
            latest = latest.max(self.store.current_revision().await.unwrap_or(latest));
            self.latest_known.fetch_max(latest, Ordering::SeqCst);
        }
        metrics::follower(latest - applied, stuck.is_none());
        self.report(stuck);
        Ok(())
    }

    /// Publishes a readiness change, logging it once when it happens.
    fn report(&self, stuck: Option<Undecodable>) {
        let now = match stuck {
            None => Readiness::Ready,
            Some(Undecodable { revision, reason }) => Readiness::Stuck { revision, reason },
        };
        self.readiness.send_if_modified(|current| {
            if *current == now {
                return false;
            }
            match &now {
                Readiness::Stuck { revision, reason } => tracing::error!(
                    revision,
                    reason = %reason,
                    "cannot decode the change at this revision; not applying it or anything after it, \
                     and reporting NOT_SERVING, until it can be read (a newer release, or a reload)"
                ),
                Readiness::Ready => tracing::info!(
                    applied = self.applied(),
                    "following the change log again"
                ),
            }
            *current = now;
            true
        });
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
                        Ok(BusMessage::Event(ev)) => {
                            metrics::event_received("event");
                            self.latest_known.fetch_max(ev.revision, Ordering::SeqCst);
                            ev.revision > self.applied()
                        }
                        Ok(BusMessage::Resync) => {
                            metrics::event_received("resync");
                            true
                        }
                        Err(RecvError::Lagged(_)) => true,
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

/// The longest a change announcement may take to publish.
const PUBLISH_TIMEOUT: Duration = Duration::from_millis(250);

impl Announce for Follower {
    fn committed<'a>(
        &'a self,
        change: &'a Committed,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            // Applied here first (the caller reads its own write, and this
            // replica's subscribers are not behind the others'); the
            // doorbell is rung after, off the caller's path and bounded, so a
            // Redis outage never holds a write: a replica that misses it
            // reads the change at its next poll.
            if let Err(e) = self.catch_up().await {
                tracing::warn!(error = %e, revision = change.revision, "catching up after a local commit failed; the poll will retry");
            }
            let bus = self.bus.clone();
            let event = ChangeEvent::from(change);
            tokio::spawn(async move {
                if tokio::time::timeout(PUBLISH_TIMEOUT, bus.publish(&event))
                    .await
                    .is_err()
                {
                    tracing::warn!(
                        revision = event.revision,
                        timeout_ms = PUBLISH_TIMEOUT.as_millis() as u64,
                        "publishing the change timed out; replicas will catch up by polling"
                    );
                }
            });
        })
    }
}
