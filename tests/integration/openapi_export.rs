//! `gateway openapi export` through the real binary: the document of one
//! API and of a whole config (an API and hand-written routes), read back
//! by the gateway itself as an API whose routes are the same ones; a 3.0
//! document's export served again with validation, accepting and refusing
//! what the original did; an unknown API and a broken config refused.

use crate::support::config::{Config, Plugin, Pool, Route};
use crate::support::{Gateway, Upstream, check, client, run_export, send};
use http::Request;
use http_body_util::Full;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::Path;

/// An API with a path parameter, an apiKey scheme required at the top
/// level, a public operation and one without an operationId.
const PETS_YAML: &str = r##"openapi: 3.1.0
info:
  title: Pets
  version: "2.0"
security:
  - petKey: []
components:
  securitySchemes:
    petKey:
      type: apiKey
      in: header
      name: X-Pet-Key
  schemas:
    Pet:
      type: object
      properties:
        name: {type: string}
paths:
  /pets:
    get:
      operationId: listPets
      security: []
    post:
      operationId: createPet
      requestBody:
        content:
          application/json:
            schema: {$ref: "#/components/schemas/Pet"}
  /pets/{petId}:
    parameters:
      - {name: petId, in: path, required: true, schema: {type: string}}
    get:
      operationId: getPet
  /pets/{petId}/photos:
    get:
      responses:
        "200": {description: the photos}
"##;

/// A 3.0 document: `nullable`, boolean `exclusiveMinimum`, a property named
/// `nullable`, and a parameter `$ref` into its own path item.
const ITEMS_30_YAML: &str = r##"openapi: 3.0.3
info: {title: Items, version: "1"}
components:
  schemas:
    Item:
      type: object
      required: [name]
      properties:
        name: {type: string, nullable: true}
        nullable: {type: boolean}
        count: {type: integer, minimum: 0, exclusiveMinimum: true}
        kind: {type: string, enum: [a, b], nullable: true}
      example: {name: null, nullable: true, count: 1}
paths:
  /items/{id}:
    get:
      operationId: getItem
      parameters:
        - {name: id, in: path, required: true, schema: {type: integer, minimum: 0, exclusiveMinimum: true}}
    put:
      operationId: putItem
      parameters:
        - $ref: "#/paths/~1items~1{id}/get/parameters/0"
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: "#/components/schemas/Item"}
"##;

const SECRET: &str = "an-hs256-secret-of-32-bytes-or-more!";

/// The config exported: the pets API under `/v1`, and hand-written routes
/// (public, an API key in a header, a JWT, a catch-all).
fn original(dir: &Path) -> Config {
    std::fs::write(dir.join("pets.yaml"), PETS_YAML).expect("write the document");
    Config::new()
        .upstream("pets", Pool::new(["127.0.0.1:9"]))
        .with(
            "apis",
            json!({ "pets": {
                "openapi": "pets.yaml",
                "base_path": "/v1",
                "upstream": "pets",
                "validate": false,
            }}),
        )
        .route(
            Route::new("health", "/health")
                .methods(&["GET"])
                .upstream("pets"),
        )
        .route(
            Route::new("user", "/users/{id}")
                .methods(&["GET", "DELETE"])
                .upstream("pets")
                .plugin(Plugin::new("key-auth").config(json!({ "headers": ["X-User-Key"] }))),
        )
        .route(
            Route::new("reports", "/reports/{year}/{month}")
                .methods(&["GET"])
                .upstream("pets")
                .plugin(Plugin::new("jwt").config(jwt_settings())),
        )
        .route(Route::new("files", "/files/{*rest}").upstream("pets"))
}

fn jwt_settings() -> Value {
    json!({ "algorithms": ["HS256"], "hmac_secret": SECRET })
}

/// The exported document as the one API `x` of a new config.
fn reimported() -> Config {
    Config::new()
        .upstream("pets", Pool::new(["127.0.0.1:9"]))
        .with(
            "apis",
            json!({ "x": {
                "openapi": "exported.json",
                "upstream": "pets",
                "bearer": { "plugin": "jwt", "config": jwt_settings() },
            }}),
        )
}

/// The route names `gateway check` lists.
fn route_names(output: &str) -> BTreeSet<String> {
    output
        .lines()
        .filter_map(|line| line.trim().strip_prefix("route `"))
        .filter_map(|rest| rest.split('`').next())
        .map(str::to_string)
        .collect()
}

/// Each operation of a document as (path, method, operationId, the
/// security schemes it requires, as defined).
fn operations(document: &Value) -> BTreeSet<(String, String, String, String)> {
    let mut all = BTreeSet::new();
    let paths = document["paths"].as_object().expect("paths");
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("a path item") {
            let Some(id) = op.get("operationId").and_then(Value::as_str) else {
                continue;
            };
            let schemes: Vec<Value> = op["security"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|r| r.as_object().expect("a requirement").keys())
                .map(|name| document["components"]["securitySchemes"][name].clone())
                .collect();
            let schemes = serde_json::to_string(&schemes).expect("schemes as JSON");
            all.insert((path.clone(), method.clone(), id.to_string(), schemes));
        }
    }
    all
}

