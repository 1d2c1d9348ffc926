//! `gateway openapi export`: an OpenAPI 3.1.0 document of what a config
//! serves, which the gateway can import again (`[apis.NAME] openapi = ...`)
//! to get the same routes.
//!
//! - One API (`--api NAME`): its document as the gateway imported it, every
//!   path prefixed with the API's `base_path`, `openapi` set to `3.1.0`,
//!   the top-level `servers` (the upstream's addresses, not the gateway's)
//!   left out, and an `operationId` given to each operation without one (the
//!   route name the gateway gave it, `METHOD path`, so a re-import keeps it).
//! - The whole config: every API's operations as above, merged (each
//!   document's top-level `security` moved onto its operations; a component
//!   named like another one with different content renamed
//!   `API.name`, its references with it), then every hand-written route:
//!   one operation per method (`operationId` the route's name, then
//!   `NAME-method` for its other methods), its path parameters, and the
//!   security its effective pipeline enforces (`key-auth`: an `apiKey`
//!   scheme per header or query name; `jwt`: `http` `bearer`).
//!
//! What cannot be said in OpenAPI (a catch-all `{*rest}`, a method OpenAPI
//! has no operation for) is left out, each with a note for stderr. The
//! config is expected to have been checked as a whole first (`gateway
//! check`): this module reads its types, never the runtime.

use super::tree::escape;
use super::{METHODS, read};
use crate::config::{ApiConfig, Config, PluginEntryConfig, RouteConfig};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

/// The OpenAPI version of every export.
pub const OPENAPI_VERSION: &str = "3.1.0";

/// The methods a hand-written route without `methods` is exported with
/// (it answers every method; these are the ones clients use: `trace` is
/// left out, as proxies and servers commonly refuse it).
pub const DEFAULT_METHODS: [&str; 7] = ["get", "put", "post", "delete", "patch", "head", "options"];

/// An exported document and what it had to leave out or change, one line
/// each, for stderr.
#[derive(Debug)]
pub struct Exported {
    /// The OpenAPI document.
    pub document: Value,
    /// What the export could not say as the config does.
    pub notes: Vec<String>,
}

/// The document of `api` (every API and hand-written route when `None`)
/// of `config`, whose files are relative to `base`; `title` names a whole
/// config's document. An unknown API, or a document that cannot be read,
/// is an error.
pub fn export(
    base: &Path,
    config: &Config,
    api: Option<&str>,
    title: &str,
) -> Result<Exported, String> {
    let mut notes = Vec::new();
    let document = match api {
        Some(name) => {
            let Some(api) = config.apis.get(name) else {
                return Err(unknown_api(config, name));
            };
            api_document(base, name, api.get_ref(), &mut notes)?
        }
        None => whole(base, config, title, &mut notes)?,
    };
    Ok(Exported { document, notes })
}

/// The error for `--api NAME` naming no API of the config.
fn unknown_api(config: &Config, name: &str) -> String {
    let known: Vec<String> = config.apis.keys().map(|k| format!("`{k}`")).collect();
    match known.is_empty() {
        true => format!("no api `{name}`: the config defines no [apis.NAME]"),
        false => format!(
            "no api `{name}` in the config; its APIs are {}",
            known.join(", ")
        ),
    }
}

/// The document of one API, as its routes are served.
fn api_document(
    base: &Path,
    name: &str,
    api: &ApiConfig,
    notes: &mut Vec<String>,
) -> Result<Value, String> {
    let (shown, tree) = read(base, api.openapi.get_ref()).map_err(|e| e.to_string())?;
    let Value::Object(mut root) = tree.root else {
        return Err(format!("{shown}: not an OpenAPI document (not a mapping)"));
    };
    let version = root.get("openapi").and_then(Value::as_str).unwrap_or("");
    if version.starts_with("3.0.") {
        notes.push(format!("api `{name}`: {shown} is OpenAPI {version}; its schemas are copied as written (3.0's `nullable` and boolean `exclusiveMinimum` are not rewritten for 3.1)"));
    }
    root.insert("openapi".into(), Value::from(OPENAPI_VERSION));
    if root.remove("servers").is_some() {
        notes.push(format!("api `{name}`: the document's `servers` are left out: clients reach its operations through the gateway"));
    }
    let base_path = api
        .base_path
        .as_ref()
        .map_or("", |b| b.get_ref().trim_end_matches('/'));
    if let Some(Value::Object(paths)) = root.remove("paths") {
        let prefixed = paths
            .into_iter()
            .map(|(path, mut item)| {
                if path.starts_with('/') {
                    name_operations(&path, &mut item);
                    (format!("{base_path}{path}"), item)
                } else {
                    (path, item)
                }
            })
            .collect();
        root.insert("paths".into(), Value::Object(prefixed));
    }
    Ok(Value::Object(root))
}

