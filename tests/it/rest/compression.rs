//! gzip, on both sides of both transports: gRPC messages compressed with
//! `grpc-encoding: gzip` are accepted, and answers are compressed for
//! clients that advertise it; REST answers are compressed for
//! `Accept-Encoding: gzip` above a size threshold, and `Content-Encoding:
//! gzip` bodies are accepted. A compressed body or message counts
//! decompressed against the message limit, so a gzip bomb is refused and
//! writes nothing. (grpcio and connect-node run the gRPC side too:
//! `python_client.rs`, `typescript_client.rs`.)

use std::io::Write;

use crate::common::*;
use switchyard::api::v1::{FlagType, ListFlagsRequest};
use tonic::codec::CompressionEncoding;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::copy(&mut flate2::read::GzDecoder::new(bytes), &mut out).unwrap();
    out
}

const LIMIT: usize = 64 * 1024;

async fn flags_count(server: &TestServer) -> usize {
    server
        .flags(ADMIN)
        .await
        .list_flags(ListFlagsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .flags
        .len()
}

async fn rest_gzip_both_ways(backend: Backend) {
    let Some((server, _db)) = server_with(backend, |c| c.listener.max_message_bytes = LIMIT).await
    else {
        return;
    };
    // A gzip request body creates a flag.
    for i in 0..40 {
        let body = serde_json::json!({
            "key": format!("gz-{i:02}"), "type": "FLAG_TYPE_BOOL", "defaultValue": false,
            "description": "a flag whose listing is long enough to be worth compressing",
        });
        let r = http_raw_with(
            &server,
            "POST",
            "/v1/flags",
            Some(ADMIN),
            Some(("application/json", gzip(body.to_string().as_bytes()))),
            &[("content-encoding", "gzip")],
        )
        .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    // The listing, compressed on request, is the same JSON.
    let plain = http_raw(&server, "GET", "/admin/feature-flags", Some(ADMIN), None).await;
    assert_eq!(plain.header("content-encoding"), None);
    let zipped = http_raw_with(
        &server,
        "GET",
        "/admin/feature-flags",
        Some(ADMIN),
        None,
        &[("accept-encoding", "gzip")],
    )
    .await;
    assert_eq!(zipped.status, 200);
    assert_eq!(zipped.header("content-encoding"), Some("gzip"));
    assert!(
        zipped.body.len() * 4 < plain.body.len(),
        "{} vs {}",
        zipped.body.len(),
        plain.body.len()
    );
    assert_eq!(gunzip(&zipped.body), plain.body);
    assert_eq!(zipped.header("etag"), plain.header("etag"));
    // Compressed once per version: the same answer again, then a change is
    // seen compressed too (never a stale cached gzip).
    let gz_list = || {
        http_raw_with(
            &server,
            "GET",
            "/admin/feature-flags",
            Some(ADMIN),
            None,
            &[("accept-encoding", "br;q=1, gzip;q=0.5")],
        )
    };
    assert_eq!(gz_list().await.body, zipped.body);
    let r = http(
        &server,
        "PATCH",
        "/v1/flags/gz-07",
        Some(ADMIN),
        Some(serde_json::json!({"storedValue": true})),
    )
    .await;
    assert_eq!(r.status, 200);
    let after = gz_list().await;
    assert_eq!(after.header("content-encoding"), Some("gzip"));
    assert_ne!(after.header("etag"), zipped.header("etag"));
    let listing: serde_json::Value = serde_json::from_slice(&gunzip(&after.body)).unwrap();
    let f7 = listing
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["flag"] == "gz-07")
        .unwrap();
    assert_eq!(f7["value"], true, "{f7}");
    // gzip refused by quality 0: plain.
    let refused = http_raw_with(
        &server,
        "GET",
        "/admin/feature-flags",
        Some(ADMIN),
        None,
        &[("accept-encoding", "gzip;q=0")],
    )
    .await;
    assert_eq!(refused.header("content-encoding"), None);
    // A small answer goes out as it is (below the threshold).
    let small = http_raw_with(
        &server,
        "GET",
        "/v1/flags/gz-00",
        Some(ADMIN),
        None,
        &[("accept-encoding", "gzip")],
    )
    .await;
    assert_eq!(small.status, 200);
    assert_eq!(small.header("content-encoding"), None);

    // A bomb: 1 MiB that compresses to about 1 KiB, against a 64 KiB limit.
    let huge = format!(
        "{{\"key\":\"bomb\",\"type\":\"FLAG_TYPE_BOOL\",\"defaultValue\":false,\"description\":\"{}\"}}",
        "a".repeat(1024 * 1024)
    );
    let bomb = gzip(huge.as_bytes());
    assert!(bomb.len() < 4096, "{}", bomb.len());
    let r = http_raw_with(
        &server,
        "POST",
        "/v1/flags",
        Some(ADMIN),
        Some(("application/json", bomb)),
        &[("content-encoding", "gzip")],
    )
    .await;
    assert_eq!(r.status, 413, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["code"], 8, "RESOURCE_EXHAUSTED");
    // Not gzip at all.
    let r = http_raw_with(
        &server,
        "POST",
        "/v1/flags",
        Some(ADMIN),
        Some(("application/json", b"{\"key\":\"x\"}".to_vec())),
        &[("content-encoding", "gzip")],
    )
    .await;
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    // An encoding the server does not take.
    let r = http_raw_with(
        &server,
        "POST",
        "/v1/flags",
        Some(ADMIN),
        Some(("application/json", b"{}".to_vec())),
        &[("content-encoding", "compress")],
    )
    .await;
    assert_eq!(r.status, 415);
    assert!(
        r.json()["message"].as_str().unwrap().contains("gzip"),
        "{:?}",
        r.body
    );
    assert_eq!(
        flags_count(&server).await,
        40,
        "nothing written by the refusals"
    );
}

#[tokio::test]
async fn rest_gzip_both_ways_sqlite() {
    rest_gzip_both_ways(Backend::Sqlite).await;
}

#[tokio::test]
async fn rest_gzip_both_ways_postgres() {
    rest_gzip_both_ways(Backend::Postgres).await;
}

async fn grpc_gzip_both_ways(backend: Backend) {
    let Some((server, _db)) = server_with(backend, |c| c.listener.max_message_bytes = LIMIT).await
    else {
        return;
    };
    let mut flags = server
        .flags(ADMIN)
        .await
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip);
    flags
        .create_flag(new_flag("gz", FlagType::Bool, v_bool(true)))
        .await
        .unwrap();
    let listed = flags.list_flags(ListFlagsRequest::default()).await.unwrap();
    assert_eq!(
        listed
            .metadata()
            .get("grpc-encoding")
            .map(|v| v.to_str().unwrap()),
        Some("gzip"),
        "the answer is compressed for a client that accepts gzip"
    );
    assert_eq!(listed.into_inner().flags.len(), 1);

    // A bomb: a 1 MiB description, about 1 KiB compressed, against 64 KiB.
    let mut bomb = new_flag("bomb", FlagType::Bool, v_bool(true));
    bomb.flag.as_mut().unwrap().description = "a".repeat(1024 * 1024);
    let e = flags.create_flag(bomb).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    assert_eq!(flags_count(&server).await, 1, "the bomb wrote nothing");
}

#[tokio::test]
async fn grpc_gzip_both_ways_sqlite() {
    grpc_gzip_both_ways(Backend::Sqlite).await;
}

#[tokio::test]
async fn grpc_gzip_both_ways_postgres() {
    grpc_gzip_both_ways(Backend::Postgres).await;
}
