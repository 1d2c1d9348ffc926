//! Routing and proxying: which route a request takes (host, method, the most
//! specific path, conditions on headers and query parameters), splits by
//! weight and by the `canary` built-in, 405 with `allow`, upstream failures (502, 504), the
//! forwarding headers and request ids, round robin, and HTTP/2 cleartext.

use crate::support::config::{Config, Plugin, Pool, Route};
use crate::support::{Upstream, client, get, send};
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::json;
use std::time::{Duration, Instant};

async fn get_with(url: &str, headers: &[(&str, &str)]) -> crate::support::Reply {
    let mut request = Request::get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(&client(), request.body(Full::default()).expect("request")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditions_on_headers_and_query_choose_among_routes_of_one_path() {
    let (v1, v2, v3) = (
        Upstream::start("v1").await,
        Upstream::start("v2").await,
        Upstream::start("v3").await,
    );
    let canary = json!({ "headers": [{ "name": "X-Canary", "exact": "always" }] });
    let beta = json!({
        "headers": [{ "name": "x-canary", "present": true }],
        "query": [{ "name": "channel", "regex": "^beta-[0-9]+$" }, { "name": "debug", "present": false }],
    });
    let gw = Config::new()
        .upstream("v1", &v1)
        .upstream("v2", &v2)
        .upstream("v3", &v3)
        .route(Route::new("split", "/split").upstream("v1"))
        .route(
            Route::new("split-canary", "/split")
                .upstream("v2")
                .with("match", canary),
        )
        .route(
            Route::new("split-beta", "/split")
                .upstream("v3")
                .with("match", beta),
        )
        .start();
    let upstream = |reply: crate::support::Reply| reply.json()["upstream"].clone();
    let url = gw.url("/split");
    assert_eq!(
        upstream(get_with(&url, &[]).await),
        "v1",
        "the route without conditions"
    );
    assert_eq!(
        upstream(get_with(&url, &[("x-canary", "always")]).await),
        "v2"
    );
    assert_eq!(
        upstream(get_with(&url, &[("x-canary", "sometimes")]).await),
        "v1"
    );
    let beta_url = gw.url("/split?channel=beta-7");
    assert_eq!(
        upstream(get_with(&beta_url, &[("x-canary", "no")]).await),
        "v3",
        "more conditions first"
    );
    assert_eq!(
        upstream(get_with(&beta_url, &[("x-canary", "always")]).await),
        "v3"
    );
    let debug_url = gw.url("/split?channel=beta-7&debug=1");
    assert_eq!(
        upstream(get_with(&debug_url, &[("x-canary", "always")]).await),
        "v2",
        "debug must be absent"
    );
    let other = gw.url("/split?channel=beta-x");
    assert_eq!(
        upstream(get_with(&other, &[("x-canary", "no")]).await),
        "v1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_split_a_routes_requests_among_its_upstreams() {
    let (v1, v2, v3) = (
        Upstream::start("v1").await,
        Upstream::start("v2").await,
        Upstream::start("v3").await,
    );
    let gw = Config::new()
        .upstream("v1", &v1)
        .upstream("v2", &v2)
        .upstream("v3", &v3)
        .route(
            Route::new("split", "/split")
                .upstreams(&["v1", "v2"])
                .with("weights", json!([80, 20])),
        )
        .route(
            Route::new("drained", "/drained")
                .upstreams(&["v1", "v2", "v3"])
                .with("weights", json!([1, 0, 1])),
        )
        .start();
    let client = client();
    let mut to_v2 = 0;
    for _ in 0..400 {
        let request = Request::get(gw.url("/split"))
            .body(Full::default())
            .expect("request");
        if send(&client, request).await.json()["upstream"] == "v2" {
            to_v2 += 1;
        }
    }
    // 20% of 400 is 80; five standard deviations (8 each) either side.
    assert!((40..=120).contains(&to_v2), "{to_v2} of 400 went to v2");
    let before = v2.hits();
    let mut to_v3 = 0;
    for _ in 0..100 {
        if get(&gw.url("/drained")).await.json()["upstream"] == "v3" {
            to_v3 += 1;
        }
    }
    assert_eq!(
        v2.hits(),
        before,
        "a weight of 0 drains, between two others"
    );
    assert!((20..=80).contains(&to_v3), "{to_v3} of 100 went to v3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_canary_built_in_sends_by_header_cookie_consumer_and_sticky_percentage() {
    let (v1, v2) = (Upstream::start("v1").await, Upstream::start("v2").await);
    let canary = Plugin::new("canary").config(json!({
        "upstream": "v2",
        "header": { "name": "x-canary", "values": ["always"] },
        "cookie": { "name": "canary", "values": ["yes"] },
        "percentage": 25,
        "sticky_on": "header:x-user",
    }));
    let gw = Config::new()
        .upstream("v1", &v1)
        .upstream("v2", &v2)
        .route(
            Route::new("orders", "/orders")
                .upstreams(&["v1", "v2"])
                .plugin(canary),
        )
        .start();
    let url = gw.url("/orders");
    let side = |reply: crate::support::Reply| reply.json()["upstream"].as_str().map(str::to_string);
    let always = get_with(&url, &[("x-canary", "always"), ("x-user", "u-1")]).await;
    assert_eq!(side(always).as_deref(), Some("v2"));
    let cookie = get_with(&url, &[("cookie", "a=b; canary=yes")]).await;
    assert_eq!(side(cookie).as_deref(), Some("v2"));
    // Without the header or cookie, a quarter of users, each always on its side.
    let mut canaries = 0;
    for user in 0..200 {
        let user = format!("user-{user}");
        let first = side(get_with(&url, &[("x-user", &user)]).await);
        let again = side(get_with(&url, &[("x-user", &user)]).await);
        assert_eq!(first, again, "{user} changed sides");
        if first.as_deref() == Some("v2") {
            canaries += 1;
        }
    }
    // 50 expected; the users' hashes are fixed, so this is the same run to
    // run, and well within five standard deviations (6.1 each).
    assert!(
        (20..=80).contains(&canaries),
        "{canaries} of 200 users on the canary"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_method_and_most_specific_path() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let gw = Config::new()
        .upstream("a", &a)
        .upstream("b", &b)
        .route(Route::new("user-by-id", "/users/{id}").upstream("a"))
        .route(
            Route::new("me", "/users/me")
                .methods(&["GET"])
                .upstream("b"),
        )
        .route(
            Route::new("static", "/static/{*rest}")
                .upstream("b")
                .strip_prefix("/static"),
        )
        .route(
            Route::new("hosted", "/users/{id}")
                .hosts(&["*.example.test"])
                .upstream("b"),
        )
        .start();

    let reply = get(&gw.url("/users/42")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["upstream"], "a");
    assert_eq!(reply.json()["path"], "/users/42");

    let reply = get(&gw.url("/users/me")).await;
    assert_eq!(
        reply.json()["upstream"],
        "b",
        "static segment beats the parameter"
    );

    let reply = get(&gw.url("/static/css/site.css?v=3")).await;
    assert_eq!(reply.json()["path"], "/css/site.css", "prefix stripped");
    assert_eq!(reply.json()["query"], "v=3");

    let request = Request::get(gw.url("/users/7"))
        .header("host", "api.example.test")
        .body(Full::default())
        .expect("request");
    let reply = send(&client(), request).await;
    assert_eq!(reply.json()["upstream"], "b", "host-specific route wins");

    let reply = get(&gw.url("/nothing/here")).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["error"], "no route matches this request");
    assert!(reply.header("x-request-id").is_some());

    let request = Request::delete(gw.url("/users/me"))
        .body(Full::default())
        .expect("request");
    let reply = send(&client(), request).await;
    // The most specific template owns its path: /users/me answers GET only, and
    // does not fall back to /users/{id} for other methods (docs/configuration.md).
    assert_eq!(reply.status, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_not_allowed_lists_allowed_methods() {
    let a = Upstream::start("a").await;
    let gw = Config::new()
        .upstream("a", &a)
        .route(
            Route::new("items", "/items")
                .methods(&["GET", "post"])
                .upstream("a"),
        )
        .start();
    let request = Request::delete(gw.url("/items"))
        .body(Full::default())
        .expect("request");
    let reply = send(&client(), request).await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET, POST"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_is_502_and_slow_is_504() {
    let up = Upstream::start("up").await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let gw = Config::new()
        .upstream(
            "down",
            Pool::new([closed]).with("connect_timeout", json!("1s")),
        )
        .upstream("slow", Pool::new([up.addr]).timeout("200ms"))
        .route(Route::new("down", "/down").upstream("down"))
        .route(Route::new("slow", "/slow/{ms}").upstream("slow"))
        .start();
    let reply = get(&gw.url("/down")).await;
    assert_eq!(reply.status, 502);
    assert_eq!(reply.json()["error"], "bad gateway");
    let started = Instant::now();
    let reply = get(&gw.url("/slow/2000")).await;
    assert_eq!(reply.status, 504);
    assert!(started.elapsed() < Duration::from_millis(1900));
    let reply = get(&gw.url("/slow/0")).await;
    assert_eq!(reply.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_request_id_and_round_robin() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let gw = Config::new()
        .upstream("pair", Pool::new([a.addr, b.addr]))
        .route(Route::new("any", "/{*rest}").upstream("pair"))
        .start();
    let request = Request::get(gw.url("/x"))
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-request-id", "abc-123")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "secret")
        .body(Full::default())
        .expect("request");
    let reply = send(&client(), request).await;
    let seen = reply.json();
    assert_eq!(
        seen["headers"]["x-forwarded-for"], "127.0.0.1",
        "untrusted XFF replaced"
    );
    assert_eq!(seen["headers"]["x-forwarded-proto"], "http");
    assert_eq!(
        seen["headers"]["forwarded"],
        format!("for=127.0.0.1;proto=http;host=\"{}\"", gw.addr)
    );
    assert_eq!(seen["headers"]["x-request-id"], "abc-123");
    assert!(
        seen["headers"].get("x-hop").is_none(),
        "hop-by-hop header named in Connection dropped"
    );
    assert_eq!(reply.header("x-request-id"), Some("abc-123"));

    let generated = get(&gw.url("/y")).await;
    let id = generated
        .header("x-request-id")
        .unwrap_or_default()
        .to_string();
    assert_eq!(id.len(), 36, "a UUID is generated");
    assert_eq!(generated.json()["headers"]["x-request-id"], id);

    for _ in 0..6 {
        get(&gw.url("/z")).await;
    }
    assert_eq!(a.hits() + b.hits(), 8);
    assert_eq!(a.hits(), 4, "round robin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_cleartext_and_third_party_plugin_from_a_path() {
    let gw = Config::new()
        .route(
            Route::new("hello", "/hello/{name}")
                .plugin(Plugin::wasm("hello_plugin").config(json!({ "greeting": "Hi" }))),
        )
        .start();
    let h2 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build::<_, Full<Bytes>>(hyper_util::client::legacy::connect::HttpConnector::new());
    let response = h2
        .request(
            Request::get(gw.url("/hello/ada"))
                .body(Full::default())
                .expect("request"),
        )
        .await
        .expect("h2 request");
    assert_eq!(response.version(), http::Version::HTTP_2);
    use http_body_util::BodyExt;
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(json["message"], "Hi, ada!");
}
