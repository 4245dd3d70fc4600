//! Who is calling and what they may do: token [`Scope`]s, the caller's
//! [`Principal`], and the [`Authenticator`] that turns a bearer secret into a
//! principal.
//!
//! Nothing here knows a transport. The server's middleware
//! (`switchyard-server`'s `middleware.rs`) authenticates every gRPC and HTTP request once and
//! attaches the principal; each service method then asks the principal for
//! the scope it needs, because only the use case knows which tenant a request
//! touches.
//!
//! Secrets are compared as SHA-256 digests in constant time against every
//! configured token (no early exit), and are never logged. Named tokens kept
//! in the database (`crate::token`) are found by their digest.

use std::{collections::HashMap, sync::Arc};

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};

use crate::{error::Error, id::TenantId};

/// What a token allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Everything.
    Admin,
    /// Gating RPCs.
    Gating,
    /// Reading, watching and evaluating one tenant's flags, resolving into it.
    Tenant(TenantId),
}

impl Scope {
    /// Parses `admin`, `gating` or `tenant:<id>`.
    pub fn parse(s: &str) -> Result<Scope, String> {
        match s {
            "admin" => Ok(Scope::Admin),
            "gating" => Ok(Scope::Gating),
            _ => match s.strip_prefix("tenant:") {
                Some(id) => TenantId::parse(id, "tenant")
                    .map(Scope::Tenant)
                    .map_err(|_| format!("scope {s:?}: {id:?} is not a valid tenant id")),
                None => Err(format!("scope {s:?}: must be admin, gating or tenant:<id>")),
            },
        }
    }
}

impl std::fmt::Display for Scope {
    /// `admin`, `gating` or `tenant:<id>`, as [`Scope::parse`] reads it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Admin => f.write_str("admin"),
            Scope::Gating => f.write_str("gating"),
            Scope::Tenant(id) => write!(f, "tenant:{}", id.as_str()),
        }
    }
}

/// The authenticated caller of a request: what it may do (its scope) and
/// who it is (the credential it presented), which quotas count by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    scope: Scope,
    caller: Arc<str>,
    reason: Reason,
}

/// The comment a request carries for the audit log (`x-switchyard-reason`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
enum Reason {
    #[default]
    None,
    Given(Arc<str>),
    /// Not UTF-8, or longer than [`MAX_REASON_CHARS`]: the write is refused.
    Unusable(&'static str),
}

/// `raw` with every `%` followed by two hex digits decoded to its byte; a
/// `%` that is not is kept as it is.
fn percent_decoded(raw: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                raw.get(i + 1).and_then(|b| hex(*b)),
                raw.get(i + 2).and_then(|b| hex(*b)),
            )
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    out
}

/// The longest reason a write may carry, in characters.
pub const MAX_REASON_CHARS: usize = 1000;

/// The request header (gRPC metadata or HTTP) whose value is a write's
/// reason in the audit log.
pub const REASON_HEADER: &str = "x-switchyard-reason";

impl Principal {
    /// Creates a principal with `scope`, as the caller `internal` (tests and
    /// internal callers).
    pub fn new(scope: Scope) -> Self {
        Principal::named(scope, "internal")
    }

    /// Creates the principal of the credential named `caller`.
    pub fn named(scope: Scope, caller: &str) -> Self {
        Principal {
            scope,
            caller: Arc::from(caller),
            reason: Reason::None,
        }
    }

    /// This principal with the reason its request gave (the
    /// [`REASON_HEADER`]'s bytes: UTF-8, where `%XX` escapes are decoded, so
    /// that a client that can send only ASCII in a header, a browser, sends
    /// any text percent-encoded); read when the request writes.
    pub fn with_reason(mut self, raw: &[u8]) -> Self {
        let decoded = percent_decoded(raw);
        self.reason = match std::str::from_utf8(&decoded) {
            Err(_) => Reason::Unusable("must be UTF-8"),
            Ok(s) if s.chars().count() > MAX_REASON_CHARS => {
                Reason::Unusable("must be at most 1000 characters")
            }
            Ok(s) if s.trim().is_empty() => Reason::None,
            Ok(s) => Reason::Given(Arc::from(s.trim())),
        };
        self
    }

