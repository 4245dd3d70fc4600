//! Writing flags in flagd's model: the fields a create or an update sets
//! beyond the key, type and description, checked as flagd's schemas
//! (`flagd-schemas/json/flags.json`, `targeting.json`) check them, with the
//! failing place named; and flagd's flag-definition files (`flags import`,
//! `flags export`), shared rules in `$evaluators` included.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{FlagDef, FlagType, Rule, Status, check_value, targeting::schema, validate_key};
use crate::error::{Error, Result};

/// The flagd-model fields of a write, as the caller sent them; `None`
/// leaves a field as it is (on create: variants from the legacy values,
/// enabled, no rule, no metadata).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DefinitionUpdate {
    /// `ENABLED` or `DISABLED`.
    pub state: Option<Status>,
    /// Every variant (replacing all of them).
    pub variants: Option<BTreeMap<String, Value>>,
    /// The default variant (`Some(None)`: none).
    pub default_variant: Option<Option<String>>,
    /// The targeting rule (`Some(None)`: none).
    pub targeting: Option<Option<Value>>,
    /// The metadata (replacing all of it).
    pub metadata: Option<Map<String, Value>>,
}

impl DefinitionUpdate {
    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        *self == DefinitionUpdate::default()
    }

    /// Applies the update to `def` and checks the result as a whole.
    pub fn apply_to(self, def: &mut FlagDef) -> Result<()> {
        if let Some(s) = self.state {
            def.status = s;
        }
        if let Some(v) = self.variants {
            def.variants = v;
        }
        if let Some(d) = self.default_variant {
            def.default_variant = d;
        }
        if let Some(t) = self.targeting {
            def.targeting = t.map(compile_rule).transpose()?;
        }
        if let Some(m) = self.metadata {
            def.metadata = m;
        }
        check(def)
    }
}

/// Compiles a targeting rule; one that does not compile, or that flagd's
/// targeting schema refuses, is INVALID_ARGUMENT naming the place (a JSON
/// pointer) and the reason.
pub fn compile_rule(rule: Value) -> Result<Rule> {
    let violation = schema::check(&rule).err();
    let compiled = compile_unchecked(rule)?;
    match violation {
        Some(v) => Err(Error::invalid_argument(
            "flag.targeting",
            format!("at /targeting{v}"),
        )),
        None => Ok(compiled),
    }
}

/// [`compile_rule`] without flagd's schema (which an import checks on the
/// rule as the file writes it, before `$ref`s are substituted).
fn compile_unchecked(rule: Value) -> Result<Rule> {
    if !rule.is_object() {
        return Err(Error::invalid_argument(
            "flag.targeting",
            "must be an object (a JsonLogic rule)",
        ));
    }
    Rule::compile(rule).map_err(|e| {
        Error::invalid_argument("flag.targeting", format!("at {}: {}", e.at, e.message))
    })
}

/// Checks a definition as flagd's schema does: at least one variant, each
/// of the flag's type and within the value limits; a default variant that
/// is one of them; scalar metadata.
pub fn check(def: &FlagDef) -> Result<()> {
    if def.variants.is_empty() {
        return Err(Error::invalid_argument(
            "flag.variants",
            "must hold at least one variant",
        ));
    }
    for (name, v) in &def.variants {
        if name.is_empty() {
            return Err(Error::invalid_argument(
                "flag.variants",
                "a variant's name must not be empty",
            ));
        }
        check_value(&format!("flag.variants.{name}"), v, def.value_type)?;
    }
    if let Some(d) = &def.default_variant
        && !def.variants.contains_key(d)
    {
        return Err(Error::invalid_argument(
            "flag.default_variant",
            format!("names {d:?}, which is not one of the flag's variants"),
        ));
    }
    for (k, v) in &def.metadata {
        if !matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
            return Err(Error::invalid_argument(
                &format!("flag.metadata.{k}"),
                "must be a string, a number or a boolean",
            ));
        }
    }
    Ok(())
}

