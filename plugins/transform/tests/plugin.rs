//! The plugin as the pipeline drives it: `init` with a config, `on_request`,
//! then (unless the plugin answered) the upstream's response through
//! `on_response`, sharing one context.

use plugin_sdk::{Action, Config, Context, Needs, Plugin, Request, Response};
use plugin_transform::Transform;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn plugin(config: Value) -> Transform {
    Transform::init(Config::from_value(config)).unwrap_or_else(|e| panic!("{e}"))
}

fn refused(config: Value) -> String {
    match Transform::init(Config::from_value(config)) {
        Ok(_) => panic!("config accepted"),
        Err(message) => message,
    }
}

/// The context as key-auth and jwt leave it for a consumer `alice`.
fn authenticated() -> Context {
    let mut ctx = Context::new();
    ctx.set("consumer", "alice");
    ctx.set("consumer.plan", "gold");
    ctx.set("auth.method", "jwt");
    ctx.set("jwt.claim.sub", "user-42");
    ctx.set("jwt.claim.roles", r#"["admin","dev"]"#);
    ctx
}

/// Runs the request phase; `Ok` is the request sent upstream.
fn request(t: &Transform, mut req: Request, ctx: &mut Context) -> Result<Request, Response> {
    match t.on_request(&mut req, ctx) {
        Action::Continue => Ok(req),
        Action::Respond(response) => Err(response),
    }
}

/// The request phase, then `upstream` through the response phase.
fn trip(t: &Transform, req: Request, ctx: &mut Context, upstream: Response) -> Response {
    match request(t, req, ctx) {
        Ok(_) => {
            let mut response = upstream;
            t.on_response(&Request::new("GET", "/"), &mut response, ctx);
            response
        }
        Err(answer) => answer,
    }
}

fn body_text(body: Option<&[u8]>) -> &str {
    std::str::from_utf8(body.unwrap_or_default()).expect("utf-8 body")
}

fn body_json(body: Option<&[u8]>) -> Value {
    serde_json::from_slice(body.unwrap_or_default())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", body_text(body)))
}

fn order() -> Request {
    Request::new("POST", "/shops/s1/orders?express=yes&tag=a&tag=b")
        .with_param("shop", "s1")
        .with_header("content-type", "application/json")
        .with_header("content-length", "99")
        .with_header("x-request-id", "req-1")
        .with_header("x-client", "mobile")
        .with_body(
            r#"{"customer": {"name": "Ann", "email": "ann@example.com"},
                "items": [{"sku": "A1", "qty": 2}, {"sku": "B2", "qty": 1}]}"#,
        )
}

