//! Generates the OpenAPI 3.1 document of the REST routes from the descriptors:
//! the same annotations (`annotations.rs`) and the same template parser
//! (`template.rs`) the router uses, and the proto3 JSON mapping for schemas.
//! Proto comments become descriptions.

use std::collections::BTreeMap;

use prost_reflect::{
    DescriptorPool, EnumDescriptor, FieldDescriptor, FileDescriptor, Kind, MessageDescriptor,
    MethodDescriptor,
};
use serde_json::{Map, Value, json};

use crate::{
    annotations::{self, field_at},
    template::{self, Template},
};

/// The error schema, `google.rpc.Status`.
const STATUS: &str = "Status";

/// The shared schema of the strings a double may be instead of a number, so
/// generators make one type of it, not one per field.
const NON_FINITE: &str = "NonFiniteNumber";

/// A binding's operation id: the RPC's name (`ListFlags`); an additional
/// binding adds its path's first literal segment (`/admin/feature-flags` ⇒
/// `ListFlagsAdmin`), so ids stay readable and do not shift when a binding
/// is added. A clash fails the build.
fn operation_id(rpc: &MethodDescriptor, template: &Template, index: usize) -> String {
    if index == 0 {
        return rpc.name().to_owned();
    }
    let segment = template
        .openapi_path()
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let pascal: String = segment
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    format!("{}{pascal}", rpc.name())
}

/// Returns the document for the services of `package`.
pub fn document(pool: &DescriptorPool, package: &str, version: &str) -> Result<Value, String> {
    let mut generator = Generator::default();
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut tags = Vec::new();
    let mut operation_ids = std::collections::BTreeSet::new();
    for service in pool.services().filter(|s| s.package_name() == package) {
        tags.push(json!({
            "name": service.name(),
            "description": comments(&service.parent_file(), service.path()),
        }));
        for rpc in service.methods() {
            let bindings = annotations::bindings(pool, &rpc);
            if bindings.is_empty() {
                return Err(format!(
                    "{} has no google.api.http annotation",
                    rpc.full_name()
                ));
            }
            for (i, b) in bindings.iter().enumerate() {
                let template =
                    Template::parse(&b.path).map_err(|e| format!("{}: {e}", rpc.full_name()))?;
                let op = generator.operation(&rpc, b, &template, i)?;
                if let Some(id) = op["operationId"].as_str()
                    && !operation_ids.insert(id.to_owned())
                {
                    return Err(format!("operationId {id} is used twice"));
                }
                let methods = paths.entry(template.openapi_path()).or_default();
                if methods
                    .insert(b.http_method.to_ascii_lowercase(), op)
                    .is_some()
                {
                    return Err(format!("{} {} is bound twice", b.http_method, b.path));
                }
            }
        }
    }
    let (ofrep_paths, ofrep_schemas) = ofrep();
    for (path, item) in ofrep_paths {
        let item = item.as_object().cloned().unwrap_or_default();
        if paths.insert(path.clone(), item).is_some() {
            return Err(format!("{path} is both an OFREP path and a binding"));
        }
    }
    tags.push(json!({
        "name": "OFREP",
        "description": "The OpenFeature Remote Evaluation Protocol, for OpenFeature SDKs' OFREP \
            providers: evaluations of the flag service, with OFREP's shapes. Which tenant: a \
            `tenant:<id>` token's own; with an admin token, the context's `tenantId`, else its \
            `host` resolved through TenantService; else values without overrides. Tokens go \
            in `Authorization: Bearer` or `X-API-Key`.",
    }));
    let mut schemas: Map<String, Value> = generator.schemas.into_iter().collect();
    for (name, schema) in ofrep_schemas {
        if schemas.insert(name.clone(), schema).is_some() {
            return Err(format!("component {name} is defined twice"));
        }
    }
    schemas.insert(STATUS.to_owned(), status_schema());
    schemas.insert(
        NON_FINITE.to_owned(),
        json!({
            "type": "string",
            "enum": ["NaN", "Infinity", "-Infinity"],
            "description": "A double that is not a finite number, as proto3 JSON writes it.",
        }),
    );
    Ok(json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Switchyard",
            "version": version,
            "description": "The REST/JSON face of Switchyard's gRPC API, generated from the \
                `google.api.http` annotations of `proto/`. Bodies follow the proto3 JSON \
                mapping: lowerCamelCase names, 64-bit integers as strings, RFC 3339 \
                timestamps in UTC. Errors are `google.rpc.Status` objects with \
                grpc-gateway's HTTP statuses. Every operation takes a bearer token.",
        },
        "servers": [{
            "url": "/",
            "description": "The server that serves this document: REST shares the gRPC \
                listener (default http://127.0.0.1:50051).",
        }],
        "tags": tags,
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-API-Key",
                    "description": "OFREP's header: the same tokens as `Authorization: Bearer` (OFREP routes only).",
                },
            },
            "schemas": schemas,
        },
    }))
}

