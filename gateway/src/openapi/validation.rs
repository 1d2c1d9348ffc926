//! What an operation's requests are validated against: its parameters (the
//! path item's, overridden by the operation's of the same name and place)
//! and its request body, with the parts of the document their `$ref`s reach,
//! as the config of the built-in `request-validator` entry.
//!
//! `$ref`s to parameters and request bodies are followed here; `$ref`s in
//! schemas are left for the validator, which resolves them in the parts of
//! the document copied beside them at their own pointers (so every
//! reference reads as in the document). A `$ref` outside the document is a
//! fault: nothing is fetched.

use super::Reader;
use serde_json::{Map, Value, json};

/// How many `$ref`s are followed to reach a parameter or request body.
const MAX_HOPS: usize = 16;

/// Where a parameter may be (OpenAPI's `in`).
const PLACES: [&str; 4] = ["path", "query", "header", "cookie"];

/// Styles OpenAPI defines, for the fault naming an unknown one.
const STYLES: [&str; 7] = [
    "simple",
    "label",
    "matrix",
    "form",
    "spaceDelimited",
    "pipeDelimited",
    "deepObject",
];

/// Header parameters OpenAPI says are ignored (the request's own framing
/// and credentials, described elsewhere in the document).
const IGNORED_HEADERS: [&str; 3] = ["accept", "content-type", "authorization"];

/// The 3.1 dialects validated as JSON Schema 2020-12.
const DIALECTS: [&str; 2] = [
    "https://spec.openapis.org/oas/3.1/dialect/base",
    "https://json-schema.org/draft/2020-12/schema",
];

