//! Several gateway processes sharing rate-limit counters and quotas through a
//! real `redis-server`, and what happens when Redis dies under them.

use crate::support::config::{Config, Plugin, Route};
use crate::support::{Gateway, RedisServer, Upstream, client, send};
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::json;
use std::time::{Duration, Instant};

fn get(url: &str, key: Option<&str>) -> Request<Full<Bytes>> {
    let mut builder = Request::get(url);
    if let Some(key) = key {
        builder = builder.header("x-api-key", key);
    }
    builder.body(Full::default()).expect("request")
}

/// `rate-limit` counting in Redis (`limit` per minute for the route, or
/// the consumer's plan), with `store_failure` when given.
fn limit(rate: Option<&str>, store_failure: Option<&str>) -> Plugin {
    let mut plugin = Plugin::new("rate-limit").with("store", json!("redis"));
    if let Some(mode) = store_failure {
        plugin = plugin.with("store_failure", json!(mode));
    }
    match rate {
        Some(rate) => plugin.config(json!({ "limits": [{ "rate": rate, "by": ["route"] }] })),
        None => plugin,
    }
}

fn config(upstream: &Upstream, redis: &RedisServer) -> Config {
    let route = |name: &str| Route::new(name, &format!("/{name}")).upstream("api");
    Config::new()
        .with("redis", json!({ "url": redis.url(), "timeout": "200ms" }))
        .with("usage_plans", json!({ "tiny": { "quota": "3/day" } }))
        .consumer(json!({
            "name": "quinn",
            "plan": "tiny",
            "keys": [{ "plaintext": "quinn-key-00000001" }],
        }))
        .upstream("api", upstream)
        .route(route("shared").plugin(limit(Some("5/minute"), None)))
        .route(
            route("quota")
                .plugin(Plugin::new("key-auth"))
                .plugin(limit(None, None)),
        )
        .route(route("open").plugin(limit(Some("2/minute"), None)))
        .route(route("closed").plugin(limit(Some("2/minute"), Some("closed"))))
        .route(route("fallback").plugin(limit(Some("2/minute"), Some("local"))))
}

/// Sends `n` requests at once, spread over `gateways`, and counts the 200s.
async fn admitted(gateways: &[&Gateway], path: &str, key: Option<&str>, n: usize) -> usize {
    let client = client();
    let mut tasks = Vec::new();
    for i in 0..n {
        let client = client.clone();
        let request = get(&gateways[i % gateways.len()].url(path), key);
        tasks.push(tokio::spawn(async move { send(&client, request).await }));
    }
    let mut ok = 0;
    for task in tasks {
        let reply = task.await.expect("request task");
        match reply.status {
            200 => ok += 1,
            429 => assert!(reply.header("retry-after").is_some()),
            other => panic!("unexpected {other}: {}", reply.body),
        }
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_on_one_redis_admit_no_more_than_the_limit() {
    let redis = RedisServer::start();
    let upstream = Upstream::start("api").await;
    let config = config(&upstream, &redis);
    let a = config.start();
    let b = config.start();

    // 5 per minute for the route, whichever gateway a request lands on.
    assert_eq!(admitted(&[&a, &b], "/shared", None, 20).await, 5);
    assert_eq!(admitted(&[&b], "/shared", None, 4).await, 0);

    // The usage plan's quota (3 a day) is shared too, and only counts
    // admitted requests.
    let key = Some("quinn-key-00000001");
    assert_eq!(admitted(&[&a, &b], "/quota", key, 10).await, 3);
    assert_eq!(admitted(&[&a], "/quota", key, 2).await, 0);
    let reply = send(&client(), get(&a.url("/quota"), key)).await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.json()["error"], "quota exceeded");
    assert_eq!(reply.header("ratelimit-limit"), Some("3"));

    // The counters are in Redis, under the configured prefix.
    let keys = redis.command(&["KEYS", "gateway:*"]);
    assert!(keys.contains("gateway:rl:rate-limit:"), "{keys}");
    assert!(keys.contains("gateway:quota:rate-limit:"), "{keys}");
    assert_eq!(upstream.hits(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_redis_dies_each_route_follows_its_failure_mode_without_hanging() {
    let mut redis = RedisServer::start();
    let upstream = Upstream::start("api").await;
    let gw = config(&upstream, &redis).start();
    let client = client();
    let status = |path: &'static str| {
        let client = client.clone();
        let url = gw.url(path);
        async move {
            let started = Instant::now();
            let reply =
                tokio::time::timeout(Duration::from_secs(10), send(&client, get(&url, None)))
                    .await
                    .unwrap_or_else(|_| panic!("{path} hung with Redis down"));
            (reply.status, started.elapsed())
        }
    };

    // Redis up: every route counts on Redis.
    for path in ["/open", "/closed", "/fallback"] {
        assert_eq!(status(path).await.0, 200);
        assert_eq!(status(path).await.0, 200);
        assert_eq!(
            status(path).await.0,
            429,
            "{path} limited while Redis is up"
        );
    }

    redis.kill();
    let mut open = Vec::new();
    let mut closed = Vec::new();
    let mut fallback = Vec::new();
    for _ in 0..4 {
        open.push(status("/open").await.0);
        closed.push(status("/closed").await.0);
        fallback.push(status("/fallback").await.0);
    }
    assert_eq!(
        open,
        [200, 200, 200, 200],
        "fail open lets everything through"
    );
    assert_eq!(
        closed,
        [429, 429, 429, 429],
        "fail closed refuses everything"
    );
    assert_eq!(
        fallback,
        [200, 200, 429, 429],
        "falling back to local counters still limits"
    );

    // The failure is logged, but not once per request.
    let log = gw.log();
    let lines = log.matches("redis unavailable").count();
    assert!((1..=2).contains(&lines), "{lines} log lines:\n{log}");

    // Redis back: counting on Redis resumes (its counters were lost with it).
    redis.restart();
    let mut back = false;
    let waiting = Instant::now();
    while waiting.elapsed() < Duration::from_secs(10) {
        // Fail closed refuses until Redis answers again, then admits.
        if status("/closed").await.0 == 200 {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "the gateway reconnected to Redis");
}