/// Gives each operation of a path item without an `operationId` the name
/// its route has (`METHOD path`, the path as the document writes it).
fn name_operations(path: &str, item: &mut Value) {
    for method in METHODS {
        if let Some(Value::Object(op)) = item.get_mut(method) {
            op.entry("operationId")
                .or_insert_with(|| Value::from(format!("{} {path}", method.to_ascii_uppercase())));
        }
    }
}

/// The document of the whole config.
fn whole(
    base: &Path,
    config: &Config,
    title: &str,
    notes: &mut Vec<String>,
) -> Result<Value, String> {
    let mut merged = Merged {
        ids: config
            .routes
            .iter()
            .map(|r| r.get_ref().name.get_ref().clone())
            .collect(),
        ..Merged::default()
    };
    for (name, api) in &config.apis {
        let document = api_document(base, name, api.get_ref(), notes)?;
        merged.add_document(name, document, notes);
    }
    for route in &config.routes {
        merged.add_route(config, route.get_ref(), notes);
    }
    let mut root = Map::new();
    root.insert("openapi".into(), Value::from(OPENAPI_VERSION));
    root.insert("info".into(), json!({ "title": title, "version": "1" }));
    if !merged.tags.is_empty() {
        root.insert("tags".into(), Value::Array(merged.tags));
    }
    root.insert("paths".into(), Value::Object(merged.paths));
    let components: Map<String, Value> = merged
        .components
        .into_iter()
        .filter(|(_, items)| !items.is_empty())
        .map(|(kind, items)| (kind, Value::Object(items)))
        .collect();
    if !components.is_empty() {
        root.insert("components".into(), Value::Object(components));
    }
    Ok(Value::Object(root))
}

/// The whole config's document as it is put together.
#[derive(Default)]
struct Merged {
    paths: Map<String, Value>,
    /// Components by kind (`schemas`, `securitySchemes`, ...), then name.
    components: BTreeMap<String, Map<String, Value>>,
    tags: Vec<Value>,
    /// Operation ids taken so far, with every hand-written route's name.
    ids: BTreeSet<String>,
}

impl Merged {
    /// An API's document: its components (renamed where they collide),
    /// its tags, and its paths with its top-level security on each
    /// operation.
    fn add_document(&mut self, api: &str, mut document: Value, notes: &mut Vec<String>) {
        let security = document.get("security").cloned();
        let Some(root) = document.as_object_mut() else {
            return;
        };
        let mut components = match root.remove("components") {
            Some(Value::Object(components)) => components,
            _ => Map::new(),
        };
        let mut paths = match root.remove("paths") {
            Some(Value::Object(paths)) => paths,
            _ => Map::new(),
        };
        for item in paths.values_mut() {
            for_each_operation(item, |op| {
                if let Some(security) = &security {
                    op.entry("security").or_insert_with(|| security.clone());
                }
                if let Some(id) = op.get("operationId").and_then(Value::as_str) {
                    self.ids.insert(id.to_string());
                }
            });
        }
        let renames = self.component_names(api, &components, notes);
        if !renames.is_empty() {
            components.values_mut().for_each(|v| {
                rename(v, &renames);
            });
            paths.values_mut().for_each(|v| {
                rename(v, &renames);
            });
        }
        self.put_components(components, &renames);
        if let Some(Value::Array(tags)) = root.remove("tags") {
            for tag in tags {
                let name = tag.get("name");
                if !self.tags.iter().any(|t| t.get("name") == name) {
                    self.tags.push(tag);
                }
            }
        }
        for (path, item) in paths {
            self.add_path(path, item);
        }
    }
}