impl Reader<'_> {
    /// The validator's config for the operation at `at` of the path item at
    /// `item_at`: `Some(None)` when it has nothing to check, `None` with the
    /// faults recorded.
    pub(super) fn validation(&mut self, item_at: &str, at: &str) -> Option<Option<Value>> {
        let checks = self.checks;
        if !checks.requests && !checks.responses {
            return Some(None);
        }
        let (parameters, body) = if checks.requests {
            (self.parameters(item_at, at)?, self.request_body(at)?)
        } else {
            (Vec::new(), None)
        };
        let responses = if checks.responses {
            self.responses(at)?
        } else {
            Vec::new()
        };
        if parameters.is_empty() && body.is_none() && responses.is_empty() {
            return Some(None);
        }
        let mut schemas: Vec<(&Value, String)> = parameters
            .iter()
            .filter_map(|(p, at)| Some((p.get("schema")?, format!("{at}/schema"))))
            .collect();
        let documented = body.iter().map(|(b, at)| (b, at));
        let responses_documented = responses.iter().map(|(_, r, at)| (r, at));
        for (object, at) in documented.chain(responses_documented) {
            schemas.extend(media_schemas(object, at));
        }
        let mut copied = true;
        for (schema, at) in &schemas {
            copied &= self.copy_references(schema, at).is_some();
        }
        if !copied || !self.compiles(&schemas) {
            return None;
        }
        let parameters: Vec<Value> = parameters.into_iter().map(|(p, _)| p).collect();
        let body = body.map(|(b, _)| b);
        let mut spec = json!({ "parameters": parameters });
        if let Some(body) = body {
            spec["body"] = body;
        }
        if checks.responses {
            let documented: Map<String, Value> = responses
                .into_iter()
                .map(|(status, response, _)| (status, response))
                .collect();
            spec["responses"] = Value::Object(documented);
        }
        Some(Some(spec))
    }

    /// Whether every one of `schemas` compiles, as the validator will
    /// compile it; a fault at each that does not.
    fn compiles(&mut self, schemas: &[(&Value, String)]) -> bool {
        use request_validator_schema::{Dialect, compile_prepared, prepare};
        let dialect = match self.dialect {
            "openapi-3.0" => Dialect::OpenApi30,
            _ => Dialect::Draft202012,
        };
        let document = Value::Object(std::mem::take(&mut self.referenced));
        let prepared = prepare(dialect, document.clone());
        let mut all = true;
        for (schema, at) in schemas {
            if let Err(why) = compile_prepared(dialect, &prepared, schema) {
                self.fault(at, format!("the schema cannot be validated against: {why}"));
                all = false;
            }
        }
        if let Value::Object(referenced) = document {
            self.referenced = referenced;
        }
        all
    }

    /// `openapi-3.0` for a 3.0 document, `2020-12` for 3.1 (whose
    /// `jsonSchemaDialect`, when given, must be one the validator speaks).
    pub(super) fn dialect(&mut self) -> Option<&'static str> {
        if !self.checks.requests && !self.checks.responses {
            return Some("2020-12");
        }
        let root = &self.tree.root;
        let version = root
            .get("openapi")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if version.starts_with("3.0.") {
            return Some("openapi-3.0");
        }
        match root.get("jsonSchemaDialect").and_then(Value::as_str) {
            Some(dialect) if !DIALECTS.contains(&dialect) => {
                self.fault("/jsonSchemaDialect", format!("jsonSchemaDialect `{dialect}`: the gateway validates with JSON Schema 2020-12 (OpenAPI 3.1's base dialect); set validate = false to serve the API without validation"));
                None
            }
            _ => Some("2020-12"),
        }
    }

    /// The parameters of the path item, then the operation's in their
    /// place, each with where it is.
    fn parameters(&mut self, item_at: &str, at: &str) -> Option<Vec<(Value, String)>> {
        let tree = self.tree;
        let mut merged: Vec<(Value, String)> = Vec::new();
        let mut readable = true;
        for owner in [item_at, at] {
            let pointer = format!("{owner}/parameters");
            let Some(listed) = tree.root.pointer(&pointer) else {
                continue;
            };
            let Some(listed) = listed.as_array() else {
                self.fault(&pointer, "parameters must be a list");
                return None;
            };
            for index in 0..listed.len() {
                match self.parameter(&format!("{pointer}/{index}")) {
                    Some(Some((parameter, at))) => {
                        let same = |(p, _): &(Value, String)| {
                            p["name"] == parameter["name"] && p["in"] == parameter["in"]
                        };
                        merged.retain(|p| !same(p));
                        merged.push((parameter, at));
                    }
                    Some(None) => {}
                    None => readable = false,
                }
            }
        }
        readable.then_some(merged)
    }

    /// One parameter as the validator reads it, and where it is defined;
    /// `Some(None)` for a header OpenAPI says to ignore.
    fn parameter(&mut self, pointer: &str) -> Option<Option<(Value, String)>> {
        let (object, at) = self.followed(pointer, "a parameter")?;
        let name = object
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let place = object.get("in").and_then(Value::as_str).unwrap_or_default();
        if name.is_empty() || !PLACES.contains(&place) {
            self.fault(
                &at,
                "a parameter needs a `name` and `in` (path, query, header or cookie)",
            );
            return None;
        }
        if place == "header" && IGNORED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Some(None);
        }
        let mut parameter = json!({
            "name": name,
            "in": place,
            "required": object.get("required").and_then(Value::as_bool).unwrap_or(false),
        });
        if let Some(style) = object.get("style") {
            if !style.as_str().is_some_and(|s| STYLES.contains(&s)) {
                let hint = style
                    .as_str()
                    .map(|s| crate::config::problems::suggestion(s, "OpenAPI's styles", &STYLES))
                    .unwrap_or_default();
                self.fault(
                    &format!("{at}/style"),
                    format!(
                        "parameter `{name}`: unknown style `{}`{hint}",
                        style.as_str().unwrap_or("?")
                    ),
                );
                return None;
            }
            parameter["style"] = style.clone();
        }
        if let Some(explode) = object.get("explode").and_then(Value::as_bool) {
            parameter["explode"] = Value::Bool(explode);
        }
        if let Some(schema) = object.get("schema") {
            parameter["schema"] = schema.clone();
        } else if let Some(content) = object.get("content").and_then(Value::as_object) {
            let Some((_, media)) = content.iter().next().filter(|(t, _)| is_json(t)) else {
                self.fault(&format!("{at}/content"), format!("parameter `{name}`: only JSON content (application/json) is validated in a parameter; set validate = false to serve the API without validation"));
                return None;
            };
            parameter["json"] = Value::Bool(true);
            if let Some(schema) = media.get("schema") {
                parameter["schema"] = schema.clone();
            }
        }
        Some(Some((parameter, at)))
    }

    /// The operation's request body: whether it is required, and a schema
    /// per content type (JSON ones only: others are checked by type alone).
    fn request_body(&mut self, at: &str) -> Option<Option<(Value, String)>> {
        let pointer = format!("{at}/requestBody");
        if self.tree.root.pointer(&pointer).is_none() {
            return Some(None);
        }
        let (object, body_at) = self.followed(&pointer, "a request body")?;
        let Some(documented) = object.get("content").and_then(Value::as_object) else {
            self.fault(&body_at, "a request body needs its `content` types");
            return None;
        };
        let content: Map<String, Value> = documented
            .iter()
            .map(|(media_type, media)| (media_type.clone(), json_schema(media_type, media)))
            .collect();
        if content.is_empty() {
            self.fault(
                &format!("{body_at}/content"),
                "a request body needs at least one content type",
            );
            return None;
        }
        let body = json!({
            "required": object.get("required").and_then(Value::as_bool).unwrap_or(false),
            "content": content,
        });
        Some(Some((body, body_at)))
    }

    /// The operation's documented responses, by status, each with a schema
    /// per content type (JSON ones only: others are checked by type alone)
    /// and where it is.
    fn responses(&mut self, at: &str) -> Option<Vec<(String, Value, String)>> {
        let tree = self.tree;
        let pointer = format!("{at}/responses");
        let Some(documented) = tree.root.pointer(&pointer).and_then(Value::as_object) else {
            return Some(Vec::new());
        };
        let mut responses = Vec::with_capacity(documented.len());
        for status in documented.keys().filter(|k| !k.starts_with("x-")) {
            let (object, response_at) = self.followed(
                &format!("{pointer}/{}", super::tree::escape(status)),
                "a response",
            )?;
            let content = object.get("content").and_then(Value::as_object);
            let content: Map<String, Value> = content
                .into_iter()
                .flatten()
                .map(|(media_type, media)| (media_type.clone(), json_schema(media_type, media)))
                .collect();
            responses.push((status.clone(), json!({ "content": content }), response_at));
        }
        Some(responses)
    }

    /// The object at `pointer`, its `$ref`s followed, and where it is.
    fn followed(&mut self, pointer: &str, what: &str) -> Option<(Value, String)> {
        let tree = self.tree;
        let mut at = pointer.to_string();
        let mut referred_at: Option<String> = None;
        for _ in 0..MAX_HOPS {
            let Some(value) = tree.root.pointer(&at) else {
                let ref_at = referred_at.unwrap_or_else(|| at.clone());
                self.fault(
                    &ref_at,
                    format!("{what}: `$ref` points at nothing in the document (#{at})"),
                );
                return None;
            };
            match value.get("$ref") {
                None if value.is_object() => return Some((value.clone(), at)),
                None => {
                    self.fault(&at, format!("{what} must be a mapping"));
                    return None;
                }
                Some(reference) => {
                    let ref_at = format!("{at}/$ref");
                    at = self.local(reference, &ref_at)?;
                    referred_at = Some(ref_at);
                }
            }
        }
        self.fault(
            pointer,
            format!("{what}: more than {MAX_HOPS} `$ref`s in a row"),
        );
        None
    }

    /// The pointer a `$ref` (found at `ref_at`) names in this document.
    fn local(&mut self, reference: &Value, ref_at: &str) -> Option<String> {
        let shown = reference.as_str().unwrap_or("?");
        // A URI fragment: percent-encoded characters stand for themselves.
        let pointer = shown
            .strip_prefix('#')
            .and_then(|f| percent_encoding::percent_decode_str(f).decode_utf8().ok());
        match pointer {
            Some(pointer) if pointer.starts_with('/') => Some(pointer.into_owned()),
            Some(anchor) if !anchor.is_empty() => {
                self.fault(ref_at, format!("`$ref: {shown}` names an anchor: the gateway follows JSON pointers (`#/components/...`) only"));
                None
            }
            _ => {
                self.fault(ref_at, format!("`$ref: {shown}` points outside the document (or at all of it): the gateway follows references inside the document only, and fetches nothing"));
                None
            }
        }
    }

    /// Copies into the referenced parts, at their own pointers, the parts
    /// of the document `schema` (at `at`) reaches by `$ref`, and theirs in
    /// turn.
    fn copy_references(&mut self, schema: &Value, at: &str) -> Option<()> {
        let tree = self.tree;
        let mut pending = Vec::new();
        references(schema, at, &mut pending);
        while let Some((reference, ref_at)) = pending.pop() {
            let pointer = self.local(&Value::String(reference.clone()), &ref_at)?;
            // Copied already, or inside a part that is (a pointer into an
            // array would otherwise turn the array into an object).
            let within = |p: &str| {
                p.match_indices('/')
                    .map(|(i, _)| &p[..i])
                    .chain([p])
                    .any(|prefix| self.copied.contains(prefix))
            };
            if within(&pointer) {
                continue;
            }
            let Some(target) = tree.root.pointer(&pointer) else {
                self.fault(
                    &ref_at,
                    format!("`$ref: {reference}` points at nothing in the document"),
                );
                return None;
            };
            references(target, &pointer, &mut pending);
            insert(&mut self.referenced, &pointer, target.clone());
            self.copied.insert(pointer);
        }
        Some(())
    }
}

