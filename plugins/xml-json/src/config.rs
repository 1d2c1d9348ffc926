//! The plugin's settings: parsed and checked once, at `init`, into
//! [`Options`] that the request path only reads.

use crate::error::ConvertError;
use crate::media_type::MediaRange;
use crate::names::{is_name, is_name_start, local_name};
use plugin_sdk::Config;
use serde::Deserialize;

/// What a phase does to a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// Leave it.
    None,
    /// JSON in, XML out.
    JsonToXml,
    /// XML in, JSON out.
    XmlToJson,
}

/// Which scalars become JSON numbers, booleans and nulls instead of strings.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Recognize {
    /// Text in JSON's number grammar becomes a number, written with its own
    /// digits (so never rounded).
    pub numbers: bool,
    /// `true` and `false` become booleans.
    pub booleans: bool,
    /// `null` becomes null.
    pub null: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default = "none")]
    request: Direction,
    #[serde(default = "xml_to_json")]
    response: Direction,
    #[serde(default = "default_xml_types")]
    xml_types: Vec<String>,
    #[serde(default = "default_json_types")]
    json_types: Vec<String>,
    #[serde(default = "default_xml_content_type")]
    xml_content_type: String,
    #[serde(default = "default_json_content_type")]
    json_content_type: String,
    #[serde(default = "default_attribute_prefix")]
    attribute_prefix: String,
    #[serde(default = "default_text_key")]
    text_key: String,
    #[serde(default)]
    namespaces: Namespaces,
    #[serde(default)]
    arrays: Vec<String>,
    #[serde(default)]
    recognize: Recognize,
    #[serde(default)]
    trim_whitespace: bool,
    #[serde(default = "default_root")]
    root: String,
    #[serde(default = "default_array_item")]
    array_item: String,
    #[serde(default = "yes")]
    declaration: bool,
    #[serde(default)]
    pretty: bool,
    #[serde(default)]
    allow_doctype: bool,
    #[serde(default = "default_max_depth")]
    max_depth: usize,
    #[serde(default = "default_max_elements")]
    max_elements: usize,
    #[serde(default = "default_max_attributes")]
    max_attributes: usize,
    #[serde(default = "default_max_name_length")]
    max_name_length: usize,
    /// Bytes as an integer, or a size string (`"8MiB"`): untyped here.
    #[serde(default)]
    max_output: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Namespaces {
    #[default]
    Keep,
    Strip,
}

fn none() -> Direction {
    Direction::None
}
fn xml_to_json() -> Direction {
    Direction::XmlToJson
}
fn default_xml_types() -> Vec<String> {
    ["application/xml", "text/xml", "application/*+xml"]
        .map(String::from)
        .to_vec()
}
fn default_json_types() -> Vec<String> {
    ["application/json", "application/*+json"]
        .map(String::from)
        .to_vec()
}
fn default_xml_content_type() -> String {
    "application/xml".to_string()
}
fn default_json_content_type() -> String {
    "application/json".to_string()
}
fn default_attribute_prefix() -> String {
    "@".to_string()
}
fn default_text_key() -> String {
    "#text".to_string()
}
fn default_root() -> String {
    "root".to_string()
}
fn default_array_item() -> String {
    "item".to_string()
}
fn yes() -> bool {
    true
}
fn default_max_depth() -> usize {
    64
}
fn default_max_elements() -> usize {
    100_000
}
fn default_max_attributes() -> usize {
    256
}
fn default_max_name_length() -> usize {
    256
}
const DEFAULT_MAX_OUTPUT: usize = 8 << 20;

/// A size: bytes as an integer, or a number with a unit, as the gateway's own
/// sizes (`"512KiB"`, `"8MiB"`).
fn parse_size(key: &str, value: &serde_json::Value) -> Result<usize, String> {
    let bytes =
        plugin_sdk::units::size_from_json(value).map_err(|e| format!("xml-json: `{key}`: {e}"))?;
    usize::try_from(bytes).map_err(|_| format!("xml-json: `{key}`: {bytes} bytes is too large"))
}