/// The OFREP routes (written by hand: OFREP is not a proto service) and
/// their schemas, as `src/rest/ofrep.rs` answers them.
/// Named JSON values: paths or component schemas.
type Named = Vec<(String, Value)>;

fn ofrep() -> (Named, Named) {
    let r = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
    let json_body = |schema: Value| json!({"application/json": {"schema": schema}});
    let failure = |what: &str| json!({"description": what, "content": json_body(r("OfrepEvaluationFailure"))});
    let request = json!({
        "required": false,
        "description": "The evaluation context; `{}` or no body is no context.",
        "content": json_body(r("OfrepEvaluationRequest")),
    });
    let common = |ok: Value| {
        json!({
            "200": ok,
            "400": failure("`PARSE_ERROR` (not JSON) or `INVALID_CONTEXT` (not an object, a `tenantId` or `host` that is not a string or names no tenant)."),
            "401": {"description": "No token, or an unknown one; no body."},
            "403": {"description": "The token may not read this tenant's flags; no body."},
            "413": failure("The body exceeds 64 KiB."),
            "429": {
                "description": "Too many requests.",
                "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds."}},
                "content": json_body(r("OfrepEvaluationFailure")),
            },
            "500": failure("`GENERAL`."),
        })
    };
    let mut one = common(json!({
        "description": "The flag's value for the context's tenant.",
        "content": json_body(r("OfrepEvaluationSuccess")),
    }));
    one["404"] = failure("`FLAG_NOT_FOUND`.");
    let mut all = common(json!({
        "description": "Every flag's value for the context's tenant.",
        "headers": {"ETag": {
            "schema": {"type": "string"},
            "description": "The version of this tenant's view: it changes exactly when one of these values may have.",
        }},
        "content": json_body(r("OfrepBulkEvaluationSuccess")),
    }));
    all["304"] = json!({"description": "`If-None-Match` names the current version; no body."});
    let paths = vec![
        (
            "/ofrep/v1/evaluate/flags/{key}".to_owned(),
            json!({"post": {
                "operationId": "OfrepEvaluateFlag",
                "tags": ["OFREP"],
                "summary": "Evaluate one flag (OFREP)",
                "security": [{"bearer": []}, {"apiKey": []}],
                "parameters": [{
                    "name": "key", "in": "path", "required": true,
                    "description": "The flag's key.", "schema": {"type": "string"},
                }],
                "requestBody": request.clone(),
                "responses": one,
            }}),
        ),
        (
            "/ofrep/v1/evaluate/flags".to_owned(),
            json!({"post": {
                "operationId": "OfrepEvaluateFlags",
                "tags": ["OFREP"],
                "summary": "Evaluate every flag (OFREP bulk)",
                "security": [{"bearer": []}, {"apiKey": []}],
                "parameters": [
                    {
                        "name": "If-None-Match", "in": "header", "required": false,
                        "description": "The `ETag` of an earlier answer: 304 while it is current.",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "flagConfigEtag", "in": "query", "required": false,
                        "description": "The `etag` of the event that triggered this fetch (OFREP ADR-0008); accepted, not used.",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "flagConfigLastModified", "in": "query", "required": false,
                        "description": "The `lastModified` of the event that triggered this fetch; accepted, not used.",
                        "schema": {"type": "string"},
                    },
                ],
                "requestBody": request,
                "responses": all,
            }}),
        ),
        (
            "/ofrep/v1/events".to_owned(),
            json!({"get": {
                "operationId": "OfrepEventStream",
                "tags": ["OFREP"],
                "summary": "Follow changes to a tenant's view (OFREP event stream, server-sent events)",
                "description": "The stream a bulk answer names in `eventStreams`: after each change to the tenant's view (several arriving together give one) an event `event: message`, `id: <revision>`, `data: {\"type\": \"refetchEvaluation\", \"etag\", \"lastModified\"}`; keep-alive comments with an `id` at every watch heartbeat. When the view changed after the client's `Last-Event-ID` (else `since`), the stream opens with a `refetchEvaluation`. It ends when the server stops.",
                "security": [{"bearer": []}, {"apiKey": []}],
                "parameters": [
                    {
                        "name": "tenantId", "in": "query", "required": false,
                        "description": "The tenant (an admin's); none: a tenant token's own, or values without overrides.",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "since", "in": "query", "required": false,
                        "description": "The revision of the view the client holds (the bulk answer puts it in the URI).",
                        "schema": {"type": "integer", "minimum": 0},
                    },
                    {
                        "name": "Last-Event-ID", "in": "header", "required": false,
                        "description": "The id (a revision) of the last event or keep-alive received; wins over `since`.",
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "The event stream.",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    "400": failure("`PARSE_ERROR` (a `Last-Event-ID` or `since` that is not a revision) or `INVALID_CONTEXT` (a tenant that does not exist)."),
                    "401": {"description": "No token, or an unknown one; no body."},
                    "403": {"description": "The token may not read this tenant's flags; no body."},
                },
            }}),
        ),
    ];
    let success = json!({
        "type": "object",
        "required": ["key", "value", "reason", "variant", "metadata"],
        "properties": {
            "key": {"type": "string"},
            "value": {"description": "The flag's value: a boolean, string, number, object or list."},
            "reason": {"type": "string", "enum": ["TARGETING_MATCH", "STATIC", "DEFAULT"],
                "description": "`TARGETING_MATCH`: the tenant's override (and, for an admin token, whose context chooses the tenant, a stored value or an env override); `STATIC`: a stored value or a replica's env override for a tenant token; `DEFAULT`: the declared default."},
            "variant": {"type": "string", "enum": ["tenant", "env", "store", "default"],
                "description": "Where the value comes from (Switchyard's `source`)."},
            "metadata": {
                "type": "object",
                "properties": {
                    "source": {"type": "string"},
                    "revision": {"type": "integer", "description": "The revision the value is at."},
                },
            },
        },
    });
    let schemas = vec![
        (
            "OfrepEvaluationRequest".to_owned(),
            json!({
                "type": "object",
                "properties": {"context": {
                    "type": ["object", "null"],
                    "description": "Attributes; `targetingKey` is accepted and not used. `tenantId` (admin tokens) names the tenant; else `host` is resolved through TenantService.",
                    "properties": {
                        "targetingKey": {"description": "Accepted, not used."},
                        "tenantId": {"type": ["string", "null"]},
                        "host": {"type": ["string", "null"]},
                    },
                }},
            }),
        ),
        ("OfrepEvaluationSuccess".to_owned(), success),
        (
            "OfrepEvaluationFailure".to_owned(),
            json!({
                "type": "object",
                "required": ["errorCode", "errorDetails"],
                "properties": {
                    "key": {"type": "string"},
                    "errorCode": {"type": "string", "enum": ["PARSE_ERROR", "INVALID_CONTEXT", "FLAG_NOT_FOUND", "GENERAL"]},
                    "errorDetails": {"type": "string"},
                },
            }),
        ),
        (
            "OfrepBulkEvaluationSuccess".to_owned(),
            json!({
                "type": "object",
                "required": ["flags"],
                "properties": {
                    "flags": {"type": "array", "items": r("OfrepEvaluationSuccess")},
                    "eventStreams": {"type": "array", "items": r("OfrepEventStream")},
                },
            }),
        ),
        (
            "OfrepEventStream".to_owned(),
            json!({
                "type": "object",
                "required": ["type", "endpoint"],
                "description": "Where to follow changes to this answer (OFREP ADR-0008), under the same credentials.",
                "properties": {
                    "type": {"type": "string", "enum": ["sse"]},
                    "endpoint": {
                        "type": "object",
                        "required": ["requestUri"],
                        "properties": {"requestUri": {"type": "string", "description": "Relative to the OFREP base URL's origin."}},
                    },
                    "inactivityDelaySec": {"type": "integer", "minimum": 1},
                },
            }),
        ),
    ];
    (paths, schemas)
}

