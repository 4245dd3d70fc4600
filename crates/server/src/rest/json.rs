//! Writes proto3 JSON straight from the protobuf wire bytes of a reply,
//! guided by its descriptor: the fast path of the REST responses.
//!
//! The output is byte for byte what `prost_reflect`'s serde serialisation
//! writes with the gateway's options (every field without presence, number
//! order, 64-bit integers as strings, integral doubles without a fraction), but
//! without building a `DynamicMessage` tree first; maps (string keys) are
//! written in key order, where that path writes them in hash order. It covers
//! the encodings our own services produce; anything else (a repeated singular
//! field, bytes, maps with other keys, well-known types other than
//! `Timestamp`, `Value`, `Struct`, `ListValue`, invalid UTF-8, non-finite
//! `Value` numbers) returns `None`, and the caller falls back to the
//! `DynamicMessage` path, which handles or refuses it.

use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, SerializeOptions};
use serde_json::ser::Formatter;

use super::Refusal;

/// One field as read from the wire.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Raw<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Bytes(&'a [u8]),
}

fn varint(buf: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        // The tenth byte may only carry the top bit (prost refuses more).
        if shift == 63 && b > 1 {
            return None;
        }
        value |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(value);
        }
    }
    None
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if buf.len() < n {
        return None;
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Some(head)
}

/// Splits an encoded message into its fields, in wire order.
pub(crate) fn fields(mut buf: &[u8]) -> Option<Vec<(u32, Raw<'_>)>> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        // Field numbers are 1 to 2^29 - 1, as prost checks.
        let number = u32::try_from(key >> 3)
            .ok()
            .filter(|n| (1..=536_870_911).contains(n))?;
        let raw = match key & 7 {
            0 => Raw::Varint(varint(&mut buf)?),
            1 => Raw::Fixed64(u64::from_le_bytes(take(&mut buf, 8)?.try_into().ok()?)),
            2 => {
                let len = usize::try_from(varint(&mut buf)?).ok()?;
                Raw::Bytes(take(&mut buf, len)?)
            }
            5 => Raw::Fixed32(u32::from_le_bytes(take(&mut buf, 4)?.try_into().ok()?)),
            _ => return None,
        };
        out.push((number, raw));
    }
    Some(out)
}

/// Nesting deeper than this is left to the fallback, which applies prost's own
/// recursion limit (100).
const MAX_DEPTH: u32 = 64;

/// Writes the JSON of the message `desc` encoded in `bytes`, or returns `None`
/// (with `out` in an unspecified state) when the fast path does not apply.
pub(crate) fn write_message(
    desc: &MessageDescriptor,
    bytes: &[u8],
    out: &mut Vec<u8>,
) -> Option<()> {
    message_at(desc, bytes, out, 0)
}

fn message_at(desc: &MessageDescriptor, bytes: &[u8], out: &mut Vec<u8>, depth: u32) -> Option<()> {
    let depth = depth + 1;
    if depth > MAX_DEPTH {
        return None;
    }
    match desc.full_name() {
        "google.protobuf.Timestamp" => return write_timestamp(bytes, out),
        "google.protobuf.Value" => return write_value(bytes, out, depth),
        "google.protobuf.Struct" => return write_struct(bytes, out, depth),
        "google.protobuf.ListValue" => return write_list(bytes, out, depth),
        _ if desc.package_name() == "google.protobuf" => return None,
        _ => {}
    }
    let raw = fields(bytes)?;
    out.push(b'{');
    let mut first = true;
    for field in desc.fields() {
        let number = field.number();
        let mut entries = raw.iter().filter(|(n, _)| *n == number).map(|(_, r)| *r);
        if field.is_map() {
            key(&field, out, &mut first);
            write_map(&field, entries, out, depth)?;
            continue;
        }
        if field.is_list() {
            key(&field, out, &mut first);
            out.push(b'[');
            let mut first_item = true;
            for r in entries {
                write_list_entry(&field, r, out, &mut first_item, depth)?;
            }
            out.push(b']');
            continue;
        }
        let value = entries.next();
        if entries.next().is_some() {
            return None;
        }
        // Two members of one oneof on the wire: the decoder keeps the last;
        // left to it.
        if value.is_some()
            && let Some(oneof) = field.containing_oneof()
            && oneof.fields().any(|other| {
                other.number() != number && raw.iter().any(|(n, _)| *n == other.number())
            })
        {
            return None;
        }
        match value {
            None if field.supports_presence() => {}
            None => {
                key(&field, out, &mut first);
                write_default(&field, out)?;
            }
            Some(r) => {
                key(&field, out, &mut first);
                write_single(&field.kind(), r, out, depth)?;
            }
        }
    }
    out.push(b'}');
    Some(())
}

