//! The transcoder: turns a REST request into the annotated RPC's request
//! message, calls the RPC through the same tonic services gRPC clients reach
//! (in process, with the caller's [`Principal`]), and turns the answer into
//! proto3 JSON.
//!
//! Every rule of the API (validation, scopes, isolation) therefore lives once,
//! in the services; this module only maps HTTP to messages and back.

use std::{hash::BuildHasher, sync::Arc};

use axum::{
    body::Body,
    extract::Request,
    response::{IntoResponse, Response},
};
use bytes::{Buf, Bytes};
use futures_util::StreamExt;
use http::{HeaderValue, Method, StatusCode, Uri, header};
use prost::Message;
use prost_reflect::{
    DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage, Value,
};
use serde_json::Value as Json;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

use super::{
    Refusal,
    json::{self, to_json},
    request,
    routes::{BodyRule, Lookup, Route, RouteTable},
};
use crate::{auth::Principal, service::cache::Bounded};

/// The longest path and query accepted, in bytes (414 beyond).
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// The response header that carries the next page's token when a bare-array
/// response (`response_body`) is not the whole collection.
pub const NEXT_PAGE_TOKEN_HEADER: &str = "x-next-page-token";

/// The REST side of the API.
#[derive(Debug, Clone)]
pub struct Gateway {
    routes: RouteTable,
    /// The tonic services, without the auth layer: the caller was
    /// authenticated when its HTTP request arrived.
    grpc: axum::Router,
    max_body_bytes: usize,
    /// The JSON of answers that carry an entity tag, by the tag: an answer
    /// is transcoded once for as long as it stays the same.
    transcoded: Arc<Bounded<Transcoding, Transcoded>>,
    /// The gzip of tagged answers: compressed once per version, not once per
    /// request (the HTTP layer compresses the rest).
    gzipped: Arc<Bounded<Gzipping, (Bytes, Bytes)>>,
}

/// What picks a cached gzip: the answer's tag, length and hash. The plain
/// bytes kept beside it are compared before it is used, so no two answers
/// ever share one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Gzipping {
    etag: String,
    len: usize,
    hash: u64,
}

/// At most this many bytes of plain and compressed answers are kept.
const GZIPPED_BYTES: usize = 16 * 1024 * 1024;

/// A reply as the service encoded it, its JSON, and how many list elements
/// the JSON holds.
type Transcoded = (Bytes, Arc<str>, usize);

/// What picks a cached transcoding; the answer's bytes, kept beside its
/// JSON, are compared before the JSON is used.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Transcoding {
    method: http::uri::PathAndQuery,
    /// The repeated field written as a bare array, or 0 for the whole answer.
    field: u32,
    etag: String,
    len: usize,
}

/// At most this many bytes of answers and their JSON are kept.
const TRANSCODED_BYTES: usize = 32 * 1024 * 1024;

impl Gateway {
    /// Creates the gateway over `grpc`, the router of the tonic services.
    pub fn new(routes: RouteTable, grpc: axum::Router, max_body_bytes: usize) -> Gateway {
        Gateway {
            routes,
            grpc,
            max_body_bytes,
            transcoded: Arc::new(Bounded::new(TRANSCODED_BYTES)),
            gzipped: Arc::new(Bounded::new(GZIPPED_BYTES)),
        }
    }

    /// Serves one REST request.
    pub async fn handle(&self, req: Request) -> Response {
        match self.try_handle(req).await {
            Ok(r) => r,
            Err(refusal) => refusal.into_response(),
        }
    }