/// Every `$ref` inside `value` (found at pointer `at`), with where it is;
/// not inside examples, which are data.
fn references(value: &Value, at: &str, found: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                let inner_at = format!("{at}/{}", super::tree::escape(key));
                match (key.as_str(), inner) {
                    ("$ref", Value::String(reference)) => found.push((reference.clone(), inner_at)),
                    // Names to schemas: a property may be called `default`.
                    (
                        "properties" | "patternProperties" | "$defs" | "definitions",
                        Value::Object(named),
                    ) => {
                        for (name, schema) in named {
                            references(
                                schema,
                                &format!("{inner_at}/{}", super::tree::escape(name)),
                                found,
                            );
                        }
                    }
                    ("example" | "examples" | "enum" | "const" | "default", _) => {}
                    _ => references(inner, &inner_at, found),
                }
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                references(item, &format!("{at}/{index}"), found);
            }
        }
        _ => {}
    }
}

/// The schemas of a request body's or response's `content` (the object at
/// `at`), each with where it is.
fn media_schemas<'v>(object: &'v Value, at: &str) -> impl Iterator<Item = (&'v Value, String)> {
    let content = object.get("content").and_then(Value::as_object);
    content
        .into_iter()
        .flatten()
        .map(move |(media_type, schema)| {
            let schema_at = format!("{at}/content/{}/schema", super::tree::escape(media_type));
            (schema, schema_at)
        })
}

