//! Shutting down: SIGTERM drains in-flight requests and exits 0, the
//! shutdown delay keeps serving while `/readyz` says not ready, a second
//! signal cuts the delay or the drain short, and drain_timeout bounds the wait.

use crate::support::config::{Config, Plugin, Route};
use crate::support::{Gateway, Upstream, client, get};
use http::Request;
use http_body_util::Full;
use serde_json::json;
use std::time::{Duration, Instant};

/// A gateway whose `/slow/{ms}` route answers after `ms` milliseconds, with
/// `server` merged into its `[server]` table.
fn slow_gateway(up: &Upstream, server: serde_json::Value) -> Gateway {
    Config::new()
        .server(server)
        .upstream("up", up)
        .route(Route::new("slow", "/slow/{ms}").upstream("up"))
        .start()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_zero() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = Upstream::start("up").await;
    let gw = slow_gateway(&up, json!({}));
    let url = gw.url("/slow/500");
    let in_flight = tokio::spawn(async move { get(&url).await });
    up.wait_for_a_hit().await;
    assert_eq!(up.hits(), 1);
    // A kept-alive HTTP/1.1 connection between two requests: closed at once,
    // not left to hold the drain up until its header_read_timeout (10 s).
    let mut idle = tokio::net::TcpStream::connect(gw.addr)
        .await
        .expect("connect");
    idle.write_all(b"GET /slow/0 HTTP/1.1\r\nhost: gw\r\n\r\n")
        .await
        .expect("write");
    let mut answer = vec![0u8; 4096];
    let read = idle.read(&mut answer).await.expect("answer");
    assert!(answer[..read].starts_with(b"HTTP/1.1 200"));
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || gw.terminate())
        .await
        .expect("join");
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the drain waited {:?} for an idle connection",
        started.elapsed()
    );
    assert_eq!(idle.read(&mut answer).await.ok(), Some(0), "closed");
    let reply = in_flight.await.expect("in-flight request");
    assert_eq!(reply.status, 200, "the in-flight request finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_delay_keeps_serving_while_not_ready() {
    let up = Upstream::start("up").await;
    let mut gw = Config::new()
        .server(json!({ "shutdown_delay": "1500ms" }))
        .admin()
        .upstream("up", &up)
        .route(Route::new("all", "/{*rest}").upstream("up"))
        .start();
    let signalled = Instant::now();
    gw.signal("TERM");
    assert!(
        gw.turns_not_ready(Duration::from_millis(500)).await,
        "/readyz still said ready after the signal"
    );
    // New connections are still accepted and served during the delay.
    let reply = get(&gw.url("/during-the-delay")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(signalled.elapsed() < Duration::from_millis(1500));
    let addr = gw.addr;
    let status = gw
        .wait_for_exit(Duration::from_secs(20))
        .await
        .expect("no exit within 20 s of the signal");
    assert!(status.success(), "{status:?}");
    assert!(
        signalled.elapsed() >= Duration::from_millis(1500),
        "exited {:?} after the signal, before the delay",
        signalled.elapsed()
    );
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_cuts_the_shutdown_delay_short() {
    let mut gw = Config::new()
        .server(json!({ "shutdown_delay": "1m" }))
        .admin()
        .route(
            Route::new("hello", "/")
                .plugin(Plugin::new("respond").config(json!({ "status": 200, "body": "hi" }))),
        )
        .start();
    gw.signal("TERM");
    assert!(gw.turns_not_ready(Duration::from_secs(5)).await);
    gw.signal("TERM");
    let status = gw
        .wait_for_exit(Duration::from_secs(20))
        .await
        .expect("the second signal did not end the delay");
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_during_the_drain_ends_it() {
    let up = Upstream::start("up").await;
    let mut gw = slow_gateway(&up, json!({}));
    let url = gw.url("/slow/20000");
    let _in_flight = tokio::spawn(async move {
        let _ = client()
            .request(Request::get(url).body(Full::default()).expect("request"))
            .await;
    });
    up.wait_for_a_hit().await;
    assert_eq!(up.hits(), 1);
    // The drain would wait up to 30 s for the 20-second request.
    gw.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        gw.wait_for_exit(Duration::ZERO).await.is_none(),
        "exited without draining"
    );
    gw.signal("TERM");
    let status = gw
        .wait_for_exit(Duration::from_secs(10))
        .await
        .expect("the second signal did not end the drain");
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_timeout_bounds_the_wait_for_in_flight_requests() {
    let up = Upstream::start("up").await;
    let gw = slow_gateway(&up, json!({ "drain_timeout": "300ms" }));
    let request = Request::get(gw.url("/slow/20000"))
        .body(Full::default())
        .expect("request");
    let in_flight = tokio::spawn(async move {
        // The connection closed under it, or (at worst) an error status.
        match client().request(request).await {
            Ok(response) => Some(response.status().as_u16()),
            Err(_) => None,
        }
    });
    up.wait_for_a_hit().await;
    assert_eq!(up.hits(), 1);
    let status = tokio::time::timeout(
        Duration::from_secs(15),
        tokio::task::spawn_blocking(move || gw.terminate()),
    )
    .await
    .expect("the drain outlasted drain_timeout")
    .expect("join");
    assert!(status.success(), "{status:?}");
    // The 20-second request was cut off, not answered.
    let outcome = tokio::time::timeout(Duration::from_secs(5), in_flight)
        .await
        .expect("the client saw the connection close")
        .expect("join");
    assert_eq!(outcome, None, "the in-flight request was answered");
}
