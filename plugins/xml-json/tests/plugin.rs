//! The plugin as the pipeline drives it: which bodies it converts, the
//! headers it fixes, the answers it gives when it cannot, and its config.

use plugin_sdk::{Action, Config, Context, Needs, Plugin, Request, Response};
use plugin_xml_json::XmlJson;
use serde_json::{Value, json};

const SOAP: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><r id="7">ok</r></soap:Body></soap:Envelope>"#;
const SOAP_JSON: &str = r##"{"soap:Envelope":{"@xmlns:soap":"http://schemas.xmlsoap.org/soap/envelope/","soap:Body":{"r":{"@id":"7","#text":"ok"}}}}"##;

fn plugin(config: Value) -> XmlJson {
    XmlJson::init(Config::from_value(config)).unwrap_or_else(|e| panic!("{e}"))
}

fn config_error(config: Value) -> String {
    match XmlJson::init(Config::from_value(config)) {
        Ok(_) => panic!("accepted"),
        Err(e) => e,
    }
}

fn upstream(content_type: &str, body: &str) -> Response {
    Response::new(200)
        .with_header("content-type", content_type)
        .with_header("content-length", body.len().to_string())
        .with_body(body)
}

fn respond(plugin: &XmlJson, mut resp: Response) -> Response {
    plugin.on_response(&Request::new("GET", "/"), &mut resp, &mut Context::new());
    resp
}

fn body(resp: &Response) -> &str {
    std::str::from_utf8(resp.body().unwrap_or_default()).expect("UTF-8")
}

fn post(content_type: &str, body: &str) -> Request {
    Request::new("POST", "/orders")
        .with_header("content-type", content_type)
        .with_header("content-length", &body.len().to_string())
        .with_header("x-request-id", "req-1")
        .with_body(body)
}

fn json_body(resp: &Response) -> Value {
    serde_json::from_str(body(resp)).expect("a JSON body")
}

#[test]
fn phases_follow_the_directions() {
    let both = Needs::REQUEST | Needs::REQUEST_BODY | Needs::RESPONSE | Needs::RESPONSE_BODY;
    assert_eq!(
        plugin(json!({})).needs(),
        Needs::RESPONSE | Needs::RESPONSE_BODY
    );
    assert_eq!(plugin(json!({ "request": "json-to-xml" })).needs(), both);
    assert_eq!(
        plugin(json!({ "request": "json-to-xml", "response": "none" })).needs(),
        Needs::REQUEST | Needs::REQUEST_BODY
    );
}

