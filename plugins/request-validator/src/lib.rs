//! The built-in `request-validator` plugin: refuses, with 400 and a list of
//! every failure, a request whose parameters or body do not match their
//! schemas, before it reaches the upstream. An API defined by an OpenAPI
//! document gets one on each operation (the gateway writes its config from
//! the document); any route can have one configured by hand.
//!
//! Parameters are read as their `style` says and converted to the types
//! their schema names (`params`); JSON bodies are parsed and validated
//! whole (`schema`). Every schema is compiled once, when the instance
//! starts; a request only evaluates them. A failure names where (`in`: the
//! path, query, a header, a cookie or the body), which parameter, the JSON
//! pointer inside the value, and why.

mod json;
mod params;
use request_validator_schema as schema;

use params::{ParameterSpec, Reader};
use plugin_sdk::{Action, Config, Context, Needs, Plugin, Request, Response, log};
use schema::Dialect;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::rc::Rc;

/// The reason given for a schema the instance could not compile: the
/// request is answered 500 (the gateway's fault, not the client's).
const UNCOMPILED: &str = "the API's definition could not be compiled";

/// Failures listed in one answer at most (the count says how many there were).
const MAX_LISTED: usize = 20;

/// The largest value whose failures are all listed; a larger one fails
/// with its first (listing every failure of a large body could cost more
/// than the request deserves).
const LIST_ALL_UP_TO: usize = 64 << 10;

/// The longest reason given for one failure (a schema error quotes the
/// value, which may be a whole body).
const MAX_REASON: usize = 300;

/// What to check, as configured by hand or by an API (`openapi`: this
/// same table as JSON text, which can hold the `null`s a schema may have
/// and TOML cannot).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    /// The schemas' dialect.
    #[serde(default)]
    dialect: Dialect,
    /// What `$ref`s (`#/...`) point into.
    #[serde(default)]
    document: Option<Value>,
    /// The parameters.
    #[serde(default)]
    parameters: Vec<ParameterSpec>,
    /// The body.
    #[serde(default)]
    body: Option<BodySpec>,
    /// The documented responses, by status (`200`, `2XX`, `default`): when
    /// given, responses are checked too, and a mismatch is logged and
    /// counted (event `response_mismatch`), never changed.
    #[serde(default)]
    responses: Option<BTreeMap<String, ResponseSpec>>,
    /// Checks by route name, for an entry several routes share (an API's):
    /// each route is checked as its own says, a route it does not name is
    /// let through. Instead of `parameters`, `body` and `responses`.
    #[serde(default)]
    operations: Option<BTreeMap<String, OperationSpec>>,
}

/// What one route of a shared entry checks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OperationSpec {
    #[serde(default)]
    parameters: Vec<ParameterSpec>,
    #[serde(default)]
    body: Option<BodySpec>,
    #[serde(default)]
    responses: Option<BTreeMap<String, ResponseSpec>>,
}

/// A documented response.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResponseSpec {
    /// Its content types, each with the schema of a JSON body; none: no body.
    #[serde(default)]
    content: BTreeMap<String, Value>,
}

/// The body a request may have.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BodySpec {
    /// A request must have one.
    #[serde(default)]
    required: bool,
    /// The content types accepted (`type/subtype`, `type/*` or `*/*`), each
    /// with the schema of a JSON body (an empty one accepts any).
    content: BTreeMap<String, Value>,
}

/// A configured instance: the checks of its one route, or of each route
/// of an API by name.
#[derive(Debug)]
pub enum RequestValidator {
    /// Every request it sees.
    One(Checks),
    /// By route name.
    ByRoute(BTreeMap<String, Checks>),
}

/// What requests (and responses) of one route are checked for.
#[derive(Debug)]
pub struct Checks {
    parameters: Vec<Parameter>,
    body: Option<Body>,
    /// By status key, as documented (`200`, `2XX`, `default`).
    responses: Option<Vec<(String, Content)>>,
}

#[derive(Debug)]
struct Parameter {
    reader: Reader,
    schema: Option<schema::Lazy>,
}

#[derive(Debug)]
struct Body {
    required: bool,
    content: Content,
}

