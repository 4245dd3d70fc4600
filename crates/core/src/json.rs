//! JSON values as Switchyard keeps them.

use serde_json::{Value, json};

/// `v` with integral numbers written without a fraction (`3`, not `3.0`):
/// SDKs and in-process providers tell an integer from a float by it. Applied
/// to every value written through protobuf (a `google.protobuf.Value` number
/// is a double) and to values of rows written before flags kept their
/// numbers as written.
pub fn integral(v: &Value) -> Value {
    match v {
        Value::Number(n) => match n.as_f64().and_then(integral_f64) {
            Some(i) => json!(i),
            None => v.clone(),
        },
        Value::Array(items) => Value::Array(items.iter().map(integral).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), integral(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// `f` as an integer when it is one that a double holds exactly (below
/// 2^53): how [`integral`] writes a number.
pub fn integral_f64(f: f64) -> Option<i64> {
    // Exact below 2^53.
    #[allow(clippy::cast_possible_truncation)]
    (f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15).then_some(f as i64)
}
