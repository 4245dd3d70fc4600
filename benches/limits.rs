//! What an adversary's requests cost a replica (issue 30), on the release
//! binary, loopback only, bounded in requests and time:
//!
//! - **Bombs.** A gzip body of about 1 MB that inflates to 1 GiB, sent (two at
//!   a time, 200 times or for 60 s) each way an adversary might: on a gRPC call without a token
//!   (`grpc.health.v1.Health/Check`, HTTP `Content-Encoding: gzip`), as a
//!   gRPC message with `grpc-encoding: gzip` to the same public method, on a
//!   REST call without a token and with an admin token. The figure is the
//!   server's CPU per bomb against its CPU per plain `Health/Check` call (20
//!   000 calls, same run), and the p50 and p99 of unrelated `Health/Check`
//!   calls, one after another on another connection, while bombs are in
//!   flight against before.
//! - **Watch memory.** A view of about 1 MB (100 flags of 10 KiB), then five
//!   rounds of 2 000 `WatchFlags` streams (100 per connection) that each
//!   read their snapshot and stay open, then close: the server's resident
//!   memory idle, with the streams open, and after they closed, per round.
//!   The same with flagd's `SyncFlags` (in-process OpenFeature providers),
//!   whose first message is the whole view as flagd JSON.
//!
//! `cargo bench --bench limits [-- bombs|memory|sync] [ROUNDS]` (all, and 5
//! rounds, by default).
//! `SWITCHYARD_BENCH_BIN` runs another build (see `common::spawn`).

mod common;

use std::{
    io::Write,
    time::{Duration, Instant},
};

use bytes::{BufMut, Bytes, BytesMut};
use common::*;
use futures_util::StreamExt;
use switchyard::api::v1::{CreateFlagRequest, Flag, FlagType, WatchFlagsRequest};
use tower::ServiceExt;

/// Bombs sent of each kind, at most, two at a time ...
const BOMBS: usize = 200;
/// ... for at most this long.
const BOMB_TIME: Duration = Duration::from_secs(60);
/// Streams per memory round, and per connection.
const STREAMS: usize = 2000;
const PER_CONNECTION: usize = 100;
const ROUNDS: usize = 5;

/// The number of memory rounds: the first number among the arguments, else
/// [`ROUNDS`].
fn rounds() -> usize {
    std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(ROUNDS)
}

/// About 1 MB of gzip that inflates to 1 GiB of zeros.
fn bomb() -> Bytes {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..1024 {
        e.write_all(&chunk).expect("compressing");
    }
    Bytes::from(e.finish().expect("compressing"))
}

/// A gRPC frame holding `message` (`compressed`: flag 1).
fn grpc_frame(message: &[u8], compressed: bool) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + message.len());
    b.put_u8(u8::from(compressed));
    b.put_u32(message.len() as u32);
    b.put_slice(message);
    b.freeze()
}

