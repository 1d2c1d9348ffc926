//! XML to JSON in one pass over the input: the JSON is written while the XML
//! is read, with no tree in between. An element's key and attributes are
//! written at its start tag, the rest of its value at its end tag.
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
//!
//! Only two things are not known when they come up. Text goes after the
//! children, so it is kept (as slices of the input) until the end tag. And
//! whether a child is one of several with its name, so an array. Namesakes
//! nearly always come in a row (`<item/><item/>`): when the second one
//! starts, the first one's value, the last thing written, becomes the
//! array's first item, and the others follow as items. Namesakes apart
//! (`<a/><b/><a/>`) are grouped when their parent ends: its children are
//! written again, each name once, at its first place, with all its values.
//! That moves only what that element wrote, and only for the elements that
//! need it: a 64-bit filter of the names that began its children's runs
//! tells which may (see [`name_bit`]).
//!
//! A leaf of plain text (`<a x="1">text</a>`, the bulk of data documents) is
//! read with its end tag in one step and written at once, never opened.

use crate::config::{Mapping, Recognize};
use crate::error::ConvertError;
use crate::json_writer::{JsonWriter, escaped, is_json_number};
use crate::media_type::is_utf8;
use crate::names::{NameSet, is_blank, is_namespace_declaration, is_xml_space, trim_xml};
use crate::swar;
use crate::xml_reader::{
    Name, Raw, Reader, Token, decode_attribute, decode_text, normalize_line_ends, xml_error,
};
use quick_xml::errors::IllFormedError;
use quick_xml::events::{BytesDecl, BytesStart};
use std::collections::BTreeMap;

/// No member: the end of a list of namesakes.
const NONE: u32 = u32::MAX;

/// Runs of same-name siblings up to this many are grouped by comparing names
/// pairwise; more go through a map, so an element with many children costs
/// n log n, not n².
const PAIRWISE: usize = 16;

/// Converts an XML document to JSON text.
pub fn xml_to_json(body: &[u8], mapping: &Mapping) -> Result<Vec<u8>, ConvertError> {
    let text = std::str::from_utf8(body).map_err(|e| ConvertError::NotUtf8(e.valid_up_to()))?;
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let mut converter = Converter::new(text, mapping, body.len())?;
    converter.read()?;
    Ok(converter.finish()?.into_bytes())
}

/// An element whose end tag is still to come.
struct Open<'a> {
    /// As written, which the end tag must repeat.
    qname: &'a str,
    /// As it becomes a key: prefixed unless namespaces are stripped.
    name: &'a str,
    /// Where its member starts in the output, separator included...
    start: usize,
    /// ...and its value.
    value: usize,
    /// It wrote `{`: it has attributes or children.
    object: bool,
    /// It has attributes, which come first in its object.
    attributes: bool,
    /// Its first child in [`Converter::members`].
    children: usize,
    /// Its last child's array is still open: namesakes may follow.
    array_open: bool,
    /// A bit per hash of the names that began runs of its children (see
    /// [`name_bit`]): a run whose bit is already set may share its name
    /// with an earlier run, and only then are its children grouped.
    run_names: u64,
    /// Some run's bit was already set.
    maybe_apart: bool,
    /// Its first text piece in [`Converter::pieces`].
    text: usize,
    /// Some of its text is not whitespace. Without any, text beside child
    /// elements is only their indentation, and dropped.
    has_text: bool,
    /// It is an item of an array (see [`Member::in_array`]).
    in_array: bool,
}

/// What an element that ended wrote, kept until its parent ends (which may
/// have to group it with its namesakes).
struct Member<'a> {
    name: &'a str,
    /// Where it starts in the output, separator included...
    start: usize,
    /// ...and where its value is.
    value: (usize, usize),
    /// Written as an item of an array: one of namesakes in a row, or forced
    /// to an array by `arrays`.
    in_array: bool,
    /// The next sibling with the same name: the rest of this key's array.
    next_same: u32,
    /// An earlier sibling has the same name: written in its array.
    repeat: bool,
}

