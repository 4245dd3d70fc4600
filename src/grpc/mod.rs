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

/// Returns the page size to use: 0 means the default; larger than the
/// maximum is lowered to it; negative is INVALID_ARGUMENT.
pub(crate) fn page_size(requested: i32, default: usize, max: usize) -> Result<usize, Error> {
    match requested {
        n if n < 0 => Err(Error::invalid_argument("page_size", "must not be negative")),
        0 => Ok(default),
        n => Ok((n as usize).min(max)),
    }
}

/// Page tokens are the hex of the last key of the previous page.
pub(crate) fn encode_page_token(last: &str) -> String {
    hex::encode(last)
}

/// Decodes a page token; empty means the first page.
pub(crate) fn decode_page_token(token: &str) -> Result<String, Error> {
    if token.is_empty() {
        return Ok(String::new());
    }
    hex::decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            Error::invalid_argument("page_token", "is not a token returned by this server")
        })
}
