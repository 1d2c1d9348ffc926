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

/// The longest JSON pointer a node may have: with [`MAX_DEPTH`], bounds the
/// work of placing each node (and so the keys' length).
pub const MAX_POINTER: usize = 2048;

/// A collection being read.
struct Open {
    value: Value,
    /// In a mapping, the key waiting for its value.
    key: Option<String>,
    pointer: String,
    /// Its anchor (0: none).
    anchor: usize,
    /// The node count before it opened.
    opened_at: usize,
    /// The deepest nesting among its values so far (0: scalars only).
    depth: usize,
}

/// An anchored value, and what an alias to it costs.
struct Anchored {
    value: Value,
    /// Its values, counted as they were read.
    size: usize,
    /// How deep it nests.
    depth: usize,
}

/// Builds the tree from the parser's events.
#[derive(Default)]
struct Builder {
    open: Vec<Open>,
    root: Option<Value>,
    anchors: HashMap<usize, Anchored>,
    places: BTreeMap<String, Place>,
    /// Nodes so far, aliases counted at their size.
    nodes: usize,
    /// Why the document was refused (too large, too deep, a key it cannot
    /// read); reading stops there.
    refused: Option<(Place, String)>,
    /// Bytes of pointers kept in `places`.
    place_bytes: usize,
}

impl SpannedEventReceiver<'_> for Builder {
    fn on_event(&mut self, event: Event<'_>, span: Span) {
        match event {
            Event::Scalar(text, _, anchor, _) if self.expecting_key() => {
                self.key(text.into_owned(), anchor, span)
            }
            Event::Scalar(text, style, anchor, _) => self.scalar(&text, style, anchor, span),
            Event::SequenceStart(anchor, _) => self.start(Value::Array(Vec::new()), anchor, span),
            Event::MappingStart(anchor, _) => self.start(Value::Object(Map::new()), anchor, span),
            Event::SequenceEnd | Event::MappingEnd => self.end(),
            Event::Alias(anchor) => self.alias(anchor, span),
            _ => {}
        }
    }
}

impl Builder {
    /// A mapping's next key: plain text, not anchored, not given twice.
    fn key(&mut self, key: String, anchor: usize, span: Span) {
        if anchor > 0 {
            return self.refuse(span, "an anchor on a key is not read".to_string());
        }
        let Some(pointer) = self.child_pointer(&escape(&key)) else {
            return self.refuse(
                span,
                format!("keys nest longer than {MAX_POINTER} bytes of path"),
            );
        };
        if let Some(Open {
            value: Value::Object(map),
            ..
        }) = self.open.last()
            && map.contains_key(&key)
        {
            let first = match self.places.get(&pointer) {
                Some((line, column)) => format!(" (first at line {line}, column {column})"),
                None => String::new(),
            };
            return self.refuse(
                span,
                format!("key `{key}` is given twice in one mapping{first}"),
            );
        }
        self.mark(pointer, span);
        if let Some(open) = self.open.last_mut() {
            open.key = Some(key);
        }
    }

    fn scalar(&mut self, text: &str, style: ScalarStyle, anchor: usize, span: Span) {
        if !self.count(1, span) {
            return;
        }
        let Some(pointer) = self.next_pointer() else {
            return self.refuse(
                span,
                format!("values nest longer than {MAX_POINTER} bytes of path"),
            );
        };
        self.mark(pointer, span);
        let value = scalar(text, style);
        if anchor > 0 {
            let anchored = Anchored {
                value: value.clone(),
                size: 1,
                depth: 0,
            };
            self.anchors.insert(anchor, anchored);
        }
        self.put(value, 0);
    }

    fn start(&mut self, empty: Value, anchor: usize, span: Span) {
        if self.expecting_key() {
            return self.refuse(
                span,
                "a key that is not plain text (a complex key) is not read".to_string(),
            );
        }
        if self.open.len() >= MAX_DEPTH {
            return self.refuse(
                span,
                format!("the document nests deeper than {MAX_DEPTH} levels"),
            );
        }
        let opened_at = self.nodes;
        if !self.count(1, span) {
            return;
        }
        let Some(pointer) = self.next_pointer() else {
            return self.refuse(
                span,
                format!("values nest longer than {MAX_POINTER} bytes of path"),
            );
        };
        self.mark(pointer.clone(), span);
        self.open.push(Open {
            value: empty,
            key: None,
            pointer,
            anchor,
            opened_at,
            depth: 0,
        });
    }

    fn end(&mut self) {
        let Some(open) = self.open.pop() else {
            return;
        };
        let depth = open.depth + 1;
        if open.anchor > 0 {
            let size = self.nodes - open.opened_at;
            let anchored = Anchored {
                value: open.value.clone(),
                size,
                depth,
            };
            self.anchors.insert(open.anchor, anchored);
        }
        self.put(open.value, depth);
    }

