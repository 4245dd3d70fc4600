//! Conversions between generated proto types and domain types that more than
//! one message uses: `google.protobuf.Value` and `Timestamp`, page requests.

use serde_json::Value;

use switchyard_core::{
    error::{Error, Result},
    service::page::PageRequest,
};

/// Converts a protobuf `Value` to JSON; `field` names it in errors. Numbers
/// must be finite; a missing value is INVALID_ARGUMENT.
pub fn from_proto(field: &str, v: Option<&pbjson_types::Value>) -> Result<Value> {
    use pbjson_types::value::Kind;
    let Some(v) = v else {
        return Err(Error::invalid_argument(field, "is required"));
    };
    Ok(match &v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::NumberValue(n)) => serde_json::Number::from_f64(*n)
            .map(Value::Number)
            .ok_or_else(|| Error::invalid_argument(field, "numbers must be finite"))?,
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::StructValue(s)) => Value::Object(
            s.fields
                .iter()
                .map(|(k, v)| Ok((k.clone(), from_proto(field, Some(v))?)))
                .collect::<Result<_>>()?,
        ),
        Some(Kind::ListValue(l)) => Value::Array(
            l.values
                .iter()
                .map(|v| from_proto(field, Some(v)))
                .collect::<Result<_>>()?,
        ),
    })
}

/// Converts JSON to a protobuf `Value`.
pub fn to_proto(v: &Value) -> pbjson_types::Value {
    use pbjson_types::value::Kind;
    let kind = match v {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(a) => Kind::ListValue(pbjson_types::ListValue {
            values: a.iter().map(to_proto).collect(),
        }),
        Value::Object(o) => Kind::StructValue(pbjson_types::Struct {
            fields: o.iter().map(|(k, v)| (k.clone(), to_proto(v))).collect(),
        }),
    };
    pbjson_types::Value { kind: Some(kind) }
}

/// Converts microseconds since the epoch to a protobuf timestamp.
pub fn timestamp(us: i64) -> pbjson_types::Timestamp {
    pbjson_types::Timestamp {
        seconds: us.div_euclid(1_000_000),
        nanos: i32::try_from(us.rem_euclid(1_000_000) * 1000).unwrap_or(0),
    }
}

/// A page request from a list call's `page_size` and `page_token`.
pub fn page(size: i32, token: &str) -> PageRequest {
    PageRequest {
        size,
        token: token.to_owned(),
    }
}
