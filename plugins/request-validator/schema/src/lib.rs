//! The schema side of the built-in `request-validator`: schemas compiled
//! with `jsonschema` in the dialect the config names, every `$ref` resolved
//! inside the configured document, and what a parameter's schema says its
//! text converts to. The plugin compiles with it at requests (in wasm); the
//! gateway compiles an API's schemas with it when loading, to report one
//! that cannot be compiled at the document's line.
//!
//! OpenAPI 3.0's Schema Object is JSON Schema draft 4 with a few words of
//! its own; before compiling, `nullable: true` becomes a `null` in `type`
//! (and in `enum`), and the OpenAPI formats `int32` and `int64` become the
//! bounds they mean. Nothing is fetched: a `$ref` outside the document
//! fails the compilation.

use jsonschema::{Draft, PatternOptions, Validator};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Where a compiled schema is put in its root (beside the document's own
/// top-level keys), so the document's `#/...` references resolve.
const SLOT: &str = "x-gateway-validated";

/// How many `$ref`s are followed to find a schema's type for coercion.
const MAX_REF_HOPS: usize = 32;

/// Steps the regular-expression engine may backtrack per match (a pattern
/// that needs more fails to match instead of stalling the worker).
const BACKTRACK_LIMIT: usize = 100_000;

/// The schema dialect of the config's schemas.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
pub enum Dialect {
    /// OpenAPI 3.0's Schema Object (draft 4 with `nullable`).
    #[serde(rename = "openapi-3.0")]
    OpenApi30,
    /// JSON Schema 2020-12 (OpenAPI 3.1's).
    #[default]
    #[serde(rename = "2020-12")]
    Draft202012,
}

/// Compiles `schema`, whose `$ref`s point into `document`.
pub fn compile(dialect: Dialect, document: &Value, schema: &Value) -> Result<Validator, String> {
    compile_prepared(dialect, &prepare(dialect, document.clone()), schema)
}

/// `document` as the validator reads it in `dialect`: OpenAPI 3.0's
/// `nullable` and the `int32`/`int64` formats said in JSON Schema's terms.
/// Done once for a document many schemas point into.
pub fn prepare(dialect: Dialect, mut document: Value) -> Value {
    if dialect == Dialect::OpenApi30 {
        from_openapi_30(&mut document);
    }
    with_format_bounds(&mut document);
    document
}

/// Compiles `schema`, whose `$ref`s point into `document` (already
/// [`prepare`]d).
pub fn compile_prepared(
    dialect: Dialect,
    document: &Value,
    schema: &Value,
) -> Result<Validator, String> {
    let schema = prepare(dialect, schema.clone());
    let mut root = match document {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    root.insert(SLOT.to_string(), schema);
    root.insert("$ref".to_string(), Value::String(format!("#/{SLOT}")));
    let root = Value::Object(root);
    let draft = match dialect {
        Dialect::OpenApi30 => Draft::Draft4,
        Dialect::Draft202012 => Draft::Draft202012,
    };
    jsonschema::options()
        .with_draft(draft)
        .should_validate_formats(true)
        .with_format("uuid", is_uuid)
        .with_pattern_options(PatternOptions::fancy_regex().backtrack_limit(BACKTRACK_LIMIT))
        .build(&root)
        .map_err(|e| e.to_string())
}

/// What the schemas of one config share: their dialect and the document
/// their `$ref`s point into.
#[derive(Debug)]
pub struct Shared {
    /// The dialect.
    pub dialect: Dialect,
    /// The document, [`prepare`]d.
    pub document: Value,
}

impl Shared {
    /// `document` in `dialect`, prepared once for all its schemas.
    pub fn new(dialect: Dialect, document: Value) -> Self {
        Shared {
            dialect,
            document: prepare(dialect, document),
        }
    }
}

/// A schema compiled when it is first needed (an API's entry holds every
/// operation's, and an instance only compiles those of the routes it
/// serves).
#[derive(Debug)]
pub struct Lazy {
    schema: Value,
    shared: std::rc::Rc<Shared>,
    compiled: std::cell::OnceCell<Result<Validator, String>>,
}

impl Lazy {
    /// `schema`, to compile against `shared`.
    pub fn new(shared: &std::rc::Rc<Shared>, schema: Value) -> Self {
        Lazy {
            schema,
            shared: shared.clone(),
            compiled: std::cell::OnceCell::new(),
        }
    }

    /// The compiled schema (compiled now if it was not yet).
    pub fn get(&self) -> Result<&Validator, &str> {
        self.compiled
            .get_or_init(|| {
                compile_prepared(self.shared.dialect, &self.shared.document, &self.schema)
            })
            .as_ref()
            .map_err(String::as_str)
    }
}

/// Whether a body schema constrains nothing (`{}` or `true`): a body of
/// its type is checked by content type alone, and need not be read.
pub fn is_unconstrained(schema: &Value) -> bool {
    schema.as_object().is_some_and(|o| o.is_empty()) || *schema == Value::Bool(true)
}

/// Keywords whose value is a map of names to schemas.
const SCHEMA_MAPS: [&str; 5] = [
    "properties",
    "patternProperties",
    "$defs",
    "definitions",
    "dependentSchemas",
];

/// Keywords whose value is a schema or a list of schemas.
const SUBSCHEMAS: [&str; 15] = [
    "items",
    "additionalItems",
    "prefixItems",
    "additionalProperties",
    "unevaluatedItems",
    "unevaluatedProperties",
    "propertyNames",
    "contains",
    "not",
    "if",
    "then",
    "else",
    "allOf",
    "anyOf",
    "oneOf",
];

/// Calls `visit` on `value` and on every schema inside it, found by
/// keyword position (a property named `nullable` or `default` is a
/// property, and example data is never visited). A document's other parts
/// are walked through as plain JSON until a schema keyword is met.
fn each_schema(value: &mut Value, visit: &mut impl FnMut(&mut serde_json::Map<String, Value>)) {
    match value {
        Value::Object(map) => {
            visit(map);
            for (key, inner) in map.iter_mut() {
                if SCHEMA_MAPS.contains(&key.as_str()) {
                    if let Value::Object(named) = inner {
                        named.values_mut().for_each(|s| each_schema(s, visit));
                    }
                } else if SUBSCHEMAS.contains(&key.as_str()) || !is_keyword(key) {
                    each_schema(inner, visit);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| each_schema(i, visit)),
        _ => {}
    }
}

/// Whether `key` is a schema keyword whose value is not a schema (data,
/// such as `enum` or `example`, or a plain setting): not walked into.
/// Other keys (a document's `components`, `paths`, ...) are walked into.
fn is_keyword(key: &str) -> bool {
    matches!(
        key,
        "example"
            | "examples"
            | "enum"
            | "const"
            | "default"
            | "required"
            | "type"
            | "format"
            | "pattern"
            | "nullable"
            | "discriminator"
            | "xml"
            | "externalDocs"
    ) || key.starts_with("x-")
}

/// `nullable: true` as draft 4 says it: `null` added to `type` and `enum`.
fn from_openapi_30(value: &mut Value) {
    each_schema(value, &mut |map| {
        if map.get("nullable") != Some(&Value::Bool(true)) {
            return;
        }
        map.remove("nullable");
        if let Some(Value::String(one)) = map.get("type") {
            let one = Value::String(one.clone());
            map.insert("type".into(), Value::Array(vec![one, "null".into()]));
        }
        if let Some(Value::Array(values)) = map.get_mut("enum")
            && !values.contains(&Value::Null)
        {
            values.push(Value::Null);
        }
    });
}

/// OpenAPI's `int32` and `int64` formats as the bounds they mean, where the
/// schema sets none itself.
fn with_format_bounds(value: &mut Value) {
    each_schema(value, &mut |map| {
        let bounds = match map.get("format").and_then(Value::as_str) {
            Some("int32") => Some((Value::from(i32::MIN), Value::from(i32::MAX))),
            Some("int64") => Some((Value::from(i64::MIN), Value::from(i64::MAX))),
            _ => None,
        };
        if let Some((low, high)) = bounds {
            map.entry("minimum").or_insert(low);
            map.entry("maximum").or_insert(high);
        }
    });
}

/// RFC 9562's textual form: 8-4-4-4-12 hexadecimal digits.
fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The schema `schema` stands for: itself, or what its `$ref` chain points
/// at in `document` (the last one found when a link is missing).
pub fn resolve<'a>(document: &'a Value, mut schema: &'a Value) -> &'a Value {
    for _ in 0..MAX_REF_HOPS {
        let Some(target) = schema
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix('#'))
            .and_then(|f| percent_encoding::percent_decode_str(f).decode_utf8().ok())
            .and_then(|pointer| document.pointer(&pointer))
        else {
            break;
        };
        schema = target;
    }
    schema
}

/// A scalar type text is converted to before it is validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Kept as text.
    Text,
    /// A whole number, when it reads as one.
    Integer,
    /// A number, when it reads as one.
    Number,
    /// `true` or `false`.
    Boolean,
}

/// What a parameter's schema says its value is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// One value.
    Scalar(Kind),
    /// A list of values.
    Array(Kind),
    /// Named values: the properties the schema lists, with their kinds.
    Object(Vec<(String, Kind)>),
}

/// How many `allOf`, `anyOf` and `oneOf` schemas are looked into for a
/// type, at most (a schema naming itself in its branches ends there).
const MAX_TYPED_VISITS: usize = 32;

/// `schema` (its `$ref`s resolved in `document`), or when it names no type,
/// the first branch of its `allOf`, `anyOf` or `oneOf` that does.
fn typed<'a>(document: &'a Value, schema: &'a Value, budget: &mut usize) -> &'a Value {
    let schema = resolve(document, schema);
    if schema.get("type").is_some() || *budget == 0 {
        return schema;
    }
    *budget -= 1;
    let branches = ["allOf", "anyOf", "oneOf"]
        .iter()
        .filter_map(|k| schema.get(*k).and_then(Value::as_array))
        .flatten();
    for branch in branches {
        let found = typed(document, branch, budget);
        if found.get("type").is_some() {
            return found;
        }
        if *budget == 0 {
            break;
        }
    }
    schema
}

/// [`typed`] with a fresh budget.
fn typed_in<'a>(document: &'a Value, schema: &'a Value) -> &'a Value {
    let mut budget = MAX_TYPED_VISITS;
    typed(document, schema, &mut budget)
}

/// The shape of `schema` (its `$ref`s resolved in `document`).
pub fn shape(document: &Value, schema: &Value) -> Shape {
    let schema = typed_in(document, schema);
    let kind_of = |s: &Value| kind(&type_name(typed_in(document, s)));
    match type_name(schema).as_str() {
        "array" => Shape::Array(schema.get("items").map_or(Kind::Text, kind_of)),
        "object" => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let listed = properties.into_iter().flatten();
            Shape::Object(listed.map(|(n, s)| (n.clone(), kind_of(s))).collect())
        }
        _ => Shape::Scalar(kind(&type_name(schema))),
    }
}

