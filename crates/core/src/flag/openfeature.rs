//! OpenFeature's view of Switchyard's flags, the same for its two remote
//! protocols (OFREP in `rest/ofrep.rs`, flagd's gRPC API in `grpc/flagd.rs`):
//! which tenant an evaluation context names, the reason and variant of an
//! answer, how a value is checked against the type a provider asks for, and
//! the flagd JSON flag configuration of a view (in-process providers).
//!
//! No rule of the flag service is restated here: the tenant named is handed
//! to [`super::service::Service::audience`], which checks it like any call.

use serde_json::{Map, Value};

pub use super::flagd::{LIST_ITEMS, flagd_configuration, integral, object_value, view_flag};
use super::{Reason, ValueSource, resolve::Evaluation, service::Target};
use crate::{
    auth::{Principal, Scope},
    error::{Error, ErrorKind, Result},
};

pub use super::resolve::TENANT_ATTRIBUTE;
/// The context attribute resolved through TenantService when no tenant is
/// named (admin tokens).
pub const HOST_ATTRIBUTE: &str = "host";

/// An attribute of an evaluation context, as the transport found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attribute<'a> {
    /// Missing, null or an empty string.
    Absent,
    /// A string.
    Text(&'a str),
    /// Anything else (a number, a bool, a list, an object).
    Other,
}

impl<'a> Attribute<'a> {
    /// The attribute `name` of a JSON context.
    pub fn of(context: &'a Map<String, Value>, name: &str) -> Attribute<'a> {
        match context.get(name) {
            None | Some(Value::Null) => Attribute::Absent,
            Some(Value::String(s)) => Attribute::text(s),
            Some(_) => Attribute::Other,
        }
    }

    /// A string attribute (empty: absent).
    pub fn text(s: &'a str) -> Attribute<'a> {
        if s.is_empty() {
            Attribute::Absent
        } else {
            Attribute::Text(s)
        }
    }

    fn read(self, name: &str) -> Result<Option<String>> {
        match self {
            Attribute::Absent => Ok(None),
            Attribute::Text(s) => Ok(Some(s.to_owned())),
            Attribute::Other => Err(Error::invalid_argument(
                &format!("context.{name}"),
                "must be a string",
            )),
        }
    }
}

/// Where the tenant of an evaluation comes from, in the order the rule
/// reads them: a flagd selector, else the context's `tenantId`, else its
/// `host`, else the caller's own (a `tenant:<id>` token's tenant; nothing for
/// an admin).
///
/// Returns the target and whether the caller's answers for the same flag
/// may differ from one context to another (see [`reason`]).
pub fn context_target(
    tenant_id: Attribute<'_>,
    host: Attribute<'_>,
    selector: Option<String>,
) -> Result<(Target, PerContext)> {
    if let Some(tenant) = selector {
        return Ok((Target::TenantId(tenant), PerContext::No));
    }
    Ok(
        match (
            tenant_id.read(TENANT_ATTRIBUTE)?,
            host.read(HOST_ATTRIBUTE)?,
        ) {
            (Some(t), _) => (Target::TenantId(t), PerContext::Yes),
            (None, Some(h)) => (Target::ResolveKey(h), PerContext::Yes),
            (None, None) => (Target::Caller, PerContext::Yes),
        },
    )
}

/// Whether a caller's answers may differ from one evaluation context to
/// another: with an admin token and no selector they do (the context names
/// the tenant); with a tenant token or a selector the tenant is fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PerContext {
    /// The tenant is fixed for the caller.
    No,
    /// The context may name another tenant.
    Yes,
}

impl PerContext {
    /// The same for caller `p`: a `tenant:<id>` token may name only its own
    /// tenant, so its answers never depend on the context.
    pub fn for_caller(self, p: &Principal) -> PerContext {
        match p.scope() {
            Scope::Tenant(_) => PerContext::No,
            _ => self,
        }
    }
}

/// The OpenFeature reason of an evaluation: flagd's, except that a
/// `STATIC` answer (no rule) is `TARGETING_MATCH` when another context of
/// the same caller could name a tenant with an override of the flag.
/// flagd's RPC providers cache `STATIC` answers by flag key alone, whatever
/// the context: an admin whose contexts name different tenants must not be
/// handed one tenant's answer for another's.
pub fn reason(e: &Evaluation, per_context: PerContext) -> &'static str {
    match e.resolution.reason {
        Reason::Static
            if per_context == PerContext::Yes
                && e.overridden
                && e.resolution.source != ValueSource::Env =>
        {
            "TARGETING_MATCH"
        }
        r => r.as_str(),
    }
}