/// Content types (lowercase, without parameters), each with the schema of
/// a JSON body.
#[derive(Debug, Default)]
struct Content(Vec<(String, Option<schema::Lazy>)>);

/// One reason a request is refused.
#[derive(Debug, Serialize, PartialEq)]
struct Failure {
    /// `path`, `query`, `header`, `cookie` or `body`.
    #[serde(rename = "in")]
    location: &'static str,
    /// The parameter's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// Where inside the value (a JSON pointer; empty for the whole value).
    #[serde(skip_serializing_if = "Option::is_none")]
    pointer: Option<String>,
    /// Why.
    reason: String,
}

impl Plugin for RequestValidator {
    const NAME: &'static str = "request-validator";

    fn needs(&self) -> Needs {
        self.all()
            .fold(Needs::NONE, |needs, checks| needs | checks.needs())
    }

    fn init(config: Config) -> Result<Self, String> {
        let spec = spec_of(&config)?;
        let shared = Rc::new(schema::Shared::new(
            spec.dialect,
            spec.document.unwrap_or(Value::Null),
        ));
        let Some(operations) = spec.operations else {
            let one = OperationSpec {
                parameters: spec.parameters,
                body: spec.body,
                responses: spec.responses,
            };
            // One route's schemas, configured by hand: compiled now, so a
            // mistake in one refuses the config.
            let checks = Checks::compile(&shared, one)?;
            checks.compile_all()?;
            return Ok(RequestValidator::One(checks));
        };
        if !spec.parameters.is_empty() || spec.body.is_some() || spec.responses.is_some() {
            return Err(
                "give either `operations` or `parameters`, `body` and `responses`".to_string(),
            );
        }
        // An API's: each route's compiled when the instance first serves
        // it (the gateway compiled them all once when loading the API).
        let mut by_route = BTreeMap::new();
        for (route, operation) in operations {
            let checks =
                Checks::compile(&shared, operation).map_err(|e| format!("route `{route}`: {e}"))?;
            by_route.insert(route, checks);
        }
        Ok(RequestValidator::ByRoute(by_route))
    }

    fn on_request(&self, req: &mut Request, _ctx: &mut Context) -> Action {
        let Some(checks) = self.of(req) else {
            return Action::Continue;
        };
        let mut failures = Vec::new();
        for parameter in &checks.parameters {
            parameter.check(req, &mut failures);
        }
        if let Some(body) = &checks.body {
            body.check(req, &mut failures);
        }
        if failures.is_empty() {
            return Action::Continue;
        }
        if failures.iter().any(|f| f.reason == UNCOMPILED) {
            return Action::Respond(Response::error(500, UNCOMPILED, req));
        }
        Action::Respond(refusal(req, failures))
    }

    fn on_response(&self, req: &Request, resp: &mut Response, _ctx: &mut Context) {
        let Some(responses) = self.of(req).and_then(|c| c.responses.as_deref()) else {
            return;
        };
        let failures = check_response(responses, resp);
        if failures.is_empty() {
            return;
        }
        let reasons: Vec<String> = failures
            .iter()
            .map(|f| match &f.pointer {
                Some(pointer) => format!("{pointer}: {}", f.reason),
                None => f.reason.clone(),
            })
            .collect();
        log::warn(&format!(
            "route `{}`: the {} response does not match the API's definition (passed on unchanged): {}",
            req.route(),
            resp.status(),
            reasons.join("; ")
        ));
        log::count("response_mismatch");
    }
}

impl RequestValidator {
    /// Every route's checks.
    fn all(&self) -> impl Iterator<Item = &Checks> {
        let (one, many) = match self {
            RequestValidator::One(checks) => (Some(checks), None),
            RequestValidator::ByRoute(by_route) => (None, Some(by_route.values())),
        };
        one.into_iter().chain(many.into_iter().flatten())
    }

    /// The checks of `req`'s route.
    fn of(&self, req: &Request) -> Option<&Checks> {
        match self {
            RequestValidator::One(checks) => Some(checks),
            RequestValidator::ByRoute(by_route) => by_route.get(req.route()),
        }
    }
}

