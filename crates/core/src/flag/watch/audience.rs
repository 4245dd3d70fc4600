//! What the watch hub carries from the flag state to every subscriber of a
//! replica: each applied change, with the events its subscribers derive from
//! it shared per audience, and heartbeats; and the memo by which the streams
//! given the same item share its encoding.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
};

use bytes::Bytes;

use crate::flag::{EnvOverrides, Event, FlagChange, audience, events_for};

/// What the watch hub broadcasts to every subscriber of a replica.
#[derive(Debug, Clone)]
pub enum HubMessage {
    /// A change, applied to the state before it is sent, with the events
    /// its subscribers derive from it, shared per audience.
    Change(Arc<FlagChange>, Arc<Audiences>),
    /// Nothing to report; every change up to this revision has been sent
    /// (with the memo of its encoding, shared by every subscriber).
    Heartbeat(i64, Memo),
    /// The state was reloaded whole: every subscriber takes a new snapshot.
    Reset,
}

/// The transport's encoding of an item: made by the first stream that sends
/// it and shared by every stream given the same item (one change's event
/// for one audience, a heartbeat, a snapshot's part), made by each stream for
/// its own items. Its compressed form, for the streams that take one, is
/// made once too.
#[derive(Clone, Default)]
pub struct Memo(Option<Arc<Cells>>);

#[derive(Default)]
struct Cells {
    plain: OnceLock<Bytes>,
    compressed: OnceLock<Bytes>,
}

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Memo(shared)"
        } else {
            "Memo(own)"
        })
    }
}

impl Memo {
    /// A memo shared by whoever clones it.
    pub fn shared() -> Memo {
        Memo(Some(Arc::default()))
    }

    /// The encoding: `encode`'s, made once for a shared item.
    pub fn encoded(&self, encode: impl FnOnce() -> Bytes) -> Bytes {
        match &self.0 {
            Some(cells) => cells.plain.get_or_init(encode).clone(),
            None => encode(),
        }
    }

    /// The compressed encoding: `compress` of [`Memo::encoded`]'s, made once
    /// for a shared item.
    pub fn compressed(
        &self,
        encode: impl FnOnce() -> Bytes,
        compress: impl FnOnce(&[u8]) -> Bytes,
    ) -> Bytes {
        match &self.0 {
            Some(cells) => cells
                .compressed
                .get_or_init(|| compress(&self.encoded(encode)))
                .clone(),
            None => compress(&encode()),
        }
    }
}

/// The events of one change per audience (see [`audience`]), derived by the
/// first subscriber of each audience and shared by the rest with the memo of
/// their encoding.
#[derive(Debug, Default)]
pub struct Audiences {
    untenanted: OnceLock<Shared>,
    tenants: Mutex<HashMap<String, Shared>>,
}

type Shared = (Arc<[Event]>, Memo);

impl Audiences {
    /// The events of `c` for a subscriber of `tenant`.
    pub(super) fn events(
        &self,
        env: &EnvOverrides,
        c: &FlagChange,
        tenant: Option<&str>,
    ) -> Shared {
        let derive = |a: Option<&str>| (Arc::from(events_for(env, c, a)), Memo::shared());
        match audience(c, tenant) {
            None => self.untenanted.get_or_init(|| derive(None)).clone(),
            Some(t) => {
                let mut m = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(s) = m.get(t) {
                    return s.clone();
                }
                let s = derive(Some(t));
                m.insert(t.to_owned(), s.clone());
                s
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::json;

    use super::*;
    use crate::flag::{FlagDef, FlagType, Payload};

    #[test]
    fn subscribers_of_one_audience_share_events_and_one_encoding() {
        let env = EnvOverrides::default();
        let c = FlagChange {
            revision: 3,
            committed_at_us: 0,
            tenant_id: None,
            flag_key: Some("f".into()),
            payload: Payload::FlagUpsert {
                flag: FlagDef {
                    revision: 3,
                    ..FlagDef::legacy("f".into(), FlagType::Bool, String::new(), json!(true), None)
                },
                overridden: vec!["hidden".into()],
            },
            prior: None,
        };
        let audiences = Audiences::default();
        let (none, memo_none) = audiences.events(&env, &c, None);
        let (a, memo_a) = audiences.events(&env, &c, Some("a"));
        let (hidden, _) = audiences.events(&env, &c, Some("hidden"));
        assert!(
            Arc::ptr_eq(&none, &a),
            "a is not concerned: no tenant's events"
        );
        assert_eq!(none.len(), 1);
        assert!(hidden.is_empty(), "its override hides the change");
        let encodings = AtomicUsize::new(0);
        let encode = || {
            encodings.fetch_add(1, Ordering::SeqCst);
            Bytes::from_static(b"event")
        };
        assert_eq!(memo_none.encoded(encode), memo_a.encoded(encode));
        assert_eq!(encodings.load(Ordering::SeqCst), 1, "encoded once for both");
        Memo::default().encoded(encode);
        Memo::default().encoded(encode);
        assert_eq!(
            encodings.load(Ordering::SeqCst),
            3,
            "an own memo encodes each time"
        );
    }
}