/// A map with string keys, as a JSON object in key order (the
/// `DynamicMessage` path writes maps in hash order, so this path is the one
/// that makes map replies deterministic). A key repeated on the wire keeps
/// its last value, as the decoder does.
fn write_map<'a>(
    field: &FieldDescriptor,
    entries: impl Iterator<Item = Raw<'a>>,
    out: &mut Vec<u8>,
    depth: u32,
) -> Option<()> {
    let Kind::Message(entry) = field.kind() else {
        return None;
    };
    if entry.map_entry_key_field().kind() != Kind::String {
        return None;
    }
    let value_field = entry.map_entry_value_field();
    let mut map: std::collections::BTreeMap<&str, Option<Raw<'a>>> =
        std::collections::BTreeMap::new();
    for r in entries {
        let Raw::Bytes(bytes) = r else { return None };
        let (mut k, mut v) = ("", None);
        for (n, raw) in fields(bytes)? {
            match (n, raw) {
                (1, Raw::Bytes(b)) => k = std::str::from_utf8(b).ok()?,
                (1, _) => return None,
                (2, raw) => v = Some(raw),
                _ => {}
            }
        }
        map.insert(k, v);
    }
    out.push(b'{');
    let mut first = true;
    for (k, v) in map {
        comma(out, &mut first);
        write_str(k, out);
        out.push(b':');
        match v {
            Some(r) => write_single(&value_field.kind(), r, out, depth)?,
            None => write_default(&value_field, out)?,
        }
    }
    out.push(b'}');
    Some(())
}

fn key(field: &FieldDescriptor, out: &mut Vec<u8>, first: &mut bool) {
    if !*first {
        out.push(b',');
    }
    *first = false;
    write_str(field.json_name(), out);
    out.push(b':');
}

fn write_str(s: &str, out: &mut Vec<u8>) {
    // serde_json's escaping, as the fallback path uses.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn comma(out: &mut Vec<u8>, first: &mut bool) {
    if !*first {
        out.push(b',');
    }
    *first = false;
}

/// One wire entry of a repeated field: a packed run of numbers or one value.
pub(crate) fn write_list_entry(
    field: &FieldDescriptor,
    r: Raw<'_>,
    out: &mut Vec<u8>,
    first: &mut bool,
    depth: u32,
) -> Option<()> {
    let kind = field.kind();
    let packable = !matches!(kind, Kind::String | Kind::Bytes | Kind::Message(_));
    match (r, packable) {
        (Raw::Bytes(mut run), true) => {
            while !run.is_empty() {
                let item = match kind {
                    Kind::Double | Kind::Fixed64 | Kind::Sfixed64 => {
                        Raw::Fixed64(u64::from_le_bytes(take(&mut run, 8)?.try_into().ok()?))
                    }
                    Kind::Float | Kind::Fixed32 | Kind::Sfixed32 => {
                        Raw::Fixed32(u32::from_le_bytes(take(&mut run, 4)?.try_into().ok()?))
                    }
                    _ => Raw::Varint(varint(&mut run)?),
                };
                comma(out, first);
                write_single(&kind, item, out, depth)?;
            }
            Some(())
        }
        _ => {
            comma(out, first);
            write_single(&kind, r, out, depth)
        }
    }
}

