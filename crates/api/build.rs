//! Compiles `proto/` with protox (no system `protoc`), generates the tonic
//! services and message types, the proto3 JSON (serde) impls, keeps the
//! encoded descriptor set (with the `google.api.http` options and the
//! comments) for server reflection and the REST shims, and generates the
//! OpenAPI document of the REST routes.

use std::{env, fs, path::PathBuf};

// The router's own annotation reader and template parser, so the document and
// the routes are derived by the same code.
#[allow(dead_code)]
#[path = "src/annotations.rs"]
mod annotations;
#[path = "build/openapi.rs"]
mod openapi;
#[allow(dead_code)]
#[path = "src/template.rs"]
mod template;

const PROTO_DIR: &str = "../../proto";

const PROTOS: &[&str] = &[
    "switchyard/v1/tenant.proto",
    "switchyard/v1/flag.proto",
    "switchyard/v1/gating.proto",
    "switchyard/v1/token.proto",
    "switchyard/v1/audit.proto",
    "switchyard/v1/rollout.proto",
    "grpc/health/v1/health.proto",
    "flagd/evaluation/v1/evaluation.proto",
    "flagd/evaluation/v2/evaluation.proto",
    "flagd/sync/v1/sync.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The protos live at the top of the repository, where users find them.
    println!("cargo:rerun-if-changed={PROTO_DIR}");
    println!("cargo:rerun-if-changed=build");
    println!("cargo:rerun-if-changed=src/annotations.rs");
    println!("cargo:rerun-if-changed=src/template.rs");
    let mut compiler = protox::Compiler::new([PROTO_DIR])?;
    compiler
        .include_imports(true)
        .include_source_info(true)
        .open_files(PROTOS)?;
    // Unlike `file_descriptor_set()`, this keeps extension options such as
    // `google.api.http`.
    let encoded = compiler.encode_file_descriptor_set();
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("switchyard_descriptor.bin"), &encoded)?;

    let doc = openapi::document(
        &compiler.descriptor_pool(),
        "switchyard.v1",
        &env::var("CARGO_PKG_VERSION")?,
    )?;
    fs::write(
        out.join("openapi.json"),
        serde_json::to_string_pretty(&doc)?,
    )?;

    tonic_prost_build::configure()
        // Maps in key order: deterministic encodings, so JSON and golden
        // files are too.
        .btree_map(".")
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        // Decode errors are the caller's (INVALID_ARGUMENT), not INTERNAL.
        .codec_path("crate::codec::ProtoCodec")
        .build_client(true)
        .build_server(true)
        .compile_fds(compiler.file_descriptor_set())?;

    pbjson_build::Builder::new()
        .register_descriptors(&encoded)?
        .btree_map(["."])
        .extern_path(".google.protobuf", "::pbjson_types")
        .build(&[".switchyard", ".google.api"])?;
    Ok(())
}
