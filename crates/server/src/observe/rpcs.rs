//! What the request layer knows of every RPC this binary serves (its name,
//! whether it streams, its metric series), and of the routes that are not
//! RPCs.

use std::{collections::HashMap, sync::OnceLock};

use prost_reflect::DescriptorPool;
use switchyard_api as api;
use switchyard_core::telemetry::metrics::{Protocol, RequestSeries};

use crate::rest::routes::RouteTable;

/// What the layer knows of an RPC (or of a route that is not one).
#[derive(Debug)]
pub(super) struct Rpc {
    /// `service/method`, the span's name.
    pub(super) name: &'static str,
    pub(super) service: &'static str,
    pub(super) method: &'static str,
    pub(super) streaming: bool,
    /// One of the `switchyard.v1` services (what the fault drill delays and
    /// refuses).
    pub(super) api: bool,
    pub(super) series: RequestSeries,
}

impl Rpc {
    fn new(service: &'static str, method: &'static str, streaming: bool, api: bool) -> Rpc {
        Rpc {
            name: Box::leak(format!("{service}/{method}").into_boxed_str()),
            service,
            method,
            streaming,
            api,
            series: RequestSeries::new(service, method),
        }
    }
}

/// What is not an RPC: a gRPC path nobody serves, the fixed HTTP routes
/// (OFREP's under service `ofrep`), anything else over HTTP.
pub(super) fn other(kind: &str) -> &'static Rpc {
    static OTHER: OnceLock<[Rpc; 8]> = OnceLock::new();
    let o = OTHER.get_or_init(|| {
        [
            Rpc::new("unknown", "unknown", false, false),
            Rpc::new("http", "metrics", false, false),
            Rpc::new("http", "openapi", false, false),
            Rpc::new("http", "unrouted", false, false),
            Rpc::new("ofrep", "EvaluateFlag", false, false),
            Rpc::new("ofrep", "EvaluateFlags", false, false),
            Rpc::new("ofrep", "EventStream", true, false),
            Rpc::new("http", "console", false, false),
        ]
    });
    match kind {
        "grpc" => &o[0],
        "/metrics" => &o[1],
        "/openapi.json" => &o[2],
        "/ofrep/v1/evaluate/flags" => &o[5],
        "/ofrep/v1/events" => &o[6],
        k if k.starts_with("/ofrep/v1/evaluate/flags/") => &o[4],
        k if crate::ui::is_console(k) => &o[7],
        _ => &o[3],
    }
}

/// Every RPC this binary serves, by gRPC path; built once per process.
pub(super) fn rpcs() -> &'static HashMap<&'static str, Rpc> {
    static RPCS: OnceLock<HashMap<&'static str, Rpc>> = OnceLock::new();
    RPCS.get_or_init(|| {
        let mut table = HashMap::new();
        for set in [
            api::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ] {
            let Ok(pool) = DescriptorPool::decode(set) else {
                continue;
            };
            for service in pool.services() {
                let name: &'static str = Box::leak(service.full_name().into());
                for m in service.methods() {
                    let path: &'static str = Box::leak(format!("/{name}/{}", m.name()).into());
                    table.insert(
                        path,
                        Rpc::new(
                            name,
                            Box::leak(m.name().into()),
                            m.is_server_streaming() || m.is_client_streaming(),
                            service.package_name() == "switchyard.v1",
                        ),
                    );
                }
            }
        }
        table
    })
}

/// Creates the request series of every `switchyard.v1` RPC at 0, over gRPC
/// and, for those with a REST route in `routes`, over HTTP (see
/// [`RequestSeries::zero`]).
pub(super) fn zero_api_series(routes: &RouteTable) {
    for rpc in rpcs().values().filter(|r| r.api) {
        rpc.series.zero(Protocol::Grpc);
    }
    for route in routes.routes() {
        if let Some(rpc) = rpcs().get(route.grpc_path.path()).filter(|r| r.api) {
            rpc.series.zero(Protocol::Http);
        }
    }
}
