//! A YAML or JSON document read into a `serde_json::Value` together with
//! where each node stands in the text, so a mistake found anywhere in it can
//! be reported with its line and column.
//!
//! `saphyr-parser` gives the events with their spans; the tree is built here
//! with YAML 1.2's core schema for plain scalars (`null`, booleans, numbers),
//! quoted scalars staying strings. JSON is YAML 1.2, so both go through the
//! same parser. Anchors and aliases are resolved; merge keys (`<<`) are not
//! part of YAML 1.2 and stay ordinary keys.

use saphyr_parser::{Event, Parser, ScalarStyle, Span, SpannedEventReceiver};
use serde_json::{Map, Number, Value};
use std::collections::{BTreeMap, HashMap};

/// A line (1-based) and column (1-based, in characters).
pub type Place = (usize, usize);

/// A document's tree and the place of each node, by JSON pointer (a map
/// value's place is its key's).
#[derive(Debug)]
pub struct Tree {
    /// The document.
    pub root: Value,
    places: BTreeMap<String, Place>,
}

impl Tree {
    /// Parses `text`; a syntax error comes back with its place.
    pub fn parse(text: &str) -> Result<Tree, (Place, String)> {
        let mut builder = Builder::default();
        Parser::new_from_str(text)
            .load(&mut builder, false)
            .map_err(|error| {
                let marker = error.marker();
                ((marker.line(), marker.col() + 1), error.info().to_string())
            })?;
        Ok(Tree {
            root: builder.root.unwrap_or(Value::Null),
            places: builder.places,
        })
    }

    /// Where the node at `pointer` stands, or the nearest node above it that
    /// has a place (the document's start at worst).
    pub fn place(&self, pointer: &str) -> Place {
        let mut pointer = pointer;
        loop {
            if let Some(place) = self.places.get(pointer) {
                return *place;
            }
            match pointer.rfind('/') {
                Some(cut) => pointer = &pointer[..cut],
                None => return (1, 1),
            }
        }
    }
}

/// `segment` as one JSON pointer segment (`~` and `/` escaped).
pub fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// Builds the tree from the parser's events.
#[derive(Default)]
struct Builder {
    /// Open collections: the value so far, the key waiting for its value (in
    /// a mapping), and the collection's pointer.
    open: Vec<(Value, Option<String>, String)>,
    root: Option<Value>,
    anchors: HashMap<usize, Value>,
    /// The anchor of each open collection (0: none).
    open_anchors: Vec<usize>,
    places: BTreeMap<String, Place>,
}

impl Builder {
    /// The pointer of the next value of the innermost open collection.
    fn next_pointer(&self) -> String {
        match self.open.last() {
            None => String::new(),
            Some((Value::Array(items), _, pointer)) => format!("{pointer}/{}", items.len()),
            Some((_, key, pointer)) => {
                format!("{pointer}/{}", escape(key.as_deref().unwrap_or_default()))
            }
        }
    }

    /// Whether the next scalar is a mapping's key.
    fn expecting_key(&self) -> bool {
        matches!(self.open.last(), Some((Value::Object(_), None, _)))
    }

    /// Puts a finished value where it belongs.
    fn put(&mut self, value: Value) {
        match self.open.last_mut() {
            None => self.root = Some(value),
            Some((Value::Array(items), _, _)) => items.push(value),
            Some((Value::Object(map), key, _)) => {
                if let Some(key) = key.take() {
                    map.insert(key, value);
                }
            }
            Some(_) => {}
        }
    }

    fn mark(&mut self, pointer: String, span: Span) {
        self.places
            .entry(pointer)
            .or_insert((span.start.line(), span.start.col() + 1));
    }
}

