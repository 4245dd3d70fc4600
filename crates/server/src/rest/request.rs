//! HTTP to message: binds a REST request's path variables, query parameters
//! and body to the annotated RPC's request message, the grpc-gateway way, and
//! refuses what does not fit with a 400 naming the field.

use bytes::Bytes;
use http::Method;
use prost_reflect::{DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value as Json};

use super::{
    Refusal,
    routes::{BodyRule, Route},
};

/// Builds the RPC's request message from the path variables, the query and
/// the body, the grpc-gateway way.
pub(super) fn build_request(
    route: &Route,
    vars: Vec<(&str, String)>,
    query: &str,
    body: &Bytes,
) -> Result<DynamicMessage, Refusal> {
    let input = route.rpc.input();
    let mut obj = Map::new();
    match &route.body {
        BodyRule::None => {}
        BodyRule::Whole => match parse_body(body)? {
            Json::Object(m) => obj = m,
            _ => return Err(Refusal::invalid("the body must be a JSON object")),
        },
        BodyRule::Field(f) => {
            obj.insert(f.name().to_owned(), parse_body(body)?);
        }
    }
    if !query.is_empty() {
        if matches!(route.body, BodyRule::Whole) {
            return Err(Refusal::invalid(
                "this route takes every field in the body; query parameters are not accepted",
            ));
        }
        let excluded: Vec<&str> = vars
            .iter()
            .map(|(p, _)| *p)
            .chain(match &route.body {
                BodyRule::Field(f) => Some(f.name()),
                _ => None,
            })
            .collect();
        apply_query(&mut obj, &input, query, &excluded)?;
    }
    if route.method == Method::PATCH {
        derive_update_mask(route, &vars, &mut obj)?;
    }
    for (path, value) in vars {
        bind_path_variable(&mut obj, &input, path, value)?;
    }
    let mut track = serde_path_to_error::Track::new();
    let de = serde_path_to_error::Deserializer::new(Json::Object(obj), &mut track);
    DynamicMessage::deserialize_with_options(input.clone(), de, &DeserializeOptions::new()).map_err(
        |e| {
            let at = track.path().to_string();
            if at.is_empty() || at == "." {
                Refusal::invalid(e.to_string())
            } else {
                Refusal::invalid(format!("{at}: {e}{}", enum_values(&input, &at)))
            }
        },
    )
}

/// When the field at `path` (JSON names, `a.b[0].c`) is an enum, its values
/// as a sentence to add to a refusal (`; the values are A, B`); else nothing.
fn enum_values(input: &MessageDescriptor, path: &str) -> String {
    let mut desc = input.clone();
    let mut field = None;
    for part in path.split('.') {
        let name = part.split('[').next().unwrap_or(part);
        let Some(f) = desc
            .fields()
            .find(|f| f.json_name() == name || f.name() == name)
        else {
            return String::new();
        };
        if let Kind::Message(m) = f.kind() {
            desc = m;
        }
        field = Some(f);
    }
    match field.map(|f| f.kind()) {
        Some(Kind::Enum(e)) => {
            let names: Vec<String> = e
                .values()
                .filter(|v| v.number() != 0)
                .map(|v| v.name().to_owned())
                .collect();
            format!("; the values are {}", names.join(", "))
        }
        _ => String::new(),
    }
}

/// grpc-gateway's PATCH: when the request has an `update_mask` and the query
/// does not set it, the mask is the set of fields present in the body, so a
/// PATCH changes only what it sends. Fields bound by the path are not part of
/// it, and a body naming no field is refused rather than read as "update
/// everything".
fn derive_update_mask(
    route: &Route,
    vars: &[(&str, String)],
    obj: &mut Map<String, Json>,
) -> Result<(), Refusal> {
    let BodyRule::Field(body_field) = &route.body else {
        return Ok(());
    };
    let input = route.rpc.input();
    let Some(mask) = input.get_field_by_name("update_mask") else {
        return Ok(());
    };
    if !matches!(mask.kind(), Kind::Message(m) if m.full_name() == "google.protobuf.FieldMask") {
        return Ok(());
    }
    // A mask given with paths is used as is; an empty one (`?updateMask=`) is
    // no mask, as in grpc-gateway: never "update everything" by accident.
    if let Some(k) = key_of(obj, &mask).map(str::to_owned) {
        if obj
            .get(&k)
            .is_some_and(|v| v.as_str().is_none_or(|s| !s.trim().is_empty()))
        {
            return Ok(());
        }
        obj.remove(&k);
    }
    let (Some(Json::Object(body)), Kind::Message(desc)) =
        (obj.get(body_field.name()), body_field.kind())
    else {
        return Ok(());
    };
    let prefix = format!("{}.", body_field.name());
    let bound: Vec<&str> = vars
        .iter()
        .filter_map(|(p, _)| p.strip_prefix(prefix.as_str()))
        .collect();
    let mut paths = Vec::new();
    mask_paths(body, &desc, body_field.name(), "", "", &bound, &mut paths)?;
    if paths.is_empty() {
        return Err(Refusal::invalid(format!(
            "{}: the body names no field to update",
            body_field.name()
        )));
    }
    obj.insert(mask.name().to_owned(), Json::String(paths.join(",")));
    Ok(())
}

