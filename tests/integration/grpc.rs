//! HTTP/2 upstreams (`protocol = "http2"`), the way gRPC uses them: requests
//! and responses streamed both ways at once, and trailers carried through.
//! The upstreams are real hyper HTTP/2 servers, in cleartext (h2c) and over
//! TLS with ALPN.

use crate::support::config::{Config, Plugin, Pool, Route};
use crate::support::{Gateway, client, send};
use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;

/// A body fed frame by frame through a channel; it ends when the sender is dropped.
struct ChannelBody(mpsc::Receiver<Frame<Bytes>>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|frame| frame.map(Ok))
    }
}

fn channel_body() -> (mpsc::Sender<Frame<Bytes>>, ChannelBody) {
    let (tx, rx) = mpsc::channel(8);
    (tx, ChannelBody(rx))
}

/// The echo service: answers at once with what it saw of the request in
/// `x-seen-*` headers, then echoes every data frame as `echo:DATA` while the
/// request streams, and ends with gRPC-style trailers.
async fn echo(
    request: Request<Incoming>,
) -> Result<Response<ChannelBody>, std::convert::Infallible> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string()
    };
    let seen = [
        ("x-seen-version", format!("{:?}", request.version())),
        ("x-seen-te", header("te")),
        ("x-seen-host", header("host")),
        (
            "x-seen-authority",
            request
                .uri()
                .authority()
                .map_or("-".to_string(), |a| a.to_string()),
        ),
        ("x-seen-content-type", header("content-type")),
    ];
    let (tx, body) = channel_body();
    let mut incoming = request.into_body();
    tokio::spawn(async move {
        let mut frames = 0;
        while let Some(Ok(frame)) = incoming.frame().await {
            // An empty DATA frame may carry the end of the stream.
            if let Some(data) = frame.into_data().ok().filter(|d| !d.is_empty()) {
                frames += 1;
                let echoed = [b"echo:".as_slice(), &data].concat();
                if tx.send(Frame::data(Bytes::from(echoed))).await.is_err() {
                    return;
                }
            }
        }
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        trailers.insert(
            "grpc-message",
            http::HeaderValue::from_str(&format!("{frames} messages")).expect("value"),
        );
        let _ = tx.send(Frame::trailers(trailers)).await;
    });
    let mut response = Response::new(body);
    for (name, value) in seen {
        response.headers_mut().insert(
            name,
            http::HeaderValue::from_str(&value).expect("header value"),
        );
    }
    Ok(response)
}

/// Serves [`echo`] over HTTP/2 on every connection `accept` hands over.
fn serve_h2<S>(stream: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(stream), hyper::service::service_fn(echo))
            .await;
    });
}

/// A cleartext HTTP/2 (h2c, prior knowledge) echo upstream.
async fn h2c_upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            serve_h2(stream);
        }
    });
    addr
}

/// The HTTP/2 upstream `grpc` at `target`.
fn grpc(target: impl ToString) -> Pool {
    Pool::new([target]).protocol("http2")
}

/// A gateway with `upstream` as `grpc` and one catch-all route to it.
fn config(upstream: Pool) -> Config {
    Config::new()
        .upstream("grpc", upstream)
        .route(Route::new("grpc", "/{*rest}").upstream("grpc"))
}

/// An HTTP/2 (prior knowledge) connection to the gateway.
async fn h2_client(gw: &Gateway) -> hyper::client::conn::http2::SendRequest<ChannelBody> {
    let addr = gw
        .url("/")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("h2 handshake");
    tokio::spawn(connection);
    sender
}

fn grpc_request(gw: &Gateway, body: ChannelBody) -> Request<ChannelBody> {
    Request::post(gw.url("/echo.Echo/Chat"))
        .version(http::Version::HTTP_2)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(body)
        .expect("request")
}

/// One call with a single `message` (or none) on `sender`: its response.
async fn call(
    sender: &mut hyper::client::conn::http2::SendRequest<ChannelBody>,
    gw: &Gateway,
    message: Option<&'static [u8]>,
) -> Response<Incoming> {
    let (tx, body) = channel_body();
    if let Some(message) = message {
        tx.send(Frame::data(Bytes::from_static(message)))
            .await
            .expect("send");
    }
    drop(tx);
    sender
        .send_request(grpc_request(gw, body))
        .await
        .expect("response")
}

