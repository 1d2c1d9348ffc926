//! The `cors` built-in in front of a real upstream: preflights answered at
//! the gateway, allowed origins marked on every answer (a 401 from a later
//! plugin included), the upstream's `Vary` kept.

use crate::support::config::{Config, Plugin, Route};
use crate::support::{Upstream, client, send};
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::json;

const KEY: &str = "cors-key-0000000001";

fn request(method: &str, url: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut builder = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::default()).expect("request")
}

fn vary(reply: &crate::support::Reply) -> Vec<String> {
    reply
        .headers
        .get_all("vary")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_preflights_and_marks_answers_for_allowed_origins() {
    let upstream = Upstream::start("api").await;
    let gw = // First, so preflights (which carry no credentials) never reach key-auth,
// and its headers are on key-auth's 401 too.
Config::new()
.upstream("api", &upstream)
.consumer(json!({ "name": "web", "keys": [{ "plaintext": KEY.to_string() }] }))
.route(Route::new("api", "/{*rest}")
.upstream("api")
.plugin(Plugin::new("cors")
.config(json!({
                "origins": ["https://app.example.com", "https://*.shop.test"],
                "headers": ["x-api-key", "content-type"],
                "expose_headers": ["x-request-id"],
                "max_age": "1h",
            })))
.plugin(Plugin::new("key-auth")))
.start();
    let client = client();

    let preflight = send(
        &client,
        request(
            "OPTIONS",
            &gw.url("/orders"),
            &[
                ("origin", "https://eu.shop.test"),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", "X-Api-Key, Content-Type"),
            ],
        ),
    )
    .await;
    assert_eq!(preflight.status, 204, "{}", preflight.body);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("https://eu.shop.test")
    );
    assert_eq!(
        preflight.header("access-control-allow-headers"),
        Some("x-api-key, content-type")
    );
    assert_eq!(preflight.header("access-control-max-age"), Some("3600"));
    assert!(vary(&preflight).contains(&"Origin".to_string()));
    assert_eq!(upstream.hits(), 0, "preflights never reach the upstream");

    let refused = send(
        &client,
        request(
            "OPTIONS",
            &gw.url("/orders"),
            &[
                ("origin", "https://evil.example.net"),
                ("access-control-request-method", "POST"),
            ],
        ),
    )
    .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.header("access-control-allow-origin").is_none());

    // An allowed origin: the answer is marked, and the upstream's Vary kept.
    let allowed = send(
        &client,
        request(
            "GET",
            &gw.url("/orders?h-vary=Accept-Encoding"),
            &[("origin", "https://app.example.com"), ("x-api-key", KEY)],
        ),
    )
    .await;
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(
        allowed.header("access-control-expose-headers"),
        Some("x-request-id")
    );
    assert_eq!(vary(&allowed), ["Accept-Encoding", "Origin"]);

    // key-auth's refusal is readable by the page too.
    let unauthorised = send(
        &client,
        request(
            "GET",
            &gw.url("/orders"),
            &[("origin", "https://app.example.com")],
        ),
    )
    .await;
    assert_eq!(unauthorised.status, 401);
    assert_eq!(
        unauthorised.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert!(vary(&unauthorised).contains(&"Origin".to_string()));

    // Another origin is served, unmarked: the browser withholds the answer.
    let other = send(
        &client,
        request(
            "GET",
            &gw.url("/orders"),
            &[("origin", "https://elsewhere.test"), ("x-api-key", KEY)],
        ),
    )
    .await;
    assert_eq!(other.status, 200);
    assert!(other.header("access-control-allow-origin").is_none());
    assert!(vary(&other).contains(&"Origin".to_string()));
}
