//! The listener's connections: at most `max_connections` at once (one more
//! is closed as soon as it is accepted), and a connection on which no byte
//! moves, read or written, for `connection_idle_timeout_s` is closed.
//!
//! Writes are gathered and sent together at a flush, one scheduler turn late
//! ([`Conn::poll_flush`]): when one change wakes a connection's many watch
//! streams (the hub wakes them one connection after another), each hands its frame to the HTTP/2 connection, which would
//! otherwise flush after each of them (the woken connection task runs right
//! after the stream that woke it); now the streams woken with it run first
//! and the connection sends all their frames in one write.
//!
//! Every byte read or written counts: a live HTTP/2 client answers the
//! server's keepalive PINGs (every `http2_keepalive_interval_s`), so a healthy
//! watch, however quiet, is never cut (configuration refuses an idle timeout
//! that is not longer than the PING interval plus its timeout); an HTTP/1.1
//! stream (SSE, NDJSON, gRPC-Web), whose client sends nothing after its
//! request, lives on its heartbeats. What is cut is a socket that never speaks
//! (one that never even sends the HTTP/2 preface), an HTTP/1.1 keep-alive
//! connection left unused, and a peer that stops reading (the writes stop).

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use futures_util::Stream;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
    time::{Instant, Sleep},
};
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::tls::Tls;

/// The limits on the listener's connections.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Closes a connection that sent nothing this long (`None`: never).
    pub idle_timeout: Option<Duration>,
}

/// How long a TLS handshake may take before the connection is closed.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections from `listener` within `limits`, TLS connections
/// when `tls` is set.
///
/// TLS handshakes run side by side, each in its own task (one slow or
/// silent client holds up no other), and a connection is handed to the
/// server once its handshake is done; one that does not finish in
/// [`HANDSHAKE_TIMEOUT`] is closed. A handshake holds its place under
/// `max_connections`.
pub fn incoming(
    listener: TcpListener,
    limits: Limits,
    tls: Option<Arc<Tls>>,
) -> Pin<Box<dyn Stream<Item = io::Result<Conn>> + Send + 'static>> {
    let accept = Accept {
        listener,
        open: Arc::new(Semaphore::new(limits.max_connections)),
        last_warning: AtomicU64::new(0),
        limits,
    };
    let Some(tls) = tls else {
        return Box::pin(futures_util::stream::unfold(accept, |accept| async move {
            let (stream, permit) = accept.next().await;
            let conn = Conn::new(Io::Plain(stream), accept.limits, permit);
            Some((Ok(conn), accept))
        }));
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Conn>(64);
    let refusals = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        loop {
            let (stream, permit) = tokio::select! {
                next = accept.next() => next,
                // The server stopped taking connections.
                () = tx.closed() => return,
            };
            let acceptor = tls.acceptor();
            let tx = tx.clone();
            let limits = accept.limits;
            let refusals = refusals.clone();
            tokio::spawn(async move {
                let peer = stream.peer_addr().ok();
                // One deadline for the first byte and the whole handshake.
                let handshake = async {
                    if !starts_tls(&stream).await {
                        plain_request_refused(stream).await;
                        return None;
                    }
                    Some(acceptor.accept(stream).await)
                };
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                    Ok(Some(Ok(stream))) => {
                        let conn = Conn::new(Io::Tls(Box::new(stream)), limits, permit);
                        let _ = tx.send(conn).await;
                    }
                    Ok(Some(Err(e))) => {
                        // A client refused (no or a wrong client
                        // certificate, a CA it does not trust): said at
                        // most once a second, so a scan cannot flood the log.
                        let now = switchyard_core::store::now_us() as u64 / 1_000_000;
                        if refusals.swap(now, Ordering::Relaxed) != now {
                            tracing::info!(?peer, error = %e, "TLS handshake failed");
                        }
                    }
                    Ok(None) => {}
                    Err(_) => tracing::debug!(?peer, "TLS handshake not finished in time: closed"),
                }
            });
        }
    });
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        let conn = rx.recv().await?;
        Some((Ok(conn), rx))
    }))
}

