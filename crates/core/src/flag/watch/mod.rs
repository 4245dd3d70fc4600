//! The watch: how a committed change reaches every subscriber of a replica.
//!
//! - `ring`: the channel, a bounded ring every subscriber reads at its own
//!   pace (one that falls off it gets a snapshot), waking the subscribers
//!   connection by connection;
//! - `audience`: what the ring carries from the flag state ([`HubMessage`]:
//!   each applied change with its events shared per audience, heartbeats),
//!   and the [`Memo`] by which the streams given the same item share its
//!   encoding;
//! - `stream`: one subscriber's stream ([`open`]: a snapshot or a replay,
//!   then the live changes, without a gap or a repeat), the snapshots the
//!   streams starting at one revision share ([`Snapshots`]), and the limits
//!   on long-lived streams ([`WatcherLimit`]).

pub mod audience;
pub mod ring;
pub mod stream;

pub use audience::{Audiences, HubMessage, Memo};
pub use ring::{Fanout, Received, Subscriber};
pub use stream::{
    Delivery, Parts, Snapshots, Subscription, WatchItem, WatcherLimit, WatcherSlot, open,
};