fn export_json(dir: &Path, file: &str, api: Option<&str>) -> (Value, String) {
    let (ok, stdout, stderr) = run_export(dir, file, api);
    assert!(ok, "export failed:\n{stderr}");
    let document = serde_json::from_str(&stdout).expect("the export is JSON");
    (document, stderr)
}

#[test]
fn an_exported_config_imports_as_an_api_with_the_same_routes() {
    let dir = tempfile::tempdir().expect("tempdir");
    original(dir.path()).write(dir.path().join("gateway.toml"));
    let (ok, checked) = check(dir.path(), "gateway.toml");
    assert!(ok, "{checked}");

    let (exported, notes) = export_json(dir.path(), "gateway.toml", None);
    assert_eq!(exported["openapi"], "3.1.0");
    assert!(
        notes.contains("route `files`") && notes.contains("catch-all"),
        "the catch-all route is said to be left out: {notes}"
    );
    let paths = exported["paths"].as_object().expect("paths");
    assert!(!paths.keys().any(|p| p.contains("files")), "{exported:#}");
    let user = &exported["paths"]["/users/{id}"];
    assert_eq!(user["get"]["operationId"], "user");
    assert_eq!(user["delete"]["operationId"], "user-delete");
    assert_eq!(
        user["get"]["parameters"],
        json!([{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }])
    );
    let schemes = &exported["components"]["securitySchemes"];
    assert_eq!(
        schemes["apiKey-header-x-user-key"],
        json!({ "type": "apiKey", "in": "header", "name": "x-user-key" })
    );
    assert_eq!(
        user["get"]["security"],
        json!([{ "apiKey-header-x-user-key": [] }])
    );
    let reports = &exported["paths"]["/reports/{year}/{month}"]["get"];
    let bearer = reports["security"][0].as_object().expect("a requirement");
    let bearer = bearer.keys().next().expect("a scheme");
    assert_eq!(schemes[bearer]["bearerFormat"], "JWT");
    assert_eq!(exported["paths"]["/v1/pets"]["get"]["security"], json!([]));
    assert_eq!(
        exported["paths"]["/v1/pets"]["post"]["security"],
        json!([{ "petKey": [] }]),
        "the document's top-level security is on each of its operations"
    );
    assert_eq!(
        exported["paths"]["/v1/pets/{petId}/photos"]["get"]["operationId"],
        "GET /pets/{petId}/photos",
        "an operation without an id keeps its route's name"
    );
    assert!(
        exported["paths"]["/health"]["get"]
            .get("security")
            .is_none()
    );

    std::fs::write(dir.path().join("exported.json"), exported.to_string()).expect("write");
    reimported().write(dir.path().join("reimport.toml"));
    let (ok, rechecked) = check(dir.path(), "reimport.toml");
    assert!(ok, "the export imports:\n{rechecked}");
    let mut expected = route_names(&checked);
    expected.remove("files");
    expected.insert("user-delete".to_string());
    assert_eq!(route_names(&rechecked), expected, "{rechecked}");

    // The same operations (path, method, name, security) once more through
    // the import: the routes the reimport serves are the exported ones.
    let (again, _) = export_json(dir.path(), "reimport.toml", None);
    assert_eq!(operations(&again), operations(&exported));
}

#[test]
fn one_api_is_its_document_under_its_base_path_and_imports_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    original(dir.path()).write(dir.path().join("gateway.toml"));
    let (exported, _) = export_json(dir.path(), "gateway.toml", Some("pets"));
    let paths: Vec<&String> = exported["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .collect();
    assert_eq!(
        paths,
        ["/v1/pets", "/v1/pets/{petId}", "/v1/pets/{petId}/photos"]
    );
    assert_eq!(exported["security"], json!([{ "petKey": [] }]));
    assert_eq!(exported["info"]["title"], "Pets");
    assert_eq!(
        exported["components"]["schemas"]["Pet"]["properties"]["name"]["type"],
        "string"
    );
    assert_eq!(
        exported["paths"]["/v1/pets/{petId}"]["parameters"][0]["name"],
        "petId"
    );

    // Imported without a base_path: the API's own routes.
    std::fs::write(dir.path().join("pets.json"), exported.to_string()).expect("write");
    let config = Config::new()
        .upstream("pets", Pool::new(["127.0.0.1:9"]))
        .with(
            "apis",
            json!({ "y": { "openapi": "pets.json", "upstream": "pets" } }),
        );
    config.write(dir.path().join("reimport.toml"));
    let (ok, rechecked) = check(dir.path(), "reimport.toml");
    assert!(ok, "the export imports:\n{rechecked}");
    let names = [
        "GET /pets/{petId}/photos",
        "createPet",
        "getPet",
        "listPets",
    ];
    assert_eq!(route_names(&rechecked), names.map(String::from).into());
    let (again, _) = export_json(dir.path(), "reimport.toml", Some("y"));
    assert_eq!(operations(&again), operations(&exported));

    let (ok, stdout, stderr) = run_export(dir.path(), "gateway.toml", Some("petz"));
    assert!(!ok, "an unknown API is refused: {stdout}");
    assert!(
        stderr.contains("no api `petz`") && stderr.contains("`pets`"),
        "{stderr}"
    );
    assert!(stdout.is_empty(), "{stdout}");
}

