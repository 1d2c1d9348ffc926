//! `[[plugins]]` as routes inherit them: one entry built once and shared,
//! the inherited entries first, a replacement in the inherited place, an
//! entry switched off by name.

use super::build;
use crate::pipeline::Level;
use std::sync::Arc;

const CONFIG: &str = r#"
[[plugins]]
plugin = "headers"
name = "stamp"
config = { request = { set = { "x-stamp" = "global" } } }

[[plugins]]
plugin = "headers"
name = "order"
config = { request = { add = { "x-order" = "global" } } }

[[plugins]]
plugin = "respond"
name = "off-by-default"
enabled = false

[upstreams.u]
targets = ["127.0.0.1:9"]

[[routes]]
name = "plain"
path = "/plain"
upstream = "u"

[[routes]]
name = "replacing"
path = "/replacing"
upstream = "u"

[[routes.plugins]]
plugin = "headers"
config = { request = { add = { "x-order" = "route" } } }

[[routes.plugins]]
plugin = "headers"
name = "stamp"
config = { request = { set = { "x-stamp" = "route" } } }

[[routes.plugins]]
plugin = "respond"
name = "off-by-default"

[[routes]]
name = "switching"
path = "/switching"
upstream = "u"

[[routes.plugins]]
plugin = "headers"
name = "stamp"
enabled = false
"#;

/// `(plugin, level)` of each entry of route `id`.
fn entries(runtime: &crate::runtime::Runtime, id: usize) -> Vec<(String, Level)> {
    runtime.routes[id]
        .pipeline
        .entries()
        .iter()
        .map(|e| (e.reference.clone(), e.level))
        .collect()
}

#[tokio::test]
async fn inherited_entries_come_first_and_replacements_keep_their_place() {
    let runtime = build(CONFIG, None).await.unwrap_or_else(|e| panic!("{e}"));
    let headers = |level| ("headers".to_string(), level);
    assert_eq!(
        entries(&runtime, 0),
        [headers(Level::Global), headers(Level::Global)]
    );
    assert_eq!(
        entries(&runtime, 1),
        [
            headers(Level::Replacement),
            headers(Level::Global),
            // An entry off everywhere, on for this route by its name.
            ("respond".to_string(), Level::Replacement),
            headers(Level::Route),
        ]
    );
    assert_eq!(entries(&runtime, 2), [headers(Level::Global)]);
    assert_eq!(runtime.routes[2].switched_off, ["stamp"]);
    assert!(runtime.routes[0].switched_off.is_empty());
}

#[tokio::test]
async fn an_inherited_entry_is_built_once_and_shared() {
    let runtime = build(CONFIG, None).await.unwrap_or_else(|e| panic!("{e}"));
    let order = |route: usize, at: usize| runtime.routes[route].pipeline.entries()[at].clone();
    assert!(Arc::ptr_eq(&order(0, 1), &order(1, 1)));
    assert!(Arc::ptr_eq(&order(0, 1), &order(2, 0)));
    assert!(
        !Arc::ptr_eq(&order(0, 0), &order(1, 0)),
        "a replacement is the route's own"
    );
}

#[test]
fn an_inherited_entrys_files_are_watched_for_reloads() {
    let text = "[[plugins]]\nplugin = \"global.wasm\"\nconfig_files = { keys = \"keys.json\" }\n";
    let source = crate::config::Source::from_text(std::path::Path::new("dir/t.toml"), text.into());
    let config = source.parse().unwrap_or_else(|e| panic!("{e}"));
    let watched = crate::reload::inputs(&source, &config);
    for file in ["dir/global.wasm", "dir/keys.json"] {
        assert!(
            watched.contains(&std::path::PathBuf::from(file)),
            "{file} in {watched:?}"
        );
    }
}

#[tokio::test]
async fn an_apis_entries_sit_between_the_global_ones_and_the_operations() {
    let dir = std::env::temp_dir().join(format!("gateway-harness-api-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let document = dir.join("api.yaml");
    std::fs::write(
        &document,
        "openapi: 3.1.0\ninfo: {title: t, version: '1'}\npaths:\n  /a:\n    get: {operationId: a}\n  /b:\n    get: {operationId: b}\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let text = format!(
        r#"
[[plugins]]
plugin = "key-auth"

[[plugins]]
plugin = "headers"
name = "stamp"
config = {{ request = {{ set = {{ "x-stamp" = "global" }} }} }}

[upstreams.u]
targets = ["127.0.0.1:9"]

[apis.open]
openapi = "{}"
upstream = "u"
validate = false

[[apis.open.plugins]]
plugin = "key-auth"
enabled = false

[[apis.open.plugins]]
plugin = "cors"
config = {{ origins = ["*"] }}
"#,
        document.display()
    );
    let runtime = build(&text, None).await.unwrap_or_else(|e| panic!("{e}"));
    let _ = std::fs::remove_dir_all(&dir);
    let names: Vec<&str> = runtime.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(
        entries(&runtime, 0),
        [
            // The document has no security: the operation is public, and
            // forged consumer headers are removed first.
            ("headers".to_string(), Level::Route),
            ("headers".to_string(), Level::Global),
            ("cors".to_string(), Level::Api)
        ],
        "the API switched key-auth off and added cors after the global entries"
    );
    let cors = |route: usize| runtime.routes[route].pipeline.entries()[2].clone();
    assert!(
        Arc::ptr_eq(&cors(0), &cors(1)),
        "one cors entry for the API's routes"
    );
}
