//! The `ext-auth` built-in through the real binary, against a real
//! authorizer started here: allow, deny, failure, timeout, the decision
//! cache and its expiry, denials cached, one call for many concurrent
//! requests, and a request authorizer's identity sources.

use crate::support::config::{Config, Plugin, Route};
use crate::support::{Upstream, body_bytes, client, send, serve_local};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The authorizer: decides by the token (or the request's identity), and
/// counts calls by token.
#[derive(Clone, Default)]
struct Authorizer {
    calls: Arc<Mutex<HashMap<String, usize>>>,
    questions: Arc<Mutex<Vec<Value>>>,
    /// Denies everything.
    strict: bool,
}

impl Authorizer {
    async fn start(&self) -> std::net::SocketAddr {
        let this = self.clone();
        serve_local(service_fn(move |req: Request<Incoming>| {
            let this = this.clone();
            async move { Ok::<_, Infallible>(this.answer(req).await) }
        }))
        .await
    }

    fn calls(&self, token: &str) -> usize {
        self.calls
            .lock()
            .map(|c| c.get(token).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let body = body_bytes(req.into_body()).await;
        let question: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let token = question["token"].as_str().unwrap_or("-").to_string();
        if let Ok(mut calls) = self.calls.lock() {
            *calls.entry(token.clone()).or_default() += 1;
        }
        if let Ok(mut questions) = self.questions.lock() {
            questions.push(question.clone());
        }
        let (status, grant) = match token.as_str() {
            _ if self.strict => (403, json!({})),
            t if t.starts_with("Bearer allow") => (
                200,
                json!({ "consumer": "alice", "headers": { "x-user": "alice" }, "context": { "tenant": "acme" } }),
            ),
            t if t.starts_with("Bearer short") => (200, json!({ "ttl": 1 })),
            t if t.starts_with("Bearer burst") => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                (200, json!({}))
            }
            "Bearer slow" => {
                tokio::time::sleep(Duration::from_secs(3)).await;
                (200, json!({}))
            }
            "Bearer broken" => (500, json!({})),
            "-" => match question["identity"]["header:x-tenant"].as_str() {
                Some("acme") => (200, json!({ "consumer": "acme-app" })),
                _ => (403, json!({})),
            },
            _ => (403, json!({})),
        };
        let mut response = Response::new(Full::new(Bytes::from(grant.to_string())));
        *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
        response
    }
}

fn ext_auth(addr: std::net::SocketAddr, settings: Value) -> Plugin {
    let mut config = json!({ "endpoint": format!("http://{addr}/check"), "timeout_ms": 500 });
    if let (Value::Object(into), Value::Object(from)) = (&mut config, settings) {
        into.extend(from);
    }
    Plugin::new("ext-auth")
        .with("allowed_hosts", json!([addr.to_string()]))
        .config(config)
}

fn with_token(url: String, token: &str) -> Request<Full<Bytes>> {
    Request::get(url)
        .header("authorization", format!("Bearer {token}"))
        .body(Full::default())
        .expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_authorizer_allows_denies_fails_and_remembers() {
    let upstream = Upstream::start("api").await;
    let authorizer = Authorizer::default();
    let addr = authorizer.start().await;
    let gw = Config::new()
        .upstream("api", &upstream)
        .route(
            Route::new("api", "/api")
                .upstream("api")
                .plugin(ext_auth(addr, json!({ "deny_ttl": 60 }))),
        )
        .route(
            Route::new("open", "/open")
                .upstream("api")
                .plugin(ext_auth(addr, json!({ "on_failure": "allow" }))),
        )
        .start();
    let client = client();
    let status = |token: &'static str, path: &'static str| {
        let (client, url) = (client.clone(), gw.url(path));
        async move { send(&client, with_token(url, token)).await }
    };
    // Allowed, with the grant's header upstream; then remembered.
    let allowed = status("allow-1", "/api").await;
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    assert_eq!(allowed.json()["headers"]["x-user"], "alice");
    assert_eq!(status("allow-1", "/api").await.status, 200);
    assert_eq!(authorizer.calls("Bearer allow-1"), 1);
    // Denied, and the denial remembered too.
    assert_eq!(status("nope", "/api").await.status, 403);
    assert_eq!(status("nope", "/api").await.status, 403);
    assert_eq!(authorizer.calls("Bearer nope"), 1);
    // A failure or a timeout: 503, unless the entry allows on failure.
    assert_eq!(status("broken", "/api").await.status, 503);
    assert_eq!(status("slow", "/api").await.status, 503);
    assert_eq!(status("broken", "/open").await.status, 200);
    // Failures are not remembered.
    assert_eq!(status("broken", "/api").await.status, 503);
    assert_eq!(authorizer.calls("Bearer broken"), 3);
    // No token: 401 without a call.
    let bare = Request::get(gw.url("/api"))
        .body(Full::default())
        .expect("request");
    assert_eq!(send(&client, bare).await.status, 401);
    // An answer's shorter ttl expires the decision.
    assert_eq!(status("short", "/api").await.status, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(status("short", "/api").await.status, 200);
    assert_eq!(authorizer.calls("Bearer short"), 2);
    assert_eq!(upstream.hits(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_one_new_token_make_one_call() {
    let upstream = Upstream::start("api").await;
    let authorizer = Authorizer::default();
    let addr = authorizer.start().await;
    let gw = Config::new()
        .upstream("api", &upstream)
        .route(
            Route::new("api", "/api")
                .upstream("api")
                .plugin(ext_auth(addr, json!({}))),
        )
        .start();
    let requests: Vec<_> = (0..100)
        .map(|_| {
            let (client, url) = (client(), gw.url("/api"));
            tokio::spawn(async move { send(&client, with_token(url, "burst")).await.status })
        })
        .collect();
    for request in requests {
        assert_eq!(request.await.expect("request"), 200);
    }
    assert_eq!(authorizer.calls("Bearer burst"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_authorizer_reads_its_identity_sources() {
    let upstream = Upstream::start("api").await;
    let authorizer = Authorizer::default();
    let addr = authorizer.start().await;
    let settings =
        json!({ "kind": "request", "identity_sources": ["header:x-tenant", "query:app", "path"] });
    let gw = Config::new()
        .upstream("api", &upstream)
        .route(
            Route::new("api", "/tenants/{*rest}")
                .upstream("api")
                .plugin(ext_auth(addr, settings)),
        )
        .start();
    let get = |tenant: Option<&str>, query: &str| {
        let mut request = Request::get(gw.url(&format!("/tenants/orders?{query}")));
        if let Some(tenant) = tenant {
            request = request.header("x-tenant", tenant);
        }
        let request = request.body(Full::<Bytes>::default()).expect("request");
        async move { send(&client(), request).await.status }
    };
    assert_eq!(get(Some("acme"), "app=web").await, 200);
    assert_eq!(get(Some("initech"), "app=web").await, 403);
    // A missing source: 401, and the authorizer is not asked.
    let asked = authorizer.questions.lock().map(|q| q.len()).unwrap_or(0);
    assert_eq!(get(None, "app=web").await, 401);
    assert_eq!(get(Some("acme"), "other=1").await, 401);
    assert_eq!(
        authorizer.questions.lock().map(|q| q.len()).unwrap_or(0),
        asked
    );
    let first = authorizer
        .questions
        .lock()
        .map(|q| q[0].clone())
        .unwrap_or_default();
    assert_eq!(first["type"], "request");
    assert_eq!(
        first["identity"],
        json!({ "header:x-tenant": "acme", "query:app": "web", "path": "/tenants/orders" })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_never_stands_for_another_authorizer_or_route() {
    let upstream = Upstream::start("api").await;
    let lenient = Authorizer::default();
    let strict = Authorizer {
        strict: true,
        ..Authorizer::default()
    };
    let (lenient_addr, strict_addr) = (lenient.start().await, strict.start().await);
    let gw = Config::new()
        .upstream("api", &upstream)
        .route(
            Route::new("a", "/a")
                .upstream("api")
                .plugin(ext_auth(lenient_addr, json!({}))),
        )
        .route(
            Route::new("b", "/b")
                .upstream("api")
                .plugin(ext_auth(strict_addr, json!({}))),
        )
        .route(
            Route::new("c", "/c")
                .upstream("api")
                .plugin(ext_auth(lenient_addr, json!({}))),
        )
        .start();
    let client = client();
    assert_eq!(
        send(&client, with_token(gw.url("/a"), "allow-9"))
            .await
            .status,
        200
    );
    // Remembered for route a, not for the strict authorizer of route b...
    assert_eq!(
        send(&client, with_token(gw.url("/b"), "allow-9"))
            .await
            .status,
        403
    );
    // ...nor for another route of the same authorizer, which is asked.
    assert_eq!(
        send(&client, with_token(gw.url("/c"), "allow-9"))
            .await
            .status,
        200
    );
    assert_eq!(lenient.calls("Bearer allow-9"), 2);
}
