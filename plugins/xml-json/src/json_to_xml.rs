//! JSON to XML: the JSON is read into an ordered tree (numbers as written),
//! then written as XML in one walk. The tree is needed because attributes
//! (`"@id"`) may come after child keys yet belong in the start tag.
//!
//! ```text
//! {"a": null}                 <a/>
//! {"a": "t"}                  <a>t</a>
//! {"a": {"@x": 1, "#text": 2}}  <a x="1">2</a>
//! {"a": {"b": [1, 2]}}        <a><b>1</b><b>2</b></a>
//! {"a": 1, "b": 2}            <root><a>1</a><b>2</b></root>
//! [1, [2]]                    <root><item>1</item><item><item>2</item></item></root>
//! ```

use crate::config::Mapping;
use crate::error::ConvertError;
use crate::json_reader::{self, Value};
use crate::names::{BYTE_CLASS, COPY, NameSet, SPECIAL, is_namespace_declaration, refused_char_at};
use crate::swar;
use std::borrow::Cow;

/// Converts a JSON document to XML text.
pub fn json_to_xml(body: &[u8], mapping: &Mapping) -> Result<Vec<u8>, ConvertError> {
    let text = std::str::from_utf8(body).map_err(|e| ConvertError::NotUtf8(e.valid_up_to()))?;
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let limits = json_reader::Limits {
        max_depth: mapping.limits.max_depth,
        max_values: mapping.limits.max_elements,
    };
    let value = json_reader::parse(text, limits)?;
    let mut w = XmlWriter {
        out: String::with_capacity(body.len() + body.len() / 2),
        mapping,
        attributes: NameSet::default(),
    };
    if mapping.declaration {
        w.out.push_str(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    }
    let indent = mapping.pretty.then_some(0);
    w.newline(indent.filter(|_| mapping.declaration));
    match &value {
        // One object with one element key is the document's root element;
        // anything else is wrapped in `root`.
        Value::Object(members)
            if members.len() == 1
                && w.kind(&members[0].0) == Key::Element
                && !matches!(members[0].1, Value::Array(_)) =>
        {
            w.element(&members[0].0, &members[0].1, indent)?;
        }
        _ => w.element(&mapping.root, &value, indent)?,
    }
    if mapping.pretty {
        w.out.push('\n');
    }
    w.check_size()?;
    Ok(w.out.into_bytes())
}

#[derive(Debug, PartialEq, Eq)]
enum Key {
    Attribute,
    Text,
    Element,
}

struct XmlWriter<'m, 'v> {
    out: String,
    mapping: &'m Mapping,
    /// The attributes of the start tag being written.
    attributes: NameSet<'v>,
}

impl<'v> XmlWriter<'_, 'v> {
    fn kind(&self, key: &str) -> Key {
        if key.starts_with(&self.mapping.attribute_prefix) {
            Key::Attribute
        } else if key == self.mapping.text_key {
            Key::Text
        } else {
            Key::Element
        }
    }

    fn check_size(&self) -> Result<(), ConvertError> {
        let limit = self.mapping.limits.max_output;
        if self.out.len() > limit {
            return Err(ConvertError::TooLarge(limit));
        }
        Ok(())
    }

    /// A line break and `level` indents, when pretty.
    fn newline(&mut self, level: Option<usize>) {
        if let Some(level) = level {
            self.out.push('\n');
            for _ in 0..level {
                self.out.push_str("  ");
            }
        }
    }

    /// Writes `<key>` holding `value`. `indent` is the element's level when
    /// pretty-printing, `None` inside text (mixed content stays as written).
    fn element(
        &mut self,
        key: &str,
        value: &'v Value<'v>,
        indent: Option<usize>,
    ) -> Result<(), ConvertError> {
        self.check_size()?;
        let name = self.mapping.key_name(key)?;
        self.out.push('<');
        self.out.push_str(name);
        let inner = indent.map(|level| level + 1);
        match value {
            Value::Null => self.out.push_str("/>"),
            Value::Array(items) if items.is_empty() => self.out.push_str("/>"),
            Value::Array(items) => {
                self.out.push('>');
                let item = self.mapping.array_item.as_str();
                for value in items {
                    self.newline(inner);
                    self.element(item, value, inner)?;
                }
                self.newline(indent);
                self.end(name);
            }
            Value::Object(members) => self.object(name, members, indent)?,
            scalar_value => {
                self.out.push('>');
                let text = scalar(scalar_value).unwrap_or_default();
                self.text(&text, false)?;
                self.end(name);
            }
        }
        Ok(())
    }

    /// The rest of an element holding an object: its attributes (scalars
    /// under `attribute_prefix`), then its text and child elements in order.
    fn object(
        &mut self,
        name: &str,
        members: &'v [(Cow<'v, str>, Value<'v>)],
        indent: Option<usize>,
    ) -> Result<(), ConvertError> {
        let inner = indent.map(|level| level + 1);
        self.attributes.clear();
        let mut content = false;
        let mut text = false;
        let mut count = 0;
        for (key, value) in members {
            match self.kind(key) {
                Key::Attribute => {
                    count += 1;
                    if count > self.mapping.limits.max_attributes {
                        return Err(ConvertError::TooManyAttributes(
                            self.mapping.limits.max_attributes,
                        ));
                    }
                    self.attribute(key, value)?;
                }
                Key::Text => (content, text) = (true, true),
                Key::Element => content = true,
            }
        }
        if !content {
            self.out.push_str("/>");
            return Ok(());
        }
        self.out.push('>');
        // Indenting beside text would add to it.
        let inner = inner.filter(|_| !text);
        let mut children = false;
        for (key, value) in members {
            match (self.kind(key), value) {
                (Key::Attribute, _) => {}
                (Key::Text, value) => {
                    let text =
                        scalar(value).ok_or_else(|| ConvertError::NotScalar(key.to_string()))?;
                    self.text(&text, false)?;
                }
                (Key::Element, Value::Array(items)) => {
                    for value in items {
                        self.newline(inner);
                        self.element(key, value, inner)?;
                        children = true;
                    }
                }
                (Key::Element, value) => {
                    self.newline(inner);
                    self.element(key, value, inner)?;
                    children = true;
                }
            }
        }
        if children {
            self.newline(indent.filter(|_| !text));
        }
        self.end(name);

        Ok(())
    }

    fn end(&mut self, name: &str) {
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
    }

    /// ` name="value"` for the member `key` (prefix included). The first of
    /// two that end up with one name wins; namespace declarations go when
    /// namespaces are stripped.
    fn attribute(&mut self, key: &'v str, value: &Value<'_>) -> Result<(), ConvertError> {
        let name = &key[self.mapping.attribute_prefix.len()..];
        if self.mapping.strip_namespaces && is_namespace_declaration(name) {
            return Ok(());
        }
        let name = self.mapping.key_name(name)?;
        let value =
            scalar(value).ok_or_else(|| ConvertError::NotScalar(crate::error::shorten(key)))?;
        if !self.attributes.insert(name) {
            return Ok(());
        }
        self.out.push(' ');
        self.out.push_str(name);
        self.out.push_str("=\"");
        self.text(&value, true)?;
        self.out.push('"');
        Ok(())
    }

    /// Escapes `text` as character data, or as an attribute value (where
    /// tabs and line breaks must be references to survive normalisation), and
    /// refuses characters XML cannot carry, in one pass.
    fn text(&mut self, text: &str, attribute: bool) -> Result<(), ConvertError> {
        let bytes = text.as_bytes();
        let mut start = 0;
        let mut i = 0;
        loop {
            i = next_to_check(bytes, i, attribute);
            let Some(&b) = bytes.get(i) else { break };
            i += 1;
            let escape = match BYTE_CLASS[b as usize] {
                COPY => continue,
                SPECIAL => match b {
                    b'&' => "&amp;",
                    b'<' => "&lt;",
                    // Only needed after `]]`, but simplest always.
                    b'>' => "&gt;",
                    // A raw CR would be read back as LF.
                    b'\r' => "&#xD;",
                    b'"' if attribute => "&quot;",
                    b'\t' if attribute => "&#x9;",
                    b'\n' if attribute => "&#xA;",
                    _ => continue,
                },
                _ => match refused_char_at(text, i - 1) {
                    Some(bad) => return Err(ConvertError::InvalidChar(bad)),
                    None => continue,
                },
            };
            self.out.push_str(&text[start..i - 1]);
            self.out.push_str(escape);
            start = i;
        }
        self.out.push_str(&text[start..]);
        Ok(())
    }
}