/// Text kept until its element ends: a slice of the input, or of
/// [`Converter::decoded`] when references were resolved or line ends
/// normalised.
#[derive(Clone, Copy)]
enum Span<'a> {
    Input(&'a str),
    Decoded { start: usize, end: usize },
}

type Decode = fn(&str, usize, &mut String) -> Result<(), ConvertError>;

struct Converter<'a, 'm> {
    reader: Reader<'a>,
    mapping: &'m Mapping,
    json: JsonWriter,
    /// The configured keys, escaped once.
    attribute_prefix: String,
    text_key: String,
    /// The open elements, innermost last, above the document itself: a
    /// container whose one member is the root element.
    stack: Vec<Open<'a>>,
    /// The children of the open elements that ended: each open element's
    /// children follow one another, from its `children` on.
    members: Vec<Member<'a>>,
    /// The text of the open elements, each's from its `text` on.
    pieces: Vec<Span<'a>>,
    /// Every decoded text, one after the other: one buffer, not one
    /// allocation each.
    decoded: String,
    /// Elements read, for `max_elements`.
    elements: usize,
    scratch: Scratch<'a>,
}

/// Buffers reused from element to element.
#[derive(Default)]
struct Scratch<'a> {
    /// Attribute names of the element being read, as written...
    qnames: NameSet<'a>,
    /// ...and as keys, when namespaces are stripped.
    keys: NameSet<'a>,
    /// The children of the element being ended, in runs of one name: (first,
    /// last) in [`Converter::members`].
    runs: Vec<(u32, u32)>,
    last_of_name: BTreeMap<&'a str, u32>,
    /// An element's text pieces, joined.
    joined: String,
    /// What is being written again: children being grouped, or the value
    /// that becomes an array's first item.
    regrouped: String,
}

/// Refuses an XML declaration naming an encoding other than UTF-8, which is
/// how the body was read. quick-xml reads the declaration.
fn check_encoding(declaration: &str) -> Result<(), ConvertError> {
    let declaration = BytesDecl::from_start(BytesStart::from_content(declaration, 3));
    match declaration.encoding() {
        Some(Ok(encoding)) if !is_utf8(&encoding) => {
            Err(ConvertError::Charset(encoding.into_owned()))
        }
        _ => Ok(()),
    }
}

/// `name` checked, as it becomes a key.
fn key<'a>(name: Name<'a>, mapping: &Mapping) -> Result<&'a str, ConvertError> {
    if name.valid {
        mapping.key_of_name(name.text)
    } else {
        mapping.key_name(name.text)
    }
}

impl<'a, 'm> Converter<'a, 'm> {
    fn new(input: &'a str, mapping: &'m Mapping, size_hint: usize) -> Result<Self, ConvertError> {
        let mut json = JsonWriter::new(
            mapping.pretty,
            size_hint + size_hint / 4,
            mapping.limits.max_output,
        );
        json.open('{');
        let document = Open {
            qname: "",
            name: "",
            start: 0,
            value: 0,
            object: true,
            attributes: false,
            children: 0,
            array_open: false,
            run_names: 0,
            maybe_apart: false,
            text: 0,
            has_text: false,
            in_array: false,
        };
        Ok(Converter {
            reader: Reader::new(input),
            mapping,
            json,
            attribute_prefix: escaped(&mapping.attribute_prefix)?,
            text_key: escaped(&mapping.text_key)?,
            // Sized for usual documents, so they never grow.
            stack: {
                let mut stack = Vec::with_capacity(16);
                stack.push(document);
                stack
            },
            members: Vec::with_capacity(64),
            pieces: Vec::with_capacity(16),
            decoded: String::new(),
            elements: 0,
            scratch: Scratch::default(),
        })
    }