/// The next frame of `body`, within five seconds (a proxy that buffers
/// would never hand it over while the request is still open).
async fn next_frame(body: &mut Incoming) -> Frame<Bytes> {
    tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("a frame within 5 s: the stream is buffered somewhere")
        .expect("a frame, not the end")
        .expect("a frame, not an error")
}

/// Ends the client's side of a call (`tx`): the rest of `body` is its
/// trailers, saying the call succeeded. Returns them.
async fn ends_ok(tx: mpsc::Sender<Frame<Bytes>>, body: &mut Incoming) -> HeaderMap {
    drop(tx);
    let trailers = next_frame(body)
        .await
        .into_trailers()
        .expect("trailers after the data");
    assert_eq!(
        trailers.get("grpc-status").map(|v| v.as_bytes()),
        Some(b"0".as_slice())
    );
    trailers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_style_stream_flows_both_ways_with_its_trailers() {
    let upstream = h2c_upstream().await;
    let gw = config(grpc(upstream)).start();
    let mut sender = h2_client(&gw).await;
    let (tx, body) = channel_body();
    tx.send(Frame::data(Bytes::from_static(b"ping-1")))
        .await
        .expect("send");
    let response = tokio::time::timeout(
        Duration::from_secs(5),
        sender.send_request(grpc_request(&gw, body)),
    )
    .await
    .expect("the response head while the request is still open")
    .expect("response");
    assert_eq!(response.status(), 200);
    let seen = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    // Spoken to in HTTP/2, with the target's authority, and told the client
    // takes trailers; no Host beside :authority.
    assert_eq!(seen("x-seen-version"), "HTTP/2.0");
    assert_eq!(seen("x-seen-authority"), upstream.to_string());
    assert_eq!(seen("x-seen-host"), "-");
    assert_eq!(seen("x-seen-te"), "trailers");
    assert_eq!(seen("x-seen-content-type"), "application/grpc");

    // Ping-pong: each message is echoed before the next one is sent.
    let mut body = response.into_body();
    assert_eq!(
        next_frame(&mut body).await.into_data().ok(),
        Some(Bytes::from_static(b"echo:ping-1"))
    );
    tx.send(Frame::data(Bytes::from_static(b"ping-2")))
        .await
        .expect("send");
    assert_eq!(
        next_frame(&mut body).await.into_data().ok(),
        Some(Bytes::from_static(b"echo:ping-2"))
    );
    let trailers = ends_ok(tx, &mut body).await;
    assert_eq!(
        trailers.get("grpc-message").map(|v| v.as_bytes()),
        Some(b"2 messages".as_slice())
    );

    // Many streams at once on the one client connection, each its own.
    let calls = (0..20).map(|i| {
        let mut sender = sender.clone();
        let gw_request = grpc_request(&gw, {
            let (tx, body) = channel_body();
            tokio::spawn(async move {
                let _ = tx.send(Frame::data(Bytes::from(format!("call-{i}")))).await;
            });
            body
        });
        async move {
            let response = sender.send_request(gw_request).await.expect("response");
            let collected = response.into_body().collect().await.expect("body");
            let status = collected
                .trailers()
                .and_then(|t| t.get("grpc-status"))
                .cloned();
            (i, collected.to_bytes(), status)
        }
    });
    for (i, bytes, status) in futures_join_all(calls).await {
        assert_eq!(bytes, Bytes::from(format!("echo:call-{i}")));
        assert_eq!(status.as_ref().map(|v| v.as_bytes()), Some(b"0".as_slice()));
    }
}

/// Runs the futures concurrently and gives their outputs in order.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(handles.len());
    for handle in handles {
        outputs.push(handle.await.expect("task"));
    }
    outputs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_client_reaches_an_http2_upstream() {
    let upstream = h2c_upstream().await;
    let gw = config(grpc(upstream)).start();
    let request = Request::post(gw.url("/anything"))
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(b"hello")))
        .expect("request");
    let reply = send(&client(), request).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body, "echo:hello");
    assert_eq!(reply.header("x-seen-version"), Some("HTTP/2.0"));
    assert_eq!(reply.header("x-seen-te"), Some("trailers"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_upstream_over_tls_is_reached_through_alpn() {
    // Like a gRPC server: HTTP/2 or nothing.
    let (tls, ca) = crate::support::localhost_tls(&[b"h2"]);
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(stream) = acceptor.accept(stream).await {
                    let alpn = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
                    assert_eq!(alpn.as_deref(), Some(b"h2".as_slice()), "ALPN chose h2");
                    serve_h2(stream);
                }
            });
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ca.pem"), ca).expect("ca");
    config(grpc(format!("https://localhost:{port}")).ca_file("ca.pem"))
        .write(dir.path().join("gateway.toml"));
    let gw = Gateway::start_at(&dir.path().join("gateway.toml"));

    let mut sender = h2_client(&gw).await;
    let response = call(&mut sender, &gw, Some(b"over tls")).await;
    assert_eq!(response.status(), 200, "{}", gw.log());
    assert_eq!(
        response
            .headers()
            .get("x-seen-authority")
            .map(|v| v.as_bytes()),
        Some(format!("localhost:{port}").as_bytes())
    );
    let collected = response.into_body().collect().await.expect("body");
    let status = collected
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .cloned();
    assert_eq!(collected.to_bytes(), Bytes::from_static(b"echo:over tls"));
    assert_eq!(status.as_ref().map(|v| v.as_bytes()), Some(b"0".as_slice()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_survive_a_plugin_that_reads_the_body_and_leaves_it() {
    let upstream = h2c_upstream().await;
    // The cache reads response bodies; a POST it passes by untouched.
    let gw = Config::new()
        .upstream("grpc", grpc(upstream))
        .route(
            Route::new("grpc", "/{*rest}")
                .upstream("grpc")
                .plugin(Plugin::new("cache")),
        )
        .start();
    let mut sender = h2_client(&gw).await;
    let response = call(&mut sender, &gw, Some(b"unary")).await;
    assert_eq!(response.status(), 200, "{}", gw.log());
    assert_eq!(
        response.headers().get("x-cache").map(|v| v.as_bytes()),
        Some(b"BYPASS".as_slice())
    );
    let collected = response.into_body().collect().await.expect("body");
    let trailers = collected.trailers().cloned();
    assert_eq!(collected.to_bytes(), Bytes::from_static(b"echo:unary"));
    assert_eq!(
        trailers
            .as_ref()
            .and_then(|t| t.get("grpc-message"))
            .map(|v| v.as_bytes()),
        Some(b"1 messages".as_slice()),
        "trailers: {trailers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_stops_answering_is_found_out_by_its_pings() {
    use std::sync::atomic::AtomicBool;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = h2c_upstream().await;
    // A relay in front of the target. Once `frozen`, the connections it
    // already carries swallow every byte and stay open, like a peer that
    // vanished without a FIN; new ones still work.
    let relay = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let relay_addr = relay.local_addr().expect("addr");
    let frozen = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicUsize::new(0));
    {
        let (frozen, opened) = (frozen.clone(), opened.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = relay.accept().await {
                opened.fetch_add(1, Ordering::SeqCst);
                let frozen = frozen.clone();
                let born_frozen = frozen.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    let pump = |mut from: tokio::net::tcp::OwnedReadHalf,
                                mut to: tokio::net::tcp::OwnedWriteHalf,
                                frozen: Arc<AtomicBool>| async move {
                        let mut buffer = vec![0u8; 16384];
                        loop {
                            let n = match from.read(&mut buffer).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            if frozen.load(Ordering::SeqCst) && !born_frozen {
                                std::future::pending::<()>().await;
                            }
                            if to.write_all(&buffer[..n]).await.is_err() {
                                return;
                            }
                        }
                    };
                    tokio::join!(
                        pump(client_read, server_write, frozen.clone()),
                        pump(server_read, client_write, frozen)
                    );
                });
            }
        });
    }
    let gw = config(
        grpc(relay_addr)
            .timeout("1s")
            .with("http2_keepalive", json!("500ms")),
    )
    // One worker thread: every request meets the same connections to the target.
    .server(json!({ "workers": 1 }))
    .start();
    let call = || async {
        let request = Request::post(gw.url("/echo.Echo/Unary"))
            .body(Full::new(Bytes::from_static(b"x")))
            .expect("request");
        send(&client(), request).await.status
    };
    assert_eq!(call().await, 200);
    assert_eq!(opened.load(Ordering::SeqCst), 1);
    frozen.store(true, Ordering::SeqCst);
    // The shared connection is dead: its unanswered ping closes it, and
    // requests get a new one.
    let started = std::time::Instant::now();
    let mut statuses = Vec::new();
    while statuses.last() != Some(&200) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still no answer after {:?}: {statuses:?}\n{}",
            started.elapsed(),
            gw.log()
        );
        statuses.push(call().await);
    }
    assert!(opened.load(Ordering::SeqCst) >= 2);
}

