//! The console (`/ui/`): its first page's bytes on the wire, gzip (the three
//! files, and the two API calls that fill the flags page), and the time from
//! a write to the page showing it, in a real headless Chromium
//! (`tests/console/bench.mjs`, playwright-core; Debian's `chromium`): WRITES
//! flags created one at a time through gRPC, each timed from just before the
//! call to its row appearing on the open flags page (the page follows the
//! watch as server-sent events). Browser, bench and server share the
//! machine's 2 cores.
//!
//! `cargo bench --bench console [-- WRITES]` (default 50).

mod common;

use std::{
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
    time::Duration,
};

use common::*;
use switchyard::api::v1::{CreateFlagRequest, Flag, FlagType};

#[tokio::main]
async fn main() {
    let writes: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(50);
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let server = spawn(dir.path(), port, &[]);
    let admin = connect(port).await;

    let gzip = ["accept-encoding: gzip".to_owned()];
    let mut total = 0;
    for path in ["/ui/", "/ui/app.js", "/ui/app.css"] {
        let (head, bytes) = http_wire_bytes(port, path, &gzip);
        let (_, plain) = http_wire_bytes(port, path, &[]);
        let encoding = header_value(&head, "content-encoding").unwrap_or_else(|| "identity".into());
        println!("{path}: {bytes} bytes on the wire ({encoding}), {plain} uncompressed");
        total += bytes;
    }
    let (_, caller) = http_wire_bytes(port, "/v1/caller", &gzip);
    let (_, list) = http_wire_bytes(port, "/v1/flags?view=FLAG_VIEW_FULL&pageSize=1000", &gzip);
    println!(
        "first page on the wire, gzip: {total} bytes of console files, {} bytes of API calls (empty database)",
        caller + list
    );

    let project = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/console");
    if !std::path::Path::new(project).join("node_modules").is_dir() {
        let ok = Command::new("npm")
            .args([
                "ci",
                "--silent",
                "--no-audit",
                "--no-fund",
                "--prefix",
                project,
            ])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("npm ci in tests/console failed: the write-to-page figure is not measured");
            stop(server);
            return;
        }
    }
    let mut node = Command::new("node")
        .arg(format!("{project}/bench.mjs"))
        .env("SERVER", format!("http://127.0.0.1:{port}"))
        .env("TOKEN", TOKEN)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node");
    let mut to_page = node.stdin.take().unwrap();
    let mut from_page = BufReader::new(node.stdout.take().unwrap()).lines();
    let ready = from_page.next().expect("the page signs in").unwrap();
    assert!(ready.contains("ready"), "{ready}");
    let mut ms = Vec::with_capacity(writes);
    for i in 0..writes {
        let key = format!("bench-{i}");
        let t0 = now_us() / 1000;
        admin
            .flags()
            .create_flag(CreateFlagRequest {
                flag: Some(Flag {
                    key: key.clone(),
                    r#type: FlagType::Bool as i32,
                    default_value: Some(boolean(false)),
                    ..Default::default()
                }),
            })
            .await
            .expect("create");
        writeln!(to_page, "{key} {t0}").unwrap();
        let line = from_page.next().expect("the page answers").unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        ms.push((v["ms"].as_f64().unwrap() * 1000.0) as i64);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(to_page);
    let _ = node.wait();
    ms.sort_unstable();
    println!(
        "write -> the flags page shows it ({writes} writes): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        pct_ms(&ms, 0.5),
        pct_ms(&ms, 0.99),
        pct_ms(&ms, 1.0)
    );
    stop(server);
}
