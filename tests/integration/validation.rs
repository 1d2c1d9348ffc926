//! Request validation of an API against its OpenAPI document, through the
//! real binary and a real upstream: parameters in every style OpenAPI
//! defines, JSON bodies with the pointer of each failure, validation after
//! the key check, `validate = false`, and a reloaded document changing what
//! is accepted.

use crate::support::config::Config;
use crate::support::{Gateway, Upstream, client, send};
use http::Request;
use http_body_util::Full;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

/// A 3.0 document (draft 4 schemas with `nullable`) with a parameter of
/// each style, and a body.
const STYLES_YAML: &str = r##"openapi: 3.0.3
info: {title: Styles, version: "1"}
components:
  schemas:
    Id: {type: integer, format: int32, minimum: 1}
    Filter:
      type: object
      properties:
        role: {type: string, enum: [admin, reader]}
        age: {type: integer, maximum: 120}
paths:
  /simple/{ids}:
    get:
      operationId: simplePath
      parameters:
        - {name: ids, in: path, required: true, schema: {type: array, items: {$ref: "#/components/schemas/Id"}}}
  /label/{ids}:
    get:
      operationId: labelPath
      parameters:
        - {name: ids, in: path, required: true, style: label, explode: true, schema: {type: array, items: {type: integer}}}
  /matrix/{point}:
    get:
      operationId: matrixPath
      parameters:
        - name: point
          in: path
          required: true
          style: matrix
          explode: true
          schema: {type: object, properties: {x: {type: integer}, y: {type: integer}}, required: [x, y]}
  /search:
    get:
      operationId: search
      parameters:
        - {name: tag, in: query, schema: {type: array, maxItems: 3, items: {type: string, maxLength: 5}}}
        - {name: near, in: query, explode: false, schema: {type: array, items: {type: number}, minItems: 2, maxItems: 2}}
        - {name: filter, in: query, style: deepObject, explode: true, schema: {$ref: "#/components/schemas/Filter"}}
        - {name: words, in: query, style: spaceDelimited, explode: false, schema: {type: array, items: {type: string, pattern: "^[a-z]+$"}}}
        - {name: ranks, in: query, style: pipeDelimited, explode: false, schema: {type: array, items: {type: integer}}}
        - {name: limit, in: query, required: true, schema: {type: integer, maximum: 50}}
        - {name: X-Trace, in: header, schema: {type: array, items: {type: string, format: uuid}}}
        - {name: session, in: cookie, schema: {type: string, minLength: 8}}
        - {name: since, in: query, schema: {type: string, format: date, nullable: true}}
"##;

fn styles_config(dir: &Path, upstream: &Upstream) -> Config {
    std::fs::write(dir.join("styles.yaml"), STYLES_YAML).expect("write the document");
    Config::new().upstream("backend", upstream).with(
        "apis",
        json!({ "styles": { "openapi": "styles.yaml", "upstream": "backend" } }),
    )
}

fn start_in(dir: &Path, config: &Config) -> Gateway {
    let path = dir.join("gateway.toml");
    config.write(&path);
    Gateway::start_at(&path)
}

