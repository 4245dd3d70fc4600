//! A server stream's body written from shared encodings: each message goes
//! out as its 5-byte gRPC frame header followed by the very bytes every
//! stream of the same item shares ([`Memo`]), never copied per stream.
//!
//! tonic's own encoder copies each message into the stream's buffer; for a
//! watch, where thousands of streams may be sent the same megabyte snapshot
//! at once (and a subscriber that does not read holds its copy in the
//! connection's send queue), that copy is what a replica's memory would be
//! made of. Here a stream's share of such a snapshot is a reference count.
//! tonic still reads the request and writes the answer's headers (and
//! negotiates `grpc-encoding`); only the messages and the trailers are
//! written here.

use std::{
    future::Future,
    io::Write,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, ready},
};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use tonic::Status;

use switchyard_api::codec::{Encoded, EncodedCodec};
use switchyard_core::flag::watch::Memo;

/// Messages up to this size are copied behind their header and sent in one
/// chunk: fewer frames for the many small events of a watch.
const COPY_MAX: usize = 4096;

/// What a stream sends: items with the memo of their encoding, or the
/// status it ends with.
pub type Messages<T> = Pin<Box<dyn Stream<Item = Result<(T, Memo), Status>> + Send>>;

/// The body of a server stream of `T`s, each encoded with `encode` (once per
/// memo) and compressed with gzip when `gzip` (once per memo too), none over
/// `max` bytes; it ends with OK when the items do, else with their status.
pub struct Frames<T> {
    messages: Messages<T>,
    encode: fn(&T) -> Result<Bytes, Status>,
    gzip: bool,
    max: usize,
    /// The message whose header was just sent.
    payload: Option<Bytes>,
    done: bool,
}

impl<T> Frames<T> {
    /// The body of `messages`.
    pub fn new(
        messages: Messages<T>,
        encode: fn(&T) -> Result<Bytes, Status>,
        gzip: bool,
        max: usize,
    ) -> Frames<T> {
        Frames {
            messages,
            encode,
            gzip,
            max,
            payload: None,
            done: false,
        }
    }

    /// The header and the payload of one message.
    fn framed(&self, item: &T, memo: &Memo) -> Result<(Bytes, Bytes), Status> {
        // The plain encoding first: an item that does not encode fails
        // before anything is compressed.
        let mut failed = None;
        let plain = memo.encoded(|| {
            (self.encode)(item).unwrap_or_else(|e| {
                failed = Some(e);
                Bytes::new()
            })
        });
        if let Some(e) = failed {
            return Err(e);
        }
        let payload = if self.gzip {
            memo.compressed(|| plain.clone(), gzip)
        } else {
            plain
        };
        if payload.len() > self.max {
            return Err(Status::internal(format!(
                "the answer is {} bytes, over the limit of {} (max_message_bytes)",
                payload.len(),
                self.max
            )));
        }
        // A small message goes out whole, in one chunk with its header (a
        // copy of a few bytes); a large one as its header and then the
        // shared bytes themselves.
        let small = payload.len() <= COPY_MAX;
        let mut header = BytesMut::with_capacity(5 + if small { payload.len() } else { 0 });
        header.put_u8(u8::from(self.gzip));
        header.put_u32(u32::try_from(payload.len()).unwrap_or(u32::MAX));
        if small {
            header.put_slice(&payload);
            return Ok((header.freeze(), Bytes::new()));
        }
        Ok((header.freeze(), payload))
    }
}

fn gzip(plain: &[u8]) -> Bytes {
    let mut e = flate2::write::GzEncoder::new(
        Vec::with_capacity(plain.len() / 4 + 64),
        flate2::Compression::default(),
    );
    // Writing into a Vec cannot fail.
    let _ = e.write_all(plain);
    Bytes::from(e.finish().unwrap_or_default())
}

/// The trailers of a stream that ends with `status`.
fn trailers(status: &Status) -> HeaderMap {
    let mut h = HeaderMap::new();
    if status.add_header(&mut h).is_err() {
        h.insert(
            "grpc-status",
            http::HeaderValue::from(tonic::Code::Internal as i32),
        );
    }
    h
}

impl<T> Body for Frames<T> {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if let Some(payload) = self.payload.take() {
            return Poll::Ready(Some(Ok(Frame::data(payload))));
        }
        if self.done {
            return Poll::Ready(None);
        }
        let next = ready!(self.messages.poll_next_unpin(cx));
        let framed = match next {
            None => Err(Status::ok("")),
            Some(Err(status)) => Err(status),
            Some(Ok((item, memo))) => self.framed(&item, &memo),
        };
        Poll::Ready(Some(Ok(match framed {
            Ok((header, payload)) => {
                self.payload = (!payload.is_empty()).then_some(payload);
                Frame::data(header)
            }
            Err(status) => {
                self.done = true;
                Frame::trailers(trailers(&status))
            }
        })))
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.payload.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// A route the server mounts in front of a generated service's method: an
/// async function of the request.
#[derive(Clone)]
pub struct Route(Arc<RouteFn>);

type RouteFn = dyn Fn(
        http::Request<axum::body::Body>,
    ) -> Pin<Box<dyn Future<Output = http::Response<tonic::body::Body>> + Send>>
    + Send
    + Sync;

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Route")
    }
}

