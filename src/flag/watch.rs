//! One subscriber's watch stream.
//!
//! The stream subscribes to the replica's hub before it reads anything, so no
//! change can slip between its starting point and the live feed; it skips
//! every change at or below the revision it has already delivered, so nothing
//! is delivered twice.
//!
//! Memory is bounded whatever the subscriber does: the hub keeps the last
//! `watch_queue` messages for all subscribers together, and a subscriber that
//! stops reading (its HTTP/2 window full, the stream no longer polled) simply
//! falls behind. When it reads again and has lost messages, it gets a fresh
//! SNAPSHOT at the latest revision instead of the backlog.

use std::{
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use futures_util::Stream;

use super::{
    Change, Effective, Event, encoded_bound, events_for,
    fanout::{Received, Subscriber},
    hub::{HubMessage, Memo},
    state::Flags,
};
use crate::{
    changelog::{ChangeLog, Read},
    error::{Error, ErrorKind, Result},
    store::Store,
    telemetry::metrics,
};

/// Change-log rows read per page while replaying a resume. Pages are read
/// only when the subscriber has taken everything before, so a resume holds at
/// most one page in memory however far behind it starts.
const REPLAY_PAGE: i64 = 100;

/// What a subscriber receives.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchItem {
    /// Every effective flag at `revision`, in parts that each fit in one
    /// message; `continues` is set on every part but the last.
    Snapshot {
        /// The flags (of this part).
        flags: Vec<Effective>,
        /// Their revision.
        revision: i64,
        /// More parts follow.
        continues: bool,
    },
    /// A flag's effective value changed at `revision`.
    Upsert {
        /// The new value.
        flag: Effective,
        /// The change's revision.
        revision: i64,
        /// Commit time, µs since the epoch.
        committed_at_us: i64,
    },
    /// A flag was deleted at `revision`.
    Delete {
        /// The flag's key.
        flag: String,
        /// The change's revision.
        revision: i64,
        /// Commit time, µs since the epoch.
        committed_at_us: i64,
    },
    /// Nothing new up to `revision`.
    Heartbeat {
        /// The replica's revision.
        revision: i64,
    },
    /// The stream cannot go on (a flag that does not fit in one message);
    /// it ends after this.
    Failed(Error),
}

impl WatchItem {
    /// The revision the item carries: the one to resume from after it.
    pub fn revision(&self) -> i64 {
        match self {
            WatchItem::Snapshot { revision, .. }
            | WatchItem::Upsert { revision, .. }
            | WatchItem::Delete { revision, .. }
            | WatchItem::Heartbeat { revision } => *revision,
            WatchItem::Failed(_) => 0,
        }
    }
}

/// One item for a subscriber, with the memo of its encoding.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// What the subscriber receives.
    pub item: WatchItem,
    /// Its encoding, shared with the other subscribers of the same item.
    pub memo: Memo,
}

/// Counts open watch streams against a limit; a slot is freed when its stream
/// is dropped (the subscriber went away or the server is stopping).
#[derive(Debug, Clone)]
pub struct WatcherLimit {
    open: Arc<AtomicUsize>,
    max: usize,
}

/// One open stream's place under the limit.
#[derive(Debug)]
pub struct WatcherSlot(Arc<AtomicUsize>);

impl Drop for WatcherSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
        metrics::watch_streams(-1.0);
    }
}

impl WatcherLimit {
    /// Allows at most `max` streams at once.
    pub fn new(max: usize) -> WatcherLimit {
        WatcherLimit {
            open: Arc::new(AtomicUsize::new(0)),
            max,
        }
    }

    /// Takes a slot, or RESOURCE_EXHAUSTED when all are taken.
    pub fn acquire(&self) -> Result<WatcherSlot> {
        let prev = self.open.fetch_add(1, Ordering::SeqCst);
        metrics::watch_streams(1.0);
        let slot = WatcherSlot(self.open.clone());
        if prev >= self.max {
            return Err(Error::new(
                ErrorKind::ResourceExhausted,
                format!("this replica already serves {} watch streams", self.max),
            ));
        }
        Ok(slot)
    }
}

/// What is left to replay of a resume: the rows after `after`, up to `end`.
struct Replay {
    store: Store,
    after: i64,
    end: i64,
}

struct Watcher {
    flags: Arc<Flags>,
    replay: Option<Replay>,
    rx: Subscriber<HubMessage>,
    tenant: Option<String>,
    last: i64,
    /// The revision of the last item the stream yielded: what the
    /// subscriber holds whole, and would resume from.
    yielded: i64,
    pending: VecDeque<(WatchItem, Memo)>,
    /// The most flag bytes in one snapshot part.
    part_budget: usize,
    /// A `Failed` item was yielded: the stream ends.
    ended: bool,
    _slot: WatcherSlot,
}

impl Watcher {
    /// The revision the subscriber will hold whole once everything pending
    /// is delivered.
    fn resume_point(&self) -> i64 {
        self.pending
            .back()
            .map_or(self.yielded, |(item, _)| item.revision())
    }