fn mask_paths(
    body: &Map<String, Json>,
    desc: &MessageDescriptor,
    root: &str,
    proto_prefix: &str,
    json_prefix: &str,
    bound: &[&str],
    out: &mut Vec<String>,
) -> Result<(), Refusal> {
    for (key, value) in body {
        let Some(field) = desc
            .get_field_by_name(key)
            .or_else(|| desc.fields().find(|f| f.json_name() == key))
        else {
            return Err(Refusal::invalid(format!(
                "{root}.{proto_prefix}{key}: no such field"
            )));
        };
        let proto = format!("{proto_prefix}{}", field.name());
        if bound.contains(&proto.as_str()) {
            continue;
        }
        let json = format!("{json_prefix}{}", field.json_name());
        match (field.kind(), value) {
            (Kind::Message(m), Json::Object(inner))
                if !field.is_list() && !field.is_map() && m.package_name() != "google.protobuf" =>
            {
                mask_paths(
                    inner,
                    &m,
                    root,
                    &format!("{proto}."),
                    &format!("{json}."),
                    bound,
                    out,
                )?;
            }
            _ => out.push(json),
        }
    }
    Ok(())
}

fn parse_body(body: &Bytes) -> Result<Json, Refusal> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Refusal::invalid("a JSON body is required"));
    }
    serde_json::from_slice(body).map_err(|e| {
        // A bare word (`yes`, `on`, `blue`): most likely a string value
        // sent unquoted.
        let text = String::from_utf8_lossy(body);
        let word = text.trim();
        let hint = if !word.is_empty()
            && word.len() <= 64
            && word
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            format!("; a string is quoted JSON: send \"{word}\" (with the quotes)")
        } else {
            String::new()
        };
        Refusal::invalid(format!("the body is not valid JSON: {e}{hint}"))
    })
}

/// Returns the key under which `field` appears in a JSON object: its JSON
/// name or its proto name.
fn key_of<'m>(obj: &'m Map<String, Json>, field: &FieldDescriptor) -> Option<&'m str> {
    [field.json_name(), field.name()]
        .into_iter()
        .find_map(|k| obj.get_key_value(k).map(|(k, _)| k.as_str()))
}

/// Sets a path variable, refusing a body that says otherwise.
fn bind_path_variable(
    obj: &mut Map<String, Json>,
    input: &MessageDescriptor,
    path: &str,
    value: String,
) -> Result<(), Refusal> {
    let mut desc = input.clone();
    let mut cur = obj;
    let mut parts = path.split('.').peekable();
    while let Some(p) = parts.next() {
        let field = desc
            .get_field_by_name(p)
            .ok_or_else(|| Refusal::invalid(format!("{path}: no such field")))?;
        let key = key_of(cur, &field).unwrap_or(field.name()).to_owned();
        if parts.peek().is_none() {
            let v = json_scalar(&field, &value, path)?;
            match cur.get(&key) {
                Some(existing) if *existing != v => {
                    return Err(Refusal::invalid(format!(
                        "{path}: the path says {value:?} but the body says {existing}"
                    )));
                }
                _ => {
                    cur.insert(key, v);
                }
            }
            return Ok(());
        }
        let Kind::Message(next) = field.kind() else {
            return Err(Refusal::invalid(format!("{path}: no such field")));
        };
        desc = next;
        let slot = cur.entry(key).or_insert_with(|| Json::Object(Map::new()));
        cur = match slot {
            Json::Object(m) => m,
            _ => return Err(Refusal::invalid(format!("{p}: must be a JSON object"))),
        };
    }
    Ok(())
}

