//! `examples/traffic` run for real, on a free port instead of 8082: the
//! split's shares, the header canary, and the large document.

use crate::support::{Gateway, client, send};
use bytes::Bytes;
use http::Request;
use http_body_util::Full;

/// The example, copied to a temporary directory with its port replaced by
/// a free one, and started.
fn example() -> (Gateway, tempfile::TempDir) {
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/traffic");
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let config = std::fs::read_to_string(source.join("gateway.toml")).expect("read");
    let config = config.replace(":8082", &format!(":{port}"));
    std::fs::write(dir.path().join("gateway.toml"), config).expect("write");
    std::fs::copy(source.join("big.json"), dir.path().join("big.json")).expect("copy");
    (Gateway::start_at(&dir.path().join("gateway.toml")), dir)
}

async fn get(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> crate::support::Reply {
    let mut request = Request::get(gw.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(
        &client(),
        request.body(Full::<Bytes>::default()).expect("request"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_split_is_80_20_and_the_header_canary_always_reaches_v2() {
    let (gw, _dir) = example();
    let mut to_v2 = 0;
    for _ in 0..400 {
        let reply = get(&gw, "/split", &[]).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        match reply.json()["upstream"].as_str() {
            Some("v2") => to_v2 += 1,
            Some("v1") => {}
            other => panic!("unexpected upstream {other:?}: {}", reply.body),
        }
    }
    // 20% of 400 is 80; five standard deviations (8 each) either side.
    assert!((40..=120).contains(&to_v2), "{to_v2} of 400 went to v2");
    for _ in 0..20 {
        let reply = get(&gw, "/split", &[("x-canary", "always")]).await;
        assert_eq!(reply.json()["upstream"], "v2", "{}", reply.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_is_a_json_document_of_at_least_20_kb() {
    let (gw, _dir) = example();
    let reply = get(&gw, "/big", &[]).await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.len() >= 20 * 1024, "{} bytes", reply.body.len());
    assert!(reply.json()["items"].is_array());
}
