//! What the bench binaries share: starting the release `switchyard` binary,
//! connecting to it with the library's client (`switchyard::client`), and
//! reading percentiles.

#![allow(dead_code)]

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use switchyard::{
    api::v1::{
        CreateFlagRequest, CreateTenantRequest, Flag, FlagType, SetTenantOverrideRequest, Tenant,
        UpdateFlagRequest, WatchFlagsResponse, flag_service_client::FlagServiceClient,
    },
    client::{Authed, Client},
};

/// The binary under test (release, as `cargo bench` builds it).
pub const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
/// The admin token every bench server is started with.
pub const TOKEN: &str = "bench-admin-token-0123456789";

/// Returns a free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Starts the binary listening on `port`, in `dir` (its SQLite file goes
/// there), with the admin token, quiet logs and `env`.
///
/// `SWITCHYARD_BENCH_BIN` names another binary to start instead (an older
/// build, for a before/after comparison in one session).
pub fn spawn(dir: &std::path::Path, port: u16, env: &[(&str, String)]) -> Child {
    let bin = std::env::var("SWITCHYARD_BENCH_BIN").unwrap_or_else(|_| BIN.to_owned());
    let mut cmd = Command::new(bin);
    cmd.current_dir(dir)
        .env("SWITCHYARD_LISTEN", format!("127.0.0.1:{port}"))
        .env("SWITCHYARD_ADMIN_TOKEN", TOKEN)
        .env("SWITCHYARD_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn switchyard")
}

/// Connects to `port` with the admin token (a new HTTP/2 connection),
/// retrying until the server listens.
pub async fn connect(port: u16) -> Client {
    Client::connect_patiently(&format!("127.0.0.1:{port}"), TOKEN, Duration::from_secs(30))
        .await
        .expect("the bench server listens")
}

/// Stops a server with SIGTERM and waits for it.
pub fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// Runs `call(worker, i)` from `in_flight` workers for `secs`, each worker
/// calling again as soon as its call returns (`i`: the worker's n-th call,
/// spread over workers); returns calls/s and every call's latency in µs.
/// Panics if a call fails (`call` returns false).
pub async fn closed_loop<F, Fut>(in_flight: usize, secs: u64, call: F) -> (f64, Vec<u32>)
where
    F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    use std::time::Instant;
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for w in 0..in_flight {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(100_000);
            let mut failed = 0usize;
            let mut i = w;
            while Instant::now() < deadline {
                let t = Instant::now();
                if !call(w, i).await {
                    failed += 1;
                }
                lat.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                i += in_flight;
            }
            (lat, failed)
        }));
    }
    let start = Instant::now();
    let mut all = Vec::new();
    let mut failed = 0;
    for t in tasks {
        let (lat, f) = t.await.expect("worker");
        all.extend(lat);
        failed += f;
    }
    let elapsed = start.elapsed().as_secs_f64();
    assert_eq!(failed, 0, "{failed} calls failed");
    (all.len() as f64 / elapsed, all)
}

/// Microseconds since the epoch.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Microseconds since the epoch of a protobuf timestamp.
pub fn timestamp_us(t: Option<pbjson_types::Timestamp>) -> Option<i64> {
    t.map(|t| t.seconds * 1_000_000 + i64::from(t.nanos) / 1000)
}

/// A number `Value`.
pub fn number(n: f64) -> pbjson_types::Value {
    pbjson_types::Value {
        kind: Some(pbjson_types::value::Kind::NumberValue(n)),
    }
}