    async fn try_handle(&self, req: Request) -> Result<Response, Refusal> {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path();
        let query = parts.uri.query().unwrap_or("");
        if path.len() + query.len() > MAX_URI_BYTES {
            return Err(Refusal::new(
                StatusCode::URI_TOO_LONG,
                tonic::Code::InvalidArgument,
                format!("the path and query exceed {MAX_URI_BYTES} bytes"),
            ));
        }
        let (route, vars) = match self.routes.find(&parts.method, path) {
            Lookup::Found(route, vars) => (route, vars),
            Lookup::MethodNotAllowed(allowed) => {
                return Err(Refusal::method_not_allowed(&parts.method, path, &allowed));
            }
            Lookup::NotFound => {
                return Err(Refusal::new(
                    StatusCode::NOT_FOUND,
                    tonic::Code::NotFound,
                    format!("no route for {} {path}", parts.method),
                ));
            }
        };
        let body = self.read_body(route, &parts.headers, body).await?;
        let mut request = request::build_request(route, vars, query, &body)?;
        let principal = parts.extensions.get::<Principal>().cloned();
        if route.rpc.is_server_streaming() {
            let framing = Framing::for_request(&parts.headers);
            if framing == Framing::Sse {
                resume_from_last_event_id(&mut request, &parts.headers)?;
            }
            self.stream(route, request, principal, framing).await
        } else {
            let if_none_match = parts
                .headers
                .get(header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok());
            let (json, etag, next_token) = self
                .unary(route, request, principal, query, if_none_match)
                .await?;
            if json.is_empty() {
                return Ok(not_modified(&etag));
            }
            let mut resp = self.json_answer(json, &etag, accepts_gzip(&parts.headers));
            if !next_token.is_empty()
                && let Ok(v) = HeaderValue::from_str(&next_token)
            {
                resp.headers_mut().insert(NEXT_PAGE_TOKEN_HEADER, v);
            }
            Ok(resp)
        }
    }

