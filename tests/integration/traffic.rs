//! The `rate-limit` built-in through the real binary: exact counts, 429 with
//! `Retry-After` and `RateLimit-*` headers, separate counters per key.

use crate::support::config::{Config, Plugin, Route};
use crate::support::{Gateway, Upstream, client, send};
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_admits_exactly_the_limit_then_answers_429() {
    let upstream = Upstream::start("api").await;
    let gw = Config::new()
        .upstream("api", &upstream)
        .route(
            Route::new("by-ip", "/ip").upstream("api").plugin(
                Plugin::new("rate-limit")
                    .config(json!({ "limits": [{ "rate": "3/minute", "by": ["ip"] }] })),
            ),
        )
        .route(Route::new("by-tenant", "/tenant").upstream("api").plugin(
            Plugin::new("rate-limit").config(json!({
                "limits": [
                    { "rate": "2/minute", "by": ["header:x-tenant"] },
                    { "rate": "100/s", "by": ["route"] },
                ],
            })),
        ))
        .start();
    let client = client();
    let get = |path: &str, tenant: Option<&str>| {
        let mut builder = Request::get(gw.url(path));
        if let Some(tenant) = tenant {
            builder = builder.header("x-tenant", tenant);
        }
        builder.body(Full::<Bytes>::default()).expect("request")
    };

    for remaining in ["2", "1", "0"] {
        let reply = send(&client, get("/ip", None)).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.header("ratelimit-limit"), Some("3"));
        assert_eq!(reply.header("ratelimit-remaining"), Some(remaining));
    }
    let reply = send(&client, get("/ip", None)).await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.json()["error"], "too many requests");
    let retry: u64 = reply
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_default();
    assert!((19..=20).contains(&retry), "retry-after {retry}");
    assert_eq!(reply.header("ratelimit-remaining"), Some("0"));
    assert_eq!(upstream.hits(), 3, "a refused request reached the upstream");

    for tenant in ["a", "a", "b", "b"] {
        assert_eq!(
            send(&client, get("/tenant", Some(tenant))).await.status,
            200
        );
    }
    assert_eq!(send(&client, get("/tenant", Some("a"))).await.status, 429);
    assert_eq!(send(&client, get("/tenant", Some("c"))).await.status, 200);
}

/// The `RateLimit-*` headers of an admitted request are set from the request
/// phase: they reach the client whatever answers (upstream, a later plugin, a
/// gateway error), and no response hook sees them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_headers_reach_every_kind_of_answer() {
    let upstream = Upstream::start("api").await;
    let down = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let down_addr = down.local_addr().expect("addr");
    drop(down);
    let gw = // Runs its response hook before the client gets the answer: it must not see
// (so cannot remove) what the request phase set.
Config::new()
.upstream("api", &upstream)
.upstream("down", down_addr)
.route(Route::new("proxied", "/proxied")
.upstream("api")
.plugin(Plugin::new("rate-limit")
.config(json!({ "limits": [{ "rate": "5/minute", "by": ["route"] }] })))
.plugin(Plugin::new("headers")
.config(json!({ "response": { "remove": ["ratelimit-limit"], "set": { "x-saw": "yes" } } }))))
.route(Route::new("answered", "/answered")
.plugin(Plugin::new("rate-limit")
.config(json!({ "limits": [{ "rate": "5/minute", "by": ["route"] }] })))
.plugin(Plugin::new("respond")
.config(json!({ "status": 201, "body": "made here" }))))
.route(Route::new("broken", "/broken")
.upstream("down")
.plugin(Plugin::new("rate-limit")
.config(json!({ "limits": [{ "rate": "5/minute", "by": ["route"] }] }))))
.start();
    let client = client();
    let get = |path: &str| {
        Request::get(gw.url(path))
            .body(Full::<Bytes>::default())
            .expect("request")
    };
    for (path, status) in [("/proxied", 200), ("/answered", 201), ("/broken", 502)] {
        let reply = send(&client, get(path)).await;
        assert_eq!(reply.status, status, "{path}: {}", reply.body);
        assert_eq!(reply.header("ratelimit-limit"), Some("5"), "{path}");
        assert_eq!(reply.header("ratelimit-remaining"), Some("4"), "{path}");
        assert!(reply.header("ratelimit-reset").is_some(), "{path}");
    }
    let reply = send(&client, get("/proxied")).await;
    assert_eq!(reply.header("x-saw"), Some("yes"));
    assert_eq!(reply.header("ratelimit-remaining"), Some("3"));
}

/// Behind a trusted load balancer, limits by IP count each client, not the
/// balancer; a peer that is not trusted cannot pick its address with
/// `X-Forwarded-For`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_by_ip_see_the_client_behind_a_trusted_proxy() {
    let upstream = Upstream::start("api").await;
    let config = |trusted: &[&str]| {
        Config::new()
            .server(json!({ "trusted_proxies": trusted }))
            .upstream("api", &upstream)
            .route(
                Route::new("by-ip", "/ip").upstream("api").plugin(
                    Plugin::new("rate-limit")
                        .config(json!({ "limits": [{ "rate": "2/minute", "by": ["ip"] }] })),
                ),
            )
    };
    let from = |gw: &Gateway, client: &str| {
        Request::get(gw.url("/ip"))
            .header("x-forwarded-for", format!("6.6.6.6, {client}"))
            .body(Full::<Bytes>::default())
            .expect("request")
    };
    let client = client();

    // The tests' own address (127.0.0.1) plays the trusted balancer.
    let behind = config(&["127.0.0.1"]).start();
    let mut statuses = Vec::new();
    for who in ["203.0.113.1", "203.0.113.1", "203.0.113.1", "203.0.113.2"] {
        statuses.push(send(&client, from(&behind, who)).await.status);
    }
    assert_eq!(statuses, vec![200, 200, 429, 200]);
    let log = behind.log();
    assert!(log.contains("client=203.0.113.1:0"), "{log}");

    // Untrusted: the header is ignored and every request is the same client.
    let direct = config(&[]).start();
    let mut statuses = Vec::new();
    for who in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
        statuses.push(send(&client, from(&direct, who)).await.status);
    }
    assert_eq!(statuses, vec![200, 200, 429]);
}