/// The `q` quantile of sorted microseconds, in milliseconds.
pub fn pct_ms(sorted: &[i64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0
}

/// Sets the stored value of the number flag `key` to `n`; returns the
/// change's revision.
pub async fn set_stored_number(client: &mut FlagServiceClient<Authed>, key: &str, n: f64) -> i64 {
    client
        .update_flag(UpdateFlagRequest {
            flag: Some(Flag {
                key: key.into(),
                stored_value: Some(number(n)),
                ..Default::default()
            }),
            update_mask: Some(pbjson_types::FieldMask {
                paths: vec!["stored_value".into()],
            }),
            expected_revision: 0,
        })
        .await
        .expect("update")
        .into_inner()
        .flag
        .expect("flag")
        .revision
}

/// Microseconds from a watch event's commit time to now (same machine, same
/// clock).
pub fn since_commit_us(ev: &WatchFlagsResponse) -> i64 {
    let arrived = now_us();
    arrived - timestamp_us(ev.commit_time).unwrap_or(arrived)
}

/// One wrk run with `in_flight` connections and the admin token; returns
/// (requests/s, p50 ms, p99 ms). Panics on any non-2xx answer.
pub fn wrk_round(url: &str, secs: u64, in_flight: usize) -> (f64, f64, f64) {
    wrk_round_with(url, secs, in_flight, &[])
}

/// [`wrk_round`] with more request headers (`name: value`).
pub fn wrk_round_with(
    url: &str,
    secs: u64,
    in_flight: usize,
    headers: &[String],
) -> (f64, f64, f64) {
    wrk_run(url, secs, in_flight, headers, None)
}

/// [`wrk_round_with`] sending `POST` with a JSON `body`.
pub fn wrk_post(
    url: &str,
    secs: u64,
    in_flight: usize,
    headers: &[String],
    body: &str,
) -> (f64, f64, f64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("post.lua");
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = {}\nwrk.headers[\"Content-Type\"] = \"application/json\"\n",
            serde_json::Value::from(body)
        ),
    )
    .expect("write the wrk script");
    wrk_run(url, secs, in_flight, headers, Some(&script))
}

fn wrk_run(
    url: &str,
    secs: u64,
    in_flight: usize,
    headers: &[String],
    script: Option<&std::path::Path>,
) -> (f64, f64, f64) {
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t2",
        &format!("-c{in_flight}"),
        &format!("-d{secs}s"),
        "--latency",
    ])
    .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
    .args(headers.iter().flat_map(|h| ["-H", h.as_str()]));
    if let Some(s) = script {
        cmd.arg("-s").arg(s);
    }
    let out = cmd
        .arg(url)
        .output()
        .expect("wrk runs (apt-get install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wrk failed: {text}");
    assert!(
        !text.contains("Non-2xx"),
        "wrk saw non-2xx responses: {text}"
    );
    let field = |prefix: &str| -> &str {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in wrk output: {text}"))
            .trim()
    };
    let ms = |s: &str| -> f64 {
        let s = s.trim();
        if let Some(v) = s.strip_suffix("us") {
            v.parse::<f64>().expect("number") / 1000.0
        } else if let Some(v) = s.strip_suffix("ms") {
            v.parse().expect("number")
        } else if let Some(v) = s.strip_suffix('s') {
            v.parse::<f64>().expect("number") * 1000.0
        } else {
            panic!("unknown unit in {s:?}")
        }
    };
    let rate: f64 = field("Requests/sec:").parse().expect("requests/sec");
    (rate, ms(field("50%")), ms(field("99%")))
}

/// One blocking HTTP/1.1 GET with the admin token; returns the body.
pub fn http_get(port: u16, path: &str) -> Vec<u8> {
    let (head, body) = http_get_with(port, path, &[]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body
}

/// One blocking HTTP/1.1 GET with the admin token and more headers
/// (`name: value`); returns the header block and the body.
pub fn http_get_with(port: u16, path: &str, headers: &[String]) -> (String, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: bench\r\nauthorization: Bearer {TOKEN}\r\n{extra}connection: close\r\n\r\n"
    )
    .expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).expect("read");
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    if !head.starts_with("HTTP/1.1 200") {
        return (head, Vec::new());
    }
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "expected a content-length body: {head}"
    );
    (head, buf[split + 4..].to_vec())
}