/// `value` put at JSON pointer `pointer` of `document`, the objects on its
/// way made as needed (an array's index becomes a key, which a pointer
/// reads the same way).
fn insert(document: &mut Map<String, Value>, pointer: &str, value: Value) {
    let tokens: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect();
    let Some((last, path)) = tokens.split_last() else {
        return;
    };
    let mut node = document;
    for token in path {
        let next = node
            .entry(token.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if !next.is_object() {
            *next = Value::Object(Map::new());
        }
        let Value::Object(map) = next else {
            return;
        };
        node = map;
    }
    node.insert(last.clone(), value);
}

/// The schema a body of `media_type` is validated against: the media's
/// `schema` for a JSON type, none (`{}`) for the others.
fn json_schema(media_type: &str, media: &Value) -> Value {
    media
        .get("schema")
        .filter(|_| is_json(media_type))
        .cloned()
        .unwrap_or_else(|| json!({}))
}

/// Whether a content type is JSON (`application/json`, `...+json`).
fn is_json(media_type: &str) -> bool {
    let essence = media_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence.ends_with("+json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn referenced_parts_are_copied_at_their_own_pointers() {
        let mut document = Map::new();
        insert(
            &mut document,
            "/components/schemas/Pet",
            json!({"type": "object"}),
        );
        insert(
            &mut document,
            "/paths/~1pets/get/parameters/0/schema",
            json!({"type": "integer"}),
        );
        assert_eq!(
            Value::Object(document.clone()).pointer("/components/schemas/Pet"),
            Some(&json!({"type": "object"}))
        );
        assert_eq!(
            Value::Object(document).pointer("/paths/~1pets/get/parameters/0/schema"),
            Some(&json!({"type": "integer"}))
        );
    }

    #[test]
    fn references_skip_examples() {
        let mut found = Vec::new();
        references(
            &json!({"$ref": "#/a", "properties": {"default": {"$ref": "#/b"}}, "example": {"$ref": "#/c"}}),
            "/s",
            &mut found,
        );
        found.sort();
        let expected = [("#/a", "/s/$ref"), ("#/b", "/s/properties/default/$ref")];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(r, a)| (r.to_string(), a.to_string()))
            .collect();
        assert_eq!(found, expected);
    }
}