/// Binds query parameters (`field`, `field.sub`, repeated by repetition) to
/// request fields, converting each text to the field's JSON form.
fn apply_query(
    obj: &mut Map<String, Json>,
    input: &MessageDescriptor,
    query: &str,
    excluded: &[&str],
) -> Result<(), Refusal> {
    for (name, text) in form_urlencoded::parse(query.as_bytes()) {
        let mut desc = input.clone();
        let mut cur = &mut *obj;
        let mut proto_path = Vec::new();
        let mut parts = name.split('.').peekable();
        while let Some(p) = parts.next() {
            let field = desc
                .get_field_by_name(p)
                .or_else(|| desc.fields().find(|f| f.json_name() == p))
                .ok_or_else(|| Refusal::invalid(format!("{name}: no such query parameter")))?;
            proto_path.push(field.name().to_owned());
            let dotted = proto_path.join(".");
            if excluded.contains(&dotted.as_str()) {
                return Err(Refusal::invalid(format!(
                    "{name}: set by the path or the body, not the query"
                )));
            }
            let key = field.name().to_owned();
            if parts.peek().is_some() {
                match field.kind() {
                    Kind::Message(m) if !field.is_list() && !field.is_map() && !is_wkt(&m) => {
                        desc = m;
                    }
                    _ => return Err(Refusal::invalid(format!("{name}: no such query parameter"))),
                }
                let slot = cur.entry(key).or_insert_with(|| Json::Object(Map::new()));
                cur = match slot {
                    Json::Object(m) => m,
                    _ => return Err(Refusal::invalid(format!("{name}: set twice"))),
                };
                continue;
            }
            if field.is_map() || (matches!(field.kind(), Kind::Message(m) if !is_wkt(&m))) {
                return Err(Refusal::invalid(format!(
                    "{name}: a message cannot be a query parameter; name its fields (`{name}.field`)"
                )));
            }
            let v = json_scalar(&field, &text, &name)?;
            if field.is_list() {
                match cur.entry(key).or_insert_with(|| Json::Array(Vec::new())) {
                    Json::Array(items) => items.push(v),
                    _ => return Err(Refusal::invalid(format!("{name}: set twice"))),
                }
            } else if cur.insert(key, v).is_some() {
                return Err(Refusal::invalid(format!(
                    "{name}: given more than once, but takes one value"
                )));
            }
        }
    }
    Ok(())
}

/// Well-known types whose JSON form is a string or a scalar, which may be
/// given as a query parameter.
fn is_wkt(m: &MessageDescriptor) -> bool {
    m.package_name() == "google.protobuf"
        && matches!(
            m.name(),
            "Timestamp"
                | "Duration"
                | "FieldMask"
                | "DoubleValue"
                | "FloatValue"
                | "Int64Value"
                | "UInt64Value"
                | "Int32Value"
                | "UInt32Value"
                | "BoolValue"
                | "StringValue"
                | "BytesValue"
        )
}

/// Converts a path or query text to the JSON the field's proto3 JSON parser
/// expects.
fn json_scalar(field: &FieldDescriptor, text: &str, name: &str) -> Result<Json, Refusal> {
    let kind = match field.kind() {
        Kind::Message(m) if m.full_name() == "google.protobuf.BoolValue" => Kind::Bool,
        // grpc-gateway takes field mask paths in the query as proto names
        // (`display_name`); proto3 JSON spells them in lowerCamelCase.
        Kind::Message(m) if m.full_name() == "google.protobuf.FieldMask" => {
            return Ok(Json::String(
                text.split(',')
                    .map(lower_camel)
                    .collect::<Vec<_>>()
                    .join(","),
            ));
        }
        k => k,
    };
    Ok(match kind {
        Kind::Bool => match text {
            "true" => Json::Bool(true),
            "false" => Json::Bool(false),
            _ => return Err(Refusal::invalid(format!("{name}: must be true or false"))),
        },
        Kind::Enum(_) => match text.parse::<i32>() {
            Ok(n) => Json::Number(n.into()),
            Err(_) => Json::String(text.to_owned()),
        },
        // Numbers travel as JSON strings, which proto3 JSON accepts for every
        // numeric type and parses exactly.
        _ => Json::String(text.to_owned()),
    })
}

/// `display_name.first_part` becomes `displayName.firstPart`.
fn lower_camel(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut upper = false;
    for c in path.trim().chars() {
        match c {
            '_' => upper = true,
            c if upper => {
                out.push(c.to_ascii_uppercase());
                upper = false;
            }
            c => out.push(c),
        }
    }
    out
}
