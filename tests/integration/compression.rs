//! Compression: responses compressed as the client's `Accept-Encoding`
//! prefers (and only those that qualify), compressed upstream answers
//! decoded for the plugins that read them, compressed request bodies decoded
//! for them under a cap.

use crate::support::config::{Config, Plugin, Route};
use crate::support::{Upstream, client, serve_http1};
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::json;
use std::io::{Read, Write};
use std::net::SocketAddr;

/// A JSON document of about `size` bytes.
fn document(size: usize) -> String {
    let item = r#"{"id": 12345, "name": "compressible", "tags": ["a", "b", "c"]}"#;
    let items: Vec<&str> = std::iter::repeat_n(item, size / (item.len() + 2) + 1).collect();
    format!("[{}]", items.join(", "))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

/// `bytes` decoded from `coding`.
fn decode(coding: &str, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        "gzip" => {
            flate2::read::GzDecoder::new(bytes)
                .read_to_end(&mut out)
                .expect("gunzip");
        }
        "br" => {
            brotli::Decompressor::new(bytes, 4096)
                .read_to_end(&mut out)
                .expect("unbrotli");
        }
        "zstd" => out = zstd::decode_all(bytes).expect("unzstd"),
        other => panic!("unexpected coding {other}"),
    }
    out
}

/// An upstream with fixed answers: `/json/{size}` (with a strong ETag),
/// `/png`, `/encoded` (already brotli), `/range` (a 206), `/gzip-xml` and
/// `/gzip-json` (gzip, whatever the request asks).
async fn fixed_upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let service = hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
        let path = req.uri().path().to_string();
        let mut response = Response::builder().status(200);
        let body: Vec<u8> = match path.as_str() {
            "/png" => {
                response = response.header("content-type", "image/png");
                vec![7u8; 5000]
            }
            "/encoded" => {
                response = response
                    .header("content-type", "application/json")
                    .header("content-encoding", "br");
                b"not really brotli, but passed as it is ".repeat(100)
            }
            "/range" => {
                response = response
                    .status(206)
                    .header("content-type", "application/json")
                    .header("content-range", "bytes 0-4999/10000");
                document(5000).into_bytes()[..5000].to_vec()
            }
            "/gzip-xml" => {
                response = response
                    .header("content-type", "application/xml")
                    .header("content-encoding", "gzip");
                gzip(br#"<order id="7"><sku>A-1</sku><qty>3</qty></order>"#)
            }
            "/gzip-json" => {
                response = response
                    .header("content-type", "application/json")
                    .header("content-encoding", "gzip");
                gzip(br#"{"name": "ada", "padding": "the upstream compressed this"}"#)
            }
            _ => {
                let size = path
                    .strip_prefix("/json/")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(5000);
                response = response
                    .header("content-type", "application/json; charset=utf-8")
                    .header("etag", "\"v1\"");
                document(size).into_bytes()
            }
        };
        let response = response
            .body(Full::new(Bytes::from(body)))
            .expect("response");
        Ok::<_, std::convert::Infallible>(response)
    });
    serve_http1(listener, None, service);
    addr
}

/// The status, headers and raw body bytes of a request.
async fn fetch(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (StatusCode, HeaderMap, Bytes) {
    let mut request = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(Bytes::from(body))).expect("request");
    let response = client().request(request).await.expect("request failed");
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.expect("read body").to_bytes();
    (parts.status, parts.headers, bytes)
}

async fn get_with(url: &str, accept: &str) -> (StatusCode, HeaderMap, Bytes) {
    fetch("GET", url, &[("accept-encoding", accept)], Vec::new()).await
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn varies_on_accept_encoding(headers: &HeaderMap) -> bool {
    headers
        .get_all("vary")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("accept-encoding"))
}

