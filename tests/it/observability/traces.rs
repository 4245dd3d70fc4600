//! Traces from the real binary to an OTLP receiver inside this test process.
//!
//! A call with a sampled W3C `traceparent` produces one server span in that
//! trace, named by its RPC, with its status (a REST call too: the in-process
//! hop makes no second span); an unsampled one produces none; new traces are
//! sampled at the configured ratio (1.0: all, 0.0: none, the default 0.01: a
//! few of 300 at most); JSON logs carry the trace id.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::common::*;
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::any_value::Value as AnyValue,
    trace::v1::{Span, span::SpanKind, status::StatusCode},
};
use switchyard::api::v1::EvaluateFlagRequest;
use tonic::{Code, Request, Response, Status};

/// Spans received, with the `service.name` of their resource.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<(String, Span)>>>);

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        req: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut spans = self.0.lock().unwrap();
        for rs in req.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                    AnyValue::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    spans.push((service.clone(), s));
                }
            }
        }
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Sink {
    /// Starts the receiver on loopback; returns it and its endpoint.
    async fn start() -> (Sink, String) {
        let sink = Sink::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let service = TraceServiceServer::new(sink.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        (sink, endpoint)
    }

    fn in_trace(&self, trace_id: &[u8]) -> Vec<Span> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| s.trace_id == trace_id)
            .map(|(_, s)| s.clone())
            .collect()
    }

    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// Waits for a span of `trace_id`; spans are exported in order, so
    /// everything ended before it has arrived too.
    async fn wait_for(&self, trace_id: &[u8]) -> Vec<Span> {
        wait_until(Duration::from_secs(15), || {
            std::future::ready(!self.in_trace(trace_id).is_empty())
        })
        .await;
        self.in_trace(trace_id)
    }
}

/// A random trace id and its `traceparent`, sampled or not.
fn traceparent(sampled: bool) -> (Vec<u8>, String) {
    let hex = switchyard::app::generate_token();
    let trace_id = &hex[..32];
    let header = format!(
        "00-{trace_id}-{}-{}",
        &hex[32..48],
        if sampled { "01" } else { "00" }
    );
    (::hex::decode(trace_id).unwrap(), header)
}

async fn evaluate(client: &switchyard::client::Client, flag: &str, parent: Option<&str>) -> Code {
    let mut req = Request::new(EvaluateFlagRequest {
        flag_key: flag.into(),
        target: None,
        ..Default::default()
    });
    if let Some(p) = parent {
        req.metadata_mut().insert("traceparent", p.parse().unwrap());
    }
    match client.flags().evaluate_flag(req).await {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

fn attribute(span: &Span, key: &str) -> Option<AnyValue> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref()?.value.clone())
}

