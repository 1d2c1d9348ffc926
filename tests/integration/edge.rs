//! The edge against hostile input, over raw sockets: message framing that
//! could smuggle a request, `Host` and the request target, `CONNECT`, the
//! HTTP/2 preface, hyper's own refusals, a body cut off at its limit, and
//! idle connections crowding out new clients.

use crate::support::config::{Config, Route};
use crate::support::{Gateway, Upstream, get, metric, serve_http1};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A gateway with an admin listener and one catch-all route to `upstream`,
/// `server` more `[server]` keys and `route` adding to the route.
fn proxy_with(upstream: &Upstream, server: Value, route: impl FnOnce(Route) -> Route) -> Gateway {
    Config::new()
        .server(server)
        .admin()
        .upstream("up", upstream)
        .route(route(Route::new("all", "/{*rest}").upstream("up")))
        .start()
}

/// [`proxy_with`] a plain route.
fn proxy(upstream: &Upstream, server: Value) -> Gateway {
    proxy_with(upstream, server, |route| route)
}

/// Sends `raw` on a new connection and reads until the gateway closes it
/// (or 5 s pass): everything it answered.
async fn exchange(gw: &Gateway, raw: &[u8]) -> String {
    let mut stream = TcpStream::connect(gw.addr).await.expect("connect");
    stream.write_all(raw).await.expect("write");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the connection stayed open after: {}",
        String::from_utf8_lossy(&answer)
    );
    String::from_utf8_lossy(&answer).into_owned()
}

