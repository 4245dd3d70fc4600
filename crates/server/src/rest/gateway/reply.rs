//! A reply as the service encoded it, read as the answer needs it: a field
//! off the wire, its proto3 JSON (straight from the wire when `json` can), or
//! the JSON of one repeated field (a `response_body`).

use bytes::Bytes;
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, Value};
use serde_json::Value as Json;

use crate::rest::{
    Refusal,
    json::{self, to_json},
};

/// A reply as the service encoded it, with its type.
pub(super) struct Reply {
    pub(super) desc: MessageDescriptor,
    pub(super) bytes: Bytes,
}

impl Reply {
    /// The varint field `number` of the reply, read off the wire.
    pub(super) fn varint(&self, number: u32) -> Option<u64> {
        json::fields(&self.bytes)?
            .into_iter()
            .rev()
            .find_map(|(n, raw)| match raw {
                json::Raw::Varint(v) if n == number => Some(v),
                _ => None,
            })
    }

    pub(super) fn dynamic(&self) -> Result<DynamicMessage, Refusal> {
        DynamicMessage::decode(self.desc.clone(), self.bytes.clone())
            .map_err(|e| switchyard_core::error::Error::internal("decoding a reply", e).into())
    }

    /// The reply's proto3 JSON: straight from the wire when [`json`] can,
    /// through a `DynamicMessage` otherwise.
    pub(super) fn json(&self) -> Result<String, Refusal> {
        let mut out = Vec::with_capacity(self.bytes.len() * 2);
        if json::write_message(&self.desc, &self.bytes, &mut out).is_some() {
            return String::from_utf8(out)
                .map_err(|e| switchyard_core::error::Error::internal("encoding JSON", e).into());
        }
        to_json(&self.dynamic()?)
    }

    /// The JSON of the elements of the repeated `field`, comma-separated,
    /// and how many there are.
    pub(super) fn list_json(&self, field: &FieldDescriptor) -> Result<(String, usize), Refusal> {
        if let (Kind::Message(elem), Some(raw)) = (field.kind(), json::fields(&self.bytes)) {
            let mut buf = Vec::new();
            let mut n = 0;
            let all = raw
                .iter()
                .filter(|(num, _)| *num == field.number())
                .all(|(_, r)| {
                    let json::Raw::Bytes(b) = r else { return false };
                    if n > 0 {
                        buf.push(b',');
                    }
                    n += 1;
                    json::write_message(&elem, b, &mut buf).is_some()
                })
                && self.rest_is_well_formed(&raw, field);
            if let (true, Ok(text)) = (all, String::from_utf8(buf)) {
                return Ok((text, n));
            }
        }
        list_json(&self.dynamic()?, field)
    }

    /// The string field `etag` of a reply and whether its bool field
    /// `not_modified` is set: the reply's version, as a conditional GET reads it.
    pub(super) fn version(
        &self,
        etag: &FieldDescriptor,
        not_modified: &FieldDescriptor,
    ) -> Result<(String, bool), Refusal> {
        // One scan of the reply for both fields; anything unusual (no
        // parse, a repeated or non-UTF-8 tag) is read by the decoder.
        if let Some(raw) = json::fields(&self.bytes) {
            let unchanged = raw
                .iter()
                .rev()
                .find(|(n, _)| *n == not_modified.number())
                .is_some_and(|(_, r)| matches!(r, json::Raw::Varint(v) if *v != 0));
            let mut tags = raw.iter().filter(|(n, _)| *n == etag.number());
            match (tags.next(), tags.next()) {
                (None, _) => return Ok((String::new(), unchanged)),
                (Some((_, json::Raw::Bytes(b))), None) => {
                    if let Ok(tag) = std::str::from_utf8(b) {
                        return Ok((tag.to_owned(), unchanged));
                    }
                }
                _ => {}
            }
        }
        let m = self.dynamic()?;
        let text = |f: &FieldDescriptor| match m.get_field(f).as_ref() {
            Value::String(s) => s.clone(),
            _ => String::new(),
        };
        let unchanged = matches!(m.get_field(not_modified).as_ref(), Value::Bool(true));
        Ok((text(etag), unchanged))
    }

    /// Whether every field of the reply other than `list` would decode:
    /// the fast path of [`Reply::append_list`] writes only `list`, so it must
    /// not accept a reply the decoder would refuse.
    pub(super) fn rest_is_well_formed(
        &self,
        raw: &[(u32, json::Raw<'_>)],
        list: &FieldDescriptor,
    ) -> bool {
        let mut scratch = Vec::new();
        raw.iter()
            .filter(|(n, _)| *n != list.number())
            .all(|(n, r)| {
                scratch.clear();
                match self.desc.get_field(*n) {
                    // Unknown fields are kept aside by the decoder, not refused.
                    None => true,
                    Some(f) if f.is_list() => {
                        json::write_list_entry(&f, *r, &mut scratch, &mut true, 0).is_some()
                    }
                    Some(f) => json::write_single(&f.kind(), *r, &mut scratch, 0).is_some(),
                }
            })
    }

    /// The value of a singular string field.
    pub(super) fn string_field(&self, f: &FieldDescriptor) -> Result<String, Refusal> {
        if let Some(raw) = json::fields(&self.bytes) {
            let mut found = raw.iter().filter(|(n, _)| *n == f.number());
            match (found.next(), found.next()) {
                (None, _) => return Ok(String::new()),
                (Some((_, json::Raw::Bytes(b))), None) => {
                    if let Ok(s) = std::str::from_utf8(b) {
                        return Ok(s.to_owned());
                    }
                }
                _ => {}
            }
        }
        Ok(match self.dynamic()?.get_field(f).as_ref() {
            Value::String(s) => s.clone(),
            _ => String::new(),
        })
    }
}

/// The JSON of the elements of the repeated `field` of `m`, comma-separated,
/// and how many there are.
pub(super) fn list_json(
    m: &DynamicMessage,
    field: &FieldDescriptor,
) -> Result<(String, usize), Refusal> {
    let value = m.get_field(field);
    let mut out = String::new();
    let mut push = |json: String| {
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(&json);
    };
    let n = match value.as_ref() {
        Value::List(items) if items.iter().all(|v| matches!(v, Value::Message(_))) => {
            for item in items {
                if let Value::Message(msg) = item {
                    push(to_json(msg)?);
                }
            }
            items.len()
        }
        _ => match serde_json::from_str::<Json>(&single_field_json(m, field)?) {
            Ok(Json::Array(items)) => {
                let n = items.len();
                for i in items {
                    push(i.to_string());
                }
                n
            }
            Ok(_) => 0,
            Err(e) => {
                return Err(switchyard_core::error::Error::internal("encoding JSON", e).into());
            }
        },
    };
    Ok((out, n))
}

/// The JSON of one field of `m` (a `response_body` that is not a message
/// list): the message is serialised and the field taken out.
pub(super) fn single_field_json(
    m: &DynamicMessage,
    field: &FieldDescriptor,
) -> Result<String, Refusal> {
    let whole: Json = serde_json::from_str(&to_json(m)?)
        .map_err(|e| switchyard_core::error::Error::internal("encoding JSON", e))?;
    let mut out = Vec::new();
    let v = whole.get(field.json_name()).cloned().unwrap_or(Json::Null);
    serde_json::to_writer(&mut out, &v)
        .map_err(|e| switchyard_core::error::Error::internal("encoding JSON", e))?;
    String::from_utf8(out)
        .map_err(|e| switchyard_core::error::Error::internal("encoding JSON", e).into())
}
