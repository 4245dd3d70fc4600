//! Tenant ids: the one rule every module that names a tenant checks (scoped
//! tokens, requests, the store).

use crate::error::{Error, Result};

/// The longest tenant id.
pub const MAX_TENANT_ID_LEN: usize = 63;

/// Checks a tenant id: 1 to 63 characters of `a-z`, `0-9` and `-`, starting with
/// a letter or digit.
pub fn validate_tenant_id(id: &str) -> Result<()> {
    validate_tenant_id_field(id, "tenant_id")
}

/// Like [`validate_tenant_id`], naming `field` in errors.
pub fn validate_tenant_id_field(id: &str, field: &str) -> Result<()> {
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids() {
        assert!(validate_tenant_id("acme-1").is_ok());
        for bad in ["", "-acme", "Acme", "a b", "a.b", &"a".repeat(64)] {
            assert!(validate_tenant_id(bad).is_err(), "{bad:?}");
        }
    }
}