impl Checks {
    /// The checks of `spec`, their schemas to compile against `shared`.
    fn compile(shared: &Rc<schema::Shared>, spec: OperationSpec) -> Result<Self, String> {
        let mut parameters = Vec::with_capacity(spec.parameters.len());
        for parameter in spec.parameters {
            let shape = parameter
                .schema
                .as_ref()
                .map_or(schema::Shape::Scalar(schema::Kind::Text), |s| {
                    schema::shape(&shared.document, s)
                });
            let reader = Reader::new(&parameter, shape)?;
            let schema = parameter.schema.map(|s| schema::Lazy::new(shared, s));
            parameters.push(Parameter { reader, schema });
        }
        let body = spec
            .body
            .map(|body| compile_body(shared, body))
            .transpose()?;
        let responses = spec
            .responses
            .map(|documented| compile_responses(shared, documented))
            .transpose()?;
        Ok(Checks {
            parameters,
            body,
            responses,
        })
    }

    /// Compiles every schema now: the error of the first that fails.
    fn compile_all(&self) -> Result<(), String> {
        for parameter in &self.parameters {
            if let Some(schema) = &parameter.schema {
                schema
                    .get()
                    .map_err(|e| format!("parameter `{}`: {e}", parameter.reader.name))?;
            }
        }
        let bodies = self.body.iter().map(|b| ("body", &b.content));
        let responses = self
            .responses
            .iter()
            .flatten()
            .map(|(s, c)| (s.as_str(), c));
        for (what, content) in bodies.chain(responses) {
            for (media_type, schema) in &content.0 {
                if let Some(schema) = schema {
                    schema
                        .get()
                        .map_err(|e| format!("{what} `{media_type}`: {e}"))?;
                }
            }
        }
        Ok(())
    }

    /// The hooks and bodies these checks need.
    fn needs(&self) -> Needs {
        let mut needs = Needs::NONE;
        if !self.parameters.is_empty() || self.body.is_some() {
            needs = needs | Needs::REQUEST;
        }
        if self.body.as_ref().is_some_and(Body::is_read) {
            needs = needs | Needs::REQUEST_BODY;
        }
        if self.responses.is_some() {
            // A response larger than the entry's max_body passes unchecked.
            needs = needs | Needs::RESPONSE | Needs::RESPONSE_BODY | Needs::LARGE_BODIES_PASS;
        }
        needs
    }
}

/// How `resp` differs from its documented response.
fn check_response(responses: &[(String, Content)], resp: &Response) -> Vec<Failure> {
    let status = resp.status().to_string();
    let range = format!("{}XX", &status[..1]);
    let find = |key: &str| responses.iter().find(|(k, _)| k.eq_ignore_ascii_case(key));
    let mut failures = Vec::new();
    let Some((_, content)) = find(&status)
        .or_else(|| find(&range))
        .or_else(|| find("default"))
    else {
        failures.push(Failure::of_body(
            None,
            format!("status {status} is not documented"),
        ));
        return failures;
    };
    // A compressed body is not read here (it would read as not JSON).
    let encoded = resp
        .headers()
        .get("content-encoding")
        .is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity"));
    if let Some(body) = resp.body().filter(|b| !b.is_empty() && !encoded) {
        if content.0.is_empty() {
            failures.push(Failure::of_body(
                None,
                "a body, where the documented response has none".to_string(),
            ));
        } else {
            content.check(resp.headers().get("content-type"), body, &mut failures);
        }
    }
    failures
}

fn compile_responses(
    shared: &Rc<schema::Shared>,
    documented: BTreeMap<String, ResponseSpec>,
) -> Result<Vec<(String, Content)>, String> {
    let mut responses = Vec::with_capacity(documented.len());
    for (status, response) in documented {
        let content = compile_content(shared, response.content)
            .map_err(|e| format!("response `{status}`: {e}"))?;
        responses.push((status, content));
    }
    Ok(responses)
}

/// The spec of a config: the table itself, or the JSON text in `openapi`.
fn spec_of(config: &Config) -> Result<Spec, String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct FromApi {
        openapi: String,
    }
    if let Ok(from_api) = config.parse::<FromApi>() {
        return serde_json::from_str(&from_api.openapi)
            .map_err(|e| format!("invalid config from the OpenAPI document: {e}"));
    }
    config.parse()
}