    fn misplaced(&self, what: &str) -> ConvertError {
        ConvertError::Xml {
            at: self.reader.position() as u64,
            reason: format!("{what} outside the root element"),
        }
    }

    /// Reads the document to its end, writing as it goes.
    fn read(&mut self) -> Result<(), ConvertError> {
        loop {
            let at = self.reader.position();
            // Above the document: inside the root element.
            let inside = self.stack.len() > 1;
            match self.reader.next()? {
                Token::Start if !inside && self.elements > 0 => {
                    return Err(self.misplaced("a second element"));
                }
                Token::Start => self.start(self.reader.name())?,
                Token::End if !inside => {
                    let found = self.reader.end_tag("")?.into();
                    return Err(xml_error(at, IllFormedError::UnmatchedEndTag(found)));
                }
                Token::End => {
                    let qname = self.stack.last().map_or("", |open| open.qname);
                    let found = self.reader.end_tag(qname)?;
                    // Words, not `!=`: in Wasm that is a call to a
                    // byte-at-a-time `memcmp`, once per element.
                    if !same(found, qname) {
                        let error = IllFormedError::MismatchedEndTag {
                            expected: qname.into(),
                            found: found.into(),
                        };
                        return Err(xml_error(at, error));
                    }
                    self.end()?;
                }
                Token::Text if inside => {
                    let text = self.decode(self.reader.text(), at, decode_text)?;
                    self.append(text);
                }
                // Whitespace only, or the first thing that is not tells
                // what is out of place.
                Token::Text => match self
                    .reader
                    .content()
                    .bytes()
                    .find(|&b| !is_xml_space(char::from(b)))
                {
                    None => {}
                    Some(b'&') => return Err(self.misplaced("a reference")),
                    Some(_) => return Err(self.misplaced("text")),
                },
                Token::CData if inside => {
                    let text = self.cdata(self.reader.content());
                    self.append(text);
                }
                Token::CData => return Err(self.misplaced("CDATA")),
                Token::Decl => check_encoding(self.reader.content())?,
                // Never processed: no entity it declares is ever expanded and
                // no external subset is fetched. Refused unless allowed.
                Token::Doctype if !self.mapping.allow_doctype => return Err(ConvertError::Doctype),
                Token::Doctype => {}
                Token::Eof => break,
            }
        }
        if let Some(open) = self.stack.get(1..).and_then(<[_]>::last) {
            return Err(ConvertError::Xml {
                at: self.reader.position() as u64,
                reason: format!("unexpected end: `{}` is not closed", open.name),
            });
        }
        if self.elements == 0 {
            return Err(ConvertError::Xml {
                at: self.reader.position() as u64,
                reason: "no root element".into(),
            });
        }
        Ok(())
    }

    /// The JSON text: the document's one member, the root element (an
    /// array of one if `arrays` says so).
    fn finish(mut self) -> Result<String, ConvertError> {
        if let Some(document) = self.stack.pop() {
            self.close_children(&document);
        }
        self.json.close('}');
        self.json.finish()
    }