/// New names of components, by kind and old name.
type Renames = HashMap<(String, String), String>;

impl Merged {
    /// The new name of each component of an API's document that collides
    /// with one already exported: one of the same name with other content,
    /// or of the same content but referring to a renamed one.
    fn component_names(
        &self,
        api: &str,
        components: &Map<String, Value>,
        notes: &mut Vec<String>,
    ) -> Renames {
        let mut renames = Renames::new();
        let mut shared = Vec::new();
        for (kind, items) in components {
            let (Some(items), Some(taken)) = (items.as_object(), self.components.get(kind)) else {
                continue;
            };
            for (name, value) in items {
                match taken.get(name) {
                    None => {}
                    Some(earlier) if earlier == value => shared.push((kind, name, value)),
                    Some(_) => {
                        let new = free_name(taken, items, &renames, api, name);
                        renames.insert((kind.clone(), name.clone()), new);
                    }
                }
            }
        }
        // A shared component referring to a renamed one is renamed too,
        // until none is left to rename.
        loop {
            let before = renames.len();
            shared.retain(|(kind, name, value)| {
                let mut copy = (*value).clone();
                if !rename(&mut copy, &renames) {
                    return true;
                }
                let taken = self.components.get(*kind).cloned().unwrap_or_default();
                let items = components.get(*kind).and_then(Value::as_object);
                let items = items.cloned().unwrap_or_default();
                let new = free_name(&taken, &items, &renames, api, name);
                renames.insert((kind.to_string(), name.to_string()), new);
                false
            });
            if renames.len() == before {
                break;
            }
        }
        for ((kind, name), new) in &renames {
            notes.push(format!("api `{api}`: components.{kind}.{name} differs from the one of that name exported before it: exported as `{new}`"));
        }
        renames
    }

    /// Adds an API's components, under their new names where renamed (one
    /// equal to one already there is shared).
    fn put_components(&mut self, components: Map<String, Value>, renames: &Renames) {
        for (kind, items) in components {
            let Value::Object(items) = items else {
                continue;
            };
            let taken = self.components.entry(kind.clone()).or_default();
            for (name, value) in items {
                let name = renames
                    .get(&(kind.clone(), name.clone()))
                    .cloned()
                    .unwrap_or(name);
                taken.entry(name).or_insert(value);
            }
        }
    }

    /// Adds a path item: a path already there gets its operations (the
    /// first item's other keys kept; the new item's path-level parameters,
    /// when they differ, moved onto its operations).
    fn add_path(&mut self, path: String, mut item: Value) {
        let Some(Value::Object(existing)) = self.paths.get_mut(&path) else {
            self.paths.insert(path, item);
            return;
        };
        let params = item.get("parameters").cloned();
        if params.is_some() && params.as_ref() != existing.get("parameters") {
            let params = params.unwrap_or_default();
            for_each_operation(&mut item, |op| push_parameters(op, &params));
            if let Some(item) = item.as_object_mut() {
                item.remove("parameters");
            }
        }
        let Value::Object(item) = item else {
            return;
        };
        for (key, value) in item {
            existing.entry(key).or_insert(value);
        }
    }

