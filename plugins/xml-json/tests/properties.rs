//! Round trips over generated documents (proptest):
//!
//! - XML -> JSON -> XML gives back the very text, for XML in the mapping's
//!   canonical form (same-name siblings adjacent, text after children): the
//!   default mapping loses nothing of elements, attributes, text, namespaces.
//! - JSON -> XML -> JSON gives back the very text, for JSON the mapping can
//!   carry (with `recognize` on), numbers of any size and precision included.
//! - For any JSON, one trip through XML reaches a fixed point.
//! - No input, however mangled, panics.

use plugin_sdk::Config;
use plugin_xml_json::{Mapping, Options, json_to_xml, xml_to_json};
use proptest::prelude::*;
use serde_json::json;

fn mapping(config: serde_json::Value) -> Mapping {
    Options::from_config(&Config::from_value(config))
        .unwrap_or_else(|e| panic!("{e}"))
        .mapping
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("UTF-8")
}

// ---------------------------------------------------------------- XML side

#[derive(Debug, Clone)]
struct Element {
    name: String,
    attributes: Vec<(String, String)>,
    children: Vec<Element>,
    text: Option<String>,
}

fn element_name() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "c", "p:a", "q:b", "x-y", "_z", "é"]).prop_map(String::from)
}

fn attributes() -> impl Strategy<Value = Vec<(String, String)>> {
    let name = prop::sample::select(vec!["id", "p:id", "lang", "xmlns:p", "xmlns", "v"]);
    prop::collection::btree_map(name, "[a-z0-9 <>&\"'\t\n\r\\]é😀]{0,8}", 0..4)
        .prop_map(|map| map.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// Character data: anything XML can carry, whitespace included.
fn chars() -> impl Strategy<Value = String> {
    "[a-z0-9 <>&\"'\t\n\r\\]é😀]{1,12}"
}

fn element() -> impl Strategy<Value = Element> {
    let leaf = (element_name(), attributes(), prop::option::of(chars())).prop_map(
        |(name, attributes, text)| Element {
            name,
            attributes,
            children: Vec::new(),
            text,
        },
    );
    leaf.prop_recursive(5, 48, 5, |inner| {
        (
            element_name(),
            attributes(),
            prop::collection::vec(inner, 1..5),
            // Beside elements, whitespace-only text is indentation.
            prop::option::of(chars().prop_filter("not only whitespace", |t| !t.trim().is_empty())),
        )
            .prop_map(|(name, attributes, children, text)| Element {
                name,
                attributes,
                children: canonical_order(children),
                text,
            })
    })
}

/// Same-name siblings next to each other, in order of first appearance: the
/// order the JSON object gives them back in.
fn canonical_order(children: Vec<Element>) -> Vec<Element> {
    let mut names: Vec<String> = Vec::new();
    for child in &children {
        if !names.contains(&child.name) {
            names.push(child.name.clone());
        }
    }
    names
        .iter()
        .flat_map(|name| children.iter().filter(move |c| &c.name == name).cloned())
        .collect()
}

fn escape(text: &str, attribute: bool) -> String {
    let mut out = String::new();
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#xD;"),
            '"' if attribute => out.push_str("&quot;"),
            '\t' if attribute => out.push_str("&#x9;"),
            '\n' if attribute => out.push_str("&#xA;"),
            c => out.push(c),
        }
    }
    out
}

fn write_xml(element: &Element, out: &mut String) {
    out.push('<');
    out.push_str(&element.name);
    for (name, value) in &element.attributes {
        out.push_str(&format!(" {name}=\"{}\"", escape(value, true)));
    }
    if element.children.is_empty() && element.text.is_none() {
        out.push_str("/>");
        return;
    }
    out.push('>');
    for child in &element.children {
        write_xml(child, out);
    }
    if let Some(text) = &element.text {
        out.push_str(&escape(text, false));
    }
    out.push_str(&format!("</{}>", element.name));
}

// --------------------------------------------------------------- JSON side

/// JSON with members in order (serde_json's map would sort them).
#[derive(Debug, Clone)]
enum Json {
    Null,
    Bool(bool),
    Number(String),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Number(n) => out.push_str(n),
            Json::String(s) => out.push_str(&serde_json::to_string(s).expect("a string")),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Json::Object(members) => {
                out.push('{');
                for (i, (key, value)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(key).expect("a string"));
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
        }
    }

    fn text(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }
}

/// Numbers in JSON's grammar, far past what an f64 holds.
fn number() -> impl Strategy<Value = Json> {
    "-?(0|[1-9][0-9]{0,30})(\\.[0-9]{1,12})?([eE][+-]?[0-9]{1,4})?".prop_map(Json::Number)
}