/// Nesting beyond this would risk the converters' recursion in the plugin's
/// stack; no real document comes near it.
const DEEPEST: usize = 1000;

/// Bounds on a document, both directions.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Element (XML) or array/object (JSON) nesting.
    pub max_depth: usize,
    /// Elements read from XML, or values read from JSON.
    pub max_elements: usize,
    /// Attributes on one element (XML) or attribute keys in one object (JSON).
    pub max_attributes: usize,
    /// Bytes in one element or attribute name (JSON keys included).
    pub max_name_length: usize,
    /// Bytes in the converted body.
    pub max_output: usize,
}

/// A path whose elements always become arrays: `/a/b/c` from the root,
/// `//b/c` anywhere; a segment `*` matches any name.
#[derive(Debug, Clone)]
pub struct ArrayPath {
    anywhere: bool,
    segments: Vec<String>,
}

impl ArrayPath {
    fn parse(text: &str) -> Result<ArrayPath, String> {
        let bad = |why: &str| {
            Err(format!(
                "xml-json: invalid path `{text}` in `arrays`: {why}; expected `/root/items/item`, `//item` or `/root/*/item`"
            ))
        };
        let (anywhere, rest) = match text.strip_prefix("//") {
            Some(rest) => (true, rest),
            None => match text.strip_prefix('/') {
                Some(rest) => (false, rest),
                None => return bad("it must start with `/` or `//`"),
            },
        };
        let segments: Vec<String> = rest.split('/').map(String::from).collect();
        if let Some(segment) = segments.iter().find(|s| *s != "*" && !is_name(s)) {
            return bad(&format!("`{segment}` is not an element name"));
        }
        Ok(ArrayPath { anywhere, segments })
    }

    /// Whether an element called `name` under `ancestors` (root first) is
    /// forced to an array.
    pub fn matches<'p>(
        &self,
        ancestors: impl ExactSizeIterator<Item = &'p str> + DoubleEndedIterator,
        name: &str,
    ) -> bool {
        let Some((last, rest)) = self.segments.split_last() else {
            return false;
        };
        let depth = ancestors.len() + 1;
        if depth < self.segments.len() || (!self.anywhere && depth != self.segments.len()) {
            return false;
        }
        let fits = |segment: &String, name: &str| segment == "*" || segment == name;
        fits(last, name)
            && ancestors
                .rev()
                .zip(rest.iter().rev())
                .all(|(n, s)| fits(s, n))
    }
}

/// How documents map, both directions.
#[derive(Debug, Clone)]
pub struct Mapping {
    /// Prefix of attribute keys (`@`).
    pub attribute_prefix: String,
    /// Key of an element's text when it has attributes or children (`#text`).
    pub text_key: String,
    /// Drop namespace prefixes and declarations.
    pub strip_namespaces: bool,
    /// Elements that are always arrays (XML -> JSON).
    pub arrays: Vec<ArrayPath>,
    /// Scalars recognised in XML text (XML -> JSON).
    pub recognize: Recognize,
    /// Trim XML whitespace around text (XML -> JSON).
    pub trim_whitespace: bool,
    /// Root element when the JSON is not one object with one key (JSON -> XML).
    pub root: String,
    /// Element name of array items that have no key (JSON -> XML).
    pub array_item: String,
    /// Write `<?xml version="1.0" encoding="UTF-8"?>` (JSON -> XML).
    pub declaration: bool,
    /// Indent the output.
    pub pretty: bool,
    /// Skip a DOCTYPE (never processed) rather than refuse the document.
    pub allow_doctype: bool,
    /// Document bounds.
    pub limits: Limits,
}

impl Default for Mapping {
    fn default() -> Self {
        Options::from_config(&Config::from_json("{}"))
            .map(|options| options.mapping)
            .unwrap_or_else(|e| unreachable!("the defaults are valid: {e}"))
    }
}

/// The checked settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// What the request phase does.
    pub request: Direction,
    /// What the response phase does.
    pub response: Direction,
    /// Bodies read as XML.
    pub xml_types: Vec<MediaRange>,
    /// Bodies read as JSON.
    pub json_types: Vec<MediaRange>,
    /// `Content-Type` of XML the plugin writes.
    pub xml_content_type: String,
    /// `Content-Type` of JSON the plugin writes.
    pub json_content_type: String,
    /// The mapping.
    pub mapping: Mapping,
}