/// The status of each of a few `PUT /v2/items/{id}` requests: one valid
/// (nulls where `nullable` allows them), then a count not above its
/// exclusive minimum, a null for a property named `nullable`, a value
/// outside a nullable `enum`, an id not above its exclusive minimum.
async fn item_statuses(gw: &Gateway) -> Vec<u16> {
    let requests = [
        (
            "1",
            json!({ "name": null, "nullable": false, "count": 1, "kind": null }),
        ),
        ("1", json!({ "name": "a", "count": 0 })),
        ("1", json!({ "name": "a", "nullable": null })),
        ("1", json!({ "name": "a", "kind": "c" })),
        ("0", json!({ "name": "a" })),
    ];
    let mut statuses = Vec::new();
    for (id, body) in requests {
        let request = Request::put(gw.url(&format!("/v2/items/{id}")))
            .header("content-type", "application/json")
            .body(Full::from(body.to_string()))
            .expect("request");
        statuses.push(send(&client(), request).await.status);
    }
    statuses
}

/// A 3.0 document exported (under its `base_path`) as 3.1, its schemas
/// rewritten and its `$ref` into its own path item following the prefix,
/// imports back with validation on, and its routes accept and refuse what
/// the original's do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_3_0_document_exports_as_3_1_schemas_that_validate_the_same() {
    let upstream = Upstream::start("items").await;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("items.yaml"), ITEMS_30_YAML).expect("write the document");
    let api = json!({ "openapi": "items.yaml", "base_path": "/v2", "upstream": "items" });
    let original = Config::new()
        .upstream("items", &upstream)
        .with("apis", json!({ "items": api }));
    original.write(dir.path().join("gateway.toml"));
    let (ok, checked) = check(dir.path(), "gateway.toml");
    assert!(ok, "{checked}");

    let (exported, notes) = export_json(dir.path(), "gateway.toml", Some("items"));
    assert!(notes.contains("3.0.3"), "{notes}");
    std::fs::write(dir.path().join("items.json"), exported.to_string()).expect("write");
    let reimport = Config::new().upstream("items", &upstream).with(
        "apis",
        json!({ "y": { "openapi": "items.json", "upstream": "items", "validate": true } }),
    );
    reimport.write(dir.path().join("reimport.toml"));
    let (ok, rechecked) = check(dir.path(), "reimport.toml");
    assert!(ok, "the export imports with validation:\n{rechecked}");
    let names = ["getItem", "putItem"].map(String::from).into();
    assert_eq!(route_names(&rechecked), names, "{rechecked}");
    assert!(rechecked.contains("openapi-validation"), "{rechecked}");

    let item = &exported["components"]["schemas"]["Item"];
    assert_eq!(
        item["properties"]["name"]["type"],
        json!(["string", "null"])
    );
    assert_eq!(item["properties"]["nullable"], json!({ "type": "boolean" }));
    assert_eq!(item["properties"]["kind"]["enum"], json!(["a", "b", null]));
    assert_eq!(item["properties"]["count"]["exclusiveMinimum"], 0);
    assert_eq!(item["example"]["nullable"], true, "examples are data");
    let put = &exported["paths"]["/v2/items/{id}"]["put"];
    assert_eq!(
        put["parameters"][0]["$ref"],
        "#/paths/~1v2~1items~1{id}/get/parameters/0"
    );

    let expected = [200, 400, 400, 400, 400];
    let gw = Gateway::start_at(&dir.path().join("reimport.toml"));
    assert_eq!(item_statuses(&gw).await, expected, "the export");
    drop(gw);
    // The original, validated as 3.0 by the request-validator: the same
    // answers.
    let gw = Gateway::start_at(&dir.path().join("gateway.toml"));
    assert_eq!(item_statuses(&gw).await, expected, "the original");
}

#[test]
fn a_broken_config_is_refused_with_its_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = original(dir.path()).route(Route::new("lost", "/lost").upstream("nowhere"));
    config.write(dir.path().join("gateway.toml"));
    let (ok, stdout, stderr) = run_export(dir.path(), "gateway.toml", None);
    assert!(!ok, "a broken config is not exported: {stdout}");
    assert!(stderr.contains("nowhere"), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
}