    fn snapshot(&mut self) {
        self.replay = None;
        let (flags, revision) = self.flags.snapshot(self.tenant.as_deref());
        self.last = revision;
        self.pending.clear();
        // The parts before the last carry what the subscriber held before
        // (a resume from it is correct): only the last completes `revision`.
        let before = self.yielded;
        let mut part = Vec::new();
        let mut bytes = 0;
        for f in flags {
            let size = encoded_bound(&f);
            if size > self.part_budget {
                self.pending.push_back((
                    WatchItem::Failed(super::state::too_large(&f.flag, size, self.part_budget)),
                    Memo::default(),
                ));
                return;
            }
            if !part.is_empty() && bytes + size > self.part_budget {
                self.pending.push_back((
                    WatchItem::Snapshot {
                        flags: std::mem::take(&mut part),
                        revision: before,
                        continues: true,
                    },
                    Memo::default(),
                ));
                bytes = 0;
            }
            bytes += size;
            part.push(f);
        }
        self.pending.push_back((
            WatchItem::Snapshot {
                flags: part,
                revision,
                continues: false,
            },
            Memo::default(),
        ));
    }

    /// Reads the next page of the replay; a page that does not continue where
    /// the last one ended (pruned meanwhile) or does not decode turns into a
    /// snapshot.
    async fn replay_page(&mut self) {
        let Some(r) = self.replay.take() else { return };
        let limit = REPLAY_PAGE.min(r.end - r.after);
        let entries = match r.store.changes_after(r.after, limit).await {
            Ok(Read::Batch(b)) if !b.entries.is_empty() && b.undecodable.is_none() => b.entries,
            Ok(_) => return self.snapshot(),
            Err(e) => {
                tracing::warn!(error = %e, "replaying a resumed watch failed; sending a snapshot");
                return self.snapshot();
            }
        };
        let mut after = r.after;
        for entry in entries {
            let c = Change::from(entry);
            let events = events_for(self.flags.env(), &c, self.tenant.as_deref());
            self.push_events(&events, c.revision, c.committed_at_us, Memo::default());
            after = c.revision;
        }
        if after < r.end {
            self.replay = Some(Replay { after, ..r });
        }
    }

    /// Queues the events of the change at `revision`. When it has several
    /// (a tenant deletion restoring its flags), all but the last carry the
    /// revision before it, so a subscriber cut off in the middle resumes
    /// from a revision it holds whole and gets the whole change again. A
    /// lone event is the same for its whole audience and shares `memo`.
    fn push_events(&mut self, events: &[Event], revision: i64, committed_at_us: i64, memo: Memo) {
        let before = self.resume_point();
        let n = events.len();
        for (i, e) in events.iter().enumerate() {
            let revision = if i + 1 < n { before } else { revision };
            let item = match e {
                Event::Upsert(flag) => WatchItem::Upsert {
                    flag: flag.clone(),
                    revision,
                    committed_at_us,
                },
                Event::Delete(flag) => WatchItem::Delete {
                    flag: flag.clone(),
                    revision,
                    committed_at_us,
                },
            };
            let memo = if n == 1 {
                memo.clone()
            } else {
                Memo::default()
            };
            self.pending.push_back((item, memo));
        }
    }
}

/// Opens a watch of `tenant` (`None`: no tenant) from `since` (0: snapshot).
///
/// `since` beyond the latest committed revision is INVALID_ARGUMENT. A `since`
/// that this replica has not reached yet (another replica is ahead) just
/// waits for the replica to catch up. Changes after `since` that the log still
/// holds are replayed, however many; pruned ones give a snapshot.
pub async fn open(
    flags: Arc<Flags>,
    store: &Store,
    tenant: Option<String>,
    since: i64,
    slot: WatcherSlot,
    group: u64,
    part_budget: usize,
) -> Result<impl Stream<Item = Delivery> + Send + 'static> {
    if since < 0 {
        return Err(Error::invalid_argument(
            "since_revision",
            "must not be negative",
        ));
    }
    let rx = flags.subscribe(group);
    let mut w = Watcher {
        flags: flags.clone(),
        replay: None,
        rx,
        tenant,
        last: since,
        yielded: since,
        pending: VecDeque::new(),
        part_budget,
        ended: false,
        _slot: slot,
    };
    let current = flags.revision();
    if since == 0 {
        w.snapshot();
    } else if since > current {
        let latest = store.current_revision().await?;
        if since > latest {
            return Err(Error::invalid_argument(
                "since_revision",
                format!("{since} is ahead of the latest revision {latest}"),
            ));
        }
    } else if since < current {
        // Replay (since, current] from the change log, page by page; live
        // changes after `current` follow from the hub.
        w.replay = Some(Replay {
            store: store.clone(),
            after: since,
            end: current,
        });
        w.last = current;
    }
    Ok(futures_util::stream::unfold(w, |mut w| async move {
        loop {
            if w.ended {
                return None;
            }
            if let Some((item, memo)) = w.pending.pop_front() {
                match &item {
                    WatchItem::Failed(_) => w.ended = true,
                    _ => w.yielded = item.revision(),
                }
                return Some((Delivery { item, memo }, w));
            }
            if w.replay.is_some() {
                w.replay_page().await;
                continue;
            }
            match w.rx.recv().await {
                Received::Message(HubMessage::Change(c, audiences)) => {
                    if c.revision <= w.last {
                        continue;
                    }
                    w.last = c.revision;
                    let (events, memo) = audiences.events(w.flags.env(), &c, w.tenant.as_deref());
                    w.push_events(&events, c.revision, c.committed_at_us, memo);
                }
                Received::Message(HubMessage::Heartbeat(revision, memo)) => {
                    if revision >= w.last {
                        w.last = revision;
                        w.pending
                            .push_back((WatchItem::Heartbeat { revision }, memo));
                    }
                }
                Received::Message(HubMessage::Reset) | Received::Lagged => w.snapshot(),
                // The server is stopping.
                Received::Closed => return None,
            }
        }
    }))
}