#[test]
fn request_body_maps_body_params_query_headers_and_identity_to_json() {
    let t = plugin(json!({"request": {"body": r#"{
        "shop": {{ params.shop }},
        "buyer": {{ body.customer.name }},
        "lines": [{% for item in body.items %}{"sku": {{ item.sku }}, "count": {{ item.qty }}}{% if not loop.last %},{% endif %}{% endfor %}],
        "express": {{ query.express == "yes" }},
        "tags": {{ query_all.tag | tojson }},
        "channel": {{ headers["x-client"] }},
        "consumer": {{ consumer }},
        "subject": {{ claims.sub }},
        "roles": {{ claims.roles | fromjson | tojson }},
        "plan": {{ context["consumer.plan"] }},
        "trace": {{ request_id }}
    }"#}}));
    let sent = request(&t, order(), &mut authenticated()).expect("mapped");
    assert_eq!(
        body_json(sent.body()),
        json!({
            "shop": "s1",
            "buyer": "Ann",
            "lines": [{"sku": "A1", "count": 2}, {"sku": "B2", "count": 1}],
            "express": true,
            "tags": ["a", "b"],
            "channel": "mobile",
            "consumer": "alice",
            "subject": "user-42",
            "roles": ["admin", "dev"],
            "plan": "gold",
            "trace": "req-1",
        })
    );
    assert_eq!(sent.headers().get("content-type"), Some("application/json"));
    assert!(
        !sent.headers().contains("content-length"),
        "stale length kept"
    );
    assert_eq!(sent.path(), "/shops/s1/orders", "path untouched");
}

#[test]
fn request_body_maps_to_xml_with_the_content_type() {
    let t = plugin(json!({"request": {
        "content_type": "application/xml; charset=utf-8",
        "body": r#"<order shop="{{ params.shop }}" consumer="{{ consumer }}">
{% for item in body.items %}
  <line sku="{{ item.sku }}">{{ item.qty }}</line>
{% endfor %}
  <express>{{ query.express == "yes" }}</express>
</order>"#,
    }}));
    let sent = request(&t, order(), &mut authenticated()).expect("mapped");
    assert_eq!(
        body_text(sent.body()),
        "<order shop=\"s1\" consumer=\"alice\">\n  <line sku=\"A1\">2</line>\n  <line sku=\"B2\">1</line>\n  <express>true</express>\n</order>"
    );
    assert_eq!(
        sent.headers().get("content-type"),
        Some("application/xml; charset=utf-8")
    );
}

#[test]
fn request_headers_are_set_from_templates_and_empty_ones_removed() {
    let t = plugin(json!({"request": {"headers": {
        "X-Consumer": "{{ consumer | default('anonymous') }}",
        "x-client": "",
        "x-items": "{{ body.items | length }}",
    }}}));
    let sent = request(&t, order(), &mut Context::new()).expect("mapped");
    assert_eq!(sent.headers().get("x-consumer"), Some("anonymous"));
    assert_eq!(sent.headers().get("x-items"), Some("2"));
    assert!(!sent.headers().contains("x-client"), "empty value removes");
    assert_eq!(
        sent.body(),
        order().body(),
        "body untouched without a body template"
    );
}

#[test]
fn response_maps_status_headers_and_body_with_request_values() {
    let t = plugin(json!({"response": {
        "status": "{{ 201 if method == 'POST' and status == 200 else status }}",
        "headers": {"location": "/shops/{{ params.shop }}/orders/{{ body.id }}", "x-upstream-type": "{{ response_headers['content-type'] }}"},
        "body": r#"{"order": {{ body.id }}, "total": {{ body.total_cents / 100 }}, "for": {{ consumer }}}"#,
    }}));
    let upstream = Response::json(
        200,
        &json!({"id": "o-9", "total_cents": 1250, "internal": true}),
    )
    .with_header("content-length", "50")
    .with_header("etag", "\"abc\"")
    .with_header("set-cookie", "s=1");
    let resp = trip(&t, order(), &mut authenticated(), upstream);
    assert_eq!(resp.status(), 201);
    assert_eq!(
        body_json(resp.body()),
        json!({"order": "o-9", "total": 12.5, "for": "alice"})
    );
    assert_eq!(resp.headers().get("location"), Some("/shops/s1/orders/o-9"));
    assert_eq!(
        resp.headers().get("x-upstream-type"),
        Some("application/json")
    );
    assert_eq!(resp.headers().get("content-type"), Some("application/json"));
    assert!(!resp.headers().contains("content-length"));
    assert_eq!(
        resp.headers().get("etag"),
        Some("W/\"abc\""),
        "new bytes, weak validator"
    );
    assert_eq!(resp.headers().get("set-cookie"), Some("s=1"), "others kept");
}

#[test]
fn response_status_can_be_a_number_and_other_statuses_pass_untouched() {
    let t = plugin(json!({"response": {"status": 202, "body": "{{ body | tojson }}"}}));
    let resp = trip(
        &t,
        order(),
        &mut Context::new(),
        Response::json(200, &json!({"a": 1})),
    );
    assert_eq!(resp.status(), 202);
    // Default `statuses` is 2xx: an upstream error keeps its own shape.
    let resp = trip(
        &t,
        order(),
        &mut Context::new(),
        Response::text(404, "no such order"),
    );
    assert_eq!(
        (resp.status(), body_text(resp.body())),
        (404, "no such order")
    );
    assert!(!resp.is_edited());

    let t = plugin(
        json!({"response": {"statuses": [404, "5xx"], "body": "{\"error\": {{ raw_body }}}"}}),
    );
    let resp = trip(
        &t,
        order(),
        &mut Context::new(),
        Response::text(404, "gone"),
    );
    assert_eq!(body_json(resp.body()), json!({"error": "gone"}));
    let resp = trip(
        &t,
        order(),
        &mut Context::new(),
        Response::text(200, "fine"),
    );
    assert_eq!(body_text(resp.body()), "fine");
}

#[test]
fn defaults_fill_missing_values_at_any_depth() {
    let t = plugin(json!({"request": {"body": r#"{
        "name": {{ body.customer.name | default("n/a") }},
        "city": {{ body.customer.address.city | default("unknown") }},
        "note": {{ body.note | default(none) }},
        "page": {{ query.page | default(1) | int }},
        "who": {{ consumer | default("anonymous") }},
        "tenant": {{ claims.tenant | default("public") }}
    }"#}}));
    let sent = request(&t, order(), &mut Context::new()).expect("mapped");
    assert_eq!(
        body_json(sent.body()),
        json!({"name": "Ann", "city": "unknown", "note": null, "page": 1, "who": "anonymous", "tenant": "public"})
    );
    // An empty body is `none`: every lookup in it is missing, so defaults apply.
    let sent = request(&t, Request::new("POST", "/o?page=3"), &mut Context::new()).expect("mapped");
    assert_eq!(body_json(sent.body())["name"], json!("n/a"));
    assert_eq!(body_json(sent.body())["page"], json!(3));
}

#[test]
fn a_missing_value_without_default_is_the_clients_400_naming_it() {
    let t = plugin(json!({"request": {"body": "{\"city\": {{ body.customer.address.city }}}"}}));
    let answer = request(&t, order(), &mut Context::new()).expect_err("refused");
    assert_eq!(answer.status(), 400);
    let body = body_json(answer.body());
    assert_eq!(body["status"], json!(400));
    assert_eq!(body["request_id"], json!("req-1"));
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.contains("body.customer.address"), "{error}");

    // `tojson` is as strict as printing: no silent null.
    let t = plugin(json!({"request": {"body": "{{ body.nope | tojson }}"}}));
    assert_eq!(
        request(&t, order(), &mut Context::new())
            .expect_err("refused")
            .status(),
        400
    );

    // Not the client's doing: a value the pipeline should have provided.
    let t = plugin(json!({"request": {"body": "{{ context.tenant }}"}}));
    assert_eq!(
        request(&t, order(), &mut Context::new())
            .expect_err("refused")
            .status(),
        500
    );
}

const NASTY: &str =
    "Ann \"the hacker\" O'Brien </x> <![CDATA[ ]]> & {{ 7 * 7 }} {% raw %}\\ \n\t\u{1}";

#[test]
fn json_output_keeps_hostile_values_inside_their_strings() {
    let t = plugin(
        json!({"request": {"body": r#"{"name": {{ body.name }}, "copy": {{ body.name | tojson }}, "greeting": {{ "Hello " ~ body.name }}, "hdr": {{ headers["x-evil"] }}}"#}}),
    );
    let req = Request::new("POST", "/")
        .with_header("x-evil", "\", \"admin\": true, \"x\": \"")
        .with_body(json!({"name": NASTY}).to_string());
    let sent = request(&t, req, &mut Context::new()).expect("mapped");
    let out = body_json(sent.body());
    assert_eq!(out["name"], json!(NASTY));
    assert_eq!(out["copy"], json!(NASTY));
    assert_eq!(out["greeting"], json!(format!("Hello {NASTY}")));
    assert_eq!(out["hdr"], json!("\", \"admin\": true, \"x\": \""));
    assert_eq!(
        out.as_object().map(|o| o.len()),
        Some(4),
        "no injected keys"
    );
    assert!(
        !body_text(sent.body()).contains("49"),
        "data is never evaluated"
    );
}

#[test]
fn xml_output_keeps_hostile_values_inside_their_text_and_attributes() {
    let t = plugin(
        json!({"request": {"content_type": "text/xml", "body": r#"<a name="{{ body.name }}" single='{{ body.name }}'><b>{{ body.name }}</b><c>{{ body.name | tojson }}</c><d>{{ body.name | xml_escape }}</d></a>"#}}),
    );
    let req = Request::new("POST", "/").with_body(json!({"name": NASTY}).to_string());
    let sent = request(&t, req, &mut Context::new()).expect("mapped");
    let xml = body_text(sent.body());
    let doc = roxmltree::Document::parse(xml).unwrap_or_else(|e| panic!("{e}: {xml}"));
    let root = doc.root_element();
    // XML cannot carry U+0001: it becomes U+FFFD; attribute values also
    // normalise tab and newline to spaces (XML 1.0 section 3.3.3).
    let text = NASTY.replace('\u{1}', "\u{FFFD}");
    let attr = text.replace(['\n', '\t'], " ");
    assert_eq!(root.attribute("name"), Some(attr.as_str()));
    assert_eq!(root.attribute("single"), Some(attr.as_str()));
    let child = |name: &str| {
        root.children()
            .find(|n| n.has_tag_name(name))
            .and_then(|n| n.text())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(child("b"), text);
    assert_eq!(child("d"), text, "xml_escape is not escaped twice");
    assert_eq!(
        serde_json::from_str::<String>(&child("c")).ok().as_deref(),
        Some(NASTY)
    );
    assert_eq!(
        root.children().filter(|n| n.is_element()).count(),
        3,
        "{xml}"
    );
}

#[test]
fn a_header_value_with_a_line_break_is_refused() {
    let t = plugin(json!({"request": {"headers": {"x-name": "{{ body.name }}"}}}));
    let req = Request::new("POST", "/").with_body(r#"{"name": "a\r\nx-admin: 1"}"#);
    let answer = request(&t, req, &mut Context::new()).expect_err("refused");
    assert_eq!(answer.status(), 400);
    // Surrounding whitespace (a template's trailing newline) is trimmed.
    let t = plugin(json!({"request": {"headers": {"x-name": "\n  {{ body.name }}\n"}}}));
    let req = Request::new("POST", "/").with_body(r#"{"name": "Ann"}"#);
    let sent = request(&t, req, &mut Context::new()).expect("mapped");
    assert_eq!(sent.headers().get("x-name"), Some("Ann"));
}

#[test]
fn bad_templates_are_refused_at_init_with_template_and_line() {
    let error = refused(json!({"request": {"body": "{\n  \"a\": {{ body.a \n}"}}));
    assert!(
        error.starts_with("transform: request.body line 3: syntax error"),
        "{error}"
    );

    let error =
        refused(json!({"response": {"headers": {"X-Id": "{% if body.id %}{{ body.id }}"}}}));
    assert!(
        error.starts_with("transform: response.headers.x-id line 1: syntax error"),
        "{error}"
    );

    let error = refused(json!({"request": {"body": "{{ bdy.name }}"}}));
    assert!(
        error.starts_with(
            "transform: request.body: `bdy` is not a variable; the variables are body, raw_body"
        ),
        "{error}"
    );

    let error = refused(json!({"request": {"body": "{{ status }}"}}));
    assert!(
        error.contains("`status` is only known in the response phase"),
        "{error}"
    );
}

#[test]
fn config_mistakes_are_refused_at_init() {
    let cases = [
        (json!({}), "nothing to do"),
        (json!({"request": {}}), "request maps nothing"),
        (
            json!({"request": {"body": "{}", "extra": 1}}),
            "unknown field `extra`",
        ),
        (
            json!({"request": {"content_type": "text/xml"}}),
            "content_type is set without request.body",
        ),
        (
            json!({"request": {"headers": {"content-length": "1"}}}),
            "set by the gateway",
        ),
        (
            json!({"request": {"headers": {"bad name": "1"}}}),
            "not a valid header name",
        ),
        (
            json!({"request": {"headers": {"x-a": "1", "X-A": "2"}}}),
            "listed twice",
        ),
        (
            json!({"request": {"body": "{}", "headers": {"Content-Type": "x"}}}),
            "use request.content_type",
        ),
        (json!({"response": {"status": 99}}), "not a status code"),
        (
            json!({"response": {"body": "{}", "statuses": ["2xy"]}}),
            "`2xy` is neither",
        ),
        (
            json!({"response": {"body": "{}", "statuses": []}}),
            "would never apply",
        ),
        (
            json!({"request": {"body": "{}"}, "fuel": 1}),
            "fuel must be",
        ),
        (
            json!({"request": {"body": "{}"}, "max_output": 0}),
            "max_output must be",
        ),
    ];
    for (config, expected) in cases {
        let error = refused(config.clone());
        assert!(error.starts_with("transform: "), "{error}");
        assert!(error.contains(expected), "{config}: {error}");
    }
}

#[test]
fn runaway_templates_are_stopped_by_fuel_recursion_and_output_limits() {
    let runaway = [
        "{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}",
        "{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}",
        "{{ 'x' * 1000000000 }}",
        "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}",
        "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    ];
    for template in runaway {
        let t = plugin(json!({"request": {"content_type": "text/plain", "body": template}}));
        let started = Instant::now();
        let answer =
            request(&t, Request::new("GET", "/"), &mut Context::new()).expect_err(template);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{template}: {:?}",
            started.elapsed()
        );
        assert_eq!(answer.status(), 500, "{template}");
    }
    // Output over `max_output`, well within the fuel.
    let t = plugin(
        json!({"max_output": 100, "request": {"content_type": "text/plain", "body": "{{ 'x' * 101 }}"}}),
    );
    assert_eq!(
        request(&t, Request::new("GET", "/"), &mut Context::new())
            .expect_err("big")
            .status(),
        500
    );
    let t = plugin(
        json!({"max_output": 101, "request": {"content_type": "text/plain", "body": "{{ 'x' * 101 }}"}}),
    );
    assert!(request(&t, Request::new("GET", "/"), &mut Context::new()).is_ok());
}

#[test]
fn fuel_is_configurable() {
    let template = "{% for i in range(20000) %}{% endfor %}ok";
    let t = plugin(json!({"request": {"content_type": "text/plain", "body": template}}));
    assert!(request(&t, Request::new("GET", "/"), &mut Context::new()).is_ok());
    let t =
        plugin(json!({"fuel": 5000, "request": {"content_type": "text/plain", "body": template}}));
    assert_eq!(
        request(&t, Request::new("GET", "/"), &mut Context::new())
            .expect_err("out")
            .status(),
        500
    );
}

#[test]
fn a_body_that_is_not_json_is_the_clients_400_when_a_template_reads_it() {
    let t = plugin(json!({"request": {"body": "{\"a\": {{ body.a | default(1) }}}"}}));
    let req = Request::new("POST", "/")
        .with_header("x-request-id", "r7")
        .with_body("a=1&b=2");
    let answer = request(&t, req, &mut Context::new()).expect_err("refused");
    assert_eq!(answer.status(), 400);
    let body = body_json(answer.body());
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .starts_with("the request body is not valid JSON"),
        "{body}"
    );
    assert_eq!(body["request_id"], json!("r7"));
    assert_eq!(
        answer.headers().get("content-type"),
        Some("application/json")
    );

    // A template that reads only `raw_body` takes any text.
    let t = plugin(json!({"request": {"body": "{\"form\": {{ raw_body }}}"}}));
    let sent = request(
        &t,
        Request::new("POST", "/").with_body("a=1&b=2"),
        &mut Context::new(),
    )
    .expect("mapped");
    assert_eq!(body_json(sent.body()), json!({"form": "a=1&b=2"}));
    // ... but not bytes that are no text.
    let req = Request::new("POST", "/").with_body(vec![0xff, 0xfe]);
    assert_eq!(
        request(&t, req, &mut Context::new())
            .expect_err("binary")
            .status(),
        400
    );

    // A template that reads neither does not care.
    let t = plugin(json!({"request": {"headers": {"x-m": "{{ method }}"}}}));
    assert!(
        request(
            &t,
            Request::new("POST", "/").with_body("<xml/>"),
            &mut Context::new()
        )
        .is_ok()
    );
}

#[test]
fn an_upstream_body_that_cannot_be_mapped_is_a_502_with_the_request_id() {
    let t = plugin(json!({"response": {"body": "{\"id\": {{ body.id }}}"}}));
    let upstream = Response::text(200, "<html>oops</html>").with_header("x-secret", "1");
    let resp = trip(&t, order(), &mut Context::new(), upstream);
    assert_eq!(resp.status(), 502);
    let body = body_json(resp.body());
    assert_eq!(body["request_id"], json!("req-1"));
    assert_eq!(
        body["error"],
        json!("the upstream response could not be mapped")
    );
    assert!(
        !resp.headers().contains("x-secret"),
        "the failed response is replaced whole"
    );

    // A compressed body cannot be read either; the request asked for none.
    let mut ctx = Context::new();
    let req = order()
        .with_header("accept-encoding", "gzip")
        .with_header("range", "bytes=0-9");
    let sent = request(&t, req, &mut ctx).expect("continues");
    assert!(!sent.headers().contains("accept-encoding"));
    assert!(!sent.headers().contains("range"));
    let mut resp = Response::json(200, &json!({"id": 1})).with_header("content-encoding", "gzip");
    t.on_response(&Request::new("GET", "/"), &mut resp, &mut ctx);
    assert_eq!(resp.status(), 502);
}

#[test]
fn an_operators_template_error_is_a_500() {
    // Quoting a value that already prints as JSON makes invalid JSON.
    let t = plugin(json!({"response": {"body": "{\"id\": \"{{ body.id }}\"}"}}));
    let resp = trip(
        &t,
        order(),
        &mut Context::new(),
        Response::json(200, &json!({"id": "x"})),
    );
    assert_eq!(resp.status(), 500);
    assert_eq!(
        body_json(resp.body())["error"],
        json!("the gateway could not apply its mapping template")
    );

    let t = plugin(json!({"response": {"status": "{{ 'teapot' }}"}}));
    let resp = trip(&t, order(), &mut Context::new(), Response::new(200));
    assert_eq!(resp.status(), 500);

    let t = plugin(json!({"request": {"body": "{{ body.items | nosuchfilter }}"}}));
    assert_eq!(
        request(&t, order(), &mut Context::new())
            .expect_err("500")
            .status(),
        500
    );
}

#[test]
fn bodiless_statuses_get_no_body() {
    let t = plugin(json!({"response": {"body": "{\"ok\": true}", "headers": {"x-mapped": "yes"}}}));
    let resp = trip(&t, order(), &mut Context::new(), Response::new(204));
    assert_eq!(resp.status(), 204);
    assert_eq!(resp.body(), None);
    assert_eq!(resp.headers().get("x-mapped"), Some("yes"));
}

#[test]
fn filters_for_encodings() {
    let t = plugin(
        json!({"request": {"content_type": "application/x-www-form-urlencoded",
        "body": "name={{ body.name | urlencode }}&token={{ body.name | b64encode }}&back={{ body.name | b64encode | b64decode | urlencode }}"}}),
    );
    let req = Request::new("POST", "/").with_body(r#"{"name": "a b&c=é"}"#);
    let sent = request(&t, req, &mut Context::new()).expect("mapped");
    assert_eq!(
        body_text(sent.body()),
        "name=a%20b%26c%3D%C3%A9&token=YSBiJmM9w6k=&back=a%20b%26c%3D%C3%A9"
    );
}

#[test]
fn phases_follow_what_the_config_maps() {
    let request_only = plugin(json!({"request": {"headers": {"x-a": "1"}}}));
    assert_eq!(request_only.needs(), Needs::REQUEST);
    // A response mapping that reads nothing from the request (or its body)
    // needs no request phase.
    let response_only = plugin(json!({"response": {"headers": {"x-s": "{{ status }}"}}}));
    assert_eq!(response_only.needs(), Needs::RESPONSE);
    let carrying = plugin(json!({"response": {"headers": {"x-p": "{{ path }}"}}}));
    assert_eq!(carrying.needs(), Needs::REQUEST | Needs::RESPONSE);
    let reading_body = plugin(json!({"response": {"body": "{{ body | tojson }}"}}));
    assert_eq!(
        reading_body.needs(),
        Needs::REQUEST | Needs::RESPONSE | Needs::RESPONSE_BODY
    );
}

#[test]
fn request_values_reach_the_response_as_the_request_phase_saw_them() {
    let t = plugin(json!({
        "request": {"headers": {"x-client": "rewritten"}},
        "response": {"headers": {"x-was": "{{ headers['x-client'] }} {{ query.express }} {{ client_ip }} {{ host }} {{ route }}"}},
    }));
    let req = order()
        .with_client_addr("[2001:db8::1]:4000")
        .with_route("orders");
    let resp = trip(&t, req, &mut Context::new(), Response::new(200));
    assert_eq!(
        resp.headers().get("x-was"),
        Some("mobile yes 2001:db8::1 localhost orders")
    );
}

#[test]
fn two_entries_keep_their_request_values_apart() {
    let first = plugin(json!({"response": {"headers": {"x-first": "{{ path }}"}}}));
    let second = plugin(
        json!({"request": {"headers": {"x-b": "1"}}, "response": {"headers": {"x-second": "{{ path }}"}}}),
    );
    let mut ctx = Context::new();
    let mut req = Request::new("GET", "/one");
    assert!(matches!(
        first.on_request(&mut req, &mut ctx),
        Action::Continue
    ));
    req.set_path("/two");
    assert!(matches!(
        second.on_request(&mut req, &mut ctx),
        Action::Continue
    ));
    let mut resp = Response::new(200);
    second.on_response(&Request::new("GET", "/"), &mut resp, &mut ctx);
    first.on_response(&Request::new("GET", "/"), &mut resp, &mut ctx);
    assert_eq!(resp.headers().get("x-first"), Some("/one"));
    assert_eq!(resp.headers().get("x-second"), Some("/two"));
}
