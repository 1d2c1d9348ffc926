//! The `cache` built-in through the real binary: what is stored and for how
//! long, keys, Vary, poisoning headers, collapsing, purges through the admin
//! API, and one cache shared by two gateways through a real `redis-server`.

use crate::support::config::{Config, Plugin, Route};
use crate::support::{RedisServer, Reply, Upstream, client, send, serve_http1};
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A GET with extra headers.
async fn fetch(url: &str, headers: &[(&str, &str)]) -> Reply {
    request("GET", url, headers).await
}

async fn request(method: &str, url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut builder = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    send(
        &client(),
        builder.body(Full::<Bytes>::default()).expect("request"),
    )
    .await
}

async fn post(url: &str) -> Reply {
    request("POST", url, &[]).await
}

/// The upstream's serial number for the answer (same number: same response).
fn serial(reply: &Reply) -> u64 {
    reply.json()["serial"].as_u64().unwrap_or_default()
}

fn x_cache(reply: &Reply) -> &str {
    reply.header("x-cache").unwrap_or("none")
}

/// The `cache` entry the tests start from: 4 KiB bodies, 60 s.
fn cache() -> Plugin {
    Plugin::new("cache")
        .with("max_body", json!("4KiB"))
        .config(json!({ "ttl": "60s", "max_body": "4KiB" }))
}