impl Route {
    /// The route that answers with `serve`.
    pub fn new<F, Fut>(serve: F) -> Route
    where
        F: Fn(http::Request<axum::body::Body>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = http::Response<tonic::body::Body>> + Send + 'static,
    {
        Route(Arc::new(move |req| Box::pin(serve(req))))
    }
}

impl tower::Service<http::Request<axum::body::Body>> for Route {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<axum::body::Body>) -> Self::Future {
        let answer = (self.0)(req);
        Box::pin(async move { Ok(answer.await) })
    }
}

/// Serves a server-streaming call whose messages are written by [`Frames`]:
/// tonic reads the request (`Req`: its framing, `grpc-encoding` and size
/// within `max`) and answers the headers, gzip when the client takes it, or a
/// refusal as a trailers-only answer; `call` turns the request into the
/// stream's items, each encoded by `encode`.
pub async fn serve<Req, T, F, Fut>(
    req: http::Request<axum::body::Body>,
    max: usize,
    call: F,
    encode: fn(&T) -> Result<Bytes, Status>,
) -> http::Response<tonic::body::Body>
where
    Req: prost::Message + Default + Send + 'static,
    T: Send + 'static,
    F: FnOnce(tonic::Request<Req>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Messages<T>, Status>> + Send + 'static,
{
    let items = Arc::new(Mutex::new(None));
    let mut gzip = tonic::codec::EnabledCompressionEncodings::default();
    gzip.enable(tonic::codec::CompressionEncoding::Gzip);
    let resp = tonic::server::Grpc::new(EncodedCodec::<Req>::small_messages())
        .apply_compression_config(gzip, gzip)
        .apply_max_message_size_config(Some(max), Some(max))
        .server_streaming(
            Capture {
                call: Some(call),
                items: items.clone(),
            },
            req,
        )
        .await;
    let taken = items.lock().unwrap_or_else(|p| p.into_inner()).take();
    match taken {
        // Refused: tonic's answer as it is.
        None => resp,
        Some(items) => {
            let (parts, _) = resp.into_parts();
            let gzip = parts
                .headers
                .get("grpc-encoding")
                .is_some_and(|e| e == "gzip");
            let body = Frames::new(items, encode, gzip, max);
            http::Response::from_parts(parts, tonic::body::Body::new(body))
        }
    }
}

/// The stream tonic would write: none; the items are handed over instead.
type Nothing = Pin<Box<dyn Stream<Item = Result<Encoded, Status>> + Send>>;

/// The call, as tonic's server calls it: it keeps the items for [`serve`].
struct Capture<F, T> {
    call: Option<F>,
    items: Arc<Mutex<Option<Messages<T>>>>,
}

impl<Req, T, F, Fut> tonic::server::ServerStreamingService<Req> for Capture<F, T>
where
    Req: Send + 'static,
    T: Send + 'static,
    F: FnOnce(tonic::Request<Req>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Messages<T>, Status>> + Send + 'static,
{
    type Response = Encoded;
    type ResponseStream = Nothing;
    type Future = Pin<Box<dyn Future<Output = Result<tonic::Response<Nothing>, Status>> + Send>>;

    fn call(&mut self, req: tonic::Request<Req>) -> Self::Future {
        let call = self.call.take();
        let slot = self.items.clone();
        Box::pin(async move {
            let call = call.ok_or_else(|| Status::internal("a stream is served once"))?;
            let items = call(req).await?;
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(items);
            Ok(tonic::Response::new(
                Box::pin(futures_util::stream::empty()) as Nothing,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use futures_util::stream;
    use http_body_util::BodyExt;

    use super::*;

    fn encode(n: &usize) -> Result<Bytes, Status> {
        Ok(Bytes::from(vec![7u8; *n]))
    }

    #[tokio::test]
    async fn frames_share_the_memos_bytes_and_end_with_a_status() {
        let memo = Memo::shared();
        let shared = memo.encoded(|| encode(&10_000).unwrap());
        let messages = vec![
            Ok((10_000, memo.clone())),
            Err(Status::resource_exhausted("too big")),
        ];
        let mut body = Frames::new(Box::pin(stream::iter(messages)), encode, false, 1 << 20);
        let header = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&header[..], &[0, 0, 0, 0x27, 0x10]);
        let payload = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(
            payload.as_ptr(),
            shared.as_ptr(),
            "the shared bytes, not a copy"
        );
        let end = body
            .frame()
            .await
            .unwrap()
            .unwrap()
            .into_trailers()
            .unwrap();
        assert_eq!(end["grpc-status"], "8");
        assert!(body.is_end_stream());
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn compressed_frames_are_made_once_and_a_message_over_the_limit_ends_the_stream() {
        let memo = Memo::shared();
        let messages = vec![Ok((1000, memo.clone())), Ok((1000, memo.clone()))];
        let body = Frames::new(Box::pin(stream::iter(messages)), encode, true, 4096);
        let all = body.collect().await.unwrap();
        let trailers = all.trailers().cloned().unwrap();
        assert_eq!(trailers["grpc-status"], "0");
        let bytes = all.to_bytes();
        assert_eq!(bytes[0], 1, "marked compressed");
        let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
        assert_eq!(bytes.len(), 2 * (5 + len));
        let once = memo.compressed(|| unreachable!(), |_| unreachable!());
        assert_eq!(&bytes[5..5 + len], &once[..]);

        let small = vec![Ok((1000, Memo::shared()))];
        let all = Frames::new(Box::pin(stream::iter(small)), encode, false, 100)
            .collect()
            .await
            .unwrap();
        assert_eq!(all.trailers().unwrap()["grpc-status"], "13");
    }
}
