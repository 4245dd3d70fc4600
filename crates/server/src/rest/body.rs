//! Reading an HTTP request body (REST shims and OFREP): the one place where
//! `Content-Encoding` is undone, after authentication (handlers run behind
//! the auth middleware), and within a limit that counts inflated bytes.
//!
//! The body is read as sent up to `limit` bytes, then, when it is gzip,
//! inflated off the async workers into at most `limit` bytes: a small body
//! that would inflate past the limit (a decompression bomb) costs the
//! inflation of `limit` bytes, never more, and is refused as too large.
//! gRPC calls never come here: their messages carry their own compression
//! (`grpc-encoding`), bounded by tonic, and an HTTP `Content-Encoding` on a
//! gRPC call is refused before anything is read (`web.rs`).

use std::io::Write;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, header};
use http_body_util::{BodyExt, Limited};

/// Why a body could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// More than the limit, as sent or once inflated (413).
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// A `Content-Encoding` other than gzip or identity (415).
    Unsupported(String),
    /// A gzip body that does not inflate, or a body that could not be
    /// received (400).
    Unreadable(String),
}

impl BodyError {
    /// One sentence for the caller.
    pub fn message(&self) -> String {
        match self {
            BodyError::TooLarge { limit } => {
                format!("the body exceeds {limit} bytes (counted once inflated)")
            }
            BodyError::Unsupported(e) => {
                format!("Content-Encoding {e}: bodies may be sent as gzip or identity")
            }
            BodyError::Unreadable(why) => why.clone(),
        }
    }
}

/// How a body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// As is.
    Identity,
    /// gzip (`x-gzip` too).
    Gzip,
}

/// The body's encoding from `Content-Encoding` (content codings are
/// case-insensitive, RFC 9110 §8.4.1), or the coding it does not support.
pub fn encoding(headers: &HeaderMap) -> Result<Encoding, BodyError> {
    let Some(v) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(Encoding::Identity);
    };
    let raw = v.as_bytes().trim_ascii();
    if raw.is_empty() || raw.eq_ignore_ascii_case(b"identity") {
        Ok(Encoding::Identity)
    } else if raw.eq_ignore_ascii_case(b"gzip") || raw.eq_ignore_ascii_case(b"x-gzip") {
        Ok(Encoding::Gzip)
    } else {
        Err(BodyError::Unsupported(
            String::from_utf8_lossy(raw).into_owned(),
        ))
    }
}

/// Reads `body` (encoded as `headers` say) into at most `limit` bytes.
pub async fn read(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let encoding = encoding(headers)?;
    let raw = Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                BodyError::TooLarge { limit }
            } else {
                BodyError::Unreadable("the body could not be read".into())
            }
        })?
        .to_bytes();
    match encoding {
        Encoding::Identity => Ok(raw),
        Encoding::Gzip => tokio::task::spawn_blocking(move || inflate(&raw, limit))
            .await
            .unwrap_or_else(|_| Err(BodyError::Unreadable("the body could not be read".into()))),
    }
}

/// Inflates a gzip body (one or more members) into at most `limit` bytes;
/// stops as soon as the output would pass it.
pub fn inflate(gzip: &[u8], limit: usize) -> Result<Bytes, BodyError> {
    let mut decoder = flate2::write::MultiGzDecoder::new(Capped {
        out: Vec::new(),
        limit,
    });
    let corrupt = |e: std::io::Error| {
        if e.get_ref().is_some_and(|inner| inner.is::<OverLimit>()) {
            BodyError::TooLarge { limit }
        } else {
            BodyError::Unreadable(format!("the gzip body does not inflate: {e}"))
        }
    };
    decoder.write_all(gzip).map_err(corrupt)?;
    let out = decoder.finish().map_err(corrupt)?;
    Ok(Bytes::from(out.out))
}

/// A sink that refuses to grow past `limit`.
struct Capped {
    out: Vec<u8>,
    limit: usize,
}

#[derive(Debug)]
struct OverLimit;

impl std::fmt::Display for OverLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("inflated past the limit")
    }
}

impl std::error::Error for OverLimit {}

impl Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.out.len() + buf.len() > self.limit {
            return Err(std::io::Error::other(OverLimit));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn a_bomb_inflates_no_further_than_the_limit() {
        // 64 MiB of zeros in about 64 KiB.
        let bomb = gzip(&vec![0u8; 64 << 20]);
        assert!(bomb.len() < 100 << 10, "{}", bomb.len());
        let limit = 1 << 20;
        let mut sink = Capped {
            out: Vec::new(),
            limit,
        };
        let mut decoder = flate2::write::MultiGzDecoder::new(&mut sink);
        let err = decoder.write_all(&bomb).unwrap_err();
        drop(decoder);
        assert!(err.get_ref().is_some_and(|e| e.is::<OverLimit>()));
        assert!(
            sink.out.len() <= limit,
            "inflated {} bytes for a limit of {limit}",
            sink.out.len()
        );
        assert_eq!(inflate(&bomb, limit), Err(BodyError::TooLarge { limit }));
    }

    #[test]
    fn bodies_inflate_whole_and_exactly_up_to_the_limit() {
        let data = b"{\"flag\": {\"key\": \"k\"}}".repeat(100);
        assert_eq!(inflate(&gzip(&data), data.len()).unwrap(), data[..]);
        assert_eq!(
            inflate(&gzip(&data), data.len() - 1),
            Err(BodyError::TooLarge {
                limit: data.len() - 1
            })
        );
        // Two members, as `cat a.gz b.gz` makes.
        let mut two = gzip(b"ab");
        two.extend(gzip(b"cd"));
        assert_eq!(inflate(&two, 10).unwrap(), &b"abcd"[..]);
        let mut bad = gzip(&data);
        let n = bad.len();
        bad[n - 5] ^= 0xff;
        assert!(matches!(
            inflate(&bad, 1 << 20),
            Err(BodyError::Unreadable(_))
        ));
        assert!(matches!(
            inflate(b"not gzip", 1 << 20),
            Err(BodyError::Unreadable(_))
        ));
    }

    #[test]
    fn codings_are_case_insensitive() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_ENCODING, v.parse().unwrap());
            encoding(&h)
        };
        assert_eq!(with("GZIP"), Ok(Encoding::Gzip));
        assert_eq!(with(" gzip "), Ok(Encoding::Gzip));
        assert_eq!(with("X-Gzip"), Ok(Encoding::Gzip));
        assert_eq!(with("Identity"), Ok(Encoding::Identity));
        assert_eq!(with("br"), Err(BodyError::Unsupported("br".into())));
        assert_eq!(encoding(&HeaderMap::new()), Ok(Encoding::Identity));
    }
}