#[derive(Default)]
struct Generator {
    schemas: BTreeMap<String, Value>,
    /// Short component name -> the full name of the type that has it.
    short_names: BTreeMap<String, String>,
}

impl Generator {
    fn operation(
        &mut self,
        rpc: &MethodDescriptor,
        b: &annotations::Binding,
        template: &Template,
        index: usize,
    ) -> Result<Value, String> {
        let input = rpc.input();
        let service = rpc.parent_service();
        let mut params = Vec::new();
        let mut bound: Vec<String> = Vec::new();
        for var in template.variables() {
            let field = field_at(&input, var)
                .ok_or_else(|| format!("{}: {{{var}}} names no field", rpc.full_name()))?;
            params.push(json!({
                "name": template::openapi_name(var),
                "in": "path",
                "required": true,
                "description": comments(&field.parent_file(), field.path()),
                "schema": self.field_schema(&field),
            }));
            bound.push(var.to_owned());
        }
        let mut op = Map::new();
        op.insert(
            "operationId".into(),
            json!(operation_id(rpc, template, index)),
        );
        op.insert(
            "x-grpc-method".into(),
            json!(format!("{}/{}", service.full_name(), rpc.name())),
        );
        op.insert("tags".into(), json!([service.name()]));
        op.insert("summary".into(), json!(rpc.name()));
        op.insert(
            "description".into(),
            json!(comments(&rpc.parent_file(), rpc.path())),
        );
        match b.body.as_str() {
            "*" => {
                let mut schema = self.message_schema_inline(&input);
                if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
                    for var in &bound {
                        let top = var.split('.').next().unwrap_or(var);
                        if let Some(f) = input.get_field_by_name(top) {
                            props.remove(f.json_name());
                        }
                    }
                }
                op.insert(
                    "requestBody".into(),
                    json!({
                        "required": true,
                        "content": {"application/json": {"schema": schema}},
                    }),
                );
            }
            body => {
                let body_field = if body.is_empty() {
                    None
                } else {
                    Some(input.get_field_by_name(body).ok_or_else(|| {
                        format!("{}: body {body:?} names no field", rpc.full_name())
                    })?)
                };
                if let Some(f) = &body_field {
                    bound.push(f.name().to_owned());
                    op.insert(
                        "requestBody".into(),
                        json!({
                            "required": true,
                            "description": comments(&f.parent_file(), f.path()),
                            "content": {"application/json": {"schema": self.field_schema(f)}},
                        }),
                    );
                }
                if is_conditional(rpc) {
                    // Sent as the `If-None-Match` header (below), not as a
                    // query parameter beside it.
                    bound.push("if_none_match".to_owned());
                }
                self.query_params(&input, "", "", &bound, &mut params, 0);
            }
        }
        if !params.is_empty() {
            op.insert("parameters".into(), json!(params));
        }
        let output = rpc.output();
        let mut ok = Map::new();
        if rpc.is_server_streaming() {
            // One component per streaming method, whichever of its bindings
            // comes first.
            let line = format!("{}StreamLine", rpc.name());
            let message = self.message_ref(&output);
            self.schemas.entry(line.clone()).or_insert_with(|| {
                json!({
                    "type": "object",
                    "description": format!(
                        "One line of the `{}` NDJSON stream: `result` for each message, or \
                        `error` once if the stream fails after it started.",
                        rpc.name()
                    ),
                    "properties": {
                        "result": message,
                        "error": {"$ref": format!("#/components/schemas/{STATUS}")},
                    },
                    "additionalProperties": false,
                })
            });
            ok.insert(
                "description".into(),
                json!(format!(
                    "A stream that does not end by itself: read it line by line (or event by \
                    event), never as one body. `application/x-ndjson` (the default): one \
                    `{line}` JSON object per line. `text/event-stream` (send `Accept: \
                    text/event-stream`): server-sent events, each one's `data` the message's \
                    JSON on one line (a `{}`) and its `id` the message's `revision`; a \
                    failure after the start is an event named `status` whose `data` is a \
                    `google.rpc.Status`. Reconnect with `Last-Event-ID` to resume.",
                    output.name()
                )),
            );
            ok.insert(
                "content".into(),
                json!({
                    "application/x-ndjson": {"schema": {"$ref": format!("#/components/schemas/{line}")}},
                    "text/event-stream": {"schema": {
                        "type": "string",
                        "description": format!(
                            "Server-sent events; each `data:` line is a `{}` in JSON.",
                            output.name()
                        ),
                    }},
                }),
            );
            if input.get_field_by_name("since_revision").is_some()
                && let Some(p) = op
                    .entry("parameters")
                    .or_insert_with(|| json!([]))
                    .as_array_mut()
            {
                p.push(json!({
                    "name": "Last-Event-ID",
                    "in": "header",
                    "required": false,
                    "description": "For `text/event-stream`: the `id` of the last event \
                        received; the stream resumes after that revision (as `sinceRevision`, \
                        and instead of it when both are given).",
                    "schema": {"type": "string", "pattern": "^[0-9]{1,19}$"},
                }));
            }
        } else if b.response_body.is_empty() {
            ok.insert("description".into(), json!("OK"));
            ok.insert(
                "content".into(),
                json!({"application/json": {"schema": self.message_ref(&output)}}),
            );
        } else {
            let f = output.get_field_by_name(&b.response_body).ok_or_else(|| {
                format!(
                    "{}: response_body {:?} names no field",
                    rpc.full_name(),
                    b.response_body
                )
            })?;
            ok.insert(
                "description".into(),
                json!(format!(
                    "The response's `{}` alone. Without `pageSize` or `pageToken` the array is \
                    the whole collection unless the `x-next-page-token` header is present; \
                    with either, it is one page and the header carries the next page's token.",
                    f.json_name()
                )),
            );
            ok.insert(
                "headers".into(),
                json!({"x-next-page-token": {
                    "description": "Present when more elements follow: pass it as `pageToken`.",
                    "schema": {"type": "string"},
                }}),
            );
            ok.insert(
                "content".into(),
                json!({"application/json": {"schema": self.field_schema(&f)}}),
            );
        }
        let mut responses = Map::new();
        // An RPC that answers by version (the gateway's convention: request
        // `if_none_match`, response `etag` and `not_modified`) takes
        // `If-None-Match` and answers 304.
        if is_conditional(rpc) {
            let etag = json!({
                "description": "The entity tag of this version of the answer: send it back as `If-None-Match`.",
                "schema": {"type": "string"},
            });
            let headers = ok.entry("headers").or_insert_with(|| json!({}));
            if let Some(h) = headers.as_object_mut() {
                h.insert("ETag".into(), etag.clone());
            }
            responses.insert(
                "304".into(),
                json!({
                    "description": "Not Modified: `If-None-Match` names the current version; no body.",
                    "headers": {"ETag": etag},
                }),
            );
            let params = op.entry("parameters").or_insert_with(|| json!([]));
            if let Some(p) = params.as_array_mut() {
                p.push(json!({
                    "name": "If-None-Match",
                    "in": "header",
                    "required": false,
                    "description": "An `ETag` of an earlier answer (or several, comma-separated, or `*`): \
                        while it names the current version, the answer is 304 with no body.",
                    "schema": {"type": "string"},
                }));
            }
        }
        responses.insert("200".into(), Value::Object(ok));
        responses.insert(
            "default".into(),
            json!({
                "description": "An error: a `google.rpc.Status`, with grpc-gateway's HTTP status for its code.",
                "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{STATUS}")}}},
            }),
        );
        op.insert("responses".into(), Value::Object(responses));
        Ok(Value::Object(op))
    }

    /// Adds the query parameters for the fields of `m` not bound elsewhere;
    /// singular nested messages are flattened with dots, as grpc-gateway does.
    fn query_params(
        &mut self,
        m: &MessageDescriptor,
        proto_prefix: &str,
        json_prefix: &str,
        bound: &[String],
        params: &mut Vec<Value>,
        depth: usize,
    ) {
        for f in m.fields() {
            let proto = format!("{proto_prefix}{}", f.name());
            let name = format!("{json_prefix}{}", f.json_name());
            if bound.contains(&proto) || f.is_map() {
                continue;
            }
            match f.kind() {
                Kind::Message(inner) if !is_scalar_wkt(&inner) => {
                    if !f.is_list() && depth < 3 {
                        self.query_params(
                            &inner,
                            &format!("{proto}."),
                            &format!("{name}."),
                            bound,
                            params,
                            depth + 1,
                        );
                    }
                }
                _ => {
                    let mut p = json!({
                        "name": name,
                        "in": "query",
                        "description": comments(&f.parent_file(), f.path()),
                        "schema": self.field_schema(&f),
                    });
                    if f.is_list() {
                        p["style"] = json!("form");
                        p["explode"] = json!(true);
                    }
                    params.push(p);
                }
            }
        }
    }

    fn field_schema(&mut self, f: &FieldDescriptor) -> Value {
        if f.is_map() {
            let Kind::Message(entry) = f.kind() else {
                return json!({"type": "object"});
            };
            let value = entry.map_entry_value_field();
            return json!({"type": "object", "additionalProperties": self.kind_schema(&value.kind())});
        }
        let item = self.kind_schema(&f.kind());
        if f.is_list() {
            json!({"type": "array", "items": item})
        } else {
            item
        }
    }

    fn kind_schema(&mut self, kind: &Kind) -> Value {
        match kind {
            // Non-finite values are written as these strings (proto3 JSON).
            Kind::Double | Kind::Float => json!({"anyOf": [
                {"type": "number"},
                {"$ref": format!("#/components/schemas/{NON_FINITE}")},
            ]}),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
                json!({"type": "integer", "format": "int32"})
            }
            Kind::Uint32 | Kind::Fixed32 => {
                json!({"type": "integer", "format": "int64", "minimum": 0, "maximum": 4_294_967_295_u64})
            }
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
                json!({"type": "string", "format": "int64", "pattern": "^-?[0-9]{1,19}$"})
            }
            Kind::Uint64 | Kind::Fixed64 => {
                json!({"type": "string", "format": "uint64", "pattern": "^[0-9]{1,20}$"})
            }
            Kind::Bool => json!({"type": "boolean"}),
            Kind::String => json!({"type": "string"}),
            Kind::Bytes => json!({"type": "string", "format": "byte"}),
            Kind::Enum(e) => self.enum_ref(e),
            Kind::Message(m) => self.message_ref(m),
        }
    }

    /// A `$ref` to the message's component schema (added on first use), or
    /// the inline schema of a well-known type.
    fn message_ref(&mut self, m: &MessageDescriptor) -> Value {
        if let Some(wkt) = wkt_schema(m) {
            return wkt;
        }
        let name = self.component_name(m.name(), m.full_name());
        if !self.schemas.contains_key(&name) {
            self.schemas.insert(name.clone(), Value::Null);
            let schema = self.message_schema_inline(m);
            self.schemas.insert(name.clone(), schema);
        }
        json!({"$ref": format!("#/components/schemas/{name}")})
    }

    /// The component name of a message or enum: its short name (`Flag`), so
    /// generated types read `Flag`, not `SwitchyardV1Flag`. Two types with
    /// one short name keep their full names (and a third clash cannot
    /// happen silently: the first full name wins the short one).
    fn component_name(&mut self, short: &str, full: &str) -> String {
        match self.short_names.get(short) {
            Some(owner) if owner != full => full.to_owned(),
            Some(_) => short.to_owned(),
            None if short == STATUS || short == NON_FINITE => full.to_owned(),
            None => {
                self.short_names.insert(short.to_owned(), full.to_owned());
                short.to_owned()
            }
        }
    }

    /// An enum is written as its value's name (one shared component per
    /// enum); proto3 JSON parsers also accept the number.
    fn enum_ref(&mut self, e: &EnumDescriptor) -> Value {
        let name = self.component_name(e.name(), e.full_name());
        if !self.schemas.contains_key(&name) {
            let names: Vec<String> = e.values().map(|v| v.name().to_owned()).collect();
            self.schemas.insert(
                name.clone(),
                json!({
                    "type": "string",
                    "enum": names,
                    "description": comments(&e.parent_file(), e.path()),
                }),
            );
        }
        json!({"anyOf": [
            {"$ref": format!("#/components/schemas/{name}")},
            {"type": "integer", "format": "int32"},
        ]})
    }

    fn message_schema_inline(&mut self, m: &MessageDescriptor) -> Value {
        let mut props = Map::new();
        for f in m.fields() {
            // proto3 JSON reads null as the field's default, for every field.
            let mut s = or_null(self.field_schema(&f));
            let doc = comments(&f.parent_file(), f.path());
            if !doc.is_empty() {
                s = match s {
                    Value::Object(mut o) if !o.contains_key("$ref") => {
                        o.insert("description".into(), json!(doc));
                        Value::Object(o)
                    }
                    other => json!({"allOf": [other], "description": doc}),
                };
            }
            props.insert(f.json_name().to_owned(), s);
        }
        json!({
            "type": "object",
            "description": comments(&m.parent_file(), m.path()),
            "properties": props,
            "additionalProperties": false,
        })
    }
}