impl Options {
    /// Parses and checks the entry's `config`.
    pub fn from_config(config: &Config) -> Result<Options, String> {
        let s: Settings = config.parse().map_err(|e| format!("xml-json: {e}"))?;
        if s.request == Direction::None && s.response == Direction::None {
            return Err(
                "xml-json: `request` and `response` are both \"none\": nothing to convert; set one to \"json-to-xml\" or \"xml-to-json\""
                    .into(),
            );
        }
        let xml_types = media_ranges("xml_types", &s.xml_types)?;
        let json_types = media_ranges("json_types", &s.json_types)?;
        for (key, value) in [
            ("xml_content_type", &s.xml_content_type),
            ("json_content_type", &s.json_content_type),
        ] {
            if MediaRange::parse(value).is_none_or(|range| range.is_wildcard()) {
                return Err(format!(
                    "xml-json: `{key}` = `{value}` is not a media type such as `application/xml; charset=utf-8`"
                ));
            }
        }
        check_keys(&s.attribute_prefix, &s.text_key)?;
        let limits = limits(&s)?;
        for (key, name) in [("root", &s.root), ("array_item", &s.array_item)] {
            if !is_name(name) || name.len() > s.max_name_length {
                return Err(format!(
                    "xml-json: `{key}` = `{name}` is not an XML element name (of at most `max_name_length` bytes)"
                ));
            }
        }
        Ok(Options {
            request: s.request,
            response: s.response,
            xml_types,
            json_types,
            xml_content_type: s.xml_content_type,
            json_content_type: s.json_content_type,
            mapping: Mapping {
                arrays: s
                    .arrays
                    .iter()
                    .map(|p| ArrayPath::parse(p))
                    .collect::<Result<_, _>>()?,
                attribute_prefix: s.attribute_prefix,
                text_key: s.text_key,
                strip_namespaces: s.namespaces == Namespaces::Strip,
                recognize: s.recognize,
                trim_whitespace: s.trim_whitespace,
                root: s.root,
                array_item: s.array_item,
                declaration: s.declaration,
                pretty: s.pretty,
                allow_doctype: s.allow_doctype,
                limits,
            },
        })
    }
}

/// A list of media ranges, not empty, each parsed.
fn media_ranges(key: &str, list: &[String]) -> Result<Vec<MediaRange>, String> {
    if list.is_empty() {
        return Err(format!(
            "xml-json: `{key}` is empty: list at least one media type"
        ));
    }
    list.iter()
        .map(|text| {
            MediaRange::parse(text).ok_or_else(|| {
                format!(
                    "xml-json: `{text}` in `{key}` is not a media type: expected `type/subtype`, `type/*+suffix` or `type/*`"
                )
            })
        })
        .collect()
}

/// The keys JSON gives attributes and text, which must never be mistaken
/// for element names (nor for each other).
fn check_keys(attribute_prefix: &str, text_key: &str) -> Result<(), String> {
    if attribute_prefix.chars().next().is_none_or(is_name_start) {
        return Err(format!(
            "xml-json: `attribute_prefix` = `{attribute_prefix}` must be non-empty and must not start with a character that can start an XML name; `@` is usual"
        ));
    }
    if text_key.is_empty() || is_name(text_key) || text_key.starts_with(attribute_prefix) {
        return Err(format!(
            "xml-json: `text_key` = `{text_key}` must be non-empty, not an XML name and not start with `attribute_prefix`; `#text` is usual"
        ));
    }
    Ok(())
}

