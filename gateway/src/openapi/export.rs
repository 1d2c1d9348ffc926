//! `gateway openapi export`: an OpenAPI 3.1.0 document of what a config
//! serves, which the gateway can import again (`[apis.NAME] openapi = ...`)
//! to get the same routes.
//!
//! - One API (`--api NAME`): its document as the gateway imported it, every
//!   path prefixed with the API's `base_path` (and every `$ref` or
//!   `operationRef` into a path item with it), `openapi` set to `3.1.0` (a
//!   3.0 document's schemas rewritten as 3.1 says them: `nullable`, boolean
//!   `exclusiveMinimum`/`exclusiveMaximum`), the top-level `servers` (the
//!   upstream's addresses, not the gateway's) left out, and an
//!   `operationId` given to each operation without one (the route name the
//!   gateway gave it, `METHOD path`, so a re-import keeps it).
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
        let version = version.to_string();
        let before = root.clone();
        schemas_to_3_1(&mut root);
        if root != before {
            notes.push(format!("api `{name}`: {shown} is OpenAPI {version}; its schemas are rewritten as 3.1 says them (`nullable: true` as a \"null\" type, boolean `exclusiveMinimum`/`exclusiveMaximum` as numbers)"));
        }
    }
    root.insert("openapi".into(), Value::from(OPENAPI_VERSION));
    if root.remove("servers").is_some() {
        notes.push(format!("api `{name}`: the document's `servers` are left out: clients reach its operations through the gateway"));
    }
    let base_path = api
        .base_path
        .as_ref()
        .map_or("", |b| b.get_ref().trim_end_matches('/'));
    let mut moved = HashMap::new();
    if let Some(Value::Object(paths)) = root.remove("paths") {
        let prefixed = paths
            .into_iter()
            .map(|(path, mut item)| {
                if path.starts_with('/') {
                    name_operations(&path, &mut item);
                    let new = format!("{base_path}{path}");
                    if new != path {
                        moved.insert(path, new.clone());
                    }
                    (new, item)
                } else {
                    (path, item)
                }
            })
            .collect();
        root.insert("paths".into(), Value::Object(prefixed));
    }
    if !moved.is_empty() {
        root.values_mut().for_each(|v| repoint(v, &moved));
    }
    Ok(Value::Object(root))
}

/// Rewrites, anywhere in `value`, each reference into a path item whose
/// key changed (a `$ref` or a link's `operationRef` reading
/// `#/paths/OLD...`) to point at its new key.
fn repoint(value: &mut Value, moved: &HashMap<String, String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                match (key.as_str(), &mut *inner) {
                    ("$ref" | "operationRef", Value::String(reference)) => {
                        if let Some(new) = repointed(reference, moved) {
                            *reference = new;
                        }
                    }
                    _ => repoint(inner, moved),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| repoint(i, moved)),
        _ => {}
    }
}

/// `reference` pointing at its path item's new key, when it points into a
/// moved one: the key's segment is matched percent-decoded and JSON-pointer
/// unescaped, and written back escaped (percent-encoded when it was), the
/// rest of the reference as it was.
fn repointed(reference: &str, moved: &HashMap<String, String>) -> Option<String> {
    let rest = reference.strip_prefix("#/paths/")?;
    let (segment, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let decoded = percent_decode(segment)?;
    if decoded.contains('/') {
        return None;
    }
    let key = decoded.replace("~1", "/").replace("~0", "~");
    let new = escape(moved.get(&key)?);
    let new = match segment.contains('%') {
        true => percent_encode(&new),
        false => new,
    };
    Some(format!("#/paths/{new}{tail}"))
}

/// `text` with its `%XX` escapes decoded; `None` when one is broken or the
/// bytes are not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        if byte != b'%' {
            out.push(byte);
            at += 1;
            continue;
        }
        let hex = bytes.get(at + 1..at + 3)?;
        if !hex.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        let hex = std::str::from_utf8(hex).ok()?;
        out.push(u8::from_str_radix(hex, 16).ok()?);
        at += 3;
    }
    String::from_utf8(out).ok()
}