    /// The reason the request gave for its write, empty when none;
    /// INVALID_ARGUMENT naming the header when it cannot be kept.
    pub fn reason(&self) -> Result<&str, Error> {
        match &self.reason {
            Reason::None => Ok(""),
            Reason::Given(r) => Ok(r),
            Reason::Unusable(why) => Err(Error::invalid_argument(REASON_HEADER, why)),
        }
    }

    /// Returns the scope.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// Which credential called: a stored token's name, or the setting a
    /// configured one came from (`admin_token`, `tokens[2]`,
    /// `flagd_anonymous_tenant`). Every request made with one token is one
    /// caller; its secret never appears here.
    pub fn caller(&self) -> &Arc<str> {
        &self.caller
    }

    /// Allows admins only.
    pub fn require_admin(&self) -> Result<(), Error> {
        match self.scope {
            Scope::Admin => Ok(()),
            _ => Err(Error::permission_denied("this call needs an admin token")),
        }
    }

    /// Allows admins and gating tokens.
    pub fn require_gating(&self) -> Result<(), Error> {
        match self.scope {
            Scope::Admin | Scope::Gating => Ok(()),
            _ => Err(Error::permission_denied(
                "this call needs a gating or admin token",
            )),
        }
    }

    /// Allows admins and the token of `tenant_id`.
    pub fn require_tenant(&self, tenant_id: &str) -> Result<(), Error> {
        match &self.scope {
            Scope::Admin => Ok(()),
            Scope::Tenant(own) if own.as_str() == tenant_id => Ok(()),
            Scope::Tenant(_) => Err(Error::permission_denied(
                "this token is scoped to another tenant",
            )),
            Scope::Gating => Err(Error::permission_denied(
                "a gating token cannot read tenant data",
            )),
        }
    }

    /// Returns the tenant a tenant-scoped token is confined to.
    pub fn tenant(&self) -> Option<&str> {
        match &self.scope {
            Scope::Tenant(id) => Some(id),
            _ => None,
        }
    }
}

/// The tokens, kept as digests: the configured ones, and the stored ones
/// as last reloaded (`crate::token::TokenService::reload`).
#[derive(Debug)]
pub struct Authenticator {
    tokens: Vec<([u8; 32], Principal)>,
    stored: ArcSwap<HashMap<[u8; 32], StoredToken>>,
    flagd_anonymous: Option<Principal>,
}

/// A token kept in the database, as the authenticator holds it.
#[derive(Debug, Clone)]
pub struct StoredToken {
    digest: [u8; 32],
    principal: Principal,
    expires_at_us: Option<i64>,
}

impl StoredToken {
    /// The token whose secret has `digest`: `principal` until
    /// `expires_at_us` (µs since the epoch; none: until revoked).
    pub fn new(digest: [u8; 32], principal: Principal, expires_at_us: Option<i64>) -> Self {
        StoredToken {
            digest,
            principal,
            expires_at_us,
        }
    }
}

/// The caller every flagd call without a token is (one caller for all).
pub const FLAGD_ANONYMOUS_CALLER: &str = "flagd_anonymous_tenant";