fn write_default(field: &FieldDescriptor, out: &mut Vec<u8>) -> Option<()> {
    match field.kind() {
        Kind::Bool => out.extend_from_slice(b"false"),
        Kind::String | Kind::Bytes => out.extend_from_slice(b"\"\""),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 | Kind::Uint64 | Kind::Fixed64 => {
            out.extend_from_slice(b"\"0\"");
        }
        Kind::Enum(e) if e.full_name() == "google.protobuf.NullValue" => {
            out.extend_from_slice(b"null")
        }
        Kind::Enum(e) => match e.get_value(0) {
            Some(v) => write_str(v.name(), out),
            None => out.push(b'0'),
        },
        Kind::Message(_) => return None,
        _ => out.push(b'0'),
    }
    Some(())
}

pub(crate) fn write_single(kind: &Kind, r: Raw<'_>, out: &mut Vec<u8>, depth: u32) -> Option<()> {
    let mut fmt = NumberFormatter;
    match (kind, r) {
        (Kind::Bool, Raw::Varint(v)) => {
            out.extend_from_slice(if v != 0 { b"true" } else { b"false" })
        }
        (Kind::Int32, Raw::Varint(v)) => push_display(out, v as i32),
        (Kind::Sint32, Raw::Varint(v)) => {
            let n = v as u32;
            push_display(out, ((n >> 1) as i32) ^ -((n & 1) as i32));
        }
        (Kind::Uint32, Raw::Varint(v)) => push_display(out, v as u32),
        (Kind::Int64, Raw::Varint(v)) => push_quoted(out, v as i64),
        (Kind::Sint64, Raw::Varint(v)) => push_quoted(out, ((v >> 1) as i64) ^ -((v & 1) as i64)),
        (Kind::Uint64, Raw::Varint(v)) => push_quoted(out, v),
        (Kind::Fixed32, Raw::Fixed32(v)) => push_display(out, v),
        (Kind::Sfixed32, Raw::Fixed32(v)) => push_display(out, v as i32),
        (Kind::Fixed64, Raw::Fixed64(v)) => push_quoted(out, v),
        (Kind::Sfixed64, Raw::Fixed64(v)) => push_quoted(out, v as i64),
        (Kind::Double, Raw::Fixed64(v)) => {
            let f = f64::from_bits(v);
            if f.is_finite() {
                fmt.write_f64(out, f).ok()?;
            } else {
                write_str(non_finite(f), out);
            }
        }
        (Kind::Float, Raw::Fixed32(v)) => {
            let f = f32::from_bits(v);
            if f.is_finite() {
                fmt.write_f32(out, f).ok()?;
            } else {
                write_str(non_finite(f64::from(f)), out);
            }
        }
        (Kind::String, Raw::Bytes(b)) => write_str(std::str::from_utf8(b).ok()?, out),
        (Kind::Enum(e), Raw::Varint(_)) if e.full_name() == "google.protobuf.NullValue" => {
            out.extend_from_slice(b"null");
        }
        (Kind::Enum(e), Raw::Varint(v)) => {
            let n = v as i32;
            match e.get_value(n) {
                Some(value) => write_str(value.name(), out),
                None => push_display(out, n),
            }
        }
        (Kind::Message(m), Raw::Bytes(b)) => message_at(m, b, out, depth)?,
        _ => return None,
    }
    Some(())
}

fn non_finite(f: f64) -> &'static str {
    if f.is_nan() {
        "NaN"
    } else if f > 0.0 {
        "Infinity"
    } else {
        "-Infinity"
    }
}

fn push_display(out: &mut Vec<u8>, v: impl std::fmt::Display) {
    use std::io::Write;
    let _ = write!(out, "{v}");
}

fn push_quoted(out: &mut Vec<u8>, v: impl std::fmt::Display) {
    use std::io::Write;
    let _ = write!(out, "\"{v}\"");
}

/// `Timestamp` as RFC 3339 in UTC, formatted by `prost_types` as the fallback does.
fn write_timestamp(bytes: &[u8], out: &mut Vec<u8>) -> Option<()> {
    let mut ts = prost_types::Timestamp::default();
    for (n, r) in fields(bytes)? {
        match (n, r) {
            (1, Raw::Varint(v)) => ts.seconds = v as i64,
            (2, Raw::Varint(v)) => ts.nanos = v as i32,
            _ => return None,
        }
    }
    // The range proto3 JSON allows: 0001-01-01 to 9999-12-31, nanos in range.
    if !(-62_135_596_800..=253_402_300_799).contains(&ts.seconds)
        || !(0..1_000_000_000).contains(&ts.nanos)
    {
        return None;
    }
    push_quoted(out, ts);
    Some(())
}

