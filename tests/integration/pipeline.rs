//! The plugin pipeline: both phases editing the request and the response,
//! plugins answering without an upstream, the per-request context, a request
//! hook choosing the upstream, and bodies crossing only to plugins that read them.

use crate::support::config::{Config, Plugin, Route};
use crate::support::{Reply, Upstream, client, get, misbehave, send};
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_phases_edit_request_and_response() {
    let up = Upstream::start("up").await;
    let gw = Config::new()
        .upstream("up", &up)
        .route(
            Route::new("edited", "/edit")
                .upstream("up")
                .plugin(Plugin::new("headers").config(json!({
                    "request": {
                        "set": { "x-first": "1" },
                        "remove": ["x-secret"],
                        "query_add": { "added": "yes" },
                        "query_remove": ["drop"],
                    },
                    "response": { "add": { "x-order": "first" } },
                })))
                .plugin(Plugin::new("headers").config(json!({
                    "request": { "rename": { "x-first": "x-renamed" } },
                    "response": {
                        "set": { "x-order": "second", "x-second": "yes" },
                        "remove": ["x-upstream"],
                    },
                }))),
        )
        .start();
    let request = Request::get(gw.url("/edit?keep=1&drop=2"))
        .header("x-secret", "hunter2")
        .body(Full::default())
        .expect("request");
    let reply = send(&client(), request).await;
    assert_eq!(reply.status, 200);
    let seen = reply.json();
    assert_eq!(
        seen["headers"]["x-renamed"], "1",
        "second plugin saw the first one's edit"
    );
    assert!(seen["headers"].get("x-first").is_none());
    assert!(seen["headers"].get("x-secret").is_none());
    assert_eq!(seen["query"], "keep=1&added=yes");
    // Response phase runs in reverse: the second plugin sets, then the first adds.
    let order: Vec<&str> = reply
        .headers
        .get_all("x-order")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert_eq!(order, ["second", "first"]);
    assert_eq!(reply.header("x-second"), Some("yes"));
    assert_eq!(reply.header("x-upstream"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_answers_without_upstream_and_earlier_plugins_see_the_answer() {
    let up = Upstream::start("up").await;
    let gw = Config::new()
        .upstream("up", &up)
        .route(
            Route::new("function", "/fn/{name}")
                .plugin(
                    Plugin::new("headers")
                        .config(json!({ "response": { "set": { "x-wrapped": "yes" } } })),
                )
                .plugin(Plugin::new("respond").config(json!({
                    "status": 201,
                    "body": "made {{name}}",
                    "headers": { "x-made-by": "respond" },
                }))),
        )
        .route(
            Route::new("short-circuit", "/blocked")
                .upstream("up")
                .plugin(Plugin::new("respond").config(json!({ "status": 403, "body": "no" }))),
        )
        .start();
    let reply = get(&gw.url("/fn/widget")).await;
    assert_eq!(reply.status, 201);
    assert_eq!(reply.body, "made widget");
    assert_eq!(reply.header("x-made-by"), Some("respond"));
    assert_eq!(reply.header("x-wrapped"), Some("yes"));

    let reply = get(&gw.url("/blocked")).await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.body, "no");
    assert_eq!(
        up.hits(),
        0,
        "a short-circuited request never reaches the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_is_shared_within_a_request_only() {
    let gw = Config::new()
        .route(
            Route::new("ctx", "/ctx")
                .plugin(misbehave(
                    json!({ "mode": "set-context", "key": "consumer", "value": "alice" }),
                ))
                .plugin(misbehave(json!({ "mode": "echo-context" }))),
        )
        .route(Route::new("empty", "/empty").plugin(misbehave(json!({ "mode": "echo-context" }))))
        .start();
    let reply = get(&gw.url("/ctx")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["consumer"], "alice");
    let reply = get(&gw.url("/empty")).await;
    assert_eq!(
        reply.json(),
        serde_json::json!({}),
        "no context leaks into another request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_hook_chooses_among_the_route_upstreams_and_the_response_hook_sees_the_head() {
    let stable = Upstream::start("stable").await;
    let canary = Upstream::start("canary").await;
    let gw = Config::new()
        .upstream("stable", &stable)
        .upstream("canary", &canary)
        .upstream("elsewhere", &canary)
        .route(
            Route::new("users", "/users/{id}")
                .upstreams(&["stable", "canary"])
                .plugin(misbehave(
                    json!({ "mode": "set-context", "key": "consumer", "value": "alice" }),
                ))
                .plugin(misbehave(json!({ "mode": "choose-upstream" }))),
        )
        .route(
            Route::new("lenient", "/lenient/{id}")
                .upstream("stable")
                .plugin(misbehave(json!({ "mode": "choose-upstream" })).on_error("continue")),
        )
        .route(
            Route::new("response-only", "/only/{id}")
                .upstream("stable")
                .plugin(misbehave(
                    json!({ "mode": "choose-upstream", "phase": "response" }),
                )),
        )
        .start();
    let by_default = get(&gw.url("/users/42")).await;
    assert_eq!(by_default.status, 200);
    assert_eq!(by_default.json()["upstream"], "stable");
    let seen = |reply: &Reply, name: &str| {
        reply
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(seen(&by_default, "x-seen-upstream"), "stable");
    assert_eq!(seen(&by_default, "x-seen-route"), "users");
    assert_eq!(seen(&by_default, "x-seen-path"), "/users/42");
    assert_eq!(seen(&by_default, "x-seen-param"), "42");
    assert_eq!(seen(&by_default, "x-seen-method"), "GET");
    assert_eq!(seen(&by_default, "x-seen-consumer"), "alice");
    assert_eq!(
        seen(&by_default, "x-seen-request-id"),
        seen(&by_default, "x-request-id"),
        "the response hook sees the id the client gets"
    );

    let ask = |upstream: &'static str| {
        Request::get(gw.url("/users/7"))
            .header("x-upstream", upstream)
            .body(Full::default())
            .expect("request")
    };
    let chosen = send(&client(), ask("canary")).await;
    assert_eq!(chosen.status, 200);
    assert_eq!(chosen.json()["upstream"], "canary");
    assert_eq!(seen(&chosen, "x-seen-upstream"), "canary");
    assert_eq!((stable.hits(), canary.hits()), (1, 1));

    // An upstream the route does not list fails the call: 500, and the
    // request goes nowhere.
    // A route whose plugins take only the response phase: its hook sees the
    // path parameters too.
    let response_only = get(&gw.url("/only/9")).await;
    assert_eq!(seen(&response_only, "x-seen-param"), "9");
    assert_eq!(seen(&response_only, "x-seen-route"), "response-only");
    assert_eq!(seen(&response_only, "x-seen-consumer"), "-");
    assert_eq!((stable.hits(), canary.hits()), (2, 1));

    let smuggled = Request::get(gw.url("/users/7"))
        .header("x-smuggle", "canary")
        .body(Full::default())
        .expect("request");
    let smuggled = send(&client(), smuggled).await;
    assert_eq!(smuggled.status, 500, "{}", smuggled.body);
    assert!(
        gw.log().contains("a header named `:upstream`"),
        "{}",
        gw.log()
    );
    assert_eq!((stable.hits(), canary.hits()), (2, 1));

    // An edit no request could carry is the plugin's failure, so its
    // entry's on_error decides: 500, or on without the edit.
    let bad_path = |path: &str| {
        Request::get(gw.url(path))
            .header("x-set-path", "no-slash")
            .body(Full::default())
            .expect("request")
    };
    let refused = send(&client(), bad_path("/users/1")).await;
    assert_eq!(refused.status, 500, "{}", refused.body);
    assert!(
        gw.log().contains("an invalid path `no-slash`"),
        "{}",
        gw.log()
    );
    let lenient = send(&client(), bad_path("/lenient/1")).await;
    assert_eq!(lenient.status, 200, "{}", lenient.body);
    assert_eq!(
        lenient.json()["path"],
        "/lenient/1",
        "the edit was not applied"
    );
    assert_eq!((stable.hits(), canary.hits()), (3, 1));

    let unlisted = send(&client(), ask("elsewhere")).await;
    assert_eq!(unlisted.status, 500, "{}", unlisted.body);
    let log = gw.log();
    assert!(
        log.contains("upstream `elsewhere`, which its route does not list"),
        "{log}"
    );
    assert_eq!((stable.hits(), canary.hits()), (3, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_cross_only_to_plugins_that_read_them() {
    let up = Upstream::start("up").await;
    let gw = Config::new()
        .upstream("up", &up)
        .route(
            Route::new("reader", "/reader")
                .upstream("up")
                .plugin(Plugin::wasm("body_reader_plugin").with("max_body", json!("2KiB"))),
        )
        .route(Route::new("blind", "/blind").plugin(misbehave(json!({ "mode": "echo-body" }))))
        .start();
    let post = |path: &str, body: &'static str| {
        Request::post(gw.url(path))
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .expect("request")
    };
    let reply = send(&client(), post("/reader", "hello")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-request-body-len"), Some("5"));
    let upstream_len: usize = reply
        .header("x-response-body-len")
        .and_then(|l| l.parse().ok())
        .expect("len");
    assert!(reply.body.starts_with('[') && reply.body.ends_with(']'));
    assert_eq!(
        reply.body.len(),
        upstream_len + 2,
        "content-length fixed after the body changed"
    );
    let inner: serde_json::Value =
        serde_json::from_str(&reply.body[1..reply.body.len() - 1]).expect("json");
    assert_eq!(inner["body"], "HELLO", "the upstream got the edited body");

    let big = Request::post(gw.url("/reader"))
        .body(Full::new(Bytes::from(vec![b'a'; 3000])))
        .expect("request");
    let reply = send(&client(), big).await;
    assert_eq!(reply.status, 413, "over the entry's max_body");
    // Under the cap going up, but the upstream's echo of it is over the cap
    // coming back: the plugin cannot be given the body, so the answer is 502.
    let echoed = Request::post(gw.url("/reader"))
        .body(Full::new(Bytes::from(vec![b'a'; 1900])))
        .expect("request");
    let reply = send(&client(), echoed).await;
    assert_eq!(reply.status, 502, "upstream body over the entry's max_body");

    let reply = send(&client(), post("/blind", "secret")).await;
    assert_eq!(
        reply.body, "none",
        "a plugin that does not read bodies never sees one"
    );
}
