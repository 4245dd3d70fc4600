//! Conversions between generated proto types and domain types that more than
//! one message uses: `google.protobuf.Value` and `Timestamp`, page requests.

use serde_json::Value;

use switchyard_core::{
    error::{Error, Result},
    service::page::PageRequest,
};

/// Converts a protobuf `Value` to JSON; `field` names it in errors. Numbers
/// must be finite, and whole ones are written as integers (a protobuf number
/// is a double; see `switchyard_core::json::integral`); a missing value is
/// INVALID_ARGUMENT.
pub fn from_proto(field: &str, v: Option<&pbjson_types::Value>) -> Result<Value> {
    let Some(v) = v else {
        return Err(Error::invalid_argument(field, "is required"));
    };
    into_json(v.clone()).map_err(|why| Error::invalid_argument(field, why))
}

/// A protobuf `Struct` the caller owns as a JSON object, converted as
/// [`from_proto`] converts each value, its keys and strings moved rather
/// than copied (an evaluation context, once per call); `field.<key>` names
/// a refused value.
pub fn struct_into_json(
    field: &str,
    s: pbjson_types::Struct,
) -> Result<serde_json::Map<String, Value>> {
    s.fields
        .into_iter()
        .map(|(k, v)| match into_json(v) {
            Ok(v) => Ok((k, v)),
            Err(why) => Err(Error::invalid_argument(&format!("{field}.{k}"), why)),
        })
        .collect()
}

/// [`from_proto`]'s conversion, taking the value apart; the error says why.
fn into_json(v: pbjson_types::Value) -> std::result::Result<Value, &'static str> {
    use pbjson_types::value::Kind;
    Ok(match v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::NumberValue(n)) => match switchyard_core::json::integral_f64(n) {
            Some(i) => Value::from(i),
            None => serde_json::Number::from_f64(n)
                .map(Value::Number)
                .ok_or("numbers must be finite")?,
        },
        Some(Kind::StringValue(s)) => Value::String(s),
        Some(Kind::BoolValue(b)) => Value::Bool(b),
        Some(Kind::StructValue(s)) => Value::Object(
            s.fields
                .into_iter()
                .map(|(k, v)| Ok::<_, &str>((k, into_json(v)?)))
                .collect::<std::result::Result<_, _>>()?,
        ),
        Some(Kind::ListValue(l)) => Value::Array(
            l.values
                .into_iter()
                .map(into_json)
                .collect::<std::result::Result<_, _>>()?,
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
