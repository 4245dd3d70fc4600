//! Reads the `google.api.http` annotations of a method from the descriptors.
//!
//! `build.rs` includes this file too, so the OpenAPI document and the router
//! read the annotations with the same code: the two cannot disagree.

use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, MethodDescriptor,
    Value,
};

/// The fully qualified name of the `google.api.http` method option.
pub const HTTP_OPTION: &str = "google.api.http";

/// One HTTP binding of an RPC: its primary rule or an additional binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// `GET`, `POST`, `PUT`, `PATCH`, `DELETE`, or a custom method's name.
    pub http_method: String,
    /// The path template.
    pub path: String,
    /// `""` (no body), `"*"` (the whole request) or a top-level field name.
    pub body: String,
    /// `""` (the whole response) or a top-level field name.
    pub response_body: String,
}

/// Returns the method's bindings, primary first; empty when it has no
/// annotation.
pub fn bindings(pool: &DescriptorPool, method: &MethodDescriptor) -> Vec<Binding> {
    let Some(ext) = pool.get_extension_by_name(HTTP_OPTION) else {
        return Vec::new();
    };
    let options = method.options();
    if !options.has_extension(&ext) {
        return Vec::new();
    }
    let mut out = Vec::new();
    if let Value::Message(rule) = options.get_extension(&ext).as_ref() {
        push_rule(rule, &mut out);
        if let Some(Value::List(more)) = rule.get_field_by_name("additional_bindings").as_deref() {
            for m in more {
                if let Value::Message(r) = m {
                    push_rule(r, &mut out);
                }
            }
        }
    }
    out
}

fn push_rule(rule: &DynamicMessage, out: &mut Vec<Binding>) {
    let text = |name: &str| match rule.get_field_by_name(name).as_deref() {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    let mut pattern = None;
    for verb in ["get", "put", "post", "delete", "patch"] {
        if rule.has_field_by_name(verb) {
            pattern = Some((verb.to_ascii_uppercase(), text(verb)));
        }
    }
    if rule.has_field_by_name("custom")
        && let Some(Value::Message(custom)) = rule.get_field_by_name("custom").as_deref()
    {
        let field = |name: &str| match custom.get_field_by_name(name).as_deref() {
            Some(Value::String(s)) => s.clone(),
            _ => String::new(),
        };
        pattern = Some((field("kind"), field("path")));
    }
    if let Some((http_method, path)) = pattern {
        out.push(Binding {
            http_method,
            path,
            body: text("body"),
            response_body: text("response_body"),
        });
    }
}

/// Returns the field at a dotted path of proto field names (`tenant.id`),
/// through singular message fields.
pub fn field_at(message: &MessageDescriptor, path: &str) -> Option<FieldDescriptor> {
    let mut current = message.clone();
    let mut parts = path.split('.').peekable();
    while let Some(p) = parts.next() {
        let field = current.get_field_by_name(p)?;
        if parts.peek().is_none() {
            return Some(field);
        }
        match field.kind() {
            Kind::Message(m) if !field.is_list() && !field.is_map() => current = m,
            _ => return None,
        }
    }
    None
}