/// `google.protobuf.Value`: one of null, number, string, bool, struct, list.
fn write_value(bytes: &[u8], out: &mut Vec<u8>, depth: u32) -> Option<()> {
    let depth = depth + 1;
    if depth > MAX_DEPTH {
        return None;
    }
    let raw = fields(bytes)?;
    match raw.as_slice() {
        [] | [(1, Raw::Varint(_))] => out.extend_from_slice(b"null"),
        [(2, Raw::Fixed64(v))] => {
            let f = f64::from_bits(*v);
            if !f.is_finite() {
                return None;
            }
            NumberFormatter.write_f64(out, f).ok()?;
        }
        [(3, Raw::Bytes(b))] => write_str(std::str::from_utf8(b).ok()?, out),
        [(4, Raw::Varint(v))] => out.extend_from_slice(if *v != 0 { b"true" } else { b"false" }),
        [(5, Raw::Bytes(b))] => write_struct(b, out, depth)?,
        [(6, Raw::Bytes(b))] => write_list(b, out, depth)?,
        _ => return None,
    }
    Some(())
}

/// `google.protobuf.Struct`: keys sorted, as a decoded `BTreeMap` has them. A
/// repeated key (which the decoder merges) is left to the fallback.
fn write_struct(bytes: &[u8], out: &mut Vec<u8>, depth: u32) -> Option<()> {
    let mut entries = std::collections::BTreeMap::new();
    for (n, r) in fields(bytes)? {
        let (1, Raw::Bytes(entry)) = (n, r) else {
            return None;
        };
        let (mut k, mut v) = (None, None);
        for (en, er) in fields(entry)? {
            let slot = match (en, er) {
                (1, Raw::Bytes(b)) => k.replace(std::str::from_utf8(b).ok()?),
                (2, Raw::Bytes(b)) => v.replace(b).map(|_| ""),
                _ => return None,
            };
            if slot.is_some() {
                return None;
            }
        }
        if entries.insert(k.unwrap_or(""), v.unwrap_or(&[])).is_some() {
            return None;
        }
    }
    out.push(b'{');
    let mut first = true;
    for (k, v) in entries {
        comma(out, &mut first);
        write_str(k, out);
        out.push(b':');
        write_value(v, out, depth)?;
    }
    out.push(b'}');
    Some(())
}

/// `google.protobuf.ListValue`.
fn write_list(bytes: &[u8], out: &mut Vec<u8>, depth: u32) -> Option<()> {
    out.push(b'[');
    let mut first = true;
    for (n, r) in fields(bytes)? {
        let (1, Raw::Bytes(v)) = (n, r) else {
            return None;
        };
        comma(out, &mut first);
        write_value(v, out, depth)?;
    }
    out.push(b']');
    Some(())
}

fn serialize_options() -> SerializeOptions {
    // grpc-gateway's default marshaler emits unpopulated fields; so do we.
    SerializeOptions::new().skip_default_fields(false)
}

/// Serialises `m` as proto3 JSON the gateway's way, through `prost_reflect`:
/// the fallback of the direct writer, and its reference in tests.
pub(crate) fn to_json(m: &DynamicMessage) -> Result<String, Refusal> {
    let mut buf = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, NumberFormatter);
    m.serialize_with_options(&mut ser, &serialize_options())
        .map_err(|e| switchyard_core::error::Error::internal("encoding JSON", e))?;
    String::from_utf8(buf)
        .map_err(|e| switchyard_core::error::Error::internal("encoding JSON", e).into())
}

/// Writes integral doubles without a fraction (`10`, not `10.0`), as Go's
/// protojson and grpc-gateway do; everything else as serde_json does.
pub(crate) struct NumberFormatter;

