//! XML to JSON in one pass over the input: quick-xml's events build a flat
//! tree whose names and text borrow from the input, and the tree is written
//! once as JSON. The tree is what lets repeated elements that are not
//! adjacent (`<a/><b/><a/>`) become one array under the first one's key.
//!
//! The mapping, with the default `@` and `#text`:
//!
//! ```text
//! <a/> or <a></a>          "a": null
//! <a>t</a>                 "a": "t"
//! <a x="1">t</a>           "a": {"@x": "1", "#text": "t"}
//! <a><b>1</b><b>2</b></a>  "a": {"b": ["1", "2"]}
//! <p>x <b>y</b> z</p>      "p": {"b": "y", "#text": "x  z"}   (text nodes joined)
//! ```

use crate::config::Mapping;
use crate::error::ConvertError;
use crate::json_writer::{JsonWriter, escaped, is_json_number};
use crate::media_type::is_utf8;
use crate::names::{NameSet, is_blank, is_namespace_declaration, is_xml_space, key_name, trim_xml};
use quick_xml::escape::{EscapeError, resolve_xml_entity};
use quick_xml::events::attributes::Attribute;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::QName;
use quick_xml::{Reader, XmlVersion};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// No node: the end of a sibling list.
const NONE: u32 = u32::MAX;

/// Siblings up to this many are grouped by comparing names pairwise; more go
/// through a map, so an element with many children costs n log n, not n².
const PAIRWISE: usize = 16;

/// Converts an XML document to JSON text.
pub fn xml_to_json(body: &[u8], mapping: &Mapping) -> Result<Vec<u8>, ConvertError> {
    let text = std::str::from_utf8(body).map_err(|e| ConvertError::NotUtf8(e.valid_up_to()))?;
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let tree = Tree::read(text, mapping)?;
    Ok(tree.write(mapping, body.len())?.into_bytes())
}

struct Node<'a> {
    /// As it becomes a key: prefixed unless namespaces are stripped.
    name: &'a str,
    /// This element's attributes in [`Tree::attrs`].
    attrs: (u32, u32),
    /// The first and last of its text nodes and CDATA sections in
    /// [`Tree::pieces`], joined when written.
    text: (u32, u32),
    first_child: u32,
    last_child: u32,
    next_sibling: u32,
    /// The next sibling with the same name: the rest of this key's array.
    next_same: u32,
    /// An earlier sibling has the same name: written in its array.
    repeat: bool,
    /// Forced to an array by `arrays`.
    array: bool,
}

struct Tree<'a> {
    /// In document order: the root is node 0.
    nodes: Vec<Node<'a>>,
    attrs: Vec<(&'a str, Cow<'a, str>)>,
    /// Text, kept in pieces as read (joining them as they come would copy the
    /// indentation between elements, only to drop it).
    pieces: Vec<Piece<'a>>,
}

struct Piece<'a> {
    text: Cow<'a, str>,
    next: u32,
}

/// `part`, a slice of the input that quick-xml hands out tied to an event's
/// borrow, as a slice of `input` with the input's lifetime, so the tree can
/// borrow it instead of copying every name. quick-xml's string reader always
/// hands out slices of its input; anything else is reported, not guessed.
fn anchor<'a>(input: &'a str, part: &str) -> Result<&'a str, ConvertError> {
    let start = (part.as_ptr() as usize).wrapping_sub(input.as_ptr() as usize);
    input
        .get(start..start.wrapping_add(part.len()))
        .ok_or_else(|| ConvertError::Xml {
            at: 0,
            reason: "internal: the parser returned text outside the document".into(),
        })
}

fn xml_error(at: u64, error: quick_xml::Error) -> ConvertError {
    match error {
        quick_xml::Error::Escape(EscapeError::UnrecognizedEntity(_, name)) => {
            ConvertError::UnknownEntity(name)
        }
        other => ConvertError::Xml {
            at,
            reason: other.to_string(),
        },
    }
}

/// Reusable buffers for [`Tree::read`].
#[derive(Default)]
struct Scratch<'a> {
    children: Vec<u32>,
    last_of_name: BTreeMap<&'a str, u32>,
    /// Attribute names of the element being read, as written...
    qnames: NameSet<'a>,
    /// ...and as keys, when namespaces are stripped.
    keys: NameSet<'a>,
}