    /// A hand-written route: one operation per method, or a note saying why
    /// it is left out.
    fn add_route(&mut self, config: &Config, route: &RouteConfig, notes: &mut Vec<String>) {
        let (name, path) = (route.name.get_ref(), route.path.get_ref());
        if path.contains("{*") || path.contains("{{") || path.contains("}}") {
            notes.push(format!("route `{name}`: left out: its path `{path}` has a catch-all or a literal brace, which OpenAPI cannot describe"));
            return;
        }
        let methods: Vec<String> = match &route.methods {
            Some(methods) => methods
                .get_ref()
                .iter()
                .map(|m| m.to_ascii_lowercase())
                .collect(),
            None => DEFAULT_METHODS.iter().map(|m| m.to_string()).collect(),
        };
        let parameters: Vec<Value> = path_parameters(path)
            .into_iter()
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        let security = self.route_security(config, route);
        let mut item = Map::new();
        for method in methods {
            if item.contains_key(&method) {
                continue;
            }
            if !METHODS.contains(&method.as_str()) {
                notes.push(format!(
                    "route `{name}`: method `{}` left out: OpenAPI has no operations for it",
                    method.to_ascii_uppercase()
                ));
                continue;
            }
            let id = match item.is_empty() {
                true => name.clone(),
                false => self.fresh_id(&format!("{name}-{method}")),
            };
            let mut op = Map::new();
            op.insert("operationId".into(), Value::from(id));
            if !parameters.is_empty() {
                op.insert("parameters".into(), Value::Array(parameters.clone()));
            }
            if let Some(security) = &security {
                op.insert("security".into(), security.clone());
            }
            op.insert(
                "responses".into(),
                json!({ "default": { "description": "the upstream's answer" } }),
            );
            item.insert(method, Value::Object(op));
        }
        if !item.is_empty() {
            self.add_path(path.clone(), Value::Object(item));
        }
    }

    /// `wanted`, or `wanted-2`, `-3`... when an operation has it already.
    fn fresh_id(&mut self, wanted: &str) -> String {
        let mut id = wanted.to_string();
        let mut n = 2;
        while self.ids.contains(&id) {
            id = format!("{wanted}-{n}");
            n += 1;
        }
        self.ids.insert(id.clone());
        id
    }

    /// The security requirements of a hand-written route: every `key-auth`
    /// and `jwt` entry of its effective pipeline is required (a `key-auth`
    /// entry reading several headers or parameters is satisfied by any of
    /// them: alternatives); `None` when it has neither.
    fn route_security(&mut self, config: &Config, route: &RouteConfig) -> Option<Value> {
        let mut requirements = vec![Map::new()];
        let mut guarded = false;
        for entry in effective_entries(config, route) {
            let schemes: Vec<(String, Value)> = match entry.plugin.get_ref().as_str() {
                "key-auth" => key_schemes(entry),
                "jwt" => vec![(
                    "bearer-jwt".to_string(),
                    json!({ "type": "http", "scheme": "bearer", "bearerFormat": "JWT" }),
                )],
                _ => continue,
            };
            guarded = true;
            let names: Vec<String> = schemes
                .into_iter()
                .map(|(name, scheme)| self.scheme(name, scheme))
                .collect();
            requirements = requirements
                .iter()
                .flat_map(|r| {
                    names.iter().map(move |name| {
                        let mut r = r.clone();
                        r.insert(name.clone(), json!([]));
                        r
                    })
                })
                .collect();
        }
        guarded.then(|| Value::Array(requirements.into_iter().map(Value::Object).collect()))
    }

    /// Adds a security scheme of a hand-written route: under `name`, or
    /// `routes.name` when an API's scheme of that name is another one.
    fn scheme(&mut self, name: String, scheme: Value) -> String {
        let taken = self.components.entry("securitySchemes".into()).or_default();
        let name = match taken.get(&name) {
            Some(earlier) if *earlier != scheme => {
                let mut new = format!("routes.{name}");
                let mut n = 2;
                while taken.get(&new).is_some_and(|e| *e != scheme) {
                    new = format!("routes.{name}.{n}");
                    n += 1;
                }
                new
            }
            _ => name,
        };
        taken.entry(name.clone()).or_insert(scheme);
        name
    }
}

/// A name for component `name` of API `api` that neither the export nor
/// the API's document uses: `api.name`, else `api.name.2`, ...
fn free_name(
    taken: &Map<String, Value>,
    own: &Map<String, Value>,
    renames: &Renames,
    api: &str,
    name: &str,
) -> String {
    let used =
        |n: &str| taken.contains_key(n) || own.contains_key(n) || renames.values().any(|r| r == n);
    let mut new = format!("{api}.{name}");
    let mut n = 2;
    while used(&new) {
        new = format!("{api}.{name}.{n}");
        n += 1;
    }
    new
}