/// Reads a flagd selector (`Flagd-Selector` header, or the sync requests'
/// deprecated `selector` field) as the tenant it names: `<tenant id>`,
/// `tenantId=<id>` or `flagSetId=<id>` (a tenant's view is its flag set).
/// Empty: none. Another key is INVALID_ARGUMENT, as flagd answers.
pub fn selector_tenant(selector: &str) -> Result<Option<String>> {
    let s = selector.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let tenant = match s.split_once('=') {
        None => s,
        Some((key, value)) if key.trim() == "tenantId" || key.trim() == "flagSetId" => value.trim(),
        Some((key, _)) => {
            return Err(Error::invalid_argument(
                "selector",
                format!(
                    "unknown key {:?}; a selector is <tenant id>, tenantId=<id> or flagSetId=<id>",
                    key.trim()
                ),
            ));
        }
    };
    if tenant.is_empty() {
        return Err(Error::invalid_argument("selector", "names no tenant"));
    }
    Ok(Some(tenant.to_owned()))
}

/// A flag's value for a flagd `ResolveBoolean`; another type is
/// INVALID_ARGUMENT, flagd's `TYPE_MISMATCH` (so are the others below).
pub fn as_bool(key: &str, v: &Value) -> Result<bool> {
    v.as_bool().ok_or_else(|| mismatch(key, v, "a bool"))
}

/// A flag's value for `ResolveString`.
pub fn as_string(key: &str, v: &Value) -> Result<String> {
    v.as_str()
        .map(str::to_owned)
        .ok_or_else(|| mismatch(key, v, "a string"))
}

/// A flag's value for `ResolveFloat`: any number.
pub fn as_float(key: &str, v: &Value) -> Result<f64> {
    v.as_f64().ok_or_else(|| mismatch(key, v, "a number"))
}

/// A flag's value for `ResolveInt`: an integral number within `i64`.
pub fn as_int(key: &str, v: &Value) -> Result<i64> {
    match v {
        Value::Number(n) => as_integer(n),
        _ => None,
    }
    .ok_or_else(|| mismatch(key, v, "an integer"))
}

/// A flag's value for `ResolveObject`: an object's fields, a list as
/// `{"items": [...]}`.
pub fn as_object(key: &str, v: &Value) -> Result<Map<String, Value>> {
    match object_value(v) {
        Value::Object(fields) => Ok(fields),
        _ => Err(mismatch(key, v, "an object")),
    }
}

fn mismatch(key: &str, v: &Value, wanted: &str) -> Error {
    Error::new(
        ErrorKind::InvalidArgument,
        format!(
            "TYPE_MISMATCH: flag {key:?} is {}, not {wanted}",
            describe(v)
        ),
    )
}

