//! gRPC-Web on the same listener, in both of its modes: binary
//! (`application/grpc-web+proto`) and text (`application/grpc-web-text`,
//! base64), unary and server streaming, over HTTP/1.1 as a browser sends it.
//! (A connect-node client runs over the binary mode too:
//! `typescript_client.rs`.) A gRPC method called in a protocol the server does
//! not speak is 415.

use crate::common::*;
use base64::Engine;
use bytes::Bytes;
use http_body_util::BodyExt;
use prost::Message;
use switchyard::api::{
    health::{HealthCheckRequest, HealthCheckResponse, health_check_response::ServingStatus},
    v1::{FlagEventType, FlagType, WatchFlagsRequest, WatchFlagsResponse},
};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// One gRPC frame: flag, big-endian length, message.
fn frame(message: &impl Message) -> Vec<u8> {
    let m = message.encode_to_vec();
    let mut out = vec![0];
    out.extend_from_slice(&u32::try_from(m.len()).unwrap().to_be_bytes());
    out.extend_from_slice(&m);
    out
}

/// Decodes text-mode base64 as it arrives: each chunk is padded on its own,
/// so it is decoded four characters at a time.
#[derive(Default)]
struct Text {
    pending: String,
    bytes: Vec<u8>,
}

impl Text {
    fn push(&mut self, chunk: &[u8]) {
        self.pending.push_str(std::str::from_utf8(chunk).unwrap());
        let whole = self.pending.len() / 4 * 4;
        for group in self.pending.as_bytes()[..whole].chunks(4) {
            self.bytes.extend(B64.decode(group).unwrap());
        }
        self.pending.drain(..whole);
    }
}

/// The frames in `bytes` that are complete: (flag, payload), and what is
/// left.
fn frames(bytes: &mut Vec<u8>) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while bytes.len() >= 5 {
        let len = u32::from_be_bytes(bytes[1..5].try_into().unwrap()) as usize;
        if bytes.len() < 5 + len {
            break;
        }
        out.push((bytes[0], bytes[5..5 + len].to_vec()));
        bytes.drain(..5 + len);
    }
    out
}

async fn post(
    server: &TestServer,
    path: &str,
    content_type: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> http::Response<hyper::body::Incoming> {
    http_send_with(
        server,
        "POST",
        path,
        token,
        Some((content_type, body)),
        &[("x-grpc-web", "1"), ("accept", content_type)],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_mode_unary_and_binary_mode_refusal() {
    let Some((server, _db)) = server_on(Backend::Sqlite).await else {
        return;
    };
    let body = B64
        .encode(frame(&HealthCheckRequest::default()))
        .into_bytes();
    let resp = post(
        &server,
        "/grpc.health.v1.Health/Check",
        "application/grpc-web-text",
        None,
        body,
    )
    .await;
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("application/grpc-web-text"), "{ct}");
    let mut text = Text::default();
    text.push(&resp.into_body().collect().await.unwrap().to_bytes());
    let got = frames(&mut text.bytes);
    assert_eq!(got.len(), 2, "a message and the trailers: {got:?}");
    let answer = HealthCheckResponse::decode(got[0].1.as_slice()).unwrap();
    assert_eq!(answer.status, ServingStatus::Serving as i32);
    assert_eq!(got[1].0, 0x80, "the trailer frame");
    let trailers = String::from_utf8(got[1].1.clone()).unwrap();
    assert!(trailers.contains("grpc-status:0"), "{trailers}");

    // Binary mode, a wrong token: UNAUTHENTICATED, readable by the client.
    let resp = post(
        &server,
        "/switchyard.v1.FlagService/ListFlags",
        "application/grpc-web+proto",
        Some("wrong-token-0123456789"),
        frame(&switchyard::api::v1::ListFlagsRequest::default()),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let in_headers = resp
        .headers()
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_owned());
    let mut rest = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    let status = in_headers.unwrap_or_else(|| {
        let f = frames(&mut rest);
        let t = String::from_utf8(f.last().unwrap().1.clone()).unwrap();
        t.lines()
            .find_map(|l| l.strip_prefix("grpc-status:").map(|s| s.trim().to_owned()))
            .unwrap()
    });
    assert_eq!(status, "16");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_mode_follows_the_watch_through_a_snapshot_and_an_upsert() {
    let Some((server, _db)) = server_on(Backend::Sqlite).await else {
        return;
    };
    setup_tenants(&server, &["a"]).await;
    server
        .flags(ADMIN)
        .await
        .create_flag(new_flag("web-flag", FlagType::Bool, v_bool(false)))
        .await
        .unwrap();
    let request = WatchFlagsRequest {
        tenant_id: "a".into(),
        since_revision: 0,
        ..Default::default()
    };
    let resp = post(
        &server,
        "/switchyard.v1.FlagService/WatchFlags",
        "application/grpc-web-text",
        Some(&tenant_token("a")),
        B64.encode(frame(&request)).into_bytes(),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut text = Text::default();
    let mut next_event = async || -> WatchFlagsResponse {
        loop {
            if let Some((flag, payload)) = frames(&mut text.bytes).into_iter().next() {
                assert_eq!(flag, 0, "a message, not the trailers: {payload:?}");
                return WatchFlagsResponse::decode(payload.as_slice()).unwrap();
            }
            let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), body.frame())
                .await
                .expect("an event within 10 s")
                .expect("the stream goes on")
                .unwrap();
            if let Ok(data) = chunk.into_data() {
                let data: Bytes = data;
                text.push(&data);
            }
        }
    };
    let first = next_event().await;
    assert_eq!(first.r#type, FlagEventType::Snapshot as i32);
    assert_eq!(first.flags.len(), 1);
    let revision = set_override(&server, "a", "web-flag", v_bool(true)).await;
    let upsert = loop {
        let e = next_event().await;
        if e.r#type == FlagEventType::Upsert as i32 {
            break e;
        }
    };
    assert_eq!(upsert.revision, revision);
    let flag = upsert.flag.unwrap();
    assert_eq!(flag.flag, "web-flag");
    assert_eq!(flag.value, Some(v_bool(true)));
}

#[tokio::test]
async fn a_grpc_method_in_another_protocol_is_415() {
    let Some((server, _db)) = server_on(Backend::Sqlite).await else {
        return;
    };
    for ct in [
        "application/proto",
        "application/json",
        "application/connect+proto",
        "application/grpc+json",
    ] {
        let r = http_raw(
            &server,
            "POST",
            "/switchyard.v1.FlagService/EvaluateFlag",
            Some(ADMIN),
            Some((ct, b"{}".to_vec())),
        )
        .await;
        assert_eq!(r.status, 415, "{ct}");
        let message = r.json()["message"].as_str().unwrap().to_owned();
        assert!(
            message.contains("gRPC-Web") && message.contains("Connect"),
            "{message}"
        );
    }
}
