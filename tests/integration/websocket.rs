//! WebSocket upgrades through the gateway: a real upstream that switches
//! protocols (hyper, with upgrades), and a client speaking raw HTTP/1.1 on a
//! TCP socket, so every byte the gateway passes is checked.

use crate::support::config::{Config, Plugin, Route};
use crate::support::{Gateway, Upstream, get, serve_http1};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An upstream that accepts WebSocket handshakes. After switching it sends
/// one line, the JSON object of the handshake's headers, then echoes every
/// byte until the client closes its end, then sends `bye` and closes. `/refuse`
/// answers 403 instead; a request without `Upgrade` gets 200 and the same
/// JSON. Paths ending in `/always-101` switch whatever was asked, and
/// `/h2c` switches to another protocol than the one asked for.
struct WsUpstream {
    addr: SocketAddr,
    handshakes: Arc<AtomicUsize>,
}

impl WsUpstream {
    async fn start() -> WsUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let handshakes = Arc::new(AtomicUsize::new(0));
        let counter = handshakes.clone();
        serve_http1(
            listener,
            None,
            service_fn(move |req| answer(req, counter.clone())),
        );
        WsUpstream { addr, handshakes }
    }
}

async fn answer(
    mut req: Request<Incoming>,
    handshakes: Arc<AtomicUsize>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let seen: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
        .collect();
    let seen = serde_json::Value::Object(seen).to_string();
    if req.uri().path() == "/refuse" {
        let mut refused = Response::new(Full::new(Bytes::from_static(b"no sockets here")));
        *refused.status_mut() = StatusCode::FORBIDDEN;
        return Ok(refused);
    }
    let always = req.uri().path().ends_with("/always-101");
    if !req.headers().contains_key(http::header::UPGRADE) && !always {
        return Ok(Response::new(Full::new(Bytes::from(seen))));
    }
    let protocol = if req.uri().path().ends_with("/h2c") {
        "h2c"
    } else {
        "websocket"
    };
    handshakes.fetch_add(1, Ordering::SeqCst);
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut io = TokioIo::new(upgraded);
        if io.write_all(format!("{seen}\n").as_bytes()).await.is_err() {
            return;
        }
        let mut buffer = vec![0u8; 8192];
        loop {
            match io.read(&mut buffer).await {
                Ok(0) => break,
                Err(_) => return,
                Ok(n) => {
                    if io.write_all(&buffer[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
        // The client closed its end; this one is still open.
        let _ = io.write_all(b"bye").await;
        let _ = io.shutdown().await;
    });
    let mut switching = Response::new(Full::default());
    *switching.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = switching.headers_mut();
    headers.insert("upgrade", protocol.parse().expect("value"));
    headers.insert("connection", "Upgrade".parse().expect("value"));
    headers.insert(
        "sec-websocket-accept",
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".parse().expect("value"),
    );
    Ok(switching)
}

/// A client connection after its handshake: the response head, and the
/// socket with whatever followed the head.
struct Handshake {
    status: u16,
    head: String,
    stream: TcpStream,
    after_head: Vec<u8>,
}

/// Sends a WebSocket handshake for `path` with `extra` header lines.
async fn handshake(gateway: &Gateway, path: &str, extra: &str) -> Handshake {
    let addr = gateway.url("");
    let mut stream = TcpStream::connect(addr.trim_start_matches("http://"))
        .await
        .expect("connect");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: chat.example\r\nConnection: keep-alive, Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut read = Vec::new();
    let end = loop {
        if let Some(at) = read.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let mut chunk = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("response head in time")
            .expect("read");
        assert!(
            n > 0,
            "connection closed before the response head: {read:?}"
        );
        read.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&read[..end]).to_lowercase();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("status line");
    Handshake {
        status,
        head,
        stream,
        after_head: read[end..].to_vec(),
    }
}

impl Handshake {
    /// Reads until `want` bytes have arrived after the head.
    async fn read_exact(&mut self, want: usize) -> Vec<u8> {
        while self.after_head.len() < want {
            let mut chunk = vec![0u8; 16 * 1024];
            let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk))
                .await
                .expect("bytes in time")
                .expect("read");
            assert!(
                n > 0,
                "closed after {} of {want} bytes",
                self.after_head.len()
            );
            self.after_head.extend_from_slice(&chunk[..n]);
        }
        self.after_head.drain(..want).collect()
    }

    /// The upstream's first line: the handshake headers it saw.
    async fn upstream_saw(&mut self) -> serde_json::Value {
        loop {
            if let Some(end) = self.after_head.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.after_head.drain(..=end).collect();
                return serde_json::from_slice(&line).expect("json line");
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk))
                .await
                .expect("line in time")
                .expect("read");
            assert!(n > 0, "closed before the upstream's first line");
            self.after_head.extend_from_slice(&chunk[..n]);
        }
    }

    /// Waits for the gateway to close the connection; how long it took.
    async fn closed_within(&mut self, limit: Duration) -> Duration {
        let started = Instant::now();
        let mut rest = Vec::new();
        tokio::time::timeout(limit, self.stream.read_to_end(&mut rest))
            .await
            .expect("closed in time")
            .expect("read");
        started.elapsed()
    }
}

