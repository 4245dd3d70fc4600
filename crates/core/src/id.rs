//! Ids checked once. A request's id becomes one of these types where the
//! use case takes it in (after the caller's scope is checked, so that a
//! caller without the scope learns nothing of the id's shape), and a token's
//! when the configuration is read; nothing below checks it again.

use std::fmt;

use crate::error::{Error, Result};

/// The longest tenant id.
pub const MAX_TENANT_ID_LEN: usize = 63;

/// A tenant's id: 1 to 63 characters of `a-z`, `0-9` and `-`, starting with
/// a letter or digit. It reads as its text, `{:?}` quoting it as a string
/// does (messages say `tenant "acme"`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl TenantId {
    /// Checks `id`, naming `field` in the error.
    pub fn parse(id: &str, field: &str) -> Result<TenantId> {
        if id.is_empty() {
            return Err(Error::invalid_argument(field, "must not be empty"));
        }
        if id.len() > MAX_TENANT_ID_LEN {
            return Err(Error::invalid_argument(
                field,
                format!("must be at most {MAX_TENANT_ID_LEN} characters"),
            ));
        }
        if !id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(Error::invalid_argument(
                field,
                "may contain only a-z, 0-9 and '-'",
            ));
        }
        if id.starts_with('-') {
            return Err(Error::invalid_argument(
                field,
                "must start with a letter or digit",
            ));
        }
        Ok(TenantId(id.to_owned()))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id's text, without a copy.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl std::ops::Deref for TenantId {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids() {
        let id = TenantId::parse("acme-1", "f").unwrap();
        assert_eq!(id.as_str(), "acme-1");
        assert_eq!(format!("{id:?} {id}"), "\"acme-1\" acme-1");
        for bad in ["", "-acme", "Acme", "a b", "a.b", &"a".repeat(64)] {
            let e = TenantId::parse(bad, "tenant.id").unwrap_err();
            assert!(e.message().starts_with("tenant.id"), "{bad:?}: {e:?}");
        }
    }
}
