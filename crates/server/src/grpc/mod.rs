//! The gRPC edge: tonic service implementations that take the caller's
//! principal, convert messages to domain types, call the capability's service
//! and convert the answer. No rule of the API lives here.

pub mod audit;
pub mod convert;
pub mod flag;
pub mod flagd;
pub mod frames;
pub mod gating;
pub mod rollout;
pub mod status;
pub mod tenant;
pub mod token;

use switchyard_core::auth::Principal;

/// Returns the principal the auth middleware attached to a request.
pub fn principal<T>(req: &tonic::Request<T>) -> Result<&Principal, tonic::Status> {
    principal_in(req.extensions())
}

/// [`principal`], from a request taken apart (`Request::into_parts`), so
/// that its message can be moved into the call.
pub fn principal_in(extensions: &tonic::Extensions) -> Result<&Principal, tonic::Status> {
    extensions
        .get::<Principal>()
        .ok_or_else(|| tonic::Status::unauthenticated("missing bearer token"))
}

/// A number for the caller's connection (its peer address): the watches of
/// one connection are woken together. 0 when the transport has no address.
pub fn connection_key<T>(req: &tonic::Request<T>) -> u64 {
    use std::hash::BuildHasher;
    req.remote_addr()
        .map_or(0, |a| foldhash::fast::FixedState::with_seed(0).hash_one(a))
}
