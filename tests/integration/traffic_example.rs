//! `examples/traffic` run for real, on a free port instead of 8082: the
//! split's shares, the header canary, and the large document.

use crate::support::{Gateway, client, get_with, run_example};
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use std::io::Read as _;

/// The example on a free port.
fn example() -> (Gateway, tempfile::TempDir) {
    run_example("traffic", 8082, &["big.json"])
}

async fn get(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> crate::support::Reply {
    get_with(&gw.url(path), headers).await
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
async fn big_is_a_json_document_of_at_least_20_kb_compressed_when_asked() {
    let (gw, _dir) = example();
    let plain = get(&gw, "/big", &[]).await;
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("content-encoding"), None);
    assert!(plain.body.len() >= 20 * 1024, "{} bytes", plain.body.len());
    assert!(plain.json()["items"].is_array());
    for (asked, coding) in [("gzip", "gzip"), ("br, gzip", "br")] {
        let request = Request::get(gw.url("/big"))
            .header("accept-encoding", asked)
            .body(Full::<Bytes>::default())
            .expect("request");
        let response = client().request(request).await.expect("response");
        let headers = response.headers().clone();
        assert_eq!(
            headers.get("content-encoding").map(|v| v.as_bytes()),
            Some(coding.as_bytes())
        );
        let vary = headers
            .get("vary")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(vary.eq_ignore_ascii_case("accept-encoding"), "{vary}");
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .expect("body")
            .to_bytes();
        assert!(
            body.len() < plain.body.len() / 3,
            "{coding}: {} bytes",
            body.len()
        );
        let mut decoded = Vec::new();
        match coding {
            "gzip" => flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut decoded),
            _ => brotli::Decompressor::new(&body[..], 4096).read_to_end(&mut decoded),
        }
        .expect("decode");
        assert_eq!(decoded, plain.body.as_bytes(), "{coding}");
    }
}
