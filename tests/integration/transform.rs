//! The `transform` built-in (mapping templates) through the real binary, in
//! front of a real upstream.

use crate::support::config::{Config, Plugin, Route};
use crate::support::{Upstream, client, send};
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_map_requests_and_responses_end_to_end() {
    let upstream = Upstream::start("api").await;
    let gw = Config::new()
.upstream("api", &upstream)
.route(Route::new("orders", "/users/{id}/orders")
.upstream("api")
.plugin(Plugin::new("transform")
.config(json!({
                "request": {
                    "body": "{\"userId\": {{ params.id | int }}, \"sku\": {{ body.item.sku }}, \"qty\": {{ body.item.qty | default(1) }}, \"lang\": {{ headers[\"accept-language\"] | default(\"en\") }}}",
                    "headers": { "x-mapped": "{{ method }} {{ path }}" },
                },
                "response": {
                    "status": "{{ 201 if status == 200 else status }}",
                    "body": "{\"seenByUpstream\": {{ body.body | fromjson | tojson }}, \"upstream\": {{ body.upstream }}}",
                },
            }))))
.start();
    let post = |body: &'static str| {
        Request::post(gw.url("/users/42/orders"))
            .header("content-type", "application/json")
            .header("accept-language", "fr")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .expect("request")
    };
    let reply = send(
        &client(),
        post(r#"{"item": {"sku": "A-1\"</x>", "qty": 3}, "ignored": true}"#),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let mapped = reply.json();
    assert_eq!(mapped["upstream"], "api");
    // What the upstream received: the request template's output, escaped.
    assert_eq!(
        mapped["seenByUpstream"],
        serde_json::json!({"userId": 42, "sku": "A-1\"</x>", "qty": 3, "lang": "fr"})
    );
    assert_eq!(reply.header("content-type"), Some("application/json"));

    // A default fills a missing value; a body that is not JSON is the
    // client's fault.
    let reply = send(&client(), post(r#"{"item": {"sku": "B"}}"#)).await;
    assert_eq!(reply.json()["seenByUpstream"]["qty"], 1);
    let reply = send(&client(), post("not json")).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(upstream.hits(), 2);
}

/// A real XML service: answers every request with an XML document quoting the
/// request's content type and body, or with `hostile` when set.
async fn xml_service(hostile: Option<&'static str>) -> std::net::SocketAddr {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let service = hyper::service::service_fn(
        move |req: hyper::Request<hyper::body::Incoming>| async move {
            let content_type = req
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_string();
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let escape = |text: &str| {
                text.replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;")
            };
            let document = hostile.map_or_else(
                || {
                    format!(
                        r#"<?xml version="1.0" encoding="UTF-8"?><orderResponse status="accepted"><contentType>{}</contentType><echo>{}</echo><items><item>1</item><item>2</item></items></orderResponse>"#,
                        escape(&content_type),
                        escape(&String::from_utf8_lossy(&body))
                    )
                },
                str::to_string,
            );
            let mut response = hyper::Response::new(Full::new(Bytes::from(document)));
            response.headers_mut().insert(
                "content-type",
                http::HeaderValue::from_static("application/xml; charset=utf-8"),
            );
            Ok::<_, std::convert::Infallible>(response)
        },
    );
    crate::support::serve_http1(listener, None, service);
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xml_json_fronts_an_xml_service_for_json_clients() {
    let service = xml_service(None).await;
    let hostile = xml_service(Some(
        r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><lolz>&lol2;</lolz>"#,
    ))
    .await;
    let gw = Config::new()
        .upstream("soap", service)
        .upstream("evil", hostile)
        .route(Route::new("orders", "/orders").upstream("soap").plugin(
            Plugin::new("xml-json").config(json!({
                "request": "json-to-xml",
                "response": "xml-to-json",
                "arrays": ["/orderResponse/items/item"],
            })),
        ))
        .route(
            Route::new("evil", "/evil")
                .upstream("evil")
                .plugin(Plugin::new("xml-json")),
        )
        .start();
    let request = Request::post(gw.url("/orders"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(
            br#"{"order": {"@id": "7", "sku": "A-1", "qty": 3}}"#,
        )))
        .expect("request");
    let reply = send(&client(), request).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{:?}",
        reply.headers
    );
    let json = reply.json();
    let response = &json["orderResponse"];
    assert_eq!(response["@status"], "accepted");
    assert_eq!(response["items"]["item"], serde_json::json!(["1", "2"]));
    // What the XML service received: the client's JSON as XML.
    assert!(
        response["contentType"]
            .as_str()
            .is_some_and(|t| t.contains("xml")),
        "{json}"
    );
    let echoed = response["echo"].as_str().unwrap_or_default();
    assert!(
        echoed.contains(r#"<order id="7">"#)
            && echoed.contains("<sku>A-1</sku>")
            && echoed.contains("<qty>3</qty>"),
        "{echoed}"
    );

    // A hostile upstream document is refused with 502; the gateway keeps serving.
    for _ in 0..3 {
        let reply = send(
            &client(),
            Request::get(gw.url("/evil"))
                .body(Full::default())
                .expect("request"),
        )
        .await;
        assert_eq!(reply.status, 502, "{}", reply.body);
    }
    let again = send(
        &client(),
        Request::post(gw.url("/orders"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(br#"{"order": {"sku": "B"}}"#)))
            .expect("request"),
    )
    .await;
    assert_eq!(again.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_entries_whose_templates_read_bodies_buffer_them() {
    let upstream = Upstream::start("api").await;
    let gw = Config::new()
.upstream("api", &upstream)
.route(Route::new("headers-only", "/headers-only")
.upstream("api")
.plugin(Plugin::new("transform")
.with("max_body", json!("1KiB"))
.config(json!({ "request": { "headers": { "x-route": "{{ route }}" } } }))))
.route(Route::new("reads-body", "/reads-body")
.upstream("api")
.plugin(Plugin::new("transform")
.with("max_body", json!("1KiB"))
.config(json!({ "request": { "headers": { "x-sku": "{{ body.sku | default('-') }}" } } }))))
.start();
    let big = format!(r#"{{"sku": "A", "pad": "{}"}}"#, "x".repeat(4000));
    let post = |path: &str| {
        Request::post(gw.url(path))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(big.clone())))
            .expect("request")
    };
    // Over the entry's cap, but this entry never reads the body: it streams.
    let reply = send(&client(), post("/headers-only")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["headers"]["x-route"], "headers-only");
    assert_eq!(reply.json()["body"].as_str().map(str::len), Some(big.len()));
    // This one reads it, so the cap applies.
    let reply = send(&client(), post("/reads-body")).await;
    assert_eq!(reply.status, 413, "{}", reply.body);
}
