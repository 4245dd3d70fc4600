//! Compiles `proto/` with protox (no system `protoc`), generates the tonic
//! services and message types, the proto3 JSON (serde) impls, and keeps the
//! encoded descriptor set for server reflection and the REST shims.

use std::{env, fs, path::PathBuf};

use prost::Message;

const PROTOS: &[&str] = &[
    "switchyard/v1/tenant.proto",
    "switchyard/v1/flag.proto",
    "switchyard/v1/gating.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(PROTOS, ["proto"])?;
    let encoded = fds.encode_to_vec();
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("switchyard_descriptor.bin"), &encoded)?;

    tonic_prost_build::configure()
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;

    pbjson_build::Builder::new()
        .register_descriptors(&encoded)?
        .extern_path(".google.protobuf", "::pbjson_types")
        .build(&[".switchyard", ".google.api"])?;
    Ok(())
}
