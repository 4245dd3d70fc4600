//! The generated protobuf types and tonic services of `proto/`.
//!
//! Messages serialise to proto3 JSON through serde (pbjson), which the REST
//! shims use.

pub mod codec;

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