/// A number as an `i64`, when it is integral and within range.
fn as_integer(n: &serde_json::Number) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let f = n.as_f64()?;
    // Exact below 2^53; beyond, a float is no integer a provider can trust.
    #[allow(clippy::cast_possible_truncation)]
    (f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15).then_some(f as i64)
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::Bool(_) => "a bool",
        Value::String(_) => "a string",
        Value::Number(n) if n.as_f64().is_some_and(|f| f.fract() != 0.0) => "a fractional number",
        Value::Number(_) => "a number",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
        Value::Null => "null",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn contexts_name_the_tenant_by_selector_then_id_then_host() {
        let t = |c: Value, sel: Option<&str>| {
            let ctx = c.as_object().unwrap().clone();
            context_target(
                Attribute::of(&ctx, TENANT_ATTRIBUTE),
                Attribute::of(&ctx, HOST_ATTRIBUTE),
                sel.map(str::to_owned),
            )
        };
        assert_eq!(
            t(json!({}), None).unwrap(),
            (Target::Caller, PerContext::Yes)
        );
        assert_eq!(
            t(json!({"targetingKey": "u1", "tenantId": ""}), None).unwrap(),
            (Target::Caller, PerContext::Yes)
        );
        assert_eq!(
            t(json!({"tenantId": "a", "host": "x.example"}), None).unwrap(),
            (Target::TenantId("a".into()), PerContext::Yes)
        );
        assert_eq!(
            t(json!({"host": "x.example"}), None).unwrap(),
            (Target::ResolveKey("x.example".into()), PerContext::Yes)
        );
        assert_eq!(
            t(json!({"tenantId": "a"}), Some("b")).unwrap(),
            (Target::TenantId("b".into()), PerContext::No)
        );
        let e = t(json!({"tenantId": 7}), None).unwrap_err();
        assert!(e.message().contains("context.tenantId"), "{e}");
    }

    #[test]
    fn selectors_name_a_tenant_three_ways_and_refuse_other_keys() {
        assert_eq!(selector_tenant("").unwrap(), None);
        for s in [
            "acme",
            "tenantId=acme",
            "flagSetId=acme",
            " flagSetId = acme ",
        ] {
            assert_eq!(selector_tenant(s).unwrap().as_deref(), Some("acme"), "{s}");
        }
        assert!(selector_tenant("source=flags.json").is_err());
        assert!(selector_tenant("tenantId=").is_err());
    }

    #[test]
    fn static_answers_are_never_another_tenants() {
        use crate::flag::{EnvOverrides, model::tests::def, resolve::resolve};
        let d = def("f", json!(1), Some(json!(2)));
        let e = |overridden: bool| Evaluation {
            key: "f".into(),
            resolution: resolve(
                &EnvOverrides::default(),
                &d,
                None,
                None,
                &Map::new(),
                0,
                None,
            )
            .into_owned(),
            metadata: Map::new(),
            overridden,
            revision: 1,
            tenant: None,
            explanation: Vec::new(),
        };
        // Nobody overrides the flag: every context gets this answer.
        assert_eq!(reason(&e(false), PerContext::Yes), "STATIC");
        // A tenant does: an admin's next context could name it.
        assert_eq!(reason(&e(true), PerContext::Yes), "TARGETING_MATCH");
        // A tenant token's tenant is fixed.
        assert_eq!(reason(&e(true), PerContext::No), "STATIC");
        let tenant = Principal::new(Scope::Tenant(crate::id::TenantId::parse("a", "t").unwrap()));
        assert_eq!(PerContext::Yes.for_caller(&tenant), PerContext::No);
        let admin = Principal::new(Scope::Admin);
        assert_eq!(PerContext::Yes.for_caller(&admin), PerContext::Yes);
    }

    #[test]
    fn resolutions_check_the_type_asked_for() {
        assert_eq!(as_int("k", &json!(3.0)).unwrap(), 3);
        assert_eq!(as_float("k", &json!(3)).unwrap(), 3.0);
        assert!(as_int("k", &json!(2.5)).is_err());
        assert!(as_int("k", &json!(1e300)).is_err());
        assert!(as_bool("k", &json!("x")).is_err());
        assert!(as_object("k", &json!("x")).is_err());
        assert_eq!(
            Value::Object(as_object("k", &json!([1, 2.0])).unwrap()),
            json!({"items": [1, 2.0]})
        );
        let e = as_string("k", &json!(true)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.message().contains("TYPE_MISMATCH"), "{e}");
    }
}
