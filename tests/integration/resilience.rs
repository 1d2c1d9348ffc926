//! Retries, retry budgets, outlier detection and balancing through the real
//! binary, against real upstreams that fail on purpose: one answering 503 to
//! everything, one that accepts connections and never answers.

use crate::support::config::{Config, Pool, Route};
use crate::support::{DocumentServer, Upstream, client, get, metric, send};
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A server that accepts connections and never answers on them, counting
/// them: each request in flight to it holds one.
pub struct Silent {
    pub addr: std::net::SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl Silent {
    pub async fn start() -> Silent {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                held.push(stream);
            }
        });
        Silent { addr, accepted }
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// A 503 to every request.
async fn failing() -> DocumentServer {
    let server = DocumentServer::start("unused").await;
    server.serve(None);
    server
}

/// One upstream `svc` of `targets` with `settings`, one route `/{*rest}`
/// with `route` settings.
fn gateway(targets: &[String], settings: Value, route: Value) -> Config {
    let mut all = Route::new("all", "/{*rest}").upstream("svc");
    if let Value::Object(keys) = route {
        for (key, value) in keys {
            all = all.with(&key, value);
        }
    }
    Config::new()
        .admin()
        .upstream(
            "svc",
            Pool::new(targets)
                .with("max_fails", json!(0))
                .settings(settings),
        )
        .route(all)
}

