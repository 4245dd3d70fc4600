//! Answers by version: HTTP's conditional GET in messages (`If-None-Match`
//! in, `ETag` and 304 out), and the two caches of tagged answers, their JSON
//! (transcoded once while the reply stays byte for byte the same) and its
//! gzip (compressed once per version).

use std::{hash::BuildHasher, sync::Arc};

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use prost_reflect::{FieldDescriptor, Kind};

use super::reply::Reply;
use crate::rest::{COMPRESS_MIN_BYTES, Refusal, routes::Route};

/// What picks a cached gzip: the answer's tag, length and hash. The plain
/// bytes kept beside it are compared before it is used, so no two answers
/// ever share one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Gzipping {
    pub(super) etag: String,
    pub(super) len: usize,
    pub(super) hash: u64,
}

/// At most this many bytes of plain and compressed answers are kept.
pub(super) const GZIPPED_BYTES: usize = 16 * 1024 * 1024;

/// A reply as the service encoded it, its JSON, and how many list elements
/// the JSON holds.
pub(super) type Transcoded = (Bytes, Arc<str>, usize);

/// What picks a cached transcoding; the answer's bytes, kept beside its
/// JSON, are compared before the JSON is used.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Transcoding {
    pub(super) method: http::uri::PathAndQuery,
    /// The repeated field written as a bare array, or 0 for the whole answer.
    pub(super) field: u32,
    pub(super) etag: String,
    pub(super) len: usize,
}

/// At most this many bytes of answers and their JSON are kept.
pub(super) const TRANSCODED_BYTES: usize = 32 * 1024 * 1024;

impl super::Gateway {
    /// A JSON answer with its tag; gzip-compressed for a caller that accepts
    /// it when the answer is tagged and large enough, from the cache while
    /// the answer stays the same.
    pub(super) fn json_answer(&self, json: String, etag: &str, gzip: bool) -> Response {
        if !gzip || etag.is_empty() || json.len() < COMPRESS_MIN_BYTES {
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
    pub(super) fn transcode(
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
}

/// Whether `Accept-Encoding` takes gzip: named with a non-zero quality, or
/// not named and `*` accepted.
pub(super) fn accepts_gzip(headers: &http::HeaderMap) -> bool {
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
pub(super) fn gzip_bytes(bytes: &[u8]) -> Option<Bytes> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4),
        flate2::Compression::default(),
    );
    e.write_all(bytes).ok()?;
    e.finish().ok().map(Bytes::from)
}

pub(super) fn json_response(json: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], json).into_response()
}

/// `resp` with an `ETag` header, when there is a tag.
pub(super) fn with_etag(mut resp: Response, etag: &str) -> Response {
    if !etag.is_empty()
        && let Ok(v) = HeaderValue::from_str(etag)
    {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

/// 304 Not Modified: no body, the tag the caller holds.
pub(super) fn not_modified(etag: &str) -> Response {
    with_etag(StatusCode::NOT_MODIFIED.into_response(), etag)
}

/// The fields of an RPC that answers by version, HTTP's conditional GET in
/// messages: the request's `if_none_match` (string), the response's `etag`
/// (string) and `not_modified` (bool).
pub(super) struct Conditional {
    pub(super) if_none_match: FieldDescriptor,
    pub(super) etag: FieldDescriptor,
    pub(super) not_modified: FieldDescriptor,
}

impl Conditional {
    pub(super) fn of(route: &Route) -> Option<Conditional> {
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
