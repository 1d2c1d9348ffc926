//! What operators see: metrics after a scripted traffic pattern, trace
//! context propagation, the access log, and readiness while draining.

use crate::support::config::{Config, Plugin, Route};
use crate::support::{Upstream, client, get, metric, misbehave, send};
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::json;
use std::time::{Duration, Instant};

/// An admin listener and three routes to `upstream`: `/ok` (through
/// `headers`), `/fail` (a plugin that traps) and `/slow/{ms}`.
fn config(upstream: &Upstream) -> Config {
    Config::new()
        .admin()
        .upstream("api", upstream)
        .route(Route::new("ok", "/ok").upstream("api").plugin(
            Plugin::new("headers").config(json!({ "request": { "set": { "x-seen": "1" } } })),
        ))
        .route(
            Route::new("fail", "/fail")
                .upstream("api")
                .plugin(misbehave(json!({ "mode": "trap" }))),
        )
        .route(Route::new("slow", "/slow/{ms}").upstream("api"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_a_scripted_traffic_pattern() {
    let upstream = Upstream::start("api").await;
    let gw = config(&upstream).start();
    for _ in 0..3 {
        assert_eq!(get(&gw.url("/ok")).await.status, 200);
    }
    for _ in 0..2 {
        assert_eq!(get(&gw.url("/fail")).await.status, 500);
    }
    assert_eq!(get(&gw.url("/nowhere")).await.status, 404);
    // Invented methods share one label value: clients cannot grow the
    // metrics without bound.
    let client = client();
    for method in ["BREW", "WHEN"] {
        let request = Request::builder()
            .method(method)
            .uri(gw.url("/ok"))
            .body(Full::<Bytes>::default())
            .expect("request");
        assert_eq!(send(&client, request).await.status, 200);
    }

    let text = get(&gw.admin_url("/metrics")).await.body;
    let expect = |prefix: &str, value: f64| {
        assert_eq!(metric(&text, prefix), Some(value), "{prefix} in:\n{text}");
    };
    expect(
        "gateway_requests_total{route=\"ok\",method=\"GET\",status=\"200\"}",
        3.0,
    );
    expect(
        "gateway_requests_total{route=\"fail\",method=\"GET\",status=\"500\"}",
        2.0,
    );
    expect(
        "gateway_requests_total{route=\"-\",method=\"GET\",status=\"404\"}",
        1.0,
    );
    expect(
        "gateway_requests_total{route=\"ok\",method=\"OTHER\",status=\"200\"}",
        2.0,
    );
    assert!(!text.contains("BREW"), "{text}");
    expect("gateway_request_duration_seconds_count{route=\"ok\"}", 5.0);
    expect(
        "gateway_upstream_duration_seconds_count{upstream=\"api\"}",
        5.0,
    );
    expect(
        "gateway_plugin_duration_seconds_count{plugin=\"headers\",phase=\"request\"}",
        5.0,
    );
    let trap = text
        .lines()
        .find(|l| l.starts_with("gateway_plugin_failures_total{") && l.contains("kind=\"trap\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok());
    assert_eq!(trap, Some(2.0), "{text}");
    assert!(
        text.contains("gateway_plugin_idle_instances{route=\"ok\",plugin=\"headers\"}"),
        "{text}"
    );
    assert!(
        text.ends_with("# EOF\n"),
        "OpenMetrics text ends with # EOF"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_are_continued_or_started_and_logged() {
    let upstream = Upstream::start("api").await;
    let gw = config(&upstream).start();
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let request = Request::get(gw.url("/ok"))
        .header("traceparent", incoming)
        .body(Full::<Bytes>::default())
        .expect("request");
    let reply = send(&client(), request).await;
    let sent = reply.json()["headers"]["traceparent"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{sent}"
    );
    assert!(sent.ends_with("-01"));
    assert!(
        !sent.contains("00f067aa0ba902b7"),
        "the gateway's own span is the parent"
    );

    let fresh = get(&gw.url("/ok")).await.json()["headers"]["traceparent"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(fresh.len(), 55, "{fresh}");
    let trace_id = &fresh[3..35];
    let log = gw.log();
    assert!(log.contains(&format!("trace_id={trace_id}")), "{log}");
    assert!(log.contains("upstream_micros="), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_turns_off_while_draining() {
    let upstream = Upstream::start("api").await;
    let gw = config(&upstream).start();
    assert_eq!(get(&gw.admin_url("/readyz")).await.status, 200);
    let url = gw.url("/slow/1500");
    let in_flight = tokio::spawn(async move { get(&url).await });
    upstream.wait_for_a_hit().await;
    gw.signal("TERM");
    assert!(
        gw.turns_not_ready(Duration::from_secs(1)).await,
        "/readyz never said 503 while draining"
    );
    assert_eq!(in_flight.await.expect("in flight").status, 200);
}

/// One request on a kept-alive connection; the answer, or `None` when the
/// connection is closed without one.
async fn ask(stream: &mut tokio::net::TcpStream, request: &[u8]) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(request).await.ok()?;
    let mut buffer = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
        .await
        .expect("an answer or a close within 5 s")
        .ok()?;
    (read > 0).then(|| String::from_utf8_lossy(&buffer[..read]).into_owned())
}

/// Waits (up to 5 s) until a new connection from `connect` gets `request`
/// answered 200: a place given back is found again.
async fn served_again<F, Fut>(connect: F, request: &[u8])
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = tokio::net::TcpStream>,
{
    let started = Instant::now();
    loop {
        let mut again = connect().await;
        if ask(&mut again, request)
            .await
            .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
        {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no room after a close"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_max_connections_are_closed_on_arrival() {
    let upstream = Upstream::start("api").await;
    let gw = Config::new()
        .server(json!({ "max_connections": 2 }))
        .admin()
        .upstream("api", &upstream)
        .route(Route::new("all", "/{*rest}").upstream("api"))
        .start();
    let request = b"GET /x HTTP/1.1\r\nhost: gw\r\n\r\n";
    let connect = || tokio::net::TcpStream::connect(gw.addr);
    // Two connections that have not sent their first request yet: new
    // ones, which no newcomer can close to make room (kept-alive idle
    // ones would be: edge.rs tests that).
    let mut first = connect().await.expect("connect");
    let mut second = connect().await.expect("connect");
    let counted = std::time::Instant::now();
    while metric(
        &get(&gw.admin_url("/metrics")).await.body,
        "gateway_connections ",
    ) != Some(2.0)
    {
        assert!(
            counted.elapsed() < Duration::from_secs(5),
            "never counted two"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Two are open: a third is closed without an answer.
    let mut third = connect().await.expect("the kernel accepts");
    assert_eq!(ask(&mut third, request).await, None);
    // Those open are served on.
    for open in [&mut first, &mut second] {
        assert!(
            ask(open, request)
                .await
                .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
        );
    }
    let text = get(&gw.admin_url("/metrics")).await.body;
    assert_eq!(metric(&text, "gateway_connections "), Some(2.0), "{text}");
    assert_eq!(
        metric(&text, "gateway_connections_refused_total"),
        Some(1.0),
        "{text}"
    );
    assert!(gw.log().contains("max_connections reached"), "{}", gw.log());

    // One closes: there is room again.
    drop(first);
    served_again(|| async { connect().await.expect("connect") }, request).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_cannot_hold_more_than_max_connections_per_ip() {
    let gw = Config::new()
        .server(json!({ "max_connections_per_ip": 2, "trusted_proxies": ["127.0.0.3"] }))
        .admin()
        .route(
            Route::new("hello", "/hello")
                .plugin(Plugin::new("respond").config(json!({ "status": 200, "body": "hi" }))),
        )
        .start();
    let request = b"GET /hello HTTP/1.1\r\nhost: gw\r\n\r\n";
    // Connections from 127.0.0.1 and from 127.0.0.2 (another client on loopback).
    let from = |ip: [u8; 4]| {
        let addr = gw.addr;
        async move {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket
                .bind(std::net::SocketAddr::from((ip, 0)))
                .expect("bind the client address");
            socket.connect(addr).await.expect("connect")
        }
    };
    let served = |answer: Option<String>| answer.is_some_and(|a| a.starts_with("HTTP/1.1 200"));
    let mut first = from([127, 0, 0, 1]).await;
    let mut second = from([127, 0, 0, 1]).await;
    assert!(served(ask(&mut first, request).await));
    assert!(served(ask(&mut second, request).await));
    // A third from the same address is closed without an answer.
    let mut third = from([127, 0, 0, 1]).await;
    assert_eq!(ask(&mut third, request).await, None);
    // Another client is served meanwhile, and so are the two open ones.
    let mut other = from([127, 0, 0, 2]).await;
    assert!(served(ask(&mut other, request).await));
    assert!(served(ask(&mut first, request).await));
    // A trusted proxy (a load balancer, many clients) is not limited.
    let mut balanced = Vec::new();
    for _ in 0..3 {
        let mut stream = from([127, 0, 0, 3]).await;
        assert!(served(ask(&mut stream, request).await));
        balanced.push(stream);
    }
    let text = get(&gw.admin_url("/metrics")).await.body;
    assert_eq!(
        metric(
            &text,
            "gateway_connections_refused_total{limit=\"max_connections_per_ip\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        gw.log().contains("max_connections_per_ip reached"),
        "{}",
        gw.log()
    );
    // One closes: the client has room again.
    drop(first);
    served_again(|| from([127, 0, 0, 1]), request).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_send_nothing_are_closed_after_header_read_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = Config::new()
        .server(json!({ "header_read_timeout": "1s", "max_connections": 2 }))
        .route(
            Route::new("hello", "/hello")
                .plugin(Plugin::new("respond").config(json!({ "status": 200, "body": "hi" }))),
        )
        .start();
    // Silent, and stalled on the first byte of the HTTP/2 preface: both hold
    // a place until the deadline closes them.
    let mut silent = tokio::net::TcpStream::connect(gw.addr)
        .await
        .expect("connect");
    let mut stalled = tokio::net::TcpStream::connect(gw.addr)
        .await
        .expect("connect");
    stalled.write_all(b"P").await.expect("write");
    let started = Instant::now();
    for stream in [&mut silent, &mut stalled] {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte))
            .await
            .expect("closed within 10 s");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    assert!(started.elapsed() >= Duration::from_millis(900));
    // Their places are free again.
    let reply = get(&gw.url("/hello")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "hi");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_panic_is_one_readable_log_line() {
    let upstream = Upstream::start("api").await;
    let gw = config(&upstream).start();
    let reply = get(&gw.url("/fail")).await;
    assert_eq!(reply.status, 500);
    // The access line comes after the failure's: wait for it.
    let started = Instant::now();
    while !gw.log().contains("status=500") {
        assert!(started.elapsed() < Duration::from_secs(5), "{}", gw.log());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let log = gw.log();
    let panics: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("misbehave: trap requested"))
        .collect();
    assert_eq!(panics.len(), 1, "said once:\n{log}");
    let line = panics[0];
    assert!(line.contains(r#"plugin="misbehave""#), "{line}");
    assert!(
        line.contains("panicked at tests/plugins/misbehave/src/lib.rs"),
        "{line}"
    );
    assert!(
        !log.contains("backtrace"),
        "no wasm backtrace at info:\n{log}"
    );
}