async fn post(url: String) -> u16 {
    let request = Request::post(url)
        .body(Full::new(Bytes::from_static(b"{\"n\":1}")))
        .expect("request");
    send(&client(), request).await.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_is_retried_on_the_other_target_for_idempotent_methods_only() {
    let (bad, good) = (failing().await, Upstream::start("good").await);
    let targets = [bad.addr.to_string(), good.addr.to_string()];
    let gw = gateway(&targets, json!({}), json!({ "retry": {} })).start();
    for _ in 0..20 {
        let reply = get(&gw.url("/items")).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    // Round robin sent half of the first tries to the failing target; each
    // was retried on the other one.
    assert_eq!(bad.hits(), 10);
    assert_eq!(good.hits(), 20);
    let metrics = get(&gw.admin_url("/metrics")).await.body;
    let retries = "gateway_upstream_retries_total{upstream=\"svc\"}";
    assert_eq!(metric(&metrics, retries), Some(10.0), "{metrics}");

    // A POST may have changed something: its 503 reaches the client.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(post(gw.url("/items")).await);
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 200, 503, 503]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_method_retries_a_post_with_its_body() {
    let (bad, good) = (failing().await, Upstream::start("good").await);
    let targets = [bad.addr.to_string(), good.addr.to_string()];
    let route = json!({ "retry": { "any_method": true, "on_status": [503] } });
    let gw = gateway(&targets, json!({}), route).start();
    for _ in 0..6 {
        let request = Request::post(gw.url("/items"))
            .body(Full::new(Bytes::from_static(b"{\"n\":1}")))
            .expect("request");
        let reply = send(&client(), request).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        // The retry carried the body the client sent.
        assert_eq!(reply.json()["body"], "{\"n\":1}");
    }
    assert_eq!(bad.hits(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_try_without_an_answer_in_time_is_retried_elsewhere() {
    let (silent, good) = (Silent::start().await, Upstream::start("good").await);
    let targets = [silent.addr.to_string(), good.addr.to_string()];
    let route = json!({ "retry": { "per_try_timeout": "300ms" } });
    // Only the try's own timeout can end the wait on the silent target.
    let gw = gateway(&targets, json!({ "timeout": "1h" }), route).start();
    for _ in 0..4 {
        let reply = tokio::time::timeout(Duration::from_secs(60), get(&gw.url("/items")))
            .await
            .expect("the try on the silent target never ended");
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.header("x-upstream"), Some("good"));
    }
    assert_eq!(silent.accepted(), 2);

    // Without a retry policy the try waits for the upstream's timeout, and
    // the client gets the 504.
    let plain = gateway(&targets, json!({ "timeout": "300ms" }), json!({})).start();
    let mut statuses = Vec::new();
    for _ in 0..2 {
        statuses.push(get(&plain.url("/items")).await.status);
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 504]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_budget_stops_a_retry_storm() {
    let (a, b) = (failing().await, failing().await);
    let targets = [a.addr.to_string(), b.addr.to_string()];
    let route = json!({ "retry": {
        "retries": 3,
        "backoff": "1s",
        "max_backoff": "1s",
        "budget": 0.01,
        "min_retries_in_flight": 1,
    } });
    let gw = gateway(&targets, json!({}), route).start();
    let requests: Vec<_> = (0..20)
        .map(|_| {
            let url = gw.url("/items");
            tokio::spawn(async move { get(&url).await.status })
        })
        .collect();
    for request in requests {
        assert_eq!(request.await.expect("request"), 503);
    }
    let metrics = get(&gw.admin_url("/metrics")).await.body;
    let refused = "gateway_upstream_retries_refused_total{upstream=\"svc\"}";
    let refused = metric(&metrics, refused).unwrap_or(0.0);
    assert!(refused > 0.0, "{metrics}");
    // Without a budget, 20 requests would make 80 tries.
    let tries = a.hits() + b.hits();
    assert!(tries < 60, "{tries} tries for 20 requests");
}

/// Sends GETs until `bad` has received `hits` requests (at most 40):
/// the statuses the client got.
async fn until_hits(gw: &crate::support::Gateway, bad: &DocumentServer, hits: usize) -> Vec<u16> {
    let mut statuses = Vec::new();
    while bad.hits() < hits && statuses.len() < 40 {
        statuses.push(get(&gw.url("/items")).await.status);
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outlier_detection_ejects_a_failing_target_for_a_growing_time() {
    let (bad, good) = (failing().await, Upstream::start("good").await);
    let targets = [bad.addr.to_string(), good.addr.to_string()];
    let detection = json!({ "outlier_detection": {
        "consecutive_errors": 3,
        "base_ejection_time": "3s",
    } });
    let gw = gateway(&targets, detection, json!({})).start();
    let target_state = || async {
        let state = get(&gw.admin_url("/upstreams")).await.json();
        state["upstreams"][0]["targets"][0].clone()
    };
    // Three 503s in a row from the failing target eject it...
    let statuses = until_hits(&gw, &bad, 3).await;
    assert_eq!(statuses.iter().filter(|s| **s == 503).count(), 3);
    assert_eq!(target_state().await["state"], "ejected");
    // ...and while it is out, the other target takes everything.
    for _ in 0..10 {
        assert_eq!(get(&gw.url("/items")).await.status, 200);
    }
    assert_eq!(bad.hits(), 3);

    // Back after its ejection, still failing: ejected again, for twice as
    // long (6 s: more than 3 s are left when it is read).
    let waiting = std::time::Instant::now();
    while target_state().await["state"] == "ejected" {
        assert!(waiting.elapsed() < Duration::from_secs(10), "never back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    until_hits(&gw, &bad, 6).await;
    let target = target_state().await;
    assert_eq!(target["state"], "ejected", "{target}");
    let out_for = target["ejected_for_ms"].as_u64().unwrap_or(0);
    assert!(out_for > 3000, "{target}");
    let metrics = get(&gw.admin_url("/metrics")).await.body;
    let ejections = "gateway_upstream_ejections_total{upstream=\"svc\"}";
    assert_eq!(metric(&metrics, ejections), Some(2.0), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outlier_detection_never_ejects_more_than_its_share() {
    let (a, b, good) = (
        failing().await,
        failing().await,
        Upstream::start("good").await,
    );
    let targets = [
        a.addr.to_string(),
        b.addr.to_string(),
        good.addr.to_string(),
    ];
    let detection = json!({ "outlier_detection": {
        "consecutive_errors": 2,
        "max_ejection_percent": 50,
    } });
    let gw = gateway(&targets, detection, json!({})).start();
    for _ in 0..30 {
        get(&gw.url("/items")).await;
    }
    // One of three is within 50%; two are not: the second failing target
    // keeps its share.
    let metrics = get(&gw.admin_url("/metrics")).await.body;
    let ejections = "gateway_upstream_ejections_total{upstream=\"svc\"}";
    assert_eq!(metric(&metrics, ejections), Some(1.0), "{metrics}");
    assert!(a.hits().min(b.hits()) == 2 && a.hits().max(b.hits()) > 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_request_sends_around_a_target_that_holds_requests() {
    let (silent, good) = (Silent::start().await, Upstream::start("good").await);
    let targets = [silent.addr.to_string(), good.addr.to_string()];
    let gw = gateway(
        &targets,
        json!({ "balance": "least_request", "timeout": "30s" }),
        json!({}),
    )
    .start();
    let mut in_flight = Vec::new();
    for _ in 0..20 {
        let url = gw.url("/items");
        let before = silent.accepted();
        let request = tokio::spawn(async move { get(&url).await.status });
        // Either the good target answers, or the silent one holds it.
        let waiting = std::time::Instant::now();
        while !request.is_finished() && silent.accepted() == before {
            assert!(waiting.elapsed() < Duration::from_secs(10), "no progress");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        in_flight.push(request);
    }
    // Once it holds one, every other request goes to the idle target.
    assert_eq!(silent.accepted(), 1);
    assert_eq!(good.hits(), 19);
}

/// Which upstream each of `users` lands on, hashed on `x-user`.
async fn landing(gw: &crate::support::Gateway, users: usize) -> Vec<String> {
    let mut landed = Vec::new();
    for user in 0..users {
        let request = Request::get(gw.url("/items"))
            .header("x-user", format!("user-{user}"))
            .body(Full::<Bytes>::default())
            .expect("request");
        let reply = send(&client(), request).await;
        landed.push(reply.header("x-upstream").unwrap_or("-").to_string());
    }
    landed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashing_keeps_a_key_on_its_target_and_a_new_target_takes_only_its_share() {
    let (a, b, c, d) = (
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
        Upstream::start("d").await,
    );
    let three = [a.addr.to_string(), b.addr.to_string(), c.addr.to_string()];
    let hashing = json!({ "balance": "hash", "hash_on": "header:x-user" });
    let gw = gateway(&three, hashing.clone(), json!({})).start();
    let first = landing(&gw, 60).await;
    assert_eq!(landing(&gw, 60).await, first, "a key changed target");
    assert!(
        ["a", "b", "c"]
            .iter()
            .all(|name| first.iter().any(|l| l == name))
    );

    let four = [three.as_slice(), &[d.addr.to_string()]].concat();
    gateway(&four, hashing, json!({})).write(gw.config_path());
    let reload = Request::post(gw.admin_url("/reload"))
        .body(Full::<Bytes>::default())
        .expect("request");
    assert_eq!(send(&client(), reload).await.status, 200);
    let second = landing(&gw, 60).await;
    let moved: Vec<_> = first.iter().zip(&second).filter(|(x, y)| x != y).collect();
    assert!(moved.iter().all(|(_, to)| *to == "d"), "{moved:?}");
    assert!(
        !moved.is_empty() && moved.len() < 30,
        "{} moved",
        moved.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_replay_cap_is_sent_once() {
    let (bad, good) = (failing().await, Upstream::start("good").await);
    let targets = [bad.addr.to_string(), good.addr.to_string()];
    let route = json!({ "retry": { "any_method": true } });
    let gw = gateway(&targets, json!({}), route).start();
    let body = Bytes::from(vec![b'x'; 100 * 1024]);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let request = Request::put(gw.url("/items"))
            .body(Full::new(body.clone()))
            .expect("request");
        statuses.push(send(&client(), request).await.status);
    }
    // 100 KiB is over the 64 KiB kept for a retry: the failing target's
    // answers reach the client (a 503, or a 502 when it closes the
    // connection on the body it does not read).
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(ok, 2, "{statuses:?}");
    assert_eq!(bad.hits() + good.hits(), 4);
}
