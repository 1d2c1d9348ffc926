//! The `oauth2-introspection` built-in through the real binary, against a
//! real RFC 7662 endpoint started here: it checks the gateway's client
//! credentials and form, and answers by token.

use crate::support::config::{Config, Plugin, Route};
use crate::support::{Upstream, body_bytes, client, send, serve_local};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// `Basic base64("gateway:s3cret/x")`, the credentials the endpoint accepts
/// (the secret's `/` form-encoded as `%2F`, RFC 6749 2.3.1).
const CLIENT_AUTH: &str = "Basic Z2F0ZXdheTpzM2NyZXQlMkZ4";

/// An introspection endpoint: `token=good-*` is active with scope
/// `orders:read`, `token=admin` with `admin`, anything else inactive.
async fn endpoint() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let addr = serve_local(service_fn(move |req: Request<Incoming>| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, Infallible>(introspect(req).await) }
    }))
    .await;
    (addr, calls)
}

async fn introspect(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let authorized = req
        .headers()
        .get("authorization")
        .is_some_and(|v| v == CLIENT_AUTH);
    let form = req
        .headers()
        .get("content-type")
        .is_some_and(|v| v == "application/x-www-form-urlencoded");
    let post = req.method() == http::Method::POST;
    let body = body_bytes(req.into_body()).await;
    if !(authorized && form && post) {
        let mut refused = Response::new(Full::new(Bytes::from_static(
            b"{\"error\":\"invalid_client\"}",
        )));
        *refused.status_mut() = StatusCode::UNAUTHORIZED;
        return refused;
    }
    let fields: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let token = fields
        .iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.as_str());
    let hinted = fields
        .iter()
        .any(|(k, v)| k == "token_type_hint" && v == "access_token");
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 600;
    let answer = match token {
        Some(t) if hinted && t.starts_with("good-") => {
            json!({ "active": true, "sub": "alice", "client_id": "mobile-app", "scope": "orders:read", "exp": exp })
        }
        Some("admin") if hinted => {
            json!({ "active": true, "sub": "root", "scope": "admin", "exp": exp })
        }
        _ => json!({ "active": false }),
    };
    Response::new(Full::new(Bytes::from(answer.to_string())))
}

fn bearer(url: String, token: &str) -> Request<Full<Bytes>> {
    Request::get(url)
        .header("authorization", format!("Bearer {token}"))
        .header("x-client-id", "spoofed")
        .body(Full::default())
        .expect("request")
}

fn introspection(endpoint: std::net::SocketAddr) -> Plugin {
    Plugin::new("oauth2-introspection")
        .with("allowed_hosts", json!([endpoint.to_string()]))
        .with(
            "config_env",
            json!({ "client_secret": "INTROSPECTION_SECRET" }),
        )
        .config(json!({
            "endpoint": format!("http://{endpoint}/introspect"),
            "client_id": "gateway",
            "scopes": { "all_of": ["orders:read"] },
            "claims_to_headers": { "client_id": "x-client-id" },
        }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opaque_tokens_are_checked_at_the_endpoint_and_remembered() {
    let upstream = Upstream::start("orders").await;
    let (addr, calls) = endpoint().await;
    let gw = Config::new()
        .upstream("orders", &upstream)
        .route(
            Route::new("orders", "/orders")
                .upstream("orders")
                .plugin(introspection(addr)),
        )
        .start_with_env(&[("INTROSPECTION_SECRET", "s3cret/x")]);
    let client = client();
    let ok = send(&client, bearer(gw.url("/orders"), "good-1")).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    // The answer's client_id replaced the client's copy of the header.
    assert_eq!(ok.json()["headers"]["x-client-id"], "mobile-app");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // The same token again: remembered, not asked.
    assert_eq!(
        send(&client, bearer(gw.url("/orders"), "good-1"))
            .await
            .status,
        200
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let inactive = send(&client, bearer(gw.url("/orders"), "revoked")).await;
    assert_eq!(inactive.status, 401);
    assert_eq!(
        inactive.header("www-authenticate"),
        Some(
            "Bearer realm=\"gateway\", error=\"invalid_token\", error_description=\"inactive token\""
        )
    );
    let unscoped = send(&client, bearer(gw.url("/orders"), "admin")).await;
    assert_eq!(unscoped.status, 403);
    assert!(
        unscoped
            .header("www-authenticate")
            .is_some_and(|c| c.contains("error=\"insufficient_scope\"")),
        "{:?}",
        unscoped.header("www-authenticate")
    );
    let missing = send(
        &client,
        Request::get(gw.url("/orders"))
            .body(Full::default())
            .expect("request"),
    )
    .await;
    assert_eq!(missing.status, 401);
    assert_eq!(upstream.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_client_credentials_or_an_endpoint_down_are_503() {
    let upstream = Upstream::start("orders").await;
    let (addr, _) = endpoint().await;
    let wrong = Config::new()
        .upstream("orders", &upstream)
        .route(
            Route::new("orders", "/orders")
                .upstream("orders")
                .plugin(introspection(addr)),
        )
        .start_with_env(&[("INTROSPECTION_SECRET", "not-the-secret")]);
    let refused = send(&client(), bearer(wrong.url("/orders"), "good-2")).await;
    assert_eq!(refused.status, 503, "{}", refused.body);

    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let down = closed.local_addr().expect("addr");
    drop(closed);
    let gw = Config::new()
        .upstream("orders", &upstream)
        .route(
            Route::new("orders", "/orders")
                .upstream("orders")
                .plugin(introspection(down)),
        )
        .start_with_env(&[("INTROSPECTION_SECRET", "s3cret/x")]);
    assert_eq!(
        send(&client(), bearer(gw.url("/orders"), "good-3"))
            .await
            .status,
        503
    );
    assert_eq!(upstream.hits(), 0);
}
