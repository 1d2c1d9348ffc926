//! The handler's phases, driven in-process: routing misses, the request id,
//! the body limit, plugin answers and edits in both phases, a failing
//! plugin's `on_error`, and the headers the upstream gets (hop-by-hop ones
//! dropped, forwarding ones added).

use super::{Echo, Gateway, HOST, test_plugin, upstream};
use http::{Method, StatusCode};

/// A config with upstream `backend` (the echo) and `routes` after it.
fn config(echo: &Echo, routes: &str) -> String {
    format!("{}\n{routes}", upstream("backend", echo))
}

/// One route `r` on `path` to `backend`, with `extra` keys and tables after.
fn route(path: &str, extra: &str) -> String {
    format!("[[routes]]\nname = \"r\"\npath = \"{path}\"\nupstream = \"backend\"\n{extra}\n")
}

fn is_uuid(text: &str) -> bool {
    text.len() == 36 && uuid::Uuid::parse_str(text).is_ok()
}

#[tokio::test]
async fn no_route_is_404_with_the_request_id_in_the_json_error() {
    let echo = Echo::start().await;
    let gateway = Gateway::start(&config(&echo, &route("/known", ""))).await;
    let reply = gateway.get("/unknown").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let id = reply.header("x-request-id").expect("an id").to_string();
    assert!(is_uuid(&id), "{id}");
    let json = reply.json();
    assert_eq!(json["status"], 404);
    assert_eq!(json["request_id"], id.as_str());
    assert_eq!(echo.hits(), 0);
}

#[tokio::test]
async fn a_known_path_with_another_method_is_405_listing_the_allowed_ones() {
    let echo = Echo::start().await;
    let routes = route("/only", "methods = [\"GET\", \"put\"]");
    let gateway = Gateway::start(&config(&echo, &routes)).await;
    let reply = gateway.request(Method::POST, "/only", &[], "").await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.header("allow"), Some("GET, PUT"));
    assert_eq!(echo.hits(), 0);
    let listed = gateway.request(Method::PUT, "/only", &[], "").await;
    assert_eq!(listed.echoed().method, "PUT");
}

#[tokio::test]
async fn a_request_id_is_generated_and_the_upstream_gets_the_same() {
    let echo = Echo::start().await;
    let gateway = Gateway::start(&config(&echo, &route("/r", ""))).await;
    let reply = gateway.get("/r").await;
    let id = reply.header("x-request-id").expect("an id");
    assert!(is_uuid(id), "{id}");
    assert_eq!(reply.echoed().all("x-request-id"), [id]);
    let again = gateway.get("/r").await;
    assert_ne!(again.header("x-request-id"), Some(id), "a new id each time");
}

#[tokio::test]
async fn a_sane_client_request_id_is_kept_and_echoed() {
    let echo = Echo::start().await;
    let gateway = Gateway::start(&config(&echo, &route("/r", ""))).await;
    let headers = [("x-request-id", "client-id-42")];
    let reply = gateway.request(Method::GET, "/r", &headers, "").await;
    assert_eq!(reply.header("x-request-id"), Some("client-id-42"));
    assert_eq!(reply.echoed().all("x-request-id"), ["client-id-42"]);
}

#[tokio::test]
async fn a_client_request_id_with_a_space_is_replaced() {
    let echo = Echo::start().await;
    let gateway = Gateway::start(&config(&echo, &route("/r", ""))).await;
    let headers = [("x-request-id", "not sane")];
    let reply = gateway.request(Method::GET, "/r", &headers, "").await;
    let id = reply.header("x-request-id").expect("an id");
    assert!(is_uuid(id), "{id}");
    assert_eq!(reply.echoed().all("x-request-id"), [id]);
}