/// The conversion's limits, each at least 1, the depth at most `DEEPEST`.
fn limits(s: &Settings) -> Result<Limits, String> {
    let max_output = match &s.max_output {
        None => DEFAULT_MAX_OUTPUT,
        Some(value) => parse_size("max_output", value)?,
    };
    for (key, limit) in [
        ("max_depth", s.max_depth),
        ("max_elements", s.max_elements),
        ("max_attributes", s.max_attributes),
        ("max_name_length", s.max_name_length),
        ("max_output", max_output),
    ] {
        if limit == 0 {
            return Err(format!("xml-json: `{key}` must be at least 1"));
        }
    }
    if s.max_depth > DEEPEST {
        return Err(format!("xml-json: `max_depth` must be at most {DEEPEST}"));
    }
    Ok(Limits {
        max_depth: s.max_depth,
        max_elements: s.max_elements,
        max_attributes: s.max_attributes,
        max_name_length: s.max_name_length,
        max_output,
    })
}

impl Mapping {
    /// Checks `name` and returns it as it becomes a key: its local part when
    /// namespaces are stripped.
    pub fn key_name<'n>(&self, name: &'n str) -> Result<&'n str, ConvertError> {
        // The length first: a long name is refused as long, whatever it holds.
        if name.len() <= self.limits.max_name_length && !is_name(name) {
            return Err(ConvertError::invalid_name(name));
        }
        self.key_of_name(name)
    }

    /// [`Mapping::key_name`] for a name already known to be an XML `Name`.
    #[inline]
    pub fn key_of_name<'n>(&self, name: &'n str) -> Result<&'n str, ConvertError> {
        if name.len() > self.limits.max_name_length {
            return Err(ConvertError::NameTooLong(self.limits.max_name_length));
        }
        if !self.strip_namespaces {
            return Ok(name);
        }
        let local = local_name(name);
        if !is_name(local) {
            return Err(ConvertError::invalid_name(name));
        }
        Ok(local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path(text: &str) -> ArrayPath {
        ArrayPath::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn at(p: &ArrayPath, names: &[&str]) -> bool {
        let (name, ancestors) = names.split_last().expect("a path");
        p.matches(ancestors.iter().copied(), name)
    }

    #[test]
    fn array_paths() {
        let abs = path("/rss/channel/item");
        assert!(at(&abs, &["rss", "channel", "item"]));
        assert!(!at(&abs, &["x", "rss", "channel", "item"]));
        assert!(!at(&abs, &["rss", "channel"]));
        let star = path("/a/*/c");
        assert!(at(&star, &["a", "b", "c"]));
        assert!(!at(&star, &["a", "c"]));
        let anywhere = path("//item");
        assert!(at(&anywhere, &["item"]));
        assert!(at(&anywhere, &["a", "b", "item"]));
        assert!(!at(&anywhere, &["item", "b"]));
        assert!(at(
            &path("//soap:Body/*"),
            &["soap:Envelope", "soap:Body", "x"]
        ));
        for bad in ["item", "/a//b", "/a/1b", "/", "//"] {
            assert!(ArrayPath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        for (value, bytes) in [
            (json!(1000), 1000),
            (json!("1000"), 1000),
            (json!("512KiB"), 512 << 10),
            (json!("8 MiB"), 8 << 20),
            (json!("2MB"), 2_000_000),
            (json!("1GiB"), 1 << 30),
        ] {
            assert_eq!(parse_size("max_output", &value), Ok(bytes), "{value}");
        }
        for bad in [
            json!(-1),
            json!(1.5),
            json!("1.5MiB"),
            json!("MiB"),
            json!("8mib"),
            json!(true),
        ] {
            assert!(parse_size("max_output", &bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let m = Mapping::default();
        assert_eq!(
            (m.attribute_prefix.as_str(), m.text_key.as_str()),
            ("@", "#text")
        );
        assert_eq!((m.root.as_str(), m.array_item.as_str()), ("root", "item"));
        assert!(
            m.declaration
                && !m.pretty
                && !m.trim_whitespace
                && !m.allow_doctype
                && !m.strip_namespaces
        );
        let r = m.recognize;
        assert!(!r.numbers && !r.booleans && !r.null);
        let l = m.limits;
        assert_eq!(
            (
                l.max_depth,
                l.max_elements,
                l.max_attributes,
                l.max_name_length,
                l.max_output
            ),
            (64, 100_000, 256, 256, 8 << 20)
        );
    }
}