    /// Reads the body within the size limit, checking its media type when the
    /// route takes one.
    async fn read_body(
        &self,
        route: &Route,
        headers: &http::HeaderMap,
        body: Body,
    ) -> Result<Bytes, Refusal> {
        if !matches!(route.body, BodyRule::None)
            && let Some(ct) = headers.get(header::CONTENT_TYPE)
            && !is_json(ct)
        {
            return Err(Refusal::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                tonic::Code::InvalidArgument,
                format!(
                    "the body must be application/json, not {}",
                    ct.to_str().unwrap_or("(unreadable)")
                ),
            ));
        }
        let bytes = super::body::read(headers, body, self.max_body_bytes)
            .await
            .map_err(|e| super::body_refusal(&e))?;
        if matches!(route.body, BodyRule::None) && !bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(Refusal::invalid(format!(
                "{} {} takes no body; send the fields as query parameters",
                route.method, route.template
            )));
        }
        Ok(bytes)
    }

    fn client(&self) -> tonic::client::Grpc<axum::Router> {
        // The services enforce their own encoding limit; the transcoder takes
        // whatever they are allowed to send.
        tonic::client::Grpc::with_origin(self.grpc.clone(), Uri::from_static("http://switchyard"))
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX)
    }

    async fn call(
        &self,
        route: &Route,
        request: &DynamicMessage,
        principal: Option<&Principal>,
    ) -> Result<Reply, Refusal> {
        let mut client = self.client();
        if let Err(e) = client.ready().await {
            match e {}
        }
        let mut req = tonic::Request::new(Bytes::from(request.encode_to_vec()));
        if let Some(p) = principal {
            req.extensions_mut().insert(p.clone());
        }
        let reply = client
            .unary(req, route.grpc_path.clone(), RawCodec)
            .await
            .map_err(Refusal::from)?;
        Ok(Reply {
            desc: route.rpc.output(),
            bytes: reply.into_inner(),
        })
    }

    async fn unary(
        &self,
        route: &Route,
        mut request: DynamicMessage,
        principal: Option<Principal>,
        query: &str,
        if_none_match: Option<&str>,
    ) -> Result<(String, String, String), Refusal> {
        // An RPC that answers by version: the header is its `if_none_match`,
        // its `etag` the header of the answer, `not_modified` a 304.
        let conditional = Conditional::of(route);
        if let (Some(c), Some(v)) = (&conditional, if_none_match) {
            request.set_field(&c.if_none_match, Value::String(v.to_owned()));
        }
        let Some(field) = route.response_body.as_ref().filter(|f| f.is_list()) else {
            let reply = self.call(route, &request, principal.as_ref()).await?;
            let etag = match &conditional {
                Some(c) => match reply.version(c)? {
                    (etag, true) => return Ok((String::new(), etag, String::new())),
                    (etag, false) => etag,
                },
                None => String::new(),
            };
            let json = match &route.response_body {
                None => self.transcode(route, &reply, None, &etag)?.0.to_string(),
                Some(f) => single_field_json(&reply.dynamic()?, f)?,
            };
            return Ok((json, etag, String::new()));
        };
        // A bare array cannot carry a page token. When the caller asked for no
        // particular page, the array is the whole collection (pages are
        // followed here, up to a bound); otherwise, and when the bound is hit,
        // the next page's token is in a header. Pages are as large as the
        // service allows unless the caller says otherwise.
        let paging = Paging::of(route);
        let named = |p: &FieldDescriptor| {
            form_urlencoded::parse(query.as_bytes())
                .any(|(k, _)| k == p.name() || k == p.json_name())
        };
        let follow = paging
            .as_ref()
            .is_some_and(|p| !named(&p.page_token) && !named(&p.page_size));
        if let Some(p) = paging.as_ref().filter(|p| !request.has_field(&p.page_size)) {
            request.set_field(&p.page_size, Value::I32(i32::MAX));
        }
        let mut out = String::from("[");
        let mut seen = Vec::new();
        // The tag of every page; the array has one only when all agree.
        let mut etags: Vec<String> = Vec::new();
        let next_token = loop {
            let reply = self.call(route, &request, principal.as_ref()).await?;
            let mut etag = String::new();
            if let Some(c) = &conditional {
                let (tag, unchanged) = reply.version(c)?;
                if unchanged {
                    return Ok((String::new(), tag, String::new()));
                }
                etag = tag;
                // Later pages are wanted whatever the caller holds.
                request.clear_field(&c.if_none_match);
            }
            let (text, added) = self.transcode(route, &reply, Some(field), &etag)?;
            if added > 0 {
                if out.len() > 1 {
                    out.push(',');
                }
                out.push_str(&text);
            }
            etags.push(etag);
            let token = paging
                .as_ref()
                .map(|p| reply.string_field(&p.next_page_token))
                .transpose()?
                .unwrap_or_default();
            let (Some(p), true, false) = (&paging, follow, token.is_empty()) else {
                break token;
            };
            // Bounded, and never around in circles.
            if out.len() >= self.max_body_bytes.saturating_mul(16)
                || added == 0
                || seen.contains(&token)
            {
                break token;
            }
            seen.push(token.clone());
            request.set_field(&p.page_token, Value::String(token));
        };
        out.push(']');
        let etag = match etags.split_first() {
            Some((first, rest)) if rest.iter().all(|e| e == first) => first.clone(),
            _ => String::new(),
        };
        Ok((out, etag, next_token))
    }

    /// A JSON answer with its tag; gzip-compressed for a caller that accepts
    /// it when the answer is tagged and large enough, from the cache while
    /// the answer stays the same.
    fn json_answer(&self, json: String, etag: &str, gzip: bool) -> Response {
        if !gzip || etag.is_empty() || json.len() < super::COMPRESS_MIN_BYTES {
            return with_etag(json_response(json), etag);
        }
        let key = Gzipping {
            etag: etag.to_owned(),
            len: json.len(),
            hash: foldhash::quality::FixedState::default().hash_one(json.as_bytes()),
        };
        let compressed = match self.gzipped.get(&key) {
            Some((plain, zipped)) if plain == json.as_bytes() => Some(zipped),
            _ => {
                let zipped = gzip_bytes(json.as_bytes());
                if let Some(z) = &zipped {
                    let plain = Bytes::from(json.clone());
                    let size = plain.len() + z.len();
                    self.gzipped.put(key, (plain, z.clone()), size, |_| false);
                }
                zipped
            }
        };
        let Some(body) = compressed else {
            return with_etag(json_response(json), etag);
        };
        let resp = (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CONTENT_ENCODING, "gzip"),
                (header::VARY, "accept-encoding"),
            ],
            body,
        )
            .into_response();
        with_etag(resp, etag)
    }

    /// The JSON of a reply: of the elements of the repeated `list` (as many
    /// as the count says), or of the whole reply. A reply with an entity tag
    /// is transcoded once for as long as it stays byte for byte the same.
    fn transcode(
        &self,
        route: &Route,
        reply: &Reply,
        list: Option<&FieldDescriptor>,
        etag: &str,
    ) -> Result<(Arc<str>, usize), Refusal> {
        let key = (!etag.is_empty()).then(|| Transcoding {
            method: route.grpc_path.clone(),
            field: list.map_or(0, FieldDescriptor::number),
            etag: etag.to_owned(),
            len: reply.bytes.len(),
        });
        if let Some(k) = &key
            && let Some((bytes, json, n)) = self.transcoded.get(k)
            && bytes == reply.bytes
        {
            return Ok((json, n));
        }
        let (json, n): (Arc<str>, usize) = match list {
            Some(f) => {
                let (text, n) = reply.list_json(f)?;
                (text.into(), n)
            }
            None => (reply.json()?.into(), 1),
        };
        if let Some(k) = key {
            let size = reply.bytes.len() + json.len();
            self.transcoded
                .put(k, (reply.bytes.clone(), json.clone(), n), size, |_| false);
        }
        Ok((json, n))
    }

    /// Streams the RPC's messages as newline-delimited JSON, grpc-gateway's
    /// way: `{"result": ...}` per message, `{"error": ...}` if the stream
    /// fails after it started; or, to a client that accepts only
    /// `text/event-stream`, as server-sent events (see [`Framing::Sse`]).
    async fn stream(
        &self,
        route: &Route,
        request: DynamicMessage,
        principal: Option<Principal>,
        framing: Framing,
    ) -> Result<Response, Refusal> {
        let mut client = self.client();
        if let Err(e) = client.ready().await {
            match e {}
        }
        let mut req = tonic::Request::new(Bytes::from(request.encode_to_vec()));
        if let Some(p) = principal {
            req.extensions_mut().insert(p);
        }
        let stream = client
            .server_streaming(req, route.grpc_path.clone(), RawCodec)
            .await
            .map_err(Refusal::from)?
            .into_inner();
        let output = route.rpc.output();
        let revision = output
            .get_field_by_name("revision")
            .filter(|f| f.kind() == Kind::Int64 && !f.is_list())
            .map(|f| f.number());
        let lines = stream.map(move |item| {
            let message = match item {
                Ok(bytes) => {
                    let reply = Reply {
                        desc: output.clone(),
                        bytes,
                    };
                    reply
                        .json()
                        .map(|json| (json, revision.and_then(|n| reply.varint(n))))
                }
                Err(status) => Err(Refusal::from(status)),
            };
            Ok::<_, std::convert::Infallible>(Bytes::from(framing.frame(message)))
        });
        Ok((
            [
                (header::CONTENT_TYPE, framing.content_type()),
                // Proxies must pass each event on as it comes.
                (header::CACHE_CONTROL, "no-cache"),
            ],
            Body::from_stream(lines),
        )
            .into_response())
    }
}