/// The type of a flag whose variants are `variants`: all of one JSON type.
pub fn type_of_variants(field: &str, variants: &Map<String, Value>) -> Result<FlagType> {
    let mut ty = None;
    for (name, v) in variants {
        let t = FlagType::of(v).ok_or_else(|| {
            Error::invalid_argument(&format!("{field}/{name}"), "must not be null")
        })?;
        match ty {
            None => ty = Some(t),
            Some(seen) if seen != t => {
                return Err(Error::invalid_argument(
                    &format!("{field}/{name}"),
                    format!(
                        "is a {}, but the flag's other variants are {}s",
                        t.as_str(),
                        seen.as_str()
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    ty.ok_or_else(|| Error::invalid_argument(field, "must hold at least one variant"))
}

/// The flags of a flagd flag-definition file, and where its rules break
/// flagd's targeting schema.
#[derive(Debug, Clone, PartialEq)]
pub struct FileFlags {
    /// The flags, in key order.
    pub flags: Vec<FlagDef>,
    /// Each place (a JSON pointer in the file) where a rule or a shared
    /// rule breaks flagd's targeting schema, with what the schema wants
    /// there: only when they were allowed.
    pub violations: Vec<String>,
}

/// The flags of a flagd flag-definition file, with `$evaluators`
/// substituted for every `{"$ref": name}` as flagd does. Each flag is
/// checked; the first fault is INVALID_ARGUMENT naming its JSON pointer in
/// the file. Rules (and `$evaluators`) are checked against flagd's
/// targeting schema as the file writes them; with
/// `allow_schema_violations` a rule that compiles but breaks the schema is
/// kept and reported, as flagd loads such a file with a warning.
pub fn parse_file(file: &Value, allow_schema_violations: bool) -> Result<FileFlags> {
    let Value::Object(top) = file else {
        return Err(Error::invalid_argument(
            "configuration",
            "must be a flagd flag-definition object",
        ));
    };
    for k in top.keys() {
        if !matches!(k.as_str(), "flags" | "$evaluators" | "$schema" | "metadata") {
            return Err(Error::invalid_argument(
                &format!("configuration/{k}"),
                "is not a key of a flagd flag-definition file (flags, $evaluators, $schema, metadata)",
            ));
        }
    }
    let evaluators = match top.get("$evaluators") {
        None => Map::new(),
        Some(Value::Object(e)) => e.clone(),
        Some(_) => {
            return Err(Error::invalid_argument(
                "configuration/$evaluators",
                "must be an object of named rules",
            ));
        }
    };
    let flags = match top.get("flags") {
        Some(Value::Object(f)) => f,
        _ => {
            return Err(Error::invalid_argument(
                "configuration/flags",
                "must be an object of flags by key",
            ));
        }
    };
    let mut out = Vec::with_capacity(flags.len());
    // Each violation with the place of its rule in the file.
    let mut violations: Vec<(String, schema::Violation)> = Vec::new();
    for (key, flag) in flags {
        let at = format!("configuration/flags/{}", pointer_escape(key));
        validate_key(&at, key)?;
        out.push(parse_flag(key, flag, &evaluators, &at)?);
        if let Some(Err(v)) = flag.get("targeting").map(schema::check) {
            violations.push((format!("{at}/targeting"), v));
        }
    }
    for (name, rule) in &evaluators {
        if let Err(v) = schema::check(rule) {
            violations.push((
                format!("configuration/$evaluators/{}", pointer_escape(name)),
                v,
            ));
        }
    }
    if !allow_schema_violations && let Some((rule, v)) = violations.first() {
        return Err(Error::invalid_argument(
            &format!("{rule}{}", v.at),
            v.reason(),
        ));
    }
    Ok(FileFlags {
        flags: out,
        violations: violations
            .into_iter()
            .map(|(rule, v)| format!("{rule}{v}"))
            .collect(),
    })
}

fn parse_flag(
    key: &str,
    flag: &Value,
    evaluators: &Map<String, Value>,
    at: &str,
) -> Result<FlagDef> {
    let Value::Object(f) = flag else {
        return Err(Error::invalid_argument(at, "must be an object"));
    };
    for k in f.keys() {
        if !matches!(
            k.as_str(),
            "state" | "variants" | "defaultVariant" | "targeting" | "metadata"
        ) {
            return Err(Error::invalid_argument(
                &format!("{at}/{k}"),
                "is not a key of a flagd flag (state, variants, defaultVariant, targeting, metadata)",
            ));
        }
    }
    let status = match f.get("state") {
        Some(Value::String(s)) => Status::parse(s).ok_or_else(|| {
            Error::invalid_argument(&format!("{at}/state"), "must be ENABLED or DISABLED")
        })?,
        _ => {
            return Err(Error::invalid_argument(
                &format!("{at}/state"),
                "is required: ENABLED or DISABLED",
            ));
        }
    };
    let Some(Value::Object(variants)) = f.get("variants") else {
        return Err(Error::invalid_argument(
            &format!("{at}/variants"),
            "is required: an object of variants by name",
        ));
    };
    let value_type = type_of_variants(&format!("{at}/variants"), variants)?;
    let default_variant = match f.get("defaultVariant") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(Error::invalid_argument(
                &format!("{at}/defaultVariant"),
                "must be a variant's name or null",
            ));
        }
    };
    let targeting = match f.get("targeting") {
        None => None,
        Some(t) => {
            let expanded = substitute_refs(t, evaluators, &format!("{at}/targeting"))?;
            Some(compile_unchecked(expanded).map_err(|e| {
                Error::new(
                    e.kind(),
                    e.message()
                        .replacen("flag.targeting", &format!("{at}/targeting"), 1),
                )
            })?)
        }
    };
    let metadata = match f.get("metadata") {
        None => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            return Err(Error::invalid_argument(
                &format!("{at}/metadata"),
                "must be an object",
            ));
        }
    };
    let def = FlagDef {
        key: key.to_owned(),
        value_type,
        description: String::new(),
        status,
        variants: variants
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        default_variant,
        targeting,
        metadata,
        revision: 0,
        created_at_us: 0,
        updated_at_us: 0,
    };
    check(&def).map_err(|e| {
        Error::new(
            e.kind(),
            e.message().replacen("flag.", &format!("{at}: "), 1),
        )
    })?;
    Ok(def)
}

/// Replaces every `{"$ref": name}` in `rule` with `$evaluators[name]`
/// (which may themselves refer to others, up to a depth that rules out
/// cycles).
fn substitute_refs(rule: &Value, evaluators: &Map<String, Value>, at: &str) -> Result<Value> {
    fn go(v: &Value, ev: &Map<String, Value>, at: &str, depth: usize) -> Result<Value> {
        if depth > 32 {
            return Err(Error::invalid_argument(
                at,
                "$ref nests more than 32 deep (a cycle of $evaluators?)",
            ));
        }
        Ok(match v {
            Value::Object(o) if o.len() == 1 && o.contains_key("$ref") => {
                let Some(Value::String(name)) = o.get("$ref") else {
                    return Err(Error::invalid_argument(
                        &format!("{at}/$ref"),
                        "must name an evaluator",
                    ));
                };
                let target = ev.get(name).ok_or_else(|| {
                    Error::invalid_argument(
                        &format!("{at}/$ref"),
                        format!("names {name:?}, which is not in $evaluators"),
                    )
                })?;
                go(
                    target,
                    ev,
                    &format!("$evaluators/{}", pointer_escape(name)),
                    depth + 1,
                )?
            }
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, v)| {
                        go(v, ev, &format!("{at}/{}", pointer_escape(k)), depth)
                            .map(|v| (k.clone(), v))
                    })
                    .collect::<Result<_>>()?,
            ),
            Value::Array(a) => Value::Array(
                a.iter()
                    .enumerate()
                    .map(|(i, v)| go(v, ev, &format!("{at}/{i}"), depth))
                    .collect::<Result<_>>()?,
            ),
            other => other.clone(),
        })
    }
    go(rule, evaluators, at, 0)
}