    /// The value of text or an attribute value: as written when plain, else
    /// decoded into [`Self::decoded`]. `at` is where it is, for errors.
    #[inline(always)]
    fn decode(
        &mut self,
        raw: Raw<'a>,
        at: usize,
        decode: Decode,
    ) -> Result<Span<'a>, ConvertError> {
        if raw.plain {
            return Ok(Span::Input(raw.text));
        }
        let start = self.decoded.len();
        decode(raw.text, at, &mut self.decoded)?;
        Ok(Span::Decoded {
            start,
            end: self.decoded.len(),
        })
    }

    /// A CDATA section's value: its content, with line ends normalised.
    fn cdata(&mut self, content: &'a str) -> Span<'a> {
        if !content.contains('\r') {
            return Span::Input(content);
        }
        let start = self.decoded.len();
        normalize_line_ends(content, &mut self.decoded);
        Span::Decoded {
            start,
            end: self.decoded.len(),
        }
    }

    /// Adds a piece of text to the innermost open element.
    #[inline(always)]
    fn append(&mut self, piece: Span<'a>) {
        let text = span_text(&self.decoded, piece);
        if text.is_empty() {
            return;
        }
        if let Some(open) = self.stack.last_mut()
            && !open.has_text
        {
            open.has_text = !is_blank(text);
        }
        self.pieces.push(piece);
    }

    /// The element whose start tag the reader is reading, named `qname`: its
    /// key, and its attributes first in its object. An empty element (`<a/>`)
    /// ends here too.
    fn start(&mut self, qname: Name<'a>) -> Result<(), ConvertError> {
        let mapping = self.mapping;
        let limits = &mapping.limits;
        if self.elements >= limits.max_elements {
            return Err(ConvertError::TooManyElements(limits.max_elements));
        }
        // The document itself is no level.
        if self.stack.len() > limits.max_depth {
            return Err(ConvertError::TooDeep(limits.max_depth));
        }
        self.elements += 1;
        let name = key(qname, mapping)?;
        let array = !mapping.arrays.is_empty() && {
            let ancestors = self.stack[1..].iter().map(|open| open.name);
            mapping
                .arrays
                .iter()
                .any(|path| path.matches(ancestors.clone(), name))
        };

        let (start, in_array) = self.place(name, array);
        let value = self.json.position();
        let (attributes, empty) = self.attributes()?;
        // A leaf of plain text, `<a>text</a>` or `<a x="1">text</a>`, ends
        // here: what `end` would write for it, without opening it.
        if !empty && let Some(text) = self.reader.leaf_text(qname.text) {
            let text = text_of(text, mapping.trim_whitespace);
            let recognize = mapping.recognize;
            write_rest(&mut self.json, &self.text_key, recognize, attributes, text)?;
            self.members.push(Member {
                name,
                start,
                value: (value, self.json.position()),
                in_array,
                next_same: NONE,
                repeat: false,
            });
            return self.json.check_size();
        }
        self.stack.push(Open {
            qname: qname.text,
            name,
            start,
            value,
            object: attributes,
            attributes,
            children: self.members.len(),
            array_open: false,
            run_names: 0,
            maybe_apart: false,
            text: self.pieces.len(),
            has_text: false,
            in_array,
        });
        if empty {
            self.end()?;
        }
        Ok(())
    }

    /// Writes what comes before the value of an element named `name`: a key
    /// in its parent's object, or the comma before the next item of the
    /// array of namesakes just before it; `array` if forced to an array.
    /// Returns where that starts, and whether the value is an array item.
    fn place(&mut self, name: &'a str, array: bool) -> (usize, bool) {
        let Some(parent) = self.stack.last_mut() else {
            return (self.json.position(), false);
        };
        let previous = self.members[parent.children..].last_mut();
        let namesake = previous.as_ref().is_some_and(|last| same(last.name, name));
        if parent.array_open && !namesake {
            parent.array_open = false;
            self.json.close(']');
        }
        if !parent.object {
            parent.object = true;
            self.json.open('{');
        }
        let start = self.json.position();
        match previous {
            Some(previous) if namesake => {
                if !previous.in_array {
                    // The first of the run: its value becomes the first item.
                    let value = &mut previous.value;
                    value.0 = self
                        .json
                        .wrap_in_array(value.0, &mut self.scratch.regrouped);
                    value.1 = self.json.position();
                    previous.in_array = true;
                    parent.array_open = true;
                }
                self.json.item();
                (start, true)
            }
            _ => {
                let bit = name_bit(name);
                parent.maybe_apart |= parent.run_names & bit != 0;
                parent.run_names |= bit;
                self.json.key("", name);
                if array {
                    self.json.open('[');
                    self.json.item();
                    parent.array_open = true;
                }
                (start, array)
            }
        }
    }

    /// Reads and writes the attributes of a start tag, to its end: whether it
    /// had any (that are kept), and whether the tag was empty (`/>`).
    fn attributes(&mut self) -> Result<(bool, bool), ConvertError> {
        let mapping = self.mapping;
        let limits = &mapping.limits;
        let strip = mapping.strip_namespaces;
        let scratch = &mut self.scratch;
        scratch.qnames.clear();
        scratch.keys.clear();
        let mut count = 0;
        let mut written = false;
        loop {
            if let Some(empty) = self.reader.tag_end()? {
                return Ok((written, empty));
            }
            if count >= limits.max_attributes {
                return Err(ConvertError::TooManyAttributes(limits.max_attributes));
            }
            count += 1;
            let at = self.reader.position();
            self.reader.attribute()?;
            let name = self.reader.name();
            let qname = name.text;
            if !self.scratch.qnames.insert(qname) {
                return Err(ConvertError::Xml {
                    at: at as u64,
                    reason: format!("duplicate attribute `{}`", crate::error::shorten(qname)),
                });
            }
            if strip && is_namespace_declaration(qname) {
                continue;
            }
            let key = key(name, mapping)?;
            // `a:id` and `b:id` both strip to `id`: the first one is kept.
            if strip && !self.scratch.keys.insert(key) {
                continue;
            }
            let value = self.decode(self.reader.value(), at, decode_attribute)?;
            if !written {
                written = true;
                self.json.open('{');
            }
            self.json.key(&self.attribute_prefix, key);
            let value = span_text(&self.decoded, value);
            scalar(&mut self.json, mapping.recognize, value)?;
        }
    }

    /// At the innermost open element's end tag: its children grouped if need
    /// be, then its text, then its value closed.
    fn end(&mut self) -> Result<(), ConvertError> {
        let Some(open) = self.stack.pop() else {
            return Ok(());
        };
        let children = self.members.len() > open.children;
        self.close_children(&open);
        // Whitespace beside child elements is indentation, not text.
        let text = if children && !open.has_text {
            None
        } else {
            let trim = self.mapping.trim_whitespace;
            text(
                &self.decoded,
                &self.pieces[open.text..],
                trim,
                &mut self.scratch.joined,
            )
        };
        let recognize = self.mapping.recognize;
        write_rest(&mut self.json, &self.text_key, recognize, open.object, text)?;
        self.pieces.truncate(open.text);
        self.members.truncate(open.children);
        self.members.push(Member {
            name: open.name,
            start: open.start,
            value: (open.value, self.json.position()),
            in_array: open.in_array,
            next_same: NONE,
            repeat: false,
        });
        self.json.check_size()
    }

    /// After the last child of `open`: closes the array of its last
    /// namesakes, and groups namesakes apart.
    fn close_children(&mut self, open: &Open<'a>) {
        if open.array_open {
            self.json.close(']');
        }
        if open.maybe_apart && self.members.len() > open.children {
            self.group(open.children, open.attributes);
        }
    }

    /// When some of the children from `first` on in [`Self::members`] share
    /// a name with others apart from them, writes them again grouped: each
    /// name once, where it first came, with an array of its values.
    /// `attributes`: the element's object has attributes before its
    /// children.
    fn group(&mut self, first: usize, attributes: bool) {
        if !self.link_namesakes(first) {
            return;
        }
        let children = &self.members[first..];
        let Some(start) = children.first().map(|member| member.start) else {
            return;
        };
        let written = &mut self.scratch.regrouped;
        self.json.take_from(start, !attributes, written);
        for (i, member) in children.iter().enumerate() {
            if member.repeat {
                continue;
            }
            self.json.key("", member.name);
            let value =
                |member: &Member<'_>| &written[member.value.0 - start..member.value.1 - start];
            if !member.in_array && member.next_same == NONE {
                self.json.value_again(value(member), false);
                continue;
            }
            self.json.open('[');
            let mut next = i;
            while let Some(item) = children.get(next) {
                self.json.item();
                // Items already in an array are at their depth.
                self.json.value_again(value(item), !item.in_array);
                next = item.next_same as usize;
            }
            self.json.close(']');
        }
    }

    /// Links each child from `first` on to its next namesake: whether some
    /// namesakes are apart, and must be grouped.
    fn link_namesakes(&mut self, first: usize) -> bool {
        let members = &mut self.members[first..];
        let mut grouped = false;
        // Namesakes in a row are already in one array: linked as they come,
        // and only the runs are compared.
        let runs = &mut self.scratch.runs;
        runs.clear();
        for i in 0..members.len() {
            match runs.last_mut() {
                Some((_, last)) if same(members[*last as usize].name, members[i].name) => {
                    link(members, *last, i as u32);
                    *last = i as u32;
                }
                _ => runs.push((i as u32, i as u32)),
            }
        }
        if runs.len() < 2 {
            return false;
        }
        if runs.len() <= PAIRWISE {
            for (i, &(head, mut last)) in runs.iter().enumerate() {
                if members[head as usize].repeat {
                    continue;
                }
                let name = members[head as usize].name;
                for &(later, later_last) in &runs[i + 1..] {
                    if same(members[later as usize].name, name) {
                        link(members, last, later);
                        last = later_last;
                        grouped = true;
                    }
                }
            }
        } else {
            let last_of_name = &mut self.scratch.last_of_name;
            last_of_name.clear();
            for &(head, last) in runs.iter() {
                if let Some(previous) = last_of_name.insert(members[head as usize].name, last) {
                    link(members, previous, head);
                    grouped = true;
                }
            }
        }
        grouped
    }
}