/// `s`, or null: proto3 JSON parsers read null as the default of any field
/// (the server never writes one, but clients may send it).
fn or_null(s: Value) -> Value {
    let none = json!({"type": "null"});
    match s {
        Value::Object(mut o) if !o.contains_key("$ref") => {
            match o.get_mut("type") {
                Some(Value::String(t)) => {
                    let t = t.clone();
                    o.insert("type".into(), json!([t, "null"]));
                }
                Some(Value::Array(ts)) => {
                    if !ts.contains(&json!("null")) {
                        ts.push(json!("null"));
                    }
                }
                Some(_) => {}
                // No type and no anyOf: any JSON value, null included.
                None => {
                    if let Some(Value::Array(any)) = o.get_mut("anyOf") {
                        any.push(none);
                    }
                }
            }
            Value::Object(o)
        }
        other => json!({"anyOf": [other, none]}),
    }
}

/// An RPC that answers by version (the gateway's convention: request
/// `if_none_match`, response `etag` and `not_modified`).
fn is_conditional(rpc: &MethodDescriptor) -> bool {
    rpc.input().get_field_by_name("if_none_match").is_some()
        && rpc.output().get_field_by_name("etag").is_some()
        && rpc.output().get_field_by_name("not_modified").is_some()
        && !rpc.is_server_streaming()
}