impl<'a> Tree<'a> {
    fn read(input: &'a str, mapping: &Mapping) -> Result<Tree<'a>, ConvertError> {
        let mut reader = Reader::from_str(input);
        reader.config_mut().check_end_names = true;
        let mut tree = Tree {
            nodes: Vec::with_capacity(input.len() / 32),
            attrs: Vec::with_capacity(input.len() / 32),
            pieces: Vec::with_capacity(input.len() / 16),
        };
        let mut stack: Vec<u32> = Vec::new();
        let mut scratch = Scratch::default();
        let misplaced = |reader: &Reader<&[u8]>, what: &str| ConvertError::Xml {
            at: reader.buffer_position(),
            reason: format!("{what} outside the root element"),
        };
        loop {
            let event = reader
                .read_event()
                .map_err(|e| xml_error(reader.error_position(), e))?;
            match event {
                Event::Start(_) | Event::Empty(_) if stack.is_empty() && !tree.nodes.is_empty() => {
                    return Err(misplaced(&reader, "a second element"));
                }
                Event::Start(start) => {
                    let node = tree.open(input, &start, &stack, mapping, &mut scratch, &reader)?;
                    stack.push(node);
                }
                Event::Empty(start) => {
                    let node = tree.open(input, &start, &stack, mapping, &mut scratch, &reader)?;
                    tree.close(node, &mut scratch);
                }
                Event::End(_) => {
                    // quick-xml has matched the end tag to the open element.
                    if let Some(node) = stack.pop() {
                        tree.close(node, &mut scratch);
                    }
                }
                Event::Text(text) => {
                    let text = text.xml10_content();
                    match stack.last() {
                        Some(&node) => tree.append(node, text),
                        None if is_blank(&text) => {}
                        None => return Err(misplaced(&reader, "text")),
                    }
                }
                Event::CData(cdata) => match stack.last() {
                    Some(&node) => tree.append(node, cdata.xml10_content()),
                    None => return Err(misplaced(&reader, "CDATA")),
                },
                Event::GeneralRef(reference) => {
                    let Some(&node) = stack.last() else {
                        return Err(misplaced(&reader, "a reference"));
                    };
                    let text = match reference
                        .resolve_char_ref()
                        .map_err(|e| xml_error(reader.buffer_position(), e))?
                    {
                        Some(c) => Cow::Owned(c.to_string()),
                        None => match resolve_xml_entity(&reference) {
                            Some(text) => Cow::Borrowed(text),
                            None => return Err(ConvertError::UnknownEntity(reference.to_string())),
                        },
                    };
                    tree.append(node, text);
                }
                Event::Decl(decl) => {
                    if let Some(Ok(encoding)) = decl.encoding()
                        && !is_utf8(&encoding)
                    {
                        return Err(ConvertError::Charset(encoding.into_owned()));
                    }
                }
                // Never processed: no entity it declares is ever expanded and
                // no external subset is fetched. Refused unless allowed.
                Event::DocType(_) if !mapping.allow_doctype => return Err(ConvertError::Doctype),
                Event::DocType(_) | Event::PI(_) | Event::Comment(_) => {}
                Event::Eof => break,
            }
        }
        if let Some(&open) = stack.last() {
            return Err(ConvertError::Xml {
                at: reader.buffer_position(),
                reason: format!(
                    "unexpected end: `{}` is not closed",
                    tree.nodes[open as usize].name
                ),
            });
        }
        if tree.nodes.is_empty() {
            return Err(ConvertError::Xml {
                at: reader.buffer_position(),
                reason: "no root element".into(),
            });
        }
        Ok(tree)
    }

    /// Adds the element `start` under the innermost open one.
    fn open(
        &mut self,
        input: &'a str,
        start: &BytesStart<'_>,
        stack: &[u32],
        mapping: &Mapping,
        scratch: &mut Scratch<'a>,
        reader: &Reader<&[u8]>,
    ) -> Result<u32, ConvertError> {
        let limits = &mapping.limits;
        if self.nodes.len() >= limits.max_elements {
            return Err(ConvertError::TooManyElements(limits.max_elements));
        }
        if stack.len() >= limits.max_depth {
            return Err(ConvertError::TooDeep(limits.max_depth));
        }
        let strip = mapping.strip_namespaces;
        let name = key_name(anchor(input, start.name().0)?, mapping)?;

        let first_attr = self.attrs.len();
        scratch.qnames.clear();
        scratch.keys.clear();
        // quick-xml's own duplicate check allocates per element; the name
        // sets are reused.
        for (count, attr) in start.attributes().with_checks(false).enumerate() {
            if count >= limits.max_attributes {
                return Err(ConvertError::TooManyAttributes(limits.max_attributes));
            }
            let attr = attr.map_err(|e| xml_error(reader.buffer_position(), e.into()))?;
            let qname = anchor(input, attr.key.0)?;
            if !scratch.qnames.insert(qname) {
                return Err(ConvertError::Xml {
                    at: reader.buffer_position(),
                    reason: format!("duplicate attribute `{}`", crate::error::shorten(qname)),
                });
            }
            if strip && is_namespace_declaration(qname) {
                continue;
            }
            let key = key_name(qname, mapping)?;
            // `a:id` and `b:id` both strip to `id`: the first one is kept.
            if strip && !scratch.keys.insert(key) {
                continue;
            }
            let raw = Attribute {
                key: QName(key),
                value: Cow::Borrowed(anchor(input, &attr.value)?),
            };
            let value = raw
                .normalized_value_with(XmlVersion::Implicit1_0, 1, resolve_xml_entity)
                .map_err(|e| xml_error(reader.buffer_position(), e))?;
            self.attrs.push((key, value));
        }

        let array = !mapping.arrays.is_empty() && {
            let ancestors = stack.iter().map(|&i| self.nodes[i as usize].name);
            mapping
                .arrays
                .iter()
                .any(|path| path.matches(ancestors.clone(), name))
        };
        let index = self.nodes.len() as u32;
        self.nodes.push(Node {
            name,
            attrs: (first_attr as u32, self.attrs.len() as u32),
            text: (NONE, NONE),
            first_child: NONE,
            last_child: NONE,
            next_sibling: NONE,
            next_same: NONE,
            repeat: false,
            array,
        });
        if let Some(&parent) = stack.last() {
            let parent = &mut self.nodes[parent as usize];
            let previous = std::mem::replace(&mut parent.last_child, index);
            if previous == NONE {
                parent.first_child = index;
            } else {
                self.nodes[previous as usize].next_sibling = index;
            }
        }
        Ok(index)
    }

    fn append(&mut self, node: u32, piece: Cow<'a, str>) {
        if piece.is_empty() {
            return;
        }
        let index = self.pieces.len() as u32;
        self.pieces.push(Piece {
            text: piece,
            next: NONE,
        });
        let text = &mut self.nodes[node as usize].text;
        if text.0 == NONE {
            text.0 = index;
        } else {
            self.pieces[text.1 as usize].next = index;
        }
        text.1 = index;
    }

    /// Links each child of the finished element `node` to its next
    /// namesake, so the writer emits each name once, as an array if repeated.
    fn close(&mut self, node: u32, scratch: &mut Scratch<'a>) {
        let children = &mut scratch.children;
        children.clear();
        let mut child = self.nodes[node as usize].first_child;
        while child != NONE {
            children.push(child);
            child = self.nodes[child as usize].next_sibling;
        }
        if children.len() <= PAIRWISE {
            for (i, &first) in children.iter().enumerate() {
                if self.nodes[first as usize].repeat {
                    continue;
                }
                let name = self.nodes[first as usize].name;
                let mut last = first;
                for &later in &children[i + 1..] {
                    if self.nodes[later as usize].name == name {
                        self.nodes[last as usize].next_same = later;
                        self.nodes[later as usize].repeat = true;
                        last = later;
                    }
                }
            }
        } else {
            let last_of_name = &mut scratch.last_of_name;
            last_of_name.clear();
            for &child in children.iter() {
                if let Some(previous) = last_of_name.insert(self.nodes[child as usize].name, child)
                {
                    self.nodes[previous as usize].next_same = child;
                    self.nodes[child as usize].repeat = true;
                }
            }
        }
    }

    fn write(&self, mapping: &Mapping, size_hint: usize) -> Result<String, ConvertError> {
        let mut w = Writer {
            tree: self,
            json: JsonWriter::new(
                mapping.pretty,
                size_hint + size_hint / 4,
                mapping.limits.max_output,
            ),
            mapping,
            attribute_prefix: escaped(&mapping.attribute_prefix)?,
            text_key: escaped(&mapping.text_key)?,
            joined: String::new(),
        };
        w.json.open('{');
        w.member(0)?;
        w.json.close('}');
        w.json.finish()
    }
}

/// Writes a [`Tree`] as JSON.
struct Writer<'t, 'a, 'm> {
    tree: &'t Tree<'a>,
    json: JsonWriter,
    mapping: &'m Mapping,
    /// The configured keys, escaped once.
    attribute_prefix: String,
    text_key: String,
    /// Reused to join an element's text pieces.
    joined: String,
}

