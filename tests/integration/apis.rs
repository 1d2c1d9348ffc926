//! APIs defined by OpenAPI documents (`[apis.NAME]`), through the real
//! binary: one route per operation under the API's base path, the API's
//! entries between `[[plugins]]` and the route, an operation's own upstream,
//! an apiKey security scheme enforced per operation (`security: []` public),
//! 3.0 YAML and 3.1 JSON documents, mistakes reported at the document's line
//! and column, and the document reloaded when it changes.

use crate::support::config::{Config, Plugin};
use crate::support::{Gateway, Upstream, check, client, get, send};
use http::Request;
use http_body_util::Full;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

const SHOP_YAML: &str = r#"openapi: 3.0.3
info:
  title: Shop
  version: "1.0"
security:
  - shopKey: []
components:
  securitySchemes:
    shopKey:
      type: apiKey
      in: header
      name: X-Shop-Key
paths:
  /products:
    get:
      operationId: listProducts
      security: []
    post:
      operationId: createProduct
  /products/{id}:
    get:
      operationId: getProduct
      x-gateway-upstream: catalog
"#;

const KEY: &str = "shop-key-00000001";

fn shop(dir: &Path, shop: &Upstream, catalog: &Upstream) -> Config {
    std::fs::write(dir.join("shop.yaml"), SHOP_YAML).expect("write the document");
    Config::new()
        .consumer(json!({ "name": "alice", "keys": [{ "plaintext": KEY }] }))
        .upstream("shop", shop)
        .upstream("catalog", catalog)
        .with(
            "apis",
            json!({ "shop": {
                "openapi": "shop.yaml",
                "base_path": "/v1",
                "upstream": "shop",
                "validate": false,
                "plugins": [{ "plugin": "headers", "config": { "request": { "set": { "x-api": "shop" } } } }],
            }}),
        )
}

fn start_in(dir: &Path, config: &Config) -> Gateway {
    let path = dir.join("gateway.toml");
    config.write(&path);
    Gateway::start_at(&path)
}