/// Renames, in `value`, the references to renamed components: `$ref`s,
/// discriminator `mapping` values and the scheme names of `security`
/// requirements. Whether it changed anything.
fn rename(value: &mut Value, renames: &Renames) -> bool {
    let mut changed = false;
    match value {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                match (key.as_str(), &mut *value) {
                    ("$ref", Value::String(pointer)) => changed |= rename_pointer(pointer, renames),
                    ("mapping", Value::Object(mapping)) => {
                        for target in mapping.values_mut() {
                            if let Value::String(pointer) = target {
                                changed |= rename_pointer(pointer, renames);
                            }
                        }
                    }
                    ("security", Value::Array(requirements)) => {
                        changed |= rename_schemes(requirements, renames);
                    }
                    _ => {}
                }
                changed |= rename(value, renames);
            }
        }
        Value::Array(items) => {
            for item in items {
                changed |= rename(item, renames);
            }
        }
        _ => {}
    }
    changed
}

/// `#/components/KIND/NAME[/...]` with NAME's new name, when renamed.
fn rename_pointer(pointer: &mut String, renames: &Renames) -> bool {
    for ((kind, name), new) in renames {
        let old = format!("#/components/{kind}/{}", escape(name));
        let rest = match pointer.strip_prefix(&old) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => rest.to_string(),
            _ => continue,
        };
        *pointer = format!("#/components/{kind}/{}{rest}", escape(new));
        return true;
    }
    false
}

/// The renamed security schemes in a list of security requirements.
fn rename_schemes(requirements: &mut [Value], renames: &Renames) -> bool {
    let mut changed = false;
    for requirement in requirements {
        let Value::Object(schemes) = requirement else {
            continue;
        };
        let renamed: Map<String, Value> = std::mem::take(schemes)
            .into_iter()
            .map(|(name, scopes)| {
                match renames.get(&("securitySchemes".to_string(), name.clone())) {
                    Some(new) => {
                        changed = true;
                        (new.clone(), scopes)
                    }
                    None => (name, scopes),
                }
            })
            .collect();
        *schemes = renamed;
    }
    changed
}

/// Calls `f` with each operation of a path item.
fn for_each_operation(item: &mut Value, mut f: impl FnMut(&mut Map<String, Value>)) {
    for method in METHODS {
        if let Some(Value::Object(op)) = item.get_mut(method) {
            f(op);
        }
    }
}

/// Puts path-level `parameters` on an operation, but for those it
/// overrides (same `name` and `in`).
fn push_parameters(op: &mut Map<String, Value>, params: &Value) {
    let Some(params) = params.as_array() else {
        return;
    };
    let own = match op.remove("parameters") {
        Some(Value::Array(own)) => own,
        _ => Vec::new(),
    };
    let key = |p: &Value| (p.get("name").cloned(), p.get("in").cloned());
    let mut all: Vec<Value> = params
        .iter()
        .filter(|p| !own.iter().any(|o| key(o) == key(p)))
        .cloned()
        .collect();
    all.extend(own);
    op.insert("parameters".into(), Value::Array(all));
}

/// The parameter names of a route's path template, in order.
fn path_parameters(path: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        let name = &rest[open + 1..open + close];
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
        rest = &rest[open + close + 1..];
    }
    names
}

/// A route's pipeline entries that run, as `runtime` builds them: the
/// `[[plugins]]` entries, each replaced or switched off by the route's
/// entry of its name, then the route's other entries.
fn effective_entries<'c>(config: &'c Config, route: &'c RouteConfig) -> Vec<&'c PluginEntryConfig> {
    let mut slots: Vec<Option<&PluginEntryConfig>> = config
        .plugins
        .iter()
        .map(|p| Some(p.get_ref()).filter(|e| e.is_enabled()))
        .collect();
    let mut own = Vec::new();
    for entry in route.plugins.iter().map(|p| p.get_ref()) {
        let inherited = config
            .plugins
            .iter()
            .position(|p| p.get_ref().name() == entry.name());
        match inherited {
            Some(index) => slots[index] = Some(entry).filter(|e| e.is_enabled()),
            None if entry.is_enabled() => own.push(entry),
            None => {}
        }
    }
    slots.into_iter().flatten().chain(own).collect()
}

