//! Clients of a test server: the library's own gRPC client
//! (`switchyard::client`) with a token, a plain HTTP/1.1 client for the REST
//! shims (one connection per request, as curl would do), and a reader of
//! newline-delimited JSON streams.

use std::time::Duration;

use switchyard::{
    api::v1::{
        flag_service_client::FlagServiceClient, gating_service_client::GatingServiceClient,
        tenant_service_client::TenantServiceClient,
    },
    client::{Authed, Client, endpoint},
};
use tonic::transport::Channel;

use super::server::TestServer;

impl TestServer {
    /// Opens a new channel (a new HTTP/2 connection).
    pub async fn channel(&self) -> Channel {
        endpoint(&self.url())
            .unwrap()
            .connect()
            .await
            .expect("connect")
    }

    /// A client with `token` on a new connection.
    pub async fn client(&self, token: &str) -> Client {
        Client::from_channel(self.channel().await, token).expect("a valid token")
    }

    pub async fn tenants(&self, token: &str) -> TenantServiceClient<Authed> {
        self.client(token).await.tenants()
    }

    pub async fn flags(&self, token: &str) -> FlagServiceClient<Authed> {
        self.client(token).await.flags()
    }

    pub async fn gating(&self, token: &str) -> GatingServiceClient<Authed> {
        self.client(token).await.gating()
    }
}

/// A REST response: status, headers and the whole body.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: bytes::Bytes,
}

impl HttpReply {
    /// Parses the body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Returns a header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends `method path` with an optional bearer token and JSON body, and
/// returns the streaming response.
pub async fn http_send(
    server: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<(&str, Vec<u8>)>,
) -> http::Response<hyper::body::Incoming> {
    http_send_with(server, method, path, token, body, &[]).await
}

/// [`http_send`] with more request headers.
pub async fn http_send_with(
    server: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<(&str, Vec<u8>)>,
    headers: &[(&str, &str)],
) -> http::Response<hyper::body::Incoming> {
    let stream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", server.addr.to_string());
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let payload = match body {
        Some((content_type, bytes)) => {
            req = req.header("content-type", content_type);
            bytes
        }
        None => Vec::new(),
    };
    let req = req
        .body(http_body_util::Full::new(bytes::Bytes::from(payload)))
        .expect("request");
    sender.send_request(req).await.expect("send")
}

/// Sends a request and reads the whole response.
pub async fn http(
    server: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    json: Option<serde_json::Value>,
) -> HttpReply {
    let body = json.map(|j| ("application/json", j.to_string().into_bytes()));
    http_raw(server, method, path, token, body).await
}

/// Sends a request with a body of any media type and reads the whole response.
pub async fn http_raw(
    server: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<(&str, Vec<u8>)>,
) -> HttpReply {
    http_raw_with(server, method, path, token, body, &[]).await
}

/// [`http_raw`] with more request headers.
pub async fn http_raw_with(
    server: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<(&str, Vec<u8>)>,
    headers: &[(&str, &str)],
) -> HttpReply {
    use http_body_util::BodyExt;
    let resp = http_send_with(server, method, path, token, body, headers).await;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    HttpReply {
        status,
        headers,
        body,
    }
}

/// Reads newline-delimited JSON (the REST watch) from a streaming body.
pub struct Lines {
    body: hyper::body::Incoming,
    buf: Vec<u8>,
}

impl Lines {
    pub fn new(body: hyper::body::Incoming) -> Lines {
        Lines {
            body,
            buf: Vec::new(),
        }
    }

    /// The next line as JSON, within 10 s.
    pub async fn next(&mut self) -> serde_json::Value {
        use http_body_util::BodyExt;
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return serde_json::from_slice(&line).expect("a JSON line");
            }
            let frame = tokio::time::timeout(Duration::from_secs(10), self.body.frame())
                .await
                .expect("a line within 10 s")
                .expect("the stream continues")
                .expect("a frame");
            if let Ok(data) = frame.into_data() {
                self.buf.extend_from_slice(&data);
            }
        }
    }
}

/// What a raw gRPC (or gRPC-Web) call got back: the HTTP status, the
/// content type, and the gRPC status from the headers (trailers-only) or the
/// trailers.
#[derive(Debug)]
pub struct RawGrpc {
    pub http: u16,
    pub content_type: String,
    pub status: Option<tonic::Status>,
}

impl RawGrpc {
    /// The gRPC code (panics when the answer carried none).
    pub fn code(&self) -> tonic::Code {
        self.status.as_ref().expect("a grpc-status").code()
    }

    /// The status message.
    pub fn message(&self) -> &str {
        self.status.as_ref().map_or("", tonic::Status::message)
    }
}

/// A gRPC frame holding `message`, its compressed flag set to `flag`.
pub fn grpc_frame(flag: u8, message: &[u8]) -> bytes::Bytes {
    let mut b = Vec::with_capacity(5 + message.len());
    b.push(flag);
    b.extend_from_slice(&(message.len() as u32).to_be_bytes());
    b.extend_from_slice(message);
    bytes::Bytes::from(b)
}

/// A request body that sends `first` and then stays open until the sender
/// returned with it is dropped: what a client still uploading looks like.
pub fn open_body(
    first: bytes::Bytes,
) -> (
    tonic::body::Body,
    tokio::sync::mpsc::Sender<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.try_send(Ok(http_body::Frame::data(first)))
        .expect("room");
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    (
        tonic::body::Body::new(http_body_util::StreamBody::new(stream)),
        tx,
    )
}

/// Sends `POST path` on `channel` (HTTP/2) with `content-type` `grpc` (or a
/// gRPC-Web type), `headers` and `body`, as no generated client would.
pub async fn grpc_raw(
    channel: &Channel,
    path: &str,
    content_type: &str,
    headers: &[(&str, &str)],
    body: tonic::body::Body,
) -> RawGrpc {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let mut req = http::Request::builder()
        .method("POST")
        .uri(format!("http://test{path}"))
        .header("content-type", content_type)
        .header("te", "trailers");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = channel
        .clone()
        .oneshot(req.body(body).expect("request"))
        .await
        .expect("an answer");
    let http = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let status = match tonic::Status::from_header_map(resp.headers()) {
        Some(s) => Some(s),
        None => {
            let collected = resp.into_body().collect().await.ok();
            collected
                .and_then(|c| c.trailers().cloned())
                .and_then(|t| tonic::Status::from_header_map(&t))
        }
    };
    RawGrpc {
        http,
        content_type,
        status,
    }
}