impl serde_json::ser::Formatter for NumberFormatter {
    fn write_f64<W: ?Sized + std::io::Write>(&mut self, w: &mut W, v: f64) -> std::io::Result<()> {
        if v.fract() == 0.0 && v.abs() < 1e21 {
            write!(w, "{v:.0}")
        } else {
            serde_json::ser::CompactFormatter.write_f64(w, v)
        }
    }

    fn write_f32<W: ?Sized + std::io::Write>(&mut self, w: &mut W, v: f32) -> std::io::Result<()> {
        if v.fract() == 0.0 && v.abs() < 1e21 {
            write!(w, "{v:.0}")
        } else {
            serde_json::ser::CompactFormatter.write_f32(w, v)
        }
    }
}

#[cfg(test)]
mod tests {
    use pbjson_types::{ListValue, Struct, Timestamp, Value, value::Kind as V};
    use proptest::prelude::*;
    use prost::Message;
    use prost_reflect::{DescriptorPool, DynamicMessage};

    use super::write_message;
    use switchyard_api::v1::*;

    fn pool() -> DescriptorPool {
        DescriptorPool::decode(switchyard_api::FILE_DESCRIPTOR_SET).unwrap()
    }

    /// Returns (fast path, `DynamicMessage` path); the fast one `None` when it
    /// declined.
    fn both<M: Message>(name: &str, msg: &M) -> (Option<String>, String) {
        let desc = pool().get_message_by_name(name).unwrap();
        let bytes = msg.encode_to_vec();
        let mut out = Vec::new();
        let fast = write_message(&desc, &bytes, &mut out).map(|()| String::from_utf8(out).unwrap());
        let slow = super::to_json(&DynamicMessage::decode(desc, bytes.as_slice()).unwrap())
            .unwrap_or_else(|r| panic!("{}", r.body()));
        (fast, slow)
    }

    fn same<M: Message>(name: &str, msg: &M) {
        let (fast, slow) = both(name, msg);
        assert_eq!(fast.as_deref(), Some(slow.as_str()), "{name}");
    }

    fn v(kind: V) -> Option<Value> {
        Some(Value { kind: Some(kind) })
    }

    fn ts(seconds: i64, nanos: i32) -> Option<Timestamp> {
        Some(Timestamp { seconds, nanos })
    }

    fn effective(flag: &str, value: Option<Value>, source: &str) -> EffectiveFlag {
        EffectiveFlag {
            flag: flag.into(),
            value,
            source: source.into(),
            variant: if source.is_empty() { "" } else { "v" }.into(),
            targeting: source == "tenant",
        }
    }