/// The paging fields of a route whose request and response follow the
/// `page_size` / `page_token` / `next_page_token` convention.
struct Paging {
    page_size: FieldDescriptor,
    page_token: FieldDescriptor,
    next_page_token: FieldDescriptor,
}

impl Paging {
    /// The paging fields, when the RPC has all three with the conventional
    /// types (`int32`, `string`, `string`).
    fn of(route: &Route) -> Option<Paging> {
        let input = route.rpc.input();
        let singular =
            |f: FieldDescriptor, kind: Kind| (!f.is_list() && f.kind() == kind).then_some(f);
        Some(Paging {
            page_size: singular(input.get_field_by_name("page_size")?, Kind::Int32)?,
            page_token: singular(input.get_field_by_name("page_token")?, Kind::String)?,
            next_page_token: singular(
                route.rpc.output().get_field_by_name("next_page_token")?,
                Kind::String,
            )?,
        })
    }
}

/// How a server-streaming RPC's messages are written on REST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// `application/x-ndjson`: one JSON object per line, `{"result": ...}`
    /// or `{"error": ...}` (grpc-gateway's form).
    Ndjson,
    /// `text/event-stream`: each message one event, its `data` the message's
    /// JSON and its `id` the message's `revision` (where the message has
    /// one), so a reconnecting client's `Last-Event-ID` resumes after it; a
    /// failure after the start is an event named `status` whose `data` is
    /// the `google.rpc.Status` JSON.
    Sse,
}

impl Framing {
    /// SSE when the request accepts `text/event-stream` and not NDJSON
    /// (what an `EventSource` sends); NDJSON otherwise.
    fn for_request(headers: &http::HeaderMap) -> Framing {
        let accepts = |media: &str| {
            headers
                .get_all(header::ACCEPT)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|m| m.split(';').next().is_some_and(|m| m.trim() == media))
        };
        if accepts("text/event-stream") && !accepts("application/x-ndjson") {
            Framing::Sse
        } else {
            Framing::Ndjson
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Framing::Ndjson => "application/x-ndjson",
            Framing::Sse => "text/event-stream",
        }
    }

    /// One message (its JSON and revision) or the failure that ended the
    /// stream, framed. The JSON is written on one line, so `data:` holds it
    /// whole.
    fn frame(self, message: Result<(String, Option<u64>), Refusal>) -> String {
        match (self, message) {
            (Framing::Ndjson, Ok((json, _))) => format!("{{\"result\":{json}}}\n"),
            (Framing::Ndjson, Err(r)) => format!("{{\"error\":{}}}\n", r.body()),
            (Framing::Sse, Ok((json, Some(revision)))) => {
                format!("id: {revision}\ndata: {json}\n\n")
            }
            (Framing::Sse, Ok((json, None))) => format!("data: {json}\n\n"),
            (Framing::Sse, Err(r)) => format!("event: status\ndata: {}\n\n", r.body()),
        }
    }
}

