//! Switchyard's contract as code: the generated protobuf types and tonic
//! services of `proto/`, their encoded descriptors, the HTTP annotations read
//! from them and the path templates they name (`annotations`, `template`,
//! which `build.rs` also uses to write the OpenAPI document), the codecs of
//! every service and client (`codec`), and the typed client (`client`).
//!
//! Messages serialise to proto3 JSON through serde (pbjson), which the REST
//! shims use.

#![forbid(unsafe_code)]

pub mod annotations;
pub mod client;
pub mod codec;
pub mod template;

/// `switchyard.v1`: the public API.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("switchyard.v1");
    include!(concat!(env!("OUT_DIR"), "/switchyard.v1.serde.rs"));
}

/// `google.api`: the HTTP annotations that map RPCs to REST paths.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod google_api {
    include!(concat!(env!("OUT_DIR"), "/google.api.rs"));
    include!(concat!(env!("OUT_DIR"), "/google.api.serde.rs"));
}

/// `grpc.health.v1`: the standard health checking protocol, `List` included.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod health {
    tonic::include_proto!("grpc.health.v1");
}

/// flagd's packages, for OpenFeature's flagd providers (served by
/// `grpc::flagd`): evaluation v1 and v2 (RPC mode), sync v1 (in-process mode).
#[allow(clippy::all, clippy::pedantic, missing_docs, deprecated)]
pub mod flagd {
    /// `flagd.evaluation.*`.
    pub mod evaluation {
        /// `flagd.evaluation.v1`.
        pub mod v1 {
            tonic::include_proto!("flagd.evaluation.v1");
        }
        /// `flagd.evaluation.v2`.
        pub mod v2 {
            tonic::include_proto!("flagd.evaluation.v2");
        }
    }
    /// `flagd.sync.*`.
    pub mod sync {
        /// `flagd.sync.v1`.
        pub mod v1 {
            tonic::include_proto!("flagd.sync.v1");
        }
    }
}

/// The encoded `FileDescriptorSet` of every proto file, imports included.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/switchyard_descriptor.bin"));

/// The OpenAPI 3.1 document of the REST routes, generated from the
/// annotations at build time (`build/openapi.rs`).
pub const OPENAPI_JSON: &str = include_str!(concat!(env!("OUT_DIR"), "/openapi.json"));
