//! Limits on what clients send: body size, the header read timeout, a request
//! body that stops coming (408), and plugins before the first body reader
//! answering without waiting for the body.

use crate::support::config::{Config, Plugin, Pool, Route};
use crate::support::{Upstream, client, send};
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_limits_body_size_and_header_timeout() {
    let up = Upstream::start("up").await;
    let gw = Config::new()
        .server(json!({
            "max_request_body": "1KiB",
            "header_read_timeout": "300ms",
            "max_header_bytes": "8KiB",
        }))
        .upstream("up", &up)
        .route(Route::new("any", "/{*rest}").upstream("up"))
        .start();
    let big = Request::post(gw.url("/upload"))
        .body(Full::new(Bytes::from(vec![b'x'; 4096])))
        .expect("request");
    let reply = send(&client(), big).await;
    assert_eq!(reply.status, 413);
    let small = Request::post(gw.url("/upload"))
        .body(Full::new(Bytes::from_static(b"hello")))
        .expect("request");
    let reply = send(&client(), small).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["body"], "hello");

    let huge_header = Request::get(gw.url("/h"))
        .header("x-big", "y".repeat(16 * 1024))
        .body(Full::default())
        .expect("request");
    let reply = send(&client(), huge_header).await;
    assert_eq!(reply.status, 431);

    // A client that never finishes its headers is cut off.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut slow = tokio::net::TcpStream::connect(gw.addr)
        .await
        .expect("connect");
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "connection closed by the header read timeout");
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_that_stops_coming_is_answered_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = Upstream::start("up").await;
    let gw = // Shorter than body_read_timeout, and shorter than the steady upload below:
// the upstream's clock starts at the body's last byte.
Config::new()
.server(json!({ "body_read_timeout": "1500ms" }))
.upstream("up", Pool::new([up.addr])
.timeout("1s"))
.route(Route::new("proxied", "/proxied")
.upstream("up"))
.route(Route::new("reader", "/reader")
.upstream("up")
.plugin(Plugin::wasm("body_reader_plugin")))
.start();
    // Sends the head and `parts` of a 12-byte body, one every `pause`; the
    // status line answered and how long after the first part it came.
    let upload = |path: &'static str, parts: &'static [&'static str], pause: Duration| {
        let addr = gw.addr;
        async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let head = format!(
                "POST {path} HTTP/1.1\r\nhost: gw\r\ncontent-length: 12\r\nconnection: close\r\n\r\n"
            );
            stream.write_all(head.as_bytes()).await.expect("head");
            let started = Instant::now();
            for part in parts {
                // The gateway may have answered and closed already.
                if stream.write_all(part.as_bytes()).await.is_err() {
                    break;
                }
                tokio::time::sleep(pause).await;
            }
            let mut answer = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
                .await;
            let answer = String::from_utf8_lossy(&answer).into_owned();
            (answer, started.elapsed())
        }
    };
    // Three bytes, then nothing: 408 after the timeout, proxied or read by a
    // plugin.
    for path in ["/proxied", "/reader"] {
        let (answer, waited) = upload(path, &["abc"], Duration::ZERO).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{path}: {answer}");
        assert!(
            answer.contains("the request body stopped coming"),
            "{answer}"
        );
        assert!(
            waited >= Duration::from_millis(1400) && waited < Duration::from_secs(5),
            "{path}: answered after {waited:?}"
        );
    }
    // Slow but steady: four bytes every 600 ms (1.8 s in all) is served.
    let (answer, _) = upload(
        "/proxied",
        &["abcd", "efgh", "ijkl"],
        Duration::from_millis(600),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""body":"abcdefghijkl""#), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_before_the_first_body_reader_answer_without_waiting_for_the_body() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = Upstream::start("up").await;
    let gw = Config::new()
        .server(json!({ "body_read_timeout": "10s" }))
        .consumer(json!({ "name": "alice", "keys": [{ "plaintext": "alice-key-0000000001" }] }))
        .upstream("up", &up)
        .route(
            Route::new("reader", "/reader")
                .upstream("up")
                .plugin(Plugin::new("key-auth"))
                .plugin(Plugin::wasm("body_reader_plugin")),
        )
        .start();
    // Announces 1000 bytes, sends 5, and waits.
    let started = Instant::now();
    let mut stream = tokio::net::TcpStream::connect(gw.addr)
        .await
        .expect("connect");
    stream
        .write_all(b"POST /reader HTTP/1.1\r\nhost: gw\r\ncontent-length: 1000\r\n\r\nhello")
        .await
        .expect("write");
    let mut answer = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("key-auth answers before the body is complete")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer[..read]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(up.hits(), 0);
    // With a key, the reader gets the whole body.
    let request = Request::post(gw.url("/reader"))
        .header("x-api-key", "alice-key-0000000001")
        .body(Full::new(Bytes::from_static(b"hello")))
        .expect("request");
    let reply = send(&client(), request).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("x-request-body-len"), Some("5"));
}