fn is_scalar_wkt(m: &MessageDescriptor) -> bool {
    m.package_name() == "google.protobuf"
        && !matches!(m.name(), "Struct" | "ListValue" | "Any" | "Empty" | "Value")
}

fn wkt_schema(m: &MessageDescriptor) -> Option<Value> {
    if m.package_name() != "google.protobuf" {
        return None;
    }
    let nullable = |t: &str| json!({"type": [t, "null"]});
    Some(match m.name() {
        "Timestamp" => json!({"type": "string", "format": "date-time"}),
        "Duration" => json!({"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$"}),
        "FieldMask" => {
            json!({"type": "string", "description": "Comma-separated lowerCamelCase field paths."})
        }
        "Value" => json!({"description": "Any JSON value."}),
        "Struct" => json!({"type": "object"}),
        "ListValue" => json!({"type": "array"}),
        "Empty" => json!({"type": "object", "additionalProperties": false}),
        "BoolValue" => nullable("boolean"),
        "StringValue" | "BytesValue" | "Int64Value" | "UInt64Value" => nullable("string"),
        "Int32Value" | "UInt32Value" => nullable("integer"),
        "DoubleValue" | "FloatValue" => nullable("number"),
        _ => json!({"type": "object"}),
    })
}

fn status_schema() -> Value {
    json!({
        "type": "object",
        "description": "The error model of gRPC and grpc-gateway: a gRPC status code, a message for people, and details.",
        "properties": {
            "code": {"type": "integer", "format": "int32", "description": "The gRPC status code (3 INVALID_ARGUMENT, 5 NOT_FOUND, ...)."},
            "message": {"type": "string"},
            "details": {"type": "array", "items": {
                "type": "object",
                "properties": {"@type": {"type": "string"}},
                "additionalProperties": true,
            }},
        },
        "required": ["code", "message", "details"],
        "additionalProperties": false,
    })
}

/// The leading comment of the element at `path` in `file`, trimmed.
fn comments(file: &FileDescriptor, path: &[i32]) -> String {
    file.file_descriptor_proto()
        .source_code_info
        .as_ref()
        .and_then(|info| info.location.iter().find(|l| l.path == path))
        .and_then(|l| l.leading_comments.as_deref())
        .map(|c| {
            c.lines()
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(" ")
                .trim()
                .to_owned()
        })
        .unwrap_or_default()
}