/// The offset of the first byte from `i` on that [`XmlWriter::text`] must
/// escape or check, or the end: most text has none, and is looked at eight
/// bytes at a time.
fn next_to_check(bytes: &[u8], mut i: usize, attribute: bool) -> usize {
    while let Some(word) = swar::word_at(bytes, i) {
        let mut found = swar::equal(word, b'&')
            | swar::equal(word, b'<')
            | swar::equal(word, b'>')
            | swar::equal(word, 0xEF)
            | swar::control(word);
        if attribute {
            found |= swar::equal(word, b'"');
        }
        if found != 0 {
            return i + swar::first(found);
        }
        i += 8;
    }
    while bytes
        .get(i)
        .is_some_and(|&b| BYTE_CLASS[b as usize] == COPY)
    {
        i += 1;
    }
    i
}

/// The text of a scalar (`null` is empty); `None` for arrays and objects.
fn scalar<'t>(value: &'t Value<'_>) -> Option<Cow<'t, str>> {
    match value {
        Value::Null => Some(Cow::Borrowed("")),
        Value::Bool(true) => Some(Cow::Borrowed("true")),
        Value::Bool(false) => Some(Cow::Borrowed("false")),
        Value::Number(number) => Some(Cow::Borrowed(number)),
        Value::String(text) => Some(Cow::Borrowed(text)),
        Value::Array(_) | Value::Object(_) => None,
    }
}
