//! `/metrics` of the real binary: every gRPC and REST call counted exactly
//! once with its service, method, code, protocol and track, unary latencies
//! in the histogram, the other series present, and `promtool check metrics`
//! clean on the live output.

use std::{collections::BTreeMap, process::Command, time::Duration};

use crate::common::*;
use switchyard::api::v1::{
    CreateTenantRequest, EvaluateFlagRequest, ResolveTenantRequest, Tenant, WatchFlagsRequest,
};
use tonic::Code;

/// One sample of the exposition: name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("name and value");
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once("=\"").expect("k=\"v\"");
                    (k.to_owned(), v.trim_end_matches('"').to_owned())
                })
                .collect();
            (name.to_owned(), labels, value.parse().expect("a number"))
        })
        .collect()
}

/// The value of `name` with exactly these labels besides `track` (0 when
/// absent).
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(n, l, _)| {
            n == name
                && l.len() == labels.len() + 1
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| *v)
        .sum()
}

fn requests(samples: &[Sample], method: &str, code: &str, protocol: &str) -> f64 {
    let service = match method {
        "CreateTenant" | "ResolveTenant" | "GetTenant" => "switchyard.v1.TenantService",
        _ => "switchyard.v1.FlagService",
    };
    value(
        samples,
        "switchyard_requests_total",
        &[
            ("service", service),
            ("method", method),
            ("code", code),
            ("protocol", protocol),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_is_counted_once_with_its_labels_and_the_exposition_passes_promtool() {
    let server = Running::start(&[("SWITCHYARD_TRACK", "baseline")]);
    let admin = server.client(ADMIN).await;
    admin
        .tenants()
        .create_tenant(CreateTenantRequest {
            tenant: Some(Tenant {
                id: "acme".into(),
                patterns: vec!["acme.example".into()],
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    create_bool_flag(&admin, "new-ui", false).await;
    for _ in 0..3 {
        admin
            .flags()
            .evaluate_flag(EvaluateFlagRequest {
                flag_key: "new-ui".into(),
                target: None,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    for _ in 0..2 {
        let e = admin
            .flags()
            .evaluate_flag(EvaluateFlagRequest {
                flag_key: "missing".into(),
                target: None,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
    }
    wait_until(Duration::from_secs(10), || async {
        admin
            .tenants()
            .resolve_tenant(ResolveTenantRequest {
                key: "acme.example".into(),
            })
            .await
            .is_ok_and(|r| r.into_inner().source == 1)
    })
    .await;
    let anonymous = server.client("").await;
    let e = anonymous
        .flags()
        .evaluate_flag(EvaluateFlagRequest {
            flag_key: "new-ui".into(),
            target: None,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    // REST: two admin listings (ListFlags, transcoded in process), a flag
    // that does not exist, and a call without a token.
    for _ in 0..2 {
        assert_eq!(server.get("/admin/feature-flags", Some(ADMIN)).0, 200);
    }
    assert_eq!(server.get("/v1/flags/missing", Some(ADMIN)).0, 404);
    assert_eq!(server.get("/v1/flags/new-ui", None).0, 401);
    // OpenFeature: an OFREP evaluation, a flagd resolution.
    assert_eq!(
        server
            .post("/ofrep/v1/evaluate/flags/new-ui", Some(ADMIN), "{}")
            .0,
        200
    );
    switchyard::api::flagd::evaluation::v2::service_client::ServiceClient::with_interceptor(
        admin.channel(),
        switchyard::client::Bearer::new(ADMIN),
    )
    .resolve_boolean(
        switchyard::api::flagd::evaluation::v2::ResolveBooleanRequest {
            flag_key: "new-ui".into(),
            context: None,
        },
    )
    .await
    .unwrap();
    // A watch stream, open, then closed by the client.
    let mut watch = admin
        .flags()
        .watch_flags(WatchFlagsRequest {
            tenant_id: String::new(),
            since_revision: 0,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    watch.message().await.unwrap().expect("a snapshot");
    let open = parse(&server.get("/metrics", None).1);
    assert_eq!(value(&open, "switchyard_watch_streams", &[]), 1.0);
    drop(watch);

    let mut samples = Vec::new();
    wait_until(Duration::from_secs(10), || {
        samples = parse(&server.get("/metrics", None).1);
        let closed = requests(&samples, "WatchFlags", "CANCELLED", "grpc") == 1.0;
        std::future::ready(closed && value(&samples, "switchyard_watch_streams", &[]) == 0.0)
    })
    .await;
    let s = &samples;
    assert_eq!(requests(s, "EvaluateFlag", "OK", "grpc"), 3.0);
    assert_eq!(requests(s, "EvaluateFlag", "NOT_FOUND", "grpc"), 2.0);
    assert_eq!(requests(s, "EvaluateFlag", "UNAUTHENTICATED", "grpc"), 1.0);
    assert_eq!(requests(s, "CreateFlag", "OK", "grpc"), 1.0);
    assert_eq!(requests(s, "ListFlags", "OK", "http"), 2.0);
    assert_eq!(
        requests(s, "ListFlags", "OK", "grpc"),
        0.0,
        "the in-process hop of a REST call is not counted again"
    );
    assert_eq!(requests(s, "GetFlag", "NOT_FOUND", "http"), 1.0);
    assert_eq!(
        requests(s, "GetFlag", "UNAUTHENTICATED", "http"),
        1.0,
        "a REST call refused before routing is still named by its RPC"
    );
    let counted = |service: &str, method: &str, protocol: &str| {
        value(
            s,
            "switchyard_requests_total",
            &[
                ("service", service),
                ("method", method),
                ("code", "OK"),
                ("protocol", protocol),
            ],
        )
    };
    assert_eq!(counted("ofrep", "EvaluateFlag", "http"), 1.0);
    assert_eq!(
        counted("flagd.evaluation.v2.Service", "ResolveBoolean", "grpc"),
        1.0
    );
    let durations = |method: &str, protocol: &str| {
        value(
            s,
            "switchyard_request_duration_seconds_count",
            &[
                ("service", "switchyard.v1.FlagService"),
                ("method", method),
                ("protocol", protocol),
            ],
        )
    };
    assert_eq!(durations("EvaluateFlag", "grpc"), 6.0);
    assert_eq!(durations("ListFlags", "http"), 2.0);
    assert_eq!(
        durations("WatchFlags", "grpc"),
        0.0,
        "streams are not latencies"
    );
    // Buckets fine enough near 1 ms and near 400-450 ms.
    let les: Vec<f64> = s
        .iter()
        .filter(|(n, l, _)| {
            n == "switchyard_request_duration_seconds_bucket"
                && l.get("method").map(String::as_str) == Some("EvaluateFlag")
        })
        .filter_map(|(_, l, _)| l.get("le")?.parse().ok())
        .collect();
    for (lo, hi) in [
        (0.0009, 0.0011),
        (0.39, 0.41),
        (0.415, 0.425),
        (0.445, 0.455),
    ] {
        assert!(
            les.iter().any(|le| (lo..=hi).contains(le)),
            "a bucket bound in [{lo}, {hi}]: {les:?}"
        );
    }
    // The other series.
    assert!(
        value(
            s,
            "switchyard_tenant_cache_requests_total",
            &[("layer", "local"), ("result", "hit")]
        ) >= 1.0
    );
    assert_eq!(
        value(s, "switchyard_change_events_published_total", &[]),
        2.0
    );
    assert!(
        value(
            s,
            "switchyard_change_events_received_total",
            &[("kind", "event")]
        ) >= 1.0
    );
    assert!(value(s, "switchyard_change_propagation_seconds_count", &[]) >= 2.0);
    assert_eq!(value(s, "switchyard_follower_lag_revisions", &[]), 0.0);
    assert_eq!(value(s, "switchyard_follower_ready", &[]), 1.0);
    assert_eq!(
        value(
            s,
            "switchyard_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    // Every series of every metric carries the configured track.
    assert!(
        s.iter()
            .all(|(_, l, _)| l.get("track").map(String::as_str) == Some("baseline"))
    );

    // promtool's own lint of the live exposition.
    let text = server.get("/metrics", None).1;
    match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(mut child) => {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "promtool check metrics: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Err(_) => {
            assert!(!in_ci(), "CI=true but promtool is not installed");
            eprintln!("note: promtool not found; skipping its lint (CI installs it)");
        }
    }
}

/// A request the caller framed badly is answered INVALID_ARGUMENT and
/// counted so, never as a server failure (which spends the error budget):
/// an empty body, a frame cut short, a bad compressed flag, a compressed
/// flag without `grpc-encoding`, a message that does not inflate, gRPC-Web
/// text that is not base64. A conditional GET answered 304 is OK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_faults_are_counted_as_theirs_never_as_server_failures() {
    use prost::Message as _;
    let server = Running::start(&[]);
    let admin = server.client(ADMIN).await;
    create_bool_flag(&admin, "f", false).await;
    let valid = EvaluateFlagRequest {
        flag_key: "f".into(),
        target: None,
        ..Default::default()
    }
    .encode_to_vec();
    let mut cut = grpc_frame(0, &valid).to_vec();
    cut[4] += 10;
    let auth = format!("Bearer {ADMIN}");
    let grpc = "application/grpc";
    /// Content type, more headers, body, what the message says.
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<u8>, &'a str);
    let cases: Vec<Case> = vec![
        (grpc, vec![], Vec::new(), "carries no message"),
        (grpc, vec![], cut, "ends inside a message"),
        (
            grpc,
            vec![],
            grpc_frame(7, &valid).to_vec(),
            "compressed flag is 7",
        ),
        (
            grpc,
            vec![],
            grpc_frame(1, &valid).to_vec(),
            "names no grpc-encoding",
        ),
        (
            grpc,
            vec![("grpc-encoding", "gzip")],
            grpc_frame(1, &valid).to_vec(),
            "does not inflate",
        ),
        (
            "application/grpc-web-text",
            vec![],
            b"!!!!not*base64".to_vec(),
            "gRPC-Web body cannot be read",
        ),
    ];
    let n = cases.len();
    for (content_type, mut headers, body, needle) in cases {
        headers.push(("authorization", auth.as_str()));
        let r = grpc_raw(
            &admin.channel(),
            "/switchyard.v1.FlagService/EvaluateFlag",
            content_type,
            &headers,
            tonic::body::Body::new(http_body_util::Full::new(bytes::Bytes::from(body))),
        )
        .await;
        assert_eq!(r.code(), Code::InvalidArgument, "{needle}: {r:?}");
        assert!(r.message().contains(needle), "{needle}: {r:?}");
    }
    let (status, head, _) = server.request("GET", "/admin/feature-flags", Some(ADMIN), &[], "");
    assert_eq!(status, 200);
    let etag = head
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .expect("an etag")
        .to_owned();
    let (status, _, _) = server.request(
        "GET",
        "/admin/feature-flags",
        Some(ADMIN),
        &[&format!("if-none-match: {etag}")],
        "",
    );
    assert_eq!(status, 304);
    let samples = parse(&server.get("/metrics", None).1);
    assert_eq!(
        requests(&samples, "EvaluateFlag", "INVALID_ARGUMENT", "grpc"),
        n as f64
    );
    for code in ["INTERNAL", "UNKNOWN", "DATA_LOSS", "UNAVAILABLE"] {
        assert_eq!(
            requests(&samples, "EvaluateFlag", code, "grpc"),
            0.0,
            "{code}"
        );
        assert_eq!(requests(&samples, "ListFlags", code, "http"), 0.0, "{code}");
    }
    assert_eq!(requests(&samples, "ListFlags", "OK", "http"), 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_metrics_off_the_exposition_is_empty() {
    let server = Running::start(&[("SWITCHYARD_METRICS", "off")]);
    server
        .client(ADMIN)
        .await
        .flags()
        .evaluate_flag(EvaluateFlagRequest {
            flag_key: "x".into(),
            target: None,
            ..Default::default()
        })
        .await
        .unwrap_err();
    let (status, body) = server.get("/metrics", None);
    assert_eq!((status, body.trim()), (200, ""));
}