    #[test]
    fn matches_the_dynamic_path_on_every_shape_our_replies_take() {
        let nested = Struct {
            fields: [
                (
                    "zeta".to_owned(),
                    Value {
                        kind: Some(V::NumberValue(-0.5)),
                    },
                ),
                (
                    "alpha".to_owned(),
                    Value {
                        kind: Some(V::NullValue(0)),
                    },
                ),
                (
                    "list".to_owned(),
                    Value {
                        kind: Some(V::ListValue(ListValue {
                            values: vec![
                                Value {
                                    kind: Some(V::BoolValue(true)),
                                },
                                Value {
                                    kind: Some(V::StringValue("x".into())),
                                },
                                Value { kind: None },
                            ],
                        })),
                    },
                ),
            ]
            .into_iter()
            .collect(),
        };
        let flags = vec![
            effective("bool", v(V::BoolValue(false)), "default"),
            effective("int", v(V::NumberValue(20.0)), "store"),
            effective("neg", v(V::NumberValue(-3.0)), "env"),
            effective("frac", v(V::NumberValue(0.1)), "tenant"),
            effective("big", v(V::NumberValue(1e300)), "store"),
            effective("tiny", v(V::NumberValue(1e-7)), "store"),
            effective("limit", v(V::NumberValue(1e21)), "store"),
            effective("zero", v(V::NumberValue(-0.0)), "store"),
            effective(
                "text",
                v(V::StringValue(
                    "quote \" slash \\ nl \n tab \t ctl \u{1} é 🦀".into(),
                )),
                "tenant",
            ),
            effective("null", v(V::NullValue(0)), "default"),
            effective("struct", v(V::StructValue(nested)), "default"),
            effective("unset", None, ""),
        ];
        let defs = vec![Flag {
            key: "k".into(),
            r#type: FlagType::Object as i32,
            description: String::new(),
            default_value: v(V::StringValue(String::new())),
            stored_value: None,
            revision: i64::MAX,
            create_time: ts(1_764_085_228, 661_243_000),
            update_time: ts(0, 0),
            state: "ENABLED".into(),
            variants: [(
                "default".to_owned(),
                Value {
                    kind: Some(V::StringValue(String::new())),
                },
            )]
            .into(),
            default_variant: "default".into(),
            targeting: None,
            metadata: None,
        }];
        same(
            "switchyard.v1.ListFlagsResponse",
            &ListFlagsResponse {
                flags: flags.clone(),
                next_page_token: "6b".into(),
                revision: 42,
                definitions: defs,
                etag: "\"42-0123456789abcdef\"".into(),
                not_modified: true,
            },
        );
        same(
            "switchyard.v1.ListFlagsResponse",
            &ListFlagsResponse::default(),
        );
        for (seconds, nanos) in [
            (1, 0),
            (1, 120_000_000),
            (1, 123_456_000),
            (1, 123_456_789),
            (-1, 5),
        ] {
            same(
                "switchyard.v1.WatchFlagsResponse",
                &WatchFlagsResponse {
                    r#type: FlagEventType::Upsert as i32,
                    revision: -7,
                    flags: flags[..2].to_vec(),
                    flag: Some(flags[8].clone()),
                    commit_time: ts(seconds, nanos),
                    snapshot_continues: true,
                },
            );
        }
        same(
            "switchyard.v1.ResolveTenantResponse",
            &ResolveTenantResponse {
                tenant: Some(Tenant {
                    id: "a".into(),
                    display_name: "A".into(),
                    patterns: vec!["*.a.example".into(), "a.*".into()],
                    disabled: true,
                    revision: 3,
                    create_time: ts(1_764_085_228, 0),
                    update_time: ts(1_764_085_229, 1),
                }),
                matched_pattern: "*.a.example".into(),
                normalized_key: "api.a.example".into(),
                source: 99, // an enum number this build does not know
            },
        );
        same(
            "switchyard.v1.EvaluateFlagResponse",
            &EvaluateFlagResponse::default(),
        );
    }