/// The WebSocket route `chat` (`/chat/{*rest}`), behind `key-auth`.
fn chat() -> Route {
    Route::new("chat", "/chat/{*rest}")
        .upstream("chat")
        .with("websocket", json!(true))
        .plugin(Plugin::new("key-auth"))
}

/// Two WebSockets at most, the upstreams `chat` (at `ws`) and `plain`, the
/// consumer alice, and the routes `chat`, `no-upgrades` (`/plain/{*rest}`,
/// to `chat` without upgrades) and `other` (to `plain`).
fn config(ws: &SocketAddr, plain: &SocketAddr, chat: Route) -> Config {
    Config::new()
        .server(json!({ "max_websocket_connections": 2 }))
        .admin()
        .upstream("chat", *ws)
        .upstream("plain", *plain)
        .consumer(json!({ "name": "alice", "keys": [{ "plaintext": "alice-key-0000000001" }] }))
        .route(chat)
        .route(Route::new("no-upgrades", "/plain/{*rest}").upstream("chat"))
        .route(Route::new("other", "/other").upstream("plain"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_handshakes_pass_the_pipeline_then_bytes_flow_both_ways() {
    let ws = WsUpstream::start().await;
    let plain = Upstream::start("plain").await;
    let gw = config(&ws.addr, &plain.addr, chat()).start();

    // The request phase runs first: no key, no upgrade, no upstream contact.
    let refused = handshake(&gw, "/chat/room", "").await;
    assert_eq!(refused.status, 401, "{}", refused.head);
    assert_eq!(ws.handshakes.load(Ordering::SeqCst), 0);

    let mut chat = handshake(&gw, "/chat/room", "x-api-key: alice-key-0000000001\r\n").await;
    assert_eq!(chat.status, 101, "{}", chat.head);
    assert!(chat.head.contains("upgrade: websocket"), "{}", chat.head);
    assert!(chat.head.contains("connection: upgrade"), "{}", chat.head);
    assert!(
        chat.head
            .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{}",
        chat.head
    );
    assert!(chat.head.contains("x-request-id: "), "{}", chat.head);

    let saw = chat.upstream_saw().await;
    assert_eq!(saw["upgrade"], "websocket", "{saw}");
    assert_eq!(saw["connection"], "upgrade", "{saw}");
    assert_eq!(
        saw["sec-websocket-key"], "dGhlIHNhbXBsZSBub25jZQ==",
        "{saw}"
    );
    assert_eq!(saw["x-consumer-name"], "alice", "{saw}");
    assert!(saw.get("x-api-key").is_none(), "the key is stripped: {saw}");
    assert!(saw["x-forwarded-for"].is_string(), "{saw}");

    // Small and large messages come back byte for byte.
    chat.stream.write_all(b"hello").await.expect("write");
    assert_eq!(chat.read_exact(5).await, b"hello");
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let (mut reader, mut writer) = chat.stream.into_split();
    let sent = big.clone();
    let send = tokio::spawn(async move {
        writer.write_all(&sent).await.expect("write");
        writer
    });
    let mut echoed = vec![0u8; big.len()];
    tokio::time::timeout(Duration::from_secs(20), reader.read_exact(&mut echoed))
        .await
        .expect("echo in time")
        .expect("read");
    assert!(echoed == big, "the large message came back changed");

    // Open tunnels are counted, and ordinary requests carry on meanwhile.
    let metrics = get(&gw.admin_url("/metrics")).await.body;
    assert!(
        metrics.contains("gateway_websocket_connections 1"),
        "{metrics}"
    );
    assert_eq!(get(&gw.url("/other")).await.status, 200);

    // The client closes its end: the upstream sees it, still answers on its
    // own end, then closes too, and the gateway ends the connection.
    let mut writer = send.await.expect("writer");
    writer.shutdown().await.expect("shutdown");
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), reader.read_to_end(&mut rest))
        .await
        .expect("closed in time")
        .expect("read");
    assert_eq!(rest, b"bye");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let metrics = get(&gw.admin_url("/metrics")).await.body;
        if metrics.contains("gateway_websocket_connections 0") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tunnel still counted:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_without_websocket_forward_the_handshake_as_a_plain_request() {
    let ws = WsUpstream::start().await;
    let plain = Upstream::start("plain").await;
    let gw = config(&ws.addr, &plain.addr, chat()).start();

    // Not enabled on the route: forwarded as a plain request, as nginx does.
    let mut plain_route = handshake(&gw, "/plain/room", "").await;
    assert_eq!(plain_route.status, 200, "{}", plain_route.head);
    let length: usize = plain_route
        .head
        .lines()
        .find_map(|line| line.strip_prefix("content-length: "))
        .and_then(|n| n.trim().parse().ok())
        .expect("content-length");
    let body = plain_route.read_exact(length).await;
    let saw: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert!(saw.get("upgrade").is_none(), "{saw}");
    assert_eq!(ws.handshakes.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_refusing_the_upgrade_is_answered_as_usual() {
    let ws = WsUpstream::start().await;
    let plain = Upstream::start("plain").await;
    let gw = config(&ws.addr, &plain.addr, chat().strip_prefix("/chat")).start();
    let mut refused = handshake(&gw, "/chat/refuse", "x-api-key: alice-key-0000000001\r\n").await;
    assert_eq!(refused.status, 403, "{}", refused.head);
    assert_eq!(refused.read_exact(15).await, b"no sockets here");
    assert!(
        !refused.head.contains("upgrade: websocket"),
        "{}",
        refused.head
    );
    assert_eq!(ws.handshakes.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_websocket_is_closed_after_the_idle_timeout() {
    let ws = WsUpstream::start().await;
    let plain = Upstream::start("plain").await;
    let gw = config(
        &ws.addr,
        &plain.addr,
        chat().with("websocket_idle_timeout", json!("400ms")),
    )
    .start();
    let mut chat = handshake(&gw, "/chat/room", "x-api-key: alice-key-0000000001\r\n").await;
    assert_eq!(chat.status, 101, "{}", chat.head);
    chat.upstream_saw().await;
    // Traffic keeps it open past the timeout...
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        chat.stream.write_all(b"tick").await.expect("write");
        assert_eq!(chat.read_exact(4).await, b"tick");
    }
    // ...and silence closes it.
    let took = chat.closed_within(Duration::from_secs(10)).await;
    assert!(took >= Duration::from_millis(300), "closed after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_protocols_is_refused_unless_it_is_the_websocket_asked_for() {
    let ws = WsUpstream::start().await;
    let plain = Upstream::start("plain").await;
    let gw = config(&ws.addr, &plain.addr, chat()).start();
    // No upgrade was asked of this upstream (the route does not pass them).
    let unasked = handshake(&gw, "/plain/always-101", "").await;
    assert_eq!(unasked.status, 502, "{}", unasked.head);
    // Asked for WebSocket, switched to something else.
    let other = handshake(&gw, "/chat/h2c", "x-api-key: alice-key-0000000001\r\n").await;
    assert_eq!(other.status, 502, "{}", other.head);
    let metrics = get(&gw.admin_url("/metrics")).await.body;
    assert!(
        metrics.contains("gateway_websocket_connections 0"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_websockets_are_capped_by_max_websocket_connections() {
    let ws = WsUpstream::start().await;
    let plain = Upstream::start("plain").await;
    let gw = config(&ws.addr, &plain.addr, chat()).start();
    let key = "x-api-key: alice-key-0000000001\r\n";
    let mut first = handshake(&gw, "/chat/a", key).await;
    let second = handshake(&gw, "/chat/b", key).await;
    assert_eq!((first.status, second.status), (101, 101));
    let third = handshake(&gw, "/chat/c", key).await;
    assert_eq!(third.status, 503, "{}", third.head);
    assert!(third.head.contains("application/json"), "{}", third.head);
    // Ordinary requests are not limited by it.
    assert_eq!(get(&gw.url("/other")).await.status, 200);
    // A closed tunnel frees its place.
    first.upstream_saw().await;
    first.stream.shutdown().await.expect("shutdown");
    first.closed_within(Duration::from_secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let again = handshake(&gw, "/chat/d", key).await;
        if again.status == 101 {
            break;
        }
        assert_eq!(again.status, 503, "{}", again.head);
        assert!(Instant::now() < deadline, "the place was never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_websocket_keeps_its_place_under_max_connections_per_ip() {
    let ws = WsUpstream::start().await;
    let plain = Upstream::start("plain").await;
    let gw = config(&ws.addr, &plain.addr, chat())
        .server(json!({ "max_connections_per_ip": 1 }))
        .start();
    let key = "x-api-key: alice-key-0000000001\r\n";
    // A request on a new connection: whether it is answered at all.
    let answered = || async {
        let Ok(mut stream) = TcpStream::connect(gw.addr).await else {
            return false;
        };
        if stream
            .write_all(b"GET /other HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n")
            .await
            .is_err()
        {
            return false;
        }
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
        answer.starts_with(b"HTTP/1.1 200")
    };
    let mut tunnel = handshake(&gw, "/chat/a", key).await;
    assert_eq!(tunnel.status, 101, "{}", tunnel.head);
    tunnel.upstream_saw().await;
    // The upgraded connection still counts: this client has no room.
    assert!(
        !answered().await,
        "a second connection while the tunnel is open"
    );
    tunnel.stream.shutdown().await.expect("shutdown");
    tunnel.closed_within(Duration::from_secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !answered().await {
        assert!(Instant::now() < deadline, "the place was never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