/// `GET path` with `headers`: the header block and the number of bytes the
/// whole response took on the wire (headers, body and any chunk framing).
pub fn http_wire_bytes(port: u16, path: &str, headers: &[String]) -> (String, usize) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: bench\r\nauthorization: Bearer {TOKEN}\r\n{extra}connection: close\r\n\r\n"
    )
    .expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).expect("read");
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    (
        String::from_utf8_lossy(&buf[..split]).into_owned(),
        buf.len(),
    )
}

/// The value of header `name` in a header block.
pub fn header_value(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

/// A bool `Value`.
pub fn boolean(b: bool) -> pbjson_types::Value {
    pbjson_types::Value {
        kind: Some(pbjson_types::value::Kind::BoolValue(b)),
    }
}

/// Creates tenants `t0`, `t1`, ... with `patterns(i)`, bool flags `flag0`,
/// `flag1`, ... defaulting to false, and for every tenant `i` an override
/// `true` of `flag{i % flags}`.
pub async fn seed_tenants_and_flags(
    client: &Client,
    tenants: usize,
    flags: usize,
    patterns: impl Fn(usize) -> Vec<String>,
) {
    for i in 0..tenants {
        client
            .tenants()
            .create_tenant(CreateTenantRequest {
                tenant: Some(Tenant {
                    id: format!("t{i}"),
                    patterns: patterns(i),
                    ..Default::default()
                }),
            })
            .await
            .expect("create tenant");
    }
    for f in 0..flags {
        client
            .flags()
            .create_flag(CreateFlagRequest {
                flag: Some(Flag {
                    key: format!("flag{f}"),
                    r#type: FlagType::Bool as i32,
                    default_value: Some(boolean(false)),
                    ..Default::default()
                }),
            })
            .await
            .expect("create flag");
    }
    for i in 0..tenants {
        client
            .flags()
            .set_tenant_override(SetTenantOverrideRequest {
                tenant_id: format!("t{i}"),
                flag_key: format!("flag{}", i % flags),
                value: Some(boolean(true)),
                expected_revision: 0,
            })
            .await
            .expect("set override");
    }
}

/// The `i`-th flag of a mixed set: bool, number and string in turn, with a
/// value of that type.
pub fn mixed_value(i: usize) -> pbjson_types::Value {
    use pbjson_types::value::Kind;
    pbjson_types::Value {
        kind: Some(match i % 3 {
            0 => Kind::BoolValue(i.is_multiple_of(2)),
            1 => Kind::NumberValue(i as f64 * 1.5),
            _ => Kind::StringValue(format!("variant-{i}")),
        }),
    }
}

/// The type of [`mixed_value`]`(i)`.
pub fn mixed_type(i: usize) -> switchyard::api::v1::FlagType {
    use switchyard::api::v1::FlagType;
    match i % 3 {
        0 => FlagType::Bool,
        1 => FlagType::Number,
        _ => FlagType::String,
    }
}

/// The resident memory of a process, in KiB (0 when it cannot be read).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time (user + system) of a process so far, in milliseconds.
pub fn cpu_ms(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields
        .get(11)
        .and_then(|u| u.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
    ticks * 10.0 // USER_HZ = 100
}

/// The server's CPU per `Health/Check` call, in µs: 20 000 calls, 32 in
/// flight over `channels`.
pub async fn health_cpu_us(pid: &str, channels: &[switchyard::client::Client]) -> f64 {
    const CALLS: usize = 20_000;
    const IN_FLIGHT: usize = 32;
    let before = cpu_ms(pid);
    let mut tasks = Vec::new();
    for w in 0..IN_FLIGHT {
        let mut health = channels[w % channels.len()].health();
        tasks.push(tokio::spawn(async move {
            for _ in 0..CALLS / IN_FLIGHT {
                health
                    .check(switchyard::api::health::HealthCheckRequest::default())
                    .await
                    .expect("health");
            }
        }));
    }
    for t in tasks {
        t.await.expect("health caller");
    }
    (cpu_ms(pid) - before) * 1000.0 / (CALLS / IN_FLIGHT * IN_FLIGHT) as f64
}