/// Sends one raw gRPC request on `channel`; returns its `grpc-status`.
async fn grpc_raw(
    channel: &tonic::transport::Channel,
    path: &str,
    headers: &[(&'static str, &'static str)],
    body: Bytes,
) -> String {
    let mut req = http::Request::builder()
        .method("POST")
        .uri(format!("http://bench{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(tonic::body::Body::new(http_body_util::Full::new(body)))
        .expect("request");
    let resp = channel.clone().oneshot(req).await.expect("an answer");
    if let Some(s) = resp.headers().get("grpc-status") {
        return s.to_str().unwrap_or("?").to_owned();
    }
    use http_body_util::BodyExt;
    let collected = resp.into_body().collect().await.expect("the body");
    collected
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .map_or("none".into(), |s| s.to_str().unwrap_or("?").to_owned())
}

/// Sends one REST request over HTTP/1.1 with a gzip body; returns the status.
fn rest_bomb(port: u16, path: &str, token: Option<&str>, body: &[u8]) -> u16 {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n\
         content-encoding: gzip\r\ncontent-length: {}\r\n{auth}connection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("write");
    // The server may answer (and close) before it has read the body.
    let _ = s.write_all(body);
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// `Health/Check` latencies (µs), one call after another on `client`'s
/// connection, until `stop` is set (at least `calls`).
async fn health_latencies(
    client: &switchyard::client::Client,
    calls: usize,
    stop: &std::sync::atomic::AtomicBool,
) -> Vec<i64> {
    let mut health = client.health();
    let mut lat = Vec::with_capacity(calls);
    while lat.len() < calls || !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let t = Instant::now();
        health
            .check(switchyard::api::health::HealthCheckRequest::default())
            .await
            .expect("health");
        lat.push(t.elapsed().as_micros() as i64);
    }
    lat.sort_unstable();
    lat
}

async fn bombs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let server = spawn(dir.path(), port, &[]);
    let pid = server.id().to_string();
    let client = connect(port).await;
    let bomb = bomb();
    println!(
        "bomb: {} bytes of gzip inflating to 1 GiB; {BOMBS} of each kind",
        bomb.len()
    );
    let health_us = health_cpu_us(&pid, std::slice::from_ref(&client)).await;
    println!("server CPU per Health/Check call: {health_us:.1} µs");
    let prober = connect(port).await;
    let before = health_latencies(&prober, 2000, &std::sync::atomic::AtomicBool::new(true)).await;

    let channel = client.channel();
    let framed = grpc_frame(&bomb, true);
    let kinds: [(&str, u8); 4] = [
        ("gRPC Health/Check, HTTP content-encoding gzip, no token", 0),
        ("gRPC Health/Check, grpc-encoding gzip message, no token", 1),
        ("REST POST /v1/flags, content-encoding gzip, no token", 2),
        ("REST POST /v1/flags, content-encoding gzip, admin token", 3),
    ];
    for (name, kind) in kinds {
        let cpu_before = cpu_ms(&pid);
        let started = Instant::now();
        // Unrelated calls, measured while the bombs are sent.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let probe = {
            let (prober, stop) = (prober.clone(), stop.clone());
            tokio::spawn(async move { health_latencies(&prober, 1, &stop).await })
        };
        let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
        let mut sent = 0;
        while sent < BOMBS && started.elapsed() < BOMB_TIME {
            let mut sends = Vec::new();
            for _ in 0..2 {
                let (channel, body, framed) = (channel.clone(), bomb.clone(), framed.clone());
                sends.push(tokio::spawn(async move {
                    match kind {
                        0 => {
                            grpc_raw(
                                &channel,
                                "/grpc.health.v1.Health/Check",
                                &[("content-encoding", "gzip")],
                                body,
                            )
                            .await
                        }
                        1 => {
                            grpc_raw(
                                &channel,
                                "/grpc.health.v1.Health/Check",
                                &[("grpc-encoding", "gzip")],
                                framed,
                            )
                            .await
                        }
                        2 => tokio::task::spawn_blocking(move || {
                            format!("http {}", rest_bomb(port, "/v1/flags", None, &body))
                        })
                        .await
                        .expect("rest"),
                        _ => tokio::task::spawn_blocking(move || {
                            format!("http {}", rest_bomb(port, "/v1/flags", Some(TOKEN), &body))
                        })
                        .await
                        .expect("rest"),
                    }
                }));
            }
            for s in sends {
                *outcomes.entry(s.await.expect("bomb")).or_default() += 1;
                sent += 1;
            }
        }
        let elapsed = started.elapsed();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let during = probe.await.expect("prober");
        let cpu = cpu_ms(&pid) - cpu_before;
        // The prober's calls cost the server too: counted out.
        let per_bomb_ms = ((cpu - during.len() as f64 * health_us / 1000.0) / sent as f64).max(0.0);
        println!(
            "{name}: answers {outcomes:?}; server CPU per bomb {per_bomb_ms:.3} ms \
             ({:.0}x a Health/Check call; /proc ticks are 10 ms over {sent} bombs); \
             {sent} bombs in {:.2} s; unrelated Health/Check p50 {:.2} ms, p99 {:.2} ms \
             before; meanwhile p50 {:.2} ms, p99 {:.2} ms ({} calls)",
            per_bomb_ms * 1000.0 / health_us,
            elapsed.as_secs_f64(),
            pct_ms(&before, 0.5),
            pct_ms(&before, 0.99),
            pct_ms(&during, 0.5),
            pct_ms(&during, 0.99),
            during.len(),
        );
    }
    stop(server);
}

/// Which long-lived stream the memory rounds open.
#[derive(Clone, Copy, PartialEq)]
enum Streams {
    Watch,
    Sync,
}

