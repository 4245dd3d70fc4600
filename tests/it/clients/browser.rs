//! From the browser: a real headless Chromium loads a page served from
//! another origin on loopback (`tests/browser/page.html`), and the page calls
//! the server cross-origin with a bearer token: the REST listing, then the
//! SSE form of the watch. The driver (`tests/browser/driver.mjs`) changes the
//! flag over REST and reads what the page shows. With the page's origin not
//! in `SWITCHYARD_CORS_ORIGINS`, the page's call fails.
//!
//! Needs Node.js and Debian's `chromium`; `.ci/run` installs it. Without
//! them the test is skipped with a note, except under `CI=true`.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use crate::common::*;
use switchyard::api::v1::FlagType;

const CHROMIUM: &str = "/usr/bin/chromium";

/// Runs the driver against `server` with the page on `page_port`; returns
/// the JSON lines it printed and whether it exited 0.
async fn drive(
    dir: &Path,
    server: &TestServer,
    page_port: u16,
    expect: &str,
) -> (Vec<String>, bool) {
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("driver.mjs"))
        .env("SERVER", server.url())
        .env("TOKEN", ADMIN)
        .env("FLAG", "browser-flag")
        .env("PAGE_PORT", page_port.to_string())
        .env("EXPECT", expect)
        .env("CHROMIUM", CHROMIUM)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let child = cmd.spawn().expect("starting node");
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await
    .expect("the driver ends within 60 s")
    .unwrap()
    .unwrap();
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    (lines, out.status.success())
}

async fn server_allowing(origin: String) -> Option<(TestServer, TestDb)> {
    let (server, db) = server_with(Backend::Sqlite, move |c| {
        c.listener.cors_origins = vec![origin]
    })
    .await?;
    server
        .flags(ADMIN)
        .await
        .create_flag(new_flag("browser-flag", FlagType::Bool, v_bool(false)))
        .await
        .unwrap();
    Some((server, db))
}

fn ready() -> Option<std::path::PathBuf> {
    let dir = node_project("browser")?;
    if !Path::new(CHROMIUM).exists() {
        assert!(
            !in_ci(),
            "CI=true but {CHROMIUM} is missing (Debian package chromium)"
        );
        eprintln!("note: {CHROMIUM} not found; skipping");
        return None;
    }
    Some(dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_from_an_allowed_origin_lists_flags_and_follows_the_sse_watch() {
    let Some(dir) = ready() else { return };
    let page_port = free_port();
    let Some((server, _db)) = server_allowing(format!("http://127.0.0.1:{page_port}")).await else {
        return;
    };
    let (lines, ok) = drive(&dir, &server, page_port, "allowed").await;
    assert!(ok, "the driver failed: {lines:?}");
    assert_eq!(
        lines.first().map(String::as_str),
        Some(r#"{"shown":"browser-flag=false"}"#)
    );
    let last: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(last["shown"], "browser-flag=true", "{lines:?}");
    // The page showed the revision of the change it was pushed.
    let flag = server
        .flags(ADMIN)
        .await
        .get_flag(switchyard::api::v1::GetFlagRequest {
            flag_key: "browser-flag".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .flag
        .unwrap();
    assert_eq!(last["revision"], flag.revision.to_string(), "{lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_from_another_origin_is_refused() {
    let Some(dir) = ready() else { return };
    let page_port = free_port();
    // The server allows some other origin, not the page's.
    let Some((server, _db)) = server_allowing(format!("http://127.0.0.1:{}", free_port())).await
    else {
        return;
    };
    let (lines, ok) = drive(&dir, &server, page_port, "refused").await;
    assert!(ok, "the driver failed: {lines:?}");
    assert_eq!(lines, [r#"{"refused":"TypeError: Failed to fetch"}"#]);
}