async fn post_with_key(url: &str, key: Option<&str>) -> crate::support::Reply {
    let mut request = Request::post(url);
    if let Some(key) = key {
        request = request.header("x-shop-key", key);
    }
    send(&client(), request.body(Full::default()).expect("request")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_operation_is_a_route_with_the_apis_entries_and_its_security() {
    let (shop_up, catalog_up) = (
        Upstream::start("shop").await,
        Upstream::start("catalog").await,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = start_in(dir.path(), &shop(dir.path(), &shop_up, &catalog_up));

    let forged = Request::get(gw.url("/v1/products"))
        .header("x-consumer-name", "admin")
        .body(Full::default())
        .expect("request");
    let public = send(&client(), forged).await;
    assert!(
        public.json()["headers"].get("x-consumer-name").is_none(),
        "no identity is claimed on a public operation: {}",
        public.body
    );
    assert_eq!(
        public.status, 200,
        "security: [] is public: {}",
        public.body
    );
    assert_eq!(public.json()["upstream"], "shop");
    assert_eq!(
        public.json()["headers"]["x-api"],
        "shop",
        "the API's entry runs"
    );

    assert_eq!(
        post_with_key(&gw.url("/v1/products"), None).await.status,
        401
    );
    let created = post_with_key(&gw.url("/v1/products"), Some(KEY)).await;
    assert_eq!(created.status, 200, "{}", created.body);
    assert_eq!(created.json()["method"], "POST");

    // The document's security applies to getProduct too (the document-wide
    // requirement), and x-gateway-upstream sends it to the catalog.
    assert_eq!(get(&gw.url("/v1/products/7")).await.status, 401);
    let request = Request::get(gw.url("/v1/products/7"))
        .header("x-shop-key", KEY)
        .body(Full::default())
        .expect("request");
    let product = send(&client(), request).await;
    assert_eq!(product.status, 200, "{}", product.body);
    assert_eq!(product.json()["upstream"], "catalog");
    assert_eq!(product.json()["path"], "/v1/products/7");

    assert_eq!(
        get(&gw.url("/products")).await.status,
        404,
        "only under the base path"
    );
    assert_eq!(
        send(
            &client(),
            Request::delete(gw.url("/v1/products"))
                .body(Full::default())
                .expect("request")
        )
        .await
        .status,
        405,
        "only the documented methods"
    );

    let (ok, output) = check(dir.path(), "gateway.toml");
    assert!(ok, "{output}");
    for line in [
        "  route `listProducts`: openapi-public=headers, headers (api)",
        "  route `createProduct`: openapi-security=key-auth, headers (api)",
    ] {
        assert!(
            output.lines().any(|l| l == line),
            "missing `{line}` in:\n{output}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_openapi_3_1_document_is_read_the_same_way() {
    let up = Upstream::start("books").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let document = json!({
        "openapi": "3.1.0",
        "info": { "title": "Library", "version": "1" },
        "paths": { "/books/{isbn}": { "get": { "operationId": "getBook" } } }
    });
    std::fs::write(dir.path().join("library.json"), document.to_string()).expect("write");
    let config = Config::new().upstream("books", &up).with(
        "apis",
        json!({ "library": { "openapi": "library.json", "upstream": "books", "validate": false } }),
    );
    let gw = start_in(dir.path(), &config);
    let book = get(&gw.url("/books/978-3")).await;
    assert_eq!(book.status, 200, "{}", book.body);
    assert_eq!(book.json()["path"], "/books/978-3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_document_is_served_after_a_reload() {
    let (shop_up, catalog_up) = (
        Upstream::start("shop").await,
        Upstream::start("catalog").await,
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = start_in(dir.path(), &shop(dir.path(), &shop_up, &catalog_up));
    assert_eq!(get(&gw.url("/v1/orders")).await.status, 404);
    let grown = format!(
        "{SHOP_YAML}  /orders:\n    get:\n      operationId: listOrders\n      security: []\n"
    );
    let document = dir.path().join("shop.yaml");
    std::fs::write(document.with_extension("tmp"), grown).expect("write");
    std::fs::rename(document.with_extension("tmp"), &document).expect("rename");
    let started = Instant::now();
    while get(&gw.url("/v1/orders")).await.status != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the new operation was never served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        get(&gw.url("/v1/products")).await.status,
        200,
        "the others stay"
    );
}

#[test]
fn mistakes_in_the_document_are_reported_at_its_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let document = "openapi: 3.1.0\ninfo: {title: t, version: '1'}\npaths:\n  /a:\n    get:\n      operationId: a\n      x-gateway-upstream: shopp\n  /b:\n    get:\n      operationId: b\n      security:\n        - bearer: []\n  /c:\n    security:\n      - key: []\n    get: {operationId: c}\n  /d:\n    get:\n      operationId: d\n      security:\n        - key: [admin]\n  /e:\n    get: {operationId: e, securty: []}\ncomponents:\n  securitySchemes:\n    bearer: {type: oauth2, flows: {}}\n    key: {type: apiKey, in: query, name: key}\n";
    std::fs::write(dir.path().join("api.yaml"), document).expect("write");
    let config = Config::new()
        .upstream(
            "shop",
            "127.0.0.1:9".parse::<std::net::SocketAddr>().expect("addr"),
        )
        .with(
            "apis",
            json!({ "api": { "openapi": "api.yaml", "upstream": "shop", "validate": false } }),
        )
        .plugin(Plugin::new("headers").config(json!({})));
    config.write(dir.path().join("gateway.toml"));
    let (ok, output) = check(dir.path(), "gateway.toml");
    assert!(!ok, "{output}");
    let lines: Vec<&str> = output.lines().collect();
    assert!(
        lines.iter().any(|l| l.contains(
            "api.yaml:7:7: operation `a`: unknown upstream `shopp`; did you mean `shop`?"
        )),
        "{output}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("api.yaml:12:11: security scheme `bearer` is of type `oauth2`")),
        "{output}"
    );
    let said = |needle: &str| lines.iter().any(|l| l.contains(needle));
    assert!(
        said(
            "api.yaml:14:5: unknown key `security` in a path item (security belongs on each operation"
        ),
        "a security on the path item is not silently ignored: {output}"
    );
    assert!(
        said("api.yaml:21:11: scheme `key` is required with roles"),
        "roles are not silently dropped: {output}"
    );
    assert!(
        said("unknown key `securty` in an operation; did you mean `security`?"),
        "a misspelt security does not leave the operation open: {output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mocked_operation_answers_with_its_documented_example() {
    let dir = tempfile::tempdir().expect("tempdir");
    let document = r#"openapi: 3.1.0
info: {title: Catalog, version: "1"}
paths:
  /lamps/{id}:
    get:
      operationId: getLamp
      x-gateway-mock: true
      responses:
        "200":
          description: a lamp
          content:
            application/json:
              example: {id: 7, name: Desk lamp, watts: 40}
        "404":
          description: no such lamp
  /lamps:
    post:
      operationId: addLamp
      x-gateway-mock: {status: 409}
      responses:
        "201": {description: added}
        "409":
          description: a lamp of that name exists
          content:
            text/plain:
              examples:
                taken: {value: name taken}
"#;
    std::fs::write(dir.path().join("catalog.yaml"), document).expect("write");
    let config = Config::new().with(
        "apis",
        json!({ "catalog": { "openapi": "catalog.yaml", "validate": false } }),
    );
    let gw = start_in(dir.path(), &config);
    let lamp = get(&gw.url("/lamps/7")).await;
    assert_eq!(lamp.status, 200, "{}", lamp.body);
    assert_eq!(lamp.header("content-type"), Some("application/json"));
    assert_eq!(
        lamp.json(),
        json!({ "id": 7, "name": "Desk lamp", "watts": 40 })
    );
    let taken = send(
        &client(),
        Request::post(gw.url("/lamps"))
            .body(Full::default())
            .expect("request"),
    )
    .await;
    assert_eq!(taken.status, 409);
    assert_eq!(taken.header("content-type"), Some("text/plain"));
    assert_eq!(taken.body, "name taken");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_bearer_scheme_is_checked_by_the_apis_bearer_entry() {
    const SECRET: &str = "a-shared-secret-for-hs256-tokens";
    let up = Upstream::start("orders").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let document = "openapi: 3.1.0\ninfo: {title: Orders, version: '1'}\nsecurity:\n  - token: []\ncomponents:\n  securitySchemes:\n    token: {type: http, scheme: bearer, bearerFormat: JWT}\npaths:\n  /orders:\n    get: {operationId: listOrders}\n  /health:\n    get: {operationId: health, security: []}\n";
    std::fs::write(dir.path().join("orders.yaml"), document).expect("write");
    let bearer =
        json!({ "plugin": "jwt", "config": { "algorithms": ["HS256"], "hmac_secret": SECRET } });
    let config = Config::new().upstream("orders", &up).with(
        "apis",
        json!({ "orders": { "openapi": "orders.yaml", "upstream": "orders", "validate": false, "bearer": bearer } }),
    );
    let gw = start_in(dir.path(), &config);
    assert_eq!(get(&gw.url("/orders")).await.status, 401, "no token");
    let forged = Request::get(gw.url("/orders"))
        .header(
            "authorization",
            format!(
                "Bearer {}",
                crate::credentials::hs256("another-secret-entirely-000", "eve")
            ),
        )
        .body(Full::default())
        .expect("request");
    assert_eq!(
        send(&client(), forged).await.status,
        401,
        "a token signed with another key"
    );
    let signed = Request::get(gw.url("/orders"))
        .header(
            "authorization",
            format!("Bearer {}", crate::credentials::hs256(SECRET, "alice")),
        )
        .body(Full::default())
        .expect("request");
    let orders = send(&client(), signed).await;
    assert_eq!(orders.status, 200, "{}", orders.body);
    assert_eq!(
        get(&gw.url("/health")).await.status,
        200,
        "security: [] stays public"
    );

    // Without the bearer entry, the config is refused at the requirement.
    let unchecked = Config::new().upstream("orders", &up).with(
        "apis",
        json!({ "orders": { "openapi": "orders.yaml", "upstream": "orders", "validate": false } }),
    );
    unchecked.write(dir.path().join("unchecked.toml"));
    let (ok, output) = check(dir.path(), "unchecked.toml");
    assert!(!ok, "{output}");
    assert!(
        output.contains(
            "orders.yaml:4:5: api `orders`: operation `listOrders` requires a bearer token"
        ),
        "{output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operations_bearer_scopes_are_required_of_its_tokens() {
    const SECRET: &str = "a-shared-secret-for-hs256-tokens";
    let up = Upstream::start("orders").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let document = "openapi: 3.1.0\ninfo: {title: Orders, version: '1'}\nsecurity:\n  - token: []\ncomponents:\n  securitySchemes:\n    token: {type: http, scheme: bearer}\npaths:\n  /orders:\n    get: {operationId: listOrders, security: [{token: [orders:read]}]}\n    delete: {operationId: dropOrders, security: [{token: [orders:write, admin]}]}\n  /me:\n    get: {operationId: me}\n";
    std::fs::write(dir.path().join("orders.yaml"), document).expect("write");
    let bearer =
        json!({ "plugin": "jwt", "config": { "algorithms": ["HS256"], "hmac_secret": SECRET } });
    let config = Config::new().upstream("orders", &up).with(
        "apis",
        json!({ "orders": { "openapi": "orders.yaml", "upstream": "orders", "validate": false, "bearer": bearer } }),
    );
    let gw = start_in(dir.path(), &config);
    let call = |method: &str, path: &str, scope: &str| {
        let token = crate::credentials::hs256_with(SECRET, json!({ "sub": "ann", "scope": scope }));
        Request::builder()
            .method(method)
            .uri(gw.url(path))
            .header("authorization", format!("Bearer {token}"))
            .body(Full::default())
            .expect("request")
    };
    let status = |request| async { send(&client(), request).await.status };
    assert_eq!(status(call("GET", "/orders", "orders:read")).await, 200);
    assert_eq!(status(call("GET", "/orders", "profile")).await, 403);
    // Every scope of the requirement is needed.
    assert_eq!(status(call("DELETE", "/orders", "orders:write")).await, 403);
    assert_eq!(
        status(call("DELETE", "/orders", "admin orders:write")).await,
        200
    );
    // An operation whose requirement lists none needs only a valid token.
    assert_eq!(status(call("GET", "/me", "")).await, 200);
    let refused = send(&client(), call("GET", "/orders", "")).await;
    assert_eq!(
        refused.header("www-authenticate"),
        Some(
            "Bearer realm=\"gateway\", error=\"insufficient_scope\", error_description=\"insufficient scope\", scope=\"orders:read\""
        )
    );

    // A bearer entry whose plugin cannot check scopes is refused at the
    // requirement that lists them.
    let wasm = crate::support::plugin_path("hello_plugin");
    let other = json!({ "plugin": wasm.display().to_string() });
    Config::new()
        .upstream("orders", &up)
        .with(
            "apis",
            json!({ "orders": { "openapi": "orders.yaml", "upstream": "orders", "validate": false, "bearer": other } }),
        )
        .write(dir.path().join("other.toml"));
    let (ok, output) = check(dir.path(), "other.toml");
    assert!(!ok, "{output}");
    assert!(
        output.contains(
            "api `orders`: operation `listOrders` requires scopes, and its bearer entry's plugin"
        ),
        "{output}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operations_own_entries_run_after_the_inherited_ones_and_only_add() {
    let up = Upstream::start("notes").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let document = r#"openapi: 3.1.0
info: {title: Notes, version: "1"}
paths:
  /notes:
    get:
      operationId: listNotes
      x-gateway-plugins:
        - plugin: headers
          name: stamp-op
          config: {request: {set: {x-step: operation}}}
    post:
      operationId: addNote
"#;
    std::fs::write(dir.path().join("notes.yaml"), document).expect("write");
    let api_entry = json!({ "plugin": "headers", "name": "stamp-api", "config": { "request": { "set": { "x-step": "api", "x-api": "notes" } } } });
    let config = |file: &str| {
        Config::new().upstream("notes", &up).with(
            "apis",
            json!({ "notes": { "openapi": file, "upstream": "notes", "plugins": [api_entry.clone()] } }),
        )
    };
    let gw = start_in(dir.path(), &config("notes.yaml"));
    let listed = get(&gw.url("/notes")).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(
        listed.json()["headers"]["x-api"],
        "notes",
        "the API's entry runs"
    );
    assert_eq!(
        listed.json()["headers"]["x-step"],
        "operation",
        "then the operation's own"
    );
    let added = post_with_key(&gw.url("/notes"), None).await;
    assert_eq!(
        added.json()["headers"]["x-step"],
        "api",
        "only on its operation: {}",
        added.body
    );

    // A document adds built-ins only: it neither grants nor replaces the
    // config's entries.
    let refused = |name: &str, text: String| {
        std::fs::write(dir.path().join(format!("{name}.yaml")), text).expect("write");
        config(&format!("{name}.yaml")).write(dir.path().join(format!("{name}.toml")));
        let (ok, output) = check(dir.path(), &format!("{name}.toml"));
        assert!(!ok, "{output}");
        output
    };
    let granted = refused(
        "granted",
        document.replace("name: stamp-op", "grants: [kv]\n          name: stamp-op"),
    );
    assert!(
        granted.contains(
            "granted.yaml:9:11: x-gateway-plugins: `grants` cannot be set from the document"
        ),
        "{granted}"
    );
    let replacing = refused(
        "replacing",
        document.replace("name: stamp-op", "name: stamp-api"),
    );
    assert!(replacing.contains("replacing.yaml:8:11: x-gateway-plugins: entry `stamp-api` is named like an entry the config runs"), "{replacing}");
}
