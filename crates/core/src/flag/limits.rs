//! What a flag may hold: its key, its description, its value (type, size,
//! nesting), and how many flags a page of `ListFlags` lists.

use serde_json::Value;

use super::FlagType;
use crate::error::{Error, Result};

/// The largest flag value, as compact JSON.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// The deepest a value may nest objects and lists (`{"a":{"b":1}}` is 2),
/// on every transport.
pub const MAX_VALUE_DEPTH: usize = 32;

/// How deep `v` nests objects and lists (a scalar is 0).
fn depth(v: &Value) -> usize {
    // Iterative, so a hostile value cannot overflow the stack here.
    let mut deepest = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((v, d)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(a) => Box::new(a.iter()),
            Value::Object(o) => Box::new(o.values()),
            _ => continue,
        };
        deepest = deepest.max(d + 1);
        stack.extend(children.map(|c| (c, d + 1)));
    }
    deepest
}
/// The longest flag key.
pub const MAX_KEY_LEN: usize = 128;
/// The longest description, in characters.
pub const MAX_DESCRIPTION_LEN: usize = 1000;
/// The page size of `ListFlags` when none is given.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// The largest page of `ListFlags`.
pub const MAX_PAGE_SIZE: usize = 1000;

/// Checks that `v` has type `ty` and fits the size limit; `field` names it.
pub fn check_value(field: &str, v: &Value, ty: FlagType) -> Result<()> {
    match FlagType::of(v) {
        Some(t) if t == ty => {}
        Some(t) => {
            return Err(Error::invalid_argument(
                field,
                format!(
                    "is a {}, but the flag's type is {}",
                    t.as_str(),
                    ty.as_str()
                ),
            ));
        }
        None => {
            return Err(Error::invalid_argument(
                field,
                format!("must be a {}, not null", ty.as_str()),
            ));
        }
    }
    let nesting = depth(v);
    if nesting > MAX_VALUE_DEPTH {
        return Err(Error::invalid_argument(
            field,
            format!("nests objects and lists {nesting} deep; the limit is {MAX_VALUE_DEPTH}"),
        ));
    }
    let size = serde_json::to_string(v)
        .map(|s| s.len())
        .unwrap_or(usize::MAX);
    if size > MAX_VALUE_BYTES {
        return Err(Error::invalid_argument(
            field,
            format!("is {size} bytes as JSON; the limit is {MAX_VALUE_BYTES}"),
        ));
    }
    Ok(())
}

/// Checks a flag key: 1 to 128 characters of `A-Z a-z 0-9 . _ -`.
pub fn validate_key(field: &str, key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::invalid_argument(field, "must not be empty"));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(Error::invalid_argument(
            field,
            format!("must be at most {MAX_KEY_LEN} characters"),
        ));
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(Error::invalid_argument(
            field,
            "may contain only A-Z, a-z, 0-9, '.', '_' and '-'",
        ));
    }
    // A URL path segment of "." or ".." is removed by HTTP clients before it
    // is sent, so such a flag could never be reached over REST.
    if key == "." || key == ".." {
        return Err(Error::invalid_argument(
            field,
            "must not be \".\" or \"..\" (HTTP clients remove such path segments)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn values_are_type_checked_and_bounded() {
        assert!(check_value("v", &json!(1.5), FlagType::Number).is_ok());
        let e = check_value("v", &json!("x"), FlagType::Bool).unwrap_err();
        assert!(e.message().starts_with("v: is a string"), "{}", e.message());
        assert!(check_value("v", &Value::Null, FlagType::Bool).is_err());
        let big = Value::String("x".repeat(MAX_VALUE_BYTES));
        assert!(check_value("v", &big, FlagType::String).is_err());
    }

    fn nested(levels: usize, list: bool) -> Value {
        (0..levels).fold(json!(true), |v, _| {
            if list { json!([v]) } else { json!({ "a": v }) }
        })
    }

    #[test]
    fn values_nest_at_most_32_deep_in_objects_and_lists() {
        assert_eq!(depth(&json!(1)), 0);
        assert_eq!(depth(&json!({"a": [1, {"b": 2}], "c": 3})), 3);
        for list in [false, true] {
            let ty = if list {
                FlagType::List
            } else {
                FlagType::Object
            };
            assert!(check_value("v", &nested(MAX_VALUE_DEPTH, list), ty).is_ok());
            let e = check_value("v", &nested(MAX_VALUE_DEPTH + 1, list), ty).unwrap_err();
            assert_eq!(
                e.message(),
                "v: nests objects and lists 33 deep; the limit is 32"
            );
        }
    }

    #[test]
    fn dot_segments_are_not_keys() {
        for key in [".", ".."] {
            let e = validate_key("flag.key", key).unwrap_err();
            assert!(e.message().contains("HTTP clients"), "{}", e.message());
        }
        for key in ["...", ".a", "a.", "a..b"] {
            assert!(validate_key("flag.key", key).is_ok(), "{key}");
        }
    }
}