/// Whether the client's first byte opens a TLS handshake (a record of type
/// 22); a failed read is left to the handshake to say.
async fn starts_tls(stream: &TcpStream) -> bool {
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(1) => first[0] == 0x16,
        _ => true,
    }
}

/// Answers a plain-text client of the TLS listener with what to do instead,
/// and closes: an HTTP/1.1 request (`curl http://`) gets a 400 saying to use
/// https://; an HTTP/2 client without TLS (a gRPC client given a plain
/// address) gets a GOAWAY carrying the same words. The client's bytes are
/// read first and after the answer until it closes (at most a second), so
/// that unread bytes never reset the connection before the answer is read.
async fn plain_request_refused(mut stream: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const TEXT: &str = "this listener speaks TLS only: use https://";
    let mut request = [0u8; 8192];
    let mut read = 0;
    let _ = tokio::time::timeout(Duration::from_millis(200), async {
        while read < request.len() {
            match stream.read(&mut request[read..]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
            if request[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    })
    .await;
    let answer = if request[..read].starts_with(PREFACE) {
        // SETTINGS (empty); then, once the client's first request is in
        // (a GOAWAY before it would cancel the request with no reason
        // given), GOAWAY: last stream 0, PROTOCOL_ERROR, the words.
        let _ = stream.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while !has_headers_frame(&request[PREFACE.len()..read]) && read < request.len() {
                match stream.read(&mut request[read..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => read += n,
                }
            }
        })
        .await;
        let mut frames = Vec::new();
        let length = u32::try_from(8 + TEXT.len()).unwrap_or(8).to_be_bytes();
        frames.extend_from_slice(&length[1..]);
        frames.extend_from_slice(&[7, 0, 0, 0, 0, 0]);
        frames.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
        frames.extend_from_slice(TEXT.as_bytes());
        frames
    } else {
        format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{TEXT}\n",
            TEXT.len() + 1
        )
        .into_bytes()
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(&answer).await?;
        stream.shutdown().await?;
        // Until the client closes: what it still sends is read, not reset.
        while stream.read(&mut request).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// The client connection preface of HTTP/2.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether `frames` (HTTP/2 frames, the last possibly cut) hold a HEADERS
/// frame: a request.
fn has_headers_frame(mut frames: &[u8]) -> bool {
    while frames.len() >= 9 {
        if frames[3] == 1 {
            return true;
        }
        let length =
            usize::from(frames[0]) << 16 | usize::from(frames[1]) << 8 | usize::from(frames[2]);
        frames = frames.get(9 + length..).unwrap_or_default();
    }
    false
}

/// The listener and its count of open connections.
struct Accept {
    listener: TcpListener,
    open: Arc<Semaphore>,
    /// The second the connection limit was last said to be reached.
    last_warning: AtomicU64,
    limits: Limits,
}

impl Accept {
    /// The next connection within the limit.
    async fn next(&self) -> (TcpStream, OwnedSemaphorePermit) {
        loop {
            let stream = match self.listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait, go on.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            let Ok(permit) = self.open.clone().try_acquire_owned() else {
                // At the limit: closed at once (dropped), said at most once
                // a second.
                let now = switchyard_core::store::now_us() as u64 / 1_000_000;
                if self.last_warning.swap(now, Ordering::Relaxed) != now {
                    tracing::warn!(
                        max_connections = self.limits.max_connections,
                        "connection limit reached (SWITCHYARD_MAX_CONNECTIONS): closing new connections"
                    );
                }
                continue;
            };
            let _ = stream.set_nodelay(true);
            return (stream, permit);
        }
    }
}

/// A connection's bytes: as they come, or through TLS.
#[derive(Debug)]
enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Io {
    fn tcp(&self) -> &TcpStream {
        match self {
            Io::Plain(s) => s,
            Io::Tls(s) => s.get_ref().0,
        }
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// One accepted connection, holding its place under the limit.
#[derive(Debug)]
pub struct Conn {
    io: Io,
    idle: Option<Idle>,
    /// Written and not sent yet; `sent` bytes of it are already out.
    out: Vec<u8>,
    sent: usize,
    /// The flush has let the other woken tasks run once.
    deferred: bool,
    _permit: OwnedSemaphorePermit,
}

/// Past this many bytes gathered, a write sends them first.
const GATHER_MAX: usize = 64 * 1024;
/// A write at least this large with nothing gathered goes out as it is (no
/// copy): large answers gain nothing from gathering.
const WRITE_THROUGH: usize = 16 * 1024;

impl Conn {
    fn new(io: Io, limits: Limits, permit: OwnedSemaphorePermit) -> Conn {
        Conn {
            io,
            idle: limits.idle_timeout.map(Idle::new),
            out: Vec::new(),
            sent: 0,
            deferred: false,
            _permit: permit,
        }
    }

    /// Bytes moved: the connection is not idle. A write counts as much as a
    /// read, so an HTTP/1.1 stream (SSE, NDJSON, gRPC-Web), whose client
    /// sends nothing once its request is in, lives while its events are
    /// delivered; a peer that stops reading stops the writes too.
    fn active(&mut self) {
        if let Some(idle) = &mut self.idle {
            idle.last_active = Instant::now();
        }
    }

    /// Sends everything gathered.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.out.len() {
            match Pin::new(&mut self.io).poll_write(cx, &self.out[self.sent..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => {
                    self.sent += n;
                    self.active();
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        // An idle connection keeps no buffer.
        self.out = Vec::new();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    /// Gathers `bufs`, sending what is gathered first when it is large.
    fn poll_gather(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.out.len() >= GATHER_MAX {
            match self.poll_send(cx) {
                Poll::Ready(Ok(())) => {}
                other => return other.map_ok(|()| 0),
            }
        }
        if self.out.is_empty() && bufs.iter().map(|b| b.len()).sum::<usize>() >= WRITE_THROUGH {
            let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
            if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
                self.active();
            }
            return r;
        }
        let mut n = 0;
        for b in bufs {
            self.out.extend_from_slice(b);
            n += b.len();
        }
        Poll::Ready(Ok(n))
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(r) => {
                // Only the time of the read is kept here (no timer work on
                // every read); the timer is moved when it fires.
                if let Some(idle) = &mut this.idle
                    && buf.filled().len() > before
                {
                    idle.last_active = Instant::now();
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                if this.idle.as_mut().is_some_and(|idle| idle.expired(cx)) {
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "idle connection closed",
                    )))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

/// The idle timer of a connection.
#[derive(Debug)]
struct Idle {
    timeout: Duration,
    last_active: Instant,
    timer: Pin<Box<Sleep>>,
}

impl Idle {
    fn new(timeout: Duration) -> Idle {
        Idle {
            timeout,
            last_active: Instant::now(),
            timer: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    /// Whether nothing moved for the timeout; otherwise the timer is set
    /// to the timeout after the last read (and registered with `cx`).
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            let deadline = self.last_active + self.timeout;
            if deadline <= Instant::now() {
                return true;
            }
            self.timer.as_mut().reset(deadline);
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_gather(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_gather(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// Sends what was gathered, one scheduler turn late: the first call
    /// wakes its own task and returns `Pending`, which puts the connection
    /// behind the tasks already woken (the other watch streams of a change),
    /// whose frames the connection then gathers too; the next call sends
    /// them all.
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.sent < self.out.len() {
            if !self.deferred {
                self.deferred = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            std::task::ready!(self.poll_send(cx))?;
        }
        self.deferred = false;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_send(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.io.tcp().connect_info()
    }
}
