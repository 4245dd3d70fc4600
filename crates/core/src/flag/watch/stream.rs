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
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use futures_util::Stream;

use super::{
    audience::{HubMessage, Memo},
    ring::{Received, Subscriber},
};
use crate::flag::{Effective, Event, FlagChange, Payload, encoded_bound, events_for, state::Flags};
use crate::{
    changelog::{ChangeLog, Read},
    error::{Error, ErrorKind, Result},
    service::cache::Recent,
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
        /// The flags (of this part), shared by every stream sent the same
        /// snapshot.
        flags: Arc<[Effective]>,
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

/// Counts open watch streams against the replica's limit (`max_watchers`)
/// and each caller's quota (`max_watchers_per_caller`); a slot is freed when
/// its stream is dropped (the subscriber went away or the server is
/// stopping).
///
/// Every long-lived stream takes a slot: `WatchFlags` (gRPC, gRPC-Web, the
/// REST watch in NDJSON or SSE), OFREP's event stream, flagd's
/// `EventStream` and `SyncFlags`. A caller at its quota is refused and takes
/// nothing from anyone else; with the quota below the limit, no one caller
/// can hold every stream.
#[derive(Debug, Clone)]
pub struct WatcherLimit {
    open: Arc<Mutex<Open>>,
    max: usize,
    per_caller: usize,
}

/// The streams open now, in all and by caller.
#[derive(Debug, Default)]
struct Open {
    all: usize,
    by_caller: HashMap<Arc<str>, usize>,
}

/// One open stream's place under the limit and its caller's quota.
#[derive(Debug)]
pub struct WatcherSlot {
    open: Arc<Mutex<Open>>,
    caller: Arc<str>,
}

impl Drop for WatcherSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.all -= 1;
        if let Some(n) = open.by_caller.get_mut(&self.caller) {
            *n -= 1;
            if *n == 0 {
                open.by_caller.remove(&self.caller);
            }
        }
        drop(open);
        metrics::watch_streams(-1.0);
    }
}

impl WatcherLimit {
    /// Allows at most `max` streams at once, at most `per_caller` of them
    /// one caller's.
    pub fn new(max: usize, per_caller: usize) -> WatcherLimit {
        WatcherLimit {
            open: Arc::default(),
            max,
            per_caller,
        }
    }

    /// Takes a slot for `caller`, or RESOURCE_EXHAUSTED when the caller is
    /// at its quota or every slot is taken.
    pub fn acquire(&self, caller: &Arc<str>) -> Result<WatcherSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let held = open.by_caller.get(caller).copied().unwrap_or(0);
        if held >= self.per_caller {
            return Err(Error::new(
                ErrorKind::ResourceExhausted,
                format!(
                    "this token already holds {held} long-lived streams (watches, event and \
                     sync streams) on this replica, its quota (max_watchers_per_caller)"
                ),
            ));
        }
        if open.all >= self.max {
            return Err(Error::new(
                ErrorKind::ResourceExhausted,
                format!(
                    "this replica already serves {} watch streams (max_watchers)",
                    self.max
                ),
            ));
        }
        open.all += 1;
        *open.by_caller.entry(caller.clone()).or_insert(0) += 1;
        drop(open);
        metrics::watch_streams(1.0);
        Ok(WatcherSlot {
            open: self.open.clone(),
            caller: caller.clone(),
        })
    }
}

/// A snapshot's items (its parts, or the failure of a flag that fits in no
/// part), each with the memo of its encoding.
pub type Parts = Arc<[Part]>;

/// One item of a snapshot and the memo of its encoding.
pub type Part = (WatchItem, Memo);

/// A view (tenant), and the revision its subscriber held before (which the
/// parts before the last carry).
type SnapshotKey = (Option<String>, i64);