fn server(
    endpoint: &str,
    sampler_arg: Option<&str>,
    extra: &[(&'static str, &'static str)],
) -> Running {
    let mut env: Vec<(&str, &str)> = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_SERVICE_NAME", "switchyard-under-test"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    if let Some(arg) = sampler_arg {
        env.push(("OTEL_TRACES_SAMPLER_ARG", arg));
    }
    env.extend_from_slice(extra);
    Running::start(&env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampled_callers_are_joined_unsampled_ones_are_not_and_new_traces_follow_the_ratio() {
    let (sink, endpoint) = Sink::start().await;
    // The default sampler: parent-based, 1 % of new traces; JSON logs.
    let srv = server(
        &endpoint,
        None,
        &[
            ("SWITCHYARD_LOG_FORMAT", "json"),
            ("SWITCHYARD_LOG", "info,switchyard_server::observe=debug"),
        ],
    );
    let client = srv.client(ADMIN).await;

    // A sampled caller: one server span in its trace, named by the RPC, with
    // its status.
    let (trace, parent) = traceparent(true);
    assert_eq!(
        evaluate(&client, "missing", Some(&parent)).await,
        Code::NotFound
    );
    let spans = sink.wait_for(&trace).await;
    assert_eq!(spans.len(), 1, "{spans:?}");
    let s = &spans[0];
    assert_eq!(s.name, "switchyard.v1.FlagService/EvaluateFlag");
    assert_eq!(s.kind, SpanKind::Server as i32);
    assert_eq!(
        ::hex::encode(&s.parent_span_id),
        &parent[36..52],
        "the caller's span is the parent"
    );
    assert_eq!(
        attribute(s, "rpc.grpc.status_code"),
        Some(AnyValue::IntValue(5))
    );
    // Who called: the token's name (here the setting it came from), never
    // its secret.
    assert_eq!(
        attribute(s, "enduser.id"),
        Some(AnyValue::StringValue("admin_token".into()))
    );
    assert_ne!(
        s.status.as_ref().map(|st| st.code),
        Some(StatusCode::Error as i32),
        "NOT_FOUND is the caller's mistake, not a server error"
    );
    assert_eq!(
        sink.0
            .lock()
            .unwrap()
            .iter()
            .find(|(_, x)| x.trace_id == trace)
            .unwrap()
            .0,
        "switchyard-under-test"
    );

    // A server-side failure (here UNIMPLEMENTED, a method nobody serves) is
    // an error span.
    let (trace, parent) = traceparent(true);
    let mut req = Request::new(EvaluateFlagRequest::default());
    req.metadata_mut()
        .insert("traceparent", parent.parse().unwrap());
    req.metadata_mut()
        .insert("authorization", format!("Bearer {ADMIN}").parse().unwrap());
    let mut grpc = tonic::client::Grpc::new(client.channel());
    grpc.ready().await.unwrap();
    let e = grpc
        .unary::<_, EvaluateFlagRequest, _>(
            req,
            "/switchyard.v1.FlagService/NoSuchMethod".parse().unwrap(),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);
    let s = &sink.wait_for(&trace).await[0];
    assert_eq!(s.name, "unknown/unknown");
    assert_eq!(
        s.status.as_ref().map(|st| st.code),
        Some(StatusCode::Error as i32)
    );

    // A REST call is one trace, one span, named by the RPC it calls.
    let (trace, parent) = traceparent(true);
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    {
        use std::io::{Read, Write};
        write!(
            conn,
            "GET /admin/feature-flags HTTP/1.1\r\nhost: t\r\nauthorization: Bearer {ADMIN}\r\ntraceparent: {parent}\r\nconnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        conn.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    }
    let spans = sink.wait_for(&trace).await;
    assert_eq!(
        spans.len(),
        1,
        "the in-process hop makes no second span: {spans:?}"
    );
    assert_eq!(spans[0].name, "switchyard.v1.FlagService/ListFlags");
    assert_eq!(
        attribute(&spans[0], "rpc.grpc.status_code"),
        Some(AnyValue::IntValue(0))
    );

    // An unsampled caller: no span in its trace. New traces at 1 %: a few
    // of 300 at most. (A sampled call afterwards shows the export caught up.)
    let before = sink.count();
    let (unsampled, parent) = traceparent(false);
    assert_eq!(
        evaluate(&client, "missing", Some(&parent)).await,
        Code::NotFound
    );
    for _ in 0..300 {
        evaluate(&client, "missing", None).await;
    }
    let (sentinel, parent) = traceparent(true);
    evaluate(&client, "missing", Some(&parent)).await;
    sink.wait_for(&sentinel).await;
    assert!(
        sink.in_trace(&unsampled).is_empty(),
        "an unsampled caller is not traced"
    );
    let new = sink.count() - before - 1;
    assert!(
        new <= 20,
        "about 1 % of 300 new traces are sampled, not {new}"
    );

    // JSON logs carry the trace id of the request they belong to.
    let wanted = ::hex::encode(&sentinel);
    wait_until(Duration::from_secs(10), || {
        let lines = srv.stderr.lock().unwrap();
        let found = lines.iter().any(|l| {
            serde_json::from_str::<serde_json::Value>(l).is_ok_and(|j| {
                j["span"]["trace_id"] == wanted.as_str()
                    && j["fields"]["message"] == "request finished"
            })
        });
        std::future::ready(found)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ratio_of_one_samples_every_new_trace_and_zero_none() {
    let (sink, endpoint) = Sink::start().await;
    let all = server(&endpoint, Some("1.0"), &[]);
    let none = server(&endpoint, Some("0.0"), &[]);
    let (a, b) = (all.client(ADMIN).await, none.client(ADMIN).await);
    for _ in 0..50 {
        evaluate(&a, "missing", None).await;
        evaluate(&b, "missing", None).await;
    }
    // The caller's decision still wins at ratio 0.
    let (sentinel, parent) = traceparent(true);
    evaluate(&b, "missing", Some(&parent)).await;
    let (sentinel_a, parent_a) = traceparent(true);
    evaluate(&a, "missing", Some(&parent_a)).await;
    sink.wait_for(&sentinel).await;
    sink.wait_for(&sentinel_a).await;
    let named = |n: &str| {
        sink.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| s.name == n)
            .count()
    };
    // 50 + the sentinel from the ratio-1 server; 1 (the sentinel) from ratio 0.
    assert_eq!(named("switchyard.v1.FlagService/EvaluateFlag"), 50 + 1 + 1);
}
