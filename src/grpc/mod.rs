//! The gRPC edge: tonic service implementations that check the caller's scope,
//! convert messages and call the capability modules. Only this module and
//! `rest/` know about transports.

pub mod flag;
pub mod gating;
pub mod tenant;

use crate::error::Error;

/// Returns UNIMPLEMENTED for an RPC of the v1 API that this version does not serve.
pub(crate) fn unimplemented(rpc: &str) -> tonic::Status {
    Error::unimplemented(rpc).into()
}