fn pointer_escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// A flagd flag-definition file of `flags` (`flags export`).
pub fn to_file<'a>(flags: impl IntoIterator<Item = &'a FlagDef>) -> Value {
    let flags: Map<String, Value> = flags
        .into_iter()
        .map(|d| (d.key.clone(), flagd_flag(d)))
        .collect();
    serde_json::json!({
        "$schema": "https://flagd.dev/schema/v0/flags.json",
        "flags": flags,
    })
}

/// One flag as flagd writes it.
pub fn flagd_flag(d: &FlagDef) -> Value {
    let mut f = Map::new();
    f.insert("state".into(), Value::String(d.status.as_str().to_owned()));
    f.insert(
        "variants".into(),
        Value::Object(
            d.variants
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
    );
    f.insert(
        "defaultVariant".into(),
        d.default_variant.clone().map_or(Value::Null, Value::String),
    );
    if let Some(r) = &d.targeting {
        f.insert("targeting".into(), r.source().clone());
    }
    if !d.metadata.is_empty() {
        f.insert("metadata".into(), Value::Object(d.metadata.clone()));
    }
    Value::Object(f)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn files_substitute_evaluators_and_name_each_fault() {
        let file = json!({
            "$evaluators": {"is_ballmer": {"==": ["ballmer", {"var": "user"}]}},
            "flags": {
                "f": {"state": "ENABLED", "variants": {"on": true, "off": false},
                      "defaultVariant": "off",
                      "targeting": {"if": [{"$ref": "is_ballmer"}, "on", null]}}
            }
        });
        let flags = parse_file(&file, false).unwrap().flags;
        assert_eq!(flags[0].value_type, FlagType::Bool);
        assert_eq!(
            flags[0].targeting.as_ref().unwrap().source(),
            &json!({"if": [{"==": ["ballmer", {"var": "user"}]}, "on", null]})
        );
        for (file, at) in [
            (
                json!({"flags": {"f": {"variants": {"a": 1}}}}),
                "configuration/flags/f/state",
            ),
            (
                json!({"flags": {"f": {"state": "ENABLED", "variants": {"a": 1, "b": "x"}}}}),
                "configuration/flags/f/variants/b",
            ),
            (
                json!({"flags": {"f": {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "z"}}}),
                "configuration/flags/f: default_variant",
            ),
            (
                json!({"flags": {"f": {"state": "ENABLED", "variants": {"a": 1},
                       "targeting": {"if": [{"nope": []}, "a", null]}}}}),
                "configuration/flags/f/targeting: at /targeting/if/0",
            ),
            (
                json!({"flags": {"f": {"state": "ENABLED", "variants": {"a": 1},
                       "targeting": {"$ref": "missing"}}}}),
                "configuration/flags/f/targeting/$ref",
            ),
        ] {
            let e = parse_file(&file, false).unwrap_err();
            assert!(e.message().starts_with(at), "{at}: {}", e.message());
        }
    }

    #[test]
    fn exported_flags_read_back_the_same() {
        let file = json!({"flags": {"f": {"state": "DISABLED", "variants": {"a": "x", "b": "y"},
            "defaultVariant": null, "targeting": {"fractional": [["a", 1], ["b", 1]]},
            "metadata": {"team": "web"}}}});
        let flags = parse_file(&file, false).unwrap().flags;
        assert_eq!(parse_file(&to_file(&flags), false).unwrap().flags, flags);
    }

    #[test]
    fn rules_that_break_flagds_schema_are_refused_or_kept_and_reported() {
        let file = json!({
            "$evaluators": {"old": {"sem_ver": [{"var": "version"}, "*", "1.0.0"]}},
            "flags": {
                "f": {"state": "ENABLED", "variants": {"a": "x", "b": "y"}, "defaultVariant": "a",
                      "targeting": {"if": [{"ends_with": [{"var": "id"}, 3]}, "b", null]}}
            }
        });
        let e = parse_file(&file, false).unwrap_err();
        assert_eq!(
            e.message(),
            "configuration/flags/f/targeting/if/0/ends_with/1: want string, but got number \
             (flagd's targeting schema)"
        );
        let kept = parse_file(&file, true).unwrap();
        assert_eq!(kept.flags.len(), 1);
        assert_eq!(kept.violations.len(), 2, "{:?}", kept.violations);
        assert!(kept.violations[1].starts_with("configuration/$evaluators/old/sem_ver/1: "));
        // A single write is refused whatever it asks.
        let e = compile_rule(json!({"fractional": [["a", 50], ["b", -50]]})).unwrap_err();
        assert!(
            e.message()
                .starts_with("flag.targeting: at /targeting/fractional/1/1: "),
            "{}",
            e.message()
        );
    }
}
