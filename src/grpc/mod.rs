//! The gRPC edge: tonic service implementations that check the caller's scope,
//! convert messages and call the capability modules. Only this module and
//! `rest/` know about transports.

pub mod flag;
pub mod gating;
pub mod tenant;

use crate::{
    auth::{Principal, Scope},
    error::{Error, ErrorKind},
    server::App,
    tenant::Resolution,
};

/// Returns UNIMPLEMENTED for an RPC of the v1 API that this version does not serve.
pub(crate) fn unimplemented(rpc: &str) -> tonic::Status {
    Error::unimplemented(rpc).into()
}

/// Resolves `key` for the caller. A gating token may not resolve. For a
/// `tenant:<id>` token every answer other than "resolves to `<id>`" (another
/// tenant, a disabled tenant, no tenant) is the same PERMISSION_DENIED, so the
/// token learns nothing about other tenants' keys; a malformed key is still
/// INVALID_ARGUMENT.
pub(crate) async fn resolve_for(app: &App, p: &Principal, key: &str) -> Result<Resolution, Error> {
    if *p.scope() == Scope::Gating {
        return Err(Error::permission_denied(
            "a gating token cannot resolve tenants",
        ));
    }
    let result = app.tenants.resolve(key).await;
    let Some(own) = p.tenant() else { return result };
    match result {
        Ok(r) if r.tenant.id == own => Ok(r),
        Err(e) if e.kind() == ErrorKind::InvalidArgument => Err(e),
        _ => Err(Error::permission_denied(
            "this key does not resolve to the token's tenant",
        )),
    }
}