/// `segment` with every byte a URI fragment cannot hold as such `%XX`
/// (the percent sign included).
fn percent_encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Rewrites a 3.0 document's schemas as 3.1 (JSON Schema 2020-12) says
/// them, wherever the document has schemas: in its paths (parameters,
/// request bodies, responses, headers, callbacks) and its components.
fn schemas_to_3_1(root: &mut Map<String, Value>) {
    if let Some(Value::Object(paths)) = root.get_mut("paths") {
        paths.values_mut().for_each(path_item_3_1);
    }
    let Some(Value::Object(components)) = root.get_mut("components") else {
        return;
    };
    for (kind, items) in components.iter_mut() {
        let each: fn(&mut Value) = match kind.as_str() {
            "schemas" => schema_3_1,
            "parameters" | "headers" => parameter_3_1,
            "requestBodies" => request_body_3_1,
            "responses" => response_3_1,
            "callbacks" => callback_3_1,
            _ => continue,
        };
        if let Value::Object(items) = items {
            items.values_mut().for_each(each);
        }
    }
}

/// The schemas of a path item: its parameters' and its operations'.
fn path_item_3_1(item: &mut Value) {
    if let Some(Value::Array(params)) = item.get_mut("parameters") {
        params.iter_mut().for_each(parameter_3_1);
    }
    for_each_operation(item, |op| {
        if let Some(Value::Array(params)) = op.get_mut("parameters") {
            params.iter_mut().for_each(parameter_3_1);
        }
        if let Some(body) = op.get_mut("requestBody") {
            request_body_3_1(body);
        }
        if let Some(Value::Object(responses)) = op.get_mut("responses") {
            responses.values_mut().for_each(response_3_1);
        }
        if let Some(Value::Object(callbacks)) = op.get_mut("callbacks") {
            callbacks.values_mut().for_each(callback_3_1);
        }
    });
}

/// A callback: path items by expression.
fn callback_3_1(callback: &mut Value) {
    if let Value::Object(items) = callback {
        items.values_mut().for_each(path_item_3_1);
    }
}

/// A parameter or header: its `schema`, or the schemas of its `content`.
fn parameter_3_1(parameter: &mut Value) {
    if let Some(schema) = parameter.get_mut("schema") {
        schema_3_1(schema);
    }
    content_3_1(parameter);
}

/// A request body: the schemas of its `content`.
fn request_body_3_1(body: &mut Value) {
    content_3_1(body);
}

/// A response: its headers' schemas and its `content`'s.
fn response_3_1(response: &mut Value) {
    if let Some(Value::Object(headers)) = response.get_mut("headers") {
        headers.values_mut().for_each(parameter_3_1);
    }
    content_3_1(response);
}

/// The media types of `holder`'s `content`: each one's `schema`, and the
/// headers of its `encoding`.
fn content_3_1(holder: &mut Value) {
    let Some(Value::Object(content)) = holder.get_mut("content") else {
        return;
    };
    for media in content.values_mut() {
        if let Some(schema) = media.get_mut("schema") {
            schema_3_1(schema);
        }
        let Some(Value::Object(encoding)) = media.get_mut("encoding") else {
            continue;
        };
        for property in encoding.values_mut() {
            if let Some(Value::Object(headers)) = property.get_mut("headers") {
                headers.values_mut().for_each(parameter_3_1);
            }
        }
    }
}

/// A 3.0 schema as 3.1 says it, and the schemas in it, found by keyword
/// position: the values of `properties` are schemas whatever they are
/// named, the values of `example`, `enum`, `default`... are data, left
/// as they are.
fn schema_3_1(schema: &mut Value) {
    let Value::Object(map) = schema else {
        return;
    };
    nullable_3_1(map);
    exclusive_3_1(map, "exclusiveMinimum", "minimum");
    exclusive_3_1(map, "exclusiveMaximum", "maximum");
    for (key, inner) in map.iter_mut() {
        match (key.as_str(), inner) {
            (
                "properties" | "patternProperties" | "$defs" | "definitions" | "dependentSchemas",
                Value::Object(schemas),
            ) => schemas.values_mut().for_each(schema_3_1),
            ("allOf" | "anyOf" | "oneOf" | "prefixItems" | "items", Value::Array(schemas)) => {
                schemas.iter_mut().for_each(schema_3_1);
            }
            (
                "items"
                | "additionalItems"
                | "additionalProperties"
                | "not"
                | "contains"
                | "propertyNames"
                | "if"
                | "then"
                | "else",
                inner,
            ) => schema_3_1(inner),
            _ => {}
        }
    }
}

