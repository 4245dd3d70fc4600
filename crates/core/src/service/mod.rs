//! What the capabilities' service layers share: how a transport hands them
//! its request ([`Input`]), paging ([`page`]) and update masks ([`mask`]).
//!
//! A service method (`tenant::service`, `flag::service`, `gating::service`)
//! takes the caller's [`Principal`](crate::auth::Principal) and domain types
//! and returns [`crate::error::Error`]; it holds every rule of its use case
//! (scopes, which tenant a read means, resolution, masks, expected revisions,
//! limits), so a transport only converts.

pub mod cache;
pub mod mask;
pub mod page;

/// A request field as a transport converted it: the domain value, or why the
/// conversion failed (a missing message, a non-finite number, an unknown enum
/// number). Services look at an input only once the caller's scope allows the
/// call and only when the call uses that field, so a caller without the scope
/// learns nothing from validation, and errors come in the order of the rules.
pub type Input<T> = Result<T, crate::error::Error>;