/// A schema's `type`: the string, or the first that is not `null` of a list.
fn type_name(schema: &Value) -> String {
    match schema.get("type") {
        Some(Value::String(name)) => name.clone(),
        Some(Value::Array(names)) => names
            .iter()
            .filter_map(Value::as_str)
            .find(|n| *n != "null")
            .unwrap_or_default()
            .to_string(),
        _ => String::new(),
    }
}

fn kind(type_name: &str) -> Kind {
    match type_name {
        "integer" => Kind::Integer,
        "number" => Kind::Number,
        "boolean" => Kind::Boolean,
        _ => Kind::Text,
    }
}

/// `text` as `kind` says, or as text when it does not read so exactly (the
/// schema then reports the wrong type): an integer is `-?(0|[1-9][0-9]*)`
/// (no `+`, leading zero, space or exponent, which upstreams read
/// differently), a number is JSON's syntax.
pub fn coerce(text: &str, kind: Kind) -> Value {
    let converted = match kind {
        Kind::Text => None,
        Kind::Integer => Some(text)
            .filter(|t| is_integer(t))
            .and_then(|t| serde_json::from_str::<serde_json::Number>(t).ok())
            .map(Value::Number),
        Kind::Number => number(text),
        Kind::Boolean => match text {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            _ => None,
        },
    };
    converted.unwrap_or_else(|| Value::String(text.to_string()))
}

