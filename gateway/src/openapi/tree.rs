//! A YAML or JSON document read into a `serde_json::Value` together with
//! where each node stands in the text, so a mistake found anywhere in it can
//! be reported with its line and column.
//!
//! `saphyr-parser` gives the events with their spans; the tree is built here
//! with YAML 1.2's core schema for plain scalars (`null`, booleans, numbers),
//! quoted scalars staying strings. JSON is YAML 1.2, so both go through the
//! same parser. Anchors and aliases are resolved; merge keys (`<<`) are not
//! part of YAML 1.2 and stay ordinary keys; only the first document of a
//! stream is read.
//!
//! A document is input the gateway reloads while serving, so reading it is
//! bounded: events are pulled one at a time (no recursion, however deep the
//! text nests), nesting past [`MAX_DEPTH`] and expansion past [`MAX_NODES`]
//! (aliases counted at their size) are refused, and places are kept for at
//! most [`MAX_PLACE_BYTES`] of pointers (deeper nodes then report their
//! nearest placed ancestor). Keys that are not plain text (complex or alias
//! keys) and keys given twice are refused: they would shift or hide
//! settings.

use saphyr_parser::{Event, Parser, ScalarStyle, Span, SpannedEventReceiver};
use serde_json::{Map, Number, Value};
use std::collections::{BTreeMap, HashMap};

/// A line (1-based) and column (1-based, in characters).
pub type Place = (usize, usize);

/// The most nodes a document may expand to, aliases counted at their full
/// size: a few aliases of aliases cannot grow a small file into gigabytes
/// at load (the "billion laughs").
pub const MAX_NODES: usize = 1_000_000;

/// The deepest nesting of collections a document may have.
pub const MAX_DEPTH: usize = 64;

/// The most bytes of JSON pointers kept to place nodes.
pub const MAX_PLACE_BYTES: usize = 32 << 20;

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
        for event in Parser::new_from_str(text) {
            let (event, span) = event.map_err(|error| {
                let marker = error.marker();
                ((marker.line(), marker.col() + 1), error.info().to_string())
            })?;
            if matches!(event, Event::DocumentEnd) {
                break;
            }
            builder.on_event(event, span);
            if let Some(refused) = builder.refused.take() {
                return Err(refused);
            }
        }
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
    /// The anchor of each open collection (0: none), and the node count
    /// when it opened.
    open_anchors: Vec<(usize, usize)>,
    places: BTreeMap<String, Place>,
    /// Nodes so far, aliases counted at their size.
    nodes: usize,
    /// The size of each anchored value, in nodes.
    anchor_sizes: HashMap<usize, usize>,
    /// Why the document was refused (too large, too deep, a key it cannot
    /// read); reading stops there.
    refused: Option<(Place, String)>,
    /// Bytes of pointers kept in `places`.
    place_bytes: usize,
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
        if self.place_bytes + pointer.len() > MAX_PLACE_BYTES {
            return;
        }
        self.place_bytes += pointer.len();
        self.places
            .entry(pointer)
            .or_insert((span.start.line(), span.start.col() + 1));
    }
}

