//! The `transform` built-in (mapping templates) through the real binary, in
//! front of a real upstream.

use crate::support::{Gateway, Upstream, client, send};
use bytes::Bytes;
use http::Request;
use http_body_util::Full;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_map_requests_and_responses_end_to_end() {
    let upstream = Upstream::start("api").await;
    let gw = Gateway::start(&format!(
        r#"
[server]
listen = "127.0.0.1:0"

[upstreams.api]
targets = ["{addr}"]

[[routes]]
name = "orders"
path = "/users/{{id}}/orders"
upstream = "api"

[[routes.plugins]]
plugin = "transform"

[routes.plugins.config.request]
body = '''{{"userId": {{{{ params.id | int }}}}, "sku": {{{{ body.item.sku }}}}, "qty": {{{{ body.item.qty | default(1) }}}}, "lang": {{{{ headers["accept-language"] | default("en") }}}}}}'''

[routes.plugins.config.request.headers]
x-mapped = "{{{{ method }}}} {{{{ path }}}}"

[routes.plugins.config.response]
status = "{{{{ 201 if status == 200 else status }}}}"
body = '''{{"seenByUpstream": {{{{ body.body | fromjson | tojson }}}}, "upstream": {{{{ body.upstream }}}}}}'''
"#,
        addr = upstream.addr
    ));
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