/// Whether `text` is an integer written the one way: `-?(0|[1-9][0-9]*)`.
fn is_integer(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
}

/// `text` as a number when it is one in JSON's syntax, nothing around it
/// (not `inf`, `NaN`, `+1` or ` 1`, which Rust's or JSON's parsers take).
fn number(text: &str) -> Option<Value> {
    let bare = text
        .bytes()
        .all(|b| b.is_ascii_digit() || b"-.eE+".contains(&b));
    let signed = text.starts_with(['-']) || text.starts_with(|c: char| c.is_ascii_digit());
    (bare && signed)
        .then(|| serde_json::from_str::<serde_json::Number>(text).ok())
        .flatten()
        .map(Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn inline_schemas_are_read_in_their_dialect_too() {
        let nullable =
            json!({"type": "object", "properties": {"note": {"type": "string", "nullable": true}}});
        let validator = compile(Dialect::OpenApi30, &json!({}), &nullable).expect("compiles");
        assert!(validator.is_valid(&json!({"note": null})));
        let int32 = json!({"type": "integer", "format": "int32"});
        let validator = compile(Dialect::Draft202012, &json!({}), &int32).expect("compiles");
        assert!(!validator.is_valid(&json!(3_000_000_000_i64)));
        let looping = json!({"components": {"schemas": {"A": {"anyOf": [
            {"$ref": "#/components/schemas/A"}, {"$ref": "#/components/schemas/A"},
            {"$ref": "#/components/schemas/A"}, {"$ref": "#/components/schemas/A"}]}}}});
        let schema = json!({"$ref": "#/components/schemas/A"});
        assert_eq!(
            shape(&looping, &schema),
            Shape::Scalar(Kind::Text),
            "a bounded search"
        );
        let encoded = json!({"paths": {"/items/{id}": {"type": "integer"}}});
        let schema = json!({"$ref": "#/paths/~1items~1%7Bid%7D"});
        assert_eq!(shape(&encoded, &schema), Shape::Scalar(Kind::Integer));
    }

    #[test]
    fn schemas_are_found_by_keyword_position_not_by_name() {
        let mut schema = json!({"type": "object", "properties": {
            "nullable": {"type": "integer", "format": "int32"},
            "default": {"type": "string", "nullable": true},
        }});
        from_openapi_30(&mut schema);
        with_format_bounds(&mut schema);
        assert_eq!(
            schema["properties"]["nullable"]["maximum"],
            json!(i32::MAX),
            "a property named nullable is kept"
        );
        assert_eq!(
            schema["properties"]["default"]["type"],
            json!(["string", "null"])
        );
        let either = json!({"anyOf": [{"type": "integer"}, {"enum": ["all"]}]});
        assert_eq!(shape(&json!({}), &either), Shape::Scalar(Kind::Integer));
    }

    #[test]
    fn nullable_adds_null_to_type_and_enum_but_not_to_examples() {
        let mut schema = json!({
            "type": "string", "nullable": true, "enum": ["a"],
            "example": {"nullable": true, "type": "x"}
        });
        from_openapi_30(&mut schema);
        assert_eq!(schema["type"], json!(["string", "null"]));
        assert_eq!(schema["enum"], json!(["a", null]));
        assert_eq!(schema["example"], json!({"nullable": true, "type": "x"}));
    }

    #[test]
    fn refs_resolve_inside_the_document_in_both_dialects() {
        let document = json!({"components": {"schemas": {
            "Id": {"type": "integer", "format": "int32", "minimum": 1},
            "Pet": {"type": "object", "required": ["id"], "properties": {"id": {"$ref": "#/components/schemas/Id"}}}
        }}});
        let schema = json!({"$ref": "#/components/schemas/Pet"});
        for dialect in [Dialect::OpenApi30, Dialect::Draft202012] {
            let validator = compile(dialect, &document, &schema).expect("compiles");
            assert!(validator.is_valid(&json!({"id": 3})));
            assert!(!validator.is_valid(&json!({"id": 0})));
            assert!(!validator.is_valid(&json!({"id": 3_000_000_000_i64})));
            assert!(!validator.is_valid(&json!({})));
        }
    }

    #[test]
    fn a_ref_outside_the_document_does_not_compile() {
        let outside = json!({"$ref": "https://example.com/schema.json"});
        assert!(compile(Dialect::Draft202012, &json!({}), &outside).is_err());
        let missing = json!({"$ref": "#/components/schemas/Nowhere"});
        assert!(compile(Dialect::OpenApi30, &json!({}), &missing).is_err());
    }

    #[test]
    fn formats_are_asserted() {
        let uuid = compile(
            Dialect::OpenApi30,
            &json!({}),
            &json!({"type": "string", "format": "uuid"}),
        )
        .expect("compiles");
        assert!(uuid.is_valid(&json!("6f1c4a52-9a4e-4c1b-8f53-0c5a2f1d9e77")));
        assert!(!uuid.is_valid(&json!("6f1c4a52")));
        let date = compile(
            Dialect::Draft202012,
            &json!({}),
            &json!({"type": "string", "format": "date"}),
        )
        .expect("compiles");
        assert!(date.is_valid(&json!("2026-12-07")));
        assert!(!date.is_valid(&json!("07/12/2026")));
    }

    #[test]
    fn shapes_follow_refs_and_coercion_keeps_what_does_not_read() {
        let document = json!({"components": {"schemas": {"N": {"type": "integer"}}}});
        let array = json!({"type": "array", "items": {"$ref": "#/components/schemas/N"}});
        assert_eq!(shape(&document, &array), Shape::Array(Kind::Integer));
        assert_eq!(coerce("12", Kind::Integer), json!(12));
        assert_eq!(coerce("1.5", Kind::Number), json!(1.5));
        assert_eq!(coerce("inf", Kind::Number), json!("inf"));
        assert_eq!(coerce("12a", Kind::Integer), json!("12a"));
        for odd in ["+5", " 5", "007", "1e2", "100.0", "-", ""] {
            assert_eq!(
                coerce(odd, Kind::Integer),
                json!(odd),
                "{odd:?} is not an integer as written"
            );
        }
        assert_eq!(coerce("-3", Kind::Integer), json!(-3));
        assert_eq!(coerce("+1.5", Kind::Number), json!("+1.5"));
        assert_eq!(coerce("1e2", Kind::Number), json!(100.0));
        assert_eq!(coerce("true", Kind::Boolean), json!(true));
        assert_eq!(coerce("007", Kind::Text), json!("007"));
    }
}
