//! Flags as flagd's JSON carries them: values (integral numbers without a
//! fraction, a list as `{"items": [...]}`), one flag of a tenant's view, and
//! the flag configuration in-process providers evaluate (flagd-schemas'
//! `json/flags.json`).

use serde_json::{Map, Value, json};

pub use crate::json::integral;

use super::{EnvOverrides, FlagDef, Status, definition::flagd_flag};

/// The key a flagd list value travels under: flagd's values carry no list,
/// so a `list` flag is the object `{"items": [...]}`.
pub const LIST_ITEMS: &str = "items";

/// A value as flagd carries it: a list as `{"items": [...]}`. Numbers are
/// written as they are held: integral where written through protobuf (whose
/// one number type would make `3` a `3.0`, see [`integral`], applied on
/// every such write), and `0.0` a float where a flagd file wrote it so (an
/// SDK tells an integer from a float by it).
pub fn object_value(v: &Value) -> Value {
    match v {
        Value::Array(_) => json!({ LIST_ITEMS: v }),
        other => other.clone(),
    }
}

/// One flag of a view as flagd's JSON flag configuration holds it, so that
/// an in-process provider answers as the server does:
/// - with an `env` override, a flag of one variant `env` (STATIC);
/// - disabled, or without the tenant's override, the definition itself;
/// - with the tenant's override, one variant `tenant` that the rule
///   `{"if": [true, "tenant"]}` picks (TARGETING_MATCH, as the server says).
///
/// Values are written as flagd carries them ([`object_value`]); `metadata`
/// says the source of an override.
pub fn view_flag(env: &EnvOverrides, def: &FlagDef, tenant_value: Option<&Value>) -> Value {
    let fixed = |name: &str, v: &Value, targeting: Option<Value>| {
        let mut metadata = def.metadata.clone();
        metadata.insert("source".into(), Value::String(name.to_owned()));
        let mut f = json!({
            "state": "ENABLED",
            "variants": { name: object_value(v) },
            "defaultVariant": name,
            "metadata": metadata,
        });
        if let Some(t) = targeting {
            f["targeting"] = t;
        }
        f
    };
    if let Some(v) = env.get(def) {
        return fixed("env", v, None);
    }
    if let (Some(v), Status::Enabled) = (tenant_value, def.status) {
        return fixed("tenant", v, Some(json!({"if": [true, "tenant"]})));
    }
    let mut f = flagd_flag(def);
    if let Some(Value::Object(variants)) = f.get_mut("variants") {
        for v in variants.values_mut() {
            *v = object_value(v);
        }
    }
    f
}

/// The flagd JSON flag configuration of a view (flagd-schemas'
/// `json/flags.json`), which in-process providers evaluate themselves. It
/// has no flag-set `metadata`: providers merge that into every flag's
/// (a flag without metadata must answer none); the tenant travels in
/// `sync_context`. Only the keys flagd's schema allows are written (the
/// Python provider refuses a configuration with any other).
pub fn flagd_configuration(flags: Vec<(String, Value)>) -> String {
    let flags: Map<String, Value> = flags.into_iter().collect();
    json!({
        "$schema": "https://flagd.dev/schema/v0/flags.json",
        "flags": flags,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_renders_overrides_as_flags_of_one_variant() {
        let def = crate::flag::model::tests::def("n", json!(3.0), None);
        let none = EnvOverrides::default();
        assert_eq!(
            view_flag(&none, &def, Some(&json!(4.0))),
            json!({"state": "ENABLED", "variants": {"tenant": 4.0}, "defaultVariant": "tenant",
                   "metadata": {"source": "tenant"}, "targeting": {"if": [true, "tenant"]}})
        );
        assert_eq!(
            view_flag(&none, &def, None),
            json!({"state": "ENABLED", "variants": {"default": 3.0}, "defaultVariant": "default"})
        );
        let list = crate::flag::model::tests::def("l", json!(["a"]), None);
        assert_eq!(
            view_flag(&none, &list, None)["variants"]["default"],
            json!({"items": ["a"]})
        );
        // No flag-set metadata: providers would merge it into every flag's.
        let c: Value =
            serde_json::from_str(&flagd_configuration(vec![("n".into(), json!({}))])).unwrap();
        assert_eq!(c.get("metadata"), None);
    }
}