fn compile_body(shared: &Rc<schema::Shared>, spec: BodySpec) -> Result<Body, String> {
    let content = compile_content(shared, spec.content).map_err(|e| format!("body {e}"))?;
    if content.0.is_empty() {
        return Err("body: list at least one content type".to_string());
    }
    Ok(Body {
        required: spec.required,
        content,
    })
}

/// Content types with their schemas, compiled.
fn compile_content(
    shared: &Rc<schema::Shared>,
    documented: BTreeMap<String, Value>,
) -> Result<Content, String> {
    let mut content = Vec::with_capacity(documented.len());
    for (media_type, schema) in documented {
        let essence = essence(&media_type);
        if !essence.contains('/') {
            return Err(format!("`{media_type}` is not a content type"));
        }
        let unconstrained = schema::is_unconstrained(&schema);
        let validator = if unconstrained {
            None
        } else if is_json(&essence) {
            Some(schema::Lazy::new(shared, schema))
        } else {
            return Err(format!(
                "`{media_type}`: only JSON bodies are validated against a schema; give this content type an empty schema"
            ));
        };
        content.push((essence, validator));
    }
    Ok(Content(content))
}

impl Failure {
    /// A failure of the body, at `pointer` inside it.
    fn of_body(pointer: Option<String>, reason: String) -> Self {
        Failure {
            location: "body",
            name: None,
            pointer,
            reason,
        }
    }
}

impl Parameter {
    fn check(&self, req: &Request, failures: &mut Vec<Failure>) {
        let reader = &self.reader;
        let failure = |pointer: Option<String>, reason: String| Failure {
            location: reader.location.as_str(),
            name: Some(reader.name.clone()),
            pointer,
            reason,
        };
        match reader.read(req) {
            Ok(None) if reader.required => {
                failures.push(failure(None, "is required".to_string()));
            }
            Ok(None) => {}
            Ok(Some(value)) => {
                if let Some(schema) = &self.schema {
                    for (pointer, reason) in schema_failures(schema, &value, 0) {
                        failures.push(failure(Some(pointer), reason));
                    }
                }
            }
            Err(fault) => failures.push(failure(None, fault)),
        }
    }
}

impl Body {
    /// Whether the body is read: only when some content type has a schema
    /// (an upload of a type checked by name alone streams by unbuffered,
    /// whatever its size).
    fn is_read(&self) -> bool {
        self.content.0.iter().any(|(_, schema)| schema.is_some())
    }

    fn check(&self, req: &Request, failures: &mut Vec<Failure>) {
        // Two lines: the upstream might read the type not checked here.
        let Ok(content_type) = req.headers().single("content-type") else {
            let reason = "the content type is given more than once".to_string();
            failures.push(Failure::of_body(None, reason));
            return;
        };
        if !self.is_read() {
            if has_body(req) {
                self.content.check_type(content_type, failures);
            } else if self.required {
                failures.push(Failure::of_body(None, "a body is required".to_string()));
            }
            return;
        }
        match req.body().filter(|b| !b.is_empty()) {
            Some(body) => self.content.check(content_type, body, failures),
            None if self.required => {
                failures.push(Failure::of_body(None, "a body is required".to_string()));
            }
            None => {}
        }
    }
}

/// Whether a request whose body is not read has one, by its head: a
/// `Content-Length` other than 0, or a `Transfer-Encoding`.
fn has_body(req: &Request) -> bool {
    let headers = req.headers();
    headers.contains("transfer-encoding")
        || headers
            .get("content-length")
            .is_some_and(|length| length.trim() != "0")
}

impl Content {
    /// The documented schema for `content_type`, or a failure when the
    /// type is not documented.
    fn check_type(
        &self,
        content_type: Option<&str>,
        failures: &mut Vec<Failure>,
    ) -> Option<&Option<schema::Lazy>> {
        let given = content_type.map(essence);
        if let Some((_, schema)) = given.as_deref().and_then(|t| self.accepting(t)) {
            return Some(schema);
        }
        let accepted: Vec<&str> = self.0.iter().map(|(t, _)| t.as_str()).collect();
        let reason = match &given {
            Some(t) => format!("content type `{t}` is not one of {}", accepted.join(", ")),
            None => format!("no content type; expected one of {}", accepted.join(", ")),
        };
        failures.push(Failure::of_body(None, reason));
        None
    }

