//! OpenAPI documents an `[apis.NAME]` is defined by: a YAML or JSON file,
//! OpenAPI 3.0 or 3.1, read into the operations the gateway routes (method,
//! path template, name, upstream, the API key its security asks for). Every
//! mistake is reported at its file, line and column in the document.
//!
//! The document is read as a tree with places (`tree`), not through a typed
//! model: no crate reads both 3.0 and 3.1, and the gateway needs only the
//! paths, operations, security and its `x-gateway-*` extensions.
//!
//! `export` goes the other way: a config's APIs and hand-written routes as
//! one OpenAPI 3.1.0 document the gateway can import again.

pub mod entries;
pub mod export;
mod tree;
mod validation;

use crate::config::ConfigError;
use http::Method;
use serde_json::Value;
use std::path::Path;
use tree::{Place, Tree, escape};

/// The largest document read (larger ones are refused before parsing).
pub const MAX_DOCUMENT_BYTES: u64 = 16 << 20;

/// The methods an OpenAPI path item may have operations for.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The keys an operation may have (besides `x-` extensions).
const OPERATION_KEYS: [&str; 12] = [
    "tags",
    "summary",
    "description",
    "externalDocs",
    "operationId",
    "parameters",
    "requestBody",
    "responses",
    "callbacks",
    "deprecated",
    "security",
    "servers",
];

/// The other keys a path item may have (besides `x-` extensions).
const PATH_ITEM_KEYS: [&str; 5] = ["summary", "description", "servers", "parameters", "$ref"];

/// A document's operations.
#[derive(Debug)]
pub struct Document {
    /// The file, as errors name it.
    pub shown: String,
    /// Every operation, by path (as the document's `paths` sort), then by
    /// method.
    pub operations: Vec<Operation>,
    /// The schemas' dialect (`openapi-3.0` or `2020-12`), and the parts of
    /// the document the operations' schemas refer to, at their own
    /// pointers: what their validation resolves `$ref`s in.
    pub schemas: (&'static str, Value),
}

impl Document {
    /// An error at `place` of the document.
    pub fn error(&self, place: Place, message: String) -> ConfigError {
        located(&self.shown, place, message)
    }
}

/// An error at `(line, column)` of `file`.
fn located(file: &str, (line, column): Place, message: String) -> ConfigError {
    ConfigError::At {
        file: file.to_string(),
        line,
        column,
        message,
    }
}

/// One operation: one route.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// Its `operationId`, else `METHOD path`.
    pub name: String,
    /// The method.
    pub method: Method,
    /// The path template, as the document writes it.
    pub path: String,
    /// `x-gateway-upstream`: the upstream this operation goes to instead of
    /// the API's.
    pub upstream: Option<Located<String>>,
    /// The API key its `security` asks for; `None` when it is public.
    pub credential: Option<Credential>,
    /// `x-gateway-mock`: the documented answer the gateway gives itself.
    pub mock: Option<Mock>,
    /// `x-gateway-plugins`: entries of its own, run after the inherited ones.
    pub plugins: Vec<Located<entries::Entry>>,
    /// The config of its `request-validator` entry: what its parameters
    /// and body must be; `None` when it has neither or validation is off.
    pub validation: Option<serde_json::Value>,
    /// Where the operation is in the document.
    pub at: Place,
}

/// A value and where the document says it.
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    /// The value.
    pub value: T,
    /// Its line and column in the document.
    pub at: Place,
}

/// An answer taken from the document: a documented response's status, and
/// the first content type it documents with its example.
#[derive(Debug, Clone, PartialEq)]
pub struct Mock {
    /// The status.
    pub status: u16,
    /// The content type, when the response documents a body.
    pub content_type: Option<String>,
    /// The example body (JSON examples written as JSON text).
    pub body: String,
}

