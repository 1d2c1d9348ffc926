//! Mirroring through the real binary: copies of a share of a route's
//! requests reach a mirror upstream with their bodies, and a mirror that is
//! slow or down changes nothing for the client.

use crate::resilience::Silent;
use crate::support::config::{Config, Pool, Route};
use crate::support::{Upstream, body_bytes, client, get, metric, send, serve_local};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A mirror that records what it receives: method, path and body.
struct Recorder {
    addr: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<(String, String, String)>>>,
}

impl Recorder {
    async fn start() -> Recorder {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let addr = serve_local(service_fn(move |req: Request<Incoming>| {
            let log = log.clone();
            async move {
                let (method, path) = (req.method().to_string(), req.uri().to_string());
                let body = body_bytes(req.into_body()).await;
                let body = String::from_utf8_lossy(&body).to_string();
                if let Ok(mut seen) = log.lock() {
                    seen.push((method, path, body));
                }
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"mirror"))))
            }
        }))
        .await;
        Recorder { addr, seen }
    }

    fn seen(&self) -> Vec<(String, String, String)> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits (up to 10 s) for `count` copies.
    async fn wait_for(&self, count: usize) -> Vec<(String, String, String)> {
        let waiting = std::time::Instant::now();
        while self.seen().len() < count && waiting.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.seen()
    }
}

/// Route `/{*rest}` to `main`, mirrored to `mirror` as `settings` say.
fn mirrored(main: &Upstream, mirror: impl Into<Pool>, settings: Value) -> Config {
    let mut mirror_settings = json!({ "upstream": "shadow" });
    if let (Value::Object(into), Value::Object(from)) = (&mut mirror_settings, settings) {
        into.extend(from);
    }
    Config::new()
        .admin()
        .upstream("main", main)
        .upstream("shadow", mirror.into().with("timeout", json!("1h")))
        .route(
            Route::new("all", "/{*rest}")
                .upstream("main")
                .with("mirror", mirror_settings),
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_reach_the_mirror_with_their_bodies_and_the_client_gets_the_main_answer() {
    let (main, mirror) = (Upstream::start("main").await, Recorder::start().await);
    let gw = mirrored(&main, Pool::new([mirror.addr]), json!({})).start();
    for n in 0..5 {
        let request = Request::post(gw.url(&format!("/orders?n={n}")))
            .body(Full::new(Bytes::from(format!("{{\"order\":{n}}}"))))
            .expect("request");
        let reply = send(&client(), request).await;
        assert_eq!(reply.header("x-upstream"), Some("main"));
    }
    let reply = get(&gw.url("/items")).await;
    assert_eq!(reply.header("x-upstream"), Some("main"));
    let mut seen = mirror.wait_for(6).await;
    seen.sort();
    assert_eq!(seen.len(), 6, "{seen:?}");
    assert_eq!(seen[0], ("GET".into(), "/items".into(), String::new()));
    for (n, copy) in seen[1..].iter().enumerate() {
        let expected = (
            "POST".into(),
            format!("/orders?n={n}"),
            format!("{{\"order\":{n}}}"),
        );
        assert_eq!(*copy, expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_that_never_answers_or_is_down_changes_nothing_for_the_client() {
    let (main, silent) = (Upstream::start("main").await, Silent::start().await);
    let gw = mirrored(
        &main,
        Pool::new([silent.addr]),
        json!({ "max_in_flight": 2 }),
    )
    .start();
    for _ in 0..20 {
        let reply = get(&gw.url("/items")).await;
        assert_eq!(
            (reply.status, reply.header("x-upstream")),
            (200, Some("main"))
        );
    }
    // Two copies wait on the silent mirror; the rest were skipped.
    let metrics = get(&gw.admin_url("/metrics")).await.body;
    let count = |outcome: &str| {
        let name = format!("gateway_mirror_requests_total{{route=\"all\",outcome=\"{outcome}\"}}");
        metric(&metrics, &name).unwrap_or(0.0)
    };
    assert_eq!((count("sent"), count("skipped")), (2.0, 18.0), "{metrics}");
    assert_eq!(silent.accepted(), 2);

    // A mirror whose port is closed: every copy fails, every answer is 200.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let down = closed.local_addr().expect("addr");
    drop(closed);
    let gw = mirrored(&main, Pool::new([down]), json!({})).start();
    for _ in 0..5 {
        assert_eq!(get(&gw.url("/items")).await.status, 200);
    }
    let waiting = std::time::Instant::now();
    let name = "gateway_mirror_requests_total{route=\"all\",outcome=\"failed\"}";
    let mut failed = 0.0;
    while failed < 5.0 && waiting.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        failed = metric(&get(&gw.admin_url("/metrics")).await.body, name).unwrap_or(0.0);
    }
    assert_eq!(failed, 5.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_samples_the_requests_copied() {
    let (main, mirror) = (Upstream::start("main").await, Recorder::start().await);
    let gw = mirrored(&main, Pool::new([mirror.addr]), json!({ "share": 0.25 })).start();
    for _ in 0..400 {
        get(&gw.url("/items")).await;
    }
    let metrics = get(&gw.admin_url("/metrics")).await.body;
    let name = "gateway_mirror_requests_total{route=\"all\",outcome=\"sent\"}";
    let sent = metric(&metrics, name).unwrap_or(0.0);
    // 100 expected; 5 standard deviations (8.7 each) either way.
    assert!((57.0..=143.0).contains(&sent), "{sent} copies of 400");
    assert_eq!(mirror.wait_for(sent as usize).await.len(), sent as usize);
}