/// An h2c echo upstream that allows `streams` concurrent streams per
/// connection; counts the connections it accepted, and those open now.
async fn h2c_upstream_limited(streams: u32) -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let open = Arc::new(AtomicUsize::new(0));
    let (accepted_count, open_count) = (accepted.clone(), open.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            accepted_count.fetch_add(1, Ordering::SeqCst);
            open_count.fetch_add(1, Ordering::SeqCst);
            let open_count = open_count.clone();
            tokio::spawn(async move {
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .max_concurrent_streams(streams)
                    .serve_connection(TokioIo::new(stream), hyper::service::service_fn(echo))
                    .await;
                open_count.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (addr, accepted, open)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_on_a_cold_gateway_opens_one_connection() {
    let (upstream, accepted, _) = h2c_upstream_limited(100).await;
    let gw = config(grpc(upstream)).start();
    let sender = h2_client(&gw).await;
    let calls = (0..30).map(|i| {
        let mut sender = sender.clone();
        let (tx, body) = channel_body();
        drop(tx);
        let request = grpc_request(&gw, body);
        async move {
            let response = sender.send_request(request).await.expect("response");
            (i, response.status())
        }
    });
    for (i, status) in futures_join_all(calls).await {
        assert_eq!(status, 200, "call {i}");
    }
    // One per worker at most (two workers here), not one per request.
    assert!(
        accepted.load(Ordering::SeqCst) <= 2,
        "{} connections for 30 concurrent calls",
        accepted.load(Ordering::SeqCst)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_streams_do_not_starve_other_calls_another_connection_opens() {
    let (upstream, connections, open_now) = h2c_upstream_limited(2).await;
    let gw = config(
        grpc(upstream)
            .timeout("2s")
            .with("http2_max_streams", json!(2))
            .with("idle_timeout", json!("1s")),
    )
    // One worker thread: every request meets the same connections to the target.
    .server(json!({ "workers": 1 }))
    .start();
    let mut sender = h2_client(&gw).await;
    // Three long-lived streams (watches, server streams) stay open.
    let mut open = Vec::new();
    for i in 0..3 {
        let (tx, body) = channel_body();
        tx.send(Frame::data(Bytes::from(format!("watch-{i}"))))
            .await
            .expect("send");
        let response = sender
            .send_request(grpc_request(&gw, body))
            .await
            .expect("response");
        assert_eq!(response.status(), 200, "watch {i}: {}", gw.log());
        let mut body = response.into_body();
        assert_eq!(
            next_frame(&mut body).await.into_data().ok(),
            Some(Bytes::from(format!("echo:watch-{i}")))
        );
        open.push((tx, body));
    }
    // Two streams per connection: the third needed a second connection.
    assert_eq!(connections.load(Ordering::SeqCst), 2);
    // A unary call meanwhile is answered at once, not after a stream ends.
    let response = call(&mut sender, &gw, Some(b"unary")).await;
    assert_eq!(response.status(), 200, "{}", gw.log());
    let collected = response.into_body().collect().await.expect("body");
    assert_eq!(collected.to_bytes(), Bytes::from_static(b"echo:unary"));
    // Once the watches end, their streams are free again: more calls need
    // no new connection.
    drop(open);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = connections.load(Ordering::SeqCst);
    for _ in 0..4 {
        let response = call(&mut sender, &gw, None).await;
        assert_eq!(response.status(), 200);
        let _ = response.into_body().collect().await;
    }
    assert_eq!(connections.load(Ordering::SeqCst), before);
    // The extra connection, idle past idle_timeout, is closed; the first stays.
    let started = std::time::Instant::now();
    while open_now.load(Ordering::SeqCst) > 1 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{} connections still open",
            open_now.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(open_now.load(Ordering::SeqCst), 1);
}

/// A prior-knowledge HTTP/2 connection to the gateway, and the task driving
/// it: the task ends when the gateway closes the connection.
async fn h2_connection(
    gw: &Gateway,
) -> (
    hyper::client::conn::http2::SendRequest<ChannelBody>,
    tokio::task::JoinHandle<()>,
) {
    let tcp = tokio::net::TcpStream::connect(gw.addr)
        .await
        .expect("connect");
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("h2 handshake");
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    (sender, task)
}

/// How long `task` (a connection's) runs on from now, up to `limit`.
async fn closes_after(task: tokio::task::JoinHandle<()>, limit: Duration) -> Duration {
    let started = std::time::Instant::now();
    tokio::time::timeout(limit, task)
        .await
        .expect("the gateway closes the connection")
        .expect("connection task");
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_client_connections_are_closed_but_not_while_a_stream_is_open() {
    let upstream = h2c_upstream().await;
    let gw = config(grpc(upstream))
        .server(json!({ "idle_timeout": "1s" }))
        .start();

    // A connection that never sends a request is closed after idle_timeout.
    let (_silent, silent) = h2_connection(&gw).await;

    // An HTTP/1.1 connection is left to header_read_timeout (10 s here):
    // idle past idle_timeout, it still serves.
    async fn h1_request(stream: &mut tokio::net::TcpStream) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream
            .write_all(b"GET /x HTTP/1.1\r\nhost: gw\r\n\r\n")
            .await
            .expect("write");
        // The echo's answer is chunked (it ends with trailers): read to its
        // last chunk, so the next request's answer starts clean.
        let mut answer = Vec::new();
        let mut buffer = vec![0u8; 4096];
        while !answer.ends_with(b"0\r\n\r\n") {
            let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
                .await
                .expect("an answer within 5 s")
                .expect("read");
            if read == 0 {
                break;
            }
            answer.extend_from_slice(&buffer[..read]);
        }
        String::from_utf8_lossy(&answer).into_owned()
    }
    let mut h1 = tokio::net::TcpStream::connect(gw.addr)
        .await
        .expect("connect");
    assert!(h1_request(&mut h1).await.starts_with("HTTP/1.1 200"));

    // One that made a call is closed idle_timeout after the call ended.
    let (mut sender, after_call) = h2_connection(&gw).await;
    let response = call(&mut sender, &gw, Some(b"once")).await;
    let collected = response.into_body().collect().await.expect("body");
    assert_eq!(collected.to_bytes(), Bytes::from_static(b"echo:once"));
    let waited = closes_after(after_call, Duration::from_secs(5)).await;
    assert!(
        waited >= Duration::from_millis(800),
        "closed after {waited:?}"
    );

    // The silent one went the same way.
    closes_after(silent, Duration::from_secs(5)).await;
    let answer = h1_request(&mut h1).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // A stream open three times as long as idle_timeout keeps its connection:
    // ping-pong every half second, then the stream ends and the connection
    // goes idle.
    let (mut sender, streaming) = h2_connection(&gw).await;
    let (tx, body) = channel_body();
    let response = sender
        .send_request(grpc_request(&gw, body))
        .await
        .expect("response");
    let mut body = response.into_body();
    for round in 0..6 {
        let message = Bytes::from(format!("ping-{round}"));
        tx.send(Frame::data(message.clone())).await.expect("send");
        let echoed = next_frame(&mut body).await.into_data().ok();
        assert_eq!(echoed, Some(Bytes::from(format!("echo:ping-{round}"))));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(!streaming.is_finished(), "closed with a stream open");
    ends_ok(tx, &mut body).await;
    drop(body);
    let waited = closes_after(streaming, Duration::from_secs(5)).await;
    assert!(
        waited >= Duration::from_millis(800),
        "closed after {waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_client_stream_outlives_body_read_timeout_once_the_upstream_answered() {
    let upstream = h2c_upstream().await;
    let gw = config(grpc(upstream))
        .server(json!({ "body_read_timeout": "1s" }))
        .start();
    let (mut sender, _connection) = h2_connection(&gw).await;
    let (tx, body) = channel_body();
    tx.send(Frame::data(Bytes::from_static(b"first")))
        .await
        .expect("send");
    let response = sender
        .send_request(grpc_request(&gw, body))
        .await
        .expect("response");
    let mut body = response.into_body();
    assert_eq!(
        next_frame(&mut body).await.into_data().ok(),
        Some(Bytes::from_static(b"echo:first"))
    );
    // The client says nothing for longer than body_read_timeout: the
    // upstream answered already, so the stream is its to end.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    tx.send(Frame::data(Bytes::from_static(b"second")))
        .await
        .expect("send");
    assert_eq!(
        next_frame(&mut body).await.into_data().ok(),
        Some(Bytes::from_static(b"echo:second"))
    );
    ends_ok(tx, &mut body).await;
}