#[tokio::test]
async fn a_declared_body_over_max_request_body_is_413_before_any_plugin() {
    let echo = Echo::start().await;
    let answered = r#"
[[routes]]
name = "answered"
path = "/answered"

[[routes.plugins]]
plugin = "respond"
config = { status = 201, body = "answered" }
"#;
    let text = format!(
        "[server]\nmax_request_body = \"1KiB\"\n{}",
        config(&echo, &format!("{}{answered}", route("/r", "")))
    );
    let gateway = Gateway::start(&text).await;
    let over = [("content-length", "1025")];
    let reply = gateway
        .request(Method::POST, "/answered", &over, "x".repeat(1025))
        .await;
    assert_eq!(
        reply.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        reply.text()
    );
    assert_eq!(reply.json()["status"], 413);
    assert!(reply.header("x-request-id").is_some());
    let reply = gateway
        .request(Method::POST, "/r", &over, "x".repeat(1025))
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(echo.hits(), 0);
    let at_limit = "y".repeat(1024);
    let headers = [("content-length", "1024")];
    let reply = gateway
        .request(Method::POST, "/r", &headers, at_limit.clone())
        .await;
    assert_eq!(reply.echoed().body, at_limit);
    let reply = gateway
        .request(Method::POST, "/answered", &headers, at_limit)
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
}

#[tokio::test]
async fn a_respond_plugin_answers_and_the_upstream_is_never_reached() {
    let echo = Echo::start().await;
    let plugins = r#"
[[routes.plugins]]
plugin = "respond"
config = { status = 201, content_type = "text/plain", body = "item {{id}}", headers = { "x-answered" = "respond" } }
"#;
    let gateway = Gateway::start(&config(&echo, &route("/items/{id}", plugins))).await;
    let reply = gateway.get("/items/7").await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(reply.text(), "item 7");
    assert_eq!(reply.header("x-answered"), Some("respond"));
    assert_eq!(reply.header("content-type"), Some("text/plain"));
    assert!(reply.header("x-request-id").is_some());
    assert_eq!(echo.hits(), 0);
}

#[tokio::test]
async fn request_phase_header_edits_reach_the_upstream() {
    let echo = Echo::start().await;
    let plugins = r#"
[[routes.plugins]]
plugin = "headers"
config = { request = { set = { "x-api-version" = "2" }, add = { "x-added" = "1" }, remove = ["cookie"], rename = { "x-old" = "x-new" } } }
"#;
    let gateway = Gateway::start(&config(&echo, &route("/r", plugins))).await;
    let headers = [
        ("x-api-version", "1"),
        ("x-added", "0"),
        ("cookie", "session=secret"),
        ("x-old", "moved"),
    ];
    let echoed = gateway
        .request(Method::GET, "/r", &headers, "")
        .await
        .echoed();
    assert_eq!(echoed.all("x-api-version"), ["2"]);
    assert_eq!(echoed.all("x-added"), ["0", "1"]);
    assert_eq!(echoed.header("cookie"), None);
    assert_eq!(echoed.header("x-old"), None);
    assert_eq!(echoed.all("x-new"), ["moved"]);
}

#[tokio::test]
async fn strip_prefix_rewrites_the_upstream_path_and_keeps_the_query() {
    let echo = Echo::start().await;
    let routes = format!(
        "{}[[routes]]\nname = \"plain\"\npath = \"/plain/{{*rest}}\"\nupstream = \"backend\"\n",
        route("/api/{*rest}", "strip_prefix = \"/api/\"")
    );
    let gateway = Gateway::start(&config(&echo, &routes)).await;
    let stripped = gateway.get("/api/users/7?page=2&q=a").await.echoed();
    assert_eq!(stripped.path, "/users/7?page=2&q=a");
    let unprefixed = gateway.get("/plain/users/7?page=2").await.echoed();
    assert_eq!(unprefixed.path, "/plain/users/7?page=2");
}

#[tokio::test]
async fn response_phase_plugins_edit_the_upstream_response() {
    let echo = Echo::start().await;
    let plugins = r#"
[[routes.plugins]]
plugin = "headers"
config = { response = { set = { "x-served-by" = "gateway" }, remove = ["server"] } }
"#;
    let gateway = Gateway::start(&config(&echo, &route("/r", plugins))).await;
    let reply = gateway.get("/r").await;
    assert_eq!(reply.header("x-served-by"), Some("gateway"));
    assert_eq!(reply.header("server"), None);
    assert_eq!(reply.header("x-echo"), Some("yes"));
    assert_eq!(reply.echoed().path, "/r");
}

/// A route whose first plugin traps in its request hook, under `on_error`,
/// and whose second sets `x-after: 1` on the request.
fn trapping(echo: &Echo, on_error: &str) -> String {
    let plugins = format!(
        r#"
[[routes.plugins]]
plugin = "{}"
on_error = "{on_error}"
config = {{ mode = "trap" }}

[[routes.plugins]]
plugin = "headers"
config = {{ request = {{ set = {{ "x-after" = "1" }} }} }}
"#,
        test_plugin("misbehave_plugin")
    );
    config(echo, &route("/r", &plugins))
}