/// A gateway whose routes compress: `/c/...` with the server's defaults,
/// `/br/...` offering brotli first, `/off/...` switched off.
fn compressing(upstream: SocketAddr) -> Config {
    Config::new()
        .server(json!({ "compression": {} }))
        .upstream("fixed", upstream)
        .route(
            Route::new("c", "/c/{*rest}")
                .upstream("fixed")
                .strip_prefix("/c"),
        )
        .route(
            Route::new("br", "/br/{*rest}")
                .upstream("fixed")
                .strip_prefix("/br")
                .with("compression", json!({ "algorithms": ["br", "gzip"] })),
        )
        .route(
            Route::new("off", "/off/{*rest}")
                .upstream("fixed")
                .strip_prefix("/off")
                .with("compression", json!({ "enabled": false })),
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_algorithm_the_client_asks_for_decodes_to_the_original() {
    let gw = compressing(fixed_upstream().await).start();
    let original = document(5000);
    for coding in ["gzip", "br", "zstd"] {
        let (status, headers, body) = get_with(&gw.url("/c/json/5000"), coding).await;
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "content-encoding"), Some(coding));
        assert!(varies_on_accept_encoding(&headers), "{headers:?}");
        assert_eq!(header(&headers, "content-length"), None, "{headers:?}");
        assert_eq!(header(&headers, "etag"), Some("W/\"v1\""));
        assert!(body.len() < original.len() / 4, "{coding}: {}", body.len());
        assert_eq!(decode(coding, &body), original.as_bytes(), "{coding}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn q_values_and_the_configured_order_choose_the_coding() {
    let gw = compressing(fixed_upstream().await).start();
    let url = gw.url("/c/json/5000");
    let cases = [
        ("gzip;q=0.5, br;q=0.9, zstd;q=0.1", Some("br")),
        ("gzip;q=0.5, zstd", Some("zstd")),
        // Equal: the configured order (gzip first by default).
        ("zstd, br, gzip", Some("gzip")),
        ("gzip;q=0, br;q=0, zstd;q=0", None),
        ("identity", None),
        ("gzip;q=0.5, identity", None),
        ("*", Some("gzip")),
    ];
    for (accept, expected) in cases {
        let (_, headers, _) = get_with(&url, accept).await;
        assert_eq!(header(&headers, "content-encoding"), expected, "{accept}");
        assert!(varies_on_accept_encoding(&headers), "{accept}");
    }
    // A route's own order.
    let (_, headers, _) = get_with(&gw.url("/br/json/5000"), "gzip, br").await;
    assert_eq!(header(&headers, "content-encoding"), Some("br"));
    // No header at all: plain, still varying.
    let (_, headers, body) = fetch("GET", &url, &[], Vec::new()).await;
    assert_eq!(header(&headers, "content-encoding"), None);
    assert!(varies_on_accept_encoding(&headers));
    assert_eq!(body, document(5000).as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_unlisted_encoded_partial_and_head_responses_are_not_compressed() {
    let gw = compressing(fixed_upstream().await).start();
    // Below min_size (1 KiB by default).
    let (_, headers, body) = get_with(&gw.url("/c/json/300"), "gzip").await;
    assert_eq!(header(&headers, "content-encoding"), None);
    assert!(!varies_on_accept_encoding(&headers));
    assert_eq!(body, document(300).as_bytes());
    // A media type not listed.
    let (_, headers, body) = get_with(&gw.url("/c/png"), "gzip").await;
    assert_eq!(header(&headers, "content-encoding"), None);
    assert_eq!(body.len(), 5000);
    // Already encoded upstream: untouched.
    let (_, headers, body) = get_with(&gw.url("/c/encoded"), "gzip").await;
    assert_eq!(header(&headers, "content-encoding"), Some("br"));
    assert_eq!(
        body,
        b"not really brotli, but passed as it is ".repeat(100)[..]
    );
    // A range.
    let (status, headers, body) = get_with(&gw.url("/c/range"), "gzip").await;
    assert_eq!(status, 206);
    assert_eq!(header(&headers, "content-encoding"), None);
    assert_eq!(body.len(), 5000);
    // HEAD.
    let (status, headers, body) = fetch(
        "HEAD",
        &gw.url("/c/json/5000"),
        &[("accept-encoding", "gzip")],
        Vec::new(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-encoding"), None);
    assert!(body.is_empty());
    // A route that switches it off.
    let (_, headers, _) = get_with(&gw.url("/off/json/5000"), "gzip").await;
    assert_eq!(header(&headers, "content-encoding"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_compression_table_nothing_is_compressed() {
    let gw = Config::new()
        .upstream("fixed", fixed_upstream().await)
        .route(
            Route::new("c", "/c/{*rest}")
                .upstream("fixed")
                .strip_prefix("/c"),
        )
        .start();
    let (_, headers, body) = get_with(&gw.url("/c/json/5000"), "gzip, br, zstd").await;
    assert_eq!(header(&headers, "content-encoding"), None);
    assert!(!varies_on_accept_encoding(&headers));
    assert_eq!(body, document(5000).as_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_xml_upstream_converts_through_xml_json_and_transform() {
    let gw = Config::new()
        .upstream("fixed", fixed_upstream().await)
        .route(
            Route::new("xml", "/xml/{*rest}")
                .upstream("fixed")
                .strip_prefix("/xml")
                .plugin(Plugin::new("xml-json"))
                .with("compression", json!({ "min_size": "10B" })),
        )
        .route(
            Route::new("mapped", "/mapped/{*rest}")
                .upstream("fixed")
                .strip_prefix("/mapped")
                .plugin(Plugin::new("transform").config(json!({
                    "response": { "body": "{\"who\": {{ body.name | tojson }}}" }
                }))),
        )
        .start();
    let expected = json!({ "order": { "@id": "7", "sku": "A-1", "qty": "3" } });
    let (status, headers, body) = fetch("GET", &gw.url("/xml/gzip-xml"), &[], Vec::new()).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(header(&headers, "content-encoding"), None);
    assert!(
        header(&headers, "content-type").is_some_and(|t| t.contains("json")),
        "{headers:?}"
    );
    let converted: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(converted, expected);
    // Converted, then compressed again for a client that takes it.
    let (status, headers, body) = get_with(&gw.url("/xml/gzip-xml"), "gzip").await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-encoding"), Some("gzip"));
    let converted: serde_json::Value =
        serde_json::from_slice(&decode("gzip", &body)).expect("JSON");
    assert_eq!(converted, expected);
    // A HEAD answer has no body to decode: its head passes.
    let (status, headers, body) = fetch("HEAD", &gw.url("/xml/gzip-xml"), &[], Vec::new()).await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-encoding"), Some("gzip"));
    assert!(body.is_empty());
    // A template reads the decoded JSON.
    let (status, _, body) = fetch("GET", &gw.url("/mapped/gzip-json"), &[], Vec::new()).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let mapped: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(mapped, json!({ "who": "ada" }));
}

/// A gateway in front of the echo upstream: `/read` through the body-reader
/// plugin (which upper-cases the request body), `/pass` without plugins.
async fn reading_gateway() -> (Upstream, crate::support::Gateway) {
    let up = Upstream::start("echo").await;
    let gw = Config::new()
        .upstream("echo", &up)
        .route(
            Route::new("read", "/read")
                .upstream("echo")
                .plugin(Plugin::wasm("body_reader_plugin")),
        )
        .route(Route::new("pass", "/pass").upstream("echo"))
        .start();
    (up, gw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_request_body_is_decoded_for_a_plugin_that_reads_it() {
    let (_up, gw) = reading_gateway().await;
    let headers = [("content-encoding", "gzip"), ("content-type", "text/plain")];
    let (status, response_headers, body) = fetch(
        "POST",
        &gw.url("/read"),
        &headers,
        gzip(b"hello, decoded world"),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(header(&response_headers, "x-request-body-len"), Some("20"));
    // The response was wrapped in brackets by the plugin.
    let echoed: serde_json::Value =
        serde_json::from_slice(&body[1..body.len() - 1]).expect("echo JSON");
    assert_eq!(echoed["body"], "HELLO, DECODED WORLD");
    assert_eq!(echoed["headers"].get("content-encoding"), None);
    assert_eq!(echoed["headers"]["content-length"], "20");

    // Without a plugin that reads it, the body passes as it came.
    let (status, _, body) = fetch("POST", &gw.url("/pass"), &headers, gzip(b"hello")).await;
    assert_eq!(status, 200);
    let echoed: serde_json::Value = serde_json::from_slice(&body).expect("echo JSON");
    assert_eq!(echoed["headers"]["content-encoding"], "gzip");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zip_bomb_gets_413_and_an_unknown_coding_415() {
    let (up, gw) = reading_gateway().await;
    // 100 MB of zeros, a few hundred KB gzipped; the plugin's cap is 1 MiB.
    let bomb = gzip(&vec![0u8; 100 * 1024 * 1024]);
    assert!(bomb.len() < 1024 * 1024, "{}", bomb.len());
    let headers = [("content-encoding", "gzip")];
    let (status, _, body) = fetch("POST", &gw.url("/read"), &headers, bomb).await;
    let start: String = String::from_utf8_lossy(&body).chars().take(200).collect();
    assert_eq!(status, 413, "{start}");
    assert_eq!(up.hits(), 0);

    let headers = [("content-encoding", "compress")];
    let (status, _, body) = fetch("POST", &gw.url("/read"), &headers, b"xx".to_vec()).await;
    assert_eq!(status, 415, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("compress"));
    // A body that is not the gzip it claims to be.
    let headers = [("content-encoding", "gzip")];
    let (status, _, _) = fetch("POST", &gw.url("/read"), &headers, b"plain".to_vec()).await;
    assert_eq!(status, 400);
    assert_eq!(up.hits(), 0);
    // Two codings are decoded; more are refused before any decoding (each
    // would cost a decoder, and thousands a stack as deep).
    let twice = gzip(&gzip(b"{\"n\":1}"));
    let headers = [("content-encoding", "gzip, gzip")];
    let (status, _, _) = fetch("POST", &gw.url("/read"), &headers, twice).await;
    assert_eq!(status, 200);
    let many = ["gzip"; 3000].join(",");
    let headers = [("content-encoding", many.as_str())];
    let (status, _, body) = fetch("POST", &gw.url("/read"), &headers, b"x".to_vec()).await;
    assert_eq!(status, 415, "{}", String::from_utf8_lossy(&body));
    let thrice = gzip(&gzip(&gzip(b"{}")));
    let headers = [("content-encoding", "gzip, gzip, gzip")];
    let (status, _, _) = fetch("POST", &gw.url("/read"), &headers, thrice).await;
    assert_eq!(status, 415);
    assert_eq!(up.hits(), 1);
    // The gateway still serves.
    let (status, _, _) = fetch("POST", &gw.url("/read"), &[], b"ok".to_vec()).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_compressed_reads_what_the_gateway_compresses() {
    let gw = compressing(fixed_upstream().await).start();
    let url = gw.url("/c/json/5000");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args([
                "--silent",
                "--compressed",
                "--dump-header",
                "/dev/stderr",
                &url,
            ])
            .output()
    })
    .await
    .expect("join")
    .expect("curl runs");
    assert!(out.status.success());
    assert_eq!(out.stdout, document(5000).as_bytes());
    let head = String::from_utf8_lossy(&out.stderr).to_ascii_lowercase();
    assert!(head.contains("content-encoding: "), "{head}");
}