    /// Checks `body`, of `content_type`, against the documented types.
    fn check(&self, content_type: Option<&str>, body: &[u8], failures: &mut Vec<Failure>) {
        let Some(schema) = self.check_type(content_type, failures) else {
            return;
        };
        let given = content_type.map(essence);
        // A range (`*/*`) with a schema validates the JSON bodies it takes in.
        let Some(schema) = schema
            .as_ref()
            .filter(|_| given.as_deref().is_some_and(is_json_type))
        else {
            return;
        };
        match json::parse(body) {
            Ok(value) => {
                for (pointer, reason) in schema_failures(schema, &value, body.len()) {
                    failures.push(Failure::of_body(Some(pointer), reason));
                }
            }
            Err(e) => failures.push(Failure::of_body(None, format!("is not JSON: {e}"))),
        }
    }

    /// The documented content type `given` matches: itself, else its
    /// `type/*`, else `*/*`.
    fn accepting(&self, given: &str) -> Option<&(String, Option<schema::Lazy>)> {
        let range = given.split_once('/').map(|(t, _)| format!("{t}/*"));
        let find = |t: &str| self.0.iter().find(|(c, _)| c == t);
        find(given)
            .or_else(|| range.as_deref().and_then(find))
            .or_else(|| find("*/*"))
    }
}

/// How `value` (of `size` bytes as sent) fails `schema`: the pointer
/// inside it and why, for each failure (the first only for a value over
/// [`LIST_ALL_UP_TO`]).
fn schema_failures(schema: &schema::Lazy, value: &Value, size: usize) -> Vec<(String, String)> {
    let schema = match schema.get() {
        Ok(schema) => schema,
        Err(e) => {
            // The gateway compiled it when loading: a limit of the sandbox.
            log::error(&format!("a schema cannot be compiled: {e}"));
            return vec![(String::new(), UNCOMPILED.to_string())];
        }
    };
    if schema.is_valid(value) {
        return Vec::new();
    }
    let failure = |error: jsonschema::ValidationError<'_>| {
        (
            error.instance_path().to_string(),
            shortened(error.to_string()),
        )
    };
    if size > LIST_ALL_UP_TO {
        return schema
            .validate(value)
            .err()
            .map(failure)
            .into_iter()
            .collect();
    }
    schema
        .iter_errors(value)
        .take(MAX_LISTED + 1)
        .map(failure)
        .collect()
}

fn shortened(mut reason: String) -> String {
    if reason.len() > MAX_REASON {
        let mut cut = MAX_REASON;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
        reason.push('…');
    }
    reason
}

/// A content type's `type/subtype`, lowercase, without parameters.
fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Whether a request's content type `essence` is JSON.
fn is_json_type(essence: &str) -> bool {
    essence == "application/json" || essence.ends_with("+json")
}

/// Whether bodies of `essence` are JSON: `application/json`, `*/*+json`
/// (or a range that includes them).
fn is_json(essence: &str) -> bool {
    is_json_type(essence) || essence == "application/*" || essence == "*/*"
}

/// The 400 answer listing `failures` (the first [`MAX_LISTED`]).
fn refusal(req: &Request, mut failures: Vec<Failure>) -> Response {
    let count = failures.len();
    failures.truncate(MAX_LISTED);
    let body = serde_json::json!({
        "error": "bad request: the request does not match the API's definition",
        "status": 400,
        "request_id": req.id(),
        "failures": failures,
        "failure_count": count,
    });
    Response::json(400, &body)
}