/// The `apiKey` schemes of a `key-auth` entry: one per header (default
/// `x-api-key`) and query parameter it reads the key from.
fn key_schemes(entry: &PluginEntryConfig) -> Vec<(String, Value)> {
    let config = entry.config.as_ref().map(|c| c.get_ref());
    let names = |key: &str| -> Option<Vec<String>> {
        let list = config?.get(key)?.as_array()?;
        Some(
            list.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
        )
    };
    let headers = names("headers").unwrap_or_else(|| vec!["x-api-key".to_string()]);
    let query = names("query").unwrap_or_default();
    let header = headers.into_iter().map(|h| {
        let h = h.to_ascii_lowercase();
        let scheme = json!({ "type": "apiKey", "in": "header", "name": h });
        (format!("apiKey-header-{}", component_safe(&h)), scheme)
    });
    let query = query.into_iter().map(|q| {
        let scheme = json!({ "type": "apiKey", "in": "query", "name": q });
        (format!("apiKey-query-{}", component_safe(&q)), scheme)
    });
    header.chain(query).collect()
}

/// `text` with every character a component name cannot have
/// (`^[a-zA-Z0-9.\-_]+$`) as `_`.
fn component_safe(text: &str) -> String {
    text.chars()
        .map(
            |c| match c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                true => c,
                false => '_',
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{DEFAULT_METHODS, Exported, export, path_parameters};
    use crate::config::{Config, Source};
    use serde_json::{Value, json};
    use std::path::Path;

    fn config(dir: &Path, toml: &str) -> Config {
        let path = dir.join("gateway.toml");
        let parsed = Source::from_text(&path, toml.to_string()).parse();
        parsed.unwrap_or_else(|e| panic!("the config parses: {e}"))
    }

    fn whole(dir: &Path, toml: &str) -> Exported {
        let config = config(dir, toml);
        export(dir, &config, None, "t").unwrap_or_else(|e| panic!("exports: {e}"))
    }

    fn document(pet: Value, scheme_header: &str, pointer: &str) -> String {
        json!({
            "openapi": "3.1.0",
            "info": { "title": "t", "version": "1" },
            "components": {
                "schemas": {
                    "Pet": pet,
                    "Error": { "type": "string" },
                    "Owner": { "properties": { "pet": { "$ref": "#/components/schemas/Pet" } } },
                },
                "securitySchemes": { "key": { "type": "apiKey", "in": "header", "name": scheme_header } },
            },
            "security": [{ "key": [] }],
            "paths": { pointer: { "post": {
                "operationId": format!("create{}", &pointer[1..]),
                "requestBody": { "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Pet" } } } },
            } } },
        })
        .to_string()
    }

    #[test]
    fn components_of_another_content_are_renamed_with_their_references() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = document(json!({ "type": "object" }), "x-a", "/a");
        let b = document(json!({ "type": "string" }), "x-b", "/b");
        std::fs::write(dir.path().join("a.json"), a).expect("write a");
        std::fs::write(dir.path().join("b.json"), b).expect("write b");
        let toml = "[apis.a]\nopenapi = \"a.json\"\n[apis.b]\nopenapi = \"b.json\"\n";
        let Exported { document, notes } = whole(dir.path(), toml);
        let schemas = &document["components"]["schemas"];
        assert_eq!(schemas["Pet"], json!({ "type": "object" }));
        assert_eq!(schemas["b.Pet"], json!({ "type": "string" }));
        assert_eq!(
            schemas["Error"],
            json!({ "type": "string" }),
            "equal ones are shared"
        );
        assert!(schemas.get("b.Error").is_none(), "{schemas:#}");
        // Equal, but referring to a renamed one: renamed too.
        assert_eq!(
            schemas["b.Owner"]["properties"]["pet"]["$ref"],
            "#/components/schemas/b.Pet"
        );
        let b_op = &document["paths"]["/b"]["post"];
        let body = &b_op["requestBody"]["content"]["application/json"]["schema"]["$ref"];
        assert_eq!(body, "#/components/schemas/b.Pet");
        assert_eq!(b_op["security"], json!([{ "b.key": [] }]));
        assert_eq!(
            document["paths"]["/a"]["post"]["security"],
            json!([{ "key": [] }])
        );
        assert_eq!(
            document["components"]["securitySchemes"]["b.key"]["name"],
            "x-b"
        );
        assert_eq!(notes.len(), 3, "{notes:?}");
        assert!(
            notes.iter().any(|n| n.contains("components.schemas.Pet")),
            "{notes:?}"
        );
    }

    #[test]
    fn a_routes_security_is_its_effective_pipelines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let toml = r#"