/// Strings that `recognize` leaves alone (they start with a letter and are
/// not `true`, `false` or `null`).
fn plain_string() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9 <>&\"'\t\n\r\\]é😀]{0,10}".prop_filter("not a literal", |s| {
        !["true", "false", "null"].contains(&s.as_str())
    })
}

fn scalar() -> impl Strategy<Value = Json> {
    prop_oneof![
        number(),
        any::<bool>().prop_map(Json::Bool),
        plain_string().prop_map(Json::String)
    ]
}

/// A value the mapping carries exactly, with `recognize` on: what XML -> JSON
/// itself produces.
fn carried_value() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![Just(Json::Null), scalar()];
    leaf.prop_recursive(4, 40, 4, |inner| {
        let attribute = (
            prop::sample::select(vec!["id", "p:v", "n"]),
            prop_oneof![scalar(), Just(Json::String(String::new()))],
        );
        let child = (
            element_name(),
            prop_oneof![
                3 => inner.clone(),
                1 => prop::collection::vec(inner, 2..4).prop_map(Json::Array),
            ],
        );
        (
            prop::collection::btree_map(attribute.0, attribute.1, 0..3),
            prop::collection::btree_map(child.0, child.1, 0..4),
            prop::option::of(scalar()),
        )
            .prop_filter("an element with attributes or children", |(a, c, _)| {
                !a.is_empty() || !c.is_empty()
            })
            .prop_map(|(attributes, children, text)| {
                let mut members: Vec<(String, Json)> = attributes
                    .into_iter()
                    .map(|(k, v)| (format!("@{k}"), v))
                    .collect();
                members.extend(children);
                members.extend(text.map(|t| ("#text".to_string(), t)));
                Json::Object(members)
            })
    })
}

/// Any JSON whose keys XML can name (element names, `@` + names, `#text`,
/// the last two with scalars: XML has nothing else for them).
fn any_json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        number(),
        "[a-z0-9 <>&\"'\t\n\r\\]é😀]{0,8}".prop_map(Json::String),
    ];
    leaf.clone().prop_recursive(4, 48, 5, move |inner| {
        let member = prop_oneof![
            3 => (element_name(), inner.clone()),
            1 => (prop::sample::select(vec!["@id", "@p:v", "#text"]).prop_map(String::from), leaf.clone()),
        ];
        prop_oneof![
            prop::collection::vec(inner, 0..4).prop_map(Json::Array),
            prop::collection::vec(member, 0..5).prop_map(Json::Object),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn canonical_xml_round_trips_exactly(root in element()) {
        let mut xml = String::new();
        write_xml(&root, &mut xml);
        let json = xml_to_json(xml.as_bytes(), &Mapping::default()).map_err(|e| TestCaseError::fail(format!("{e}: {xml}")))?;
        let bare = mapping(json!({ "declaration": false }));
        let back = json_to_xml(&json, &bare).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(text(back), xml);
    }

    #[test]
    fn carried_json_round_trips_exactly(name in element_name(), value in carried_value()) {
        let document = Json::Object(vec![(name, value)]).text();
        let xml = json_to_xml(document.as_bytes(), &Mapping::default()).map_err(|e| TestCaseError::fail(format!("{e}: {document}")))?;
        let recognize = mapping(json!({ "recognize": { "numbers": true, "booleans": true, "null": true } }));
        let back = xml_to_json(&xml, &recognize).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(text(back), document);
    }

    #[test]
    fn one_trip_reaches_a_fixed_point(value in any_json(), recognize in any::<bool>()) {
        let config = mapping(json!({ "recognize": { "numbers": recognize, "booleans": recognize, "null": recognize } }));
        let once = xml_to_json(&json_to_xml(value.text().as_bytes(), &config).map_err(|e| TestCaseError::fail(e.to_string()))?, &config)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let twice = xml_to_json(&json_to_xml(&once, &config).map_err(|e| TestCaseError::fail(e.to_string()))?, &config)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(text(twice), text(once));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = xml_to_json(&bytes, &Mapping::default());
        let _ = json_to_xml(&bytes, &Mapping::default());
    }

    #[test]
    fn mangled_documents_never_panic(root in element(), at in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<bool>()) {
        let mut xml = String::new();
        write_xml(&root, &mut xml);
        let mut bytes = xml.into_bytes();
        let i = at.index(bytes.len());
        if cut { bytes.truncate(i) } else { bytes[i] = byte }
        let _ = xml_to_json(&bytes, &Mapping::default());
        let json = Json::Object(vec![("a".into(), Json::String(String::from_utf8_lossy(&bytes).into_owned()))]).text();
        let mut json = json.into_bytes();
        let j = at.index(json.len());
        json[j] = byte;
        let _ = json_to_xml(&json, &Mapping::default());
    }
}
