//! The transcoder: turns a REST request into the annotated RPC's request
//! message, calls the RPC through the same tonic services gRPC clients reach
//! (in process, with the caller's [`Principal`]), and turns the answer into
//! proto3 JSON.
//!
//! Every rule of the API (validation, scopes, isolation) therefore lives once,
//! in the services; this module only maps HTTP to messages and back: it
//! dispatches here, answers by version and keeps the tagged answers
//! (`answers`), frames a stream (`framing`), reads a reply off the wire
//! (`reply`), and calls through a pass-through codec (`codec`).

use std::sync::Arc;

use axum::{
    body::Body,
    extract::Request,
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderValue, Method, StatusCode, Uri, header};
use prost::Message;
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, Value};

use super::{
    Refusal, request,
    routes::{BodyRule, Lookup, Route, RouteTable},
};
use switchyard_core::{auth::Principal, service::cache::Bounded};

mod answers;
mod codec;
mod framing;
mod reply;

use answers::{
    Conditional, GZIPPED_BYTES, Gzipping, TRANSCODED_BYTES, Transcoded, Transcoding, accepts_gzip,
    not_modified,
};
use codec::RawCodec;
use framing::{Framing, resume_from_last_event_id};
use reply::{Reply, single_field_json};

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
                Some(c) => match reply.version(&c.etag, &c.not_modified)? {
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
                let (tag, unchanged) = reply.version(&c.etag, &c.not_modified)?;
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