impl<'t, 'a> Writer<'t, 'a, '_> {
    /// The key of `node` and its value: the node alone, or the array of it and
    /// its namesakes.
    fn member(&mut self, node: u32) -> Result<(), ConvertError> {
        let first = &self.tree.nodes[node as usize];
        self.json.key("", first.name);
        if !first.array && first.next_same == NONE {
            return self.value(node);
        }
        self.json.open('[');
        let mut next = node;
        while next != NONE {
            self.json.item();
            self.value(next)?;
            next = self.tree.nodes[next as usize].next_same;
        }
        self.json.close(']');
        Ok(())
    }

    fn value(&mut self, node: u32) -> Result<(), ConvertError> {
        self.json.check_size()?;
        let tree = self.tree;
        let element = &tree.nodes[node as usize];
        let attrs = &tree.attrs[element.attrs.0 as usize..element.attrs.1 as usize];
        if attrs.is_empty() && element.first_child == NONE {
            return match self.text(element) {
                None => {
                    self.json.raw("null");
                    Ok(())
                }
                Some(text) => {
                    let written = self.scalar(&text);
                    self.reuse(text);
                    written
                }
            };
        }
        self.json.open('{');
        for (name, value) in attrs {
            self.json.key(&self.attribute_prefix, name);
            self.scalar(value)?;
        }
        let mut child = element.first_child;
        while child != NONE {
            if !tree.nodes[child as usize].repeat {
                self.member(child)?;
            }
            child = tree.nodes[child as usize].next_sibling;
        }
        if let Some(text) = self.text(element) {
            self.json.key(&self.text_key, "");
            self.scalar(&text)?;
            self.reuse(text);
        }
        self.json.close('}');
        Ok(())
    }

    /// The element's text as written: its pieces joined, trimmed if
    /// configured, and none when it is only the whitespace that indents child
    /// elements.
    fn text(&mut self, element: &Node<'a>) -> Option<Cow<'t, str>>
    where
        'a: 't,
    {
        let pieces = &self.tree.pieces;
        let first = pieces.get(element.text.0 as usize)?;
        let mut text: Cow<'t, str> = if first.next == NONE {
            Cow::Borrowed(&first.text)
        } else {
            if element.first_child != NONE && self.pieces(element).all(is_blank) {
                return None;
            }
            let mut joined = std::mem::take(&mut self.joined);
            joined.clear();
            for piece in self.pieces(element) {
                joined.push_str(piece);
            }
            Cow::Owned(joined)
        };
        if self.mapping.trim_whitespace {
            match &mut text {
                Cow::Borrowed(t) => *t = trim_xml(t),
                Cow::Owned(t) => {
                    let end = t.trim_end_matches(is_xml_space).len();
                    t.truncate(end);
                    let start = end - t.trim_start_matches(is_xml_space).len();
                    t.drain(..start);
                }
            }
        }
        let indentation = element.first_child != NONE && is_blank(&text);
        (!text.is_empty() && !indentation).then_some(text)
    }

    /// Keeps a joined text's buffer for the next one.
    fn reuse(&mut self, text: Cow<'_, str>) {
        if let Cow::Owned(buffer) = text {
            self.joined = buffer;
        }
    }

    fn pieces<'e>(&self, element: &'e Node<'a>) -> impl Iterator<Item = &'t str> + use<'t, 'e, 'a> {
        let pieces = &self.tree.pieces;
        let mut next = element.text.0;
        std::iter::from_fn(move || {
            let piece = pieces.get(next as usize)?;
            next = piece.next;
            Some(&*piece.text)
        })
    }

    /// Text or an attribute value: a string, or what `recognize` makes of it.
    fn scalar(&mut self, text: &str) -> Result<(), ConvertError> {
        let recognize = self.mapping.recognize;
        if (recognize.null && text == "null")
            || (recognize.booleans && (text == "true" || text == "false"))
            || (recognize.numbers && is_json_number(text))
        {
            self.json.raw(text);
            Ok(())
        } else {
            self.json.string(text)
        }
    }
}