impl<'input> SpannedEventReceiver<'input> for Builder {
    fn on_event(&mut self, event: Event<'input>, span: Span) {
        if !self.within_limits(&event, span) {
            return;
        }
        match event {
            Event::Scalar(text, style, anchor, _) => {
                if self.expecting_key() {
                    self.key(text.into_owned(), span);
                    return;
                }
                let pointer = self.next_pointer();
                self.mark(pointer, span);
                let value = scalar(&text, style);
                if anchor > 0 {
                    self.anchors.insert(anchor, value.clone());
                    self.anchor_sizes.insert(anchor, 1);
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
                self.open_anchors.push((anchor, self.nodes));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some((value, _, _)) = self.open.pop() else {
                    return;
                };
                if let Some((anchor, opened_at)) = self.open_anchors.pop().filter(|a| a.0 > 0) {
                    self.anchors.insert(anchor, value.clone());
                    self.anchor_sizes.insert(anchor, self.nodes - opened_at);
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
    /// A mapping's next key; one given twice is refused.
    fn key(&mut self, key: String, span: Span) {
        let pointer = format!("{}/{}", self.next_pointer_of_map(), escape(&key));
        if let Some(Value::Object(map)) = self.open.last().map(|(v, _, _)| v)
            && map.contains_key(&key)
        {
            let (line, column) = self.places.get(&pointer).copied().unwrap_or((0, 0));
            self.refuse(span, format!("key `{key}` is given twice in one mapping (first at line {line}, column {column})"));
            return;
        }
        self.mark(pointer, span);
        if let Some((_, slot, _)) = self.open.last_mut() {
            *slot = Some(key);
        }
    }

    /// Counts the nodes `event` adds; false (and the document refused) once
    /// it grows past [`MAX_NODES`] or nests deeper than [`MAX_DEPTH`].
    fn within_limits(&mut self, event: &Event<'_>, span: Span) -> bool {
        if self.expecting_key() && !matches!(event, Event::Scalar(..) | Event::MappingEnd) {
            return self.refuse(
                span,
                "a key that is not plain text (a complex or alias key) is not read".to_string(),
            );
        }
        let added = match event {
            Event::Scalar(..) => 1,
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                if self.open.len() >= MAX_DEPTH {
                    return self.refuse(
                        span,
                        format!("the document nests deeper than {MAX_DEPTH} levels"),
                    );
                }
                1
            }
            Event::Alias(anchor) => self.anchor_sizes.get(anchor).copied().unwrap_or(1),
            _ => 0,
        };
        self.nodes = self.nodes.saturating_add(added);
        if self.nodes > MAX_NODES {
            return self.refuse(span, format!("the document expands to more than {MAX_NODES} values (aliases counted at their size)"));
        }
        true
    }

    fn refuse(&mut self, span: Span, why: String) -> bool {
        self.refused = Some(((span.start.line(), span.start.col() + 1), why));
        false
    }

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
    fn aliases_of_aliases_cannot_blow_a_small_file_up() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..10 {
            let refs = vec![format!("*a{}", level - 1); 10].join(", ");
            text.push_str(&format!("a{level}: &a{level} [{refs}]\n"));
        }
        let refused = Tree::parse(&text).err();
        assert!(
            refused
                .as_ref()
                .is_some_and(|(_, why)| why.contains("expands to more than")),
            "{refused:?}"
        );
    }

    #[test]
    fn a_key_given_twice_is_refused_with_both_places() {
        let refused = Tree::parse("paths:\n  /a: {}\n  /a: {}\n").err();
        assert_eq!(
            refused,
            Some((
                (3, 3),
                "key `/a` is given twice in one mapping (first at line 2, column 3)".to_string()
            ))
        );
    }

    #[test]
    fn complex_keys_are_refused() {
        let refused = Tree::parse("a: &x k\n? *x\n: v\n").err();
        assert!(refused.is_some_and(|(at, _)| at.0 == 2), "an alias key");
        let refused = Tree::parse("? [a, b]\n: v\n").err();
        assert!(refused.is_some(), "a sequence as a key");
    }

    #[test]
    fn deep_block_nesting_is_refused_without_recursion() {
        let text = "- ".repeat(100_000) + "x\n";
        let refused = Tree::parse(&text).err();
        assert!(refused.is_some_and(|(_, why)| why.contains("nests deeper")));
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        let refused = Tree::parse(&text).err();
        assert!(
            refused
                .as_ref()
                .is_some_and(|(_, why)| why.contains("nests deeper")),
            "{refused:?}"
        );
    }

    #[test]
    fn a_syntax_error_has_its_place() {
        let error = Tree::parse("a: [1, 2\nb: 3\n").err();
        assert!(matches!(error, Some(((2, _), _))), "{error:?}");
    }
}