#[tokio::test]
async fn a_failing_plugin_with_on_error_fail_answers_500() {
    let echo = Echo::start().await;
    let gateway = Gateway::start(&trapping(&echo, "fail")).await;
    let reply = gateway.get("/r").await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    let json = reply.json();
    assert_eq!(json["error"], "internal error");
    assert_eq!(
        json["request_id"],
        reply.header("x-request-id").expect("an id")
    );
    assert_eq!(echo.hits(), 0);
}

#[tokio::test]
async fn a_failing_plugin_with_on_error_continue_is_skipped() {
    let echo = Echo::start().await;
    let gateway = Gateway::start(&trapping(&echo, "continue")).await;
    let echoed = gateway.get("/r").await.echoed();
    assert_eq!(echoed.all("x-after"), ["1"], "the next plugin still ran");
    assert_eq!(echo.hits(), 1);
}

#[tokio::test]
async fn hop_by_hop_headers_are_stripped_before_the_upstream() {
    let echo = Echo::start().await;
    let gateway = Gateway::start(&config(&echo, &route("/r", ""))).await;
    let headers = [
        ("connection", "x-this-hop"),
        ("x-this-hop", "1"),
        ("keep-alive", "timeout=5"),
        ("proxy-authorization", "Basic dXNlcjpwYXNz"),
        ("proxy-connection", "keep-alive"),
        ("te", "trailers"),
        ("upgrade", "websocket"),
        ("x-end-to-end", "kept"),
    ];
    let echoed = gateway
        .request(Method::GET, "/r", &headers, "")
        .await
        .echoed();
    for (name, _) in &headers[..headers.len() - 1] {
        assert_eq!(echoed.header(name), None, "{name} reached the upstream");
    }
    assert_eq!(echoed.all("x-end-to-end"), ["kept"]);
}

#[tokio::test]
async fn forwarding_headers_name_the_peer_not_an_untrusted_clients_claim() {
    let echo = Echo::start().await;
    let gateway = Gateway::start(&config(&echo, &route("/r", ""))).await;
    let headers = [
        ("x-forwarded-for", "203.0.113.9"),
        ("x-forwarded-proto", "https"),
    ];
    let echoed = gateway
        .request(Method::GET, "/r", &headers, "")
        .await
        .echoed();
    assert_eq!(echoed.all("x-forwarded-for"), ["192.0.2.10"]);
    assert_eq!(echoed.all("x-forwarded-proto"), ["http"]);
    assert_eq!(echoed.all("x-forwarded-host"), [HOST]);
    let forwarded = echoed.header("forwarded").expect("Forwarded");
    assert!(forwarded.contains("for=192.0.2.10"), "{forwarded}");
}

#[tokio::test]
async fn a_trusted_proxys_x_forwarded_for_is_extended_with_the_peer() {
    let echo = Echo::start().await;
    let text = format!(
        "[server]\ntrusted_proxies = [\"192.0.2.0/24\"]\n{}",
        config(&echo, &route("/r", ""))
    );
    let gateway = Gateway::start(&text).await;
    let headers = [("x-forwarded-for", "203.0.113.9")];
    let echoed = gateway
        .request(Method::GET, "/r", &headers, "")
        .await
        .echoed();
    assert_eq!(echoed.all("x-forwarded-for"), ["203.0.113.9, 192.0.2.10"]);
}

#[tokio::test]
async fn an_undeclared_body_over_max_request_body_is_413() {
    let echo = Echo::start().await;
    let text = format!(
        "[server]\nmax_request_body = \"1KiB\"\n{}",
        config(&echo, &route("/r", ""))
    );
    let gateway = Gateway::start(&text).await;
    let reply = gateway
        .request(Method::POST, "/r", &[], "x".repeat(1025))
        .await;
    assert_eq!(
        reply.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        reply.text()
    );
    assert_eq!(reply.json()["status"], 413);
    // Found while streaming to the upstream, the error still knows its limit.
    assert!(
        reply.text().contains("exceeds 1024 bytes"),
        "{}",
        reply.text()
    );
}
