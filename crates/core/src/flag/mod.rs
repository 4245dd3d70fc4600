//! Feature flags: definitions, stored values, per-tenant overrides, effective
//! values with their source, and the watch.
//!
//! Every replica keeps the whole flag state in memory ([`state::FlagState`],
//! behind [`state::Flags`]) at a known revision; reads (get, list, evaluate,
//! snapshots) never touch the database. Writes go to the database
//! (`store.rs`), each in one transaction that takes the next global revision
//! and appends a change-log row that is self-contained: from it alone,
//! [`events_for`] derives what any tenant's subscriber must see. The follower
//! (`follower.rs`) applies rows in revision order to the state and hands them
//! to the watch hub; a resuming subscriber replays rows from the database
//! through the same function. `service.rs` holds the rules of every flag use
//! case, whatever the transport.

pub mod change;
pub mod definition;
pub mod env;
pub mod flagd;
pub mod limits;
pub mod listing;
pub mod model;
pub mod openfeature;
pub mod resolve;
pub mod service;
pub mod size;
pub mod state;
pub mod store;
pub mod targeting;
pub mod watch;

pub use change::{Event, FlagChange, Payload, Prior, audience, events_for};
pub use env::{EnvOverrides, env_name};
pub use limits::{
    DEFAULT_PAGE_SIZE, MAX_DESCRIPTION_LEN, MAX_KEY_LEN, MAX_PAGE_SIZE, MAX_VALUE_BYTES,
    MAX_VALUE_DEPTH, check_value, validate_key,
};
pub use model::{
    DEFAULT_VARIANT, Effective, FlagDef, FlagType, Rule, STORED_VARIANT, Status, ValueSource,
    effective, effective_in,
};
pub use resolve::{Reason, Resolution, RuleError, resolve};
pub use size::{ENVELOPE_BYTES, MAX_PART_BYTES, def_bound, encoded_bound, part_budget};