/// An SSE client that reconnects sends the last event's id, the revision it
/// holds, in `Last-Event-ID`: the watch resumes after it. It wins over a
/// `since_revision` in the query, which an `EventSource` sends again
/// unchanged on every reconnect (the header is always the later position).
fn resume_from_last_event_id(
    request: &mut DynamicMessage,
    headers: &http::HeaderMap,
) -> Result<(), Refusal> {
    let Some(last) = headers.get("last-event-id") else {
        return Ok(());
    };
    let Some(field) = request
        .descriptor()
        .get_field_by_name("since_revision")
        .filter(|f| f.kind() == Kind::Int64)
    else {
        return Ok(());
    };
    let revision = last
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|r| *r >= 0)
        .ok_or_else(|| {
            Refusal::invalid("Last-Event-ID must be a revision (a non-negative integer)")
        })?;
    request.set_field(&field, Value::I64(revision));
    Ok(())
}

/// A reply as the service encoded it, with its type.
struct Reply {
    desc: MessageDescriptor,
    bytes: Bytes,
}

impl Reply {
    /// The varint field `number` of the reply, read off the wire.
    fn varint(&self, number: u32) -> Option<u64> {
        json::fields(&self.bytes)?
            .into_iter()
            .rev()
            .find_map(|(n, raw)| match raw {
                json::Raw::Varint(v) if n == number => Some(v),
                _ => None,
            })
    }

    fn dynamic(&self) -> Result<DynamicMessage, Refusal> {
        DynamicMessage::decode(self.desc.clone(), self.bytes.clone())
            .map_err(|e| crate::error::Error::internal("decoding a reply", e).into())
    }

    /// The reply's proto3 JSON: straight from the wire when [`json`] can,
    /// through a `DynamicMessage` otherwise.
    fn json(&self) -> Result<String, Refusal> {
        let mut out = Vec::with_capacity(self.bytes.len() * 2);
        if json::write_message(&self.desc, &self.bytes, &mut out).is_some() {
            return String::from_utf8(out)
                .map_err(|e| crate::error::Error::internal("encoding JSON", e).into());
        }
        to_json(&self.dynamic()?)
    }