/// Whether two names are the same.
#[inline]
fn same(a: &str, b: &str) -> bool {
    swar::same(a.as_bytes(), b.as_bytes())
}

/// One of 64 bits for `name`, from its length and its first and last bytes:
/// cheap, and different for most siblings' names.
#[inline(always)]
fn name_bit(name: &str) -> u64 {
    let bytes = name.as_bytes();
    let (first, last) = (bytes.first().copied(), bytes.last().copied());
    let hash =
        usize::from(first.unwrap_or(0)) ^ (usize::from(last.unwrap_or(0)) << 2) ^ (bytes.len() * 7);
    1 << (hash & 63)
}

/// Makes `later` the next item of `earlier`'s array.
fn link(members: &mut [Member<'_>], earlier: u32, later: u32) {
    members[earlier as usize].next_same = later;
    members[later as usize].repeat = true;
}

/// The text `span` stands for, `decoded` holding the decoded ones.
fn span_text<'x>(decoded: &'x str, span: Span<'x>) -> &'x str {
    match span {
        Span::Input(text) => text,
        Span::Decoded { start, end } => &decoded[start..end],
    }
}

/// An element's text as written: its pieces joined (in `joined` if there
/// are several), trimmed if configured; none if that leaves nothing.
fn text<'x>(
    decoded: &'x str,
    pieces: &[Span<'x>],
    trim: bool,
    joined: &'x mut String,
) -> Option<&'x str> {
    let text = match pieces {
        [] => return None,
        [piece] => span_text(decoded, *piece),
        _ => {
            joined.clear();
            for &piece in pieces {
                joined.push_str(span_text(decoded, piece));
            }
            joined.as_str()
        }
    };
    text_of(text, trim)
}