impl<'input> SpannedEventReceiver<'input> for Builder {
    fn on_event(&mut self, event: Event<'input>, span: Span) {
        match event {
            Event::Scalar(text, style, anchor, _) => {
                if self.expecting_key() {
                    let pointer = format!("{}/{}", self.next_pointer_of_map(), escape(&text));
                    self.mark(pointer, span);
                    if let Some((_, key, _)) = self.open.last_mut() {
                        *key = Some(text.into_owned());
                    }
                    return;
                }
                let pointer = self.next_pointer();
                self.mark(pointer, span);
                let value = scalar(&text, style);
                if anchor > 0 {
                    self.anchors.insert(anchor, value.clone());
                }
                self.put(value);
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                let pointer = self.next_pointer();
                self.mark(pointer.clone(), span);
                let empty = match event {
                    Event::SequenceStart(..) => Value::Array(Vec::new()),
                    _ => Value::Object(Map::new()),
                };
                self.open.push((empty, None, pointer));
                self.open_anchors.push(anchor);
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some((value, _, _)) = self.open.pop() else {
                    return;
                };
                if let Some(anchor) = self.open_anchors.pop().filter(|a| *a > 0) {
                    self.anchors.insert(anchor, value.clone());
                }
                self.put(value);
            }
            Event::Alias(anchor) => {
                let value = self.anchors.get(&anchor).cloned().unwrap_or(Value::Null);
                self.put(value);
            }
            _ => {}
        }
    }
}

impl Builder {
    /// The pointer of the innermost open mapping.
    fn next_pointer_of_map(&self) -> String {
        self.open
            .last()
            .map(|(_, _, p)| p.clone())
            .unwrap_or_default()
    }
}

/// A scalar by YAML 1.2's core schema: plain `null`/`~`/empty, `true`,
/// `false`, integers and floats are typed; anything quoted is a string.
fn scalar(text: &str, style: ScalarStyle) -> Value {
    if style != ScalarStyle::Plain {
        return Value::String(text.to_string());
    }
    match text {
        "null" | "Null" | "NULL" | "~" | "" => Value::Null,
        "true" | "True" | "TRUE" => Value::Bool(true),
        "false" | "False" | "FALSE" => Value::Bool(false),
        _ => text
            .parse::<i64>()
            .map(Value::from)
            .ok()
            .or_else(|| {
                let looks_numeric = text
                    .starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+' || c == '.');
                looks_numeric
                    .then(|| text.parse::<f64>().ok())
                    .flatten()
                    .and_then(Number::from_f64)
                    .map(Value::Number)
            })
            .unwrap_or_else(|| Value::String(text.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "openapi: 3.0.3\npaths:\n  /users/{id}:\n    get:\n      operationId: getUser\n      security:\n        - key: []\n";
    const JSON: &str = "{\n  \"openapi\": \"3.1.0\",\n  \"paths\": {\n    \"/users/{id}\": {\"get\": {\"operationId\": \"getUser\"}}\n  }\n}\n";

    #[test]
    fn yaml_nodes_have_their_places() {
        let tree = Tree::parse(YAML).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(tree.root["openapi"], "3.0.3");
        assert_eq!(
            tree.root["paths"]["/users/{id}"]["get"]["operationId"],
            "getUser"
        );
        assert_eq!(tree.place("/paths/~1users~1{id}/get"), (4, 5));
        assert_eq!(tree.place("/paths/~1users~1{id}/get/security/0"), (7, 11));
        assert_eq!(tree.place("/paths/~1users~1{id}/get/nothing/here"), (4, 5));
    }

    #[test]
    fn json_is_read_the_same_way() {
        let tree = Tree::parse(JSON).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(tree.root["openapi"], "3.1.0");
        assert_eq!(tree.place("/paths/~1users~1{id}"), (4, 5));
        assert_eq!(tree.place("/paths/~1users~1{id}/get/operationId"), (4, 29));
    }

    #[test]
    fn plain_scalars_are_typed_and_quoted_ones_are_strings() {
        let tree = Tree::parse("a: 1\nb: '1'\nc: true\nd: 1.5\ne: ~\nf: 3.0.3\n")
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(tree.root["a"], 1);
        assert_eq!(tree.root["b"], "1");
        assert_eq!(tree.root["c"], true);
        assert_eq!(tree.root["d"], 1.5);
        assert_eq!(tree.root["e"], Value::Null);
        assert_eq!(tree.root["f"], "3.0.3");
    }

    #[test]
    fn a_syntax_error_has_its_place() {
        let error = Tree::parse("a: [1, 2\nb: 3\n").err();
        assert!(matches!(error, Some(((2, _), _))), "{error:?}");
    }
}