[[plugins]]
plugin = "key-auth"
config = { headers = [], query = ["api_key"] }

[[routes]]
name = "open"
path = "/open"
methods = ["GET"]
[[routes.plugins]]
plugin = "key-auth"
enabled = false

[[routes]]
name = "replaced"
path = "/replaced"
methods = ["GET"]
[[routes.plugins]]
plugin = "key-auth"
config = { headers = ["x-one", "x-two"] }

[[routes]]
name = "both"
path = "/both"
methods = ["GET"]
[[routes.plugins]]
plugin = "jwt"
config = { algorithms = ["HS256"] }
"#;
        let Exported { document, .. } = whole(dir.path(), toml);
        let security = |path: &str| document["paths"][path]["get"].get("security").cloned();
        assert_eq!(security("/open"), None);
        assert_eq!(
            security("/replaced"),
            Some(json!([{ "apiKey-header-x-one": [] }, { "apiKey-header-x-two": [] }]))
        );
        assert_eq!(
            security("/both"),
            Some(json!([{ "apiKey-query-api_key": [], "bearer-jwt": [] }]))
        );
        let schemes = &document["components"]["securitySchemes"];
        assert_eq!(
            schemes["apiKey-query-api_key"],
            json!({ "type": "apiKey", "in": "query", "name": "api_key" })
        );
        assert_eq!(
            schemes["bearer-jwt"],
            json!({ "type": "http", "scheme": "bearer", "bearerFormat": "JWT" })
        );
    }

    #[test]
    fn a_route_has_one_operation_per_method_each_with_its_own_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let toml = r#"
[[routes]]
name = "any"
path = "/any/{id}"

[[routes]]
name = "any-put"
path = "/other"
methods = ["GET", "PURGE"]

[[routes]]
name = "rest"
path = "/static/{*rest}"
"#;
        let Exported { document, notes } = whole(dir.path(), toml);
        let item = document["paths"]["/any/{id}"]
            .as_object()
            .expect("the path");
        let mut methods: Vec<&String> = item.keys().collect();
        methods.sort();
        let mut expected = DEFAULT_METHODS.to_vec();
        expected.sort();
        assert_eq!(methods, expected);
        assert_eq!(item["get"]["operationId"], "any");
        assert_eq!(item["post"]["operationId"], "any-post");
        assert_eq!(
            item["put"]["operationId"], "any-put-2",
            "the name of another route"
        );
        assert_eq!(item["get"]["parameters"][0]["name"], "id");
        let other = document["paths"]["/other"].as_object().expect("the path");
        assert_eq!(other.keys().collect::<Vec<_>>(), ["get"]);
        assert!(notes.iter().any(|n| n.contains("`PURGE`")), "{notes:?}");
        assert!(
            notes.iter().any(|n| n.contains("route `rest`")),
            "{notes:?}"
        );
        assert!(document["paths"].get("/static/{*rest}").is_none());
    }

    #[test]
    fn an_unknown_api_is_an_error_naming_the_known_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.json"), document(json!({}), "x", "/a")).expect("write");
        let config = config(dir.path(), "[apis.shop]\nopenapi = \"a.json\"\n");
        let err = export(dir.path(), &config, Some("shp"), "t").err();
        assert_eq!(
            err.as_deref(),
            Some("no api `shp` in the config; its APIs are `shop`")
        );
    }

    #[test]
    fn path_parameters_are_read_from_the_template() {
        assert_eq!(path_parameters("/a/{x}/b/{y}.json"), ["x", "y"]);
        assert!(path_parameters("/plain").is_empty());
    }
}