/// What an operation's security asks the client for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// An API key (`apiKey`) in the named request header.
    Header(String),
    /// An API key (`apiKey`) in the named query parameter.
    Query(String),
    /// A bearer token (`http`, `bearer`), checked as the API's `bearer`
    /// entry says; where the requirement is (for when the API has none, or
    /// its entry cannot check scopes), and the scopes it lists (OpenAPI
    /// 3.1's roles), which the token must all hold.
    Bearer { at: Place, scopes: Vec<String> },
}

/// What an API's operations are checked against their document for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checks {
    /// Requests: parameters and bodies (refused when they do not match).
    pub requests: bool,
    /// Responses: statuses and bodies (mismatches reported only).
    pub responses: bool,
}

/// Reads the document at `base.join(file)`: the operations it could read,
/// and every mistake in it (each located in the document); an error when it
/// cannot be read or parsed at all.
pub fn load(
    base: &Path,
    file: &str,
    checks: Checks,
) -> Result<(Document, Vec<ConfigError>), ConfigError> {
    let (shown, tree) = read(base, file)?;
    let mut faults = Vec::new();
    let mut reader = Reader {
        tree: &tree,
        faults: &mut faults,
        checks,
        dialect: "2020-12",
        referenced: serde_json::Map::new(),
        copied: std::collections::HashSet::new(),
    };
    let operations = reader.operations();
    let schemas = (
        reader.dialect,
        Value::Object(std::mem::take(&mut reader.referenced)),
    );
    let faults = faults
        .into_iter()
        .map(|(at, m)| located(&shown, at, m))
        .collect();
    let document = Document {
        shown,
        operations,
        schemas,
    };
    Ok((document, faults))
}

/// The document at `base.join(file)` as a tree, and its name as errors
/// show it; an error when it cannot be read or parsed at all.
fn read(base: &Path, file: &str) -> Result<(String, Tree), ConfigError> {
    let path = base.join(file);
    // Named as the config does when the config is in the working directory.
    let shown = path
        .strip_prefix(".")
        .unwrap_or(&path)
        .display()
        .to_string();
    let unreadable = |message: String| ConfigError::Unreadable {
        file: shown.clone(),
        message,
    };
    let size = std::fs::metadata(&path)
        .map_err(|e| unreadable(format!("cannot read the OpenAPI document: {e}")))?
        .len();
    if size > MAX_DOCUMENT_BYTES {
        return Err(unreadable(format!(
            "the OpenAPI document is {size} bytes, more than the {MAX_DOCUMENT_BYTES} the gateway reads"
        )));
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| unreadable(format!("cannot read the OpenAPI document: {e}")))?;
    let tree = Tree::parse(&text).map_err(|(at, message)| located(&shown, at, message))?;
    Ok((shown, tree))
}

/// What the router could not take of an OpenAPI path template: a catch-all
/// (`{*name}`), an escaped brace, or two parameters in one segment.
fn template_fault(path: &str) -> Option<String> {
    if path.contains("{*") || path.contains("{{") || path.contains("}}") {
        return Some(format!(
            "path `{path}`: `{{*name}}` and doubled braces are the gateway's own template syntax, not OpenAPI's"
        ));
    }
    path.split('/')
        .any(|segment| segment.matches('{').count() > 1)
        .then(|| format!("path `{path}` has two parameters in one segment, which the gateway cannot tell apart: give each its own segment"))
}

/// The response `x-gateway-mock` answers with, and its status: the one of
/// status `wanted`, else the first (in the document's sorted keys) 2xx,
/// `2XX` (200) or `default` (200). Only final statuses, 200 to 599.
fn chosen_response(
    responses: &serde_json::Map<String, Value>,
    wanted: Option<u64>,
) -> Option<(&String, u16)> {
    let code = |key: &String| match key.as_str() {
        "2XX" | "default" => Some(200),
        _ => key.parse::<u16>().ok().filter(|c| (200..=599).contains(c)),
    };
    let mut codes = responses.keys().filter_map(|k| Some((k, code(k)?)));
    match wanted {
        Some(status) => codes.find(|(k, c)| u64::from(*c) == status && k.parse::<u16>().is_ok()),
        None => codes.find(|(_, c)| (200..300).contains(c)),
    }
}

