//! The console at `/ui/` in a real headless Chromium (Debian's, driven by
//! playwright-core: `tests/console/driver.mjs`): sign in with a token, create a
//! tenant and resolve a host, create flags, type a rule that is checked as it
//! is typed and save it, evaluate it, override it for a tenant, see a flag
//! created through gRPC appear without a reload, start a rollout and pause
//! it, find each step in the audit log; a tenant's token sees only its own;
//! axe-core finds no serious or critical violation on any page, at desktop
//! and phone widths, and nothing scrolls sideways on a phone. Screenshots go
//! to `target/console-screenshots/` (CI keeps them).
//!
//! Also, without a browser: the console's files are public and carry a
//! strict Content-Security-Policy, and what they call needs a token.

use std::{
    io::{BufRead, BufReader, Write},
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use crate::common::*;
use switchyard::api::v1::{CreateFlagRequest, CreateTokenRequest, Flag, FlagType};

const CHROMIUM: &str = "/usr/bin/chromium";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_served_with_a_strict_policy_and_its_calls_need_a_token() {
    let Some((server, _db)) = server_on(Backend::Sqlite).await else {
        return;
    };
    for (path, kind) in [
        ("/ui/", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
        ("/ui/icon.svg", "image/svg+xml"),
    ] {
        let r = http(&server, "GET", path, None, None).await;
        assert_eq!(r.status, 200, "{path}");
        assert!(
            r.header("content-type").unwrap().starts_with(kind),
            "{path}"
        );
        let csp = r.header("content-security-policy").unwrap();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(r.header("x-frame-options"), Some("DENY"));
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        // Asked again with its tag: 304.
        let tag = r.header("etag").unwrap().to_owned();
        let again =
            http_raw_with(&server, "GET", path, None, None, &[("if-none-match", &tag)]).await;
        assert_eq!(again.status, 304, "{path}");
    }
    let moved = http(&server, "GET", "/ui", None, None).await;
    assert_eq!(moved.status, 308);
    assert_eq!(moved.header("location"), Some("/ui/"));
    // The console holds no data: what it shows comes from calls that need a
    // token, sent as a header (no cookie another site's form could ride on).
    assert_eq!(
        http(&server, "GET", "/v1/caller", None, None).await.status,
        401
    );
    let me = http(&server, "GET", "/v1/caller", Some(ADMIN), None).await;
    assert_eq!(
        me.json(),
        serde_json::json!({"name": "admin_token", "scope": "admin"})
    );
    let tenant = http(&server, "GET", "/v1/caller", Some(&tenant_token("a")), None).await;
    assert_eq!(tenant.json()["scope"], "tenant:a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_works_through_the_console_in_a_real_browser() {
    let Some(dir) = node_project("console") else {
        return;
    };
    if !Path::new(CHROMIUM).exists() {
        assert!(
            !in_ci(),
            "CI=true but {CHROMIUM} is missing (Debian package chromium)"
        );
        eprintln!("note: {CHROMIUM} not found; skipping");
        return;
    }
    let Some((server, _db)) = server_on(Backend::Sqlite).await else {
        return;
    };
    let admin = server.client(ADMIN).await;
    let tenant_secret = admin
        .tokens()
        .create_token(CreateTokenRequest {
            name: "acme-console".into(),
            scope: "tenant:acme".into(),
            lifetime: None,
        })
        .await
        .unwrap()
        .into_inner()
        .secret;
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots");
    let mut child = Command::new("node")
        .arg(dir.join("driver.mjs"))
        .env("SERVER", server.url())
        .env("TOKEN", ADMIN)
        .env("TENANT_TOKEN", &tenant_secret)
        .env("SHOTS", &shots)
        .env("CHROMIUM", CHROMIUM)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting node");
    let mut stdin = child.stdin.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(160), rx.recv())
            .await
            .expect("the driver says something within 160 s");
        let Some(line) = line else { break };
        eprintln!("console: {line}");
        if line.contains("\"need\":\"grpc-change\"") {
            // A change made elsewhere, through gRPC.
            admin
                .flags()
                .create_flag(CreateFlagRequest {
                    flag: Some(Flag {
                        key: "from-grpc".into(),
                        r#type: FlagType::Bool as i32,
                        default_value: Some(v_bool(true)),
                        ..Default::default()
                    }),
                })
                .await
                .unwrap();
            writeln!(stdin, "go").unwrap();
            stdin.flush().unwrap();
        }
        seen.push(line);
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "the driver failed: {seen:#?}");
    assert_eq!(seen.last().map(String::as_str), Some(r#"{"done":true}"#));
    for step in [
        "signed in",
        "keyboard",
        "tenant created and resolved",
        "rule validated as typed and saved",
        "evaluated and overridden",
        "a gRPC change appeared without a reload",
        "rollout started, shown and paused",
        "every step in the audit log",
        "a tenant token sees its own",
    ] {
        assert!(
            seen.iter().any(|l| l.contains(step)),
            "no step {step:?}: {seen:#?}"
        );
    }
    assert!(shots.join("rollout.png").is_file());
}