/// An admin listener and one route, `/c/{*rest}` (prefix stripped), to
/// `upstream` through `cache`.
fn cached_route(upstream: &Upstream, cache: Plugin) -> Config {
    Config::new().admin().upstream("api", upstream).route(
        Route::new("cached", "/c/{*rest}")
            .upstream("api")
            .strip_prefix("/c")
            .plugin(cache),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_stores_what_http_allows_and_serves_it_back() {
    let upstream = Upstream::start("api").await;
    let gw = cached_route(&upstream, cache()).start();
    let url = |path: &str| gw.url(path);

    // Miss, then hits with the same response and an Age.
    let first = fetch(&url("/c/items"), &[]).await;
    assert_eq!((first.status, x_cache(&first)), (200, "MISS"));
    let again = fetch(&url("/c/items"), &[]).await;
    assert_eq!(x_cache(&again), "HIT");
    assert_eq!(serial(&again), serial(&first));
    assert!(again.header("age").is_some());
    let head = request("HEAD", &url("/c/items"), &[]).await;
    assert_eq!(
        (head.status, x_cache(&head), head.body.as_str()),
        (200, "HIT", "")
    );
    assert_eq!(upstream.hits(), 1);

    // The query is keyed, in any order; another host is another key.
    let a = fetch(&url("/c/items?b=2&a=1"), &[]).await;
    assert_eq!(x_cache(&a), "MISS");
    let b = fetch(&url("/c/items?a=1&b=2"), &[]).await;
    assert_eq!((x_cache(&b), serial(&b)), ("HIT", serial(&a)));
    let other_host = fetch(&url("/c/items"), &[("host", "other.example")]).await;
    assert_eq!(x_cache(&other_host), "MISS");

    // Never stored: no-store, private, Set-Cookie, 5xx; requests with
    // Authorization and other methods are not even looked up.
    for path in [
        "/c/ns?h-cache-control=no-store",
        "/c/pv?h-cache-control=private",
        "/c/ck?h-set-cookie=session%3Dabc",
        "/c/status/503",
    ] {
        let first = fetch(&url(path), &[]).await;
        let second = fetch(&url(path), &[]).await;
        assert_eq!(x_cache(&second), "MISS", "{path} was stored");
        assert_ne!(serial(&first), serial(&second), "{path}");
    }
    let authorized = fetch(&url("/c/items"), &[("authorization", "Bearer x")]).await;
    assert_eq!(x_cache(&authorized), "BYPASS");
    assert_eq!(x_cache(&post(&url("/c/items")).await), "BYPASS");
    // 404 is stored by default.
    fetch(&url("/c/status/404"), &[]).await;
    let missing = fetch(&url("/c/status/404"), &[]).await;
    assert_eq!((missing.status, x_cache(&missing)), (404, "HIT"));

    // The response's own lifetime wins over the route's ttl.
    let short = fetch(&url("/c/short?h-cache-control=max-age%3D1"), &[]).await;
    assert_eq!(
        x_cache(&fetch(&url("/c/short?h-cache-control=max-age%3D1"), &[]).await),
        "HIT"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let expired = fetch(&url("/c/short?h-cache-control=max-age%3D1"), &[]).await;
    assert_eq!(x_cache(&expired), "MISS");
    assert_ne!(serial(&expired), serial(&short));

    // Vary: one copy per value of the varying header.
    let vary = "/c/greeting?h-vary=accept-language";
    let en = fetch(&url(vary), &[("accept-language", "en")]).await;
    let fr = fetch(&url(vary), &[("accept-language", "fr")]).await;
    assert_eq!((x_cache(&en), x_cache(&fr)), ("MISS", "MISS"));
    let en_again = fetch(&url(vary), &[("accept-language", "en")]).await;
    let fr_again = fetch(&url(vary), &[("accept-language", "fr")]).await;
    assert_eq!(
        (x_cache(&en_again), serial(&en_again)),
        ("HIT", serial(&en))
    );
    assert_eq!(
        (x_cache(&fr_again), serial(&fr_again)),
        ("HIT", serial(&fr))
    );

    // Poisoning headers never reach the upstream of a cacheable request.
    let poisoned = fetch(
        &url("/c/poison"),
        &[
            ("x-forwarded-host", "evil.example"),
            ("x-original-url", "/admin"),
        ],
    )
    .await;
    let seen = &poisoned.json()["headers"];
    assert_ne!(seen["x-forwarded-host"], "evil.example");
    assert!(seen.get("x-original-url").is_none());

    // A body over the entry's cap streams through whole, and is not stored.
    // (The upstream echoes the request's headers, so a large header makes a
    // large body.)
    let pad = "x".repeat(5000);
    let first = fetch(&url("/c/big"), &[("x-pad", &pad)]).await;
    assert_eq!((first.status, x_cache(&first)), (200, "MISS"));
    assert_eq!(first.json()["headers"]["x-pad"], pad.as_str());
    assert_eq!(
        x_cache(&fetch(&url("/c/big"), &[("x-pad", &pad)]).await),
        "MISS"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_purges_by_key_and_prefix_and_counts_lookups() {
    let upstream = Upstream::start("api").await;
    let gw = cached_route(&upstream, cache()).start();
    let host = gw.addr.to_string();
    for path in ["/c/a", "/c/a?v=1", "/c/b"] {
        fetch(&gw.url(path), &[]).await;
        assert_eq!(x_cache(&fetch(&gw.url(path), &[]).await), "HIT");
    }

    // One key: the others stay.
    let key = format!("GET {host}/c/a");
    let purged = post(&format!(
        "{}?key={}",
        gw.admin_url("/cache/purge"),
        form_urlencoded::byte_serialize(key.as_bytes()).collect::<String>()
    ))
    .await;
    assert_eq!(purged.status, 200, "{}", purged.body);
    assert_eq!(x_cache(&fetch(&gw.url("/c/a"), &[]).await), "MISS");
    assert_eq!(x_cache(&fetch(&gw.url("/c/a?v=1"), &[]).await), "HIT");

    // A prefix: everything under /c/.
    let prefix = format!("GET {host}/c/");
    let purged = post(&format!(
        "{}?prefix={}",
        gw.admin_url("/cache/purge"),
        form_urlencoded::byte_serialize(prefix.as_bytes()).collect::<String>()
    ))
    .await;
    assert_eq!(purged.status, 200, "{}", purged.body);
    assert_eq!(x_cache(&fetch(&gw.url("/c/a?v=1"), &[]).await), "MISS");
    assert_eq!(x_cache(&fetch(&gw.url("/c/b"), &[]).await), "MISS");

    assert_eq!(post(&gw.admin_url("/cache/purge")).await.status, 400);
    assert_eq!(fetch(&gw.admin_url("/nothing"), &[]).await.status, 404);
    assert_eq!(fetch(&gw.admin_url("/healthz"), &[]).await.status, 200);

    // 3 first misses, 3 hits, 1 miss after the key purge, 1 hit, 2 misses
    // after the prefix purge; and for each of these 10 requests, the lookup
    // of its URI's generation, a miss while no unsafe request invalidated it.
    let metrics = fetch(&gw.admin_url("/metrics"), &[]).await.body;
    assert!(
        metrics.contains("gateway_cache_lookups_total{outcome=\"hit\"} 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("gateway_cache_lookups_total{outcome=\"miss\"} 16"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_send_one_request_upstream() {
    let upstream = Upstream::start("api").await;
    let gw = cached_route(&upstream, cache()).start();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let url = gw.url("/c/slow/300");
        tasks.push(tokio::spawn(async move { fetch(&url, &[]).await }));
    }
    let mut serials = Vec::new();
    for task in tasks {
        let reply = task.await.expect("request task");
        assert_eq!(reply.status, 200);
        serials.push(serial(&reply));
    }
    assert_eq!(
        upstream.hits(),
        1,
        "the upstream saw one request for ten misses"
    );
    assert!(serials.iter().all(|s| *s == serials[0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_consumer_has_its_own_entries_and_only_some_may_refresh() {
    let upstream = Upstream::start("api").await;
    let gw = Config::new()
        .consumer(json!({ "name": "alice", "keys": [{ "plaintext": "alice-key-00000001" }] }))
        .consumer(json!({ "name": "bob", "keys": [{ "plaintext": "bob-key-000000001" }] }))
        .upstream("api", &upstream)
        .route(
            Route::new("mine", "/me")
                .upstream("api")
                .plugin(Plugin::new("key-auth"))
                .plugin(Plugin::new("cache").config(json!({ "refresh": ["alice"] }))),
        )
        .start();
    let alice = [("x-api-key", "alice-key-00000001")];
    let bob = [("x-api-key", "bob-key-000000001")];
    let url = gw.url("/me");
    let a1 = fetch(&url, &alice).await;
    let b1 = fetch(&url, &bob).await;
    assert_eq!((x_cache(&a1), x_cache(&b1)), ("MISS", "MISS"));
    assert_eq!(b1.json()["headers"]["x-consumer-name"], "bob");
    let b2 = fetch(&url, &bob).await;
    assert_eq!((x_cache(&b2), serial(&b2)), ("HIT", serial(&b1)));

    // Bob cannot force a refresh; Alice can.
    let b3 = fetch(&url, &[bob[0], ("cache-control", "no-cache")]).await;
    assert_eq!(x_cache(&b3), "HIT");
    let a2 = fetch(&url, &[alice[0], ("cache-control", "no-cache")]).await;
    assert_eq!(x_cache(&a2), "MISS");
    assert_ne!(serial(&a2), serial(&a1));
    let a3 = fetch(&url, &alice).await;
    assert_eq!((x_cache(&a3), serial(&a3)), ("HIT", serial(&a2)));
    assert_eq!(upstream.hits(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_share_one_cache_through_redis() {
    let redis = RedisServer::start();
    let upstream = Upstream::start("api").await;
    let config = cached_route(&upstream, cache().with("store", json!("redis"))).redis(redis.url());
    let a = config.start();
    let b = config.start();
    let host = [("host", "api.example")];

    let first = fetch(&a.url("/c/shared"), &host).await;
    assert_eq!(x_cache(&first), "MISS");
    let other = fetch(&b.url("/c/shared"), &host).await;
    assert_eq!((x_cache(&other), serial(&other)), ("HIT", serial(&first)));
    assert_eq!(upstream.hits(), 1);

    // A purge through one gateway's admin API empties the shared cache.
    let purged = post(&format!(
        "{}?prefix=GET%20api.example%2F",
        a.admin_url("/cache/purge")
    ))
    .await;
    assert_eq!(purged.status, 200, "{}", purged.body);
    assert!(
        purged.json()["redis_keys_removed"]
            .as_u64()
            .is_some_and(|n| n >= 1)
    );
    assert_eq!(x_cache(&fetch(&b.url("/c/shared"), &host).await), "MISS");
}

/// RFC 9111 5.1: of a list-valued `Age`, the first member counts; the
/// response is not taken for younger than the upstream said.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_valued_age_is_read_as_its_first_member() {
    let upstream = Upstream::start("api").await;
    let gw = cached_route(&upstream, cache()).start();
    // An hour of lifetime, two hours old: stale on arrival, not served again.
    let stale = "/c/aged?h-cache-control=max-age%3D3600&h-age=7200%2C%200";
    let first = fetch(&gw.url(stale), &[]).await;
    assert_eq!((first.status, x_cache(&first)), (200, "MISS"));
    let second = fetch(&gw.url(stale), &[]).await;
    assert_eq!(x_cache(&second), "MISS");
    assert_ne!(serial(&second), serial(&first));

    // Ten seconds old: served, its Age counting on from 10.
    let young = "/c/young?h-cache-control=max-age%3D3600&h-age=10%2C%207200";
    fetch(&gw.url(young), &[]).await;
    let hit = fetch(&gw.url(young), &[]).await;
    assert_eq!(x_cache(&hit), "HIT");
    let age: u64 = hit
        .header("age")
        .and_then(|a| a.parse().ok())
        .unwrap_or_default();
    assert!((10..7200).contains(&age), "age {age}");
}

/// RFC 9111 4.4: a successful POST (PUT, DELETE, ...) invalidates what is
/// stored for its URI, and for the same-origin URIs its response's `Location`
/// and `Content-Location` name; a failed one does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn successful_unsafe_requests_invalidate_their_uri_and_locations() {
    let upstream = Upstream::start("api").await;
    let gw = cached_route(&upstream, cache()).start();
    let url = |path: &str| gw.url(path);
    let stored = |path: &'static str| {
        let url = url(path);
        async move {
            fetch(&url, &[]).await;
            x_cache(&fetch(&url, &[]).await) == "HIT"
        }
    };
    for path in ["/c/items", "/c/items/1", "/c/items/2", "/c/status/404"] {
        assert!(stored(path).await, "{path} was not stored");
    }

    assert_eq!(x_cache(&post(&url("/c/items")).await), "BYPASS");
    assert_eq!(x_cache(&fetch(&url("/c/items"), &[]).await), "MISS");
    assert_eq!(x_cache(&fetch(&url("/c/items/1"), &[]).await), "HIT");

    // The upstream echoes `h-*` parameters as headers: Location is an
    // absolute path, Content-Location relative to /c/new.
    let created = post(&url(
        "/c/new?h-location=%2Fc%2Fitems%2F1&h-content-location=items%2F2",
    ))
    .await;
    assert_eq!(created.status, 200);
    assert_eq!(x_cache(&fetch(&url("/c/items/1"), &[]).await), "MISS");
    assert_eq!(x_cache(&fetch(&url("/c/items/2"), &[]).await), "MISS");
    assert_eq!(x_cache(&fetch(&url("/c/items"), &[]).await), "HIT");

    // A failed request changed nothing.
    assert_eq!(post(&url("/c/status/404")).await.status, 404);
    assert_eq!(x_cache(&fetch(&url("/c/status/404"), &[]).await), "HIT");

    // What is stored after an invalidation is still purged by its key.
    let key = format!("GET {}/c/items", gw.addr);
    let purged = post(&format!(
        "{}?key={}",
        gw.admin_url("/cache/purge"),
        form_urlencoded::byte_serialize(key.as_bytes()).collect::<String>()
    ))
    .await;
    assert_eq!(purged.status, 200, "{}", purged.body);
    assert_eq!(x_cache(&fetch(&url("/c/items"), &[]).await), "MISS");
}

/// Gateways sharing a cache on Redis see each other's invalidations: what a
/// POST through one invalidates is not served by the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_through_one_gateway_holds_on_the_others_through_redis() {
    let redis = RedisServer::start();
    let upstream = Upstream::start("api").await;
    let config = cached_route(&upstream, cache().with("store", json!("redis"))).redis(redis.url());
    let a = config.start();
    let b = config.start();
    let host = [("host", "api.example")];
    let german = [("host", "api.example"), ("accept-language", "de")];
    let varying = "/c/doc?h-vary=accept-language";

    for headers in [&host[..], &german[..]] {
        fetch(&a.url(varying), headers).await;
        assert_eq!(x_cache(&fetch(&b.url(varying), headers).await), "HIT");
    }
    let done = request("PUT", &b.url("/c/doc?h-vary=accept-language"), &host).await;
    assert_eq!(done.status, 200);
    for headers in [&host[..], &german[..]] {
        assert_eq!(x_cache(&fetch(&a.url(varying), headers).await), "MISS");
        assert_eq!(x_cache(&fetch(&b.url(varying), headers).await), "HIT");
    }
}

/// An upstream for revalidation: `/doc` is `stored body` with `ETag: "v1"`,
/// an hour of lifetime and an `Age` of two hours (stale on arrival); a
/// request with `If-None-Match: "v1"` gets a `304` with `X-Refreshed`
/// (with `ETag: "v2"` for `/moved`, a `304` about another representation).
/// It records the `If-None-Match` of every request.
async fn validating_upstream() -> (std::net::SocketAddr, Arc<Mutex<Vec<Option<String>>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("upstream addr");
    let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let record = seen.clone();
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let moved = req.uri().path() == "/moved";
        let if_none_match = req
            .headers()
            .get("if-none-match")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        record
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(if_none_match.clone());
        let builder = http::Response::builder().header("cache-control", "max-age=3600");
        let response = if if_none_match.as_deref() == Some("\"v1\"") {
            builder
                .status(304)
                .header("etag", if moved { "\"v2\"" } else { "\"v1\"" })
                .header("x-refreshed", "yes")
                .body(Full::new(Bytes::new()))
        } else {
            builder
                .header("etag", "\"v1\"")
                .header("content-type", "text/plain")
                .header("age", "7200")
                .body(Full::new(Bytes::from_static(b"stored body")))
        };
        async move { Ok::<_, std::convert::Infallible>(response.expect("response")) }
    });
    serve_http1(listener, None, service);
    (addr, seen)
}

/// RFC 9111 4.3: a stale entry with an `ETag` is revalidated with a
/// conditional request; the upstream's `304` refreshes the entry and the
/// client gets the stored body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_entry_is_revalidated_and_a_304_serves_the_stored_body() {
    let (addr, seen) = validating_upstream().await;
    let gw = Config::new()
        .upstream("api", addr)
        .route(
            Route::new("cached", "/{*rest}")
                .upstream("api")
                .plugin(Plugin::new("cache")),
        )
        .start();
    let first = fetch(&gw.url("/doc"), &[]).await;
    assert_eq!((first.status, x_cache(&first)), (200, "MISS"));
    assert_eq!(first.body, "stored body");

    let second = fetch(&gw.url("/doc"), &[]).await;
    assert_eq!((second.status, x_cache(&second)), (200, "REVALIDATED"));
    assert_eq!(second.body, "stored body");
    assert_eq!(second.header("x-refreshed"), Some("yes"));
    assert_eq!(second.header("content-type"), Some("text/plain"));
    assert_eq!(
        seen.lock().unwrap_or_else(|p| p.into_inner()).as_slice(),
        [None, Some("\"v1\"".to_string())]
    );

    // Refreshed without the old Age: fresh for the hour the 304 gave.
    let third = fetch(&gw.url("/doc"), &[]).await;
    assert_eq!(
        (x_cache(&third), third.body.as_str()),
        ("HIT", "stored body")
    );
    assert_eq!(third.header("x-refreshed"), Some("yes"));
    // The client's own If-None-Match is answered from the cache.
    let mine = fetch(&gw.url("/doc"), &[("if-none-match", "\"v1\"")]).await;
    assert_eq!(
        (mine.status, x_cache(&mine), mine.body.as_str()),
        (304, "HIT", "")
    );
    assert_eq!(seen.lock().unwrap_or_else(|p| p.into_inner()).len(), 2);

    // A 304 about another representation (`ETag: "v2"`) validates nothing:
    // neither its empty body nor the stale copy reaches a plain GET, but a
    // 502; the copy is dropped, so the retry fetches it in full.
    let first = fetch(&gw.url("/moved"), &[]).await;
    assert_eq!((first.status, x_cache(&first)), (200, "MISS"));
    let bad = fetch(&gw.url("/moved"), &[]).await;
    assert_eq!((bad.status, x_cache(&bad)), (502, "MISS"));
    assert_eq!(bad.json()["status"], 502);
    let retry = fetch(&gw.url("/moved"), &[]).await;
    assert_eq!(
        (retry.status, x_cache(&retry), retry.body.as_str()),
        (200, "MISS", "stored body")
    );
    assert_eq!(
        seen.lock().unwrap_or_else(|p| p.into_inner())[2..],
        [None, Some("\"v1\"".to_string()), None]
    );
}

/// RFC 9213: with `targeted_cache_control`, `CDN-Cache-Control` decides over
/// `Cache-Control`, and with `strip_targeted_cache_control` the client never
/// sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdn_cache_control_decides_when_the_cache_acts_as_a_cdn() {
    let upstream = Upstream::start("api").await;
    let gw = cached_route(
        &upstream,
        cache().config(json!({
            "ttl": "60s",
            "max_body": "4KiB",
            "targeted_cache_control": ["CDN-Cache-Control"],
            "strip_targeted_cache_control": true,
        })),
    )
    .start();
    let path = "/c/cdn?h-cache-control=no-store&h-cdn-cache-control=max-age%3D600";
    let first = fetch(&gw.url(path), &[]).await;
    assert_eq!(x_cache(&first), "MISS");
    assert_eq!(first.header("cache-control"), Some("no-store"));
    assert_eq!(first.header("cdn-cache-control"), None);
    let second = fetch(&gw.url(path), &[]).await;
    assert_eq!((x_cache(&second), serial(&second)), ("HIT", serial(&first)));
    assert_eq!(second.header("cdn-cache-control"), None);
    // Stripped from answers that bypass the cache too.
    let bypass = request("POST", &gw.url(path), &[]).await;
    assert_eq!(x_cache(&bypass), "BYPASS");
    assert_eq!(bypass.header("cdn-cache-control"), None);
}