async fn memory(kind: Streams) {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let server = spawn(
        dir.path(),
        port,
        &[
            ("SWITCHYARD_MAX_WATCHERS_PER_CALLER", "50000".into()),
            ("SWITCHYARD_CONNECTION_IDLE_TIMEOUT_S", "0".into()),
        ],
    );
    let pid = server.id();
    let admin = connect(port).await;
    let mut flags = admin.flags();
    let value = "v".repeat(10 * 1024);
    for i in 0..100 {
        flags
            .create_flag(CreateFlagRequest {
                flag: Some(Flag {
                    key: format!("big-{i:03}"),
                    r#type: FlagType::String as i32,
                    default_value: Some(pbjson_types::Value {
                        kind: Some(pbjson_types::value::Kind::StringValue(value.clone())),
                    }),
                    ..Default::default()
                }),
            })
            .await
            .expect("create flag");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = rss_kib(pid);
    let name = match kind {
        Streams::Watch => "WatchFlags",
        Streams::Sync => "flagd SyncFlags",
    };
    println!(
        "view: 100 flags of 10 KiB; {STREAMS} {name} streams per round, \
         {PER_CONNECTION} per connection; server RSS idle {:.1} MiB",
        idle as f64 / 1024.0
    );
    let mut first_after = 0;
    for round in 1..=rounds() {
        let mut channels = Vec::new();
        for _ in 0..STREAMS.div_ceil(PER_CONNECTION) {
            channels.push(connect(port).await);
        }
        let started = Instant::now();
        let mut opening = Vec::new();
        for i in 0..STREAMS {
            let channel = &channels[i / PER_CONNECTION];
            let mut client = channel.flags();
            let mut sync = switchyard::api::flagd::sync::v1::flag_sync_service_client::FlagSyncServiceClient::with_interceptor(
                channel.channel(),
                switchyard::client::Bearer::new(TOKEN),
            );
            opening.push(tokio::spawn(async move {
                if kind == Streams::Sync {
                    let mut stream = sync
                        .sync_flags(switchyard::api::flagd::sync::v1::SyncFlagsRequest::default())
                        .await
                        .expect("sync")
                        .into_inner();
                    let first = stream.next().await.expect("a view").expect("no error");
                    let bytes = first.flag_configuration.len();
                    return (Box::new(stream) as Box<dyn std::any::Any + Send>, bytes);
                }
                let mut stream = client
                    .watch_flags(WatchFlagsRequest::default())
                    .await
                    .expect("watch")
                    .into_inner();
                let mut bytes = 0usize;
                loop {
                    let ev = stream.next().await.expect("an event").expect("no error");
                    bytes += ev
                        .flags
                        .iter()
                        .map(|f| f.flag.len() + 10 * 1024)
                        .sum::<usize>();
                    if !ev.snapshot_continues {
                        break;
                    }
                }
                (Box::new(stream) as Box<dyn std::any::Any + Send>, bytes)
            }));
        }
        let mut streams = Vec::new();
        let mut received = 0usize;
        for o in opening {
            let (s, b) = o.await.expect("stream");
            received += b;
            streams.push(s);
        }
        let opened = started.elapsed();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let open = rss_kib(pid);
        drop(streams);
        drop(channels);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after = rss_kib(pid);
        if round == 1 {
            first_after = after;
        }
        println!(
            "round {round}: {STREAMS} views ({:.0} MiB) read in {:.1} s; RSS open {:.1} MiB \
             ({:+.1} above idle), after close {:.1} MiB ({:+.1} % of round 1's)",
            received as f64 / (1 << 20) as f64,
            opened.as_secs_f64(),
            open as f64 / 1024.0,
            (open as f64 - idle as f64) / 1024.0,
            after as f64 / 1024.0,
            (after as f64 / first_after as f64 - 1.0) * 100.0
        );
    }
    stop(server);
}

#[tokio::main]
async fn main() {
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-') && a.parse::<usize>().is_err())
        .collect();
    let all = which.is_empty();
    if all || which.iter().any(|w| w == "bombs") {
        bombs().await;
    }
    if all || which.iter().any(|w| w == "memory") {
        memory(Streams::Watch).await;
    }
    if all || which.iter().any(|w| w == "sync") {
        memory(Streams::Sync).await;
    }
}