    /// An alias: a copy of its anchor's value, counted at its size and
    /// depth (an alias to a collection still open has no value yet).
    fn alias(&mut self, anchor: usize, span: Span) {
        if self.expecting_key() {
            return self.refuse(
                span,
                "a key that is not plain text (an alias key) is not read".to_string(),
            );
        }
        let Some(Anchored { size, depth, .. }) = self.anchors.get(&anchor) else {
            return self.refuse(
                span,
                "an alias to a value not read yet (or to its own collection)".to_string(),
            );
        };
        let (size, depth) = (*size, *depth);
        if self.open.len() + depth > MAX_DEPTH {
            return self.refuse(span, format!("the document nests deeper than {MAX_DEPTH} levels (aliases counted at their depth)"));
        }
        if !self.count(size.max(1), span) {
            return;
        }
        let value = self
            .anchors
            .get(&anchor)
            .map(|a| a.value.clone())
            .unwrap_or(Value::Null);
        self.put(value, depth);
    }

    /// Adds `nodes` to the count; false (and the document refused) past
    /// [`MAX_NODES`].
    fn count(&mut self, nodes: usize, span: Span) -> bool {
        self.nodes = self.nodes.saturating_add(nodes);
        if self.nodes > MAX_NODES {
            self.refuse(span, format!("the document expands to more than {MAX_NODES} values (aliases counted at their size)"));
            return false;
        }
        true
    }

    /// The pointer of the next value of the innermost open collection;
    /// `None` past [`MAX_POINTER`].
    fn next_pointer(&self) -> Option<String> {
        match self.open.last() {
            None => Some(String::new()),
            Some(Open {
                value: Value::Array(items),
                ..
            }) => self.child_pointer(&items.len().to_string()),
            Some(Open { key, .. }) => {
                self.child_pointer(&escape(key.as_deref().unwrap_or_default()))
            }
        }
    }

    /// The pointer of `segment` (escaped) under the innermost open
    /// collection; `None` past [`MAX_POINTER`].
    fn child_pointer(&self, segment: &str) -> Option<String> {
        let parent = self.open.last().map_or("", |open| open.pointer.as_str());
        (parent.len() + 1 + segment.len() <= MAX_POINTER).then(|| format!("{parent}/{segment}"))
    }

    /// Whether the next scalar is a mapping's key.
    fn expecting_key(&self) -> bool {
        matches!(
            self.open.last(),
            Some(Open {
                value: Value::Object(_),
                key: None,
                ..
            })
        )
    }

    /// Puts a finished value, `depth` deep, where it belongs.
    fn put(&mut self, value: Value, depth: usize) {
        let Some(open) = self.open.last_mut() else {
            self.root = Some(value);
            return;
        };
        open.depth = open.depth.max(depth);
        match &mut open.value {
            Value::Array(items) => items.push(value),
            Value::Object(map) => {
                if let Some(key) = open.key.take() {
                    map.insert(key, value);
                }
            }
            _ => {}
        }
    }

    /// Keeps `pointer`'s place, within [`MAX_PLACE_BYTES`].
    fn mark(&mut self, pointer: String, span: Span) {
        if self.places.contains_key(&pointer) || self.place_bytes + pointer.len() > MAX_PLACE_BYTES
        {
            return;
        }
        self.place_bytes += pointer.len();
        self.places
            .insert(pointer, (span.start.line(), span.start.col() + 1));
    }

    fn refuse(&mut self, span: Span, why: String) {
        if self.refused.is_none() {
            self.refused = Some(((span.start.line(), span.start.col() + 1), why));
        }
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
    fn aliases_of_empty_collections_are_counted_too() {
        let mut text = String::from("e: &e []\n");
        let mut previous = "e".to_string();
        for level in 1..40 {
            text.push_str(&format!("a{level}: &a{level} [*{previous}, *{previous}]\n"));
            previous = format!("a{level}");
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
    fn aliases_cannot_nest_deeper_than_the_text() {
        let mut text = String::from("a0: &a0 []\n");
        for level in 1..200 {
            text.push_str(&format!("a{level}: &a{level} [*a{}]\n", level - 1));
        }
        let refused = Tree::parse(&text).err();
        assert!(
            refused
                .as_ref()
                .is_some_and(|(_, why)| why.contains("nests deeper")),
            "{refused:?}"
        );
    }

    #[test]
    fn anchors_on_keys_and_aliases_to_open_collections_are_refused() {
        assert!(Tree::parse("&k a: 1\nb: *k\n").is_err());
        assert!(Tree::parse("a: &x [*x]\n").is_err());
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