/// The JSON body of a raw answer.
fn json_body(answer: &str) -> serde_json::Value {
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {answer}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_applied_twice_is_refused_and_the_connection_closed() {
    let up = Upstream::start("up").await;
    let gw = proxy(&up, json!({}));
    let body = "5\r\nhello\r\n0\r\n\r\n";
    for framing in [
        "transfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n",
        "transfer-encoding: chunked, chunked\r\n",
        "content-length: 5\r\ntransfer-encoding: chunked, chunked\r\n",
    ] {
        // A second request rides behind the first, as in a smuggling attempt.
        let raw = format!(
            "POST /a HTTP/1.1\r\nhost: gw\r\n{framing}\r\n{body}GET /smuggled HTTP/1.1\r\nhost: gw\r\n\r\n"
        );
        let answer = exchange(&gw, raw.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{framing:?}: {answer}");
        assert!(answer.contains("connection: close"), "{answer}");
        assert_eq!(
            answer.matches("HTTP/1.1").count(),
            1,
            "one answer: {answer}"
        );
        assert!(
            json_body(&answer)["error"]
                .as_str()
                .is_some_and(|e| e.contains("chunked"))
        );
    }
    assert_eq!(up.hits(), 0, "nothing reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_codings_other_than_chunked_get_501() {
    let up = Upstream::start("up").await;
    let gw = proxy(&up, json!({}));
    for coding in ["gzip, chunked", "deflate, chunked", "compress, chunked"] {
        let raw = format!(
            "POST /a HTTP/1.1\r\nhost: gw\r\ntransfer-encoding: {coding}\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        );
        let answer = exchange(&gw, raw.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 501"), "{coding}: {answer}");
        assert_eq!(json_body(&answer)["status"], 501);
    }
    assert_eq!(up.hits(), 0);
    // Plain chunked still goes through.
    let answer = exchange(
        &gw,
        b"POST /a HTTP/1.1\r\nhost: gw\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""body":"hello""#), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_must_be_present_single_and_valid() {
    let up = Upstream::start("up").await;
    let gw = proxy(&up, json!({}));
    for head in [
        "GET /a HTTP/1.1\r\n",
        "GET /a HTTP/1.1\r\nhost: a.test\r\nhost: b.test\r\n",
        "GET /a HTTP/1.1\r\nhost:\r\n",
        "GET /a HTTP/1.1\r\nhost: a.test@b.test\r\n",
        "GET /a HTTP/1.1\r\nhost: a<b\r\n",
        "GET /a HTTP/1.1\r\nhost: a.test:port\r\n",
        "GET http://user:pass@a.test/a HTTP/1.1\r\nhost: a.test\r\n",
    ] {
        let answer = exchange(&gw, format!("{head}\r\n").as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{head:?}: {answer}");
        assert_eq!(json_body(&answer)["status"], 400, "{answer}");
        assert!(!answer.contains("user:pass"), "{answer}");
    }
    assert_eq!(up.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_names_the_host() {
    let up = Upstream::start("up").await;
    let gw = proxy_with(&up, json!({}), |route| {
        route.with("preserve_host", json!(true))
    });
    let answer = exchange(
        &gw,
        b"GET http://api.example.test:8080/a HTTP/1.1\r\nhost: other.test\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let echoed = json_body(&answer);
    assert_eq!(
        echoed["headers"]["host"], "api.example.test:8080",
        "{echoed}"
    );
    assert_eq!(
        echoed["headers"]["x-forwarded-host"], "api.example.test:8080",
        "{echoed}"
    );
    assert!(!echoed.to_string().contains("other.test"), "{echoed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_is_answered_405_and_never_forwarded() {
    let up = Upstream::start("up").await;
    let gw = proxy(&up, json!({}));
    for target in ["/path", "example.test:443"] {
        let raw = format!("CONNECT {target} HTTP/1.1\r\nhost: example.test:443\r\n\r\n");
        let answer = exchange(&gw, raw.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 405"), "{target}: {answer}");
        assert!(answer.contains("allow: GET"), "{answer}");
    }
    assert_eq!(up.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_are_refused_before_routing() {
    let up = Upstream::start("up").await;
    let gw = proxy(&up, json!({}));
    for path in [
        "/public/../admin/users",
        "/public/%2e%2e/admin",
        "/a/./b",
        "/a/..;x/b",
    ] {
        let raw = format!("GET {path} HTTP/1.1\r\nhost: example.test\r\n\r\n");
        let answer = exchange(&gw, raw.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
        assert!(
            json_body(&answer)["error"]
                .as_str()
                .is_some_and(|e| e.contains("`..` segment")),
            "{answer}"
        );
    }
    assert_eq!(up.hits(), 0);
    let raw = b"GET /a/.well-known/x HTTP/1.1\r\nhost: example.test\r\nconnection: close\r\n\r\n";
    assert!(exchange(&gw, raw).await.starts_with("HTTP/1.1 200"));
}

/// A GOAWAY frame with PROTOCOL_ERROR somewhere in `answer`.
fn has_goaway_protocol_error(answer: &[u8]) -> bool {
    let goaway = [0u8, 0, 8, 0x7, 0, 0, 0, 0, 0];
    answer
        .windows(goaway.len() + 8)
        .any(|frame| frame.starts_with(&goaway) && frame[goaway.len() + 4..] == [0, 0, 0, 1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_http2_preface_gets_goaway_protocol_error() {
    let up = Upstream::start("up").await;
    let gw = proxy(&up, json!({}));
    let mut stream = TcpStream::connect(gw.addr).await.expect("connect");
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("closed")
        .expect("read");
    assert!(!answer.starts_with(b"HTTP/1.1"), "{answer:?}");
    assert!(has_goaway_protocol_error(&answer), "{answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hypers_own_refusals_carry_the_json_error_body() {
    let up = Upstream::start("up").await;
    let gw = proxy(&up, json!({ "max_headers": 5 }));
    let mut many = String::from("GET /a HTTP/1.1\r\nhost: gw\r\n");
    for i in 0..5 {
        many.push_str(&format!("x-{i}: v\r\n"));
    }
    let answer = exchange(&gw, format!("{many}\r\n").as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    let json = json_body(&answer);
    assert_eq!(json["status"], 431);
    let id = json["request_id"].as_str().expect("request id");
    assert!(answer.contains(&format!("x-request-id: {id}")), "{answer}");

    let answer = exchange(&gw, b"GET /a\x01 HTTP/1.1\r\nhost: gw\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert_eq!(json_body(&answer)["status"], 400);

    // A request within the limit passes.
    let reply = get(&gw.url("/a")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(up.hits(), 1);
}

/// An upstream that reads each request body to its end and records how it
/// ended: `Ok(length)` or `Err(reason)`.
async fn body_recording_upstream() -> (std::net::SocketAddr, Arc<Mutex<Vec<Result<usize, String>>>>)
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    serve_http1(
        listener,
        None,
        service_fn(move |request: http::Request<hyper::body::Incoming>| {
            let record = record.clone();
            async move {
                let outcome = match request.into_body().collect().await {
                    Ok(body) => Ok(body.to_bytes().len()),
                    Err(err) => Err(err.to_string()),
                };
                record.lock().expect("lock").push(outcome);
                Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from("ok"))))
            }
        }),
    );
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_aborted_upstream_not_ended_short() {
    let (upstream, seen) = body_recording_upstream().await;
    let gw = Config::new()
        .server(json!({ "max_request_body": "1KiB" }))
        .upstream("up", upstream)
        .route(Route::new("all", "/{*rest}").upstream("up"))
        .start();
    let mut stream = TcpStream::connect(gw.addr).await.expect("connect");
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nhost: gw\r\ntransfer-encoding: chunked\r\n\r\n")
        .await
        .expect("head");
    let chunk = format!("200\r\n{}\r\n", "a".repeat(0x200));
    // Under the limit first, so the request is on its way upstream...
    stream.write_all(chunk.as_bytes()).await.expect("chunk");
    let waiting = std::time::Instant::now();
    while waiting.elapsed() < Duration::from_secs(5) && seen.lock().expect("lock").is_empty() {
        // ...then over it.
        let _ = stream.write_all(chunk.as_bytes()).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut answer = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("an answer")
        .unwrap_or(0);
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(
        seen[0].is_err(),
        "the upstream saw a complete body: {seen:?}"
    );
}

/// Whether a request on `stream` is answered 200.
async fn served(stream: &mut TcpStream) -> bool {
    if stream
        .write_all(b"GET /a HTTP/1.1\r\nhost: gw\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut answer = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut answer)).await;
    matches!(read, Ok(Ok(read)) if answer[..read].starts_with(b"HTTP/1.1 200"))
}

/// Whether the gateway closes `stream` (within 5 s) without answering.
async fn closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte)).await;
    matches!(read, Ok(Ok(0) | Err(_)))
}

/// A kept-alive connection that has had one request answered.
async fn kept_alive(gw: &Gateway) -> TcpStream {
    let mut stream = TcpStream::connect(gw.addr).await.expect("connect");
    assert!(served(&mut stream).await, "a new connection is served");
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_make_room_for_new_clients() {
    let up = Upstream::start("up").await;
    let gw = proxy(&up, json!({ "max_connections": 20 }));
    let mut idle = Vec::new();
    for _ in 0..30 {
        idle.push(kept_alive(&gw).await);
    }
    // A fresh client is served although 30 kept-alive connections were opened.
    let reply = get(&gw.url("/fresh")).await;
    assert_eq!(reply.status, 200);
    assert!(closed(&mut idle[0]).await, "the longest idle went first");
    let newest = idle.last_mut().expect("newest");
    assert!(served(newest).await, "the newest is kept");

    let text = get(&gw.admin_url("/metrics")).await.body;
    let closed = metric(&text, "gateway_connections_idle_closed_total").unwrap_or(0.0);
    assert!(closed >= 10.0, "{closed} closed:\n{text}");
    let refused = metric(&text, "gateway_connections_refused_total").unwrap_or(0.0);
    assert_eq!(refused, 0.0, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_limit_an_idle_connection_gives_its_place_to_a_new_client() {
    let up = Upstream::start("up").await;
    let gw = proxy(
        &up,
        json!({ "max_connections": 3, "close_idle_above": 1.0 }),
    );
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(kept_alive(&gw).await);
    }
    // All three places are taken by kept-alive connections: the newcomer
    // closes the oldest and is served.
    let mut newcomer = kept_alive(&gw).await;
    assert!(closed(&mut idle[0]).await, "the oldest is closed");
    assert!(served(&mut newcomer).await);
    let text = get(&gw.admin_url("/metrics")).await.body;
    assert_eq!(
        metric(&text, "gateway_connections_idle_closed_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "gateway_connections_refused_total"),
        None,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_own_limit_closes_nobodys_connection() {
    let up = Upstream::start("up").await;
    let gw = proxy(
        &up,
        json!({ "max_connections": 10, "close_idle_above": 0.2, "max_connections_per_ip": 2 }),
    );
    let mut idle = [kept_alive(&gw).await, kept_alive(&gw).await];
    // A third from the same address is over max_connections_per_ip.
    let mut third = TcpStream::connect(gw.addr).await.expect("connect");
    assert!(!served(&mut third).await, "refused");
    for stream in &mut idle {
        assert!(served(stream).await, "still served");
    }
    let text = get(&gw.admin_url("/metrics")).await.body;
    assert_eq!(
        metric(&text, "gateway_connections_idle_closed_total"),
        Some(0.0),
        "{text}"
    );
}