    #[test]
    fn maps_are_written_in_key_order_with_the_dynamic_paths_values() {
        let stats = TrafficStats {
            count: 10,
            errors: 3,
            status_code_distribution: [
                ("UNAVAILABLE".into(), 2),
                ("OK".into(), 7),
                ("DEADLINE_EXCEEDED".into(), 1),
            ]
            .into(),
            error_distribution: [("b".into(), 1), ("a".into(), 2)].into(),
            ..Default::default()
        };
        let (fast, slow) = both("switchyard.v1.TrafficStats", &stats);
        let fast = fast.expect("maps of string keys are written");
        assert!(
            fast.contains(
                r#""statusCodeDistribution":{"DEADLINE_EXCEEDED":1,"OK":7,"UNAVAILABLE":2}"#
            ),
            "{fast}"
        );
        // The same JSON as the dynamic path, which orders keys by hash.
        let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
        assert_eq!(parse(&fast), parse(&slow));
        // A key repeated on the wire keeps its last value, as the decoder does.
        let desc = pool()
            .get_message_by_name("switchyard.v1.TrafficStats")
            .unwrap();
        let entry = |v: u8| [0x42, 0x06, 0x0a, 0x02, b'O', b'K', 0x10, v];
        let mut twice = entry(1).to_vec();
        twice.extend(entry(5));
        let mut out = Vec::new();
        write_message(&desc, &twice, &mut out).unwrap();
        assert!(
            String::from_utf8(out)
                .unwrap()
                .contains(r#""statusCodeDistribution":{"OK":5}"#)
        );
    }

    #[test]
    fn declines_what_it_does_not_cover() {
        // A non-finite number in a Value is an error on the dynamic path; the
        // fast path leaves it to that path.
        let msg = EffectiveFlag {
            flag: "f".into(),
            value: v(V::NumberValue(f64::NAN)),
            source: "store".into(),
            ..Default::default()
        };
        let desc = pool()
            .get_message_by_name("switchyard.v1.EffectiveFlag")
            .unwrap();
        assert!(write_message(&desc, &msg.encode_to_vec(), &mut Vec::new()).is_none());
        // A field repeated on the wire (legal, last wins) is left to prost.
        let finite = effective("f", v(V::NumberValue(1.0)), "store");
        assert!(write_message(&desc, &finite.encode_to_vec(), &mut Vec::new()).is_some());
        let mut bytes = finite.encode_to_vec();
        bytes.extend(
            EffectiveFlag {
                flag: "g".into(),
                ..Default::default()
            }
            .encode_to_vec(),
        );
        assert!(write_message(&desc, &bytes, &mut Vec::new()).is_none());
        // Two members of a oneof (resolve_key, then tenant_id).
        let request = pool()
            .get_message_by_name("switchyard.v1.EvaluateFlagRequest")
            .unwrap();
        assert!(
            write_message(&request, &[0x1a, 1, b'b', 0x12, 1, b'a'], &mut Vec::new()).is_none()
        );
        assert!(write_message(&request, &[0x12, 1, b'a'], &mut Vec::new()).is_some());
        // An over-long varint, field number 0.
        let response = pool()
            .get_message_by_name("switchyard.v1.ListFlagsResponse")
            .unwrap();
        let overlong = [
            0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
        ];
        assert!(write_message(&response, &overlong, &mut Vec::new()).is_none());
        assert!(write_message(&response, &[0x00, 0x00], &mut Vec::new()).is_none());
        // A Struct with a repeated key (the decoder merges the values).
        let value = pool()
            .get_message_by_name("google.protobuf.Struct")
            .unwrap();
        let entry = |val: u8| [0x0a, 0x07, 0x0a, 0x01, b'k', 0x12, 0x02, 0x20, val];
        let mut twice = entry(0).to_vec();
        twice.extend(entry(1));
        assert!(write_message(&value, &entry(1), &mut Vec::new()).is_some());
        assert!(write_message(&value, &twice, &mut Vec::new()).is_none());
        // Nesting past the limit is left to the decoder and its own limit.
        let nested = |levels: usize| {
            let mut value = Value {
                kind: Some(V::BoolValue(true)),
            };
            for _ in 0..levels {
                value = Value {
                    kind: Some(V::ListValue(ListValue {
                        values: vec![value],
                    })),
                };
            }
            value.encode_to_vec()
        };
        let value_desc = pool().get_message_by_name("google.protobuf.Value").unwrap();
        assert!(write_message(&value_desc, &nested(10), &mut Vec::new()).is_some());
        assert!(write_message(&value_desc, &nested(80), &mut Vec::new()).is_none());
        // Truncated input.
        let good = effective("f", v(V::StringValue("abc".into())), "s").encode_to_vec();
        assert!(write_message(&desc, &good[..good.len() - 1], &mut Vec::new()).is_none());
    }

    proptest! {
        #[test]
        fn any_flag_list_matches_the_dynamic_path(
            items in proptest::collection::vec(
                ("[a-z0-9._-]{1,12}", prop_oneof![
                    any::<bool>().prop_map(V::BoolValue),
                    (-1e15f64..1e15).prop_map(V::NumberValue),
                    any::<i32>().prop_map(|n| V::NumberValue(f64::from(n))),
                    "\\PC{0,16}".prop_map(V::StringValue),
                    Just(V::NullValue(0)),
                ], "[a-z]{0,8}"),
                0..20,
            ),
            revision in any::<i64>(),
        ) {
            let msg = ListFlagsResponse {
                flags: items.into_iter().map(|(k, kind, s)| effective(&k, v(kind), &s)).collect(),
                next_page_token: String::new(),
                revision,
                definitions: vec![],
                ..Default::default()
            };
            let (fast, slow) = both("switchyard.v1.ListFlagsResponse", &msg);
            prop_assert_eq!(fast.as_deref(), Some(slow.as_str()));
        }
    }
}
