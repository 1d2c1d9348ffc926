//! OpenAPI documents an `[apis.NAME]` is defined by: a YAML or JSON file,
//! OpenAPI 3.0 or 3.1, read into the operations the gateway routes (method,
//! path template, name, upstream, the API key its security asks for). Every
//! mistake is reported at its file, line and column in the document.
//!
//! The document is read as a tree with places (`tree`), not through a typed
//! model: no crate reads both 3.0 and 3.1, and the gateway needs only the
//! paths, operations, security and its `x-gateway-*` extensions.

mod tree;

use crate::config::ConfigError;
use http::Method;
use serde_json::Value;
use std::path::{Path, PathBuf};
use tree::{Place, Tree, escape};

/// The methods an OpenAPI path item may have operations for.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// A document's operations.
#[derive(Debug)]
pub struct Document {
    /// The file, as the config names it (relative to the config file).
    pub path: PathBuf,
    /// Every operation, in the document's order.
    pub operations: Vec<Operation>,
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
    pub api_key: Option<ApiKey>,
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

/// Where an `apiKey` security scheme carries the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiKey {
    /// In the named request header.
    Header(String),
    /// In the named query parameter.
    Query(String),
}

/// Reads the document at `base.join(file)`: the operations it could read,
/// and every mistake in it (each located in the document); an error when it
/// cannot be read or parsed at all.
pub fn load(base: &Path, file: &str) -> Result<(Document, Vec<ConfigError>), ConfigError> {
    let path = base.join(file);
    // Named as the config does when the config is in the working directory.
    let shown = path.strip_prefix(".").unwrap_or(&path).to_path_buf();
    let located = |(line, column): Place, message: String| ConfigError::At {
        file: shown.display().to_string(),
        line,
        column,
        message,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::Unreadable {
        file: shown.display().to_string(),
        message: format!("cannot read the OpenAPI document: {e}"),
    })?;
    let tree = Tree::parse(&text).map_err(|(at, message)| located(at, message))?;
    let mut faults = Vec::new();
    let operations = Reader {
        tree: &tree,
        faults: &mut faults,
    }
    .operations();
    let faults = faults.into_iter().map(|(at, m)| located(at, m)).collect();
    let document = Document {
        path: PathBuf::from(file),
        operations,
    };
    Ok((document, faults))
}

/// Reads the operations out of a tree, recording each mistake.
struct Reader<'t> {
    tree: &'t Tree,
    faults: &'t mut Vec<(Place, String)>,
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
            for method in METHODS {
                if let Some(operation) = item.get(method) {
                    let at = format!("{pointer}/{method}");
                    if let Some(op) = self.operation(path, method, operation, &at) {
                        self.check_unique(&operations, &op, &at);
                        operations.push(op);
                    }
                }
            }
        }
        operations
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
        let api_key = self.security(op, at)?;
        Some(Operation {
            name,
            method: Method::from_bytes(method.to_ascii_uppercase().as_bytes()).ok()?,
            path: path.to_string(),
            upstream,
            api_key,
            at: self.tree.place(at),
        })
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
    fn security(&mut self, op: &Value, at: &str) -> Option<Option<ApiKey>> {
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
        let names: Vec<&String> = requirement
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        let [scheme] = names.as_slice() else {
            self.fault(&format!("{pointer}/0"), "a requirement of several schemes at once: the gateway enforces one apiKey scheme per operation");
            return None;
        };
        self.api_key(scheme, &format!("{pointer}/0/{}", escape(scheme)))
    }

    /// The `apiKey` scheme `name` of `components.securitySchemes`.
    fn api_key(&mut self, name: &str, used_at: &str) -> Option<Option<ApiKey>> {
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
            ("apiKey", "header", Some(key)) => Some(Some(ApiKey::Header(key.to_ascii_lowercase()))),
            ("apiKey", "query", Some(key)) => Some(Some(ApiKey::Query(key.to_string()))),
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
                self.fault(used_at, format!("security scheme `{name}` is of type `{other}`, which the gateway does not enforce from the document: use an apiKey scheme, or leave the operation's security out and guard its route with a plugin entry (jwt, key-auth)"));
                None
            }
        }
    }
}