async fn call(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> crate::support::Reply {
    let mut request = Request::get(gw.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(&client(), request.body(Full::default()).expect("request")).await
}

/// `in/name/pointer` of each failure a 400 lists.
fn failures(reply: &crate::support::Reply) -> Vec<String> {
    assert_eq!(reply.status, 400, "refused: {}", reply.body);
    let body = reply.json();
    let listed = body["failures"].as_array().cloned().unwrap_or_default();
    assert_eq!(body["failure_count"], listed.len(), "{}", reply.body);
    listed
        .iter()
        .map(|f| {
            let text = |key: &str| f[key].as_str().unwrap_or_default().to_string();
            format!("{}/{}{}", text("in"), text("name"), text("pointer"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_are_read_in_every_style_and_checked_against_their_schemas() {
    let upstream = Upstream::start("backend").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = start_in(dir.path(), &styles_config(dir.path(), &upstream));
    let uuid = "6f1c4a52-9a4e-4c1b-8f53-0c5a2f1d9e77";

    let valid = [
        "/simple/1,2,3",
        "/label/.4.5",
        "/matrix/;x=1;y=2",
        "/search?limit=5&tag=a&tag=b&near=1.5,2&filter[role]=admin&filter[age]=30&words=ab%20cd&ranks=1|2&since=2026-12-07",
    ];
    for path in valid {
        let reply = call(
            &gw,
            path,
            &[("x-trace", uuid), ("cookie", "session=abcdefgh")],
        )
        .await;
        assert_eq!(reply.status, 200, "{path} is valid: {}", reply.body);
        assert_eq!(reply.json()["upstream"], "backend");
    }
    let hits = upstream.hits();

    let invalid: [(&str, &[&str]); 6] = [
        ("/simple/1,0,x", &["path/ids/1", "path/ids/2"]),
        ("/simple/3000000000", &["path/ids/0"]),
        ("/label/4.5", &["path/ids"]),
        ("/matrix/;x=1;y=b", &["path/point/y"]),
        (
            "/search?limit=500&tag=a&tag=toolong&near=1&filter[role]=root&words=ab%20C1&ranks=1|x&since=07-12-2026",
            &[
                "query/tag/1",
                "query/near",
                "query/filter/role",
                "query/words/1",
                "query/ranks/1",
                "query/limit",
                "query/since",
            ],
        ),
        ("/search?tag=a", &["query/limit"]),
    ];
    for (path, expected) in invalid {
        let reply = call(&gw, path, &[]).await;
        let mut listed = failures(&reply);
        listed.sort();
        let mut expected: Vec<String> = expected.iter().map(|e| e.to_string()).collect();
        expected.sort();
        assert_eq!(listed, expected, "{path}: {}", reply.body);
    }
    let headers = call(
        &gw,
        "/search?limit=1",
        &[
            ("x-trace", uuid),
            ("x-trace", "not-a-uuid"),
            ("cookie", "session=short"),
        ],
    )
    .await;
    let mut listed = failures(&headers);
    listed.sort();
    assert_eq!(
        listed,
        ["cookie/session", "header/x-trace/1"],
        "{}",
        headers.body
    );
    assert_eq!(
        upstream.hits(),
        hits,
        "no refused request reached the upstream"
    );
}

const ORDERS_YAML: &str = r##"openapi: 3.1.0
info: {title: Orders, version: "1"}
security:
  - orderKey: []
components:
  securitySchemes:
    orderKey: {type: apiKey, in: header, name: X-Order-Key}
  schemas:
    Line:
      type: object
      required: [sku, quantity]
      properties:
        sku: {type: string, pattern: "^[A-Z]{3}-[0-9]{3}$"}
        quantity: {type: integer, exclusiveMinimum: 0}
        note: {type: ["string", "null"]}
    Order:
      type: object
      required: [lines]
      additionalProperties: false
      properties:
        lines: {type: array, minItems: 1, items: {$ref: "#/components/schemas/Line"}}
        deliver_by: {type: string, format: date-time}
paths:
  /orders:
    post:
      operationId: placeOrder
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: "#/components/schemas/Order"}
          text/csv: {}
  /files/{name}:
    put:
      operationId: uploadFile
      parameters:
        - {name: name, in: path, required: true, schema: {type: string, maxLength: 64}}
      requestBody:
        required: true
        content:
          application/octet-stream: {}
"##;

const KEY: &str = "order-key-0000001";

fn orders_config(dir: &Path, upstream: &Upstream, validate: Option<bool>) -> Config {
    std::fs::write(dir.join("orders.yaml"), ORDERS_YAML).expect("write the document");
    let mut api = json!({ "openapi": "orders.yaml", "upstream": "orders" });
    if let Some(validate) = validate {
        api["validate"] = json!(validate);
    }
    Config::new()
        .consumer(json!({ "name": "shop", "keys": [{ "plaintext": KEY }] }))
        .upstream("orders", upstream)
        .with("apis", json!({ "orders": api }))
}

async fn post(
    gw: &Gateway,
    key: Option<&str>,
    content_type: &str,
    body: &str,
) -> crate::support::Reply {
    let mut request = Request::post(gw.url("/orders")).header("content-type", content_type);
    if let Some(key) = key {
        request = request.header("x-order-key", key);
    }
    let request = request.body(Full::from(body.to_string())).expect("request");
    send(&client(), request).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_failures_are_listed_with_json_pointers_after_the_key_check() {
    let upstream = Upstream::start("orders").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = start_in(dir.path(), &orders_config(dir.path(), &upstream, None));

    let good = r#"{"lines":[{"sku":"ABC-123","quantity":2,"note":null}],"deliver_by":"2026-12-24T10:00:00Z"}"#;
    let placed = post(&gw, Some(KEY), "application/json", good).await;
    assert_eq!(placed.status, 200, "{}", placed.body);
    assert_eq!(
        placed.json()["body"],
        good,
        "the body reaches the upstream as sent"
    );
    let csv = post(
        &gw,
        Some(KEY),
        "text/csv; charset=utf-8",
        "sku,quantity\nABC-123,2\n",
    )
    .await;
    assert_eq!(
        csv.status, 200,
        "a documented type without a schema: {}",
        csv.body
    );
    let hits = upstream.hits();

    let bad = r#"{"lines":[{"sku":"ABC-123","quantity":1},{"sku":"abc","quantity":0,"note":5}],"deliver_by":"tomorrow","gift":true}"#;
    let mut listed = failures(&post(&gw, Some(KEY), "application/json", bad).await);
    listed.sort();
    assert_eq!(
        listed,
        [
            "body/",
            "body//deliver_by",
            "body//lines/1/note",
            "body//lines/1/quantity",
            "body//lines/1/sku",
        ],
        "each failure at its pointer (the first: `gift`, not allowed at the top)"
    );
    let reasons = |reply: &crate::support::Reply| -> Vec<Value> {
        reply.json()["failures"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let xml = post(&gw, Some(KEY), "application/xml", "<order/>").await;
    assert_eq!(xml.status, 400);
    assert!(
        reasons(&xml)[0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("application/xml"),
        "{}",
        xml.body
    );
    let broken = post(&gw, Some(KEY), "application/json", r#"{"lines": ["#).await;
    assert!(
        reasons(&broken)[0]["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("is not JSON"),
        "{}",
        broken.body
    );
    let empty = post(&gw, Some(KEY), "application/json", "").await;
    assert_eq!(
        reasons(&empty)[0]["reason"],
        "a body is required",
        "{}",
        empty.body
    );

    let anonymous = post(&gw, None, "application/json", bad).await;
    assert_eq!(
        anonymous.status, 401,
        "the key is checked first: a caller without one learns nothing of the schema"
    );
    assert_eq!(
        upstream.hits(),
        hits,
        "no refused request reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_checked_by_content_type_alone_streams_past_the_body_cap() {
    let upstream = Upstream::start("orders").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = start_in(dir.path(), &orders_config(dir.path(), &upstream, None));
    let upload = |content_type: &'static str, size: usize| {
        Request::put(gw.url("/files/report.bin"))
            .header("x-order-key", KEY)
            .header("content-type", content_type)
            .body(Full::from(vec![b'a'; size]))
            .expect("request")
    };
    // Twice plugin_defaults.max_body (1 MiB): never buffered for the validator.
    let size = 2 << 20;
    let reply = send(&client(), upload("application/octet-stream", size)).await;
    assert_eq!(
        reply.status,
        200,
        "{}",
        &reply.body[..reply.body.len().min(300)]
    );
    assert_eq!(reply.json()["body"].as_str().map(str::len), Some(size));
    let refused = send(&client(), upload("text/plain", 10)).await;
    assert_eq!(failures(&refused), ["body/"], "{}", refused.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_false_serves_the_api_without_validation() {
    let upstream = Upstream::start("orders").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = start_in(
        dir.path(),
        &orders_config(dir.path(), &upstream, Some(false)),
    );
    let reply = post(&gw, Some(KEY), "application/xml", "<order/>").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["body"], "<order/>");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_document_changes_what_is_accepted_without_a_restart() {
    let upstream = Upstream::start("backend").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = start_in(dir.path(), &styles_config(dir.path(), &upstream));
    assert_eq!(call(&gw, "/search?limit=40", &[]).await.status, 200);

    let tightened = STYLES_YAML.replace("maximum: 50", "maximum: 30");
    std::fs::write(dir.path().join("styles.yaml"), tightened).expect("rewrite the document");
    let waiting = Instant::now();
    loop {
        let reply = call(&gw, "/search?limit=40", &[]).await;
        if reply.status == 400 {
            assert_eq!(failures(&reply), ["query/limit"]);
            break;
        }
        assert!(
            waiting.elapsed() < Duration::from_secs(10),
            "the new maximum never applied"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(call(&gw, "/search?limit=30", &[]).await.status, 200);
}

/// The echo upstream's answer is an object without `id`: not the
/// documented `Thing`. A `404` is documented without a body.
const THINGS_YAML: &str = r##"openapi: 3.1.0
info: {title: Things, version: "1"}
components:
  schemas:
    Thing: {type: object, required: [id], properties: {id: {type: integer}}}
  responses:
    Missing: {description: no such thing}
paths:
  /things/{id}:
    get:
      operationId: getThing
      responses:
        "200":
          description: the thing
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Thing"}
        "404": {$ref: "#/components/responses/Missing"}
"##;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_that_differ_from_the_document_are_counted_and_passed_on_unchanged() {
    let upstream = Upstream::start("things").await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("things.yaml"), THINGS_YAML).expect("write the document");
    let config = Config::new().admin().upstream("things", &upstream).with(
        "apis",
        json!({ "things": { "openapi": "things.yaml", "upstream": "things", "validate_responses": true } }),
    );
    let gw = start_in(dir.path(), &config);
    let mismatches = |text: &str| {
        crate::support::metric(
            text,
            r#"gateway_plugin_events_total{plugin="request-validator",event="response_mismatch"}"#,
        )
        .unwrap_or(0.0)
    };
    let before = mismatches(&crate::support::get(&gw.admin_url("/metrics")).await.body);

    let reply = call(&gw, "/things/7", &[]).await;
    assert_eq!(reply.status, 200, "reported, not refused: {}", reply.body);
    assert_eq!(
        reply.json()["upstream"],
        "things",
        "the body passes unchanged"
    );
    let metrics = crate::support::get(&gw.admin_url("/metrics")).await.body;
    assert_eq!(mismatches(&metrics) - before, 1.0, "{metrics}");
    assert!(
        gw.log()
            .contains("route `getThing`: the 200 response does not match"),
        "the mismatch is logged with its route: {}",
        gw.log()
    );
}