/// The answer a documented response gives: its first content type (in the
/// document's sorted keys) and that content's `example`, else its first
/// `examples` value, else its schema's `example`; no body for 204 and 304
/// or when there is no example. What cannot be answered as documented is
/// an error: a media range or an invalid content type, an example with
/// `{{` (the answer would fill it in).
fn example(response: &Value, status: u16) -> Result<Mock, String> {
    let content = response.get("content").and_then(Value::as_object);
    let first = content.and_then(|c| c.iter().next());
    let Some((content_type, media)) = first.filter(|_| status != 204 && status != 304) else {
        return Ok(Mock {
            status,
            content_type: None,
            body: String::new(),
        });
    };
    if content_type.contains('*') || http::HeaderValue::from_str(content_type).is_err() {
        return Err(format!(
            "the mocked response's content type `{content_type}` is not one an answer can carry"
        ));
    }
    let value = media
        .get("example")
        .or_else(|| {
            let examples = media.get("examples").and_then(Value::as_object)?;
            examples.values().find_map(|e| e.get("value"))
        })
        .or_else(|| media.get("schema")?.get("example"));
    let body = match value {
        None => String::new(),
        Some(Value::String(text)) if !content_type.contains("json") => text.clone(),
        Some(other) => other.to_string(),
    };
    if body.contains("{{") {
        return Err("the mocked example contains `{{`, which the gateway's answer would fill in from the path: change the example".to_string());
    }
    Ok(Mock {
        status,
        content_type: Some(content_type.clone()),
        body,
    })
}

/// Reads the operations out of a tree, recording each mistake.
struct Reader<'t> {
    tree: &'t Tree,
    faults: &'t mut Vec<(Place, String)>,
    /// What operations are read with the schemas for.
    checks: Checks,
    /// The schemas' dialect.
    dialect: &'static str,
    /// The parts of the document the operations' schemas refer to.
    referenced: serde_json::Map<String, Value>,
    /// Their pointers.
    copied: std::collections::HashSet<String>,
}

