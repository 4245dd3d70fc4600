//! The proto works for generated TypeScript clients: a client generated from
//! `proto/` with `buf` and `@bufbuild/protoc-gen-es`, run with
//! `@connectrpc/connect-node` (`tests/typescript/client.ts`), resolves a
//! tenant, evaluates a flag, follows `WatchFlags` through a SNAPSHOT and an
//! UPSERT, and sees NOT_FOUND and UNAUTHENTICATED — over the gRPC transport
//! and over the gRPC-Web transport (HTTP/1.1), each without and with gzip.
//!
//! Needs Node.js and npm (the packages are pinned in
//! `tests/typescript/package-lock.json`). Without them the test is skipped
//! with a note, except under `CI=true`.

use std::{path::Path, process::Command, time::Duration};

use crate::common::*;

/// Generates the client from `proto/` and compiles it (`tsc --strict`).
fn generate_and_build(dir: &Path) {
    for script in ["generate", "build"] {
        let status = Command::new("npm")
            .args(["run", "-s", script])
            .current_dir(dir)
            .status()
            .expect("running npm");
        assert!(status.success(), "npm run {script} in {}", dir.display());
    }
}

/// Runs the client once; returns its JSON lines, after checking it passed.
async fn run(
    dir: &Path,
    server: &TestServer,
    transport: &str,
    gzip: bool,
) -> Vec<serde_json::Value> {
    let out = Command::new("node")
        .arg(dir.join("dist/client.js"))
        .env("SWITCHYARD_ADDR", server.addr.to_string())
        .env("SWITCHYARD_ADMIN", ADMIN)
        .env("SWITCHYARD_TENANT", "a")
        .env("SWITCHYARD_TENANT_TOKEN", tenant_token("a"))
        .env("TRANSPORT", transport)
        .env("GZIP", if gzip { "1" } else { "0" })
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), async { out })
        .await
        .expect("the client ends")
        .expect("running node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{transport} gzip={gzip}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The client folder, installed, generated and built once per run (the
/// tests share it).
fn client() -> Option<&'static Path> {
    static DIR: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = node_project("typescript")?;
        generate_and_build(&dir);
        Some(dir)
    })
    .as_deref()
}

async fn every_transport(backend: Backend) {
    let Some(dir) = client() else {
        return;
    };
    let Some((server, _db)) = server_on(backend).await else {
        return;
    };
    for transport in ["grpc", "grpc-web"] {
        for gzip in [false, true] {
            let lines = run(dir, &server, transport, gzip).await;
            let step = |name: &str| {
                lines
                    .iter()
                    .find(|l| l["step"] == name)
                    .unwrap_or_else(|| panic!("no step {name}: {lines:?}"))
                    .clone()
            };
            assert_eq!(step("a")["resolved_tenant"], "a", "{lines:?}");
            assert_eq!(step("b")["value"], false);
            let watch = step("c");
            assert_eq!(watch["snapshot_value"], false, "{watch}");
            assert_eq!(watch["upsert_value"], true, "{watch}");
            assert_eq!(watch["upsert_revision"], watch["override_revision"]);
            assert_eq!(step("d")["code"], "NotFound");
            assert_eq!(step("e")["code"], "Unauthenticated");
            let done = step("done");
            assert_eq!(done["transport"], transport);
            // Answers were compressed exactly when the client asked for it.
            let encodings = if gzip { ["gzip"] } else { ["identity"] };
            assert_eq!(
                done["response_encodings"],
                serde_json::json!(encodings),
                "{done}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typescript_client_works_over_grpc_and_grpc_web_sqlite() {
    every_transport(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typescript_client_works_over_grpc_and_grpc_web_postgres() {
    every_transport(Backend::Postgres).await;
}
