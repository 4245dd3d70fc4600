//! The OpenAPI document generates clean clients, and they work: from the
//! served `/openapi.json`, `openapi-python-client` generates a Python client
//! and `openapi-typescript` the TypeScript types that `openapi-fetch` calls
//! with (`tsc --strict` clean); each makes typed calls against a live server
//! (`tests/openapi/`): create a tenant and a flag, list flags (the admin
//! listing too), evaluate, read the watch, see a 404.
//!
//! The generators come pinned from PyPI (`tests/openapi/requirements.txt`,
//! installed into `tests/openapi/.venv` on first use) and npm
//! (`tests/openapi/package-lock.json`). Without Python's `venv` or Node.js the
//! client tests are skipped with a note, except under `CI=true`.

use std::{collections::BTreeSet, process::Command};

use crate::common::*;
use serde_json::Value;

async fn document(server: &TestServer) -> Value {
    http(server, "GET", "/openapi.json", None, None)
        .await
        .json()
}

#[tokio::test]
async fn operation_ids_are_the_rpc_names_and_doubles_share_one_schema() {
    let Some((server, _db)) = server_on(Backend::Sqlite).await else {
        return;
    };
    let doc = document(&server).await;
    let mut ids = BTreeSet::new();
    for ops in doc["paths"].as_object().unwrap().values() {
        for op in ops.as_object().unwrap().values() {
            let id = op["operationId"].as_str().unwrap().to_owned();
            assert!(ids.insert(id.clone()), "{id} twice");
            let Some(rpc) = op["x-grpc-method"].as_str() else {
                assert!(id.starts_with("Ofrep"), "{id} names no RPC");
                continue;
            };
            assert!(
                id.starts_with(rpc.rsplit('/').next().unwrap()),
                "{id} is named after {rpc}"
            );
            assert!(id.chars().all(|c| c.is_ascii_alphanumeric()), "{id}");
        }
    }
    assert!(
        ids.contains("ListFlags") && ids.contains("ListFlagsAdmin"),
        "{ids:?}"
    );
    assert!(
        ids.contains("EvaluateFlag") && ids.contains("ResolveTenant"),
        "{ids:?}"
    );
    assert_eq!(doc["servers"][0]["url"], "/");

    // The non-finite strings are one component, used by reference only.
    let text = doc.to_string();
    assert_eq!(
        text.matches("\"-Infinity\"").count(),
        1,
        "one NonFiniteNumber enum"
    );
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["NonFiniteNumber"]["enum"][0], "NaN");
    // Enums are components too, and components have short names.
    assert_eq!(schemas["FlagType"]["type"], "string");
    assert!(schemas["Flag"].is_object() && schemas["Status"].is_object());
    assert!(
        !text.contains("#/components/schemas/switchyard.")
            && !text.contains("#/components/schemas/google."),
        "no full proto names in refs"
    );

    // The watch: NDJSON lines with a named schema, and SSE.
    let watch = &doc["paths"]["/v1/flags:watch"]["get"];
    let content = &watch["responses"]["200"]["content"];
    assert_eq!(
        content["application/x-ndjson"]["schema"]["$ref"],
        "#/components/schemas/WatchFlagsStreamLine"
    );
    assert_eq!(content["text/event-stream"]["schema"]["type"], "string");
    let params: Vec<&str> = watch["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(params.contains(&"Last-Event-ID"), "{params:?}");
    // A conditional listing takes If-None-Match as a header, not also as a query parameter.
    let list = &doc["paths"]["/v1/flags"]["get"]["parameters"];
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"If-None-Match") && !names.contains(&"ifNoneMatch"),
        "{names:?}"
    );
}

fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_client_generated_from_the_document_makes_typed_calls() {
    let Some(py) = python_project("openapi") else {
        return;
    };
    let Some((server, _db)) = server_on(Backend::Sqlite).await else {
        return;
    };
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/openapi/python_client.py"
    );
    let out = tokio::task::spawn_blocking(move || {
        let mut bin = py.parent().unwrap().as_os_str().to_owned();
        bin.push(":");
        bin.push(std::env::var_os("PATH").unwrap_or_default());
        run_ok(
            Command::new(&py)
                .arg(script)
                .arg(server.addr.to_string())
                .arg(ADMIN)
                .env("PATH", bin),
            "python_client.py",
        )
    })
    .await
    .unwrap();
    assert!(out.contains("python client: all steps passed"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typescript_types_generated_from_the_document_make_typed_calls() {
    let Some(dir) = node_project("openapi") else {
        return;
    };
    let Some((server, _db)) = server_on(Backend::Sqlite).await else {
        return;
    };
    let addr = server.addr.to_string();
    let out = tokio::task::spawn_blocking(move || {
        run_ok(
            Command::new("bash")
                .arg(dir.join("ts_client.sh"))
                .arg(addr)
                .arg(ADMIN),
            "ts_client.sh",
        )
    })
    .await
    .unwrap();
    assert!(out.contains("ok   tsc --strict --noEmit: clean"), "{out}");
    assert!(out.contains("typescript client: all steps passed"), "{out}");
}