/// `nullable: true` as a `"null"` in `type` (a lone type becoming a list)
/// and a `null` in `enum`; `nullable` removed.
fn nullable_3_1(map: &mut Map<String, Value>) {
    let Some(Value::Bool(nullable)) = map.get("nullable") else {
        return;
    };
    let nullable = *nullable;
    map.remove("nullable");
    if !nullable {
        return;
    }
    match map.get_mut("type") {
        Some(Value::String(one)) => {
            let one = Value::String(std::mem::take(one));
            map.insert("type".into(), json!([one, "null"]));
        }
        Some(Value::Array(types)) if !types.contains(&json!("null")) => {
            types.push(json!("null"));
        }
        _ => {}
    }
    if let Some(Value::Array(values)) = map.get_mut("enum")
        && !values.contains(&Value::Null)
    {
        values.push(Value::Null);
    }
}

/// 3.0's boolean `exclusive` (`exclusiveMinimum`) as 3.1's number: `true`
/// takes the value of `bound` (`minimum`), which goes; `false` goes.
fn exclusive_3_1(map: &mut Map<String, Value>, exclusive: &str, bound: &str) {
    let Some(Value::Bool(is_exclusive)) = map.get(exclusive) else {
        return;
    };
    let is_exclusive = *is_exclusive;
    map.remove(exclusive);
    if is_exclusive
        && map.get(bound).is_some_and(Value::is_number)
        && let Some(value) = map.remove(bound)
    {
        map.insert(exclusive.into(), value);
    }
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

    /// A document whose `/items/{id}` operations and components point
    /// into its own path item (plainly, percent-encoded, by a link).
    fn pointing_document() -> String {
        let param = "#/paths/~1items~1{id}/get/parameters/0";
        json!({
            "openapi": "3.1.0",
            "info": { "title": "t", "version": "1" },
            "components": { "parameters": {
                "Id": { "$ref": "#/paths/~1items~1%7Bid%7D/get/parameters/0" },
                "Other": { "$ref": "#/paths/~1itemsX/get" },
            } },
            "paths": {
                "/items/{id}": {
                    "get": {
                        "operationId": "get",
                        "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
                        "responses": { "200": { "description": "ok", "links": { "self": {
                            "operationRef": "#/paths/~1items~1{id}/get",
                        } } } },
                    },
                    "put": { "operationId": "put", "parameters": [{ "$ref": param }] },
                    "delete": { "operationId": "delete", "parameters": [{ "$ref": "#/components/parameters/Id" }] },
                },
            },
        })
        .to_string()
    }

    #[test]
    fn references_into_a_prefixed_path_point_at_its_new_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.json"), pointing_document()).expect("write a");
        std::fs::write(dir.path().join("b.json"), pointing_document()).expect("write b");
        let toml = "[apis.a]\nopenapi = \"a.json\"\nbase_path = \"/v1/\"\n\
                    [apis.b]\nopenapi = \"b.json\"\nbase_path = \"/v~2\"\n";
        let config = config(dir.path(), toml);
        let one = export(dir.path(), &config, Some("a"), "t").expect("exports a");
        let item = &one.document["paths"]["/v1/items/{id}"];
        assert_eq!(
            item["put"]["parameters"][0]["$ref"],
            "#/paths/~1v1~1items~1{id}/get/parameters/0"
        );
        let link = &item["get"]["responses"]["200"]["links"]["self"];
        assert_eq!(link["operationRef"], "#/paths/~1v1~1items~1{id}/get");
        let params = &one.document["components"]["parameters"];
        assert_eq!(
            params["Id"]["$ref"], "#/paths/~1v1~1items~1%7Bid%7D/get/parameters/0",
            "percent-encoded as it was"
        );
        assert_eq!(
            params["Other"]["$ref"], "#/paths/~1itemsX/get",
            "no such path: left as it is"
        );

        // Merged: b's `Id` now points elsewhere than a's, so it is renamed,
        // with the reference to it.
        let Exported { document, .. } = export(dir.path(), &config, None, "t").expect("exports");
        let params = &document["components"]["parameters"];
        assert_eq!(
            params["Id"]["$ref"],
            "#/paths/~1v1~1items~1%7Bid%7D/get/parameters/0"
        );
        assert_eq!(
            params["b.Id"]["$ref"],
            "#/paths/~1v~02~1items~1%7Bid%7D/get/parameters/0"
        );
        let b = &document["paths"]["/v~2/items/{id}"];
        assert_eq!(
            b["put"]["parameters"][0]["$ref"],
            "#/paths/~1v~02~1items~1{id}/get/parameters/0"
        );
        assert_eq!(
            b["delete"]["parameters"][0]["$ref"],
            "#/components/parameters/b.Id"
        );
        for reference in [&b["put"]["parameters"][0]["$ref"], &params["b.Id"]["$ref"]] {
            let pointer = reference
                .as_str()
                .expect("a string")
                .trim_start_matches('#');
            let pointer = pointer.replace("%7B", "{").replace("%7D", "}");
            assert_eq!(
                document.pointer(&pointer).map(|p| &p["name"]),
                Some(&json!("id"))
            );
        }
    }

    #[test]
    fn a_3_0_documents_schemas_are_rewritten_as_3_1_by_keyword_position() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data =
            json!({ "nullable": true, "type": "string", "exclusiveMinimum": true, "minimum": 1 });
        let source = json!({
            "openapi": "3.0.3",
            "info": { "title": "t", "version": "1" },
            "components": { "schemas": { "Item": {
                "type": "object",
                "nullable": false,
                "properties": {
                    "nullable": { "type": "boolean" },
                    "default": { "type": "string", "nullable": true, "enum": ["a"], "default": data },
                    "count": { "type": "integer", "minimum": 0, "exclusiveMinimum": true, "maximum": 9, "exclusiveMaximum": false },
                    "tags": { "type": "array", "items": { "type": "string", "nullable": true } },
                },
                "example": data,
            } } },
            "paths": { "/items": { "get": {
                "parameters": [{ "name": "n", "in": "query", "schema": { "type": "number", "maximum": 5, "exclusiveMaximum": true }, "example": data }],
                "responses": { "200": { "description": "ok", "content": { "application/json": {
                    "schema": { "allOf": [{ "nullable": true, "type": ["integer"] }] },
                    "examples": { "x": { "value": data } },
                } } } },
            } } },
        });
        std::fs::write(dir.path().join("a.json"), source.to_string()).expect("write");
        let config = config(dir.path(), "[apis.a]\nopenapi = \"a.json\"\n");
        let Exported { document, notes } =
            export(dir.path(), &config, Some("a"), "t").expect("exports");
        let item = &document["components"]["schemas"]["Item"];
        let expected_item = json!({
            "type": "object",
            "properties": {
                "nullable": { "type": "boolean" },
                "default": { "type": ["string", "null"], "enum": ["a", null], "default": data },
                "count": { "type": "integer", "exclusiveMinimum": 0, "maximum": 9 },
                "tags": { "type": "array", "items": { "type": ["string", "null"] } },
            },
            "example": data,
        });
        assert_eq!(*item, expected_item);
        let get = &document["paths"]["/items"]["get"];
        assert_eq!(
            get["parameters"][0],
            json!({ "name": "n", "in": "query", "schema": { "type": "number", "exclusiveMaximum": 5 }, "example": data })
        );
        let media = &get["responses"]["200"]["content"]["application/json"];
        assert_eq!(
            media["schema"],
            json!({ "allOf": [{ "type": ["integer", "null"] }] })
        );
        assert_eq!(media["examples"]["x"]["value"], data);
        assert_eq!(document["openapi"], "3.1.0");
        assert!(
            notes
                .iter()
                .any(|n| n.contains("3.0.3") && n.contains("rewritten")),
            "{notes:?}"
        );
    }

    #[test]
    fn path_parameters_are_read_from_the_template() {
        assert_eq!(path_parameters("/a/{x}/b/{y}.json"), ["x", "y"]);
        assert!(path_parameters("/plain").is_empty());
    }
}