    /// The JSON of the elements of the repeated `field`, comma-separated,
    /// and how many there are.
    fn list_json(&self, field: &FieldDescriptor) -> Result<(String, usize), Refusal> {
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

    /// The `etag` of a reply and whether it says `not_modified`.
    fn version(&self, c: &Conditional) -> Result<(String, bool), Refusal> {
        // One scan of the reply for both fields; anything unusual (no
        // parse, a repeated or non-UTF-8 tag) is read by the decoder.
        if let Some(raw) = json::fields(&self.bytes) {
            let not_modified = raw
                .iter()
                .rev()
                .find(|(n, _)| *n == c.not_modified.number())
                .is_some_and(|(_, r)| matches!(r, json::Raw::Varint(v) if *v != 0));
            let mut tags = raw.iter().filter(|(n, _)| *n == c.etag.number());
            match (tags.next(), tags.next()) {
                (None, _) => return Ok((String::new(), not_modified)),
                (Some((_, json::Raw::Bytes(b))), None) => {
                    if let Ok(tag) = std::str::from_utf8(b) {
                        return Ok((tag.to_owned(), not_modified));
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
        let not_modified = matches!(m.get_field(&c.not_modified).as_ref(), Value::Bool(true));
        Ok((text(&c.etag), not_modified))
    }

    /// Whether every field of the reply other than `list` would decode:
    /// the fast path of [`Reply::append_list`] writes only `list`, so it must
    /// not accept a reply the decoder would refuse.
    fn rest_is_well_formed(&self, raw: &[(u32, json::Raw<'_>)], list: &FieldDescriptor) -> bool {
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
    fn string_field(&self, f: &FieldDescriptor) -> Result<String, Refusal> {
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

/// Whether a body of this media type is read as JSON: `application/json`,
/// `application/*+json`, and `application/x-www-form-urlencoded`, which is
/// what `curl -d` sends (grpc-gateway reads such bodies as JSON too).
fn is_json(ct: &HeaderValue) -> bool {
    let Ok(s) = ct.to_str() else { return false };
    let essence = s
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence == "application/x-www-form-urlencoded"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The JSON of the elements of the repeated `field` of `m`, comma-separated,
/// and how many there are.
fn list_json(m: &DynamicMessage, field: &FieldDescriptor) -> Result<(String, usize), Refusal> {
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
            Err(e) => return Err(crate::error::Error::internal("encoding JSON", e).into()),
        },
    };
    Ok((out, n))
}

/// The JSON of one field of `m` (a `response_body` that is not a message
/// list): the message is serialised and the field taken out.
fn single_field_json(m: &DynamicMessage, field: &FieldDescriptor) -> Result<String, Refusal> {
    let whole: Json = serde_json::from_str(&to_json(m)?)
        .map_err(|e| crate::error::Error::internal("encoding JSON", e))?;
    let mut out = Vec::new();
    let v = whole.get(field.json_name()).cloned().unwrap_or(Json::Null);
    serde_json::to_writer(&mut out, &v)
        .map_err(|e| crate::error::Error::internal("encoding JSON", e))?;
    String::from_utf8(out).map_err(|e| crate::error::Error::internal("encoding JSON", e).into())
}

/// Whether `Accept-Encoding` takes gzip: named with a non-zero quality, or
/// not named and `*` accepted.
fn accepts_gzip(headers: &http::HeaderMap) -> bool {
    let (mut gzip, mut any) = (None, None);
    for coding in headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let mut parts = coding.split(';').map(str::trim);
        let name = parts.next().unwrap_or_default();
        let refused = parts.any(|p| {
            p.strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        if name.eq_ignore_ascii_case("gzip") {
            gzip = Some(!refused);
        } else if name == "*" {
            any = Some(!refused);
        }
    }
    gzip.or(any).unwrap_or(false)
}

/// `bytes` gzip-compressed at the default level.
fn gzip_bytes(bytes: &[u8]) -> Option<Bytes> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4),
        flate2::Compression::default(),
    );
    e.write_all(bytes).ok()?;
    e.finish().ok().map(Bytes::from)
}

fn json_response(json: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], json).into_response()
}

/// `resp` with an `ETag` header, when there is a tag.
fn with_etag(mut resp: Response, etag: &str) -> Response {
    if !etag.is_empty()
        && let Ok(v) = HeaderValue::from_str(etag)
    {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

/// 304 Not Modified: no body, the tag the caller holds.
fn not_modified(etag: &str) -> Response {
    with_etag(StatusCode::NOT_MODIFIED.into_response(), etag)
}

/// The fields of an RPC that answers by version, HTTP's conditional GET in
/// messages: the request's `if_none_match` (string), the response's `etag`
/// (string) and `not_modified` (bool).
struct Conditional {
    if_none_match: FieldDescriptor,
    etag: FieldDescriptor,
    not_modified: FieldDescriptor,
}

impl Conditional {
    fn of(route: &Route) -> Option<Conditional> {
        let singular =
            |f: FieldDescriptor, kind: Kind| (!f.is_list() && f.kind() == kind).then_some(f);
        let output = route.rpc.output();
        Some(Conditional {
            if_none_match: singular(
                route.rpc.input().get_field_by_name("if_none_match")?,
                Kind::String,
            )?,
            etag: singular(output.get_field_by_name("etag")?, Kind::String)?,
            not_modified: singular(output.get_field_by_name("not_modified")?, Kind::Bool)?,
        })
    }
}

/// Passes encoded messages through unchanged: the transcoder encodes and
/// decodes with the descriptors itself.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

impl Refusal {
    /// 405, with the `Allow` header listing `allowed`.
    pub(crate) fn method_not_allowed(method: &Method, path: &str, allowed: &[Method]) -> Refusal {
        let allow = allowed
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        let mut r = Refusal::new(
            StatusCode::METHOD_NOT_ALLOWED,
            tonic::Code::Unimplemented,
            format!("{method} is not allowed on {path}; allowed: {allow}"),
        );
        r.allow = Some(allow);
        r
    }
}