#[test]
fn xml_responses_become_json_with_fixed_headers() {
    let p = plugin(json!({}));
    for content_type in [
        "application/xml",
        "text/xml; charset=UTF-8",
        "application/soap+xml; action=\"x\"",
    ] {
        let resp = respond(
            &p,
            upstream(content_type, SOAP)
                .with_header("content-md5", "stale")
                .with_header("etag", "\"v1\""),
        );
        assert_eq!(resp.status(), 200);
        assert_eq!(body(&resp), SOAP_JSON, "{content_type}");
        let headers = resp.headers();
        assert_eq!(headers.get("content-type"), Some("application/json"));
        assert_eq!(
            headers.get("content-length"),
            Some(SOAP_JSON.len().to_string().as_str())
        );
        assert_eq!(headers.get_all("content-length").count(), 1);
        assert!(!headers.contains("content-md5"));
        assert_eq!(headers.get("etag"), Some("\"v1\""));
    }
    // An upstream error in XML is converted too, its status kept.
    let mut failed = upstream("application/xml", "<fault>down</fault>");
    failed.set_status(503);
    let resp = respond(&p, failed);
    assert_eq!((resp.status(), body(&resp)), (503, r#"{"fault":"down"}"#));
}

#[test]
fn other_bodies_pass_untouched() {
    let p = plugin(json!({}));
    let cases = [
        upstream("application/json", r#"{"a":1}"#),
        upstream("text/html", "<html></html>"),
        upstream("application/xml-dtd", "<!ELEMENT a ANY>"),
        Response::new(200).with_body("<a/>"),
        upstream("application/xml", ""),
        Response::new(204).with_header("content-type", "application/xml"),
    ];
    for resp in cases {
        let before = format!("{resp:?}");
        let after = respond(&p, resp);
        assert!(!after.is_edited(), "{before}");
    }
}

#[test]
fn unconvertible_responses_become_502() {
    let p = plugin(json!({}));
    let cases = [
        (
            upstream("application/xml", "<a><b></a>"),
            "invalid XML at byte",
        ),
        (
            upstream("application/xml", "<!DOCTYPE a><a/>"),
            "a DOCTYPE declaration is not allowed",
        ),
        (
            upstream("application/xml", &"<a>".repeat(65)),
            "nested deeper than 64 levels",
        ),
        (
            upstream("text/xml; charset=iso-8859-1", "<a/>"),
            "encoding `iso-8859-1` is not supported",
        ),
        (
            upstream("application/xml", "<a/>").with_header("content-encoding", "gzip"),
            "content-encoding `gzip` is not supported",
        ),
    ];
    for (resp, reason) in cases {
        let resp = respond(&p, resp.with_header("set-cookie", "s=1"));
        assert_eq!(resp.status(), 502, "{reason}");
        let error = json_body(&resp);
        assert_eq!(error["status"], 502);
        let message = error["error"].as_str().unwrap_or_default();
        assert!(
            message.starts_with("upstream response cannot be converted: "),
            "{message}"
        );
        assert!(message.contains(reason), "{message} / {reason}");
        let headers = resp.headers();
        assert_eq!(headers.get("content-type"), Some("application/json"));
        assert_eq!(
            headers.get("content-length"),
            Some(body(&resp).len().to_string().as_str())
        );
        assert!(!headers.contains("set-cookie") && !headers.contains("content-encoding"));
    }
    // `identity` is no encoding.
    let resp = respond(
        &p,
        upstream("application/xml", "<a/>").with_header("content-encoding", "identity"),
    );
    assert_eq!(body(&resp), r#"{"a":null}"#);
}

#[test]
fn json_requests_become_xml() {
    let p = plugin(json!({ "request": "json-to-xml", "response": "none" }));
    let mut req = post(
        "application/json; charset=utf-8",
        r#"{"order":{"@id":7,"item":["a","b"]}}"#,
    );
    assert!(matches!(
        p.on_request(&mut req, &mut Context::new()),
        Action::Continue
    ));
    let xml = r#"<?xml version="1.0" encoding="UTF-8"?><order id="7"><item>a</item><item>b</item></order>"#;
    assert_eq!(req.body(), Some(xml.as_bytes()));
    assert_eq!(req.headers().get("content-type"), Some("application/xml"));
    assert_eq!(
        req.headers().get("content-length"),
        Some(xml.len().to_string().as_str())
    );

    let mut other = post("application/x-www-form-urlencoded", "a=1");
    assert!(matches!(
        p.on_request(&mut other, &mut Context::new()),
        Action::Continue
    ));
    assert!(!other.is_edited());
    let mut get = Request::new("GET", "/orders").with_header("content-type", "application/json");
    assert!(matches!(
        p.on_request(&mut get, &mut Context::new()),
        Action::Continue
    ));
    assert!(!get.is_edited());
}

#[test]
fn unconvertible_requests_are_answered() {
    let p = plugin(json!({ "request": "json-to-xml" }));
    let cases = [
        (
            post("application/json", "{\"a\":"),
            400,
            "invalid JSON at byte 5: unexpected end",
        ),
        (
            post("application/problem+json", r#"{"a b":1}"#),
            400,
            "`a b` is not a valid XML name",
        ),
        (
            post("application/json", &"[".repeat(100)),
            400,
            "nested deeper than 64 levels",
        ),
        (
            post("application/json; charset=utf-16", "{}"),
            415,
            "encoding `utf-16` is not supported: only UTF-8 is",
        ),
        (
            post("application/json", "{}").with_header("content-encoding", "br"),
            415,
            "content-encoding `br` is not supported: the body must be uncompressed",
        ),
    ];
    for (mut req, status, reason) in cases {
        let Action::Respond(resp) = p.on_request(&mut req, &mut Context::new()) else {
            panic!("{reason}: not answered");
        };
        assert_eq!(resp.status(), status, "{reason}");
        assert_eq!(resp.headers().get("content-type"), Some("application/json"));
        assert_eq!(
            json_body(&resp),
            json!({
                "error": format!("request body cannot be converted: {reason}"),
                "status": status,
                "request_id": "req-1",
            })
        );
    }
}

#[test]
fn the_reverse_directions() {
    let p = plugin(json!({
        "request": "xml-to-json",
        "response": "json-to-xml",
        "xml_content_type": "text/xml; charset=utf-8",
        "declaration": false,
    }));
    let mut req = post("text/xml", SOAP);
    assert!(matches!(
        p.on_request(&mut req, &mut Context::new()),
        Action::Continue
    ));
    assert_eq!(req.body(), Some(SOAP_JSON.as_bytes()));
    assert_eq!(req.headers().get("content-type"), Some("application/json"));

    let resp = respond(&p, upstream("application/json", SOAP_JSON));
    assert_eq!(body(&resp), SOAP);
    assert_eq!(
        resp.headers().get("content-type"),
        Some("text/xml; charset=utf-8")
    );
    let mut bad_xml = post("application/xml", "<a>");
    let Action::Respond(answer) = p.on_request(&mut bad_xml, &mut Context::new()) else {
        panic!("not answered");
    };
    assert_eq!(answer.status(), 400);
}

#[test]
fn configured_media_types() {
    let p = plugin(
        json!({ "xml_types": ["application/vnd.acme+xml"], "json_content_type": "application/vnd.acme+json" }),
    );
    assert!(!respond(&p, upstream("application/xml", "<a/>")).is_edited());
    let resp = respond(&p, upstream("application/vnd.acme+xml; v=2", "<a/>"));
    assert_eq!(body(&resp), r#"{"a":null}"#);
    assert_eq!(
        resp.headers().get("content-type"),
        Some("application/vnd.acme+json")
    );
    let any_xml = plugin(json!({ "xml_types": ["application/*+xml", "text/*"] }));
    assert!(respond(&any_xml, upstream("text/plain", "<a/>")).is_edited());
}

/// Config errors and the exact message each must print.
#[test]
fn config_errors() {
    let cases = [
        (
            json!({ "reponse": "none" }),
            "xml-json: invalid config: unknown field `reponse`, expected one of `request`, `response`, `xml_types`, \
             `json_types`, `xml_content_type`, `json_content_type`, `attribute_prefix`, `text_key`, `namespaces`, \
             `arrays`, `recognize`, `trim_whitespace`, `root`, `array_item`, `declaration`, `pretty`, \
             `allow_doctype`, `max_depth`, `max_elements`, `max_attributes`, `max_name_length`, `max_output`",
        ),
        (
            json!({ "response": "xml2json" }),
            "xml-json: invalid config: unknown variant `xml2json`, expected one of `none`, `json-to-xml`, `xml-to-json`",
        ),
        (
            json!({ "response": "none" }),
            "xml-json: `request` and `response` are both \"none\": nothing to convert; set one to \"json-to-xml\" or \"xml-to-json\"",
        ),
        (
            json!({ "xml_types": [] }),
            "xml-json: `xml_types` is empty: list at least one media type",
        ),
        (
            json!({ "json_types": ["json"] }),
            "xml-json: `json` in `json_types` is not a media type: expected `type/subtype`, `type/*+suffix` or `type/*`",
        ),
        (
            json!({ "xml_content_type": "application/*" }),
            "xml-json: `xml_content_type` = `application/*` is not a media type such as `application/xml; charset=utf-8`",
        ),
        (
            json!({ "attribute_prefix": "a" }),
            "xml-json: `attribute_prefix` = `a` must be non-empty and must not start with a character that can start an XML name; `@` is usual",
        ),
        (
            json!({ "text_key": "text" }),
            "xml-json: `text_key` = `text` must be non-empty, not an XML name and not start with `attribute_prefix`; `#text` is usual",
        ),
        (
            json!({ "text_key": "@text" }),
            "xml-json: `text_key` = `@text` must be non-empty, not an XML name and not start with `attribute_prefix`; `#text` is usual",
        ),
        (
            json!({ "namespaces": "drop" }),
            "xml-json: invalid config: unknown variant `drop`, expected `keep` or `strip`",
        ),
        (
            json!({ "arrays": ["items/item"] }),
            "xml-json: invalid path `items/item` in `arrays`: it must start with `/` or `//`; expected `/root/items/item`, `//item` or `/root/*/item`",
        ),
        (
            json!({ "arrays": ["/a/b c"] }),
            "xml-json: invalid path `/a/b c` in `arrays`: `b c` is not an element name; expected `/root/items/item`, `//item` or `/root/*/item`",
        ),
        (
            json!({ "recognize": { "number": true } }),
            "xml-json: invalid config: unknown field `number`, expected one of `numbers`, `booleans`, `null`",
        ),
        (
            json!({ "root": "my root" }),
            "xml-json: `root` = `my root` is not an XML element name (of at most `max_name_length` bytes)",
        ),
        (
            json!({ "array_item": "" }),
            "xml-json: `array_item` = `` is not an XML element name (of at most `max_name_length` bytes)",
        ),
        (
            json!({ "max_elements": 0 }),
            "xml-json: `max_elements` must be at least 1",
        ),
        (
            json!({ "max_depth": 5000 }),
            "xml-json: `max_depth` must be at most 1000",
        ),
        (
            json!({ "max_output": "8 megs" }),
            "xml-json: `max_output`: invalid size `8 megs`: expected bytes as an integer or a number followed by \
             B, KB, KiB, MB, MiB, GB or GiB (for example \"1MiB\")",
        ),
        (
            json!({ "max_output": 0 }),
            "xml-json: `max_output` must be at least 1",
        ),
    ];
    for (config, message) in cases {
        assert_eq!(config_error(config.clone()), message, "{config}");
    }
}