plugin_sdk::export!(RequestValidator);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn validator(spec: Value) -> RequestValidator {
        RequestValidator::init(Config::from_value(spec)).expect("a valid config")
    }

    fn failures(plugin: &RequestValidator, mut req: Request) -> Vec<Value> {
        match plugin.on_request(&mut req, &mut Context::new()) {
            Action::Continue => Vec::new(),
            Action::Respond(response) => {
                assert_eq!(response.status(), 400);
                let body: Value =
                    serde_json::from_slice(response.body().expect("a body")).expect("JSON");
                body["failures"].as_array().expect("a list").clone()
            }
        }
    }

    fn pets() -> RequestValidator {
        validator(json!({
            "dialect": "openapi-3.0",
            "document": {"components": {"schemas": {"Pet": {
                "type": "object", "required": ["name"],
                "properties": {"name": {"type": "string", "minLength": 1},
                               "tag": {"type": "string", "nullable": true},
                               "age": {"type": "integer", "minimum": 0}}}}}},
            "parameters": [
                {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 100}},
                {"name": "X-Trace", "in": "header", "required": true, "schema": {"type": "string", "pattern": "^[a-f0-9]+$"}}
            ],
            "body": {"required": true, "content": {
                "application/json": {"$ref": "#/components/schemas/Pet"},
                "text/*": {}
            }}
        }))
    }

    fn post(query: &str, content_type: &str, body: &str) -> Request {
        Request::new("POST", &format!("/pets?{query}"))
            .with_header("x-trace", "ab12")
            .with_header("content-type", content_type)
            .with_body(body)
    }

    #[test]
    fn a_matching_request_passes() {
        let plugin = pets();
        let ok = post(
            "limit=10",
            "application/json; charset=utf-8",
            r#"{"name":"Rex","tag":null}"#,
        );
        assert_eq!(failures(&plugin, ok), Vec::<Value>::new());
        assert_eq!(
            failures(&plugin, post("", "text/plain", "anything")),
            Vec::<Value>::new()
        );
    }

    #[test]
    fn each_failure_is_listed_with_where_and_why() {
        let plugin = pets();
        let bad = Request::new("POST", "/pets?limit=500")
            .with_header("content-type", "application/json")
            .with_body(r#"{"name":"","age":-1}"#);
        let listed = failures(&plugin, bad);
        let wheres: Vec<(String, String)> = listed
            .iter()
            .map(|f| {
                let named = f["name"].as_str().unwrap_or_default().to_string();
                let at = f["pointer"].as_str().unwrap_or_default();
                (
                    f["in"].as_str().unwrap_or_default().to_string(),
                    format!("{named}{at}"),
                )
            })
            .collect();
        assert!(
            wheres.contains(&("query".into(), "limit".into())),
            "{listed:?}"
        );
        assert!(
            wheres.contains(&("header".into(), "x-trace".into())),
            "{listed:?}"
        );
        assert!(
            wheres.contains(&("body".into(), "/name".into())),
            "{listed:?}"
        );
        assert!(
            wheres.contains(&("body".into(), "/age".into())),
            "{listed:?}"
        );
        assert_eq!(listed.len(), 4, "{listed:?}");
    }

    #[test]
    fn bodies_of_other_types_missing_or_not_json_are_refused() {
        let plugin = pets();
        let xml = failures(&plugin, post("", "application/xml", "<pet/>"));
        assert!(
            xml[0]["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("application/xml")
        );
        let missing = Request::new("POST", "/pets").with_header("x-trace", "ab");
        assert_eq!(
            failures(&plugin, missing)[0]["reason"],
            "a body is required"
        );
        let broken = failures(&plugin, post("", "application/json", "{"));
        assert!(
            broken[0]["reason"]
                .as_str()
                .unwrap_or_default()
                .starts_with("is not JSON")
        );
    }

    #[test]
    fn the_api_form_carries_the_same_table_as_json_text() {
        let spec = json!({"parameters": [{"name": "id", "in": "path", "schema": {"type": "integer", "enum": [1, null]}}]});
        let plugin = validator(json!({"openapi": spec.to_string()}));
        let req = |id: &str| Request::new("GET", "/").with_param("id", id);
        assert!(failures(&plugin, req("1")).is_empty());
        assert_eq!(failures(&plugin, req("2")).len(), 1);
        assert_eq!(
            failures(&plugin, Request::new("GET", "/"))[0]["reason"],
            "is required"
        );
    }

    #[test]
    fn responses_that_differ_from_the_document_are_counted_and_passed_on() {
        let plugin = validator(json!({"responses": {
            "200": {"content": {"application/json": {"type": "object", "required": ["id"]}}},
            "4XX": {},
        }}));
        assert!(plugin.needs().contains(Needs::RESPONSE_BODY));
        assert!(!plugin.needs().contains(Needs::REQUEST));
        let req = Request::new("GET", "/things/1").with_route("getThing");
        let respond = |status: u16, body: &str| {
            let mut resp = Response::new(status)
                .with_header("content-type", "application/json")
                .with_body(body);
            plugin.on_response(&req, &mut resp, &mut Context::new());
            (resp.status(), resp.body().map(<[u8]>::to_vec))
        };
        let before = log::counted("response_mismatch");
        assert_eq!(respond(200, r#"{"id":1}"#).0, 200);
        assert_eq!(respond(404, "").0, 404);
        assert_eq!(
            log::counted("response_mismatch"),
            before,
            "documented answers"
        );
        let (status, body) = respond(200, r#"{"name":"x"}"#);
        assert_eq!(
            (status, body.as_deref()),
            (200, Some(&br#"{"name":"x"}"#[..])),
            "passed on unchanged"
        );
        respond(500, "");
        respond(404, "a body");
        assert_eq!(log::counted("response_mismatch"), before + 3);
    }

    #[test]
    fn what_an_upstream_could_read_otherwise_is_refused() {
        let plugin = pets();
        let twice = post("", "application/json", r#"{"name":"Rex","name":""}"#);
        assert!(
            failures(&plugin, twice)[0]["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("given twice")
        );
        let two_types = post("", "text/plain", r#"{"name":""}"#)
            .with_header("content-type", "application/json");
        assert_eq!(
            failures(&plugin, two_types)[0]["reason"],
            "the content type is given more than once"
        );
    }

    #[test]
    fn a_large_body_fails_with_its_first_failure_only() {
        let plugin = validator(
            json!({"body": {"content": {"application/json": {"type": "array", "items": {"type": "string"}}}}}),
        );
        let small = format!("[{}]", vec!["1"; 100].join(","));
        let listed = failures(
            &plugin,
            Request::new("POST", "/")
                .with_header("content-type", "application/json")
                .with_body(small),
        );
        assert_eq!(listed.len(), MAX_LISTED, "listed up to the cap");
        let large = format!("[{}]", vec!["1"; 40_000].join(","));
        let listed = failures(
            &plugin,
            Request::new("POST", "/")
                .with_header("content-type", "application/json")
                .with_body(large),
        );
        assert_eq!(listed.len(), 1, "only the first");
    }

    #[test]
    fn a_body_checked_by_type_alone_is_not_read() {
        let plugin = validator(
            json!({"body": {"required": true, "content": {"application/octet-stream": {}}}}),
        );
        assert!(
            !plugin.needs().contains(Needs::REQUEST_BODY),
            "an upload streams by"
        );
        let upload = |content_type: &str| {
            Request::new("PUT", "/files/a")
                .with_header("content-type", content_type)
                .with_header("content-length", "73400320")
        };
        assert!(failures(&plugin, upload("application/octet-stream")).is_empty());
        assert_eq!(failures(&plugin, upload("text/plain")).len(), 1);
        let empty = Request::new("PUT", "/files/a").with_header("content-length", "0");
        assert_eq!(failures(&plugin, empty)[0]["reason"], "a body is required");
        assert!(
            pets().needs().contains(Needs::REQUEST_BODY),
            "a schema needs the body"
        );
    }

    #[test]
    fn configs_that_cannot_be_enforced_are_refused() {
        let bad = |spec: Value| RequestValidator::init(Config::from_value(spec)).is_err();
        assert!(bad(
            json!({"body": {"content": {"text/plain": {"type": "string"}}}})
        ));
        assert!(bad(json!({"body": {"content": {}}})));
        assert!(bad(
            json!({"parameters": [{"name": "a", "in": "header", "style": "form"}]})
        ));
        assert!(bad(
            json!({"parameters": [{"name": "a", "in": "query", "schema": {"$ref": "#/nowhere"}}]})
        ));
        assert!(bad(json!({"unknown": 1})));
    }
}