impl Authenticator {
    /// Builds the table from `(secret, scope, caller)`: each secret grants
    /// `scope` to the caller named `caller` (see [`Principal::caller`]).
    pub fn new<'a>(tokens: impl IntoIterator<Item = (&'a str, Scope, &'a str)>) -> Self {
        Authenticator {
            tokens: tokens
                .into_iter()
                .map(|(secret, scope, caller)| (digest(secret), Principal::named(scope, caller)))
                .collect(),
            stored: ArcSwap::default(),
            flagd_anonymous: None,
        }
    }

    /// Replaces the stored tokens with `tokens`.
    pub fn replace_stored(&self, tokens: Vec<StoredToken>) {
        self.stored.store(Arc::new(
            tokens.into_iter().map(|t| (t.digest, t)).collect(),
        ));
    }

    /// Whether any token is configured (not stored).
    pub fn has_configured(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Lets flagd calls without a token act as `tenant`'s token
    /// (`flagd_anonymous_tenant`), all as the one caller
    /// [`FLAGD_ANONYMOUS_CALLER`].
    #[must_use]
    pub fn with_flagd_anonymous(mut self, tenant: Option<TenantId>) -> Self {
        self.flagd_anonymous =
            tenant.map(|t| Principal::named(Scope::Tenant(t), FLAGD_ANONYMOUS_CALLER));
        self
    }

    /// Who a flagd call without a token is, if anyone.
    pub fn flagd_anonymous(&self) -> Option<&Principal> {
        self.flagd_anonymous.as_ref()
    }

    /// Returns the principal of `secret`: a configured token (compared
    /// against every one), else a stored one that has not expired.
    pub fn authenticate(&self, secret: &str) -> Option<Principal> {
        let presented = digest(secret);
        let mut found = None;
        for (d, principal) in &self.tokens {
            let diff = d
                .iter()
                .zip(presented.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if diff == 0 && found.is_none() {
                found = Some(principal);
            }
        }
        if let Some(p) = found {
            return Some(p.clone());
        }
        let stored = self.stored.load();
        let token = stored.get(&presented)?;
        match token.expires_at_us {
            Some(at) if crate::store::now_us() >= at => None,
            _ => Some(token.principal.clone()),
        }
    }
}

/// The SHA-256 digest of a secret, as tokens are kept.
pub fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

#[cfg(test)]
mod tests {

    #[test]
    fn reasons_are_utf8_with_percent_escapes_decoded() {
        let p = |raw: &[u8]| Principal::new(Scope::Admin).with_reason(raw);
        assert_eq!(p(b"CHG-1 plain").reason().unwrap(), "CHG-1 plain");
        assert_eq!(
            p(b"caf%C3%A9 %E2%80%94 100%").reason().unwrap(),
            "caf\u{e9} \u{2014} 100%"
        );
        assert_eq!(p(b"50%zz").reason().unwrap(), "50%zz");
        assert!(p(b"%FF").reason().is_err());
        assert!(p("x".repeat(1001).as_bytes()).reason().is_err());
        assert_eq!(p(b"   ").reason().unwrap(), "");
    }

    use super::*;
    use crate::error::ErrorKind;

    fn tenant(id: &str) -> TenantId {
        TenantId::parse(id, "tenant").unwrap()
    }

    #[test]
    fn scopes_parse() {
        assert_eq!(Scope::parse("admin"), Ok(Scope::Admin));
        assert_eq!(
            Scope::parse("tenant:acme"),
            Ok(Scope::Tenant(tenant("acme")))
        );
        assert!(Scope::parse("tenant:").is_err());
        assert!(Scope::parse("root").is_err());
    }

    #[test]
    fn tenant_tokens_are_confined() {
        let p = Principal::new(Scope::Tenant(tenant("a")));
        assert!(p.require_tenant("a").is_ok());
        assert_eq!(
            p.require_tenant("b").unwrap_err().kind(),
            ErrorKind::PermissionDenied
        );
        assert!(p.require_admin().is_err());
        assert!(p.require_gating().is_err());
    }

    #[test]
    fn only_known_secrets_authenticate() {
        let a = Authenticator::new([
            ("admin-secret-0123456789", Scope::Admin, "admin_token"),
            (
                "tenant-secret-0123456789",
                Scope::Tenant(tenant("t")),
                "tokens[0]",
            ),
            (
                "tenant-secret-9876543210",
                Scope::Tenant(tenant("t")),
                "tokens[1]",
            ),
        ]);
        let admin = a.authenticate("admin-secret-0123456789").unwrap();
        assert_eq!(admin.scope(), &Scope::Admin);
        assert_eq!(&**admin.caller(), "admin_token");
        // Two tokens of one scope are two callers.
        assert_eq!(
            &**a.authenticate("tenant-secret-9876543210").unwrap().caller(),
            "tokens[1]"
        );
        assert!(a.authenticate("admin-secret-012345678").is_none());
        assert!(a.authenticate("").is_none());
    }
}