/// `text` trimmed if configured; none if that leaves nothing.
fn text_of(text: &str, trim: bool) -> Option<&str> {
    let text = if trim { trim_xml(text) } else { text };
    (!text.is_empty()).then_some(text)
}

/// Writes what is left of an element's value after its children: its text
/// and `}` when it is an `object`, else its text alone, or null.
fn write_rest(
    json: &mut JsonWriter,
    text_key: &str,
    recognize: Recognize,
    object: bool,
    text: Option<&str>,
) -> Result<(), ConvertError> {
    match text {
        Some(text) if object => {
            json.key(text_key, "");
            scalar(json, recognize, text)?;
        }
        Some(text) => scalar(json, recognize, text)?,
        None if object => {}
        None => json.raw("null"),
    }
    if object {
        json.close('}');
    }
    Ok(())
}

/// Text or an attribute value: a string, or what `recognize` makes of it.
#[inline(always)]
fn scalar(json: &mut JsonWriter, recognize: Recognize, text: &str) -> Result<(), ConvertError> {
    if (recognize.null && text == "null")
        || (recognize.booleans && (text == "true" || text == "false"))
        || (recognize.numbers && is_json_number(text))
    {
        json.raw(text);
        Ok(())
    } else {
        json.string(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// Compact and pretty output for `xml`, the pretty one checked against
    /// the compact one re-indented as Python's `json.dumps(indent=2)` does.
    fn both(xml: &str, config: serde_json::Value) -> (String, String) {
        let options = |pretty: bool| {
            let mut config = config.clone();
            config["pretty"] = pretty.into();
            crate::Options::from_config(&plugin_sdk::Config::from_value(config))
                .unwrap_or_else(|e| panic!("{e}"))
                .mapping
        };
        let convert = |pretty| {
            let json = xml_to_json(xml.as_bytes(), &options(pretty));
            String::from_utf8(json.unwrap_or_else(|e| panic!("{xml}: {e}"))).unwrap_or_default()
        };
        (convert(false), convert(true))
    }

    #[test]
    fn namesakes_in_a_row_and_apart() {
        let cases = [
            (
                "<a><b>1</b><b>2</b><c/></a>",
                r#"{"a":{"b":["1","2"],"c":null}}"#,
                "{\n  \"a\": {\n    \"b\": [\n      \"1\",\n      \"2\"\n    ],\n    \"c\": null\n  }\n}",
            ),
            // Runs apart join the first one's array, in document order.
            (
                "<a><x>1</x><x>2</x><y/><x>3</x><x>4</x></a>",
                r#"{"a":{"x":["1","2","3","4"],"y":null}}"#,
                "{\n  \"a\": {\n    \"x\": [\n      \"1\",\n      \"2\",\n      \"3\",\n      \"4\"\n    ],\n    \"y\": null\n  }\n}",
            ),
            (
                "<a>\n  <b x=\"1\"><c>1</c></b>\n  <b x=\"2\"/>\n</a>",
                r#"{"a":{"b":[{"@x":"1","c":"1"},{"@x":"2"}]}}"#,
                "{\n  \"a\": {\n    \"b\": [\n      {\n        \"@x\": \"1\",\n        \"c\": \"1\"\n      },\n      {\n        \"@x\": \"2\"\n      }\n    ]\n  }\n}",
            ),
            // Items that hold arrays move with them, one level deeper.
            (
                "<r><a><b/><b/></a><c/><a><b/></a></r>",
                r#"{"r":{"a":[{"b":[null,null]},{"b":null}],"c":null}}"#,
                "{\n  \"r\": {\n    \"a\": [\n      {\n        \"b\": [\n          null,\n          null\n        ]\n      },\n      {\n        \"b\": null\n      }\n    ],\n    \"c\": null\n  }\n}",
            ),
        ];
        for (xml, compact, pretty) in cases {
            assert_eq!(
                both(xml, serde_json::json!({})),
                (compact.into(), pretty.into()),
                "{xml}"
            );
        }
    }

    #[test]
    fn leaves_read_whole_and_the_cases_that_are_not() {
        let cases = [
            ("<r><a>x</a></r>", r#"{"r":{"a":"x"}}"#),
            ("<r><a></a></r>", r#"{"r":{"a":null}}"#),
            ("<r><a> </a></r>", r#"{"r":{"a":" "}}"#),
            (
                "<r><a x=\"1\">t</a></r>",
                r##"{"r":{"a":{"@x":"1","#text":"t"}}}"##,
            ),
            ("<r><a x=\"1\"></a></r>", r#"{"r":{"a":{"@x":"1"}}}"#),
            ("<r><a>1</a><a>2</a></r>", r#"{"r":{"a":["1","2"]}}"#),
            (
                "<r><a>1</a><b>2</b><a>3</a></r>",
                r#"{"r":{"a":["1","3"],"b":"2"}}"#,
            ),
            // Not plain text, or not the end tag right after it: read token
            // by token.
            ("<r><a>x &amp; y</a></r>", r#"{"r":{"a":"x & y"}}"#),
            ("<r><a>x\r\ny</a></r>", r#"{"r":{"a":"x\ny"}}"#),
            ("<r><a>x<!-- c -->y</a></r>", r#"{"r":{"a":"xy"}}"#),
            ("<r><a>x<![CDATA[<y>]]></a></r>", r#"{"r":{"a":"x<y>"}}"#),
            ("<r><a>x</a ></r>", r#"{"r":{"a":"x"}}"#),
            ("<r><ab>x</ab></r>", r#"{"r":{"ab":"x"}}"#),
            (
                "<r><a>x<b/></a></r>",
                r##"{"r":{"a":{"b":null,"#text":"x"}}}"##,
            ),
        ];
        for (xml, compact) in cases {
            assert_eq!(both(xml, serde_json::json!({})).0, compact, "{xml}");
        }
        let (trimmed, _) = both(
            "<r><a> x </a><b> </b></r>",
            serde_json::json!({ "trim_whitespace": true }),
        );
        assert_eq!(trimmed, r#"{"r":{"a":"x","b":null}}"#);
        let options =
            crate::Options::from_config(&plugin_sdk::Config::from_value(serde_json::json!({})))
                .unwrap_or_else(|e| panic!("{e}"));
        for xml in [
            "<r><a>x</ab></r>",
            "<r><ab>x</a></r>",
            "<r><ab>x</ac></r>",
            "<r><a>x</b></r>",
            "<r><a>x</a",
            "<r><a>x</",
        ] {
            let result = xml_to_json(xml.as_bytes(), &options.mapping);
            assert!(
                matches!(result, Err(ConvertError::Xml { .. })),
                "{xml}: {result:?}"
            );
        }
    }

    #[test]
    fn names_that_share_a_filter_bit() {
        // `axb` and `ayb` have the same length and ends, so the same bit:
        // grouping runs for them and must change nothing but namesakes.
        assert_eq!(name_bit("axb"), name_bit("ayb"));
        let cases = [
            ("<r><axb/><ayb/></r>", r#"{"r":{"axb":null,"ayb":null}}"#),
            (
                "<r><axb>1</axb><ayb/><axb>2</axb></r>",
                r#"{"r":{"axb":["1","2"],"ayb":null}}"#,
            ),
            // Different bits, apart: found by the filter.
            (
                "<r><a>1</a><b/><a>2</a></r>",
                r#"{"r":{"a":["1","2"],"b":null}}"#,
            ),
        ];
        for (xml, compact) in cases {
            assert_eq!(both(xml, serde_json::json!({})).0, compact, "{xml}");
        }
    }

    #[test]
    fn forced_arrays_and_text_after_children() {
        let config = serde_json::json!({ "arrays": ["//b", "/r"] });
        let (compact, pretty) = both("<r x=\"1\">t<b/><c/><b>2</b>u</r>", config);
        assert_eq!(
            compact,
            r##"{"r":[{"@x":"1","b":[null,"2"],"c":null,"#text":"tu"}]}"##
        );
        let reparsed: Value = serde_json::from_str(&pretty).unwrap_or_default();
        assert_eq!(
            reparsed,
            serde_json::from_str::<Value>(&compact).unwrap_or_default()
        );
    }
}
