//! Entries every route inherits (`[[plugins]]`), through the real binary: a
//! global key-auth guards a route that forgot it, a public route switches it
//! off by name, a route replaces an inherited entry with its own config in
//! the inherited place, and `gateway check` and `/status` show each route's
//! pipeline as it runs.

use crate::support::config::{Config, Plugin, Route};
use crate::support::{Upstream, check, client, get, send};
use http::Request;
use http_body_util::Full;
use serde_json::json;

const KEY: &str = "alice-key-0000000001";

fn stamp(value: &str) -> Plugin {
    Plugin::new("headers")
        .with("name", json!("stamp"))
        .config(json!({ "request": { "set": { "x-stamp": value } } }))
}

fn shared_policies(up: &Upstream) -> Config {
    Config::new()
        .consumer(json!({ "name": "alice", "keys": [{ "plaintext": KEY }] }))
        .plugin(stamp("global"))
        .plugin(Plugin::new("key-auth"))
        .upstream("api", up)
        .route(Route::new("orders", "/orders").upstream("api"))
        .route(
            Route::new("health", "/health")
                .upstream("api")
                .plugin(Plugin::new("key-auth").with("enabled", json!(false))),
        )
        .route(
            Route::new("stamped", "/stamped")
                .upstream("api")
                .plugin(stamp("route"))
                .plugin(
                    Plugin::new("headers")
                        .config(json!({ "request": { "set": { "x-own": "route" } } })),
                ),
        )
}

async fn get_with_key(url: &str) -> crate::support::Reply {
    let request = Request::get(url)
        .header("x-api-key", KEY)
        .body(Full::default())
        .expect("request");
    send(&client(), request).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_key_auth_guards_every_route_but_one_that_switches_it_off() {
    let up = Upstream::start("api").await;
    let gw = shared_policies(&up).admin().start();

    let refused = get(&gw.url("/orders")).await;
    assert_eq!(
        refused.status, 401,
        "a route without plugins inherits key-auth: {}",
        refused.body
    );
    let orders = get_with_key(&gw.url("/orders")).await;
    assert_eq!(orders.status, 200, "{}", orders.body);
    assert_eq!(orders.json()["headers"]["x-stamp"], "global");
    assert!(
        orders.json()["headers"].get("x-api-key").is_none(),
        "key-auth hides the key"
    );

    let health = get(&gw.url("/health")).await;
    assert_eq!(
        health.status, 200,
        "key-auth is off on /health: {}",
        health.body
    );
    assert_eq!(health.json()["headers"]["x-stamp"], "global");

    let stamped = get_with_key(&gw.url("/stamped")).await;
    assert_eq!(stamped.status, 200, "{}", stamped.body);
    assert_eq!(
        stamped.json()["headers"]["x-stamp"],
        "route",
        "the route's entry replaces the global one"
    );
    assert_eq!(stamped.json()["headers"]["x-own"], "route");
    assert_eq!(
        get(&gw.url("/stamped")).await.status,
        401,
        "the other inherited entries stay"
    );

    let status = get(&gw.admin_url("/status")).await.json();
    let route = |name: &str| {
        status["routes"]
            .as_array()
            .and_then(|routes| routes.iter().find(|r| r["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no route {name} in {status}"))
    };
    let levels = |name: &str| -> Vec<(String, String)> {
        route(name)["plugins"]
            .as_array()
            .map(|plugins| {
                plugins
                    .iter()
                    .map(|p| {
                        (
                            p["plugin"].as_str().unwrap_or_default().to_string(),
                            p["level"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let pair = |plugin: &str, level: &str| (plugin.to_string(), level.to_string());
    assert_eq!(
        levels("orders"),
        [pair("headers", "global"), pair("key-auth", "global")]
    );
    assert_eq!(levels("health"), [pair("headers", "global")]);
    // One shared key-auth entry: the four requests of two routes in one
    // set of counters, seen from either route.
    let calls = |name: &str, at: usize| route(name)["plugins"][at]["calls"].clone();
    assert_eq!(calls("orders", 1), json!(4));
    assert_eq!(calls("stamped", 1), json!(4));
    let metrics = get(&gw.admin_url("/metrics")).await.body;
    let idle: Vec<&str> = metrics
        .lines()
        .filter(|l| {
            l.starts_with("gateway_plugin_idle_instances{") && l.contains("plugin=\"key-auth\"")
        })
        .collect();
    assert_eq!(idle.len(), 1, "one pool, counted once: {idle:?}");
    assert!(idle[0].contains("route=\"*\""), "{idle:?}");
    assert_eq!(route("health")["switched_off"], json!(["key-auth"]));
    assert_eq!(
        levels("stamped"),
        [
            pair("headers", "replacement"),
            pair("key-auth", "global"),
            pair("headers", "route")
        ],
        "the replacing entry keeps the inherited place, before the route's own"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_check_prints_each_routes_pipeline_as_it_runs() {
    let up = Upstream::start("api").await;
    let dir = tempfile::tempdir().expect("tempdir");
    shared_policies(&up).write(dir.path().join("gateway.toml"));
    let (ok, output) = check(dir.path(), "gateway.toml");
    assert!(ok, "{output}");
    for line in [
        "  route `orders`: stamp=headers (global), key-auth (global)",
        "  route `health`: stamp=headers (global); switched off: key-auth",
        "  route `stamped`: stamp=headers (replaces inherited), key-auth (global), headers",
    ] {
        assert!(
            output.lines().any(|l| l == line),
            "missing `{line}` in:\n{output}"
        );
    }
}