/// Makes snapshots, and shares each one among the streams that start from
/// the same view at the same revision: the parts are built, and encoded, once
/// however many streams send them (a fleet reconnecting at once, the streams
/// of a burst). A snapshot lives while a stream still has parts of it to send,
/// and the newest of each view a few seconds more ([`Recent`]).
#[derive(Debug)]
pub struct Snapshots {
    /// The most flag bytes in one part.
    part_budget: usize,
    /// The newest of each view.
    shared: Recent<SnapshotKey, [Part]>,
}

impl Snapshots {
    /// Snapshots cut in parts of at most `part_budget` bytes of flags.
    pub fn new(part_budget: usize) -> Snapshots {
        Snapshots {
            part_budget,
            shared: Recent::default(),
        }
    }

    /// The snapshot of `tenant`'s view now, for a stream that held
    /// `before`, and its revision: the one already made, when it is of the
    /// revision current now.
    pub fn get(&self, flags: &Flags, tenant: Option<&str>, before: i64) -> (Parts, i64) {
        let key = (tenant.map(str::to_owned), before);
        let now = flags.revision();
        if let Some(parts) = self.shared.get(&key, now) {
            return (parts, now);
        }
        let (all, revision) = flags.snapshot(tenant);
        let parts: Parts = self.cut(all, revision, before).into();
        self.shared.put(key, revision, &parts);
        (parts, revision)
    }

    /// Cuts `flags` at `revision` into parts, for one stream alone.
    fn own(&self, flags: Vec<Effective>, revision: i64, before: i64) -> Parts {
        self.cut(flags, revision, before).into()
    }

    /// Cuts `flags` at `revision` into parts. The parts before the last
    /// carry `before`, what the subscriber held (a resume from it is
    /// correct): only the last completes `revision`.
    fn cut(&self, flags: Vec<Effective>, revision: i64, before: i64) -> Vec<Part> {
        let mut out = Vec::new();
        let mut part = Vec::new();
        let mut bytes = 0;
        for f in flags {
            let size = encoded_bound(&f);
            if size > self.part_budget {
                out.clear();
                out.push((
                    WatchItem::Failed(crate::flag::state::too_large(
                        &f.flag,
                        size,
                        self.part_budget,
                    )),
                    Memo::default(),
                ));
                return out;
            }
            if !part.is_empty() && bytes + size > self.part_budget {
                out.push((
                    WatchItem::Snapshot {
                        flags: std::mem::take(&mut part).into(),
                        revision: before,
                        continues: true,
                    },
                    Memo::shared(),
                ));
                bytes = 0;
            }
            bytes += size;
            part.push(f);
        }
        out.push((
            WatchItem::Snapshot {
                flags: part.into(),
                revision,
                continues: false,
            },
            Memo::shared(),
        ));
        out
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
    /// Where snapshots are made and shared.
    snapshots: Arc<Snapshots>,
    /// The snapshot being sent, held until its last part is taken so that
    /// streams starting meanwhile share it.
    sending: Option<Parts>,
    /// A `Failed` item was yielded: the stream ends.
    ended: bool,
    /// For a watch with a context: the values it was last sent.
    evaluated: Option<Evaluated>,
    _slot: WatcherSlot,
}

/// A watch with an evaluation context: its values are evaluated in it, and a
/// change sends an event only when it changes a value the subscriber holds.
struct Evaluated {
    /// The subscriber's context, the static context values in it.
    context: serde_json::Map<String, serde_json::Value>,
    /// The values the subscriber holds, by flag key.
    sent: HashMap<String, Effective>,
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
        let (parts, revision) = match &mut self.evaluated {
            None => self
                .snapshots
                .get(&self.flags, self.tenant.as_deref(), self.yielded),
            Some(ev) => {
                let (all, revision) = self.flags.snapshot_in(self.tenant.as_deref(), &ev.context);
                ev.sent = all.iter().map(|e| (e.flag.clone(), e.clone())).collect();
                (self.snapshots.own(all, revision, self.yielded), revision)
            }
        };
        self.last = revision;
        self.pending.clear();
        self.pending.extend(parts.iter().cloned());
        self.sending = Some(parts);
    }