impl Reader<'_> {
    fn fault(&mut self, pointer: &str, message: impl Into<String>) {
        self.faults.push((self.tree.place(pointer), message.into()));
    }

    /// Every operation of a 3.0 or 3.1 document.
    fn operations(&mut self) -> Vec<Operation> {
        let root = &self.tree.root;
        if !self.version_is_supported(root) {
            return Vec::new();
        }
        match self.dialect() {
            Some(dialect) => self.dialect = dialect,
            None => return Vec::new(),
        }
        let Some(paths) = root.get("paths").and_then(Value::as_object) else {
            self.fault("/paths", "the document has no `paths`: nothing to route");
            return Vec::new();
        };
        let mut operations: Vec<Operation> = Vec::new();
        for (path, item) in paths {
            let pointer = format!("/paths/{}", escape(path));
            if path.starts_with("x-") {
                continue;
            }
            if !path.starts_with('/') {
                self.fault(&pointer, format!("path `{path}` must start with `/`"));
                continue;
            }
            if item.get("$ref").is_some() {
                self.fault(
                    &pointer,
                    "a path item `$ref` is not read by the gateway: write the operations in place",
                );
                continue;
            }
            if !self.path_item_is_readable(path, item, &pointer) {
                continue;
            }
            for method in METHODS {
                if let Some(operation) = item.get(method) {
                    let at = format!("{pointer}/{method}");
                    let validation = self.validation(&pointer, &at);
                    if let Some(op) = self.operation(path, method, operation, &at) {
                        let Some(validation) = validation else {
                            continue;
                        };
                        let op = Operation { validation, ..op };
                        self.check_unique(&operations, &op, &at);
                        operations.push(op);
                    }
                }
            }
        }
        operations
    }

    /// A path item with only keys the specification defines (a `security`
    /// written there, or a misspelt method, would be ignored: the operation
    /// would be served other than its author meant), and a path the gateway
    /// routes as written.
    fn path_item_is_readable(&mut self, path: &str, item: &Value, pointer: &str) -> bool {
        let mut readable = true;
        if let Some(fault) = crate::config::path_fault(path).or_else(|| template_fault(path)) {
            self.fault(pointer, fault);
            readable = false;
        }
        let Some(keys) = item.as_object() else {
            self.fault(pointer, "a path item must be a mapping of its operations");
            return false;
        };
        for key in keys.keys() {
            let known = METHODS.contains(&key.as_str()) || PATH_ITEM_KEYS.contains(&key.as_str());
            if !known && !key.starts_with("x-") {
                let hint = match key.as_str() {
                    "security" => {
                        " (security belongs on each operation, or at the document's top level)"
                            .to_string()
                    }
                    other => {
                        crate::config::problems::suggestion(other, "a path item has", &METHODS)
                    }
                };
                self.fault(
                    &format!("{pointer}/{}", escape(key)),
                    format!("unknown key `{key}` in a path item{hint}"),
                );
                readable = false;
            }
        }
        readable
    }

    /// `openapi: 3.0.x` or `3.1.x`; anything else is a fault.
    fn version_is_supported(&mut self, root: &Value) -> bool {
        if root.get("swagger").is_some() {
            self.fault("/swagger", "this is a Swagger 2.0 document: the gateway reads OpenAPI 3.0 and 3.1: convert it to OpenAPI 3 first");
            return false;
        }
        match root.get("openapi").and_then(Value::as_str) {
            Some(v) if v.starts_with("3.0.") || v.starts_with("3.1.") => true,
            Some(v) => {
                self.fault(
                    "/openapi",
                    format!(
                        "OpenAPI version `{v}` is not read by the gateway: it reads 3.0.x and 3.1.x"
                    ),
                );
                false
            }
            None if root.get("openapi").is_some() => {
                self.fault(
                    "/openapi",
                    "write the OpenAPI version as text, such as `openapi: \"3.1.0\"`",
                );
                false
            }
            None => {
                self.fault(
                    "/openapi",
                    "not an OpenAPI document: `openapi: 3.1.0` (or 3.0.x) is missing",
                );
                false
            }
        }
    }

    /// One operation, or `None` with its faults recorded.
    fn operation(&mut self, path: &str, method: &str, op: &Value, at: &str) -> Option<Operation> {
        if !self.keys_are_known(op, at) {
            return None;
        }
        let name = match op.get("operationId") {
            None => format!("{} {path}", method.to_ascii_uppercase()),
            Some(Value::String(id)) if !id.is_empty() => id.clone(),
            Some(_) => {
                self.fault(
                    &format!("{at}/operationId"),
                    "operationId must be a non-empty string",
                );
                return None;
            }
        };
        let upstream = match op.get("x-gateway-upstream") {
            None => None,
            Some(Value::String(upstream)) => Some(Located {
                value: upstream.clone(),
                at: self.tree.place(&format!("{at}/x-gateway-upstream")),
            }),
            Some(_) => {
                self.fault(
                    &format!("{at}/x-gateway-upstream"),
                    "x-gateway-upstream must be the name of an upstream",
                );
                return None;
            }
        };
        let credential = self.security(op, at)?;
        let mock = self.mock(op, at)?;
        let plugins = self.plugins(op, at)?;
        Some(Operation {
            name,
            method: Method::from_bytes(method.to_ascii_uppercase().as_bytes()).ok()?,
            path: path.to_string(),
            upstream,
            credential,
            mock,
            plugins,
            validation: None,
            at: self.tree.place(at),
        })
    }

    /// Whether every key of operation `op` is one the specification
    /// defines (a misspelt `security` would leave the operation open).
    fn keys_are_known(&mut self, op: &Value, at: &str) -> bool {
        let Some(keys) = op.as_object() else {
            self.fault(at, "an operation must be a mapping");
            return false;
        };
        let mut known = true;
        for key in keys.keys() {
            if !OPERATION_KEYS.contains(&key.as_str()) && !key.starts_with("x-") {
                let hint =
                    crate::config::problems::suggestion(key, "an operation has", &OPERATION_KEYS);
                self.fault(
                    &format!("{at}/{}", escape(key)),
                    format!("unknown key `{key}` in an operation{hint}"),
                );
                known = false;
            }
        }
        known
    }

    /// `x-gateway-mock: true` (the first documented 2xx response, else the
    /// first one) or `x-gateway-mock: {status: N}`; `Some(None)` without it.
    fn mock(&mut self, op: &Value, at: &str) -> Option<Option<Mock>> {
        let pointer = format!("{at}/x-gateway-mock");
        let wanted = match op.get("x-gateway-mock") {
            None | Some(Value::Bool(false)) => return Some(None),
            Some(Value::Bool(true)) => None,
            Some(Value::Object(o)) if o.get("status").and_then(Value::as_u64).is_some() => {
                o.get("status").and_then(Value::as_u64)
            }
            Some(_) => {
                self.fault(
                    &pointer,
                    "x-gateway-mock is true, or {status: N} naming a documented response",
                );
                return None;
            }
        };
        let Some(responses) = op.get("responses").and_then(Value::as_object) else {
            self.fault(
                &pointer,
                "x-gateway-mock needs the operation's `responses`: it answers with one of them",
            );
            return None;
        };
        let Some((key, status)) = chosen_response(responses, wanted) else {
            let why = match wanted {
                Some(status) => format!("x-gateway-mock asks for status {status}, which the operation's responses do not document"),
                None => "x-gateway-mock: true answers with a documented 2xx response (200, 2XX or default): the operation has none; name one with {status: N}".to_string(),
            };
            self.fault(&pointer, why);
            return None;
        };
        let response = &responses[key];
        let at = format!("{at}/responses/{}", escape(key));
        if response.get("$ref").is_some() {
            self.fault(
                &at,
                "a mocked response is read in place: a `$ref` response is not followed",
            );
            return None;
        }
        match example(response, status) {
            Ok(mock) => Some(Some(mock)),
            Err(why) => {
                self.fault(&at, why);
                None
            }
        }
    }

    /// Operation ids are unique (the specification requires it; they name routes).
    fn check_unique(&mut self, earlier: &[Operation], op: &Operation, at: &str) {
        if earlier.iter().any(|e| e.name == op.name) {
            self.fault(
                at,
                format!(
                    "operation `{}` is defined twice: operationId values must be unique",
                    op.name
                ),
            );
        }
    }

    /// The API key the operation's `security` (else the document's) asks
    /// for; `Some(None)` when it is public. A requirement the gateway cannot
    /// enforce is a fault: it never serves an operation more openly than its
    /// document says.
    fn security(&mut self, op: &Value, at: &str) -> Option<Option<Credential>> {
        let (requirements, pointer) = match op.get("security") {
            Some(own) => (own, format!("{at}/security")),
            None => match self.tree.root.get("security") {
                Some(global) => (global, "/security".to_string()),
                None => return Some(None),
            },
        };
        let Some(requirements) = requirements.as_array() else {
            self.fault(&pointer, "security must be a list of requirements");
            return None;
        };
        // `[]`, or a requirement `{}` among them: anyone may call it.
        if requirements.is_empty()
            || requirements
                .iter()
                .any(|r| r.as_object().is_some_and(|o| o.is_empty()))
        {
            return Some(None);
        }
        let [requirement] = requirements.as_slice() else {
            self.fault(&pointer, "several alternative security requirements: the gateway enforces one apiKey scheme per operation");
            return None;
        };
        let Some(requirement) = requirement.as_object() else {
            self.fault(
                &format!("{pointer}/0"),
                "a security requirement must be a mapping of scheme names to lists",
            );
            return None;
        };
        let [(scheme, scopes)] = requirement.iter().collect::<Vec<_>>()[..] else {
            self.fault(&format!("{pointer}/0"), "a requirement of several schemes at once: the gateway enforces one apiKey scheme per operation");
            return None;
        };
        let used_at = format!("{pointer}/0/{}", escape(scheme));
        let Some(scopes) = scopes.as_array().and_then(|list| {
            list.iter()
                .map(|scope| scope.as_str().map(str::to_string))
                .collect::<Option<Vec<String>>>()
        }) else {
            self.fault(
                &used_at,
                format!(
                    "scheme `{scheme}` must be required with a list of scopes (`{scheme}: []`)"
                ),
            );
            return None;
        };
        match self.credential(scheme, &used_at)? {
            Some(Credential::Bearer { at, .. }) => Some(Some(Credential::Bearer { at, scopes })),
            // Roles on an apiKey scheme (3.1) would be required; the gateway
            // checks the key only, so it refuses rather than serve more openly.
            Some(_) if !scopes.is_empty() => {
                self.fault(&used_at, format!("scheme `{scheme}` is required with roles: the gateway checks an API key, not roles; write `{scheme}: []`, and check roles with an acl entry"));
                None
            }
            credential => Some(credential),
        }
    }

    /// The `apiKey` scheme `name` of `components.securitySchemes`.
    fn credential(&mut self, name: &str, used_at: &str) -> Option<Option<Credential>> {
        let defined = format!("/components/securitySchemes/{}", escape(name));
        let Some(scheme) = self.tree.root.pointer(&defined) else {
            self.fault(
                used_at,
                format!("security scheme `{name}` is not defined in components.securitySchemes"),
            );
            return None;
        };
        let kind = scheme
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let place = scheme.get("in").and_then(Value::as_str).unwrap_or_default();
        let key = scheme
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty());
        match (kind, place, key) {
            ("http", _, _)
                if scheme
                    .get("scheme")
                    .and_then(Value::as_str)
                    .is_some_and(|s| s.eq_ignore_ascii_case("bearer")) =>
            {
                Some(Some(Credential::Bearer {
                    at: self.tree.place(used_at),
                    scopes: Vec::new(),
                }))
            }
            ("apiKey", "header", Some(key)) => {
                Some(Some(Credential::Header(key.to_ascii_lowercase())))
            }
            ("apiKey", "query", Some(key)) => Some(Some(Credential::Query(key.to_string()))),
            ("apiKey", "cookie", _) => {
                self.fault(&defined, format!("security scheme `{name}` takes the key from a cookie, which the gateway does not read: use a header or a query parameter"));
                None
            }
            ("apiKey", _, _) => {
                self.fault(
                    &defined,
                    format!("security scheme `{name}` needs `in` (header or query) and a `name`"),
                );
                None
            }
            (other, _, _) => {
                self.fault(used_at, format!("security scheme `{name}` is of type `{other}`, which the gateway does not enforce from the document: use an apiKey or an http bearer scheme, or leave the operation's security out and guard its route with a plugin entry (jwt, key-auth)"));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::chosen_response;
    use serde_json::{Value, json};

    fn chosen(responses: Value, wanted: Option<u64>) -> Option<(String, u16)> {
        let map = responses.as_object().cloned().unwrap_or_default();
        chosen_response(&map, wanted).map(|(k, c)| (k.clone(), c))
    }

    #[test]
    fn a_mock_answers_with_a_success_unless_told_otherwise() {
        let both = json!({"404": {}, "200": {}});
        assert_eq!(chosen(both.clone(), None), Some(("200".into(), 200)));
        assert_eq!(chosen(both, Some(404)), Some(("404".into(), 404)));
        assert_eq!(
            chosen(json!({"2XX": {}, "404": {}}), None),
            Some(("2XX".into(), 200))
        );
        assert_eq!(
            chosen(json!({"default": {}}), None),
            Some(("default".into(), 200))
        );
        assert_eq!(
            chosen(json!({"404": {}, "500": {}}), None),
            None,
            "never an error for `true`"
        );
        assert_eq!(
            chosen(json!({"101": {}}), Some(101)),
            None,
            "only final statuses"
        );
    }
}