    /// The events of `c` for a watch with a context: each flag it may
    /// change, evaluated now in the context, when its value is not the one
    /// the subscriber holds. (The state may already be past `c`: the value
    /// sent is then the newer one, and the later change sends nothing.)
    fn evaluated_events(&mut self, c: &FlagChange) -> Vec<Event> {
        let Some(ev) = &mut self.evaluated else {
            return Vec::new();
        };
        let mine = c.tenant_id.is_some() && c.tenant_id == self.tenant;
        let keys: Vec<String> = match &c.payload {
            Payload::FlagUpsert { .. } | Payload::FlagDelete => {
                c.flag_key.iter().cloned().collect()
            }
            Payload::OverrideUpsert { .. } | Payload::OverrideDelete { .. } if mine => {
                c.flag_key.iter().cloned().collect()
            }
            // The flags it overrode (every flag held, when that is not known).
            Payload::TenantDelete { .. } if mine => c
                .prior
                .as_ref()
                .map(|p| p.overrides.keys().cloned().collect())
                .unwrap_or_else(|| ev.sent.keys().cloned().collect()),
            _ => Vec::new(),
        };
        let mut events = Vec::new();
        for key in keys {
            match self
                .flags
                .effective_in(&key, self.tenant.as_deref(), &ev.context)
            {
                None => {
                    if ev.sent.remove(&key).is_some() {
                        events.push(Event::Delete(key));
                    }
                }
                Some(e) if ev.sent.get(&key) != Some(&e) => {
                    ev.sent.insert(key, e.clone());
                    events.push(Event::Upsert(e));
                }
                Some(_) => {}
            }
        }
        events
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
            let c = FlagChange::from(entry);
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

/// What a subscriber asks to watch.
#[derive(Debug, Clone, Default)]
pub struct Subscription {
    /// Whose view (`None`: values without any tenant override).
    pub tenant: Option<String>,
    /// The revision the subscriber holds (0: none, a snapshot first).
    pub since: i64,
    /// The evaluation context (the static context values already in it);
    /// `None`: the default context.
    pub context: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Opens a watch of a subscription's `tenant` from `since` (0: snapshot).
///
/// With a `context` (the static context values already in it) the values
/// are evaluated in it and an UPSERT is sent only when one changes. Such a
/// watch resumes with a SNAPSHOT unless `since` is the current revision:
/// what a context got at an earlier revision is not recorded.
///
/// `since` beyond the latest committed revision is INVALID_ARGUMENT. A `since`
/// that this replica has not reached yet (another replica is ahead) just
/// waits for the replica to catch up. Changes after `since` that the log still
/// holds are replayed, however many; pruned ones give a snapshot.
pub async fn open(
    flags: Arc<Flags>,
    store: &Store,
    Subscription {
        tenant,
        since,
        context,
    }: Subscription,
    slot: WatcherSlot,
    group: u64,
    snapshots: Arc<Snapshots>,
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
        snapshots,
        sending: None,
        ended: false,
        evaluated: context.map(|context| Evaluated {
            context,
            sent: HashMap::new(),
        }),
        _slot: slot,
    };
    let current = flags.revision();
    if w.evaluated.is_some() && since != 0 {
        // The store is asked only when this replica is behind `since`, as
        // for a watch without a context.
        if since > current && since > store.current_revision().await? {
            return Err(Error::invalid_argument(
                "since_revision",
                format!("{since} is ahead of the latest revision"),
            ));
        }
        w.snapshot();
        if w.last == since {
            // Nothing changed since: the values held are the ones now.
            w.pending.clear();
            w.sending = None;
        }
    } else if since == 0 {
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
                if w.pending.is_empty() {
                    w.sending = None;
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
                    if w.evaluated.is_some() {
                        let events = w.evaluated_events(&c);
                        w.push_events(&events, c.revision, c.committed_at_us, Memo::default());
                    } else {
                        let (events, memo) =
                            audiences.events(w.flags.env(), &c, w.tenant.as_deref());
                        w.push_events(&events, c.revision, c.committed_at_us, memo);
                    }
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
